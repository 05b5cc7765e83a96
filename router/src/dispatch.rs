//! Dispatch: takes events off the queue and drives their deliveries to completion.
//!
//! Each destination has a *lane*: a lock-free channel served by `max_in_flight` workers, so a
//! slow destination never holds up another. A failed attempt that may be retried goes to the
//! retry scheduler (a timer wheel, `tokio_util::time::DelayQueue`), which hands it back to its
//! lane when its wait is over; waiting deliveries occupy no worker. Deliveries that fail for
//! good become dead letters.

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
use crate::metrics::{DeliveryTable, Metrics};
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
    /// Delivery metrics by route and destination.
    metrics: DeliveryTable,
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
        let names: Vec<String> = destinations.iter().map(|d| d.name.clone()).collect();
        let connected: Vec<(&str, usize)> = routes
            .iter()
            .flat_map(|route| {
                reachable(route, &names)
                    .into_iter()
                    .map(|destination| (route.id.as_str(), destination))
            })
            .collect();
        let delivery_metrics = DeliveryTable::new(
            metrics,
            routes.iter().map(|route| route.id.as_str()),
            names,
            connected,
        );
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

/// The destinations (by index in `names`) that `route` connects: its own, and those named by
/// a string anywhere in its plugins' configs, where a fan-out finds the names it addresses.
fn reachable(route: &RouteConfig, names: &[String]) -> Vec<usize> {
    fn strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::String(text) => out.push(text),
            serde_json::Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
            serde_json::Value::Object(map) => map.values().for_each(|item| strings(item, out)),
            _ => {}
        }
    }
    let mut named: Vec<&str> = route.destinations.iter().map(String::as_str).collect();
    for plugin in &route.plugins {
        strings(&plugin.config, &mut named);
    }
    names
        .iter()
        .enumerate()
        .filter(|(_, name)| named.contains(&name.as_str()))
        .map(|(id, _)| id)
        .collect()
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
    let metrics = shared.metrics.get(&event.route, delivery.destination);
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
                    waiting.insert(delivery, wait);
                }
                None => break,
            },
        }
    }
    waiting
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    #[test]
    fn a_route_reaches_its_destinations_and_those_its_plugins_name() {
        let text = "[destinations.a]\nurl = \"http://127.0.0.1:1/\"\n\
                    [destinations.b]\nurl = \"http://127.0.0.1:1/\"\n\
                    [destinations.c]\nurl = \"http://127.0.0.1:1/\"\n\
                    [destinations.d]\nurl = \"http://127.0.0.1:1/\"\n\
                    [[routes]]\nid = \"plain\"\npath = \"/p\"\ndestinations = [\"b\"]\n\
                    [[routes]]\nid = \"fan\"\npath = \"/f\"\ndestinations = [\"a\"]\n\
                    [[routes.plugins]]\nmodule = \"fan.wasm\"\n\
                    config = { routes = { x = [\"c\"], d = 1 }, default = \"a\" }\n";
        let config = Config::parse(text, Path::new("t.toml")).expect("valid");
        let names: Vec<String> = config.destinations.keys().cloned().collect();
        assert_eq!(reachable(&config.routes[0], &names), [1]);
        // `d` is a key of the plugin's config, not a name it holds.
        assert_eq!(reachable(&config.routes[1], &names), [0, 2]);
    }
}
