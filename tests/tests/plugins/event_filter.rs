//! event-filter: only pushes to `refs/heads/main` pass.

use serde_json::json;
use webhook_router::plugin::bindings::Verdict;
use webhook_router_tests::wasm::{HandleBlocking, github_event, github_payload, load, with_json};

fn main_pushes_only() -> serde_json::Value {
    json!({ "allow_events": ["push"], "json": [{ "pointer": "/ref", "equals": "refs/heads/main" }] })
}

#[test]
fn passes_a_push_to_main_unchanged() {
    let plugin = load("event_filter", &main_pushes_only());
    let body = with_json(&github_payload("push"), "/ref", json!("refs/heads/main"));
    let event = github_event("push", body);
    assert!(
        matches!(
            plugin.handle_blocking(&event).expect("plugin runs"),
            Verdict::Pass
        ),
        "the event passes on unchanged (delivered byte for byte: tests/e2e/plugins.rs)"
    );
}

#[test]
fn drops_pushes_elsewhere_and_every_other_event() {
    let plugin = load("event_filter", &main_pushes_only());
    let cases = [
        ("push", "push"), // the fixture pushes refs/tags/simple-tag
        ("pull_request", "pull_request.opened"),
        ("issues", "issues.opened"),
        ("release", "release.published"),
        ("ping", "ping"),
    ];
    for (kind, fixture) in cases {
        let event = github_event(kind, github_payload(fixture));
        match plugin.handle_blocking(&event).expect("plugin runs") {
            Verdict::Drop(reason) => assert!(!reason.is_empty(), "{fixture}: a reason is given"),
            other => panic!("{fixture}: expected drop, got {other:?}"),
        }
    }
    let branch = with_json(&github_payload("push"), "/ref", json!("refs/heads/feature"));
    assert!(matches!(
        plugin
            .handle_blocking(&github_event("push", branch))
            .expect("plugin runs"),
        Verdict::Drop(_)
    ));
}

#[test]
fn rejects_instead_of_dropping_when_configured() {
    let mut config = main_pushes_only();
    config["on_mismatch"] = json!("reject");
    config["reject_status"] = json!(403);
    config["reject_message"] = json!("only pushes to main");
    let plugin = load("event_filter", &config);
    let event = github_event("issues", github_payload("issues.opened"));
    match plugin.handle_blocking(&event).expect("plugin runs") {
        Verdict::Reject(rejection) => {
            assert_eq!(rejection.status, 403);
            assert_eq!(rejection.message, "only pushes to main");
        }
        other => panic!("expected reject, got {other:?}"),
    }
}

#[test]
fn any_of_several_conditions_and_regexes() {
    let config = json!({
        "match": "any",
        "json": [
            { "pointer": "/action", "in": ["closed", "reopened"] },
            { "pointer": "/pull_request/title", "regex": "^Update .+README" }
        ]
    });
    let plugin = load("event_filter", &config);
    let opened = github_event("pull_request", github_payload("pull_request.opened"));
    assert!(matches!(
        plugin.handle_blocking(&opened).expect("plugin runs"),
        Verdict::Pass
    ));
    let issue = github_event("issues", github_payload("issues.opened"));
    assert!(matches!(
        plugin.handle_blocking(&issue).expect("plugin runs"),
        Verdict::Drop(_)
    ));
}

#[test]
fn a_bad_config_fails_to_load_with_the_plugins_message() {
    let error = webhook_router_tests::wasm::try_load(
        "event_filter",
        &json!({ "json": [{ "pointer": "/ref", "regex": "([" }] }),
        Default::default(),
        Default::default(),
    )
    .expect_err("an invalid regex is refused at load");
    assert!(error.contains("regex"), "{error}");
}
