//! Delivery: how an accepted event leaves the router.
//!
//! - [`dispatch`] takes events off the queue and drives each destination's lane;
//! - [`attempt`] makes one HTTP attempt (signed, with the destination's headers) and classifies
//!   its outcome, over the shared client or the destination's own ([`client`]: a private CA,
//!   a client certificate);
//! - [`backoff`] times the next attempt (backoff, jitter, `Retry-After`);
//! - [`circuit`] stops attempts to a destination that keeps failing, and probes it;
//! - [`rate`] paces the attempts to a destination with a `rate`;
//! - [`destinations`] keeps each destination's live state for the admin API;
//! - [`dead_letter`] keeps what failed for good, for inspection and replay.

pub mod attempt;
pub mod backoff;
pub mod circuit;
pub mod client;
pub mod dead_letter;
pub mod destinations;
pub mod dispatch;
pub mod rate;
