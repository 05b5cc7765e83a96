//! The event record in a running router: each plugin's verdict, a dropped event, a fan-out to
//! two destinations, the list's filters, bad queries, a delivery pending from receipt and again
//! once its dead letter is replayed, and the record turned off.

use webhook_router_tests::wasm::{github_payload, module, with_json};
use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, destination, route};

fn plugin(name: &str, rest: &str) -> String {
    format!(
        "[[routes.plugins]]\nmodule = \"{}\"\n{rest}\n",
        module(name).display()
    )
}

/// POSTs a GitHub `kind` event; the id of the 202.
async fn post_github(router: &TestRouter, kind: &str, body: Vec<u8>) -> String {
    let answer = router
        .client
        .post(router.url("/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", kind)
        .body(body)
        .send()
        .await
        .expect("router answers");
    assert_eq!(answer.status(), 202);
    let json: serde_json::Value = answer.json().await.expect("json");
    json["id"].as_str().expect("id").to_owned()
}

fn verdicts(record: &serde_json::Value) -> Vec<(String, String)> {
    record["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|v| {
            (
                v["plugin"].as_str().unwrap_or("?").to_owned(),
                v["verdict"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_shows_each_plugins_verdict_and_every_destinations_outcome() {
    let sink = Sink::healthy().await;
    let refusing = Sink::start(|_| Reply::status(400)).await;
    let config = format!(
        "{}{}{}{}{}",
        destination("sink", &sink.url("/in"), 3),
        destination("refusing", &refusing.url("/in"), 3),
        route("github", "/hooks/github", &["sink", "refusing"]),
        plugin(
            "event_filter",
            "name = \"main-only\"\nconfig = { allow_events = [\"push\"], json = [{ pointer = \"/ref\", equals = \"refs/heads/main\" }] }"
        ),
        plugin(
            "json_map",
            "config = { template = { repo = \"{{/repository/full_name}}\" } }"
        ),
    );
    let router = TestRouter::start(&config).await;
    let main = with_json(
        &github_payload("push"),
        "/ref",
        serde_json::json!("refs/heads/main"),
    );
    let forwarded = post_github(&router, "push", main).await;
    let dropped = post_github(&router, "issues", github_payload("issues.opened")).await;
    router.wait_idle(PATIENCE).await;

    let record = router.admin_json(&format!("/events/{forwarded}")).await;
    assert_eq!(
        verdicts(&record),
        [
            // A filter that lets the event through unchanged answers `pass`.
            ("main-only".to_owned(), "pass".to_owned()),
            ("json_map".to_owned(), "forward".to_owned())
        ],
        "{record}"
    );
    assert_eq!(record["decision"], "queued");
    // One destination took it, the other refused it for good (400: not retried).
    assert_eq!(record["outcome"], "dead_lettered", "{record}");
    let destinations = record["destinations"].as_array().expect("destinations");
    let outcome_of = |name: &str| {
        destinations
            .iter()
            .find(|d| d["name"] == name)
            .map(|d| (d["outcome"].clone(), d["attempts"].as_array().map(Vec::len)))
    };
    assert_eq!(
        outcome_of("sink"),
        Some((serde_json::json!("delivered"), Some(1)))
    );
    assert_eq!(
        outcome_of("refusing"),
        Some((serde_json::json!("dead_lettered"), Some(1)))
    );
    assert!(
        record.get("body").is_none(),
        "bodies are kept only where the route says"
    );

    let record = router.admin_json(&format!("/events/{dropped}")).await;
    assert_eq!(record["outcome"], "dropped", "{record}");
    assert_eq!(
        verdicts(&record),
        [("main-only".to_owned(), "drop".to_owned())]
    );
    assert!(record["plugins"][0]["detail"].is_string(), "{record}");
    assert_eq!(record["destinations"], serde_json::json!([]));

    // The filters.
    let page = router.admin_json("/events?outcome=dropped").await;
    assert_eq!(ids(&page), [dropped.as_str()]);
    let page = router
        .admin_json("/events?destination=sink&outcome=delivered")
        .await;
    assert_eq!(ids(&page), [forwarded.as_str()]);
    let page = router.admin_json("/events?route=github").await;
    assert_eq!(ids(&page), [dropped, forwarded], "newest first");
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
    let page = router.admin_json("/events?route=other").await;
    assert_eq!(ids(&page), Vec::<String>::new());

    // Bad requests name what is wrong.
    for (query, status) in [
        ("/events?outcome=lost", 400),
        ("/events?limit=0", 400),
        ("/events?cursor=nonsense", 400),
        ("/events/not-an-id", 404),
        ("/events/0190a8f0-0000-7000-8000-000000000000", 404),
    ] {
        let answer = router
            .client
            .get(router.admin_url(query))
            .send()
            .await
            .expect("admin answers");
        assert_eq!(answer.status().as_u16(), status, "{query}");
    }
}

/// The destinations of `record`: each one's name, outcome and number of attempts.
fn deliveries(record: &serde_json::Value) -> Vec<(String, String, usize)> {
    record["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("?").to_owned(),
                d["outcome"].as_str().unwrap_or("?").to_owned(),
                d["attempts"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_pending_from_receipt_and_again_once_its_dead_letter_is_replayed() {
    // The first request is refused for good (400); every later one is held unanswered.
    let flaky = Sink::start(|n| {
        if n == 1 {
            Reply::status(400)
        } else {
            Reply::hang()
        }
    })
    .await;
    let config = format!(
        "[destinations.flaky]\nurl = \"{}\"\ntimeout = \"60s\"\n{}",
        flaky.url("/in"),
        route("hooks", "/hooks", &["flaky"]),
    );
    let router = TestRouter::start(&config).await;
    let posted = async |n: u32| {
        let answer = router.post_json("/hooks", &format!("{{\"n\":{n}}}")).await;
        assert_eq!(answer.status(), 202);
        let json: serde_json::Value = answer.json().await.expect("json");
        json["id"].as_str().expect("id").to_owned()
    };
    let refused = posted(1).await;
    router
        .wait_for_metric("webhook_dead_letters", 1.0, PATIENCE)
        .await;
    let record = router.admin_json(&format!("/events/{refused}")).await;
    assert_eq!(record["outcome"], "dead_lettered", "{record}");

    // Queued for its destination from the 202 on, before any attempt ends (this one hangs).
    let held = posted(2).await;
    let record = router.admin_json(&format!("/events/{held}")).await;
    assert_eq!(record["outcome"], "pending", "{record}");
    assert_eq!(
        deliveries(&record),
        [("flaky".to_owned(), "pending".to_owned(), 0)]
    );

    // Replayed, the dead letter's delivery is pending again, with its first attempt kept.
    let replayed = router
        .client
        .post(router.admin_url("/dead-letters/replay?destination=flaky"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(replayed.status(), 202);
    let record = router.admin_json(&format!("/events/{refused}")).await;
    assert_eq!(record["outcome"], "pending", "{record}");
    assert_eq!(
        deliveries(&record),
        [("flaky".to_owned(), "pending".to_owned(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_record_off_events_are_not_recorded() {
    let sink = Sink::healthy().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[inspect]\nevents = 0\n{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("hooks", "/hooks", &["sink"]),
    );
    let router = TestRouter::start(&config).await;
    let answer = router.post_json("/hooks", "{}").await;
    assert_eq!(answer.status(), 202);
    router.wait_idle(PATIENCE).await;
    let listed = router
        .client
        .get(router.admin_url("/events"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(listed.status().as_u16(), 404);
    let error: serde_json::Value = listed.json().await.expect("json");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("events = 0")),
        "{error}"
    );
    assert_eq!(router.metric("webhook_inspect_events").await, None);
}
