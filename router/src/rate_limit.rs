//! Per-route rate limits: `rate_limit = { per_second = 100, burst = 200 }` lets a route accept
//! `burst` requests at once and `per_second` a second after that (GCRA, via `governor`); a
//! request over the limit gets 429 with `Retry-After`.
//!
//! On a route without `verify` every request is charged to the route's limit, before its body
//! is read. On a route with `verify` only verified requests are, after verification, so forged
//! requests cannot spend what the genuine sender needs: a request that fails verification (or is
//! refused before it, for its body) is charged instead to its client's own, smaller allowance
//! (`unverified`, per client address), and a client that has spent it gets 429 before its body
//! is read until it has some again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

/// Most client addresses tracked at once by one route's `unverified` allowance; past it (after
/// forgetting clients whose allowance is whole again) a new client's failed request is refused
/// as over the limit, so that forgeries from many addresses cannot grow memory.
const MAX_CLIENTS: usize = 65_536;

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
    /// Each client's allowance for requests that fail verification, on a route with `verify`
    /// (default: a tenth of the route's `per_second` and `burst`, at least 1).
    #[serde(default)]
    pub unverified: Option<UnverifiedLimitConfig>,
}

/// `rate_limit.unverified`: `{ per_second = 1, burst = 5 }`, per client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnverifiedLimitConfig {
    /// Sustained failed requests per second (1 to 1 000 000).
    #[serde(deserialize_with = "crate::config::bounds::per_second")]
    pub per_second: NonZeroU32,
    /// Failed requests allowed at once (default: `per_second`; 1 to 1 000 000).
    #[serde(default, deserialize_with = "crate::config::bounds::burst")]
    pub burst: Option<NonZeroU32>,
}

impl RateLimitConfig {
    /// The `unverified` allowance as written, or a tenth of the route's (at least 1).
    pub fn unverified_or_default(&self) -> UnverifiedLimitConfig {
        let tenth = |n: NonZeroU32| NonZeroU32::new(n.get() / 10).unwrap_or(NonZeroU32::MIN);
        self.unverified.unwrap_or(UnverifiedLimitConfig {
            per_second: tenth(self.per_second),
            burst: Some(tenth(self.burst.unwrap_or(self.per_second))),
        })
    }
}

fn quota(per_second: NonZeroU32, burst: Option<NonZeroU32>) -> Quota {
    Quota::per_second(per_second).allow_burst(burst.unwrap_or(per_second))
}

/// One route's limiter.
#[derive(Debug)]
pub struct RouteRateLimit {
    limiter: DefaultDirectRateLimiter,
    /// On a route with `verify`: the per-client allowance for failed requests.
    unverified: Option<ClientLimit>,
    clock: DefaultClock,
}

impl RouteRateLimit {
    /// A limiter for `config`, on a route that verifies its sender (`verified`) or not.
    pub fn new(config: RateLimitConfig, verified: bool) -> RouteRateLimit {
        RouteRateLimit {
            limiter: RateLimiter::direct(quota(config.per_second, config.burst)),
            unverified: verified.then(|| ClientLimit::new(config.unverified_or_default())),
            clock: DefaultClock::default(),
        }
    }

    /// Charges one request to the route's limit, or says how long until it has room. On a route
    /// with `verify`, call it for verified requests only.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Whether a request may be read at all: on a route with `verify`, not if `client` has spent
    /// its `unverified` allowance (how long until it has some again); on a route without, this
    /// charges the route's limit ([`Self::check`]).
    pub fn admit(&self, client: IpAddr) -> Result<(), Duration> {
        match &self.unverified {
            None => self.check(),
            Some(clients) => clients.admit(client, Instant::now()),
        }
    }

    /// Charges a request that failed verification to `client`'s `unverified` allowance, or says
    /// how long until it has room (the request is then answered 429 rather than 401).
    pub fn charge_unverified(&self, client: IpAddr) -> Result<(), Duration> {
        match &self.unverified {
            None => Ok(()),
            Some(clients) => clients.charge(client, Instant::now()),
        }
    }
}

/// A per-client allowance, and the clients that have spent theirs.
#[derive(Debug)]
struct ClientLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Clients over their allowance, and until when.
    spent: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

impl ClientLimit {
    fn new(config: UnverifiedLimitConfig) -> ClientLimit {
        ClientLimit {
            limiter: RateLimiter::keyed(quota(config.per_second, config.burst)),
            spent: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut spent = self.spent();
        match spent.get(&client) {
            Some(&until) if until > now => Err(until - now),
            Some(_) => {
                spent.remove(&client);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn charge(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.limiter.len() >= MAX_CLIENTS {
            self.limiter.retain_recent();
            if self.limiter.len() >= MAX_CLIENTS {
                return Err(Duration::from_secs(1));
            }
        }
        let wait = match self.limiter.check_key(&client) {
            Ok(()) => return Ok(()),
            Err(not_until) => not_until.wait_time_from(self.clock.now()),
        };
        let mut spent = self.spent();
        if spent.len() >= MAX_CLIENTS {
            spent.retain(|_, until| *until > now);
        }
        if spent.len() < MAX_CLIENTS {
            spent.insert(client, now + wait);
        }
        Err(wait)
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

    fn config(per_second: u32, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst),
            unverified: None,
        }
    }

    #[test]
    fn a_burst_passes_then_the_limit_says_how_long_to_wait() {
        let limit = RouteRateLimit::new(config(1, 3), false);
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
    fn failed_requests_spend_their_clients_allowance_not_the_routes() {
        let limit = RouteRateLimit::new(config(1, 20), true);
        let (forger, sender): (IpAddr, IpAddr) = (
            "203.0.113.7".parse().unwrap(),
            "140.82.115.1".parse().unwrap(),
        );
        // The default allowance is a tenth of the route's: 2 at once.
        for _ in 0..2 {
            assert_eq!(limit.admit(forger), Ok(()));
            assert_eq!(limit.charge_unverified(forger), Ok(()));
        }
        assert!(
            limit.charge_unverified(forger).is_err(),
            "the third is over"
        );
        let wait = limit
            .admit(forger)
            .expect_err("read no more of its requests");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Another client, and the route's own limit, are untouched.
        assert_eq!(limit.admit(sender), Ok(()));
        for _ in 0..20 {
            assert_eq!(limit.check(), Ok(()));
        }
        assert!(limit.check().is_err());
    }

    #[test]
    fn the_default_allowance_is_a_tenth_and_at_least_one() {
        let tenth = config(100, 200).unverified_or_default();
        assert_eq!(
            (tenth.per_second.get(), tenth.burst),
            (10, NonZeroU32::new(20))
        );
        let least = config(1, 3).unverified_or_default();
        assert_eq!(
            (least.per_second.get(), least.burst),
            (1, NonZeroU32::new(1))
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
