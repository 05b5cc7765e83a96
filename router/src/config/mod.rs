//! The route config file: its TOML schema, loading and validation.
//!
//! A file has three parts: `[server]` (listeners and limits), `[destinations.NAME]` (where events
//! go and how they are retried) and `[[routes]]` (which path feeds which destinations). Loading
//! reports every problem it finds, each with file, line and key, instead of stopping at the first.

pub(crate) mod bounds;
mod error;
mod values;
mod verify;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use error::{ConfigError, ConfigErrors};
pub use values::{ByteSize, EnvString, HumanDuration, Secret};
pub use verify::{DedupConfig, SignConfig};

use error::ErrorSink;

/// A validated router configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (used in messages).
    pub source: PathBuf,
    /// Listeners, limits and admin settings.
    pub server: ServerConfig,
    /// Where accepted events are held: in memory, or in the journal.
    pub queue: QueueConfig,
    /// Delivery targets, by name.
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// Webhook routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// The record of recent events (`GET /events`).
    pub inspect: InspectConfig,
    /// Test-only fault injection; never read from a file.
    #[doc(hidden)]
    pub test_faults: crate::supervise::TestFaults,
}

/// The `[server]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the webhook ingress listener.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`, dead letters).
    #[serde(default = "defaults::admin_listen")]
    pub admin_listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413.
    #[serde(
        default = "defaults::max_body_bytes",
        deserialize_with = "bounds::max_body_bytes"
    )]
    pub max_body_bytes: ByteSize,
    /// Most events held by the router (queued or being delivered); past it senders get 503.
    #[serde(
        default = "defaults::queue_capacity",
        deserialize_with = "bounds::queue_capacity"
    )]
    pub queue_capacity: NonZeroUsize,
    /// How long a client may take to send its request head.
    #[serde(
        default = "defaults::header_read_timeout",
        deserialize_with = "bounds::header_read_timeout"
    )]
    pub header_read_timeout: HumanDuration,
    /// How long a keep-alive connection may stay open with no request in flight.
    #[serde(
        default = "defaults::idle_timeout",
        deserialize_with = "bounds::idle_timeout"
    )]
    pub idle_timeout: HumanDuration,
    /// Most ingress connections open at once; by default what the descriptor limit allows
    /// (see `server::descriptors`). A value above that is lowered, with a warning, at start.
    #[serde(default, deserialize_with = "bounds::max_connections")]
    pub max_connections: Option<NonZeroUsize>,
    /// Most ingress requests being received and handled at once; past it, 503 + `Retry-After`.
    #[serde(
        default = "defaults::max_requests_in_flight",
        deserialize_with = "bounds::max_requests_in_flight"
    )]
    pub max_requests_in_flight: NonZeroUsize,
    /// How long a client may take to send its whole request body.
    #[serde(
        default = "defaults::body_read_timeout",
        deserialize_with = "bounds::body_read_timeout"
    )]
    pub body_read_timeout: HumanDuration,
    /// On shutdown, how long in-flight deliveries may take to finish.
    #[serde(
        default = "defaults::shutdown_grace",
        deserialize_with = "bounds::shutdown_grace"
    )]
    pub shutdown_grace: HumanDuration,
    /// Most dead letters kept; the oldest is evicted past it.
    #[serde(
        default = "defaults::dead_letter_capacity",
        deserialize_with = "bounds::dead_letter_capacity"
    )]
    pub dead_letter_capacity: NonZeroUsize,
    /// Most bytes of dead letters kept (bodies and headers); the oldest are evicted past it.
    #[serde(
        default = "defaults::dead_letter_max_bytes",
        deserialize_with = "bounds::dead_letter_max_bytes"
    )]
    pub dead_letter_max_bytes: ByteSize,
    /// Bearer token required by the admin API (not `/metrics`, `/healthz`, `/readyz`).
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// Says that an `admin_listen` reachable from the network without `admin_token` is meant;
    /// without it such a config is refused.
    #[serde(default)]
    pub admin_public: bool,
    /// Proxies whose `X-Forwarded-For` is believed when checking a route's `allow_ips`.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::allow_list::Cidr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            admin_listen: defaults::admin_listen(),
            max_body_bytes: defaults::max_body_bytes(),
            queue_capacity: defaults::queue_capacity(),
            header_read_timeout: defaults::header_read_timeout(),
            idle_timeout: defaults::idle_timeout(),
            max_connections: None,
            max_requests_in_flight: defaults::max_requests_in_flight(),
            body_read_timeout: defaults::body_read_timeout(),
            shutdown_grace: defaults::shutdown_grace(),
            dead_letter_capacity: defaults::dead_letter_capacity(),
            dead_letter_max_bytes: defaults::dead_letter_max_bytes(),
            admin_token: None,
            admin_public: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The `[inspect]` table: how many recent events, and for how long, the router keeps a
/// record of (`GET /events`, `webhook-router events`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectConfig {
    /// Most events recorded; the oldest is forgotten first. 0 turns the record off.
    #[serde(
        default = "defaults::inspect_events",
        deserialize_with = "bounds::inspect_events"
    )]
    pub events: usize,
    /// How long an event stays recorded.
    #[serde(
        default = "defaults::inspect_max_age",
        deserialize_with = "bounds::inspect_max_age"
    )]
    pub max_age: HumanDuration,
}

impl Default for InspectConfig {
    fn default() -> Self {
        Self {
            events: defaults::inspect_events(),
            max_age: defaults::inspect_max_age(),
        }
    }
}

/// The `[queue]` table: where accepted events are held until delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// `"memory"`, `"journal"` or `"nats"`; by default the journal when `path` is set, else
    /// memory.
    #[serde(default)]
    pub backend: Option<QueueBackend>,
    /// The journal's directory (relative paths are resolved against the config file's folder).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// When the journal syncs its writes.
    #[serde(default)]
    pub fsync: FsyncMode,
    /// With `fsync = "interval"`: the longest a write waits for its sync.
    #[serde(
        default = "defaults::fsync_interval",
        deserialize_with = "bounds::fsync_interval"
    )]
    pub fsync_interval: HumanDuration,
    /// Most bytes the journal (or the NATS stream) may hold; past it senders get 503 +
    /// `Retry-After`.
    #[serde(
        default = "defaults::journal_max_bytes",
        deserialize_with = "bounds::journal_max_bytes"
    )]
    pub max_bytes: ByteSize,
    /// With `backend = "nats"`: the NATS server(s), e.g. `"nats://127.0.0.1:4222"` (`${ENV}` is
    /// expanded; several URLs separated by commas).
    #[serde(default)]
    pub url: Option<EnvString>,
    /// With `backend = "nats"`: a token to authenticate with.
    #[serde(default)]
    pub token: Option<Secret>,
    /// With `backend = "nats"`: a user name (with `password`).
    #[serde(default)]
    pub user: Option<EnvString>,
    /// With `backend = "nats"`: the password of `user`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// With `backend = "nats"`: a `.creds` file (JWT and nkey seed); relative to the config.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// With `backend = "nats"`: the JetStream stream's name (also the prefix of its subjects
    /// and key-value buckets).
    #[serde(
        default = "defaults::nats_stream",
        deserialize_with = "bounds::nats_stream"
    )]
    pub stream: String,
    /// With `backend = "nats"`: copies of the stream kept by a JetStream cluster.
    #[serde(
        default = "defaults::nats_replicas",
        deserialize_with = "bounds::nats_replicas"
    )]
    pub replicas: usize,
    /// With `backend = "nats"`: how long an event may stay in the stream undelivered (`0s`: no
    /// limit).
    #[serde(
        default = "defaults::nats_max_age",
        deserialize_with = "bounds::nats_max_age"
    )]
    pub max_age: HumanDuration,
    /// With `backend = "nats"`: how long a router may hold a message without a word before
    /// JetStream gives it to another router (routers holding one send progress well within it).
    #[serde(
        default = "defaults::nats_ack_wait",
        deserialize_with = "bounds::nats_ack_wait"
    )]
    pub ack_wait: HumanDuration,
    /// With `backend = "nats"`: how long ingress waits for JetStream to store an event before
    /// answering 503.
    #[serde(
        default = "defaults::nats_publish_timeout",
        deserialize_with = "bounds::nats_publish_timeout"
    )]
    pub publish_timeout: HumanDuration,
    /// With `backend = "nats"`: most messages of one destination handed out and not yet
    /// acknowledged, across every router.
    #[serde(
        default = "defaults::nats_max_ack_pending",
        deserialize_with = "bounds::nats_max_ack_pending"
    )]
    pub max_ack_pending: NonZeroUsize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backend: None,
            path: None,
            fsync: FsyncMode::default(),
            fsync_interval: defaults::fsync_interval(),
            max_bytes: defaults::journal_max_bytes(),
            url: None,
            token: None,
            user: None,
            password: None,
            credentials: None,
            stream: defaults::nats_stream(),
            replicas: defaults::nats_replicas(),
            max_age: defaults::nats_max_age(),
            ack_wait: defaults::nats_ack_wait(),
            publish_timeout: defaults::nats_publish_timeout(),
            max_ack_pending: defaults::nats_max_ack_pending(),
        }
    }
}

impl QueueConfig {
    /// The journal's directory, if the queue is journaled.
    pub fn journal_dir(&self) -> Option<&Path> {
        match self.backend {
            Some(QueueBackend::Memory | QueueBackend::Nats) => None,
            Some(QueueBackend::Journal) | None => self.path.as_deref(),
        }
    }
}

/// The queue's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// Held in this process only: a stop or a crash loses what it holds.
    Memory,
    /// Written to the journal before the 202; survives crashes and restarts.
    Journal,
    /// Published to a NATS JetStream stream before the 202, shared by every router on it.
    Nats,
}

/// When the journal syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Before the 202 (concurrent requests share one sync).
    #[default]
    Always,
    /// Every `fsync_interval`.
    Interval,
    /// Only when a segment closes and at shutdown.
    Never,
}

/// A `[destinations.NAME]` table: an HTTP endpoint events are delivered to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The URL events are POSTed to (`http` or `https`; `${ENV}` is expanded).
    pub url: DestinationUrl,
    /// Time limit for one delivery attempt, from connect to the end of the response head.
    #[serde(default = "defaults::timeout", deserialize_with = "bounds::timeout")]
    pub timeout: HumanDuration,
    /// Most requests in flight to this destination at once.
    #[serde(
        default = "defaults::max_in_flight",
        deserialize_with = "bounds::max_in_flight"
    )]
    pub max_in_flight: NonZeroUsize,
    /// Most undelivered events this destination may hold (queued, in flight or waiting to
    /// retry); past it only the routes that deliver here answer 503. Default: half of
    /// `queue_capacity` (all of it for a config's only destination), so that one dead
    /// destination leaves room for the others.
    #[serde(default, deserialize_with = "bounds::max_held")]
    pub max_held: Option<NonZeroUsize>,
    /// How failed attempts are retried.
    #[serde(default)]
    pub retry: RetryConfig,
    /// When to stop sending attempts to a destination that keeps failing.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// Extra headers sent with every delivery (e.g. `Authorization`); `${ENV}` is expanded.
    #[serde(default)]
    pub headers: BTreeMap<String, EnvString>,
    /// Signs every delivery (Standard Webhooks), if set.
    #[serde(default)]
    pub sign: Option<SignConfig>,
}

/// A destination URL, checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationUrl(pub reqwest::Url);

impl<'de> Deserialize<'de> for DestinationUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let EnvString(text) = EnvString::deserialize(deserializer)?;
        let url = reqwest::Url::parse(&text)
            .map_err(|e| de::Error::custom(format!("invalid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(de::Error::custom(format!(
                "URL scheme must be http or https, not {:?}",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(de::Error::custom("URL has no host"));
        }
        Ok(DestinationUrl(url))
    }
}

/// Retry policy of one destination (`retry = { ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included, before an event is dead-lettered.
    #[serde(
        default = "defaults::max_attempts",
        deserialize_with = "bounds::max_attempts"
    )]
    pub max_attempts: NonZeroU32,
    /// Wait before the second attempt; it doubles for each further attempt.
    #[serde(
        default = "defaults::initial_backoff",
        deserialize_with = "bounds::initial_backoff"
    )]
    pub initial_backoff: HumanDuration,
    /// Longest wait between attempts, also the cap on a destination's `Retry-After`.
    #[serde(
        default = "defaults::max_backoff",
        deserialize_with = "bounds::max_backoff"
    )]
    pub max_backoff: HumanDuration,
    /// How waits are randomised.
    #[serde(default)]
    pub jitter: Jitter,
}

/// A destination's circuit breaker: after `failures` failed attempts in a row (connect errors,
/// timeouts, 5xx, 429; each within `window` of the one before), no attempts for `open_for`;
/// then one probe: success closes the circuit, failure opens it again for twice as long, up
/// to `max_open_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Failed attempts in a row that open the circuit.
    #[serde(
        default = "defaults::circuit_failures",
        deserialize_with = "bounds::circuit_failures"
    )]
    pub failures: NonZeroU32,
    /// A failure further than this from the one before starts the count again.
    #[serde(
        default = "defaults::circuit_window",
        deserialize_with = "bounds::circuit_window"
    )]
    pub window: HumanDuration,
    /// How long the circuit first stays open.
    #[serde(
        default = "defaults::circuit_open_for",
        deserialize_with = "bounds::circuit_open_for"
    )]
    pub open_for: HumanDuration,
    /// The longest it stays open (the wait doubles after each failed probe).
    #[serde(
        default = "defaults::circuit_max_open_for",
        deserialize_with = "bounds::circuit_max_open_for"
    )]
    pub max_open_for: HumanDuration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failures: defaults::circuit_failures(),
            window: defaults::circuit_window(),
            open_for: defaults::circuit_open_for(),
            max_open_for: defaults::circuit_max_open_for(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: defaults::max_attempts(),
            initial_backoff: defaults::initial_backoff(),
            max_backoff: defaults::max_backoff(),
            jitter: Jitter::default(),
        }
    }
}

/// Randomisation of retry waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Wait a uniformly random time between zero and the exponential backoff (the default).
    #[default]
    Full,
    /// Wait exactly the exponential backoff.
    None,
}

/// A `[[routes]]` entry: a path that accepts webhooks and the destinations they go to.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Stable identifier, used in logs and metric labels.
    pub id: String,
    /// Request path, e.g. `/hooks/github`.
    pub path: String,
    /// Names of the destinations every accepted event is delivered to.
    pub destinations: Vec<String>,
    /// WebAssembly plugins every event passes through, in order.
    pub plugins: Vec<PluginConfig>,
    /// What a plugin failure does to the event.
    pub on_plugin_error: OnPluginError,
    /// How the sender's signature is checked, if it is.
    pub verify: Option<crate::verify::Verifier>,
    /// How repeated deliveries are recognised, if they are.
    pub dedup: Option<DedupConfig>,
    /// How many requests a second the route accepts, if limited.
    pub rate_limit: Option<crate::rate_limit::RateLimitConfig>,
    /// The only client networks the route accepts, if restricted.
    pub allow_ips: Option<Vec<crate::allow_list::Cidr>>,
    /// Whether the event record (`GET /events/{id}`) keeps this route's bodies.
    pub inspect_bodies: bool,
}

/// One entry of a route's `plugins` list.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The component file, resolved against the config file's directory.
    pub module: PathBuf,
    /// Label in metrics and logs (default: the module's file stem).
    pub name: String,
    /// The plugin's own configuration, handed to its `configure` as JSON.
    pub config: serde_json::Value,
    /// Resource limits.
    pub limits: PluginLimitsConfig,
    /// How instances are isolated between events.
    pub isolation: Isolation,
    /// Where the entry is written, for errors found when the plugin is loaded.
    pub location: ConfigLocation,
}

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocation {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key, e.g. `routes[0].plugins[1]`.
    pub key: String,
}

impl ConfigLocation {
    /// An error at this place.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: Some(self.line),
            column: Some(self.column),
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

/// A plugin's `limits = { memory, time, output, fan_out }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimitsConfig {
    /// Most linear memory (default 16 MiB, at most 256 MiB).
    #[serde(
        default = "defaults::plugin_memory",
        deserialize_with = "bounds::plugin_memory"
    )]
    pub memory: ByteSize,
    /// Most time per event (default 10 ms).
    #[serde(
        default = "defaults::plugin_time",
        deserialize_with = "bounds::plugin_time"
    )]
    pub time: HumanDuration,
    /// Output cap (default 1 MiB); the larger of this and 4 × the input body applies.
    #[serde(
        default = "defaults::plugin_output",
        deserialize_with = "bounds::plugin_output"
    )]
    pub output: ByteSize,
    /// Most deliveries one `fan-out` verdict may name (default 64).
    #[serde(default = "defaults::plugin_fan_out")]
    pub fan_out: u32,
}

impl Default for PluginLimitsConfig {
    fn default() -> Self {
        Self {
            memory: defaults::plugin_memory(),
            time: defaults::plugin_time(),
            output: defaults::plugin_output(),
            fan_out: defaults::plugin_fan_out(),
        }
    }
}

/// How a plugin's instances are isolated between events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A configured instance is reused for later events of the same route and plugin; one
    /// that fails is discarded (the default: fastest).
    #[default]
    Reuse,
    /// Every event gets a new instance, configured and then dropped.
    Fresh,
}

/// What a plugin failure (trap, timeout, memory, oversized output, error, bad verdict) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPluginError {
    /// Answer the sender 500; nothing is queued (the default).
    #[default]
    Reject,
    /// Answer 202 and deliver nothing.
    Drop,
    /// Carry on with the event as it was before the failing plugin.
    Forward,
}

/// The raw shape of a `[[routes]]` entry, with spans for cross-checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    id: Spanned<String>,
    path: Spanned<String>,
    destinations: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    plugins: Vec<Spanned<RawPlugin>>,
    #[serde(default)]
    on_plugin_error: OnPluginError,
    #[serde(default)]
    verify: Option<Spanned<verify::RawVerify>>,
    #[serde(default)]
    dedup: Option<Spanned<verify::RawDedup>>,
    #[serde(default)]
    rate_limit: Option<crate::rate_limit::RateLimitConfig>,
    #[serde(default)]
    allow_ips: Option<Vec<crate::allow_list::Cidr>>,
    #[serde(default)]
    inspect_bodies: bool,
}

/// The raw shape of a plugin entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    module: EnvString,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "defaults::plugin_config")]
    config: serde_json::Value,
    #[serde(default)]
    limits: PluginLimitsConfig,
    #[serde(default)]
    isolation: Isolation,
}

mod defaults {
    use super::*;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn admin_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9090))
    }
    pub fn max_body_bytes() -> ByteSize {
        ByteSize(1024 * 1024)
    }
    pub fn queue_capacity() -> NonZeroUsize {
        NonZeroUsize::new(100_000).expect("non-zero")
    }
    pub fn header_read_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn idle_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
    pub fn max_requests_in_flight() -> NonZeroUsize {
        NonZeroUsize::new(128).expect("non-zero")
    }
    pub fn body_read_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn shutdown_grace() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn dead_letter_capacity() -> NonZeroUsize {
        NonZeroUsize::new(10_000).expect("non-zero")
    }
    pub fn circuit_failures() -> NonZeroU32 {
        NonZeroU32::new(20).expect("non-zero")
    }
    pub fn circuit_window() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn circuit_open_for() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub fn circuit_max_open_for() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub fn fsync_interval() -> HumanDuration {
        HumanDuration(Duration::from_millis(10))
    }
    pub fn nats_stream() -> String {
        "WEBHOOKS".to_owned()
    }
    pub fn nats_replicas() -> usize {
        1
    }
    pub fn nats_max_age() -> HumanDuration {
        HumanDuration(Duration::ZERO)
    }
    pub fn nats_ack_wait() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn nats_publish_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub fn nats_max_ack_pending() -> NonZeroUsize {
        NonZeroUsize::new(1000).expect("non-zero")
    }
    pub fn journal_max_bytes() -> ByteSize {
        ByteSize(4 * 1024 * 1024 * 1024)
    }
    pub fn dead_letter_max_bytes() -> ByteSize {
        ByteSize(256 * 1024 * 1024)
    }
    pub fn timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn max_in_flight() -> NonZeroUsize {
        NonZeroUsize::new(64).expect("non-zero")
    }
    pub fn max_attempts() -> NonZeroU32 {
        NonZeroU32::new(8).expect("non-zero")
    }
    pub fn initial_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    pub fn max_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
    pub fn plugin_memory() -> ByteSize {
        ByteSize(16 * 1024 * 1024)
    }
    pub fn plugin_time() -> HumanDuration {
        HumanDuration(Duration::from_millis(10))
    }
    pub fn plugin_output() -> ByteSize {
        ByteSize(1024 * 1024)
    }
    pub fn plugin_fan_out() -> u32 {
        64
    }
    pub fn inspect_events() -> usize {
        10_000
    }
    pub fn inspect_max_age() -> HumanDuration {
        HumanDuration(Duration::from_secs(24 * 3600))
    }
    pub fn plugin_config() -> serde_json::Value {
        serde_json::Value::Object(serde_json::Map::new())
    }
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: String::new(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config `text`; `source` names it in error messages.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
        let mut sink = ErrorSink::new(source, text);
        let root = match DeTable::parse(text) {
            Ok(root) => root.into_inner(),
            Err(e) => {
                sink.push_toml("", &e);
                return Err(sink.finish());
            }
        };

        let mut server = None;
        let mut queue = None;
        let mut inspect = None;
        let mut destinations = BTreeMap::new();
        let mut destination_names = HashSet::new();
        let mut raw_routes = Vec::new();
        for (key, value) in root {
            let key_span = key.span();
            match key.get_ref().as_ref() {
                "server" => {
                    // Problems with the two listeners are shown at `admin_listen`, or at the
                    // table when it is not written.
                    let admin_span =
                        span_of(&value, &["admin_listen"]).or_else(|| span_of(&value, &[]));
                    server = deserialize_item::<ServerConfig>(value, "server", &mut sink);
                    if let Some(server) = &server {
                        check_server(server, admin_span, &mut sink);
                    }
                }
                "queue" => {
                    let backend_span =
                        span_of(&value, &["backend"]).or_else(|| span_of(&value, &[]));
                    queue = deserialize_item::<QueueConfig>(value, "queue", &mut sink);
                    if let Some(queue) = &mut queue {
                        if queue.backend == Some(QueueBackend::Journal) && queue.path.is_none() {
                            sink.push(
                                backend_span.clone(),
                                "queue.backend",
                                "backend = \"journal\" needs `path`, the journal's directory",
                            );
                        }
                        check_nats(queue, backend_span, &mut sink);
                        let base = source.parent().unwrap_or_else(|| Path::new(""));
                        for path in [&mut queue.path, &mut queue.credentials]
                            .into_iter()
                            .flatten()
                        {
                            if path.is_relative() {
                                *path = base.join(&*path);
                            }
                        }
                    }
                }
                "destinations" => {
                    parse_destinations(value, &mut sink, &mut destinations, &mut destination_names);
                }
                "routes" => parse_routes(value, &mut sink, &mut raw_routes),
                "inspect" => inspect = deserialize_item(value, "inspect", &mut sink),
                other => sink.push(
                    Some(key_span),
                    other,
                    "unknown key, expected one of `server`, `queue`, `inspect`, `destinations`, `routes`",
                ),
            }
        }
        let server = server.unwrap_or_default();
        let routes = validate_routes(raw_routes, &destination_names, &mut sink);
        if !sink.is_empty() {
            return Err(sink.finish());
        }
        Ok(Config {
            source: source.to_path_buf(),
            server,
            queue: queue.unwrap_or_default(),
            destinations,
            routes,
            inspect: inspect.unwrap_or_default(),
            test_faults: crate::supervise::TestFaults::default(),
        })
    }
}

/// The span of the value at `path` (table keys, outermost first) inside `value`, if present.
fn span_of(value: &Spanned<DeValue<'_>>, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value.span());
    };
    let DeValue::Table(table) = value.get_ref() else {
        return None;
    };
    let (_, inner) = table
        .iter()
        .find(|(key, _)| key.get_ref().as_ref() == *first)?;
    span_of(inner, rest)
}

/// Checks `[server]` values that are each in range but contradict each other or the
/// deployment: `admin_span` locates `admin_listen` in the file.
fn check_server(
    server: &ServerConfig,
    admin_span: Option<std::ops::Range<usize>>,
    sink: &mut ErrorSink<'_>,
) {
    let (ingress, admin) = (server.listen, server.admin_listen);
    let same_port = ingress.port() != 0 && ingress.port() == admin.port();
    let overlapping =
        ingress.ip() == admin.ip() || ingress.ip().is_unspecified() || admin.ip().is_unspecified();
    if !admin.ip().is_loopback() && server.admin_token.is_none() && !server.admin_public {
        sink.push(
            admin_span.clone(),
            "server.admin_listen",
            format!(
                "{admin} is reachable from the network and no admin_token is set: anyone could \
                 read dead letters (event bodies) and replay them; set admin_token, or \
                 admin_public = true if an open admin API is meant"
            ),
        );
    }
    if same_port && overlapping {
        sink.push(
            admin_span,
            "server.admin_listen",
            format!("{admin} is also the ingress address (`listen`): the two listeners need different ports"),
        );
    }
}

/// Checks that the NATS keys of `[queue]` go with `backend = "nats"`, and that it has a `url`;
/// `span` locates `backend` (or the table) in the file.
fn check_nats(queue: &QueueConfig, span: Option<std::ops::Range<usize>>, sink: &mut ErrorSink<'_>) {
    let nats = queue.backend == Some(QueueBackend::Nats);
    if nats && queue.url.is_none() {
        sink.push(
            span.clone(),
            "queue.backend",
            "backend = \"nats\" needs `url`, e.g. url = \"nats://127.0.0.1:4222\"",
        );
    }
    let nats_keys = [
        ("url", queue.url.is_some()),
        ("token", queue.token.is_some()),
        ("user", queue.user.is_some()),
        ("password", queue.password.is_some()),
        ("credentials", queue.credentials.is_some()),
    ];
    for (key, set) in nats_keys {
        if set && !nats {
            sink.push(
                span.clone(),
                format!("queue.{key}"),
                format!("`{key}` is a NATS setting: it needs backend = \"nats\""),
            );
        }
    }
    if nats && queue.path.is_some() {
        sink.push(
            span.clone(),
            "queue.path",
            "backend = \"nats\" keeps events in the NATS stream: remove `path`",
        );
    }
    if queue.user.is_some() != queue.password.is_some() {
        sink.push(span, "queue.user", "`user` and `password` go together");
    }
}

/// Deserializes one item, recording (and swallowing) its error so that loading can go on.
fn deserialize_item<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    key: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(item) => Some(item),
        Err(e) => {
            sink.push_toml(key, &e);
            None
        }
    }
}

fn parse_destinations(
    value: Spanned<DeValue<'_>>,
    sink: &mut ErrorSink<'_>,
    out: &mut BTreeMap<String, DestinationConfig>,
    names: &mut HashSet<String>,
) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        sink.push(
            Some(span),
            "destinations",
            "must be a table of named destinations",
        );
        return;
    };
    for (name, value) in table {
        let name_span = name.span();
        let name = name.into_inner().into_owned();
        let key = format!("destinations.{name}");
        // Known even if its table has errors, so routes naming it are not reported too.
        names.insert(name.clone());
        if !is_identifier(&name) {
            sink.push(
                Some(name_span.clone()),
                &key,
                "destination names may use only letters, digits, '-' and '_'",
            );
        }
        let retry_span = span_of(&value, &["retry"]).or_else(|| Some(name_span.clone()));
        let circuit_span = span_of(&value, &["circuit"]).or_else(|| Some(name_span.clone()));
        if let Some(destination) = deserialize_item::<DestinationConfig>(value, &key, sink) {
            let mut problems = Vec::new();
            for (header, value) in &destination.headers {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    problems.push(("headers", format!("invalid header name {header:?}")));
                } else if http::HeaderValue::from_str(&value.0).is_err() {
                    problems.push(("headers", format!("header {header:?} has an invalid value")));
                }
            }
            for (field, message) in problems {
                sink.push(Some(name_span.clone()), format!("{key}.{field}"), message);
            }
            // Each value is in range (`bounds`); these contradict each other.
            let retry = destination.retry;
            if retry.initial_backoff > retry.max_backoff {
                sink.push(
                    retry_span,
                    format!("{key}.retry"),
                    "initial_backoff is longer than max_backoff",
                );
            }
            let circuit = destination.circuit;
            if circuit.open_for > circuit.max_open_for {
                sink.push(
                    circuit_span,
                    format!("{key}.circuit"),
                    "open_for is longer than max_open_for",
                );
            }
            out.insert(name, destination);
        }
    }
}

fn parse_routes(value: Spanned<DeValue<'_>>, sink: &mut ErrorSink<'_>, out: &mut Vec<RawRoute>) {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        sink.push(
            Some(span),
            "routes",
            "must be an array of tables: write each route as [[routes]]",
        );
        return;
    };
    for (index, item) in items.into_iter().enumerate() {
        let key = format!("routes[{index}]");
        if let Some(route) = deserialize_item::<RawRoute>(item, &key, sink) {
            out.push(route);
        }
    }
}

/// Checks routes against each other and against the destinations; returns the clean routes.
fn validate_routes(
    raw: Vec<RawRoute>,
    destinations: &HashSet<String>,
    sink: &mut ErrorSink<'_>,
) -> Vec<RouteConfig> {
    if raw.is_empty() && sink.is_empty() {
        sink.push(
            None,
            "routes",
            "no routes are configured: add at least one [[routes]] table",
        );
    }
    let mut ids = HashSet::new();
    let mut paths = HashMap::new();
    let mut routes = Vec::with_capacity(raw.len());
    for (index, route) in raw.into_iter().enumerate() {
        let key = format!("routes[{index}]");
        let id = route.id.get_ref();
        if !is_identifier(id) {
            sink.push(
                Some(route.id.span()),
                format!("{key}.id"),
                "route ids may use only letters, digits, '-' and '_'",
            );
        } else if !ids.insert(id.clone()) {
            sink.push(
                Some(route.id.span()),
                format!("{key}.id"),
                format!("duplicate route id {id:?}"),
            );
        }
        let path = route.path.get_ref();
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            sink.push(
                Some(route.path.span()),
                format!("{key}.path"),
                "must be an absolute path such as \"/hooks/github\" (no query or fragment)",
            );
        } else if let Some(other) = paths.insert(path.clone(), index) {
            sink.push(
                Some(route.path.span()),
                format!("{key}.path"),
                format!("path {path:?} is already used by routes[{other}]"),
            );
        }
        if route.destinations.get_ref().is_empty() {
            sink.push(
                Some(route.destinations.span()),
                format!("{key}.destinations"),
                "a route needs at least one destination",
            );
        }
        let mut seen = HashSet::new();
        for name in route.destinations.get_ref() {
            let name_text = name.get_ref();
            if !destinations.contains(name_text) {
                let mut known: Vec<&str> = destinations.iter().map(String::as_str).collect();
                known.sort_unstable();
                sink.push(
                    Some(name.span()),
                    format!("{key}.destinations"),
                    format!(
                        "unknown destination {name_text:?} (defined: {})",
                        list_or_none(&known)
                    ),
                );
            } else if !seen.insert(name_text.clone()) {
                sink.push(
                    Some(name.span()),
                    format!("{key}.destinations"),
                    format!("destination {name_text:?} is listed twice"),
                );
            }
        }
        let plugins = validate_plugins(route.plugins, &key, sink);
        let verify = route.verify.and_then(|raw| {
            let span = raw.span();
            raw.into_inner()
                .build()
                .map_err(|message| sink.push(Some(span), format!("{key}.verify"), message))
                .ok()
        });
        let dedup = route.dedup.and_then(|raw| {
            let span = raw.span();
            raw.into_inner()
                .build(verify.as_ref())
                .map_err(|message| sink.push(Some(span), format!("{key}.dedup"), message))
                .ok()
        });
        routes.push(RouteConfig {
            id: route.id.into_inner(),
            path: route.path.into_inner(),
            destinations: route
                .destinations
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            plugins,
            on_plugin_error: route.on_plugin_error,
            verify,
            dedup,
            rate_limit: route.rate_limit,
            allow_ips: route.allow_ips,
            inspect_bodies: route.inspect_bodies,
        });
    }
    routes
}

/// Checks a route's plugin entries and resolves their module paths.
fn validate_plugins(
    raw: Vec<Spanned<RawPlugin>>,
    route_key: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<PluginConfig> {
    let base = sink
        .file()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut names = HashSet::new();
    let mut plugins = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let key = format!("{route_key}.plugins[{index}]");
        let span = entry.span();
        let entry = entry.into_inner();
        let module = base.join(&entry.module.0);
        let name = entry.name.clone().unwrap_or_else(|| {
            module
                .file_stem()
                .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned())
        });
        let mut problems = Vec::new();
        if !is_identifier(&name) {
            problems.push(format!(
                "plugin name {name:?} may use only letters, digits, '-' and '_' (set `name`)"
            ));
        } else if !names.insert(name.clone()) {
            problems.push(format!(
                "plugin name {name:?} is used twice in this route (set `name` to tell them apart)"
            ));
        }
        // Its ranges are checked as it is read (`bounds`).
        let limits = entry.limits;
        if !entry.config.is_object() {
            problems.push("config must be a table".to_owned());
        }
        for problem in problems {
            sink.push(Some(span.clone()), &key, problem);
        }
        let location = sink.location(span, &key);
        plugins.push(PluginConfig {
            module,
            name,
            config: entry.config,
            limits,
            isolation: entry.isolation,
            location,
        });
    }
    plugins
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_body_bytes = "64KiB"
queue_capacity = 10

[destinations.ci]
url = "http://127.0.0.1:9000/ci"
timeout = "2s"
retry = { max_attempts = 3, initial_backoff = "100ms", max_backoff = "1s", jitter = "none" }

[[routes]]
id = "github"
path = "/hooks/github"
destinations = ["ci"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn valid_config_parses_with_values_and_defaults() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.server.max_body_bytes, ByteSize(64 * 1024));
        assert_eq!(config.server.queue_capacity.get(), 10);
        assert_eq!(config.server.header_read_timeout.0, Duration::from_secs(10));
        let ci = &config.destinations["ci"];
        assert_eq!(ci.retry.max_attempts.get(), 3);
        assert_eq!(ci.retry.jitter, Jitter::None);
        assert_eq!(ci.max_in_flight.get(), 64);
        assert_eq!(config.routes[0].destinations, vec!["ci".to_owned()]);
    }

    #[test]
    fn the_inspect_table_has_defaults_bounds_and_no_unknown_keys() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.inspect.events, 10_000);
        assert_eq!(config.inspect.max_age.0, Duration::from_secs(24 * 3600));
        assert!(!config.routes[0].inspect_bodies);
        let text = VALID.replace(
            "destinations = [\"ci\"]",
            "destinations = [\"ci\"]\ninspect_bodies = true",
        );
        let config = parse(&format!(
            "{text}\n[inspect]\nevents = 0\nmax_age = \"1h\"\n"
        ))
        .expect("valid");
        assert_eq!(config.inspect.events, 0);
        assert_eq!(config.inspect.max_age.0, Duration::from_secs(3600));
        assert!(config.routes[0].inspect_bodies);
        for (table, wanted) in [
            ("events = -1", "events = -1 is out of range"),
            ("events = 2_000_000", "between 0 (off) and 1000000"),
            ("max_age = \"0s\"", "max_age"),
            ("evnets = 5", "unknown field `evnets`"),
        ] {
            let errors = parse(&format!("{VALID}\n[inspect]\n{table}\n")).unwrap_err();
            assert_eq!(errors.0[0].key, "inspect", "{errors}");
            assert!(errors.0[0].message.contains(wanted), "{table}: {errors}");
            assert!(errors.0[0].line.is_some(), "{errors}");
        }
    }

    #[test]
    fn reports_typo_and_unknown_destination_together_with_lines() {
        let text = VALID
            .replace("timeout = \"2s\"", "timeuot = \"2s\"")
            .replace(
                "destinations = [\"ci\"]",
                "destinations = [\"ci\", \"billing\"]",
            );
        let errors = parse(&text).unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[0].line, Some(10));
        assert_eq!(errors[0].key, "destinations.ci");
        assert!(
            errors[0].message.contains("unknown field `timeuot`"),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[1].line, Some(16));
        assert_eq!(errors[1].key, "routes[0].destinations");
        assert!(
            errors[1]
                .message
                .contains("unknown destination \"billing\"")
        );
        assert!(errors[1].to_string().starts_with("test.toml:16:"));
    }

    #[test]
    fn rejects_duplicate_ids_paths_and_bad_values() {
        let text = format!(
            "{VALID}\n[[routes]]\nid = \"github\"\npath = \"/hooks/github\"\ndestinations = [\"ci\"]\n"
        );
        let errors = parse(&text).unwrap_err().0;
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert!(
            messages.iter().any(|m| m.contains("duplicate route id")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("already used by routes[0]")),
            "{messages:?}"
        );

        let errors =
            parse(&VALID.replace("queue_capacity = 10", "queue_capacity = 0")).unwrap_err();
        assert_eq!(errors.0[0].key, "server");
        assert_eq!(errors.0[0].line, Some(6));

        let errors = parse(&VALID.replace("http://127.0.0.1:9000/ci", "ftp://x/ci")).unwrap_err();
        assert!(errors.0[0].message.contains("scheme"), "{errors}");

        let circuit = VALID.replace(
            "url = \"http://127.0.0.1:9000/ci\"",
            "url = \"http://127.0.0.1:9000/ci\"\ncircuit = { open_for = \"10m\", max_open_for = \"1m\" }\nmax_held = 0",
        );
        let errors = parse(&circuit).unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("max_held = 0 is out of range"), "{text}");
        let errors = parse(&circuit.replace("max_held = 0", "max_held = 5")).unwrap_err();
        assert_eq!(errors.0[0].key, "destinations.ci.circuit", "{errors}");
        assert!(
            errors.0[0]
                .message
                .contains("open_for is longer than max_open_for"),
            "{errors}"
        );
    }

    #[test]
    fn nats_keys_are_checked_and_located() {
        let nats = |queue: &str| parse(&format!("{VALID}\n[queue]\n{queue}\n"));
        let config = nats("backend = \"nats\"\nurl = \"nats://127.0.0.1:4222\"").expect("valid");
        assert_eq!(config.queue.stream, "WEBHOOKS");
        assert_eq!(config.queue.ack_wait.0, Duration::from_secs(30));
        assert!(config.queue.journal_dir().is_none());

        let errors = nats("backend = \"nats\"").unwrap_err();
        assert_eq!(errors.0[0].key, "queue.backend", "{errors}");
        assert!(errors.0[0].message.contains("needs `url`"), "{errors}");
        assert!(errors.0[0].line.is_some(), "{errors}");

        let errors = nats("url = \"nats://127.0.0.1:4222\"").unwrap_err();
        assert_eq!(errors.0[0].key, "queue.url", "{errors}");
        assert!(
            errors.0[0].message.contains("needs backend = \"nats\""),
            "{errors}"
        );

        let base = "backend = \"nats\"\nurl = \"nats://x:4222\"\n";
        for (extra, expected) in [
            ("stream = \"a.b\"", "a stream name is 1 to 32 letters"),
            ("replicas = 7", "replicas = 7 is out of range"),
            ("ack_wait = \"10ms\"", "ack_wait = 10ms is out of range"),
            ("user = \"u\"", "`user` and `password` go together"),
            ("path = \"data\"", "remove `path`"),
        ] {
            let errors = nats(&format!("{base}{extra}")).unwrap_err();
            assert!(errors.to_string().contains(expected), "{extra}: {errors}");
        }
    }

    #[test]
    fn ingress_limits_have_defaults_and_bad_values_are_located() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.server.idle_timeout.0, Duration::from_secs(60));
        assert_eq!(config.server.max_connections, None);
        assert_eq!(config.server.max_requests_in_flight.get(), 128);
        let limits = "queue_capacity = 10\nidle_timeout = \"2s\"\nmax_connections = 100\n\
                      max_requests_in_flight = 8";
        let config = parse(&VALID.replace("queue_capacity = 10", limits)).expect("valid");
        assert_eq!(config.server.idle_timeout.0, Duration::from_secs(2));
        assert_eq!(
            config.server.max_connections.map(NonZeroUsize::get),
            Some(100)
        );
        assert_eq!(config.server.max_requests_in_flight.get(), 8);
        for (bad, message) in [
            (
                "idle_timeout = \"1ms\"",
                "idle_timeout = 1ms is out of range",
            ),
            ("max_connections = 0", "max_connections = 0 is out of range"),
            (
                "max_requests_in_flight = 2000000",
                "max_requests_in_flight = 2000000 is out of range: must be between 1 and 1000000",
            ),
        ] {
            let text = VALID.replace(
                "queue_capacity = 10",
                &format!("queue_capacity = 10\n{bad}"),
            );
            let errors = parse(&text).unwrap_err();
            assert_eq!(errors.0[0].key, "server", "{errors}");
            assert_eq!(errors.0[0].line, Some(7), "{errors}");
            assert!(errors.to_string().starts_with("test.toml:7:"), "{errors}");
            assert!(errors.0[0].message.contains(message), "{errors}");
        }
    }

    #[test]
    fn syntax_errors_and_unknown_sections_are_located() {
        let errors = parse("[server\nlisten = 1").unwrap_err();
        assert_eq!(errors.0[0].line, Some(1));
        let errors = parse(&format!("{VALID}\n[extra]\nx = 1\n")).unwrap_err();
        assert_eq!(errors.0[0].key, "extra");
    }

    #[test]
    fn missing_env_var_is_named_not_expanded() {
        let text = VALID.replace(
            "http://127.0.0.1:9000/ci",
            "${WEBHOOK_ROUTER_TEST_UNSET_VAR}",
        );
        let errors = parse(&text).unwrap_err();
        assert!(
            errors.0[0]
                .message
                .contains("WEBHOOK_ROUTER_TEST_UNSET_VAR is not set"),
            "{errors}"
        );
    }
}
