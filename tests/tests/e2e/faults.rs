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
