//! Delivery rate: a destination's `rate` paces its attempts. Events held through an outage drain
//! at the rate once it is back (by the sink's own clock), every one delivered, and the waiting
//! shows in `webhook_destination_throttled_seconds_total`; on the memory queue and the journal.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use webhook_router_tests::sink::arrivals_per_second;
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Sink, TestRouter};

use crate::route;

const PER_SECOND: usize = 100;
/// Small, so that the drain is mostly paced: (events − burst) / `PER_SECOND` seconds.
const BURST: usize = 10;
const THROTTLED: &str = "webhook_destination_throttled_seconds_total{destination=\"paced\"}";
/// Patience for a drain that takes about 10 s when nothing else runs.
const DRAIN_PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_held_through_an_outage_drain_at_the_rate() {
    drain_after_outage(1000, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_held_on_the_journal_drain_at_the_rate_too() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-rate-journal");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    drain_after_outage(
        300,
        &format!(
            "[queue]\npath = \"{}\"\nfsync = \"always\"\n",
            dir.display()
        ),
    )
    .await;
}

/// Posts `events` to a destination at `rate = { per_second = 100, burst = 10 }` while nothing
/// listens at its port (its circuit opens), brings it up, and checks the drain. `queue` is the
/// config's `[queue]` table, if any.
async fn drain_after_outage(events: usize, queue: &str) {
    // The destination's port, closed for now: every attempt is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{queue}\
         [destinations.paced]\nurl = \"http://127.0.0.1:{port}/in\"\ntimeout = \"10s\"\n\
         max_in_flight = 16\nrate = {{ per_second = {PER_SECOND}, burst = {BURST} }}\n\
         retry = {{ max_attempts = 100, initial_backoff = \"50ms\", max_backoff = \"200ms\" }}\n\
         circuit = {{ failures = 5, open_for = \"100ms\", max_open_for = \"200ms\" }}\n{}",
        route("paced", "/hooks/paced", &["paced"]),
    );
    let router = TestRouter::start(&config).await;
    let statuses: Vec<u16> = futures_util::stream::iter(0..events)
        .map(|n| {
            let router = &router;
            async move {
                let body = format!("{{\"n\":{n}}}");
                router
                    .post_json("/hooks/paced", &body)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let throttled_before = router
        .metric(THROTTLED)
        .await
        .expect("the throttled series is exported from the start");
    wait_until(
        "the outage to open the circuit",
        DRAIN_PATIENCE,
        || router.metric("webhook_destination_circuit_state{destination=\"paced\"}"),
        |state| matches!(state, Some(s) if *s > 0.0),
    )
    .await;

    // The destination comes back on its port.
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the destination's port again");
    let back = Instant::now();
    let sink = Sink::healthy_on(listener).await;
    let delivered = sink.wait_for_delivered(events, DRAIN_PATIENCE).await;
    router.wait_idle(DRAIN_PATIENCE).await;
    let bodies: HashSet<_> = delivered.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies.len(), events, "every event delivered");
    let requests = sink.requests();
    assert_eq!(requests.len(), events, "each once, none failed");
    let arrivals: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    // Arrivals in each second since the destination came back, by the sink's clock.
    let seconds = arrivals_per_second(&requests, back);
    let busiest = *seconds.iter().max().expect("arrivals");
    let drain = arrivals[arrivals.len() - 1] - arrivals[0];
    let throttled = router.metric(THROTTLED).await.expect("throttled series");
    eprintln!(
        "{events} held events drained in {drain:.2?} (first arrival {:.2?} after the \
         destination came back); arrivals in each second: {seconds:?} (at most {}); \
         throttled {throttled_before} s before, {throttled} s after",
        arrivals[0] - back,
        PER_SECOND + BURST,
    );
    assert!(
        busiest <= PER_SECOND + BURST,
        "{busiest} arrivals in a second, over per_second + burst"
    );
    // Paced, not merely slow: the drain takes about (events − burst) / per_second.
    let paced = (events - BURST) as f64 / PER_SECOND as f64;
    assert!(
        drain.as_secs_f64() >= paced - 1.0 && drain.as_secs_f64() <= paced / 0.6 + 1.0,
        "{events} events drained in {drain:?}, at {PER_SECOND}/s after a burst of {BURST}"
    );
    // The lane's next delivery waited for its turn most of the drain long.
    assert!(
        throttled - throttled_before >= (drain.as_secs_f64() / 2.0).floor(),
        "throttled {throttled_before} s -> {throttled} s over a drain of {drain:?}"
    );
}
