//! Dispatch: takes events off the queue and drives their deliveries to completion.
//!
//! Each destination has a *lane*: a lock-free channel served by `max_in_flight` workers, so a
//! slow destination never holds up another. A failed attempt that may be retried goes to the
//! retry scheduler (a timer wheel, `tokio_util::time::DelayQueue`), which hands it back to its
//! lane when its wait is over; waiting deliveries occupy no worker. Deliveries that fail for
//! good become dead letters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

use crate::config::RouteConfig;
use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::deliver::{AttemptOutcome, Deliverer, Destination};
use crate::event::Event;
use crate::metrics::{DeliveryMetrics, Metrics};
use crate::queue::{DestinationId, DispatchQueue, QueuedEvent, Slot};

/// Tasks moving events from the queue into lanes. Moving is cheap (no I/O), so few suffice.
const DISPATCH_TASKS: usize = 2;

/// An event being delivered: shared by its deliveries, and holding its queue slot until the
/// last of them finishes.
#[derive(Debug)]
struct Job {
    event: Event,
    _slot: Slot,
}

/// One event on its way to one destination.
#[derive(Debug)]
struct Delivery {
    job: Arc<Job>,
    destination: DestinationId,
    /// Attempts made so far.
    attempts: u32,
}

/// State shared by every dispatch task.
#[derive(Debug)]
struct Shared {
    destinations: Vec<Destination>,
    lanes: Vec<async_channel::Sender<Delivery>>,
    deliverer: Deliverer,
    dead_letters: Arc<DeadLetterStore>,
    /// Delivery metrics by route id, indexed by destination.
    metrics: HashMap<String, Vec<DeliveryMetrics>>,
    retries: mpsc::UnboundedSender<(Delivery, Duration)>,
}

/// The running dispatch machinery.
#[derive(Debug)]
pub struct Dispatcher {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    scheduler: JoinHandle<DelayQueue<Delivery>>,
    /// Kept so that deliveries still in lanes are counted (not dropped) at shutdown.
    _lanes: Vec<async_channel::Receiver<Delivery>>,
}

impl Dispatcher {
    /// Starts dispatch tasks, one lane per destination and the retry scheduler.
    pub fn start(
        queue: &Arc<dyn DispatchQueue>,
        destinations: Vec<Destination>,
        routes: &[RouteConfig],
        deliverer: Deliverer,
        dead_letters: Arc<DeadLetterStore>,
        metrics: &Metrics,
    ) -> Self {
        let cancel = CancellationToken::new();
        let (lane_senders, lane_receivers): (Vec<_>, Vec<_>) = destinations
            .iter()
            .map(|_| async_channel::unbounded())
            .unzip();
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        // Every (route, destination) pair, so a route may deliver to any destination.
        let delivery_metrics = routes
            .iter()
            .map(|route| {
                let per_destination = destinations
                    .iter()
                    .map(|d| metrics.delivery(&route.id, &d.name))
                    .collect();
                (route.id.clone(), per_destination)
            })
            .collect();
        let shared = Arc::new(Shared {
            destinations,
            lanes: lane_senders,
            deliverer,
            dead_letters,
            metrics: delivery_metrics,
            retries: retry_tx,
        });

        let mut tasks = JoinSet::new();
        for _ in 0..DISPATCH_TASKS {
            tasks.spawn(run_dispatch(
                Arc::clone(queue),
                Arc::clone(&shared),
                cancel.clone(),
            ));
        }
        for (id, receiver) in lane_receivers.iter().enumerate() {
            for _ in 0..shared.destinations[id].max_in_flight {
                tasks.spawn(run_lane_worker(
                    receiver.clone(),
                    Arc::clone(&shared),
                    cancel.clone(),
                ));
            }
        }
        let scheduler = tokio::spawn(run_retry_scheduler(
            retry_rx,
            Arc::clone(&shared),
            cancel.clone(),
        ));
        Self {
            cancel,
            tasks,
            scheduler,
            _lanes: lane_receivers,
        }
    }

    /// Stops dispatch: attempts in flight may finish within `grace`; nothing new starts.
    /// Returns the number of events still held (queued, waiting to retry, or cut off).
    pub async fn stop(mut self, grace: Duration, queue: &dyn DispatchQueue) -> usize {
        self.cancel.cancel();
        let finished = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        // Hold the waiting retries until they are counted.
        let waiting = self.scheduler.await.ok();
        let held = queue.held();
        if !finished {
            tracing::warn!(grace = %humantime::format_duration(grace), "deliveries still in flight after the shutdown grace period were cut off");
            self.tasks.abort_all();
        }
        drop(waiting);
        held
    }
}

/// Moves events from the queue into their destinations' lanes.
async fn run_dispatch(
    queue: Arc<dyn DispatchQueue>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    loop {
        let queued = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            queued = queue.dequeue() => queued,
        };
        let Some(QueuedEvent {
            event,
            destinations,
            slot,
        }) = queued
        else {
            return;
        };
        let job = Arc::new(Job { event, _slot: slot });
        for destination in destinations {
            let delivery = Delivery {
                job: Arc::clone(&job),
                destination,
                attempts: 0,
            };
            // Lanes are unbounded (the queue's slots bound them) and open while `shared` lives.
            let _ = shared.lanes[destination].try_send(delivery);
        }
    }
}

/// Serves one lane: one attempt at a time, so a lane's workers bound its in-flight requests.
async fn run_lane_worker(
    lane: async_channel::Receiver<Delivery>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            delivery = lane.recv() => match delivery {
                Ok(delivery) => delivery,
                Err(_) => return,
            },
        };
        attempt(&shared, delivery).await;
    }
}

/// Makes one attempt and acts on its outcome.
async fn attempt(shared: &Shared, mut delivery: Delivery) {
    let destination = &shared.destinations[delivery.destination];
    let event = &delivery.job.event;
    let metrics = shared
        .metrics
        .get(&event.route)
        .map(|per_destination| &per_destination[delivery.destination]);
    let started = Instant::now();
    let outcome = shared.deliverer.attempt(destination, event).await;
    delivery.attempts += 1;
    if let Some(metrics) = metrics {
        metrics.duration.record(started.elapsed().as_secs_f64());
    }
    let (status, error) = match outcome {
        AttemptOutcome::Delivered { status } => {
            if let Some(metrics) = metrics {
                metrics.delivered.increment(1);
                metrics.attempts.record(f64::from(delivery.attempts));
            }
            tracing::info!(
                event_id = %event.id,
                route = %event.route,
                destination = %destination.name,
                attempts = delivery.attempts,
                status,
                "delivered"
            );
            return;
        }
        AttemptOutcome::Retry {
            status,
            retry_after,
            error,
        } if delivery.attempts < destination.retry.max_attempts.get() => {
            let wait = crate::retry::next_delay(
                &destination.retry,
                delivery.attempts,
                retry_after,
                fastrand::f64(),
            );
            if let Some(metrics) = metrics {
                metrics.retry.increment(1);
            }
            tracing::info!(
                event_id = %event.id,
                route = %event.route,
                destination = %destination.name,
                attempts = delivery.attempts,
                status,
                error = %error,
                retry_in = %humantime::format_duration(wait),
                "delivery failed, will retry"
            );
            // The scheduler lives as long as `shared`; if it is gone we are shutting down.
            let _ = shared.retries.send((delivery, wait));
            return;
        }
        AttemptOutcome::Retry { status, error, .. }
        | AttemptOutcome::Permanent { status, error } => (status, error),
    };
    if let Some(metrics) = metrics {
        metrics.dead_letter.increment(1);
    }
    let letter = DeadLetter {
        id: Event::new_id(),
        event: event.clone(),
        destination: delivery.destination,
        destination_name: destination.name.clone(),
        attempts: delivery.attempts,
        last_status: status,
        last_error: error,
        failed_at: SystemTime::now(),
    };
    tracing::warn!(
        event_id = %event.id,
        route = %event.route,
        destination = %destination.name,
        attempts = delivery.attempts,
        status = ?letter.last_status,
        error = %letter.last_error,
        dead_letter = %letter.id,
        "delivery failed for good: dead-lettered"
    );
    shared.dead_letters.push(letter);
}

/// Holds deliveries waiting for a retry and returns each to its lane when its wait is over.
/// On shutdown it returns the deliveries still waiting, so they can be counted.
async fn run_retry_scheduler(
    mut incoming: mpsc::UnboundedReceiver<(Delivery, Duration)>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> DelayQueue<Delivery> {
    let mut waiting = DelayQueue::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(expired) = std::future::poll_fn(|cx| waiting.poll_expired(cx)), if !waiting.is_empty() => {
                let delivery: Delivery = expired.into_inner();
                let _ = shared.lanes[delivery.destination].try_send(delivery);
            }
            next = incoming.recv() => match next {
                Some((delivery, wait)) => {
                    // Saturating, so that no wait (a destination's `Retry-After: 99999999`, a
                    // config built in code) can overflow the timer wheel and panic.
                    let due = crate::clock::after(Instant::now(), wait);
                    waiting.insert_at(delivery, tokio::time::Instant::from_std(due));
                }
                None => break,
            },
        }
    }
    waiting
}
