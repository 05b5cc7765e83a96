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

#[tokio::test]
async fn attempts_that_fail_while_stopping_are_counted_with_their_retries() {
    let sink = Sink::start(|_| Reply::hang()).await;
    // Each attempt in flight when the stop begins times out 300 ms later, well within the grace
    // period; its retry is due 1 h later, long after it: the retries are counted, and the stop
    // does not wait out the grace period for them.
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"30s\"\n\
         [destinations.sink]\nurl = \"{}\"\ntimeout = \"300ms\"\n\
         retry = {{ max_attempts = 5, initial_backoff = \"1h\", max_backoff = \"1h\", jitter = \"none\" }}\n{}",
        sink.url("/in"),
        route("stop", "/hooks/stop", &["sink"])
    );
    let router = TestRouter::start(&config).await;
    for n in 0..4 {
        let body = format!("{{\"n\":{n}}}");
        assert_eq!(router.post_json("/hooks/stop", &body).await.status(), 202);
    }
    assert_eq!(sink.wait_for(4, PATIENCE, |_| true).await.len(), 4);
    let started = std::time::Instant::now();
    let report = router.router.shutdown().await;
    assert_eq!(report.still_queued, 4);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the stop waited {:?} for retries due after its deadline",
        started.elapsed()
    );
}

#[tokio::test]
async fn one_grace_period_bounds_the_whole_stop_and_the_count_is_exact() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let hanging = Sink::start(|_| Reply::hang()).await;
    let later = Sink::start(|_| Reply::status(503).header("retry-after", "3600")).await;
    let healthy = Sink::healthy().await;
    // Attempts to `hanging` outlast the grace period: cut off at its end, they are counted. (The
    // retries of attempts that fail while stopping are the test above.)
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\n\
         [destinations.hanging]\nurl = \"{}\"\ntimeout = \"10s\"\n\
         {}{}{}{}{}",
        hanging.url("/in"),
        destination("later", &later.url("/in"), 3),
        destination("healthy", &healthy.url("/in"), 3),
        route("hanging", "/hooks/hanging", &["hanging"]),
        route("later", "/hooks/later", &["later"]),
        route("healthy", "/hooks/healthy", &["healthy"]),
    );
    let router = TestRouter::start(&config).await;
    for n in 0..5 {
        let body = format!("{{\"n\":{n}}}");
        for path in ["/hooks/hanging", "/hooks/later", "/hooks/healthy"] {
            assert_eq!(router.post_json(path, &body).await.status(), 202);
        }
    }
    assert_eq!(hanging.wait_for(5, PATIENCE, |_| true).await.len(), 5);
    assert_eq!(later.wait_for(5, PATIENCE, |_| true).await.len(), 5);
    assert_eq!(healthy.wait_for_delivered(5, PATIENCE).await.len(), 5);

    // A slow upload: the ingress is reading its body (it asked for it with 100 Continue).
    let mut upload = tokio::net::TcpStream::connect(router.router.ingress_addr())
        .await
        .expect("connect to ingress");
    upload
        .write_all(
            b"POST /hooks/healthy HTTP/1.1\r\nhost: router\r\ncontent-type: application/json\r\n\
              content-length: 1000\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("send head");
    let mut answer = [0u8; 64];
    let read = upload.read(&mut answer).await.expect("100 Continue");
    assert!(
        String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    upload
        .write_all(b"{\"slow\":")
        .await
        .expect("send a little");
    // A slow admin client: one request answered, then half of the next one's head.
    let mut admin = tokio::net::TcpStream::connect(router.router.admin_addr())
        .await
        .expect("connect to admin");
    admin
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: router\r\n\r\n")
        .await
        .expect("send request");
    let read = admin.read(&mut answer).await.expect("admin answer");
    assert!(String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200"));
    admin
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: ro")
        .await
        .expect("send half a head");

    let started = std::time::Instant::now();
    let report = router.router.shutdown().await;
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(3),
        "shutdown took {took:?}, more than shutdown_grace + 1 s"
    );
    // The 5 hanging and the 5 waiting events, each once; the healthy ones were delivered and
    // the slow upload never became an event.
    assert_eq!(report.still_queued, 10);
    drop((upload, admin));
}
