//! redact: every `email` of a push payload is masked or removed.

use serde_json::{Value, json};
use webhook_router_tests::wasm::{HandleBlocking, github_event, github_payload, load};

use crate::{forwarded, header, json_body};

/// Every value of a member named `key`, at any depth.
fn values_of<'a>(json: &'a Value, key: &str, found: &mut Vec<&'a Value>) {
    match json {
        Value::Object(members) => {
            for (name, value) in members {
                if name == key {
                    found.push(value);
                }
                values_of(value, key, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| values_of(item, key, found)),
        _ => {}
    }
}

fn emails(json: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    values_of(json, "email", &mut found);
    found
}

#[test]
fn masks_every_email_in_a_push() {
    let payload = github_payload("push");
    let original: Value = serde_json::from_slice(&payload).expect("fixture is JSON");
    let before = emails(&original);
    assert!(before.len() >= 2, "the fixture has emails to redact");
    assert!(
        before
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.contains('@')))
    );

    let plugin = load(
        "redact",
        &json!({ "keys": ["email"], "headers": ["x-github-event"], "mask": "[redacted]" }),
    );
    let event = forwarded(
        plugin
            .handle_blocking(&github_event("push", payload))
            .expect("plugin runs"),
    );
    assert_eq!(header(&event, "x-github-event"), Some("[redacted]"));
    let out = json_body(&event);
    let after = emails(&out);
    assert_eq!(after.len(), before.len(), "masked, not removed");
    assert!(after.iter().all(|v| *v == "[redacted]"), "{after:?}");
    let text = out.to_string();
    for address in before.iter().filter_map(|v| v.as_str()) {
        assert!(!text.contains(address), "{address} is left in the body");
    }
    assert_eq!(
        out["repository"]["full_name"], "Codertocat/Hello-World",
        "the rest is kept"
    );
}

#[test]
fn removes_emails_by_key_and_pointer_and_headers() {
    let payload = github_payload("push");
    let plugin = load(
        "redact",
        &json!({ "keys": ["email"], "pointers": ["/sender/login"], "mode": "remove", "headers": ["x-github-event"] }),
    );
    let event = forwarded(
        plugin
            .handle_blocking(&github_event("push", payload))
            .expect("plugin runs"),
    );
    let out = json_body(&event);
    assert!(emails(&out).is_empty());
    assert!(out["sender"].get("login").is_none());
    assert!(out["sender"].get("id").is_some());
    assert_eq!(header(&event, "x-github-event"), None);
    assert_eq!(header(&event, "content-type"), Some("application/json"));
}

#[test]
fn a_body_without_matches_passes_byte_for_byte() {
    let payload = github_payload("ping");
    let plugin = load("redact", &json!({ "keys": ["password"] }));
    let event = forwarded(
        plugin
            .handle_blocking(&github_event("ping", payload.clone()))
            .expect("plugin runs"),
    );
    assert_eq!(event.body, payload);
}
