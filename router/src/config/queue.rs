//! The `[queue]` table: where accepted events are held (memory, journal or NATS JetStream), with
//! its defaults and the checks between its keys.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::ErrorSink;
use super::{ByteSize, EnvString, HumanDuration, Secret, bounds};

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
    /// With `backend = "nats"`: the partitions ordered keys are spread over, per destination;
    /// each partition is delivered by one router at a time.
    #[serde(
        default = "defaults::nats_partitions",
        deserialize_with = "bounds::nats_partitions"
    )]
    pub partitions: NonZeroUsize,
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
            partitions: defaults::nats_partitions(),
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

/// Checks that the NATS keys of `[queue]` go with `backend = "nats"`, and that it has a `url`;
/// `span` locates `backend` (or the table) in the file.
pub(super) fn check_nats(
    queue: &QueueConfig,
    span: Option<std::ops::Range<usize>>,
    sink: &mut ErrorSink<'_>,
) {
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

/// Defaults of the keys not written.
mod defaults {
    use super::*;
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
    pub fn nats_partitions() -> NonZeroUsize {
        NonZeroUsize::new(16).expect("non-zero")
    }
    pub fn journal_max_bytes() -> ByteSize {
        ByteSize(4 * 1024 * 1024 * 1024)
    }
}
