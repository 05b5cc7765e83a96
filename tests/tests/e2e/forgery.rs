//! What forged and replayed requests can do to a running router, and what they cannot: spend a
//! verified route's rate limit, have a sender's credentials stored or passed on, replay a
//! genuine request within its signature's tolerance, or have a plugin fan an event out to a
//! destination the route does not name.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use webhook_router_tests::numbered::fresh_dir;
use webhook_router_tests::signing::{sign, unix_now};
use webhook_router_tests::wasm::{github_payload, module};
use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, destination, route};

const SECRET: &str = "s3cr3t-current";
/// The token GitLab sends as `X-Gitlab-Token`: the route's secret itself.
const GITLAB_TOKEN: &str = "glwht-7Xk2pQ9sVbN4mR8cT1zY";
const BEARER: &str = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXNlc3Npb24";
const COOKIE: &str = "session=c00k1e-8d7f6e5d";
/// The bearer token of the route that keeps `Authorization`.
const KEPT_BEARER: &str = "Bearer kept-0a9b8c7d";

/// A client whose requests come from `address` (any 127/8 address is loopback on Linux), so
/// that the router tells it apart from others by its address, as it would a sender's.
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(address))
        .build()
        .expect("client")
}

/// GitHub's headers for `body`: its signature and the delivery id `delivery`.
fn github_headers(secret: &str, body: &[u8], delivery: &str) -> Vec<(String, String)> {
    let mut headers = sign("github", secret, body, unix_now());
    headers.push(("x-github-delivery".to_owned(), delivery.to_owned()));
    headers.push(("x-github-event".to_owned(), "push".to_owned()));
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_forgeries_do_not_spend_the_genuine_senders_rate_limit() {
    let sink = Sink::healthy().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmax_body_bytes = \"4KiB\"\n\
         {}{}verify = {{ preset = \"github\", secrets = [\"{SECRET}\"] }}\n\
         rate_limit = {{ per_second = 1, burst = 3, unverified = {{ per_second = 1, burst = 5 }} }}\n",
        destination("sink", &sink.url("/in"), 3),
        route("github", "/hooks/github", &["sink"]),
    );
    let router = TestRouter::start(&config).await;
    let forger = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let sender = client_from(Ipv4Addr::LOCALHOST);
    let body = br#"{"ref":"refs/heads/main","forged":true}"#;

    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    let started = std::time::Instant::now();
    for n in 0..1000 {
        // Half sign with a wrong secret, half are not signed at all.
        let headers = if n % 2 == 0 {
            github_headers("wrong", body, &format!("forged-{n}"))
        } else {
            Vec::new()
        };
        let (status, _) = router
            .post_from(&forger, "/hooks/github", body, &headers)
            .await;
        *statuses.entry(status).or_default() += 1;
    }
    eprintln!(
        "1,000 forged posts in {:?}: {statuses:?}",
        started.elapsed()
    );
    let refused = statuses.get(&401).copied().unwrap_or_default();
    let limited = statuses.get(&429).copied().unwrap_or_default();
    assert_eq!(refused + limited, 1000, "{statuses:?}");
    // Five at once, then one a second, for as long as the loop took.
    assert!(
        (5..=60).contains(&refused) && limited >= 900,
        "the forger spends its own allowance: {statuses:?}"
    );

    // The genuine sender still has the route's whole burst.
    let genuine = br#"{"ref":"refs/heads/main","genuine":true}"#;
    let (status, answer) = router
        .post_from(
            &sender,
            "/hooks/github",
            genuine,
            &github_headers(SECRET, genuine, "delivery-0"),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let delivered = sink.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(&delivered[0].body[..], genuine);

    // And the route's limit still holds its genuine traffic: 3 at once in all.
    let mut genuine_statuses = Vec::new();
    for n in 1..6 {
        let body = format!(r#"{{"ref":"refs/heads/main","n":{n}}}"#);
        let headers = github_headers(SECRET, body.as_bytes(), &format!("delivery-{n}"));
        let (status, _) = router
            .post_from(&sender, "/hooks/github", body.as_bytes(), &headers)
            .await;
        genuine_statuses.push(status);
    }
    assert_eq!(genuine_statuses[..2], [202, 202], "{genuine_statuses:?}");
    assert!(genuine_statuses.contains(&429), "{genuine_statuses:?}");

    // Bodies refused before verification count against the client's allowance too. Their
    // signature header is well-formed (if wrong), so the head passes and the size refuses them.
    let oversized = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let mut oversized_statuses = Vec::new();
    for n in 0..7 {
        let body = vec![b'x'; 8192];
        let headers = github_headers("not-the-secret", &body, &format!("oversized-{n}"));
        let (status, _) = router
            .post_from(&oversized, "/hooks/github", &body, &headers)
            .await;
        oversized_statuses.push(status);
    }
    assert_eq!(oversized_statuses[..5], [413; 5], "{oversized_statuses:?}");
    assert_eq!(oversized_statuses[6], 429, "{oversized_statuses:?}");

    // The forger's address is still over its allowance; nothing forged was delivered.
    let (status, _) = router.post_from(&forger, "/hooks/github", body, &[]).await;
    assert_eq!(status, 429);
    router.wait_idle(PATIENCE).await;
    assert!(
        sink.requests().iter().all(|r| &r.body[..] != body),
        "no forgery is delivered"
    );
    assert_eq!(
        router
            .metric("webhook_requests_total{route=\"github\",status=\"401\"}")
            .await,
        Some(f64::from(refused))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_neither_journaled_nor_delivered_unless_kept() {
    // Every delivery to `sink` fails once and is dead-lettered: the events stay in the journal.
    let sink = Sink::start(|_| Reply::status(503)).await;
    let kept = Sink::healthy().await;
    let dir = fresh_dir(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "e2e",
        "credentials-journal",
    );
    // The sender's headers reach a destination only through a plugin: this one writes those a
    // plugin can see into the body.
    let tell = format!(
        "[[routes.plugins]]\nmodule = \"{}\"\nconfig = {{ template = {{ marker = \"{{{{header:x-request-marker}}}}\", \
         authorization = \"{{{{header:authorization}}}}\", cookie = \"{{{{header:cookie}}}}\", \
         token = \"{{{{header:x-gitlab-token}}}}\" }} }}\n",
        module("json_map").display()
    );
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [queue]\npath = \"{}\"\nfsync = \"always\"\n{}{}{}\
         verify = {{ preset = \"gitlab\", secrets = [\"{GITLAB_TOKEN}\"] }}\n{tell}{}{}keep_headers = [\"Authorization\"]\n{tell}",
        dir.display(),
        destination("sink", &sink.url("/in"), 1),
        destination("kept", &kept.url("/in"), 3),
        route("gitlab", "/hooks/gitlab", &["sink"]),
        route("open", "/hooks/open", &["sink"]),
        route("kept", "/hooks/kept", &["kept"]),
    );
    let router = TestRouter::start(&config).await;
    let credentials = |bearer: &str, extra: &[(&str, &str)]| -> Vec<(String, String)> {
        [
            ("authorization", bearer),
            ("cookie", COOKIE),
            ("x-request-marker", "kept-header-7f3a"),
        ]
        .iter()
        .chain(extra)
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
    };
    let gitlab = credentials(
        BEARER,
        &[
            ("x-gitlab-token", GITLAB_TOKEN),
            ("x-gitlab-event-uuid", "0f8f7c1e-uuid"),
        ],
    );
    let body = br#"{"object_kind":"push"}"#;
    let open_body = br#"{"marker":"open-body-9c2e"}"#;
    let client = reqwest::Client::new();
    for (path, body, headers) in [
        ("/hooks/gitlab", &body[..], &gitlab),
        ("/hooks/open", &open_body[..], &credentials(BEARER, &[])),
        ("/hooks/kept", &body[..], &credentials(KEPT_BEARER, &[])),
    ] {
        let (status, answer) = router.post_from(&client, path, body, headers).await;
        assert_eq!(status, 202, "{path}: {answer}");
    }
    let attempts = sink.wait_for(2, PATIENCE, |_| true).await;
    let at_kept = kept.wait_for_delivered(1, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        router.metric("webhook_dead_letters").await,
        Some(2.0),
        "both failed events are held as dead letters"
    );

    // At the destinations: what the plugins could see.
    let seen = |body: &[u8]| -> serde_json::Value { serde_json::from_slice(body).expect("json") };
    let mut bodies: Vec<serde_json::Value> = attempts.iter().map(|r| seen(&r.body)).collect();
    bodies.sort_by_key(ToString::to_string);
    assert_eq!(
        bodies,
        [
            serde_json::json!({ "marker": "kept-header-7f3a", "authorization": null, "cookie": null, "token": null }),
            serde_json::json!({ "marker": "open-body-9c2e" }),
        ]
    );
    assert_eq!(
        seen(&at_kept[0].body),
        serde_json::json!({ "marker": "kept-header-7f3a", "authorization": KEPT_BEARER, "cookie": null, "token": null }),
        "keep_headers keeps Authorization, and only it"
    );
    for attempt in attempts.iter().chain(&at_kept) {
        for name in ["authorization", "cookie", "x-gitlab-token"] {
            assert!(!attempt.headers.contains_key(name), "{name} was delivered");
        }
    }

    // In the journal's bytes: the events and their other headers are there, the credentials
    // are not (the route that keeps `Authorization` was sent another token).
    let mut journal = Vec::new();
    read_all(&dir, &mut journal);
    let holds = |needle: &str| {
        journal
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    for present in ["kept-header-7f3a", "open-body-9c2e", "0f8f7c1e-uuid"] {
        assert!(holds(present), "the journal holds {present}");
    }
    for secret in [GITLAB_TOKEN, BEARER, "c00k1e-8d7f6e5d"] {
        assert!(!holds(secret), "the journal holds {secret}");
    }
}

/// Appends the bytes of every file under `dir` to `out`.
fn read_all(dir: &Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).expect("read journal dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            read_all(&path, out);
        } else {
            out.extend(std::fs::read(&path).expect("read journal file"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_genuine_stripe_or_github_request_is_a_duplicate_by_default() {
    let sink = Sink::healthy().await;
    let config = format!(
        "{}{}verify = {{ preset = \"stripe\", secrets = [\"{SECRET}\"] }}\n\
         {}verify = {{ preset = \"github\", secrets = [\"{SECRET}\"] }}\n\
         {}verify = {{ preset = \"github\", secrets = [\"{SECRET}\"] }}\ndedup = false\n",
        destination("sink", &sink.url("/in"), 3),
        route("stripe", "/hooks/stripe", &["sink"]),
        route("github", "/hooks/github", &["sink"]),
        route("nodedup", "/hooks/nodedup", &["sink"]),
    );
    let router = TestRouter::start(&config).await;
    let client = reqwest::Client::new();
    let stripe_body = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","type":"payment_intent.succeeded"}"#;
    let stripe = sign("stripe", SECRET, stripe_body, unix_now());
    let github_body = github_payload("push");
    let github = github_headers(SECRET, &github_body, "72d3162e-cc78-11e3-81ab-4c9367dc0958");

    for (route, path, body, headers) in [
        ("stripe", "/hooks/stripe", &stripe_body[..], &stripe),
        ("github", "/hooks/github", &github_body[..], &github),
    ] {
        let (first_status, first) = router.post_from(&client, path, body, headers).await;
        // The captured request, replayed as it was.
        let (second_status, second) = router.post_from(&client, path, body, headers).await;
        assert_eq!((first_status, second_status), (202, 202), "{route}");
        assert_eq!(
            first["id"], second["id"],
            "{route}: the replay gets the original id"
        );
        assert_eq!(
            router
                .metric(&format!("webhook_duplicates_total{{route=\"{route}\"}}"))
                .await,
            Some(1.0),
            "{route}"
        );
    }
    // With `dedup = false`, the replay is a new event.
    let (_, first) = router
        .post_from(&client, "/hooks/nodedup", &github_body, &github)
        .await;
    let (status, second) = router
        .post_from(&client, "/hooks/nodedup", &github_body, &github)
        .await;
    assert_eq!(status, 202);
    assert_ne!(first["id"], second["id"]);

    sink.wait_for_delivered(4, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(
        sink.requests().len(),
        4,
        "one each from stripe and github, two from the route without dedup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_beyond_the_routes_destinations_is_refused_unless_listed() {
    let reviews = Sink::healthy().await;
    let triage = Sink::healthy().await;
    // `issues` events go to triage, which only the `listed` route names in `fan_out`.
    let plugin = format!(
        "[[routes.plugins]]\nmodule = \"{}\"\n\
         config = {{ field = {{ header = \"x-github-event\" }}, routes = {{ issues = [\"triage\", \"reviews\"] }}, default = \"reviews\" }}\n",
        module("route_by_field").display()
    );
    let config = format!(
        "{}{}{}{plugin}{}fan_out = [\"triage\"]\n{plugin}",
        destination("reviews", &reviews.url("/in"), 3),
        destination("triage", &triage.url("/in"), 3),
        route("unlisted", "/hooks/unlisted", &["reviews"]),
        route("listed", "/hooks/listed", &["reviews"]),
    );
    let router = TestRouter::start(&config).await;
    let client = reqwest::Client::new();
    let issue = github_payload("issues.opened");
    let event = [("x-github-event".to_owned(), "issues".to_owned())];

    let (status, answer) = router
        .post_from(&client, "/hooks/unlisted", &issue, &event)
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (500, Some("plugin failed")),
        "on_plugin_error = reject (the default) answers the refused fan-out"
    );
    assert_eq!(
        router
            .metric(
                "webhook_plugin_errors_total{route=\"unlisted\",plugin=\"route_by_field\",kind=\"bad_verdict\"}"
            )
            .await,
        Some(1.0)
    );
    let (status, _) = router
        .post_from(&client, "/hooks/listed", &issue, &event)
        .await;
    assert_eq!(status, 202);

    triage.wait_for_delivered(1, PATIENCE).await;
    reviews.wait_for_delivered(1, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(triage.requests().len(), 1, "only the listed route's event");
    assert_eq!(
        reviews.requests().len(),
        1,
        "nothing of the refused fan-out"
    );
}
