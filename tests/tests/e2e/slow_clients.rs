//! Clients that trickle their bodies cannot block the ingress (issue #21): a request whose head
//! already fails (no signature) is answered at once, its body unread; one client gets at most
//! `max_requests_in_flight_per_client` places, however many connections it opens; a body that
//! falls behind `min_body_rate` is cut off after `min_body_rate_grace`. Throughout, a genuine
//! sender on another address is accepted within a second.
//!
//! The attackers are 128 HTTP/1.1 connections from 127.0.0.2 and two h2c connections from
//! 127.0.0.3, each request declaring 100,000 bytes and sending one byte every 250 ms; the
//! genuine sender posts from 127.0.0.1 every 100 ms.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use webhook_router::config::ServerConfig;
use webhook_router::server::protocol::max_concurrent_streams;
use webhook_router_tests::signing::{sign, unix_now};
use webhook_router_tests::slow_client::{h2c_from, read_status, trickle_h2, trickle_http1};
use webhook_router_tests::{Sink, TestRouter};

use crate::{PATIENCE, destination, route};

const GITLAB_TOKEN: &str = "glwht-slow-clients-7Xk2pQ9s";
const GITHUB_SECRET: &str = "slow clients secret";
/// HTTP/1.1 attackers, as many as the default `max_requests_in_flight`.
const HTTP1_ATTACKERS: usize = 128;
/// The h2c attacker's connections.
const H2_CONNECTIONS: usize = 2;
/// What every attacker declares.
const DECLARED: u64 = 100_000;
/// How often an attacker sends one more byte.
const TRICKLE: Duration = Duration::from_millis(250);
/// The longest a genuine request may take.
const GENUINE_WITHIN: Duration = Duration::from_secs(1);
/// The fewest requests the genuine sender makes, however short the attack.
const GENUINE_AT_LEAST: usize = 5;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// A router with `server` lines, a GitLab-verified route `/hooks/gitlab` and a GitHub-verified
/// route `/hooks/github`, both to `sink`.
async fn router(sink: &Sink, server: &str) -> TestRouter {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n{}\
         {}verify = {{ preset = \"gitlab\", secrets = [\"{GITLAB_TOKEN}\"] }}\n\
         {}verify = {{ preset = \"github\", secrets = [\"{GITHUB_SECRET}\"] }}\n",
        destination("sink", &sink.url("/in"), 3),
        route("gitlab", "/hooks/gitlab", &["sink"]),
        route("github", "/hooks/github", &["sink"]),
    );
    TestRouter::start(&config).await
}

/// Posts a freshly signed event to `path` every 100 ms until `stop` (and at least
/// [`GENUINE_AT_LEAST`] times); each answer's status and how long it took.
async fn genuine_sender(
    router: &TestRouter,
    path: &'static str,
    preset: &'static str,
    secret: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<(u16, Duration)> {
    let (client, url) = (router.client.clone(), router.url(path));
    let mut answers = Vec::new();
    while answers.len() < GENUINE_AT_LEAST || !stop.load(Ordering::Acquire) {
        let body = format!("{{\"genuine\":{}}}", answers.len());
        let mut request = client
            .post(&url)
            .timeout(PATIENCE)
            .header("content-type", "application/json");
        for (name, value) in sign(preset, secret, body.as_bytes(), unix_now()) {
            request = request.header(name, value);
        }
        let started = Instant::now();
        let answer = request.body(body).send().await.expect("the router answers");
        answers.push((answer.status().as_u16(), started.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answers
}

/// What the attackers got: each answer's status and how long after the attacker began (its
/// connect, or its stream) it came.
#[derive(Debug, Default)]
struct Attack {
    http1: Vec<(u16, Duration)>,
    h2: Vec<(u16, Duration)>,
}

impl Attack {
    fn all(&self) -> impl Iterator<Item = &(u16, Duration)> {
        self.http1.iter().chain(&self.h2)
    }

    fn count(&self, status: u16) -> usize {
        self.all().filter(|(s, _)| *s == status).count()
    }
}

/// Runs the attack on `path` with the signature `headers` (none, or plausible ones) until every
/// attacker is answered: 128 HTTP/1.1 connections from 127.0.0.2, and two h2c connections from
/// 127.0.0.3 opening as many streams each as the router allows one connection.
async fn attack(router: &TestRouter, path: &'static str, headers: &[(String, String)]) -> Attack {
    let to: SocketAddr = router.router.ingress_addr();
    let mut http1 = JoinSet::new();
    for _ in 0..HTTP1_ATTACKERS {
        let headers = headers.to_vec();
        http1.spawn(async move {
            let started = Instant::now();
            let mut answer = trickle_http1(ip("127.0.0.2"), to, path, &headers, DECLARED, TRICKLE)
                .await
                .expect("connect from 127.0.0.2");
            let status = read_status(&mut answer).await.expect("an answer");
            (status, started.elapsed())
        });
    }
    let streams = max_concurrent_streams(Some(ServerConfig::DEFAULT_PER_CLIENT)) as usize;
    let mut h2 = JoinSet::new();
    for _ in 0..H2_CONNECTIONS {
        let sender = h2c_from(ip("127.0.0.3"), to)
            .await
            .expect("h2c from 127.0.0.3");
        for _ in 0..streams {
            let (mut sender, headers) = (sender.clone(), headers.to_vec());
            h2.spawn(async move {
                let started = Instant::now();
                let status = trickle_h2(&mut sender, to, path, &headers, DECLARED, TRICKLE)
                    .await
                    .expect("an h2 answer");
                (status, started.elapsed())
            });
        }
    }
    let mut outcome = Attack::default();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while let Some(answer) = tokio::time::timeout_at(deadline, http1.join_next())
        .await
        .expect("every HTTP/1.1 attacker is answered in time")
    {
        outcome.http1.push(answer.expect("attacker task"));
    }
    while let Some(answer) = tokio::time::timeout_at(deadline, h2.join_next())
        .await
        .expect("every h2 attacker is answered in time")
    {
        outcome.h2.push(answer.expect("attacker task"));
    }
    assert_eq!(outcome.h2.len(), H2_CONNECTIONS * streams);
    outcome
}

/// Asserts that every genuine request was accepted within [`GENUINE_WITHIN`]; prints them.
fn assert_genuine_accepted(genuine: &[(u16, Duration)]) {
    let slowest = genuine.iter().map(|(_, took)| *took).max();
    eprintln!(
        "genuine sender: {} requests, statuses {:?}, slowest {slowest:?}",
        genuine.len(),
        genuine.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
    assert!(genuine.len() >= GENUINE_AT_LEAST);
    for (status, took) in genuine {
        assert_eq!(*status, 202, "a genuine request was refused");
        assert!(*took < GENUINE_WITHIN, "a genuine request took {took:?}");
    }
}

/// The value of `series`, which must exist.
async fn metric(router: &TestRouter, series: &str) -> f64 {
    router
        .metric(series)
        .await
        .unwrap_or_else(|| panic!("{series} is missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_trickling_requests_are_refused_from_their_head_at_once() {
    let sink = Sink::healthy().await;
    // The default pace: a body's rate counts only after 5 s (and the whole body may take
    // 30 s), so an answer within 2 s was not waiting for the body.
    let router = router(&sink, "").await;
    let at_once = Duration::from_secs(2);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = genuine_sender(
        &router,
        "/hooks/gitlab",
        "gitlab",
        GITLAB_TOKEN,
        Arc::clone(&stop),
    );
    let attacked = async {
        let outcome = attack(&router, "/hooks/gitlab", &[]).await;
        // A little longer, to see the genuine sender after the attack as well.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Release);
        outcome
    };
    let (genuine, attack) = tokio::join!(sender, attacked);

    let (refused, busy) = (attack.count(401), attack.count(503));
    let slowest = attack.all().map(|(_, took)| *took).max();
    eprintln!(
        "{} unsigned attackers ({} HTTP/1.1, {} h2c streams): {refused} got 401, {busy} got 503 \
         (client_busy); slowest answer {slowest:?}",
        attack.http1.len() + attack.h2.len(),
        attack.http1.len(),
        attack.h2.len()
    );
    assert_eq!(refused + busy, attack.all().count(), "only 401 or 503");
    assert!(refused >= 1);
    for (status, took) in attack.all() {
        assert!(
            *took < at_once,
            "a {status} came {took:?} after the connect: the body was waited for"
        );
    }
    assert_eq!(
        metric(
            &router,
            "webhook_verification_failures_total{route=\"gitlab\",reason=\"missing_header\"}"
        )
        .await,
        refused as f64
    );
    assert_eq!(
        metric(
            &router,
            "webhook_rejected_requests_total{listener=\"ingress\",reason=\"client_busy\"}"
        )
        .await,
        busy as f64
    );
    assert_genuine_accepted(&genuine);
    let delivered = sink.wait_for_delivered(genuine.len(), PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(delivered.len(), genuine.len());
    assert_eq!(sink.requests().len(), genuine.len(), "only genuine events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_bodies_are_cut_off_by_the_minimum_rate_while_a_genuine_sender_gets_in() {
    let sink = Sink::healthy().await;
    // `min_body_rate` is its default, 1 KiB/s; the attackers send 4 bytes/s.
    let grace = Duration::from_secs(1);
    let router = router(&sink, "min_body_rate_grace = \"1s\"").await;
    // Well-formed signatures, so the head alone cannot refuse them: only the body can tell.
    let plausible = vec![(
        "x-hub-signature-256".to_owned(),
        format!("sha256={}", "00".repeat(32)),
    )];
    let stop = Arc::new(AtomicBool::new(false));
    let sender = genuine_sender(
        &router,
        "/hooks/github",
        "github",
        GITHUB_SECRET,
        Arc::clone(&stop),
    );
    let attacked = async {
        let outcome = attack(&router, "/hooks/github", &plausible).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Release);
        outcome
    };
    let (genuine, attack) = tokio::join!(sender, attacked);

    let per_client = ServerConfig::DEFAULT_PER_CLIENT;
    let cut = |answers: &[(u16, Duration)]| answers.iter().filter(|(s, _)| *s == 408).count();
    let (cut_http1, cut_h2) = (cut(&attack.http1), cut(&attack.h2));
    let (cut_off, busy) = (attack.count(408), attack.count(503));
    let cut_times: Vec<Duration> = attack
        .all()
        .filter(|(s, _)| *s == 408)
        .map(|(_, took)| *took)
        .collect();
    eprintln!(
        "trickling attackers: HTTP/1.1 {} ({cut_http1} cut off with 408), h2c {} ({cut_h2} cut \
         off); {busy} got 503 (client_busy) at once; cut off after {:?} to {:?} (grace {grace:?})",
        attack.http1.len(),
        attack.h2.len(),
        cut_times.iter().min(),
        cut_times.iter().max(),
    );
    assert_eq!(cut_off + busy, attack.all().count(), "only 408 or 503");
    // Each client had its share in flight, and each of those was cut off.
    assert!(cut_http1 >= per_client, "{cut_http1} HTTP/1.1 cut off");
    assert!(cut_h2 >= per_client, "{cut_h2} h2 streams cut off");
    for (status, took) in attack.all() {
        match status {
            // After the grace, and long before `body_read_timeout` (30 s).
            408 => assert!(
                *took >= grace && *took < grace + Duration::from_secs(4),
                "cut off after {took:?}"
            ),
            _ => assert!(*took < Duration::from_secs(2), "503 after {took:?}"),
        }
    }
    for (series, value) in [
        ("reason=\"slow_body\"", cut_off),
        ("reason=\"client_busy\"", busy),
        // The listener-wide cap was never reached.
        ("reason=\"busy\"", 0),
    ] {
        let series = format!("webhook_rejected_requests_total{{listener=\"ingress\",{series}}}");
        assert_eq!(metric(&router, &series).await, value as f64, "{series}");
    }
    assert_eq!(
        metric(
            &router,
            "webhook_requests_total{route=\"github\",status=\"408\"}"
        )
        .await,
        cut_off as f64
    );
    assert_genuine_accepted(&genuine);
    let delivered = sink.wait_for_delivered(genuine.len(), PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(delivered.len(), genuine.len());
    assert_eq!(sink.requests().len(), genuine.len(), "only genuine events");
}
