//! A destination's delivery rate (`rate = { per_second, burst }`): every attempt to it waits for
//! a turn (GCRA, with `governor`), and the waiting is counted in
//! `webhook_destination_throttled_seconds_total`.
//!
//! One delivery of a lane waits for the next turn at a time, holding the lane's *gate*; the
//! lane's other deliveries wait in the lane, where shutdown counts them, and its other workers
//! carry the attempts already started. Every attempt in the lane needs a turn, so no worker could
//! start one sooner: the waiting delivery keeps its worker no longer than needed. The rate is
//! read from the destination's live settings, and again at least every [`RECHECK`] while a
//! delivery waits: a reload that changes it starts a new limiter (with a full burst) at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use metrics::Counter;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard};

use crate::config::DeliveryRate;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// The longest a waiting delivery goes without reading its destination's rate again, so that
/// a reload from a slow rate to a faster one (or to none) frees it within this.
const RECHECK: Duration = Duration::from_secs(1);

/// The pace of one destination's lane.
pub struct Pace {
    /// The limiter of the rate now configured, with that rate.
    limiter: Mutex<Option<(DeliveryRate, Arc<DefaultDirectRateLimiter>)>>,
    /// Held by the one delivery waiting for a turn.
    gate: AsyncMutex<()>,
    /// `webhook_destination_throttled_seconds_total{destination}`.
    throttled: Counter,
    /// Every wait, in nanoseconds: the counter takes the whole seconds.
    waited_nanos: AtomicU64,
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pace")
            .field("waited_nanos", &self.waited_nanos)
            .finish_non_exhaustive()
    }
}

impl Pace {
    /// A lane's pace, counting its waits on `throttled`.
    pub fn new(throttled: Counter) -> Pace {
        Pace {
            limiter: Mutex::new(None),
            gate: AsyncMutex::new(()),
            throttled,
            waited_nanos: AtomicU64::new(0),
        }
    }

    /// Waits until no other delivery of the lane waits for a turn: the next delivery taken
    /// from the lane is this caller's to pace. (Cancel-safe.)
    pub async fn gate(&self) -> AsyncMutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// Waits for a turn (with the gate held) at the rate `rate` reads, the destination's live
    /// one, or none once it reads `None`; counts the wait. (Cancel-safe: a wait given up takes
    /// no turn.)
    pub async fn turn(&self, rate: impl Fn() -> Option<DeliveryRate>) {
        let started = Instant::now();
        while let Some(rate) = rate() {
            let limiter = self.limiter(rate);
            match limiter.check() {
                Ok(()) => break,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(limiter.clock().now());
                    tokio::time::sleep(wait.min(RECHECK)).await;
                }
            }
        }
        self.count(started.elapsed().as_nanos());
    }

    /// The limiter of `rate`: the current one, or a new one if the rate changed.
    fn limiter(&self, rate: DeliveryRate) -> Arc<DefaultDirectRateLimiter> {
        let mut current = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
        match &*current {
            Some((now, limiter)) if *now == rate => Arc::clone(limiter),
            _ => {
                let quota = Quota::with_period(rate.period())
                    .expect("a rate's period is at least 1 µs")
                    .allow_burst(rate.burst());
                let limiter = Arc::new(RateLimiter::direct(quota));
                *current = Some((rate, Arc::clone(&limiter)));
                limiter
            }
        }
    }

    /// Adds a wait of `nanos` to the total, and its whole seconds to the counter.
    fn count(&self, nanos: u128) {
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        let before = self.waited_nanos.fetch_add(nanos, Ordering::Relaxed);
        let after = before.saturating_add(nanos);
        let seconds = (after / NANOS_PER_SECOND).saturating_sub(before / NANOS_PER_SECOND);
        if seconds > 0 {
            self.throttled.increment(seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metrics;

    fn rate(per_second: f64, burst: u32) -> DeliveryRate {
        DeliveryRate {
            per_second,
            burst: NonZeroU32::new(burst),
        }
    }

    fn throttled(metrics: &Metrics) -> u64 {
        let series = metrics.counters("webhook_destination_throttled_seconds_total");
        assert_eq!(series.len(), 1, "{series:?}");
        series[0].1
    }

    #[tokio::test]
    async fn a_burst_goes_at_once_then_turns_come_at_the_rate() {
        let metrics = Metrics::new();
        let pace = Pace::new(metrics.destination_throttled("d"));
        let started = Instant::now();
        for _ in 0..3 {
            pace.turn(|| Some(rate(20.0, 3))).await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(40),
            "the burst waited"
        );
        for _ in 0..2 {
            pace.turn(|| Some(rate(20.0, 3))).await;
        }
        // Two turns at 20 a second: 50 ms apart.
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(throttled(&metrics), 0, "under a second of waiting");
        // A changed rate is a new limiter, with a full burst.
        let changed = Instant::now();
        for _ in 0..4 {
            pace.turn(|| Some(rate(1.0, 4))).await;
        }
        assert!(
            changed.elapsed() < Duration::from_millis(40),
            "the new burst waited"
        );
    }

    #[tokio::test]
    async fn a_waiting_turn_follows_a_change_of_rate_within_a_second() {
        let metrics = Metrics::new();
        let pace = Pace::new(metrics.destination_throttled("d"));
        // The slowest rate, and its one turn spent: the next would wait 1,000 s.
        let live = Mutex::new(Some(rate(0.001, 1)));
        let read = || *live.lock().unwrap();
        pace.turn(read).await;
        let started = Instant::now();
        let reload = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            *live.lock().unwrap() = Some(rate(1000.0, 1));
        };
        tokio::join!(pace.turn(read), reload);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(throttled(&metrics), 1, "over a second of waiting");
        // No rate: no wait.
        *live.lock().unwrap() = None;
        let started = Instant::now();
        pace.turn(read).await;
        assert!(started.elapsed() < Duration::from_millis(40));
    }

    #[test]
    fn the_counter_takes_the_whole_seconds_of_the_waits() {
        let metrics = Metrics::new();
        let pace = Pace::new(metrics.destination_throttled("d"));
        assert_eq!(throttled(&metrics), 0, "shown from the start");
        pace.count(700_000_000);
        assert_eq!(throttled(&metrics), 0);
        pace.count(700_000_000);
        assert_eq!(throttled(&metrics), 1);
        pace.count(2_700_000_000);
        assert_eq!(throttled(&metrics), 4, "4.1 s in all");
    }
}
