//! Wiring: builds every part of a router from its config, starts it, and stops it in order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::admin::routes::RouteTable;
use crate::config::{Config, ConfigErrors};
use crate::delivery::attempt::{Deliverer, Destination, DestinationError};
use crate::delivery::dead_letter::{DeadLetter, DeadLetterStore};
use crate::delivery::destinations::DestinationBoard;
use crate::delivery::dispatch::Dispatcher;
use crate::event::Event;
use crate::ingress::Ingress;
use crate::inspect::Inspector;
use crate::journal::{Batch, Journal, JournalError, Recovered};
use crate::metrics::Metrics;
use crate::nats::NatsError;
use crate::plugin::{CompiledModules, load_chains_with};
use crate::queue::{DispatchQueue, Holds, JournalQueue, Progress, ResumedEvent, held_caps};
use crate::reload::{ListenerCerts, Reloader};
use crate::server::sockets::{self, PassedSockets, SocketError};
use crate::server::{ListenerSettings, Listeners, StopTokens, serve};
use crate::supervise::Supervisor;
use crate::tls::ServedCert;

mod backend;

use backend::open_backend;

/// How often histogram samples are folded into buckets.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why a router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address could not be bound, or a passed socket cannot be used.
    #[error(transparent)]
    Listen(#[from] SocketError),
    /// The HTTP client for deliveries could not be built.
    #[error("cannot build the delivery HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// A destination's headers are invalid, or its TLS files cannot be used.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// A plugin could not be loaded or rejected its configuration.
    #[error("{0}")]
    Plugin(ConfigErrors),
    /// The journal could not be opened.
    #[error("cannot open the journal: {0}")]
    Journal(JournalError),
    /// The NATS backend could not be used.
    #[error("{0}")]
    Nats(NatsError),
    /// A listener's certificate or key cannot be used.
    #[error("cannot serve TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The certificates' folders cannot be watched for changes.
    #[error(transparent)]
    Watch(#[from] crate::reload::watch::WatchError),
    /// The admin listener (a socket passed by the service manager) is reachable from the
    /// network, with no `admin_token` and without `admin_public = true`.
    #[error(
        "the admin listener on {0} is reachable from the network without admin_token: set \
         server.admin_token, pass a loopback socket, or set admin_public = true if an open admin \
         API is meant"
    )]
    OpenAdmin(SocketAddr),
}

/// What shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events still held (queued, waiting to retry, or cut off in flight) when the router
    /// stopped, each counted once: with a journal they are delivered after the next start;
    /// without one they are lost (their ids are logged).
    pub still_queued: usize,
}

/// How long shutdown waits between looks at whether anything is still held.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// A listener's task and the tokens that stop it.
#[derive(Debug)]
struct Listener {
    task: JoinHandle<()>,
    stop: StopTokens,
}

impl Listener {
    /// Starts serving `handler` on `listener` under `supervisor`, as the task `name`.
    fn start<H, F>(
        name: &'static str,
        listener: TcpListener,
        settings: ListenerSettings,
        supervisor: &Supervisor,
        handler: H,
    ) -> Self
    where
        H: Fn(http::Request<hyper::body::Incoming>, crate::allow_list::Peer) -> F
            + Clone
            + Send
            + Sync
            + 'static,
        F: Future<Output = http::Response<crate::reply::ResponseBody>> + Send + 'static,
    {
        let stop = StopTokens::default();
        let listener = Arc::new(listener);
        let tokens = stop.clone();
        let task = supervisor.spawn(name, move || {
            serve(
                Arc::clone(&listener),
                settings.clone(),
                tokens.clone(),
                handler.clone(),
            )
        });
        Self { task, stop }
    }

    /// Stops accepting, lets open connections finish until `deadline`, then closes them.
    async fn stop(mut self, what: &str, deadline: tokio::time::Instant) {
        self.stop.stop_accepting.cancel();
        if tokio::time::timeout_at(deadline, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!(
                listener = what,
                "connections still open at the end of the shutdown grace period were closed"
            );
            self.stop.close_now.cancel();
            let _ = self.task.await;
        }
    }
}

/// A running router: its listeners, dispatch workers and admin API.
#[derive(Debug)]
pub struct Router {
    ingress_addr: SocketAddr,
    admin_addr: SocketAddr,
    ingress_tls: bool,
    admin_tls: bool,
    metrics: Metrics,
    queue: Arc<dyn DispatchQueue>,
    admin: Arc<Admin>,
    dispatcher: Dispatcher,
    ingress: Listener,
    admin_listener: Listener,
    upkeep_task: JoinHandle<()>,
    /// The ingress itself (its listener is `ingress`): the refusals of its route table.
    routes: Arc<Ingress>,
    refusal_task: JoinHandle<()>,
    reloader: Arc<Reloader>,
    /// Reads the listeners' certificates again when their files change (with `tls` only).
    _cert_watch: Option<crate::reload::watch::Watch>,
    grace: Duration,
    journal: Option<Journal>,
    inspector: Inspector,
}

impl Router {
    /// Binds the listeners and starts serving `config`. Port 0 picks a free port; see
    /// [`Router::ingress_addr`] and [`Router::admin_addr`].
    pub async fn start(config: &Config) -> Result<Router, StartError> {
        Self::start_on(config, PassedSockets::default()).await
    }

    /// Starts serving `config` on the listening sockets `passed` (socket activation), binding
    /// from the config each listener not passed.
    pub async fn start_on(config: &Config, passed: PassedSockets) -> Result<Router, StartError> {
        let server = &config.server;
        let metrics = Metrics::new();
        let supervisor = Supervisor::new(metrics.clone());
        let ingress_listener = sockets::listener("ingress", server.listen, passed.ingress).await?;
        let admin_listener = sockets::listener("admin", server.admin_listen, passed.admin).await?;
        let ingress_addr = sockets::local_addr("ingress", &ingress_listener, server.listen)?;
        let admin_addr = sockets::local_addr("admin", &admin_listener, server.admin_listen)?;
        // `check` judges the configured address; a socket passed by the service manager is
        // judged here, by where it really listens.
        if !admin_addr.ip().is_loopback() && server.admin_token.is_none() && !server.admin_public {
            return Err(StartError::OpenAdmin(admin_addr));
        }

        let mut destinations = Vec::with_capacity(config.destinations.len());
        let mut destination_ids = HashMap::new();
        for (name, destination) in &config.destinations {
            destination_ids.insert(name.clone(), destinations.len());
            destinations.push(Destination::from_config(name, destination)?);
        }
        let destination_ids = Arc::new(destination_ids);
        let modules = CompiledModules::default();
        let chains = load_chains_with(config, &destination_ids, &metrics, &modules)
            .await
            .map_err(StartError::Plugin)?;
        // The modules of the config the router starts with are the ones serving.
        modules.forget_unused();
        let holds = Arc::new(Holds::new(held_caps(config), &metrics));
        let backend = open_backend(
            config,
            &destinations,
            &destination_ids,
            &holds,
            &metrics,
            &supervisor,
        )
        .await?;
        let queue = backend.queue();
        let journal = backend.journal().cloned();
        let inspector = backend.inspector().clone();
        let dead_letters = Arc::clone(backend.dead_letters());
        let mut ingress_config = Cow::Borrowed(config);
        if let Some(limit) = backend.body_limit() {
            ingress_config.to_mut().server.max_body_bytes = Some(limit);
        }
        let ingress = Ingress::new(
            &ingress_config,
            &destination_ids,
            chains,
            Arc::clone(&queue),
            journal.as_ref(),
            &metrics,
        )
        .with_inspector(inspector.clone());
        backend
            .attach(config, &ingress, &destination_ids, &metrics)
            .await?;
        let board = Arc::new(DestinationBoard::new(&destinations, holds, &metrics));
        let dispatcher = Dispatcher::start(
            &queue,
            destinations,
            &config.routes,
            Deliverer::new()?,
            Arc::clone(&dead_letters),
            Arc::clone(&board),
            &metrics,
            &supervisor,
            &config.test_faults,
            inspector.clone(),
        );

        let mut settings = Listeners::for_config(server, &metrics);
        let certs = ListenerCerts {
            ingress: served_cert("ingress", server.tls.as_ref(), &metrics)?,
            admin: served_cert("admin", server.admin_tls.as_ref(), &metrics)?,
        };
        settings.ingress.tls = certs.ingress.as_ref().map(ServedCert::server_config);
        settings.admin.tls = certs.admin.as_ref().map(ServedCert::server_config);
        let ingress = Arc::new(ingress);
        let refusals = Arc::clone(&ingress);
        let refusal_task = supervisor.spawn("refusal_log", move || {
            let ingress = Arc::clone(&refusals);
            async move { ingress.summarise_refusals().await }
        });
        let routes = Arc::clone(&ingress);
        // What the config file holds now: a reload compares the file it reads with it.
        let text = std::fs::read_to_string(&config.source).unwrap_or_default();
        let reloader = Arc::new(
            Reloader::new(
                config,
                text,
                Arc::clone(&ingress),
                (Arc::clone(&destination_ids), dispatcher.control()),
                &metrics,
                modules,
            )
            .with_certs(certs),
        );
        let cert_watch = crate::reload::watch::watch_certs(Arc::clone(&reloader))?;
        let ingress = Listener::start(
            "ingress_listener",
            ingress_listener,
            settings.ingress,
            &supervisor,
            move |request, peer| {
                let ingress = Arc::clone(&ingress);
                async move { ingress.handle(request, peer).await }
            },
        );

        let admin = Arc::new(
            Admin::new(
                metrics.clone(),
                dead_letters,
                board,
                Arc::clone(&queue),
                server.admin_token.clone(),
                supervisor.clone(),
            )
            .with_inspector(inspector.clone()),
        );
        admin.set_routes(RouteTable::from_config(config));
        admin.set_reloader(Arc::clone(&reloader));
        // Weak: the admin API holds the reloader, so the reloader must not hold the admin API.
        let routes_of = Arc::downgrade(&admin);
        reloader.on_switch(move |config| {
            if let Some(admin) = routes_of.upgrade() {
                admin.set_routes(RouteTable::from_config(config));
            }
        });
        let holding = dispatcher.holding_routes();
        reloader.on_switch(move |config| holding.update(&config.routes));
        let admin_handler = Arc::clone(&admin);
        let admin_listener = Listener::start(
            "admin_listener",
            admin_listener,
            settings.admin,
            &supervisor,
            move |request, _peer| {
                let admin = Arc::clone(&admin_handler);
                async move { admin.handle(&request).await }
            },
        );

        let upkeep_metrics = metrics.clone();
        let upkeep_task = supervisor.spawn("metrics_upkeep", move || {
            let metrics = upkeep_metrics.clone();
            async move {
                let mut ticks = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
                loop {
                    ticks.tick().await;
                    metrics.run_upkeep();
                }
            }
        });

        if !admin_addr.ip().is_loopback() && server.admin_token.is_none() {
            tracing::warn!(
                %admin_addr,
                "the admin API is reachable from the network without a token (admin_public = true): \
                 anyone who can reach it can read dead letters, replay and discard them, and reload \
                 the config"
            );
        }
        tracing::info!(%ingress_addr, %admin_addr, routes = config.routes.len(), destinations = config.destinations.len(), "router started");
        Ok(Router {
            ingress_addr,
            admin_addr,
            ingress_tls: server.tls.is_some(),
            admin_tls: server.admin_tls.is_some(),
            metrics,
            queue,
            admin,
            dispatcher,
            ingress,
            admin_listener,
            upkeep_task,
            routes,
            refusal_task,
            reloader,
            _cert_watch: cert_watch,
            grace: server.shutdown_grace.0,
            journal,
            inspector,
        })
    }

    /// The address webhooks are received on.
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress_addr
    }

    /// The address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// `https` if the ingress listener serves TLS, else `http`.
    pub fn ingress_scheme(&self) -> &'static str {
        if self.ingress_tls { "https" } else { "http" }
    }

    /// `https` if the admin listener serves TLS, else `http`.
    pub fn admin_scheme(&self) -> &'static str {
        if self.admin_tls { "https" } else { "http" }
    }

    /// What reloads the router's config from its file (`SIGHUP`, `POST /reload`, `--watch`).
    pub fn reloader(&self) -> Arc<Reloader> {
        Arc::clone(&self.reloader)
    }

    /// The router's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops gracefully within one grace period in all: stops accepting webhooks and lets the
    /// requests being received finish; then, with the memory queue, keeps delivering (queued
    /// events too) until nothing is held. With a durable queue (journal, NATS) it starts no new
    /// attempt from the start of the stop and only lets those in flight finish: the other held
    /// events are already stored, and the next process delivers them, so draining them would
    /// only keep the listener closed longer.
    /// Then it syncs and stops the admin listener, all by one deadline `shutdown_grace` from
    /// now. Reports the events left undelivered, each counted once: with a durable queue they
    /// are left for the next start; without one their ids are logged.
    pub async fn shutdown(self) -> ShutdownReport {
        let deadline = tokio::time::Instant::from_std(crate::clock::after(
            std::time::Instant::now(),
            self.grace,
        ));
        self.admin.set_not_ready();
        let durable = self.queue.durable();
        if durable {
            // What is queued stays for the next process: no attempt starts from now on, and
            // those in flight finish while the ingress answers its last requests.
            self.dispatcher.stop_starting();
        }
        self.ingress.stop("ingress", deadline).await;
        // The refusals since the last summary, before the stop's own lines.
        self.refusal_task.abort();
        self.routes.refusal_log().summarise();
        self.queue.close();
        if !durable {
            deliver_what_is_held(self.queue.as_ref(), &self.dispatcher, self.grace, deadline).await;
        }
        let left = self.dispatcher.stop(deadline, self.queue.as_ref()).await;
        self.queue.flush().await;
        let still_queued = left.event_ids.len();
        if still_queued == 0 {
            tracing::info!("stopped with no events left undelivered");
        } else if self.queue.durable() {
            tracing::info!(
                still_queued,
                "{still_queued} events left for the next start (they stay in the journal or the stream)"
            );
        } else {
            tracing::warn!(
                still_queued,
                event_ids = ?left.event_ids,
                "stopped with events still held; they were not delivered and are lost"
            );
        }
        // The event record's last changes, before the journal closes.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inspector.settle()).await;
        if let Some(journal) = &self.journal
            && let Err(error) = journal.close().await
        {
            tracing::error!(%error, "journal: the last sync failed");
        }
        self.admin_listener.stop("admin", deadline).await;
        self.upkeep_task.abort();
        ShutdownReport { still_queued }
    }
}

/// The certificate the listener `listener` serves, read from `files`, if it has `tls`.
fn served_cert(
    listener: &'static str,
    files: Option<&crate::config::TlsFiles>,
    metrics: &Metrics,
) -> Result<Option<Arc<ServedCert>>, crate::tls::TlsError> {
    let Some(files) = files else { return Ok(None) };
    let pair = crate::tls::CertPair::load(&files.cert, &files.key)?;
    let expiry = metrics.tls_cert_expiry(listener);
    Ok(Some(ServedCert::new(
        listener,
        (&files.cert, &files.key),
        &pair,
        expiry,
    )))
}

/// Keeps `dispatcher` delivering until `queue` holds nothing, or nothing can happen before
/// `deadline` (everything left waits for a retry due after it: seen twice, a poll apart, so that
/// a delivery moving between two places is not missed). The last quarter of the grace period
/// starts no new attempt, so that the attempts in flight can finish in it instead of being cut
/// off.
async fn deliver_what_is_held(
    queue: &dyn DispatchQueue,
    dispatcher: &Dispatcher,
    grace: Duration,
    deadline: tokio::time::Instant,
) {
    let last_start = deadline.checked_sub(grace / 4).unwrap_or(deadline);
    let mut settled_polls = 0;
    while queue.held() > 0 && tokio::time::Instant::now() < last_start && settled_polls < 2 {
        if dispatcher.settled(deadline.into_std(), queue) {
            settled_polls += 1;
        } else {
            settled_polls = 0;
        }
        tokio::time::sleep_until(last_start.min(tokio::time::Instant::now() + IDLE_POLL)).await;
    }
}

/// Queues the events read back from the journal, and restores its dead letters and dedup
/// windows. An event's destination that is no longer in the config becomes a dead letter.
fn resume(
    recovered: &mut Recovered,
    queue: &JournalQueue,
    resumed: Vec<ResumedEvent>,
    dead_letters: &DeadLetterStore,
    ingress: &Ingress,
    destination_ids: &HashMap<String, usize>,
    metrics: &Metrics,
) {
    let letters = dead_letters.restore_from(recovered, |name| destination_ids.get(name).copied());
    let dedup = ingress.restore_dedup(recovered);
    let events = resumed.len();
    let mut orphaned = 0;
    for mut event in resumed {
        let ids: Vec<Option<usize>> = event
            .destinations
            .iter()
            .map(|name| destination_ids.get(name).copied())
            .collect();
        // The letters' records go with the progress that makes their positions final.
        let mut records = Batch::new();
        let mut staged = Vec::new();
        for (position, name) in event.destinations.iter().enumerate() {
            let progress = &mut event.progress[position];
            if ids[position].is_some() || progress.done {
                continue;
            }
            orphaned += 1;
            let mut letter = dead_letters.stage(orphan_letter(&event.event, name, progress));
            match letter.take_records() {
                Some(letter_records) => {
                    records.extend(letter_records);
                    staged.push(letter);
                }
                None => dead_letters.push(letter.into_letter()),
            }
            *progress = Progress {
                done: true,
                ..*progress
            };
        }
        queue.resume(event, &ids, records);
        for letter in staged {
            dead_letters.staged(letter);
        }
    }
    metrics.journal().recovered.increment(events as u64);
    tracing::info!(
        events,
        dead_letters = letters,
        dedup_ids = dedup,
        orphaned,
        "journal recovered: events to deliver, dead letters and dedup ids read back"
    );
}

/// The dead letter of an event whose destination `name` left the config while it was held.
fn orphan_letter(event: &Event, name: &str, progress: &Progress) -> DeadLetter {
    tracing::warn!(event_id = %event.id, destination = name, "a held event's destination is no longer in the config: dead-lettered");
    DeadLetter {
        id: Event::new_id(),
        event: event.clone(),
        destination: None,
        destination_name: name.to_owned(),
        attempts: progress.attempts,
        last_status: None,
        last_error: format!("destination {name:?} is no longer in the config"),
        failed_at: std::time::SystemTime::now(),
    }
}
