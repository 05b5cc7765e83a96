//! Dispatch: takes events off the queue and drives their deliveries to completion. This file
//! owns the lifecycle (start, the shutdown count, whether anything is left to do) and the
//! tasks that move events from the queue into lanes.
//!
//! - [`lane`]: each destination's channel, served by `max_in_flight` workers (paced by its
//!   `rate`, if any);
//! - [`outcome`]: one attempt, and what its outcome makes of the delivery (final, retried,
//!   dead-lettered);
//! - [`scheduler`]: the retry scheduler, which hands waiting deliveries back to their lanes.
//!
//! Every task runs under the [`Supervisor`], and what a task holds lives outside it, so that
//! neither a panic nor the end of the shutdown grace period loses a delivery: a lane worker
//! keeps its current delivery in an in-flight slot (put back in the lane, or dead-lettered once
//! out of attempts, when the attempt panicked), and the scheduler keeps its waiting deliveries
//! and its inbox in a state the next run takes over. At shutdown whatever is left in the queue,
//! the lanes, the slots and the scheduler is counted, each event once.
// Time arithmetic meets configured and remote values here: no operator may overflow.
#![warn(clippy::arithmetic_side_effects)]

mod lane;
mod outcome;
mod scheduler;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::lane::Lane;
use self::scheduler::{RetrySender, Waiting, WaitingSlot};
use crate::config::RouteConfig;
use crate::delivery::attempt::{Deliverer, Destination};
use crate::delivery::dead_letter::DeadLetterStore;
use crate::delivery::destinations::DestinationBoard;
use crate::delivery::rate::Pace;
use crate::event::Event;
use crate::inspect::Inspector;
use crate::metrics::{DeliveryTable, Metrics};
use crate::queue::{DestinationId, DispatchQueue, Progress, QueuedEvent, Receipt, Verdict};
use crate::supervise::{Supervisor, TestFaults};

/// Tasks moving events from the queue into lanes. Moving is cheap (no I/O), so few suffice.
const DISPATCH_TASKS: usize = 2;

/// An event being delivered: shared by its deliveries, and holding its queue receipt (and so
/// its place in the capacity) until the last of them finishes.
#[derive(Debug)]
struct Job {
    event: Event,
    receipt: Receipt,
}

/// One event on its way to one destination.
#[derive(Debug, Clone)]
struct Delivery {
    job: Arc<Job>,
    destination: DestinationId,
    /// The destination's place in the event's list, for the receipt.
    position: usize,
    /// Attempts made so far.
    attempts: u32,
    /// Set when the delivery is over and only its dead letter is left to store: the lane
    /// dead-letters it without an attempt.
    verdict: Option<Verdict>,
}

impl Delivery {
    /// Reports to the queue that this delivery is final (delivered or dead-lettered).
    fn finished(&self) {
        self.job
            .receipt
            .record(self.position, self.final_progress());
    }

    /// Where this delivery stands once final.
    fn final_progress(&self) -> Progress {
        Progress {
            attempts: self.attempts,
            next_attempt_ms: 0,
            done: true,
        }
    }
}

/// Each destination's settings by id, which a config reload may replace: an attempt reads
/// them as it starts.
pub type LiveDestinations = Arc<[ArcSwap<Destination>]>;

/// State shared by every dispatch task.
#[derive(Debug)]
struct Shared {
    destinations: LiveDestinations,
    /// Each destination's circuit breaker and live state, by id.
    board: Arc<DestinationBoard>,
    /// Each destination's lane, by id.
    lanes: Vec<Lane>,
    deliverer: Deliverer,
    dead_letters: Arc<DeadLetterStore>,
    /// Delivery metrics by route and destination.
    metrics: DeliveryTable,
    /// The retry scheduler's inbox.
    retries: RetrySender,
    /// Test-only: lane workers panic on events whose body contains this.
    panic_on_body: Option<Vec<u8>>,
    /// Deliveries taken off the queue and not yet final.
    outstanding: AtomicUsize,
    /// Deliveries waiting in the retry scheduler for their next attempt.
    parked: AtomicUsize,
    /// When the earliest of them is due.
    earliest_due: Mutex<Option<Instant>>,
    /// The event record: each delivery's attempts and outcome.
    inspect: Inspector,
}

impl Shared {
    /// A delivery is final (delivered or dead-lettered).
    fn finish(&self, delivery: &Delivery) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        delivery.finished();
    }
}

/// The running dispatch machinery.
#[derive(Debug)]
pub struct Dispatcher {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// The retry scheduler's state, so that the deliveries waiting in it are counted at
    /// shutdown.
    waiting: WaitingSlot,
    shared: Arc<Shared>,
}

impl Dispatcher {
    /// Each destination's settings, for a config reload to replace (new attempts use them).
    pub fn destinations(&self) -> LiveDestinations {
        Arc::clone(&self.shared.destinations)
    }
}

/// What dispatch held when it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leftovers {
    /// Ids of the events not delivered (queued, in a lane, waiting to retry, or cut off), one
    /// per held event: the events of a fan-out share their original's id, so it may repeat.
    pub event_ids: Vec<String>,
}

impl Dispatcher {
    /// Starts dispatch tasks, one lane per destination and the retry scheduler, each under
    /// `supervisor`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        queue: &Arc<dyn DispatchQueue>,
        destinations: Vec<Destination>,
        routes: &[RouteConfig],
        deliverer: Deliverer,
        dead_letters: Arc<DeadLetterStore>,
        board: Arc<DestinationBoard>,
        metrics: &Metrics,
        supervisor: &Supervisor,
        faults: &TestFaults,
        inspect: Inspector,
    ) -> Self {
        let cancel = CancellationToken::new();
        let (retry_tx, waiting) = Waiting::new();
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
            board,
            lanes: destinations
                .iter()
                .map(|d| Lane::new(Pace::new(metrics.destination_throttled(&d.name))))
                .collect(),
            destinations: destinations
                .into_iter()
                .map(ArcSwap::from_pointee)
                .collect(),
            deliverer,
            dead_letters,
            metrics: delivery_metrics,
            retries: retry_tx,
            panic_on_body: faults.panic_on_body.clone().map(String::into_bytes),
            outstanding: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            earliest_due: Mutex::new(None),
            inspect,
        });

        let mut tasks = Vec::new();
        for _ in 0..DISPATCH_TASKS {
            let (queue, shared, cancel) = (Arc::clone(queue), Arc::clone(&shared), cancel.clone());
            tasks.push(supervisor.spawn("dispatch", move || {
                run_dispatch(Arc::clone(&queue), Arc::clone(&shared), cancel.clone())
            }));
        }
        for id in 0..shared.lanes.len() {
            for _ in 0..shared.destinations[id].load().max_in_flight {
                tasks.push(Lane::spawn_worker(&shared, id, supervisor, &cancel));
            }
        }
        {
            let (waiting, shared, cancel) =
                (Arc::clone(&waiting), Arc::clone(&shared), cancel.clone());
            tasks.push(supervisor.spawn("retry_scheduler", move || {
                scheduler::run_retry_scheduler(
                    Arc::clone(&waiting),
                    Arc::clone(&shared),
                    cancel.clone(),
                )
            }));
        }
        Self {
            cancel,
            tasks,
            waiting,
            shared,
        }
    }

    /// Whether nothing can happen before `deadline`: no event waits in `queue`, and every
    /// delivery taken off it waits for a retry due after `deadline` (none is in a lane or in
    /// flight). Shutdown need not wait for the end of its grace period then.
    pub fn settled(&self, deadline: Instant, queue: &dyn DispatchQueue) -> bool {
        queue.queued() == 0
            && self.shared.outstanding.load(Ordering::Acquire)
                == self.shared.parked.load(Ordering::Acquire)
            && lock(&self.shared.earliest_due).is_none_or(|due| due > deadline)
    }

    /// Starts no new attempt from now on; the attempts in flight go on, and [`Dispatcher::stop`]
    /// waits for them. For a stop that leaves the queued events to the next process.
    pub fn stop_starting(&self) {
        self.cancel.cancel();
    }

    /// Stops dispatch: attempts in flight may finish until `deadline`; nothing new starts.
    /// Returns the events still held (queued, in a lane, waiting to retry, or cut off),
    /// including the retries of attempts that failed while stopping.
    pub async fn stop(
        self,
        deadline: tokio::time::Instant,
        queue: &dyn DispatchQueue,
    ) -> Leftovers {
        self.cancel.cancel();
        let mut pending = self.tasks;
        let finished = tokio::time::timeout_at(deadline, async {
            while let Some(task) = pending.last_mut() {
                let _ = task.await;
                pending.pop();
            }
        })
        .await
        .is_ok();
        if !finished {
            tracing::warn!(
                "deliveries still in flight at the end of the shutdown grace period were cut off"
            );
            for task in &pending {
                task.abort();
            }
            // A task's handle finishes once the task is dropped: nothing moves after this.
            for task in pending {
                let _ = task.await;
            }
        }
        // Every task has ended: what is left is at rest, each delivery in exactly one place.
        let mut held: Vec<Delivery> = Vec::new();
        let queued = queue.drain();
        // One entry per held event: each queued one, and each job however many of its
        // deliveries are left. (Jobs, not ids: a fan-out's events share their original's id.)
        let mut ids: Vec<String> = queued.iter().map(|q| q.event.id.clone()).collect();
        for lane in &self.shared.lanes {
            lane.drain(&mut held);
        }
        Waiting::drain(&self.waiting, &mut held);
        let mut jobs = BTreeSet::new();
        for delivery in &held {
            if jobs.insert(Arc::as_ptr(&delivery.job) as usize) {
                ids.push(delivery.job.event.id.clone());
            }
        }
        let still_held = queue.held();
        if still_held != ids.len() {
            tracing::warn!(
                still_held,
                found = ids.len(),
                "the events found at shutdown do not match the queue's count"
            );
        }
        drop((queued, held));
        Leftovers { event_ids: ids }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
            targets,
            receipt,
        }) = queued
        else {
            return;
        };
        let verdict = receipt.verdict();
        // Lazy: the names are only read while the event record is on.
        let names = targets
            .iter()
            .map(|t| shared.destinations[t.destination].load().name.clone());
        shared.inspect.queued(&event.id, names);
        let job = Arc::new(Job { event, receipt });
        let now = crate::journal::now_ms();
        shared
            .outstanding
            .fetch_add(targets.len(), Ordering::AcqRel);
        for target in targets {
            let delivery = Delivery {
                job: Arc::clone(&job),
                destination: target.destination,
                position: target.position,
                attempts: target.progress.attempts,
                verdict: verdict.clone(),
            };
            // A delivery resumed after a restart keeps the wait it was given.
            let wait = target.progress.next_attempt_ms.saturating_sub(now);
            if wait > 0 {
                let _ = shared.retries.send((delivery, Duration::from_millis(wait)));
            } else {
                shared.lanes[target.destination].send(delivery);
            }
        }
    }
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
