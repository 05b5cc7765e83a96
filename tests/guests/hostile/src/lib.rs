//! A test-only plugin that misbehaves on demand, to test the router's sandbox: time and
//! memory limits, traps, output caps, and bad verdicts.
//!
//! Config: `{"mode": "<mode>", ...}` (default mode `ok`). Modes, and the keys they read:
//!
//! | mode | `handle` does |
//! | --- | --- |
//! | `ok` | forwards the event unchanged |
//! | `drop` | drops it (reason `message`, default `"dropped by hostile plugin"`) |
//! | `loop` | loops forever (the time limit must stop it) |
//! | `memory` | allocates 1 MiB chunks, writing to every page, until allocation fails (a trap); with `bytes`, stops after that many bytes and forwards |
//! | `trap` | executes `unreachable` |
//! | `panic` | panics (a trap with `panic = "abort"`; the message goes to the log first) |
//! | `recursion` | recurses without bound (stack overflow trap) |
//! | `big-output` | forwards the event with a body of `bytes` bytes (default 8 MiB) |
//! | `log` | writes one log line of `bytes` characters (default 10000), then forwards |
//! | `error` | returns `Err("boom")` |
//! | `bad-fan-out` | fans out to `destination` (default `"no-such-destination"`) |
//! | `reject` | rejects with `status` (default 403) and `message` |
//! | `configure-error` | (`configure` fails with an error) |
//! | `configure-loop` | (`configure` loops forever) |
//! | `configure-trap` | (`configure` executes `unreachable`) |
//! | `count` | counts the events this instance handled and forwards with `x-hostile-count: <n>` |
//! | `print` | writes a line to stdout and one to stderr (captured into the router's log), then forwards |
//! | `sleep` | sleeps `bytes` milliseconds (default 10000) with a WASI sleep, then forwards |
//! | `poll-loop` | polls forever: sleeps of 1 ns (a WASI `poll` each) in an endless loop |
//! | `stdout-flood` | writes `bytes` bytes (default 100 MB) to stdout, 64 KiB at a time, then forwards |
//! | `alias-fan-out` | fans out to `destination` (default `"a"`) 1,000 events whose bodies all point at one 1 MiB buffer |
//! | `stderr-trap` | writes "uncaught exception: …" to stderr, then executes `unreachable` |
//! | `denied-import` | calls `hostile:denied/nope.ping`, an import the router does not provide |
//! | `clock` | forwards with `x-hostile-wall-ms` (the wall clock, in ms since 1970) and `x-hostile-monotonic-ns` (how far the monotonic clock moved over a short loop) |
//! | `open-file` | reads `message` (default `/etc/hostname`) with `std::fs`, and forwards what it got (`x-hostile-file`) |
//! | `connect` | connects to `message` (default `127.0.0.1:9`) with `std::net::TcpStream`, and forwards how that went (`x-hostile-connect`) |
//! | `http` | sends `GET http://<message>/` (default `127.0.0.1:9`) through `wasi:http/outgoing-handler`, and forwards how that went (`x-hostile-http`) |
//!
//! An event's `x-hostile-mode` header, if set, replaces the configured mode for that event: one
//! instance can trap on one event and be asked again on the next.

use std::hint::black_box;

use serde::Deserialize;
use webhook_router_sdk::serde_json::Value;
use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, log, verdict};

const MIB: usize = 1024 * 1024;
const PAGE: usize = 64 * 1024;

/// What to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Forward unchanged.
    #[default]
    Ok,
    /// Drop.
    Drop,
    /// Loop forever.
    Loop,
    /// Allocate until out of memory (or `bytes`).
    Memory,
    /// `unreachable`.
    Trap,
    /// Panic.
    Panic,
    /// Unbounded recursion.
    Recursion,
    /// A big body.
    BigOutput,
    /// A long log line.
    Log,
    /// `Err("boom")`.
    Error,
    /// Fan out to an unknown destination.
    BadFanOut,
    /// Reject.
    Reject,
    /// Fail `configure`.
    ConfigureError,
    /// Loop in `configure`.
    ConfigureLoop,
    /// Trap in `configure`.
    ConfigureTrap,
    /// Count events handled by this instance.
    Count,
    /// Write to stdout and stderr.
    Print,
    /// A long WASI sleep.
    Sleep,
    /// An endless loop of WASI polls.
    PollLoop,
    /// A flood of stdout.
    StdoutFlood,
    /// A fan-out whose bodies alias one buffer.
    AliasFanOut,
    /// Say something on stderr, then trap.
    StderrTrap,
    /// Call an import the router does not provide.
    DeniedImport,
    /// Read the clocks.
    Clock,
    /// Read a file.
    OpenFile,
    /// Open a TCP connection.
    Connect,
    /// Send an HTTP request.
    Http,
}

/// An interface no router provides, imported so that `denied-import` can call it.
#[allow(missing_docs)]
mod denied {
    wit_bindgen::generate!({
        inline: "package hostile:denied;
            interface nope { ping: func() -> u32; }
            world denied { import nope; }",
        world: "denied",
    });
}

/// The plugin's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hostile {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    bytes: Option<usize>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    destination: Option<String>,
    #[serde(skip)]
    handled: std::cell::Cell<u64>,
}

/// Never returns; the optimizer cannot remove it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Traps at once.
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// Recurses until the stack runs out.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return frame[1];
    }
    recurse(frame[0] + 1).wrapping_add(frame[31])
}

/// Allocates `limit` bytes (or without end) in 1 MiB chunks, writing to every page.
fn eat_memory(limit: Option<usize>) -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0;
    while limit.is_none_or(|limit| total < limit) {
        let size = limit.map_or(MIB, |limit| MIB.min(limit - total));
        let mut chunk = vec![0u8; size];
        for i in (0..size).step_by(PAGE) {
            chunk[i] = 1;
        }
        total += size;
        chunks.push(black_box(chunk));
    }
    black_box(&chunks);
    total
}

/// 1,000 deliveries to `destination`, each event's body the same 1 MiB of guest memory: what
/// the host would copy is 1,000 MiB, from 1 MiB the guest holds. The `Vec`s alias one buffer,
/// which Rust forbids; they are only lowered (their pointer and length written into the return
/// area), never read or dropped by the guest before the host refuses them. Were they accepted,
/// the post-return would free the buffer 1,000 times: this mode is for the sandbox test only.
fn alias_fan_out(destination: &str, event: &Event) -> Verdict {
    let mut buffer = std::mem::ManuallyDrop::new(vec![b'x'; MIB]);
    let (ptr, len, capacity) = (buffer.as_mut_ptr(), buffer.len(), buffer.capacity());
    verdict::fan_out((0..1000).map(|_| {
        let mut copy = Event::from_body(Vec::new());
        copy.headers = event.headers.clone();
        // SAFETY: not sound (1,000 owners of one buffer); see above.
        copy.body = unsafe { Vec::from_raw_parts(ptr, len, capacity) };
        (destination, copy)
    }))
}

/// Writes `bytes` bytes to stdout, 64 KiB at a time; stops at the first failed write.
fn flood_stdout(bytes: usize) -> usize {
    use std::io::Write;
    let chunk = vec![b'x'; 64 * 1024];
    let mut stdout = std::io::stdout();
    let mut written = 0;
    while written < bytes {
        let n = chunk.len().min(bytes - written);
        if stdout.write_all(&chunk[..n]).is_err() {
            break;
        }
        written += n;
    }
    written
}

/// The wall clock in ms since 1970, and how many ns the monotonic clock moved while the guest
/// spun (until it moved, or a million turns).
fn clocks() -> (u128, u128) {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let start = std::time::Instant::now();
    let mut moved = 0;
    for _ in 0..1_000_000 {
        moved = start.elapsed().as_nanos();
        if moved > 0 {
            break;
        }
    }
    (wall, moved)
}

/// Sends `GET http://<authority>/` through `wasi:http/outgoing-handler`; says how it went.
#[cfg(target_arch = "wasm32")]
fn http_get(authority: &str) -> String {
    use wasip2::http::outgoing_handler::handle;
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    if request.set_scheme(Some(&Scheme::Http)).is_err()
        || request.set_authority(Some(authority)).is_err()
        || request.set_path_with_query(Some("/")).is_err()
    {
        return "error: bad request".to_owned();
    }
    match handle(request, None) {
        Ok(_) => "sent".to_owned(),
        Err(code) => format!("error: {code:?}"),
    }
}

/// Natively there is no `wasi:http`.
#[cfg(not(target_arch = "wasm32"))]
fn http_get(_authority: &str) -> String {
    "error: not a WebAssembly guest".to_owned()
}

impl Plugin for Hostile {
    fn configure(config: Value) -> Result<Self, String> {
        let hostile: Hostile = webhook_router_sdk::from_config(config)?;
        match hostile.mode {
            Mode::ConfigureError => Err("configure-error mode: refusing to be configured".into()),
            Mode::ConfigureLoop => spin(),
            Mode::ConfigureTrap => trap(),
            _ => Ok(hostile),
        }
    }

    fn handle(&self, mut event: Event) -> Result<Verdict, String> {
        self.handled.set(self.handled.get() + 1);
        let mode = match event.header("x-hostile-mode") {
            Some(mode) => webhook_router_sdk::from_config(Value::String(mode.to_owned()))?,
            None => self.mode,
        };
        Ok(match mode {
            Mode::Ok | Mode::ConfigureError | Mode::ConfigureLoop | Mode::ConfigureTrap => {
                verdict::forward(event)
            }
            Mode::Drop => verdict::drop(
                self.message
                    .as_deref()
                    .unwrap_or("dropped by hostile plugin"),
            ),
            Mode::Loop => spin(),
            Mode::Memory => {
                let eaten = eat_memory(self.bytes);
                event.set_header("x-hostile-allocated", eaten.to_string());
                verdict::forward(event)
            }
            Mode::Trap => trap(),
            Mode::Panic => panic!("hostile plugin panics on purpose"),
            Mode::Recursion => {
                let n = recurse(0);
                event.set_header("x-hostile-depth", n.to_string());
                verdict::forward(event)
            }
            Mode::BigOutput => {
                event.set_body(vec![b'x'; self.bytes.unwrap_or(8 * MIB)]);
                verdict::forward(event)
            }
            Mode::Log => {
                log::info("x".repeat(self.bytes.unwrap_or(10_000)));
                verdict::forward(event)
            }
            Mode::Error => return Err("boom".into()),
            Mode::Print => {
                println!("hostile plugin writes to stdout");
                eprintln!("hostile plugin writes to stderr");
                verdict::forward(event)
            }
            Mode::Sleep => {
                let millis = self.bytes.unwrap_or(10_000);
                std::thread::sleep(std::time::Duration::from_millis(millis as u64));
                verdict::forward(event)
            }
            Mode::PollLoop => loop {
                std::thread::sleep(std::time::Duration::from_nanos(1));
            },
            Mode::StdoutFlood => {
                let written = flood_stdout(self.bytes.unwrap_or(100_000_000));
                event.set_header("x-hostile-written", written.to_string());
                verdict::forward(event)
            }
            Mode::AliasFanOut => alias_fan_out(self.destination.as_deref().unwrap_or("a"), &event),
            Mode::DeniedImport => {
                let pong = denied::hostile::denied::nope::ping();
                event.set_header("x-hostile-pong", pong.to_string());
                verdict::forward(event)
            }
            Mode::Clock => {
                let (wall_ms, monotonic_ns) = clocks();
                event.set_header("x-hostile-wall-ms", wall_ms.to_string());
                event.set_header("x-hostile-monotonic-ns", monotonic_ns.to_string());
                verdict::forward(event)
            }
            Mode::OpenFile => {
                let path = self.message.as_deref().unwrap_or("/etc/hostname");
                let got = match std::fs::read(path) {
                    Ok(bytes) => format!("read {} bytes", bytes.len()),
                    Err(error) => format!("error: {error}"),
                };
                event.set_header("x-hostile-file", got);
                verdict::forward(event)
            }
            Mode::Connect => {
                let address = self.message.as_deref().unwrap_or("127.0.0.1:9");
                let got = match std::net::TcpStream::connect(address) {
                    Ok(_) => "connected".to_owned(),
                    Err(error) => format!("error: {error}"),
                };
                event.set_header("x-hostile-connect", got);
                verdict::forward(event)
            }
            Mode::Http => {
                let got = http_get(self.message.as_deref().unwrap_or("127.0.0.1:9"));
                event.set_header("x-hostile-http", got);
                verdict::forward(event)
            }
            Mode::StderrTrap => {
                eprintln!("uncaught exception: TypeError: hostile is not a function");
                trap()
            }
            Mode::Count => {
                event.set_header("x-hostile-count", self.handled.get().to_string());
                verdict::forward(event)
            }
            Mode::BadFanOut => verdict::fan_out([(
                self.destination.as_deref().unwrap_or("no-such-destination"),
                event,
            )]),
            Mode::Reject => verdict::reject(
                self.status.unwrap_or(403),
                self.message
                    .as_deref()
                    .unwrap_or("rejected by hostile plugin"),
            ),
        })
    }
}

export_plugin!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_router_sdk::serde_json::json;

    fn handle(config: Value) -> Result<Verdict, String> {
        Hostile::configure(config)?.handle(Event::from_body("{}"))
    }

    #[test]
    fn harmless_modes() {
        assert_eq!(
            handle(json!({})).unwrap(),
            verdict::forward(Event::from_body("{}"))
        );
        assert_eq!(handle(json!({"mode": "error"})).unwrap_err(), "boom");
        assert_eq!(
            handle(json!({"mode": "reject", "status": 429, "message": "slow down"})).unwrap(),
            verdict::reject(429, "slow down")
        );
        assert_eq!(
            handle(json!({"mode": "bad-fan-out"})).unwrap(),
            verdict::fan_out([("no-such-destination", Event::from_body("{}"))])
        );
        let Verdict::Forward(event) = handle(json!({"mode": "big-output", "bytes": 1000})).unwrap()
        else {
            panic!()
        };
        assert_eq!(event.body.len(), 1000);
        let Verdict::Forward(event) =
            handle(json!({"mode": "memory", "bytes": 3 * MIB + 5})).unwrap()
        else {
            panic!()
        };
        assert_eq!(event.header("x-hostile-allocated"), Some("3145733"));
        let Verdict::Forward(event) = handle(json!({"mode": "clock"})).unwrap() else {
            panic!()
        };
        let wall: u128 = event.header("x-hostile-wall-ms").unwrap().parse().unwrap();
        assert!(wall > 1_700_000_000_000, "{wall}");
        assert_ne!(event.header("x-hostile-monotonic-ns"), Some("0"));
        assert!(handle(json!({"mode": "configure-error"})).is_err());
        assert!(
            handle(json!({"mode": "nope"}))
                .unwrap_err()
                .contains("unknown variant")
        );
    }
}
