//! The redb candidate (a copy-on-write B-tree in one file): table `events`, id → payload. A
//! commit is one write transaction with `Durability::Immediate` for fsync=always or
//! `Durability::None` for never. Acks are removes; reclaim is `Database::compact`, repeated
//! until it reports nothing left to do.

use crate::store::{Id, OpenReport, Record, Store};
use anyhow::{Context, Result};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use std::path::{Path, PathBuf};

const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const FILE: &str = "events.redb";

/// A redb database file with one table of held events.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    fn commit(
        &self,
        sync: bool,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut tx = self.db.begin_write().context("redb begin_write")?;
        tx.set_durability(if sync {
            Durability::Immediate
        } else {
            Durability::None
        })
        .context("redb set_durability")?;
        {
            let mut table = tx.open_table(EVENTS).context("redb open_table")?;
            f(&mut table)?;
        }
        tx.commit().context("redb commit")
    }
}

impl Store for RedbStore {
    const NAME: &'static str = "redb";

    fn open(dir: &Path, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(Self, OpenReport)> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let db = Database::create(dir.join(FILE)).context("redb open")?;
        let store = Self { db };
        // Make sure the table exists, so a read transaction finds it.
        store.commit(true, |_| Ok(()))?;
        let mut report = OpenReport::default();
        let tx = store.db.begin_read().context("redb begin_read")?;
        let table = tx.open_table(EVENTS).context("redb open_table")?;
        for item in redb::ReadableTable::iter(&table).context("redb iter")? {
            let (key, value) = item.context("redb iterate")?;
            visit(key.value(), value.value());
            report.held += 1;
        }
        drop(table);
        drop(tx);
        Ok((store, report))
    }

    fn append(&mut self, batch: &[Record], sync: bool) -> Result<()> {
        self.commit(sync, |t| {
            for r in batch {
                t.insert(&r.id[..], &r.payload[..]).context("redb insert")?;
            }
            Ok(())
        })
    }

    fn ack(&mut self, ids: &[Id], sync: bool) -> Result<()> {
        self.commit(sync, |t| {
            for id in ids {
                t.remove(&id[..]).context("redb remove")?;
            }
            Ok(())
        })
    }

    fn reclaim(&mut self) -> Result<()> {
        while self.db.compact().context("redb compact")? {}
        Ok(())
    }

    fn tail_file(dir: &Path) -> Result<PathBuf> {
        Ok(dir.join(FILE))
    }

    fn integrity_check(dir: &Path) -> Option<String> {
        let opened = redb::Builder::new()
            .set_check_integrity_on_open(true)
            .create(dir.join(FILE));
        Some(match opened {
            Ok(_) => "open with set_check_integrity_on_open(true) succeeds".to_string(),
            Err(e) => format!("open with set_check_integrity_on_open(true) fails: {e}"),
        })
    }
}
