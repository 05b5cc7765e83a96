//! The connection to NATS JetStream (`[queue] backend = "nats"`): connecting with the
//! configured credentials, checking that JetStream answers, and the names the router gives its
//! subjects, consumers and key-value buckets on the server.
//!
//! What lives on the server, for a stream named `WEBHOOKS` (the default):
//! - stream `WEBHOOKS`, subjects `WEBHOOKS.deliver.<destination>`: one message per event and
//!   destination (the queue, `queue::nats`);
//! - durable pull consumer `deliver-<destination>` per destination, shared by every router;
//! - key-value bucket `WEBHOOKS_dead_letters` (dead letters, `dead_letter::nats`);
//! - key-value bucket `WEBHOOKS_attempts` (each redelivered message's attempts, `queue::nats`);
//! - key-value buckets `WEBHOOKS_dedup_<seconds>s` (delivery ids, one bucket per window
//!   length, `dedup::nats`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::{Mutex, mpsc};

use crate::config::QueueConfig;
use crate::supervise::Supervisor;

/// How long connecting to the server may take at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to NATS with JetStream, and the stream the router uses.
#[derive(Debug, Clone)]
pub struct Nats {
    /// The client (reconnects by itself after a connection loss).
    pub client: async_nats::Client,
    /// The JetStream API over `client`.
    pub jetstream: jetstream::Context,
    /// The stream's name (`[queue] stream`), also the prefix of every bucket.
    pub stream: String,
    /// The server(s) as configured, without any credentials written in them, for messages
    /// (logs, errors and `/readyz`, which answers without a token).
    pub url: String,
    /// Where acks and bucket writes go, to reach the server in the order they are made.
    pub outbox: Outbox,
}

/// A boxed unit of work for the [`Outbox`].
type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs work for the server one item at a time, in the order it was sent, on a task of its
/// own: so that a dead letter is stored before the message it came from is acknowledged, and
/// callers that cannot wait (a receipt's drop) still get their word to the server.
#[derive(Debug, Clone)]
pub struct Outbox(mpsc::UnboundedSender<Work>);

impl Outbox {
    /// Starts the outbox's task (on the current tokio runtime) under `supervisor`, as
    /// `nats_outbox`: a piece of work that panics is lost, and the task goes on with the next.
    pub fn start(supervisor: &Supervisor) -> Outbox {
        let (sender, receiver) = mpsc::unbounded_channel::<Work>();
        // Outside the task, so that a restart reads on where the panicked run stopped.
        let receiver = Arc::new(Mutex::new(receiver));
        supervisor.spawn("nats_outbox", move || {
            let receiver = Arc::clone(&receiver);
            async move {
                let mut receiver = receiver.lock().await;
                while let Some(work) = receiver.recv().await {
                    work.await;
                }
            }
        });
        Outbox(sender)
    }

    /// Runs `work` after everything sent before it.
    pub fn send(&self, work: impl Future<Output = ()> + Send + 'static) {
        // The task ends only with the runtime: a send then has no one to do it anyway.
        let _ = self.0.send(Box::pin(work));
    }
}

/// Why the router could not use NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The credentials file could not be read.
    #[error("cannot read the NATS credentials file {path}: {cause}")]
    Credentials {
        /// The file.
        path: String,
        /// What went wrong.
        cause: std::io::Error,
    },
    /// No server answered.
    #[error("cannot connect to NATS at {url}: {cause} (is nats-server running?)")]
    Connect {
        /// The server(s).
        url: String,
        /// What went wrong.
        cause: String,
    },
    /// The server answered, but JetStream did not.
    #[error(
        "NATS at {url} does not offer JetStream: {cause} (start nats-server with -js, or enable \
         jetstream in its config)"
    )]
    NoJetStream {
        /// The server(s).
        url: String,
        /// What went wrong.
        cause: String,
    },
    /// The stream exists with settings the router cannot work with.
    #[error("the NATS stream {stream:?} exists with incompatible settings: {why}")]
    Incompatible {
        /// The stream.
        stream: String,
        /// What differs.
        why: String,
    },
    /// Creating or reading the stream, a consumer or a bucket failed.
    #[error("NATS: cannot set up {what}: {cause}")]
    Setup {
        /// What was being set up.
        what: String,
        /// What went wrong.
        cause: String,
    },
    /// The server refuses messages as large as the configured `max_body_bytes` allows.
    #[error(
        "the NATS server takes messages of at most {max_payload} bytes, but max_body_bytes = \
         {max_body} needs up to {needed} (the body and {overhead} bytes for the event's headers \
         and fields): raise max_payload in nats-server's config (e.g. `max_payload: 8MB`), or \
         lower max_body_bytes to {fits} or less (or remove it: the router then takes the most \
         the server allows)"
    )]
    Payload {
        /// The server's `max_payload`.
        max_payload: u64,
        /// Largest event body (`[server] max_body_bytes`).
        max_body: u64,
        /// Room kept for the rest of the message.
        overhead: u64,
        /// What a message with such a body may take.
        needed: u64,
        /// The largest `max_body_bytes` the server takes.
        fits: u64,
    },
    /// The server's `max_payload` leaves no room for a body at all.
    #[error(
        "the NATS server takes messages of at most {max_payload} bytes, which leaves no room for \
         a body besides the {overhead} bytes kept for the event's headers and fields: raise \
         max_payload in nats-server's config (e.g. `max_payload: 8MB`)"
    )]
    NoRoom {
        /// The server's `max_payload`.
        max_payload: u64,
        /// Room kept for the rest of the message.
        overhead: u64,
    },
}

/// Asks the JetStream API for the account's information: an answer without an error means
/// JetStream is on. (Read as plain JSON, so that any server version's answer is understood.)
async fn check_jetstream(client: &async_nats::Client) -> Result<(), String> {
    let answer = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await
    .map_err(|_| "no answer from the JetStream API".to_owned())?
    .map_err(|e| e.to_string())?;
    let info: serde_json::Value =
        serde_json::from_slice(&answer.payload).map_err(|e| e.to_string())?;
    match info.get("error") {
        None => Ok(()),
        Some(error) => Err(error
            .get("description")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("an error")
            .to_owned()),
    }
}

/// [`Nats::body_limit`] for a server whose `max_payload` is `max_payload`.
fn body_limit(
    max_payload: u64,
    configured: Option<u64>,
    default: u64,
    overhead: u64,
) -> Result<u64, NatsError> {
    let fits = max_payload.saturating_sub(overhead);
    match configured {
        Some(max_body) if max_body > fits => Err(NatsError::Payload {
            max_payload,
            max_body,
            overhead,
            needed: max_body.saturating_add(overhead),
            fits,
        }),
        Some(max_body) => Ok(max_body),
        None if fits == 0 => Err(NatsError::NoRoom {
            max_payload,
            overhead,
        }),
        None => {
            let limit = default.min(fits);
            tracing::info!(
                max_body_bytes = limit,
                max_payload,
                "max_body_bytes is not set: bodies of up to {limit} bytes are accepted (the \
                 default, {default}, or the NATS server's max_payload, {max_payload}, less \
                 {overhead} for the event's headers and fields, whichever is smaller)"
            );
            Ok(limit)
        }
    }
}

impl Nats {
    /// Connects to the server(s) of `config` and checks that JetStream answers; the outbox's
    /// task runs under `supervisor`.
    pub async fn connect(config: &QueueConfig, supervisor: &Supervisor) -> Result<Nats, NatsError> {
        let url = config.url.as_ref().map(|u| u.0.clone()).unwrap_or_default();
        // What messages show; `url` itself (credentials and all) is only given to the client.
        let shown = without_credentials(&url);
        let mut options = match &config.credentials {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|cause| NatsError::Credentials {
                    path: path.display().to_string(),
                    cause,
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(token) = &config.token {
            options = options.token(token.expose().to_owned());
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.0.clone(), password.expose().to_owned());
        }
        let logged_url = shown.clone();
        let options = options
            .name("webhook-router")
            .connection_timeout(CONNECT_TIMEOUT)
            .event_callback(move |event| {
                let url = logged_url.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(%url, "NATS connected");
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(%url, "NATS disconnected: reconnecting");
                        }
                        other => tracing::debug!(%url, event = %other, "NATS"),
                    }
                }
            });
        let servers: Vec<&str> = url.split(',').map(str::trim).collect();
        let client =
            options
                .connect(servers.as_slice())
                .await
                .map_err(|cause| NatsError::Connect {
                    url: shown.clone(),
                    cause: cause.to_string(),
                })?;
        let jetstream = jetstream::new(client.clone());
        check_jetstream(&client)
            .await
            .map_err(|cause| NatsError::NoJetStream {
                url: shown.clone(),
                cause,
            })?;
        Ok(Nats {
            client,
            jetstream,
            stream: config.stream.clone(),
            url: shown,
            outbox: Outbox::start(supervisor),
        })
    }

    /// The largest event body the router may accept over this server, whose messages carry up
    /// to `overhead` bytes besides the body: `configured` (`[server] max_body_bytes`), which is
    /// an error if the server's `max_payload` is too small for it; when not configured,
    /// `default`, lowered to what `max_payload` takes (logged).
    pub fn body_limit(
        &self,
        configured: Option<u64>,
        default: u64,
        overhead: u64,
    ) -> Result<u64, NatsError> {
        let max_payload = u64::try_from(self.client.server_info().max_payload).unwrap_or(u64::MAX);
        body_limit(max_payload, configured, default, overhead)
    }
    /// The subject of `destination`'s messages.
    pub fn subject(&self, destination: &str) -> String {
        format!("{}.deliver.{destination}", self.stream)
    }

    /// The durable consumer that delivers to `destination`.
    pub fn consumer(destination: &str) -> String {
        format!("deliver-{destination}")
    }

    /// Opens the router's key-value bucket for `what` (`<stream>_<what>`), creating it if it is
    /// not there, with one value per key, kept for `max_age` (zero: for ever).
    ///
    /// The bucket's stream is created here as the client library would, without its query of
    /// the account's limits, so that servers whose answer it cannot read (2.9) work too.
    pub async fn key_value(
        &self,
        what: &str,
        max_age: Duration,
        replicas: usize,
    ) -> Result<jetstream::kv::Store, NatsError> {
        let bucket = self.bucket(what);
        let setup = |cause: String| NatsError::Setup {
            what: format!("key-value bucket {bucket:?}"),
            cause,
        };
        if let Ok(store) = self.jetstream.get_key_value(&bucket).await {
            return Ok(store);
        }
        let config = jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: replicas,
            discard: jetstream::stream::DiscardPolicy::New,
            ..jetstream::stream::Config::default()
        };
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|e| setup(e.to_string()))?;
        self.jetstream
            .get_key_value(&bucket)
            .await
            .map_err(|e| setup(e.to_string()))
    }

    /// The name of the router's key-value bucket for `what`.
    pub fn bucket(&self, what: &str) -> String {
        format!("{}_{what}", self.stream)
    }
}

/// `servers` (one URL or several separated by commas) with any `user:password@` or `token@`
/// taken out, so that messages name the servers and never the credentials.
pub fn without_credentials(servers: &str) -> String {
    servers
        .split(',')
        .map(|server| {
            let server = server.trim();
            let (scheme, rest) = match server.find("://") {
                Some(at) => server.split_at(at + 3),
                None => ("", server),
            };
            // The authority ends at the first `/`, `?` or `#`; its user info at its last `@`.
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}{}", &rest[at + 1..]),
                None => server.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::supervise::FAILING_PANICS;

    #[tokio::test]
    async fn the_outbox_runs_under_the_supervisor_and_goes_on_after_a_panic() {
        let metrics = Metrics::new();
        let supervisor = Supervisor::new(metrics.clone());
        let outbox = Outbox::start(&supervisor);
        let (ran, mut done) = mpsc::unbounded_channel();
        for n in 0..FAILING_PANICS {
            let ran = ran.clone();
            outbox.send(async move {
                let _ = ran.send(n);
                assert!(n == usize::MAX, "injected panic {n}");
            });
        }
        outbox.send(async move {
            let _ = ran.send(FAILING_PANICS);
        });
        for n in 0..=FAILING_PANICS {
            assert_eq!(done.recv().await, Some(n), "the work runs in order");
        }
        let text = metrics.render();
        assert!(
            text.contains(&format!(
                "webhook_task_panics_total{{task=\"nats_outbox\"}} {FAILING_PANICS}"
            )),
            "{text}"
        );
        // As for every supervised task, /healthz then says it keeps failing.
        assert_eq!(supervisor.failing(), vec!["nats_outbox"]);
    }

    const MIB: u64 = 1024 * 1024;
    const OVERHEAD: u64 = 64 * 1024;

    #[test]
    fn an_unset_limit_is_the_default_lowered_to_what_the_server_takes() {
        // nats-server's own default max_payload is 1 MiB: 960 KiB of body.
        assert_eq!(
            body_limit(MIB, None, MIB, OVERHEAD).unwrap(),
            MIB - OVERHEAD
        );
        // A server that takes more leaves the default as it is.
        assert_eq!(body_limit(8 * MIB, None, MIB, OVERHEAD).unwrap(), MIB);
        let error = body_limit(OVERHEAD, None, MIB, OVERHEAD).unwrap_err();
        assert!(matches!(error, NatsError::NoRoom { .. }), "{error}");
    }

    #[test]
    fn a_configured_limit_over_the_servers_is_an_error_naming_both_fixes() {
        assert_eq!(
            body_limit(MIB, Some(512 * 1024), MIB, OVERHEAD).unwrap(),
            512 * 1024
        );
        assert_eq!(
            body_limit(MIB, Some(MIB - OVERHEAD), MIB, OVERHEAD).unwrap(),
            MIB - OVERHEAD
        );
        let error = body_limit(MIB, Some(MIB), MIB, OVERHEAD)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("raise max_payload in nats-server's config"),
            "{error}"
        );
        assert!(
            error.contains("lower max_body_bytes to 983040 or less"),
            "{error}"
        );
    }

    #[test]
    fn credentials_are_taken_out_of_every_server_url() {
        for (configured, shown) in [
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            (
                "nats://router:pa55w0rd@nats.internal:4222",
                "nats://nats.internal:4222",
            ),
            (
                "nats://s3cr3t-token@127.0.0.1:4222",
                "nats://127.0.0.1:4222",
            ),
            ("tls://u:p@a@host:4222/", "tls://host:4222/"),
            ("user:pw@host:4222", "host:4222"),
            (
                "nats://a:x@one:4222, nats://two:4222 ,nats://b:y@three:4222",
                "nats://one:4222,nats://two:4222,nats://three:4222",
            ),
            ("nats://host:4222/path@thing", "nats://host:4222/path@thing"),
        ] {
            assert_eq!(without_credentials(configured), shown, "{configured}");
        }
    }
}
