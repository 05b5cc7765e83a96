//! The journal backend (`backend = "journal"`): the in-memory channel stays the dispatch path,
//! and the [`Journal`] underneath is its write-ahead log.
//!
//! An event is written (key `EVENT`, with the names of its destinations) before its enqueue
//! resolves, so a 202 is only ever given for a stored event. Its receipt writes each change of
//! progress (key `PROGRESS`) and, once every destination is final, deletes both; the report that
//! makes a dead-lettered delivery final is written with its letter, as one all-or-nothing batch
//! ([`Receipt::record_with`]). At start every event still in the journal is read back
//! ([`JournalQueue::open`]) and resumed with its progress ([`JournalQueue::resume`]).

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::{
    Acknowledge, DequeueFuture, DestinationId, DispatchQueue, EnqueueError, EnqueueFuture, Holding,
    Holds, MemoryQueue, Progress, QueuedEvent, Receipt, Reported, Target, fresh_targets,
};
use crate::event::Event;
use crate::journal::{Batch, Journal, Key, Recovered, Ticket, codec, space};
use crate::metrics::Metrics;

/// What an `EVENT` record holds besides the event: where it goes, by name (destination
/// indexes change with the config; names are what a restart can match).
#[derive(Debug, Deserialize)]
struct EventHead {
    destinations: Vec<String>,
}

/// [`EventHead`] as written, borrowing the names.
#[derive(Debug, Serialize)]
struct EventHeadRef<'a> {
    destinations: Vec<&'a str>,
}

/// An event read back from the journal at start, not yet queued.
#[derive(Debug)]
pub struct ResumedEvent {
    /// The event.
    pub event: Event,
    /// Its destinations by name, as they were when it was accepted.
    pub destinations: Vec<String>,
    /// Where each destination stood.
    pub progress: Vec<Progress>,
    key: u64,
}

/// The journal-backed dispatch queue.
#[derive(Debug)]
pub struct JournalQueue {
    memory: MemoryQueue,
    journal: Journal,
    /// Destination names by id, written with each event.
    names: ArcSwap<Vec<String>>,
}

/// Reports a held event's progress to the journal.
#[derive(Debug)]
struct JournalAck {
    journal: Journal,
    key: u64,
    /// Whether a `PROGRESS` record may exist (written now, or before a restart), so that the
    /// ack of an event delivered at its first attempt writes one delete, not two.
    progress_written: std::sync::atomic::AtomicBool,
}

impl JournalAck {
    fn new(journal: &Journal, key: u64, progress_written: bool) -> Self {
        Self {
            journal: journal.clone(),
            key,
            progress_written: std::sync::atomic::AtomicBool::new(progress_written),
        }
    }
}

impl JournalAck {
    /// Adds to `batch` the record of `progress` (not all final).
    fn progress_into(&self, progress: &[Progress], batch: &mut Batch) {
        self.progress_written
            .store(true, std::sync::atomic::Ordering::Relaxed);
        batch.put(
            Key {
                space: space::PROGRESS,
                id: self.key,
            },
            &codec::to_bytes(&progress),
            0,
        );
    }

    /// Adds to `batch` the deletes that let the event go.
    fn ack_into(&self, batch: &mut Batch) {
        batch.delete(Key {
            space: space::EVENT,
            id: self.key,
        });
        if self
            .progress_written
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            batch.delete(Key {
                space: space::PROGRESS,
                id: self.key,
            });
        }
    }
}

impl Acknowledge for JournalAck {
    fn progress(&self, progress: &[Progress]) -> Reported {
        let mut batch = Batch::new();
        self.progress_into(progress, &mut batch);
        self.journal.write_detached(batch);
        Reported::Kept
    }

    fn ack(&self) {
        let mut batch = Batch::new();
        self.ack_into(&mut batch);
        self.journal.write_detached(batch);
    }

    fn report_with(&self, progress: &[Progress], mut records: Batch) -> Result<Reported, Batch> {
        if progress.iter().all(|p| p.done) {
            self.ack_into(&mut records);
        } else {
            self.progress_into(progress, &mut records);
        }
        records.all_or_nothing();
        self.journal.write_detached(records);
        Ok(Reported::Kept)
    }
}

/// Events written to the journal and waiting for their write to finish before dispatch gets
/// them. If the request that queued them goes away first, they are handed over anyway once
/// the write finishes (a stored event is delivered, whoever waits for it).
struct Pending {
    memory: MemoryQueue,
    ticket: Option<Ticket>,
    events: Vec<QueuedEvent>,
}

impl Pending {
    async fn finish(mut self) -> Result<(), EnqueueError> {
        let Some(ticket) = self.ticket.take() else {
            return Ok(());
        };
        match ticket.wait().await {
            Ok(()) => {
                for queued in std::mem::take(&mut self.events) {
                    self.memory.send(queued)?;
                }
                Ok(())
            }
            Err(error) => {
                // Releases the places; nothing was promised.
                self.events.clear();
                Err(EnqueueError::Storage(error.to_string()))
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take()
            && !self.events.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let events = std::mem::take(&mut self.events);
            let memory = self.memory.clone();
            runtime.spawn(async move {
                if ticket.wait().await.is_ok() {
                    for queued in events {
                        let _ = memory.send(queued);
                    }
                }
            });
        }
    }
}

impl JournalQueue {
    /// A queue of at most `capacity` held events over `journal`, and the events `recovered`
    /// holds, read back to be resumed. `names` are the destination names by id.
    pub fn open(
        journal: Journal,
        recovered: &mut Recovered,
        capacity: usize,
        names: Vec<String>,
        metrics: Metrics,
        holds: Arc<Holds>,
    ) -> (JournalQueue, Vec<ResumedEvent>) {
        // Progress by event (`None`: a record that does not decode; the event starts over).
        let mut progress: std::collections::HashMap<u64, Option<Vec<Progress>>> = recovered
            .take_space(space::PROGRESS)
            .into_iter()
            .map(|(id, value)| (id, codec::from_bytes(&value).ok()))
            .collect();
        // Records nothing will ever delete: deleted now, so that they do not pin the journal.
        let mut dead = Batch::new();
        let mut resumed = Vec::new();
        for (key, value) in recovered.take_space(space::EVENT) {
            match codec::decode::<EventHead>(&value) {
                Ok((head, event)) => {
                    let mut stood = progress.remove(&key).flatten().unwrap_or_default();
                    stood.resize(head.destinations.len(), Progress::default());
                    resumed.push(ResumedEvent {
                        event,
                        destinations: head.destinations,
                        progress: stood,
                        key,
                    });
                }
                Err(error) => {
                    tracing::error!(key, %error, "journal: an event record does not decode; skipped and deleted");
                    metrics.journal().corrupt.increment(1);
                    dead.delete(Key {
                        space: space::EVENT,
                        id: key,
                    });
                    if progress.remove(&key).is_some() {
                        dead.delete(Key {
                            space: space::PROGRESS,
                            id: key,
                        });
                    }
                }
            }
        }
        // Progress of no event (its event's record was lost to damage).
        for &key in progress.keys() {
            dead.delete(Key {
                space: space::PROGRESS,
                id: key,
            });
        }
        if !progress.is_empty() {
            tracing::warn!(
                records = progress.len(),
                "journal: progress records of no event deleted"
            );
        }
        journal.write_detached(dead);
        let queue = JournalQueue {
            memory: MemoryQueue::new(capacity, metrics, holds),
            journal,
            names: ArcSwap::from_pointee(names),
        };
        (queue, resumed)
    }

    /// Queues an event read back at start, beyond the capacity if need be (it was promised).
    /// `destinations` are its destinations' ids now, by position (`None`: no longer in the
    /// config; such a position must already be final in `resumed.progress`). `letters`, the
    /// records of the dead letters of positions made final at start, are written in one
    /// all-or-nothing batch with the progress that says so (or the event's deletes).
    pub fn resume(
        &self,
        resumed: ResumedEvent,
        destinations: &[Option<DestinationId>],
        letters: Batch,
    ) {
        self.memory.reserve(1, true);
        let slot = self.memory.slot();
        // Places in the caps of the destinations still to deliver to (promised: taken past
        // the caps if need be).
        let taken: Vec<Option<DestinationId>> = resumed
            .progress
            .iter()
            .zip(destinations)
            .map(|(progress, &destination)| destination.filter(|_| !progress.done))
            .collect();
        let reserved: Vec<DestinationId> = taken.iter().flatten().copied().collect();
        let _ = self.memory.holds().reserve(&reserved, true);
        let holding = Holding::new(self.memory.holds(), taken, &resumed.event);
        let targets: Vec<Target> = resumed
            .progress
            .iter()
            .zip(destinations)
            .enumerate()
            .filter(|(_, (progress, _))| !progress.done)
            .filter_map(|(position, (&progress, destination))| {
                Some(Target {
                    position,
                    destination: (*destination)?,
                    progress,
                })
            })
            .collect();
        let ack = JournalAck::new(&self.journal, resumed.key, true);
        if targets.is_empty() || !letters.is_empty() {
            // The journal keeps these records: never given back.
            let _ = ack.report_with(&resumed.progress, letters);
        }
        if targets.is_empty() {
            return;
        }
        let receipt = Receipt::new(Some(Box::new(ack)), resumed.progress, slot, holding);
        let _ = self.memory.send(QueuedEvent {
            event: resumed.event,
            targets,
            receipt,
        });
    }

    /// Writes the events and queues them once written, all or none.
    fn store(&self, events: Vec<(Event, Vec<DestinationId>)>) -> Result<Pending, EnqueueError> {
        let places = self.memory.admit(&events)?;
        let mut batch = Batch::new();
        let mut queued = Vec::with_capacity(events.len());
        let names = self.names.load();
        for ((event, destinations), (slot, holding)) in events.into_iter().zip(places) {
            let key = self.journal.next_id();
            let head = EventHeadRef {
                destinations: destinations
                    .iter()
                    .map(|&id| names.get(id).map_or("", String::as_str))
                    .collect(),
            };
            batch.put_with(
                Key {
                    space: space::EVENT,
                    id: key,
                },
                0,
                |out| codec::encode(&head, &event, out),
            );
            let ack = JournalAck::new(&self.journal, key, false);
            let progress = vec![Progress::default(); destinations.len()];
            queued.push(QueuedEvent {
                targets: fresh_targets(&destinations),
                event,
                receipt: Receipt::new(Some(Box::new(ack)), progress, slot, holding),
            });
        }
        let Some(ticket) = self.journal.try_write(batch) else {
            // Logged by the caller: the ingress's refusal log writes one line per route, not
            // one per refused event.
            return Err(EnqueueError::NoSpace("journal"));
        };
        Ok(Pending {
            memory: self.memory.clone(),
            ticket: Some(ticket),
            events: queued,
        })
    }
}

impl DispatchQueue for JournalQueue {
    fn enqueue(&self, event: Event, destinations: Vec<DestinationId>) -> EnqueueFuture<'_> {
        self.enqueue_all(vec![(event, destinations)])
    }

    fn enqueue_all(&self, events: Vec<(Event, Vec<DestinationId>)>) -> EnqueueFuture<'_> {
        let pending = self.store(events);
        Box::pin(async move { pending?.finish().await })
    }

    fn dequeue(&self) -> DequeueFuture<'_> {
        self.memory.dequeue()
    }

    fn try_dequeue(&self) -> Option<QueuedEvent> {
        self.memory.try_dequeue()
    }

    fn held(&self) -> usize {
        self.memory.held()
    }

    fn queued(&self) -> usize {
        self.memory.queued()
    }

    fn drain(&self) -> Vec<QueuedEvent> {
        self.memory.drain()
    }

    fn close(&self) {
        self.memory.close();
    }

    fn durable(&self) -> bool {
        true
    }

    fn add_destination(&self, name: &str) {
        self.names.rcu(|names| {
            let mut names = Vec::clone(names);
            names.push(name.to_owned());
            names
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Fsync, JournalOptions};

    fn options() -> JournalOptions {
        JournalOptions {
            fsync: Fsync::Always,
            max_bytes: 1 << 20,
        }
    }

    /// What the journal in `dir` holds: dead letters, events, and each event's progress.
    async fn held(dir: &std::path::Path, metrics: &Metrics) -> (usize, usize, Vec<Vec<Progress>>) {
        let (journal, mut recovered) = Journal::open(dir, options(), metrics).expect("reopen");
        let letters = recovered.take_space(space::DEAD_LETTER).len();
        let events = recovered.take_space(space::EVENT).len();
        let progress = recovered
            .take_space(space::PROGRESS)
            .into_iter()
            .map(|(_, value)| codec::from_bytes(&value).expect("progress decodes"))
            .collect();
        journal.close().await.expect("closed");
        (letters, events, progress)
    }

    /// Issue #20, item 2: a dead letter handed with the report that finishes its delivery is
    /// written with it, for the first of two destinations (with its progress) and for the last
    /// (with the event's deletes).
    #[tokio::test]
    async fn a_letter_is_written_with_the_report_that_finishes_its_delivery() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::new();
        let (journal, mut recovered) =
            Journal::open(dir.path(), options(), &metrics).expect("open");
        let holds = Arc::new(Holds::new(
            vec![("a".into(), 10), ("b".into(), 10)],
            &metrics,
        ));
        let (queue, _) = JournalQueue::open(
            journal.clone(),
            &mut recovered,
            10,
            vec!["a".into(), "b".into()],
            metrics.clone(),
            holds,
        );
        let event = Event::for_test("e1", "r", bytes::Bytes::from_static(b"body"));
        queue.enqueue(event, vec![0, 1]).await.expect("stored");
        let queued = queue.dequeue().await.expect("the event");
        let letter = |journal: &Journal| {
            let mut records = Batch::new();
            records.put(
                Key {
                    space: space::DEAD_LETTER,
                    id: journal.next_id(),
                },
                b"letter",
                0,
            );
            records
        };
        let done = Progress {
            attempts: 3,
            next_attempt_ms: 0,
            done: true,
        };
        let reported = queued.receipt.record_with(0, done, letter(&journal));
        assert_eq!(reported.ok(), Some(Reported::Kept));
        journal.close().await.expect("closed");
        assert_eq!(
            held(dir.path(), &metrics).await,
            (1, 1, vec![vec![done, Progress::default()]]),
            "the first letter, with the event's progress"
        );

        let (journal, mut recovered) =
            Journal::open(dir.path(), options(), &metrics).expect("open");
        let holds = Arc::new(Holds::new(
            vec![("a".into(), 10), ("b".into(), 10)],
            &metrics,
        ));
        let (queue, mut resumed) = JournalQueue::open(
            journal.clone(),
            &mut recovered,
            10,
            vec!["a".into(), "b".into()],
            metrics.clone(),
            holds,
        );
        queue.resume(
            resumed.pop().expect("the event"),
            &[Some(0), Some(1)],
            Batch::new(),
        );
        let queued = queue.dequeue().await.expect("the event");
        assert_eq!(queued.targets.len(), 1, "only b is left");
        let reported = queued.receipt.record_with(1, done, letter(&journal));
        assert_eq!(reported.ok(), Some(Reported::Kept));
        journal.close().await.expect("closed");
        assert_eq!(
            held(dir.path(), &metrics).await,
            (2, 0, vec![]),
            "the second letter, with the event's deletes"
        );
    }

    /// Issue #20, item 3: an event record that does not decode, and progress records with no
    /// event, are deleted at start rather than pinning the journal for good.
    #[tokio::test]
    async fn records_nothing_would_ever_delete_are_deleted_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::new();
        let (journal, _) = Journal::open(dir.path(), options(), &metrics).expect("open");
        let key = |space, id| Key { space, id };
        let mut batch = Batch::new();
        batch
            .put(key(space::EVENT, 1), b"not an event", 0)
            .put(
                key(space::PROGRESS, 1),
                &codec::to_bytes(&[Progress::default()]),
                0,
            )
            .put(
                key(space::PROGRESS, 2),
                &codec::to_bytes(&[Progress::default()]),
                0,
            );
        journal
            .try_write(batch)
            .expect("room")
            .wait()
            .await
            .expect("stored");
        journal.close().await.expect("closed");

        let (journal, mut recovered) =
            Journal::open(dir.path(), options(), &metrics).expect("reopen");
        let holds = Arc::new(Holds::new(Vec::new(), &metrics));
        let (_queue, resumed) = JournalQueue::open(
            journal.clone(),
            &mut recovered,
            10,
            Vec::new(),
            metrics.clone(),
            holds,
        );
        assert!(resumed.is_empty());
        journal.close().await.expect("closed");

        let (journal, mut recovered) =
            Journal::open(dir.path(), options(), &metrics).expect("third open");
        assert!(recovered.take_space(space::EVENT).is_empty());
        assert!(recovered.take_space(space::PROGRESS).is_empty());
        journal.close().await.expect("closed");
    }
}
