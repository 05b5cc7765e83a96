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
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc;

use crate::config::QueueConfig;

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
    /// The server(s), as configured, for messages.
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
    /// Starts the outbox's task (on the current tokio runtime).
    pub fn start() -> Outbox {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Work>();
        tokio::spawn(async move {
            while let Some(work) = receiver.recv().await {
                work.await;
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
    /// The server refuses messages as large as `max_body_bytes` allows.
    #[error(
        "the NATS server takes messages of at most {max_payload} bytes, but max_body_bytes \
         allows events of {max_body} bytes: raise max_payload in nats-server's config, or lower \
         max_body_bytes"
    )]
    Payload {
        /// The server's `max_payload`.
        max_payload: usize,
        /// Largest event body (`[server] max_body_bytes`).
        max_body: u64,
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

impl Nats {
    /// Connects to the server(s) of `config` and checks that JetStream answers.
    pub async fn connect(config: &QueueConfig) -> Result<Nats, NatsError> {
        let url = config.url.as_ref().map(|u| u.0.clone()).unwrap_or_default();
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
        let logged_url = url.clone();
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
                    url: url.clone(),
                    cause: cause.to_string(),
                })?;
        let jetstream = jetstream::new(client.clone());
        check_jetstream(&client)
            .await
            .map_err(|cause| NatsError::NoJetStream {
                url: url.clone(),
                cause,
            })?;
        Ok(Nats {
            client,
            jetstream,
            stream: config.stream.clone(),
            url,
            outbox: Outbox::start(),
        })
    }

    /// Fails if the server would refuse an event with a body of `max_body` bytes (headers and
    /// the router's own fields take up to `overhead` more).
    pub fn check_payload(&self, max_body: u64, overhead: u64) -> Result<(), NatsError> {
        let max_payload = self.client.server_info().max_payload;
        let needed = max_body.saturating_add(overhead);
        if u64::try_from(max_payload).unwrap_or(u64::MAX) < needed {
            return Err(NatsError::Payload {
                max_payload,
                max_body,
            });
        }
        Ok(())
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
