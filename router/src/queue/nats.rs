//! The NATS JetStream backend (`backend = "nats"`): one stream shared by every router on it.
//!
//! - **Enqueue** publishes one message per destination of the event to
//!   `<stream>.deliver.<destination>` and resolves once JetStream has stored every one (its
//!   publish ack), or fails after `publish_timeout` (ingress answers 503 + `Retry-After`). The
//!   message id (`Nats-Msg-Id`) is `<event id>.<destination>.<nonce>`: a publish the client
//!   sends again after a reconnect is stored once.
//! - **Dequeue**: one durable pull consumer per destination, shared by every router, so each
//!   message goes to one router. A fetch task per destination (and per ordered partition held)
//!   pulls as many messages as this router has room for (`queue_capacity`, the destination's
//!   `max_held`, less what the other fetches' pulls asked for: [`pulls`]) into the local
//!   channel dispatch reads from.
//! - **Outcomes**: a final outcome (delivered, dead-lettered) acks the message, a dead letter
//!   only once it is stored; a failed attempt naks it with the backoff as its delay
//!   ([`Reported::Returned`]): the stream hands it out again when the retry is due, to any
//!   router.
//!   While a router holds a message (an attempt in flight, a circuit open) it tells JetStream
//!   it is still working on it every third of `ack_wait`; a router that dies stops doing so,
//!   and its messages go to the other routers after `ack_wait`. A router that stops naks what
//!   it holds, and the rest of its last pull, with a delay just past that pull's end (2.5 s):
//!   the others take it then, and it never bounces back into the stopping router's own pull.
//! - **Attempts** are counted by the routers, in the message's record (`attempts`), written
//!   before the nak: JetStream's delivery count also counts hand-backs, crashes and late
//!   keep-alives. The consumers have no `max_deliver` (JetStream never strands a message); a
//!   message handed out more than 10 times (`SPARE_DELIVERIES`) without an attempt is given up
//!   as a dead letter that says so. A dead letter that could not be stored is recorded as a
//!   verdict and the message naked: whoever takes it next dead-letters it without an attempt.
//! - **Ordered events** (a route's `order_by`) go to a partition of their destination by their
//!   key, each pulled by one router at a time under a lease, whose failed attempts stay with it
//!   for their retries instead of going back to the stream ([`partitions`]).
//! - **Encoding**: versioned ([`encoding`]); a message that does not decode becomes a dead
//!   letter holding its raw bytes, never a silent `Term`.

mod attempts;
pub mod encoding;
mod partitions;
mod pulls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use self::attempts::{Attempts, Record};
use self::partitions::Partitions;
use self::pulls::Pulls;
use super::{
    Acknowledge, DequeueFuture, DestinationId, DispatchQueue, EnqueueError, EnqueueFuture,
    FlushFuture, Holding, Holds, MemoryQueue, Progress, QueuedEvent, Receipt, Reported, Target,
    Verdict,
};
use crate::config::QueueConfig;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::nats::{Nats, NatsError, Outbox};
use crate::supervise::Supervisor;

/// Most messages one pull asks for.
const BATCH: usize = 256;
/// How long one pull waits for messages before asking again.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Pause after a failed pull (server away) or while the router has no room.
const PULL_PAUSE: Duration = Duration::from_millis(250);
const ROOM_PAUSE: Duration = Duration::from_millis(10);
/// How long JetStream remembers message ids to drop a publish sent twice.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long past a pull's expiry a stopping fetch waits for the pull's end.
const HAND_BACK_SLACK: Duration = Duration::from_millis(500);
/// The delay of a message a stopping router hands back: past the end of its own last pull, so
/// that the message goes to another router and does not come back into that pull, to be handed
/// back again (each time counting as a delivery).
const HAND_BACK_DELAY: Duration = PULL_EXPIRES.saturating_add(HAND_BACK_SLACK);
/// Hand-outs of one message without an attempt (a router that stopped handed it back, or
/// crashed holding it) after which the router gives it up as a dead letter: so that a message
/// that brings down every router that takes it ends. (JetStream's own limit, the consumer's
/// `max_deliver`, is off: past it a message would stay in the stream, never delivered.)
const SPARE_DELIVERIES: u64 = 10;
/// Longest a shutdown waits for the last acks and naks to reach the server.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// One destination as the backend needs it.
#[derive(Debug, Clone)]
pub struct NatsDestination {
    /// Its name.
    pub name: String,
    /// Its `retry.max_attempts`.
    pub max_attempts: u32,
}

/// The JetStream-backed dispatch queue.
#[derive(Debug)]
pub struct NatsQueue {
    /// Events fetched from the stream and held by this router, on their way to dispatch.
    local: MemoryQueue,
    nats: Nats,
    /// Subjects by destination id.
    subjects: Vec<String>,
    /// The stream's name (in the ordered subjects).
    stream: String,
    /// Partitions of ordered keys per destination.
    partitions: usize,
    /// The ordered partitions this router holds, released at flush.
    ordered: Arc<Partitions>,
    /// Destination names by id (in message ids).
    names: Vec<String>,
    publish_timeout: Duration,
    /// The messages this router holds (unsettled).
    held: HeldMessages,
    /// Where ordered messages' attempt records are written and deleted.
    records: Outbox,
    /// The fetch tasks, joined at flush (each hands back the rest of its pull when stopped).
    fetches: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Stops the fetch tasks (at close).
    stop: CancellationToken,
    /// Stops the progress task (when the queue is dropped: held messages still need it while
    /// shutdown delivers them).
    alive: CancellationToken,
}

impl Drop for NatsQueue {
    fn drop(&mut self) {
        self.alive.cancel();
    }
}

/// The handle that acknowledges one message (shared by its receipt and the keep-alive).
#[derive(Clone)]
struct AckHandle(Arc<Acker>);

impl std::fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckHandle")
    }
}

/// Messages this router holds, by a local key: what progress reports go to.
type HeldMessages = Arc<Mutex<HashMap<u64, AckHandle>>>;

/// Reports on one held message.
#[derive(Debug)]
struct NatsAck {
    acker: AckHandle,
    key: u64,
    held: HeldMessages,
    outbox: Outbox,
    settled: AtomicBool,
    /// Where the message's attempts are recorded, and its key there.
    attempts: Attempts,
    record_key: String,
    /// Whether the message may have a record (it was redelivered, or an attempt of an ordered
    /// event wrote one): the ack deletes it.
    recorded: AtomicBool,
    /// Where an ordered message's record is written and deleted, in order.
    records: Outbox,
    /// Whether the message is an ordered partition's: a failed attempt is recorded, and the
    /// message kept here for the retry, so that the key's later events wait behind it.
    ordered: bool,
    /// What was decided about the message before it was handed to dispatch.
    verdict: Option<Verdict>,
}

impl NatsAck {
    /// Sends the message's one final word (ack, nak), once; `record` is written first.
    fn settle(&self, kind: AckKind, record: Option<Record>) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        let acker = self.acker.clone();
        let (attempts, key) = (self.attempts.clone(), self.record_key.clone());
        let forget = matches!(kind, AckKind::Ack) && self.recorded.load(Ordering::Acquire);
        if self.ordered {
            // Its record goes through `records` (written there, so deleted after): the ack
            // does not wait behind the records' round trips. An ack that is late is a delivery
            // the next owner of the partition makes again.
            self.outbox.send(async move {
                if let Err(error) = acker.0.ack_with(kind).await {
                    tracing::warn!(%error, ?kind, "NATS: could not acknowledge a message; it will be delivered again by the partition's next owner");
                }
            });
            if forget {
                self.records
                    .send(async move { attempts.forget(&key).await });
            }
            return;
        }
        self.outbox.send(async move {
            if let Some(record) = record
                && let Err(error) = attempts.write(&key, &record).await
            {
                tracing::warn!(%error, message = %key, "NATS: could not record a message's attempts; it may be attempted more than max_attempts times");
            }
            if let Err(error) = acker.0.ack_with(kind).await {
                tracing::warn!(%error, ?kind, "NATS: could not acknowledge a message; it will be delivered again after ack_wait");
            } else if forget {
                attempts.forget(&key).await;
            }
        });
    }
}

impl Acknowledge for NatsAck {
    fn progress(&self, progress: &[Progress]) -> Reported {
        let open = progress.iter().filter(|p| !p.done);
        let due = open.clone().map(|p| p.next_attempt_ms).min().unwrap_or(0);
        let attempts = open.map(|p| p.attempts).max().unwrap_or(0);
        let delay = Duration::from_millis(due.saturating_sub(crate::journal::now_ms()));
        let record = Record {
            attempts,
            verdict: None,
        };
        if self.ordered {
            // Kept for the retry; recorded for whoever takes the partition if this router dies.
            self.recorded.store(true, Ordering::Release);
            let (store, key) = (self.attempts.clone(), self.record_key.clone());
            self.records.send(async move {
                if let Err(error) = store.write(&key, &record).await {
                    tracing::warn!(%error, message = %key, "NATS: could not record a message's attempts; it may be attempted more than max_attempts times");
                }
            });
            return Reported::Kept;
        }
        self.settle(AckKind::Nak(Some(delay)), Some(record));
        Reported::Returned
    }

    fn ack(&self) {
        self.settle(AckKind::Ack, None);
    }

    fn verdict(&self) -> Option<Verdict> {
        self.verdict.clone()
    }

    fn unstored(&self, verdict: &Verdict, delay: Duration) -> Reported {
        if self.ordered {
            // Kept: dispatch stores the letter again after `delay`, the key waiting behind it.
            return Reported::Kept;
        }
        let record = Record {
            attempts: verdict.attempts,
            verdict: Some(verdict.clone()),
        };
        self.settle(AckKind::Nak(Some(delay)), Some(record));
        Reported::Returned
    }
}

impl Drop for NatsAck {
    fn drop(&mut self) {
        // Not final here (the router stops): another router may take it now.
        self.settle(AckKind::Nak(Some(HAND_BACK_DELAY)), None);
    }
}

impl NatsQueue {
    /// Creates (or checks) the stream and each destination's consumer, and starts fetching.
    /// `capacity` and `holds` bound what this router holds at once. The fetch tasks
    /// (`nats_fetch`) and the keep-alive (`nats_keep_alive`) run under `supervisor`.
    pub async fn open(
        nats: Nats,
        config: &QueueConfig,
        destinations: &[NatsDestination],
        capacity: usize,
        metrics: Metrics,
        holds: Arc<Holds>,
        supervisor: &Supervisor,
    ) -> Result<NatsQueue, NatsError> {
        let stream = ensure_stream(&nats, config).await?;
        warn_of_orphans(&stream, &nats, destinations, config.partitions.get()).await;
        let attempts = Attempts::open(&nats, config).await?;
        let local = MemoryQueue::new(capacity, metrics, holds);
        let stop = CancellationToken::new();
        let held: HeldMessages = Arc::default();
        let keys = Arc::new(AtomicU64::new(0));
        let records = Outbox::start(supervisor);
        let pulls = Pulls::default();
        let mut subjects = Vec::with_capacity(destinations.len());
        let mut fetches = Vec::with_capacity(destinations.len());
        let mut templates = Vec::with_capacity(destinations.len());
        for (id, destination) in destinations.iter().enumerate() {
            let subject = nats.subject(&destination.name);
            let consumer = ensure_consumer(&stream, config, destination, &subject).await?;
            subjects.push(subject);
            let fetch = Fetch {
                consumer,
                destination: id,
                name: destination.name.clone(),
                attempts: attempts.clone(),
                local: local.clone(),
                held: Arc::clone(&held),
                keys: Arc::clone(&keys),
                outbox: nats.outbox.clone(),
                records: records.clone(),
                pulls: pulls.clone(),
                ordered: None,
            };
            templates.push(fetch.clone());
            let fetch = Arc::new(fetch);
            let stop = stop.clone();
            fetches.push(supervisor.spawn("nats_fetch", move || {
                let (fetch, stop) = (Arc::clone(&fetch), stop.clone());
                async move { fetch.run(stop).await }
            }));
        }
        let alive = CancellationToken::new();
        let stream_name = nats.stream.clone();
        let fetches = Arc::new(Mutex::new(fetches));
        let ordered = Arc::new(
            Partitions::open(
                &nats,
                config,
                stream,
                templates,
                Arc::clone(&fetches),
                supervisor,
            )
            .await?,
        );
        {
            let (ordered, taking, alive) = (Arc::clone(&ordered), stop.clone(), alive.clone());
            supervisor.spawn("nats_partitions", move || {
                Arc::clone(&ordered).run(taking.clone(), alive.clone())
            });
        }
        let keep = (
            Arc::clone(&held),
            config.ack_wait.0 / 3,
            nats.outbox.clone(),
            alive.clone(),
        );
        supervisor.spawn("nats_keep_alive", move || {
            let (held, every, outbox, alive) = keep.clone();
            keep_alive(held, every, outbox, alive)
        });
        Ok(NatsQueue {
            local,
            nats,
            subjects,
            stream: stream_name,
            partitions: config.partitions.get(),
            ordered,
            names: destinations.iter().map(|d| d.name.clone()).collect(),
            publish_timeout: config.publish_timeout.0,
            held,
            records,
            fetches,
            stop,
            alive,
        })
    }

    /// Publishes every (event, destination) pair and waits for JetStream to store them all.
    async fn publish(&self, events: Vec<(Event, Vec<DestinationId>)>) -> Result<(), EnqueueError> {
        if self.stop.is_cancelled() {
            return Err(EnqueueError::Closed);
        }
        let nonce = fastrand::u64(..);
        let mut acks = Vec::new();
        let published = async {
            for (event, destinations) in &events {
                // One encoding per event, shared by its destinations' messages (the subject
                // names the destination).
                let payload = encoding::encode(event);
                for &destination in destinations {
                    let (Some(subject), Some(name)) =
                        (self.subjects.get(destination), self.names.get(destination))
                    else {
                        continue;
                    };
                    // An ordered event goes to its key's partition (see `partitions`).
                    let subject = match &event.order_key {
                        Some(key) => partitions::subject(
                            &self.stream,
                            name,
                            partitions::partition(key, self.partitions),
                        ),
                        None => subject.clone(),
                    };
                    let publish = async_nats::jetstream::message::PublishMessage::build()
                        .payload(payload.clone())
                        .header(encoding::HEADER, encoding::version(event))
                        .message_id(format!("{}.{name}.{nonce:x}", event.id));
                    let ack = self
                        .nats
                        .jetstream
                        .send_publish(subject, publish)
                        .await
                        .map_err(publish_error)?;
                    acks.push(ack);
                }
            }
            for ack in acks {
                ack.await.map_err(publish_error)?;
            }
            Ok(())
        };
        match tokio::time::timeout(self.publish_timeout, published).await {
            Ok(outcome) => outcome,
            Err(_) => Err(EnqueueError::Storage(format!(
                "NATS did not store the event within publish_timeout ({})",
                humantime::format_duration(self.publish_timeout)
            ))),
        }
    }
}

/// What a failed publish means for the sender.
fn publish_error(error: impl std::fmt::Display) -> EnqueueError {
    let text = error.to_string();
    if text.contains("maximum bytes") || text.contains("maximum messages") {
        EnqueueError::NoSpace("NATS stream")
    } else {
        EnqueueError::Storage(format!("NATS: {text}"))
    }
}

/// The stream config the router wants.
fn stream_config(nats: &Nats, config: &QueueConfig) -> stream::Config {
    stream::Config {
        name: nats.stream.clone(),
        subjects: vec![format!("{}.deliver.>", nats.stream)],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        max_age: config.max_age.0,
        max_bytes: i64::try_from(config.max_bytes.0).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::New,
        duplicate_window: DUPLICATE_WINDOW,
        ..stream::Config::default()
    }
}

/// Creates the stream, or checks the one there and brings its limits up to date.
async fn ensure_stream(nats: &Nats, config: &QueueConfig) -> Result<stream::Stream, NatsError> {
    let wanted = stream_config(nats, config);
    let setup = |cause: String| NatsError::Setup {
        what: format!("stream {:?}", nats.stream),
        cause,
    };
    match nats.jetstream.get_stream(&nats.stream).await {
        Ok(mut existing) => {
            let info = existing.info().await.map_err(|e| setup(e.to_string()))?;
            let have = &info.config;
            let subject = &wanted.subjects[0];
            if have.retention != stream::RetentionPolicy::WorkQueue {
                return Err(NatsError::Incompatible {
                    stream: nats.stream.clone(),
                    why: format!(
                        "its retention is {:?}, the router needs WorkQueue (delete the stream or \
                         choose another `stream` name)",
                        have.retention
                    ),
                });
            }
            if !have.subjects.iter().any(|s| s == subject) {
                return Err(NatsError::Incompatible {
                    stream: nats.stream.clone(),
                    why: format!(
                        "its subjects are {:?}, the router needs {subject:?}",
                        have.subjects
                    ),
                });
            }
            let limits_differ = have.max_age != wanted.max_age
                || have.max_bytes != wanted.max_bytes
                || have.num_replicas != wanted.num_replicas;
            if limits_differ {
                tracing::info!(stream = %nats.stream, "NATS: updating the stream's max_age, max_bytes and replicas to the config's");
                let mut update = have.clone();
                update.max_age = wanted.max_age;
                update.max_bytes = wanted.max_bytes;
                update.num_replicas = wanted.num_replicas;
                nats.jetstream
                    .update_stream(update)
                    .await
                    .map_err(|e| setup(e.to_string()))?;
            }
            Ok(existing)
        }
        Err(error) if is_not_found(&error) => {
            let max_bytes = config.max_bytes.0;
            nats.jetstream.create_stream(wanted).await.map_err(|e| {
                let cause = e.to_string();
                if cause.contains("insufficient storage") {
                    setup(format!(
                        "{cause}: the server cannot reserve max_bytes = {} for the stream; lower \
                         [queue] max_bytes, or give JetStream more storage (max_file_store)",
                        bytesize::ByteSize(max_bytes).display().iec()
                    ))
                } else {
                    setup(cause)
                }
            })
        }
        Err(error) => Err(setup(error.to_string())),
    }
}

/// Logs the events waiting in the stream for destinations no longer in the config, or on
/// ordered partitions past `partitions`: nothing delivers them until the destination is added
/// back (the partitions raised).
async fn warn_of_orphans(
    stream: &stream::Stream,
    nats: &Nats,
    destinations: &[NatsDestination],
    partitions: usize,
) {
    let prefix = format!("{}.deliver.", nats.stream);
    let Ok(mut subjects) = stream.info_with_subjects(format!("{prefix}>")).await else {
        return;
    };
    while let Some(Ok((subject, events))) = subjects.next().await {
        // `<destination>`, or `<destination>.ordered.<partition>`.
        let rest = subject.strip_prefix(&prefix).unwrap_or(&subject);
        let name = rest.split('.').next().unwrap_or(rest);
        if !destinations.iter().any(|d| d.name == name) {
            tracing::warn!(
                %subject,
                events,
                "NATS: {events} events wait in the stream for destination {name:?}, which is not \
                 in the config; they are delivered once it is added back (or purge the subject)"
            );
        } else if let Some(p) = rest
            .strip_prefix(name)
            .and_then(|p| p.strip_prefix(".ordered."))
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|&p| p >= partitions)
        {
            tracing::warn!(
                %subject,
                events,
                "NATS: {events} ordered events wait in the stream on partition {p} of destination \
                 {name:?}, past [queue] partitions = {partitions}; they are delivered once \
                 partitions is raised past {p} again (or purge the subject)"
            );
        }
    }
}

fn is_not_found(error: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Creates (or updates) the durable consumer that delivers to `destination`.
async fn ensure_consumer(
    stream: &stream::Stream,
    config: &QueueConfig,
    destination: &NatsDestination,
    subject: &str,
) -> Result<consumer::Consumer<pull::Config>, NatsError> {
    let name = Nats::consumer(&destination.name);
    let wanted = pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: subject.to_owned(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.ack_wait.0,
        // No limit: the routers count attempts and give a message up themselves.
        max_deliver: -1,
        max_ack_pending: i64::try_from(config.max_ack_pending.get()).unwrap_or(i64::MAX),
        deliver_policy: consumer::DeliverPolicy::All,
        ..pull::Config::default()
    };
    // Creating a durable consumer that exists with other settings updates those JetStream lets
    // change (ack_wait, max_deliver, max_ack_pending; a consumer an older router made with a
    // `max_deliver` loses it); it fails only if the filter differs.
    stream
        .create_consumer(wanted)
        .await
        .map_err(|e| NatsError::Setup {
            what: format!("consumer {name:?} (destination {:?})", destination.name),
            cause: e.to_string(),
        })
}

/// Pulls one destination's messages (or one ordered partition's) into the local channel while
/// the router has room.
#[derive(Debug, Clone)]
struct Fetch {
    consumer: consumer::Consumer<pull::Config>,
    destination: DestinationId,
    name: String,
    attempts: Attempts,
    local: MemoryQueue,
    held: HeldMessages,
    keys: Arc<AtomicU64>,
    outbox: Outbox,
    /// Where ordered messages' records go (see `NatsAck::records`).
    records: Outbox,
    /// What every fetch's open pull has asked for, so that together they stay in the room.
    pulls: Pulls,
    /// For an ordered partition: the stream's last sequence when this router took it (the
    /// messages up to it may have attempt records from the router before).
    ordered: Option<u64>,
}

impl Fetch {
    async fn run(&self, stop: CancellationToken) {
        let mut failing = false;
        while !stop.is_cancelled() {
            let room = self.pulls.claim(self.destination, BATCH, || self.room());
            if room == 0 {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ROOM_PAUSE) => continue,
                }
            }
            let batch = self
                .consumer
                .batch()
                .max_messages(room)
                .expires(PULL_EXPIRES)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    self.pulls.settled(self.destination, room);
                    if !failing {
                        tracing::warn!(destination = %self.name, %error, "NATS: cannot pull messages; trying again");
                        failing = true;
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(PULL_PAUSE) => continue,
                    }
                }
            };
            let mut received = 0;
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => {
                        self.pulls.settled(self.destination, room.saturating_sub(received));
                        self.hand_back(&mut batch).await;
                        return;
                    }
                    next = batch.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        if failing {
                            tracing::info!(destination = %self.name, "NATS: pulling messages again");
                            failing = false;
                        }
                        self.take(message).await;
                        // Held now: counted in the room, no longer as asked for.
                        received += 1;
                        self.pulls.settled(self.destination, 1);
                    }
                    Some(Err(error)) => {
                        tracing::debug!(destination = %self.name, %error, "NATS: pull ended");
                        break;
                    }
                    None => break,
                }
            }
            self.pulls
                .settled(self.destination, room.saturating_sub(received));
        }
    }

    /// Naks the messages of a pull still arriving when the router stops, so that another
    /// router takes them now rather than after `ack_wait`. The pull stays open on the server
    /// until it expires, and what it delivers after the router stopped listening would wait for
    /// `ack_wait`: so this reads it to its end.
    async fn hand_back(&self, batch: &mut pull::Batch) {
        let deadline = tokio::time::Instant::now() + PULL_EXPIRES + HAND_BACK_SLACK;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, batch.next()).await {
            let (_, acker) = message.split();
            self.outbox.send(async move {
                let _ = acker.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await;
            });
        }
    }

    /// How many more events the router may hold now: of this destination's, and overall.
    fn room(&self) -> (usize, usize) {
        let holds = self.local.holds();
        let for_destination = holds
            .limit(self.destination)
            .saturating_sub(holds.held(self.destination));
        let overall = self.local.capacity().saturating_sub(self.local.held());
        (for_destination, overall)
    }

    /// Hands one pulled message to dispatch, with what the routers know of it: the attempts
    /// made so far, and a verdict if it is to be dead-lettered without an attempt.
    async fn take(&self, message: async_nats::jetstream::Message) {
        let (delivered, sequence, published) = match message.info() {
            Ok(info) => (
                u64::try_from(info.delivered).unwrap_or(1),
                info.stream_sequence,
                SystemTime::from(info.published),
            ),
            Err(_) => (1, 0, SystemTime::now()),
        };
        let (message, acker) = message.split();
        let acker = AckHandle(Arc::new(acker));
        let record_key = attempts::key(
            message.headers.as_ref(),
            &Nats::consumer(&self.name),
            sequence,
        );
        // A first hand-out has no record: nothing could have written one. (Except in an ordered
        // partition taken over: its consumer was made anew, and counts from one again.)
        let recorded = delivered > 1 || self.ordered.is_some_and(|last| sequence <= last);
        let record = if recorded {
            self.attempts
                .read(&record_key)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(destination = %self.name, %error, message = %record_key, "NATS: could not read a message's attempt record; counting from zero");
                    None
                })
                .unwrap_or_default()
        } else {
            Record::default()
        };
        let (event, verdict) = match encoding::decode(message.headers.as_ref(), &message.payload) {
            Ok(event) => {
                let verdict = record
                    .verdict
                    .or_else(|| handed_out_too_often(delivered, record.attempts));
                (event, verdict)
            }
            Err(error) => {
                tracing::error!(destination = %self.name, %error, subject = %message.subject, sequence, "NATS: a message does not decode; it becomes a dead letter holding its raw bytes");
                let verdict = Verdict {
                    attempts: record.attempts,
                    last_status: None,
                    reason: format!(
                        "the NATS message (stream sequence {sequence}) does not decode: {error}; \
                         the letter's body is its raw payload"
                    ),
                };
                (raw_event(&message, published), Some(verdict))
            }
        };
        // The room was claimed before the pull ([`Pulls`]); a pull never asks for more than it.
        self.local.reserve(1, true);
        let slot = self.local.slot();
        let holds = self.local.holds();
        let _ = holds.reserve(&[self.destination], true);
        let holding = Holding::new(holds, vec![Some(self.destination)], &event);
        let key = self.keys.fetch_add(1, Ordering::Relaxed);
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, acker.clone());
        let progress = Progress {
            attempts: record.attempts,
            next_attempt_ms: 0,
            done: false,
        };
        let ack = NatsAck {
            acker,
            key,
            held: Arc::clone(&self.held),
            outbox: self.outbox.clone(),
            records: self.records.clone(),
            settled: AtomicBool::new(false),
            attempts: self.attempts.clone(),
            record_key,
            recorded: AtomicBool::new(recorded),
            ordered: self.ordered.is_some(),
            verdict,
        };
        let queued = QueuedEvent {
            event,
            targets: vec![Target {
                position: 0,
                destination: self.destination,
                progress,
            }],
            receipt: Receipt::new(Some(Box::new(ack)), vec![progress], slot, holding),
        };
        // Closed only at shutdown: the receipt's drop naks the message for another router.
        let _ = self.local.send(queued);
    }
}

/// The verdict on a message JetStream has handed out `delivered` times, `attempts` of which
/// ended in a failed attempt: given up once more than [`SPARE_DELIVERIES`] hand-outs had no
/// attempt finish.
fn handed_out_too_often(delivered: u64, attempts: u32) -> Option<Verdict> {
    let without = delivered
        .saturating_sub(1)
        .saturating_sub(u64::from(attempts));
    (without > SPARE_DELIVERIES).then(|| Verdict {
        attempts,
        last_status: None,
        reason: format!(
            "given up: JetStream handed the message out {delivered} times, {without} of them \
             without an attempt finishing (the routers holding it stopped or crashed); the \
             limit is {SPARE_DELIVERIES}"
        ),
    })
}

/// The event of a message that does not decode: its raw payload as the body, its event id
/// taken from its message id where it has one.
fn raw_event(message: &async_nats::Message, received_at: SystemTime) -> Event {
    let id = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
        .and_then(|id| id.as_str().split('.').next())
        .filter(|id| !id.is_empty())
        .map_or_else(Event::new_id, str::to_owned);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Event {
        id,
        route: String::new(),
        method: http::Method::POST,
        path: String::new(),
        query: String::new(),
        headers,
        body: message.payload.clone(),
        received_at,
        plugin_headers: None,
        order_key: None,
        trace: None,
    }
}

/// Tells JetStream every `every` that this router still works on the messages it holds.
async fn keep_alive(held: HeldMessages, every: Duration, outbox: Outbox, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticks.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let ackers: Vec<AckHandle> = held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        if ackers.is_empty() {
            continue;
        }
        outbox.send(async move {
            for acker in ackers {
                let _ = acker.0.ack_with(AckKind::Progress).await;
            }
        });
    }
}

impl DispatchQueue for NatsQueue {
    fn enqueue(&self, event: Event, destinations: Vec<DestinationId>) -> EnqueueFuture<'_> {
        Box::pin(self.publish(vec![(event, destinations)]))
    }

    fn enqueue_all(&self, events: Vec<(Event, Vec<DestinationId>)>) -> EnqueueFuture<'_> {
        // JetStream stores each message on its own: a failure part way leaves the stored ones
        // to be delivered, and the sender's retry may deliver them twice (at least once).
        Box::pin(self.publish(events))
    }

    fn dequeue(&self) -> DequeueFuture<'_> {
        self.local.dequeue()
    }

    fn try_dequeue(&self) -> Option<QueuedEvent> {
        self.local.try_dequeue()
    }

    fn held(&self) -> usize {
        self.local.held()
    }

    fn queued(&self) -> usize {
        self.local.queued()
    }

    fn drain(&self) -> Vec<QueuedEvent> {
        self.local.drain()
    }

    fn close(&self) {
        self.stop.cancel();
        self.local.close();
    }

    fn durable(&self) -> bool {
        true
    }

    fn flush(&self) -> FlushFuture<'_> {
        Box::pin(async move {
            // The fetches stopped at close, and hand back what their last pulls bring.
            self.stop.cancel();
            let fetches =
                std::mem::take(&mut *self.fetches.lock().unwrap_or_else(PoisonError::into_inner));
            for fetch in fetches {
                let _ = tokio::time::timeout(PULL_EXPIRES + FLUSH_WAIT, fetch).await;
            }
            // Dispatch has stopped: whatever this router still holds goes back to the stream
            // now, for another router, instead of after ack_wait.
            let left: Vec<AckHandle> =
                std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner))
                    .into_values()
                    .collect();
            if !left.is_empty() {
                tracing::info!(
                    messages = left.len(),
                    "NATS: handing back the messages this router held"
                );
                self.nats.outbox.send(async move {
                    for acker in left {
                        let _ = acker.0.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await;
                    }
                });
            }
            // Everything sent to the outboxes before this is out.
            for outbox in [&self.nats.outbox, &self.records] {
                let (done, finished) = tokio::sync::oneshot::channel();
                outbox.send(async move {
                    let _ = done.send(());
                });
                let _ = tokio::time::timeout(FLUSH_WAIT, finished).await;
            }
            let _ = tokio::time::timeout(FLUSH_WAIT, self.nats.client.flush()).await;
            // Handed back: the ordered partitions go to the other routers now.
            let _ = tokio::time::timeout(FLUSH_WAIT, self.ordered.release()).await;
        })
    }

    fn unavailable(&self) -> Option<String> {
        match self.nats.client.connection_state() {
            async_nats::connection::State::Connected => None,
            _ => Some(format!("NATS at {} is not connected", self.nats.url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_given_up_after_ten_hand_outs_without_an_attempt() {
        // The first hand-out, then failed attempts: each nak is a hand-out with an attempt.
        assert_eq!(handed_out_too_often(1, 0), None);
        assert_eq!(handed_out_too_often(50, 49), None);
        // 10 hand-outs without an attempt are spare; the 11th is one too many.
        assert_eq!(handed_out_too_often(11, 0), None);
        assert_eq!(handed_out_too_often(14, 3), None);
        let verdict = handed_out_too_often(15, 3).expect("given up");
        assert_eq!(verdict.attempts, 3);
        assert_eq!(verdict.last_status, None);
        assert!(
            verdict.reason.starts_with(
                "given up: JetStream handed the message out 15 times, 11 of them without an \
                 attempt finishing"
            ),
            "{}",
            verdict.reason
        );
    }
}
