//! Each listener's limits, from the `[server]` table and the descriptor limit: the ingress
//! listener gets `max_connections`, `max_requests_in_flight` and
//! `max_requests_in_flight_per_client`; the admin listener its own small cap, so that
//! `/healthz` answers whatever the ingress is going through. Each may accept over TLS; the
//! runtime sets its acceptor.

use std::time::Duration;

use super::descriptors;
use crate::allow_list::Cidr;
use crate::config::ServerConfig;
use crate::metrics::{ListenerMetrics, Metrics};

/// Connections the admin listener keeps open at most (the longest idle makes room).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// One listener's settings.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// How long a client may take from its connect to its first request's head.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Most connections open at once (past it the longest idle is closed, or the new one).
    pub max_connections: usize,
    /// Most requests in flight at once, if capped.
    pub max_requests_in_flight: Option<usize>,
    /// Most requests in flight at once from one client, if capped; also the most HTTP/2
    /// streams one connection may open at once.
    pub max_requests_in_flight_per_client: Option<usize>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// The listener's metrics.
    pub metrics: ListenerMetrics,
    /// Accepts its connections over TLS, if set (the listener's certificate may be swapped
    /// while it runs: see [`crate::tls::ServedCert`]).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// The settings of both listeners.
#[derive(Debug, Clone)]
pub struct Listeners {
    /// The webhook ingress.
    pub ingress: ListenerSettings,
    /// The admin API.
    pub admin: ListenerSettings,
}

impl Listeners {
    /// The listeners' settings for `server`. Raises the process's soft descriptor limit to its
    /// hard limit first, and logs the limit and the `max_connections` it leaves.
    pub fn for_config(server: &ServerConfig, metrics: &Metrics) -> Self {
        let configured = server.max_connections.map(std::num::NonZeroUsize::get);
        let max_connections = match descriptors::raise_limit() {
            Ok(limit) => {
                let (max, clamped) = descriptors::max_connections(configured, limit.limit);
                if clamped {
                    tracing::warn!(
                        configured = configured.unwrap_or(max),
                        max_connections = max,
                        descriptor_limit = limit.limit,
                        "max_connections is more than the descriptor limit allows: lowered"
                    );
                }
                let raised = limit
                    .raised_from
                    .map_or(String::new(), |from| format!(" (raised from {from})"));
                tracing::info!(
                    descriptor_limit = limit.limit,
                    max_connections = max,
                    "descriptor limit {}{raised}; max_connections {max}",
                    limit.limit
                );
                max
            }
            Err(error) => {
                let max = configured.unwrap_or(descriptors::DEFAULT_MAX_CONNECTIONS);
                tracing::warn!(%error, max_connections = max, "descriptor limit unknown");
                max
            }
        };
        let header_read_timeout = crate::clock::cap(server.header_read_timeout.0);
        let idle_timeout = crate::clock::cap(server.idle_timeout.0);
        Self {
            ingress: ListenerSettings {
                header_read_timeout,
                idle_timeout,
                max_connections,
                max_requests_in_flight: Some(server.max_requests_in_flight.get()),
                max_requests_in_flight_per_client: Some(server.per_client_in_flight()),
                trusted_proxies: server.trusted_proxies.clone(),
                metrics: metrics.listener("ingress"),
                tls: None,
            },
            admin: ListenerSettings {
                header_read_timeout,
                idle_timeout,
                max_connections: ADMIN_MAX_CONNECTIONS,
                max_requests_in_flight: None,
                max_requests_in_flight_per_client: None,
                trusted_proxies: Vec::new(),
                metrics: metrics.listener("admin"),
                tls: None,
            },
        }
    }
}
