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
//! in native Rust. The filter cases run again on a 64 KiB event. Criterion reports means; then
//! every case is timed call by call to print p50 and p99, and their ratio to the native
//! baseline of the same event. With `PLUGIN_OVERHEAD_SUMMARY=FILE` the percentiles are also
//! written to FILE (`case<TAB>event size<TAB>p50 ns<TAB>p99 ns` lines) for `tests/bench.sh`.
//!
//! Plugin calls are async: each is polled once, inside a tokio runtime's context, as the
//! ingress's request task polls it (a call that finishes without yielding, as these do, costs
//! no more than that poll); one that yields is driven to the end by the runtime. With
//! `isolation = "fresh"` the pool's background refill never runs here (nothing drives the
//! runtime), so "fresh" times an instantiation and configure on the call's own path: the cost a
//! request pays when events outrun the refill.
//!
//! Results and how to read them: `docs/benchmarks.md`.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use http::{HeaderMap, HeaderValue};
use webhook_router::event::Event;
use webhook_router::plugin::{Isolation, LoadedPlugin, PluginLimits, load_plugin, trial};
use webhook_router_tests::wasm::{block_on, module};

/// Calls timed one by one for the percentiles.
const SAMPLES: usize = 20_000;

const FILTER_CONFIG: &str = r#"{"json": [{"pointer": "/ref", "equals": "refs/heads/main"}]}"#;

/// GitHub's push event, cut down; `push_event` pads it.
const PUSH: &str = r#"{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","repository":{"id":186853002,"full_name":"Codertocat/Hello-World","private":false},"pusher":{"name":"Codertocat"},"sender":{"login":"Codertocat","id":21031067}}"#;

/// The push event, with a `"pad"` string that makes it `bytes` long if it is shorter.
fn push_event(bytes: usize) -> Event {
    // PUSH without its closing brace, then `,"pad":"…"}`.
    let frame = PUSH.len() - 1 + r#","pad":""}"#.len();
    let body = match bytes.checked_sub(frame) {
        Some(pad) => format!(
            r#"{},"pad":"{}"}}"#,
            &PUSH[..PUSH.len() - 1],
            "x".repeat(pad)
        ),
        None => PUSH.to_owned(),
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", HeaderValue::from_static("push"));
    headers.insert(
        "user-agent",
        HeaderValue::from_static("GitHub-Hookshot/044aadd"),
    );
    trial::trial_event("bench", body.into_bytes(), headers)
}

fn load(name: &str, config: &str, isolation: Isolation) -> &'static LoadedPlugin {
    // The plugins live as long as the process.
    Box::leak(Box::new(
        block_on(load_plugin(
            &module(name),
            "bench",
            config,
            // A generous time limit: a benchmark measures, it does not enforce, and a machine
            // stalled for 10 ms must not end the run.
            PluginLimits {
                time: Duration::from_secs(1),
                ..PluginLimits::default()
            },
            isolation,
        ))
        .unwrap(),
    ))
}

/// The filter's logic in native Rust: parse the body, compare one pointer.
fn native_filter(event: &Event) -> bool {
    let json: serde_json::Value = serde_json::from_slice(&event.body).unwrap_or_default();
    json.pointer("/ref")
        .is_some_and(|value| value == "refs/heads/main")
}

/// One case: a name, the event it runs on and the call it times.
struct Case<'a> {
    name: &'static str,
    event: &'a Event,
    call: Box<dyn Fn(&Event)>,
}

fn native() -> Box<dyn Fn(&Event)> {
    Box::new(|e| assert!(black_box(native_filter(black_box(e)))))
}

fn plugin(
    plugin: &'static LoadedPlugin,
    runtime: &'static tokio::runtime::Runtime,
) -> Box<dyn Fn(&Event)> {
    Box::new(move |e| {
        black_box(run_now(runtime, plugin.handle(black_box(e))).unwrap());
    })
}

/// Polls `future` once, as a task would; if it yields, drives it to the end on `runtime`.
fn run_now<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => runtime.block_on(future),
    }
}

fn main() {
    let small = push_event(0);
    let large = push_event(64 * 1024);
    let reuse = load("event_filter", FILTER_CONFIG, Isolation::Reuse);
    let fresh = load("event_filter", FILTER_CONFIG, Isolation::Fresh);
    let crossing = load("hostile", r#"{"mode": "ok"}"#, Isolation::Reuse);
    // The context plugin calls run in (their timers, the pool's refill task).
    let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    ));
    let _context = runtime.enter();
    let plugin = |loaded| plugin(loaded, runtime);
    let case = |name, event, call| Case { name, event, call };
    let cases = [
        case("native filter (baseline)", &small, native()),
        case("event_filter, reuse", &small, plugin(reuse)),
        case("event_filter, fresh", &small, plugin(fresh)),
        case("no-op guest, reuse", &small, plugin(crossing)),
        case("native filter (baseline)", &large, native()),
        case("event_filter, reuse", &large, plugin(reuse)),
        case("event_filter, fresh", &large, plugin(fresh)),
    ];

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("plugin_call");
    for case in &cases {
        let id = format!("{}, {}", case.name, size(case.event));
        group.bench_function(id, |b| b.iter(|| (case.call)(case.event)));
    }
    group.finish();
    criterion.final_summary();

    println!("\nper-call percentiles ({SAMPLES} calls each):\n");
    println!("| case | event | p50 | p99 | p50 ÷ native p50 |");
    println!("|---|---:|---:|---:|---:|");
    let mut summary = String::new();
    let mut native_p50 = Duration::ZERO;
    for case in &cases {
        let (p50, p99) = percentiles(|| (case.call)(case.event));
        if case.name.starts_with("native") {
            native_p50 = p50;
        }
        println!(
            "| {} | {} | {} | {} | {:.1} |",
            case.name,
            size(case.event),
            micros(p50),
            micros(p99),
            p50.as_secs_f64() / native_p50.as_secs_f64()
        );
        summary.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            case.name,
            size(case.event),
            p50.as_nanos(),
            p99.as_nanos()
        ));
    }
    if let Some(path) = std::env::var_os("PLUGIN_OVERHEAD_SUMMARY") {
        std::fs::write(&path, summary).unwrap();
    }
}

/// An event's body size, as the suite's table writes it.
fn size(event: &Event) -> String {
    match event.body.len() {
        n if n >= 1024 => format!("{} KiB", n / 1024),
        n => format!("{n} B"),
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
