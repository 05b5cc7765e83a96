//! Graceful shutdown: in-flight deliveries finish within the grace period; what cannot is
//! counted.

use std::time::Duration;

use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, destination, route};

fn config(sink: &Sink, grace: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"{grace}\"\n{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("stop", "/hooks/stop", &["sink"])
    )
}

#[tokio::test]
async fn in_flight_delivery_finishes_within_the_grace_period() {
    let sink = Sink::start(|_| Reply {
        delay: Some(Duration::from_millis(300)),
        ..Reply::ok()
    })
    .await;
    let router = TestRouter::start(&config(&sink, "10s")).await;
    assert_eq!(router.post_json("/hooks/stop", "{}").await.status(), 202);
    // Wait until the delivery is in flight, then stop.
    assert_eq!(sink.wait_for(1, PATIENCE, |_| true).await.len(), 1);
    let ingress = router.router.ingress_addr();
    let report = router.router.shutdown().await;
    assert_eq!(report.still_queued, 0, "the in-flight delivery finished");
    assert!(
        tokio::net::TcpStream::connect(ingress).await.is_err(),
        "ingress stopped accepting"
    );
}

#[tokio::test]
async fn deliveries_past_the_grace_period_are_counted_as_still_queued() {
    let sink = Sink::start(|_| Reply::hang()).await;
    let router = TestRouter::start(&config(&sink, "200ms")).await;
    for _ in 0..3 {
        assert_eq!(router.post_json("/hooks/stop", "{}").await.status(), 202);
    }
    assert_eq!(sink.wait_for(3, PATIENCE, |_| true).await.len(), 3);
    let report = router.router.shutdown().await;
    assert_eq!(report.still_queued, 3);
}
