//! The in-memory backend (`backend = "memory"`): a bounded, lock-free MPMC channel. Events are
//! held in this process only; a stop or a crash loses what it holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{
    DequeueFuture, DestinationId, DispatchQueue, EnqueueError, EnqueueFuture, Holding, Holds,
    QueuedEvent, Receipt, Slot, fresh_targets,
};
use crate::event::Event;
use crate::metrics::Metrics;

/// The in-memory dispatch queue: an `async-channel` MPMC channel over a lock-free queue of
/// linked blocks (`concurrent-queue`), with async wake-ups for the workers. Clones share the
/// one queue.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    sender: async_channel::Sender<QueuedEvent>,
    receiver: async_channel::Receiver<QueuedEvent>,
    held: Arc<AtomicUsize>,
    capacity: usize,
    metrics: Metrics,
    holds: Arc<Holds>,
}

impl MemoryQueue {
    /// A queue that holds at most `capacity` events, and at most each destination's cap in
    /// `holds` for that destination.
    pub fn new(capacity: usize, metrics: Metrics, holds: Arc<Holds>) -> Self {
        // The bound is `held` (below), which also counts events past the channel; an unbounded
        // channel grows with use instead of allocating `capacity` slots up front.
        let (sender, receiver) = async_channel::unbounded();
        metrics.set_queue_capacity(capacity);
        Self {
            sender,
            receiver,
            held: Arc::new(AtomicUsize::new(0)),
            capacity,
            metrics,
            holds,
        }
    }

    /// Takes places in the capacity for `events` and in their destinations' caps, all or
    /// none: one [`Slot`] and one [`Holding`] per event.
    pub(crate) fn admit(
        &self,
        events: &[(Event, Vec<DestinationId>)],
    ) -> Result<Vec<(Slot, Holding)>, EnqueueError> {
        if self.sender.is_closed() {
            return Err(EnqueueError::Closed);
        }
        if !self.reserve(events.len(), false) {
            return Err(EnqueueError::Full);
        }
        // Every place becomes a slot first, so an early return below still releases them all.
        let slots: Vec<Slot> = events.iter().map(|_| self.slot()).collect();
        let all: Vec<DestinationId> = events.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        self.holds
            .reserve(&all, false)
            .map_err(EnqueueError::DestinationFull)?;
        Ok(events
            .iter()
            .zip(slots)
            .map(|((event, destinations), slot)| {
                let taken = destinations.iter().copied().map(Some).collect();
                (slot, Holding::new(&self.holds, taken, event))
            })
            .collect())
    }

    /// Most events held at once.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The destinations' caps.
    pub(crate) fn holds(&self) -> &Arc<Holds> {
        &self.holds
    }

    /// Takes `count` places in the capacity at once, or none; each must become a [`Slot`].
    /// `force` takes them even past the capacity (events already promised, read back from a
    /// journal at start).
    pub(crate) fn reserve(&self, count: usize, force: bool) -> bool {
        let mut current = self.held.load(Ordering::Acquire);
        loop {
            let Some(wanted) = current
                .checked_add(count)
                .filter(|&w| force || w <= self.capacity)
            else {
                return false;
            };
            match self.held.compare_exchange_weak(
                current,
                wanted,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.metrics.queue_depth_add(count);
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// The handle of one place taken by [`MemoryQueue::reserve`].
    pub(crate) fn slot(&self) -> Slot {
        Slot::new(Arc::clone(&self.held), self.metrics.clone())
    }

    /// Hands a held event to dispatch.
    pub(crate) fn send(&self, queued: QueuedEvent) -> Result<(), EnqueueError> {
        self.sender.try_send(queued).map_err(|e| match e {
            // An unbounded channel is never full, but never lose the distinction.
            async_channel::TrySendError::Full(_) => EnqueueError::Full,
            async_channel::TrySendError::Closed(_) => EnqueueError::Closed,
        })
    }
}

impl MemoryQueue {
    /// Queues one event: [`MemoryQueue::admit`] and [`MemoryQueue::try_enqueue_all`] for the
    /// common case, without their lists of one (four allocations fewer per event).
    fn try_enqueue(
        &self,
        event: Event,
        destinations: &[DestinationId],
    ) -> Result<(), EnqueueError> {
        if self.sender.is_closed() {
            return Err(EnqueueError::Closed);
        }
        if !self.reserve(1, false) {
            return Err(EnqueueError::Full);
        }
        // The place is a slot first, so the early return below still releases it.
        let slot = self.slot();
        self.holds
            .reserve(destinations, false)
            .map_err(EnqueueError::DestinationFull)?;
        let taken = destinations.iter().copied().map(Some).collect();
        let holding = Holding::new(&self.holds, taken, &event);
        self.send(QueuedEvent {
            targets: fresh_targets(destinations),
            event,
            receipt: Receipt::new(None, Vec::new(), slot, holding),
        })
    }

    fn try_enqueue_all(
        &self,
        events: Vec<(Event, Vec<DestinationId>)>,
    ) -> Result<(), EnqueueError> {
        let places = self.admit(&events)?;
        // With the places reserved, sends cannot find the channel full; only a close racing
        // this call can fail one, and then the rest fail the same way.
        for ((event, destinations), (slot, holding)) in events.into_iter().zip(places) {
            self.send(QueuedEvent {
                event,
                targets: fresh_targets(&destinations),
                receipt: Receipt::new(None, Vec::new(), slot, holding),
            })?;
        }
        Ok(())
    }
}

impl DispatchQueue for MemoryQueue {
    fn enqueue(&self, event: Event, destinations: Vec<DestinationId>) -> EnqueueFuture<'_> {
        let outcome = self.try_enqueue(event, &destinations);
        Box::pin(std::future::ready(outcome))
    }

    fn enqueue_all(&self, events: Vec<(Event, Vec<DestinationId>)>) -> EnqueueFuture<'_> {
        let outcome = self.try_enqueue_all(events);
        Box::pin(std::future::ready(outcome))
    }

    fn dequeue(&self) -> DequeueFuture<'_> {
        Box::pin(async move { self.receiver.recv().await.ok() })
    }

    fn try_dequeue(&self) -> Option<QueuedEvent> {
        self.receiver.try_recv().ok()
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn queued(&self) -> usize {
        self.receiver.len()
    }

    fn drain(&self) -> Vec<QueuedEvent> {
        std::iter::from_fn(|| self.receiver.try_recv().ok()).collect()
    }

    fn close(&self) {
        self.sender.close();
    }

    fn durable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl MemoryQueue {
        fn enqueue1(
            &self,
            event: Event,
            destinations: Vec<DestinationId>,
        ) -> Result<(), EnqueueError> {
            // Through the trait, as the ingress queues an event.
            futures_util::FutureExt::now_or_never(self.enqueue(event, destinations))
                .expect("the memory queue answers at once")
        }
    }

    fn event(n: usize) -> Event {
        Event::for_test(format!("e{n}"), "r", bytes::Bytes::new())
    }

    #[tokio::test]
    async fn capacity_counts_held_events_until_their_slot_drops() {
        let queue = MemoryQueue::new(2, Metrics::new(), Arc::new(Holds::none()));
        queue.enqueue1(event(1), vec![0]).unwrap();
        queue.enqueue1(event(2), vec![0]).unwrap();
        assert!(matches!(
            queue.enqueue1(event(3), vec![0]),
            Err(EnqueueError::Full)
        ));

        // Dequeued but not finished: still held, still full.
        let first = queue.dequeue().await.unwrap();
        assert_eq!(first.event.id, "e1");
        assert!(matches!(
            queue.enqueue1(event(3), vec![0]),
            Err(EnqueueError::Full)
        ));
        drop(first);
        assert_eq!(queue.held(), 1);
        queue.enqueue1(event(3), vec![0]).unwrap();
    }

    #[tokio::test]
    async fn an_event_for_a_full_destination_gives_its_place_back() {
        let metrics = Metrics::new();
        let holds = Holds::new(vec![("a".to_owned(), 1), ("b".to_owned(), 5)], &metrics);
        let queue = MemoryQueue::new(10, metrics, Arc::new(holds));
        queue.enqueue1(event(1), vec![0, 1]).unwrap();
        assert!(matches!(
            queue.enqueue1(event(2), vec![1, 0]),
            Err(EnqueueError::DestinationFull(name)) if name == "a"
        ));
        assert_eq!(queue.held(), 1, "the refused event's place is given back");
        queue.enqueue1(event(3), vec![1]).unwrap();
        let first = queue.dequeue().await.unwrap();
        assert_eq!((first.event.id.as_str(), first.targets.len()), ("e1", 2));
        assert_eq!(queue.dequeue().await.unwrap().event.id, "e3");
    }

    #[tokio::test]
    async fn a_fan_out_is_queued_whole_or_not_at_all() {
        let queue = MemoryQueue::new(3, Metrics::new(), Arc::new(Holds::none()));
        queue.enqueue1(event(1), vec![0]).unwrap();
        let three = vec![
            (event(2), vec![0]),
            (event(3), vec![1]),
            (event(4), vec![2]),
        ];
        assert!(matches!(
            queue.try_enqueue_all(three),
            Err(EnqueueError::Full)
        ));
        assert_eq!(queue.held(), 1, "a refused fan-out takes no place");
        let two = vec![(event(2), vec![0]), (event(3), vec![1])];
        queue.try_enqueue_all(two).unwrap();
        assert_eq!(queue.held(), 3);
        for expected in ["e1", "e2", "e3"] {
            assert_eq!(queue.dequeue().await.unwrap().event.id, expected);
        }
        assert_eq!(queue.held(), 0);
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let queue = MemoryQueue::new(4, Metrics::new(), Arc::new(Holds::none()));
        queue.enqueue1(event(1), vec![0]).unwrap();
        queue.close();
        assert!(matches!(
            queue.enqueue1(event(2), vec![0]),
            Err(EnqueueError::Closed)
        ));
        assert_eq!(queue.dequeue().await.unwrap().event.id, "e1");
        assert!(queue.dequeue().await.is_none());
    }

    #[tokio::test]
    async fn many_producers_never_exceed_capacity() {
        let queue = Arc::new(MemoryQueue::new(
            100,
            Metrics::new(),
            Arc::new(Holds::none()),
        ));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let queue = Arc::clone(&queue);
            tasks.push(tokio::spawn(async move {
                (0..50)
                    .filter(|i| queue.enqueue1(event(t * 100 + i), vec![0]).is_ok())
                    .count()
            }));
        }
        let mut accepted = 0;
        for task in tasks {
            accepted += task.await.unwrap();
        }
        assert_eq!(accepted, 100);
        assert_eq!(queue.held(), 100);
    }
}
