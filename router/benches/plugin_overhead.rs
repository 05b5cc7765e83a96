//! Plugin overhead: what one plugin call costs the ingress, per isolation mode.
//!
//! ```text
//! cargo bench -p webhook-router --bench plugin_overhead
//! ```
//!
//! Runs the bundled `event_filter` plugin (one JSON-pointer condition) on a small GitHub-like
//! JSON event, as the ingress would, with `isolation = "reuse"` (a pooled, configured
//! instance) and `isolation = "fresh"` (a new instance per event, configured then dropped);
//! the `hostile` test guest in its `ok` mode (forwards untouched: the bare cost of crossing into
//! the guest and back); and, as the baseline measured in the same run, the same filter written
//! in native Rust. Criterion reports means; then every case is timed call by call to print
//! p50 and p99, and their ratio to the native baseline.
//!
//! Results and how to read them: `docs/benchmarks.md`.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use http::{HeaderMap, HeaderValue};
use webhook_router::event::Event;
use webhook_router::plugin::{Isolation, LoadedPlugin, PluginLimits, load_plugin, trial};
use webhook_router_tests::wasm::module;

/// Calls timed one by one for the percentiles.
const SAMPLES: usize = 20_000;

const FILTER_CONFIG: &str = r#"{"json": [{"pointer": "/ref", "equals": "refs/heads/main"}]}"#;

fn small_event() -> Event {
    let body = br#"{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","repository":{"id":186853002,"full_name":"Codertocat/Hello-World","private":false},"pusher":{"name":"Codertocat"},"sender":{"login":"Codertocat","id":21031067}}"#;
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", HeaderValue::from_static("push"));
    headers.insert(
        "user-agent",
        HeaderValue::from_static("GitHub-Hookshot/044aadd"),
    );
    trial::trial_event("bench", body.to_vec(), headers)
}

fn load(name: &str, config: &str, isolation: Isolation) -> LoadedPlugin {
    load_plugin(
        &module(name),
        "bench",
        config,
        PluginLimits::default(),
        isolation,
    )
    .unwrap()
}

/// The filter's logic in native Rust: parse the body, compare one pointer.
fn native_filter(event: &Event) -> bool {
    let json: serde_json::Value = serde_json::from_slice(&event.body).unwrap_or_default();
    json.pointer("/ref")
        .is_some_and(|value| value == "refs/heads/main")
}

/// One case: a name and the call it times.
struct Case<'a> {
    name: &'static str,
    call: Box<dyn Fn(&Event) + 'a>,
}

fn main() {
    let event = small_event();
    let reuse = load("event_filter", FILTER_CONFIG, Isolation::Reuse);
    let fresh = load("event_filter", FILTER_CONFIG, Isolation::Fresh);
    let crossing = load("hostile", r#"{"mode": "ok"}"#, Isolation::Reuse);
    let cases = [
        Case {
            name: "native filter (baseline)",
            call: Box::new(|e| assert!(black_box(native_filter(black_box(e))))),
        },
        Case {
            name: "event_filter, reuse",
            call: Box::new(|e| {
                black_box(reuse.handle(black_box(e)).unwrap());
            }),
        },
        Case {
            name: "event_filter, fresh",
            call: Box::new(|e| {
                black_box(fresh.handle(black_box(e)).unwrap());
            }),
        },
        Case {
            name: "no-op guest, reuse",
            call: Box::new(|e| {
                black_box(crossing.handle(black_box(e)).unwrap());
            }),
        },
    ];

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("plugin_call");
    for case in &cases {
        group.bench_function(case.name, |b| b.iter(|| (case.call)(&event)));
    }
    group.finish();
    criterion.final_summary();

    println!(
        "\nper-call percentiles ({SAMPLES} calls each, {}-byte JSON body):\n",
        event.body.len()
    );
    println!("| case | p50 | p99 | p50 ÷ native p50 |");
    println!("|---|---:|---:|---:|");
    let mut native_p50 = None;
    for case in &cases {
        let (p50, p99) = percentiles(|| (case.call)(&event));
        let baseline = *native_p50.get_or_insert(p50);
        println!(
            "| {} | {} | {} | {:.1} |",
            case.name,
            micros(p50),
            micros(p99),
            p50.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}

/// p50 and p99 of `SAMPLES` calls, each timed alone (after a short warm-up).
fn percentiles(call: impl Fn()) -> (Duration, Duration) {
    for _ in 0..1_000 {
        call();
    }
    let mut times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    (times[SAMPLES / 2], times[SAMPLES * 99 / 100])
}

fn micros(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}
