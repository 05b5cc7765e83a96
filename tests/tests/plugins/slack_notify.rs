//! slack-notify: GitHub events become the Slack messages a reader expects.

use serde_json::json;
use webhook_router::plugin::bindings::Verdict;
use webhook_router_tests::wasm::{HandleBlocking, github_event, github_payload, load, with_json};

use crate::{forwarded, header, json_body};

fn message(config: &serde_json::Value, kind: &str, payload: Vec<u8>) -> serde_json::Value {
    let plugin = load("slack_notify", config);
    let out = forwarded(
        plugin
            .handle_blocking(&github_event(kind, payload))
            .expect("plugin runs"),
    );
    assert_eq!(header(&out, "content-type"), Some("application/json"));
    json_body(&out)
}

#[test]
fn a_pull_request_opened() {
    let got = message(
        &json!({}),
        "pull_request",
        github_payload("pull_request.opened"),
    );
    let expected = json!({
        "text": "[Codertocat/Hello-World] Pull request #2 Update the README with new information. opened by Codertocat",
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text":
                "*<https://github.com/Codertocat/Hello-World|Codertocat/Hello-World>* Pull request <https://github.com/Codertocat/Hello-World/pull/2|#2 Update the README with new information.> opened by *Codertocat*" } },
            { "type": "section", "text": { "type": "mrkdwn", "text": "`changes` → `master`" } }
        ]
    });
    assert_eq!(got, expected);
}

#[test]
fn a_push_that_deletes_a_tag() {
    let got = message(&json!({}), "push", github_payload("push"));
    let expected = json!({
        "text": "[Codertocat/Hello-World] tag simple-tag deleted by Codertocat",
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text":
                "*<https://github.com/Codertocat/Hello-World|Codertocat/Hello-World>* tag `simple-tag` deleted by *Codertocat*" } }
        ]
    });
    assert_eq!(got, expected);
}

#[test]
fn a_push_of_two_commits_to_main() {
    let commits = json!([
        {
            "id": "a10867b14bb761a232cd80139fbd4c0d33264240",
            "message": "Fix the widget\n\nLonger description",
            "url": "https://github.com/Codertocat/Hello-World/commit/a10867b14bb761a232cd80139fbd4c0d33264240",
            "author": { "name": "Mona", "email": "mona@example.com" }
        },
        {
            "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "message": "Add docs",
            "url": "https://github.com/Codertocat/Hello-World/commit/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "author": { "name": "Codertocat", "email": "c@example.com" }
        }
    ]);
    let mut payload = github_payload("push");
    for (pointer, value) in [
        ("/ref", json!("refs/heads/main")),
        ("/deleted", json!(false)),
        ("/after", json!("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c")),
        (
            "/compare",
            json!("https://github.com/Codertocat/Hello-World/compare/6113728f27ae...0d1a26e67d8f"),
        ),
        ("/commits", commits),
    ] {
        payload = with_json(&payload, pointer, value);
    }
    let config = json!({ "username": "GitHub", "icon_emoji": ":octocat:", "max_commits": 1 });
    let got = message(&config, "push", payload);
    let expected = json!({
        "username": "GitHub",
        "icon_emoji": ":octocat:",
        "text": "[Codertocat/Hello-World] 2 new commits pushed to main by Codertocat",
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text":
                "*<https://github.com/Codertocat/Hello-World|Codertocat/Hello-World>* <https://github.com/Codertocat/Hello-World/compare/6113728f27ae...0d1a26e67d8f|2 new commits> pushed to `main` by *Codertocat*" } },
            { "type": "section", "text": { "type": "mrkdwn", "text":
                "<https://github.com/Codertocat/Hello-World/commit/a10867b14bb761a232cd80139fbd4c0d33264240|`a10867b`> Fix the widget – Mona\n_…and 1 more_" } }
        ]
    });
    assert_eq!(got, expected);
}

#[test]
fn other_events_are_dropped_or_forwarded_as_configured() {
    let plugin = load("slack_notify", &json!({}));
    let ping = github_event("ping", github_payload("ping"));
    assert!(matches!(
        plugin.handle_blocking(&ping).expect("plugin runs"),
        Verdict::Drop(_)
    ));

    let plugin = load(
        "slack_notify",
        &json!({ "events": ["push"], "other_events": "forward" }),
    );
    let payload = github_payload("issues.opened");
    let out = forwarded(
        plugin
            .handle_blocking(&github_event("issues", payload.clone()))
            .expect("plugin runs"),
    );
    assert_eq!(out.body, payload, "forwarded unchanged");
}
