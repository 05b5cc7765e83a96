//! Numbered events for the tests that run the router as a process (crash, restart and several
//! routers): bodies of about 1 KiB that carry a number, posted to one or more routers, and the
//! numbers a sink received, counted, so that a test compares what was 202'd with what arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;

use crate::Received;
use crate::sink::Sink;
use crate::test_router::metric_value;
use crate::wait::wait_until;

/// Patience for what should take a few seconds on a busy 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A fresh, empty directory `base/group/name` (a test's configs, journal or NATS store).
pub fn fresh_dir(base: &Path, group: &str, name: &str) -> PathBuf {
    let dir = base.join(group).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// An HTTP client for loopback, waiting at most [`PATIENCE`] for an answer.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("client")
}

/// A JSON body of about 1 KiB carrying the number `n`.
pub fn body(n: u64) -> String {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(1000))
}

/// The number a delivered body carries.
pub fn number(received: &Received) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(&received.body).expect("json body");
    value["n"].as_u64().expect("n")
}

/// Posts bodies `numbers` to `/hooks`, in turn to each of `ingresses` (`host:port`),
/// `concurrency` at a time; each number with the status it got (0: no answer).
pub async fn post_all(
    ingresses: &[String],
    numbers: std::ops::Range<u64>,
    concurrency: usize,
) -> Vec<(u64, u16)> {
    let client = client();
    futures_util::stream::iter(numbers)
        .map(|n| {
            let client = client.clone();
            let turn = usize::try_from(n).expect("n") % ingresses.len();
            let url = format!("http://{}/hooks", ingresses[turn]);
            async move {
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body(n))
                    .send()
                    .await;
                (n, answer.map(|a| a.status().as_u16()).unwrap_or(0))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Posts bodies `numbers` to `/hooks` on `ingress` at `rate` per second, each at its due time
/// whatever the answers to the others, each on a connection of its own (as a sender without
/// keep-alive: an idle keep-alive connection that a stopping router closes can cross a request
/// sent on it at that instant, a race of HTTP/1.1 itself that a handover cannot remove). Each
/// number with the status it got (0: no answer; the error, or the answer other than 202, is
/// printed), and the longest a post waited for its answer.
pub async fn post_paced(
    ingress: &str,
    numbers: std::ops::Range<u64>,
    rate: f64,
) -> (Vec<(u64, u16)>, Duration) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let url = format!("http://{ingress}/hooks");
    let start = tokio::time::Instant::now();
    let first = numbers.start;
    let mut posts = tokio::task::JoinSet::new();
    for n in numbers {
        let (client, url) = (client.clone(), url.clone());
        let due = start + Duration::from_secs_f64((n - first) as f64 / rate);
        posts.spawn(async move {
            tokio::time::sleep_until(due).await;
            let sent = tokio::time::Instant::now();
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body(n))
                .send()
                .await;
            let status = match answer {
                Ok(answer) if answer.status() == 202 => 202,
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let text = answer.text().await.unwrap_or_default();
                    eprintln!("post {n} answered {status}: {text}");
                    status
                }
                Err(error) => {
                    eprintln!("post {n} got no answer: {error:?}");
                    0
                }
            };
            (n, status, sent.elapsed())
        });
    }
    let mut answers = Vec::new();
    let mut slowest = Duration::ZERO;
    while let Some(joined) = posts.join_next().await {
        let (n, status, took) = joined.expect("a post panicked");
        answers.push((n, status));
        slowest = slowest.max(took);
    }
    (answers, slowest)
}

/// The numbers answered 202.
pub fn accepted(answers: &[(u64, u16)]) -> BTreeSet<u64> {
    answers
        .iter()
        .filter(|(_, status)| *status == 202)
        .map(|(n, _)| *n)
        .collect()
}

/// Posts `numbers` to one router; the numbers answered 202.
pub async fn post_accepted(
    ingress: &str,
    numbers: std::ops::Range<u64>,
    concurrency: usize,
) -> BTreeSet<u64> {
    accepted(&post_all(&[ingress.to_owned()], numbers, concurrency).await)
}

/// Deliveries per body number.
pub fn deliveries(sink: &Sink) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for received in sink.delivered() {
        *counts.entry(number(&received)).or_default() += 1;
    }
    counts
}

/// Waits (at most [`PATIENCE`]) until every number in `wanted` was delivered; the deliveries
/// per number.
pub async fn wait_delivered(sink: &Sink, wanted: &BTreeSet<u64>) -> BTreeMap<u64, usize> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let counts = deliveries(sink);
        if wanted.iter().all(|n| counts.contains_key(n)) || tokio::time::Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Extra deliveries: numbers delivered more than once, counted once per repeat.
pub fn duplicates(counts: &BTreeMap<u64, usize>) -> usize {
    counts.values().map(|&c| c - 1).sum()
}

/// Asserts that every number in `wanted` was delivered; returns the extra deliveries.
pub fn assert_all_delivered(wanted: &BTreeSet<u64>, counts: &BTreeMap<u64, usize>) -> usize {
    let lost: Vec<_> = wanted.iter().filter(|n| !counts.contains_key(n)).collect();
    assert!(
        lost.is_empty(),
        "{} accepted events never delivered: {lost:?}",
        lost.len()
    );
    duplicates(counts)
}

/// The admin's `/metrics` value of `series`.
pub async fn metric(admin: &str, series: &str) -> Option<f64> {
    let text = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric_value(&text, series)
}

/// Waits until the router holds nothing (`webhook_queue_depth` 0).
pub async fn wait_idle(admin: &str) {
    wait_until(
        "the router to go idle (webhook_queue_depth 0)",
        PATIENCE,
        || metric(admin, "webhook_queue_depth"),
        |depth| *depth == Some(0.0),
    )
    .await;
}

/// Replays dead letter `id` through the admin API at `admin`; the answer's status.
pub async fn replay(admin: &str, id: &str) -> u16 {
    client()
        .post(format!("http://{admin}/dead-letters/{id}/replay"))
        .send()
        .await
        .expect("replay")
        .status()
        .as_u16()
}

/// The dead letters the admin API lists.
pub async fn dead_letters(admin: &str) -> serde_json::Value {
    client()
        .get(format!("http://{admin}/dead-letters"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json")
}
