//! The event record in the journal, so that it survives a crash or a restart.
//!
//! Each event's record is one journal key (space [`space::INSPECT`]), put again whole when the
//! record changes, with an expiry of its receipt plus `max_age`, and deleted when the record
//! evicts it: the journal never holds more of it than the record does, and gives the space of
//! the older versions back as it reclaims segments. The hot path only sends the event's id to
//! a writer task, which reads the record as it then is (so a burst of changes to one event is
//! one write), and hands the journal one batch per wakeup. Puts count against the journal's
//! `max_bytes` (a full journal skips them: events come first); deletes are always written.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{Mutex, Notify, mpsc};

use super::record::EventRecord;
use super::store::{EventStore, IdHash};
use crate::journal::{Batch, Journal, Key, Recovered, space};
use crate::supervise::Supervisor;

/// Most changes written in one batch.
const BATCH: usize = 4096;

/// A change to write.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// The record of this event, as it now is.
    Save(u128),
    /// Delete this journal key.
    Forget(u64),
}

/// Changes sent and not yet written (the `webhook_inspect_unsaved` gauge, set from it at each
/// render).
#[derive(Debug)]
struct Unsaved {
    count: AtomicUsize,
    /// Woken when `count` reaches 0.
    idle: Notify,
}

impl Unsaved {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn done(&self, n: usize) {
        if self.count.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
    }
}

/// Sends the record's changes to the journal writer.
#[derive(Debug)]
pub(super) struct Saver {
    journal: Journal,
    changes: mpsc::UnboundedSender<Change>,
    unsaved: Arc<Unsaved>,
}

/// The writer's end, until [`start`] runs it.
#[derive(Debug)]
pub(super) struct Inbox(mpsc::UnboundedReceiver<Change>);

impl Saver {
    /// A saver into `journal`, and the inbox its writer reads.
    pub(super) fn new(journal: Journal) -> (Self, Inbox) {
        let (changes, inbox) = mpsc::unbounded_channel();
        let saver = Self {
            journal,
            changes,
            unsaved: Arc::new(Unsaved {
                count: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        };
        (saver, Inbox(inbox))
    }

    /// How many changes are sent and not yet written.
    pub(super) fn unsaved(&self) -> usize {
        self.unsaved.count.load(Ordering::Acquire)
    }

    /// A journal key for a new record.
    pub(super) fn new_key(&self) -> u64 {
        self.journal.next_id()
    }

    /// Writes the record of event `id` as it will be when the writer gets to it.
    pub(super) fn save(&self, id: u128) {
        self.send(Change::Save(id));
    }

    /// Deletes the record under `key` (an evicted event's).
    pub(super) fn forget(&self, key: u64) {
        if key != 0 {
            self.send(Change::Forget(key));
        }
    }

    fn send(&self, change: Change) {
        self.unsaved.add();
        if self.changes.send(change).is_err() {
            self.unsaved.done(1);
        }
    }

    /// Waits until every change sent so far is written (or the writer is gone).
    pub(super) async fn settle(&self) {
        loop {
            let idle = self.unsaved.idle.notified();
            if self.unsaved.count.load(Ordering::Acquire) == 0 || self.changes.is_closed() {
                return;
            }
            idle.await;
        }
    }
}

/// Starts the writer of `store`'s changes under `supervisor`.
pub(super) fn start(store: &Arc<EventStore>, inbox: Inbox, supervisor: &Supervisor) {
    let Some(saver) = store.saver() else {
        return;
    };
    let journal = saver.journal.clone();
    let unsaved = Arc::clone(&saver.unsaved);
    let inbox = Arc::new(Mutex::new(inbox.0));
    let store = Arc::downgrade(store);
    let warned = Arc::new(AtomicBool::new(false));
    supervisor.spawn("inspect_writer", move || {
        run(
            Arc::clone(&inbox),
            Weak::clone(&store),
            journal.clone(),
            Arc::clone(&unsaved),
            Arc::clone(&warned),
        )
    });
}

async fn run(
    inbox: Arc<Mutex<mpsc::UnboundedReceiver<Change>>>,
    store: Weak<EventStore>,
    journal: Journal,
    unsaved: Arc<Unsaved>,
    warned: Arc<AtomicBool>,
) {
    let mut inbox = inbox.lock().await;
    let mut changes = Vec::with_capacity(BATCH);
    loop {
        if inbox.recv_many(&mut changes, BATCH).await == 0 {
            return;
        }
        let Some(store) = store.upgrade() else {
            return;
        };
        let (puts, deletes) = encode(&store, &changes);
        drop(store);
        journal.write_detached(deletes);
        if !puts.is_empty() {
            match journal.try_write(puts) {
                Some(ticket) => {
                    if let Err(error) = ticket.wait().await {
                        tracing::warn!(%error, "inspect: the event record could not be written to the journal");
                    }
                }
                None => {
                    if !warned.swap(true, Ordering::AcqRel) {
                        tracing::warn!(
                            "inspect: the journal is full (queue.max_bytes): event records are kept in memory only until it has room"
                        );
                    }
                }
            }
        }
        unsaved.done(changes.len());
        changes.clear();
    }
}

/// The puts (each saved record once, as it now is, encoded in place in the batch) and deletes
/// of `changes`.
fn encode(store: &EventStore, changes: &[Change]) -> (Batch, Batch) {
    let (mut puts, mut deletes) = (Batch::new(), Batch::new());
    let mut saved = HashSet::with_capacity_and_hasher(changes.len(), IdHash::default());
    for change in changes {
        match *change {
            Change::Save(id) => {
                if !saved.insert(id) {
                    continue;
                }
                store.read(id, |record| {
                    let expires = record.received_ms.saturating_add(store.max_age_ms());
                    puts.put_with(key(record.journal_key), expires, |out| {
                        let start = out.len();
                        if let Err(error) = postcard::to_io(record, &mut *out) {
                            // Not reached (a record has no type postcard cannot write); an
                            // empty value does not decode, and is dropped when read back.
                            out.truncate(start);
                            tracing::warn!(%error, "inspect: an event record does not encode");
                        }
                    });
                });
            }
            Change::Forget(journal_key) => {
                deletes.delete(key(journal_key));
            }
        }
    }
    (puts, deletes)
}

fn key(id: u64) -> Key {
    Key {
        space: space::INSPECT,
        id,
    }
}

/// The records the journal holds, oldest first; undecodable ones are deleted from it.
pub(super) fn recover(recovered: &mut Recovered, journal: &Journal) -> Vec<EventRecord> {
    let mut records = Vec::new();
    let mut undecodable = Batch::new();
    for (journal_key, value) in recovered.take_space(space::INSPECT) {
        match postcard::from_bytes::<EventRecord>(&value) {
            Ok(mut record) => {
                record.journal_key = journal_key;
                records.push(record);
            }
            Err(error) => {
                tracing::warn!(%error, key = journal_key, "inspect: an event record in the journal does not decode; it is dropped");
                undecodable.delete(key(journal_key));
            }
        }
    }
    journal.write_detached(undecodable);
    records.sort_unstable_by_key(|record| (record.received_ms, record.id));
    records
}
