//! A plugin's stdout and stderr: captured per call into memory, then written to the router's
//! log (tagged with plugin, route and event id), never to the router's own stdio.
//!
//! A call keeps at most [`MAX_CAPTURED_LINES`] lines and [`MAX_CAPTURED_BYTES`] bytes (lines
//! longer than [`MAX_LINE_BYTES`] are shortened); lines past that are cut and counted
//! (`webhook_plugin_stdio_cut_lines_total`). A call that writes more than its flood limit (the
//! plugin's output cap) to stdout and stderr together fails with `output_too_large`: the write
//! traps, so a guest printing in a loop is stopped at once rather than when its CPU budget runs
//! out.
//!
//! Whatever the caps kept, the last [`STDERR_TAIL_BYTES`] a call wrote to stderr are kept too:
//! what a language runtime says last before it traps (an uncaught exception's text), added to
//! the message of a failed call.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Most lines one call's stdout and stderr keep, together.
pub const MAX_CAPTURED_LINES: usize = 64;
/// Most bytes one call's stdout and stderr keep, together.
pub const MAX_CAPTURED_BYTES: usize = 16 * 1024;
/// Longest line kept; longer ones are shortened (and end with `…`).
pub const MAX_LINE_BYTES: usize = 2048;
/// Most bytes of the end of a call's stderr kept for its failure message.
pub const STDERR_TAIL_BYTES: usize = 2048;
/// Bytes a guest may write in one `write` (what `check-write` grants).
const WRITE_PERMIT: usize = 64 * 1024;

/// Which stream a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// What one call wrote to stdout and stderr, as kept.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Lines kept, in the order they were completed.
    pub lines: Vec<(Stream, String)>,
    /// Lines cut because the call's caps were reached.
    pub cut_lines: u64,
    /// The end of what the call wrote to stderr, at most [`STDERR_TAIL_BYTES`] of it, on one
    /// line: its lines (blank ones left out) joined with ` | `, starting with `…` if the
    /// beginning was cut. Empty if the call wrote nothing to stderr.
    pub stderr_tail: String,
}

impl Captured {
    /// Writes each kept line to the log, tagged with `plugin`, `route` and `event_id`.
    pub fn log(&self, plugin: &str, route: &str, event_id: &str) {
        for (stream, line) in &self.lines {
            let stream = stream.label();
            tracing::info!(plugin, route, event_id, stream, "{line}");
        }
        if self.cut_lines > 0 {
            tracing::warn!(
                plugin,
                route,
                event_id,
                cut_lines = self.cut_lines,
                "plugin stdout/stderr over the per-call cap: lines cut"
            );
        }
    }
}

/// The guest wrote more than its flood limit to stdout and stderr in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the plugin wrote more than {limit} bytes to stdout and stderr in one call")]
pub struct StdioFlood {
    /// The limit, in bytes.
    pub limit: usize,
}

/// One store's capture: shared by its stdout and stderr streams and the host, which sets a
/// call's limit before it and takes what was written after it.
#[derive(Debug, Clone)]
pub struct StdioCapture {
    shared: Arc<Mutex<Capture>>,
}

#[derive(Debug, Default)]
struct Capture {
    flood_limit: usize,
    written: usize,
    kept_bytes: usize,
    /// The line being written on each stream (stdout, stderr), and whether it was shortened.
    partial: [(Vec<u8>, bool); 2],
    /// The last bytes written to stderr: up to twice [`STDERR_TAIL_BYTES`] (trimmed in
    /// batches), the last [`STDERR_TAIL_BYTES`] of which are kept.
    stderr_tail: Vec<u8>,
    /// Whether bytes written to stderr were trimmed off the front of `stderr_tail`.
    stderr_trimmed: bool,
    captured: Captured,
}

impl Default for StdioCapture {
    fn default() -> Self {
        Self::new()
    }
}

impl StdioCapture {
    /// An empty capture; nothing may be written until [`Self::start_call`].
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Mutex::new(Capture::default())),
        }
    }

    /// Empties the capture for a new call, which may write up to `flood_limit` bytes.
    pub fn start_call(&self, flood_limit: usize) {
        let mut capture = self.lock();
        *capture = Capture {
            flood_limit,
            ..Capture::default()
        };
    }

    /// What the call wrote (an unfinished last line included), leaving the capture empty.
    pub fn take(&self) -> Captured {
        let mut capture = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            capture.end_line(stream);
        }
        let tail = std::mem::take(&mut capture.stderr_tail);
        let trimmed = std::mem::take(&mut capture.stderr_trimmed);
        let mut captured = std::mem::take(&mut capture.captured);
        captured.stderr_tail = one_line_tail(&tail, trimmed);
        captured
    }

    /// The stream the guest sees as `stream`.
    pub fn stream(&self, stream: Stream) -> CaptureStream {
        CaptureStream {
            shared: Arc::clone(&self.shared),
            stream,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Capture> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Capture {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), StdioFlood> {
        self.written = self.written.saturating_add(bytes.len());
        if self.written > self.flood_limit {
            return Err(StdioFlood {
                limit: self.flood_limit,
            });
        }
        if stream == Stream::Stderr {
            self.keep_stderr_tail(bytes);
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let (line, newline) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..end], true),
                None => (rest, false),
            };
            let (partial, shortened) = &mut self.partial[index(stream)];
            let room = MAX_LINE_BYTES.saturating_sub(partial.len());
            partial.extend_from_slice(&line[..line.len().min(room)]);
            *shortened |= line.len() > room;
            rest = &rest[line.len()..];
            if newline {
                rest = &rest[1..];
                self.end_line(stream);
            }
        }
        Ok(())
    }

    /// Adds `bytes` to the stderr tail, trimming its front once it holds twice what it keeps.
    fn keep_stderr_tail(&mut self, bytes: &[u8]) {
        let tail = &mut self.stderr_tail;
        tail.extend_from_slice(&bytes[bytes.len().saturating_sub(STDERR_TAIL_BYTES)..]);
        self.stderr_trimmed |= bytes.len() > STDERR_TAIL_BYTES;
        if tail.len() > 2 * STDERR_TAIL_BYTES {
            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
            self.stderr_trimmed = true;
        }
    }

    /// Keeps (or cuts) the line being written on `stream`, if any.
    fn end_line(&mut self, stream: Stream) {
        let (partial, shortened) = std::mem::take(&mut self.partial[index(stream)]);
        if partial.is_empty() && !shortened {
            return;
        }
        let mut line = String::from_utf8_lossy(&partial).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        if shortened {
            line.push('…');
        }
        if self.captured.lines.len() >= MAX_CAPTURED_LINES
            || self.kept_bytes + line.len() > MAX_CAPTURED_BYTES
        {
            self.captured.cut_lines += 1;
            return;
        }
        self.kept_bytes += line.len();
        self.captured.lines.push((stream, line));
    }
}

/// The end of `tail` (whose front was cut if `trimmed`) as one line: its non-blank lines joined
/// with ` | `, at most [`STDERR_TAIL_BYTES`] of it, starting on a character boundary, after `…`
/// if anything before was cut.
fn one_line_tail(tail: &[u8], trimmed: bool) -> String {
    let mut kept = &tail[tail.len().saturating_sub(STDERR_TAIL_BYTES)..];
    // A cut in the middle of a character: skip its continuation bytes (at most three).
    let partial = kept
        .iter()
        .take(3)
        .take_while(|&&b| b & 0b1100_0000 == 0b1000_0000)
        .count();
    kept = &kept[partial..];
    let text = String::from_utf8_lossy(kept);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect();
    let joined = lines.join(" | ");
    // The separators are longer than the newlines they replace.
    let mut start = joined.len().saturating_sub(STDERR_TAIL_BYTES);
    while !joined.is_char_boundary(start) {
        start += 1;
    }
    let cut = trimmed || kept.len() < tail.len() || start > 0;
    match &joined[start..] {
        "" => String::new(),
        rest if cut => format!("…{rest}"),
        rest => rest.to_owned(),
    }
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// One of a store's captured streams, as WASI sees it.
#[derive(Debug, Clone)]
pub struct CaptureStream {
    shared: Arc<Mutex<Capture>>,
    stream: Stream,
}

impl CaptureStream {
    fn write_bytes(&self, bytes: &[u8]) -> Result<(), StdioFlood> {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(self.stream, bytes)
    }
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes)
            .map_err(|flood| StreamError::Trap(wasmtime::Error::new(flood)))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CaptureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.write_bytes(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_per_stream_and_an_unfinished_line_is_kept() {
        let capture = StdioCapture::new();
        capture.start_call(1024);
        let (out, err) = (
            capture.stream(Stream::Stdout),
            capture.stream(Stream::Stderr),
        );
        out.write_bytes(b"one\ntw").unwrap();
        err.write_bytes(b"oops\r\n").unwrap();
        out.write_bytes(b"o\nthree").unwrap();
        let captured = capture.take();
        assert_eq!(
            captured.lines,
            [
                (Stream::Stdout, "one".to_owned()),
                (Stream::Stderr, "oops".to_owned()),
                (Stream::Stdout, "two".to_owned()),
                (Stream::Stdout, "three".to_owned()),
            ]
        );
        assert_eq!(captured.stderr_tail, "oops");
        assert_eq!(captured.cut_lines, 0);
        assert_eq!(capture.take(), Captured::default(), "take empties it");
    }

    #[test]
    fn lines_over_the_caps_are_cut_and_counted_and_long_lines_shortened() {
        let capture = StdioCapture::new();
        capture.start_call(usize::MAX);
        let out = capture.stream(Stream::Stdout);
        for _ in 0..MAX_CAPTURED_LINES + 10 {
            out.write_bytes(b"line\n").unwrap();
        }
        let captured = capture.take();
        assert_eq!(captured.lines.len(), MAX_CAPTURED_LINES);
        assert_eq!(captured.cut_lines, 10);

        capture.start_call(usize::MAX);
        out.write_bytes(&vec![b'x'; MAX_LINE_BYTES * 3]).unwrap();
        let captured = capture.take();
        let (_, line) = &captured.lines[0];
        assert_eq!(line.len(), MAX_LINE_BYTES + '…'.len_utf8());
        assert!(line.ends_with('…'));
    }

    #[test]
    fn the_end_of_stderr_is_kept_on_one_line_whatever_the_line_caps_kept() {
        let capture = StdioCapture::new();
        capture.start_call(usize::MAX);
        let (out, err) = (
            capture.stream(Stream::Stdout),
            capture.stream(Stream::Stderr),
        );
        // Over the line caps, and (about 5 KiB of frames) over what the tail keeps.
        let frames = STDERR_TAIL_BYTES / 4;
        for i in 0..frames {
            out.write_bytes(format!("chatter {i}\n").as_bytes())
                .unwrap();
            err.write_bytes(format!("frame {i}\n").as_bytes()).unwrap();
        }
        err.write_bytes(b"Traceback (most recent call last):\n\n  File \"x.py\"\r\n")
            .unwrap();
        err.write_bytes(b"RuntimeError: boom").unwrap();
        let captured = capture.take();
        assert!(captured.cut_lines > 0, "the line caps were reached");
        let tail = &captured.stderr_tail;
        assert!(
            tail.ends_with(&format!(
                "frame {} | Traceback (most recent call last): |   File \"x.py\" | RuntimeError: boom",
                frames - 1
            )),
            "{tail}"
        );
        assert!(tail.len() <= '…'.len_utf8() + STDERR_TAIL_BYTES, "{tail}");
        assert!(tail.starts_with('…'), "{tail}");
        assert!(!tail.contains('\n'), "{tail}");

        capture.start_call(usize::MAX);
        out.write_bytes(b"no stderr\n").unwrap();
        assert_eq!(capture.take().stderr_tail, "", "each call has its own tail");
    }

    #[test]
    fn the_stderr_tail_starts_on_a_character_boundary() {
        let capture = StdioCapture::new();
        capture.start_call(usize::MAX);
        let err = capture.stream(Stream::Stderr);
        // Two-byte characters, then one byte: the last STDERR_TAIL_BYTES start mid-character.
        err.write_bytes("é".repeat(STDERR_TAIL_BYTES).as_bytes())
            .unwrap();
        err.write_bytes(b"x").unwrap();
        let tail = capture.take().stderr_tail;
        assert_eq!(tail, format!("…{}x", "é".repeat(STDERR_TAIL_BYTES / 2 - 1)));
    }

    #[test]
    fn writing_past_the_flood_limit_fails() {
        let capture = StdioCapture::new();
        capture.start_call(10);
        let err = capture.stream(Stream::Stderr);
        err.write_bytes(b"0123456789").unwrap();
        assert_eq!(err.write_bytes(b"x"), Err(StdioFlood { limit: 10 }));
    }
}
