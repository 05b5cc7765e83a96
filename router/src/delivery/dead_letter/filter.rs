//! Which dead letters a bulk request means: the filters of `GET`, `POST .../replay` and
//! `DELETE /dead-letters` (route, destination, reason, time), read from a query string, and
//! each letter's reason.
//!
//! A letter's reason comes from how its last attempt failed: `http_<status>` when the
//! destination answered, else `timeout`, `connect`, `request` (any other transport error),
//! `panic` (the attempt panicked) or `removed` (its destination left the config while the
//! event was held); on NATS also `given_up` (JetStream handed the message out too often with no
//! attempt finishing: the routers holding it stopped or crashed) or `undecodable` (the message
//! does not decode; the letter holds its raw bytes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::DeadLetter;

/// Query keys a filter is made of (besides `all`, which asks for every letter explicitly).
pub const FILTER_KEYS: [&str; 5] = ["route", "destination", "reason", "since", "until"];

/// A filter over dead letters; every condition given must hold (an empty filter matches all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LetterFilter {
    /// Only letters of events this route accepted.
    pub route: Option<String>,
    /// Only letters for this destination.
    pub destination: Option<String>,
    /// Only letters with this reason, or in this class (`http_5xx`, `http_4xx`, `http`).
    pub reason: Option<String>,
    /// Only letters dead-lettered at or after this time.
    pub since: Option<SystemTime>,
    /// Only letters dead-lettered before this time.
    pub until: Option<SystemTime>,
}

/// A query parameter that is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A time is neither Unix milliseconds nor RFC 3339.
    #[error(
        "{key}: {value:?} is not a time (give Unix milliseconds or RFC 3339, e.g. 2026-01-31T12:00:00Z)"
    )]
    Time {
        /// `since` or `until`.
        key: &'static str,
        /// What was given.
        value: String,
    },
    /// A reason that no letter can have.
    #[error(
        "reason: {0:?} is not a reason (http_<status>, http_4xx, http_5xx, http, timeout, connect, request, panic, removed, given_up, undecodable)"
    )]
    Reason(String),
}

impl LetterFilter {
    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Sets the condition `key` (one of [`FILTER_KEYS`]) to `value`; returns `Ok(false)` for a
    /// key that is not a filter's.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, FilterError> {
        match key {
            "route" => self.route = Some(value.to_owned()),
            "destination" => self.destination = Some(value.to_owned()),
            "reason" => {
                if !valid_reason(value) {
                    return Err(FilterError::Reason(value.to_owned()));
                }
                self.reason = Some(value.to_owned());
            }
            "since" => self.since = Some(parse_time("since", value)?),
            "until" => self.until = Some(parse_time("until", value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether `letter` meets every condition.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.route
            .as_deref()
            .is_none_or(|r| letter.event.route == r)
            && self
                .destination
                .as_deref()
                .is_none_or(|d| letter.destination_name == d)
            && self
                .reason
                .as_deref()
                .is_none_or(|wanted| reason_matches(wanted, &reason(letter)))
            && self.since.is_none_or(|since| letter.failed_at >= since)
            && self.until.is_none_or(|until| letter.failed_at < until)
    }
}

/// Why `letter`'s last attempt failed, as the `reason` filter names it.
pub fn reason(letter: &DeadLetter) -> String {
    if let Some(status) = letter.last_status {
        return format!("http_{status}");
    }
    let error = letter.last_error.as_str();
    let reason = if error.starts_with("timed out") {
        "timeout"
    } else if error.starts_with("connect error") {
        "connect"
    } else if error.starts_with("the last attempt panicked") {
        "panic"
    } else if error.starts_with("destination ") && error.ends_with("is no longer in the config") {
        "removed"
    } else if error.starts_with("given up: JetStream handed the message out") {
        "given_up"
    } else if error.starts_with("the NATS message") && error.contains("does not decode") {
        "undecodable"
    } else {
        "request"
    };
    reason.to_owned()
}

fn valid_reason(wanted: &str) -> bool {
    match wanted.strip_prefix("http_") {
        Some("4xx" | "5xx") => true,
        Some(status) => status.len() == 3 && status.parse::<u16>().is_ok(),
        None => matches!(
            wanted,
            "http"
                | "timeout"
                | "connect"
                | "request"
                | "panic"
                | "removed"
                | "given_up"
                | "undecodable"
        ),
    }
}

/// Whether a letter whose reason is `actual` meets the wanted reason or class.
fn reason_matches(wanted: &str, actual: &str) -> bool {
    match wanted {
        "http" => actual.starts_with("http_"),
        "http_4xx" => actual.starts_with("http_4"),
        "http_5xx" => actual.starts_with("http_5"),
        _ => wanted == actual,
    }
}

/// A time given as Unix milliseconds or RFC 3339.
fn parse_time(key: &'static str, value: &str) -> Result<SystemTime, FilterError> {
    let error = || FilterError::Time {
        key,
        value: value.to_owned(),
    };
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let ms = value.parse::<u64>().map_err(|_| error())?;
        return UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(error);
    }
    humantime::parse_rfc3339_weak(value).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(route: &str, destination: &str, status: Option<u16>, error: &str) -> DeadLetter {
        DeadLetter {
            id: crate::event::Event::new_id(),
            event: crate::event::Event::for_test("evt", route, bytes::Bytes::new()),
            destination: Some(0),
            destination_name: destination.into(),
            attempts: 1,
            last_status: status,
            last_error: error.into(),
            failed_at: UNIX_EPOCH + Duration::from_millis(5_000),
        }
    }

    #[test]
    fn reasons_come_from_the_last_failure() {
        let cases = [
            (Some(503), "HTTP 503", "http_503"),
            (None, "timed out after 2s", "timeout"),
            (None, "connect error: refused", "connect"),
            (None, "request error: reset", "request"),
            (None, "the last attempt panicked (see the log)", "panic"),
            (
                None,
                "destination \"gone\" is no longer in the config",
                "removed",
            ),
            // The NATS backend's own verdicts (`queue::nats`).
            (
                None,
                "given up: JetStream handed the message out 15 times, 11 of them without an \
                 attempt finishing (the routers holding it stopped or crashed); the limit is 10",
                "given_up",
            ),
            (
                None,
                "the NATS message (stream sequence 7) does not decode: bad header; the \
                 letter's body is its raw payload",
                "undecodable",
            ),
        ];
        for (status, error, expected) in cases {
            assert_eq!(
                reason(&letter("r", "d", status, error)),
                expected,
                "{error}"
            );
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let mut filter = LetterFilter::default();
        assert!(filter.is_empty());
        assert_eq!(filter.set("destination", "a"), Ok(true));
        assert_eq!(filter.set("reason", "http_5xx"), Ok(true));
        assert_eq!(filter.set("since", "5000"), Ok(true));
        assert_eq!(filter.set("until", "1970-01-01T00:00:06Z"), Ok(true));
        assert_eq!(filter.set("limit", "3"), Ok(false));
        assert!(filter.matches(&letter("r", "a", Some(502), "HTTP 502")));
        assert!(!filter.matches(&letter("r", "b", Some(502), "HTTP 502")));
        assert!(!filter.matches(&letter("r", "a", Some(404), "HTTP 404")));
        let mut late = letter("r", "a", Some(502), "HTTP 502");
        late.failed_at = UNIX_EPOCH + Duration::from_millis(6_000);
        assert!(!filter.matches(&late), "until is exclusive");
        filter.route = Some("other".into());
        assert!(!filter.matches(&letter("r", "a", Some(502), "HTTP 502")));
    }

    #[test]
    fn bad_values_are_named() {
        let mut filter = LetterFilter::default();
        assert!(matches!(
            filter.set("since", "yesterday"),
            Err(FilterError::Time { key: "since", .. })
        ));
        for bad in ["http_5", "http_xyz", "slow"] {
            assert!(filter.set("reason", bad).is_err(), "{bad}");
        }
        for good in ["http_404", "http_4xx", "http", "timeout", "removed"] {
            assert_eq!(filter.set("reason", good), Ok(true), "{good}");
        }
    }
}
