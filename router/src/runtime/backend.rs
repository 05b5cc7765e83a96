//! The queue backend a router runs on (memory, journal or NATS JetStream), opened from the
//! config with what it gives the rest of the router: the dispatch queue, the dead-letter store
//! and the event record, each kept in the journal or shared over NATS when there is one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{ByteSize, Config, DEFAULT_MAX_BODY_BYTES, FsyncMode, QueueBackend};
use crate::dedup::nats::NatsWindow;
use crate::delivery::attempt::Destination;
use crate::delivery::dead_letter::DeadLetterStore;
use crate::delivery::dead_letter::nats::NatsLetters;
use crate::ingress::Ingress;
use crate::inspect::Inspector;
use crate::journal::{Fsync, Journal, JournalOptions, Recovered};
use crate::metrics::Metrics;
use crate::nats::{Nats, NatsError};
use crate::queue::nats::{NatsDestination, NatsQueue};
use crate::queue::{DispatchQueue, Holds, JournalQueue, MemoryQueue, ResumedEvent};
use crate::supervise::Supervisor;

use super::{StartError, resume};

/// Room in a NATS message for what it carries besides the body: the event's headers, route,
/// path and the router's own fields.
const NATS_MESSAGE_OVERHEAD: u64 = 64 * 1024;

/// An opened backend and what it gives the router.
#[derive(Debug)]
pub(super) enum Backend {
    /// Everything in memory: held events are lost when the router stops.
    Memory {
        queue: Arc<MemoryQueue>,
        dead_letters: Arc<DeadLetterStore>,
        inspector: Inspector,
    },
    /// The journal: events, dead letters, dedup ids and event records survive a restart;
    /// `recovered` and `resumed` are what the last run left, until [`Backend::attach`].
    Journal {
        queue: Arc<JournalQueue>,
        dead_letters: Arc<DeadLetterStore>,
        inspector: Inspector,
        journal: Journal,
        recovered: Recovered,
        resumed: Vec<ResumedEvent>,
    },
    /// NATS JetStream: the queue, dead letters and dedup windows are shared with the other
    /// routers on the stream; messages cap the body size (`body_limit`).
    Nats {
        queue: Arc<NatsQueue>,
        dead_letters: Arc<DeadLetterStore>,
        inspector: Inspector,
        /// Boxed: a client and its stream settings, far larger than the other variants.
        connection: Box<Nats>,
        body_limit: ByteSize,
    },
}

/// Opens the backend `config.queue` names for `destinations` (by id in `destination_ids`),
/// holding at most `holds` per destination.
pub(super) async fn open_backend(
    config: &Config,
    destinations: &[Destination],
    destination_ids: &Arc<HashMap<String, usize>>,
    holds: &Arc<Holds>,
    metrics: &Metrics,
    supervisor: &Supervisor,
) -> Result<Backend, StartError> {
    let capacity = config.server.queue_capacity.get();
    let dead_letters = |journal: Option<Journal>| {
        Arc::new(DeadLetterStore::new(
            config.server.dead_letter_capacity.get(),
            usize::try_from(config.server.dead_letter_max_bytes.0).unwrap_or(usize::MAX),
            metrics.clone(),
            journal,
        ))
    };
    match config.queue.journal_dir() {
        None if config.queue.backend == Some(QueueBackend::Nats) => {
            let (connection, queue, body_limit) =
                open_nats(config, destinations, holds, metrics, supervisor)
                    .await
                    .map_err(StartError::Nats)?;
            let dead_letters = dead_letters(None);
            let ids = Arc::clone(destination_ids);
            let letters = NatsLetters::open(
                &connection,
                config.queue.replicas,
                &dead_letters,
                move |name| ids.get(name).copied(),
                supervisor,
            )
            .await
            .map_err(StartError::Nats)?;
            dead_letters.set_log(Arc::new(letters));
            Ok(Backend::Nats {
                queue: Arc::new(queue),
                dead_letters,
                inspector: Inspector::open(config, None, metrics, supervisor),
                connection: Box::new(connection),
                body_limit,
            })
        }
        None => Ok(Backend::Memory {
            queue: Arc::new(MemoryQueue::new(
                capacity,
                metrics.clone(),
                Arc::clone(holds),
            )),
            dead_letters: dead_letters(None),
            inspector: Inspector::open(config, None, metrics, supervisor),
        }),
        Some(dir) => {
            let options = JournalOptions {
                fsync: match config.queue.fsync {
                    FsyncMode::Always => Fsync::Always,
                    FsyncMode::Interval => Fsync::Interval(config.queue.fsync_interval.0),
                    FsyncMode::Never => Fsync::Never,
                },
                max_bytes: config.queue.max_bytes.0,
            };
            let (journal, mut recovered) =
                Journal::open(dir, options, metrics).map_err(StartError::Journal)?;
            let (queue, resumed) = JournalQueue::open(
                journal.clone(),
                &mut recovered,
                capacity,
                destinations.iter().map(|d| d.name.clone()).collect(),
                metrics.clone(),
                Arc::clone(holds),
            );
            let inspector = Inspector::open(
                config,
                Some((&journal, &mut recovered)),
                metrics,
                supervisor,
            );
            Ok(Backend::Journal {
                queue: Arc::new(queue),
                dead_letters: dead_letters(Some(journal.clone())),
                inspector,
                journal,
                recovered,
                resumed,
            })
        }
    }
}

/// Connects to NATS and opens the stream's queue; also gives the body limit its messages
/// allow.
async fn open_nats(
    config: &Config,
    destinations: &[Destination],
    holds: &Arc<Holds>,
    metrics: &Metrics,
    supervisor: &Supervisor,
) -> Result<(Nats, NatsQueue, ByteSize), NatsError> {
    let connection = Nats::connect(&config.queue, supervisor).await?;
    let body_limit = connection.body_limit(
        config.server.max_body_bytes.map(|size| size.0),
        DEFAULT_MAX_BODY_BYTES.0,
        NATS_MESSAGE_OVERHEAD,
    )?;
    let nats_destinations: Vec<NatsDestination> = destinations
        .iter()
        .map(|d| NatsDestination {
            name: d.name.clone(),
            max_attempts: d.retry.max_attempts.get(),
        })
        .collect();
    let queue = NatsQueue::open(
        connection.clone(),
        &config.queue,
        &nats_destinations,
        config.server.queue_capacity.get(),
        metrics.clone(),
        Arc::clone(holds),
        supervisor,
    )
    .await?;
    tracing::info!(url = %connection.url, stream = %connection.stream, "queue: NATS JetStream");
    let client = connection.client.clone();
    let connected = metrics.nats_connected();
    metrics.on_render(move || {
        let up = client.connection_state() == async_nats::connection::State::Connected;
        connected.set(if up { 1.0 } else { 0.0 });
    });
    Ok((connection, queue, ByteSize(body_limit)))
}

impl Backend {
    /// The dispatch queue.
    pub(super) fn queue(&self) -> Arc<dyn DispatchQueue> {
        match self {
            Self::Memory { queue, .. } => Arc::clone(queue) as Arc<dyn DispatchQueue>,
            Self::Journal { queue, .. } => Arc::clone(queue) as Arc<dyn DispatchQueue>,
            Self::Nats { queue, .. } => Arc::clone(queue) as Arc<dyn DispatchQueue>,
        }
    }

    /// The dead-letter store.
    pub(super) fn dead_letters(&self) -> &Arc<DeadLetterStore> {
        match self {
            Self::Memory { dead_letters, .. }
            | Self::Journal { dead_letters, .. }
            | Self::Nats { dead_letters, .. } => dead_letters,
        }
    }

    /// The event record (off when `[inspect] events = 0`).
    pub(super) fn inspector(&self) -> &Inspector {
        match self {
            Self::Memory { inspector, .. }
            | Self::Journal { inspector, .. }
            | Self::Nats { inspector, .. } => inspector,
        }
    }

    /// The journal, when the backend is one.
    pub(super) fn journal(&self) -> Option<&Journal> {
        match self {
            Self::Journal { journal, .. } => Some(journal),
            Self::Memory { .. } | Self::Nats { .. } => None,
        }
    }

    /// The body limit the backend imposes, when it has its own say (NATS).
    pub(super) fn body_limit(&self) -> Option<ByteSize> {
        match self {
            Self::Nats { body_limit, .. } => Some(*body_limit),
            Self::Memory { .. } | Self::Journal { .. } => None,
        }
    }

    /// Ties the backend to `ingress`, before it serves: over NATS, every route's dedup window
    /// is shared with the other routers; with the journal, what the last run left is read
    /// back (held events queued again, dead letters, dedup ids).
    pub(super) async fn attach(
        self,
        config: &Config,
        ingress: &Ingress,
        destination_ids: &HashMap<String, usize>,
        metrics: &Metrics,
    ) -> Result<(), StartError> {
        match self {
            Self::Memory { .. } => {}
            Self::Journal {
                queue,
                dead_letters,
                mut recovered,
                resumed,
                ..
            } => resume(
                &mut recovered,
                &queue,
                resumed,
                &dead_letters,
                ingress,
                destination_ids,
                metrics,
            ),
            Self::Nats { connection, .. } => {
                for (route, store) in ingress.dedup_stores() {
                    let window = NatsWindow::open(
                        &connection,
                        config.queue.replicas,
                        &route,
                        store.window(),
                        config.queue.publish_timeout.0,
                    )
                    .await
                    .map_err(StartError::Nats)?;
                    store.share(window);
                }
            }
        }
        Ok(())
    }
}
