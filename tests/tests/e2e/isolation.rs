//! Isolation: a destination that stops answering fills its own `max_held` share of the queue,
//! and only the routes that deliver to it answer 503.

use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, route};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_destination_refuses_only_its_own_routes() {
    let stuck = Sink::start(|_| Reply::hang()).await;
    let healthy = Sink::healthy().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nqueue_capacity = 100\n\
         shutdown_grace = \"100ms\"\n\
         [destinations.stuck]\nurl = \"{}\"\ntimeout = \"1h\"\nmax_in_flight = 4\nmax_held = 20\n\
         [destinations.healthy]\nurl = \"{}\"\n{}{}",
        stuck.url("/in"),
        healthy.url("/in"),
        route("billing", "/hooks/billing", &["stuck"]),
        route("github", "/hooks/github", &["healthy"]),
    );
    let router = TestRouter::start(&config).await;
    let mut refused = None;
    let mut accepted = 0;
    for n in 0..30 {
        let answer = router
            .post_json("/hooks/billing", &format!("{{\"n\":{n}}}"))
            .await;
        if answer.status() == 202 {
            accepted += 1;
        } else if refused.is_none() {
            refused = Some(answer);
        }
    }
    assert_eq!(
        accepted, 20,
        "max_held = 20 events for the stuck destination"
    );
    let refused = refused.expect("the 21st is refused");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let reason = refused.text().await.expect("text");
    assert!(
        reason.contains("stuck") && reason.contains("holds its max_held events"),
        "{reason}"
    );
    router
        .wait_for_metric(
            "webhook_destination_held{destination=\"stuck\"}",
            20.0,
            PATIENCE,
        )
        .await;

    // The other route still has the rest of queue_capacity (100 - 20).
    for n in 0..60 {
        let answer = router
            .post_json("/hooks/github", &format!("{{\"n\":{n}}}"))
            .await;
        assert_eq!(answer.status(), 202, "event {n} of the healthy route");
    }
    assert_eq!(healthy.wait_for_delivered(60, PATIENCE).await.len(), 60);
    router
        .wait_for_metric(
            "webhook_destination_held{destination=\"healthy\"}",
            0.0,
            PATIENCE,
        )
        .await;
    let report = router.router.shutdown().await;
    assert_eq!(
        report.still_queued, 20,
        "the stuck destination's events, each counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_opens_its_circuit_and_gets_only_probes_until_it_recovers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let up = Arc::new(AtomicBool::new(false));
    let sink_up = Arc::clone(&up);
    let sink = Sink::start(move |_| {
        if sink_up.load(Ordering::Acquire) {
            Reply::ok()
        } else {
            Reply::status(503)
        }
    })
    .await;
    let config = format!(
        "[destinations.flaky]\nurl = \"{}\"\nmax_in_flight = 4\n\
         retry = {{ max_attempts = 100, initial_backoff = \"10ms\", max_backoff = \"50ms\", jitter = \"none\" }}\n\
         circuit = {{ failures = 5, window = \"10s\", open_for = \"300ms\", max_open_for = \"300ms\" }}\n{}",
        sink.url("/in"),
        route("flaky", "/hooks/flaky", &["flaky"]),
    );
    let router = TestRouter::start(&config).await;
    for n in 0..50 {
        let answer = router
            .post_json("/hooks/flaky", &format!("{{\"n\":{n}}}"))
            .await;
        assert_eq!(answer.status(), 202);
    }
    let state = "webhook_destination_circuit_state{destination=\"flaky\"}";
    router.wait_for_metric(state, 2.0, PATIENCE).await;
    // Open: what arrives now are probes, one per open_for (300 ms), not 50 events' retries
    // every 10-50 ms.
    let opened = std::time::Instant::now();
    let before = sink.requests().len();
    assert_eq!(
        sink.wait_for(before + 3, PATIENCE, |_| true).await.len(),
        before + 3
    );
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(600),
        "3 probes in {elapsed:?}: the circuit let more than probes through"
    );
    assert_eq!(sink.requests().len(), before + 3, "nothing but the probes");
    let board = router.admin_json("/destinations").await;
    assert!(
        matches!(board[0]["circuit"].as_str(), Some("open" | "half-open")),
        "{board}"
    );
    assert_eq!(board[0]["held"], 50, "{board}");
    assert!(
        board[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{board}"
    );

    // Back up: the next probe closes the circuit and every event is delivered.
    up.store(true, Ordering::Release);
    assert_eq!(sink.wait_for_delivered(50, PATIENCE).await.len(), 50);
    router.wait_for_metric(state, 0.0, PATIENCE).await;
    router
        .wait_for_metric("webhook_queue_depth", 0.0, PATIENCE)
        .await;
    let board = router.admin_json("/destinations").await;
    assert_eq!(board[0]["circuit"], "closed", "{board}");
    assert_eq!(board[0]["held"], 0, "{board}");
    assert_eq!(board[0]["in_flight"], 0, "{board}");
    assert!(board[0]["last_success_at_ms"].is_u64(), "{board}");
    let attempts = sink.requests().len();
    assert!(
        attempts < 50 + before + 20,
        "{attempts} attempts in all for 50 events"
    );
}
