//! The allowed range of every numeric, size and duration key, checked as the value is read so
//! that an error points at the value's own line and column.
//!
//! Each key has one reader here (used with `#[serde(deserialize_with = ...)]`); the README's
//! config tables show the same ranges. Values that are each in range but contradict each other
//! (`listen` equal to `admin_listen`, ...) are checked after loading, in `config::mod`.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, Error};

use super::{ByteSize, HumanDuration};

const MILLISECOND: Duration = Duration::from_millis(1);
/// The least time a client is given to send a request head or body.
const CLIENT_MIN: Duration = Duration::from_millis(100);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const MIB: u64 = 1024 * 1024;

/// Reads the duration of `key` and checks that it lies in `min..=max`.
fn duration<'de, D: Deserializer<'de>>(
    deserializer: D,
    key: &str,
    min: Duration,
    max: Duration,
) -> Result<HumanDuration, D::Error> {
    let value = HumanDuration::deserialize(deserializer)?;
    if value.0 < min || value.0 > max {
        return Err(D::Error::custom(format!(
            "{key} = {} is out of range: must be between {} and {}",
            humantime::format_duration(value.0),
            humantime::format_duration(min),
            humantime::format_duration(max),
        )));
    }
    Ok(value)
}

/// Reads the size of `key` and checks that it lies in `min..=max` bytes.
fn size<'de, D: Deserializer<'de>>(
    deserializer: D,
    key: &str,
    min: u64,
    max: u64,
) -> Result<ByteSize, D::Error> {
    let value = ByteSize::deserialize(deserializer)?;
    if value.0 < min || value.0 > max {
        return Err(D::Error::custom(format!(
            "{key} = {} is out of range: must be between {} and {}",
            bytesize::ByteSize(value.0).display().iec(),
            bytesize::ByteSize(min).display().iec(),
            bytesize::ByteSize(max).display().iec(),
        )));
    }
    Ok(value)
}

/// Reads the count of `key` and checks that it lies in `1..=max`.
fn count<'de, D: Deserializer<'de>>(deserializer: D, key: &str, max: u32) -> Result<u32, D::Error> {
    let value = i64::deserialize(deserializer)?;
    match u32::try_from(value) {
        Ok(count) if (1..=max).contains(&count) => Ok(count),
        _ => Err(D::Error::custom(format!(
            "{key} = {value} is out of range: must be between 1 and {max}"
        ))),
    }
}

fn count_usize<'de, D: Deserializer<'de>>(
    deserializer: D,
    key: &str,
    max: u32,
) -> Result<NonZeroUsize, D::Error> {
    let value = count(deserializer, key, max)?;
    usize::try_from(value)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| D::Error::custom(format!("{key} = {value} is out of range")))
}

fn count_u32<'de, D: Deserializer<'de>>(
    deserializer: D,
    key: &str,
    max: u32,
) -> Result<NonZeroU32, D::Error> {
    let value = count(deserializer, key, max)?;
    NonZeroU32::new(value).ok_or_else(|| D::Error::custom(format!("{key} = 0 is out of range")))
}

/// Defines the reader of one key: `name, "key": Type = reader(bounds...)`.
macro_rules! bounded {
    ($(#[$doc:meta])* $name:ident, $key:literal: $ty:ty = $reader:ident($($bound:expr),*)) => {
        $(#[$doc])*
        pub(crate) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
            $reader(d, $key, $($bound),*)
        }
    };
}

bounded!(
    /// `server.max_body_bytes`: 1 B to 256 MiB (a body is held in memory until delivered).
    max_body_bytes, "max_body_bytes": ByteSize = size(1, 256 * MIB)
);

/// `server.max_body_bytes`, present only when written (without it the limit depends on the
/// queue: see `ServerConfig::body_limit`).
pub(crate) fn max_body_bytes_set<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ByteSize>, D::Error> {
    max_body_bytes(d).map(Some)
}
bounded!(
    /// `server.queue_capacity`: 1 to 10 000 000 events.
    queue_capacity, "queue_capacity": NonZeroUsize = count_usize(10_000_000)
);
bounded!(
    /// A circuit's `failures`: 1 to 10 000 attempts in a row.
    circuit_failures, "failures": NonZeroU32 = count_u32(10_000)
);
bounded!(
    /// A circuit's `window`: 1 ms to 1 h.
    circuit_window, "window": HumanDuration = duration(MILLISECOND, HOUR)
);
bounded!(
    /// A circuit's `open_for`: 1 ms to 1 h.
    circuit_open_for, "open_for": HumanDuration = duration(MILLISECOND, HOUR)
);
bounded!(
    /// A circuit's `max_open_for`: 1 ms to 24 h.
    circuit_max_open_for, "max_open_for": HumanDuration = duration(MILLISECOND, Duration::from_secs(24 * 3600))
);

/// A destination's `max_held`: 1 to 10 000 000 events (present only when written).
pub(crate) fn max_held<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NonZeroUsize>, D::Error> {
    count_usize(d, "max_held", 10_000_000).map(Some)
}

bounded!(
    /// `server.dead_letter_capacity`: 1 to 1 000 000 dead letters.
    dead_letter_capacity, "dead_letter_capacity": NonZeroUsize = count_usize(1_000_000)
);
bounded!(
    /// `server.dead_letter_max_bytes`: 1 MiB to 64 GiB.
    dead_letter_max_bytes, "dead_letter_max_bytes": ByteSize = size(MIB, 64 * 1024 * MIB)
);
bounded!(
    /// `queue.fsync_interval`: 1 ms to 10 s.
    fsync_interval, "fsync_interval": HumanDuration = duration(MILLISECOND, Duration::from_secs(10))
);
bounded!(
    /// `queue.max_bytes`: 1 MiB to 16 TiB.
    journal_max_bytes, "max_bytes": ByteSize = size(MIB, 16 * 1024 * 1024 * MIB)
);
bounded!(
    /// `queue.ack_wait`: 1 s to 1 h.
    nats_ack_wait, "ack_wait": HumanDuration = duration(SECOND, HOUR)
);
bounded!(
    /// `queue.publish_timeout`: 10 ms to 1 min.
    nats_publish_timeout, "publish_timeout": HumanDuration =
        duration(Duration::from_millis(10), Duration::from_secs(60))
);
bounded!(
    /// `queue.max_age`: 0 (no limit) to 10 000 days.
    nats_max_age, "max_age": HumanDuration = duration(Duration::ZERO, Duration::from_secs(10_000 * 24 * 3600))
);
bounded!(
    /// `queue.max_ack_pending`: 1 to 1 000 000 messages per destination.
    nats_max_ack_pending, "max_ack_pending": NonZeroUsize = count_usize(1_000_000)
);
bounded!(
    /// `queue.partitions`: 1 to 1024 partitions of ordered keys per destination.
    nats_partitions, "partitions": NonZeroUsize = count_usize(1024)
);

/// `queue.replicas`: 1 to 5 (JetStream's own limit).
pub(crate) fn nats_replicas<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    count_usize(d, "replicas", 5).map(NonZeroUsize::get)
}

/// `queue.stream`: a JetStream stream name (letters, digits, `-` and `_`; at most 32).
pub(crate) fn nats_stream<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    let valid = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(name)
    } else {
        Err(D::Error::custom(format!(
            "stream = {name:?}: a stream name is 1 to 32 letters, digits, '-' or '_'"
        )))
    }
}

bounded!(
    /// `server.header_read_timeout`: 100 ms to 1 h (a real client needs some time).
    header_read_timeout, "header_read_timeout": HumanDuration = duration(CLIENT_MIN, HOUR)
);
bounded!(
    /// `server.idle_timeout`: 100 ms to 1 h.
    idle_timeout, "idle_timeout": HumanDuration = duration(CLIENT_MIN, HOUR)
);
bounded!(
    /// `server.max_requests_in_flight`: 1 to 1 000 000 requests.
    max_requests_in_flight, "max_requests_in_flight": NonZeroUsize = count_usize(1_000_000)
);

/// `server.max_connections`: 1 to 1 000 000 connections (present only when written; the
/// descriptor limit may lower it at start).
pub(crate) fn max_connections<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<NonZeroUsize>, D::Error> {
    count_usize(d, "max_connections", 1_000_000).map(Some)
}

/// `server.max_requests_in_flight_per_client`: 1 to 1 000 000 requests (present only when
/// written).
pub(crate) fn max_requests_in_flight_per_client<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<NonZeroUsize>, D::Error> {
    count_usize(d, "max_requests_in_flight_per_client", 1_000_000).map(Some)
}

bounded!(
    /// `server.min_body_rate`: 0 (none) to 1 GiB per second.
    min_body_rate, "min_body_rate": ByteSize = size(0, 1024 * MIB)
);
bounded!(
    /// `server.min_body_rate_grace`: 100 ms to 1 h.
    min_body_rate_grace, "min_body_rate_grace": HumanDuration = duration(CLIENT_MIN, HOUR)
);
bounded!(
    /// `server.body_read_timeout`: 100 ms to 1 h (a real client needs some time).
    body_read_timeout, "body_read_timeout": HumanDuration = duration(CLIENT_MIN, HOUR)
);
bounded!(
    /// `server.shutdown_grace`: 1 ms to 1 h.
    shutdown_grace, "shutdown_grace": HumanDuration = duration(MILLISECOND, HOUR)
);
bounded!(
    /// A destination's `timeout`: 1 ms to 1 h.
    timeout, "timeout": HumanDuration = duration(MILLISECOND, HOUR)
);
bounded!(
    /// A destination's `max_in_flight`: 1 to 10 000 requests (each is a worker task).
    max_in_flight, "max_in_flight": NonZeroUsize = count_usize(10_000)
);
bounded!(
    /// `retry.max_attempts`: 1 to 100 attempts.
    max_attempts, "max_attempts": NonZeroU32 = count_u32(100)
);
bounded!(
    /// `retry.initial_backoff`: 1 ms to 7 days.
    initial_backoff, "initial_backoff": HumanDuration = duration(MILLISECOND, 7 * DAY)
);
bounded!(
    /// `retry.max_backoff`: 1 ms to 7 days. Without a journal an event waits in memory, and
    /// a week is longer than senders keep a webhook themselves.
    max_backoff, "max_backoff": HumanDuration = duration(MILLISECOND, 7 * DAY)
);
bounded!(
    /// `dedup.window`: 1 s to 30 days.
    dedup_window, "window": HumanDuration = duration(SECOND, 30 * DAY)
);
bounded!(
    /// `dedup.capacity`: 1 to 10 000 000 ids.
    dedup_capacity_nonzero, "capacity": NonZeroUsize = count_usize(10_000_000)
);
bounded!(
    /// `verify.tolerance`: 1 s to 24 h.
    tolerance, "tolerance": HumanDuration = duration(SECOND, DAY)
);
bounded!(
    /// `rate_limit.per_second`: 1 to 1 000 000.
    per_second, "per_second": NonZeroU32 = count_u32(1_000_000)
);
bounded!(
    /// `rate_limit.burst` and a destination's `rate.burst`: 1 to 1 000 000.
    burst_some, "burst": NonZeroU32 = count_u32(1_000_000)
);
bounded!(
    /// A plugin's `limits.memory`: 1 MiB to 256 MiB.
    plugin_memory, "memory": ByteSize = size(MIB, 256 * MIB)
);
bounded!(
    /// A plugin's `limits.time`: 1 ms to 10 s.
    plugin_time, "time": HumanDuration = duration(MILLISECOND, 10 * SECOND)
);
bounded!(
    /// A plugin's `limits.output`: 1 KiB to 256 MiB.
    plugin_output, "output": ByteSize = size(1024, 256 * MIB)
);
bounded!(
    /// `[plugins] max_module_bytes`: 1 KiB to 1 GiB.
    max_module_bytes, "max_module_bytes": ByteSize = size(1024, 1024 * MIB)
);
bounded!(
    /// `[plugins] compile_timeout`: 1 s to 1 h.
    compile_timeout, "compile_timeout": HumanDuration = duration(SECOND, HOUR)
);

bounded!(
    /// `inspect.max_age`: 1 s to 30 days.
    inspect_max_age, "max_age": HumanDuration = duration(SECOND, Duration::from_secs(30 * 24 * 3600))
);

/// `inspect.events`: 0 (off) to 1 000 000 events.
pub(crate) fn inspect_events<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let value = i64::deserialize(d)?;
    usize::try_from(value)
        .ok()
        .filter(|events| *events <= 1_000_000)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "events = {value} is out of range: must be between 0 (off) and 1000000"
            ))
        })
}

/// `destinations.NAME.rate.per_second`: 0.001 to 1 000 000 attempts a second, fractions
/// allowed (an integer reads as a whole number).
pub(crate) fn delivery_per_second<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    const RANGE: std::ops::RangeInclusive<f64> = 0.001..=1_000_000.0;
    let value = f64::deserialize(d)?;
    if RANGE.contains(&value) {
        Ok(value)
    } else {
        Err(D::Error::custom(format!(
            "per_second = {value} is out of range: must be between 0.001 and 1000000"
        )))
    }
}

/// `dedup.capacity`, as the `usize` the dedup store takes.
pub(crate) fn dedup_capacity<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    dedup_capacity_nonzero(d).map(NonZeroUsize::get)
}

/// `rate_limit.burst` or a destination's `rate.burst`, which is optional.
pub(crate) fn burst<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NonZeroU32>, D::Error> {
    burst_some(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(deserialize_with = "timeout")]
        timeout: HumanDuration,
        #[serde(deserialize_with = "max_body_bytes")]
        size: ByteSize,
        #[serde(deserialize_with = "max_in_flight")]
        count: NonZeroUsize,
    }

    fn read(text: &str) -> Result<Sample, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn values_at_the_bounds_pass_and_past_them_fail() {
        let top = read("timeout = \"1h\"\nsize = \"256MiB\"\ncount = 10000").unwrap();
        assert_eq!(top.timeout.0, HOUR);
        assert_eq!(top.size.0, 256 * MIB);
        assert_eq!(top.count.get(), 10_000);
        assert!(read("timeout = \"1ms\"\nsize = 1\ncount = 1").is_ok());
        let error = read("timeout = \"500000000000y\"\nsize = 1\ncount = 1").unwrap_err();
        assert!(error.starts_with("timeout = "), "{error}");
        assert!(
            error.contains("is out of range: must be between 1ms and 1h"),
            "{error}"
        );
        let error = read("timeout = \"0s\"\nsize = 1\ncount = 1").unwrap_err();
        assert!(error.contains("out of range"), "{error}");
        let error = read("timeout = \"1s\"\nsize = \"1TiB\"\ncount = 1").unwrap_err();
        assert!(error.contains("TiB is out of range"), "{error}");
        let error = read("timeout = \"1s\"\nsize = 1\ncount = 1000000000").unwrap_err();
        assert!(
            error.contains(
                "max_in_flight = 1000000000 is out of range: must be between 1 and 10000"
            ),
            "{error}"
        );
        assert!(read("timeout = \"1s\"\nsize = 1\ncount = -1").is_err());
    }
}
