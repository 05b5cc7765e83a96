//! A dedup window shared by every router on one NATS JetStream (`backend = "nats"`): a
//! key-value bucket per window length, `<stream>_dedup_<seconds>s`, whose entries expire with
//! the window (the bucket's `max_age`).
//!
//! A claim *creates* the key `<route>.<id in base64url>` (which fails if any router has it)
//! with the value `?<deadline> <event id>` (a *pending* claim; the deadline in Unix
//! milliseconds); the commit overwrites it with `<event id>`, and a release deletes it, if it
//! is still this request's claim. Another router that finds a pending claim answers "in
//! progress" (503), and one that finds an event id answers with it (a duplicate).
//!
//! A router that dies between its claim and the outcome leaves the claim pending. So a pending
//! claim lives only until its deadline, [`claim_lifetime`] after it was made (the publish
//! timeout and [`CLAIM_SLACK`]): past it, the next request with that id takes the claim over
//! (a compare-and-swap on the entry's revision, so that only one request does). Per-key TTLs
//! would need nats-server 2.11; the deadline in the value works with every server, and assumes
//! that the routers' clocks agree to within a second or so.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{SharedClaim, SharedClaimFuture, SharedWindow};
use crate::journal::now_ms;
use crate::nats::{Nats, NatsError, Outbox};

/// Marks a claimed id whose request is still being accepted.
const PENDING: &str = "?";

/// How long a claim may stay pending beyond the publish timeout: the route's plugins, the
/// claim's own round trip to the server, the commit's way through the outbox, and the routers'
/// clocks disagreeing a little.
pub const CLAIM_SLACK: Duration = Duration::from_secs(5);

/// How many times a claim is tried when the entry changes under it (a release, another
/// router's takeover) before the answer is "in progress".
const CLAIM_TRIES: usize = 3;

/// How long a pending claim lives when ingress waits up to `publish_timeout` for the event to
/// be stored: `publish_timeout` + [`CLAIM_SLACK`] (10 s by default).
pub fn claim_lifetime(publish_timeout: Duration) -> Duration {
    publish_timeout.saturating_add(CLAIM_SLACK)
}

/// One route's window in its bucket.
#[derive(Debug)]
pub struct NatsWindow {
    bucket: kv::Store,
    route: String,
    outbox: Outbox,
    /// How long a pending claim made here lives.
    lifetime: Duration,
}

/// What an entry of the bucket says.
#[derive(Debug, PartialEq, Eq)]
enum Claimed<'a> {
    /// Accepted as this event.
    Accepted(&'a str),
    /// Being accepted as this event until the deadline (Unix ms); no deadline: written by a
    /// router before deadlines were.
    Pending {
        deadline_ms: Option<u64>,
        event_id: &'a str,
    },
}

impl Claimed<'_> {
    fn read(value: &[u8]) -> Claimed<'_> {
        let value = std::str::from_utf8(value).unwrap_or_default();
        let Some(pending) = value.strip_prefix(PENDING) else {
            return Claimed::Accepted(value);
        };
        let with_deadline = pending
            .split_once(' ')
            .and_then(|(deadline, event_id)| Some((deadline.parse().ok()?, event_id)));
        match with_deadline {
            Some((deadline_ms, event_id)) => Claimed::Pending {
                deadline_ms: Some(deadline_ms),
                event_id,
            },
            None => Claimed::Pending {
                deadline_ms: None,
                event_id: pending,
            },
        }
    }
}

/// The value of a pending claim for `event_id` that lives until `deadline_ms`.
fn pending(deadline_ms: u64, event_id: &str) -> bytes::Bytes {
    format!("{PENDING}{deadline_ms} {event_id}").into()
}

/// When the server stored `entry`, in Unix milliseconds.
fn created_ms(entry: &kv::Entry) -> u64 {
    u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

impl NatsWindow {
    /// Opens (or creates) the bucket for windows of `window` and returns `route`'s view of it;
    /// its pending claims live [`claim_lifetime`]`(publish_timeout)`.
    pub async fn open(
        nats: &Nats,
        replicas: usize,
        route: &str,
        window: Duration,
        publish_timeout: Duration,
    ) -> Result<Arc<NatsWindow>, NatsError> {
        let window = window.max(Duration::from_secs(1));
        let bucket = nats
            .key_value(&format!("dedup_{}s", window.as_secs()), window, replicas)
            .await?;
        Ok(Arc::new(NatsWindow {
            bucket,
            route: route.to_owned(),
            outbox: nats.outbox.clone(),
            lifetime: claim_lifetime(publish_timeout),
        }))
    }

    fn key(&self, id: &str) -> String {
        format!("{}.{}", self.route, URL_SAFE_NO_PAD.encode(id))
    }

    async fn try_claim(&self, key: &str, event_id: &str) -> SharedClaim {
        let lifetime_ms = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        let claim = pending(now_ms().saturating_add(lifetime_ms), event_id);
        for _ in 0..CLAIM_TRIES {
            match self.bucket.create(key, claim.clone()).await {
                Ok(_) => return SharedClaim::New,
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(error) => return SharedClaim::Unavailable(error.to_string()),
            }
            let entry = match self.bucket.entry(key).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => entry,
                // Released or expired since: free again.
                Ok(_) => continue,
                Err(error) => return SharedClaim::Unavailable(error.to_string()),
            };
            let deadline_ms = match Claimed::read(&entry.value) {
                Claimed::Accepted(original) => return SharedClaim::Duplicate(original.to_owned()),
                Claimed::Pending { deadline_ms, .. } => deadline_ms,
            };
            let deadline_ms =
                deadline_ms.unwrap_or_else(|| created_ms(&entry).saturating_add(lifetime_ms));
            if now_ms() < deadline_ms {
                return SharedClaim::InProgress;
            }
            // Its router died before the outcome: take it over, unless another request does
            // first (then look again).
            match self.bucket.update(key, claim.clone(), entry.revision).await {
                Ok(_) => {
                    tracing::info!(route = %self.route, key, "a delivery id's claim outlived its deadline (its router stopped before the outcome): taken over");
                    return SharedClaim::New;
                }
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(error) => return SharedClaim::Unavailable(error.to_string()),
            }
        }
        SharedClaim::InProgress
    }
}

impl SharedWindow for NatsWindow {
    fn claim<'a>(&'a self, key: &'a str, event_id: &'a str) -> SharedClaimFuture<'a> {
        Box::pin(async move { self.try_claim(&self.key(key), event_id).await })
    }

    fn commit(&self, key: &str, event_id: &str) {
        let (bucket, key, event_id) = (self.bucket.clone(), self.key(key), event_id.to_owned());
        self.outbox.send(async move {
            // Only over this request's own claim: one taken over past its deadline is another
            // request's, whose event was accepted too, and keeps the window.
            let Some(revision) = own_claim(&bucket, &key, &event_id, "commit").await else {
                return;
            };
            let value = event_id.clone().into_bytes().into();
            match bucket.update(&key, value, revision).await {
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(event_id = %event_id, "NATS: a delivery id's claim was taken over before its event was committed: both events were accepted");
                }
                Err(error) => {
                    tracing::warn!(%error, "NATS: could not commit a delivery id to the shared dedup window");
                }
                Ok(_) => {}
            }
        });
    }

    fn release(&self, key: &str, event_id: &str) {
        let (bucket, key, event_id) = (self.bucket.clone(), self.key(key), event_id.to_owned());
        self.outbox.send(async move {
            // Only this request's own claim: one taken over past its deadline is another's.
            let Some(revision) = own_claim(&bucket, &key, &event_id, "release").await else {
                return;
            };
            match bucket.delete_expect_revision(&key, Some(revision)).await {
                Err(error) if error.kind() != kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(%error, "NATS: could not release a delivery id in the shared dedup window");
                }
                _ => {}
            }
        });
    }
}

/// The revision of `key`'s entry if it is still `event_id`'s pending claim (nothing if it was
/// taken over, committed or is gone); `what` names the step for the log.
async fn own_claim(bucket: &kv::Store, key: &str, event_id: &str, what: &str) -> Option<u64> {
    match bucket.entry(key).await {
        Ok(Some(entry))
            if entry.operation == kv::Operation::Put
                && matches!(Claimed::read(&entry.value),
                    Claimed::Pending { event_id: id, .. } if id == event_id) =>
        {
            Some(entry.revision)
        }
        Ok(_) => {
            if what == "commit" {
                tracing::warn!(event_id = %event_id, "NATS: a delivery id's claim was taken over before its event was committed: both events were accepted");
            }
            None
        }
        Err(error) => {
            tracing::warn!(%error, "NATS: could not {what} a delivery id in the shared dedup window");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_claim_carries_its_deadline_and_reads_back() {
        let value = pending(1_700_000_000_123, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(
            &value[..],
            b"?1700000000123 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(
            Claimed::read(&value),
            Claimed::Pending {
                deadline_ms: Some(1_700_000_000_123),
                event_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
            }
        );
    }

    #[test]
    fn committed_and_older_pending_values_read_as_what_they_are() {
        assert_eq!(Claimed::read(b"evt-1"), Claimed::Accepted("evt-1"));
        // A claim written before deadlines: its age is the entry's.
        assert_eq!(
            Claimed::read(b"?evt-1"),
            Claimed::Pending {
                deadline_ms: None,
                event_id: "evt-1"
            }
        );
    }

    #[test]
    fn the_lifetime_covers_the_publish_timeout_and_a_few_seconds() {
        assert_eq!(
            claim_lifetime(Duration::from_secs(5)),
            Duration::from_secs(10)
        );
    }
}
