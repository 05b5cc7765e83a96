//! Ingress: where a webhook enters. Matches the route, reads the body within limits, runs the
//! route's plugin chain and queues the event, answering `202 {"id": ...}` or a short JSON error.
//! Once verified (on a route without `verify`, at the same point), the request loses its
//! credential headers (`verify::CREDENTIAL_HEADERS`, less the route's `keep_headers`): the event
//! neither stores them nor shows them to plugins.
//!
//! Everything the head alone decides comes before the body is read: the route, the method, the
//! allow-list, the signature header's presence and form and its signed timestamp
//! ([`Verifier::precheck`]). A request that fails them is answered at once, and holds no place
//! while a body trickles in.
//!
//! | answer | when |
//! |---|---|
//! | 200 | the route's `verify` answers challenges and this verified request is the sender's endpoint handshake: the body is the answer, nothing is queued |
//! | 202 | queued, or dropped by a plugin (the body carries the event id); a duplicate delivery gets the original event's id and is not queued again |
//! | 401 | the route verifies its sender and the signature is missing, malformed, wrong or stale (all but wrong are told from the head, before the body is read) |
//! | 403 | the client's address is not in the route's `allow_ips`, or is unknown (an unreadable `X-Forwarded-For` from a trusted proxy) |
//! | 404 | no route has this path |
//! | 405 | the route exists but the method is not POST (`Allow: POST`) |
//! | 408 | the body did not arrive within `body_read_timeout`, or arrived slower than `min_body_rate` after `min_body_rate_grace` |
//! | 413 | the body is larger than `max_body_bytes` (checked while streaming) |
//! | 429 | over the route's `rate_limit` (`Retry-After`): before the body is read on a route without `verify`; on one with, after verification, and before the body for a client that has spent its `unverified` allowance on failed requests |
//! | 503 | the router holds `queue_capacity` events, or is shutting down (`Retry-After`); the
//! listener answers 503 itself past `max_requests_in_flight` or `max_requests_in_flight_per_client` (`server::in_flight`) |
//! | 4xx/5xx | a plugin rejected the event with this status; 500 if a plugin failed and the
//! route's `on_plugin_error` is `reject` |
//!
//! Refusals (403, 429, 401, and the 503s of a full queue, destination or store) are logged
//! through [`refusal_log`]: the first per route and reason in full, the rest summarised.
//!
//! The routes are a [`RouteTable`] that a config reload swaps whole; each request loads the
//! table once, so it finishes on the config it started with.

pub mod body;
pub mod refusal_log;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use tracing::Instrument;
use tracing::field::Empty;

use crate::allow_list::{Cidr, ClientAddr, Peer, client_ip, contains};
use crate::config::{Config, RouteConfig};
use crate::dedup::{Claim, DedupStore, SharedClaim};
use crate::event::{Event, NewId};
use crate::ingress::body::{BodyError, Pace, read_body};
use crate::ingress::refusal_log::{Reason, RefusalLog};
use crate::inspect::{Decision, Inspector, Name};
use crate::journal::{Journal, Recovered};
use crate::metrics::{Metrics, RouteMetrics};
use crate::plugin::{ChainOutcome, PluginChain};
use crate::queue::{DestinationId, DispatchQueue, EnqueueError};
use crate::rate_limit::{RouteRateLimit, retry_after_seconds};
use crate::reply::{self, ResponseBody};
use crate::telemetry;
use crate::verify::{CREDENTIAL_HEADERS, Verifier, VerifyError};
use metrics::Counter;

/// Route label used for requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Statuses a matched route answers with, registered up front so they show as 0.
const ROUTE_STATUSES: &[u16] = &[202, 400, 401, 403, 405, 408, 413, 429, 503];
/// The pseudo-header that tells plugins which preset verified the event. The router removes any
/// the sender sent, so its presence can be trusted.
pub const VERIFIED_HEADER: &str = "x-webhook-verified";
/// `Retry-After` (seconds) sent with 503 when the queue is full.
const QUEUE_FULL_RETRY_AFTER: u32 = 1;
/// `Retry-After` (seconds) sent with 503 while shutting down.
const SHUTDOWN_RETRY_AFTER: u32 = 5;

/// A route as the ingress sees it.
#[derive(Debug)]
struct IngressRoute {
    id: String,
    /// The refusal log of the route's table, and the route's row in it.
    refusals: Arc<RefusalLog>,
    index: usize,
    destinations: Vec<DestinationId>,
    /// Every destination's name by id, as the event record keeps it (shared by the table).
    destination_names: Arc<[Option<Name>]>,
    chain: Option<Arc<PluginChain>>,
    verifier: Option<Verifier>,
    verification_failures: [Counter; 4],
    /// The dedup window, with the config it was made for (kept by a reload that leaves it).
    dedup: Option<(crate::config::DedupConfig, Arc<DedupStore>)>,
    duplicates: Counter,
    /// The limiter, with the config it was made for (kept by a reload that leaves it).
    rate_limit: Option<(crate::rate_limit::RateLimitConfig, Arc<RouteRateLimit>)>,
    allow_ips: Option<Vec<Cidr>>,
    /// Credential headers removed once the request is verified (not stored nor forwarded).
    removed_headers: Vec<HeaderName>,
    /// Where the order key is read from, on an ordered route (`order_by`, `order_by_header`).
    order_by: Option<crate::dedup::DedupKey>,
    metrics: RouteMetrics,
}

/// The routes of one config, by path, and their refusal log: what a reload swaps whole.
#[derive(Debug)]
pub struct RouteTable {
    routes: HashMap<String, IngressRoute>,
    refusals: Arc<RefusalLog>,
    /// The ids of the routes whose dedup window is new: not kept from the table replaced.
    fresh_dedup: Vec<String>,
}

/// What building a route table needs besides the config: the same for every table.
#[derive(Debug)]
struct TableParts {
    journal: Option<Journal>,
    metrics: Metrics,
}

impl IngressRoute {
    /// The route `route` (row `index` of `refusals`), keeping the dedup window and limiter of
    /// `previous` (the route of the same id in the table it replaces) where their config is
    /// unchanged.
    fn new(
        route: &RouteConfig,
        index: usize,
        refusals: &Arc<RefusalLog>,
        chain: Option<PluginChain>,
        (parts, destination_ids, destination_names): DestinationTable<'_>,
        previous: Option<&IngressRoute>,
    ) -> Self {
        let metrics = &parts.metrics;
        let dedup = route.dedup.as_ref().map(|dedup| {
            let kept = previous
                .and_then(|p| p.dedup.as_ref())
                .filter(|(config, _)| config == dedup);
            let store = kept.map_or_else(
                || {
                    Arc::new(
                        DedupStore::new(dedup.key.clone(), dedup.window, dedup.capacity)
                            .journaled(parts.journal.clone(), &route.id),
                    )
                },
                |(_, store)| Arc::clone(store),
            );
            (dedup.clone(), store)
        });
        let rate_limit = route.rate_limit.map(|limit| {
            let kept = previous
                .filter(|p| p.verifier.is_some() == route.verify.is_some())
                .and_then(|p| p.rate_limit.as_ref())
                .filter(|(config, _)| *config == limit);
            let limiter = kept.map_or_else(
                || Arc::new(RouteRateLimit::new(limit, route.verify.is_some())),
                |(_, limiter)| Arc::clone(limiter),
            );
            (limit, limiter)
        });
        IngressRoute {
            id: route.id.clone(),
            refusals: Arc::clone(refusals),
            index,
            destinations: route
                .destinations
                .iter()
                .filter_map(|name| destination_ids.get(name).copied())
                .collect(),
            destination_names: Arc::clone(destination_names),
            chain: chain.map(Arc::new),
            verifier: route.verify.clone(),
            verification_failures: metrics.verification_failures(&route.id),
            dedup,
            duplicates: metrics.duplicates(&route.id),
            rate_limit,
            allow_ips: route.allow_ips.clone(),
            removed_headers: CREDENTIAL_HEADERS
                .iter()
                .filter(|name| !route.keep_headers.iter().any(|kept| kept == *name))
                .map(|name| HeaderName::from_static(name))
                .collect(),
            order_by: route.order.as_ref().map(|order| order.key.clone()),
            metrics: metrics.route(&route.id, ROUTE_STATUSES),
        }
    }

    fn rate_limit(&self) -> Option<&RouteRateLimit> {
        self.rate_limit.as_ref().map(|(_, limiter)| &**limiter)
    }

    fn dedup(&self) -> Option<&DedupStore> {
        self.dedup.as_ref().map(|(_, store)| &**store)
    }

    /// The names of the destinations `ids`, as the event record keeps them.
    fn names<'a>(&'a self, ids: &'a [DestinationId]) -> impl Iterator<Item = Name> + 'a {
        ids.iter()
            .filter_map(|&id| self.destination_names.get(id).copied().flatten())
    }
}

/// What a route is built with besides its config: the parts every table shares, the
/// destinations' ids by name, and their names by id.
type DestinationTable<'a> = (
    &'a TableParts,
    &'a HashMap<String, DestinationId>,
    &'a Arc<[Option<Name>]>,
);

/// The names of the destinations in `ids`, by id, as the event record keeps them.
fn names_by_id(ids: &HashMap<String, DestinationId>) -> Arc<[Option<Name>]> {
    let mut names = vec![None; ids.values().max().map_or(0, |last| last + 1)];
    for (name, &id) in ids {
        names[id] = Some(Name::intern(name));
    }
    names.into()
}

impl RouteTable {
    /// The routes of `config` with the plugin chains in `chains` (by route id) and its
    /// destinations' ids, keeping what `previous` holds for routes whose settings are unchanged.
    fn new(
        config: &Config,
        mut chains: HashMap<String, PluginChain>,
        parts: (&TableParts, &HashMap<String, DestinationId>),
        previous: Option<&RouteTable>,
    ) -> Self {
        let refusals = Arc::new(RefusalLog::new(
            config.routes.iter().map(|route| route.id.clone()).collect(),
        ));
        let previous_route =
            |id: &str| previous.and_then(|table| table.routes.values().find(|r| r.id == id));
        let kept_dedup = |route: &RouteConfig, id: &str| {
            previous_route(id)
                .and_then(|previous| previous.dedup.as_ref())
                .is_some_and(|(config, _)| Some(config) == route.dedup.as_ref())
        };
        let destination_names = names_by_id(parts.1);
        let fresh_dedup = config
            .routes
            .iter()
            .filter(|route| route.dedup.is_some() && !kept_dedup(route, &route.id))
            .map(|route| route.id.clone())
            .collect();
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(index, route)| {
                let ingress_route = IngressRoute::new(
                    route,
                    index,
                    &refusals,
                    chains.remove(&route.id),
                    (parts.0, parts.1, &destination_names),
                    previous_route(&route.id),
                );
                (route.path.clone(), ingress_route)
            })
            .collect();
        Self {
            routes,
            refusals,
            fresh_dedup,
        }
    }

    /// The ids of the routes whose dedup window is new (not kept from the table replaced).
    pub fn fresh_dedup(&self) -> &[String] {
        &self.fresh_dedup
    }
}

/// The webhook ingress: the route table serving, and the queue its routes feed.
#[derive(Debug)]
pub struct Ingress {
    table: ArcSwap<RouteTable>,
    parts: TableParts,
    unmatched: RouteMetrics,
    queue: Arc<dyn DispatchQueue>,
    metrics: Metrics,
    max_body_bytes: usize,
    pace: Pace,
    slow_bodies: Counter,
    trusted_proxies: Vec<Cidr>,
    inspect: Inspector,
}

impl Ingress {
    /// Builds the ingress for `config`; `destination_ids` maps destination names to ids and
    /// `chains` holds the loaded plugin chain of each route that has one.
    pub fn new(
        config: &Config,
        destination_ids: &HashMap<String, DestinationId>,
        chains: HashMap<String, PluginChain>,
        queue: Arc<dyn DispatchQueue>,
        journal: Option<&Journal>,
        metrics: &Metrics,
    ) -> Self {
        let parts = TableParts {
            journal: journal.cloned(),
            metrics: metrics.clone(),
        };
        let table = RouteTable::new(config, chains, (&parts, destination_ids), None);
        Self {
            table: ArcSwap::from_pointee(table),
            parts,
            unmatched: metrics.route(UNMATCHED_ROUTE, &[404]),
            queue,
            metrics: metrics.clone(),
            max_body_bytes: usize::try_from(config.server.body_limit().0).unwrap_or(usize::MAX),
            pace: Pace {
                timeout: config.server.body_read_timeout.0,
                min_rate: config.server.min_body_rate.0,
                grace: config.server.min_body_rate_grace.0,
            },
            slow_bodies: metrics.slow_bodies("ingress"),
            trusted_proxies: config.server.trusted_proxies.clone(),
            inspect: Inspector::default(),
        }
    }

    /// The routes of `config` (a reload), with the plugin chains in `chains` (by route id)
    /// and its destinations' ids in `destination_ids`, for [`Ingress::switch`]: dedup windows
    /// and rate limiters of routes whose settings are unchanged are kept from the table
    /// serving.
    pub fn prepare(
        &self,
        config: &Config,
        chains: HashMap<String, PluginChain>,
        destination_ids: &HashMap<String, DestinationId>,
    ) -> RouteTable {
        RouteTable::new(
            config,
            chains,
            (&self.parts, destination_ids),
            Some(&self.table.load()),
        )
    }

    /// Switches to `table`; requests already inside go on with the table they started with.
    /// Returns the table replaced.
    pub fn switch(&self, table: RouteTable) -> Arc<RouteTable> {
        let previous = self.table.swap(Arc::new(table));
        // What the old table's log holds; refusals of requests still on it are not summarised.
        previous.refusals.summarise();
        previous
    }

    /// Summarises the serving table's refusals every [`refusal_log::SUMMARY_INTERVAL`], for
    /// ever (the router's `refusal_log` task).
    pub async fn summarise_refusals(&self) {
        let mut ticks = tokio::time::interval(refusal_log::SUMMARY_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: nothing to summarise yet.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.refusal_log().summarise();
        }
    }

    /// The ingress recording each event it receives in `inspect`.
    pub fn with_inspector(self, inspect: Inspector) -> Self {
        Self { inspect, ..self }
    }

    /// Reads the delivery ids the journal remembers back into their routes' dedup windows (at
    /// start). Returns how many were restored.
    pub fn restore_dedup(&self, recovered: &mut Recovered) -> usize {
        let table = self.table.load();
        crate::dedup::restore_dedup(recovered, |route| {
            table
                .routes
                .values()
                .find(|r| r.id == route)
                .and_then(IngressRoute::dedup)
        })
    }

    /// The log of the requests the serving route table refuses; its summaries are written by
    /// [`RefusalLog::summarise`].
    pub fn refusal_log(&self) -> Arc<RefusalLog> {
        Arc::clone(&self.table.load().refusals)
    }

    /// Each route's dedup window, with the route's id.
    pub fn dedup_stores(&self) -> Vec<(String, Arc<DedupStore>)> {
        self.table
            .load()
            .routes
            .values()
            .filter_map(|route| Some((route.id.clone(), Arc::clone(&route.dedup.as_ref()?.1))))
            .collect()
    }

    /// Handles one webhook request that arrived from `peer`.
    pub async fn handle<B>(&self, request: Request<B>, peer: Peer) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let table = self.table.load_full();
        let Some(route) = table.routes.get(request.uri().path()) else {
            self.unmatched.count_request(404);
            return reply::error(StatusCode::NOT_FOUND, "no route for this path");
        };
        // The event's root span; its `event_id` is recorded once the event has one.
        let span = telemetry::span(|| {
            tracing::info_span!("ingress", route = %route.id, event_id = Empty,
                http.response.status_code = Empty, trace_id = Empty)
        });
        telemetry::continue_sender_trace(&span, request.headers());
        let response = self
            .accept(route, request, peer)
            .instrument(span.clone())
            .await;
        span.record("http.response.status_code", response.status().as_u16());
        route.metrics.count_request(response.status().as_u16());
        response
    }

    async fn accept<B>(
        &self,
        route: &IngressRoute,
        request: Request<B>,
        peer: Peer,
    ) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.method() != Method::POST {
            let mut response = reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use POST",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        // Found once, by the listener's per-client cap, when it has one.
        let client = match peer.client {
            Some(ClientAddr(found)) => found,
            None => client_ip(peer.addr.ip(), request.headers(), &self.trusted_proxies),
        };
        if let Some(allowed) = &route.allow_ips
            && !client.is_some_and(|ip| contains(allowed, ip))
        {
            let shown = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            route.refusals.refused(
                route.index,
                Reason::AddressNotAllowed,
                &format_args!("client address {shown} not allowed"),
            );
            return reply::error(StatusCode::FORBIDDEN, "client address not allowed");
        }
        // Rate limits key an unknown client (an unreadable `X-Forwarded-For`) by the proxy that
        // sent it.
        let client = client.unwrap_or_else(|| peer.addr.ip());
        // A request refused before verification is unverified traffic: on a route with
        // `verify` it counts against its client's `unverified` allowance.
        let charge_unverified = || {
            if let Some(limit) = route.rate_limit() {
                limit.charge_unverified(client)
            } else {
                Ok(())
            }
        };
        if let Some(Err(error)) = route
            .verifier
            .as_ref()
            .map(|verifier| verifier.precheck(request.headers(), SystemTime::now()))
        {
            return self.unverified(route, &error, charge_unverified());
        }
        if let Some(Err(wait)) = route.rate_limit().map(|limit| limit.admit(client)) {
            let cause = if route.verifier.is_some() {
                "this client's unverified allowance is spent (rate_limit.unverified)"
            } else {
                "over the route's rate_limit"
            };
            route
                .refusals
                .refused(route.index, Reason::RateLimited, &cause);
            return too_many_requests(wait);
        }
        let declared = declared_length(request.headers()).unwrap_or(0);
        if declared > self.max_body_bytes as u64 {
            let _ = charge_unverified();
            return self.too_large();
        }
        let (mut parts, body) = request.into_parts();
        // The body, then every header value kept, go in one buffer of exactly their size
        // (`detach`).
        let values_len = header_values_len(&parts.headers)
            - removed_values_len(&parts.headers, &route.removed_headers);
        // A declared length proves nothing until the bytes arrive: `read_body` allocates a
        // first chunk and grows the buffer as they stream in (see `body::FIRST_CHUNK`).
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        let read = read_body(body, self.max_body_bytes, self.pace, declared, values_len).await;
        if read.is_err() {
            let _ = charge_unverified();
        }
        let body = match read {
            Ok(body) => body,
            Err(BodyError::TooLarge { .. }) => return self.too_large(),
            Err(BodyError::Timeout(_)) => {
                return reply::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                );
            }
            Err(BodyError::TooSlow { min_rate }) => {
                self.slow_bodies.increment(1);
                tracing::info!(route = %route.id, min_rate, "request body too slow: cut off");
                return reply::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body arrived too slowly",
                );
            }
            Err(BodyError::Read(error)) => {
                tracing::debug!(route = %route.id, %error, "could not read request body");
                return reply::error(StatusCode::BAD_REQUEST, "could not read request body");
            }
        };
        let verified = match &route.verifier {
            None => None,
            Some(verifier) => match verify(verifier, &parts.headers, &body) {
                Ok(()) => {
                    if let Some(Err(wait)) = route.rate_limit().map(RouteRateLimit::check) {
                        route.refusals.refused(
                            route.index,
                            Reason::RateLimited,
                            &"over the route's rate_limit (verified requests)",
                        );
                        return too_many_requests(wait);
                    }
                    if let Some(answer) = verifier.challenge(&parts.headers, &body) {
                        tracing::info!(route = %route.id, preset = verifier.preset(), "answered the sender's endpoint handshake");
                        return reply::json(StatusCode::OK, &answer);
                    }
                    Some(verifier.preset())
                }
                Err(error) => return self.unverified(route, &error, charge_unverified()),
            },
        };
        self.metrics.record_body_bytes(body.len());
        // Read from the request as received, before plugins: the events they make carry it.
        let order_key = route
            .order_by
            .as_ref()
            .and_then(|key| key.read(&parts.headers, &body));
        for name in &route.removed_headers {
            parts.headers.remove(name);
        }
        let (mut headers, body) = detach(&parts.headers, body, values_len);
        headers.remove(VERIFIED_HEADER);
        if let Some(preset) = verified {
            headers.insert(VERIFIED_HEADER, HeaderValue::from_static(preset));
        }
        let new_id = NewId::generate();
        let id = new_id.as_str();
        if telemetry::enabled() {
            tracing::Span::current().record("event_id", id);
        }
        let dedup_key = route
            .dedup()
            .and_then(|store| Some((store, store.key().read(&parts.headers, &body)?)));
        let claim = match &dedup_key {
            None => None,
            Some((store, key)) => match store.claim(key, id, Instant::now()) {
                Claim::New(guard) => match guard.claim_shared().await {
                    Ok(guard) => Some(guard),
                    Err(SharedClaim::Duplicate(original)) => {
                        route.duplicates.increment(1);
                        tracing::info!(event_id = %original, route = %route.id, "duplicate delivery (seen by another router): answered with the original id");
                        return accepted(&original);
                    }
                    Err(SharedClaim::Unavailable(error)) => {
                        route.refusals.refused(
                            route.index,
                            Reason::DedupUnavailable,
                            &format_args!("the shared dedup window cannot be reached: {error}"),
                        );
                        return reply::retry_after(
                            reply::error(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "the dedup window cannot be checked, retry later",
                            ),
                            QUEUE_FULL_RETRY_AFTER,
                        );
                    }
                    Err(SharedClaim::InProgress | SharedClaim::New) => {
                        return reply::retry_after(
                            reply::error(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "a delivery with this id is being accepted, retry later",
                            ),
                            QUEUE_FULL_RETRY_AFTER,
                        );
                    }
                },
                Claim::Duplicate(original) => {
                    route.duplicates.increment(1);
                    tracing::info!(event_id = %original, route = %route.id, "duplicate delivery: answered with the original id");
                    return accepted(&original);
                }
                Claim::InProgress => {
                    return reply::retry_after(
                        reply::error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "a delivery with this id is being accepted, retry later",
                        ),
                        QUEUE_FULL_RETRY_AFTER,
                    );
                }
            },
        };
        let event = Event {
            id: id.to_owned(),
            route: route.id.clone(),
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers,
            body,
            received_at: SystemTime::now(),
            plugin_headers: None,
            order_key,
            trace: telemetry::current_event_trace(),
        };
        self.inspect.received(
            &event,
            dedup_key.as_ref().map(|(_, key)| key.as_str()),
            route
                .chain
                .is_none()
                .then(|| route.names(&route.destinations)),
        );
        // If this request ends any other way than 202 (an error answer, a dropped connection),
        // the claim is released when dropped: the sender's retry must not look like a duplicate.
        let response = self.admit(route, event, id).await;
        if let Some(claim) = claim
            && response.status() == StatusCode::ACCEPTED
        {
            claim.commit();
        }
        response
    }

    /// Runs the route's plugins on `event` (whose id is `id`) and queues what they leave,
    /// answering the sender.
    async fn admit(&self, route: &IngressRoute, event: Event, id: &str) -> Response<ResponseBody> {
        let bytes = event.body.len();
        let mut verdicts = Vec::new();
        // Where the plugins queued the event, for its record (a route without plugins had its
        // destinations recorded at receipt).
        let mut queued_to = crate::inspect::record::Inline::<Name>::new();
        let enqueue = || telemetry::span(|| tracing::info_span!("enqueue"));
        let queued = match &route.chain {
            None => {
                self.queue
                    .enqueue(event, route.destinations.clone())
                    .instrument(enqueue())
                    .await
            }
            // Boxed: a plugin call's state (wasmtime's among it) is kilobytes, which would
            // otherwise make every request's future that large, on routes without plugins too.
            Some(chain) => {
                let outcome = Box::pin(chain.run(event, &route.destinations, &mut verdicts)).await;
                if let ChainOutcome::Deliver(events) = &outcome
                    && self.inspect.is_on()
                {
                    queued_to.extend(events.iter().flat_map(|(_, ids)| route.names(ids)));
                }
                match outcome {
                    ChainOutcome::Deliver(mut events) if events.len() == 1 => {
                        let (event, destinations) = events.remove(0);
                        self.queue
                            .enqueue(event, destinations)
                            .instrument(enqueue())
                            .await
                    }
                    ChainOutcome::Deliver(events) => {
                        self.queue.enqueue_all(events).instrument(enqueue()).await
                    }
                    ChainOutcome::Drop { reason } => {
                        self.inspect
                            .decided(id, verdicts, Decision::Dropped(reason), []);
                        return accepted(id);
                    }
                    ChainOutcome::Reject { status, message } => {
                        self.inspect
                            .decided(id, verdicts, Decision::Rejected(status), []);
                        let status = StatusCode::from_u16(status)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        let response = reply::error(status, &message);
                        return match status {
                            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                                reply::retry_after(response, QUEUE_FULL_RETRY_AFTER)
                            }
                            _ => response,
                        };
                    }
                }
            }
        };
        // Without plugins the record says "queued" from the start: only a refusal changes it.
        match (&queued, &route.chain) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => self
                .inspect
                .decided(id, verdicts, Decision::Queued, queued_to),
            (Err(_), _) => self.inspect.decided(id, verdicts, Decision::Refused, []),
        }
        match queued {
            Ok(()) => {
                // Per event, so at debug: the metrics count accepted events, and the event
                // record (`[inspect]`) keeps each one's outcome.
                tracing::debug!(event_id = %id, route = %route.id, bytes, "accepted");
                accepted(id)
            }
            Err(error) => {
                if let Some(reason) = Reason::of(&error) {
                    route.refusals.refused(route.index, reason, &error);
                }
                let retry_after = match &error {
                    EnqueueError::Closed => SHUTDOWN_RETRY_AFTER,
                    _ => QUEUE_FULL_RETRY_AFTER,
                };
                reply::retry_after(
                    reply::error(StatusCode::SERVICE_UNAVAILABLE, &error.answer()),
                    retry_after,
                )
            }
        }
    }

    fn too_large(&self) -> Response<ResponseBody> {
        let message = format!("body exceeds the limit of {} bytes", self.max_body_bytes);
        reply::error(StatusCode::PAYLOAD_TOO_LARGE, &message)
    }
}

impl Ingress {
    /// `401` for a request that failed `route`'s verification, counted by reason and logged
    /// through the refusal log; `429` instead once `charged` says the client has spent its
    /// `unverified` allowance.
    fn unverified(
        &self,
        route: &IngressRoute,
        error: &VerifyError,
        charged: Result<(), Duration>,
    ) -> Response<ResponseBody> {
        let index = VerifyError::ALL
            .iter()
            .position(|e| e == error)
            .unwrap_or(0);
        route.verification_failures[index].increment(1);
        route
            .refusals
            .refused(route.index, Reason::VerificationFailed, error);
        match charged {
            Err(wait) => too_many_requests(wait),
            Ok(()) => reply::error(StatusCode::UNAUTHORIZED, &error.to_string()),
        }
    }
}

/// Checks the sender's signature under a `verify` span (when tracing) saying which preset
/// checked it and whether it held.
fn verify(verifier: &Verifier, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    let span = telemetry::span(|| {
        tracing::info_span!("verify", preset = verifier.preset(), verified = Empty)
    });
    let verdict = span.in_scope(|| verifier.verify(headers, body, SystemTime::now()));
    span.record("verified", verdict.is_ok());
    verdict
}

/// `202 {"id": ...}`.
fn accepted(id: &str) -> Response<ResponseBody> {
    // Event ids are UUIDs: nothing to escape. Written into a buffer of exactly its size, which
    // `Bytes` then takes as it is (a `format!` string has room to spare, which `Bytes` would
    // keep behind a second allocation).
    let (open, close) = (br#"{"id":""#, br#""}"#);
    let mut body = Vec::with_capacity(open.len() + id.len() + close.len());
    body.extend_from_slice(open);
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(close);
    reply::with_type(StatusCode::ACCEPTED, "application/json", body.into())
}

/// `429` with `Retry-After` for `wait`.
fn too_many_requests(wait: Duration) -> Response<ResponseBody> {
    reply::retry_after(
        reply::error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded"),
        retry_after_seconds(wait),
    )
}

/// Bytes of the values of the headers called `names`.
fn removed_values_len(headers: &HeaderMap, names: &[HeaderName]) -> usize {
    names
        .iter()
        .flat_map(|name| headers.get_all(name))
        .map(HeaderValue::len)
        .sum()
}

/// Bytes of all header values together.
fn header_values_len(headers: &HeaderMap) -> usize {
    headers.iter().map(|(_, value)| value.len()).sum()
}

/// Takes what a held event keeps out of the connection's read buffer.
///
/// Header values arrive as slices of that buffer, which they would keep alive for as long as
/// the event is held (queued, retried, dead-lettered): kilobytes per event. They are copied
/// after the body, which `read_body` already copied out, into one buffer of exactly their size,
/// so a held event costs one allocation, not one per header. `values_len` is
/// [`header_values_len`] of `headers`.
fn detach(headers: &HeaderMap, body: BytesMut, values_len: usize) -> (HeaderMap, Bytes) {
    let body_len = body.len();
    let needed = body_len + values_len;
    let mut buffer = if body.capacity() == needed {
        body
    } else {
        // Sized without a (true) Content-Length: copied into a buffer of the right size.
        let mut exact = BytesMut::with_capacity(needed);
        exact.extend_from_slice(&body);
        exact
    };
    for (_, value) in headers {
        buffer.extend_from_slice(value.as_bytes());
    }
    let buffer = buffer.freeze();
    let headers = detach_headers(headers, &buffer.slice(body_len..));
    (headers, buffer.slice(..body_len))
}

/// A copy of `headers` whose values are slices of `values` (every value, in order).
fn detach_headers(headers: &HeaderMap, values: &Bytes) -> HeaderMap {
    let mut owned = HeaderMap::with_capacity(headers.len());
    let mut offset = 0;
    for (name, value) in headers {
        let end = offset + value.len();
        let mut copy = HeaderValue::from_maybe_shared(values.slice(offset..end))
            .unwrap_or_else(|_| value.clone());
        offset = end;
        copy.set_sensitive(value.is_sensitive());
        owned.append(name.clone(), copy);
    }
    owned
}

/// The request's `Content-Length`, if it sent a valid one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.append("x-tag", HeaderValue::from_static("a"));
        headers.append("x-tag", HeaderValue::from_static("bc"));
        let mut secret = HeaderValue::from_static("s3cret");
        secret.set_sensitive(true);
        headers.insert("x-signature", secret);
        headers
    }

    #[test]
    fn detach_keeps_body_and_values_in_one_exact_buffer() {
        let headers = headers();
        let body = br#"{"a":1}"#;
        // Sized as the ingress sizes it (Content-Length plus the header values), or not at all,
        // as for a chunked body.
        let values_len = header_values_len(&headers);
        for capacity in [body.len() + values_len, 0] {
            let mut buffer = BytesMut::with_capacity(capacity);
            buffer.extend_from_slice(body);
            let (detached, detached_body) = detach(&headers, buffer, values_len);
            assert_eq!(&detached_body[..], body);
            assert_eq!(detached, headers, "every value, in order, under its name");
            assert!(detached["x-signature"].is_sensitive());
            let values: Vec<&[u8]> = detached
                .get_all("x-tag")
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            assert_eq!(values, [&b"a"[..], b"bc"]);
        }
    }
}
