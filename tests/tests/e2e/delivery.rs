//! Delivery: exactly-once to healthy sinks, retries, Retry-After, dead letters, fan-out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, destination, route};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_webhooks_are_delivered_exactly_once() {
    let sink = Sink::healthy().await;
    // Exactly once holds while no attempt times out: give attempts room on a loaded machine
    // (an attempt cut off at its timeout is retried, and delivered twice).
    let config = format!(
        "{}{}",
        destination("sink", &sink.url("/in"), 3).replace("timeout = \"2s\"", "timeout = \"30s\""),
        route("bulk", "/hooks/bulk", &["sink"])
    );
    let router = Arc::new(TestRouter::start(&config).await);
    let limit = Arc::new(tokio::sync::Semaphore::new(200));
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..1000 {
        let router = Arc::clone(&router);
        let limit = Arc::clone(&limit);
        posts.spawn(async move {
            let _permit = limit.acquire().await.expect("semaphore open");
            let response = router
                .client
                .post(router.url("/hooks/bulk"))
                .header("content-type", "application/vnd.test+json; charset=utf-8")
                .body(format!("{{\"n\":{n}}}"))
                .send()
                .await
                .expect("router answers");
            assert_eq!(response.status(), 202);
            let answer: serde_json::Value = response.json().await.expect("json answer");
            (n, answer["id"].as_str().expect("id").to_owned())
        });
    }
    let mut ids = HashMap::new();
    while let Some(result) = posts.join_next().await {
        let (n, id) = result.expect("post task");
        ids.insert(format!("{{\"n\":{n}}}"), id);
    }
    assert_eq!(ids.len(), 1000);

    let delivered = sink.wait_for_delivered(1000, PATIENCE).await;
    assert_eq!(delivered.len(), 1000);
    let mut seen = HashMap::new();
    for request in &delivered {
        let body = String::from_utf8(request.body.to_vec()).expect("utf-8 body");
        assert_eq!(
            request.headers["content-type"],
            "application/vnd.test+json; charset=utf-8"
        );
        assert_eq!(
            request.headers["webhook-id"],
            ids[&body].as_str(),
            "id follows the event"
        );
        *seen.entry(body).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 1000, "every body arrived");
    assert!(
        seen.values().all(|&count| count == 1),
        "no body arrived twice"
    );

    // Nothing more arrives later (no duplicate deliveries): once the router holds nothing.
    router.wait_idle(PATIENCE).await;
    assert_eq!(sink.requests().len(), 1000);

    let metrics = router.metrics().await;
    assert!(
        metrics.contains("webhook_requests_total{route=\"bulk\",status=\"202\"} 1000"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "webhook_deliveries_total{route=\"bulk\",destination=\"sink\",outcome=\"delivered\"} 1000"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("webhook_queue_depth 0"), "{metrics}");
}

#[tokio::test]
async fn failing_twice_then_healthy_is_delivered_on_the_third_attempt() {
    let sink = Sink::start(|n| {
        if n <= 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let config = format!(
        "{}{}",
        destination("flaky", &sink.url("/in"), 5),
        route("flaky", "/hooks/flaky", &["flaky"])
    );
    let router = TestRouter::start(&config).await;
    assert_eq!(
        router.post_json("/hooks/flaky", "{\"a\":1}").await.status(),
        202
    );

    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].number, 3, "delivered on attempt 3");
    assert_eq!(delivered[0].body, "{\"a\":1}");
    assert_eq!(sink.requests().len(), 3);

    let series = |outcome: &str| {
        format!(
            "webhook_deliveries_total{{route=\"flaky\",destination=\"flaky\",outcome=\"{outcome}\"}}"
        )
    };
    assert_eq!(router.metric(&series("retry")).await, Some(2.0));
    assert_eq!(router.metric(&series("delivered")).await, Some(1.0));
}

#[tokio::test]
async fn retry_after_from_the_destination_is_honoured() {
    let sink = Sink::start(|n| {
        if n == 1 {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::ok()
        }
    })
    .await;
    // The backoff alone would retry after 20 ms; Retry-After asks for 1 s.
    let config = format!(
        "{}{}",
        destination("slow", &sink.url("/in"), 3),
        route("slow", "/hooks/slow", &["slow"])
    );
    let router = TestRouter::start(&config).await;
    assert_eq!(router.post_json("/hooks/slow", "{}").await.status(), 202);

    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(delivered.len(), 1);
    let requests = sink.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before the 1 s Retry-After"
    );
}

#[tokio::test]
async fn permanent_failure_is_dead_lettered_at_once_and_replay_delivers_it() {
    let sink = Sink::start(|n| {
        if n == 1 {
            Reply::status(400)
        } else {
            Reply::ok()
        }
    })
    .await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"t0ken\"\n{}{}",
        destination("strict", &sink.url("/in"), 5),
        route("strict", "/hooks/strict", &["strict"])
    );
    let router = TestRouter::start(&config).await;
    let answer: serde_json::Value = router
        .post_json("/hooks/strict", "{\"order\":7}")
        .await
        .json()
        .await
        .expect("json answer");
    let event_id = answer["id"].as_str().expect("id").to_owned();

    // The admin API wants the token.
    let unauthorised = router
        .client
        .get(router.admin_url("/dead-letters"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(unauthorised.status(), 401);

    let letters = wait_for_dead_letters(&router, 1).await;
    let letter = &letters[0];
    assert_eq!(letter["event_id"], event_id.as_str());
    assert_eq!(letter["attempts"], 1, "a 400 is not retried");
    assert_eq!(letter["last_status"], 400);
    assert_eq!(letter["destination"], "strict");
    assert_eq!(sink.requests().len(), 1);
    let dead =
        "webhook_deliveries_total{route=\"strict\",destination=\"strict\",outcome=\"dead_letter\"}";
    assert_eq!(router.metric(dead).await, Some(1.0));
    assert_eq!(router.metric("webhook_dead_letters").await, Some(1.0));

    let replay = router
        .client
        .post(router.admin_url(&format!(
            "/dead-letters/{}/replay",
            letter["id"].as_str().expect("letter id")
        )))
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("admin answers");
    assert_eq!(replay.status(), 202);
    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body, "{\"order\":7}");
    assert_eq!(delivered[0].headers["webhook-id"], event_id.as_str());
    assert!(
        dead_letters(&router).await.is_empty(),
        "replayed letter is gone"
    );
    assert_eq!(router.metric("webhook_dead_letters").await, Some(0.0));
}

#[tokio::test]
async fn unanswered_attempts_time_out_and_count_as_retryable() {
    let sink = Sink::start(|_| Reply::hang()).await;
    let config = format!(
        "[destinations.void]\nurl = \"{}\"\ntimeout = \"200ms\"\n\
         retry = {{ max_attempts = 2, initial_backoff = \"10ms\", jitter = \"none\" }}\n{}",
        sink.url("/in"),
        route("void", "/hooks/void", &["void"])
    );
    let router = TestRouter::start(&config).await;
    assert_eq!(router.post_json("/hooks/void", "{}").await.status(), 202);

    let letters = wait_for_dead_letters(&router, 1).await;
    assert_eq!(letters[0]["attempts"], 2, "the timeout was retried");
    assert!(letters[0]["last_status"].is_null());
    let error = letters[0]["last_error"].as_str().expect("error text");
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(sink.requests().len(), 2);
    let retry = "webhook_deliveries_total{route=\"void\",destination=\"void\",outcome=\"retry\"}";
    assert_eq!(router.metric(retry).await, Some(1.0));
}

#[tokio::test]
async fn fan_out_delivers_to_the_healthy_destination_while_the_other_is_down() {
    let healthy = Sink::healthy().await;
    // A port that was just free: connecting to it is refused.
    let down_addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let config = format!(
        "{}[destinations.down]\nurl = \"http://{down_addr}/in\"\n\
         retry = {{ max_attempts = 10, initial_backoff = \"1s\", jitter = \"none\" }}\n{}",
        destination("healthy", &healthy.url("/in"), 3),
        route("both", "/hooks/both", &["healthy", "down"])
    );
    let router = TestRouter::start(&config).await;
    assert_eq!(
        router.post_json("/hooks/both", "{\"x\":1}").await.status(),
        202
    );

    let delivered = healthy.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body, "{\"x\":1}");
    // The other delivery is still being retried, independently.
    let series = |destination: &str, outcome: &str| {
        format!(
            "webhook_deliveries_total{{route=\"both\",destination=\"{destination}\",outcome=\"{outcome}\"}}"
        )
    };
    let retries = series("down", "retry");
    wait_until(
        "the down destination to be retried",
        PATIENCE,
        || router.metric(&retries),
        |retried| retried.expect("the retry series is exported") >= 1.0,
    )
    .await;
    assert_eq!(
        router.metric(&series("down", "dead_letter")).await,
        Some(0.0)
    );
    assert_eq!(
        router.metric(&series("healthy", "delivered")).await,
        Some(1.0)
    );
    assert_eq!(
        router.metric("webhook_queue_depth").await,
        Some(1.0),
        "held for the retry"
    );
}

/// The dead letters, through the admin API (with the token the tests use).
pub async fn dead_letters(router: &TestRouter) -> Vec<serde_json::Value> {
    router
        .client
        .get(router.admin_url("/dead-letters"))
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("json list")
}

/// Polls the admin API until `count` dead letters exist.
pub async fn wait_for_dead_letters(router: &TestRouter, count: usize) -> Vec<serde_json::Value> {
    let letters = wait_until(
        &format!("{count} dead letters"),
        PATIENCE,
        || dead_letters(router),
        |letters| letters.len() >= count,
    )
    .await;
    assert_eq!(letters.len(), count, "dead letters: {letters:?}");
    letters
}
