//! The `webhook-router` command: run the router, check a config, manage dead letters, list
//! recent events.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::time::Instant;

use webhook_router::plugin::{Isolation, PluginLimits, cases, check_plugins, load_plugin, trial};
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
    /// Run the router (SIGTERM or SIGINT stops it gracefully; SIGHUP is logged and ignored:
    /// live reload is not supported yet).
    Serve {
        /// The route config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file as `serve` would; print "ok" or every error with file:line.
    Check {
        /// The route config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Inspect and replay dead letters through a running router's admin API.
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
    /// List dead letters as JSON.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Queue a dead letter for delivery again.
    Replay {
        /// The dead letter's id (from `list`).
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// Base URL of the admin listener, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    admin: String,
    /// Admin token, if the router requires one.
    #[arg(long, env = "WEBHOOK_ROUTER_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl AdminArgs {
    /// The admin API's URL for `path`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.admin.trim_end_matches('/'))
    }

    /// Sends `request` (with the token, if any) and returns its JSON answer, or the error the
    /// admin API gave.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.context("cannot reach the admin API")?;
        let status = response.status();
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
        value.context("the admin API's answer is not JSON")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Serve { config } => serve(&config).await,
        Command::Check { config } => Ok(check(&config).await),
        Command::DeadLetters(command) => dead_letters(command).await,
        Command::Destinations { admin } => destinations(&admin).await,
        Command::Plugin(PluginCommand::Run(args)) => plugin_run(&args).await,
        Command::Plugin(PluginCommand::Inspect { module }) => plugin_inspect(&module),
        Command::Events(command) => events(command).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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
    match check_plugins(&config).await {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
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
    // What `limits.time` counts: the last call's fuel, against the budget.
    let timing = format!(
        "{timing}; fuel: {} of {} ({})",
        outcome.fuel_used,
        limits.fuel(),
        trial::budget_share(outcome.fuel_used, limits.fuel())
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

async fn serve(path: &Path) -> Result<ExitCode> {
    let Some(config) = load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    // Caught before the router announces itself, so no signal sent after that kills it.
    let mut signals = StopSignals::new()?;
    let router = Router::start(&config).await?;
    println!(
        "webhook-router listening: webhooks on http://{}, admin on http://{}",
        router.ingress_addr(),
        router.admin_addr()
    );
    signals.wait_for_stop().await?;
    tracing::info!("stop signal received, shutting down");
    router.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The signals `serve` handles: SIGTERM and SIGINT stop it; SIGHUP (which would kill it
/// otherwise) is answered with a log line until the router can reload its config.
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

    async fn wait_for_stop(&mut self) -> Result<()> {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return Ok(()),
                _ = self.interrupt.recv() => return Ok(()),
                _ = self.hangup.recv() => tracing::warn!(
                    "SIGHUP received: live reload is not supported yet; the router goes on with the config it started with"
                ),
            }
        }
    }
}

async fn dead_letters(command: DeadLetterCommand) -> Result<ExitCode> {
    let client = reqwest::Client::new();
    let (request, admin) = match &command {
        DeadLetterCommand::List { admin } => (client.get(admin.url("/dead-letters")), admin),
        DeadLetterCommand::Replay { id, admin } => (
            client.post(admin.url(&format!("/dead-letters/{id}/replay"))),
            admin,
        ),
    };
    let answer = admin.send(request).await?;
    let pretty = serde_json::to_string_pretty(&answer)?;
    println!("{pretty}");
    Ok(ExitCode::SUCCESS)
}

async fn events(command: EventsCommand) -> Result<ExitCode> {
    let client = reqwest::Client::new();
    match command {
        EventsCommand::Show { id, admin } => {
            let answer = admin
                .send(client.get(admin.url(&format!("/events/{id}"))))
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
            let request = client.get(admin.url("/events")).query(&query);
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
    let request = reqwest::Client::new().get(admin.url("/destinations"));
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
