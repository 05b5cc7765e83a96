//! Ordered keys on NATS: each destination's ordered events are spread over `partitions`
//! subjects by a hash of their order key, and each partition is delivered by one router at a
//! time, the one holding its *lease*.
//!
//! - **Subjects**: an event with an order key goes to `<stream>.deliver.<destination>.ordered.<p>`
//!   with `p = crc32c(key) mod partitions`; all the events of a key share a partition.
//! - **Leases**: the key-value bucket `<stream>_leases` holds one key per partition
//!   (`<destination>.<p>`) naming its owner. Entries live for `ack_wait` (the bucket's
//!   `max_age`): the owner renews its leases every third of it (a compare-and-set on the
//!   revision it holds), and deletes them when it stops. Every third of `ack_wait`, and when it
//!   sees a lease deleted, a router takes each partition nobody holds (a create, which fails
//!   while another owns it): a router that stops hands its partitions over at once, and one
//!   that crashed loses them to the others within `ack_wait` plus a third.
//! - **Takeover**: the new owner deletes the partition's consumer and creates it again, so that
//!   JetStream hands out every message not yet acknowledged in stream order (the order they
//!   were accepted): dispatch's lines then deliver each key's events in that order. A message
//!   stored before the takeover may have an attempt record (the previous owner's attempts):
//!   it is read.
//! - **Retries stay with the owner**: a failed attempt of an ordered event is recorded but not
//!   handed back to the stream, so that the key's later events wait behind it in this router's
//!   line (see `NatsAck`).
//! - A router whose renewal fails (another took the partition, this one having been cut off for
//!   longer than `ack_wait`; or NATS did not answer) stops pulling it; what it still holds may
//!   be delivered by both routers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::{kv, stream};
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Fetch;
use crate::config::QueueConfig;
use crate::nats::{Nats, NatsError};
use crate::supervise::Supervisor;

/// The partition of an order key, among `partitions`.
pub fn partition(key: &str, partitions: usize) -> usize {
    usize::try_from(crc32c::crc32c(key.as_bytes())).unwrap_or(0) % partitions.max(1)
}

/// The subject of `destination`'s ordered events in partition `p` of stream `stream`.
pub fn subject(stream: &str, destination: &str, p: usize) -> String {
    format!("{stream}.deliver.{destination}.ordered.{p}")
}

/// A partition this router holds.
#[derive(Debug)]
struct Owned {
    /// The lease's revision, which the next renewal must match.
    revision: u64,
    /// Stops the partition's fetch.
    stop: CancellationToken,
}

/// The partitions of every destination, and those this router holds.
#[derive(Debug)]
pub struct Partitions {
    leases: kv::Store,
    /// This router's name in the leases (unique per process).
    owner: String,
    stream: stream::Stream,
    stream_name: String,
    config: QueueConfig,
    count: usize,
    /// Each destination's unordered fetch, which a partition's fetch copies.
    templates: Vec<Fetch>,
    /// Held partitions, by lease key.
    owned: Mutex<HashMap<String, Owned>>,
    /// Where the fetches' tasks go, for the queue to join at flush.
    fetches: Arc<Mutex<Vec<JoinHandle<()>>>>,
    supervisor: Supervisor,
}

impl Partitions {
    /// Opens the lease bucket. The partitions are taken by [`Partitions::run`].
    pub async fn open(
        nats: &Nats,
        config: &QueueConfig,
        stream: stream::Stream,
        templates: Vec<Fetch>,
        fetches: Arc<Mutex<Vec<JoinHandle<()>>>>,
        supervisor: &Supervisor,
    ) -> Result<Partitions, NatsError> {
        let leases = nats
            .key_value("leases", config.ack_wait.0, config.replicas)
            .await?;
        lease_for(nats, config.ack_wait.0).await?;
        Ok(Partitions {
            leases,
            owner: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            stream,
            stream_name: nats.stream.clone(),
            config: config.clone(),
            count: config.partitions.get(),
            templates,
            owned: Mutex::new(HashMap::new()),
            fetches,
            supervisor: supervisor.clone(),
        })
    }

    /// Every third of `ack_wait`, and whenever a lease is released: renews the leases held,
    /// and takes the free partitions while `taking` is not cancelled (the queue is open). Ends
    /// at `alive`'s cancellation.
    pub async fn run(self: Arc<Self>, taking: CancellationToken, alive: CancellationToken) {
        let every = (self.config.ack_wait.0 / 3).max(Duration::from_millis(100));
        // Without it (the server away at start), released partitions wait for the next round.
        let mut watch = self.leases.watch_all().await.ok();
        loop {
            self.renew().await;
            if !taking.is_cancelled() {
                for id in 0..self.templates.len() {
                    for p in 0..self.count {
                        if taking.is_cancelled() {
                            break;
                        }
                        self.take(id, p, &taking).await;
                    }
                }
            }
            let released = async {
                while let Some(watch) = watch.as_mut() {
                    match watch.next().await {
                        Some(Ok(entry)) if entry.operation != kv::Operation::Put => return,
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
                std::future::pending().await
            };
            tokio::select! {
                () = alive.cancelled() => return,
                () = tokio::time::sleep(every) => {}
                () = released => {}
            }
        }
    }

    /// Deletes the leases held (at shutdown, once the fetches stopped and the held messages
    /// were handed back), so that the others take the partitions now.
    pub async fn release(&self) {
        let owned: Vec<(String, Owned)> = self.lock().drain().collect();
        for (key, owned) in owned {
            owned.stop.cancel();
            if let Err(error) = self
                .leases
                .delete_expect_revision(&key, Some(owned.revision))
                .await
            {
                tracing::debug!(%key, %error, "NATS: could not release a partition; it expires after ack_wait");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owned>> {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn renew(&self) {
        let held: Vec<(String, u64)> = self
            .lock()
            .iter()
            .map(|(key, owned)| (key.clone(), owned.revision))
            .collect();
        for (key, revision) in held {
            let renewed = self
                .leases
                .update(&key, self.owner.clone().into(), revision)
                .await;
            let mut owned = self.lock();
            let Some(entry) = owned.get_mut(&key).filter(|o| o.revision == revision) else {
                continue;
            };
            match renewed {
                Ok(revision) => entry.revision = revision,
                Err(error) => {
                    tracing::warn!(partition = %key, %error, "NATS: could not renew the lease of an ordered partition (another router took it, or NATS did not answer); no longer pulling it");
                    if let Some(lost) = owned.remove(&key) {
                        lost.stop.cancel();
                    }
                }
            }
        }
    }

    /// Takes partition `p` of destination `id` if nobody holds it, and starts pulling it.
    async fn take(&self, id: usize, p: usize, taking: &CancellationToken) {
        let template = &self.templates[id];
        let key = format!("{}.{p}", template.name);
        if self.lock().contains_key(&key) {
            return;
        }
        // Fails while another router holds the lease (or the server is away): try next round.
        let Ok(revision) = self.leases.create(&key, self.owner.clone().into()).await else {
            return;
        };
        match self.restart_consumer(&template.name, p).await {
            Ok((consumer, last)) => {
                let stop = taking.child_token();
                let fetch = Arc::new(Fetch {
                    consumer,
                    ordered: Some(last),
                    ..template.clone()
                });
                tracing::info!(partition = %key, "NATS: took an ordered partition");
                let handle = {
                    let stop = stop.clone();
                    self.supervisor.spawn("nats_fetch", move || {
                        let (fetch, stop) = (Arc::clone(&fetch), stop.clone());
                        async move { fetch.run(stop).await }
                    })
                };
                self.fetches
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(handle);
                self.lock().insert(key, Owned { revision, stop });
            }
            Err(error) => {
                tracing::warn!(partition = %key, %error, "NATS: could not set up an ordered partition's consumer; letting its lease go");
                let _ = self
                    .leases
                    .delete_expect_revision(&key, Some(revision))
                    .await;
            }
        }
    }

    /// Deletes and creates again the consumer of partition `p` of `destination`, so that it
    /// hands out every unacknowledged message in stream order. Returns it with the stream's
    /// last sequence (messages up to it may have attempt records).
    async fn restart_consumer(
        &self,
        destination: &str,
        p: usize,
    ) -> Result<(consumer::Consumer<pull::Config>, u64), String> {
        let name = format!("ordered-{destination}-{p}");
        // Not there on a first start: nothing to delete.
        let _ = self.stream.delete_consumer(&name).await;
        let consumer = self
            .stream
            .create_consumer(pull::Config {
                durable_name: Some(name),
                filter_subject: subject(&self.stream_name, destination, p),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.config.ack_wait.0,
                max_deliver: -1,
                max_ack_pending: i64::try_from(self.config.max_ack_pending.get())
                    .unwrap_or(i64::MAX),
                deliver_policy: consumer::DeliverPolicy::All,
                ..pull::Config::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let last = self
            .stream
            .get_info()
            .await
            .map_err(|e| e.to_string())?
            .state
            .last_sequence;
        Ok((consumer, last))
    }
}

/// Makes the lease bucket's entries live `ack_wait`, where the bucket is there from a router
/// with another `ack_wait`: leases that end between their renewals would pass partitions from
/// router to router while their owners deliver, and longer ones stall a crashed router's
/// partitions for longer.
async fn lease_for(nats: &Nats, ack_wait: Duration) -> Result<(), NatsError> {
    let name = format!("KV_{}", nats.bucket("leases"));
    let setup = |cause: String| NatsError::Setup {
        what: format!("key-value bucket {:?}", nats.bucket("leases")),
        cause,
    };
    let mut stream = nats
        .jetstream
        .get_stream(&name)
        .await
        .map_err(|e| setup(e.to_string()))?;
    let mut config = stream
        .info()
        .await
        .map_err(|e| setup(e.to_string()))?
        .config
        .clone();
    if config.max_age != ack_wait {
        tracing::info!(bucket = %name, "NATS: the partition leases now last ack_wait");
        config.max_age = ack_wait;
        // JetStream keeps it within max_age.
        config.duplicate_window = config.duplicate_window.min(ack_wait);
        nats.jetstream
            .update_stream(config)
            .await
            .map_err(|e| setup(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_s_partition_is_its_crc32c_so_every_router_agrees() {
        // CRC-32C's check value: a router built with another hash would split a key's events.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(partition("123456789", 16), 0xE306_9283 % 16);
        assert_eq!(partition("123456789", 1), 0);
        assert!((0..1000).all(|n| partition(&format!("k{n}"), 7) < 7));
    }
}
