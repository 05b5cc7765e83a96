//! Isolation: a destination that stops answering fills its own `max_held` share of the queue,
//! and only the routes that deliver to it answer 503, even under a flood; its circuit opens, and
//! when it comes back its held events are delivered within its `max_in_flight`.

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

/// How a flood of one route and a steady flow on another went.
#[derive(Debug, Default)]
struct Flood {
    /// The flooded route's answers: 202, and 503 (with the first 503's reason).
    flooded_accepted: usize,
    flooded_refused: usize,
    refusal: Option<String>,
    /// The steady route's events, and its answers that were not 202.
    steady_sent: usize,
    steady_not_accepted: usize,
    /// The steady route's events delivered per second, from the flood's start to the last one.
    steady_rate: f64,
    /// How long the flood took.
    flood_time: std::time::Duration,
}

/// A router with route `a` to destination `a` (at `a_url`, `max_held` 500, circuit opening
/// after 5 failures for 1 s) and route `b` to the sink `b`.
async fn two_route_router(a_url: &str, b: &Sink) -> TestRouter {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nqueue_capacity = 10000\n\
         shutdown_grace = \"100ms\"\n\
         [destinations.a]\nurl = \"{a_url}\"\ntimeout = \"2s\"\nmax_in_flight = 8\nmax_held = 500\n\
         retry = {{ max_attempts = 100, initial_backoff = \"10ms\", max_backoff = \"50ms\", jitter = \"none\" }}\n\
         circuit = {{ failures = 5, window = \"10s\", open_for = \"1s\", max_open_for = \"1s\" }}\n\
         [destinations.b]\nurl = \"{}\"\n{}{}",
        b.url("/in"),
        route("a", "/hooks/a", &["a"]),
        route("b", "/hooks/b", &["b"]),
    );
    TestRouter::start(&config).await
}

/// Posts `events` events to route `a`, `concurrency` at a time, while 4 clients post to route
/// `b` one after another until the flood is over; waits for `b`'s events to be delivered.
async fn flood(router: &TestRouter, b: &Sink, events: usize, concurrency: usize) -> Flood {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let started = std::time::Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let flooding = Arc::new(AtomicBool::new(true));
    let mut flooders = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, next) = (
            router.client.clone(),
            router.url("/hooks/a"),
            Arc::clone(&next),
        );
        flooders.spawn(async move {
            let (mut accepted, mut refused, mut refusal) = (0, 0, None);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= events {
                    return (accepted, refused, refusal);
                }
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!("{{\"n\":{n}}}"))
                    .send()
                    .await
                    .expect("the flooded route answers");
                match answer.status().as_u16() {
                    202 => accepted += 1,
                    503 => {
                        refused += 1;
                        if refusal.is_none() {
                            refusal = Some(answer.text().await.expect("reason"));
                        }
                    }
                    status => panic!("flooded route answered {status}"),
                }
            }
        });
    }
    let mut steady = tokio::task::JoinSet::new();
    for client_number in 0..4 {
        let (client, url, flooding) = (
            router.client.clone(),
            router.url("/hooks/b"),
            Arc::clone(&flooding),
        );
        steady.spawn(async move {
            let (mut sent, mut not_accepted) = (0, 0);
            while flooding.load(Ordering::Acquire) {
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!("{{\"client\":{client_number},\"n\":{sent}}}"))
                    .send()
                    .await
                    .expect("the steady route answers");
                sent += 1;
                if answer.status() != 202 {
                    not_accepted += 1;
                }
            }
            (sent, not_accepted)
        });
    }
    let mut figures = Flood::default();
    while let Some(done) = flooders.join_next().await {
        let (accepted, refused, refusal) = done.expect("flooder");
        figures.flooded_accepted += accepted;
        figures.flooded_refused += refused;
        figures.refusal = figures.refusal.or(refusal);
    }
    figures.flood_time = started.elapsed();
    flooding.store(false, Ordering::Release);
    while let Some(done) = steady.join_next().await {
        let (sent, not_accepted) = done.expect("steady client");
        figures.steady_sent += sent;
        figures.steady_not_accepted += not_accepted;
    }
    let accepted = figures.steady_sent - figures.steady_not_accepted;
    assert_eq!(
        b.wait_for_delivered(accepted, PATIENCE).await.len(),
        accepted
    );
    figures.steady_rate = accepted as f64 / started.elapsed().as_secs_f64();
    figures
}

/// A destination that answers 200 after 2 ms and counts the requests it has at once.
struct CountingDestination {
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most_at_once: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingDestination {
    async fn start(listener: tokio::net::TcpListener) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let served = Arc::new(AtomicUsize::new(0));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let (count, most) = (Arc::clone(&served), Arc::clone(&most_at_once));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (count, most, now) = (Arc::clone(&count), Arc::clone(&most), Arc::clone(&now));
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (count, most, now) =
                            (Arc::clone(&count), Arc::clone(&most), Arc::clone(&now));
                        async move {
                            let at_once = now.fetch_add(1, Ordering::AcqRel) + 1;
                            most.fetch_max(at_once, Ordering::AcqRel);
                            let _ = http_body_util::BodyExt::collect(request.into_body()).await;
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                            now.fetch_sub(1, Ordering::AcqRel);
                            count.fetch_add(1, Ordering::AcqRel);
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Empty::<bytes::Bytes>::new(),
                            ))
                        }
                    },
                );
                tokio::spawn(
                    hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                    .into_owned(),
                );
            }
        });
        Self {
            served,
            most_at_once,
            task,
        }
    }
}

impl Drop for CountingDestination {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_to_a_dead_destination_leaves_the_other_route_untouched() {
    use std::sync::atomic::Ordering;

    const EVENTS: usize = 20_000;
    const CONCURRENCY: usize = 48;
    // The comparison: a flood with both destinations healthy (a quarter as long: only route
    // b's rate during it is compared, and a debug build posts about 2,000 events a second).
    let healthy_a = Sink::healthy().await;
    let b = Sink::healthy().await;
    let router = two_route_router(&healthy_a.url("/in"), &b).await;
    let healthy = flood(&router, &b, EVENTS / 4, CONCURRENCY).await;
    router.router.shutdown().await;

    // A's port, closed: every attempt is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let b = Sink::healthy().await;
    let router = two_route_router(&format!("http://127.0.0.1:{port}/in"), &b).await;
    let dead = flood(&router, &b, EVENTS, CONCURRENCY).await;
    eprintln!(
        "events to route a, {CONCURRENCY} at a time, while route b flows: \
         a healthy ({} events): a {} accepted / {} refused in {:?}, b {} sent, {:.0} delivered/s; \
         a dead ({EVENTS} events): a {} accepted / {} refused in {:?}, b {} sent, {:.0} delivered/s",
        EVENTS / 4,
        healthy.flooded_accepted,
        healthy.flooded_refused,
        healthy.flood_time,
        healthy.steady_sent,
        healthy.steady_rate,
        dead.flooded_accepted,
        dead.flooded_refused,
        dead.flood_time,
        dead.steady_sent,
        dead.steady_rate,
    );
    assert_eq!(
        healthy.steady_not_accepted, 0,
        "route b refused while a was healthy"
    );
    assert_eq!(
        dead.steady_not_accepted, 0,
        "route b refused while a was dead"
    );
    assert!(dead.steady_sent > 0);
    assert_eq!(dead.flooded_accepted, 500, "a's max_held, then 503");
    assert_eq!(dead.flooded_refused, EVENTS - 500);
    let refusal = dead.refusal.expect("a refusal");
    assert!(refusal.contains("holds its max_held events"), "{refusal}");

    // A's circuit is open.
    router
        .wait_for_metric(
            "webhook_destination_circuit_state{destination=\"a\"}",
            2.0,
            PATIENCE,
        )
        .await;
    let board = router.admin_json("/destinations").await;
    let a = board
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == "a"))
        .expect("destination a on the board");
    assert!(
        matches!(a["circuit"].as_str(), Some("open" | "half-open")),
        "{board}"
    );
    assert_eq!(a["held"], 500, "{board}");

    // A comes back on its port: the next probe closes the circuit and every held event is
    // delivered, never more than max_in_flight at once.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("a's port again");
    let back = CountingDestination::start(listener).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(back.served.load(Ordering::Acquire), 500);
    let most = back.most_at_once.load(Ordering::Acquire);
    eprintln!("a back: 500 held events delivered, at most {most} at once (max_in_flight 8)");
    assert!(most <= 8, "{most} deliveries at once to a");
    router
        .wait_for_metric(
            "webhook_destination_circuit_state{destination=\"a\"}",
            0.0,
            PATIENCE,
        )
        .await;
}
