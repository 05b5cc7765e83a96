//! The retry scheduler: holds the deliveries waiting for their next attempt (a retry's
//! backoff, an open circuit, a dead letter to store again) and hands each back to its lane
//! when its wait is over. Waiting deliveries occupy no worker.
//!
//! Its state ([`Waiting`]: the inbox and the deliveries by due time) lives outside its task,
//! taken for a run and put back when the run ends, by return or by panic, so that the next run
//! (or the shutdown count) finds every waiting delivery.
// Time arithmetic meets configured and remote values here: no operator may overflow.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Delivery, Shared, lock};

/// Where deliveries are sent to wait, with their wait.
pub(super) type RetrySender = mpsc::UnboundedSender<(Delivery, Duration)>;

/// The scheduler's state, in its slot (`None` while a run holds it).
pub(super) type WaitingSlot = Arc<Mutex<Option<Waiting>>>;

/// The retry scheduler's state, kept outside its task so that a new run takes it over whole.
#[derive(Debug)]
pub(super) struct Waiting {
    /// Deliveries sent to wait, with their wait.
    inbox: mpsc::UnboundedReceiver<(Delivery, Duration)>,
    /// Waiting deliveries by due time (and arrival order, for equal times).
    due: BTreeMap<(Instant, u64), Delivery>,
    arrivals: u64,
}

impl Waiting {
    /// An empty scheduler state, and the sender of its inbox.
    pub(super) fn new() -> (RetrySender, WaitingSlot) {
        let (sender, inbox) = mpsc::unbounded_channel();
        let waiting = Self {
            inbox,
            due: BTreeMap::new(),
            arrivals: 0,
        };
        (sender, Arc::new(Mutex::new(Some(waiting))))
    }

    fn insert(&mut self, delivery: Delivery, wait: Duration, shared: &Shared) {
        // Saturating, so that no wait (a destination's `Retry-After: 99999999`, a config built
        // in code) can overflow the clock.
        let due = crate::clock::after(Instant::now(), wait);
        self.arrivals = self.arrivals.wrapping_add(1);
        self.due.insert((due, self.arrivals), delivery);
        shared.parked.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes every delivery waiting, in the inbox or for its due time, into `held`. For the
    /// shutdown count, once every task has ended.
    pub(super) fn drain(slot: &WaitingSlot, held: &mut Vec<Delivery>) {
        if let Some(mut waiting) = lock(slot).take() {
            while let Ok((delivery, _)) = waiting.inbox.try_recv() {
                held.push(delivery);
            }
            held.extend(std::mem::take(&mut waiting.due).into_values());
        }
    }
}

/// Holds deliveries waiting for a retry and returns each to its lane when its wait is over.
///
/// Its state lives in `state`, taken for the run and put back when the run ends, by return or
/// by panic, so that the next run (or the shutdown count) finds every waiting delivery.
pub(super) async fn run_retry_scheduler(
    state: WaitingSlot,
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
            shared.lane(delivery.destination).send(delivery);
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
    slot: WaitingSlot,
    waiting: Option<Waiting>,
}

impl Drop for PutBack {
    fn drop(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            *lock(&self.slot) = Some(waiting);
        }
    }
}
