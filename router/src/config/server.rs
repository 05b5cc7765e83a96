//! The `[server]` table: listener addresses (and their TLS certificates), ingress limits and
//! admin settings, with their defaults, and the checks between them.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use super::error::ErrorSink;
use super::tls::TlsFiles;
use super::{ByteSize, HumanDuration, Secret, bounds};

/// The `[server]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the webhook ingress listener.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`, dead letters).
    #[serde(default = "defaults::admin_listen")]
    pub admin_listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413. Not set: [`DEFAULT_MAX_BODY_BYTES`],
    /// lowered with `backend = "nats"` to what the server's `max_payload` takes (see
    /// [`ServerConfig::body_limit`] and `Nats::body_limit`).
    #[serde(default, deserialize_with = "bounds::max_body_bytes_set")]
    pub max_body_bytes: Option<ByteSize>,
    /// Most events held by the router (queued or being delivered); past it senders get 503.
    #[serde(
        default = "defaults::queue_capacity",
        deserialize_with = "bounds::queue_capacity"
    )]
    pub queue_capacity: NonZeroUsize,
    /// How long a client may take to send its request head.
    #[serde(
        default = "defaults::header_read_timeout",
        deserialize_with = "bounds::header_read_timeout"
    )]
    pub header_read_timeout: HumanDuration,
    /// How long a keep-alive connection may stay open with no request in flight.
    #[serde(
        default = "defaults::idle_timeout",
        deserialize_with = "bounds::idle_timeout"
    )]
    pub idle_timeout: HumanDuration,
    /// Most ingress connections open at once; by default what the descriptor limit allows
    /// (see `server::descriptors`). A value above that is lowered, with a warning, at start.
    #[serde(default, deserialize_with = "bounds::max_connections")]
    pub max_connections: Option<NonZeroUsize>,
    /// Most ingress requests being received and handled at once; past it, 503 + `Retry-After`.
    #[serde(
        default = "defaults::max_requests_in_flight",
        deserialize_with = "bounds::max_requests_in_flight"
    )]
    pub max_requests_in_flight: NonZeroUsize,
    /// Most ingress requests in flight from one client (an IPv4 address or an IPv6 /64); by
    /// default [`ServerConfig::DEFAULT_PER_CLIENT`], or `max_requests_in_flight` if lower.
    #[serde(
        default,
        deserialize_with = "bounds::max_requests_in_flight_per_client"
    )]
    pub max_requests_in_flight_per_client: Option<NonZeroUsize>,
    /// Least rate, in bytes per second, at which a request body must arrive once
    /// `min_body_rate_grace` is over (past it, 408); 0 for none.
    #[serde(
        default = "defaults::min_body_rate",
        deserialize_with = "bounds::min_body_rate"
    )]
    pub min_body_rate: ByteSize,
    /// How long a request body may take before `min_body_rate` counts.
    #[serde(
        default = "defaults::min_body_rate_grace",
        deserialize_with = "bounds::min_body_rate_grace"
    )]
    pub min_body_rate_grace: HumanDuration,
    /// How long a client may take to send its whole request body.
    #[serde(
        default = "defaults::body_read_timeout",
        deserialize_with = "bounds::body_read_timeout"
    )]
    pub body_read_timeout: HumanDuration,
    /// On shutdown, how long in-flight deliveries may take to finish.
    #[serde(
        default = "defaults::shutdown_grace",
        deserialize_with = "bounds::shutdown_grace"
    )]
    pub shutdown_grace: HumanDuration,
    /// Most dead letters kept; the oldest is evicted past it.
    #[serde(
        default = "defaults::dead_letter_capacity",
        deserialize_with = "bounds::dead_letter_capacity"
    )]
    pub dead_letter_capacity: NonZeroUsize,
    /// Most bytes of dead letters kept (bodies and headers); the oldest are evicted past it.
    #[serde(
        default = "defaults::dead_letter_max_bytes",
        deserialize_with = "bounds::dead_letter_max_bytes"
    )]
    pub dead_letter_max_bytes: ByteSize,
    /// Bearer token required by the admin API (not `/metrics`, `/healthz`, `/readyz`).
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// Says that an `admin_listen` reachable from the network without `admin_token` is meant;
    /// without it such a config is refused.
    #[serde(default)]
    pub admin_public: bool,
    /// Proxies whose `X-Forwarded-For` is believed when checking a route's `allow_ips`.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::allow_list::Cidr>,
    /// The certificate the ingress serves over TLS (HTTPS); plain HTTP when not set.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// The certificate the admin listener serves over TLS; plain HTTP when not set.
    #[serde(default)]
    pub admin_tls: Option<TlsFiles>,
}

/// The largest request body accepted when `max_body_bytes` is not set (and the NATS server, if
/// any, takes messages that large).
pub const DEFAULT_MAX_BODY_BYTES: ByteSize = ByteSize(1024 * 1024);

impl ServerConfig {
    /// The largest request body accepted: `max_body_bytes`, or [`DEFAULT_MAX_BODY_BYTES`].
    pub fn body_limit(&self) -> ByteSize {
        self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES)
    }

    /// The default `max_requests_in_flight_per_client`, when `max_requests_in_flight` is higher.
    pub const DEFAULT_PER_CLIENT: usize = 32;

    /// The `max_requests_in_flight_per_client` in force.
    pub fn per_client_in_flight(&self) -> usize {
        self.max_requests_in_flight_per_client.map_or_else(
            || Self::DEFAULT_PER_CLIENT.min(self.max_requests_in_flight.get()),
            NonZeroUsize::get,
        )
    }

    /// What is allowed but likely a mistake, for `check` and the start to warn about.
    pub fn warnings(&self) -> Vec<String> {
        self.trusted_proxies
            .iter()
            .filter(|net| crate::allow_list::covers_everything(net))
            .map(|net| {
                format!(
                    "server.trusted_proxies: {} covers every address: any client can write its \
                     own X-Forwarded-For and pass an allow_ips list",
                    net.0
                )
            })
            .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            admin_listen: defaults::admin_listen(),
            max_body_bytes: None,
            queue_capacity: defaults::queue_capacity(),
            header_read_timeout: defaults::header_read_timeout(),
            idle_timeout: defaults::idle_timeout(),
            max_connections: None,
            max_requests_in_flight: defaults::max_requests_in_flight(),
            max_requests_in_flight_per_client: None,
            min_body_rate: defaults::min_body_rate(),
            min_body_rate_grace: defaults::min_body_rate_grace(),
            body_read_timeout: defaults::body_read_timeout(),
            shutdown_grace: defaults::shutdown_grace(),
            dead_letter_capacity: defaults::dead_letter_capacity(),
            dead_letter_max_bytes: defaults::dead_letter_max_bytes(),
            admin_token: None,
            admin_public: false,
            trusted_proxies: Vec::new(),
            tls: None,
            admin_tls: None,
        }
    }
}

/// Checks `[server]` values that are each in range but contradict each other or the
/// deployment: `admin_span` locates `admin_listen` in the file.
pub(super) fn check_server(
    server: &ServerConfig,
    admin_span: Option<std::ops::Range<usize>>,
    sink: &mut ErrorSink<'_>,
) {
    let (ingress, admin) = (server.listen, server.admin_listen);
    let same_port = ingress.port() != 0 && ingress.port() == admin.port();
    let overlapping =
        ingress.ip() == admin.ip() || ingress.ip().is_unspecified() || admin.ip().is_unspecified();
    if !admin.ip().is_loopback() && server.admin_token.is_none() && !server.admin_public {
        sink.push(
            admin_span.clone(),
            "server.admin_listen",
            format!(
                "{admin} is reachable from the network and no admin_token is set: anyone could \
                 read dead letters (event bodies) and replay them; set admin_token, or \
                 admin_public = true if an open admin API is meant"
            ),
        );
    }
    if same_port && overlapping {
        sink.push(
            admin_span,
            "server.admin_listen",
            format!("{admin} is also the ingress address (`listen`): the two listeners need different ports"),
        );
    }
}

/// Defaults of the keys not written.
mod defaults {
    use super::*;
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn admin_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9090))
    }
    pub fn queue_capacity() -> NonZeroUsize {
        NonZeroUsize::new(100_000).expect("non-zero")
    }
    pub fn header_read_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn idle_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
    pub fn max_requests_in_flight() -> NonZeroUsize {
        NonZeroUsize::new(128).expect("non-zero")
    }
    pub fn body_read_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn min_body_rate() -> ByteSize {
        ByteSize(1024)
    }
    pub fn min_body_rate_grace() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub fn shutdown_grace() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn dead_letter_capacity() -> NonZeroUsize {
        NonZeroUsize::new(10_000).expect("non-zero")
    }
    pub fn dead_letter_max_bytes() -> ByteSize {
        ByteSize(256 * 1024 * 1024)
    }
}
