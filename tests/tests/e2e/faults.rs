//! Hostile values and faults: whatever a destination answers or a config holds, no event
//! vanishes and the router says what it holds.

use std::time::Duration;

use webhook_router::config::HumanDuration;
use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, destination, route};

/// Five years: more than the retry scheduler's timer wheel can hold (about two).
const FIVE_YEARS: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

#[tokio::test]
async fn a_huge_retry_after_neither_kills_the_scheduler_nor_loses_an_event() {
    // Asks for a wait of three years, which `max_backoff = "5y"` would allow.
    let huge = Sink::start(|_| Reply::status(503).header("retry-after", "99999999")).await;
    // Fails the first 20 requests (one per event), then accepts.
    let flaky = Sink::start(|n| {
        if n <= 20 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let config = format!(
        "{}{}{}{}",
        destination("huge", &huge.url("/in"), 3),
        destination("flaky", &flaky.url("/in"), 3),
        route("huge", "/hooks/huge", &["huge"]),
        route("flaky", "/hooks/flaky", &["flaky"]),
    );
    // `check` refuses "5y" in a file; a config built in code must not crash the router either.
    let router = TestRouter::start_with(&config, |config| {
        for destination in config.destinations.values_mut() {
            destination.retry.max_backoff = HumanDuration(FIVE_YEARS);
        }
    })
    .await;

    for n in 0..20 {
        let body = format!("{{\"n\":{n}}}");
        assert_eq!(router.post_json("/hooks/huge", &body).await.status(), 202);
    }
    assert_eq!(huge.wait_for(20, PATIENCE, |_| true).await.len(), 20);
    let huge_retries =
        "webhook_deliveries_total{route=\"huge\",destination=\"huge\",outcome=\"retry\"}";
    router.wait_for_metric(huge_retries, 20.0, PATIENCE).await;

    // The scheduler still times retries: every flaky event fails once and is then delivered.
    for n in 0..20 {
        let body = format!("{{\"n\":{n}}}");
        assert_eq!(router.post_json("/hooks/flaky", &body).await.status(), 202);
    }
    assert_eq!(flaky.wait_for_delivered(20, PATIENCE).await.len(), 20);
    // Only the 20 events told to wait years are still held: none vanished.
    router
        .wait_for_metric("webhook_queue_depth", 20.0, PATIENCE)
        .await;
    assert_eq!(router.metric("webhook_dead_letters").await, Some(0.0));
    let scheduler_panics = "webhook_task_panics_total{task=\"retry_scheduler\"}";
    assert_eq!(router.metric(scheduler_panics).await, Some(0.0));
    let health = router
        .client
        .get(router.admin_url("/healthz"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(health.status(), 200);

    let report = router.router.shutdown().await;
    assert_eq!(report.still_queued, 20, "the waiting events are counted");
}

#[tokio::test]
async fn a_huge_retry_after_is_capped_by_max_backoff_and_every_event_is_delivered_or_dead_lettered()
{
    // Each event's first attempt is answered with a wait of three years; `max_backoff` (200 ms
    // here) caps it, so the second attempt comes soon: events 0–14 are delivered then, and
    // events 15–19, told to wait again and out of attempts, are dead-lettered.
    let sink = Sink::start_per_body(|body, attempt| {
        let late = (15..20).any(|n| body == format!("{{\"n\":{n}}}").as_bytes());
        if attempt == 1 || late {
            Reply::status(503).header("retry-after", "99999999")
        } else {
            Reply::ok()
        }
    })
    .await;
    // (Twenty failures in a row would open the destination's circuit; this test is about the
    // retry wait alone.)
    let config = format!(
        "{}circuit = {{ failures = 1000 }}\n{}",
        destination("capped", &sink.url("/in"), 2)
            .replace("max_backoff = \"5s\"", "max_backoff = \"200ms\""),
        route("capped", "/hooks/capped", &["capped"]),
    );
    let router = TestRouter::start(&config).await;
    for n in 0..20 {
        let body = format!("{{\"n\":{n}}}");
        assert_eq!(router.post_json("/hooks/capped", &body).await.status(), 202);
    }
    // 20 first attempts fail; 15 of the retries succeed, 5 fail for good.
    let delivered = sink.wait_for_delivered(15, PATIENCE).await;
    assert_eq!(delivered.len(), 15);
    router
        .wait_for_metric("webhook_dead_letters", 5.0, PATIENCE)
        .await;
    router
        .wait_for_metric("webhook_queue_depth", 0.0, PATIENCE)
        .await;
    let report = router.router.shutdown().await;
    assert_eq!(
        report.still_queued, 0,
        "every event delivered or dead-lettered"
    );
}

/// GETs `path` on the admin listener: its status and body.
async fn admin_get(router: &TestRouter, path: &str) -> (u16, String) {
    let response = router
        .client
        .get(router.admin_url(path))
        .send()
        .await
        .expect("admin answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("admin body"))
}

#[tokio::test]
async fn a_task_that_keeps_panicking_makes_healthz_unhealthy_and_loses_no_event() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}",
        destination("sink", &sink.url("/in"), 8),
        route("faulty", "/hooks/faulty", &["sink"]),
    );
    // Test-only fault: a lane worker panics on every attempt of an event with this marker.
    let router = TestRouter::start_with(&config, |config| {
        config.test_faults.panic_on_body = Some("panic-here".to_owned());
    })
    .await;
    let panics = "webhook_task_panics_total{task=\"lane_worker\"}";
    assert_eq!(router.metric(panics).await, Some(0.0));
    assert_eq!(admin_get(&router, "/healthz").await.0, 200);

    assert_eq!(
        router
            .post_json("/hooks/faulty", "{\"n\":1}")
            .await
            .status(),
        202
    );
    assert_eq!(sink.wait_for_delivered(1, PATIENCE).await.len(), 1);

    // Each of its 8 attempts panics; each time the worker is started again and the delivery
    // put back, until it has no attempts left and is dead-lettered: never lost.
    let marked = "{\"fault\":\"panic-here\"}";
    assert_eq!(
        router.post_json("/hooks/faulty", marked).await.status(),
        202
    );
    router.wait_for_metric(panics, 8.0, PATIENCE).await;
    router
        .wait_for_metric("webhook_dead_letters", 1.0, PATIENCE)
        .await;
    router
        .wait_for_metric("webhook_queue_depth", 0.0, PATIENCE)
        .await;
    let (_, letters) = admin_get(&router, "/dead-letters").await;
    let letters: serde_json::Value = serde_json::from_str(&letters).expect("json");
    assert_eq!(letters[0]["attempts"], 8, "{letters}");
    assert_eq!(
        letters[0]["last_error"], "the last attempt panicked (see the log)",
        "{letters}"
    );

    // A task that keeps panicking makes the router say so, for an orchestrator to restart it.
    let (status, body) = admin_get(&router, "/healthz").await;
    assert_eq!(status, 503);
    assert_eq!(body, "unhealthy: task lane_worker keeps failing\n");
    assert_eq!(admin_get(&router, "/readyz").await.0, 503);

    // The restarted workers still deliver.
    assert_eq!(
        router
            .post_json("/hooks/faulty", "{\"n\":2}")
            .await
            .status(),
        202
    );
    assert_eq!(sink.wait_for_delivered(2, PATIENCE).await.len(), 2);
    assert!(
        sink.requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("panic-here")),
        "the marked event never reached the sink"
    );
    assert_eq!(router.router.shutdown().await.still_queued, 0);
}
