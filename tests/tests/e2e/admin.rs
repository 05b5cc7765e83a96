//! Admin listener: metrics exposition and health probes.

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
