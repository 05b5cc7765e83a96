//! What the event record costs in memory: a record of 100 000 typical events (a GitHub delivery
//! id, one plugin verdict, one destination delivered at the first attempt, no body) recorded
//! through the hooks the ingress and delivery call, full and then turned almost once more (so
//! its index holds the most it ever does, two turns' entries, just before a purge), and the
//! growth of this process's resident set, per 10 000 events held. The figure is stated in `docs/benchmarks.md` ("Event record"); this test
//! holds it to its bound. (Alone in its binary, so no other test's memory is counted.)

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use webhook_router::Config;
use webhook_router::delivery::attempt::AttemptOutcome;
use webhook_router::event::Event;
use webhook_router::inspect::{Decision, Inspector, Name, PluginVerdict};
use webhook_router::metrics::Metrics;
use webhook_router::supervise::Supervisor;
use webhook_router_tests::process_stats::resident_bytes;

/// The record's capacity: the events it holds.
const EVENTS: usize = 100_000;
/// The bound this test holds the measured cost to, per 10 000 events.
const BOUND_PER_10K: u64 = 8 * 1024 * 1024;

fn record_one(inspector: &Inspector) {
    let id = Event::new_id();
    let mut headers = HeaderMap::new();
    let delivery = Event::new_id();
    headers.insert(
        "x-github-delivery",
        HeaderValue::from_str(&delivery).expect("header"),
    );
    headers.insert("x-github-event", HeaderValue::from_static("push"));
    let event = Event {
        id: id.clone(),
        route: "github".to_owned(),
        method: Method::POST,
        path: "/hooks/github".to_owned(),
        query: String::new(),
        headers,
        body: Bytes::from_static(br#"{"ref":"refs/heads/main"}"#),
        received_at: SystemTime::now(),
        plugin_headers: None,
        order_key: None,
        trace: None,
    };
    inspector.received(&event, None, None::<[Name; 0]>);
    inspector.decided(
        &id,
        vec![PluginVerdict::new("event-filter", "pass", None)],
        Decision::Queued,
        [Name::intern("sink")],
    );
    inspector.attempt(
        &id,
        "sink",
        SystemTime::now(),
        Duration::from_micros(2_500),
        &AttemptOutcome::Delivered { status: 200 },
    );
}

#[test]
fn ten_thousand_typical_records_stay_within_their_stated_memory() {
    let config = Config::parse(
        &format!(
            "[inspect]\nevents = {EVENTS}\n\
             [destinations.sink]\nurl = \"http://127.0.0.1:9/\"\n\
             [[routes]]\nid = \"github\"\npath = \"/hooks/github\"\ndestinations = [\"sink\"]\n\
             verify = {{ preset = \"github\", secrets = [\"s3cret\"] }}\n"
        ),
        Path::new("memory.toml"),
    )
    .expect("valid config");
    let metrics = Metrics::new();
    let supervisor = Supervisor::new(metrics.clone());
    let inspector = Inspector::open(&config, None, &metrics, &supervisor);
    let store = inspector.store().expect("the record is on");
    let before = resident_bytes().expect("VmRSS");
    // Full, then each arrival evicts the oldest; the index is purged at each turn's end.
    for _ in 0..2 * EVENTS - 1 {
        record_one(&inspector);
    }
    let after = resident_bytes().expect("VmRSS");
    assert_eq!(store.len(), EVENTS);
    let per_10k = after.saturating_sub(before) / (EVENTS as u64 / 10_000);
    eprintln!(
        "event record: {} KiB per 10 000 events ({} B per event)",
        per_10k / 1024,
        per_10k / 10_000
    );
    assert!(
        per_10k > 0 && per_10k <= BOUND_PER_10K,
        "{per_10k} B per 10 000 events, bound {BOUND_PER_10K}"
    );
}
