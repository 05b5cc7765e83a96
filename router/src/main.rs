//! The `webhook-router` command: run the router, check a config, manage dead letters, list
//! recent events.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::time::Instant;
use tracing_appender::non_blocking::WorkerGuard;

use webhook_router::config::TelemetryConfig;
use webhook_router::plugin::{Isolation, PluginLimits, cases, check_plugins, load_plugin, trial};
use webhook_router::reload::Reloader;
use webhook_router::server::sockets::PassedSockets;
use webhook_router::telemetry::{TelemetryError, Tracing};
use webhook_router::{Config, Router};

/// A WebAssembly-extensible webhook router.
#[derive(Debug, Parser)]
#[command(name = "webhook-router", version, about)]
struct Cli {
    /// Log format (the level comes from RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the router (SIGTERM or SIGINT stops it gracefully; SIGHUP reloads the config
    /// file). Listens on the sockets passed by systemd socket activation (`LISTEN_FDS`: fd 3
    /// ingress, fd 4 admin) instead of the configured addresses.
    Serve {
        /// The route config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Reload when the config file or one of its plugin modules changes.
        #[arg(long)]
        watch: bool,
    },
    /// Ask a running router to reload its config file (`POST /reload`); prints what changed,
    /// or every error (the router then goes on with its old config) and exits non-zero.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Validate a config file as `serve` would; print "ok" (and any warnings, to stderr) or
    /// every error with file:line.
    Check {
        /// The route config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List, replay and discard dead letters through a running router's admin API.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Print each destination's circuit, held events, attempts in flight, last error and last
    /// success, from a running router's admin API, as a table.
    Destinations {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Work with WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// List and show recent events (`[inspect]`) through a running router's admin API.
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List recent events, newest first, one line each (`--json`: the API's answer).
    List {
        /// Only events of this route.
        #[arg(long)]
        route: Option<String>,
        /// Only events queued for this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Only events with this outcome: pending, delivered, dead_lettered, dropped, rejected
        /// or refused (the destination's, with --destination).
        #[arg(long)]
        outcome: Option<String>,
        /// Only events received since: Unix milliseconds or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Most events to list (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Where to start: the `next` cursor a previous list printed.
        #[arg(long)]
        cursor: Option<String>,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one event's record as JSON: plugin verdicts, every attempt, the outcome.
    Show {
        /// The event id (the `id` of the 202, or from `list`).
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin on one event from a file and print its verdict, the resulting body and the
    /// time taken, or on a directory of cases with the verdicts they expect; exits non-zero if
    /// the plugin fails (or a case does not hold).
    Run(Box<PluginRunArgs>),
    /// List a plugin module's imports, each "granted", "linked, denied" or "not available" (a
    /// call that uses one fails, naming it; the command then exits non-zero), and its exports.
    Inspect {
        /// The plugin component (`.wasm`).
        module: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct PluginRunArgs {
    /// The plugin component (`.wasm`).
    module: PathBuf,
    /// The plugin's config: JSON, or `@FILE` to read it from a file.
    #[arg(long, default_value = "{}")]
    config: String,
    /// The webhook body to run it on.
    #[arg(long, required_unless_present = "cases", conflicts_with = "cases")]
    event: Option<PathBuf>,
    /// A directory of cases (`*.toml`: `event`, `headers`, `route`, `expect`, `contains`),
    /// each run and checked against the verdict it expects.
    #[arg(long)]
    cases: Option<PathBuf>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The route id the event arrives on.
    #[arg(long, default_value = "trial")]
    route: String,
    /// Most time one call may take, e.g. `10ms` (the route key `limits.time`).
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    time_limit: std::time::Duration,
    /// Most linear memory the plugin may have, e.g. `16MiB` (the route key `limits.memory`).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    memory: usize,
    /// Output cap, e.g. `1MiB` (the route key `limits.output`; at least 4 × the body).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    output: usize,
    /// Run the event this many times and print the p50 and p99 call times.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    repeat: u32,
}

/// Parses a size such as `16MiB` or a number of bytes.
fn parse_size(text: &str) -> Result<usize, String> {
    let size = text
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("invalid size {text:?} ({e}); write e.g. \"16MiB\""))?;
    usize::try_from(size.as_u64()).map_err(|_| format!("size {text:?} is too large"))
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// List dead letters as JSON: every page, or one page with `--limit` (the next page's
    /// `--cursor` is printed to stderr).
    List {
        #[command(flatten)]
        filter: LetterFilterArgs,
        /// Letters on one page (1 to 10000); only that page is printed.
        #[arg(long)]
        limit: Option<usize>,
        /// Where the page starts (printed after the page before).
        #[arg(long, requires = "limit")]
        cursor: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Queue dead letters for delivery again: one by id, or every one the filters match.
    Replay {
        #[command(flatten)]
        pick: LetterPick,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Discard dead letters: one by id, or every one the filters match.
    Discard {
        #[command(flatten)]
        pick: LetterPick,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Which dead letters: one id, or filters (or `--all`).
#[derive(Debug, clap::Args)]
struct LetterPick {
    /// The dead letter's id (from `list`).
    #[arg(conflicts_with_all = ["route", "destination", "reason", "since", "until", "all"])]
    id: Option<String>,
    #[command(flatten)]
    filter: LetterFilterArgs,
    /// Every dead letter (when no filter is given).
    #[arg(long)]
    all: bool,
}

/// The dead-letter filters of the admin API; every one given must hold.
#[derive(Debug, clap::Args)]
struct LetterFilterArgs {
    /// Only letters of events this route accepted.
    #[arg(long)]
    route: Option<String>,
    /// Only letters for this destination.
    #[arg(long)]
    destination: Option<String>,
    /// Only letters with this reason: http_<status>, http_4xx, http_5xx, http, timeout,
    /// connect, request, panic, removed, given_up or undecodable.
    #[arg(long)]
    reason: Option<String>,
    /// Only letters dead-lettered at or after this time (RFC 3339 or Unix ms).
    #[arg(long)]
    since: Option<String>,
    /// Only letters dead-lettered before this time (RFC 3339 or Unix ms).
    #[arg(long)]
    until: Option<String>,
}

impl LetterFilterArgs {
    /// The filters as query pairs.
    fn query(&self) -> Vec<(&'static str, &str)> {
        [
            ("route", &self.route),
            ("destination", &self.destination),
            ("reason", &self.reason),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value.as_deref()?)))
        .collect()
    }
}

#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// Base URL of the admin listener, e.g. http://127.0.0.1:9090 (https:// with admin_tls).
    #[arg(long)]
    admin: String,
    /// Admin token, if the router requires one.
    #[arg(long, env = "WEBHOOK_ROUTER_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of the CA to trust for an https admin URL, instead of the public roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl AdminArgs {
    /// The HTTP client for the admin API: trusting only `--ca`, if given.
    fn client(&self) -> Result<reqwest::Client> {
        let Some(ca) = &self.ca else {
            return Ok(reqwest::Client::new());
        };
        let mut builder = reqwest::Client::builder().tls_built_in_root_certs(false);
        for certificate in webhook_router::tls::load_ca(ca)? {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(&certificate)?);
        }
        Ok(builder.build()?)
    }

    /// The admin API's URL for `path`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.admin.trim_end_matches('/'))
    }

    /// Sends `request` (with the token, if any) and returns its JSON answer, or the error the
    /// admin API gave.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        Ok(self.send_paged(request).await?.0)
    }

    /// [`AdminArgs::send`], also returning where the next page starts, if the answer says.
    async fn send_paged(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(serde_json::Value, Option<String>)> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.context("cannot reach the admin API")?;
        let status = response.status();
        let next = response
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .text()
            .await
            .context("cannot read the admin API's answer")?;
        let value = serde_json::from_str::<serde_json::Value>(&body);
        if !status.is_success() {
            let shown = value
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(body);
            bail!("admin API answered {status}: {shown}");
        }
        Ok((value.context("the admin API's answer is not JSON")?, next))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Taken while this is the only thread: taking them removes LISTEN_FDS from the environment.
    let passed = match &cli.command {
        Command::Serve { .. } => match PassedSockets::from_env() {
            Ok(passed) => passed,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        },
        _ => PassedSockets::default(),
    };
    // `serve` reads its config before logging starts: its `[telemetry]` decides whether the
    // logging exports traces too.
    let served = match &cli.command {
        Command::Serve { config, .. } => match load(config) {
            Some(config) => Some(config),
            None => return ExitCode::FAILURE,
        },
        _ => None,
    };
    let telemetry = served.as_ref().and_then(|config| config.telemetry.as_ref());
    let (tracing, log_writer) = match init_logging(cli.log_format, telemetry) {
        Ok(logging) => logging,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = run_to_end(cli.command, passed, served);
    if let Some(tracing) = tracing {
        tracing.shutdown();
    }
    // Every line logged so far is written before the error below and before the process
    // exits (a panic unwinding through here drops it too).
    drop(log_writer);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` on a runtime of its own, until it and the runtime's tasks have ended (the
/// lines they log on their way out included).
fn run_to_end(command: Command, passed: PassedSockets, served: Option<Config>) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(command, passed, served))
}

/// Runs `command`; `served` is the config a `serve` command has read.
async fn run(command: Command, passed: PassedSockets, served: Option<Config>) -> Result<ExitCode> {
    match command {
        Command::Serve { watch, .. } => match served {
            Some(config) => serve(&config, watch, passed).await,
            None => bail!("serve started without its config"),
        },
        Command::Reload { admin } => reload(&admin).await,
        Command::Check { config } => Ok(check(&config).await),
        Command::DeadLetters(command) => dead_letters(command).await,
        Command::Destinations { admin } => destinations(&admin).await,
        Command::Plugin(PluginCommand::Run(args)) => plugin_run(&args).await,
        Command::Plugin(PluginCommand::Inspect { module }) => plugin_inspect(&module),
        Command::Events(command) => events(command).await,
    }
}

/// Lines the log writer's thread may have waiting before a thread that logs waits for room
/// (about 3 MiB of lines at most; the thread drains them far faster than the router logs).
const LOG_LINES_BUFFERED: usize = 16_384;

/// Logs to stderr in `format`, at the level `RUST_LOG` sets; with `telemetry`, also exports
/// the router's spans (and the log lines written in them), whatever `RUST_LOG` says, and
/// returns that export, to be shut down last. Every line written inside the router's spans
/// carries their fields (`trace_id` among them): the spans are built only with `telemetry`.
///
/// Lines are written by a thread of their own (`tracing_appender::non_blocking`), in batches,
/// so that no request waits for a write(2); the guard returned flushes them when dropped. The
/// writer is not lossy: when `LOG_LINES_BUFFERED` lines wait, a thread that logs waits for
/// room (as every thread did for each line before) rather than drop lines unseen.
fn init_logging(
    format: LogFormat,
    telemetry: Option<&TelemetryConfig>,
) -> Result<(Option<Tracing>, WorkerGuard), TelemetryError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, filter_fn};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let (tracing, traces) = match telemetry {
        None => (None, None),
        Some(config) => {
            let (tracing, layer) = Tracing::start(config)?;
            let ours = tracing_subscriber::filter::Targets::new()
                .with_target("webhook_router", tracing::Level::INFO);
            (Some(tracing), Some(layer.with_filter(ours)))
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .or(filter_fn(|meta| {
            meta.is_span()
                && meta.target().starts_with("webhook_router")
                && *meta.level() <= tracing::Level::INFO
        })
        // The hint keeps the global level at what RUST_LOG asks for: without it every
        // `log::trace!` of the plugin compiler (cranelift) would be offered to this filter,
        // which made a large module compile several times slower.
        .with_max_level_hint(tracing::Level::INFO));
    // Buffered: the writer's thread writes what has come in, then flushes before it waits.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let subscriber = tracing_subscriber::registry().with(traces);
    match format {
        LogFormat::Text => subscriber.with(log.with_filter(filter)).init(),
        LogFormat::Json => subscriber.with(log.json().with_filter(filter)).init(),
    }
    Ok((tracing, guard))
}

/// Loads a config, printing its errors (one per line) to stderr.
fn load(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

async fn check(path: &Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::FAILURE;
    };
    for warning in config.server.warnings() {
        eprintln!("warning: {warning}");
    }
    match check_plugins(&config).await {
        Ok(_) => {
            println!("ok");
            for warning in warnings(&config) {
                eprintln!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// What is allowed but probably not meant, for `check` to point out about a valid config.
fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.server.admin_token.is_none() {
        warnings.push(format!(
            "server.admin_token is not set: any process that can reach the admin listener ({}) \
             can read dead letters (event bodies) and replay them; set admin_token, e.g. \
             admin_token = \"${{ADMIN_TOKEN}}\"",
            config.server.admin_listen
        ));
    }
    warnings
}

fn plugin_inspect(module: &Path) -> Result<ExitCode> {
    let inspection = webhook_router::plugin::inspect::inspect(module)?;
    print_out(&inspection.render());
    Ok(if inspection.fully_linked() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn plugin_run(args: &PluginRunArgs) -> Result<ExitCode> {
    let config_json = match args.config.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the plugin config {file}"))?,
        None => args.config.clone(),
    };
    let config_value: serde_json::Value =
        serde_json::from_str(&config_json).context("the plugin config is not valid JSON")?;
    if !config_value.is_object() {
        bail!("the plugin config must be a JSON object");
    }
    let limits = PluginLimits {
        time: args.time_limit,
        memory_bytes: args.memory,
        output_bytes: args.output,
        ..PluginLimits::default()
    };
    let started = Instant::now();
    let plugin = load_plugin(
        &args.module,
        &args.route,
        &config_value.to_string(),
        limits,
        Isolation::Reuse,
    )
    .await
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("cannot load {}", args.module.display()))?;
    let loaded_in = started.elapsed();
    if let Some(dir) = &args.cases {
        let cases = cases::load_cases(dir)?;
        let report = cases::run_cases(&plugin, &cases).await;
        print_out(&report.render());
        return Ok(if report.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let Some(event) = &args.event else {
        bail!("give --event FILE or --cases DIR");
    };
    let body = std::fs::read(event)
        .with_context(|| format!("cannot read the event {}", event.display()))?;
    let mut header_map = http::HeaderMap::new();
    for header in &args.headers {
        let (name, value) = trial::parse_header(header).map_err(anyhow::Error::msg)?;
        header_map.append(name, value);
    }
    let event = trial::trial_event(&args.route, body, header_map);
    let repeat = usize::try_from(args.repeat).unwrap_or(usize::MAX);
    let (outcome, times) = trial::run_repeated(&plugin, &event, repeat).await;
    let timing = if times.calls > 1 {
        format!(
            "time: p50 {:.1?}, p99 {:.1?} over {} calls (load and configure: {loaded_in:.1?})",
            times.p50, times.p99, times.calls
        )
    } else {
        format!(
            "time: {:.1?} (load and configure: {loaded_in:.1?})",
            outcome.elapsed
        )
    };
    // What `limits.time` counts: the last call's CPU time, against the budget.
    let timing = format!(
        "{timing}; CPU: {:.1?} of {:.1?} ({})",
        outcome.cpu_time,
        limits.time,
        trial::budget_share(outcome.cpu_time, limits.time)
    );
    match outcome.result {
        Ok(verdict) => {
            print_out(&format!(
                "{}{timing}\n",
                trial::render_verdict(&verdict, &event)
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            eprintln!("plugin failed: {failure}");
            eprintln!("{timing}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_out(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
}

/// Runs the router on `path`'s config, on the sockets `passed` by the service manager if any;
/// with `watch`, reloads when the file or a plugin module changes.
async fn serve(config: &Config, watch: bool, passed: PassedSockets) -> Result<ExitCode> {
    for warning in config.server.warnings() {
        tracing::warn!("{warning}");
    }
    // Caught before the router announces itself, so no signal sent after that kills it.
    let mut signals = StopSignals::new()?;
    let router = Router::start_on(config, passed).await?;
    let _watch = if watch {
        Some(webhook_router::reload::watch::watch(router.reloader())?)
    } else {
        None
    };
    println!(
        "webhook-router listening: webhooks on {}://{}, admin on {}://{}",
        router.ingress_scheme(),
        router.ingress_addr(),
        router.admin_scheme(),
        router.admin_addr()
    );
    signals.wait_for_stop(&router.reloader()).await?;
    tracing::info!("stop signal received, shutting down");
    router.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The signals `serve` handles: SIGTERM and SIGINT stop it; SIGHUP reloads the config.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            hangup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    /// Waits for SIGTERM or SIGINT, reloading with `reloader` at each SIGHUP (its outcome is
    /// logged by the reload).
    async fn wait_for_stop(&mut self, reloader: &Reloader) -> Result<()> {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return Ok(()),
                _ = self.interrupt.recv() => return Ok(()),
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP received: reloading the config");
                    let _ = reloader.reload().await;
                }
            }
        }
    }
}

async fn dead_letters(command: DeadLetterCommand) -> Result<ExitCode> {
    let (pick, method, admin) = match command {
        DeadLetterCommand::List {
            filter,
            limit,
            cursor,
            admin,
        } => return list_dead_letters(&admin.client()?, &filter, limit, cursor, &admin).await,
        DeadLetterCommand::Replay { pick, admin } => (pick, reqwest::Method::POST, admin),
        DeadLetterCommand::Discard { pick, admin } => (pick, reqwest::Method::DELETE, admin),
    };
    let client = admin.client()?;
    let replay = method == reqwest::Method::POST;
    if pick.id.is_none() && pick.filter.query().is_empty() && !pick.all {
        bail!(
            "give a dead letter's id, a filter (--route, --destination, --reason, --since, --until) or --all"
        );
    }
    let request = match (&pick.id, replay) {
        (Some(id), true) => client.post(admin.url(&format!("/dead-letters/{id}/replay"))),
        (Some(id), false) => client.delete(admin.url(&format!("/dead-letters/{id}"))),
        (None, _) => {
            let path = if replay {
                "/dead-letters/replay"
            } else {
                "/dead-letters"
            };
            let mut query = pick.filter.query();
            if pick.all {
                query.push(("all", "true"));
            }
            client.request(method, admin.url(path)).query(&query)
        }
    };
    let answer = admin.send(request).await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

/// Prints one page of dead letters (`limit` given) or all of them, page by page.
async fn list_dead_letters(
    client: &reqwest::Client,
    filter: &LetterFilterArgs,
    limit: Option<usize>,
    mut cursor: Option<String>,
    admin: &AdminArgs,
) -> Result<ExitCode> {
    let mut letters = Vec::new();
    loop {
        let mut query: Vec<(&str, String)> = filter
            .query()
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        query.extend(limit.map(|n| ("limit", n.to_string())));
        query.extend(cursor.take().map(|c| ("cursor", c)));
        let request = client.get(admin.url("/dead-letters")).query(&query);
        let (page, next) = admin.send_paged(request).await?;
        let serde_json::Value::Array(page) = page else {
            bail!("the admin API did not answer a list");
        };
        letters.extend(page);
        match next {
            Some(next) if limit.is_some() => eprintln!("next page: --cursor {next}"),
            Some(next) => {
                cursor = Some(next);
                continue;
            }
            None => {}
        }
        break;
    }
    println!("{}", serde_json::to_string_pretty(&letters)?);
    Ok(ExitCode::SUCCESS)
}

async fn reload(admin: &AdminArgs) -> Result<ExitCode> {
    let mut request = admin.client()?.post(admin.url("/reload"));
    if let Some(token) = &admin.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.context("cannot reach the admin API")?;
    let status = response.status();
    let body = response
        .text()
        .await
        .context("cannot read the admin API's answer")?;
    let answer: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("the admin API answered {status}: {body}"))?;
    if status == reqwest::StatusCode::BAD_REQUEST
        && let Some(errors) = answer["errors"].as_array()
    {
        eprintln!("the config was refused; the router goes on with its old config:");
        for error in errors {
            eprintln!("{}", error.as_str().unwrap_or_default());
        }
        return Ok(ExitCode::FAILURE);
    }
    if !status.is_success() {
        bail!("admin API answered {status}: {body}");
    }
    println!(
        "reloaded: config {}",
        answer["hash"].as_str().unwrap_or("?")
    );
    for (key, what) in [
        ("routes_added", "routes added"),
        ("routes_removed", "routes removed"),
        ("routes_changed", "routes changed"),
    ] {
        let ids: Vec<&str> = answer[key]
            .as_array()
            .map(|ids| ids.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        if !ids.is_empty() {
            println!("{what}: {}", ids.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(command: EventsCommand) -> Result<ExitCode> {
    match command {
        EventsCommand::Show { id, admin } => {
            let answer = admin
                .send(admin.client()?.get(admin.url(&format!("/events/{id}"))))
                .await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        EventsCommand::List {
            route,
            destination,
            outcome,
            since,
            limit,
            cursor,
            json,
            admin,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            let filters = [
                ("route", route),
                ("destination", destination),
                ("outcome", outcome),
                ("since", since),
                ("cursor", cursor),
            ];
            query.extend(filters.into_iter().filter_map(|(k, v)| Some((k, v?))));
            let request = admin.client()?.get(admin.url("/events")).query(&query);
            let answer = admin.send(request).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            print_events(&answer)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a page of `GET /events` as a table, and the cursor of the next page.
fn print_events(page: &serde_json::Value) -> Result<()> {
    let events = page["events"]
        .as_array()
        .context("the admin API did not answer a list of events")?;
    println!(
        "{:<36} {:<16} {:<24} {:<13} DESTINATIONS",
        "ID", "ROUTE", "RECEIVED", "OUTCOME"
    );
    for event in events {
        let destinations: Vec<String> = event["destinations"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|d| {
                let attempts = d["attempts"].as_array().map_or(0, Vec::len);
                format!(
                    "{}:{}({attempts})",
                    d["name"].as_str().unwrap_or("?"),
                    d["outcome"].as_str().unwrap_or("?")
                )
            })
            .collect();
        println!(
            "{:<36} {:<16} {:<24} {:<13} {}",
            event["id"].as_str().unwrap_or("?"),
            event["route"].as_str().unwrap_or("?"),
            event["received_at"].as_str().unwrap_or("?"),
            event["outcome"].as_str().unwrap_or("?"),
            destinations.join(" ")
        );
    }
    if let Some(next) = page["next_cursor"].as_str() {
        println!("next: --cursor {next}");
    }
    Ok(())
}

async fn destinations(admin: &AdminArgs) -> Result<ExitCode> {
    let request = admin.client()?.get(admin.url("/destinations"));
    let answer = admin.send(request).await?;
    let rows = answer
        .as_array()
        .context("the admin API did not answer a list")?;
    let ms = |value: &serde_json::Value| {
        value.as_u64().map_or_else(
            || "-".to_owned(),
            |ms| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                humantime::format_rfc3339_seconds(at).to_string()
            },
        )
    };
    println!(
        "{:<20} {:<9} {:>15} {:>9} {:<20} {:<20} LAST ERROR",
        "DESTINATION", "CIRCUIT", "HELD", "IN FLIGHT", "LAST SUCCESS", "LAST ERROR AT"
    );
    for row in rows {
        println!(
            "{:<20} {:<9} {:>15} {:>9} {:<20} {:<20} {}",
            row["name"].as_str().unwrap_or("?"),
            row["circuit"].as_str().unwrap_or("?"),
            format!("{}/{}", row["held"], row["max_held"]),
            format!("{}/{}", row["in_flight"], row["max_in_flight"]),
            ms(&row["last_success_at_ms"]),
            ms(&row["last_error_at_ms"]),
            row["last_error"].as_str().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
