//! The dispatch queue between ingress and delivery, and its contract: an event stays owned by
//! the queue until each of its destinations has a final outcome.
//!
//! Ingress hands the queue an event and the destinations it goes to; the answer is the
//! promise behind `202 Accepted` (for the journal, the event is on disk). Dispatch takes
//! [`QueuedEvent`]s off it, each with a [`Receipt`], and reports through the receipt every
//! change of a destination's [`Progress`] (attempts made, when the next one is due) and each
//! final outcome (delivered, or dead-lettered). Once every destination is final the receipt
//! acknowledges the event and the queue lets it go. An event whose receipt is dropped before
//! that (the process stopped) is not acknowledged: a durable backend delivers it again, resuming
//! its progress. This is the contract a distributed backend implements too: ack on final
//! outcome, redeliver what was never acked.
//!
//! A backend may also take an event back when an attempt failed ([`Reported::Returned`]): it
//! hands the event out again when the next attempt is due, to this router or another, and
//! dispatch lets its copy go. That is how a shared stream keeps retries in the stream.
//!
//! Backends: [`memory`] (in this process only: a bounded, lock-free MPMC channel),
//! [`journal`] (the same channel, over the write-ahead journal) and [`nats`] (a NATS JetStream
//! stream shared by several routers).
//!
//! Capacity counts every event the router *holds*, not only those waiting in the channel: an
//! event keeps its [`Slot`] until its last delivery has finished (delivered or dead-lettered).
//! So `queue_capacity` bounds memory even while deliveries wait for retries.

mod holds;
mod journal;
mod memory;
pub mod nats;

pub use holds::{Holding, Holds, held_caps};
pub use journal::{JournalQueue, ResumedEvent};
pub use memory::MemoryQueue;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::journal::Batch;
use crate::metrics::Metrics;

/// Index of a destination in the router's destination table.
pub type DestinationId = usize;

/// Where one destination of an event stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix milliseconds; 0: now).
    pub next_attempt_ms: u64,
    /// Whether the destination has a final outcome (delivered or dead-lettered).
    pub done: bool,
}

/// One destination of a dequeued event still to be delivered.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The destination's place in the event's list (what [`Receipt::record`] takes).
    pub position: usize,
    /// The destination.
    pub destination: DestinationId,
    /// Where it stands (attempts resumed from before a restart, if any).
    pub progress: Progress,
}

/// An event handed to dispatch, with what is left to deliver and its receipt.
#[derive(Debug)]
pub struct QueuedEvent {
    /// The event.
    pub event: Event,
    /// Destinations without a final outcome.
    pub targets: Vec<Target>,
    /// Where dispatch reports progress; acknowledges the event when every target is final.
    pub receipt: Receipt,
}

/// What a backend did with a progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// Recorded; dispatch keeps the event and makes the next attempt when it is due.
    Kept,
    /// The backend took the event back: it hands it out again when the next attempt is due
    /// (to this router or another), and dispatch lets its copy go without acknowledging it.
    Returned,
}

/// A backend's word that an event's delivery is over without another attempt: dispatch
/// dead-letters it with this reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status of the last attempt, if the destination answered.
    pub last_status: Option<u16>,
    /// Why the delivery is over (the letter's `last_error`).
    pub reason: String,
}

/// What a backend does with a held event's progress reports.
pub trait Acknowledge: Send + Sync + std::fmt::Debug {
    /// Records the progress of every destination of the event (not all final yet), or takes
    /// the event back until its next attempt is due.
    fn progress(&self, progress: &[Progress]) -> Reported;
    /// Every destination is final: the queue lets the event go.
    fn ack(&self);
    /// What the backend decided about the event before handing it out: `Some` when it is to be
    /// dead-lettered at once, without an attempt (NATS: it does not decode, it was handed out
    /// too often without an attempt, or its dead letter could not be stored before).
    fn verdict(&self) -> Option<Verdict> {
        None
    }
    /// The dead letter of `verdict` could not be stored. The backend either takes the event
    /// back, to hand it out again after `delay` with that verdict ([`Reported::Returned`]), or
    /// leaves dispatch to try again after `delay` ([`Reported::Kept`], the default).
    fn unstored(&self, verdict: &Verdict, delay: std::time::Duration) -> Reported {
        let _ = (verdict, delay);
        Reported::Kept
    }
    /// Records `progress` as [`Acknowledge::progress`] does, or, every destination final, lets
    /// the event go as [`Acknowledge::ack`] does, writing `records` (a dead letter) in the same
    /// journal write, all or nothing. A backend that keeps no journal records nothing and gives
    /// `records` back (the default).
    fn report_with(&self, progress: &[Progress], records: Batch) -> Result<Reported, Batch> {
        let _ = progress;
        Err(records)
    }
}

/// Where a receipt's reports go, and the progress of each destination so far.
type Reports = (Box<dyn Acknowledge>, Mutex<Vec<Progress>>);

/// Proof that dispatch holds an event, and where it reports on it. Holds the event's place in
/// the capacity until dropped.
#[derive(Debug)]
pub struct Receipt {
    /// The backend's acknowledger and each destination's progress (`None`: nothing to record).
    state: Option<Reports>,
    /// The event's places in its destinations' `max_held`.
    holding: Holding,
    _slot: Slot,
}

impl Receipt {
    /// A receipt whose reports go to `ack`, starting from `progress` (one per destination),
    /// holding `slot` in the capacity and `holding` in the destinations' caps.
    pub fn new(
        ack: Option<Box<dyn Acknowledge>>,
        progress: Vec<Progress>,
        slot: Slot,
        holding: Holding,
    ) -> Self {
        Self {
            state: ack.map(|ack| (ack, Mutex::new(progress))),
            holding,
            _slot: slot,
        }
    }

    /// The backend's verdict on the event, if it gave one (see [`Acknowledge::verdict`]).
    pub fn verdict(&self) -> Option<Verdict> {
        self.state.as_ref().and_then(|(ack, _)| ack.verdict())
    }

    /// Tells the backend that the dead letter of `verdict` could not be stored (see
    /// [`Acknowledge::unstored`]).
    pub fn unstored(&self, verdict: &Verdict, delay: std::time::Duration) -> Reported {
        self.state
            .as_ref()
            .map_or(Reported::Kept, |(ack, _)| ack.unstored(verdict, delay))
    }

    /// [`Receipt::record`], with `records` written in the same journal write as the report, so
    /// that after a crash either both are on disk or neither (a dead letter and the report that
    /// makes its delivery final). A backend that keeps no journal records nothing and gives
    /// `records` back.
    pub fn record_with(
        &self,
        position: usize,
        progress: Progress,
        records: Batch,
    ) -> Result<Reported, Batch> {
        let Some((ack, state)) = &self.state else {
            return Err(records);
        };
        let mut state = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = state.clone();
        if let Some(slot) = next.get_mut(position) {
            *slot = progress;
        }
        let reported = ack.report_with(&next, records)?;
        *state = next;
        drop(state);
        if progress.done {
            self.holding.release(position);
        }
        Ok(reported)
    }

    /// Records where the destination at `position` stands; acknowledges the event once every
    /// destination is final. Reports reach the backend in the order they are made. Says
    /// whether the backend took the event back ([`Reported::Returned`]).
    pub fn record(&self, position: usize, progress: Progress) -> Reported {
        if progress.done {
            self.holding.release(position);
        }
        let Some((ack, state)) = &self.state else {
            return Reported::Kept;
        };
        let mut state = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = state.get_mut(position) {
            *slot = progress;
        }
        // Reported under the lock, so that two destinations' reports keep their order.
        if state.iter().all(|p| p.done) {
            ack.ack();
            Reported::Kept
        } else {
            ack.progress(&state)
        }
    }
}

/// Why an event could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The router holds `queue_capacity` events already.
    #[error("dispatch queue is full")]
    Full,
    /// The store (the journal, the NATS stream) holds `max_bytes` already.
    #[error("the {0} is full (max_bytes)")]
    NoSpace(&'static str),
    /// This destination holds its `max_held` undelivered events already.
    #[error("destination {0:?} holds its max_held events")]
    DestinationFull(String),
    /// The queue no longer accepts events (the router is shutting down).
    #[error("dispatch queue is closed")]
    Closed,
    /// The event could not be stored (the journal's write failed).
    #[error("the event could not be stored: {0}")]
    Storage(String),
}

impl EnqueueError {
    /// What the sender (or the admin API's caller) is told, with a 503 and `Retry-After`.
    pub fn answer(&self) -> String {
        match self {
            EnqueueError::Full => "queue full, retry later".to_owned(),
            EnqueueError::NoSpace(store) => format!("{store} full (max_bytes), retry later"),
            EnqueueError::DestinationFull(name) => {
                format!("destination {name:?} holds its max_held events, retry later")
            }
            EnqueueError::Storage(_) => "the event could not be stored, retry later".to_owned(),
            EnqueueError::Closed => "shutting down, retry later".to_owned(),
        }
    }
}

/// A boxed future returned by [`DispatchQueue::enqueue`].
pub type EnqueueFuture<'a> = Pin<Box<dyn Future<Output = Result<(), EnqueueError>> + Send + 'a>>;

/// A boxed future returned by [`DispatchQueue::dequeue`].
pub type DequeueFuture<'a> = Pin<Box<dyn Future<Output = Option<QueuedEvent>> + Send + 'a>>;

/// A boxed future returned by [`DispatchQueue::flush`].
pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A bounded queue of events awaiting dispatch.
pub trait DispatchQueue: Send + Sync + std::fmt::Debug + 'static {
    /// Queues an event for `destinations`, or says why not. Never waits for room; resolves
    /// once the event is stored as the backend promises (for the journal: per its `fsync`).
    fn enqueue(&self, event: Event, destinations: Vec<DestinationId>) -> EnqueueFuture<'_>;

    /// Queues several events (a plugin's fan-out) all together or none of them: either every
    /// one gets a place in the capacity, or the call fails and nothing is queued.
    fn enqueue_all(&self, events: Vec<(Event, Vec<DestinationId>)>) -> EnqueueFuture<'_>;

    /// Waits for the next event; `None` once the queue is closed and drained.
    fn dequeue(&self) -> DequeueFuture<'_>;

    /// The next event if one is ready now, without waiting: dispatch takes what is ready on
    /// one wake-up.
    fn try_dequeue(&self) -> Option<QueuedEvent>;

    /// Events the router holds (queued or being delivered).
    fn held(&self) -> usize;

    /// Events waiting to be taken off the queue.
    fn queued(&self) -> usize;

    /// Takes every event waiting in the queue, without waiting (at shutdown, once dispatch has
    /// stopped, to count and name what is left). Their receipts are not acknowledged.
    fn drain(&self) -> Vec<QueuedEvent>;

    /// Stops accepting events; waiting `dequeue` calls return what is left, then `None`.
    fn close(&self);

    /// Whether held events outlive the process (so that what shutdown leaves is not lost).
    fn durable(&self) -> bool;

    /// Waits (briefly) until what the queue was told reached its store: at shutdown, after
    /// the last receipts were dropped.
    fn flush(&self) -> FlushFuture<'_> {
        Box::pin(std::future::ready(()))
    }

    /// Learns destination `name`, which a config reload added under the next id. (NATS, whose
    /// destinations each have a consumer made at start, is never told: adding one there is
    /// refused.)
    fn add_destination(&self, _name: &str) {}

    /// Why the queue cannot take events now (its server is away), if so: `/readyz` says it.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// A held event's place in the queue capacity. Dropping it releases the place.
#[derive(Debug)]
pub struct Slot {
    held: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl Slot {
    /// A place already counted in `held` (and in the queue-depth gauge), released on drop.
    pub(crate) fn new(held: Arc<AtomicUsize>, metrics: Metrics) -> Self {
        Self { held, metrics }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
        self.metrics.queue_depth_sub(1);
    }
}

/// The targets of a new event: every destination, nothing attempted yet.
pub(crate) fn fresh_targets(destinations: &[DestinationId]) -> Vec<Target> {
    destinations
        .iter()
        .enumerate()
        .map(|(position, &destination)| Target {
            position,
            destination,
            progress: Progress::default(),
        })
        .collect()
}
