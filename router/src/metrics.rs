//! Prometheus metrics: one recorder per router, with handles registered up front.
//!
//! The router does not install a global recorder: each [`Metrics`] owns its own, so several
//! routers (in tests, or embedded) never mix their figures, and hot paths use pre-registered
//! handles instead of looking labels up per event.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Metric names, as documented in the README.
pub mod names {
    /// Counter `{route, status}`: ingress answers.
    pub const REQUESTS: &str = "webhook_requests_total";
    /// Histogram: size of accepted request bodies, in bytes.
    pub const BODY_BYTES: &str = "webhook_request_body_bytes";
    /// Gauge: events held by the router (queued, in flight or waiting for a retry).
    pub const QUEUE_DEPTH: &str = "webhook_queue_depth";
    /// Counter `{route, destination, outcome}`: delivery attempts' outcomes.
    pub const DELIVERIES: &str = "webhook_deliveries_total";
    /// Histogram `{destination}`: duration of one delivery attempt.
    pub const DELIVERY_DURATION: &str = "webhook_delivery_duration_seconds";
    /// Histogram `{destination}`: attempts an event needed to be delivered.
    pub const DELIVERY_ATTEMPTS: &str = "webhook_delivery_attempts";
    /// Gauge: dead letters held.
    pub const DEAD_LETTERS: &str = "webhook_dead_letters";
    /// Histogram `{route, plugin}`: time one plugin call took.
    pub const PLUGIN_DURATION: &str = "webhook_plugin_duration_seconds";
    /// Counter `{route, plugin, verdict}`: plugin verdicts.
    pub const PLUGIN_VERDICTS: &str = "webhook_plugin_verdicts_total";
    /// Counter `{route, plugin, kind}`: plugin failures.
    pub const PLUGIN_ERRORS: &str = "webhook_plugin_errors_total";
    /// Counter `{route, plugin}`: lines a plugin wrote to stdout or stderr that were not logged
    /// (over the per-call cap).
    pub const PLUGIN_STDIO_CUT: &str = "webhook_plugin_stdio_cut_lines_total";
    /// Counter `{route}`: duplicate deliveries answered without queuing.
    pub const DUPLICATES: &str = "webhook_duplicates_total";
    /// Counter `{route, reason}`: requests refused by sender verification.
    pub const VERIFICATION_FAILURES: &str = "webhook_verification_failures_total";
    /// Counter `{task}`: panics of supervised long-lived tasks (each was restarted).
    pub const TASK_PANICS: &str = "webhook_task_panics_total";
    /// Dead letters evicted to stay within `dead_letter_capacity` or `dead_letter_max_bytes`.
    pub const DEAD_LETTER_EVICTIONS: &str = "webhook_dead_letter_evictions_total";
    /// Gauge: bytes the journal takes on disk.
    pub const JOURNAL_BYTES: &str = "webhook_journal_bytes";
    /// Gauge: events in the event record (`[inspect]`).
    pub const INSPECT_EVENTS: &str = "webhook_inspect_events";
    /// Gauge: changes to the event record not yet written to the journal.
    pub const INSPECT_UNSAVED: &str = "webhook_inspect_unsaved";
    /// Histogram: time one journal `fdatasync` took.
    pub const JOURNAL_FSYNC: &str = "webhook_journal_fsync_seconds";
    /// Histogram: records written by one journal commit.
    pub const JOURNAL_BATCH_SIZE: &str = "webhook_journal_batch_size";
    /// Counter: events read back from the journal at start, to be delivered.
    pub const JOURNAL_RECOVERED: &str = "webhook_journal_recovered_total";
    /// Counter: damaged regions of the journal skipped at start.
    pub const JOURNAL_CORRUPT: &str = "webhook_journal_corrupt_records_total";
    /// Gauge `{destination}`: a destination's circuit: 0 closed, 1 half-open, 2 open.
    pub const CIRCUIT_STATE: &str = "webhook_destination_circuit_state";
    /// Gauge `{destination}`: undelivered events a destination holds.
    pub const DESTINATION_HELD: &str = "webhook_destination_held";
    /// Counter: journal writes that failed (their events were refused with 503).
    pub const JOURNAL_WRITE_ERRORS: &str = "webhook_journal_write_errors_total";
    /// Gauge `{listener}`: connections open on a listener (`ingress` or `admin`).
    pub const CONNECTIONS: &str = "webhook_connections";
    /// Counter `{listener}`: new connections closed at once because every open one was busy.
    pub const REJECTED_CONNECTIONS: &str = "webhook_rejected_connections_total";
    /// Counter `{listener, reason}`: connections the router closed: `idle_timeout`,
    /// `header_timeout` (no first request) or `evicted` (the longest idle, to make room).
    pub const CLOSED_CONNECTIONS: &str = "webhook_connections_closed_total";
    /// Gauge `{listener}`: requests being received or handled.
    pub const REQUESTS_IN_FLIGHT: &str = "webhook_requests_in_flight";
    /// Counter `{listener, reason}`: requests answered 503 before reaching a route: `busy`
    /// (`max_requests_in_flight` reached).
    pub const REJECTED_REQUESTS: &str = "webhook_rejected_requests_total";
}

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Plugin calls take microseconds when healthy and up to their time limit when not.
const PLUGIN_DURATION_BUCKETS: &[f64] = &[
    0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];
const BYTE_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
];
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];

/// The router's metrics registry. Cheap to clone: clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    queue_depth: Gauge,
    dead_letters: Gauge,
    body_bytes: Histogram,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with the router's histogram buckets and metric descriptions.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(names::BODY_BYTES.into()), BYTE_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::PLUGIN_DURATION.into()),
                    PLUGIN_DURATION_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::DELIVERY_ATTEMPTS.into()),
                    ATTEMPT_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::JOURNAL_BATCH_SIZE.into()),
                    BATCH_BUCKETS,
                )
            })
            .expect("bucket lists are non-empty constants")
            .build_recorder();
        describe(&recorder);
        let handle = recorder.handle();
        let queue_depth = recorder.register_gauge(&Key::from_name(names::QUEUE_DEPTH), &METADATA);
        let dead_letters = recorder.register_gauge(&Key::from_name(names::DEAD_LETTERS), &METADATA);
        let body_bytes = recorder.register_histogram(&Key::from_name(names::BODY_BYTES), &METADATA);
        queue_depth.set(0.0);
        dead_letters.set(0.0);
        Self {
            inner: Arc::new(Inner {
                recorder,
                handle,
                queue_depth,
                dead_letters,
                body_bytes,
            }),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Drains histogram samples into their buckets; call it every few seconds.
    pub fn run_upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// Adds `count` events to `webhook_queue_depth`. The gauge moves by increments and
    /// decrements only: a `set` of a value computed beforehand could land after a later one.
    pub fn queue_depth_add(&self, count: usize) {
        self.inner.queue_depth.increment(count as f64);
    }

    /// Takes `count` events off `webhook_queue_depth`.
    pub fn queue_depth_sub(&self, count: usize) {
        self.inner.queue_depth.decrement(count as f64);
    }

    /// Sets `webhook_dead_letters`.
    pub fn set_dead_letters(&self, held: usize) {
        self.inner.dead_letters.set(held as f64);
    }

    /// Records the size of an accepted request body.
    pub fn record_body_bytes(&self, bytes: usize) {
        self.inner.body_bytes.record(bytes as f64);
    }

    /// Handles for one route's ingress answers, with `statuses` registered up front (so
    /// they show as 0 before the first one); other statuses are registered when first seen.
    pub fn route(&self, route: &str, statuses: &[u16]) -> RouteMetrics {
        let statuses = statuses
            .iter()
            .map(|&status| (status, self.request_counter(route, status)))
            .collect();
        RouteMetrics {
            metrics: self.clone(),
            route: route.to_owned(),
            statuses,
        }
    }

    /// Counters of verification failures of `route`, indexed like
    /// [`crate::verify::VerifyError::ALL`].
    pub fn verification_failures(&self, route: &str) -> [Counter; 4] {
        crate::verify::VerifyError::ALL.map(|error| {
            self.counter(
                names::VERIFICATION_FAILURES,
                vec![
                    Label::new("route", route.to_owned()),
                    Label::new("reason", error.reason()),
                ],
            )
        })
    }

    /// Counter of duplicate deliveries of `route`.
    pub fn duplicates(&self, route: &str) -> Counter {
        self.counter(
            names::DUPLICATES,
            vec![Label::new("route", route.to_owned())],
        )
    }

    /// Handles for deliveries of one route's events to one destination.
    pub fn delivery(&self, route: &str, destination: &str) -> DeliveryMetrics {
        let outcome = |outcome: &'static str| {
            self.counter(
                names::DELIVERIES,
                vec![
                    Label::new("route", route.to_owned()),
                    Label::new("destination", destination.to_owned()),
                    Label::new("outcome", outcome),
                ],
            )
        };
        let per_destination = vec![Label::new("destination", destination.to_owned())];
        DeliveryMetrics {
            delivered: outcome("delivered"),
            retry: outcome("retry"),
            dead_letter: outcome("dead_letter"),
            duration: self.histogram(names::DELIVERY_DURATION, per_destination.clone()),
            attempts: self.histogram(names::DELIVERY_ATTEMPTS, per_destination),
        }
    }

    /// Handles for one plugin of one route.
    pub fn plugin(&self, route: &str, plugin: &str) -> PluginMetrics {
        let labels = |key: &'static str, value: &'static str| {
            vec![
                Label::new("route", route.to_owned()),
                Label::new("plugin", plugin.to_owned()),
                Label::new(key, value),
            ]
        };
        let verdict = |v| self.counter(names::PLUGIN_VERDICTS, labels("verdict", v));
        PluginMetrics {
            duration: self.histogram(
                names::PLUGIN_DURATION,
                vec![
                    Label::new("route", route.to_owned()),
                    Label::new("plugin", plugin.to_owned()),
                ],
            ),
            forward: verdict("forward"),
            drop: verdict("drop"),
            reject: verdict("reject"),
            fan_out: verdict("fan_out"),
            errors: crate::plugin::PluginErrorKind::ALL
                .map(|kind| self.counter(names::PLUGIN_ERRORS, labels("kind", kind.label()))),
            stdio_cut: self.counter(
                names::PLUGIN_STDIO_CUT,
                vec![
                    Label::new("route", route.to_owned()),
                    Label::new("plugin", plugin.to_owned()),
                ],
            ),
        }
    }

    fn request_counter(&self, route: &str, status: u16) -> Counter {
        self.counter(
            names::REQUESTS,
            vec![
                Label::new("route", route.to_owned()),
                Label::new("status", status.to_string()),
            ],
        )
    }

    /// Counter of panics of the supervised task `task`.
    pub fn task_panics(&self, task: &'static str) -> Counter {
        self.counter(names::TASK_PANICS, vec![Label::new("task", task)])
    }

    /// Counter of dead letters evicted to make room.
    pub fn dead_letter_evictions(&self) -> Counter {
        self.counter(names::DEAD_LETTER_EVICTIONS, Vec::new())
    }

    /// Gauge of `destination`'s circuit state.
    pub fn destination_circuit(&self, destination: &str) -> Gauge {
        self.destination_gauge(names::CIRCUIT_STATE, destination)
    }

    /// Gauge of the events `destination` holds.
    pub fn destination_held(&self, destination: &str) -> Gauge {
        self.destination_gauge(names::DESTINATION_HELD, destination)
    }

    /// Handles for the connections and requests of the listener `listener`, registered
    /// up front (so that they show as 0).
    pub fn listener(&self, listener: &'static str) -> ListenerMetrics {
        let labels = |reason: &'static str| {
            vec![
                Label::new("listener", listener),
                Label::new("reason", reason),
            ]
        };
        let connections = self.inner.recorder.register_gauge(
            &Key::from_parts(names::CONNECTIONS, vec![Label::new("listener", listener)]),
            &METADATA,
        );
        connections.set(0.0);
        let requests_in_flight = self.inner.recorder.register_gauge(
            &Key::from_parts(
                names::REQUESTS_IN_FLIGHT,
                vec![Label::new("listener", listener)],
            ),
            &METADATA,
        );
        requests_in_flight.set(0.0);
        ListenerMetrics {
            connections,
            requests_in_flight,
            rejected_connections: self.counter(
                names::REJECTED_CONNECTIONS,
                vec![Label::new("listener", listener)],
            ),
            closed_idle: self.counter(names::CLOSED_CONNECTIONS, labels("idle_timeout")),
            closed_header_timeout: self
                .counter(names::CLOSED_CONNECTIONS, labels("header_timeout")),
            evicted: self.counter(names::CLOSED_CONNECTIONS, labels("evicted")),
            busy: self.counter(names::REJECTED_REQUESTS, labels("busy")),
        }
    }

    fn destination_gauge(&self, name: &'static str, destination: &str) -> Gauge {
        self.inner.recorder.register_gauge(
            &Key::from_parts(
                name,
                vec![Label::new("destination", destination.to_owned())],
            ),
            &METADATA,
        )
    }

    /// The event record's gauges: events held, and changes not yet in the journal.
    pub fn inspect(&self) -> (Gauge, Gauge) {
        let gauge = |name| {
            self.inner
                .recorder
                .register_gauge(&Key::from_name(name), &METADATA)
        };
        (gauge(names::INSPECT_EVENTS), gauge(names::INSPECT_UNSAVED))
    }

    /// The journal's handles (registered when a journal is opened).
    pub fn journal(&self) -> JournalMetrics {
        let gauge = self
            .inner
            .recorder
            .register_gauge(&Key::from_name(names::JOURNAL_BYTES), &METADATA);
        JournalMetrics {
            bytes: gauge,
            fsync: self.histogram(names::JOURNAL_FSYNC, Vec::new()),
            batch_size: self.histogram(names::JOURNAL_BATCH_SIZE, Vec::new()),
            recovered: self.counter(names::JOURNAL_RECOVERED, Vec::new()),
            corrupt: self.counter(names::JOURNAL_CORRUPT, Vec::new()),
            write_errors: self.counter(names::JOURNAL_WRITE_ERRORS, Vec::new()),
        }
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.inner
            .recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.inner
            .recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }
}

/// The journal's metrics.
#[derive(Clone)]
pub struct JournalMetrics {
    /// `webhook_journal_bytes`.
    pub bytes: Gauge,
    /// `webhook_journal_fsync_seconds`.
    pub fsync: Histogram,
    /// `webhook_journal_batch_size`.
    pub batch_size: Histogram,
    /// `webhook_journal_recovered_total`.
    pub recovered: Counter,
    /// `webhook_journal_corrupt_records_total`.
    pub corrupt: Counter,
    /// `webhook_journal_write_errors_total`.
    pub write_errors: Counter,
}

impl fmt::Debug for JournalMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalMetrics").finish_non_exhaustive()
    }
}

/// Pre-registered ingress counters of one route.
#[derive(Clone)]
pub struct RouteMetrics {
    metrics: Metrics,
    route: String,
    statuses: Vec<(u16, Counter)>,
}

impl fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    /// Counts one answer with `status` in `webhook_requests_total`.
    pub fn count_request(&self, status: u16) {
        match self.statuses.iter().find(|(s, _)| *s == status) {
            Some((_, counter)) => counter.increment(1),
            None => self
                .metrics
                .request_counter(&self.route, status)
                .increment(1),
        }
    }
}

/// Delivery handles by (route, destination). The pairs a route connects are registered up
/// front, so they show as 0 before the first delivery; any other pair a route's events reach
/// (a plugin fanning out to a destination the config did not suggest) is registered on its
/// first delivery. Pairs no event takes never appear.
pub struct DeliveryTable {
    metrics: Metrics,
    destinations: Vec<String>,
    routes: HashMap<String, Vec<OnceLock<DeliveryMetrics>>>,
}

impl fmt::Debug for DeliveryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryTable")
            .field("destinations", &self.destinations)
            .finish_non_exhaustive()
    }
}

impl DeliveryTable {
    /// A table for `routes` and `destinations` (by index), registering each of `connected`:
    /// (route, destination index) pairs.
    pub fn new<'a>(
        metrics: &Metrics,
        routes: impl IntoIterator<Item = &'a str>,
        destinations: Vec<String>,
        connected: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Self {
        let table = Self {
            metrics: metrics.clone(),
            routes: routes
                .into_iter()
                .map(|route| {
                    let slots = destinations.iter().map(|_| OnceLock::new()).collect();
                    (route.to_owned(), slots)
                })
                .collect(),
            destinations,
        };
        for (route, destination) in connected {
            table.get(route, destination);
        }
        table
    }

    /// The handles of `route`'s deliveries to destination `destination`, registered now if
    /// this is the pair's first; `None` for a route or destination the table does not know.
    pub fn get(&self, route: &str, destination: usize) -> Option<&DeliveryMetrics> {
        let slot = self.routes.get(route)?.get(destination)?;
        let name = &self.destinations[destination];
        Some(slot.get_or_init(|| self.metrics.delivery(route, name)))
    }
}

/// Pre-registered delivery handles for one (route, destination) pair.
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// `outcome="delivered"`.
    pub delivered: Counter,
    /// `outcome="retry"`: a failed attempt that will be retried.
    pub retry: Counter,
    /// `outcome="dead_letter"`.
    pub dead_letter: Counter,
    /// Attempt duration.
    pub duration: Histogram,
    /// Attempts per delivered event.
    pub attempts: Histogram,
}

impl fmt::Debug for DeliveryMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryMetrics").finish_non_exhaustive()
    }
}

/// Pre-registered handles for one plugin of one route.
#[derive(Clone)]
pub struct PluginMetrics {
    /// Call duration.
    pub duration: Histogram,
    /// `verdict="forward"`.
    pub forward: Counter,
    /// `verdict="drop"`.
    pub drop: Counter,
    /// `verdict="reject"`.
    pub reject: Counter,
    /// `verdict="fan_out"`.
    pub fan_out: Counter,
    /// Failures, indexed like [`crate::plugin::PluginErrorKind::ALL`].
    pub errors: [Counter; crate::plugin::PluginErrorKind::ALL.len()],
    /// `webhook_plugin_stdio_cut_lines_total`: stdout/stderr lines over the per-call cap.
    pub stdio_cut: Counter,
}

/// Handles for one listener's connections and requests.
#[derive(Clone)]
pub struct ListenerMetrics {
    /// `webhook_connections`: connections open.
    pub connections: Gauge,
    /// `webhook_requests_in_flight`: requests being received or handled.
    pub requests_in_flight: Gauge,
    /// `webhook_rejected_connections_total`: new connections closed at once (all busy).
    pub rejected_connections: Counter,
    /// `webhook_connections_closed_total{reason="idle_timeout"}`.
    pub closed_idle: Counter,
    /// `webhook_connections_closed_total{reason="header_timeout"}`.
    pub closed_header_timeout: Counter,
    /// `webhook_connections_closed_total{reason="evicted"}`.
    pub evicted: Counter,
    /// `webhook_rejected_requests_total{reason="busy"}`.
    pub busy: Counter,
}

impl fmt::Debug for ListenerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerMetrics").finish_non_exhaustive()
    }
}

impl fmt::Debug for PluginMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginMetrics").finish_non_exhaustive()
    }
}

fn describe(recorder: &PrometheusRecorder) {
    let counters = [
        (
            names::REQUESTS,
            "Webhook requests answered, by route and HTTP status.",
        ),
        (
            names::DELIVERIES,
            "Delivery attempt outcomes: delivered, retry or dead_letter.",
        ),
        (
            names::DUPLICATES,
            "Duplicate deliveries (same delivery id within the dedup window), answered 202 and not queued.",
        ),
        (
            names::VERIFICATION_FAILURES,
            "Requests refused by sender verification: missing_header, malformed, mismatch or timestamp.",
        ),
        (
            names::PLUGIN_VERDICTS,
            "Plugin verdicts: forward, drop, reject or fan_out.",
        ),
        (
            names::PLUGIN_ERRORS,
            "Plugin failures: trap, timeout, memory, output_too_large, error, bad_verdict or denied.",
        ),
        (
            names::PLUGIN_STDIO_CUT,
            "Lines plugins wrote to stdout or stderr that were not logged: over the per-call cap.",
        ),
        (
            names::TASK_PANICS,
            "Panics of the router's long-lived tasks, by task; each was restarted.",
        ),
        (
            names::DEAD_LETTER_EVICTIONS,
            "Dead letters evicted (oldest first) past dead_letter_capacity or dead_letter_max_bytes.",
        ),
        (
            names::JOURNAL_RECOVERED,
            "Events read back from the journal at start and delivered again.",
        ),
        (
            names::JOURNAL_CORRUPT,
            "Damaged regions of the journal found at start, each reported with its position and skipped.",
        ),
        (
            names::JOURNAL_WRITE_ERRORS,
            "Journal writes that failed; the events they held were answered 503.",
        ),
        (
            names::REJECTED_CONNECTIONS,
            "New connections closed at once because max_connections were open and all busy.",
        ),
        (
            names::CLOSED_CONNECTIONS,
            "Connections the router closed: idle_timeout, header_timeout (no first request in time) or evicted (longest idle, to make room).",
        ),
        (
            names::REJECTED_REQUESTS,
            "Requests answered 503 before reaching a route: busy (max_requests_in_flight reached).",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(KeyName::from(name), None, SharedString::from(help));
    }
    let gauges = [
        (
            names::QUEUE_DEPTH,
            "Events held by the router: queued, in flight or waiting to retry.",
        ),
        (
            names::DEAD_LETTERS,
            "Dead letters held for inspection and replay.",
        ),
        (names::JOURNAL_BYTES, "Bytes the journal takes on disk."),
        (
            names::INSPECT_EVENTS,
            "Events in the event record (GET /events).",
        ),
        (
            names::INSPECT_UNSAVED,
            "Changes to the event record not yet written to the journal.",
        ),
        (names::CONNECTIONS, "Connections open, by listener."),
        (
            names::REQUESTS_IN_FLIGHT,
            "Requests being received or handled, by listener.",
        ),
    ];
    for (name, help) in gauges {
        recorder.describe_gauge(KeyName::from(name), None, SharedString::from(help));
    }
    let histograms = [
        (
            names::BODY_BYTES,
            "Size of accepted webhook bodies in bytes.",
        ),
        (
            names::DELIVERY_DURATION,
            "Duration of one delivery attempt in seconds.",
        ),
        (
            names::DELIVERY_ATTEMPTS,
            "Attempts needed to deliver an event.",
        ),
        (
            names::PLUGIN_DURATION,
            "Duration of one plugin call in seconds.",
        ),
        (
            names::JOURNAL_FSYNC,
            "Duration of one journal fdatasync in seconds.",
        ),
        (
            names::JOURNAL_BATCH_SIZE,
            "Records written by one journal commit (concurrent writes share a commit).",
        ),
    ];
    for (name, help) in histograms {
        recorder.describe_histogram(KeyName::from(name), None, SharedString::from(help));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_independent_and_render_labels() {
        let a = Metrics::new();
        let b = Metrics::new();
        let route = a.route("github", &[202]);
        route.count_request(202);
        route.count_request(202);
        route.count_request(418);
        let text = a.render();
        assert!(
            text.contains("webhook_requests_total{route=\"github\",status=\"202\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("webhook_requests_total{route=\"github\",status=\"418\"} 1"),
            "{text}"
        );
        assert!(!b.render().contains("status=\"202\"} 2"));
    }

    #[test]
    fn delivery_pairs_appear_when_connected_or_first_used_and_never_otherwise() {
        let metrics = Metrics::new();
        let names = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let table = DeliveryTable::new(&metrics, ["r1", "r2"], names, [("r1", 0), ("r2", 1)]);
        let series = |route: &str, destination: &str| {
            format!(
                "webhook_deliveries_total{{route=\"{route}\",destination=\"{destination}\",outcome=\"delivered\"}}"
            )
        };
        let text = metrics.render();
        assert!(text.contains(&format!("{} 0", series("r1", "a"))), "{text}");
        assert!(text.contains(&format!("{} 0", series("r2", "b"))), "{text}");
        for (route, destination) in [("r1", "b"), ("r1", "c"), ("r2", "a"), ("r2", "c")] {
            assert!(!text.contains(&series(route, destination)), "{text}");
        }
        table
            .get("r1", 2)
            .expect("a known pair")
            .delivered
            .increment(1);
        let text = metrics.render();
        assert!(text.contains(&format!("{} 1", series("r1", "c"))), "{text}");
        assert!(!text.contains(&series("r2", "c")), "{text}");
        assert!(table.get("r3", 0).is_none());
        assert!(table.get("r1", 3).is_none());
    }
}
