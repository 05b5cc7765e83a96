//! The `webhook-router` command: run the router, check a config, manage dead letters.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::time::Instant;

use webhook_router::plugin::{Isolation, PluginLimits, check_plugins, load_plugin, trial};
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
    /// Work with WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin on one event from a file and print its verdict, the resulting body and the
    /// time taken; exits non-zero if the plugin fails.
    Run {
        /// The plugin component (`.wasm`).
        module: PathBuf,
        /// The plugin's config: JSON, or `@FILE` to read it from a file.
        #[arg(long, default_value = "{}")]
        config: String,
        /// The webhook body to run it on.
        #[arg(long)]
        event: PathBuf,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// The route id the event arrives on.
        #[arg(long, default_value = "trial")]
        route: String,
        /// Most time the call may take, e.g. `10ms`.
        #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
        time_limit: std::time::Duration,
    },
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
        Command::Check { config } => Ok(check(&config)),
        Command::DeadLetters(command) => dead_letters(command).await,
        Command::Plugin(PluginCommand::Run {
            module,
            config,
            event,
            headers,
            route,
            time_limit,
        }) => plugin_run(&module, &config, &event, &headers, &route, time_limit),
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

fn check(path: &Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::FAILURE;
    };
    match check_plugins(&config) {
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

fn plugin_run(
    module: &Path,
    config: &str,
    event: &Path,
    headers: &[String],
    route: &str,
    time_limit: std::time::Duration,
) -> Result<ExitCode> {
    let config_json = match config.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the plugin config {file}"))?,
        None => config.to_owned(),
    };
    let config_value: serde_json::Value =
        serde_json::from_str(&config_json).context("the plugin config is not valid JSON")?;
    if !config_value.is_object() {
        bail!("the plugin config must be a JSON object");
    }
    let body = std::fs::read(event)
        .with_context(|| format!("cannot read the event {}", event.display()))?;
    let mut header_map = http::HeaderMap::new();
    for header in headers {
        let (name, value) = trial::parse_header(header).map_err(anyhow::Error::msg)?;
        header_map.append(name, value);
    }
    let limits = PluginLimits {
        time: time_limit,
        ..PluginLimits::default()
    };
    let started = Instant::now();
    let plugin = load_plugin(
        module,
        route,
        &config_value.to_string(),
        limits,
        Isolation::Reuse,
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("cannot load {}", module.display()))?;
    let loaded_in = started.elapsed();
    let event = trial::trial_event(route, body, header_map);
    let outcome = trial::run_once(&plugin, &event);
    let timing = format!(
        "time: {:.1?} (load and configure: {loaded_in:.1?})",
        outcome.elapsed
    );
    match outcome.result {
        Ok(verdict) => {
            let text = format!("{}{timing}\n", trial::render_verdict(&verdict, &event));
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            eprintln!("plugin failed: {failure}");
            eprintln!("{timing}");
            Ok(ExitCode::FAILURE)
        }
    }
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
        DeadLetterCommand::List { admin } => (
            client.get(format!(
                "{}/dead-letters",
                admin.admin.trim_end_matches('/')
            )),
            admin,
        ),
        DeadLetterCommand::Replay { id, admin } => (
            client.post(format!(
                "{}/dead-letters/{id}/replay",
                admin.admin.trim_end_matches('/')
            )),
            admin,
        ),
    };
    let request = match &admin.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.context("cannot reach the admin API")?;
    let status = response.status();
    let body = response
        .text()
        .await
        .context("cannot read the admin API's answer")?;
    let pretty = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(body);
    if !status.is_success() {
        bail!("admin API answered {status}: {pretty}");
    }
    println!("{pretty}");
    Ok(ExitCode::SUCCESS)
}
