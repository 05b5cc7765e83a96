//! The group committer: one thread owns the log and writes what every caller hands it.
//!
//! It blocks until a write arrives, then takes every write already waiting (up to a bound), puts
//! them on disk with one `write` and, with `fsync = "always"`, one `fdatasync`, and answers each
//! caller. Concurrent callers share a sync; no caller waits for a timer. With `"interval"` the
//! thread syncs at most `fsync_interval` after a write; with `"never"`, at rotation and close.
//! Whatever the setting, the log syncs before it deletes a segment (see [`super::log`]).

use std::ops::Range;
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

/// Encoded records, their index entries, and whom to answer. A write is appended whole, within
/// one `write` call; an all-or-nothing batch is one batch record in it.
pub(super) struct Write {
    pub bytes: Vec<u8>,
    pub entries: Vec<(Key, Op, u64, u64)>,
    /// Bytes reserved against `max_bytes` by the caller, released once written.
    pub reserved: u64,
    pub done: Option<tokio::sync::oneshot::Sender<Answer>>,
}

/// The writes gathered for one commit.
#[derive(Default)]
struct Gathered {
    bytes: Vec<u8>,
    entries: Vec<(Key, Op, u64, u64)>,
    waiters: Vec<tokio::sync::oneshot::Sender<Answer>>,
    /// Bytes reserved against `max_bytes` by the writes gathered.
    reserved: u64,
    /// Where the writes nobody waits for are (their bytes, their entries, their reservation),
    /// so that a failed append keeps them.
    detached: Vec<(Range<usize>, Range<usize>, u64)>,
}

impl Gathered {
    fn add(&mut self, write: Write) {
        if write.done.is_none() {
            self.detached.push((
                self.bytes.len()..self.bytes.len() + write.bytes.len(),
                self.entries.len()..self.entries.len() + write.entries.len(),
                write.reserved,
            ));
        }
        self.bytes.extend_from_slice(&write.bytes);
        self.entries.extend(write.entries);
        self.reserved += write.reserved;
        self.waiters.extend(write.done);
    }

    /// Forgets every write (they were committed, or answered with a failure); returns the
    /// bytes they reserved.
    fn clear(&mut self) -> u64 {
        self.bytes.clear();
        self.entries.clear();
        self.detached.clear();
        std::mem::take(&mut self.reserved)
    }

    /// After a failed append: keeps only the writes nobody waits for (nobody can be told they
    /// failed), to be appended again before anything handed over after them; returns the bytes
    /// reserved by the others.
    fn keep_detached(&mut self) -> u64 {
        let mut bytes = Vec::new();
        let mut entries = Vec::new();
        let mut kept = 0;
        for (byte_range, entry_range, reserved) in self.detached.drain(..) {
            bytes.extend_from_slice(&self.bytes[byte_range]);
            entries.extend_from_slice(&self.entries[entry_range]);
            kept += reserved;
        }
        if !bytes.is_empty() {
            self.detached.push((0..bytes.len(), 0..entries.len(), kept));
        }
        self.bytes = bytes;
        self.entries = entries;
        let released = self.reserved - kept;
        self.reserved = kept;
        released
    }
}

/// Runs the committer until a close or until every sender is gone.
///
/// Writes are appended in the order they were handed over, and a write nobody waits for is
/// never dropped for a failed append: it is kept and appended again, first, with the next
/// commit. So a record is never on disk without the records handed over before it (a dead
/// letter's event is not deleted without the letter). A failed sync keeps the records
/// unsynced: the sync is tried again.
pub(super) fn run(
    mut log: Log,
    inbox: &Receiver<Message>,
    shared: &Shared,
    fsync: Fsync,
    metrics: &JournalMetrics,
) {
    let mut gathered = Gathered::default();
    let mut unsynced_since: Option<Instant> = None;
    let mut last_reclaim = Instant::now();
    let mut close = None;
    // Whether the last append or sync failed: a failure is logged when it starts.
    let mut failing = false;
    metrics.bytes.set(log.disk_bytes() as f64);
    loop {
        let wait = match (fsync, unsynced_since) {
            (Fsync::Interval(every), Some(since)) => every.saturating_sub(since.elapsed()),
            (Fsync::Always, Some(since)) => UNAWAITED_SYNC_WITHIN.saturating_sub(since.elapsed()),
            _ => RECLAIM_EVERY,
        };
        // Writes kept after a failed append are tried again soon.
        let wait = if gathered.bytes.is_empty() {
            wait
        } else {
            wait.min(UNAWAITED_SYNC_WITHIN)
        };
        let first = match inbox.recv_timeout(wait) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut next = first;
        while let Some(message) = next.take() {
            match message {
                Message::Write(write) => gathered.add(write),
                Message::Close(answer) => {
                    close = Some(answer);
                    break;
                }
            }
            if gathered.bytes.len() < MAX_BATCH_BYTES {
                next = inbox.try_recv().ok();
            }
        }
        if !gathered.bytes.is_empty() {
            let records = gathered.entries.len();
            let outcome = match log.append(&gathered.bytes, &gathered.entries) {
                Ok(()) => {
                    metrics.batch_size.record(records as f64);
                    let stored = match fsync {
                        Fsync::Always if !gathered.waiters.is_empty() => {
                            let synced = timed_sync(&mut log, metrics);
                            // A failed sync leaves the records unsynced, to be synced later.
                            unsynced_since = match synced {
                                Ok(()) => None,
                                Err(_) => Some(Instant::now()),
                            };
                            synced
                        }
                        Fsync::Always | Fsync::Interval(_) => {
                            unsynced_since.get_or_insert_with(Instant::now);
                            Ok(())
                        }
                        Fsync::Never => Ok(()),
                    };
                    stored
                        .map(|()| gathered.clear())
                        .map_err(|error| (error, gathered.clear()))
                }
                Err(error) => Err((error, gathered.keep_detached())),
            };
            let answer: Answer = match outcome {
                Ok(released) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("journal: writing again");
                    }
                    shared.pending_bytes.fetch_sub(released, Ordering::AcqRel);
                    Ok(())
                }
                Err((error, released)) => {
                    shared.pending_bytes.fetch_sub(released, Ordering::AcqRel);
                    metrics.write_errors.increment(1);
                    let first = !std::mem::replace(&mut failing, true);
                    if !gathered.waiters.is_empty() {
                        tracing::error!(
                            %error,
                            records,
                            refused = gathered.waiters.len(),
                            "journal write failed: the events waiting for it were refused"
                        );
                    }
                    if first && !gathered.entries.is_empty() {
                        tracing::error!(
                            %error,
                            kept = gathered.entries.len(),
                            "journal write failed: the records nobody waits for are kept and written again first with the next commit"
                        );
                    }
                    Err(Arc::new(error))
                }
            };
            for waiter in gathered.waiters.drain(..) {
                // A caller that went away does not need its answer.
                let _ = waiter.send(answer.clone());
            }
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
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!(%error, "journal sync failed; will try again");
                    }
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
            for damage in log.take_damage() {
                metrics.corrupt.increment(1);
                tracing::error!(%damage, "journal: a damaged record was dropped");
            }
            last_reclaim = Instant::now();
        }
        shared.disk_bytes.store(log.disk_bytes(), Ordering::Release);
        metrics.bytes.set(log.disk_bytes() as f64);
        if let Some(answer) = close.take() {
            if !gathered.bytes.is_empty() {
                tracing::error!(
                    records = gathered.entries.len(),
                    "journal: records that could not be written are dropped at close"
                );
            }
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
