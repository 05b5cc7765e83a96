//! Retry timing: exponential backoff with jitter, and the `Retry-After` header.
// Time arithmetic meets configured and remote values here: no operator may overflow.
#![warn(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime};

use crate::config::{Jitter, RetryConfig};

/// The wait before the next attempt after `failed_attempts` failures (1 for the first failure).
///
/// The backoff is `initial_backoff × 2^(failed_attempts − 1)`, capped at `max_backoff`. With
/// full jitter the wait is `unit × backoff`, where `unit` is uniform in `[0, 1)`; a
/// `retry_after` from the destination replaces the backoff (still capped at `max_backoff`)
/// and is never shortened by jitter. Every wait is also capped at [`crate::clock::MAX_WAIT`],
/// whatever the policy says, so that no wait can overflow the scheduler's clock.
pub fn next_delay(
    policy: &RetryConfig,
    failed_attempts: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let cap = crate::clock::cap(policy.max_backoff.0);
    if let Some(wait) = retry_after {
        return wait.min(cap);
    }
    let exponent = failed_attempts.saturating_sub(1).min(63);
    let backoff = policy
        .initial_backoff
        .0
        .checked_mul(1u32.checked_shl(exponent).unwrap_or(u32::MAX))
        .map_or(cap, |d| d.min(cap));
    match policy.jitter {
        // `mul_f64` panics on NaN; `try_from_secs_f64` of a product within [0, backoff] cannot
        // fail, and a NaN sample waits the whole backoff.
        Jitter::Full if unit.is_nan() => backoff,
        Jitter::Full => Duration::try_from_secs_f64(backoff.as_secs_f64() * unit.clamp(0.0, 1.0))
            .unwrap_or(backoff)
            .min(backoff),
        Jitter::None => backoff,
    }
}

/// Parses a `Retry-After` value: delay-seconds (`"120"`) or an HTTP date, relative to `now`.
///
/// A date in the past means "now" (zero). Anything unparseable is ignored (`None`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use std::num::NonZeroU32;

    fn policy(jitter: Jitter) -> RetryConfig {
        RetryConfig {
            max_attempts: NonZeroU32::new(8).unwrap(),
            initial_backoff: HumanDuration(Duration::from_secs(1)),
            max_backoff: HumanDuration(Duration::from_secs(60)),
            jitter,
        }
    }

    #[test]
    fn backoff_doubles_from_initial_and_caps() {
        let p = policy(Jitter::None);
        let waits: Vec<u64> = (1..=8)
            .map(|n| next_delay(&p, n, None, 0.5).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(next_delay(&p, 0, None, 0.5), Duration::from_secs(1));
        assert_eq!(next_delay(&p, u32::MAX, None, 0.5), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_backoff() {
        let p = policy(Jitter::Full);
        assert_eq!(next_delay(&p, 3, None, 0.0), Duration::ZERO);
        assert_eq!(next_delay(&p, 3, None, 0.5), Duration::from_secs(2));
        for _ in 0..1000 {
            let wait = next_delay(&p, 4, None, fastrand::f64());
            assert!(wait < Duration::from_secs(8), "{wait:?}");
        }
        // Out-of-range samples are clamped, never stretching past the cap.
        assert_eq!(next_delay(&p, 10, None, 7.0), Duration::from_secs(60));
    }

    #[test]
    fn retry_after_wins_over_backoff_and_is_capped() {
        let p = policy(Jitter::Full);
        let wait = next_delay(&p, 1, Some(Duration::from_secs(5)), 0.0);
        assert_eq!(wait, Duration::from_secs(5));
        let wait = next_delay(&p, 1, Some(Duration::from_secs(3600)), 0.0);
        assert_eq!(wait, Duration::from_secs(60));
    }

    #[test]
    fn huge_policies_and_retry_afters_are_capped_at_the_scheduler_limit() {
        let mut p = policy(Jitter::Full);
        p.max_backoff = HumanDuration(Duration::from_secs(5 * 365 * 24 * 3600));
        p.initial_backoff = p.max_backoff;
        let huge = Some(Duration::from_secs(99_999_999));
        assert_eq!(next_delay(&p, 1, huge, 0.5), crate::clock::MAX_WAIT);
        assert_eq!(next_delay(&p, 40, None, 1.0), crate::clock::MAX_WAIT);
        assert_eq!(next_delay(&p, 3, None, f64::NAN), crate::clock::MAX_WAIT);
        assert_eq!(
            next_delay(&p, 3, Some(Duration::MAX), 0.0),
            crate::clock::MAX_WAIT
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        // 2015-10-21 07:28:00 GMT is `now`; 07:28:30 is 30 s later.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
