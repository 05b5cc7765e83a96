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

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::outcome::{attempt, dead_letter};
use super::{Delivery, Shared, lock};
use crate::delivery::circuit::Admit;
use crate::delivery::rate::Pace;
use crate::queue::{DestinationId, Verdict};
use crate::supervise::Supervisor;

/// The delivery a lane worker is attempting, if any, kept outside the worker's task.
type InFlight = Arc<Mutex<Option<Delivery>>>;

/// One destination's lane: its channel, its workers' in-flight slots and its pace.
#[derive(Debug)]
pub(super) struct Lane {
    sender: async_channel::Sender<Delivery>,
    /// Kept so that deliveries still in the lane are counted at shutdown.
    receiver: async_channel::Receiver<Delivery>,
    /// One per worker.
    slots: Mutex<Vec<InFlight>>,
    /// Turns for the attempts, while the destination has a `rate`.
    pace: Pace,
}

impl Lane {
    /// An empty lane, with no worker yet, paced by `pace` while its destination has a `rate`.
    pub(super) fn new(pace: Pace) -> Self {
        let (sender, receiver) = async_channel::unbounded();
        Self {
            sender,
            receiver,
            slots: Mutex::default(),
            pace,
        }
    }

    /// Hands `delivery` to the lane's workers.
    pub(super) fn send(&self, delivery: Delivery) {
        // Lanes are unbounded (the queue's slots bound them) and open while the lane lives.
        let _ = self.sender.try_send(delivery);
    }

    /// Starts one more worker on destination `id`'s lane, under `supervisor`.
    pub(super) fn spawn_worker(
        shared: &Arc<Shared>,
        id: DestinationId,
        supervisor: &Supervisor,
        cancel: &CancellationToken,
    ) -> JoinHandle<()> {
        let slot = InFlight::default();
        lock(&shared.lanes[id].slots).push(Arc::clone(&slot));
        let (shared, cancel) = (Arc::clone(shared), cancel.clone());
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
    let lane = &shared.lanes[id];
    let left = lock(&in_flight).take();
    if let Some(delivery) = left {
        put_back(&shared, delivery);
    }
    loop {
        // With a `rate`, the next delivery is this worker's to pace only once no other
        // delivery of the lane waits for a turn: until then it stays in the lane.
        let gate = match shared.destinations[id].load().rate {
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
        let rate = || shared.destinations[id].load().rate;
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
        attempt(&shared, delivery).await;
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
    shared.lanes[delivery.destination].send(delivery);
}
