//! One event's inspection record: what happened to it from receipt to each destination's final
//! outcome, as kept in memory and in the journal (postcard), and shown as JSON by the admin API.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use super::name::Name;

/// A record's list of destinations or of one destination's attempts: the first inline, more on
/// the heap. Nearly every event has one destination and one attempt, so a record usually
/// allocates nothing of its own, and nothing that one thread allocates (the dispatcher adding
/// a destination, a worker an attempt) is freed on another when the record is evicted.
/// Written as a sequence, like a `Vec`.
pub type Inline<T> = smallvec::SmallVec<[T; 1]>;

/// Longest error or verdict detail kept, in bytes (longer ones are cut at a character boundary).
const MAX_ERROR_BYTES: usize = 512;

/// What the ingress decided for the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Received; its plugins have not decided yet.
    Received,
    /// Queued for its destinations.
    Queued,
    /// A plugin dropped it (the sender got 202, nothing is delivered).
    Dropped(String),
    /// A plugin rejected it with this status.
    Rejected(u16),
    /// The queue refused it (the sender got 503).
    Refused,
}

/// One plugin's verdict on the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVerdict {
    /// The plugin's name.
    pub plugin: String,
    /// `forward`, `pass`, `drop`, `reject`, `fan_out` or `error`.
    pub verdict: String,
    /// The drop reason, the reject status and message, the fan-out's destinations or the
    /// failure, if any.
    pub detail: Option<String>,
}

impl PluginVerdict {
    /// `plugin`'s `verdict`, with `detail` cut to a bounded length.
    pub fn new(plugin: &str, verdict: &str, detail: Option<String>) -> Self {
        Self {
            plugin: plugin.to_owned(),
            verdict: verdict.to_owned(),
            detail: detail.map(|text| cut(&text).to_owned()),
        }
    }
}

/// Where one destination's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryOutcome {
    /// Not attempted yet, or waiting for a retry.
    Pending,
    /// Delivered.
    Delivered,
    /// Failed for good: a dead letter.
    DeadLettered,
}

impl DeliveryOutcome {
    /// The name used in JSON and in the `outcome` filter.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started, Unix milliseconds.
    pub at_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// The destination's HTTP status, if it answered.
    pub status: Option<u16>,
    /// What went wrong, if it failed.
    pub error: Option<String>,
}

impl Attempt {
    /// An attempt started at `at_ms` that took `took`, with `error` cut to a bounded length.
    pub fn new(at_ms: u64, took: Duration, status: Option<u16>, error: Option<&str>) -> Self {
        Self {
            at_ms,
            duration_ms: took.as_secs_f64() * 1000.0,
            status,
            error: error.map(|text| cut(text).to_owned()),
        }
    }
}

/// The event's delivery to one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationRecord {
    /// The destination's name.
    pub name: Name,
    /// Where the delivery stands.
    pub outcome: DeliveryOutcome,
    /// Every attempt, oldest first.
    pub attempts: Inline<Attempt>,
}

/// One event's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event id (a UUID, as a number).
    pub id: u128,
    /// The route that received it.
    pub route: Name,
    /// When it was received, Unix milliseconds.
    pub received_ms: u64,
    /// The sender's delivery id, if its preset (or the route's `dedup`) names one.
    pub delivery_id: Option<String>,
    /// What the ingress decided.
    pub decision: Decision,
    /// Each plugin's verdict, in chain order.
    pub verdicts: Vec<PluginVerdict>,
    /// Each destination's delivery, in the order they were queued (or first attempted).
    pub destinations: Inline<DestinationRecord>,
    /// The body, where the route sets `inspect_bodies = true`.
    pub body: Option<StoredBody>,
    /// The record's key in the journal: 0 until it is first written (none, without a journal).
    pub journal_key: u64,
}

impl EventRecord {
    /// The event's outcome: `pending` (plugins running, or a destination not final), `dropped`,
    /// `rejected`, `refused`, `dead_lettered` (a destination failed for good) or `delivered`.
    pub fn outcome(&self) -> &'static str {
        match &self.decision {
            Decision::Received => "pending",
            Decision::Dropped(_) => "dropped",
            Decision::Rejected(_) => "rejected",
            Decision::Refused => "refused",
            Decision::Queued => {
                let outcomes = || self.destinations.iter().map(|d| d.outcome);
                if self.destinations.is_empty() || outcomes().any(|o| o == DeliveryOutcome::Pending)
                {
                    "pending"
                } else if outcomes().any(|o| o == DeliveryOutcome::DeadLettered) {
                    "dead_lettered"
                } else {
                    "delivered"
                }
            }
        }
    }

    /// Adds the destinations `names` names, pending (those it lists already keep their
    /// delivery).
    pub(super) fn queued_to(&mut self, names: impl IntoIterator<Item = Name>) {
        for name in names {
            self.destination_or(&name, || name);
        }
    }

    /// The record of delivery to `name`, added (pending) if there is none yet.
    pub fn destination(&mut self, name: &str) -> &mut DestinationRecord {
        self.destination_or(name, || Name::intern(name))
    }

    /// The record of delivery to `name`, added (pending, named by `interned()`) if there is
    /// none yet.
    pub(super) fn destination_or(
        &mut self,
        name: &str,
        interned: impl FnOnce() -> Name,
    ) -> &mut DestinationRecord {
        let index = match self.destinations.iter().position(|d| *d.name == *name) {
            Some(index) => index,
            None => {
                self.destinations.push(DestinationRecord {
                    name: interned(),
                    outcome: DeliveryOutcome::Pending,
                    attempts: Inline::new(),
                });
                self.destinations.len() - 1
            }
        };
        &mut self.destinations[index]
    }

    /// The record as the admin API shows it; `with_body` adds the body, if kept.
    pub fn to_json(&self, with_body: bool) -> Value {
        let (decision, detail) = match &self.decision {
            Decision::Received => ("received", Value::Null),
            Decision::Queued => ("queued", Value::Null),
            Decision::Dropped(reason) => ("dropped", json!(reason)),
            Decision::Rejected(status) => ("rejected", json!(status)),
            Decision::Refused => ("refused", Value::Null),
        };
        let destinations: Vec<Value> = self
            .destinations
            .iter()
            .map(|d| {
                json!({
                    "name": &*d.name,
                    "outcome": d.outcome.label(),
                    "attempts": d.attempts.iter().map(|a| json!({
                        "at": rfc3339(a.at_ms),
                        "at_ms": a.at_ms,
                        "duration_ms": a.duration_ms,
                        "status": a.status,
                        "error": a.error,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut value = json!({
            "id": uuid::Uuid::from_u128(self.id).to_string(),
            "route": &*self.route,
            "received_at": rfc3339(self.received_ms),
            "received_ms": self.received_ms,
            "delivery_id": self.delivery_id,
            "outcome": self.outcome(),
            "decision": decision,
            "decision_detail": detail,
            "plugins": self.verdicts.iter().map(|v| json!({
                "plugin": v.plugin,
                "verdict": v.verdict,
                "detail": v.detail,
            })).collect::<Vec<_>>(),
            "destinations": destinations,
        });
        if with_body && let Some(body) = &self.body {
            value["body"] = match std::str::from_utf8(&body.0) {
                Ok(text) => json!({ "text": text }),
                Err(_) => json!({
                    "base64": base64::engine::general_purpose::STANDARD.encode(&body.0)
                }),
            };
        }
        value
    }
}

/// A kept body: raw bytes in the journal, shared with the event in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody(pub Bytes);

impl Serialize for StoredBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for StoredBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StoredBody;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<StoredBody, E> {
                Ok(StoredBody(Bytes::copy_from_slice(bytes)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<StoredBody, E> {
                Ok(StoredBody(Bytes::from(bytes)))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

/// `text` cut to at most [`MAX_ERROR_BYTES`], at a character boundary.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_ERROR_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Unix milliseconds as an RFC 3339 time with milliseconds.
fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> EventRecord {
        EventRecord {
            id: 7,
            route: "hooks".into(),
            received_ms: 1_700_000_000_123,
            delivery_id: Some("d-1".to_owned()),
            decision: Decision::Queued,
            verdicts: vec![PluginVerdict {
                plugin: "filter".to_owned(),
                verdict: "forward".to_owned(),
                detail: None,
            }],
            destinations: Inline::new(),
            body: Some(StoredBody(Bytes::from_static(b"\xff\x00binary"))),
            journal_key: 3,
        }
    }

    #[test]
    fn a_typical_record_is_small_in_the_journal() {
        let mut record = record();
        record.id = uuid::Uuid::now_v7().as_u128();
        record.delivery_id = Some(uuid::Uuid::now_v7().to_string());
        record.body = None;
        record.journal_key = 1 << 20;
        record.destination("sink").attempts.push(Attempt::new(
            crate::journal::now_ms(),
            Duration::from_millis(3),
            Some(200),
            None,
        ));
        record.destination("sink").outcome = DeliveryOutcome::Delivered;
        let bytes = postcard::to_allocvec(&record).expect("encode");
        // What docs/benchmarks.md ("Event record") states.
        assert!(bytes.len() <= 128, "{} bytes", bytes.len());
    }

    #[test]
    fn the_outcome_follows_every_destination() {
        let mut record = record();
        assert_eq!(record.outcome(), "pending", "queued, not yet taken");
        record.destination("a").outcome = DeliveryOutcome::Delivered;
        record.destination("b");
        assert_eq!(record.outcome(), "pending");
        record.destination("b").outcome = DeliveryOutcome::DeadLettered;
        assert_eq!(record.outcome(), "dead_lettered");
        record.destination("b").outcome = DeliveryOutcome::Delivered;
        assert_eq!(record.outcome(), "delivered");
        assert_eq!(record.destinations.len(), 2, "one entry per destination");
    }

    #[test]
    fn a_record_round_trips_through_postcard_and_shows_a_binary_body_as_base64() {
        let mut record = record();
        record.destination("a").attempts.push(Attempt::new(
            1,
            Duration::from_micros(1500),
            Some(500),
            Some(&"é".repeat(400)),
        ));
        let error = record.destinations[0].attempts[0].error.clone();
        assert!(error.is_some_and(|e| e.len() <= MAX_ERROR_BYTES && e.starts_with('é')));
        let bytes = postcard::to_allocvec(&record).expect("encode");
        let back: EventRecord = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, record);
        let json = record.to_json(true);
        assert_eq!(json["id"], "00000000-0000-0000-0000-000000000007");
        assert_eq!(json["body"]["base64"], "/wBiaW5hcnk=");
        assert_eq!(json["destinations"][0]["attempts"][0]["duration_ms"], 1.5);
        assert!(record.to_json(false).get("body").is_none());
    }
}
