//! Ordered delivery per key on the memory backend: a retrying event holds back the later events
//! of its key and no other key's; a dead letter releases its key (`on_dead_letter = "skip"`)
//! or holds it until the letter is replayed (delivered first) or discarded (`"hold"`).
//! The journal's order across a SIGKILL is tested in `router/tests/journal.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use webhook_router_tests::sink::Received;
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::PATIENCE;

/// The `(key, n)` a delivered body carries.
fn key_and_n(received: &Received) -> (String, u64) {
    let body: serde_json::Value = serde_json::from_slice(&received.body).expect("json body");
    (
        body["key"].as_str().expect("key").to_owned(),
        body["n"].as_u64().expect("n"),
    )
}

/// The `n`s of `key` the sink was sent (every attempt, answered 2xx or not), in arrival order.
fn sent(sink: &Sink, key: &str, delivered_only: bool) -> Vec<u64> {
    sink.requests()
        .iter()
        .filter(|r| !delivered_only || (200..300).contains(&r.status))
        .map(key_and_n)
        .filter(|(k, _)| k == key)
        .map(|(_, n)| n)
        .collect()
}

/// Posts events `0..count` of `key` to `path`, each once the one before was answered 202 (the
/// key as a body field and as the `x-key` header); their event ids.
async fn post_key(router: &TestRouter, path: &str, key: &str, count: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let answer = router
            .client
            .post(router.url(path))
            .header("content-type", "application/json")
            .header("x-key", key)
            .body(format!("{{\"key\":\"{key}\",\"n\":{n}}}"))
            .send()
            .await
            .expect("router answers");
        assert_eq!(answer.status(), 202, "{key} {n}");
        let answer: serde_json::Value = answer.json().await.expect("json answer");
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    ids
}

/// Waits until the sink has delivered `ns` of `key`, in that order (first deliveries).
async fn wait_delivered_in_order(sink: &Sink, key: &str, ns: &[u64]) {
    let delivered = wait_until(
        &format!("{key}: {ns:?} delivered"),
        PATIENCE,
        || async { sent(sink, key, true) },
        |delivered| delivered.len() >= ns.len(),
    )
    .await;
    assert_eq!(delivered, ns, "{key}: the order of acceptance");
}

/// The id of the dead letter of the event `event_id`, from the admin API.
async fn letter_of(router: &TestRouter, event_id: &str) -> String {
    let letters = router.admin_json("/dead-letters").await;
    letters
        .as_array()
        .expect("letters")
        .iter()
        .find(|letter| letter["event_id"] == event_id)
        .and_then(|letter| letter["id"].as_str())
        .unwrap_or_else(|| panic!("no letter of {event_id} in {letters}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_waits_for_its_own_retries_and_dead_letters_skip_or_hold_it() {
    // a0 fails until b's events are all delivered; s0, h0 and d0 are refused (dead-lettered at
    // once); h0 is taken when replayed.
    let release_a = Arc::new(AtomicBool::new(false));
    let release = Arc::clone(&release_a);
    let sink = Sink::start_per_body(move |body, attempt| {
        let body = std::str::from_utf8(body).expect("utf-8");
        let is = |key: &str, n: u64| body == format!("{{\"key\":\"{key}\",\"n\":{n}}}");
        if is("a", 0) && !release.load(Ordering::Acquire) {
            Reply::status(503)
        } else if is("s", 0) || is("d", 0) || (is("h", 0) && attempt == 1) {
            Reply::status(400)
        } else {
            Reply::ok()
        }
    })
    .await;
    let config = format!(
        "[destinations.sink]\nurl = \"{}\"\ntimeout = \"5s\"\nmax_in_flight = 8\n\
         retry = {{ max_attempts = 100, initial_backoff = \"10ms\", max_backoff = \"200ms\", jitter = \"none\" }}\n\
         [[routes]]\nid = \"skip\"\npath = \"/skip\"\ndestinations = [\"sink\"]\norder_by = \"/key\"\n\
         [[routes]]\nid = \"hold\"\npath = \"/hold\"\ndestinations = [\"sink\"]\n\
         order_by_header = \"x-key\"\non_dead_letter = \"hold\"\n",
        sink.url("/in")
    );
    let router = TestRouter::start(&config).await;
    let waiting = "webhook_ordered_keys_waiting{destination=\"sink\"}";
    assert_eq!(router.metric(waiting).await, Some(0.0));

    // A retrying event holds back its own key only.
    post_key(&router, "/skip", "a", 5).await;
    post_key(&router, "/skip", "b", 5).await;
    wait_delivered_in_order(&sink, "b", &[0, 1, 2, 3, 4]).await;
    assert!(
        sent(&sink, "a", false).iter().all(|&n| n == 0),
        "a1..a4 wait for a0: {:?}",
        sent(&sink, "a", false)
    );
    assert_eq!(router.metric(waiting).await, Some(1.0), "key a waits");
    release_a.store(true, Ordering::Release);
    wait_delivered_in_order(&sink, "a", &[0, 1, 2, 3, 4]).await;

    // Skip: s0's dead letter releases the key.
    post_key(&router, "/skip", "s", 3).await;
    wait_delivered_in_order(&sink, "s", &[1, 2]).await;
    assert_eq!(sent(&sink, "s", false), [0, 1, 2], "s0 once, refused");

    // Hold: h0's and d0's dead letters stop their keys.
    let h = post_key(&router, "/hold", "h", 3).await;
    let d = post_key(&router, "/hold", "d", 2).await;
    router.wait_for_metric(waiting, 2.0, PATIENCE).await;
    router
        .wait_for_metric("webhook_dead_letters", 3.0, PATIENCE)
        .await;
    assert_eq!(sent(&sink, "h", false), [0], "h1, h2 wait for h0's letter");
    assert_eq!(sent(&sink, "d", false), [0], "d1 waits for d0's letter");

    // Replayed, h0 goes first, then h1 and h2.
    let h0 = letter_of(&router, &h[0]).await;
    let replay = router
        .client
        .post(router.admin_url(&format!("/dead-letters/{h0}/replay")))
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 202);
    wait_delivered_in_order(&sink, "h", &[0, 1, 2]).await;

    // Discarded, d0's letter lets d1 go.
    let d0 = letter_of(&router, &d[0]).await;
    let discard = router
        .client
        .delete(router.admin_url(&format!("/dead-letters/{d0}")))
        .send()
        .await
        .expect("discard");
    assert_eq!(discard.status(), 200);
    wait_delivered_in_order(&sink, "d", &[1]).await;

    router.wait_idle(PATIENCE).await;
    assert_eq!(router.metric(waiting).await, Some(0.0));
    assert_eq!(
        sent(&sink, "d", false),
        [0, 1],
        "nothing more once the router is idle"
    );
}
