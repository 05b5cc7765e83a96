//! route-by-field: pull requests go to one destination, issues to another.

use serde_json::json;
use webhook_router::plugin::bindings::Verdict;
use webhook_router_tests::wasm::{HandleBlocking, github_event, github_payload, load};

fn destinations(verdict: Verdict) -> Vec<String> {
    match verdict {
        Verdict::FanOut(deliveries) => deliveries.into_iter().map(|d| d.destination).collect(),
        other => panic!("expected fan-out, got {other:?}"),
    }
}

#[test]
fn routes_by_the_github_event_header() {
    let config = json!({
        "field": { "header": "x-github-event" },
        "routes": { "pull_request": "reviews", "issues": ["triage", "archive"] },
        "default": "fallback"
    });
    let plugin = load("route_by_field", &config);
    let pr = github_event("pull_request", github_payload("pull_request.opened"));
    assert_eq!(
        destinations(plugin.handle_blocking(&pr).expect("plugin runs")),
        ["reviews"]
    );
    let issue = github_event("issues", github_payload("issues.opened"));
    assert_eq!(
        destinations(plugin.handle_blocking(&issue).expect("plugin runs")),
        ["triage", "archive"]
    );
    let push = github_event("push", github_payload("push"));
    assert_eq!(
        destinations(plugin.handle_blocking(&push).expect("plugin runs")),
        ["fallback"]
    );
}

#[test]
fn routes_by_a_body_field_and_drops_unrouted_values_without_default() {
    let config = json!({ "field": { "pointer": "/action" }, "routes": { "opened": "triage" } });
    let plugin = load("route_by_field", &config);
    let payload = github_payload("pull_request.opened");
    let verdict = plugin
        .handle_blocking(&github_event("pull_request", payload.clone()))
        .expect("plugin runs");
    match verdict {
        Verdict::FanOut(deliveries) => {
            assert_eq!(deliveries.len(), 1);
            assert_eq!(deliveries[0].destination, "triage");
            assert_eq!(
                deliveries[0].event.body, payload,
                "the event goes unchanged"
            );
        }
        other => panic!("expected fan-out, got {other:?}"),
    }
    let closed = github_event("pull_request", github_payload("pull_request.closed"));
    assert!(matches!(
        plugin.handle_blocking(&closed).expect("plugin runs"),
        Verdict::Drop(_)
    ));
}
