//! Dead letters shared by every router on one NATS JetStream (`backend = "nats"`): a key-value
//! bucket `<stream>_dead_letters`, one key per letter id.
//!
//! A router writes its letters there ([`NatsLetters`] as the store's [`LetterLog`]) and mirrors
//! the bucket into its own store: at start it reads every letter in it, then follows the
//! bucket's changes, so `GET /dead-letters` on any router lists the letters every router made,
//! and a replay (or an eviction) on one removes the letter everywhere. Writes go through the
//! connection's outbox, and dispatch awaits a letter's write: the message it came from is
//! acknowledged only once the bucket has stored the letter (a write the bucket refuses, over
//! its limits or unreachable, leaves the message to be dead-lettered again after a delay).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;

use tokio::sync::oneshot;

use super::{DeadLetterStore, LetterError, LetterLog, LetterPut};
use crate::nats::{Nats, NatsError, Outbox};
use crate::queue::DestinationId;
use crate::supervise::Supervisor;

/// How long the start waits to read the letters already in the bucket.
const INITIAL_READ: Duration = Duration::from_secs(10);

/// The bucket as a [`LetterLog`].
#[derive(Debug)]
pub struct NatsLetters {
    bucket: kv::Store,
    outbox: Outbox,
}

impl LetterLog for NatsLetters {
    fn put(&self, letter: &super::DeadLetter) -> LetterPut {
        let (bucket, key, value) = (
            self.bucket.clone(),
            letter.id.clone(),
            super::encode(letter),
        );
        let (stored, answer) = oneshot::channel();
        self.outbox.send(async move {
            let outcome = match bucket.put(&key, value.into()).await {
                Ok(_) => Ok(0),
                Err(error) => {
                    tracing::error!(dead_letter = %key, %error, "NATS: could not store a dead letter in the shared bucket");
                    Err(LetterError(format!("NATS key-value bucket: {error}")))
                }
            };
            let _ = stored.send(outcome);
        });
        Box::pin(async move {
            answer.await.unwrap_or_else(|_| {
                Err(LetterError(
                    "the NATS connection's outbox stopped before the write".to_owned(),
                ))
            })
        })
    }

    fn delete(&self, letters: &[(u64, String)]) {
        let bucket = self.bucket.clone();
        let ids: Vec<String> = letters.iter().map(|(_, id)| id.clone()).collect();
        self.outbox.send(async move {
            for id in ids {
                if let Err(error) = bucket.delete(&id).await {
                    tracing::warn!(dead_letter = %id, %error, "NATS: could not delete a dead letter from the shared bucket");
                }
            }
        });
    }
}

impl NatsLetters {
    /// Opens (or creates) the bucket, reads the letters in it into `store` and keeps `store`
    /// in step with it (the task `nats_dead_letter_mirror`, under `supervisor`); `resolve`
    /// gives a destination's id by name.
    pub async fn open(
        nats: &Nats,
        replicas: usize,
        store: &Arc<DeadLetterStore>,
        resolve: impl Fn(&str) -> Option<DestinationId> + Send + Sync + 'static,
        supervisor: &Supervisor,
    ) -> Result<NatsLetters, NatsError> {
        let name = nats.bucket("dead_letters");
        let setup = |cause: String| NatsError::Setup {
            what: format!("key-value bucket {name:?}"),
            cause,
        };
        let bucket = nats
            .key_value("dead_letters", Duration::ZERO, replicas)
            .await?;
        let waiting = bucket
            .status()
            .await
            .map_err(|e| setup(e.to_string()))?
            .values();
        let mut changes = bucket
            .watch_with_history(">")
            .await
            .map_err(|e| setup(e.to_string()))?;
        // The letters there now, before the router serves `GET /dead-letters`.
        if waiting > 0 {
            let initial = async {
                while let Some(Ok(entry)) = changes.next().await {
                    let last = entry.delta == 0;
                    apply(store, &entry, &resolve);
                    if last {
                        break;
                    }
                }
            };
            if tokio::time::timeout(INITIAL_READ, initial).await.is_err() {
                tracing::warn!(bucket = %name, "NATS: reading the shared dead letters took too long; the rest arrive in the background");
            }
        }
        // The watch is kept outside the task, so that a restart after a panic follows on.
        let (mirror, changes, resolve) = (
            Arc::clone(store),
            Arc::new(tokio::sync::Mutex::new(changes)),
            Arc::new(resolve),
        );
        supervisor.spawn("nats_dead_letter_mirror", move || {
            let (mirror, changes, resolve) = (
                Arc::clone(&mirror),
                Arc::clone(&changes),
                Arc::clone(&resolve),
            );
            async move {
                let mut changes = changes.lock().await;
                while let Some(entry) = changes.next().await {
                    match entry {
                        Ok(entry) => apply(&mirror, &entry, resolve.as_ref()),
                        Err(error) => {
                            tracing::warn!(%error, "NATS: following the shared dead letters failed");
                        }
                    }
                }
            }
        });
        Ok(NatsLetters {
            bucket,
            outbox: nats.outbox.clone(),
        })
    }
}

/// Applies one change of the bucket to `store`.
fn apply(
    store: &DeadLetterStore,
    entry: &kv::Entry,
    resolve: &impl Fn(&str) -> Option<DestinationId>,
) {
    match entry.operation {
        kv::Operation::Put => match super::decode(&entry.value, resolve) {
            Ok(letter) => store.mirror_put(letter),
            Err(error) => {
                tracing::error!(dead_letter = %entry.key, %error, "NATS: a shared dead letter does not decode; skipped");
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => store.mirror_delete(&entry.key),
    }
}
