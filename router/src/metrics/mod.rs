//! Prometheus metrics: one recorder per router, with handles registered up front.
//!
//! The router does not install a global recorder: each [`Metrics`] owns its own, so several
//! routers (in tests, or embedded) never mix their figures, and hot paths use pre-registered
//! handles instead of looking labels up per event. Gauges that are a function of the router's
//! state rather than of events (the age of the oldest held event) are computed at each render
//! by collectors ([`Metrics::on_render`]). What each metric means: [`catalogue`].
//!
//! Counters can also be read back ([`Metrics::counters`]), for the admin API's per-route
//! counts: each counter handle adds to the exposition and to a value kept beside it.

pub mod catalogue;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder,
    SharedString,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use catalogue::{Kind, Metric};

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

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
/// An event's way from receipt to final outcome: milliseconds when destinations answer, up to
/// hours while one is down and retries back off.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 14400.0,
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
    queue_capacity: Gauge,
    /// Run before each render, to set the gauges computed from state.
    collectors: Mutex<Vec<Collector>>,
    /// Each counter's value, by its key, for [`Metrics::counters`].
    counter_values: Mutex<HashMap<Key, Arc<AtomicU64>>>,
}

/// A counter handle that adds to the exposition and to the value [`Metrics::counters`] reads.
struct ReadableCounter {
    exposed: Counter,
    value: Arc<AtomicU64>,
}

impl CounterFn for ReadableCounter {
    fn increment(&self, value: u64) {
        self.exposed.increment(value);
        self.value.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.exposed.absolute(value);
        self.value.fetch_max(value, Ordering::Relaxed);
    }
}

/// Sets some gauges from the router's state, just before a render.
type Collector = Box<dyn Fn() + Send + Sync>;

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
                b.set_buckets_for_metric(
                    Matcher::Full(catalogue::BODY_BYTES.name.into()),
                    BYTE_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(catalogue::PLUGIN_DURATION.name.into()),
                    PLUGIN_DURATION_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(catalogue::EVENT_LATENCY.name.into()),
                    LATENCY_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(catalogue::DELIVERY_ATTEMPTS.name.into()),
                    ATTEMPT_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(catalogue::JOURNAL_BATCH_SIZE.name.into()),
                    BATCH_BUCKETS,
                )
            })
            .expect("bucket lists are non-empty constants")
            .build_recorder();
        describe(&recorder);
        let handle = recorder.handle();
        let queue_depth = register_gauge(&recorder, &catalogue::QUEUE_DEPTH, Vec::new());
        let dead_letters = register_gauge(&recorder, &catalogue::DEAD_LETTERS, Vec::new());
        let body_bytes =
            recorder.register_histogram(&key(&catalogue::BODY_BYTES, Vec::new()), &METADATA);
        let queue_capacity = register_gauge(&recorder, &catalogue::QUEUE_CAPACITY, Vec::new());
        queue_depth.set(0.0);
        dead_letters.set(0.0);
        Self {
            inner: Arc::new(Inner {
                recorder,
                handle,
                queue_depth,
                dead_letters,
                body_bytes,
                queue_capacity,
                collectors: Mutex::new(Vec::new()),
                counter_values: Mutex::default(),
            }),
        }
    }

    /// The Prometheus text exposition of every metric, after the collectors have run.
    pub fn render(&self) -> String {
        for collect in self
            .inner
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            collect();
        }
        without_replaced_configs(self.inner.handle.render())
    }

    /// The value of the rendered series `series` (its name and labels, as rendered), for unit
    /// tests; a missing series fails the test.
    #[cfg(test)]
    pub(crate) fn value(&self, series: &str) -> f64 {
        let text = self.render();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in {text}"))
            .parse()
            .expect("a number")
    }

    /// Runs `collect` before each [`Metrics::render`], to set gauges computed from state. It
    /// must not render (nor register another collector).
    pub fn on_render(&self, collect: impl Fn() + Send + Sync + 'static) {
        self.inner
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(collect));
    }

    /// Sets `webhook_queue_capacity`.
    pub fn set_queue_capacity(&self, capacity: usize) {
        self.inner.queue_capacity.set(capacity as f64);
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
                &catalogue::VERIFICATION_FAILURES,
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
            &catalogue::DUPLICATES,
            vec![Label::new("route", route.to_owned())],
        )
    }

    /// Handles for deliveries of one route's events to one destination.
    pub fn delivery(&self, route: &str, destination: &str) -> DeliveryMetrics {
        let outcome = |outcome: &'static str| {
            self.counter(
                &catalogue::DELIVERIES,
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
            duration: self.histogram(&catalogue::DELIVERY_DURATION, per_destination.clone()),
            attempts: self.histogram(&catalogue::DELIVERY_ATTEMPTS, per_destination),
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
        let verdict = |v| self.counter(&catalogue::PLUGIN_VERDICTS, labels("verdict", v));
        PluginMetrics {
            duration: self.histogram(
                &catalogue::PLUGIN_DURATION,
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
                .map(|kind| self.counter(&catalogue::PLUGIN_ERRORS, labels("kind", kind.label()))),
            stdio_cut: self.counter(
                &catalogue::PLUGIN_STDIO_CUT,
                vec![
                    Label::new("route", route.to_owned()),
                    Label::new("plugin", plugin.to_owned()),
                ],
            ),
        }
    }

    fn request_counter(&self, route: &str, status: u16) -> Counter {
        self.counter(
            &catalogue::REQUESTS,
            vec![
                Label::new("route", route.to_owned()),
                Label::new("status", status.to_string()),
            ],
        )
    }

    /// Counter of panics of the supervised task `task`.
    pub fn task_panics(&self, task: &'static str) -> Counter {
        self.counter(&catalogue::TASK_PANICS, vec![Label::new("task", task)])
    }

    /// Counter of dead letters evicted to make room.
    pub fn dead_letter_evictions(&self) -> Counter {
        self.counter(&catalogue::DEAD_LETTER_EVICTIONS, Vec::new())
    }

    /// Counter of config reloads with `result` `ok` or `error`.
    pub fn config_reloads(&self, result: &'static str) -> Counter {
        self.counter(
            &catalogue::CONFIG_RELOADS,
            vec![Label::new("result", result)],
        )
    }

    /// Gauge of the config whose file hashes to `hash`: 1 while it serves, else 0.
    pub fn config_info(&self, hash: &str) -> Gauge {
        self.gauge(
            &catalogue::CONFIG_INFO,
            vec![Label::new("hash", hash.to_owned())],
        )
    }

    /// Gauge of when the config serving was loaded, in Unix seconds.
    pub fn config_last_reload(&self) -> Gauge {
        self.gauge(&catalogue::CONFIG_LAST_RELOAD, Vec::new())
    }

    /// Counter of dead letters the shared store could not store.
    pub fn dead_letter_store_failures(&self) -> Counter {
        self.counter(&catalogue::DEAD_LETTER_STORE_FAILURES, Vec::new())
    }

    /// Gauge of `destination`'s circuit state.
    pub fn destination_circuit(&self, destination: &str) -> Gauge {
        self.destination_gauge(&catalogue::CIRCUIT_STATE, destination)
    }

    /// Gauge of the events `destination` holds.
    pub fn destination_held(&self, destination: &str) -> Gauge {
        self.destination_gauge(&catalogue::DESTINATION_HELD, destination)
    }

    /// Counter of the whole seconds `destination`'s deliveries waited for its `rate`,
    /// registered now (so that it shows as 0).
    pub fn destination_throttled(&self, destination: &str) -> Counter {
        self.counter(
            &catalogue::DESTINATION_THROTTLED,
            vec![Label::new("destination", destination.to_owned())],
        )
    }

    /// Gauge `webhook_nats_connected` (registered with the NATS backend only).
    pub fn nats_connected(&self) -> Gauge {
        self.gauge(&catalogue::NATS_CONNECTED, Vec::new())
    }

    /// Gauge of `destination`'s `max_held`.
    pub fn destination_max_held(&self, destination: &str) -> Gauge {
        self.destination_gauge(&catalogue::DESTINATION_MAX_HELD, destination)
    }

    /// Gauge of the order keys with events waiting at `destination` behind an earlier one.
    pub fn ordered_keys_waiting(&self, destination: &str) -> Gauge {
        self.destination_gauge(&catalogue::ORDERED_KEYS_WAITING, destination)
    }

    /// Gauge of the age of the oldest event `destination` holds.
    pub fn destination_oldest_age(&self, destination: &str) -> Gauge {
        self.destination_gauge(&catalogue::OLDEST_EVENT_AGE, destination)
    }

    /// Histogram of the time `route`'s events take from receipt to final outcome.
    pub fn event_latency(&self, route: &str) -> Histogram {
        self.histogram(
            &catalogue::EVENT_LATENCY,
            vec![Label::new("route", route.to_owned())],
        )
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
        let connections = self.gauge(
            &catalogue::CONNECTIONS,
            vec![Label::new("listener", listener)],
        );
        connections.set(0.0);
        let requests_in_flight = self.gauge(
            &catalogue::REQUESTS_IN_FLIGHT,
            vec![Label::new("listener", listener)],
        );
        requests_in_flight.set(0.0);
        ListenerMetrics {
            connections,
            requests_in_flight,
            rejected_connections: self.counter(
                &catalogue::REJECTED_CONNECTIONS,
                vec![Label::new("listener", listener)],
            ),
            closed_idle: self.counter(&catalogue::CLOSED_CONNECTIONS, labels("idle_timeout")),
            closed_header_timeout: self
                .counter(&catalogue::CLOSED_CONNECTIONS, labels("header_timeout")),
            evicted: self.counter(&catalogue::CLOSED_CONNECTIONS, labels("evicted")),
            closed_tls_handshake: self
                .counter(&catalogue::CLOSED_CONNECTIONS, labels("tls_handshake")),
            busy: self.counter(&catalogue::REJECTED_REQUESTS, labels("busy")),
            client_busy: self.counter(&catalogue::REJECTED_REQUESTS, labels("client_busy")),
        }
    }

    /// Gauge of when the certificate `listener` serves over TLS expires (its notAfter, Unix
    /// seconds).
    pub fn tls_cert_expiry(&self, listener: &'static str) -> Gauge {
        self.gauge(
            &catalogue::TLS_CERT_EXPIRY,
            vec![Label::new("listener", listener)],
        )
    }

    /// Counter of the requests on `listener` whose body arrived slower than `min_body_rate`
    /// (`webhook_rejected_requests_total{reason="slow_body"}`), registered now (so it shows as
    /// 0).
    pub fn slow_bodies(&self, listener: &'static str) -> Counter {
        self.counter(
            &catalogue::REJECTED_REQUESTS,
            vec![
                Label::new("listener", listener),
                Label::new("reason", "slow_body"),
            ],
        )
    }

    fn destination_gauge(&self, metric: &'static Metric, destination: &str) -> Gauge {
        self.gauge(
            metric,
            vec![Label::new("destination", destination.to_owned())],
        )
    }

    /// The event record's gauges: events held, and changes not yet in the journal.
    pub fn inspect(&self) -> (Gauge, Gauge) {
        (
            self.gauge(&catalogue::INSPECT_EVENTS, Vec::new()),
            self.gauge(&catalogue::INSPECT_UNSAVED, Vec::new()),
        )
    }

    /// The journal's handles (registered when a journal is opened).
    pub fn journal(&self) -> JournalMetrics {
        JournalMetrics {
            bytes: self.gauge(&catalogue::JOURNAL_BYTES, Vec::new()),
            fsync: self.histogram(&catalogue::JOURNAL_FSYNC, Vec::new()),
            batch_size: self.histogram(&catalogue::JOURNAL_BATCH_SIZE, Vec::new()),
            recovered: self.counter(&catalogue::JOURNAL_RECOVERED, Vec::new()),
            corrupt: self.counter(&catalogue::JOURNAL_CORRUPT, Vec::new()),
            write_errors: self.counter(&catalogue::JOURNAL_WRITE_ERRORS, Vec::new()),
        }
    }

    fn counter(&self, metric: &'static Metric, labels: Vec<Label>) -> Counter {
        debug_assert_eq!(metric.kind, Kind::Counter, "{}", metric.name);
        let key = key(metric, labels);
        let exposed = self.inner.recorder.register_counter(&key, &METADATA);
        let value = Arc::clone(self.values().entry(key).or_default());
        Counter::from_arc(Arc::new(ReadableCounter { exposed, value }))
    }

    /// Every series of the counter `name` registered so far: its labels and value.
    pub fn counters(&self, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
        self.values()
            .iter()
            .filter(|(key, _)| key.name() == name)
            .map(|(key, value)| {
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                (labels, value.load(Ordering::Relaxed))
            })
            .collect()
    }

    fn values(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<AtomicU64>>> {
        // Entries are only ever added, whole: a panic elsewhere cannot leave one half-made.
        self.inner
            .counter_values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn gauge(&self, metric: &'static Metric, labels: Vec<Label>) -> Gauge {
        register_gauge(&self.inner.recorder, metric, labels)
    }

    fn histogram(&self, metric: &'static Metric, labels: Vec<Label>) -> Histogram {
        debug_assert_eq!(metric.kind, Kind::Histogram, "{}", metric.name);
        self.inner
            .recorder
            .register_histogram(&key(metric, labels), &METADATA)
    }
}

/// `text` without the `webhook_config_info` series of the configs a reload replaced (at 0):
/// an info metric shows one series, the config serving. (The exporter cannot unregister one
/// series: its registry only forgets series left idle, by kind and after a timeout, which
/// would take the gauges set once at start with them.)
fn without_replaced_configs(text: String) -> String {
    let replaced = |line: &str| {
        line.strip_prefix(catalogue::CONFIG_INFO.name)
            .is_some_and(|rest| rest.starts_with('{') && rest.ends_with(" 0"))
    };
    if !text.lines().any(replaced) {
        return text;
    }
    let mut kept = String::with_capacity(text.len());
    for line in text.lines().filter(|line| !replaced(line)) {
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// The key of one series of `metric`; in debug builds, checks that `labels` are the ones its
/// catalogue row names, in order.
fn key(metric: &'static Metric, labels: Vec<Label>) -> Key {
    debug_assert!(
        labels
            .iter()
            .map(Label::key)
            .eq(metric.labels.iter().copied()),
        "{}: labels {labels:?}, the catalogue says {:?}",
        metric.name,
        metric.labels
    );
    Key::from_parts(metric.name, labels)
}

fn register_gauge(
    recorder: &PrometheusRecorder,
    metric: &'static Metric,
    labels: Vec<Label>,
) -> Gauge {
    debug_assert_eq!(metric.kind, Kind::Gauge, "{}", metric.name);
    recorder.register_gauge(&key(metric, labels), &METADATA)
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
/// (a plugin fanning out to a destination the config did not suggest, a route or destination a
/// config reload added) is registered on its first delivery. Pairs no event takes never appear.
pub struct DeliveryTable {
    metrics: Metrics,
    /// Destination names by id; a config reload adds to them.
    destinations: RwLock<Vec<String>>,
    pairs: RwLock<HashMap<(String, usize), DeliveryMetrics>>,
}

impl fmt::Debug for DeliveryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryTable")
            .field("destinations", &self.destinations)
            .finish_non_exhaustive()
    }
}

impl DeliveryTable {
    /// A table for `destinations` (by index), registering each of `connected`: (route,
    /// destination index) pairs.
    pub fn new<'a>(
        metrics: &Metrics,
        destinations: Vec<String>,
        connected: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Self {
        let table = Self {
            metrics: metrics.clone(),
            destinations: RwLock::new(destinations),
            pairs: RwLock::default(),
        };
        for (route, destination) in connected {
            table.get(route, destination);
        }
        table
    }

    /// Adds destination `name` (a config reload), under the next id.
    pub fn add_destination(&self, name: String) {
        self.destinations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name);
    }

    /// Counter of the whole seconds `destination`'s deliveries waited for its `rate`, for a
    /// lane made after start (a destination a reload adds).
    pub fn destination_throttled(&self, destination: &str) -> Counter {
        self.metrics.destination_throttled(destination)
    }

    /// The handles of `route`'s deliveries to destination `destination`, registered now if
    /// this is the pair's first; `None` for a destination the table does not know.
    pub fn get(&self, route: &str, destination: usize) -> Option<DeliveryMetrics> {
        let key = (route.to_owned(), destination);
        if let Some(handles) = self
            .pairs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Some(handles.clone());
        }
        let name = self
            .destinations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(destination)?
            .clone();
        let mut pairs = self.pairs.write().unwrap_or_else(PoisonError::into_inner);
        let handles = pairs
            .entry(key)
            .or_insert_with(|| self.metrics.delivery(route, &name));
        Some(handles.clone())
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
    /// `webhook_connections_closed_total{reason="tls_handshake"}`.
    pub closed_tls_handshake: Counter,
    /// `webhook_rejected_requests_total{reason="busy"}`.
    pub busy: Counter,
    /// `webhook_rejected_requests_total{reason="client_busy"}`.
    pub client_busy: Counter,
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

/// Gives every metric of the catalogue its HELP text.
fn describe(recorder: &PrometheusRecorder) {
    for metric in catalogue::ALL {
        let name = KeyName::from(metric.name);
        let help = SharedString::from(metric.help_text());
        match metric.kind {
            Kind::Counter => recorder.describe_counter(name, None, help),
            Kind::Gauge => recorder.describe_gauge(name, None, help),
            Kind::Histogram => recorder.describe_histogram(name, None, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_info_shows_only_the_config_serving() {
        let metrics = Metrics::new();
        let first = metrics.config_info("aaaa");
        first.set(1.0);
        let tail = metrics.config_info("aaaa0");
        tail.set(1.0);
        // A reload: the replaced configs go to 0, the new one is 1.
        first.set(0.0);
        tail.set(0.0);
        metrics.config_info("bbbb").set(1.0);
        let text = metrics.render();
        let series: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("webhook_config_info{"))
            .collect();
        assert_eq!(series, ["webhook_config_info{hash=\"bbbb\"} 1"], "{text}");
        assert!(text.contains("# TYPE webhook_config_info gauge"), "{text}");
        // Back to the first config: its series shows again.
        first.set(1.0);
        metrics.config_info("bbbb").set(0.0);
        assert!(
            metrics
                .render()
                .contains("webhook_config_info{hash=\"aaaa\"} 1")
        );
    }

    #[test]
    fn counters_read_back_what_the_exposition_shows() {
        let metrics = Metrics::new();
        let route = metrics.route("r", &[202]);
        route.count_request(202);
        route.count_request(202);
        // A status not registered up front is registered again on each answer: one series.
        route.count_request(418);
        route.count_request(418);
        route.count_request(418);
        let mut counts = metrics.counters(catalogue::REQUESTS.name);
        counts.sort();
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            counts,
            [
                (vec![pair("route", "r"), pair("status", "202")], 2),
                (vec![pair("route", "r"), pair("status", "418")], 3),
            ]
        );
        let text = metrics.render();
        assert!(
            text.contains("webhook_requests_total{route=\"r\",status=\"418\"} 3"),
            "{text}"
        );
    }

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
        let table = DeliveryTable::new(&metrics, names, [("r1", 0), ("r2", 1)]);
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
        assert!(table.get("r1", 3).is_none());
        // A route and a destination a reload added are registered on their first delivery.
        table.add_destination("d".to_owned());
        table.get("r3", 3).expect("added").delivered.increment(1);
        assert!(
            metrics
                .render()
                .contains(&format!("{} 1", series("r3", "d")))
        );
    }
}
