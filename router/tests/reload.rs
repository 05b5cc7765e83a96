//! Config reload of a `webhook-router serve` process (issue #22): under load, refused whole
//! with every fault listed, and `--watch`; a destination's changed `rate` reaches the deliveries
//! already waiting for a turn; and a TLS listener's certificate on `SIGHUP` (issue #26).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use webhook_router_tests::certs::{Pair, TestCerts};
use webhook_router_tests::signing::sign;
use webhook_router_tests::test_router::metric_value;
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::wasm::module;
use webhook_router_tests::{Reply, RouterProcess, Sink};

/// Patience for what should take seconds on an idle machine.
const PATIENCE: Duration = Duration::from_secs(60);
const OLD_SECRET: &str = "old-secret";
const NEW_SECRET: &str = "new-secret";

/// A fresh folder under the target directory for test `name`.
fn folder(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("reload")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The config before the reload: `keep` (verified with `secret`, a json-map plugin setting
/// `x-config: tag`) and `gone`, both to the sink; `extra` routes appended as written.
fn config(sink: &Sink, secret: &str, tag: &str, extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
queue_capacity = 100000

[destinations.sink]
url = "{url}"
max_held = 100000
max_in_flight = 128
retry = {{ max_attempts = 20, initial_backoff = "50ms", max_backoff = "1s" }}

[[routes]]
id = "keep"
path = "/hooks/keep"
destinations = ["sink"]
verify = {{ preset = "github", secrets = ["{secret}"] }}

[[routes.plugins]]
module = "{module}"
config = {{ set_headers = {{ x-config = "{tag}" }} }}
{extra}"#,
        url = sink.url("/in"),
        module = module("json_map").display(),
    )
}

const GONE: &str = r#"
[[routes]]
id = "gone"
path = "/hooks/gone"
destinations = ["sink"]
"#;

const ADDED: &str = r#"
[[routes]]
id = "added"
path = "/hooks/added"
destinations = ["sink"]
"#;

fn serve(config: &Path, args: &[&str]) -> RouterProcess {
    RouterProcess::start_with_args(
        Path::new(env!("CARGO_BIN_EXE_webhook-router")),
        config,
        args,
    )
}

/// POSTs `body` to `path`, signed with `secret` when given; the status and the answer's body.
async fn post(
    client: &reqwest::Client,
    ingress: &str,
    path: &str,
    body: Vec<u8>,
    secret: Option<&str>,
) -> reqwest::Result<(u16, String)> {
    let mut request = client.post(format!("http://{ingress}{path}"));
    if let Some(secret) = secret {
        for (name, value) in sign("github", secret, &body, 0) {
            request = request.header(name, value);
        }
    }
    let response = request
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// The status of an unsigned `{}` posted to `path`.
async fn post_empty(client: &reqwest::Client, router: &RouterProcess, path: &str) -> u16 {
    let (status, _) = post(client, &router.ingress, path, b"{}".to_vec(), None)
        .await
        .expect("post");
    status
}

/// `POST /reload`: the status and the JSON answer.
async fn reload(client: &reqwest::Client, router: &RouterProcess) -> (u16, serde_json::Value) {
    let response = client
        .post(format!("http://{}/reload", router.admin))
        .send()
        .await
        .expect("POST /reload");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Writes `text` to the config file at `path`, then asks `router` to reload it.
async fn write_and_reload(
    client: &reqwest::Client,
    router: &RouterProcess,
    path: &Path,
    text: impl AsRef<[u8]>,
) -> (u16, serde_json::Value) {
    std::fs::write(path, text).expect("write config");
    reload(client, router).await
}

async fn metrics(client: &reqwest::Client, router: &RouterProcess) -> String {
    client
        .get(format!("http://{}/metrics", router.admin))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The event id of a 202 answer.
fn accepted_id(answer: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(answer).expect("a JSON answer");
    value["id"].as_str().expect("an id").to_owned()
}

/// What the load saw: for each 202'd event id, when its request was sent and answered (ms
/// since the load began).
#[derive(Debug, Default)]
struct Seen {
    accepted: HashMap<String, (u128, u128)>,
    unauthorized: u64,
    server_errors: Vec<u16>,
    connection_errors: Vec<String>,
    other: Vec<u16>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_switches_routes_plugins_and_secrets() {
    const EVENTS: u64 = 20_000;
    const RATE: f64 = 2_000.0;
    const WORKERS: u64 = 64;
    let sink = Sink::healthy().await;
    let dir = folder("under-load");
    let path = dir.join("routes.toml");
    std::fs::write(&path, config(&sink, OLD_SECRET, "A", GONE)).expect("write config");
    let router = serve(&path, &[]);
    let ingress: Arc<str> = Arc::from(router.ingress.as_str());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(WORKERS as usize)
        .build()
        .expect("client");

    assert_eq!(
        post(
            &client,
            &router.ingress,
            "/hooks/gone",
            b"{}".to_vec(),
            None
        )
        .await
        .expect("post")
        .0,
        202
    );
    // The load: `EVENTS` signed requests to `keep` at `RATE`, signed with the old secret
    // until the reload has answered, with the new one after.
    let reloaded = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (client, ingress, reloaded, next) = (
            client.clone(),
            Arc::clone(&ingress),
            Arc::clone(&reloaded),
            Arc::clone(&next),
        );
        workers.spawn(async move {
            let mut seen = Seen::default();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= EVENTS {
                    return seen;
                }
                let due = started + Duration::from_secs_f64(seq as f64 / RATE);
                tokio::time::sleep_until(due.into()).await;
                let secret = if reloaded.load(Ordering::Acquire) {
                    NEW_SECRET
                } else {
                    OLD_SECRET
                };
                let body = format!(r#"{{"seq":{seq}}}"#).into_bytes();
                let sent = started.elapsed().as_millis();
                match post(&client, &ingress, "/hooks/keep", body, Some(secret)).await {
                    Ok((202, answer)) => {
                        seen.accepted
                            .insert(accepted_id(&answer), (sent, started.elapsed().as_millis()));
                    }
                    Ok((401, _)) => seen.unauthorized += 1,
                    Ok((status, _)) if status >= 500 => seen.server_errors.push(status),
                    Ok((status, _)) => seen.other.push(status),
                    Err(error) => seen.connection_errors.push(error.to_string()),
                }
            }
        });
    }

    // Half-way: add a route, remove one, change the plugin's config and rotate the secret.
    tokio::time::sleep_until((started + Duration::from_secs(5)).into()).await;
    std::fs::write(&path, config(&sink, NEW_SECRET, "B", ADDED)).expect("write config");
    let asked_at = started.elapsed().as_millis();
    let (status, answer) = reload(&client, &router).await;
    reloaded.store(true, Ordering::Release);
    let answered_at = started.elapsed().as_millis();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["routes_added"], serde_json::json!(["added"]));
    assert_eq!(answer["routes_removed"], serde_json::json!(["gone"]));
    assert_eq!(answer["routes_changed"], serde_json::json!(["keep"]));
    assert_eq!(
        answer["modules_compiled"], 0,
        "the module's bytes did not change: {answer}"
    );
    let added = post_empty(&client, &router, "/hooks/added").await;
    assert_eq!(added, 202, "the new route serves after the reload");
    let gone = post_empty(&client, &router, "/hooks/gone").await;
    assert_eq!(gone, 404, "the removed route is gone");

    let mut seen = Seen::default();
    while let Some(worker) = workers.join_next().await {
        let worker = worker.expect("a load worker");
        seen.accepted.extend(worker.accepted);
        seen.unauthorized += worker.unauthorized;
        seen.server_errors.extend(worker.server_errors);
        seen.connection_errors.extend(worker.connection_errors);
        seen.other.extend(worker.other);
    }
    let load_took = started.elapsed();
    assert!(
        seen.connection_errors.is_empty(),
        "{} connection errors, e.g. {:?}",
        seen.connection_errors.len(),
        seen.connection_errors.first()
    );
    if !seen.server_errors.is_empty() {
        let warnings: Vec<String> = router
            .kill()
            .into_iter()
            .filter(|line| line.contains("WARN") || line.contains("ERROR"))
            .take(20)
            .collect();
        panic!(
            "5xx: {:?}; the router's warnings: {warnings:#?}",
            seen.server_errors
        );
    }
    assert!(seen.other.is_empty(), "other answers: {:?}", seen.other);
    let accepted = seen.accepted.len();
    // Only requests signed with the old secret that reached the new table are refused: those
    // sent between the switch and the reload's answer.
    assert_eq!(accepted as u64 + seen.unauthorized, EVENTS);

    // Every 202'd id is delivered, and carries the plugin config it was accepted under.
    let delivered = sink
        .wait_for(accepted + 2, PATIENCE, |r| (200..300).contains(&r.status))
        .await;
    let mut ids = HashSet::new();
    let mut tags: HashMap<String, String> = HashMap::new();
    for received in &delivered {
        let id = received.headers["webhook-id"]
            .to_str()
            .expect("id")
            .to_owned();
        if let Some(tag) = received.headers.get("x-config") {
            tags.insert(id.clone(), tag.to_str().expect("tag").to_owned());
        }
        ids.insert(id);
    }
    let missing: Vec<&String> = seen
        .accepted
        .keys()
        .filter(|id| !ids.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {accepted} accepted events not delivered",
        missing.len()
    );
    let (mut old, mut new) = (0, 0);
    // A request runs on the config serving when it arrived: the old one for those sent
    // before the reload answered, the new one for those answered after it was asked.
    for (id, (sent, answered)) in &seen.accepted {
        match tags.get(id).map(String::as_str) {
            Some("A") => {
                assert!(
                    *sent <= answered_at,
                    "{id} sent at {sent} ms ran the old plugin config"
                );
                old += 1;
            }
            Some("B") => {
                assert!(
                    *answered >= asked_at,
                    "{id} answered at {answered} ms ran the new plugin config"
                );
                new += 1;
            }
            other => panic!("{id} delivered with x-config {other:?}"),
        }
    }
    assert!(old > 0 && new > 0, "old {old}, new {new}");

    let text = metrics(&client, &router).await;
    assert_eq!(
        metric_value(&text, "webhook_config_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "webhook_config_reloads_total{result=\"error\"}"),
        Some(0.0)
    );
    let hash = answer["hash"].as_str().expect("hash");
    assert_eq!(
        metric_value(&text, &format!("webhook_config_info{{hash=\"{hash}\"}}")),
        Some(1.0),
        "{text}"
    );
    // One series: the replaced config's is gone, not left at 0.
    assert_eq!(
        text.lines()
            .filter(|line| line.starts_with("webhook_config_info{"))
            .count(),
        1,
        "{text}"
    );
    let last = metric_value(&text, "webhook_config_last_reload_timestamp_seconds")
        .expect("last reload metric");
    assert!(last > 1.0e9, "{last}");
    eprintln!(
        "reload under load: {EVENTS} sent in {load_took:?}; {accepted} accepted ({old} before the switch, {new} after), \
         {} refused with the old secret after the switch, all delivered; reload answered in {} ms",
        seen.unauthorized,
        answered_at - asked_at
    );
    let (success, log) = router.stop();
    assert!(success, "{log:#?}");
    let line = log
        .iter()
        .find(|line| line.contains("config reloaded"))
        .expect("a reload log line");
    assert!(
        line.contains("routes_added=[\"added\"]")
            && line.contains("routes_removed=[\"gone\"]")
            && line.contains("routes_changed=[\"keep\"]"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_lists_every_fault_and_the_old_config_serves() {
    let sink = Sink::healthy().await;
    let dir = folder("three-faults");
    let path = dir.join("routes.toml");
    let good = config(&sink, OLD_SECRET, "A", GONE);
    std::fs::write(&path, &good).expect("write config");
    let router = serve(&path, &[]);
    let client = reqwest::Client::new();

    // A syntax error, an unknown destination and a plugin whose `configure` fails (json-map
    // refuses an unknown `{{…}}` reference).
    let bad = good
        .replace("queue_capacity = 100000", "queue_capacity = = 100000")
        .replace(
            "id = \"gone\"\npath = \"/hooks/gone\"\ndestinations = [\"sink\"]",
            "id = \"gone\"\npath = \"/hooks/gone\"\ndestinations = [\"nowhere\"]",
        )
        .replace("x-config = \"A\"", "x-config = \"{{bogus}}\"");
    let (status, answer) = write_and_reload(&client, &router, &path, &bad).await;
    assert_eq!(status, 400, "{answer}");
    let errors: Vec<&str> = answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().expect("an error line"))
        .collect();
    let file = path.display().to_string();
    let find = |what: &str| {
        errors
            .iter()
            .find(|e| e.contains(what))
            .unwrap_or_else(|| panic!("no error with {what:?} in {errors:#?}"))
    };
    assert!(
        find("extra `=`").starts_with(&format!("{file}:4:")),
        "{errors:#?}"
    );
    assert!(
        find("unknown destination \"nowhere\"")
            .starts_with(&format!("{file}:25:17: routes[1].destinations: ")),
        "{errors:#?}"
    );
    let plugin = find("plugin \"json_map\"");
    assert!(
        plugin.starts_with(&format!("{file}:18:")) && plugin.contains("routes[0].plugins[0]"),
        "{errors:#?}"
    );

    // The old config serves: the old secret, the old plugin config, the route now refused.
    let (status, _) = post(
        &client,
        &router.ingress,
        "/hooks/keep",
        b"{}".to_vec(),
        Some(OLD_SECRET),
    )
    .await
    .expect("post");
    assert_eq!(status, 202);
    let status = post_empty(&client, &router, "/hooks/gone").await;
    assert_eq!(status, 202);
    let delivered = sink.wait_for_delivered(2, PATIENCE).await;
    assert!(
        delivered
            .iter()
            .any(|r| r.headers.get("x-config").is_some_and(|v| v == "A")),
        "{delivered:#?}"
    );
    let text = metrics(&client, &router).await;
    assert_eq!(
        metric_value(&text, "webhook_config_reloads_total{result=\"error\"}"),
        Some(1.0),
        "{text}"
    );

    // A key that cannot change live is refused by name, through the CLI.
    std::fs::write(
        &path,
        good.replace("queue_capacity = 100000", "queue_capacity = 5"),
    )
    .expect("write config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(["reload", "--admin"])
        .arg(format!("http://{}", router.admin))
        .output()
        .expect("run reload");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:4:18: server.queue_capacity: "))
            && stderr.contains("restart"),
        "{stderr}"
    );
    std::fs::write(&path, good.replace("x-config = \"A\"", "x-config = \"C\""))
        .expect("write config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(["reload", "--admin"])
        .arg(format!("http://{}", router.admin))
        .output()
        .expect("run reload");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("routes changed: keep"), "{stdout}");
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_applies_an_edit_within_two_seconds_and_refuses_a_half_written_file() {
    let sink = Sink::healthy().await;
    let dir = folder("watch");
    let path = dir.join("routes.toml");
    // The plugin's module is a copy in the test's folder, so that the test can change it.
    let shared = module("json_map");
    let copy = dir.join("json_map.wasm");
    std::fs::copy(&shared, &copy).expect("copy the module");
    let with_copy =
        |text: String| text.replace(&shared.display().to_string(), &copy.display().to_string());
    std::fs::write(&path, with_copy(config(&sink, OLD_SECRET, "A", GONE))).expect("write config");
    let mut router = serve(&path, &["--watch"]);
    let client = reqwest::Client::new();
    let ingress = router.ingress.clone();
    let status = |path: &'static str| {
        let (client, ingress) = (&client, &ingress);
        async move {
            post(client, ingress, path, b"{}".to_vec(), None)
                .await
                .expect("post")
                .0
        }
    };
    assert_eq!(status("/hooks/added").await, 404);

    // Half of the new file, cut mid-line: refused whole, the old config serves.
    let next = with_copy(config(&sink, NEW_SECRET, "B", ADDED));
    let cut = next.find("id = \"added\"").expect("the added route") + 6;
    std::fs::write(&path, &next[..cut]).expect("write half");
    router.wait_for_log("config reload refused");
    assert_eq!(status("/hooks/gone").await, 202);
    assert_eq!(status("/hooks/added").await, 404);

    // The whole file: applied within 2 s.
    let written = Instant::now();
    std::fs::write(&path, &next).expect("write config");
    wait_until(
        "the added route to serve",
        Duration::from_secs(2),
        || status("/hooks/added"),
        |status| *status == 202,
    )
    .await;
    let took = written.elapsed();
    assert_eq!(status("/hooks/gone").await, 404);
    let text = metrics(&client, &router).await;
    assert_eq!(
        metric_value(&text, "webhook_config_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric_value(&text, "webhook_config_reloads_total{result=\"error\"}")
            .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    eprintln!("--watch applied the edit {took:?} after the write");

    // A plugin module's new bytes (a custom section appended: the same plugin) reload too, and
    // are compiled; the config's own edit above compiled nothing.
    assert!(
        router
            .wait_for_log("config reloaded")
            .contains("modules_compiled=0"),
        "the module did not change"
    );
    let mut bytes = std::fs::read(&copy).expect("read the module");
    bytes.extend_from_slice(&[0x00, 0x05, 0x04, b't', b'e', b's', b't']);
    std::fs::write(&copy, bytes).expect("write the module");
    router.wait_for_log("modules_compiled=1");
    assert_eq!(status("/hooks/added").await, 202);
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_needs_the_admin_token() {
    let sink = Sink::healthy().await;
    let dir = folder("token");
    let path = dir.join("routes.toml");
    let text = config(&sink, OLD_SECRET, "A", GONE).replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"t0ken\"",
    );
    std::fs::write(&path, &text).expect("write config");
    let router = serve(&path, &[]);
    let client = reqwest::Client::new();
    let url = format!("http://{}/reload", router.admin);
    for token in [None, Some("wrong")] {
        let mut request = client.post(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let status = request.send().await.expect("POST /reload").status();
        assert_eq!(status, 401, "token {token:?}");
    }
    let response = client
        .post(&url)
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(answer["routes_changed"], serde_json::json!([]), "{answer}");
    let text = metrics(&client, &router).await;
    assert_eq!(
        metric_value(&text, "webhook_config_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_url_change_applies_to_new_attempts() {
    let (first, second) = (Sink::healthy().await, Sink::healthy().await);
    let dir = folder("destination");
    let path = dir.join("routes.toml");
    let before = config(&first, OLD_SECRET, "A", GONE);
    std::fs::write(&path, &before).expect("write config");
    let router = serve(&path, &[]);
    let client = reqwest::Client::new();
    let status = post_empty(&client, &router, "/hooks/gone").await;
    assert_eq!(status, 202);
    assert_eq!(first.wait_for_delivered(1, PATIENCE).await.len(), 1);

    let (status, answer) = write_and_reload(
        &client,
        &router,
        &path,
        before.replace(&first.url("/in"), &second.url("/in")),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["destinations_changed"], serde_json::json!(["sink"]));
    let status = post_empty(&client, &router, "/hooks/gone").await;
    assert_eq!(status, 202);
    assert_eq!(second.wait_for_delivered(1, PATIENCE).await.len(), 1);
    assert_eq!(first.requests().len(), 1, "the old URL gets nothing new");
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_change_applies_to_the_deliveries_already_waiting_for_a_turn() {
    let sink = Sink::healthy().await;
    let dir = folder("rate");
    let path = dir.join("routes.toml");
    let with_rate = |rate: &str| {
        config(&sink, OLD_SECRET, "A", GONE).replace(
            "max_in_flight = 128\n",
            &format!("max_in_flight = 128\nrate = {rate}\n"),
        )
    };
    std::fs::write(&path, with_rate("{ per_second = 0.1, burst = 1 }")).expect("write config");
    let router = serve(&path, &[]);
    let client = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(post_empty(&client, &router, "/hooks/gone").await, 202);
    }
    assert_eq!(sink.wait_for_delivered(1, PATIENCE).await.len(), 1);

    // At 0.1 a second the other two would take 20 s; the reload frees them within a second.
    let (status, answer) =
        write_and_reload(&client, &router, &path, with_rate("{ per_second = 1000 }")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["destinations_changed"], serde_json::json!(["sink"]));
    let reloaded = Instant::now();
    let delivered = sink.wait_for_delivered(3, Duration::from_secs(5)).await;
    assert_eq!(delivered.len(), 3, "after {:?}", reloaded.elapsed());
    eprintln!(
        "the two waiting deliveries arrived {:?} after the reload",
        delivered[2].at - reloaded
    );
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_destination_delivers_what_it_holds() {
    const HELD: usize = 20;
    let sink = Sink::healthy().await;
    // Each event's first three attempts fail: the destination holds them when it is removed.
    let flaky = Sink::start_per_body(|_, attempt| {
        if attempt <= 3 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = folder("removed-destination");
    let path = dir.join("routes.toml");
    let base = config(&sink, OLD_SECRET, "A", GONE);
    let with_flaky = format!(
        "{base}\n[destinations.flaky]\nurl = \"{}\"\nretry = {{ max_attempts = 10, initial_backoff = \"300ms\", max_backoff = \"300ms\", jitter = \"none\" }}\ncircuit = {{ failures = 1000 }}\n\n[[routes]]\nid = \"flaky\"\npath = \"/hooks/flaky\"\ndestinations = [\"flaky\"]\n",
        flaky.url("/in")
    );
    std::fs::write(&path, &with_flaky).expect("write config");
    let router = serve(&path, &[]);
    let client = reqwest::Client::new();
    for seq in 0..HELD {
        let body = format!(r#"{{"seq":{seq}}}"#).into_bytes();
        let (status, _) = post(&client, &router.ingress, "/hooks/flaky", body, None)
            .await
            .expect("post");
        assert_eq!(status, 202);
    }
    let (status, answer) = write_and_reload(&client, &router, &path, &base).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["routes_removed"], serde_json::json!(["flaky"]));
    assert!(
        flaky.delivered().len() < HELD,
        "the destination still held events at the reload"
    );
    let status = post_empty(&client, &router, "/hooks/flaky").await;
    assert_eq!(status, 404);
    let delivered = flaky.wait_for_delivered(HELD, PATIENCE).await;
    assert_eq!(delivered.len(), HELD);
    wait_until(
        "the router to hold nothing",
        PATIENCE,
        || metrics(&client, &router),
        |text| metric_value(text, "webhook_queue_depth") == Some(0.0),
    )
    .await;
    // Then its lane goes: no longer listed, holding nothing.
    let listed = || async {
        let answer: serde_json::Value = client
            .get(format!("http://{}/destinations", router.admin))
            .send()
            .await
            .expect("GET /destinations")
            .json()
            .await
            .expect("JSON");
        answer
            .as_array()
            .expect("a list")
            .iter()
            .map(|d| d["name"].as_str().expect("a name").to_owned())
            .collect::<Vec<String>>()
    };
    wait_until("flaky's lane to go", PATIENCE, listed, |names| {
        *names == ["sink"]
    })
    .await;
    let text = metrics(&client, &router).await;
    let held = "webhook_destination_held{destination=\"flaky\"}";
    assert_eq!(metric_value(&text, held), Some(0.0), "{text}");
    // Adding it back (under its old id) serves it again.
    let (status, answer) = write_and_reload(&client, &router, &path, &with_flaky).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(listed().await, ["flaky", "sink"]);
    let status = post_empty(&client, &router, "/hooks/flaky").await;
    assert_eq!(status, 202);
    flaky.wait_for_delivered(HELD + 1, PATIENCE).await;
    router.stop();
}

/// The most requests that arrived at `sink` within any `window`, among those that arrived
/// between `from` and `to`: a slow sink's concurrency, when each answer takes longer than
/// `window` (a worker sends its next request only after its last answer).
fn most_at_once(sink: &Sink, from: Instant, to: Instant, window: Duration) -> usize {
    let arrivals: Vec<Instant> = sink
        .requests()
        .iter()
        .map(|r| r.at)
        .filter(|at| (from..to).contains(at))
        .collect();
    arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|at| (*start..*start + window).contains(*at))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_are_added_removed_and_resized_live_under_traffic() {
    const HELD: usize = 20;
    const RATE: f64 = 60.0;
    const ANSWER: Duration = Duration::from_millis(250);
    let (sink, added) = (Sink::healthy().await, Sink::healthy().await);
    let slow = Sink::start(|_| Reply {
        delay: Some(ANSWER),
        ..Reply::ok()
    })
    .await;
    // Each event's first four attempts fail, a second apart: the destination holds them when
    // it is removed, two seconds in.
    let flaky = Sink::start_per_body(|_, attempt| {
        if attempt <= 4 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = folder("destinations-live");
    let path = dir.join("routes.toml");
    let slow_destination = |workers: usize| {
        format!(
            "\n[destinations.slow]\nurl = \"{}\"\nmax_held = 100000\nmax_in_flight = {workers}\n\n\
             [[routes]]\nid = \"slow\"\npath = \"/hooks/slow\"\ndestinations = [\"slow\"]\n",
            slow.url("/in")
        )
    };
    let flaky_destination = format!(
        "\n[destinations.flaky]\nurl = \"{}\"\nretry = {{ max_attempts = 10, initial_backoff = \"1s\", max_backoff = \"1s\", jitter = \"none\" }}\ncircuit = {{ failures = 1000 }}\n\n[[routes]]\nid = \"flaky\"\npath = \"/hooks/flaky\"\ndestinations = [\"flaky\"]\n",
        flaky.url("/in")
    );
    let added_destination = format!(
        "\n[destinations.added]\nurl = \"{}\"\n\n[[routes]]\nid = \"added\"\npath = \"/hooks/added\"\ndestinations = [\"added\"]\n",
        added.url("/in")
    );
    let before = config(
        &sink,
        OLD_SECRET,
        "A",
        &format!("{}{flaky_destination}", slow_destination(4)),
    );
    std::fs::write(&path, &before).expect("write config");
    let router = serve(&path, &[]);
    let client = reqwest::Client::new();
    let ingress: Arc<str> = Arc::from(router.ingress.as_str());
    for seq in 0..HELD {
        let body = format!(r#"{{"flaky":{seq}}}"#).into_bytes();
        let (status, _) = post(&client, &router.ingress, "/hooks/flaky", body, None)
            .await
            .expect("post");
        assert_eq!(status, 202);
    }

    // Steady traffic to the slow destination across both reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, ingress, stop) = (client.clone(), Arc::clone(&ingress), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut seen = Seen::default();
            let started = Instant::now();
            let mut requests = tokio::task::JoinSet::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Acquire) {
                let due = started + Duration::from_secs_f64(seq as f64 / RATE);
                tokio::time::sleep_until(due.into()).await;
                let (client, ingress) = (client.clone(), Arc::clone(&ingress));
                let body = format!(r#"{{"slow":{seq}}}"#).into_bytes();
                requests
                    .spawn(async move { post(&client, &ingress, "/hooks/slow", body, None).await });
                seq += 1;
            }
            while let Some(answer) = requests.join_next().await {
                match answer.expect("a request task") {
                    Ok((202, answer)) => {
                        seen.accepted.insert(accepted_id(&answer), (0, 0));
                    }
                    Ok((status, _)) if status >= 500 => seen.server_errors.push(status),
                    Ok((status, _)) => seen.other.push(status),
                    Err(error) => seen.connection_errors.push(error.to_string()),
                }
            }
            seen
        })
    };

    // Four workers at the slow sink: four requests at once.
    let window = ANSWER.mul_f64(0.8);
    let phase = Duration::from_secs(2);
    let first = Instant::now();
    tokio::time::sleep(phase).await;
    assert_eq!(most_at_once(&slow, first, Instant::now(), window), 4);

    // Reload: add `added` (and a route to it), remove `flaky` while it holds events, and lower
    // the slow destination's max_in_flight to 1.
    let lowered = config(
        &sink,
        OLD_SECRET,
        "A",
        &format!("{}{added_destination}", slow_destination(1)),
    );
    let (status, answer) = write_and_reload(&client, &router, &path, &lowered).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["routes_added"], serde_json::json!(["added"]));
    assert_eq!(answer["routes_removed"], serde_json::json!(["flaky"]));
    assert_eq!(answer["destinations_changed"], serde_json::json!(["slow"]));
    assert!(
        flaky.delivered().len() < HELD,
        "the removed destination still held events at the reload"
    );
    // The attempts in flight at the switch finish; from then on one at a time.
    let second = Instant::now() + ANSWER + Duration::from_millis(100);
    for seq in 0..10 {
        let body = format!(r#"{{"added":{seq}}}"#).into_bytes();
        let (status, _) = post(&client, &router.ingress, "/hooks/added", body, None)
            .await
            .expect("post");
        assert_eq!(status, 202, "the new route serves, to the new destination");
    }
    assert_eq!(added.wait_for_delivered(10, PATIENCE).await.len(), 10);
    assert_eq!(post_empty(&client, &router, "/hooks/flaky").await, 404);
    tokio::time::sleep_until((second + phase).into()).await;
    assert_eq!(most_at_once(&slow, second, Instant::now(), window), 1);

    // Raise it to 8.
    let raised = config(
        &sink,
        OLD_SECRET,
        "A",
        &format!("{}{added_destination}", slow_destination(8)),
    );
    let (status, answer) = write_and_reload(&client, &router, &path, &raised).await;
    assert_eq!(status, 200, "{answer}");
    let third = Instant::now();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Release);
    let seen = load.await.expect("the load");
    assert_eq!(most_at_once(&slow, third, Instant::now(), window), 8);

    assert!(
        seen.connection_errors.is_empty() && seen.server_errors.is_empty(),
        "connection errors {:?}, 5xx {:?}",
        seen.connection_errors.first(),
        seen.server_errors
    );
    assert!(seen.other.is_empty(), "other answers: {:?}", seen.other);
    // Every 202'd id is delivered; the removed destination delivered all it held.
    let delivered: HashSet<String> = slow
        .wait_for(seen.accepted.len(), PATIENCE, |r| {
            (200..300).contains(&r.status)
        })
        .await
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().expect("id").to_owned())
        .collect();
    let missing = seen
        .accepted
        .keys()
        .filter(|id| !delivered.contains(*id))
        .count();
    assert_eq!(missing, 0, "of {} accepted", seen.accepted.len());
    assert_eq!(flaky.wait_for_delivered(HELD, PATIENCE).await.len(), HELD);
    // Then the removed destination's lane goes: its held gauge reads 0, and `/destinations`
    // no longer lists it.
    wait_until(
        "flaky's lane to go",
        PATIENCE,
        || async {
            client
                .get(format!("http://{}/destinations", router.admin))
                .send()
                .await
                .expect("GET /destinations")
                .text()
                .await
                .expect("text")
        },
        |text| !text.contains("\"flaky\""),
    )
    .await;
    // (The sink records a request as it arrives: the last ones are still being answered.)
    let text = wait_until(
        "the router to hold nothing",
        PATIENCE,
        || metrics(&client, &router),
        |text| metric_value(text, "webhook_queue_depth") == Some(0.0),
    )
    .await;
    let held = "webhook_destination_held{destination=\"flaky\"}";
    assert_eq!(metric_value(&text, held), Some(0.0), "{text}");
    eprintln!(
        "destinations live: {} accepted and delivered to slow, {HELD} held by the removed destination delivered, 10 to the added one",
        seen.accepted.len()
    );
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_a_new_dedup_window_needs_a_restart() {
    let sink = Sink::healthy().await;
    let dir = folder("nats");
    let nats = webhook_router_tests::nats::NatsServer::start(&dir.join("nats"));
    let queue = format!("\n[queue]\nbackend = \"nats\"\nurl = \"{}\"\n", nats.url());
    let path = dir.join("routes.toml");
    // `keep` verifies with the github preset, which brings a dedup window (by delivery id).
    std::fs::write(&path, config(&sink, OLD_SECRET, "A", &queue)).expect("write config");
    let router = serve(&path, &[]);
    let client = reqwest::Client::new();

    // A plugin config change keeps the route's shared window: applied.
    let (status, answer) = write_and_reload(
        &client,
        &router,
        &path,
        config(&sink, OLD_SECRET, "B", &queue),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // A new route with a window of its own: refused, naming it.
    let verified = format!("{ADDED}verify = {{ preset = \"github\", secrets = [\"s\"] }}\n{queue}");
    let (status, answer) = write_and_reload(
        &client,
        &router,
        &path,
        config(&sink, OLD_SECRET, "B", &verified),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let errors = answer["errors"].to_string();
    assert!(
        errors.contains("routes[1].dedup: with backend = \\\"nats\\\""),
        "{errors}"
    );
    let status = post_empty(&client, &router, "/hooks/added").await;
    assert_eq!(status, 404, "the refused config is not serving");
    // A destination new to the router: each has a consumer made at start.
    let more = format!(
        "{queue}\n[destinations.more]\nurl = \"{}\"\n",
        sink.url("/more")
    );
    let (status, answer) = write_and_reload(
        &client,
        &router,
        &path,
        config(&sink, OLD_SECRET, "B", &more),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let errors = answer["errors"].to_string();
    assert!(
        errors.contains("destinations.more: with backend = \\\"nats\\\""),
        "{errors}"
    );
    router.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_the_reload_command_serve_the_certificate_the_config_names_and_expiry_is_warned()
{
    let dir = folder("tls-sighup");
    let certs = TestCerts::make(&dir.join("certs"));
    let soon = certs.server("soon", 3);
    let renewed = certs.server("renewed", 40);
    let admin = certs.server("admin", 30);
    let sink = Sink::healthy().await;
    let with_cert = |pair: &Pair| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             tls = {{ cert = \"{}\", key = \"{}\" }}\n\
             admin_tls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
             [destinations.sink]\nurl = \"{}\"\n\n\
             [[routes]]\nid = \"tls\"\npath = \"/hooks/tls\"\ndestinations = [\"sink\"]\n",
            pair.cert.display(),
            pair.key.display(),
            admin.cert.display(),
            admin.key.display(),
            sink.url("/in")
        )
    };
    let path = dir.join("router.toml");
    std::fs::write(&path, with_cert(&soon)).expect("write config");
    let mut router = serve(&path, &[]);
    let warning = router.wait_for_log("expires within 14 days");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains(&soon.cert.display().to_string()),
        "{warning}"
    );
    let client = certs.client_trusting_ca(false);
    let url = format!("https://{}/hooks/tls", router.ingress);
    let answer = client.post(&url).body("{}").send().await.expect("answer");
    assert_eq!(answer.status(), 202);
    let ingress: std::net::SocketAddr = router.ingress.parse().expect("address");
    assert_eq!(certs.served_leaf(ingress).await, soon.leaf_der());

    std::fs::write(&path, with_cert(&renewed)).expect("write config");
    router.signal("HUP");
    router.wait_for_log("config reloaded");
    // New connections are served the renewed certificate; the pooled one goes on.
    assert_eq!(certs.served_leaf(ingress).await, renewed.leaf_der());
    let answer = client.post(&url).body("{}").send().await.expect("answer");
    assert_eq!(answer.status(), 202);
    let text = client
        .get(format!("https://{}/metrics", router.admin))
        .send()
        .await
        .expect("GET /metrics over TLS")
        .text()
        .await
        .expect("metrics text");
    let expiry = metric_value(
        &text,
        "webhook_tls_cert_expiry_timestamp_seconds{listener=\"ingress\"}",
    )
    .expect("the expiry gauge exists");
    let in_40_days = (SystemTime::now() + Duration::from_secs(40 * 86_400))
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    assert!((expiry - in_40_days).abs() < 600.0, "{expiry}");

    // `webhook-router reload` reaches the admin listener over TLS, trusting `--ca`.
    std::fs::write(&path, with_cert(&soon)).expect("write config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(["reload", "--admin", &format!("https://{}", router.admin)])
        .arg("--ca")
        .arg(certs.ca())
        .output()
        .expect("run webhook-router reload");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(certs.served_leaf(ingress).await, soon.leaf_der());
    let (stopped, _) = router.stop();
    assert!(stopped);
    assert_eq!(sink.wait_for_delivered(2, PATIENCE).await.len(), 2);
}
