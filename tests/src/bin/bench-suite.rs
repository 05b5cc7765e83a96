//! The benchmark suite: every figure `docs/benchmarks.md` records, each against a baseline
//! measured in the same run, printed as one table.
//!
//! ```text
//! ./tests/bench.sh            # builds the plugins, runs the plugin-overhead bench, then this
//! cargo run --release -p webhook-router-tests --bin bench-suite -- --help
//! ```
//!
//! For each payload size (1 KiB and 64 KiB by default), rows 1–4 run in `--rounds` rounds (3),
//! each round running them back to back, so that every ratio compares runs seconds apart; the
//! table gives the median round's ratio and the range. Then rows 5 and 6:
//!
//! 1. **bare hyper**: wrk against [`BareServer`], which reads the body and answers 202. Every
//!    wrk row uses the same script: the same GitHub-signed JSON body and headers, the same
//!    connections, the same duration.
//! 2. **ingest**: wrk against a router route with no verification and no plugins, whose
//!    destination never answers, so deliveries park and the router spends its CPU on ingress
//!    (accept, route, read, enqueue, answer). Ratio to 1.
//! 3. **ingest + GitHub HMAC + event-filter**: the same with `verify = github` and one
//!    `event-filter` plugin that parses the body (a JSON-pointer condition) and passes it.
//!    Goal ≥ 0.60 × bare.
//! 4. **end to end**: wrk against a plain route delivering to a bare hyper destination;
//!    delivered/s counts every accepted event up to the last delivery.
//!
//! Rows 2 and 4 run again with `[queue] backend = "journal"` and `fsync = "always"` (every 202
//! after its event is on disk, concurrent requests sharing a sync; `--journal-fsync` to
//! change): **ingest, journal**, goal ≥ 0.45 × bare, and **end to end, journal**, both for
//! 1 KiB events (larger payloads are measured without a goal).
//!
//! Each round also runs the end-to-end peers and variants, each delivering to a bare hyper
//! destination on a thread of its own (whose CPU time is subtracted from this process's, so
//! **CPU µs per delivered event** is the router's alone), every one also given as a ratio to
//! the first:
//!
//! - **nginx relay**: wrk against nginx (`proxy_pass`, upstream keep-alive, its own prefix on a
//!   free port; installed by `tests/bench.sh`) relaying to the same destination; CPU is
//!   nginx's. Plain route end to end goal ≥ 1.0 × relay; with the journal ≥ 0.9 ×.
//! - **full pipeline** (GitHub HMAC + event-filter + delivery), memory and journal: goals
//!   ≥ 0.30 and ≥ 0.25 × bare hyper.
//! - **http2 destination (h2c)**: the plain route, its destination set to `http2 = true`, to
//!   bare hyper speaking only h2c: the deliveries multiplexed on one connection.
//! - **logging at info**: the plain route in a `webhook-router serve` process (`--router-binary`,
//!   by default the one beside this program) at the default log level, its log appended to a
//!   file: logging's cost against the in-process router, whose log goes nowhere.
//!
//! With a `nats-server` (installed by `tests/servers.sh`), each round also runs the NATS
//! backend on a fresh server: **ingest, NATS** (deliveries parked; goal ≥ 0.35 × bare at
//! 1 KiB), **end to end, NATS, one router**, and **two routers** on the same stream (wrk to
//! the first, both delivering). On a 2-core machine the two routers, the server, wrk and the
//! destination share the same cores: that row shows the work is shared, not that it scales.
//!
//! 5. **latency** at a quarter of row 4's rate: requests sent at a fixed rate by the in-process
//!    generator, each stamped when sent and when the destination received it; p50/p99 of the
//!    difference. Baseline: the same rate sent straight to the destination. Goal p99 ≤ 2 ms.
//! 6. **memory**: in a fresh child process, RSS growth per event while a paused destination
//!    holds `--held-events` events (100 000). Goal ≤ payload + 1 KiB.
//! 7. **journal recovery** (first payload size only): a journaled router holds `--held-events`
//!    events for a paused destination and is stopped; the time a new router takes to start on
//!    that journal (reading every event back), against starting on an empty one. Goal ≤ 2 s.
//!    With it, the journal's disk bytes per held event, against the payload.
//!
//! **soak** (first payload size, `--soak`, 10 minutes; `0s` skips it): a router process takes
//! the plain route at half the plain end-to-end rate; its RSS and the ingest → delivery p99 per
//! `--soak-interval` (1 minute), the last interval's against the second's: goals ≤ 1.10 × and
//! ≤ 1.5 ×.
//!
//! 8. **plugin timeouts under load** (first payload size only): `--hog-events` (100 000) events
//!    through the verifying route with two busy processes (`sh -c 'while :; do :; done'`)
//!    beside the router, against the same without them; the plugin timeouts counted. Goal: 0.
//!
//! 9. **ordered delivery across keys** (first payload size only): `--ordered-events` (20 000)
//!    events over 100 keys, each key's sent on a connection of its own, one after the other
//!    (as an ordering sender sends them), through a route with `order_by_header`, delivered to
//!    bare hyper; delivered/s against the same load through a route without it, on the memory
//!    queue, the journal and NATS (one router; with a `nats-server`). Goal ≥ 0.50 (within 2 ×).
//! 10. **tracing** (first payload size only): rows 2 and 3 with OpenTelemetry tracing on at
//!     sampling 1.0 (`[telemetry]`), exporting to a bare OTLP receiver, against the same rows
//!     untraced, `--tracing-rounds` (3) runs each. They run last, every untraced run first: the
//!     trace layer, once installed in this process, stays. `--only-tracing` runs only these.
//! 11. **delivery client floor** (first payload size; before the tracing rows): bare hyper on
//!     a thread of its own receives `--client-floor-requests` (100 000) POSTs, 32 in flight,
//!     from reqwest (the router's client, `Client::execute`), from hyper-util's pooled client
//!     underneath it and from bare hyper connections: requests/s and CPU µs per request, and
//!     reqwest's CPU against hyper-util's. `--only-client-floor` runs only these (under
//!     callgrind: instructions per request from two runs of N and 2N requests).
//!
//! Plugin overhead (criterion, `router/benches/plugin_overhead.rs`) is read from the summary
//! that bench writes (`--plugin-overhead FILE`; `tests/bench.sh` passes it).
//!
//! Everything runs on loopback, bounded in time or count, and stops by itself. wrk is
//! installed with apt-get if missing. Nothing is asserted: the goals are reported, met or not.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use http::HeaderMap;
use webhook_router_tests::bare::BareServer;
use webhook_router_tests::client_floor::{self, FloorClient};
use webhook_router_tests::load::{self, Stamps, Target, numbered_body, quantile};
use webhook_router_tests::nats::NatsServer;
use webhook_router_tests::nginx::NginxRelay;
use webhook_router_tests::process::RouterProcess;
use webhook_router_tests::process_stats::{
    cpu_time, cpu_time_of, resident_bytes, resident_bytes_of,
};
use webhook_router_tests::wrk::{self, Wrk, WrkRun, WrkScript};
use webhook_router_tests::{Reply, Sink, TestRouter};

/// The GitHub webhook secret of the verifying route.
const GITHUB_SECRET: &str = "bench-secret";
/// Route paths.
const PLAIN_PATH: &str = "/hooks/plain";
const VERIFIED_PATH: &str = "/hooks/github";
const ORDERED_PATH: &str = "/hooks/ordered";
/// Keys of the ordered-delivery row.
const ORDERED_KEYS: u64 = 100;
/// The journaled rows' `fsync` setting (`--journal-fsync`).
static JOURNAL_FSYNC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// The routers' `[inspect] events` (`--inspect-events`; the router's default if not given).
static INSPECT_EVENTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
/// The keys of the benchmarked destination after its `url`.
const DESTINATION_KEYS: &str = "timeout = \"60s\"\n";
/// The same with `http2 = true`.
const H2C_DESTINATION_KEYS: &str = "timeout = \"60s\"\nhttp2 = true\n";
/// Where the journaled rows keep their journals (removed after each run).
const JOURNAL_DIR: &str = "target/bench/journal";
/// Events sent (and held) before the memory measurement starts, to warm the allocator,
/// connections and queue.
const MEMORY_WARM_UP_EVENTS: u64 = 2_000;

/// Benchmark suite: ingest, end-to-end, latency, memory and plugin overhead, each with its
/// same-run baseline.
#[derive(Debug, Parser)]
#[command(name = "bench-suite")]
struct Args {
    /// How long each wrk run lasts for payloads up to 16 KiB (whole seconds).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long each wrk run lasts for larger payloads, whose parked runs hold every accepted
    /// event in memory (whole seconds).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    large_duration: Duration,
    /// Rounds of the wrk rows (bare hyper, then each router row, back to back); the table
    /// gives the median round's ratio and the range.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Open connections wrk keeps.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads; wrk shares the machine's cores with the servers.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Payload sizes in bytes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1024_usize, 65_536])]
    payloads: Vec<usize>,
    /// How long the fixed-rate latency run sends.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    latency_duration: Duration,
    /// Events held by the paused destination in the memory row.
    #[arg(long, default_value_t = 100_000)]
    held_events: u64,
    /// The summary `router/benches/plugin_overhead.rs` wrote (its `PLUGIN_OVERHEAD_SUMMARY`).
    #[arg(long)]
    plugin_overhead: Option<PathBuf>,
    /// The journaled rows' `fsync` (`always`, `interval` or `never`); the goals are for `always`.
    #[arg(long, default_value = "always", value_parser = ["always", "interval", "never"])]
    journal_fsync: String,
    /// Events sent through event-filter for the CPU-hog row (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    hog_events: u64,
    /// Events sent over 100 keys for the ordered-delivery row (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    ordered_events: u64,
    /// The routers' `[inspect] events`: 0 turns the event record off, to compare ingest with
    /// it on (the default, 10 000) and off.
    #[arg(long)]
    inspect_events: Option<usize>,
    /// Pairs of ingest runs with the event record off and on (its default, 10 000 events),
    /// back to back in alternating order, on the memory queue and the journal (0 skips them).
    #[arg(long, default_value_t = 3)]
    record_rounds: u32,
    /// Runs only the event-record rows (off against on).
    #[arg(long)]
    only_record: bool,
    /// Runs of each traced-ingest row and of its untraced baseline (0 skips them).
    #[arg(long, default_value_t = 3)]
    tracing_rounds: u32,
    /// Runs only the traced-ingest rows (and their baselines).
    #[arg(long)]
    only_tracing: bool,
    /// The `webhook-router` binary for the rows run in a router process (logging at `info`,
    /// the soak); by default the one beside this program (`cargo build --release -p
    /// webhook-router`). Those rows are skipped, and said so, without it.
    #[arg(long)]
    router_binary: Option<PathBuf>,
    /// How long the soak runs (at half the plain end-to-end rate, first payload size); 0s
    /// skips it.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    soak: Duration,
    /// The soak's sampling interval: RSS and p99 are given per interval, and the second
    /// interval's compared with the last's.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    soak_interval: Duration,
    /// POSTs each delivery client sends in the client-floor rows, after a warm-up (0 skips
    /// them).
    #[arg(long, default_value_t = 100_000)]
    client_floor_requests: u64,
    /// The clients of the client-floor rows, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [FloorClient::Reqwest,
        FloorClient::HyperUtil, FloorClient::Hyper])]
    client_floor_clients: Vec<FloorClient>,
    /// Runs only the client-floor rows (under callgrind, say).
    #[arg(long)]
    only_client_floor: bool,
    /// Internal: measure held memory for this payload size in this process and print it.
    #[arg(long, hide = true)]
    memory_child: Option<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = JOURNAL_FSYNC.set(args.journal_fsync.clone());
    if let Some(events) = args.inspect_events {
        let _ = INSPECT_EVENTS.set(events);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    if let Some(payload) = args.memory_child {
        let measured = runtime.block_on(held_memory(payload, args.held_events))?;
        println!("{MEMORY_TAG} {measured}");
        // Parked deliveries never end: leave without waiting for them.
        std::process::exit(0);
    }
    if args.only_client_floor {
        let rows = runtime.block_on(client_floor_rows(&args))?;
        print_table(&rows);
        return Ok(());
    }
    for duration in [args.duration, args.large_duration, args.latency_duration] {
        ensure!(
            duration.as_secs() >= 1 && duration.subsec_nanos() == 0,
            "durations must be whole seconds (wrk's resolution), got {}",
            humantime::format_duration(duration)
        );
    }
    ensure!(
        args.payloads.iter().all(|&p| p >= 64),
        "payloads must be at least 64 bytes"
    );
    wrk::ensure_installed()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "bench-suite: {cpus} CPU(s) shared by wrk and the servers; wrk -t{} -c{}; payloads {:?} \
         bytes; {} round(s) of {} s wrk runs ({} s over 16 KiB); journal fsync = {}; inspect \
         events = {}",
        args.threads,
        args.connections,
        args.payloads,
        args.rounds,
        args.duration.as_secs(),
        args.large_duration.as_secs(),
        args.journal_fsync,
        args.inspect_events
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
    );
    let router_binary = args.router_binary.clone().or_else(|| {
        let beside = std::env::current_exe()
            .ok()?
            .with_file_name("webhook-router");
        beside.is_file().then_some(beside)
    });
    let mut rows = Vec::new();
    if args.record_rounds > 0 && !args.only_tracing {
        rows.extend(runtime.block_on(record_rows(&args, args.payloads[0]))?);
    }
    for (index, &payload) in args.payloads.iter().enumerate() {
        if args.only_tracing || args.only_record {
            break;
        }
        let (payload_rows, delivered) =
            runtime.block_on(payload_rows(&args, payload, router_binary.as_deref()))?;
        rows.extend(payload_rows);
        rows.push(memory_row(&args, payload)?);
        if index == 0 {
            match (&router_binary, args.soak.is_zero()) {
                (_, true) => {}
                (None, false) => println!("  soak skipped: no webhook-router binary"),
                (Some(binary), false) => {
                    rows.extend(runtime.block_on(soak_rows(&args, payload, delivered, binary))?);
                }
            }
            rows.extend(runtime.block_on(recovery_rows(&args, payload))?);
            if args.hog_events > 0 {
                rows.push(runtime.block_on(hog_row(args.hog_events, payload))?);
            }
            if args.ordered_events > 0 {
                for backend in ["memory", "journal"] {
                    rows.push(runtime.block_on(ordered_row(
                        args.ordered_events,
                        payload,
                        backend,
                    ))?);
                }
                if webhook_router_tests::nats::find_binary().is_some() {
                    rows.push(runtime.block_on(ordered_row(
                        args.ordered_events,
                        payload,
                        "NATS",
                    ))?);
                }
            }
        }
    }
    if let Some(path) = &args.plugin_overhead
        && !args.only_tracing
        && !args.only_record
    {
        rows.extend(plugin_rows(path)?);
    }
    if args.client_floor_requests > 0 && !args.only_tracing && !args.only_record {
        rows.extend(runtime.block_on(client_floor_rows(&args))?);
    }
    if args.tracing_rounds > 0 && !args.only_record {
        rows.extend(runtime.block_on(tracing_rows(&args, args.payloads[0]))?);
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    print_table(&rows);
    Ok(())
}

/// One line of the final table.
#[derive(Debug)]
struct Row {
    name: String,
    payload: String,
    measured: String,
    baseline: String,
    ratio: String,
    /// End-to-end rows: delivered/s against the nginx relay's in the same rounds.
    relay: String,
    goal: &'static str,
    met: Option<bool>,
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| row | payload | measured | baseline (same run) | ratio | × nginx relay | goal | met |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.payload,
            row.measured,
            row.baseline,
            row.ratio,
            row.relay,
            row.goal,
            match row.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            }
        );
    }
}

/// Rows 1–5 for one payload size.
/// Also returns the plain route's end-to-end delivered/s (median round).
async fn payload_rows(
    args: &Args,
    payload: usize,
    router_binary: Option<&Path>,
) -> Result<(Vec<Row>, f64)> {
    let size = format_size(payload);
    let seconds = if payload > 16 * 1024 {
        args.large_duration
    } else {
        args.duration
    }
    .as_secs();
    let wrk = Wrk {
        threads: args.threads,
        connections: args.connections,
        seconds,
    };
    let script = wrk_script(payload)?;
    println!(
        "\n== payload {size}: {} round(s) of {seconds} s wrk runs",
        args.rounds
    );

    // Rows 1–4, in rounds: each round runs bare hyper and then each router row back to back,
    // so every ratio compares runs a few seconds apart; the table gives the median round.
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        println!("  round {round} of {}", args.rounds);
        // Boxed: the round holds every scenario's state, too large a future for the stack.
        rounds.push(Box::pin(wrk_round(&wrk, &script, router_binary)).await?);
    }
    let median_of = |value: &dyn Fn(&Round) -> f64| median(rounds.iter().map(value).collect());
    let bare_rps = |r: &Round| r.bare.run.requests_per_sec;
    let ratio_row = |name: &str,
                     goal: &'static str,
                     target: Option<f64>,
                     value: &dyn Fn(&Round) -> f64,
                     measured: String| {
        let ratios: Vec<f64> = rounds.iter().map(|r| value(r) / bare_rps(r)).collect();
        let (low, high) = min_max(&ratios);
        let ratio = median(ratios);
        Row {
            name: name.to_owned(),
            payload: size.clone(),
            measured,
            baseline: format!(
                "{}/s, {}",
                format_rate(median_of(&bare_rps)),
                format_cpu(median_of(&|r| r.bare.cpu_us()))
            ),
            ratio: format!("{ratio:.2} ({low:.2}–{high:.2})"),
            relay: String::new(),
            goal,
            met: target.map(|target| ratio >= target),
        }
    };
    let ingest_measured = |run: &dyn Fn(&Round) -> &Measured| {
        format!(
            "{}/s, {}",
            format_rate(median_of(&|r| run(r).run.requests_per_sec)),
            format_cpu(median_of(&|r| run(r).cpu_us()))
        )
    };
    let delivered = median_of(&|r| r.end_to_end.delivered_per_sec);
    // The journal's goals are set for 1 KiB events; larger payloads are measured, not judged.
    let journal_goal = (payload <= 1024).then_some(());
    let has_relay = rounds.iter().all(|r| r.relay.is_some());
    // An end-to-end row: delivered/s against bare hyper and against the nginx relay (median
    // round and range of each), the CPU per delivered event, and a goal on either ratio.
    let e2e_row = |name: &str,
                   goal: &'static str,
                   bare_target: Option<f64>,
                   relay_target: Option<f64>,
                   runs: &dyn Fn(&Round) -> &EndToEnd| {
        let mut row = ratio_row(name, goal, bare_target, &|r| runs(r).delivered_per_sec, {
            format!(
                "{}/s (accepted {}/s), {}",
                format_rate(median_of(&|r| runs(r).delivered_per_sec)),
                format_rate(median_of(&|r| runs(r).run.run.requests_per_sec)),
                format_cpu_per_event(median_of(&|r| runs(r).cpu_us()))
            )
        });
        if has_relay {
            let ratios: Vec<f64> = rounds
                .iter()
                .map(|r| runs(r).delivered_per_sec / relay(r).delivered_per_sec)
                .collect();
            let (low, high) = min_max(&ratios);
            let ratio = median(ratios);
            row.relay = format!("{ratio:.2} ({low:.2}–{high:.2})");
            if let Some(target) = relay_target {
                row.met = Some(ratio >= target);
            }
        } else if relay_target.is_some() {
            row.relay = "no nginx".to_owned();
            row.met = None;
        }
        if !rounds.iter().all(|r| runs(r).drained) {
            row.measured
                .push_str(", INCOMPLETE: some accepted events were not delivered in 60 s");
            row.met = Some(false);
        }
        row
    };
    let mut rows = vec![
        ratio_row(
            "ingest, no verify, no plugins (req/s)",
            "",
            None,
            &|r| r.plain.run.requests_per_sec,
            ingest_measured(&|r| &r.plain),
        ),
        ratio_row(
            "ingest, GitHub HMAC + event-filter (req/s)",
            "≥ 0.60",
            Some(0.60),
            &|r| r.verified.run.requests_per_sec,
            ingest_measured(&|r| &r.verified),
        ),
        ratio_row(
            "ingest, journal (req/s)",
            journal_goal.map_or("", |_| "≥ 0.45"),
            journal_goal.map(|_| 0.45),
            &|r| r.journaled.run.requests_per_sec,
            ingest_measured(&|r| &r.journaled),
        ),
    ];
    if has_relay {
        let mut row = e2e_row(
            "nginx relay (proxy_pass, upstream keep-alive), delivered/s",
            "",
            None,
            None,
            &|r| relay(r),
        );
        row.relay = "1.00".to_owned();
        rows.push(row);
    } else {
        println!("  nginx relay row skipped: no nginx (tests/bench.sh installs it)");
    }
    rows.extend([
        e2e_row(
            "end to end, plain route, delivered/s",
            "≥ 1.0 × relay",
            None,
            Some(1.0),
            &|r| &r.end_to_end,
        ),
        e2e_row(
            "end to end, plain route, http2 destination (h2c), delivered/s",
            "",
            None,
            None,
            &|r| &r.h2c_end_to_end,
        ),
        e2e_row(
            "end to end, plain route, journal, delivered/s",
            journal_goal.map_or("", |_| "≥ 0.9 × relay"),
            None,
            journal_goal.map(|_| 0.9),
            &|r| &r.journaled_end_to_end,
        ),
        e2e_row(
            "end to end, GitHub HMAC + event-filter, delivered/s",
            "≥ 0.30",
            Some(0.30),
            None,
            &|r| &r.pipeline,
        ),
        e2e_row(
            "end to end, GitHub HMAC + event-filter, journal, delivered/s",
            journal_goal.map_or("", |_| "≥ 0.25"),
            journal_goal.map(|_| 0.25),
            None,
            &|r| &r.journaled_pipeline,
        ),
    ]);
    if rounds.iter().all(|r| r.logged.is_some()) {
        rows.push(e2e_row(
            "end to end, plain route, router process logging at info to a file, delivered/s",
            "",
            None,
            None,
            &|r| r.logged.as_ref().expect("logged runs"),
        ));
    } else {
        println!("  logging row skipped: no webhook-router binary (--router-binary)");
    }
    if rounds.iter().all(|r| r.nats.is_some()) {
        fn nats(r: &Round) -> &NatsRuns {
            r.nats.as_ref().expect("NATS runs")
        }
        rows.push(ratio_row(
            "ingest, NATS (req/s)",
            journal_goal.map_or("", |_| "≥ 0.35"),
            journal_goal.map(|_| 0.35),
            &|r| nats(r).ingest.run.requests_per_sec,
            ingest_measured(&|r| &nats(r).ingest),
        ));
        rows.push(e2e_row(
            "end to end, NATS, one router, delivered/s",
            "",
            None,
            None,
            &|r| &nats(r).end_to_end,
        ));
        rows.push(e2e_row(
            "end to end, NATS, two routers (CPU: both), delivered/s",
            "",
            None,
            None,
            &|r| &nats(r).two_routers,
        ));
    } else {
        println!("  NATS rows skipped: no nats-server (tests/servers.sh installs it)");
    }

    // 5. Latency at a quarter of the end-to-end rate.
    let rate = (delivered / 4.0).max(100.0);
    let (direct, routed) = latency_runs(args, payload, rate).await?;
    rows.push(Row {
        name: format!("ingest → delivery latency p50 / p99 at {rate:.0}/s (¼ of end to end)"),
        payload: size,
        measured: format!(
            "{} / {}",
            format_duration(routed.p50),
            format_duration(routed.p99)
        ),
        baseline: format!(
            "{} / {} straight to the destination",
            format_duration(direct.p50),
            format_duration(direct.p99)
        ),
        ratio: format!(
            "{:.1} (p99)",
            routed.p99.as_secs_f64() / direct.p99.as_secs_f64().max(1e-9)
        ),
        relay: String::new(),
        goal: "p99 ≤ 2 ms",
        met: Some(routed.complete && routed.p99 <= Duration::from_millis(2)),
    });
    Ok((rows, delivered))
}

/// The wrk script every wrk row sends: a GitHub-signed `push` with a `payload`-byte body.
fn wrk_script(payload: usize) -> Result<WrkScript> {
    let body = numbered_body(0, payload);
    let body_text = std::str::from_utf8(&body).context("the payload is ASCII")?;
    let mut headers = vec![("X-GitHub-Event".to_owned(), "push".to_owned())];
    headers.extend(webhook_router_tests::signing::sign(
        "github",
        GITHUB_SECRET,
        &body,
        0,
    ));
    WrkScript::write(&format!("bench-{payload}"), body_text, &headers)
}

/// The wrk load of the same-run comparisons (runs of `--duration`), its script for `payload`
/// and the payload's size as shown.
fn ingest_load(args: &Args, payload: usize) -> Result<(Wrk, WrkScript, String)> {
    let wrk = Wrk {
        threads: args.threads,
        connections: args.connections,
        seconds: args.duration.as_secs(),
    };
    Ok((wrk, wrk_script(payload)?, format_size(payload)))
}

/// Rows 9 and 9v: ingest on the plain and the verifying route (deliveries parked) with tracing
/// on at sampling 1.0, against the same untraced. Every untraced run comes first, since the
/// trace layer stays installed in this process once it is; each run is on a fresh router.
async fn tracing_rows(args: &Args, payload: usize) -> Result<Vec<Row>> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use webhook_router::config::TelemetryConfig;
    use webhook_router::telemetry::Tracing;

    let (wrk, script, size) = ingest_load(args, payload)?;
    println!(
        "\n== tracing, payload {size}: {} run(s) of each row untraced, then traced",
        args.tracing_rounds
    );
    let parked = Sink::start(|_| Reply::hang()).await;
    let routes = [
        ("ingest, no verify, no plugins", PLAIN_PATH),
        ("ingest, GitHub HMAC + event-filter", VERIFIED_PATH),
    ];
    let runs = async |label: &str| -> Result<Vec<Vec<Measured>>> {
        let mut runs: Vec<Vec<Measured>> = routes.iter().map(|_| Vec::new()).collect();
        for _ in 0..args.tracing_rounds {
            for (index, (name, path)) in routes.iter().enumerate() {
                let router =
                    TestRouter::start(&router_config(&parked.url("/sink"), Queue::Memory)).await;
                let name = format!("{name}, {label}");
                let run = measured_run(&name, &wrk, &script, &router.url(path)).await?;
                explain_refusals(&router, &run).await;
                runs[index].push(run);
                let _ = router.router.shutdown().await;
            }
        }
        Ok(runs)
    };
    let untraced = runs("untraced").await?;
    let receiver = BareServer::start().await?;
    let config = TelemetryConfig {
        otlp_endpoint: receiver.url("/v1/traces"),
        service_name: "bench-suite".to_owned(),
        sampling: 1.0,
    };
    let (tracing, layer) = Tracing::start(&config)?;
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .context("the trace layer must be the first subscriber of this process")?;
    let traced = runs("traced").await?;
    // The exporter sends what is left from its own thread; waiting for it blocks.
    tokio::task::spawn_blocking(move || tracing.shutdown()).await?;
    println!(
        "      the OTLP receiver took {} exports (up to 512 spans each)",
        receiver.requests()
    );
    Ok(routes
        .iter()
        .zip(untraced.iter().zip(&traced))
        .map(|((name, _), (off, on))| {
            paired_row(
                format!("{name}, traced at sampling 1.0 (req/s)"),
                &size,
                (on, off),
                "untraced",
                None,
            )
        })
        .collect())
}

/// The event record's cost (#22: ingest with it on within 5 % of it off): ingest on the plain
/// route, memory queue and journal, with `[inspect] events = 0` and with the default, in pairs
/// run back to back, the pair's order alternating between rounds so that a drift of the
/// machine weighs on both sides alike. Each pair gives a ratio; the row shows their median.
async fn record_rows(args: &Args, payload: usize) -> Result<Vec<Row>> {
    let (wrk, script, size) = ingest_load(args, payload)?;
    println!(
        "\n== event record, payload {size}: {} pair(s) of ingest runs, record off and on",
        args.record_rounds
    );
    let parked = Sink::start(|_| Reply::hang()).await;
    let mut rows = Vec::new();
    for journaled in [false, true] {
        let mut off = Vec::new();
        let mut on = Vec::new();
        for round in 0..args.record_rounds {
            let order: [(bool, &str); 2] = if round % 2 == 0 {
                [(false, "off"), (true, "on")]
            } else {
                [(true, "on"), (false, "off")]
            };
            for (recording, label) in order {
                let dir = journaled.then(|| journal_dir("record")).transpose()?;
                let queue = dir.as_deref().map_or(Queue::Memory, Queue::Journal);
                let record = (!recording).then_some(0);
                let config = router_config_recording(&parked.url("/sink"), queue, record);
                let router = TestRouter::start(&config).await;
                let name = format!("ingest, record {label}");
                let run = measured_run(&name, &wrk, &script, &router.url(PLAIN_PATH)).await?;
                explain_refusals(&router, &run).await;
                let _ = router.router.shutdown().await;
                if let Some(dir) = dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                if recording { &mut on } else { &mut off }.push(run);
            }
        }
        let queue = if journaled { "journal" } else { "memory queue" };
        rows.push(paired_row(
            format!("ingest, no verify, no plugins, {queue}, event record on (req/s)"),
            &size,
            (&on, &off),
            "record off",
            Some((0.95, "≥ 0.95")),
        ));
    }
    Ok(rows)
}

/// A row of `on` runs against `off` runs of the same load, paired run by run (same-run
/// comparisons): each side's median req/s and CPU per request, and the median of the pairs'
/// on ÷ off req/s with their range; `goal` is the least ratio wanted and how it reads, if any.
fn paired_row(
    name: String,
    size: &str,
    (on, off): (&[Measured], &[Measured]),
    off_label: &str,
    goal: Option<(f64, &'static str)>,
) -> Row {
    let rate = |runs: &[Measured]| median(runs.iter().map(|r| r.run.requests_per_sec).collect());
    let cpu = |runs: &[Measured]| median(runs.iter().map(Measured::cpu_us).collect());
    let ratios: Vec<f64> = off
        .iter()
        .zip(on)
        .map(|(off, on)| on.run.requests_per_sec / off.run.requests_per_sec)
        .collect();
    let (low, high) = min_max(&ratios);
    let ratio = median(ratios);
    Row {
        name,
        payload: size.to_owned(),
        measured: format!("{}/s, {}", format_rate(rate(on)), format_cpu(cpu(on))),
        baseline: format!(
            "{off_label} {}/s, {}",
            format_rate(rate(off)),
            format_cpu(cpu(off))
        ),
        ratio: format!("{ratio:.2} ({low:.2}–{high:.2})"),
        relay: String::new(),
        goal: goal.map_or("recorded", |(_, text)| text),
        met: goal.map(|(least, _)| ratio >= least),
    }
}

/// One round of the wrk rows.
#[derive(Debug)]
struct Round {
    bare: Measured,
    plain: Measured,
    verified: Measured,
    journaled: Measured,
    /// nginx relaying to the destination (`None` without nginx).
    relay: Option<EndToEnd>,
    end_to_end: EndToEnd,
    /// The plain route delivering with `http2 = true` to an h2c-only destination.
    h2c_end_to_end: EndToEnd,
    journaled_end_to_end: EndToEnd,
    /// Verify + event-filter + delivery.
    pipeline: EndToEnd,
    journaled_pipeline: EndToEnd,
    /// The plain route in a router process logging at `info` to a file (`None` without the
    /// `webhook-router` binary).
    logged: Option<EndToEnd>,
    /// The NATS rows (`None` without a `nats-server` binary).
    nats: Option<NatsRuns>,
}

/// The round's nginx relay run (only called when every round has one).
fn relay(r: &Round) -> &EndToEnd {
    r.relay.as_ref().expect("relay runs")
}

/// An end-to-end run: the wrk run and what the destination received.
#[derive(Debug)]
struct EndToEnd {
    run: Measured,
    delivered_per_sec: f64,
    /// Whether the destination got every accepted event.
    drained: bool,
    /// CPU time of the relaying side (router or nginx, not the destination, not wrk) from the
    /// start of the load to the last delivery, per delivered event.
    cpu_per_event: Option<Duration>,
}

impl EndToEnd {
    /// CPU per delivered event in µs, NaN where it could not be read.
    fn cpu_us(&self) -> f64 {
        self.cpu_per_event
            .map_or(f64::NAN, |cpu| cpu.as_secs_f64() * 1e6)
    }
}

/// Runs bare hyper, the ingest rows and the end-to-end rows once each, back to back.
async fn wrk_round(wrk: &Wrk, script: &WrkScript, router_binary: Option<&Path>) -> Result<Round> {
    // 1. Bare hyper.
    let bare = BareServer::start().await?;
    let bare_run = measured_run("bare hyper", wrk, script, &bare.url(PLAIN_PATH)).await?;
    drop(bare);

    // 2, 3 and 2j. Ingest with deliveries parked, each on a fresh router, so that no run
    // starts with an earlier one's held events.
    let parked = Sink::start(|_| Reply::hang()).await;
    let mut ingest = Vec::new();
    for (name, path, journal) in [
        ("ingest, no verify, no plugins", PLAIN_PATH, None),
        ("ingest, GitHub HMAC + event-filter", VERIFIED_PATH, None),
        ("ingest, journal", PLAIN_PATH, Some(journal_dir("ingest")?)),
    ] {
        let config = router_config(
            &parked.url("/sink"),
            journal.as_deref().map_or(Queue::Memory, Queue::Journal),
        );
        let router = TestRouter::start(&config).await;
        let run = measured_run(name, wrk, script, &router.url(path)).await?;
        explain_refusals(&router, &run).await;
        ingest.push(run);
        let _ = router.router.shutdown().await;
        if let Some(dir) = journal {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    drop(parked);
    let [plain, verified, journaled] =
        <[Measured; 3]>::try_from(ingest).expect("three ingest runs");

    // The relay, then end to end: plain and full pipeline, memory and journal.
    let relay = match webhook_router_tests::nginx::find_binary() {
        None => None,
        Some(nginx) => Some(relay_run(wrk, script, &nginx).await?),
    };
    let end_to_end =
        end_to_end_run(wrk, script, Queue::Memory, PLAIN_PATH, 1, Delivery::Http1).await?;
    let h2c_end_to_end =
        end_to_end_run(wrk, script, Queue::Memory, PLAIN_PATH, 1, Delivery::H2c).await?;
    let journaled_end_to_end =
        journaled_end_to_end_run(wrk, script, "end-to-end", PLAIN_PATH).await?;
    let pipeline = end_to_end_run(
        wrk,
        script,
        Queue::Memory,
        VERIFIED_PATH,
        1,
        Delivery::Http1,
    )
    .await?;
    let journaled_pipeline =
        journaled_end_to_end_run(wrk, script, "pipeline", VERIFIED_PATH).await?;
    let logged = match router_binary {
        None => None,
        Some(binary) => Some(logged_run(wrk, script, binary).await?),
    };

    // 2n, 4n and 4nn. The NATS backend, each run on a fresh server.
    let nats = match webhook_router_tests::nats::find_binary() {
        None => None,
        Some(_) => Some(Box::pin(nats_runs(wrk, script)).await?),
    };
    Ok(Round {
        bare: bare_run,
        plain,
        verified,
        journaled,
        relay,
        end_to_end,
        h2c_end_to_end,
        journaled_end_to_end,
        pipeline,
        journaled_pipeline,
        logged,
        nats,
    })
}

/// The NATS rows of one round.
#[derive(Debug)]
struct NatsRuns {
    ingest: Measured,
    end_to_end: EndToEnd,
    two_routers: EndToEnd,
}

/// A fresh `nats-server -js` for the run `name`.
fn nats_server(name: &str) -> NatsServer {
    NatsServer::start(&PathBuf::from(JOURNAL_DIR).join(format!("nats-{name}")))
}

/// Ingest with the NATS backend (deliveries parked), then end to end with one and two routers.
async fn nats_runs(wrk: &Wrk, script: &WrkScript) -> Result<NatsRuns> {
    let server = nats_server("ingest");
    let parked = Sink::start(|_| Reply::hang()).await;
    let url = server.url();
    let router = TestRouter::start(&router_config(&parked.url("/sink"), Queue::Nats(&url))).await;
    let ingest = measured_run("ingest, NATS", wrk, script, &router.url(PLAIN_PATH)).await?;
    explain_refusals(&router, &ingest).await;
    let _ = router.router.shutdown().await;
    drop((parked, server));
    let server = nats_server("end-to-end");
    let end_to_end = end_to_end_run(
        wrk,
        script,
        Queue::Nats(&server.url()),
        PLAIN_PATH,
        1,
        Delivery::Http1,
    )
    .await?;
    drop(server);
    let server = nats_server("two-routers");
    let two_routers = end_to_end_run(
        wrk,
        script,
        Queue::Nats(&server.url()),
        PLAIN_PATH,
        2,
        Delivery::Http1,
    )
    .await?;
    drop(server);
    Ok(NatsRuns {
        ingest,
        end_to_end,
        two_routers,
    })
}

/// A fresh, empty journal directory for the run `name`.
fn journal_dir(name: &str) -> Result<PathBuf> {
    let dir = PathBuf::from(JOURNAL_DIR).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::path::absolute(&dir).context("cannot make the journal path absolute")
}

/// The delivery client's floor (#25): `--client-floor-requests` POSTs of the first payload,
/// 32 in flight, to bare hyper on a thread of its own, from each `--client-floor-clients`
/// ([`client_floor`]); requests/s and CPU µs per request (this process's less the
/// destination's). Then reqwest's CPU per request against hyper-util's.
async fn client_floor_rows(args: &Args) -> Result<Vec<Row>> {
    const IN_FLIGHT: usize = 32;
    /// Requests sent before the measured ones; the same for every `requests`, so that two
    /// runs' difference (under callgrind) is that of their measured requests alone.
    const WARM_UP: u64 = 1_000;
    let body = numbered_body(0, args.payloads[0]);
    let requests = args.client_floor_requests;
    let mut rows = Vec::new();
    let mut cpu_us = Vec::new();
    for &client in &args.client_floor_clients {
        let destination = BareServer::start_dedicated()?;
        println!("  delivery client floor: {} ...", client.describe());
        let cpu = || cpu_time()?.checked_sub(destination.cpu_time()?);
        let sent = client_floor::send(
            client,
            &destination.url("/sink"),
            body.clone(),
            [WARM_UP, requests],
            IN_FLIGHT,
            cpu,
        )
        .await?;
        let per_sec = requests as f64 / sent.elapsed.as_secs_f64();
        let micros = sent
            .cpu
            .map_or(f64::NAN, |cpu| cpu.as_secs_f64() * 1e6 / requests as f64);
        println!(
            "      {requests} in {:.2} s: {per_sec:.0}/s, {}",
            sent.elapsed.as_secs_f64(),
            format_cpu(micros)
        );
        cpu_us.push((client, micros));
        rows.push(Row {
            name: format!(
                "delivery client floor: {}, {IN_FLIGHT} in flight (req/s)",
                client.describe()
            ),
            payload: format_size(args.payloads[0]),
            measured: format!("{}/s, {}", format_rate(per_sec), format_cpu(micros)),
            baseline: String::new(),
            ratio: String::new(),
            relay: String::new(),
            goal: "recorded",
            met: None,
        });
    }
    let of = |wanted| {
        cpu_us
            .iter()
            .find(|(client, _)| *client == wanted)
            .map(|(_, us)| *us)
    };
    if let (Some(reqwest), Some(pooled)) = (of(FloorClient::Reqwest), of(FloorClient::HyperUtil)) {
        rows.push(Row {
            name: "delivery client floor: reqwest ÷ hyper-util, CPU per request".to_owned(),
            payload: format_size(args.payloads[0]),
            measured: format!("reqwest {}", format_cpu(reqwest)),
            baseline: format!("hyper-util {}", format_cpu(pooled)),
            ratio: format!("{:.2}", reqwest / pooled),
            relay: String::new(),
            goal: "recorded",
            met: None,
        });
    }
    Ok(rows)
}

/// How a benchmarked router delivers to its bare hyper destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// HTTP/1.1, a connection per attempt in flight (the shared client).
    Http1,
    /// `http2 = true`: h2c with prior knowledge, attempts multiplexed on one connection, to a
    /// destination that speaks only h2c.
    H2c,
}

/// [`end_to_end_run`] of one router delivering over HTTP/1.1 with a fresh journal (the run
/// `name`'s directory, removed after it).
async fn journaled_end_to_end_run(
    wrk: &Wrk,
    script: &WrkScript,
    name: &str,
    path: &str,
) -> Result<EndToEnd> {
    let dir = journal_dir(name)?;
    let run = end_to_end_run(wrk, script, Queue::Journal(&dir), path, 1, Delivery::Http1).await;
    let _ = std::fs::remove_dir_all(dir);
    run
}

/// wrk against the route at `path` delivering to bare hyper as `delivery` says, the router
/// keeping events in `queue`; with `routers` = 2 a second router on the same queue (NATS)
/// delivers too. delivered/s counts every accepted event up to the last delivery; the CPU per
/// event is this process's (the routers') less the destination's own thread's.
async fn end_to_end_run(
    wrk: &Wrk,
    script: &WrkScript,
    queue: Queue<'_>,
    path: &str,
    routers: usize,
    delivery: Delivery,
) -> Result<EndToEnd> {
    let (destination, config) = match delivery {
        Delivery::Http1 => {
            let destination = BareServer::start_dedicated()?;
            let config = router_config(&destination.url("/sink"), queue);
            (destination, config)
        }
        Delivery::H2c => {
            let destination = BareServer::start_dedicated_h2c()?;
            let plain = router_config(&destination.url("/sink"), queue);
            let config = plain.replacen(DESTINATION_KEYS, H2C_DESTINATION_KEYS, 1);
            ensure!(
                config != plain,
                "the router config has no destination to set http2 on"
            );
            (destination, config)
        }
    };
    let router = TestRouter::start(&config).await;
    let mut helpers = Vec::new();
    for _ in 1..routers {
        helpers.push(TestRouter::start(&config).await);
    }
    let verified = path == VERIFIED_PATH;
    let name = match (queue, routers) {
        _ if delivery == Delivery::H2c => "end to end, http2 destination (h2c)",
        (Queue::Memory, _) if verified => "end to end, GitHub HMAC + event-filter",
        (Queue::Memory, _) => "end to end (delivery to bare hyper)",
        (Queue::Journal(_), _) if verified => "end to end, GitHub HMAC + event-filter, journal",
        (Queue::Journal(_), _) => "end to end, journal",
        (Queue::Nats(_), 1) => "end to end, NATS, one router",
        (Queue::Nats(_), _) => "end to end, NATS, two routers (wrk to the first)",
    };
    let route = if verified { "github" } else { "plain" };
    let cpu = |destination: &BareServer| cpu_time()?.checked_sub(destination.cpu_time()?);
    let cpu_before = cpu(&destination);
    let load_started = Instant::now();
    let run = measured_run(name, wrk, script, &router.url(path)).await?;
    explain_refusals(&router, &run).await;
    let accepted = accepted(&router, route).await?;
    let drained = drain(&destination, accepted).await;
    let cpu_after = cpu(&destination);
    let _ = router.router.shutdown().await;
    for helper in helpers {
        let _ = helper.router.shutdown().await;
    }
    Ok(delivered(
        run,
        &destination,
        load_started,
        accepted,
        drained,
        cpu_before.zip(cpu_after),
    ))
}

/// What `destination` received since `load_started`, `accepted` being what the relaying side
/// took in; `cpu` is the relaying side's CPU time before the load and after the last delivery.
fn delivered(
    run: Measured,
    destination: &BareServer,
    load_started: Instant,
    accepted: u64,
    drained: bool,
    cpu: Option<(Duration, Duration)>,
) -> EndToEnd {
    let (delivered, span, delivered_per_sec) = delivery_rate(destination, load_started);
    let cpu_per_event = cpu
        .and_then(|(before, after)| after.checked_sub(before))
        .zip(u32::try_from(delivered).ok().filter(|&n| n > 0))
        .map(|(used, events)| used / events);
    println!(
        "      {delivered} of {accepted} accepted events delivered in {:.2} s: {delivered_per_sec:.0}/s, {}{}",
        span.as_secs_f64(),
        format_cpu_per_event(cpu_per_event.map_or(f64::NAN, |cpu| cpu.as_secs_f64() * 1e6)),
        incomplete(drained)
    );
    EndToEnd {
        run,
        delivered_per_sec,
        drained,
        cpu_per_event,
    }
}

/// wrk against nginx relaying to bare hyper (`proxy_pass`, upstream keep-alive): the peer of
/// the end-to-end rows. nginx answers each request once the destination has, so every
/// answered request was delivered; the CPU per event is nginx's (master and workers).
async fn relay_run(wrk: &Wrk, script: &WrkScript, nginx: &Path) -> Result<EndToEnd> {
    let destination = BareServer::start_dedicated()?;
    let relay = NginxRelay::start(nginx, destination.addr())?;
    let cpu_before = relay.cpu_time();
    let load_started = Instant::now();
    let run = measured_run("nginx relay", wrk, script, &relay.url("/sink")).await?;
    let accepted = run.run.requests;
    let drained = destination.requests() >= accepted;
    let cpu_after = relay.cpu_time();
    drop(relay);
    Ok(delivered(
        run,
        &destination,
        load_started,
        accepted,
        drained,
        cpu_before.zip(cpu_after),
    ))
}

/// The plain route end to end in a `webhook-router serve` process at the default log level
/// (`info`), its log appended to a file as a service's would be: logging's cost, against the
/// in-process router (whose log goes nowhere). The CPU per event is the process's.
async fn logged_run(wrk: &Wrk, script: &WrkScript, binary: &Path) -> Result<EndToEnd> {
    let destination = BareServer::start_dedicated()?;
    let dir = journal_dir("logged")?;
    let config_path = dir.join("router.toml");
    std::fs::write(
        &config_path,
        router_config(&destination.url("/sink"), Queue::Memory),
    )?;
    let log = dir.join("router.log");
    let process = {
        let (binary, config_path, log) = (binary.to_owned(), config_path.clone(), log.clone());
        tokio::task::spawn_blocking(move || {
            RouterProcess::start_logging_to(&binary, &config_path, &log)
        })
        .await
        .context("the router process did not start")?
    };
    let pid = process.pid();
    let cpu_before = cpu_time_of(pid);
    let load_started = Instant::now();
    let url = format!("http://{}{PLAIN_PATH}", process.ingress);
    let run = measured_run(
        "end to end, router process logging at info",
        wrk,
        script,
        &url,
    )
    .await?;
    let accepted = run.run.requests - run.run.non_2xx;
    let drained = drain(&destination, accepted).await;
    let cpu_after = cpu_time_of(pid);
    let log_bytes = std::fs::metadata(&log).map_or(0, |m| m.len());
    let _ = tokio::task::spawn_blocking(move || process.stop()).await;
    println!("      the router wrote {log_bytes} bytes of log");
    let _ = std::fs::remove_dir_all(dir);
    Ok(delivered(
        run,
        &destination,
        load_started,
        accepted,
        drained,
        cpu_before.zip(cpu_after),
    ))
}

/// Waits (at most 60 s) until `destination` received `accepted` requests; whether it did.
async fn drain(destination: &BareServer, accepted: u64) -> bool {
    wait_until(Duration::from_secs(60), || {
        destination.requests() >= accepted
    })
    .await
}

/// What `destination` received since `started`: how many requests, the span from `started` to
/// its last answer, and the rate over that span.
fn delivery_rate(destination: &BareServer, started: Instant) -> (u64, Duration, f64) {
    let span = destination
        .last_answer()
        .map_or(Duration::ZERO, |last| last - started);
    let delivered = destination.requests();
    (
        delivered,
        span,
        delivered as f64 / span.as_secs_f64().max(1e-9),
    )
}

/// What a result line adds when [`drain`] gave up: nothing if `drained`.
fn incomplete(drained: bool) -> &'static str {
    if drained {
        ""
    } else {
        " (INCOMPLETE after 60 s)"
    }
}

/// The median of `values` (the mean of the middle two for an even count; 0 if empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The smallest and largest of `values`.
fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
            (low.min(v), high.max(v))
        })
}

fn format_rate(per_sec: f64) -> String {
    format!("{per_sec:.0}")
}

fn format_cpu_per_event(micros: f64) -> String {
    if micros.is_nan() {
        "CPU/event n/a".to_owned()
    } else {
        format!("{micros:.1} µs CPU/event")
    }
}

fn format_cpu(micros: f64) -> String {
    if micros.is_nan() {
        "CPU/req n/a".to_owned()
    } else {
        format!("{micros:.1} µs CPU/req")
    }
}

/// A wrk run and the CPU the servers (this process) spent per request during it.
#[derive(Debug)]
struct Measured {
    run: WrkRun,
    cpu_per_request: Option<Duration>,
}

impl Measured {
    /// CPU per request in µs, NaN where it could not be read.
    fn cpu_us(&self) -> f64 {
        self.cpu_per_request
            .map_or(f64::NAN, |cpu| cpu.as_secs_f64() * 1e6)
    }
}

async fn measured_run(name: &str, wrk: &Wrk, script: &WrkScript, url: &str) -> Result<Measured> {
    println!("  {name} ...");
    let cpu = cpu_time();
    let run = wrk.run(script, url).await?;
    let cpu_per_request = cpu
        .zip(cpu_time())
        .and_then(|(before, after)| after.checked_sub(before))
        .zip(u32::try_from(run.requests).ok().filter(|&n| n > 0))
        .map(|(used, requests)| used / requests);
    println!(
        "      {} requests, {:.0}/s, p50 {}, p99 {}, {} answers >= 400, {} socket errors",
        run.requests,
        run.requests_per_sec,
        format_duration(run.p50),
        format_duration(run.p99),
        run.non_2xx,
        run.socket_errors
    );
    Ok(Measured {
        run,
        cpu_per_request,
    })
}

/// Latency percentiles of one fixed-rate run.
#[derive(Debug)]
struct Latency {
    p50: Duration,
    p99: Duration,
    /// Whether every accepted request reached the destination.
    complete: bool,
}

/// The fixed-rate runs: straight to a recording destination, then through the router to one.
async fn latency_runs(args: &Args, payload: usize, rate: f64) -> Result<(Latency, Latency)> {
    let count = (rate * args.latency_duration.as_secs_f64()) as u64;
    let mut results = Vec::new();
    for through_router in [false, true] {
        let epoch = Instant::now() + Duration::from_millis(50);
        let sent = Arc::new(Stamps::new(epoch, count as usize));
        let arrived = Arc::new(Stamps::new(epoch, count as usize));
        let destination = BareServer::start_recording(Arc::clone(&arrived)).await?;
        let (target, router) = if through_router {
            let router =
                TestRouter::start(&router_config(&destination.url("/sink"), Queue::Memory)).await;
            let target = Target {
                addr: router.router.ingress_addr(),
                path: PLAIN_PATH.into(),
                headers: HeaderMap::new(),
            };
            (target, Some(router))
        } else {
            let target = Target {
                addr: destination.addr(),
                path: "/sink".into(),
                headers: HeaderMap::new(),
            };
            (target, None)
        };
        println!(
            "  latency at {rate:.0}/s for {} s, {} ...",
            args.latency_duration.as_secs(),
            if through_router {
                "through the router"
            } else {
                "straight to the destination"
            }
        );
        let answers =
            load::send_paced(&target, rate, count, 16, payload, Arc::clone(&sent)).await?;
        let complete = wait_until(Duration::from_secs(30), || {
            (0..arrived.len())
                .filter(|&seq| arrived.get(seq).is_some())
                .count() as u64
                >= answers.accepted
        })
        .await;
        if let Some(router) = router {
            let _ = router.router.shutdown().await;
        }
        let mut latencies = sent.latencies(&arrived);
        let p50 = quantile(&mut latencies, 0.50).unwrap_or_default();
        let p99 = quantile(&mut latencies, 0.99).unwrap_or_default();
        println!(
            "      {} sent, {} accepted, {} other answers, {} arrived; p50 {}, p99 {}",
            count,
            answers.accepted,
            answers.other,
            latencies.len(),
            format_duration(p50),
            format_duration(p99)
        );
        results.push(Latency { p50, p99, complete });
    }
    let routed = results.pop().context("two runs")?;
    let direct = results.pop().context("two runs")?;
    Ok((direct, routed))
}

/// Ordered against unordered delivery across keys: `events` over [`ORDERED_KEYS`] keys, each
/// key's events sent one after the other on a connection of its own, through the ordered
/// route and then the plain one (the same load, its `x-key` header unread), each to a fresh
/// bare hyper destination; delivered/s from the first send to the last delivery. `backend`
/// ("memory", "journal" or "NATS") holds the events, fresh for each run.
async fn ordered_row(events: u64, payload: usize, backend: &str) -> Result<Row> {
    let mut rates = Vec::new();
    for (path, route) in [(PLAIN_PATH, "plain"), (ORDERED_PATH, "ordered")] {
        println!("  {backend}: {events} events over {ORDERED_KEYS} keys, route {route} ...");
        let destination = BareServer::start().await?;
        // Each run on a fresh queue: an empty journal, a fresh NATS server.
        let dir = journal_dir(&format!("ordered-{route}"))?;
        let nats = (backend == "NATS").then(|| nats_server(&format!("ordered-{route}")));
        let nats_url = nats.as_ref().map(NatsServer::url);
        let queue = match (backend, &nats_url) {
            (_, Some(url)) => Queue::Nats(url),
            ("journal", None) => Queue::Journal(&dir),
            _ => Queue::Memory,
        };
        let config = router_config(&destination.url("/sink"), queue);
        let router = TestRouter::start(&config).await;
        let started = Instant::now();
        let sends = (0..ORDERED_KEYS).map(|key| {
            let mut headers = HeaderMap::new();
            headers.insert("x-key", http::HeaderValue::from(key));
            let target = Target {
                addr: router.router.ingress_addr(),
                path: path.into(),
                headers,
            };
            let count = events / ORDERED_KEYS + u64::from(key < events % ORDERED_KEYS);
            async move { load::send_count(&target, numbered_body(key, payload), count, 1).await }
        });
        let mut answers = load::Answers::default();
        for sent in futures_util::future::join_all(sends).await {
            let sent = sent?;
            answers.accepted += sent.accepted;
            answers.other += sent.other;
        }
        let accepted = accepted(&router, route).await?;
        let drained = drain(&destination, accepted).await;
        let _ = router.router.shutdown().await;
        let (delivered, span, rate) = delivery_rate(&destination, started);
        println!(
            "      {} accepted, {} refused; {delivered} delivered in {:.2} s: {rate:.0}/s{}",
            answers.accepted,
            answers.other,
            span.as_secs_f64(),
            incomplete(drained)
        );
        rates.push((rate, drained && answers.other == 0));
        drop(nats);
        let _ = std::fs::remove_dir_all(dir);
    }
    let [(unordered, unordered_whole), (ordered, ordered_whole)] =
        <[(f64, bool); 2]>::try_from(rates).expect("two runs");
    let ratio = ordered / unordered.max(1e-9);
    Ok(Row {
        name: format!("ordered delivery across {ORDERED_KEYS} keys, {backend}, delivered/s"),
        payload: format_size(payload),
        measured: format!("{}/s", format_rate(ordered)),
        baseline: format!("{}/s unordered", format_rate(unordered)),
        ratio: format!("{ratio:.2}"),
        relay: String::new(),
        goal: "≥ 0.50",
        met: Some(unordered_whole && ordered_whole && ratio >= 0.50),
    })
}

/// The soak: a `webhook-router serve` process (logging at `info` to a file) takes the plain
/// route at half the plain end-to-end rate (`delivered`) for `--soak`, delivering to a
/// recording destination; its RSS is sampled at the end of every `--soak-interval` and the
/// ingest → delivery p99 computed for the requests sent in each interval. Rows: the last
/// interval's against the second's (the first includes warming up).
async fn soak_rows(args: &Args, payload: usize, delivered: f64, binary: &Path) -> Result<Vec<Row>> {
    let rate = (delivered / 2.0).max(100.0);
    let interval = args.soak_interval.max(Duration::from_secs(1));
    let count = (rate * args.soak.as_secs_f64()) as u64;
    println!(
        "\n== soak: {rate:.0}/s for {} (½ of end to end), {} per sample ...",
        humantime::format_duration(args.soak),
        humantime::format_duration(interval)
    );
    let epoch = Instant::now() + Duration::from_millis(200);
    let sent = Arc::new(Stamps::new(epoch, count as usize));
    let arrived = Arc::new(Stamps::new(epoch, count as usize));
    let destination = BareServer::start_recording(Arc::clone(&arrived)).await?;
    let dir = journal_dir("soak")?;
    let config_path = dir.join("router.toml");
    std::fs::write(
        &config_path,
        router_config(&destination.url("/sink"), Queue::Memory),
    )?;
    let process = {
        let (binary, config_path, log) = (binary.to_owned(), config_path, dir.join("router.log"));
        tokio::task::spawn_blocking(move || {
            RouterProcess::start_logging_to(&binary, &config_path, &log)
        })
        .await
        .context("the router process did not start")?
    };
    let pid = process.pid();
    let target = Target {
        addr: process
            .ingress
            .parse()
            .context("the router's ingress address")?,
        path: PLAIN_PATH.into(),
        headers: HeaderMap::new(),
    };
    // RSS at the end of each interval, while the load runs.
    let sample_count = ((args.soak.as_secs_f64() / interval.as_secs_f64()).floor() as usize).max(1);
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        for index in 1..=sample_count {
            let at = epoch + interval * index as u32;
            tokio::time::sleep_until(at.into()).await;
            let Some(rss) = resident_bytes_of(pid) else {
                break;
            };
            samples.push(rss);
            println!(
                "      {} s: RSS {:.1} MiB",
                (at - epoch).as_secs(),
                rss as f64 / (1024.0 * 1024.0)
            );
        }
        samples
    });
    let answers = load::send_paced(&target, rate, count, 32, payload, Arc::clone(&sent)).await;
    let rss: Vec<u64> = sampler.await.unwrap_or_default();
    let answers = answers?;
    let complete = wait_until(Duration::from_secs(30), || {
        (0..arrived.len())
            .filter(|&seq| arrived.get(seq).is_some())
            .count() as u64
            >= answers.accepted
    })
    .await;
    let _ = tokio::task::spawn_blocking(move || process.stop()).await;
    let _ = std::fs::remove_dir_all(dir);
    // p99 of the requests sent in each interval.
    let shift = arrived.epoch().saturating_duration_since(sent.epoch());
    let mut per_interval: Vec<Vec<Duration>> = vec![Vec::new(); sample_count];
    for seq in 0..sent.len() {
        let (Some(at), Some(landed)) = (sent.get(seq), arrived.get(seq)) else {
            continue;
        };
        let index =
            ((at.as_secs_f64() / interval.as_secs_f64()) as usize).min(per_interval.len() - 1);
        if let Some(latency) = (landed + shift).checked_sub(at) {
            per_interval[index].push(latency);
        }
    }
    let p99: Vec<Duration> = per_interval
        .iter_mut()
        .map(|latencies| quantile(latencies, 0.99).unwrap_or_default())
        .collect();
    println!(
        "      {} sent, {} accepted, {} other answers{}; p99 per interval: {}",
        count,
        answers.accepted,
        answers.other,
        if complete { "" } else { ", NOT ALL DELIVERED" },
        p99.iter()
            .map(|d| format_duration(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    ensure!(!rss.is_empty(), "the soak took no RSS sample");
    // The second interval's figures (the first's when there is only one) against the last's.
    let second = |values: usize| if values > 1 { 1 } else { 0 };
    let (rss_second, rss_last) = (rss[second(rss.len())], rss[rss.len() - 1]);
    let (p99_second, p99_last) = (p99[second(p99.len())], p99[p99.len() - 1]);
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    let every = humantime::format_duration(interval);
    let rss_ratio = rss_last as f64 / rss_second.max(1) as f64;
    let p99_ratio = p99_last.as_secs_f64() / p99_second.as_secs_f64().max(1e-9);
    Ok(vec![
        Row {
            name: format!(
                "soak {} at {rate:.0}/s: router RSS, last interval (every {every}: {})",
                humantime::format_duration(args.soak),
                rss.iter().map(|&b| mib(b)).collect::<Vec<_>>().join(", ")
            ),
            payload: format_size(payload),
            measured: mib(rss_last),
            baseline: format!("{} in the second interval", mib(rss_second)),
            ratio: format!("{rss_ratio:.2}"),
            relay: String::new(),
            goal: "≤ 1.10",
            met: Some(rss_ratio <= 1.10),
        },
        Row {
            name: format!(
                "soak: ingest → delivery p99, last interval (every {every}: {})",
                p99.iter()
                    .map(|d| format_duration(*d))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            payload: format_size(payload),
            measured: format_duration(p99_last),
            baseline: format!("{} in the second interval", format_duration(p99_second)),
            ratio: format!("{p99_ratio:.2}"),
            relay: String::new(),
            goal: "≤ 1.5",
            met: Some(complete && answers.other == 0 && p99_ratio <= 1.5),
        },
    ])
}

/// Prefix of the line a memory child prints.
const MEMORY_TAG: &str = "HELD_MEMORY";

/// Plugin time limits on a loaded machine: `events` through the verifying route (GitHub HMAC +
/// event-filter, deliveries parked) with two busy processes beside the router, against the same
/// without them; the plugin timeouts each run counted. Goal: none.
async fn hog_row(events: u64, payload: usize) -> Result<Row> {
    let body = numbered_body(0, payload);
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", http::HeaderValue::from_static("push"));
    for (name, value) in webhook_router_tests::signing::sign("github", GITHUB_SECRET, &body, 0) {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes())?,
            http::HeaderValue::from_str(&value)?,
        );
    }
    let parked = Sink::start(|_| Reply::hang()).await;
    let mut runs = Vec::new();
    for hogs in [0, 2] {
        println!("  {events} events through event-filter with {hogs} busy processes beside ...");
        let router = TestRouter::start(&router_config(&parked.url("/sink"), Queue::Memory)).await;
        let target = Target {
            addr: router.router.ingress_addr(),
            path: VERIFIED_PATH.to_owned(),
            headers: headers.clone(),
        };
        let mut busy = Vec::new();
        for _ in 0..hogs {
            busy.push(
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .context("cannot start a busy process")?,
            );
        }
        let started = Instant::now();
        let answers = load::send_count(&target, body.clone(), events, 32).await;
        let took = started.elapsed();
        for mut process in busy {
            let _ = process.kill();
            let _ = process.wait();
        }
        let answers = answers?;
        let metrics = router.metrics().await;
        let timeouts: f64 = metrics
            .lines()
            .filter(|line| {
                line.starts_with("webhook_plugin_errors_total{")
                    && line.contains("kind=\"timeout\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        println!(
            "      {} accepted, {} other answers, {timeouts} plugin timeouts, in {:.2} s",
            answers.accepted,
            answers.other,
            took.as_secs_f64()
        );
        let _ = router.router.shutdown().await;
        runs.push((timeouts, answers, took));
    }
    let (quiet, hogged) = (&runs[0], &runs[1]);
    Ok(Row {
        name: format!(
            "plugin timeouts: {events} events through event-filter beside two busy processes"
        ),
        payload: format_size(payload),
        measured: format!(
            "{} timeouts, {} answers ≠ 202, {:.1} s",
            hogged.0,
            hogged.1.other,
            hogged.2.as_secs_f64()
        ),
        baseline: format!(
            "{} timeouts, {:.1} s without them",
            quiet.0,
            quiet.2.as_secs_f64()
        ),
        ratio: format!(
            "{:.1} (time)",
            hogged.2.as_secs_f64() / quiet.2.as_secs_f64().max(1e-9)
        ),
        relay: String::new(),
        goal: "0 timeouts",
        met: Some(hogged.0 == 0.0 && quiet.0 == 0.0),
    })
}

/// Row 6: runs this program again as a child that measures held memory, so no earlier run's
/// freed memory hides the growth.
fn memory_row(args: &Args, payload: usize) -> Result<Row> {
    println!(
        "  memory: {} events held by a paused destination, in a child process ...",
        args.held_events
    );
    let exe = std::env::current_exe().context("cannot find this program")?;
    let output = std::process::Command::new(exe)
        .arg("--memory-child")
        .arg(payload.to_string())
        .arg("--held-events")
        .arg(args.held_events.to_string())
        .args(
            args.inspect_events
                .map(|n| ["--inspect-events".to_owned(), n.to_string()])
                .into_iter()
                .flatten(),
        )
        .output()
        .context("cannot run the memory child")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(per_event) = stdout
        .lines()
        .find_map(|line| line.strip_prefix(MEMORY_TAG))
        .and_then(|value| value.trim().parse::<f64>().ok())
    else {
        bail!(
            "the memory child failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    println!("      {per_event:.0} bytes per held event");
    Ok(Row {
        name: format!("RSS per held event ({} held)", args.held_events),
        payload: format_size(payload),
        measured: format!("{per_event:.0} B"),
        baseline: format!("{payload} B payload"),
        ratio: format!("{:.2}", per_event / payload as f64),
        relay: String::new(),
        goal: "≤ payload + 1 KiB",
        met: Some(per_event <= (payload + 1024) as f64),
    })
}

/// Row 7: start-up time on a journal holding `held_events` events, against an empty journal,
/// and the journal's disk bytes per held event.
async fn recovery_rows(args: &Args, payload: usize) -> Result<Vec<Row>> {
    let count = args.held_events;
    println!("  journal recovery: {count} events held by a paused destination ...");
    let parked = Sink::start(|_| Reply::hang()).await;
    let dir = journal_dir("recovery")?;
    let config = router_config(&parked.url("/sink"), Queue::Journal(&dir));
    let router = TestRouter::start(&config).await;
    let target = Target {
        addr: router.router.ingress_addr(),
        path: PLAIN_PATH.into(),
        headers: HeaderMap::new(),
    };
    let held = load::send_count(&target, numbered_body(0, payload), count, 32).await?;
    ensure!(
        held.accepted == count,
        "only {} of {count} events were accepted ({} refused)",
        held.accepted,
        held.other
    );
    let _ = router.router.shutdown().await;
    let bytes = dir_bytes(&dir)?;

    let empty = journal_dir("recovery-empty")?;
    let started = Instant::now();
    let router =
        TestRouter::start(&router_config(&parked.url("/sink"), Queue::Journal(&empty))).await;
    let empty_start = started.elapsed();
    let _ = router.router.shutdown().await;

    let started = Instant::now();
    let router = TestRouter::start(&config).await;
    let recovery = started.elapsed();
    let recovered = router
        .metric("webhook_journal_recovered_total")
        .await
        .context("router metrics have no webhook_journal_recovered_total")?;
    let _ = router.router.shutdown().await;
    drop(parked);
    for dir in [dir, empty] {
        let _ = std::fs::remove_dir_all(dir);
    }
    println!(
        "      started in {} ({recovered} events read back; {} on an empty journal); {bytes} bytes on disk",
        format_duration(recovery),
        format_duration(empty_start)
    );
    let per_event = bytes as f64 / count as f64;
    Ok(vec![
        Row {
            name: format!("journal recovery: start with {count} held events"),
            payload: format_size(payload),
            measured: format!("{} ({recovered} read back)", format_duration(recovery)),
            baseline: format!("{} on an empty journal", format_duration(empty_start)),
            ratio: format!(
                "{:.1}",
                recovery.as_secs_f64() / empty_start.as_secs_f64().max(1e-9)
            ),
            relay: String::new(),
            goal: "≤ 2 s",
            met: Some(recovery <= Duration::from_secs(2) && recovered as u64 == count),
        },
        Row {
            name: format!("journal disk bytes per held event ({count} held)"),
            payload: format_size(payload),
            measured: format!("{per_event:.0} B"),
            baseline: format!("{payload} B payload"),
            ratio: format!("{:.2}", per_event / payload as f64),
            relay: String::new(),
            goal: "",
            met: None,
        },
    ])
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// In this process: a router whose destination never answers holds `count` events of
/// `payload` bytes; returns the RSS growth per event.
async fn held_memory(payload: usize, count: u64) -> Result<f64> {
    let parked = Sink::start(|_| Reply::hang()).await;
    let router = TestRouter::start(&router_config(&parked.url("/sink"), Queue::Memory)).await;
    let target = Target {
        addr: router.router.ingress_addr(),
        path: PLAIN_PATH.into(),
        headers: HeaderMap::new(),
    };
    let body = numbered_body(0, payload);
    let warm = load::send_count(&target, body.clone(), MEMORY_WARM_UP_EVENTS, 32).await?;
    ensure!(warm.other == 0, "warm-up requests were refused: {warm:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = resident_bytes().context("cannot read VmRSS")?;
    let held = load::send_count(&target, body, count, 32).await?;
    ensure!(
        held.accepted == count,
        "only {} of {count} events were accepted ({} refused)",
        held.accepted,
        held.other
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = resident_bytes().context("cannot read VmRSS")?;
    drop(router);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

/// Plugin-overhead rows from the summary the criterion bench wrote: lines of
/// `case<TAB>p50 ns<TAB>p99 ns<TAB>baseline case`.
fn plugin_rows(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plugin-overhead summary {}", path.display()))?;
    let mut cases = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [case, payload, p50, p99] = fields[..] else {
            bail!("{}: unexpected line {line:?}", path.display());
        };
        let ns = |value: &str| -> Result<Duration> {
            Ok(Duration::from_nanos(value.parse().with_context(|| {
                format!("{}: bad number {value:?}", path.display())
            })?))
        };
        cases.push((case.to_owned(), payload.to_owned(), ns(p50)?, ns(p99)?));
    }
    let mut rows = Vec::new();
    for (case, payload, p50, p99) in &cases {
        let Some((_, _, native_p50, native_p99)) = cases
            .iter()
            .find(|(name, size, ..)| name.starts_with("native") && size == payload)
        else {
            continue;
        };
        if case.starts_with("native") {
            continue;
        }
        let goal_applies = case.starts_with("event_filter");
        rows.push(Row {
            name: format!("plugin call p50 / p99: {case}"),
            payload: payload.clone(),
            measured: format!("{} / {}", format_duration(*p50), format_duration(*p99)),
            baseline: format!(
                "{} / {} same filter in native Rust",
                format_duration(*native_p50),
                format_duration(*native_p99)
            ),
            ratio: format!("{:.1} (p50)", p50.as_secs_f64() / native_p50.as_secs_f64()),
            relay: String::new(),
            goal: if goal_applies { "p50 ≤ 4.5 µs" } else { "" },
            met: goal_applies.then_some(*p50 <= Duration::from_nanos(4_500)),
        });
    }
    Ok(rows)
}

/// The router config of every run: a plain route, a GitHub-verified route with one
/// event-filter plugin and a route ordered by the `x-key` header, all delivering to `url`,
/// with room to hold every accepted event, in `queue`.
fn router_config(url: &str, queue: Queue<'_>) -> String {
    router_config_recording(url, queue, INSPECT_EVENTS.get().copied())
}

/// [`router_config`] with `[inspect] events = record` (the router's default when `None`).
fn router_config_recording(url: &str, queue: Queue<'_>, record: Option<usize>) -> String {
    let filter = webhook_router_tests::wasm::module("event_filter");
    let ordered = format!(
        "[[routes]]\nid = \"ordered\"\npath = \"{ORDERED_PATH}\"\ndestinations = [\"sink\"]\n\
         order_by_header = \"x-key\"\n"
    );
    let (server, queue) = match queue {
        Queue::Memory => (String::new(), String::new()),
        Queue::Journal(dir) => (
            String::new(),
            format!(
                "\n[queue]\nbackend = \"journal\"\npath = \"{}\"\nfsync = \"{}\"\n",
                dir.display(),
                JOURNAL_FSYNC.get().map_or("always", String::as_str)
            ),
        ),
        // Under the server's default max_payload (1 MiB), with room for the event's fields.
        Queue::Nats(url) => (
            "max_body_bytes = \"960KiB\"\n".to_owned(),
            format!("\n[queue]\nbackend = \"nats\"\nurl = \"{url}\"\nmax_bytes = \"2GiB\"\n"),
        ),
    };
    let routes = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
queue_capacity = 10_000_000
shutdown_grace = "1s"
# The load comes from one address: only the listener-wide cap applies.
max_requests_in_flight_per_client = 1_000_000
{server}
[destinations.sink]
url = "{url}"
{DESTINATION_KEYS}
[[routes]]
id = "plain"
path = "{PLAIN_PATH}"
destinations = ["sink"]

{ordered}
[[routes]]
id = "github"
path = "{VERIFIED_PATH}"
destinations = ["sink"]
verify = {{ preset = "github", secrets = ["{GITHUB_SECRET}"] }}

[[routes.plugins]]
module = "{}"
config = {{ allow_events = ["push"], json = [{{ pointer = "/seq", exists = true }}] }}
"#,
        filter.display()
    );
    let inspect = record.map_or_else(String::new, |events| {
        format!("\n[inspect]\nevents = {events}\n")
    });
    format!("{routes}{queue}{inspect}")
}

/// Where a benchmarked router keeps accepted events.
#[derive(Debug, Clone, Copy)]
enum Queue<'a> {
    /// In memory.
    Memory,
    /// In a journal in this directory.
    Journal(&'a Path),
    /// In a NATS JetStream stream on the server at this URL.
    Nats(&'a str),
}

/// The router's `webhook_requests_total{{status="202"}}` for `route`.
async fn accepted(router: &TestRouter, route: &str) -> Result<u64> {
    let series = format!("webhook_requests_total{{route=\"{route}\",status=\"202\"}}");
    let value = router
        .metric(&series)
        .await
        .with_context(|| format!("router metrics have no {series}"))?;
    Ok(value as u64)
}

/// When wrk saw answers >= 400, prints what the router counted: its answers other than 202
/// and its plugin errors, by kind.
async fn explain_refusals(router: &TestRouter, run: &Measured) {
    if run.run.non_2xx == 0 {
        return;
    }
    let metrics = router.metrics().await;
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|line| {
            let refused =
                line.starts_with("webhook_requests_total{") && !line.contains("status=\"202\"");
            let failed = line.starts_with("webhook_plugin_errors_total{");
            (refused || failed) && !line.ends_with(" 0")
        })
        .collect();
    println!("      the router counted: {}", counted.join("; "));
}

/// Polls `done` every 20 ms until it holds (true) or `timeout` passes (false).
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn format_size(bytes: usize) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn format_duration(d: Duration) -> String {
    if d < Duration::from_micros(100) {
        format!("{:.2} µs", d.as_secs_f64() * 1e6)
    } else if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}
