//! Attempt records: how many attempts a NATS message's delivery has had, counted by the
//! routers rather than by JetStream, kept in the key-value bucket `<stream>_attempts` under
//! the message's id.
//!
//! JetStream counts every hand-out of a message as a delivery: an attempt that failed, but also
//! a hand-back at a router's stop, an `ack_wait` expiry after a crash and a keep-alive that came
//! too late. So the router writes a record before it naks a failed attempt (and before it naks
//! a message whose dead letter could not be stored, with the verdict to store again), reads it
//! when JetStream hands the message out again, and deletes it once the message is acked. A
//! message handed out for the first time has no record (nothing could have written one), so
//! only redeliveries cost a read.
//!
//! Records are JSON (a field added later reads as its default in an older router). They are
//! kept for the stream's `max_age`, or [`FOREVER_STANDS_FOR`] where the stream keeps messages
//! for ever, so that records a crash left behind (and deletes' markers) do not pile up; a
//! message whose last failed attempt is older than that counts its attempts from zero again.

use std::time::Duration;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use crate::config::QueueConfig;
use crate::nats::{Nats, NatsError};
use crate::queue::Verdict;

/// How long records are kept where the stream keeps messages for ever (`max_age = 0`).
const FOREVER_STANDS_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the routers know of one message's delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Attempts made (each ended with a failure the router acted on).
    #[serde(default)]
    pub attempts: u32,
    /// Set when the delivery is over, its dead letter not yet stored.
    #[serde(default)]
    pub verdict: Option<Verdict>,
}

/// The bucket of attempt records.
#[derive(Debug, Clone)]
pub struct Attempts {
    bucket: kv::Store,
}

impl Attempts {
    /// Opens (or creates) the bucket.
    pub async fn open(nats: &Nats, config: &QueueConfig) -> Result<Attempts, NatsError> {
        let keep = if config.max_age.0.is_zero() {
            FOREVER_STANDS_FOR
        } else {
            config.max_age.0
        };
        let bucket = nats.key_value("attempts", keep, config.replicas).await?;
        Ok(Attempts { bucket })
    }

    /// The record under `key`, if there is one.
    pub async fn read(&self, key: &str) -> Result<Option<Record>, String> {
        match self.bucket.get(key).await {
            Ok(Some(value)) => serde_json::from_slice(&value)
                .map(Some)
                .map_err(|e| format!("attempt record {key:?} does not read: {e}")),
            Ok(None) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Writes `record` under `key`.
    pub async fn write(&self, key: &str, record: &Record) -> Result<(), String> {
        let value = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        self.bucket
            .put(key, value.into())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Deletes the record under `key` (the message is acked).
    pub async fn forget(&self, key: &str) {
        if let Err(error) = self.bucket.purge(key).await {
            tracing::debug!(%key, %error, "NATS: could not delete an attempt record; it expires with the bucket's max_age");
        }
    }
}

/// The record key of a message: its message id (`<event id>.<destination>.<nonce>`, valid as a
/// key), or, for a message published without one, `<consumer>.<stream sequence>`.
pub fn key(headers: Option<&async_nats::HeaderMap>, consumer: &str, sequence: u64) -> String {
    headers
        .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|id| id.as_str())
        .filter(|id| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=".contains(&b))
                && !id.starts_with('.')
                && !id.ends_with('.')
        })
        .map_or_else(|| format!("{consumer}.{sequence}"), str::to_owned)
}
