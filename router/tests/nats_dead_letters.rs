//! Dead letters at scale on NATS JetStream (`backend = "nats"`), with a real `nats-server` and
//! two router processes: letters made by one router are listed, replayed in bulk by
//! destination and discarded in bulk through the other, with the `dead-letters` CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use webhook_router_tests::nats::NatsServer;
use webhook_router_tests::numbered::{self, PATIENCE, accepted, number, post_all, wait_idle};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, RouterProcess, Sink};

/// Writes router `n`'s config: `/hooks` to destinations `a` and `b` over the NATS at `url`.
fn write_config(dir: &Path, n: usize, url: &str, a: &Sink, b: &Sink) -> PathBuf {
    let destination = |name: &str, sink: &Sink| {
        format!(
            "[destinations.{name}]\nurl = \"{}\"\ntimeout = \"10s\"\n\
             retry = {{ max_attempts = 3, initial_backoff = \"50ms\", max_backoff = \"200ms\" }}\n",
            sink.url("/in")
        )
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_body_bytes = \"256KiB\"\nshutdown_grace = \"2s\"\n\
         [queue]\nbackend = \"nats\"\nurl = \"{url}\"\nack_wait = \"2s\"\nmax_bytes = \"256MiB\"\n\
         {}{}[[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"a\", \"b\"]\n",
        destination("a", a),
        destination("b", b),
    );
    let path = dir.join(format!("router{n}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn start(config: &Path) -> RouterProcess {
    RouterProcess::start(Path::new(env!("CARGO_BIN_EXE_webhook-router")), config)
}

/// Runs `webhook-router dead-letters ARGS --admin http://admin`; its JSON output.
fn cli(admin: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .arg("dead-letters")
        .args(args)
        .args(["--admin", &format!("http://{admin}")])
        .output()
        .expect("run the CLI");
    assert!(
        output.status.success(),
        "dead-letters {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

/// The letters router `admin` lists, by destination.
async fn letters_by_destination(admin: &str) -> BTreeMap<String, usize> {
    let admin = admin.to_owned();
    let letters = tokio::task::spawn_blocking(move || cli(&admin, &["list"]))
        .await
        .expect("CLI task");
    let mut by = BTreeMap::new();
    for letter in letters.as_array().expect("a list") {
        *by.entry(
            letter["destination"]
                .as_str()
                .expect("destination")
                .to_owned(),
        )
        .or_default() += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_one_router_made_are_replayed_by_destination_through_the_other() {
    const EVENTS: u64 = 100;
    let dir = numbered::fresh_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "nats", "bulk-dead");
    let nats = NatsServer::start(&dir.join("nats"));
    // `a` refuses each body once (400: dead-lettered at once) and takes it after; `b` refuses.
    let a = Sink::start_per_body(|_, attempt| {
        if attempt == 1 {
            Reply::status(400)
        } else {
            Reply::ok()
        }
    })
    .await;
    let b = Sink::start(|_| Reply::status(400)).await;

    // Only router 1 runs while the letters are made.
    let one = start(&write_config(&dir, 1, &nats.url(), &a, &b));
    let answers = post_all(std::slice::from_ref(&one.ingress), 0..EVENTS, 16).await;
    let wanted = accepted(&answers);
    assert_eq!(wanted.len() as u64, EVENTS);
    let expected = BTreeMap::from([("a".to_owned(), 100), ("b".to_owned(), 100)]);
    wait_until(
        "router 1 to hold 100 letters for a and 100 for b",
        PATIENCE,
        || letters_by_destination(&one.admin),
        |by| *by == expected,
    )
    .await;
    wait_idle(&one.admin).await;

    // Router 2 starts after: it made none of them, and lists them all.
    let two = start(&write_config(&dir, 2, &nats.url(), &a, &b));
    wait_until(
        "router 2 to list every letter",
        PATIENCE,
        || letters_by_destination(&two.admin),
        |by| *by == expected,
    )
    .await;
    // A page through router 2: 30 of them, and where the next starts.
    let page = numbered::client()
        .get(format!(
            "http://{}/dead-letters?destination=a&limit=30",
            two.admin
        ))
        .send()
        .await
        .expect("admin answers");
    assert!(page.headers().contains_key("x-next-cursor"));
    let page: Vec<serde_json::Value> = page.json().await.expect("JSON");
    assert_eq!(page.len(), 30);

    let admin = two.admin.clone();
    let counts =
        tokio::task::spawn_blocking(move || cli(&admin, &["replay", "--destination", "a"]))
            .await
            .expect("CLI task");
    assert_eq!(counts["matched"], EVENTS, "{counts}");
    assert_eq!(counts["queued"], EVENTS, "{counts}");
    assert_eq!(counts["not_queued"], 0, "{counts}");

    // Each is delivered to `a` (by either router: they share the stream), none twice.
    let delivered = a.wait_for_delivered(EVENTS as usize, PATIENCE).await;
    assert_eq!(delivered.len() as u64, EVENTS);
    for router in [&one, &two] {
        wait_idle(&router.admin).await;
    }
    let mut numbers: Vec<u64> = a.delivered().iter().map(number).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, wanted.iter().copied().collect::<Vec<_>>());
    assert_eq!(b.requests().len() as u64, EVENTS, "b's letters stayed put");

    // Gone from both routers; b's remain on both, then a bulk discard through router 1 clears
    // them everywhere.
    let only_b = BTreeMap::from([("b".to_owned(), 100)]);
    for router in [&one, &two] {
        wait_until(
            "only b's letters left",
            PATIENCE,
            || letters_by_destination(&router.admin),
            |by| *by == only_b,
        )
        .await;
    }
    let admin = one.admin.clone();
    let discarded = tokio::task::spawn_blocking(move || {
        cli(
            &admin,
            &["discard", "--destination", "b", "--reason", "http_400"],
        )
    })
    .await
    .expect("CLI task");
    assert_eq!(discarded["discarded"], EVENTS, "{discarded}");
    wait_until(
        "router 2 to list no letter",
        PATIENCE,
        || letters_by_destination(&two.admin),
        BTreeMap::is_empty,
    )
    .await;
    drop(nats);
}
