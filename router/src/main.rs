//! The `webhook-router` command: run the router, check a config, manage dead letters.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
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
    /// Run the router (SIGTERM or SIGINT stops it gracefully).
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
    match load(path) {
        Some(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

async fn serve(path: &Path) -> Result<ExitCode> {
    let Some(config) = load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    let router = Router::start(&config).await?;
    println!(
        "webhook-router listening: webhooks on http://{}, admin on http://{}",
        router.ingress_addr(),
        router.admin_addr()
    );
    wait_for_stop_signal().await?;
    tracing::info!("stop signal received, shutting down");
    router.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
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
