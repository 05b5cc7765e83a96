//! Dispatch: takes events off the queue and drives their deliveries to completion.
//!
//! Each destination has a *lane*: a lock-free channel served by `max_in_flight` workers, so a
//! slow destination never holds up another. A failed attempt that may be retried goes to the
//! retry scheduler, which hands it back to its lane when its wait is over; waiting deliveries
//! occupy no worker. Deliveries that fail for good (or that the queue gives up, see
//! [`Verdict`]) become dead letters, final only once the letter is stored.
//!
//! Every task runs under the [`Supervisor`], and what a task holds lives outside it, so that
//! neither a panic nor the end of the shutdown grace period loses a delivery: a lane worker
//! keeps its current delivery in an in-flight slot (put back in the lane, or dead-lettered once
//! out of attempts, when the attempt panicked), and the scheduler keeps its waiting deliveries
//! and its inbox in a state the next run takes over. At shutdown whatever is left in the queue,
//! the lanes, the slots and the scheduler is counted, each event once.
// Time arithmetic meets configured and remote values here: no operator may overflow.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::RouteConfig;
use crate::delivery::attempt::{AttemptOutcome, Deliverer, Destination, attempt_span};
use crate::delivery::circuit::Admit;
use crate::delivery::dead_letter::{DeadLetter, DeadLetterStore, LetterError};
use crate::delivery::destinations::DestinationBoard;
use crate::event::Event;
use crate::inspect::Inspector;
use crate::metrics::{DeliveryTable, Metrics};
use crate::queue::{
    DestinationId, DispatchQueue, Progress, QueuedEvent, Receipt, Reported, Verdict,
};
use crate::supervise::{Supervisor, TestFaults};

/// Tasks moving events from the queue into lanes. Moving is cheap (no I/O), so few suffice.
const DISPATCH_TASKS: usize = 2;
/// How long a delivery whose dead letter could not be stored waits before it is dead-lettered
/// again (the letter store, NATS, refused it or did not answer).
const LETTER_RETRY: Duration = Duration::from_secs(5);

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

/// The delivery a lane worker is attempting, if any, kept outside the worker's task.
type InFlight = Arc<Mutex<Option<Delivery>>>;

/// The retry scheduler's state, kept outside its task so that a new run takes it over whole.
#[derive(Debug)]
struct Waiting {
    /// Deliveries sent to wait, with their wait.
    inbox: mpsc::UnboundedReceiver<(Delivery, Duration)>,
    /// Waiting deliveries by due time (and arrival order, for equal times).
    due: BTreeMap<(Instant, u64), Delivery>,
    arrivals: u64,
}

impl Waiting {
    fn insert(&mut self, delivery: Delivery, wait: Duration, shared: &Shared) {
        // Saturating, so that no wait (a destination's `Retry-After: 99999999`, a config built
        // in code) can overflow the clock.
        let due = crate::clock::after(Instant::now(), wait);
        self.arrivals = self.arrivals.wrapping_add(1);
        self.due.insert((due, self.arrivals), delivery);
        shared.parked.fetch_add(1, Ordering::AcqRel);
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
    lanes: Vec<async_channel::Sender<Delivery>>,
    deliverer: Deliverer,
    dead_letters: Arc<DeadLetterStore>,
    /// Delivery metrics by route and destination.
    metrics: DeliveryTable,
    retries: mpsc::UnboundedSender<(Delivery, Duration)>,
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
    /// Receivers of the lanes, so that deliveries still in them are counted at shutdown.
    lanes: Vec<async_channel::Receiver<Delivery>>,
    in_flight: Vec<InFlight>,
    waiting: Arc<Mutex<Option<Waiting>>>,
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
            board,
            destinations: destinations
                .into_iter()
                .map(ArcSwap::from_pointee)
                .collect(),
            lanes: lane_senders,
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
        let mut in_flight = Vec::new();
        for (id, receiver) in lane_receivers.iter().enumerate() {
            for _ in 0..shared.destinations[id].load().max_in_flight {
                let slot = InFlight::default();
                in_flight.push(Arc::clone(&slot));
                let (lane, shared, cancel) =
                    (receiver.clone(), Arc::clone(&shared), cancel.clone());
                tasks.push(supervisor.spawn("lane_worker", move || {
                    run_lane_worker(
                        lane.clone(),
                        Arc::clone(&shared),
                        cancel.clone(),
                        Arc::clone(&slot),
                    )
                }));
            }
        }
        let waiting = Arc::new(Mutex::new(Some(Waiting {
            inbox: retry_rx,
            due: BTreeMap::new(),
            arrivals: 0,
        })));
        {
            let (waiting, shared, cancel) =
                (Arc::clone(&waiting), Arc::clone(&shared), cancel.clone());
            tasks.push(supervisor.spawn("retry_scheduler", move || {
                run_retry_scheduler(Arc::clone(&waiting), Arc::clone(&shared), cancel.clone())
            }));
        }
        Self {
            cancel,
            tasks,
            lanes: lane_receivers,
            in_flight,
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
        for lane in &self.lanes {
            while let Ok(delivery) = lane.try_recv() {
                held.push(delivery);
            }
        }
        for slot in &self.in_flight {
            held.extend(lock(slot).take());
        }
        if let Some(mut waiting) = lock(&self.waiting).take() {
            while let Ok((delivery, _)) = waiting.inbox.try_recv() {
                held.push(delivery);
            }
            held.extend(std::mem::take(&mut waiting.due).into_values());
        }
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
                // Lanes are unbounded (the queue's slots bound them) and open while `shared`
                // lives.
                let _ = shared.lanes[target.destination].try_send(delivery);
            }
        }
    }
}

/// Serves one lane: one attempt at a time, so a lane's workers bound its in-flight requests.
///
/// The delivery being attempted is also kept in `in_flight`, with the attempt counted: a run
/// that panicked leaves it there, and the next run puts it back first.
async fn run_lane_worker(
    lane: async_channel::Receiver<Delivery>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    in_flight: InFlight,
) {
    let left = lock(&in_flight).take();
    if let Some(delivery) = left {
        put_back(&shared, delivery);
    }
    loop {
        let delivery = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            delivery = lane.recv() => match delivery {
                Ok(delivery) => delivery,
                Err(_) => return,
            },
        };
        if let Some(verdict) = delivery.verdict.clone() {
            *lock(&in_flight) = Some(delivery.clone());
            dead_letter(&shared, delivery, verdict).await;
            *lock(&in_flight) = None;
            continue;
        }
        // An open circuit sends no attempt: the delivery waits in the retry scheduler, this
        // attempt not counted, until the circuit may be probed.
        if let Admit::Wait(wait) = shared
            .board
            .circuit(delivery.destination)
            .admit(Instant::now())
        {
            let _ = shared.retries.send((delivery, wait));
            continue;
        }
        *lock(&in_flight) = Some(Delivery {
            attempts: delivery.attempts.saturating_add(1),
            ..delivery.clone()
        });
        if let Some(marker) = &shared.panic_on_body
            && contains(&delivery.job.event.body, marker)
        {
            panic!("test fault: lane worker panics on a marked event");
        }
        let span = attempt_span(&delivery.job.event, delivery.attempts.saturating_add(1));
        attempt(&shared, delivery).instrument(span).await;
        *lock(&in_flight) = None;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Puts back a delivery whose attempt panicked (that attempt counted) into its lane: to be
/// attempted again, or, with no attempts left, dead-lettered.
fn put_back(shared: &Shared, mut delivery: Delivery) {
    let destination = shared.destinations[delivery.destination].load_full();
    let event = &delivery.job.event;
    tracing::warn!(
        event_id = %event.id,
        destination = %destination.name,
        attempts = delivery.attempts,
        "an attempt panicked: the delivery goes back to its lane"
    );
    if delivery.verdict.is_none() && delivery.attempts >= destination.retry.max_attempts.get() {
        delivery.verdict = Some(Verdict {
            attempts: delivery.attempts,
            last_status: None,
            reason: "the last attempt panicked (see the log)".to_owned(),
        });
    }
    let _ = shared.lanes[delivery.destination].try_send(delivery);
}

/// Makes one attempt and acts on its outcome.
async fn attempt(shared: &Shared, mut delivery: Delivery) {
    let destination = shared.destinations[delivery.destination].load_full();
    let event = &delivery.job.event;
    let metrics = shared.metrics.get(&event.route, delivery.destination);
    let (started, started_at) = (Instant::now(), SystemTime::now());
    let outcome = {
        let _counted = shared.board.attempt(delivery.destination);
        shared.deliverer.attempt(&destination, event).await
    };
    let took = started.elapsed();
    shared
        .inspect
        .attempt(&event.id, &destination.name, started_at, took, &outcome);
    delivery.attempts = delivery.attempts.saturating_add(1);
    let failed = matches!(outcome, AttemptOutcome::Retry { .. });
    shared.board.record(
        delivery.destination,
        match &outcome {
            AttemptOutcome::Delivered { .. } => None,
            AttemptOutcome::Retry { error, .. } | AttemptOutcome::Permanent { error, .. } => {
                Some(error)
            }
        },
    );
    if let Some(change) = shared
        .board
        .circuit(delivery.destination)
        .record(failed, Instant::now())
    {
        let circuit = destination.circuit;
        tracing::warn!(
            destination = %destination.name,
            circuit = change,
            failures = circuit.failures.get(),
            "circuit {change}"
        );
    }
    if let Some(metrics) = metrics {
        metrics.duration.record(took.as_secs_f64());
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
            shared.finish(&delivery);
            return;
        }
        AttemptOutcome::Retry {
            status,
            retry_after,
            error,
        } if delivery.attempts < destination.retry.max_attempts.get() => {
            let wait = crate::delivery::backoff::next_delay(
                &destination.retry,
                delivery.attempts,
                retry_after,
                fastrand::f64(),
            );
            if let Some(metrics) = metrics {
                metrics.retry.increment(1);
            }
            let reported = delivery.job.receipt.record(
                delivery.position,
                Progress {
                    attempts: delivery.attempts,
                    next_attempt_ms: crate::journal::now_ms()
                        .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
                    done: false,
                },
            );
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
            if reported == Reported::Returned {
                // The queue hands the event out again when the retry is due.
                shared.outstanding.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            // The scheduler's inbox outlives its task: during shutdown the retry waits there,
            // counted.
            let _ = shared.retries.send((delivery, wait));
            return;
        }
        AttemptOutcome::Retry { status, error, .. }
        | AttemptOutcome::Permanent { status, error } => (status, error),
    };
    let verdict = Verdict {
        attempts: delivery.attempts,
        last_status: status,
        reason: error,
    };
    dead_letter(shared, delivery, verdict).await;
}

/// Turns a delivery that is over (failed for good, or given up by the queue) into a dead
/// letter. The delivery is final only once the letter is stored: a letter the store refused
/// leaves the event with the queue (NATS takes it back, to hand it out again with its verdict)
/// or in the retry scheduler, to be dead-lettered again after [`LETTER_RETRY`].
async fn dead_letter(shared: &Shared, mut delivery: Delivery, verdict: Verdict) {
    let destination = shared.destinations[delivery.destination].load_full();
    let event = &delivery.job.event;
    let letter = DeadLetter {
        id: Event::new_id(),
        event: event.clone(),
        destination: Some(delivery.destination),
        destination_name: destination.name.clone(),
        attempts: verdict.attempts,
        last_status: verdict.last_status,
        last_error: verdict.reason.clone(),
        failed_at: SystemTime::now(),
    };
    let letter_id = letter.id.clone();
    let finished = Delivery {
        attempts: verdict.attempts,
        ..delivery.clone()
    };
    if let Err(error) = store_and_finish(shared, &finished, letter).await {
        tracing::error!(
            event_id = %event.id,
            route = %event.route,
            destination = %destination.name,
            %error,
            retry_in = %humantime::format_duration(LETTER_RETRY),
            "delivery failed for good, but its dead letter could not be stored: kept, to be dead-lettered again"
        );
        if delivery.job.receipt.unstored(&verdict, LETTER_RETRY) == Reported::Returned {
            shared.outstanding.fetch_sub(1, Ordering::AcqRel);
        } else {
            delivery.verdict = Some(verdict);
            let _ = shared.retries.send((delivery, LETTER_RETRY));
        }
        return;
    }
    if let Some(metrics) = shared.metrics.get(&event.route, delivery.destination) {
        metrics.dead_letter.increment(1);
    }
    shared.inspect.dead_lettered(&event.id, &destination.name);
    tracing::warn!(
        event_id = %event.id,
        route = %event.route,
        destination = %destination.name,
        attempts = verdict.attempts,
        status = ?verdict.last_status,
        error = %verdict.reason,
        dead_letter = %letter_id,
        "delivery failed for good: dead-lettered"
    );
}

/// Stores `letter` and makes `delivery` final. On the journal both go in one all-or-nothing
/// write (the letter with the report that finishes the delivery), so that a crash leaves
/// neither or both on disk; elsewhere the letter is stored first and the report made after
/// (a crash between the two leaves the event to be delivered again, never neither). On error
/// the letter was not stored and the delivery is not final.
async fn store_and_finish(
    shared: &Shared,
    delivery: &Delivery,
    letter: DeadLetter,
) -> Result<(), LetterError> {
    let mut staged = shared.dead_letters.stage(letter);
    if let Some(records) = staged.take_records() {
        let receipt = &delivery.job.receipt;
        // `Err`: the queue keeps no journal, and the letter is stored on its own.
        if receipt
            .record_with(delivery.position, delivery.final_progress(), records)
            .is_ok()
        {
            shared.dead_letters.staged(staged);
            shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Ok(());
        }
    }
    shared.dead_letters.store(staged.into_letter()).await?;
    shared.finish(delivery);
    Ok(())
}

/// Holds deliveries waiting for a retry and returns each to its lane when its wait is over.
///
/// Its state lives in `state`, taken for the run and put back when the run ends, by return or
/// by panic, so that the next run (or the shutdown count) finds every waiting delivery.
async fn run_retry_scheduler(
    state: Arc<Mutex<Option<Waiting>>>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let taken = lock(&state).take();
    let Some(taken) = taken else {
        return;
    };
    let mut held = PutBack {
        slot: state,
        waiting: Some(taken),
    };
    let Some(waiting) = held.waiting.as_mut() else {
        return;
    };
    loop {
        let now = Instant::now();
        while let Some(entry) = waiting.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let delivery = entry.remove();
            shared.parked.fetch_sub(1, Ordering::AcqRel);
            let _ = shared.lanes[delivery.destination].try_send(delivery);
        }
        let next = waiting.due.first_key_value().map(|((at, _), _)| *at);
        *lock(&shared.earliest_due) = next;
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = sleep_until(next) => {}
            received = waiting.inbox.recv() => match received {
                Some((delivery, wait)) => waiting.insert(delivery, wait, &shared),
                None => return,
            },
        }
    }
}

/// Sleeps until `at`, or forever if `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Puts the scheduler's state back in its slot when dropped.
struct PutBack {
    slot: Arc<Mutex<Option<Waiting>>>,
    waiting: Option<Waiting>,
}

impl Drop for PutBack {
    fn drop(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            *lock(&self.slot) = Some(waiting);
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
