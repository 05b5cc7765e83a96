//! Ingest load benchmark: the router's ingress against a bare hyper server, under `wrk`.
//!
//! ```text
//! cargo run --release -p webhook-router-tests --bin ingest-bench -- --duration 10s --connections 32
//! ```
//!
//! Runs, one after the other, each for `--duration`, with the same wrk settings:
//!
//! 1. **bare hyper**: [`BareServer`], which reads the body and answers `202 {"id":"x"}`;
//! 2. **router**: a [`TestRouter`] with one route `/hooks/bench` delivering to a loopback
//!    [`Sink`] that answers 200 (or, with `--destination bare`, to a second [`BareServer`],
//!    which unlike the sink keeps nothing); afterwards it waits (bounded by `--drain-timeout`)
//!    until the destination has every event the router accepted, for an end-to-end
//!    delivered/s figure;
//! 3. **router, ingress only** (skip with `--no-ingress-only`): the same router, but its
//!    destination never answers, so deliveries park after `max_in_flight` and the router spends
//!    its CPU on ingress alone. It tells the ingress's own cost apart from the delivery work
//!    that shares the CPU in run 2.
//!
//! Besides wrk's req/s and latency, each run reports the CPU time this process (every server,
//! not wrk) used per request, which moves less than req/s when something else loads the machine.
//! Deliveries are counted by the destination itself rather than with `Sink::wait_for_delivered`,
//! which copies the sink's whole record (hundreds of thousands of requests here) on every wake-up.
//!
//! wrk is installed with `apt-get` if it is missing. Everything runs on loopback and stops by
//! itself; nothing is asserted — it is a benchmark, not a test. Results and how to read them:
//! `docs/benchmarks.md`.

#![allow(clippy::print_stdout)]

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use webhook_router_tests::bare::BareServer;
use webhook_router_tests::{Reply, Sink, TestRouter};

/// Route id and path of the benchmarked route.
const ROUTE_ID: &str = "bench";
const ROUTE_PATH: &str = "/hooks/bench";
/// Prefix of the machine-readable line the wrk script's `done()` prints.
const SUMMARY_TAG: &str = "INGEST_BENCH";

/// Ingest load benchmark: router vs bare hyper, driven by wrk on loopback.
#[derive(Debug, Parser)]
#[command(name = "ingest-bench")]
struct Args {
    /// How long wrk loads each server (whole seconds, e.g. `10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Open connections wrk keeps (`wrk -c`).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads (`wrk -t`); wrk shares the machine's cores with the servers.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Size of the JSON body of each request, in bytes (at least 10).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(10..))]
    payload_bytes: u32,
    /// Worker threads of the tokio runtime running the servers (default: one per CPU).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// `max_in_flight` of the router's destination.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// After the router run, how long to wait for the destination to receive every accepted event.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Skip the third run (router with deliveries parked).
    #[arg(long)]
    no_ingress_only: bool,
    /// What the router delivers to in the second run.
    #[arg(long, value_enum, default_value_t = DestinationKind::Sink)]
    destination: DestinationKind,
    /// Give the route one plugin: event-filter with a JSON-pointer condition every request
    /// passes (so it parses each body and forwards it). Builds the plugins first.
    #[arg(long)]
    plugin: bool,
    /// Log as the router binary does by default (JSON lines at `info`: one per accepted event,
    /// one per delivery), but to /dev/null. Without it no subscriber is installed and the
    /// router's per-event logs cost next to nothing.
    #[arg(long)]
    log: bool,
}

/// The server the router delivers to in the second run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DestinationKind {
    /// The test suite's recording `Sink`, answering 200; it keeps every request (headers and
    /// body) in memory, which costs CPU and memory in the benchmark's own process.
    Sink,
    /// A second bare hyper server, answering 202 and keeping nothing: the cheapest destination,
    /// so more of the CPU is left to the router.
    Bare,
}

/// A running destination for the second run, counting deliveries.
#[derive(Debug)]
enum Destination {
    Sink {
        sink: Sink,
        epoch: Instant,
        delivered: Arc<AtomicU64>,
        /// Nanoseconds from `epoch` to the latest delivery; 0 before the first.
        last_ns: Arc<AtomicU64>,
    },
    Bare(BareServer),
}

impl Destination {
    async fn start(kind: DestinationKind) -> Result<Destination> {
        Ok(match kind {
            DestinationKind::Sink => {
                let epoch = Instant::now();
                let delivered = Arc::new(AtomicU64::new(0));
                let last_ns = Arc::new(AtomicU64::new(0));
                let (count, last) = (Arc::clone(&delivered), Arc::clone(&last_ns));
                // A healthy sink (200 to everything) that also counts deliveries and stamps the
                // latest, so waiting for them never copies the sink's whole record.
                let sink = Sink::start(move |_| {
                    count.fetch_add(1, Ordering::Relaxed);
                    let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    last.fetch_max(now.max(1), Ordering::Relaxed);
                    Reply::ok()
                })
                .await;
                Destination::Sink {
                    sink,
                    epoch,
                    delivered,
                    last_ns,
                }
            }
            DestinationKind::Bare => Destination::Bare(
                BareServer::start()
                    .await
                    .context("cannot start the bare destination")?,
            ),
        })
    }

    fn url(&self) -> String {
        match self {
            Destination::Sink { sink, .. } => sink.url("/sink"),
            Destination::Bare(bare) => bare.url("/sink"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Destination::Sink { sink, .. } => format!("the recording sink at {}", sink.addr()),
            Destination::Bare(bare) => format!("a bare hyper destination at {}", bare.addr()),
        }
    }

    fn delivered(&self) -> u64 {
        match self {
            Destination::Sink { delivered, .. } => delivered.load(Ordering::Relaxed),
            Destination::Bare(bare) => bare.requests(),
        }
    }

    fn last_delivery(&self) -> Option<Instant> {
        match self {
            Destination::Sink { epoch, last_ns, .. } => match last_ns.load(Ordering::Relaxed) {
                0 => None,
                ns => Some(*epoch + Duration::from_nanos(ns)),
            },
            Destination::Bare(bare) => bare.last_answer(),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.duration.as_secs() >= 1 && args.duration.subsec_nanos() == 0,
        "--duration must be a whole number of seconds (wrk's resolution), got {}",
        humantime::format_duration(args.duration)
    );
    ensure!(
        args.threads >= 1 && args.connections >= args.threads,
        "need at least one wrk thread and at least as many connections as threads"
    );
    ensure_wrk()?;
    if args.log {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .init();
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let worker_threads = args.worker_threads.unwrap_or(cpus);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    let script = WrkScript::write(args.payload_bytes as usize)?;
    let outcome = runtime.block_on(run(&args, &script.path, cpus, worker_threads));
    drop(script);
    // Parked deliveries and idle servers are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn run(args: &Args, script: &Path, cpus: usize, worker_threads: usize) -> Result<()> {
    let wrk = WrkSettings {
        threads: args.threads,
        connections: args.connections,
        seconds: args.duration.as_secs(),
        script: script.to_path_buf(),
    };
    println!(
        "ingest-bench: {cpus} CPU(s) shared by wrk and the servers; wrk -t{} -c{} -d{}s, \
         {}-byte JSON POSTs; servers on a multi-threaded tokio runtime with {worker_threads} \
         worker thread(s); router logging {}; {}",
        wrk.threads,
        wrk.connections,
        wrk.seconds,
        args.payload_bytes,
        if args.log {
            "on (JSON, info, to /dev/null)"
        } else {
            "off (no subscriber)"
        },
        if args.plugin {
            "one plugin (event-filter) in the route's chain"
        } else {
            "no plugins"
        }
    );

    // 1. Bare hyper.
    let bare = BareServer::start()
        .await
        .context("cannot start the bare server")?;
    println!("[1/3] bare hyper at {} ...", bare.addr());
    let cpu = process_cpu();
    let mut bare_run = wrk.run(&bare.url(ROUTE_PATH)).await?;
    bare_run.cpu_per_request = cpu_per_request(cpu, bare_run.requests);
    drop(bare);

    // 2. Router delivering to a healthy destination.
    let destination = Destination::start(args.destination).await?;
    let router = TestRouter::start(&router_config(
        &destination.url(),
        args.max_in_flight,
        args.plugin,
    ))
    .await;
    println!(
        "[2/3] router at {} delivering to {} ...",
        router.router.ingress_addr(),
        destination.describe()
    );
    let cpu = process_cpu();
    let load_started = Instant::now();
    let mut router_run = wrk.run(&router.url(ROUTE_PATH)).await?;
    let load_ended = Instant::now();
    let drain = wait_for_deliveries(&router, &destination, args.drain_timeout).await?;
    // Delivery work counts too: up to the last delivery, per accepted event.
    router_run.cpu_per_request = cpu_per_request(cpu, drain.accepted);
    let router_answers = ingress_answers(&router).await;
    let _ = router.router.shutdown().await;
    let end_to_end = destination.last_delivery().map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(load_started)
    });
    drop(destination);
    let delivered_per_sec = if end_to_end.is_zero() {
        0.0
    } else {
        drain.delivered as f64 / end_to_end.as_secs_f64()
    };

    // 3. Router with deliveries parked: ingress alone.
    let ingress_only = if args.no_ingress_only {
        None
    } else {
        let parked = Sink::start(|_| Reply::hang()).await;
        let router = TestRouter::start(&router_config(
            &parked.url("/sink"),
            args.max_in_flight,
            args.plugin,
        ))
        .await;
        println!(
            "[3/3] router at {}, destination never answers (ingress only) ...",
            router.router.ingress_addr()
        );
        let cpu = process_cpu();
        let mut run = wrk.run(&router.url(ROUTE_PATH)).await?;
        run.cpu_per_request = cpu_per_request(cpu, run.requests);
        let answers = ingress_answers(&router).await;
        let _ = router.router.shutdown().await;
        Some((run, answers))
    };

    // Report.
    println!();
    println!(
        "| run | requests | req/s | p50 | p99 | non-2xx (wrk) | socket errors | server CPU/req \
         | router answers |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    println!("{}", bare_run.row("bare hyper", "n/a"));
    println!(
        "{}",
        router_run.row(
            &format!("router (ingress + delivery to {:?})", args.destination).to_lowercase(),
            &router_answers
        )
    );
    if let Some((run, answers)) = &ingress_only {
        println!(
            "{}",
            run.row("router, ingress only (deliveries parked)", answers)
        );
    }
    println!();
    let ratio = router_run.requests_per_sec / bare_run.requests_per_sec;
    let target = if args.plugin { "0.60" } else { "0.80" };
    println!("router/bare req/s ratio:        {ratio:.2} (target >= {target})");
    if let Some((run, _)) = &ingress_only {
        println!(
            "ingress-only/bare req/s ratio:  {:.2}",
            run.requests_per_sec / bare_run.requests_per_sec
        );
    }
    println!(
        "CPU efficiency (bare CPU/req ÷ router CPU/req, steadier than req/s on a busy machine): \
         {} with delivery, {} ingress only",
        efficiency(&bare_run, &router_run),
        ingress_only
            .as_ref()
            .map_or("n/a".to_owned(), |(run, _)| efficiency(&bare_run, run))
    );
    println!(
        "end-to-end delivered/s:         {delivered_per_sec:.0} ({} of {} accepted events \
         delivered, {:.2} s from load start to last delivery; load ran {:.2} s; {})",
        drain.delivered,
        drain.accepted,
        end_to_end.as_secs_f64(),
        (load_ended - load_started).as_secs_f64(),
        if drain.complete {
            "all delivered".to_owned()
        } else {
            format!(
                "INCOMPLETE after {}",
                humantime::format_duration(args.drain_timeout)
            )
        }
    );
    println!(
        "delivered/bare ratio:           {:.2}",
        delivered_per_sec / bare_run.requests_per_sec
    );
    println!(
        "note: wrk runs with -t{} on the same {cpus} CPU(s) as the servers; figures are noisy, \
         compare the ratios.",
        wrk.threads
    );
    Ok(())
}

/// The router config: one route to one destination at `url`, with a queue large enough that
/// no request is turned away with 503.
fn router_config(url: &str, max_in_flight: usize, plugin: bool) -> String {
    let plugin = if plugin {
        format!(
            "\n[[routes.plugins]]\nmodule = \"{}\"\nconfig = {{ json = [{{ pointer = \"/pad\", exists = true }}] }}\n",
            webhook_router_tests::wasm::module("event_filter").display()
        )
    } else {
        String::new()
    };
    format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         admin_listen = \"127.0.0.1:0\"\n\
         queue_capacity = 1_000_000\n\
         shutdown_grace = \"1s\"\n\
         \n\
         [destinations.sink]\n\
         url = \"{url}\"\n\
         max_in_flight = {max_in_flight}\n\
         timeout = \"30s\"\n\
         \n\
         [[routes]]\n\
         id = \"{ROUTE_ID}\"\n\
         path = \"{ROUTE_PATH}\"\n\
         destinations = [\"sink\"]\n{plugin}"
    )
}

/// The router's `webhook_requests_total` for the bench route, by status, e.g. `202: 123456`.
async fn ingress_answers(router: &TestRouter) -> String {
    let metrics = router.metrics().await;
    let prefix = format!("webhook_requests_total{{route=\"{ROUTE_ID}\",status=\"");
    let answers: Vec<String> = metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (status, value) = rest.split_once("\"} ")?;
            let value: f64 = value.trim().parse().ok()?;
            (value > 0.0).then(|| format!("{status}: {value:.0}"))
        })
        .collect();
    if answers.is_empty() {
        "none".to_owned()
    } else {
        answers.join(", ")
    }
}

/// How the wait for deliveries ended.
#[derive(Debug)]
struct Drain {
    accepted: u64,
    delivered: u64,
    complete: bool,
}

/// Waits until the destination has received as many deliveries as the router accepted
/// (answered 202), or `timeout` passes.
async fn wait_for_deliveries(
    router: &TestRouter,
    destination: &Destination,
    timeout: Duration,
) -> Result<Drain> {
    let series = format!("webhook_requests_total{{route=\"{ROUTE_ID}\",status=\"202\"}}");
    let deadline = Instant::now() + timeout;
    loop {
        // Requests cut off when wrk stopped may still be finishing: read the count each time.
        let accepted = router
            .metric(&series)
            .await
            .with_context(|| format!("router metrics have no {series}"))?;
        let accepted = accepted as u64;
        let now_delivered = destination.delivered();
        if now_delivered >= accepted || Instant::now() >= deadline {
            return Ok(Drain {
                accepted,
                delivered: now_delivered,
                complete: now_delivered >= accepted,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A wrk Lua script in a temporary file, removed on drop.
#[derive(Debug)]
struct WrkScript {
    path: PathBuf,
}

impl WrkScript {
    /// Writes a script that POSTs a `payload_bytes`-byte JSON body with
    /// `Content-Type: application/json` and, when done, prints one machine-readable summary
    /// line (requests, duration, latency percentiles, errors; `status` counts answers >= 400).
    fn write(payload_bytes: usize) -> Result<WrkScript> {
        let payload = json_payload(payload_bytes);
        let script = format!(
            r#"wrk.method = "POST"
wrk.body = [==[{payload}]==]
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{SUMMARY_TAG} requests=%d duration_us=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
"#
        );
        let path = std::env::temp_dir().join(format!("ingest-bench-{}.lua", std::process::id()));
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write the wrk script {}", path.display()))?;
        Ok(WrkScript { path })
    }
}

impl Drop for WrkScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A JSON object of exactly `bytes` bytes (at least 10): `{"pad":"xxxx…"}`.
fn json_payload(bytes: usize) -> String {
    let frame = r#"{"pad":""}"#.len();
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(bytes.saturating_sub(frame)))
}

/// wrk's settings, the same for every run.
#[derive(Debug)]
struct WrkSettings {
    threads: u32,
    connections: u32,
    seconds: u64,
    script: PathBuf,
}

/// What one wrk run measured.
#[derive(Debug, Default)]
struct WrkRun {
    requests: u64,
    requests_per_sec: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// Answers with a status >= 400 ("Non-2xx or 3xx responses").
    non_2xx: u64,
    socket_errors: u64,
    /// CPU time this process (the servers, not wrk) spent per request, when measured.
    cpu_per_request: Option<Duration>,
}

impl WrkSettings {
    /// Runs wrk against `url` and parses its report.
    async fn run(&self, url: &str) -> Result<WrkRun> {
        let mut command = Command::new("wrk");
        command
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.seconds))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(&self.script)
            .arg(url);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .context("the wrk thread panicked")?
            .context("cannot run wrk")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let run = parse_wrk(&stdout)
            .with_context(|| format!("cannot understand wrk's report:\n{stdout}"))?;
        println!(
            "      {} requests, {:.0} req/s",
            run.requests, run.requests_per_sec
        );
        Ok(run)
    }
}

/// Parses wrk's `Requests/sec:` line and the script's summary line.
fn parse_wrk(stdout: &str) -> Option<WrkRun> {
    let mut run = WrkRun::default();
    let summary = stdout
        .lines()
        .find_map(|line| line.strip_prefix(SUMMARY_TAG))?;
    let field = |name: &str| -> Option<u64> {
        summary.split_whitespace().find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
    };
    run.requests = field("requests")?;
    run.p50 = field("p50_us").map(Duration::from_micros);
    run.p99 = field("p99_us").map(Duration::from_micros);
    run.non_2xx = field("status").unwrap_or(0);
    run.socket_errors = ["connect", "read", "write", "timeout"]
        .iter()
        .filter_map(|name| field(name))
        .sum();
    let duration_us = field("duration_us")?;
    run.requests_per_sec = stdout
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Requests/sec:")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| run.requests as f64 / (duration_us as f64 / 1e6));
    Some(run)
}

impl WrkRun {
    /// One Markdown table row.
    fn row(&self, name: &str, answers: &str) -> String {
        let latency = |d: Option<Duration>| d.map_or("n/a".to_owned(), format_latency);
        format!(
            "| {name} | {} | {:.0} | {} | {} | {} | {} | {} | {answers} |",
            self.requests,
            self.requests_per_sec,
            latency(self.p50),
            latency(self.p99),
            self.non_2xx,
            self.socket_errors,
            self.cpu_per_request.map_or("n/a".to_owned(), |cpu| format!(
                "{:.1} µs",
                cpu.as_secs_f64() * 1e6
            )),
        )
    }
}

/// `bare`'s CPU per request over `router`'s, if both were measured.
fn efficiency(bare: &WrkRun, router: &WrkRun) -> String {
    match (bare.cpu_per_request, router.cpu_per_request) {
        (Some(bare), Some(router)) if !router.is_zero() => {
            format!("{:.2}", bare.as_secs_f64() / router.as_secs_f64())
        }
        _ => "n/a".to_owned(),
    }
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`; wrk, a
/// child process, is not included.
fn process_cpu() -> Option<Duration> {
    /// Linux reports these times in USER_HZ, 100 per second on every architecture.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at field 3, "state".
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (user + system) * 1000 / TICKS_PER_SECOND,
    ))
}

/// CPU used since `start`, per request.
fn cpu_per_request(start: Option<Duration>, requests: u64) -> Option<Duration> {
    let used = process_cpu()?.checked_sub(start?)?;
    let requests = u32::try_from(requests).ok().filter(|&n| n > 0)?;
    Some(used / requests)
}

fn format_latency(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Makes sure `wrk` is on `PATH`, installing Debian's package with apt-get if it is not.
fn ensure_wrk() -> Result<()> {
    if wrk_present()? {
        return Ok(());
    }
    println!("wrk is not installed: installing it with apt-get (Debian package `wrk`) ...");
    let hint = "install wrk yourself (e.g. `sudo apt-get install wrk`) and run again";
    for args in [&["update"][..], &["install", "-y", "wrk"][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("cannot run `apt-get {}`; {hint}", args.join(" ")))?;
        if !status.success() {
            bail!(
                "`apt-get {}` failed ({status}); are you root? {hint}",
                args.join(" ")
            );
        }
    }
    ensure!(
        wrk_present()?,
        "apt-get installed wrk but it is still not on PATH; {hint}"
    );
    Ok(())
}

/// Whether `wrk` can be started.
fn wrk_present() -> Result<bool> {
    // `wrk -v` prints its version and exits non-zero; only "not found" matters.
    match Command::new("wrk").arg("-v").output() {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).context("cannot run wrk"),
    }
}
