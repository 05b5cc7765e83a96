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
