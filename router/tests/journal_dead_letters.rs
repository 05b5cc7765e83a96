//! A bulk replay on the journal, tested by crashing: the router process is killed (SIGKILL)
//! while 500 replayed letters are being delivered, and started again on the same directory;
//! every letter is then delivered or still a dead letter, none lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use webhook_router_tests::numbered::{self, PATIENCE, client, metric, post_accepted, wait_idle};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, RouterProcess, Sink};

fn start(config: &Path) -> RouterProcess {
    RouterProcess::start(Path::new(env!("CARGO_BIN_EXE_webhook-router")), config)
}

/// Writes a config journaling under `dir/data` that routes `/hooks` to `sink`.
fn write_config(dir: &Path, sink: &Sink) -> PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [queue]\npath = \"data\"\nfsync = \"always\"\n\
         [destinations.sink]\nurl = \"{}\"\ntimeout = \"1h\"\nmax_in_flight = 4\n\
         retry = {{ max_attempts = 3, initial_backoff = \"20ms\", jitter = \"none\" }}\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\n",
        sink.url("/in"),
    );
    let path = dir.join("router.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The event ids of every dead letter `admin` lists (all pages).
async fn letter_event_ids(admin: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let answer = client()
            .get(format!("http://{admin}/dead-letters?limit=200{cursor}"))
            .send()
            .await
            .expect("admin answers");
        let next = answer
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let page: Vec<serde_json::Value> = answer.json().await.expect("JSON");
        ids.extend(
            page.iter()
                .map(|l| l["event_id"].as_str().expect("event_id").to_owned()),
        );
        match next {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return ids,
        }
    }
}

/// The event ids `sink` took (2xx), from the `webhook-id` header.
fn delivered_ids(sink: &Sink) -> BTreeSet<String> {
    sink.delivered()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().expect("ascii").to_owned())
        .collect()
}

/// Replays every letter through `admin`; the number queued.
async fn replay_all(admin: &str) -> u64 {
    let answer = client()
        .post(format!("http://{admin}/dead-letters/replay?all=true"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(answer.status(), 202);
    let counts: serde_json::Value = answer.json().await.expect("JSON");
    counts["queued"].as_u64().expect("queued")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_killed_during_a_bulk_replay_loses_no_letter() {
    const EVENTS: u64 = 500;
    let dir = numbered::fresh_dir(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "journal",
        "bulk-replay-kill",
    );
    // Refuses each body once (400: dead-lettered at once), then takes it, a little slowly.
    let sink = Sink::start_per_body(|_, attempt| {
        if attempt == 1 {
            Reply::status(400)
        } else {
            Reply {
                delay: Some(Duration::from_millis(10)),
                ..Reply::ok()
            }
        }
    })
    .await;
    let config = write_config(&dir, &sink);
    let router = start(&config);
    let accepted = post_accepted(&router.ingress, 0..EVENTS, 16).await;
    assert_eq!(accepted.len() as u64, EVENTS);
    wait_until(
        "500 dead letters",
        PATIENCE,
        || metric(&router.admin, "webhook_dead_letters"),
        |held| *held == Some(EVENTS as f64),
    )
    .await;
    let wanted: BTreeSet<String> = letter_event_ids(&router.admin).await.into_iter().collect();
    assert_eq!(wanted.len() as u64, EVENTS);

    // Replay them all; kill the router once 50 have been delivered again (of 500, 4 at a time,
    // 10 ms each: mid-way).
    assert_eq!(replay_all(&router.admin).await, EVENTS);
    sink.wait_for_delivered(50, PATIENCE).await;
    router.kill();
    let before_restart = delivered_ids(&sink).len();
    assert!((before_restart as u64) < EVENTS, "killed mid-way");

    // Started again: the replayed events are resumed from the journal and delivered.
    let router = start(&config);
    wait_idle(&router.admin).await;
    let left = letter_event_ids(&router.admin).await;
    let delivered = delivered_ids(&sink);
    let lost: Vec<_> = wanted
        .iter()
        .filter(|id| !delivered.contains(*id) && !left.contains(*id))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        left.iter().all(|id| wanted.contains(id)),
        "no unknown letter"
    );
    // Whatever is still a letter (its removal not yet written at the kill) replays fine.
    let queued = replay_all(&router.admin).await;
    assert_eq!(queued, left.len() as u64);
    sink.wait_for_delivered(EVENTS as usize, PATIENCE).await;
    wait_idle(&router.admin).await;
    assert_eq!(delivered_ids(&sink), wanted, "every letter delivered");
    eprintln!(
        "killed after {before_restart} of {EVENTS} replayed letters were delivered; \
         {} still letters after the restart",
        left.len()
    );
}
