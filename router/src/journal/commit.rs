//! The group committer: one thread owns the log and writes what every caller hands it.
//!
//! It blocks until a write arrives, then takes every write already waiting (up to a bound), puts
//! them on disk with one `write` and, with `fsync = "always"`, one `fdatasync`, and answers each
//! caller. Concurrent callers share a sync; no caller waits for a timer. With `"interval"` the
//! thread syncs at most `fsync_interval` after a write; with `"never"`, at rotation and close.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::log::Log;
use super::record::{Key, Op};
use super::{Fsync, JournalError, Shared};
use crate::metrics::JournalMetrics;

/// Most bytes one commit takes, so that one commit stays bounded.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// How often the log looks for disk space to give back while idle.
const RECLAIM_EVERY: Duration = Duration::from_millis(500);
/// With `fsync = "always"`, how long records nobody waits for (progress, acks, dead-letter
/// deletes) may stay unsynced: they are synced with the next write somebody waits for, or
/// after this. Losing them in a power cut means an event delivered again, never one lost.
const UNAWAITED_SYNC_WITHIN: Duration = Duration::from_millis(100);

/// An answer to a caller: `Ok` once its records are written (and synced, if so configured).
pub(super) type Answer = Result<(), Arc<JournalError>>;

/// What callers send the committer.
pub(super) enum Message {
    /// Records to write.
    Write(Write),
    /// Sync what is written, answer, and stop.
    Close(tokio::sync::oneshot::Sender<Answer>),
}

/// Encoded records, their index entries, and whom to answer.
pub(super) struct Write {
    pub bytes: Vec<u8>,
    pub entries: Vec<(Key, Op, u64, u64)>,
    /// Bytes reserved against `max_bytes` by the caller, released once written.
    pub reserved: u64,
    pub done: Option<tokio::sync::oneshot::Sender<Answer>>,
}

/// Runs the committer until a close or until every sender is gone.
pub(super) fn run(
    mut log: Log,
    inbox: &Receiver<Message>,
    shared: &Shared,
    fsync: Fsync,
    metrics: &JournalMetrics,
) {
    let mut buffer = Vec::new();
    let mut entries = Vec::new();
    let mut waiters = Vec::new();
    let mut reserved = 0u64;
    let mut unsynced_since: Option<Instant> = None;
    let mut last_reclaim = Instant::now();
    let mut close = None;
    metrics.bytes.set(log.disk_bytes() as f64);
    loop {
        let wait = match (fsync, unsynced_since) {
            (Fsync::Interval(every), Some(since)) => every.saturating_sub(since.elapsed()),
            (Fsync::Always, Some(since)) => UNAWAITED_SYNC_WITHIN.saturating_sub(since.elapsed()),
            _ => RECLAIM_EVERY,
        };
        let first = match inbox.recv_timeout(wait) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut next = first;
        while let Some(message) = next.take() {
            match message {
                Message::Write(write) => {
                    buffer.extend_from_slice(&write.bytes);
                    entries.extend(write.entries);
                    reserved += write.reserved;
                    waiters.extend(write.done);
                }
                Message::Close(answer) => {
                    close = Some(answer);
                    break;
                }
            }
            if buffer.len() < MAX_BATCH_BYTES {
                next = inbox.try_recv().ok();
            }
        }
        if !buffer.is_empty() {
            let mut outcome = log.append(&buffer, &entries);
            if outcome.is_ok() {
                metrics.batch_size.record(entries.len() as f64);
                match fsync {
                    Fsync::Always if !waiters.is_empty() => {
                        outcome = timed_sync(&mut log, metrics);
                        // A failed sync leaves the records unsynced, to be synced later.
                        unsynced_since = match outcome {
                            Ok(()) => None,
                            Err(_) => Some(Instant::now()),
                        };
                    }
                    Fsync::Always | Fsync::Interval(_) => {
                        unsynced_since.get_or_insert_with(Instant::now);
                    }
                    Fsync::Never => {}
                }
            }
            let answer: Answer = outcome.map_err(|error| {
                tracing::error!(%error, records = entries.len(), "journal write failed: the events it held were refused");
                metrics.write_errors.increment(1);
                Arc::new(error)
            });
            for waiter in waiters.drain(..) {
                // A caller that went away does not need its answer.
                let _ = waiter.send(answer.clone());
            }
            buffer.clear();
            entries.clear();
            shared.pending_bytes.fetch_sub(reserved, Ordering::AcqRel);
            reserved = 0;
        }
        let sync_within = match fsync {
            Fsync::Interval(every) => every,
            _ => UNAWAITED_SYNC_WITHIN,
        };
        if let Some(since) = unsynced_since
            && (since.elapsed() >= sync_within || close.is_some())
        {
            match timed_sync(&mut log, metrics) {
                Ok(()) => unsynced_since = None,
                Err(error) => {
                    tracing::error!(%error, "journal sync failed; will try again");
                    metrics.write_errors.increment(1);
                    // Still unsynced: tried again after another interval.
                    unsynced_since = Some(Instant::now());
                }
            }
        }
        if last_reclaim.elapsed() >= RECLAIM_EVERY || log.disk_bytes() > shared.max_bytes / 4 * 3 {
            if let Err(error) = log.reclaim(super::now_ms()) {
                tracing::error!(%error, "journal: giving back disk space failed; will try again");
            }
            last_reclaim = Instant::now();
        }
        shared.disk_bytes.store(log.disk_bytes(), Ordering::Release);
        metrics.bytes.set(log.disk_bytes() as f64);
        if let Some(answer) = close.take() {
            let _ = answer.send(log.sync().map_err(Arc::new));
            return;
        }
    }
    if let Err(error) = log.sync() {
        tracing::error!(%error, "journal sync at close failed");
    }
}

fn timed_sync(log: &mut Log, metrics: &JournalMetrics) -> Result<(), JournalError> {
    let started = Instant::now();
    let outcome = log.sync();
    metrics.fsync.record(started.elapsed().as_secs_f64());
    outcome
}
