//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/destinations` (each destination's
//! circuit, held events, attempts in flight, last error and success), the dead-letter API and
//! the event record (`/events`, in `admin/events.rs`).
//!
//! When `admin_token` is set, `/destinations`, `/events` and the dead-letter API need
//! `Authorization: Bearer <token>`;
//! `/metrics`, `/healthz` and `/readyz` stay open for scrapers and probes. `/healthz` and
//! `/readyz` answer 503 when a supervised task keeps failing (see [`crate::supervise`]).

mod events;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::delivery::dead_letter::DeadLetterStore;
use crate::delivery::destinations::DestinationBoard;
use crate::inspect::EventStore;
use crate::metrics::Metrics;
use crate::queue::DispatchQueue;
use crate::reply::{self, ResponseBody};
use crate::supervise::Supervisor;

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
    events: Option<Arc<EventStore>>,
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
            events: None,
        }
    }

    /// The admin API serving `events`, the event record, if it is on.
    pub fn with_events(self, events: Option<Arc<EventStore>>) -> Self {
        Self { events, ..self }
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
            _ if path == "/events" || path.starts_with("/events/") => {
                if !self.authorized(request) {
                    return reply::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                }
                events::handle(self.events.as_deref(), method, path, request.uri().query())
            }
            _ if path == "/dead-letters" || path.starts_with("/dead-letters/") => {
                if !self.authorized(request) {
                    return reply::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
                }
                self.dead_letter_api(method, path).await
            }
            _ => reply::error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    async fn dead_letter_api(&self, method: &Method, path: &str) -> Response<ResponseBody> {
        if path == "/dead-letters" {
            if method != Method::GET {
                return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            }
            let letters = self.dead_letters.list();
            let summaries: Vec<_> = letters.iter().map(|l| l.summary()).collect();
            return reply::json(StatusCode::OK, &summaries);
        }
        let Some(id) = path
            .strip_prefix("/dead-letters/")
            .and_then(|rest| rest.strip_suffix("/replay"))
        else {
            return reply::error(StatusCode::NOT_FOUND, "not found");
        };
        if method != Method::POST {
            return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        }
        self.replay(id).await
    }

    /// Puts a dead letter back on the queue, for its one destination, with fresh attempts.
    async fn replay(&self, id: &str) -> Response<ResponseBody> {
        let Some(taken) = self.dead_letters.take(id) else {
            return reply::error(StatusCode::NOT_FOUND, "no dead letter with this id");
        };
        let Some(destination) = taken.letter.destination else {
            let message = format!(
                "destination {:?} is no longer in the config",
                taken.letter.destination_name
            );
            self.dead_letters.restore(taken);
            return reply::error(StatusCode::CONFLICT, &message);
        };
        let event_id = taken.letter.event.id.clone();
        match self
            .queue
            .enqueue(taken.letter.event.clone(), vec![destination])
            .await
        {
            Ok(()) => {
                tracing::info!(dead_letter = %id, event_id = %event_id, destination = %taken.letter.destination_name, "replaying dead letter");
                self.dead_letters.replayed(&taken);
                reply::json(StatusCode::ACCEPTED, &serde_json::json!({ "id": event_id }))
            }
            Err(error) => {
                self.dead_letters.restore(taken);
                let answer = reply::error(StatusCode::SERVICE_UNAVAILABLE, &error.answer());
                reply::retry_after(answer, 1)
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
        // Constant-time, so the token cannot be guessed byte by byte from response times.
        bool::from(given.as_bytes().ct_eq(token.expose().as_bytes()))
    }
}
