//! Admin listener: metrics exposition and health probes, the admin token, and what `/readyz`
//! says (without a token) about a NATS server that is away.

use std::time::Duration;

use webhook_router_tests::nats::NatsServer;
use webhook_router_tests::wasm::module;
use webhook_router_tests::{Sink, TestRouter};

use crate::{PATIENCE, destination, route};

#[tokio::test]
async fn metrics_and_probes_are_served_without_a_token() {
    let sink = Sink::healthy().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"secret-token\"\n{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("probe", "/hooks/probe", &["sink"])
    );
    let router = TestRouter::start(&config).await;

    let metrics = router
        .client
        .get(router.admin_url("/metrics"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = metrics.text().await.expect("text");
    assert!(text.contains("# TYPE webhook_queue_depth gauge"), "{text}");
    assert!(!text.contains("secret-token"));

    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/nope", 404)] {
        let answer = router
            .client
            .get(router.admin_url(path))
            .send()
            .await
            .expect("admin answers");
        assert_eq!(answer.status(), status, "{path}");
    }
    let wrong_token = router
        .client
        .get(router.admin_url("/dead-letters"))
        .bearer_auth("guess")
        .send()
        .await
        .expect("admin answers");
    assert_eq!(wrong_token.status(), 401);
    let unknown_replay = router
        .client
        .post(router.admin_url("/dead-letters/nope/replay"))
        .bearer_auth("secret-token")
        .send()
        .await
        .expect("admin answers");
    assert_eq!(unknown_replay.status(), 404);
}

#[tokio::test]
async fn only_the_exact_admin_token_opens_the_api_whatever_the_length_of_a_guess() {
    let sink = Sink::healthy().await;
    let token = "correct-horse-battery-staple";
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{token}\"\n{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("probe", "/hooks/probe", &["sink"])
    );
    let router = TestRouter::start(&config).await;
    let status = |path: &'static str, bearer: Option<String>| {
        let mut request = router.client.get(router.admin_url(path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move { request.send().await.expect("admin answers").status() }
    };
    for path in ["/destinations", "/dead-letters"] {
        assert_eq!(status(path, Some(token.to_owned())).await, 200, "{path}");
        assert_eq!(status(path, None).await, 401, "{path}: no token");
        for wrong in [
            "correct-horse-battery-stapl!".to_owned(), // same length
            "correct-horse-battery-stapl".to_owned(),  // a prefix
            format!("{token}-and-more"),               // longer
            String::new(),
        ] {
            assert_eq!(
                status(path, Some(wrong.clone())).await,
                401,
                "{path}: {wrong:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_an_absent_nats_server_without_the_credentials_in_its_url() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-admin-readyz-nats");
    let mut nats = NatsServer::start_with_token(&dir, "nats-token");
    let sink = Sink::healthy().await;
    // Credentials written into the URL (the client authenticates with `token`; the URL's are
    // there to be leaked or not).
    let url = nats
        .url()
        .replace("nats://", "nats://router:hunter2-in-url@");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_body_bytes = \"256KiB\"\n[queue]\nbackend = \"nats\"\nurl = \"{url}\"\ntoken = \"nats-token\"\nmax_bytes = \"64MiB\"\n\
         stream = \"READYZ\"\n{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("probe", "/hooks/probe", &["sink"])
    );
    let router = TestRouter::start(&config).await;
    let readyz = || async {
        let answer = router
            .client
            .get(router.admin_url("/readyz"))
            .send()
            .await
            .expect("admin answers");
        (answer.status().as_u16(), answer.text().await.expect("text"))
    };
    assert_eq!(readyz().await, (200, "ready\n".to_owned()));

    nats.stop();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let body = loop {
        let (status, body) = readyz().await;
        if status == 503 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body, format!("NATS at {} is not connected\n", nats.url()));
    assert!(
        !body.contains("hunter2") && !body.contains("router:"),
        "{body}"
    );

    nats.resume();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while readyz().await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered 200 again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn delivery_series_exist_only_for_the_destinations_a_route_can_reach() {
    let sinks = [
        Sink::healthy().await,
        Sink::healthy().await,
        Sink::healthy().await,
        Sink::healthy().await,
    ];
    // `plain` delivers to `a`; `fan` to `b`, and its plugin may fan out to `c`; nothing reaches
    // `idle`.
    let config = format!(
        "{}{}{}{}{}{}fan_out = [\"c\"]\n[[routes.plugins]]\nmodule = \"{}\"\n\
         config = {{ field = {{ header = \"x-kind\" }}, routes = {{ extra = [\"c\", \"b\"] }}, default = \"b\" }}\n",
        destination("a", &sinks[0].url("/in"), 3),
        destination("b", &sinks[1].url("/in"), 3),
        destination("c", &sinks[2].url("/in"), 3),
        destination("idle", &sinks[3].url("/in"), 3),
        route("plain", "/hooks/plain", &["a"]),
        route("fan", "/hooks/fan", &["b"]),
        module("route_by_field").display(),
    );
    let router = TestRouter::start(&config).await;
    let series = |route: &str, destination: &str| {
        format!(
            "webhook_deliveries_total{{route=\"{route}\",destination=\"{destination}\",outcome=\"delivered\"}}"
        )
    };
    let text = router.metrics().await;
    let reachable = [("plain", "a"), ("fan", "b"), ("fan", "c")];
    for (route, destination) in reachable {
        assert!(
            text.contains(&format!("{} 0", series(route, destination))),
            "{route} -> {destination} is shown before any delivery:\n{text}"
        );
    }
    for (route, destination) in [
        ("plain", "b"),
        ("plain", "c"),
        ("plain", "idle"),
        ("fan", "a"),
        ("fan", "idle"),
    ] {
        assert!(
            !text.contains(&series(route, destination)),
            "{route} -> {destination} is never connected:\n{text}"
        );
    }
    let pairs = text
        .lines()
        .filter(|line| line.starts_with("webhook_deliveries_total{"))
        .count();
    assert_eq!(
        pairs,
        reachable.len() * 3,
        "three outcomes per pair:\n{text}"
    );

    let answer = router
        .client
        .post(router.url("/hooks/fan"))
        .header("x-kind", "extra")
        .body("{}")
        .send()
        .await
        .expect("router answers");
    assert_eq!(answer.status(), 202);
    sinks[2].wait_for_delivered(1, PATIENCE).await;
    sinks[1].wait_for_delivered(1, PATIENCE).await;
    // The fan-out delivery is counted under its pair.
    router
        .wait_for_metric(&series("fan", "c"), 1.0, PATIENCE)
        .await;
}
