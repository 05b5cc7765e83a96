//! A destination's lane: the lock-free channel its deliveries wait in, and the workers that
//! serve it, one attempt at a time each, so that the number of workers bounds the lane's
//! requests in flight and a slow destination never holds up another.
//!
//! With a `rate`, each attempt first waits for a turn ([`Pace`]): one delivery of the lane at
//! a time, on the worker that took it, while the others stay in the lane.
//!
//! Each worker keeps the delivery it is attempting (or pacing) in an in-flight slot outside its
//! task: a run that panicked leaves it there, and the next run puts it back in the lane (or
//! dead-letters it, out of attempts); at shutdown the slots are counted with the lane.
//!
//! A config reload resizes a lane to its new `max_in_flight` ([`Lane::resize`]): new workers
//! start, or the last ones are told to stop, each after the attempt it is making.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::outcome::{attempt, dead_letter};
use super::{Delivery, Shared, lock};
use crate::delivery::attempt::{Destination, attempt_span};
use crate::delivery::circuit::Admit;
use crate::delivery::rate::Pace;
use crate::queue::{DestinationId, Verdict};
use crate::supervise::Supervisor;

/// The delivery a lane worker is attempting, if any, kept outside the worker's task.
type InFlight = Arc<Mutex<Option<Delivery>>>;

/// One destination's lane: its settings, its channel, its workers' in-flight slots and its pace.
#[derive(Debug)]
pub(super) struct Lane {
    /// The destination's settings, which a config reload may replace: an attempt reads them
    /// as it starts.
    pub(super) settings: ArcSwap<Destination>,
    /// Removed from the config: the lane stops once its destination holds nothing.
    pub(super) removed: AtomicBool,
    sender: async_channel::Sender<Delivery>,
    /// Kept so that deliveries still in the lane are counted at shutdown.
    receiver: async_channel::Receiver<Delivery>,
    /// One per worker started, in order: a stopped worker's slot stays, empty once its last
    /// attempt is over.
    slots: Mutex<Vec<InFlight>>,
    /// One per worker serving now, in order: cancelling it stops the worker once its attempt
    /// in flight (if any) is over.
    workers: Mutex<Vec<CancellationToken>>,
    /// Turns for the attempts, while the destination has a `rate`.
    pace: Pace,
}

impl Lane {
    /// An empty lane to `destination`, with no worker yet, paced by `pace` while the
    /// destination has a `rate`.
    pub(super) fn new(destination: Destination, pace: Pace) -> Self {
        let (sender, receiver) = async_channel::unbounded();
        Self {
            settings: ArcSwap::from_pointee(destination),
            removed: AtomicBool::new(false),
            sender,
            receiver,
            slots: Mutex::default(),
            workers: Mutex::default(),
            pace,
        }
    }

    /// Hands `delivery` to the lane's workers.
    pub(super) fn send(&self, delivery: Delivery) {
        // Lanes are unbounded (the queue's slots bound them) and open while the lane lives.
        let _ = self.sender.try_send(delivery);
    }

    /// Workers serving the lane now.
    #[cfg(test)]
    pub(super) fn workers(&self) -> usize {
        lock(&self.workers).len()
    }

    /// Makes destination `id`'s lane served by `count` workers (under `supervisor`, stopped by
    /// `cancel` too): starts the missing ones, and tells the last ones over `count` to stop
    /// once their attempt in flight is over (none is cut off, nor lost: a delivery is taken
    /// off the lane only by a worker that then attempts it). Returns the tasks started.
    pub(super) fn resize(
        shared: &Arc<Shared>,
        id: DestinationId,
        count: usize,
        supervisor: &Supervisor,
        cancel: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let lane = shared.lane(id);
        let mut workers = lock(&lane.workers);
        let kept = count.min(workers.len());
        for stop in workers.split_off(kept) {
            stop.cancel();
        }
        let missing = count.saturating_sub(workers.len());
        (0..missing)
            .map(|_| {
                let stop = cancel.child_token();
                workers.push(stop.clone());
                Self::spawn_worker(shared, id, supervisor, stop)
            })
            .collect()
    }

    /// Starts one worker on destination `id`'s lane, under `supervisor`, until `cancel`.
    fn spawn_worker(
        shared: &Arc<Shared>,
        id: DestinationId,
        supervisor: &Supervisor,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        let lane = shared.lane(id);
        let slot = InFlight::default();
        lock(&lane.slots).push(Arc::clone(&slot));
        let shared = Arc::clone(shared);
        supervisor.spawn("lane_worker", move || {
            run_lane_worker(Arc::clone(&shared), id, cancel.clone(), Arc::clone(&slot))
        })
    }

    /// Takes every delivery in the lane or in a worker's slot into `held`. For the shutdown
    /// count, once every task has ended.
    pub(super) fn drain(&self, held: &mut Vec<Delivery>) {
        while let Ok(delivery) = self.receiver.try_recv() {
            held.push(delivery);
        }
        for slot in lock(&self.slots).iter() {
            held.extend(lock(slot).take());
        }
    }
}

/// Serves destination `id`'s lane: one attempt at a time, so a lane's workers bound its
/// in-flight requests.
///
/// The delivery being attempted is also kept in `in_flight`, with the attempt counted (and
/// before that, while it waits for a turn, without): a run that panicked leaves it there, and
/// the next run puts it back first.
async fn run_lane_worker(
    shared: Arc<Shared>,
    id: DestinationId,
    cancel: CancellationToken,
    in_flight: InFlight,
) {
    let lane = shared.lane(id);
    let left = lock(&in_flight).take();
    if let Some(delivery) = left {
        put_back(&shared, delivery);
    }
    loop {
        // With a `rate`, the next delivery is this worker's to pace only once no other
        // delivery of the lane waits for a turn: until then it stays in the lane.
        let gate = match lane.settings.load().rate {
            Some(_) => tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                gate = lane.pace.gate() => Some(gate),
            },
            None => None,
        };
        let delivery = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            delivery = lane.receiver.recv() => match delivery {
                Ok(delivery) => delivery,
                Err(_) => return,
            },
        };
        if let Some(verdict) = delivery.verdict.clone() {
            drop(gate);
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
        // Waiting for a turn is not an attempt. (The rate read again: a reload may have
        // changed it while this worker waited on the lane.)
        let rate = || lane.settings.load().rate;
        if rate().is_some() {
            *lock(&in_flight) = Some(delivery.clone());
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    // Back in the lane, where the shutdown count (or the next run) finds it.
                    *lock(&in_flight) = None;
                    lane.send(delivery);
                    return;
                }
                () = lane.pace.turn(rate) => {}
            }
        }
        drop(gate);
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
    let destination = shared.destination(delivery.destination);
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
    shared.lane(delivery.destination).send(delivery);
}
