//! json-map: a new body from a template of JSON pointers, headers set and removed.

use serde_json::json;
use webhook_router::plugin::bindings::Verdict;
use webhook_router_tests::wasm::{HandleBlocking, github_event, github_payload, load};

use crate::{forwarded, header, json_body};

#[test]
fn builds_a_body_from_a_pull_request() {
    let config = json!({
        "template": {
            "repo": "{{/repository/full_name}}",
            "number": "{{/pull_request/number}}",
            "summary": "PR #{{/pull_request/number}} {{/action}} by {{/sender/login}}",
            "kind": "{{header:x-github-event}}",
            "missing": "{{/no/such/field}}"
        },
        "set_headers": { "x-repo": "{{/repository/full_name}}" },
        "remove_headers": ["x-github-event"]
    });
    let plugin = load("json_map", &config);
    let event = github_event("pull_request", github_payload("pull_request.opened"));
    let out = forwarded(plugin.handle_blocking(&event).expect("plugin runs"));
    assert_eq!(
        json_body(&out),
        json!({
            "repo": "Codertocat/Hello-World",
            "number": 2,
            "summary": "PR #2 opened by Codertocat",
            "kind": "pull_request",
            "missing": null
        })
    );
    assert_eq!(header(&out, "x-repo"), Some("Codertocat/Hello-World"));
    assert_eq!(header(&out, "x-github-event"), None);
    assert_eq!(header(&out, "content-type"), Some("application/json"));
}

#[test]
fn missing_references_can_drop_or_fail() {
    let event = github_event("push", github_payload("push"));
    let drop = load(
        "json_map",
        &json!({ "template": "{{/pull_request}}", "on_missing": "drop" }),
    );
    assert!(matches!(
        drop.handle_blocking(&event).expect("plugin runs"),
        Verdict::Drop(_)
    ));
    let fail = load(
        "json_map",
        &json!({ "template": "{{/pull_request}}", "on_missing": "error" }),
    );
    let failure = fail
        .handle_blocking(&event)
        .expect_err("a missing reference fails");
    assert!(failure.message.contains("/pull_request"), "{failure}");
}
