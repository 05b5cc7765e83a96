//! What every candidate store implements ([`Store`]), and the group committer shared by all of
//! them: writers hand a record to one committer thread, which takes everything pending, writes it
//! as one batch with one sync, then wakes every writer of that batch. Nothing waits for a timer:
//! an idle committer blocks on its channel and commits the first record the moment it arrives.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// A record's key: 16 bytes, like a UUIDv7 event id.
pub type Id = [u8; 16];

/// One journal record: an event id and its payload.
#[derive(Debug, Clone)]
pub struct Record {
    /// The event id (the key).
    pub id: Id,
    /// The event body.
    pub payload: Vec<u8>,
}

/// What an open found besides the held records (torn tails, corrupt records), in words.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Records handed to the visitor.
    pub held: u64,
    /// Repairs and skips the store reported itself (empty when it reports none).
    pub notes: Vec<String>,
}

/// A candidate journal store.
pub trait Store: Send + Sized + 'static {
    /// Short name for the table.
    const NAME: &'static str;

    /// Whether the tail file is preallocated (so a torn write leaves zeros, not a short file).
    const PREALLOCATES: bool = false;

    /// Opens (creating if needed) the store in `dir` and hands every held record to `visit`.
    fn open(dir: &Path, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(Self, OpenReport)>;

    /// Writes `batch` as one commit; when `sync`, it is on disk (fsync'd) when this returns.
    fn append(&mut self, batch: &[Record], sync: bool) -> Result<()>;

    /// Marks `ids` done (delete / tombstone) as one commit, synced when `sync`.
    fn ack(&mut self, ids: &[Id], sync: bool) -> Result<()>;

    /// Gives back the disk space of acked records (compaction, deleting segments).
    fn reclaim(&mut self) -> Result<()>;

    /// The file a crash mid-append would leave torn: the one the newest records went to.
    fn tail_file(dir: &Path) -> Result<PathBuf>;

    /// What the store's own integrity check says about `dir`, if it has one beyond opening.
    fn integrity_check(_dir: &Path) -> Option<String> {
        None
    }
}

/// A record waiting for the committer, and where to say it is stored.
struct Pending {
    record: Record,
    done: mpsc::Sender<Outcome>,
}

/// Counts kept by the committer.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitStats {
    /// Commits (each with one sync when syncing).
    pub commits: u64,
    /// Records committed.
    pub records: u64,
}

/// Handle to a running group committer; dropping every [`Submitter`] stops it.
#[derive(Debug)]
pub struct Committer<S> {
    thread: JoinHandle<(S, CommitStats)>,
}

/// Cloneable handle that writers submit records through.
#[derive(Debug, Clone)]
pub struct Submitter {
    tx: mpsc::Sender<Pending>,
}

/// What the committer answers a writer: `Ok` once the record is committed.
type Outcome = Result<(), String>;

/// A writer's own channel for the committer's answers, made once and reused for every record.
pub type Reply = (mpsc::Sender<Outcome>, mpsc::Receiver<Outcome>);

/// A new [`Reply`] channel.
pub fn reply_channel() -> Reply {
    mpsc::channel()
}

/// Largest batch one commit takes, so one commit stays bounded.
const MAX_BATCH: usize = 4096;

impl<S: Store> Committer<S> {
    /// Starts the committer thread over `store`; `sync` chooses fsync=always or never.
    pub fn spawn(mut store: S, sync: bool) -> (Self, Submitter) {
        let (tx, rx) = mpsc::channel::<Pending>();
        let thread = std::thread::spawn(move || {
            let mut stats = CommitStats::default();
            let mut records = Vec::with_capacity(MAX_BATCH);
            let mut waiters = Vec::with_capacity(MAX_BATCH);
            // Block for the first record, then take whatever else is already pending.
            while let Ok(first) = rx.recv() {
                records.push(first.record);
                waiters.push(first.done);
                while records.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => {
                            records.push(p.record);
                            waiters.push(p.done);
                        }
                        Err(_) => break,
                    }
                }
                let outcome = store.append(&records, sync).map_err(|e| format!("{e:#}"));
                stats.commits += 1;
                stats.records += records.len() as u64;
                for w in waiters.drain(..) {
                    // A writer that went away does not need its answer.
                    let _ = w.send(outcome.clone());
                }
                records.clear();
            }
            (store, stats)
        });
        (Self { thread }, Submitter { tx })
    }

    /// Waits for the committer to finish (after every submitter is dropped).
    pub fn join(self) -> Result<(S, CommitStats)> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("committer thread panicked"))
    }
}

impl Submitter {
    /// Submits `record` and blocks until its commit (and sync) is done.
    pub fn append(&self, record: Record, reply: &Reply) -> Result<()> {
        self.tx
            .send(Pending {
                record,
                done: reply.0.clone(),
            })
            .map_err(|_| anyhow::anyhow!("committer stopped"))?;
        reply
            .1
            .recv()
            .map_err(|_| anyhow::anyhow!("committer stopped"))?
            .map_err(anyhow::Error::msg)
    }
}
