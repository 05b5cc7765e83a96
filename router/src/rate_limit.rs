//! Per-route rate limits: `rate_limit = { per_second = 100, burst = 200 }` lets a route accept
//! `burst` requests at once and `per_second` a second after that (GCRA, via `governor`); a
//! request over the limit gets 429 with `Retry-After`, before its body is read.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

/// A route's `rate_limit` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second (1 to 1 000 000).
    #[serde(deserialize_with = "crate::config::bounds::per_second")]
    pub per_second: NonZeroU32,
    /// Requests accepted at once (default: `per_second`; 1 to 1 000 000).
    #[serde(default, deserialize_with = "crate::config::bounds::burst")]
    pub burst: Option<NonZeroU32>,
}

/// One route's limiter.
#[derive(Debug)]
pub struct RouteRateLimit {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl RouteRateLimit {
    /// A limiter for `config`.
    pub fn new(config: RateLimitConfig) -> RouteRateLimit {
        let quota = Quota::per_second(config.per_second)
            .allow_burst(config.burst.unwrap_or(config.per_second));
        RouteRateLimit {
            limiter: RateLimiter::direct(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request's place, or says how long until one is free.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// Whole seconds to put in `Retry-After` for a wait (at least 1).
pub fn retry_after_seconds(wait: Duration) -> u32 {
    u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_limit_says_how_long_to_wait() {
        let limit = RouteRateLimit::new(RateLimitConfig {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(3),
        });
        for _ in 0..3 {
            assert_eq!(limit.check(), Ok(()));
        }
        let wait = limit.check().expect_err("the fourth is over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
    }
}
