//! A dedup window shared by every router on one NATS JetStream (`backend = "nats"`): a
//! key-value bucket per window length, `<stream>_dedup_<seconds>s`, whose entries expire with
//! the window (the bucket's `max_age`).
//!
//! A claim *creates* the key `<route>.<id in base64url>` (which fails if any router has it)
//! with the value `?<event id>`; the commit overwrites it with `<event id>`, and a release
//! deletes it. Another router that finds `?…` answers "in progress" (503), and one that finds
//! an event id answers with it (a duplicate).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{SharedClaim, SharedClaimFuture, SharedWindow};
use crate::nats::{Nats, NatsError, Outbox};

/// Marks a claimed id whose request is still being accepted.
const PENDING: &str = "?";

/// One route's window in its bucket.
#[derive(Debug)]
pub struct NatsWindow {
    bucket: kv::Store,
    route: String,
    outbox: Outbox,
}

impl NatsWindow {
    /// Opens (or creates) the bucket for windows of `window` and returns `route`'s view of it.
    pub async fn open(
        nats: &Nats,
        replicas: usize,
        route: &str,
        window: Duration,
    ) -> Result<Arc<NatsWindow>, NatsError> {
        let window = window.max(Duration::from_secs(1));
        let bucket = nats
            .key_value(&format!("dedup_{}s", window.as_secs()), window, replicas)
            .await?;
        Ok(Arc::new(NatsWindow {
            bucket,
            route: route.to_owned(),
            outbox: nats.outbox.clone(),
        }))
    }

    fn key(&self, id: &str) -> String {
        format!("{}.{}", self.route, URL_SAFE_NO_PAD.encode(id))
    }

    async fn try_claim(&self, key: &str, event_id: &str) -> SharedClaim {
        let pending = format!("{PENDING}{event_id}");
        match self.bucket.create(key, pending.into_bytes().into()).await {
            Ok(_) => return SharedClaim::New,
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(error) => return SharedClaim::Unavailable(error.to_string()),
        }
        match self.bucket.get(key).await {
            Ok(Some(value)) => {
                let value = String::from_utf8_lossy(&value).into_owned();
                match value.strip_prefix(PENDING) {
                    Some(_) => SharedClaim::InProgress,
                    None => SharedClaim::Duplicate(value),
                }
            }
            // Released or expired between the two calls: free again.
            Ok(None) => SharedClaim::InProgress,
            Err(error) => SharedClaim::Unavailable(error.to_string()),
        }
    }
}

impl SharedWindow for NatsWindow {
    fn claim<'a>(&'a self, key: &'a str, event_id: &'a str) -> SharedClaimFuture<'a> {
        Box::pin(async move { self.try_claim(&self.key(key), event_id).await })
    }

    fn commit(&self, key: &str, event_id: &str) {
        let (bucket, key, value) = (self.bucket.clone(), self.key(key), event_id.to_owned());
        self.outbox.send(async move {
            if let Err(error) = bucket.put(&key, value.into_bytes().into()).await {
                tracing::warn!(%error, "NATS: could not commit a delivery id to the shared dedup window");
            }
        });
    }

    fn release(&self, key: &str, _event_id: &str) {
        let (bucket, key) = (self.bucket.clone(), self.key(key));
        self.outbox.send(async move {
            if let Err(error) = bucket.delete(&key).await {
                tracing::warn!(%error, "NATS: could not release a delivery id in the shared dedup window");
            }
        });
    }
}
