//! Wiring: builds every part of a router from its config, starts it, and stops it in order.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::config::{Config, ConfigErrors};
use crate::dead_letter::DeadLetterStore;
use crate::deliver::{Deliverer, Destination, InvalidHeader};
use crate::dispatch::Dispatcher;
use crate::ingress::Ingress;
use crate::metrics::Metrics;
use crate::plugin::load_chains;
use crate::queue::{DispatchQueue, MemoryQueue};
use crate::server::{ListenerSettings, StopTokens, serve};
use crate::supervise::Supervisor;

/// How often histogram samples are folded into buckets.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why a router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client for deliveries could not be built.
    #[error("cannot build the delivery HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// A destination's headers are invalid.
    #[error(transparent)]
    Destination(#[from] InvalidHeader),
    /// A plugin could not be loaded or rejected its configuration.
    #[error("{0}")]
    Plugin(ConfigErrors),
}

/// What shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events still held (queued, waiting to retry, or cut off in flight) when the router
    /// stopped, each counted once; without a journal they are lost (their ids are logged).
    pub still_queued: usize,
}

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
        H: Fn(http::Request<hyper::body::Incoming>, SocketAddr) -> F
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
                settings,
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
    metrics: Metrics,
    queue: Arc<dyn DispatchQueue>,
    admin: Arc<Admin>,
    dispatcher: Dispatcher,
    ingress: Listener,
    admin_listener: Listener,
    upkeep_task: JoinHandle<()>,
    grace: Duration,
}

impl Router {
    /// Binds the listeners and starts serving `config`. Port 0 picks a free port; see
    /// [`Router::ingress_addr`] and [`Router::admin_addr`].
    pub async fn start(config: &Config) -> Result<Router, StartError> {
        let server = &config.server;
        let metrics = Metrics::new();
        let supervisor = Supervisor::new(metrics.clone());
        let ingress_listener = bind("ingress", server.listen).await?;
        let admin_listener = bind("admin", server.admin_listen).await?;
        let ingress_addr = local_addr("ingress", &ingress_listener, server.listen)?;
        let admin_addr = local_addr("admin", &admin_listener, server.admin_listen)?;

        let mut destinations = Vec::with_capacity(config.destinations.len());
        let mut destination_ids = HashMap::new();
        for (name, destination) in &config.destinations {
            destination_ids.insert(name.clone(), destinations.len());
            destinations.push(Destination::from_config(name, destination)?);
        }
        let destination_ids = Arc::new(destination_ids);
        let chains = load_chains(config, &destination_ids, &metrics).map_err(StartError::Plugin)?;
        let queue: Arc<dyn DispatchQueue> = Arc::new(MemoryQueue::new(
            server.queue_capacity.get(),
            metrics.clone(),
        ));
        let dead_letters = Arc::new(DeadLetterStore::new(
            server.dead_letter_capacity.get(),
            usize::try_from(server.dead_letter_max_bytes.0).unwrap_or(usize::MAX),
            metrics.clone(),
        ));
        let dispatcher = Dispatcher::start(
            &queue,
            destinations,
            &config.routes,
            Deliverer::new()?,
            Arc::clone(&dead_letters),
            &metrics,
            &supervisor,
            &config.test_faults,
        );

        let settings = ListenerSettings {
            // hyper adds it to `Instant::now()` unchecked.
            header_read_timeout: crate::clock::cap(server.header_read_timeout.0),
        };
        let ingress = Arc::new(Ingress::new(
            config,
            &destination_ids,
            chains,
            Arc::clone(&queue),
            &metrics,
        ));
        let ingress = Listener::start(
            "ingress_listener",
            ingress_listener,
            settings,
            &supervisor,
            move |request, peer| {
                let ingress = Arc::clone(&ingress);
                async move { ingress.handle(request, peer).await }
            },
        );

        let admin = Arc::new(Admin::new(
            metrics.clone(),
            dead_letters,
            Arc::clone(&queue),
            server.admin_token.clone(),
            supervisor.clone(),
        ));
        let admin_handler = Arc::clone(&admin);
        let admin_listener = Listener::start(
            "admin_listener",
            admin_listener,
            settings,
            &supervisor,
            move |request, _peer| {
                let response = admin_handler.handle(&request);
                async move { response }
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
                 anyone who can reach it can read dead letters and replay them"
            );
        }
        tracing::info!(%ingress_addr, %admin_addr, routes = config.routes.len(), destinations = config.destinations.len(), "router started");
        Ok(Router {
            ingress_addr,
            admin_addr,
            metrics,
            queue,
            admin,
            dispatcher,
            ingress,
            admin_listener,
            upkeep_task,
            grace: server.shutdown_grace.0,
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

    /// The router's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops gracefully within one grace period in all: stop accepting webhooks and let the
    /// requests being received finish, let in-flight deliveries finish, then stop the admin
    /// listener, all by one deadline `shutdown_grace` from now. Reports the events left
    /// undelivered, each counted once, and logs their ids.
    pub async fn shutdown(self) -> ShutdownReport {
        let deadline = tokio::time::Instant::from_std(crate::clock::after(
            std::time::Instant::now(),
            self.grace,
        ));
        self.admin.set_not_ready();
        self.ingress.stop("ingress", deadline).await;
        self.queue.close();
        let left = self.dispatcher.stop(deadline, self.queue.as_ref()).await;
        let still_queued = left.event_ids.len();
        if still_queued > 0 {
            tracing::warn!(
                still_queued,
                event_ids = ?left.event_ids,
                "stopped with events still held; they were not delivered"
            );
        } else {
            tracing::info!("stopped with no events left undelivered");
        }
        self.admin_listener.stop("admin", deadline).await;
        self.upkeep_task.abort();
        ShutdownReport { still_queued }
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })
}
