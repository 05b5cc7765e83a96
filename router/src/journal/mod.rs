//! The journal: an embedded, checksummed write-ahead log under everything the router promises to
//! keep — accepted events and their delivery progress, dead letters, the dedup window — so that
//! a crash, a restart or a deploy loses none of it.
//!
//! It is a key-value log: a record puts a value under a [`Key`] (optionally until an expiry) or
//! deletes it; opening reads back every live key. One thread, the group committer
//! ([`commit`]), owns the files ([`log`]): callers encode their records and hand them over, and
//! concurrent writes share one `fdatasync`. The record format is in [`record`].
//!
//! The store is a purpose-built segment log rather than an embedded database: of the stores
//! measured (`docs/benchmarks.md`, "Journal store"), only it skips a damaged record and keeps the
//! rest, reports a torn tail, never panics on damage, and gives disk space back as events finish.

pub mod codec;
mod commit;
mod log;
mod record;

pub use log::Damage;
pub use record::Key;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
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
    /// Only when a segment is closed and at shutdown.
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
    /// A record read back to be copied differs from what was written.
    #[error("{}: the record at byte {offset} was damaged on disk", path.display())]
    Damaged {
        /// The segment file.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
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

/// Records to write together (one write, one answer).
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    entries: Vec<(Key, Op, u64, u64)>,
    put_bytes: u64,
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
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |cause| JournalError::Io {
                path,
                action,
                cause,
            }
        };
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let lock_path = dir.join("LOCK");
        let lock: File = OpenOptions::new()
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
        let (log, opened) = log::Log::open(dir, options.segment_bytes(), now_ms())?;
        for damage in &opened.damage {
            match damage {
                Damage::TornTail { .. } => {
                    tracing::warn!(%damage, "journal: a write cut short by a crash was removed");
                }
                Damage::Corrupt { .. } => {
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
        let _ = self
            .inner
            .sender
            .send(commit::Message::Write(commit::Write {
                bytes: batch.bytes,
                entries: batch.entries,
                reserved: size,
                done: None,
            }));
    }

    fn send(&self, batch: Batch, reserved: u64) -> Ticket {
        let (done, answer) = tokio::sync::oneshot::channel();
        let write = commit::Write {
            bytes: batch.bytes,
            entries: batch.entries,
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
