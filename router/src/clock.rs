//! Saturating time arithmetic: every place where a configured or remote duration (a timeout,
//! a backoff, a destination's `Retry-After`) meets an [`Instant`] goes through here, so that
//! no value, however large, can overflow a clock and panic.
//!
//! Config bounds (see `config::bounds`) keep configured values far below these caps; the caps
//! are the second line, for values the config cannot bound (a remote `Retry-After`) and for
//! configs built in code.
#![warn(clippy::arithmetic_side_effects)]

use std::time::{Duration, Instant};

/// The longest wait the router ever schedules or hands to a timer: one year.
///
/// The retry scheduler's timer wheel holds at most about two years; `Instant` itself may hold
/// far less on some platforms. A year is longer than any wait a config allows.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// `wait`, capped at [`MAX_WAIT`].
pub fn cap(wait: Duration) -> Duration {
    wait.min(MAX_WAIT)
}

/// The instant `wait` after `now`: [`cap`]ped, and if even that cannot be represented, the
/// furthest of a day, an hour or `now` itself that can.
pub fn after(now: Instant, wait: Duration) -> Instant {
    [
        cap(wait),
        Duration::from_secs(24 * 3600),
        Duration::from_secs(3600),
    ]
    .into_iter()
    .find_map(|wait| now.checked_add(wait))
    .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_waits_are_capped_not_overflowed() {
        assert_eq!(cap(Duration::MAX), MAX_WAIT);
        assert_eq!(cap(Duration::from_secs(5)), Duration::from_secs(5));
        let now = Instant::now();
        let later = after(now, Duration::MAX);
        assert!(later > now);
        assert!(later.duration_since(now) <= MAX_WAIT);
        assert_eq!(
            after(now, Duration::from_secs(1)).duration_since(now),
            Duration::from_secs(1)
        );
    }
}
