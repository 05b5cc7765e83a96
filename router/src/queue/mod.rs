//! The dispatch queue between ingress and delivery.
//!
//! [`DispatchQueue`] is the seam: the in-memory [`MemoryQueue`] (a bounded, lock-free MPMC
//! channel) is the default, and a durable journal or a distributed backend can replace it.
//!
//! Capacity counts every event the router *holds*, not only those waiting in the channel: an
//! event keeps its [`Slot`] until its last delivery has finished (delivered or dead-lettered).
//! So `queue_capacity` bounds memory even while deliveries wait for retries.
//!
//! This file is the contract; each backend has a file of its own: [`memory`].

mod memory;

pub use memory::MemoryQueue;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::event::Event;
use crate::metrics::Metrics;

/// Index of a destination in the router's destination table.
pub type DestinationId = usize;

/// An event waiting for delivery, with the destinations it goes to.
#[derive(Debug)]
pub struct QueuedEvent {
    /// The event.
    pub event: Event,
    /// Destinations to deliver it to.
    pub destinations: Vec<DestinationId>,
    /// The event's place in the queue's capacity, released when this is dropped.
    pub slot: Slot,
}

/// Why an event could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The router holds `queue_capacity` events already.
    #[error("dispatch queue is full")]
    Full,
    /// The queue no longer accepts events (the router is shutting down).
    #[error("dispatch queue is closed")]
    Closed,
}

/// A boxed future returned by [`DispatchQueue::dequeue`].
pub type DequeueFuture<'a> = Pin<Box<dyn Future<Output = Option<QueuedEvent>> + Send + 'a>>;

/// A bounded queue of events awaiting dispatch.
pub trait DispatchQueue: Send + Sync + std::fmt::Debug + 'static {
    /// Queues an event for `destinations`, or says why not. Never waits.
    fn try_enqueue(
        &self,
        event: Event,
        destinations: Vec<DestinationId>,
    ) -> Result<(), EnqueueError>;

    /// Queues several events (a plugin's fan-out) all together or none of them: either every
    /// one gets a place in the capacity, or the call fails and nothing is queued. Never waits.
    fn try_enqueue_all(&self, events: Vec<(Event, Vec<DestinationId>)>)
    -> Result<(), EnqueueError>;

    /// Waits for the next event; `None` once the queue is closed and drained.
    fn dequeue(&self) -> DequeueFuture<'_>;

    /// Events the router holds (queued or being delivered).
    fn held(&self) -> usize;

    /// Takes every event waiting in the queue, without waiting (at shutdown, once dispatch has
    /// stopped, to count and name what is left).
    fn drain(&self) -> Vec<QueuedEvent>;

    /// Stops accepting events; waiting `dequeue` calls return what is left, then `None`.
    fn close(&self);
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
