//! The fjall candidate (an LSM tree with its own write-ahead journal): one keyspace `events`,
//! id → payload. A commit is one `WriteBatch`; the journal is persisted by hand
//! (`manual_journal_persist`) so the group committer decides: `PersistMode::SyncAll` (fsync) for
//! fsync=always, `PersistMode::Buffer` (to the OS, no fsync) for never. Acks are removes; reclaim
//! flushes the memtable and runs a major compaction so tombstones and old journals go away.

use crate::store::{Id, OpenReport, Record, Store};
use anyhow::{Context, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::{Path, PathBuf};

/// A fjall database with one keyspace of held events.
pub struct FjallStore {
    db: Database,
    events: Keyspace,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore").finish_non_exhaustive()
    }
}

impl FjallStore {
    fn persist(&self, sync: bool) -> Result<()> {
        let mode = if sync {
            PersistMode::SyncAll
        } else {
            PersistMode::Buffer
        };
        self.db.persist(mode).context("fjall persist")
    }
}

impl Store for FjallStore {
    const NAME: &'static str = "fjall";
    const PREALLOCATES: bool = true;

    fn open(dir: &Path, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(Self, OpenReport)> {
        let db = Database::builder(dir)
            .manual_journal_persist(true)
            .open()
            .context("fjall open")?;
        let events = db
            .keyspace("events", KeyspaceCreateOptions::default)
            .context("fjall keyspace")?;
        let mut report = OpenReport::default();
        for guard in events.iter() {
            let (key, value) = guard.into_inner().context("fjall iterate")?;
            visit(&key, &value);
            report.held += 1;
        }
        Ok((Self { db, events }, report))
    }

    fn append(&mut self, batch: &[Record], sync: bool) -> Result<()> {
        let mut b = self.db.batch();
        for r in batch {
            b.insert(&self.events, &r.id[..], &r.payload[..]);
        }
        b.commit().context("fjall batch commit")?;
        self.persist(sync)
    }

    fn ack(&mut self, ids: &[Id], sync: bool) -> Result<()> {
        let mut b = self.db.batch();
        for id in ids {
            b.remove(&self.events, &id[..]);
        }
        b.commit().context("fjall batch commit")?;
        self.persist(sync)
    }

    fn reclaim(&mut self) -> Result<()> {
        self.events
            .rotate_memtable_and_wait()
            .context("fjall flush memtable")?;
        self.events
            .major_compact()
            .context("fjall major compaction")
    }

    fn tail_file(dir: &Path) -> Result<PathBuf> {
        // The journal files are numbered; the highest is the one being appended to.
        newest_numbered(dir)
    }
}

/// The file named by the highest number among the journal files (`<dir>/<n>.jnl`).
fn newest_numbered(dir: &Path) -> Result<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).context("read fjall dir")? {
        let path = entry?.path();
        let n = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        if let (Some(n), Some("jnl")) = (n, path.extension().and_then(|e| e.to_str()))
            && best.as_ref().is_none_or(|(b, _)| n > *b)
        {
            best = Some((n, path));
        }
    }
    best.map(|(_, p)| p)
        .with_context(|| format!("no journal file in {}", dir.display()))
}
