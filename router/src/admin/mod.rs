//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/destinations` (each destination's
//! circuit, held events, attempts in flight, last error and success), `/routes`, `/stats`, the
//! dead-letter API, the event record (`/events`) and the console (`/console`).
//!
//! When `admin_token` is set, `/destinations`, `/routes`, `/stats`, `/events` and the
//! dead-letter API need `Authorization: Bearer <token>`;
//! `/metrics`, `/healthz` and `/readyz` stay open for scrapers and probes, and `/console` (a
//! page holding no data, whose calls send the token). `/healthz` and
//! `/readyz` answer 503 when a supervised task keeps failing (see [`crate::supervise`]).
//! `POST /reload` reloads the config file ([`crate::reload`]) and needs the token too.
//!
//! Each API beyond the probes has its own file: `dead_letters.rs`, `events.rs`, `routes.rs`,
//! `stats.rs`, and the console's `console.rs`.

mod console;
mod dead_letters;
mod events;
pub mod routes;
mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::delivery::dead_letter::DeadLetterStore;
use crate::delivery::destinations::DestinationBoard;
use crate::inspect::Inspector;
use crate::metrics::Metrics;
use crate::queue::DispatchQueue;
use crate::reload::Reloader;
use crate::reply::{self, ResponseBody};
use crate::supervise::Supervisor;
use routes::RouteTable;

/// Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The admin API's state.
#[derive(Debug)]
pub struct Admin {
    metrics: Metrics,
    dead_letters: Arc<DeadLetterStore>,
    destinations: Arc<DestinationBoard>,
    queue: Arc<dyn DispatchQueue>,
    token: Option<Secret>,
    ready: AtomicBool,
    supervisor: Supervisor,
    routes: RwLock<Arc<RouteTable>>,
    reloader: OnceLock<Arc<Reloader>>,
    /// The event record (`/events`), and where a replayed dead letter is marked pending.
    inspect: Inspector,
    /// When the router started (for `/stats`).
    started: SystemTime,
}

impl Admin {
    /// The admin API over the router's metrics, dead letters, destinations and queue, reporting the health
    /// of the tasks `supervisor` runs.
    pub fn new(
        metrics: Metrics,
        dead_letters: Arc<DeadLetterStore>,
        destinations: Arc<DestinationBoard>,
        queue: Arc<dyn DispatchQueue>,
        token: Option<Secret>,
        supervisor: Supervisor,
    ) -> Self {
        Self {
            metrics,
            dead_letters,
            destinations,
            queue,
            token,
            ready: AtomicBool::new(true),
            supervisor,
            inspect: Inspector::default(),
            reloader: OnceLock::new(),
            routes: RwLock::default(),
            started: SystemTime::now(),
        }
    }

    /// Sets the routes `/routes` shows (at start, and when the config changes).
    pub fn set_routes(&self, table: RouteTable) {
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
    }

    /// The routes `/routes` shows.
    fn routes(&self) -> Arc<RouteTable> {
        Arc::clone(
            &self
                .routes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Serves `POST /reload` with `reloader` (set once, when the router starts).
    pub fn set_reloader(&self, reloader: Arc<Reloader>) {
        let _ = self.reloader.set(reloader);
    }

    /// The admin API serving the event record `inspect` keeps, if it is on.
    pub fn with_inspector(self, inspect: Inspector) -> Self {
        Self { inspect, ..self }
    }

    /// A 503 naming the tasks that keep failing, if any do.
    fn unhealthy(&self) -> Option<Response<ResponseBody>> {
        let failing = self.supervisor.failing();
        (!failing.is_empty()).then(|| {
            reply::with_type(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                Bytes::from(format!(
                    "unhealthy: task {} keeps failing\n",
                    failing.join(", ")
                )),
            )
        })
    }

    /// Marks the router as not ready (it is shutting down): `/readyz` answers 503.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Handles one admin request.
    pub async fn handle<B>(&self, request: &Request<B>) -> Response<ResponseBody> {
        let path = request.uri().path();
        let method = request.method();
        match (method, path) {
            (&Method::GET, "/metrics") => {
                self.supervisor.report_threads();
                reply::with_type(
                    StatusCode::OK,
                    PROMETHEUS_CONTENT_TYPE,
                    Bytes::from(self.metrics.render()),
                )
            }
            (&Method::GET, "/healthz") => self
                .unhealthy()
                .unwrap_or_else(|| reply::text(StatusCode::OK, "ok\n")),
            (&Method::GET, "/readyz") => {
                if let Some(unhealthy) = self.unhealthy() {
                    unhealthy
                } else if let Some(why) = self.queue.unavailable() {
                    reply::with_type(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain; charset=utf-8",
                        format!("{why}\n").into(),
                    )
                } else if self.ready.load(Ordering::Acquire) {
                    reply::text(StatusCode::OK, "ready\n")
                } else {
                    reply::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                }
            }
            (_, "/destinations") => {
                if !self.authorized(request) {
                    return reply::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                }
                if method != Method::GET {
                    return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
                }
                reply::json(StatusCode::OK, &self.destinations.summary())
            }
            (_, "/stats") => {
                if !self.authorized(request) {
                    return reply::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                }
                if method != Method::GET {
                    return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
                }
                reply::json(StatusCode::OK, &self.stats())
            }
            _ if console::owns(path) => console::handle(method, path),
            _ if path == "/routes" || path.starts_with("/routes/") => {
                if !self.authorized(request) {
                    return reply::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                }
                self.route_api(method, path)
            }
            _ if path == "/events" || path.starts_with("/events/") => {
                if !self.authorized(request) {
                    return reply::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                }
                events::handle(
                    self.inspect.store().as_deref(),
                    method,
                    path,
                    request.uri().query(),
                )
            }
            _ if path == "/dead-letters" || path.starts_with("/dead-letters/") => {
                if !self.authorized(request) {
                    return reply::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                }
                self.dead_letter_api(method, path, request.uri().query())
                    .await
            }
            (_, "/reload") => {
                if !self.authorized(request) {
                    return reply::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                }
                if method != Method::POST {
                    return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
                }
                self.reload().await
            }
            _ => reply::error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Reloads the config: 200 with the hash and the routes changed, or 400 with every error.
    async fn reload(&self) -> Response<ResponseBody> {
        let Some(reloader) = self.reloader.get() else {
            return reply::error(StatusCode::NOT_FOUND, "this router cannot reload");
        };
        match reloader.reload().await {
            Ok(reloaded) => reply::json(
                StatusCode::OK,
                &serde_json::json!({
                    "hash": reloaded.hash,
                    "routes_added": reloaded.routes.added,
                    "routes_removed": reloaded.routes.removed,
                    "routes_changed": reloaded.routes.changed,
                    "destinations_changed": reloaded.destinations,
                    "modules_compiled": reloaded.modules_compiled,
                }),
            ),
            Err(refused) => {
                let errors: Vec<String> = refused.0.0.iter().map(ToString::to_string).collect();
                reply::json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({
                        "error": "config refused; the old config keeps serving",
                        "errors": errors,
                    }),
                )
            }
        }
    }

    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        token_matches(given, token.expose())
    }
}

/// The value of the label `key` in a series' `labels` (`""` if it has none).
fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// Whether `given` is `token`, in time that depends on neither: both are hashed and the digests
/// compared in constant time, so the token can be guessed neither byte by byte nor by its
/// length (comparing the raw bytes ends at once when the lengths differ).
fn token_matches(given: &str, token: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let token = Sha256::digest(token.as_bytes());
    bool::from(given.as_slice().ct_eq(token.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn only_the_token_itself_matches_whatever_the_length() {
        let token = "s3cret-admin-token";
        assert!(token_matches(token, token));
        for wrong in [
            "s3cret-admin-tokeN",  // same length, last byte differs
            "t3cret-admin-token",  // same length, first byte differs
            "s3cret-admin-toke",   // a prefix
            "s3cret-admin-token ", // one byte longer
            "s3cret-admin-token-and-much-more",
            "",
        ] {
            assert!(!token_matches(wrong, token), "{wrong:?}");
        }
    }
}
