//! The journal: an embedded, checksummed write-ahead log under everything the router promises to
//! keep — accepted events and their delivery progress, dead letters, the dedup window — so that
//! a crash, a restart or a deploy loses none of it.
//!
//! It is a key-value log: a record puts a value under a [`Key`] (optionally until an expiry) or
//! deletes it; opening reads back every live key. One thread, the group committer
//! ([`commit`]), owns the files ([`log`]): callers encode their records and hand them over, and
//! concurrent writes share one `fdatasync`. The record format is in [`record`]; the directory
//! and the modes of its files in [`directory`]; a fault-injection seam for crash tests in
//! [`faults`].
//!
//! The store is a purpose-built segment log rather than an embedded database: of the stores
//! measured (`docs/benchmarks.md`, "Journal store"), only it skips a damaged record and keeps the
//! rest, reports a torn tail, never panics on damage, and gives disk space back as events finish.

pub mod codec;
mod commit;
mod directory;
mod faults;
mod log;
mod record;

pub use faults::FAULTS_VAR;
pub use log::Damage;
pub use record::Key;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use record::{Op, Record};

use crate::metrics::Metrics;

/// The key spaces: each kind of record the router journals has its own.
pub mod space {
    /// An accepted event and the destinations it goes to.
    pub const EVENT: u8 = 1;
    /// The delivery progress of an event (attempts and next attempt per destination).
    pub const PROGRESS: u8 = 2;
    /// A dead letter.
    pub const DEAD_LETTER: u8 = 3;
    /// A delivery id remembered by a route's dedup window.
    pub const DEDUP: u8 = 4;
    /// An event's inspection record (`crate::inspect`).
    pub const INSPECT: u8 = 5;
}

/// When the journal syncs what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before answering a write: a 202 means the event is on disk. Concurrent writes share one
    /// sync (group commit).
    Always,
    /// At most this long after a write; a write is answered once the OS has it (a process crash
    /// loses nothing, a power cut up to the interval).
    Interval(Duration),
    /// Only when a segment is closed, before one is deleted, and at shutdown (a power cut
    /// loses everything since).
    Never,
}

/// How a journal is opened.
#[derive(Debug, Clone, Copy)]
pub struct JournalOptions {
    /// When to sync.
    pub fsync: Fsync,
    /// Most bytes on disk; past it new events are refused (deletes are always written).
    pub max_bytes: u64,
}

impl JournalOptions {
    /// The size at which a segment is closed: a sixteenth of `max_bytes`, between 64 KiB and
    /// 8 MiB, so that a small journal still has segments to give back.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 16).clamp(64 << 10, 8 << 20)
    }
}

/// Why the journal could not do something.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed. (The OS error is part of the message, not a separate
    /// source, so that a chain printed whole says it once.)
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        cause: std::io::Error,
    },
    /// Another process has the journal open.
    #[error("{} is in use by another router process", path.display())]
    Locked {
        /// The journal directory.
        path: PathBuf,
    },
    /// The data directory may be written by group or others.
    #[error(
        "{} is writable by group or others (mode {mode:o}): refused as the journal's directory (chmod go-w it)",
        path.display()
    )]
    Writable {
        /// The journal directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The journal was closed.
    #[error("the journal is closed")]
    Closed,
}

/// State shared by every handle and the committer.
#[derive(Debug)]
struct Shared {
    max_bytes: u64,
    disk_bytes: AtomicU64,
    /// Bytes handed to the committer and not yet written.
    pending_bytes: AtomicU64,
    next_id: AtomicU64,
}

/// A handle to the journal. Cheap to clone; every clone writes to the same log.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Handle>,
}

/// What every clone of a [`Journal`] shares (one reference count to clone, per held event).
#[derive(Debug)]
struct Handle {
    sender: Sender<commit::Message>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What opening the journal found.
#[derive(Debug)]
pub struct Recovered {
    /// Every live key's value and expiry (Unix ms, 0: none), in key order (within a space,
    /// the order they were written). (Damage found was logged and counted by the open.)
    pub live: BTreeMap<Key, (Vec<u8>, u64)>,
}

impl Recovered {
    /// The live values of one space, in the order they were written.
    pub fn take_space(&mut self, space: u8) -> Vec<(u64, Vec<u8>)> {
        self.take_space_with_expiry(space)
            .into_iter()
            .map(|(id, value, _)| (id, value))
            .collect()
    }

    /// The live values of one space with their expiries, in the order they were written.
    pub fn take_space_with_expiry(&mut self, space: u8) -> Vec<(u64, Vec<u8>, u64)> {
        let keys: Vec<Key> = self
            .live
            .range(
                Key { space, id: 0 }..=Key {
                    space,
                    id: u64::MAX,
                },
            )
            .map(|(key, _)| *key)
            .collect();
        keys.into_iter()
            .filter_map(|key| {
                self.live
                    .remove(&key)
                    .map(|(value, expires)| (key.id, value, expires))
            })
            .collect()
    }
}

/// A record's index entry: its key, op, expiry and encoded length.
type Entry = (Key, Op, u64, u64);

/// Records to write together (one write, one answer).
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    put_bytes: u64,
    /// Whether the records are written as one batch record (see [`Batch::all_or_nothing`]).
    all_or_nothing: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `value` under `key`, live until `expires_ms` (Unix milliseconds; 0: no expiry).
    pub fn put(&mut self, key: Key, value: &[u8], expires_ms: u64) -> &mut Self {
        self.put_with(key, expires_ms, |out| out.extend_from_slice(value))
    }

    /// Puts under `key` the value `write_value` appends to the buffer it is given: the value
    /// is encoded in place.
    pub fn put_with(
        &mut self,
        key: Key,
        expires_ms: u64,
        write_value: impl FnOnce(&mut Vec<u8>),
    ) -> &mut Self {
        let len =
            record::encode_with(Op::Put, key, expires_ms, &mut self.bytes, write_value) as u64;
        self.entries.push((key, Op::Put, expires_ms, len));
        self.put_bytes += len;
        self
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Key) -> &mut Self {
        self.entries.push(log::Log::encode(
            &Record {
                op: Op::Delete,
                key,
                expires_ms: 0,
                value: &[],
            },
            &mut self.bytes,
        ));
        self
    }

    /// Makes the batch one record on disk, so that after a crash (a power cut that kept only
    /// some of its pages, a torn tail) either every record of it is read back or none is.
    pub fn all_or_nothing(&mut self) -> &mut Self {
        self.all_or_nothing = true;
        self
    }

    /// Appends the records of `other` after these (all or nothing if either is).
    pub fn extend(&mut self, other: Batch) -> &mut Self {
        self.bytes.extend_from_slice(&other.bytes);
        self.entries.extend(other.entries);
        self.put_bytes += other.put_bytes;
        self.all_or_nothing |= other.all_or_nothing;
        self
    }

    /// The bytes to append and their index entries: an all-or-nothing batch of several records
    /// wrapped into one batch record.
    fn into_parts(self) -> (Vec<u8>, Vec<Entry>) {
        if !self.all_or_nothing || self.entries.len() < 2 {
            return (self.bytes, self.entries);
        }
        let mut bytes = Vec::with_capacity(record::BATCH_HEADER_BYTES + self.bytes.len());
        let head = record::encode_batch(&self.bytes, &mut bytes);
        let mut entries = Vec::with_capacity(self.entries.len() + 1);
        entries.push((record::BATCH_KEY, Op::Batch, 0, head as u64));
        entries.extend(self.entries);
        (bytes, entries)
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the puts in the batch (what counts against `max_bytes`).
    pub fn put_bytes(&self) -> u64 {
        self.put_bytes
    }
}

/// The answer to a write, to be awaited.
#[derive(Debug)]
pub struct Ticket(tokio::sync::oneshot::Receiver<commit::Answer>);

impl Ticket {
    /// Waits until the write is stored as `fsync` promises.
    pub async fn wait(self) -> Result<(), Arc<JournalError>> {
        self.0
            .await
            .unwrap_or_else(|_| Err(Arc::new(JournalError::Closed)))
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    crate::event::unix_millis(std::time::SystemTime::now())
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and reads back what it holds. Damage is
    /// logged and counted (`webhook_journal_corrupt_records_total`); a directory that cannot be
    /// used, or that another process holds, is an error.
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        metrics: &Metrics,
    ) -> Result<(Journal, Recovered), JournalError> {
        Self::open_with(dir, options, metrics, faults::Faults::from_env())
    }

    /// [`Journal::open`] with the fault seam `faults` (see [`faults`]).
    fn open_with(
        dir: &Path,
        options: JournalOptions,
        metrics: &Metrics,
        faults: Option<faults::Faults>,
    ) -> Result<(Journal, Recovered), JournalError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |cause| JournalError::Io {
                path,
                action,
                cause,
            }
        };
        directory::create(dir)?;
        let lock_path = dir.join("LOCK");
        let lock: File = directory::file_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(cause)) => {
                return Err(io("lock", &lock_path)(cause));
            }
        }
        let journal_metrics = metrics.journal();
        let (log, opened) = log::Log::open(dir, options.segment_bytes(), now_ms(), faults)?;
        for damage in &opened.damage {
            match damage {
                Damage::TornTail { .. } => {
                    tracing::warn!(%damage, "journal: a write cut short by a crash was removed");
                }
                Damage::Corrupt { .. } | Damage::Changed { .. } => {
                    journal_metrics.corrupt.increment(1);
                    tracing::error!(%damage, "journal: damaged records skipped");
                }
            }
        }
        let shared = Arc::new(Shared {
            max_bytes: options.max_bytes,
            disk_bytes: AtomicU64::new(log.disk_bytes()),
            pending_bytes: AtomicU64::new(0),
            next_id: AtomicU64::new(opened.max_id + 1),
        });
        tracing::info!(
            path = %dir.display(),
            live = log.live_keys(),
            bytes = log.disk_bytes(),
            "journal opened"
        );
        let (sender, inbox) = mpsc::channel();
        let thread = {
            let shared = Arc::clone(&shared);
            let fsync = options.fsync;
            std::thread::Builder::new()
                .name("journal".into())
                .spawn(move || {
                    let _lock = lock;
                    commit::run(log, &inbox, &shared, fsync, &journal_metrics);
                })
                .map_err(io("start the writer thread for", dir))?
        };
        let journal = Journal {
            inner: Arc::new(Handle {
                sender,
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        };
        let recovered = Recovered { live: opened.live };
        Ok((journal, recovered))
    }

    /// A new id, larger than any in the journal.
    pub fn next_id(&self) -> u64 {
        self.inner.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes `batch` if its puts fit under `max_bytes`, or returns `None` (nothing written).
    pub fn try_write(&self, batch: Batch) -> Option<Ticket> {
        let size = batch.put_bytes();
        let before = self
            .inner
            .shared
            .pending_bytes
            .fetch_add(size, Ordering::AcqRel);
        let on_disk = self.inner.shared.disk_bytes.load(Ordering::Acquire);
        if on_disk.saturating_add(before).saturating_add(size) > self.inner.shared.max_bytes {
            self.inner
                .shared
                .pending_bytes
                .fetch_sub(size, Ordering::AcqRel);
            return None;
        }
        Some(self.send(batch, size))
    }

    /// Writes `batch` without waiting for an answer; a failure is logged by the journal.
    pub fn write_detached(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let size = batch.put_bytes();
        self.inner
            .shared
            .pending_bytes
            .fetch_add(size, Ordering::AcqRel);
        let (bytes, entries) = batch.into_parts();
        let _ = self
            .inner
            .sender
            .send(commit::Message::Write(commit::Write {
                bytes,
                entries,
                reserved: size,
                done: None,
            }));
    }

    fn send(&self, batch: Batch, reserved: u64) -> Ticket {
        let (done, answer) = tokio::sync::oneshot::channel();
        let (bytes, entries) = batch.into_parts();
        let write = commit::Write {
            bytes,
            entries,
            reserved,
            done: Some(done),
        };
        if self
            .inner
            .sender
            .send(commit::Message::Write(write))
            .is_err()
        {
            self.inner
                .shared
                .pending_bytes
                .fetch_sub(reserved, Ordering::AcqRel);
        }
        Ticket(answer)
    }

    /// Bytes the journal takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.shared.disk_bytes.load(Ordering::Acquire)
    }

    /// Syncs everything written and stops the writer; later writes fail with
    /// [`JournalError::Closed`].
    pub async fn close(&self) -> Result<(), Arc<JournalError>> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let outcome = if self.inner.sender.send(commit::Message::Close(done)).is_ok() {
            answer
                .await
                .unwrap_or_else(|_| Err(Arc::new(JournalError::Closed)))
        } else {
            Ok(())
        };
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // The writer answered the close and returns right after: this join does not wait.
            let _ = thread.join();
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> JournalOptions {
        JournalOptions {
            fsync: Fsync::Always,
            max_bytes: 1 << 20,
        }
    }

    fn put(key: Key, value: &[u8]) -> Batch {
        let mut batch = Batch::new();
        batch.put(key, value, 0);
        batch
    }

    /// Issue #20, item 2: a dead letter and its event's delete written as one all-or-nothing
    /// batch, then cut by a crash anywhere inside the batch's bytes: the end lost (a write cut
    /// short) or the start lost and the end kept (the OS wrote back only the later page).
    /// Neither record is read back; whole, both are.
    #[tokio::test]
    async fn a_batch_cut_anywhere_is_read_back_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::new();
        let event = Key {
            space: space::EVENT,
            id: 1,
        };
        let letter = Key {
            space: space::DEAD_LETTER,
            id: 2,
        };
        let segment = dir.path().join(format!("{:016}.log", 0));
        let data_end = || {
            let data = std::fs::read(&segment).expect("read segment");
            data.iter().rposition(|&b| b != 0).expect("records") + 1
        };
        let (journal, _) = Journal::open(dir.path(), options(), &metrics).expect("open");
        let stored = journal.try_write(put(event, b"event")).expect("room");
        stored.wait().await.expect("the event is stored");
        let start = data_end();
        let mut batch = Batch::new();
        batch
            .put(letter, b"the letter of the event", 0)
            .delete(event)
            .all_or_nothing();
        let stored = journal.try_write(batch).expect("room");
        stored.wait().await.expect("the batch is stored");
        journal.close().await.expect("closed");
        let end = data_end();
        let whole = std::fs::read(&segment).expect("read segment");

        // What a reopen reads back of the letter and the event from `data`.
        let read_back = async |data: &[u8]| {
            let copy = tempfile::tempdir().expect("tempdir");
            std::fs::write(copy.path().join(segment.file_name().expect("name")), data)
                .expect("write segment");
            let (journal, mut recovered) =
                Journal::open(copy.path(), options(), &metrics).expect("reopen");
            let letters = recovered.take_space(space::DEAD_LETTER).len();
            let events = recovered.take_space(space::EVENT).len();
            journal.close().await.expect("closed");
            (letters, events)
        };
        assert_eq!(
            read_back(&whole).await,
            (1, 0),
            "whole: the letter, no event"
        );
        let mut cuts = 0;
        for cut in (start + 1..end).step_by(3) {
            let mut tail_lost = whole.clone();
            tail_lost[cut..end].fill(0);
            assert_eq!(
                read_back(&tail_lost).await,
                (0, 1),
                "bytes {cut}..{end} lost: no letter, the event kept"
            );
            let mut head_lost = whole.clone();
            head_lost[start..cut].fill(0);
            assert_eq!(
                read_back(&head_lost).await,
                (0, 1),
                "bytes {start}..{cut} lost: no letter, the event kept"
            );
            cuts += 1;
        }
        assert!(cuts > 20, "{cuts} cuts tried");
    }

    /// Issue #20, item 2, in the commits where it happens: the append holding a dead letter
    /// fails (EIO), and its event's delete comes in a later commit. The delete must not be
    /// stored without the letter.
    #[tokio::test]
    async fn a_record_is_never_stored_without_the_failed_ones_handed_over_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::new();
        let event = Key {
            space: space::EVENT,
            id: 1,
        };
        let letter = Key {
            space: space::DEAD_LETTER,
            id: 2,
        };
        let faults = faults::Faults::failing_append(dir.path(), 1, space::DEAD_LETTER);
        let (journal, _) =
            Journal::open_with(dir.path(), options(), &metrics, Some(faults)).expect("open");
        let stored = journal.try_write(put(event, b"event")).expect("room");
        stored.wait().await.expect("the event is stored");
        journal.write_detached(put(letter, b"letter"));
        // Answered once the letter's append was tried (with this one, or before it).
        let probe = Key {
            space: space::DEDUP,
            id: 3,
        };
        let _ = journal
            .try_write(put(probe, b"probe"))
            .expect("room")
            .wait()
            .await;
        let mut delete = Batch::new();
        delete.delete(event);
        journal.write_detached(delete);
        journal.close().await.expect("closed");

        let (journal, mut recovered) =
            Journal::open(dir.path(), options(), &metrics).expect("reopen");
        let letters = recovered.take_space(space::DEAD_LETTER);
        let events = recovered.take_space(space::EVENT);
        assert_eq!(
            (letters, events),
            (vec![(2, b"letter".to_vec())], vec![]),
            "the letter was written again, then the event's delete"
        );
        journal.close().await.expect("closed");
    }
}
