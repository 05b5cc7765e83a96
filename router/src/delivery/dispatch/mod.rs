//! Dispatch: takes events off the queue and drives their deliveries to completion. This file
//! owns the lifecycle (start, a config reload's changes, the shutdown count, whether anything
//! is left to do) and the task that moves events from the queue into lanes.
//!
//! - [`lane`]: each destination's channel, served by `max_in_flight` workers (paced by its
//!   `rate`, if any);
//! - [`outcome`]: one attempt, and what its outcome makes of the delivery (final, retried,
//!   dead-lettered);
//! - [`scheduler`]: the retry scheduler, which hands waiting deliveries back to their lanes;
//! - [`order`]: ordered delivery per key, which lets one delivery of a key go at a time.
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
mod order;
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
pub use self::order::HoldingRoutes;
use self::order::KeyLines;
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

/// Most events the dispatch task moves on one wake-up before it lets other tasks run.
const READY_PER_TURN: usize = 256;

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

/// State shared by every dispatch task.
#[derive(Debug)]
struct Shared {
    /// Each destination's lane (with its settings), by id. A config reload adds to them,
    /// never removes: ids stay valid.
    lanes: ArcSwap<Vec<Arc<Lane>>>,
    /// Each destination's circuit breaker and live state, by id.
    board: Arc<DestinationBoard>,
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
    /// Ordered keys' lines: deliveries of a key waiting for the one under way, each with when
    /// its next attempt is due (Unix ms; 0: now).
    order: KeyLines<(Delivery, u64)>,
    /// The routes whose dead letters hold their keys.
    holding: HoldingRoutes,
}

impl Shared {
    /// The lane of destination `id`.
    fn lane(&self, id: DestinationId) -> Arc<Lane> {
        Arc::clone(&self.lanes.load()[id])
    }

    /// The settings of destination `id` now.
    fn destination(&self, id: DestinationId) -> Arc<Destination> {
        self.lanes.load()[id].settings.load_full()
    }

    /// A delivery is final (delivered or dead-lettered).
    fn finish(&self, delivery: &Delivery) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        delivery.finished();
    }

    /// Starts `delivery`: into its lane, or to the retry scheduler until `due_ms` (Unix ms).
    fn start(&self, delivery: Delivery, due_ms: u64) {
        let wait = due_ms.saturating_sub(crate::journal::now_ms());
        if wait > 0 {
            let _ = self.retries.send((delivery, Duration::from_millis(wait)));
        } else {
            self.lane(delivery.destination).send(delivery);
        }
    }

    /// Holds the keys of the stored dead letters of holding routes (at start: the letters were
    /// stored before a restart). A key with several letters waits for the oldest.
    fn hold_for_letters(&self) {
        for letter in self.dead_letters.list().iter().rev() {
            if let (Some(destination), Some(key)) = (letter.destination, &letter.event.order_key)
                && self.holding.holds(&letter.event.route)
            {
                self.order.hold(destination, key, &letter.event.id);
            }
        }
    }

    /// `letter` was discarded or evicted: if it held its key, the key's next delivery goes.
    fn discarded(&self, letter: &crate::delivery::dead_letter::DeadLetter) {
        if let (Some(destination), Some(key)) = (letter.destination, &letter.event.order_key)
            && let Some((next, due_ms)) = self.order.discarded(destination, key, &letter.event.id)
        {
            self.start(next, due_ms);
        }
    }

    /// `delivery` has left this router's hands (final, or taken back by the queue): the next
    /// delivery of its order key, if it has one, goes now.
    fn next_in_line(&self, delivery: &Delivery) {
        if let Some(key) = &delivery.job.event.order_key
            && let Some((next, due_ms)) = self.order.finish(delivery.destination, key)
        {
            self.start(next, due_ms);
        }
    }
}

/// The running dispatch machinery.
#[derive(Debug)]
pub struct Dispatcher {
    /// Every task, and what starts more (a reload resizing a lane).
    control: DispatchControl,
    /// The retry scheduler's state, so that the deliveries waiting in it are counted at
    /// shutdown.
    waiting: WaitingSlot,
    shared: Arc<Shared>,
}

/// How often a removed destination's lane checks whether it still holds an event.
const RETIRE_POLL: Duration = Duration::from_millis(100);

/// Where a config reload applies its destinations to running dispatch: new settings, new
/// destinations, removed ones.
#[derive(Debug, Clone)]
pub struct DispatchControl {
    shared: Arc<Shared>,
    queue: Arc<dyn DispatchQueue>,
    supervisor: Supervisor,
    /// Stops every task (each lane worker through a child token of its own).
    cancel: CancellationToken,
    /// Every task started, for the shutdown to wait for.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Held while a lane changes, so that a reload and a lane's retirement do not interleave.
    changing: Arc<Mutex<()>>,
}

impl DispatchControl {
    /// Applies the new settings of destination `id` from now on: attempts that start read its
    /// URL, headers, timeout, signing and retry policy; its circuit takes the new thresholds;
    /// its cap becomes `max_held`; and its lane is resized to `max_in_flight` workers (the
    /// workers over it stop once their attempt in flight is over).
    pub fn reconfigure(&self, id: DestinationId, destination: Destination, max_held: usize) {
        let _changing = lock(&self.changing);
        let Some(lane) = self.shared.lanes.load().get(id).cloned() else {
            return;
        };
        // Back in the config (if it had been removed): listed, and its lane served again.
        lane.removed.store(false, Ordering::Release);
        self.shared.board.set_listed(id, true);
        self.shared.board.reconfigure(id, &destination, max_held);
        let workers = destination.max_in_flight;
        lane.settings.store(Arc::new(destination));
        self.resize(id, workers);
    }

    /// Adds `destination`, new to the config, with cap `max_held`: it gets the next id (which
    /// it returns), a lane with its `max_in_flight` workers, and its entries on the board and
    /// in the metrics; the queue learns its name.
    pub fn add(&self, destination: Destination, max_held: usize) -> DestinationId {
        let _changing = lock(&self.changing);
        let id = self.shared.board.add(&destination, max_held);
        self.shared
            .metrics
            .add_destination(destination.name.clone());
        self.queue.add_destination(&destination.name);
        let workers = destination.max_in_flight;
        let pace = Pace::new(self.shared.metrics.destination_throttled(&destination.name));
        let lane = Arc::new(Lane::new(destination, pace));
        self.shared.lanes.rcu(|lanes| {
            let mut lanes = Vec::clone(lanes);
            lanes.push(Arc::clone(&lane));
            lanes
        });
        self.resize(id, workers);
        id
    }

    /// Removes destination `id` from the config (after the switch: no route names it any
    /// more): its lane delivers the events it holds until each is final. Then its cap becomes
    /// 0 (nothing can take a place there again: a replay of its dead letters is refused as
    /// full), its workers stop, and the board no longer lists it; its held, cap and oldest-age
    /// gauges read 0. A destination added back before then keeps its lane. Does nothing
    /// without `retire` (NATS, whose shared stream may hold more of its events for this
    /// router: the lane stays).
    pub fn remove(&self, id: DestinationId, retire: bool) {
        let Some(lane) = self.shared.lanes.load().get(id).cloned() else {
            return;
        };
        if !retire {
            return;
        }
        lane.removed.store(true, Ordering::Release);
        let control = self.clone();
        let task = self.supervisor.spawn("lane_retire", move || {
            let (control, lane) = (control.clone(), Arc::clone(&lane));
            async move {
                loop {
                    // First a poll's wait: requests still on the table switched from finish.
                    tokio::time::sleep(RETIRE_POLL).await;
                    if control.cancel.is_cancelled() {
                        return;
                    }
                    let _changing = lock(&control.changing);
                    if !lane.removed.load(Ordering::Acquire) {
                        return;
                    }
                    if control.retire(id) {
                        tracing::info!(
                            destination = %lane.settings.load().name,
                            "a destination removed from the config holds nothing more: its lane stops"
                        );
                        return;
                    }
                }
            }
        });
        lock(&self.tasks).push(task);
    }

    /// Stops removed destination `id`'s lane if it holds nothing, closing it to new events
    /// first: whether it did.
    fn retire(&self, id: DestinationId) -> bool {
        let board = &self.shared.board;
        if board.held(id) > 0 {
            return false;
        }
        // Closed, then counted again: a place taken meanwhile is seen here, or sees the cap
        // (both sides order their two steps `SeqCst`, see `Holds::reserve`).
        let limit = board.limit(id);
        board.set_limit(id, 0);
        if board.held(id) > 0 {
            board.set_limit(id, limit);
            return false;
        }
        board.set_listed(id, false);
        self.resize(id, 0);
        true
    }

    /// Makes destination `id`'s lane served by `workers` workers (none once dispatch stops).
    fn resize(&self, id: DestinationId, workers: usize) {
        if self.cancel.is_cancelled() {
            return;
        }
        let started = Lane::resize(&self.shared, id, workers, &self.supervisor, &self.cancel);
        lock(&self.tasks).extend(started);
    }
}

impl Dispatcher {
    /// Where a config reload applies destinations' new settings.
    pub fn control(&self) -> DispatchControl {
        self.control.clone()
    }

    /// The routes whose dead letters hold their keys, for a config reload to replace.
    pub fn holding_routes(&self) -> HoldingRoutes {
        self.shared.holding.clone()
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
        let order = KeyLines::new(names.iter().map(String::as_str), metrics);
        let connected: Vec<(&str, usize)> = routes
            .iter()
            .flat_map(|route| {
                reachable(route, &names)
                    .into_iter()
                    .map(|destination| (route.id.as_str(), destination))
            })
            .collect();
        let delivery_metrics = DeliveryTable::new(metrics, names, connected);
        let shared = Arc::new(Shared {
            board,
            lanes: ArcSwap::from_pointee(
                destinations
                    .into_iter()
                    .map(|destination| {
                        let pace = Pace::new(metrics.destination_throttled(&destination.name));
                        Arc::new(Lane::new(destination, pace))
                    })
                    .collect(),
            ),
            deliverer,
            dead_letters,
            metrics: delivery_metrics,
            retries: retry_tx,
            panic_on_body: faults.panic_on_body.clone().map(String::into_bytes),
            outstanding: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            earliest_due: Mutex::new(None),
            inspect,
            order,
            holding: HoldingRoutes::new(routes),
        });
        shared.hold_for_letters();
        let weak = Arc::downgrade(&shared);
        shared.dead_letters.on_discard(move |letter| {
            if let Some(shared) = weak.upgrade() {
                shared.discarded(letter);
            }
        });

        let mut tasks = Vec::new();
        {
            let (queue, shared, cancel) = (Arc::clone(queue), Arc::clone(&shared), cancel.clone());
            tasks.push(supervisor.spawn("dispatch", move || {
                run_dispatch(Arc::clone(&queue), Arc::clone(&shared), cancel.clone())
            }));
        }
        for id in 0..shared.lanes.load().len() {
            let workers = shared.destination(id).max_in_flight;
            tasks.extend(Lane::resize(&shared, id, workers, supervisor, &cancel));
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
            control: DispatchControl {
                shared: Arc::clone(&shared),
                queue: Arc::clone(queue),
                supervisor: supervisor.clone(),
                cancel,
                tasks: Arc::new(Mutex::new(tasks)),
                changing: Arc::default(),
            },
            waiting,
            shared,
        }
    }

    /// Whether nothing can happen before `deadline`: no event waits in `queue`, and every
    /// delivery taken off it waits for a retry due after `deadline`, or behind one of its key
    /// that does (none is in a lane or in flight). Shutdown need not wait for the end of its
    /// grace period then.
    pub fn settled(&self, deadline: Instant, queue: &dyn DispatchQueue) -> bool {
        let waiting = self
            .shared
            .parked
            .load(Ordering::Acquire)
            .saturating_add(self.shared.order.waiting());
        queue.queued() == 0
            && self.shared.outstanding.load(Ordering::Acquire) == waiting
            && lock(&self.shared.earliest_due).is_none_or(|due| due > deadline)
    }

    /// Starts no new attempt from now on; the attempts in flight go on, and [`Dispatcher::stop`]
    /// waits for them. For a stop that leaves the queued events to the next process.
    pub fn stop_starting(&self) {
        self.control.cancel.cancel();
    }

    /// Stops dispatch: attempts in flight may finish until `deadline`; nothing new starts.
    /// Returns the events still held (queued, in a lane, waiting to retry or behind one of
    /// their key, or cut off), including the retries of attempts that failed while stopping.
    pub async fn stop(
        self,
        deadline: tokio::time::Instant,
        queue: &dyn DispatchQueue,
    ) -> Leftovers {
        self.control.cancel.cancel();
        let mut pending = std::mem::take(&mut *lock(&self.control.tasks));
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
        for lane in self.shared.lanes.load().iter() {
            lane.drain(&mut held);
        }
        Waiting::drain(&self.waiting, &mut held);
        held.extend(self.shared.order.drain().into_iter().map(|(d, _)| d));
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

/// Moves events from the queue into their destinations' lanes (a delivery of an ordered key
/// with one under way into the key's line instead), in the queue's order: one task does it,
/// which keeps the keys' lines in that order.
///
/// Each wake-up moves every event ready then (up to [`READY_PER_TURN`]) before the task waits
/// again: one wake-up per burst, not one per event. Moving is cheap (no I/O), so one task
/// keeps up; each event is moved as soon as it is taken, so a panic loses no more than before.
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
        let Some(queued) = queued else {
            return;
        };
        dispatch(&shared, queued);
        let mut drained = false;
        for _ in 1..READY_PER_TURN {
            if cancel.is_cancelled() {
                return;
            }
            let Some(queued) = queue.try_dequeue() else {
                drained = true;
                break;
            };
            dispatch(&shared, queued);
        }
        if !drained {
            // More may be ready: the other tasks on this thread get their turn first.
            tokio::task::yield_now().await;
        }
    }
}

/// Moves one event taken off the queue: each of its deliveries into its lane, or into its
/// key's line, or to the retry scheduler until it is due.
fn dispatch(shared: &Shared, queued: QueuedEvent) {
    let QueuedEvent {
        event,
        targets,
        receipt,
    } = queued;
    let verdict = receipt.verdict();
    let job = Arc::new(Job { event, receipt });
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
        let due_ms = target.progress.next_attempt_ms;
        let event = &job.event;
        if let Some(key) = &event.order_key {
            if let Some((delivery, due_ms)) =
                shared
                    .order
                    .admit(target.destination, key, &event.id, (delivery, due_ms))
            {
                shared.start(delivery, due_ms);
            }
        } else {
            shared.start(delivery, due_ms);
        }
    }
}

#[cfg(test)]
// Small counts and short waits: nothing here comes near an overflow.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::config::Config;
    use crate::queue::{Holds, MemoryQueue, held_caps};

    /// A sink that answers 200 after `delay`, counting requests in flight and the most seen.
    #[derive(Debug, Default)]
    struct SlowSink {
        current: AtomicUsize,
        most: AtomicUsize,
        received: AtomicU64,
    }

    async fn slow_sink(delay: Duration) -> (std::net::SocketAddr, Arc<SlowSink>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let sink = Arc::new(SlowSink::default());
        let counts = Arc::clone(&sink);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counts = Arc::clone(&counts);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let counts = Arc::clone(&counts);
                        async move {
                            let now = counts.current.fetch_add(1, Ordering::AcqRel) + 1;
                            counts.most.fetch_max(now, Ordering::AcqRel);
                            tokio::time::sleep(delay).await;
                            counts.current.fetch_sub(1, Ordering::AcqRel);
                            counts.received.fetch_add(1, Ordering::AcqRel);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Empty::<bytes::Bytes>::new(),
                            ))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        (address, sink)
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lane_resized_by_a_reload_keeps_its_deliveries_and_follows_the_new_limit() {
        let (address, sink) = slow_sink(Duration::from_millis(100)).await;
        let text = format!(
            "[destinations.slow]\nurl = \"http://{address}/\"\nmax_in_flight = 4\n\
             [[routes]]\nid = \"r\"\npath = \"/r\"\ndestinations = [\"slow\"]\n"
        );
        let config = Config::parse(&text, Path::new("t.toml")).expect("valid");
        let metrics = Metrics::new();
        let supervisor = Supervisor::new(metrics.clone());
        let holds = Arc::new(Holds::new(held_caps(&config), &metrics));
        let queue: Arc<dyn DispatchQueue> =
            Arc::new(MemoryQueue::new(1000, metrics.clone(), Arc::clone(&holds)));
        let destination = |max_in_flight: usize| {
            let mut settings = config.destinations["slow"].clone();
            settings.max_in_flight = std::num::NonZeroUsize::new(max_in_flight).unwrap();
            Destination::from_config("slow", &settings).unwrap()
        };
        let dispatcher = Dispatcher::start(
            &queue,
            vec![destination(4)],
            &config.routes,
            Deliverer::new().unwrap(),
            Arc::new(DeadLetterStore::new(100, 1 << 20, metrics.clone(), None)),
            Arc::new(DestinationBoard::new(
                &[destination(4)],
                Arc::clone(&holds),
                &metrics,
            )),
            &metrics,
            &supervisor,
            &TestFaults::default(),
            Inspector::default(),
        );
        let enqueue = |from: usize, count: usize| {
            let queue = Arc::clone(&queue);
            async move {
                for n in from..from + count {
                    let event = Event::for_test(format!("e{n}"), "r", bytes::Bytes::new());
                    queue.enqueue(event, vec![0]).await.unwrap();
                }
            }
        };
        let lane = dispatcher.shared.lane(0);
        let received = || sink.received.load(Ordering::Acquire);

        // Four workers: four attempts at once.
        enqueue(0, 40).await;
        wait_until("4 in flight", || sink.current.load(Ordering::Acquire) == 4).await;
        assert_eq!(lane.workers(), 4);

        // Down to one while four attempts are in flight: they finish, none is cut off, and
        // from then on one attempt at a time.
        let control = dispatcher.control();
        control.reconfigure(0, destination(1), 1000);
        assert_eq!(lane.workers(), 1);
        wait_until("1 in flight", || sink.current.load(Ordering::Acquire) <= 1).await;
        sink.most.store(0, Ordering::Release);
        let before = received();
        wait_until("5 more delivered", || received() >= before + 5).await;
        assert_eq!(sink.most.load(Ordering::Acquire), 1);

        // Up to three: three at once, never more.
        control.reconfigure(0, destination(3), 1000);
        assert_eq!(lane.workers(), 3);
        wait_until("3 in flight", || sink.current.load(Ordering::Acquire) == 3).await;
        wait_until("every event delivered", || queue.held() == 0).await;
        assert_eq!(sink.most.load(Ordering::Acquire), 3);
        assert_eq!(received(), 40, "each event delivered once");

        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let left = dispatcher.stop(deadline, queue.as_ref()).await;
        assert!(left.event_ids.is_empty(), "{left:?}");
    }

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
