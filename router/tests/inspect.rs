//! The event record (`[inspect]`), tested on the router as a process: three events (one
//! delivered, one retried then delivered, one dead-lettered) show the right attempts through
//! `GET /events/{id}` and `webhook-router events`, and again after a SIGKILL and a restart on
//! the same journal, as does a fourth still in flight (its record rebuilt from the event); 2,500 events listed in pages of 100 show each exactly once; and the journal
//! holds a key for no more records than the record keeps (count and age).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use webhook_router_tests::github;
use webhook_router_tests::numbered::{self, PATIENCE, client, metric, post_accepted, wait_idle};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, RouterProcess, Sink};

const TOKEN: &str = "inspect-admin-token";
const SECRET: &str = "gh-secret";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_webhook-router"))
}

fn fresh_dir(name: &str) -> PathBuf {
    numbered::fresh_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "inspect", name)
}

/// A sink that takes bodies containing `delivered`, fails the first attempt at `retried`,
/// fails every attempt at `dead`, and never answers `parked`.
async fn scripted_sink() -> Sink {
    Sink::start_per_body(|body, attempt| {
        let has = |word: &[u8]| body.windows(word.len()).any(|w| w == word);
        if has(b"parked") {
            Reply::hang()
        } else if has(b"dead") || (has(b"retried") && attempt == 1) {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    })
    .await
}

/// Posts `body` to `/hooks` signed with [`SECRET`] as GitHub signs it, with delivery id
/// `delivery`; the event id of the 202.
async fn post_signed(ingress: &str, body: &str, delivery: &str) -> String {
    github::post_signed(ingress, SECRET, body, delivery).await
}

/// `GET path` on the admin API with the token; the status and JSON answer.
async fn admin_get(admin: &str, path: &str) -> (u16, Value) {
    let answer = client()
        .get(format!("http://{admin}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin request");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("json"))
}

async fn event(admin: &str, id: &str) -> Value {
    let (status, record) = admin_get(admin, &format!("/events/{id}")).await;
    assert_eq!(status, 200, "{record}");
    record
}

/// Each attempt's status, for one destination's record.
fn statuses(record: &Value) -> Vec<Value> {
    record["destinations"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status"].clone())
        .collect()
}

/// Waits until every change to the event record is in the journal.
async fn wait_saved(admin: &str) {
    wait_until(
        "the event record to be written (webhook_inspect_unsaved 0)",
        PATIENCE,
        || metric(admin, "webhook_inspect_unsaved"),
        |unsaved| *unsaved == Some(0.0),
    )
    .await;
}

fn cli(args: &[&str]) -> String {
    let output = Command::new(binary())
        .args(args)
        .env("WEBHOOK_ROUTER_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("run the CLI");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_events_show_their_attempts_before_and_after_a_sigkill() {
    let sink = scripted_sink().await;
    let dir = fresh_dir("three");
    let config = dir.join("router.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\nshutdown_grace = \"100ms\"\n\
             [queue]\npath = \"data\"\nfsync = \"always\"\n\
             [destinations.sink]\nurl = \"{}\"\n\
             retry = {{ max_attempts = 2, initial_backoff = \"50ms\", max_backoff = \"50ms\", jitter = \"none\" }}\n\
             [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\ninspect_bodies = true\n\
             verify = {{ preset = \"github\", secrets = [\"{SECRET}\"] }}\n",
            sink.url("/in")
        ),
    )
    .expect("write config");
    let router = RouterProcess::start(binary(), &config);
    let delivered = post_signed(&router.ingress, r#"{"kind":"delivered"}"#, "d-1").await;
    let retried = post_signed(&router.ingress, r#"{"kind":"retried"}"#, "d-2").await;
    let dead = post_signed(&router.ingress, r#"{"kind":"dead"}"#, "d-3").await;
    wait_idle(&router.admin).await;

    let first = event(&router.admin, &delivered).await;
    assert_eq!(first["outcome"], "delivered", "{first}");
    assert_eq!(first["delivery_id"], "d-1");
    assert_eq!(first["route"], "hooks");
    assert_eq!(first["body"]["text"], r#"{"kind":"delivered"}"#);
    assert_eq!(statuses(&first), [200]);
    let second = event(&router.admin, &retried).await;
    assert_eq!(second["outcome"], "delivered", "{second}");
    assert_eq!(statuses(&second), [500, 200]);
    let third = event(&router.admin, &dead).await;
    assert_eq!(third["outcome"], "dead_lettered", "{third}");
    assert_eq!(third["destinations"][0]["outcome"], "dead_lettered");
    assert_eq!(statuses(&third), [500, 500]);
    let attempts = third["destinations"][0]["attempts"]
        .as_array()
        .expect("attempts");
    assert!(
        attempts.iter().all(|a| a["error"].is_string()
            && a["duration_ms"].as_f64().is_some()
            && a["at_ms"].as_u64() >= third["received_ms"].as_u64()),
        "{third}"
    );
    // The dead-letter filter finds the one; the token is needed.
    let (_, page) = admin_get(&router.admin, "/events?outcome=dead_lettered").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["events"][0]["id"].as_str(), Some(dead.as_str()));
    let anonymous = client()
        .get(format!("http://{}/events", router.admin))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);

    // The CLI prints the same record, and a line per event.
    let admin_url = format!("http://{}", router.admin);
    let shown: Value =
        serde_json::from_str(&cli(&["events", "show", &dead, "--admin", &admin_url]))
            .expect("show prints JSON");
    assert_eq!(shown, third);
    let listed = cli(&["events", "list", "--admin", &admin_url]);
    for id in [&delivered, &retried, &dead] {
        assert_eq!(
            listed
                .lines()
                .filter(|line| line.starts_with(id.as_str()))
                .count(),
            1,
            "{listed}"
        );
    }

    // An event whose first attempt is in flight: its record is not in the journal (the
    // journaled event holds all of it), and is rebuilt from the event after the restart.
    let parked = post_signed(&router.ingress, r#"{"kind":"parked"}"#, "d-4").await;
    let in_flight = |record: &Value| {
        record["destinations"][0]["outcome"] == "pending"
            && record["destinations"][0]["attempts"]
                .as_array()
                .is_some_and(Vec::is_empty)
    };
    let fourth = wait_until(
        "the parked event to be taken off the queue",
        PATIENCE,
        || event(&router.admin, &parked),
        in_flight,
    )
    .await;
    assert_eq!(fourth["delivery_id"], "d-4", "{fourth}");
    assert_eq!(fourth["body"]["text"], r#"{"kind":"parked"}"#);

    // Killed, and started again on the same journal: the same records.
    wait_saved(&router.admin).await;
    router.kill();
    let router = RouterProcess::start(binary(), &config);
    assert_eq!(event(&router.admin, &delivered).await, first);
    assert_eq!(event(&router.admin, &retried).await, second);
    assert_eq!(event(&router.admin, &dead).await, third);
    let resumed = wait_until(
        "the parked event to be resumed",
        PATIENCE,
        || event(&router.admin, &parked),
        in_flight,
    )
    .await;
    assert_eq!(resumed, fourth);
    assert_eq!(
        metric(&router.admin, "webhook_inspect_events").await,
        Some(4.0)
    );
    assert!(router.stop().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_2500_events_in_pages_of_100_shows_each_once() {
    let sink = Sink::healthy().await;
    let dir = fresh_dir("pages");
    let config = dir.join("router.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
             [destinations.sink]\nurl = \"{}\"\n\
             [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\n",
            sink.url("/in")
        ),
    )
    .expect("write config");
    let router = RouterProcess::start(binary(), &config);
    let accepted = post_accepted(&router.ingress, 0..2_500, 32).await;
    assert_eq!(accepted.len(), 2_500);
    wait_idle(&router.admin).await;

    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut late = Vec::new();
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/events?limit=100&cursor={cursor}"),
            None => "/events?limit=100".to_owned(),
        };
        let (status, page) = admin_get(&router.admin, &path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 100);
        for event in events {
            let id = event["id"].as_str().expect("id").to_owned();
            assert!(seen.insert(id.clone()), "{id} on two pages");
        }
        if pages == 1 {
            // Events arriving between pages are newer than the first: never listed.
            for n in 0..10 {
                let answer = client()
                    .post(format!("http://{}/hooks", router.ingress))
                    .body(numbered::body(2_500 + n))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(answer.status().as_u16(), 202);
                let json: Value = answer.json().await.expect("json");
                late.push(json["id"].as_str().expect("id").to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 25);
    assert!(
        late.iter().all(|id| !seen.contains(id)),
        "a late event was listed"
    );
    // The record holds the 2,510: the 2,500 listed are the ones posted before the first page.
    assert_eq!(seen.len(), 2_500, "each of the 2,500 events exactly once");
    assert!(router.stop().0);
}

/// Records `count` delivered events on route `hooks`, `age` old; their ids, oldest first.
fn record_delivered(
    inspector: &webhook_router::inspect::Inspector,
    count: usize,
    age: std::time::Duration,
) -> Vec<String> {
    use webhook_router::delivery::attempt::AttemptOutcome;
    use webhook_router::event::Event;
    (0..count)
        .map(|_| {
            let id = Event::new_id();
            let event = Event {
                id: id.clone(),
                route: "hooks".to_owned(),
                method: http::Method::POST,
                path: "/hooks".to_owned(),
                query: String::new(),
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::from_static(b"{}"),
                received_at: std::time::SystemTime::now() - age,
                plugin_headers: None,
                order_key: None,
                trace: None,
            };
            // A route without plugins: queued from the start.
            inspector.received(
                &event,
                None,
                Some([webhook_router::inspect::Name::intern("sink")]),
            );
            inspector.attempt(
                &id,
                "sink",
                std::time::SystemTime::now(),
                std::time::Duration::from_millis(1),
                &AttemptOutcome::Delivered { status: 200 },
            );
            id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_holds_no_more_records_than_the_record_does() {
    use webhook_router::Config;
    use webhook_router::inspect::{Inspector, parse_id};
    use webhook_router::journal::{Fsync, Journal, JournalOptions, space};
    use webhook_router::metrics::Metrics;
    use webhook_router::supervise::Supervisor;

    let dir = fresh_dir("bounded").join("data");
    let config = Config::parse(
        "[inspect]\nevents = 5\nmax_age = \"1h\"\n\
         [destinations.sink]\nurl = \"http://127.0.0.1:9/\"\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\n",
        Path::new("bounded.toml"),
    )
    .expect("valid config");
    let options = JournalOptions {
        fsync: Fsync::Always,
        max_bytes: 64 << 20,
    };
    let open = || {
        let metrics = Metrics::new();
        let (journal, recovered) = Journal::open(&dir, options, &metrics).expect("journal opens");
        (journal, recovered, metrics)
    };

    let (journal, mut recovered, metrics) = open();
    let supervisor = Supervisor::new(metrics.clone());
    let inspector = Inspector::open(
        &config,
        Some((&journal, &mut recovered, &[])),
        &metrics,
        &supervisor,
    );
    // Two hours old: past max_age, so never kept (nor left in the journal).
    let stale = record_delivered(&inspector, 3, std::time::Duration::from_secs(7200));
    let ids = record_delivered(&inspector, 20, std::time::Duration::ZERO);
    inspector.settle().await;
    journal.close().await.expect("close");
    drop(inspector);

    // What the journal holds is what the record holds: the newest 5, and no key for the rest.
    let (journal, mut recovered, metrics) = open();
    let keys = recovered
        .live
        .keys()
        .filter(|key| key.space == space::INSPECT)
        .count();
    assert_eq!(
        keys, 5,
        "the keys of evicted and stale records were deleted"
    );
    let supervisor = Supervisor::new(metrics.clone());
    let inspector = Inspector::open(
        &config,
        Some((&journal, &mut recovered, &[])),
        &metrics,
        &supervisor,
    );
    let store = inspector.store().expect("on");
    for (n, id) in stale.iter().chain(&ids).enumerate() {
        let kept = store.get(parse_id(id).expect("uuid")).is_some();
        assert_eq!(kept, n >= 3 + 15, "event {n}");
    }
    let record = store
        .get(parse_id(&ids[19]).expect("uuid"))
        .expect("newest");
    assert_eq!(record.outcome(), "delivered");
    assert_eq!(record.destinations[0].attempts.len(), 1);
    journal.close().await.expect("close");
}
