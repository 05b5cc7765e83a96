//! The catalogue of every metric the router exports: one row per metric with its name, kind,
//! labels and meaning. The exporter's HELP texts come from it (and registering a series whose
//! labels differ from its row is a bug caught in debug builds), the README's metric table must
//! equal it (a test compares them), and the dashboard and alert-rule tests check every metric
//! and label they name against it. Adding a metric is adding one row.
//!
//! Meanings are written for the README, with `code` in backticks; HELP texts are the same
//! without the backticks.

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (`_bucket{le}`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The Prometheus type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The name, e.g. `webhook_requests_total`.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The label names every series of it carries, in order.
    pub labels: &'static [&'static str],
    /// What it means, as the README says it (with `code` in backticks).
    pub help: &'static str,
}

impl Metric {
    /// The HELP text: the meaning without backticks.
    pub fn help_text(&self) -> String {
        self.help.replace('`', "")
    }

    /// The metric's row of the README table.
    pub fn readme_row(&self) -> String {
        let labels: Vec<String> = self.labels.iter().map(|l| format!(" `{l}`")).collect();
        format!(
            "| `{}` | {} |{} | {} |",
            self.name,
            self.kind.as_str(),
            labels.join(","),
            self.help
        )
    }

    /// Whether `series` (a name as it appears in a query) is one of this metric's: the name
    /// itself, or for a histogram its `_bucket`, `_sum` or `_count`.
    pub fn owns(&self, series: &str) -> bool {
        series == self.name
            || (self.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| series.strip_suffix(suffix) == Some(self.name)))
    }
}

/// The catalogue's metric named `series` (a histogram's `_bucket`, `_sum` or `_count` too).
pub fn find(series: &str) -> Option<&'static Metric> {
    ALL.iter().find(|metric| metric.owns(series))
}

/// The README's metric table: its head and one row per metric, in catalogue order.
pub fn readme_table() -> String {
    let mut table = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for metric in ALL {
        table.push_str(&metric.readme_row());
        table.push('\n');
    }
    table
}

/// Declares each row as a `pub const` [`Metric`] and lists them all in [`ALL`].
macro_rules! catalogue {
    ($($id:ident: $kind:ident $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $help)]
            pub const $id: Metric = Metric {
                name: $name,
                kind: Kind::$kind,
                labels: &[$($label),*],
                help: $help,
            };
        )*
        /// Every metric, in the README's order.
        pub const ALL: &[Metric] = &[$($id),*];
    };
}

// One row per metric: CONST: Kind "name" ["label", ...] "meaning";
#[rustfmt::skip]
catalogue! {
    REQUESTS: Counter "webhook_requests_total" ["route", "status"] "ingress answers (`route=\"unmatched\"` for 404s)";
    BODY_BYTES: Histogram "webhook_request_body_bytes" [] "size of accepted bodies, in bytes";
    QUEUE_DEPTH: Gauge "webhook_queue_depth" [] "events held: queued, in flight or waiting to retry (against `queue_capacity`)";
    DELIVERIES: Counter "webhook_deliveries_total" ["route", "destination", "outcome"] "attempt outcomes: `delivered`, `retry` (failed, will retry), `dead_letter`; shown from the start for each destination a route lists or its plugins' config names, and for any other pair once a fan-out first takes it";
    DELIVERY_DURATION: Histogram "webhook_delivery_duration_seconds" ["destination"] "duration of one delivery attempt";
    DELIVERY_ATTEMPTS: Histogram "webhook_delivery_attempts" ["destination"] "attempts a delivered event needed";
    EVENT_LATENCY: Histogram "webhook_event_latency_seconds" ["route"] "time from an event's receipt to its final outcome (delivered or dead-lettered) at every destination it holds a place at";
    OLDEST_EVENT_AGE: Gauge "webhook_oldest_event_age_seconds" ["destination"] "age of the oldest event the destination holds that is not yet final (0 when it holds none); with NATS, of those this router has in hand";
    DEAD_LETTERS: Gauge "webhook_dead_letters" [] "dead letters held";
    DUPLICATES: Counter "webhook_duplicates_total" ["route"] "repeated deliveries answered without queuing";
    VERIFICATION_FAILURES: Counter "webhook_verification_failures_total" ["route", "reason"] "requests refused by `verify`: `missing_header`, `malformed`, `mismatch`, `timestamp`";
    PLUGIN_DURATION: Histogram "webhook_plugin_duration_seconds" ["route", "plugin"] "duration of one plugin call (buckets from 2 µs)";
    PLUGIN_VERDICTS: Counter "webhook_plugin_verdicts_total" ["route", "plugin", "verdict"] "verdicts: `forward` (`pass` included), `drop`, `reject`, `fan_out`";
    PLUGIN_ERRORS: Counter "webhook_plugin_errors_total" ["route", "plugin", "kind"] "failures: `trap`, `timeout`, `memory`, `output_too_large`, `error`, `bad_verdict`, `denied` (a call to a function the sandbox denies)";
    PLUGIN_STDIO_CUT: Counter "webhook_plugin_stdio_cut_lines_total" ["route", "plugin"] "lines plugins wrote to stdout or stderr that were not logged (over the per-call cap of 64 lines, 16 KiB)";
    TASK_PANICS: Counter "webhook_task_panics_total" ["task"] "panics of a long-lived task, each followed by a restart: `dispatch`, `lane_worker`, `retry_scheduler`, `lane_retire` (a removed destination waiting to stop its lane), `ingress_listener`, `admin_listener`, `metrics_upkeep`, `refusal_log`, `epoch_ticker`, `inspect_writer`; with NATS also `nats_outbox` (acks and bucket writes), `nats_fetch`, `nats_keep_alive`, `nats_dead_letter_mirror`";
    DEAD_LETTER_EVICTIONS: Counter "webhook_dead_letter_evictions_total" [] "dead letters evicted, oldest first, past `dead_letter_capacity` or `dead_letter_max_bytes`";
    DEAD_LETTER_STORE_FAILURES: Counter "webhook_dead_letter_store_failures_total" [] "dead letters the shared NATS bucket refused or did not answer for; each event was kept and dead-lettered again 5 s later";
    CIRCUIT_STATE: Gauge "webhook_destination_circuit_state" ["destination"] "the destination's circuit breaker: 0 closed, 1 half-open (a probe is out), 2 open";
    DESTINATION_HELD: Gauge "webhook_destination_held" ["destination"] "undelivered events the destination holds, against its `max_held` (`webhook_destination_max_held`)";
    DESTINATION_MAX_HELD: Gauge "webhook_destination_max_held" ["destination"] "the destination's `max_held`: most undelivered events it may hold";
    ORDERED_KEYS_WAITING: Gauge "webhook_ordered_keys_waiting" ["destination"] "order keys (a route's `order_by`) with events waiting at the destination behind an earlier event of the same key (one being attempted or waiting to retry, or the dead letter of one with `on_dead_letter = \"hold\"`)";
    DESTINATION_THROTTLED: Counter "webhook_destination_throttled_seconds_total" ["destination"] "time the destination's deliveries waited for a turn under its `rate`, in whole seconds; one delivery waits at a time, so it grows by at most 1 a second (with NATS, per router); 0 without a `rate`";
    QUEUE_CAPACITY: Gauge "webhook_queue_capacity" [] "`queue_capacity`: most events the router holds at once";
    NATS_CONNECTED: Gauge "webhook_nats_connected" [] "1 while the NATS backend's client is connected to a server, 0 while it reconnects (with the NATS backend only)";
    INSPECT_EVENTS: Gauge "webhook_inspect_events" [] "events the event record holds (`[inspect] events` at most)";
    INSPECT_UNSAVED: Gauge "webhook_inspect_unsaved" [] "changes to the event record not yet written to the journal";
    JOURNAL_BYTES: Gauge "webhook_journal_bytes" [] "bytes the journal takes on disk (with the preallocated next segment)";
    JOURNAL_FSYNC: Histogram "webhook_journal_fsync_seconds" [] "duration of one journal `fdatasync`";
    JOURNAL_BATCH_SIZE: Histogram "webhook_journal_batch_size" [] "records written by one journal commit (concurrent writes share a commit)";
    JOURNAL_RECOVERED: Counter "webhook_journal_recovered_total" [] "events read back from the journal at start and delivered again";
    JOURNAL_CORRUPT: Counter "webhook_journal_corrupt_records_total" [] "damaged regions of the journal found at start, and damaged or undecodable records found since; each logged once with its position and skipped";
    JOURNAL_WRITE_ERRORS: Counter "webhook_journal_write_errors_total" [] "journal writes and syncs that failed; the events waiting for them were answered 503";
    CONNECTIONS: Gauge "webhook_connections" ["listener"] "connections open: `ingress` (against `max_connections`) or `admin` (against 64)";
    REQUESTS_IN_FLIGHT: Gauge "webhook_requests_in_flight" ["listener"] "requests being received or handled (ingress: against `max_requests_in_flight`)";
    REJECTED_CONNECTIONS: Counter "webhook_rejected_connections_total" ["listener"] "new connections closed at once: `max_connections` open and every one with a request in flight";
    CLOSED_CONNECTIONS: Counter "webhook_connections_closed_total" ["listener", "reason"] "connections the router closed: `evicted` (the longest idle, to make room for a new one), `header_timeout` (no request within `header_read_timeout` of the connect, the TLS handshake included), `idle_timeout`, `tls_handshake` (the TLS handshake failed)";
    REJECTED_REQUESTS: Counter "webhook_rejected_requests_total" ["listener", "reason"] "requests the listener refused or cut off: 503 before reaching a route, `busy` (`max_requests_in_flight` reached) or `client_busy` (`max_requests_in_flight_per_client` reached); 408, `slow_body` (the body arrived slower than `min_body_rate`)";
    TLS_CERT_EXPIRY: Gauge "webhook_tls_cert_expiry_timestamp_seconds" ["listener"] "when the certificate a listener serves over TLS expires (its notAfter, Unix seconds); set at start and at each reload or change of its files; a certificate with less than 14 days left is also logged as a warning";
    CONFIG_RELOADS: Counter "webhook_config_reloads_total" ["result"] "config reloads: `ok` (applied) or `error` (refused whole; the old config kept serving)";
    CONFIG_INFO: Gauge "webhook_config_info" ["hash"] "1, one series: the config serving (`hash`: first 16 hex digits of its file's SHA-256)";
    CONFIG_LAST_RELOAD: Gauge "webhook_config_last_reload_timestamp_seconds" [] "when the config serving was loaded, at start or by a reload (Unix seconds)";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        for (i, metric) in ALL.iter().enumerate() {
            assert!(
                ALL[i + 1..].iter().all(|other| other.name != metric.name),
                "{} twice",
                metric.name
            );
            assert!(metric.name.starts_with("webhook_"), "{}", metric.name);
            assert_eq!(
                metric.kind == Kind::Counter,
                metric.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                metric.name
            );
            assert!(!metric.help.is_empty() && !metric.help.contains('|'));
        }
        assert_eq!(
            find("webhook_journal_fsync_seconds_bucket"),
            Some(&JOURNAL_FSYNC)
        );
        assert_eq!(find("webhook_queue_depth_count"), None);
    }

    /// The README's table is the catalogue's: run with `UPDATE_README=1` to rewrite it.
    #[test]
    fn the_readme_table_is_the_catalogue() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("read README.md");
        let head = "| metric | type | labels | meaning |\n";
        let start = readme.find(head).expect("the README has a metric table");
        let end = readme[start..]
            .find("\n\n")
            .map_or(readme.len(), |at| start + at + 1);
        let expected = readme_table();
        if readme[start..end] != expected {
            if std::env::var_os("UPDATE_README").is_some() {
                let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
                std::fs::write(path, updated).expect("write README.md");
            } else {
                panic!(
                    "README.md's metric table differs from router/src/metrics/catalogue.rs; \
                     run `UPDATE_README=1 cargo test -p webhook-router --lib metrics::catalogue` \
                     or paste:\n{expected}"
                );
            }
        }
    }
}
