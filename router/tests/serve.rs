//! `webhook-router serve` run as an operator would: signals, the admin API's exposure, the
//! proxy its environment names, and the traces it exports to an OpenTelemetry collector.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use webhook_router_tests::otlp::{Collector, ReceivedSpan};
use webhook_router_tests::signing::{sign, unix_now};
use webhook_router_tests::wasm::{github_payload, module};
use webhook_router_tests::{Reply, RouterProcess, Sink};

/// Patience for what should take milliseconds on an idle machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Writes `text` to a fresh file under the target directory and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-serve");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

const CONFIG: &str = r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

# Nothing listens there: one attempt, then a dead letter, so that a stop has nothing to wait for.
[destinations.sink]
url = "http://127.0.0.1:9/in"
retry = { max_attempts = 1 }

[[routes]]
id = "hooks"
path = "/hooks"
destinations = ["sink"]
"#;

/// Starts `serve` on `config`.
fn serve(config: &Path) -> RouterProcess {
    RouterProcess::start(Path::new(env!("CARGO_BIN_EXE_webhook-router")), config)
}

/// One HTTP/1.1 request over a fresh connection; the status and the whole answer.
fn request(address: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: router\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    )
    .expect("send request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    (status, answer)
}

#[test]
fn sighup_reloads_and_the_router_keeps_serving() {
    let path = config_file("sighup.toml", CONFIG);
    let mut serving = serve(&path);
    serving.signal("HUP");
    serving.wait_for_log("config reloaded");
    assert_eq!(request(&serving.admin, "GET", "/healthz").0, 200);
    assert_eq!(request(&serving.ingress, "POST", "/hooks").0, 202);
    let (success, log) = serving.stop();
    assert!(success, "{log:#?}");
    let reload_lines = log.iter().filter(|line| line.contains("SIGHUP")).count();
    assert_eq!(reload_lines, 1, "{log:#?}");
    assert!(
        log.iter().any(|line| line.contains("stop signal received")),
        "{log:#?}"
    );
}

#[test]
fn a_public_admin_address_without_a_token_refuses_to_start() {
    let public = CONFIG.replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"0.0.0.0:0\"",
    );
    let path = config_file("public-admin.toml", &public);
    for command in ["serve", "check"] {
        let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
            .args([command, "--config"])
            .arg(&path)
            .output()
            .expect("run webhook-router");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command} accepted it: {stderr}");
        assert!(
            stderr.starts_with(&format!("{}:3:", path.display()))
                && stderr.contains("server.admin_listen: 0.0.0.0:0 is reachable from the network and no admin_token is set"),
            "{command}: {stderr}"
        );
    }

    // Said to be meant: it starts, warns, and `/metrics` stays open.
    let meant = public.replace(
        "admin_listen = \"0.0.0.0:0\"",
        "admin_listen = \"0.0.0.0:0\"\nadmin_public = true",
    );
    let path = config_file("public-admin-meant.toml", &meant);
    let mut serving = serve(&path);
    serving.wait_for_log("the admin API is reachable from the network without a token");
    let (status, metrics) = request(&serving.admin, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("webhook_queue_depth"), "{metrics}");
    let (success, log) = serving.stop();
    assert!(success, "{log:#?}");
}

#[test]
fn destinations_prints_each_destination_with_its_circuit_and_last_error() {
    let path = config_file("destinations.toml", CONFIG);
    let serving = serve(&path);
    assert_eq!(request(&serving.ingress, "POST", "/hooks").0, 202);
    // The one attempt fails (nothing listens on port 9); wait until the table shows its error.
    let deadline = std::time::Instant::now() + PATIENCE;
    let table = loop {
        let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
            .args(["destinations", "--admin"])
            .arg(format!("http://{}", serving.admin))
            .output()
            .expect("run destinations");
        assert!(output.status.success(), "{output:?}");
        let table = String::from_utf8_lossy(&output.stdout).into_owned();
        let row = table
            .lines()
            .find(|line| line.starts_with("sink"))
            .unwrap_or_default();
        if !row.ends_with(" -") || std::time::Instant::now() > deadline {
            break table;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("DESTINATION") && lines[0].contains("CIRCUIT"),
        "{table}"
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with("sink"))
        .expect("a row for sink");
    assert!(row.contains("closed"), "{table}");
    assert!(
        row.contains("0/1"),
        "nothing held, one in flight at most: {table}"
    );
    assert!(!row.ends_with(" -"), "the last error is shown: {table}");
    let (success, log) = serving.stop();
    assert!(success, "{log:#?}");
}

/// A GitHub push carrying the sender's W3C `traceparent`, through `verify`, the `event_filter`
/// plugin and two destinations, with `[telemetry]` exporting to an OTLP/HTTP receiver: one
/// trace, the `ingress` span a child of the sender's span, `verify`, `plugin` and `enqueue`
/// under it, one `attempt` per destination under it too, each destination handed a
/// `traceparent` naming its attempt's span, and the log lines carrying the trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_go_through_the_proxy_the_environment_names() {
    // The sink plays the HTTP proxy. The destination's name resolves nowhere, so only a
    // delivery through the proxy arrives: the absolute URI's path, the destination as `Host`.
    let proxy = Sink::healthy().await;
    let path = config_file(
        "proxy.toml",
        &CONFIG.replace("http://127.0.0.1:9/in", "http://webhooks.invalid/in"),
    );
    let serving = RouterProcess::start_with_env(
        Path::new(env!("CARGO_BIN_EXE_webhook-router")),
        &path,
        &[
            ("HTTP_PROXY", &proxy.url("")),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    );
    assert_eq!(request(&serving.ingress, "POST", "/hooks").0, 202);
    let got = proxy.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(got.len(), 1, "{:#?}", proxy.requests());
    assert_eq!(got[0].path, "/in");
    assert_eq!(got[0].headers["host"], "webhooks.invalid");
    let (success, log) = serving.stop();
    assert!(success, "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_event_is_one_trace_from_the_senders_span_to_both_destinations() {
    const SECRET: &str = "trace-secret";
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SENDER_SPAN: &str = "00f067aa0ba902b7";
    let collector = Collector::start().await;
    let (ci, audit) = (Sink::healthy().await, Sink::healthy().await);
    let path = config_file(
        "traces.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"router-under-test\"\nsampling = 1.0\n\
             [destinations.ci]\nurl = \"{}\"\n[destinations.audit]\nurl = \"{}\"\n\
             [[routes]]\nid = \"github\"\npath = \"/hooks/github\"\ndestinations = [\"ci\", \"audit\"]\n\
             verify = {{ preset = \"github\", secrets = [\"{SECRET}\"] }}\n\
             [[routes.plugins]]\nmodule = \"{}\"\nconfig = {{ allow_events = [\"push\"] }}\n",
            collector.endpoint(),
            ci.url("/ci"),
            audit.url("/audit"),
            module("event_filter").display(),
        ),
    );
    // The `accepted` and `delivered` lines, per event, are at debug.
    let serving = RouterProcess::start_with_env(
        Path::new(env!("CARGO_BIN_EXE_webhook-router")),
        &path,
        &[("RUST_LOG", "info,webhook_router=debug")],
    );
    let body = github_payload("push");
    let mut post = reqwest::Client::new()
        .post(format!("http://{}/hooks/github", serving.ingress))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("traceparent", format!("00-{TRACE}-{SENDER_SPAN}-01"))
        .body(body.clone());
    for (name, value) in sign("github", SECRET, &body, unix_now()) {
        post = post.header(name, value);
    }
    let answer = post.send().await.expect("post");
    assert_eq!(answer.status().as_u16(), 202);
    let answer: serde_json::Value = answer.json().await.expect("json answer");
    let event_id = answer["id"].as_str().expect("event id").to_owned();
    let ci_got = ci.wait_for_delivered(1, PATIENCE).await;
    let audit_got = audit.wait_for_delivered(1, PATIENCE).await;
    assert_eq!((ci_got.len(), audit_got.len()), (1, 1));
    // A graceful stop exports the spans still batched before the process exits.
    let (success, log) = serving.stop();
    assert!(success, "{log:#?}");

    let spans = collector.spans();
    assert!(
        spans.iter().all(|span| span.trace_id == TRACE),
        "every span is in the sender's trace: {spans:#?}"
    );
    assert!(spans.iter().all(|span| span.service == "router-under-test"));
    let named = |name: &str| -> Vec<&ReceivedSpan> {
        spans.iter().filter(|span| span.name == name).collect()
    };
    let [ingress] = named("ingress")[..] else {
        panic!("one ingress span: {spans:#?}");
    };
    assert_eq!(ingress.parent_span_id, SENDER_SPAN, "{ingress:#?}");
    assert_eq!(ingress.attribute("route"), "github");
    assert_eq!(ingress.attribute("event_id"), event_id);
    assert_eq!(ingress.attribute("http.response.status_code"), "202");
    assert_eq!(ingress.attribute("trace_id"), TRACE);
    for (name, attributes) in [
        ("verify", &[("preset", "github"), ("verified", "true")][..]),
        (
            "plugin",
            &[("plugin", "event_filter"), ("verdict", "pass")][..],
        ),
        ("enqueue", &[][..]),
    ] {
        let [span] = named(name)[..] else {
            panic!("one {name} span: {spans:#?}");
        };
        assert_eq!(span.parent_span_id, ingress.span_id, "{span:#?}");
        for (key, value) in attributes {
            assert_eq!(span.attribute(key), *value, "{span:#?}");
        }
    }
    let cpu_us: f64 = named("plugin")[0]
        .attribute("cpu_us")
        .parse()
        .expect("cpu_us is a number");
    assert!(cpu_us > 0.0, "the plugin's call used CPU time");

    let attempts = named("attempt");
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    for (destination, received) in [("ci", &ci_got[0]), ("audit", &audit_got[0])] {
        let attempt = attempts
            .iter()
            .find(|span| span.attribute("destination") == destination)
            .unwrap_or_else(|| panic!("an attempt to {destination}: {attempts:#?}"));
        assert_eq!(attempt.parent_span_id, ingress.span_id, "{attempt:#?}");
        assert_eq!(attempt.attribute("event_id"), event_id);
        assert_eq!(attempt.attribute("attempt"), "1");
        assert_eq!(attempt.attribute("outcome"), "delivered");
        assert_eq!(attempt.attribute("http.response.status_code"), "200");
        let took: f64 = attempt
            .attribute("duration_ms")
            .parse()
            .expect("duration in ms");
        assert!(took > 0.0, "{attempt:#?}");
        let traceparent = received
            .headers
            .get("traceparent")
            .unwrap_or_else(|| panic!("{destination} got a traceparent"))
            .to_str()
            .expect("ascii");
        assert_eq!(
            traceparent,
            format!("00-{TRACE}-{}-01", attempt.span_id),
            "{destination} continues the trace from its attempt's span"
        );
    }
    let accepted = log
        .iter()
        .find(|line| line.contains("accepted") && line.contains(&event_id))
        .unwrap_or_else(|| panic!("an accepted line: {log:#?}"));
    assert!(
        accepted.contains(&format!("trace_id={TRACE}")),
        "{accepted}"
    );
    let delivered = log
        .iter()
        .filter(|line| line.contains("delivered") && line.contains(&event_id));
    assert_eq!(
        delivered
            .filter(|line| line.contains(&format!("trace_id={TRACE}")))
            .count(),
        2,
        "{log:#?}"
    );
}

/// An event whose first attempt failed, read back from the journal after a SIGKILL: the new
/// process no longer knows the `ingress` span, and its attempt joins the sender's trace
/// through the `traceparent` kept with the event, sending that trace on to the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_after_a_restart_joins_the_senders_trace() {
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const SENDER_SPAN: &str = "b7ad6b7169203331";
    let collector = Collector::start().await;
    let sink = Sink::start(|n| {
        if n == 1 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-serve/traces-restart");
    let _ = std::fs::remove_dir_all(&dir);
    let path = config_file(
        "traces-restart.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [queue]\nbackend = \"journal\"\npath = \"{}\"\n\
             [telemetry]\notlp_endpoint = \"{}\"\n\
             [destinations.ci]\nurl = \"{}\"\n\
             retry = {{ max_attempts = 3, initial_backoff = \"2s\", jitter = \"none\" }}\n\
             [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"ci\"]\n",
            dir.display(),
            collector.endpoint(),
            sink.url("/ci"),
        ),
    );
    let first = serve(&path);
    let answer = reqwest::Client::new()
        .post(format!("http://{}/hooks", first.ingress))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{TRACE}-{SENDER_SPAN}-01"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status().as_u16(), 202);
    assert_eq!(sink.wait_for(1, PATIENCE, |_| true).await.len(), 1);
    first.kill();

    let second = serve(&path);
    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(
        delivered.len(),
        1,
        "the retry after the restart is delivered"
    );
    let (success, log) = second.stop();
    assert!(success, "{log:#?}");
    let spans = collector.spans();
    let after: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.name == "attempt" && span.attribute("outcome") == "delivered")
        .collect();
    let [attempt] = after[..] else {
        panic!("one delivered attempt: {spans:#?}");
    };
    assert_eq!(attempt.trace_id, TRACE, "{attempt:#?}");
    assert_eq!(attempt.parent_span_id, SENDER_SPAN, "{attempt:#?}");
    // (Its number is what the journal had recorded of the attempts before the kill.)
    let number: u32 = attempt.attribute("attempt").parse().expect("a count");
    assert!(number >= 1, "{attempt:#?}");
    let traceparent = delivered[0]
        .headers
        .get("traceparent")
        .expect("a traceparent")
        .to_str()
        .expect("ascii");
    assert_eq!(traceparent, format!("00-{TRACE}-{}-01", attempt.span_id));
}
