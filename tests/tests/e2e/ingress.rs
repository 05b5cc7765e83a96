//! Ingress answers: 404, 405, 413 (declared and streamed), 503 with Retry-After, timeouts.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, destination, route};

const MIB: usize = 1024 * 1024;

async fn router_with_small_limits(sink: &Sink, queue_capacity: usize) -> TestRouter {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_body_bytes = \"1MiB\"\nqueue_capacity = {queue_capacity}\nheader_read_timeout = \"300ms\"\n{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("limits", "/hooks/limits", &["sink"])
    );
    TestRouter::start(&config).await
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
    let sink = Sink::healthy().await;
    let router = router_with_small_limits(&sink, 10).await;

    let missing = router.post_json("/hooks/nope", "{}").await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json error");
    assert_eq!(body["error"], "no route for this path");

    let wrong = router
        .client
        .get(router.url("/hooks/limits"))
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "POST");

    assert_eq!(
        router
            .metric("webhook_requests_total{route=\"unmatched\",status=\"404\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        router
            .metric("webhook_requests_total{route=\"limits\",status=\"405\"}")
            .await,
        Some(1.0)
    );
    assert!(sink.requests().is_empty());
}

/// Reads from `stream` until the status line is complete; returns what was read.
async fn read_status_line(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        while !seen.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buffer).await.expect("read answer");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("an answer in time");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn declared_oversized_body_is_413_before_the_body_is_sent() {
    let sink = Sink::healthy().await;
    let router = router_with_small_limits(&sink, 10).await;
    let mut stream = TcpStream::connect(router.router.ingress_addr())
        .await
        .expect("connect");
    let head = format!(
        "POST /hooks/limits HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        2 * MIB
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    // Only the head was sent: the answer cannot depend on reading the 2 MiB body.
    let answer = read_status_line(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(sink.requests().is_empty());
}

#[tokio::test]
async fn streamed_oversized_body_is_413_while_it_is_still_arriving() {
    let sink = Sink::healthy().await;
    let router = router_with_small_limits(&sink, 10).await;
    let mut stream = TcpStream::connect(router.router.ingress_addr())
        .await
        .expect("connect");
    let head = "POST /hooks/limits HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("send head");
    // Send 1.25 MiB of a 2 MiB body in 64 KiB chunks, then stop: the router must answer 413
    // without waiting for (or holding) the rest.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..20 {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .expect("chunk size");
        stream.write_all(&chunk).await.expect("chunk");
        stream.write_all(b"\r\n").await.expect("chunk end");
    }
    let answer = read_status_line(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(
        router
            .metric("webhook_requests_total{route=\"limits\",status=\"413\"}")
            .await,
        Some(1.0)
    );
    assert!(sink.requests().is_empty());
}

#[tokio::test]
async fn full_queue_answers_503_with_retry_after_and_recovers() {
    // The sink holds every delivery, so accepted events stay in the router.
    let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let release_in_sink = std::sync::Arc::clone(&release);
    let sink = Sink::start(move |_| {
        if release_in_sink.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::ok()
        } else {
            Reply::hang()
        }
    })
    .await;
    let router = router_with_small_limits(&sink, 2).await;
    assert_eq!(
        router
            .post_json("/hooks/limits", "{\"n\":1}")
            .await
            .status(),
        202
    );
    assert_eq!(
        router
            .post_json("/hooks/limits", "{\"n\":2}")
            .await
            .status(),
        202
    );
    let full = router.post_json("/hooks/limits", "{\"n\":3}").await;
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "1");
    let body: serde_json::Value = full.json().await.expect("json error");
    assert_eq!(body["error"], "queue full, retry later");
    assert_eq!(router.metric("webhook_queue_depth").await, Some(2.0));
    assert_eq!(
        router
            .metric("webhook_requests_total{route=\"limits\",status=\"503\"}")
            .await,
        Some(1.0)
    );

    // Once the sink recovers (the held attempts time out and are retried), room frees up.
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(sink.wait_for_delivered(2, PATIENCE).await.len(), 2);
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        router
            .post_json("/hooks/limits", "{\"n\":4}")
            .await
            .status(),
        202
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_disconnected() {
    let sink = Sink::healthy().await;
    let router = router_with_small_limits(&sink, 10).await;
    let mut stream = TcpStream::connect(router.router.ingress_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"POST /hooks/limits HTTP/1.1\r\nhost: te")
        .await
        .expect("send part of a head");
    // header_read_timeout is 300 ms: the router answers 408 or closes, well within PATIENCE.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "connection still open after the header read timeout"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_and_the_allowed_are_delivered() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}rate_limit = {{ per_second = 1, burst = 5 }}\n",
        destination("sink", &sink.url("/in"), 3),
        route("limited", "/hooks/limited", &["sink"])
    );
    let router = TestRouter::start(&config).await;
    let mut accepted = 0;
    let mut limited = 0;
    for n in 0..25 {
        let response = router
            .post_json("/hooks/limited", &format!("{{\"n\":{n}}}"))
            .await;
        match response.status().as_u16() {
            202 => accepted += 1,
            429 => {
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .expect("text")
                    .parse()
                    .expect("seconds");
                assert!((1..=2).contains(&retry_after), "{retry_after}");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
        if n < 5 {
            assert_eq!(accepted, n + 1, "the burst of 5 passes");
        }
    }
    assert!(limited >= 1, "requests over the limit are refused");
    assert_eq!(accepted + limited, 25);
    sink.wait_for_delivered(accepted, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        sink.requests().len(),
        accepted,
        "only the allowed are delivered"
    );
    assert_eq!(
        router
            .metric("webhook_requests_total{route=\"limited\",status=\"429\"}")
            .await,
        Some(limited as f64)
    );
}

#[tokio::test]
async fn allow_lists_admit_listed_clients_and_believe_only_trusted_proxies() {
    let sink = Sink::healthy().await;
    let routes = format!(
        "{}{}allow_ips = [\"127.0.0.0/8\"]\n{}allow_ips = [\"203.0.113.0/24\", \"2001:db8::/32\"]\n",
        destination("sink", &sink.url("/in"), 3),
        route("local", "/hooks/local", &["sink"]),
        route("partner", "/hooks/partner", &["sink"]),
    );
    let post = |router: &TestRouter, path: &'static str, forwarded: Option<&'static str>| {
        let mut request = router
            .client
            .post(router.url(path))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        async move {
            request
                .send()
                .await
                .expect("router answers")
                .status()
                .as_u16()
        }
    };

    // Behind a trusted proxy (the test client on 127.0.0.1 plays the proxy).
    let proxied = TestRouter::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]\n{routes}"
    ))
    .await;
    assert_eq!(
        post(&proxied, "/hooks/partner", Some("203.0.113.7")).await,
        202
    );
    assert_eq!(
        post(
            &proxied,
            "/hooks/partner",
            Some("198.51.100.1, 203.0.113.7")
        )
        .await,
        202
    );
    assert_eq!(
        post(
            &proxied,
            "/hooks/partner",
            Some("203.0.113.7, 198.51.100.1")
        )
        .await,
        403
    );
    assert_eq!(
        post(&proxied, "/hooks/partner", None).await,
        403,
        "the proxy itself is not listed"
    );

    // Without trusted proxies the header is ignored: only the peer counts.
    let direct = TestRouter::start(&routes).await;
    assert_eq!(post(&direct, "/hooks/local", None).await, 202);
    let forged = direct
        .client
        .post(direct.url("/hooks/partner"))
        .header("x-forwarded-for", "203.0.113.7")
        .body("{}")
        .send()
        .await
        .expect("router answers");
    assert_eq!(forged.status(), 403);
    let body: serde_json::Value = forged.json().await.expect("json error");
    assert_eq!(body["error"], "client address not allowed");

    sink.wait_for_delivered(3, PATIENCE).await;
    proxied.wait_idle(PATIENCE).await;
    direct.wait_idle(PATIENCE).await;
    assert_eq!(
        sink.requests().len(),
        3,
        "refused clients are never delivered"
    );
}

#[tokio::test]
async fn forwarded_for_that_cannot_be_read_is_refused_by_an_allow_list() {
    let sink = Sink::healthy().await;
    // The proxy itself is listed, so a header read as "the proxy" would pass: the old bug.
    let router = TestRouter::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         trusted_proxies = [\"127.0.0.1\"]\n{}{}\
         allow_ips = [\"127.0.0.1\", \"198.51.100.0/24\", \"2001:db8:1::/48\"]\n",
        destination("sink", &sink.url("/in"), 3),
        route("partner", "/hooks/partner", &["sink"]),
    ))
    .await;
    let post = |forwarded: &'static [&'static str]| {
        let mut request = router
            .client
            .post(router.url("/hooks/partner"))
            .header("content-type", "application/json")
            .body("{}");
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        async move {
            request
                .send()
                .await
                .expect("router answers")
                .status()
                .as_u16()
        }
    };
    let cases: &[(&[&str], u16)] = &[
        // Refused: not listed, once read, or not readable at all.
        (&["203.0.113.7"], 403),
        (&["203.0.113.7:1234"], 403),
        (&["[2001:db8::1]:443"], 403),
        (&["unknown"], 403),
        (&["198.51.100.7", "junk"], 403),
        (&["198.51.100.7, "], 403),
        // Admitted: listed, with or without a port, and the proxy itself when it forwards none.
        (&["198.51.100.7:1234"], 202),
        (&["[2001:db8:1::7]:443"], 202),
        (&["junk, 198.51.100.7"], 202),
        (&[], 202),
    ];
    for (forwarded, expected) in cases {
        assert_eq!(
            post(forwarded).await,
            *expected,
            "X-Forwarded-For {forwarded:?}"
        );
    }
    let admitted = cases.iter().filter(|(_, status)| *status == 202).count();
    let refused = cases.len() - admitted;
    assert_eq!(
        router
            .metric("webhook_requests_total{route=\"partner\",status=\"403\"}")
            .await,
        Some(refused as f64)
    );
    sink.wait_for_delivered(admitted, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        sink.requests().len(),
        admitted,
        "refused clients are never delivered"
    );
}
