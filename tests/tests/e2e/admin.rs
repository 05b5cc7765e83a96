//! Admin listener: metrics exposition and health probes.

use webhook_router_tests::{Sink, TestRouter};

use crate::{destination, route};

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
