//! Plugin chains in a running router: transformed deliveries, drops, rejections, fan-out, and
//! hostile plugins that are contained while the router keeps serving.

use webhook_router_tests::wasm::{github_payload, module, with_json};
use webhook_router_tests::{Sink, TestRouter};

use crate::{PATIENCE, destination, route};

/// A `[[routes.plugins]]` entry for the built plugin `name`, with `rest` (TOML lines).
fn plugin(name: &str, rest: &str) -> String {
    format!(
        "[[routes.plugins]]\nmodule = \"{}\"\n{rest}\n",
        module(name).display()
    )
}

/// POSTs a GitHub `kind` event with `body` to `path`.
async fn post_github(
    router: &TestRouter,
    path: &str,
    kind: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    router
        .client
        .post(router.url(path))
        .header("content-type", "application/json")
        .header("x-github-event", kind)
        .body(body)
        .send()
        .await
        .expect("router answers")
}

/// GitHub's sample push, made a push to `refs/heads/main`.
fn push_to_main() -> Vec<u8> {
    with_json(
        &github_payload("push"),
        "/ref",
        serde_json::json!("refs/heads/main"),
    )
}

async fn error_message(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("json error body");
    body["error"].as_str().expect("error message").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_then_map_chain_delivers_the_transformed_body_and_counts_drops() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("github", "/hooks/github", &["sink"]),
        plugin(
            "event_filter",
            "name = \"main-only\"\nconfig = { allow_events = [\"push\"], json = [{ pointer = \"/ref\", equals = \"refs/heads/main\" }] }"
        ),
        plugin(
            "json_map",
            "config = { template = { repo = \"{{/repository/full_name}}\", pusher = \"{{/pusher/name}}\", branch = \"{{/ref}}\" }, set_headers = { x-repo = \"{{/repository/full_name}}\" } }"
        ),
    );
    let router = TestRouter::start(&config).await;

    let accepted = post_github(&router, "/hooks/github", "push", push_to_main()).await;
    assert_eq!(accepted.status(), 202);
    let answer: serde_json::Value = accepted.json().await.expect("json answer");
    let id = answer["id"].as_str().expect("event id").to_owned();

    // Two events the filter drops: a tag push and an issue. Both are accepted (202).
    for (kind, body) in [
        ("push", github_payload("push")),
        ("issues", github_payload("issues.opened")),
    ] {
        let dropped = post_github(&router, "/hooks/github", kind, body).await;
        assert_eq!(dropped.status(), 202, "a dropped event is still accepted");
    }

    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(delivered.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&delivered[0].body).expect("json body");
    assert_eq!(
        body,
        serde_json::json!({ "repo": "Codertocat/Hello-World", "pusher": "Codertocat", "branch": "refs/heads/main" })
    );
    assert_eq!(delivered[0].headers["x-repo"], "Codertocat/Hello-World");
    assert_eq!(delivered[0].headers["content-type"], "application/json");
    assert_eq!(delivered[0].headers["webhook-id"], id.as_str());

    router.wait_idle(PATIENCE).await;
    assert_eq!(sink.requests().len(), 1, "dropped events reach no sink");
    let metrics = router.metrics().await;
    let series = |plugin: &str, verdict: &str| {
        format!(
            "webhook_plugin_verdicts_total{{route=\"github\",plugin=\"{plugin}\",verdict=\"{verdict}\"}}"
        )
    };
    assert_eq!(
        webhook_router_tests::test_router::metric_value(&metrics, &series("main-only", "drop")),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        webhook_router_tests::test_router::metric_value(&metrics, &series("main-only", "forward")),
        Some(1.0)
    );
    assert_eq!(
        webhook_router_tests::test_router::metric_value(&metrics, &series("json_map", "forward")),
        Some(1.0)
    );
    assert!(
        metrics.contains(
            "webhook_plugin_duration_seconds_count{route=\"github\",plugin=\"json_map\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("webhook_requests_total{route=\"github\",status=\"202\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_passes_delivers_the_previous_plugins_event_as_it_was() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("github", "/hooks/github", &["sink"]),
        plugin(
            "json_map",
            "config = { template = { repo = \"{{/repository/full_name}}\", branch = \"{{/ref}}\" }, set_headers = { x-repo = \"{{/repository/full_name}}\" } }"
        ),
        // Decides on json_map's output and answers `pass`.
        plugin(
            "event_filter",
            "config = { json = [{ pointer = \"/branch\", equals = \"refs/heads/main\" }] }"
        ),
    );
    let router = TestRouter::start(&config).await;
    let accepted = post_github(&router, "/hooks/github", "push", push_to_main()).await;
    assert_eq!(accepted.status(), 202);
    let dropped = post_github(&router, "/hooks/github", "push", github_payload("push")).await;
    assert_eq!(dropped.status(), 202);

    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    let body: serde_json::Value = serde_json::from_slice(&delivered[0].body).expect("json body");
    assert_eq!(
        body,
        serde_json::json!({ "repo": "Codertocat/Hello-World", "branch": "refs/heads/main" })
    );
    assert_eq!(delivered[0].headers["x-repo"], "Codertocat/Hello-World");
    router.wait_idle(PATIENCE).await;
    assert_eq!(sink.requests().len(), 1, "the tag push is dropped");
    let metrics = router.metrics().await;
    assert_eq!(
        webhook_router_tests::test_router::metric_value(
            &metrics,
            "webhook_plugin_verdicts_total{route=\"github\",plugin=\"event_filter\",verdict=\"forward\"}"
        ),
        Some(1.0),
        "pass counts as forward: {metrics}"
    );
}

#[tokio::test]
async fn a_plugin_rejection_reaches_the_sender() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("github", "/hooks/github", &["sink"]),
        plugin(
            "event_filter",
            "config = { allow_events = [\"push\"], on_mismatch = \"reject\", reject_status = 403, reject_message = \"pushes only\" }"
        ),
    );
    let router = TestRouter::start(&config).await;
    let rejected = post_github(
        &router,
        "/hooks/github",
        "issues",
        github_payload("issues.opened"),
    )
    .await;
    assert_eq!(rejected.status(), 403);
    assert_eq!(error_message(rejected).await, "pushes only");
    assert_eq!(
        router
            .metric("webhook_requests_total{route=\"github\",status=\"403\"}")
            .await,
        Some(1.0)
    );
    router.wait_idle(PATIENCE).await;
    assert!(
        sink.requests().is_empty(),
        "a rejected event is not delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_by_field_fans_out_to_the_chosen_destinations() {
    let reviews = Sink::healthy().await;
    let triage = Sink::healthy().await;
    let config = format!(
        "{}{}{}{}{}",
        destination("reviews", &reviews.url("/in"), 3),
        destination("triage", &triage.url("/in"), 3),
        route("github", "/hooks/github", &["reviews"]),
        "fan_out = [\"triage\"]\n",
        plugin(
            "route_by_field",
            "config = { field = { header = \"x-github-event\" }, routes = { pull_request = \"reviews\", issues = [\"triage\", \"reviews\"] } }"
        ),
    );
    let router = TestRouter::start(&config).await;
    let pr = github_payload("pull_request.opened");
    assert_eq!(
        post_github(&router, "/hooks/github", "pull_request", pr.clone())
            .await
            .status(),
        202
    );
    let issue = github_payload("issues.opened");
    assert_eq!(
        post_github(&router, "/hooks/github", "issues", issue.clone())
            .await
            .status(),
        202
    );

    let at_triage = triage.wait_for_delivered(1, PATIENCE).await;
    let at_reviews = reviews.wait_for_delivered(2, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        triage.requests().len(),
        1,
        "the pull request does not go to triage"
    );
    assert_eq!(at_triage[0].body, issue);
    assert_eq!(reviews.requests().len(), 2);
    let mut bodies: Vec<_> = at_reviews.iter().map(|r| r.body.to_vec()).collect();
    bodies.sort();
    let mut expected = vec![pr, issue];
    expected.sort();
    assert_eq!(bodies, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_contained_and_the_router_keeps_serving() {
    let sink = Sink::healthy().await;
    // Each hostile route misbehaves in its own way, with a small memory and time budget.
    let hostile = |mode: &str, on_error: &str| {
        // Time limits count the call's own CPU time, so other tests loading both cores do
        // not matter; the loop, the sleep and the stdout flood get a short budget (the sleep
        // ends at the 10× wall-clock backstop, 200 ms).
        let (bytes, time) = match mode {
            "big-output" => (", bytes = 2097152", "1s"),
            "loop" | "print" | "sleep" | "stdout-flood" => ("", "20ms"),
            _ => ("", "1s"),
        };
        format!(
            "{}on_plugin_error = \"{on_error}\"\n{}",
            route(mode, &format!("/hooks/{mode}"), &["sink"]),
            plugin(
                "hostile",
                &format!(
                    "config = {{ mode = \"{mode}\"{bytes} }}\nlimits = {{ memory = \"16MiB\", time = \"{time}\", output = \"1MiB\" }}"
                ),
            )
        )
    };
    let config = format!(
        "{}{}{}{}{}{}{}{}{}{}{}{}{}{}",
        destination("sink", &sink.url("/in"), 3),
        destination("a", &sink.url("/a"), 3),
        route("healthy", "/hooks/healthy", &["sink"]),
        hostile("print", "reject"),
        hostile("loop", "reject"),
        hostile("memory", "drop"),
        hostile("trap", "forward"),
        hostile("big-output", "reject"),
        hostile("recursion", "forward"),
        hostile("bad-fan-out", "drop"),
        hostile("sleep", "reject"),
        hostile("stdout-flood", "reject"),
        hostile("alias-fan-out", "reject"),
        hostile("connect", "reject"),
    );
    let router = TestRouter::start(&config).await;

    let cases: [(&str, &str, u16, &str); 10] = [
        ("loop", "timeout", 500, "reject"),
        ("memory", "memory", 202, "drop"),
        ("trap", "trap", 202, "forward"),
        ("big-output", "output_too_large", 500, "reject"),
        ("recursion", "trap", 202, "forward"),
        ("bad-fan-out", "bad_verdict", 202, "drop"),
        ("sleep", "timeout", 500, "reject"),
        ("stdout-flood", "output_too_large", 500, "reject"),
        ("alias-fan-out", "output_too_large", 500, "reject"),
        ("connect", "denied", 500, "reject"),
    ];
    // A plugin writing to stdout and stderr is fine: the lines go to the router's log.
    let printed = router
        .post_json("/hooks/print", "{\"mode\":\"print\"}")
        .await;
    assert_eq!(printed.status(), 202);
    let print_errors =
        "webhook_plugin_errors_total{route=\"print\",plugin=\"hostile\",kind=\"error\"}";
    assert_eq!(
        router.metric(print_errors).await,
        Some(0.0),
        "{print_errors}"
    );
    let mut healthy_sent = 1;
    let mut forwarded = 0;
    for (mode, kind, status, on_error) in cases {
        let body = format!("{{\"mode\":\"{mode}\"}}");
        let response = router.post_json(&format!("/hooks/{mode}"), &body).await;
        assert_eq!(
            response.status(),
            status,
            "{mode}: on_plugin_error = {on_error}"
        );
        if status == 500 {
            assert_eq!(error_message(response).await, "plugin failed");
        }
        if on_error == "forward" {
            forwarded += 1;
        }
        let series = format!(
            "webhook_plugin_errors_total{{route=\"{mode}\",plugin=\"hostile\",kind=\"{kind}\"}}"
        );
        assert_eq!(router.metric(&series).await, Some(1.0), "{series}");

        // The router still serves other requests, at once.
        let ok = router
            .post_json("/hooks/healthy", &format!("{{\"after\":\"{mode}\"}}"))
            .await;
        assert_eq!(ok.status(), 202, "after {mode}");
        healthy_sent += 1;
    }

    let delivered = sink
        .wait_for_delivered(healthy_sent + forwarded, PATIENCE)
        .await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        sink.requests().len(),
        healthy_sent + forwarded,
        "dropped and rejected events are not delivered"
    );
    for mode in ["trap", "recursion"] {
        let original = format!("{{\"mode\":\"{mode}\"}}");
        assert!(
            delivered.iter().any(|r| r.body == original.as_bytes()),
            "{mode}: forwarded unchanged after the failure"
        );
    }
}
