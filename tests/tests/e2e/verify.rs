//! Sender verification in a running router, for every preset: genuine requests pass, forgeries,
//! wrong or stale signatures and missing headers get 401 with the reason, and nothing refused is
//! delivered. Requests are signed by the test's own signers (`webhook_router_tests::signing`).

use webhook_router_tests::signing::{hex_hmac_sha256, public_key_hex, public_url, sign, unix_now};
use webhook_router_tests::wasm::module;
use webhook_router_tests::{Sink, TestRouter};

use crate::{PATIENCE, destination, route};

const SECRET: &str = "s3cr3t-current";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_STANDARD_SECRET: &str = "whsec_b2xkLXNlY3JldA==";
/// The ed25519 seed (hex) the Discord tests sign with; the route holds its public key.
const DISCORD_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// The `verify` table of a route for `preset`, with an old secret first and the current one
/// second (rotation).
fn verify_table(preset: &str) -> String {
    match preset {
        "standard-webhooks" => format!(
            "verify = {{ preset = \"{preset}\", secrets = [\"{OLD_STANDARD_SECRET}\", \"{STANDARD_SECRET}\"] }}\n"
        ),
        "hmac" => format!(
            "verify = {{ preset = \"hmac\", secrets = [\"old\", \"{SECRET}\"], header = \"X-Signature\", \
             prefix = \"sha256=\", timestamp_header = \"X-Timestamp\" }}\n"
        ),
        "twilio" | "square" => format!(
            "verify = {{ preset = \"{preset}\", secrets = [\"old\", \"{SECRET}\"], public_url = \"{}\" }}\n",
            public_url(preset)
        ),
        "discord" => format!(
            "verify = {{ preset = \"discord\", public_key = \"{}\" }}\n",
            public_key_hex(DISCORD_SEED)
        ),
        _ => format!("verify = {{ preset = \"{preset}\", secrets = [\"old\", \"{SECRET}\"] }}\n"),
    }
}

fn secret_of(preset: &str) -> &'static str {
    match preset {
        "standard-webhooks" => STANDARD_SECRET,
        "discord" => DISCORD_SEED,
        _ => SECRET,
    }
}

/// A secret of the right form that the route does not hold.
fn wrong_secret_of(preset: &str) -> &'static str {
    match preset {
        "standard-webhooks" => "whsec_d3Jvbmc=",
        "discord" => "0000000000000000000000000000000000000000000000000000000000000001",
        _ => "wrong",
    }
}

/// What `preset`'s sender would post at Unix second `timestamp`.
fn body_for(preset: &str, timestamp: u64) -> Vec<u8> {
    match preset {
        "twilio" => {
            b"MessageSid=SM0123&From=%2B15005550006&To=%2B15005550001&Body=Hello+there".to_vec()
        }
        "linear" => format!(
            r#"{{"action":"create","type":"Issue","webhookTimestamp":{}}}"#,
            timestamp * 1000
        )
        .into_bytes(),
        _ => br#"{"event":"order.created","id":42}"#.to_vec(),
    }
}

const PRESETS: [&str; 16] = [
    "github",
    "stripe",
    "shopify",
    "slack",
    "standard-webhooks",
    "hmac",
    "gitlab",
    "bitbucket",
    "twilio",
    "discord",
    "linear",
    "paddle",
    "zoom",
    "square",
    "intercom",
    "pagerduty",
];
/// Presets that sign a timestamp.
const TIMED: [&str; 8] = [
    "stripe",
    "slack",
    "standard-webhooks",
    "hmac",
    "discord",
    "linear",
    "paddle",
    "zoom",
];
/// The preset whose sender sends its secret rather than signing the body.
const UNSIGNED_BODY: &str = "gitlab";

async fn post(
    router: &TestRouter,
    path: &str,
    body: &[u8],
    headers: &[(String, String)],
) -> (u16, serde_json::Value) {
    router.post_from(&router.client, path, body, headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preset_passes_genuine_requests_and_refuses_the_rest() {
    let sink = Sink::healthy().await;
    let mut config = destination("sink", &sink.url("/in"), 3);
    for preset in PRESETS {
        config.push_str(&route(preset, &format!("/hooks/{preset}"), &["sink"]));
        config.push_str(&verify_table(preset));
    }
    let router = TestRouter::start(&config).await;

    let mut genuine = Vec::new();
    for preset in PRESETS {
        let path = format!("/hooks/{preset}");
        let now = unix_now();
        let body = &body_for(preset, now)[..];
        let signed = sign(preset, secret_of(preset), body, now);

        let (status, answer) = post(&router, &path, body, &signed).await;
        assert_eq!(
            status, 202,
            "{preset}: genuine, signed with the second secret: {answer}"
        );
        genuine.push(body.to_vec());

        if preset != UNSIGNED_BODY {
            let mut flipped = body.to_vec();
            flipped[5] ^= 1;
            let (status, answer) = post(&router, &path, &flipped, &signed).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (401, Some("signature mismatch")),
                "{preset}: flipped byte"
            );
        }

        let forged = sign(preset, wrong_secret_of(preset), body, now);
        let (status, answer) = post(&router, &path, body, &forged).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("signature mismatch")),
            "{preset}: wrong secret"
        );

        let (status, answer) = post(&router, &path, body, &[]).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("missing signature header")),
            "{preset}: unsigned"
        );

        if TIMED.contains(&preset) {
            let old_body = body_for(preset, now - 600);
            let stale = sign(preset, secret_of(preset), &old_body, now - 600);
            let (status, answer) = post(&router, &path, &old_body, &stale).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (401, Some("timestamp outside tolerance")),
                "{preset}: ten minutes old"
            );
        }

        let failures = |reason: &str| {
            format!("webhook_verification_failures_total{{route=\"{preset}\",reason=\"{reason}\"}}")
        };
        let mismatches = if preset == UNSIGNED_BODY { 1.0 } else { 2.0 };
        assert_eq!(
            router.metric(&failures("mismatch")).await,
            Some(mismatches),
            "{preset}"
        );
        assert_eq!(
            router.metric(&failures("missing_header")).await,
            Some(1.0),
            "{preset}"
        );
        let stale_count = if TIMED.contains(&preset) { 1.0 } else { 0.0 };
        assert_eq!(
            router.metric(&failures("timestamp")).await,
            Some(stale_count),
            "{preset}"
        );
    }

    sink.wait_for_delivered(genuine.len(), PATIENCE).await;
    wait_until_idle(&router).await;
    let mut delivered: Vec<Vec<u8>> = sink.requests().iter().map(|r| r.body.to_vec()).collect();
    delivered.sort();
    genuine.sort();
    assert_eq!(delivered, genuine, "refused requests are never delivered");
}

#[tokio::test]
async fn plugins_see_only_verified_events_and_which_preset_verified_them() {
    let sink = Sink::healthy().await;
    let tell = |id: &str, path: &str, verify: &str| {
        format!(
            "{}{verify}[[routes.plugins]]\nmodule = \"{}\"\nconfig = {{ template = {{ verified = \"{{{{header:x-webhook-verified}}}}\" }} }}\n",
            route(id, path, &["sink"]),
            module("json_map").display()
        )
    };
    let config = format!(
        "{}{}{}",
        destination("sink", &sink.url("/in"), 3),
        tell("github", "/hooks/github", &verify_table("github")),
        tell("open", "/hooks/open", ""),
    );
    let router = TestRouter::start(&config).await;
    let body = br#"{"zen":"Design for failure."}"#;
    let spoof = ("x-webhook-verified".to_owned(), "github".to_owned());

    let mut signed = sign("github", SECRET, body, unix_now());
    signed.push(spoof.clone());
    assert_eq!(post(&router, "/hooks/github", body, &signed).await.0, 202);
    // A sender cannot claim verification on a route that does not verify.
    assert_eq!(post(&router, "/hooks/open", body, &[spoof]).await.0, 202);

    let delivered = sink.wait_for_delivered(2, PATIENCE).await;
    let mut seen: Vec<serde_json::Value> = delivered
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json body"))
        .collect();
    seen.sort_by_key(|v| v.to_string());
    assert_eq!(
        seen,
        [
            serde_json::json!({ "verified": "github" }),
            serde_json::json!({ "verified": null })
        ]
    );
}

#[tokio::test]
async fn deliveries_are_signed_with_every_secret_and_a_receiver_accepts_them() {
    let sink = Sink::healthy().await;
    let (first, second) = (STANDARD_SECRET, OLD_STANDARD_SECRET);
    let config = format!(
        "{}sign = {{ scheme = \"standard-webhooks\", secrets = [\"{first}\", \"{second}\"] }}\n{}\
         unverified = \"sign-anyway\"\n",
        destination("sink", &sink.url("/in"), 3),
        route("signed", "/hooks/signed", &["sink"]),
    );
    let router = TestRouter::start(&config).await;
    let body = br#"{"type":"invoice.paid"}"#;
    let (status, answer) = post(&router, "/hooks/signed", body, &[]).await;
    assert_eq!(status, 202);

    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    let headers = &delivered[0].headers;
    assert_eq!(headers["webhook-id"], answer["id"].as_str().expect("id"));
    let timestamp: u64 = headers["webhook-timestamp"]
        .to_str()
        .expect("text")
        .parse()
        .expect("unix seconds");
    assert!(timestamp.abs_diff(unix_now()) < 60, "signed now");
    let signatures = headers["webhook-signature"].to_str().expect("text");
    assert_eq!(
        signatures.split(' ').count(),
        2,
        "one signature per secret: {signatures}"
    );
    for secret in [first, second] {
        assert!(
            webhook_router_tests::signing::standard_signature_valid(headers, body, secret),
            "a receiver holding {secret} accepts the delivery"
        );
    }
    assert!(!webhook_router_tests::signing::standard_signature_valid(
        headers, b"{}", first
    ));
}

#[tokio::test]
async fn a_github_delivery_posted_twice_is_delivered_once_with_one_id() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}{}dedup = {{}}\n",
        destination("sink", &sink.url("/in"), 3),
        route("github", "/hooks/github", &["sink"]),
        verify_table("github"),
    );
    let router = TestRouter::start(&config).await;
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let mut headers = sign("github", SECRET, body, unix_now());
    headers.push((
        "x-github-delivery".to_owned(),
        "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
    ));

    let (first_status, first) = post(&router, "/hooks/github", body, &headers).await;
    let (second_status, second) = post(&router, "/hooks/github", body, &headers).await;
    assert_eq!((first_status, second_status), (202, 202));
    assert_eq!(
        first["id"], second["id"],
        "the duplicate is answered with the original id"
    );

    // Another delivery id is a new event.
    headers.last_mut().expect("delivery header").1 = "another-delivery".to_owned();
    let (third_status, third) = post(&router, "/hooks/github", body, &headers).await;
    assert_eq!(third_status, 202);
    assert_ne!(third["id"], first["id"]);

    sink.wait_for_delivered(2, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        sink.requests().len(),
        2,
        "the duplicate was not queued again"
    );
    assert_eq!(
        router
            .metric("webhook_duplicates_total{route=\"github\"}")
            .await,
        Some(1.0)
    );
}

/// Waits until the router holds no event: everything accepted has been delivered.
async fn wait_until_idle(router: &TestRouter) {
    router
        .wait_for_metric("webhook_queue_depth", 0.0, PATIENCE)
        .await;
}

#[tokio::test]
async fn svix_deliveries_pass_the_standard_webhooks_preset_under_either_header_names() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("standard", "/hooks/standard", &["sink"]),
        verify_table("standard-webhooks"),
    );
    let router = TestRouter::start(&config).await;
    let body = br#"{"type":"invoice.paid"}"#;
    // Two messages, a second apart, so each has its own id (`msg_<timestamp>`): the same id
    // under the other header names would be a duplicate.
    for (sender, age) in [("svix", 1), ("standard-webhooks", 0)] {
        let now = unix_now() - age;
        let (status, answer) = post(
            &router,
            "/hooks/standard",
            body,
            &sign(sender, STANDARD_SECRET, body, now),
        )
        .await;
        assert_eq!(status, 202, "{sender}: {answer}");
        let forged = sign(sender, "whsec_d3Jvbmc=", body, now);
        let (status, answer) = post(&router, "/hooks/standard", body, &forged).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("signature mismatch")),
            "{sender}: wrong secret"
        );
        let stale = sign(sender, STANDARD_SECRET, body, now - 600);
        let (status, answer) = post(&router, "/hooks/standard", body, &stale).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("timestamp outside tolerance")),
            "{sender}: ten minutes old"
        );
    }
    wait_until_idle(&router).await;
    assert_eq!(
        sink.delivered().len(),
        2,
        "both genuine deliveries, nothing else"
    );
}

#[tokio::test]
async fn shopify_event_webhooks_pass_under_the_unprefixed_header() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}{}",
        destination("sink", &sink.url("/in"), 3),
        route("shopify", "/hooks/shopify", &["sink"]),
        verify_table("shopify"),
    );
    let router = TestRouter::start(&config).await;
    let body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    for sender in ["shopify-events", "shopify"] {
        let signed = sign(sender, SECRET, body, unix_now());
        let (status, answer) = post(&router, "/hooks/shopify", body, &signed).await;
        assert_eq!(status, 202, "{sender}: {answer}");
        let (status, _) = post(&router, "/hooks/shopify", &body[1..], &signed).await;
        assert_eq!(status, 401, "{sender}: tampered");
    }
    wait_until_idle(&router).await;
    assert_eq!(
        sink.delivered().len(),
        2,
        "both genuine deliveries, nothing else"
    );
}

#[tokio::test]
async fn a_whsec_secret_without_its_base64_padding_verifies_as_the_padded_one() {
    let sink = Sink::healthy().await;
    let unpadded = OLD_STANDARD_SECRET.trim_end_matches('=');
    assert_ne!(unpadded, OLD_STANDARD_SECRET, "the vector needs padding");
    let config = format!(
        "{}{}verify = {{ preset = \"standard-webhooks\", secrets = [\"{unpadded}\"] }}\n",
        destination("sink", &sink.url("/in"), 3),
        route("standard", "/hooks/standard", &["sink"]),
    );
    let router = TestRouter::start(&config).await;
    let body = br#"{"type":"invoice.paid"}"#;
    // Signed with the padded form, as a sender's library decodes it.
    let signed = sign("standard-webhooks", OLD_STANDARD_SECRET, body, unix_now());
    let (status, answer) = post(&router, "/hooks/standard", body, &signed).await;
    assert_eq!(status, 202, "{answer}");
    sink.wait_for_delivered(1, PATIENCE).await;
}

/// Posts `body` signed for `preset` and returns the status and the answer's JSON.
async fn post_signed(router: &TestRouter, preset: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let signed = sign(preset, secret_of(preset), body, unix_now());
    post(router, &format!("/hooks/{preset}"), body, &signed).await
}

#[tokio::test]
async fn routes_that_answer_challenges_answer_verified_handshakes_and_deliver_the_rest() {
    let sink = Sink::healthy().await;
    let mut config = destination("sink", &sink.url("/in"), 3);
    for preset in ["slack", "zoom", "discord"] {
        config.push_str(&route(preset, &format!("/hooks/{preset}"), &["sink"]));
        config.push_str(&verify_table(preset).replace(" }\n", ", challenge = true }\n"));
    }
    // A route that does not answer challenges delivers the handshake like any event.
    config.push_str(&route("plain-slack", "/hooks/plain-slack", &["sink"]));
    config.push_str(&verify_table("slack"));
    let router = TestRouter::start(&config).await;

    let slack = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let (status, answer) = post_signed(&router, "slack", slack).await;
    assert_eq!(
        (status, answer),
        (
            200,
            serde_json::json!({ "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" })
        )
    );

    let zoom = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1700000000000,"event":"endpoint.url_validation"}"#;
    let (status, answer) = post_signed(&router, "zoom", zoom).await;
    // HMAC-SHA256 of the plain token, keyed with the secret that signed the request.
    let encrypted = hex_hmac_sha256(SECRET.as_bytes(), b"qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        (status, answer),
        (
            200,
            serde_json::json!({ "plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": encrypted })
        )
    );

    let ping = br#"{"id":"1209912400921006080","type":1,"application_id":"1209912400921006081"}"#;
    let (status, answer) = post_signed(&router, "discord", ping).await;
    assert_eq!((status, answer), (200, serde_json::json!({ "type": 1 })));

    // Handshakes are verified first: an unsigned or forged one is refused.
    let (status, _) = post(&router, "/hooks/slack", slack, &[]).await;
    assert_eq!(status, 401, "unsigned handshake");
    let forged = sign("zoom", "wrong", zoom, unix_now());
    let (status, _) = post(&router, "/hooks/zoom", zoom, &forged).await;
    assert_eq!(status, 401, "forged handshake");

    // Other events on the same routes are delivered as usual.
    let event = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    assert_eq!(post_signed(&router, "slack", event).await.0, 202);
    let (status, _) = post(
        &router,
        "/hooks/plain-slack",
        slack,
        &sign("slack", SECRET, slack, unix_now()),
    )
    .await;
    assert_eq!(
        status, 202,
        "a route without `challenge` delivers the handshake"
    );

    sink.wait_for_delivered(2, PATIENCE).await;
    wait_until_idle(&router).await;
    let mut delivered: Vec<Vec<u8>> = sink.requests().iter().map(|r| r.body.to_vec()).collect();
    delivered.sort();
    let mut expected = vec![event.to_vec(), slack.to_vec()];
    expected.sort();
    assert_eq!(delivered, expected, "answered handshakes are not delivered");
}

#[tokio::test]
async fn presets_default_to_their_senders_delivery_ids_for_dedup() {
    let sink = Sink::healthy().await;
    let mut config = destination("sink", &sink.url("/in"), 3);
    // A signed id under Svix's header name, an unsigned header id, and an id in the body.
    for preset in ["standard-webhooks", "linear", "paddle"] {
        config.push_str(&route(preset, &format!("/hooks/{preset}"), &["sink"]));
        config.push_str(&verify_table(preset));
        config.push_str("dedup = {}\n");
    }
    let router = TestRouter::start(&config).await;
    let now = unix_now();

    // The signer names each message msg_<timestamp>: another second is another delivery id.
    let body = br#"{"type":"invoice.paid"}"#;
    let first = sign("svix", STANDARD_SECRET, body, now);
    let other = sign("svix", STANDARD_SECRET, body, now - 1);
    let path = "/hooks/standard-webhooks";
    let answers = [
        post(&router, path, body, &first).await,
        post(&router, path, body, &first).await,
        post(&router, path, body, &other).await,
    ];
    assert!(
        answers.iter().all(|(status, _)| *status == 202),
        "{answers:?}"
    );
    assert_eq!(answers[0].1["id"], answers[1].1["id"], "svix-id repeated");
    assert_ne!(answers[0].1["id"], answers[2].1["id"], "another svix-id");

    let body = body_for("linear", now);
    let mut headers = sign("linear", SECRET, &body, now);
    headers.push(("linear-delivery".to_owned(), "delivery-1".to_owned()));
    let first = post(&router, "/hooks/linear", &body, &headers).await;
    let repeat = post(&router, "/hooks/linear", &body, &headers).await;
    headers.last_mut().expect("delivery header").1 = "delivery-2".to_owned();
    let other = post(&router, "/hooks/linear", &body, &headers).await;
    assert_eq!((first.0, repeat.0, other.0), (202, 202, 202));
    assert_eq!(first.1["id"], repeat.1["id"], "Linear-Delivery repeated");
    assert_ne!(first.1["id"], other.1["id"], "another Linear-Delivery");

    let body =
        br#"{"event_id":"evt_01h8bxcfmq1ahyw9ycn81nsvk7","event_type":"subscription.created"}"#;
    let headers = sign("paddle", SECRET, body, now);
    let first = post(&router, "/hooks/paddle", body, &headers).await;
    let repeat = post(&router, "/hooks/paddle", body, &headers).await;
    assert_eq!((first.0, repeat.0), (202, 202));
    assert_eq!(
        first.1["id"], repeat.1["id"],
        "the body's event_id repeated"
    );

    wait_until_idle(&router).await;
    assert_eq!(
        sink.delivered().len(),
        5,
        "two events each for svix and linear, one for paddle"
    );
    for preset in ["standard-webhooks", "linear", "paddle"] {
        assert_eq!(
            router
                .metric(&format!("webhook_duplicates_total{{route=\"{preset}\"}}"))
                .await,
            Some(1.0),
            "{preset}"
        );
    }
}
