//! Dead letters at scale through the admin API: a bulk replay filtered by destination (memory
//! and journal backends), paging with a cursor, the reason and time filters, a bulk discard,
//! and `GET /routes` (no secret, the right counts).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use webhook_router_tests::signing::{sign, unix_now};
use webhook_router_tests::sink::Reply;
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::wasm::module;
use webhook_router_tests::{Sink, TestRouter};

use crate::{PATIENCE, destination, route};

const TOKEN: &str = "dead-letter-admin";

/// A sink that refuses each body the first time (400: dead-lettered at once) and takes it
/// after that: a replayed letter is delivered.
async fn refuses_first_time() -> Sink {
    Sink::start_per_body(|_, attempt| {
        if attempt == 1 {
            Reply::status(400)
        } else {
            Reply::ok()
        }
    })
    .await
}

/// Posts `count` events `{"n":<i>}` (i from `first`) to `path`, 32 at a time; each must be 202.
async fn post_events(router: &TestRouter, path: &str, first: usize, count: usize) {
    futures_util::stream::iter(first..first + count)
        .map(|n| async move {
            let answer = router.post_json(path, &format!("{{\"n\":{n}}}")).await;
            assert_eq!(answer.status(), 202, "event {n}");
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// `GET /dead-letters?query` with the token: the page and the next cursor.
async fn page(router: &TestRouter, query: &str) -> (Vec<serde_json::Value>, Option<String>) {
    let answer = router
        .client
        .get(router.admin_url(&format!("/dead-letters?{query}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin answers");
    assert_eq!(answer.status(), 200, "GET /dead-letters?{query}");
    let next = answer
        .headers()
        .get("x-next-cursor")
        .map(|v| v.to_str().expect("ascii cursor").to_owned());
    let letters = answer.json::<Vec<serde_json::Value>>().await.expect("JSON");
    (letters, next)
}

/// Every letter `query` matches, following the cursor `limit` at a time; asserts no letter
/// comes twice.
async fn all_pages(router: &TestRouter, query: &str, limit: usize) -> Vec<serde_json::Value> {
    let mut letters = Vec::new();
    let mut seen = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let (found, next) = page(router, &format!("{query}&limit={limit}{cursor}")).await;
        assert!(found.len() <= limit);
        for letter in found {
            let id = letter["id"].as_str().expect("id").to_owned();
            assert!(seen.insert(id.clone()), "letter {id} listed twice");
            letters.push(letter);
        }
        match next {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return letters,
        }
    }
}

/// Sends a bulk request (`POST /dead-letters/replay` or `DELETE /dead-letters`) with the token.
async fn bulk(
    router: &TestRouter,
    method: reqwest::Method,
    path_and_query: &str,
) -> (u16, serde_json::Value) {
    let answer = router
        .client
        .request(method, router.admin_url(path_and_query))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("JSON answer"))
}

/// Waits until the router holds `count` dead letters.
async fn wait_for_letters(router: &TestRouter, count: usize) {
    router
        .wait_for_metric("webhook_dead_letters", count as f64, PATIENCE)
        .await;
}

/// The acceptance: 500 dead letters for destination `a` (and 500 for `b`, from the same
/// events), a bulk replay filtered by destination `a` queues exactly those 500, and each is
/// delivered to `a`; `b`'s letters stay, and `b` receives nothing more. Returns the router and
/// its config, holding `b`'s 500 letters.
async fn bulk_replay_of_500_by_destination(queue: &str) -> (TestRouter, String) {
    const EVENTS: usize = 500;
    let (a, b) = (refuses_first_time().await, refuses_first_time().await);
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
         {queue}{}{}{}",
        destination("a", &a.url("/in"), 3),
        destination("b", &b.url("/in"), 3),
        route("both", "/hooks/both", &["a", "b"]),
    );
    let router = TestRouter::start(&config).await;
    post_events(&router, "/hooks/both", 0, EVENTS).await;
    wait_for_letters(&router, 2 * EVENTS).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(a.requests().len(), EVENTS);
    assert_eq!(b.requests().len(), EVENTS);

    // Paged 64 at a time, each of the 1000 comes exactly once.
    let listed = all_pages(&router, "", 64).await;
    assert_eq!(listed.len(), 2 * EVENTS);
    let for_a = all_pages(&router, "destination=a", 37).await;
    assert_eq!(for_a.len(), EVENTS);
    assert!(for_a.iter().all(|l| l["destination"] == "a"));

    let started = std::time::Instant::now();
    let (status, counts) = bulk(
        &router,
        reqwest::Method::POST,
        "/dead-letters/replay?destination=a",
    )
    .await;
    let replay_took = started.elapsed();
    assert_eq!(status, 202, "{counts}");
    assert_eq!(counts["matched"], EVENTS, "{counts}");
    assert_eq!(counts["queued"], EVENTS, "{counts}");
    assert_eq!(counts["not_queued"], 0, "{counts}");
    assert_eq!(counts["not_replayable"], 0, "{counts}");

    a.wait_for_delivered(EVENTS, PATIENCE).await;
    // Idle: every delivery is final, nothing more reaches `a` or `b`.
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        a.delivered().len(),
        EVENTS,
        "each replayed letter delivered once"
    );
    let bodies: BTreeSet<_> = a.delivered().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies.len(), EVENTS, "every event, none twice");
    assert_eq!(b.requests().len(), EVENTS, "b's letters were not replayed");
    let left = all_pages(&router, "", 1000).await;
    assert_eq!(left.len(), EVENTS);
    assert!(left.iter().all(|l| l["destination"] == "b"));
    eprintln!("bulk replay of {EVENTS} letters ({queue:?}) answered in {replay_took:?}");
    (router, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_by_destination_queues_exactly_those_on_the_memory_queue() {
    bulk_replay_of_500_by_destination("").await;
}

/// Listed after a restart: `b`'s 500 letters, none of the replayed ones.
async fn letters_after_restart(router: TestRouter, config: &str) -> Vec<serde_json::Value> {
    router.router.shutdown().await;
    let router = TestRouter::start(config).await;
    all_pages(&router, "", 1000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_by_destination_queues_exactly_those_on_the_journal() {
    let dir = tempfile_dir("e2e-dead-letters-journal");
    let (router, config) = bulk_replay_of_500_by_destination(&format!(
        "[queue]\npath = \"{}\"\nfsync = \"always\"\n",
        dir.display()
    ))
    .await;
    // The replayed letters' removal is journaled too: a restart brings back only `b`'s.
    let left = letters_after_restart(router, &config).await;
    assert_eq!(left.len(), 500);
    assert!(left.iter().all(|l| l["destination"] == "b"));
}

/// A fresh directory under the test target dir.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reason_and_time_filters_select_and_delete_discards_exactly_the_matching() {
    // `bad` answers 400 (http_400), `down` 503 (http_503, after its one attempt), and nothing
    // listens at `gone` (connect).
    let bad = Sink::start(|_| Reply::status(400)).await;
    let down = Sink::start(|_| Reply::status(503)).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone_url = format!("http://{}/in", closed.local_addr().expect("addr"));
    drop(closed);
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n{}{}{}{}{}{}",
        destination("bad", &bad.url("/in"), 1),
        destination("down", &down.url("/in"), 1),
        destination("gone", &gone_url, 1),
        route("to-bad", "/hooks/bad", &["bad"]),
        route("to-down", "/hooks/down", &["down"]),
        route("to-gone", "/hooks/gone", &["gone"]),
    );
    let router = TestRouter::start(&config).await;

    // First batch: 7 refused, 5 failing with 503.
    post_events(&router, "/hooks/bad", 0, 7).await;
    post_events(&router, "/hooks/down", 100, 5).await;
    wait_for_letters(&router, 12).await;
    let first = all_pages(&router, "", 1000).await;
    let boundary = first
        .iter()
        .map(|l| l["failed_at_ms"].as_u64().expect("failed_at_ms"))
        .max()
        .expect("letters")
        + 1;
    // Every letter of the second batch fails at `boundary` or later.
    while unix_ms() < boundary {
        tokio::task::yield_now().await;
    }
    // Second batch: 4 refused, 3 unreachable.
    post_events(&router, "/hooks/bad", 200, 4).await;
    post_events(&router, "/hooks/gone", 300, 3).await;
    wait_for_letters(&router, 19).await;

    let count = |query: &'static str| {
        let router = &router;
        async move { all_pages(router, query, 5).await }
    };
    let reasons = |letters: &[serde_json::Value]| {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for letter in letters {
            *by.entry(letter["reason"].as_str().expect("reason").to_owned())
                .or_default() += 1;
        }
        by
    };
    assert_eq!(count("reason=http_400").await.len(), 11);
    assert_eq!(count("reason=http_503").await.len(), 5);
    assert_eq!(count("reason=http_5xx").await.len(), 5);
    assert_eq!(count("reason=http").await.len(), 16);
    assert_eq!(count("reason=connect").await.len(), 3);
    let before = all_pages(&router, &format!("until={boundary}"), 5).await;
    assert_eq!(
        reasons(&before),
        BTreeMap::from([("http_400".to_owned(), 7), ("http_503".to_owned(), 5)])
    );
    let after = all_pages(&router, &format!("since={boundary}"), 5).await;
    assert_eq!(
        reasons(&after),
        BTreeMap::from([("http_400".to_owned(), 4), ("connect".to_owned(), 3)])
    );
    let since = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(boundary));
    let after_rfc3339 = all_pages(&router, &format!("since={since}&route=to-bad"), 5).await;
    assert_eq!(after_rfc3339.len(), 4);

    // Bad filters are refused, naming the key; a bulk request without a filter too.
    for (method, query) in [
        (reqwest::Method::GET, "/dead-letters?reason=slow"),
        (reqwest::Method::GET, "/dead-letters?since=yesterday"),
        (reqwest::Method::GET, "/dead-letters?colour=red"),
        (reqwest::Method::GET, "/dead-letters?limit=0"),
        (reqwest::Method::DELETE, "/dead-letters"),
        (reqwest::Method::POST, "/dead-letters/replay"),
    ] {
        let (status, answer) = bulk(&router, method, query).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }

    // DELETE the refused letters of the first batch: exactly those 7 go.
    let (status, answer) = bulk(
        &router,
        reqwest::Method::DELETE,
        &format!("/dead-letters?reason=http_400&until={boundary}"),
    )
    .await;
    assert_eq!((status, &answer["discarded"]), (200, &7.into()), "{answer}");
    wait_for_letters(&router, 12).await;
    let left = all_pages(&router, "", 1000).await;
    assert_eq!(
        reasons(&left),
        BTreeMap::from([
            ("http_400".to_owned(), 4),
            ("http_503".to_owned(), 5),
            ("connect".to_owned(), 3)
        ])
    );
    let first_ids: BTreeSet<_> = first.iter().map(|l| l["id"].to_string()).collect();
    assert!(
        left.iter()
            .all(|l| l["reason"] != "http_400" || !first_ids.contains(&l["id"].to_string())),
        "only the first batch's refused letters went"
    );

    // One letter by id: shown, discarded; then everything with all=true.
    let id = left[0]["id"].as_str().expect("id");
    let (status, shown) = bulk(
        &router,
        reqwest::Method::GET,
        &format!("/dead-letters/{id}"),
    )
    .await;
    assert_eq!((status, &shown), (200, &left[0]));
    let (status, answer) = bulk(
        &router,
        reqwest::Method::DELETE,
        &format!("/dead-letters/{id}"),
    )
    .await;
    assert_eq!((status, &answer["discarded"]), (200, &1.into()), "{answer}");
    let (status, _) = bulk(
        &router,
        reqwest::Method::DELETE,
        &format!("/dead-letters/{id}"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, answer) = bulk(&router, reqwest::Method::DELETE, "/dead-letters?all=true").await;
    assert_eq!(
        (status, &answer["discarded"]),
        (200, &11.into()),
        "{answer}"
    );
    wait_for_letters(&router, 0).await;
    assert!(page(&router, "").await.0.is_empty());
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_show_config_and_counts_but_never_a_secret() {
    const SECRET: &str = "gh-secret-that-must-not-leak-7f3a";
    let sink = Sink::healthy().await;
    let refusing = Sink::start(|_| Reply::status(400)).await;
    let plugin = module("route_by_field");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n{}{}{}\
         verify = {{ preset = \"github\", secrets = [\"{SECRET}\"] }}\n{}fan_out = [\"refusing\"]\n\
         [[routes.plugins]]\nmodule = \"{}\"\nlimits = {{ memory = \"8MiB\", time = \"20ms\" }}\n\
         config = {{ field = {{ header = \"x-kind\" }}, routes = {{ refuse = [\"refusing\"] }}, default = \"sink\" }}\n",
        destination("sink", &sink.url("/in"), 3),
        destination("refusing", &refusing.url("/in"), 1),
        route("signed", "/hooks/signed", &["sink"]),
        route("open", "/hooks/open", &["sink"]),
        plugin.display(),
    );
    let router = TestRouter::start(&config).await;

    // `signed`: 3 genuine, 2 forged. `open`: 2 delivered, 1 dead-lettered at `refusing`.
    for n in 0..5 {
        let body = format!("{{\"n\":{n}}}");
        let secret = if n < 3 { SECRET } else { "wrong" };
        let mut request = router
            .client
            .post(router.url("/hooks/signed"))
            .header("x-github-delivery", format!("delivery-{n}"))
            .body(body.clone());
        for (name, value) in sign("github", secret, body.as_bytes(), unix_now()) {
            request = request.header(name, value);
        }
        let status = request.send().await.expect("router answers").status();
        assert_eq!(status, if n < 3 { 202 } else { 401 }, "request {n}");
    }
    for kind in ["plain", "plain", "refuse"] {
        let answer = router
            .client
            .post(router.url("/hooks/open"))
            .header("x-kind", kind)
            .body("{}")
            .send()
            .await
            .expect("router answers");
        assert_eq!(answer.status(), 202);
    }
    sink.wait_for_delivered(5, PATIENCE).await;
    wait_for_letters(&router, 1).await;
    router.wait_idle(PATIENCE).await;

    let unauthorised = router
        .client
        .get(router.admin_url("/routes"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(unauthorised.status(), 401);
    let get = |path: &'static str| {
        let router = &router;
        async move {
            let answer = router
                .client
                .get(router.admin_url(path))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("admin answers");
            (answer.status().as_u16(), answer.text().await.expect("body"))
        }
    };
    let (status, body) = get("/routes").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(SECRET), "the secret leaked:\n{body}");
    assert!(
        !body.contains(&SECRET[..12]),
        "part of the secret leaked:\n{body}"
    );
    let routes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(routes.as_array().map(Vec::len), Some(2), "{body}");

    let (status, body) = get("/routes/signed").await;
    assert_eq!(status, 200);
    assert!(!body.contains(SECRET));
    let signed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let fingerprint = hex::encode(&Sha256::digest(SECRET.as_bytes())[..4]);
    assert_eq!(signed["path"], "/hooks/signed");
    assert_eq!(signed["verify"]["preset"], "github");
    assert_eq!(
        signed["verify"]["secret_fingerprints"],
        serde_json::json!([fingerprint])
    );
    assert_eq!(signed["destinations"], serde_json::json!(["sink"]));
    assert_eq!(signed["counts"]["accepted"], 3, "{body}");
    assert_eq!(
        signed["counts"]["requests"],
        serde_json::json!({ "202": 3, "401": 2 }),
        "{body}"
    );
    assert_eq!(
        signed["counts"]["deliveries"]["sink"],
        serde_json::json!({ "delivered": 3, "retry": 0, "dead_letter": 0 }),
        "{body}"
    );

    let (_, body) = get("/routes/open").await;
    let open: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(open["verify"], serde_json::Value::Null);
    let loaded = &open["plugins"][0];
    let module_hash = hex::encode(Sha256::digest(std::fs::read(&plugin).expect("module")));
    assert_eq!(loaded["module"], plugin.display().to_string());
    assert_eq!(loaded["sha256"], module_hash.as_str());
    assert_eq!(loaded["limits"]["memory_bytes"], 8 * 1024 * 1024);
    assert_eq!(loaded["limits"]["time_ms"], 20);
    assert_eq!(open["counts"]["accepted"], 3, "{body}");
    assert_eq!(
        open["counts"]["deliveries"]["sink"]["delivered"], 2,
        "{body}"
    );
    assert_eq!(
        open["counts"]["deliveries"]["refusing"]["dead_letter"], 1,
        "{body}"
    );

    let (status, _) = get("/routes/nope").await;
    assert_eq!(status, 404);
    wait_until(
        "the dead letter listed",
        PATIENCE,
        || page(&router, "route=open&reason=http_400"),
        |(letters, _)| letters.len() == 1,
    )
    .await;
}
