//! NATS with the settings a new user starts with: a `nats-server -js` run with its defaults
//! (`max_payload` 1 MiB) and a config whose `[queue]` says only `backend = "nats"` and `url`.
//! The router takes its body limit from the server, says so, and holds to it; an explicit
//! `max_body_bytes` the server cannot carry stops it with both fixes named.

use std::path::{Path, PathBuf};
use std::process::Command;

use webhook_router_tests::nats::NatsServer;
use webhook_router_tests::numbered::{self, PATIENCE, client, metric, wait_idle};
use webhook_router_tests::{RouterProcess, Sink};

/// nats-server's default `max_payload`.
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// What the router keeps of a message for the event's headers and fields.
const OVERHEAD: usize = 64 * 1024;

fn fresh_dir(name: &str) -> PathBuf {
    numbered::fresh_dir(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "nats_defaults",
        name,
    )
}

/// A config with nothing set but what `backend = "nats"` needs (and ephemeral ports), with
/// `server` lines added to `[server]`.
fn minimal_config(dir: &Path, url: &str, sink: &Sink, server: &str) -> PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n\
         [queue]\nbackend = \"nats\"\nurl = \"{url}\"\n\n\
         [destinations.sink]\nurl = \"{}\"\n\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\n",
        sink.url("/in"),
    );
    let path = dir.join("router.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The `max_payload` the server announces to clients.
async fn max_payload(nats: &NatsServer) -> usize {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    client.server_info().max_payload
}

async fn post(ingress: &str, body: Vec<u8>) -> u16 {
    client()
        .post(format!("http://{ingress}/hooks"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_only_backend_and_url_starts_against_a_default_server() {
    let dir = fresh_dir("minimal");
    let nats = NatsServer::start(&dir.join("nats"));
    assert_eq!(
        max_payload(&nats).await,
        DEFAULT_MAX_PAYLOAD,
        "the server runs with its defaults"
    );
    let sink = Sink::healthy().await;
    let mut router = RouterProcess::start(
        Path::new(env!("CARGO_BIN_EXE_webhook-router")),
        &minimal_config(&dir, &nats.url(), &sink, ""),
    );
    let limit = DEFAULT_MAX_PAYLOAD - OVERHEAD;
    let line = router.wait_for_log("max_body_bytes is not set");
    assert!(
        line.contains(&format!("bodies of up to {limit} bytes are accepted")),
        "{line}"
    );

    // The derived limit is the one ingress holds to, and a body at it goes through NATS.
    assert_eq!(post(&router.ingress, vec![b'a'; limit]).await, 202);
    assert_eq!(post(&router.ingress, vec![b'b'; limit + 1]).await, 413);
    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    wait_idle(&router.admin).await;
    assert_eq!(sink.delivered().len(), 1, "the 413 was not queued");
    assert_eq!(delivered[0].body.len(), limit);

    // Every long-lived NATS task runs under the supervisor: its panic series is there, at 0.
    for task in [
        "nats_outbox",
        "nats_fetch",
        "nats_keep_alive",
        "nats_dead_letter_mirror",
    ] {
        let series = format!("webhook_task_panics_total{{task=\"{task}\"}}");
        assert_eq!(metric(&router.admin, &series).await, Some(0.0), "{series}");
    }
    let (clean, log) = router.stop();
    assert!(clean, "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_max_body_bytes_over_the_servers_limit_names_both_fixes() {
    let dir = fresh_dir("explicit");
    let nats = NatsServer::start(&dir.join("nats"));
    let sink = Sink::healthy().await;
    // The old default, now written out: 1 MiB of body does not fit a 1 MiB message.
    let config = minimal_config(&dir, &nats.url(), &sink, "max_body_bytes = \"1MiB\"");
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run serve");
    assert!(!output.status.success(), "serve started");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("the NATS server takes messages of at most 1048576 bytes"),
        "{error}"
    );
    assert!(
        error.contains("raise max_payload in nats-server's config"),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "lower max_body_bytes to {} or less",
            DEFAULT_MAX_PAYLOAD - OVERHEAD
        )),
        "{error}"
    );

    // At the limit it starts.
    let config = minimal_config(&dir, &nats.url(), &sink, "max_body_bytes = \"960KiB\"");
    let router = RouterProcess::start(Path::new(env!("CARGO_BIN_EXE_webhook-router")), &config);
    let (clean, log) = router.stop();
    assert!(clean, "{log:#?}");
}
