//! Several routers on one NATS JetStream (`backend = "nats"`), tested with a real `nats-server`
//! started for each test on a free port: two routers share the work, one is killed (SIGKILL)
//! mid-load, the server is stopped for 5 s under load, a delivery id is a duplicate across
//! routers, and a dead letter made by one router is replayed through the other. The message
//! lifecycle: messages handed back at 12 stops and kills end delivered or dead-lettered, a
//! message is acked only once its dead letter is stored (the bucket refusing letters), and a
//! message that does not decode becomes a dead letter holding its raw bytes. Ordered keys keep
//! their order across two routers, one of them SIGKILLed, and a router that stops hands its
//! ordered partitions over at once. A destination's `rate` paces each router's attempts. Each
//! counts what was 202'd against what the sink received or the dead letters hold.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use webhook_router_tests::keyed::{assert_first_deliveries_in_order, first_deliveries, post_keyed};
use webhook_router_tests::nats::NatsServer;
use webhook_router_tests::numbered::{
    self, PATIENCE, accepted, assert_all_delivered, client, dead_letters, deliveries, metric,
    number, post_all, replay, wait_delivered, wait_idle,
};
use webhook_router_tests::sink::arrivals_per_second;
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, RouterProcess, Sink};

/// How the sink answers, switched while a test runs.
const OK: u8 = 0;
const SLOW: u8 = 1;
const REJECT: u8 = 2;
const HANG: u8 = 3;
const FAIL: u8 = 4;

async fn switchable_sink(mode: &Arc<AtomicU8>) -> Sink {
    let mode = Arc::clone(mode);
    Sink::start(move |_| match mode.load(Ordering::Acquire) {
        SLOW => Reply {
            delay: Some(Duration::from_millis(20)),
            ..Reply::ok()
        },
        REJECT => Reply::status(400),
        HANG => Reply::hang(),
        FAIL => Reply::status(503),
        _ => Reply::ok(),
    })
    .await
}

/// A fresh directory for test `name` (the NATS store, the routers' configs).
fn fresh_dir(name: &str) -> PathBuf {
    numbered::fresh_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "nats", name)
}

/// Writes router `n`'s config: `/hooks` to `sink` over the NATS at `url`; deliveries carry
/// `x-router: n`. `route` lines are added to the route.
fn write_config(dir: &Path, n: usize, url: &str, sink: &Sink, queue: &str, route: &str) -> PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_body_bytes = \"256KiB\"\nshutdown_grace = \"2s\"\n\
         [queue]\nbackend = \"nats\"\nurl = \"{url}\"\nack_wait = \"2s\"\nmax_bytes = \"256MiB\"\n{queue}\n\
         [destinations.sink]\nurl = \"{}\"\ntimeout = \"30s\"\nmax_in_flight = 8\n\
         headers = {{ x-router = \"{n}\" }}\n\
         retry = {{ max_attempts = 5, initial_backoff = \"50ms\", max_backoff = \"200ms\" }}\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\n{route}\n",
        sink.url("/in"),
    );
    // A test's own `ack_wait` and `max_bytes` replace the defaults here: a short wait, and a
    // stream small enough for any machine's JetStream storage.
    let mut text = text;
    for (key, default) in [
        ("ack_wait", "ack_wait = \"2s\"\n"),
        ("max_bytes", "max_bytes = \"256MiB\"\n"),
    ] {
        if queue.contains(key) {
            text = text.replacen(default, "", 1);
        }
    }
    let path = dir.join(format!("router{n}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn start(config: &Path) -> RouterProcess {
    RouterProcess::start(Path::new(env!("CARGO_BIN_EXE_webhook-router")), config)
}

/// A NATS server, a sink answering as `mode`, and two routers on them.
struct Setup {
    _dir: PathBuf,
    nats: NatsServer,
    mode: Arc<AtomicU8>,
    sink: Sink,
    routers: Vec<RouterProcess>,
}

async fn setup(name: &str, mode: u8, queue: &str, route: &str) -> Setup {
    let dir = fresh_dir(name);
    let nats = NatsServer::start(&dir.join("nats"));
    let mode = Arc::new(AtomicU8::new(mode));
    let sink = switchable_sink(&mode).await;
    let routers = (1..=2)
        .map(|n| start(&write_config(&dir, n, &nats.url(), &sink, queue, route)))
        .collect();
    Setup {
        _dir: dir,
        nats,
        mode,
        sink,
        routers,
    }
}

/// Deliveries made by router `n`.
fn delivered_by(sink: &Sink, n: usize) -> usize {
    let n = n.to_string();
    sink.delivered()
        .iter()
        .filter(|r| r.headers.get("x-router").is_some_and(|v| v == n.as_str()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_on_one_stream_deliver_every_event_once_and_share_the_work() {
    const EVENTS: u64 = 5000;
    let s = setup("share", OK, "", "").await;
    let ingresses: Vec<String> = s.routers.iter().map(|r| r.ingress.clone()).collect();
    let answers = post_all(&ingresses, 0..EVENTS, 32).await;
    let wanted = accepted(&answers);
    assert_eq!(wanted.len() as u64, EVENTS, "every post was accepted");
    let counts = wait_delivered(&s.sink, &wanted).await;
    let extra = assert_all_delivered(&wanted, &counts);
    for router in &s.routers {
        wait_idle(&router.admin).await;
    }
    // Idle, and every accepted event was delivered: nothing more will come.
    let extra_now = assert_all_delivered(&wanted, &deliveries(&s.sink));
    assert_eq!(extra, 0, "nothing failed, so nothing was delivered twice");
    assert_eq!(extra_now, 0);
    assert_eq!(stream_messages(&s.nats).await, 0, "every message acked");
    let (one, two) = (delivered_by(&s.sink, 1), delivered_by(&s.sink, 2));
    eprintln!("{EVENTS} events: router 1 delivered {one}, router 2 delivered {two}");
    assert_eq!(one + two, EVENTS as usize);
    assert!(one > 0 && two > 0, "both routers delivered a share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_killed_mid_load_loses_nothing_the_other_delivers_it() {
    const EVENTS: u64 = 2000;
    let mut s = setup("kill", SLOW, "", "").await;
    let ingresses: Vec<String> = s.routers.iter().map(|r| r.ingress.clone()).collect();
    let wanted = accepted(&post_all(&ingresses, 0..EVENTS, 32).await);
    assert_eq!(wanted.len() as u64, EVENTS, "every post was accepted");
    s.sink
        .wait_for_delivered(EVENTS as usize / 4, PATIENCE)
        .await;
    let killed = s.routers.remove(0);
    let _ = killed.kill();
    let at_kill = s.sink.delivered().len();
    eprintln!("router 1 killed after {at_kill} of {EVENTS} deliveries");
    s.mode.store(OK, Ordering::Release);
    let counts = wait_delivered(&s.sink, &wanted).await;
    let duplicates = assert_all_delivered(&wanted, &counts);
    eprintln!(
        "every accepted event delivered; {duplicates} delivered twice (in flight at the kill, \
         redelivered after ack_wait)"
    );
    assert!(
        delivered_by(&s.sink, 2) > 0,
        "the survivor delivered the rest"
    );
    assert_eq!(stream_messages(&s.nats).await, 0, "every message acked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_stops_hands_back_what_it_holds_at_once() {
    const EVENTS: u64 = 2000;
    // An ack_wait far longer than the test: what router 1 holds at its stop reaches router 2
    // by its nak, not by JetStream giving up on router 1.
    let mut s = setup("stop", SLOW, "ack_wait = \"60s\"", "").await;
    let ingresses = vec![s.routers[0].ingress.clone()];
    let wanted = accepted(&post_all(&ingresses, 0..EVENTS, 32).await);
    assert_eq!(wanted.len() as u64, EVENTS, "every post was accepted");
    s.sink.wait_for_delivered(200, PATIENCE).await;
    let stopping = s.routers.remove(0);
    let stopped_at = std::time::Instant::now();
    let (clean, log) = stopping.stop();
    assert!(clean, "{log:#?}");
    let counts = wait_delivered(&s.sink, &wanted).await;
    let duplicates = assert_all_delivered(&wanted, &counts);
    let took = stopped_at.elapsed();
    eprintln!(
        "router 1 stopped; every accepted event delivered {:.1} s later ({duplicates} twice)",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(50),
        "what router 1 held waited for ack_wait ({took:?}) instead of being handed back"
    );
    // Nothing is stranded in the stream (a message handed back too often would pass the
    // consumer's max_deliver and stay there, never delivered).
    assert_eq!(stream_messages(&s.nats).await, 0);
}

/// Issue #26, ordered delivery on NATS across routers: 5,000 events over 50 keys (the
/// acceptance's counts), each key's events posted one after the other (the next once the one
/// before got its 202), alternately to the two routers, to a sink that fails 20 % of attempts
/// at random. Router 1 is SIGKILLed once half are accepted (its partitions' leases expire and
/// router 2 takes them over); the rest go to router 2. For every key the sink's first
/// deliveries come in the order of acceptance, every event is delivered, and the stream ends
/// empty. (The lease bucket is left from routers with another `ack_wait`: the leases are made
/// to last the routers' own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_keys_keep_their_order_across_two_routers_and_a_sigkill() {
    const KEYS: u64 = 50;
    const PER_KEY: u64 = 100;
    let started = std::time::Instant::now();
    let dir = fresh_dir("ordered");
    let nats = NatsServer::start(&dir.join("nats"));
    let sink = Sink::failing_at_random(0.2).await;
    // A lease bucket left by routers with an ack_wait of an hour: these routers make its leases
    // last their own ack_wait (2 s), or router 1's partitions would wait an hour for router 2.
    // (Its stream made as the routers make their buckets' streams: the client library's own
    // call asks the account's limits, which this server does not answer as it expects.)
    jetstream(&nats)
        .await
        .create_stream(async_nats::jetstream::stream::Config {
            name: "KV_WEBHOOKS_leases".into(),
            subjects: vec!["$KV.WEBHOOKS_leases.>".into()],
            max_messages_per_subject: 1,
            max_age: Duration::from_secs(3600),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .expect("lease bucket");
    // Enough attempts that no event is dead-lettered by bad luck (0.2^100).
    let mut routers: Vec<RouterProcess> = (1..=2)
        .map(|n| {
            let path = write_config(&dir, n, &nats.url(), &sink, "", "order_by = \"/key\"");
            let text = std::fs::read_to_string(&path).expect("config").replace(
                "max_attempts = 5, initial_backoff = \"50ms\", max_backoff = \"200ms\"",
                "max_attempts = 100, initial_backoff = \"5ms\", max_backoff = \"20ms\"",
            );
            std::fs::write(&path, text).expect("config");
            start(&path)
        })
        .collect();
    let ingresses = Arc::new(std::sync::RwLock::new(
        routers
            .iter()
            .map(|r| r.ingress.clone())
            .collect::<Vec<_>>(),
    ));
    let posts = post_keyed(KEYS, PER_KEY, &ingresses);
    posts.wait_half_accepted().await;
    let killed = routers.remove(0);
    let _ = killed.kill();
    *ingresses.write().expect("lock") = vec![routers[0].ingress.clone()];
    let at_kill = (posts.accepted(), sink.delivered().len());
    posts.finish().await;

    // Every event delivered...
    wait_until(
        "every event delivered",
        PATIENCE,
        || async { first_deliveries(&sink).1 },
        |&delivered| delivered == KEYS * PER_KEY,
    )
    .await;
    // ...and each key's first deliveries in the order of acceptance.
    assert_first_deliveries_in_order(&sink, KEYS, PER_KEY);
    // Router 1 owned partitions (it delivered), which router 2 took over once it was killed.
    assert!(delivered_by(&sink, 1) > 0, "router 1 delivered nothing");
    wait_idle(&routers[0].admin).await;
    assert_eq!(
        metric(
            &routers[0].admin,
            "webhook_ordered_keys_waiting{destination=\"sink\"}"
        )
        .await,
        Some(0.0)
    );
    assert_eq!(stream_messages(&nats).await, 0, "every message acked");
    let attempts = sink.requests().len();
    let delivered = sink.delivered().len() as u64;
    eprintln!(
        "ordered on NATS: {} events over {KEYS} keys in {:.1} s; router 1 SIGKILLed at {} \
         accepted, {} delivered; {attempts} attempts ({:.0} % failed); deliveries by router 1: {}, \
         by router 2: {}; {} duplicates",
        KEYS * PER_KEY,
        started.elapsed().as_secs_f64(),
        at_kill.0,
        at_kill.1,
        100.0 * (attempts as u64 - delivered) as f64 / attempts as f64,
        delivered_by(&sink, 1),
        delivered_by(&sink, 2),
        delivered - KEYS * PER_KEY,
    );
    assert!(routers.remove(0).stop().0);
}

/// Issue #26: a router that stops releases its ordered partitions' leases, and the other takes
/// them at once (it watches the lease bucket), not after `ack_wait` (60 s here, far longer
/// than the test). Every event is its own key, so both routers' partitions have events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_stops_hands_its_ordered_partitions_over_at_once() {
    const EVENTS: u64 = 1000;
    let mut s = setup(
        "ordered-stop",
        SLOW,
        "ack_wait = \"60s\"",
        "order_by = \"/n\"",
    )
    .await;
    let ingresses = vec![s.routers[0].ingress.clone()];
    let wanted = accepted(&post_all(&ingresses, 0..EVENTS, 32).await);
    assert_eq!(wanted.len() as u64, EVENTS, "every post was accepted");
    s.sink.wait_for_delivered(100, PATIENCE).await;
    let stopping = s.routers.remove(0);
    let stopped_at = std::time::Instant::now();
    let (clean, log) = stopping.stop();
    assert!(clean, "{log:#?}");
    let held = |text: &str| log.iter().any(|line| line.contains(text));
    assert!(
        held("took an ordered partition") && held("events left for the next start"),
        "router 1 held no partition with events left at its stop: {log:#?}"
    );
    let counts = wait_delivered(&s.sink, &wanted).await;
    let duplicates = assert_all_delivered(&wanted, &counts);
    let took = stopped_at.elapsed();
    eprintln!(
        "router 1 stopped; every ordered event delivered {:.1} s later ({duplicates} twice)",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(20),
        "router 1's partitions waited for their leases to expire ({took:?})"
    );
    assert_eq!(stream_messages(&s.nats).await, 0);
}

/// The `WEBHOOKS` stream, through a client of the test's own.
async fn webhooks_stream(nats: &NatsServer) -> async_nats::jetstream::stream::Stream {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.get_stream("WEBHOOKS").await.expect("stream")
}

/// Reads `count` until it is zero (the routers' last acks have arrived) or [`PATIENCE`] has
/// passed; what is left then is described.
async fn until_zero<T, F>(
    stream: &async_nats::jetstream::stream::Stream,
    count: impl Fn() -> F,
) -> T
where
    T: Default + PartialEq,
    F: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let left = count().await;
        if left == T::default() || tokio::time::Instant::now() > deadline {
            if left != T::default() {
                let info = stream.get_info().await.expect("stream info");
                describe_left(stream, info.state.first_sequence).await;
            }
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Messages in the stream now.
async fn messages_in(stream: &async_nats::jetstream::stream::Stream) -> u64 {
    stream.get_info().await.expect("stream info").state.messages
}

/// Messages left in the stream, once the routers' last acks have arrived (at most
/// [`PATIENCE`]).
async fn stream_messages(nats: &NatsServer) -> u64 {
    let stream = webhooks_stream(nats).await;
    until_zero(&stream, || messages_in(&stream)).await
}

/// Messages the consumers have not settled, once the routers' last acks have arrived (at most
/// [`PATIENCE`]): (waiting to be delivered, delivered and not acked), over every consumer.
async fn unsettled(nats: &NatsServer) -> (u64, usize) {
    use futures_util::StreamExt;
    let stream = webhooks_stream(nats).await;
    until_zero(&stream, || async {
        let mut consumers = stream.consumers();
        let (mut pending, mut ack_pending) = (0, 0);
        while let Some(info) = consumers.next().await {
            let info = info.expect("consumer info");
            pending += info.num_pending;
            ack_pending += info.num_ack_pending;
        }
        (pending, ack_pending)
    })
    .await
}

/// Prints the first message left in `stream` and its consumers' state, for a failing test.
async fn describe_left(stream: &async_nats::jetstream::stream::Stream, sequence: u64) {
    use futures_util::StreamExt;
    match stream.get_raw_message(sequence).await {
        Ok(message) => eprintln!(
            "left in the stream: sequence {sequence}, subject {}, headers {:?}",
            message.subject, message.headers
        ),
        Err(error) => eprintln!("left in the stream: sequence {sequence} ({error})"),
    }
    let mut consumers = stream.consumers();
    while let Some(Ok(info)) = consumers.next().await {
        eprintln!(
            "consumer {}: pending {}, ack pending {}, redelivered {}, waiting {}, delivered {:?}, ack floor {:?}, max_deliver {}",
            info.name,
            info.num_pending,
            info.num_ack_pending,
            info.num_redelivered,
            info.num_waiting,
            info.delivered,
            info.ack_floor,
            info.config.max_deliver
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_for_five_seconds_gets_503s_then_recovers_and_loses_nothing() {
    let mut s = setup("outage", OK, "publish_timeout = \"500ms\"", "").await;
    let ingresses: Vec<String> = s.routers.iter().map(|r| r.ingress.clone()).collect();
    let before = post_all(&ingresses, 0..300, 16).await;
    // Load goes on while the server is away for 5 s, then comes back.
    let load = {
        let ingresses = ingresses.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut next = 300;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
            while tokio::time::Instant::now() < deadline {
                answers.extend(post_all(&ingresses, next..next + 20, 8).await);
                next += 20;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.nats.stop();
    let admin = s.routers[0].admin.clone();
    assert_eq!(wait_readyz(&admin, 503).await, "NATS at nats://127.0.0.1:");
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.nats.resume();
    wait_readyz(&admin, 200).await;
    let during = load.await.expect("load task");
    // And after: the routers accept again.
    let after = wait_until(
        "the routers to accept again",
        PATIENCE,
        || post_all(&ingresses, 100_000..100_100, 8),
        |answers| accepted(answers).len() >= 100,
    )
    .await;
    let refused = during.iter().filter(|(_, status)| *status == 503).count();
    let other: Vec<_> = during
        .iter()
        .filter(|(_, status)| ![202, 503].contains(status))
        .collect();
    eprintln!(
        "during the outage: {} accepted, {refused} answered 503, others {other:?}",
        accepted(&during).len()
    );
    assert!(refused > 0, "the routers answered 503 while NATS was down");
    assert!(other.is_empty(), "only 202 or 503: {other:?}");
    let wanted: BTreeSet<u64> = [before, during, after]
        .iter()
        .flat_map(|answers| accepted(answers))
        .collect();
    let counts = wait_delivered(&s.sink, &wanted).await;
    let duplicates = assert_all_delivered(&wanted, &counts);
    eprintln!(
        "every one of {} accepted events delivered; {duplicates} delivered twice",
        wanted.len()
    );
    // Every message acked, as the consumer sees it. The stream itself may keep a few acked
    // messages: the server was killed, and nats-server's recovery can restore a consumer's
    // acks without the work-queue deletes they caused (they sit below the ack floor and are
    // never delivered again).
    assert_eq!(unsettled(&s.nats).await, (0, 0), "every message acked");
    let kept = messages_in(&webhooks_stream(&s.nats).await).await;
    if kept > 0 {
        eprintln!("the stream kept {kept} acked messages across the server's SIGKILL");
    }
}

/// A destination's `rate` is per router: after an outage, each of two routers on one stream
/// drains what it holds at the rate (by the sink's clock), every event is delivered, and each
/// router counts its waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_router_drains_a_backlog_at_the_destinations_rate() {
    const EVENTS: u64 = 400;
    const PER_SECOND: usize = 100;
    const BURST: usize = 10;
    let dir = fresh_dir("rate");
    let nats = NatsServer::start(&dir.join("nats"));
    let mode = Arc::new(AtomicU8::new(FAIL));
    let sink = switchable_sink(&mode).await;
    let routers: Vec<RouterProcess> = (1..=2)
        .map(|n| {
            let config = write_config(&dir, n, &nats.url(), &sink, "", "");
            // Paced, quick to open its circuit, and never out of attempts in the outage.
            let paced = format!(
                "rate = {{ per_second = {PER_SECOND}, burst = {BURST} }}\n\
                 circuit = {{ failures = 3, open_for = \"100ms\", max_open_for = \"200ms\" }}\n\
                 [[routes]]"
            );
            let text = std::fs::read_to_string(&config)
                .expect("read config")
                .replace("max_attempts = 5", "max_attempts = 100")
                .replacen("[[routes]]", &paced, 1);
            std::fs::write(&config, text).expect("write config");
            start(&config)
        })
        .collect();
    let ingresses: Vec<String> = routers.iter().map(|r| r.ingress.clone()).collect();
    let wanted = accepted(&post_all(&ingresses, 0..EVENTS, 32).await);
    assert_eq!(wanted.len() as u64, EVENTS, "every post was accepted");
    for router in &routers {
        wait_until(
            "each router's circuit to open in the outage",
            PATIENCE,
            || {
                metric(
                    &router.admin,
                    "webhook_destination_circuit_state{destination=\"sink\"}",
                )
            },
            |state| matches!(state, Some(s) if *s > 0.0),
        )
        .await;
    }

    let back = std::time::Instant::now();
    mode.store(OK, Ordering::Release);
    let counts = wait_delivered(&sink, &wanted).await;
    let duplicates = assert_all_delivered(&wanted, &counts);
    for router in &routers {
        wait_idle(&router.admin).await;
    }
    let requests = sink.requests();
    let mut throttled = 0.0;
    for (n, router) in (1..=2).zip(&routers) {
        // Router `n`'s attempts in each second since the destination came back.
        let seconds = arrivals_per_second(
            requests
                .iter()
                .filter(|r| r.headers["x-router"] == n.to_string().as_str()),
            back,
        );
        let waited = metric(
            &router.admin,
            "webhook_destination_throttled_seconds_total{destination=\"sink\"}",
        )
        .await
        .expect("the throttled series is exported");
        eprintln!(
            "router {n}: attempts in each second since the destination came back: {seconds:?}; throttled {waited} s"
        );
        let busiest = seconds.iter().copied().max().unwrap_or(0);
        assert!(
            busiest <= PER_SECOND + BURST,
            "router {n}: {busiest} attempts in a second, over per_second + burst"
        );
        throttled += waited;
    }
    eprintln!("{EVENTS} events delivered after the outage ({duplicates} twice)");
    assert!(throttled >= 1.0, "the routers waited for turns");
}

/// Waits until `/readyz` answers `status`; the start of its text.
async fn wait_readyz(admin: &str, status: u16) -> String {
    let (_, text) = wait_until(
        &format!("/readyz to answer {status}"),
        PATIENCE,
        || async {
            let answer = client()
                .get(format!("http://{admin}/readyz"))
                .send()
                .await
                .expect("readyz");
            let answered = answer.status().as_u16();
            (answered, answer.text().await.expect("text"))
        },
        |(answered, _)| *answered == status,
    )
    .await;
    text.chars().take(25).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_id_accepted_by_one_router_is_a_duplicate_on_the_other() {
    let route = "verify = { preset = \"github\", secrets = [\"s3cret\"] }\ndedup = {}";
    let s = setup("dedup", OK, "", route).await;
    let body = br#"{"action":"opened"}"#;
    let post = |ingress: String| async move {
        let mut request = client()
            .post(format!("http://{ingress}/hooks"))
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        for (name, value) in webhook_router_tests::signing::sign("github", "s3cret", body, 0) {
            request = request.header(name, value);
        }
        let answer = request.body(body.to_vec()).send().await.expect("post");
        let status = answer.status().as_u16();
        let json: serde_json::Value = answer.json().await.unwrap_or_default();
        (status, json["id"].as_str().unwrap_or_default().to_owned())
    };
    let (status, first) = post(s.routers[0].ingress.clone()).await;
    assert_eq!(status, 202);
    // The commit reaches the shared window just after the 202: until then the other router
    // says "in progress" (503), never "new".
    let (_, second) = wait_until(
        "the other router to answer 202",
        PATIENCE,
        || post(s.routers[1].ingress.clone()),
        |(status, _)| {
            assert!(
                [202, 503].contains(status),
                "in progress (503), until the first is committed: {status}"
            );
            *status == 202
        },
    )
    .await;
    assert_eq!(second, first, "answered with the original event's id");
    assert_eq!(
        metric(
            &s.routers[1].admin,
            "webhook_duplicates_total{route=\"hooks\"}"
        )
        .await,
        Some(1.0)
    );
    s.sink.wait_for_delivered(1, PATIENCE).await;
    for router in &s.routers {
        wait_idle(&router.admin).await;
    }
    assert_eq!(s.sink.delivered().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_made_by_one_router_is_listed_and_replayed_by_the_other() {
    let s = setup("dead", REJECT, "", "").await;
    let answers = post_all(
        &s.routers[..1]
            .iter()
            .map(|r| r.ingress.clone())
            .collect::<Vec<_>>(),
        7..8,
        1,
    )
    .await;
    assert_eq!(accepted(&answers).len(), 1);
    // Router 1 (or 2: whichever took it) dead-letters it at once (400 is permanent); both list it.
    let (one, two) = wait_until(
        "one dead letter listed by both routers",
        PATIENCE,
        || async {
            let one = dead_letters(&s.routers[0].admin).await;
            let two = dead_letters(&s.routers[1].admin).await;
            (
                one.as_array().cloned().unwrap_or_default(),
                two.as_array().cloned().unwrap_or_default(),
            )
        },
        |(one, two)| one.len() == 1 && two.len() == 1,
    )
    .await;
    assert_eq!(one[0]["id"], two[0]["id"], "the same letter on both");
    let letter = two[0].clone();
    assert_eq!(letter["last_status"], 400);
    s.mode.store(OK, Ordering::Release);
    assert_eq!(
        replay(&s.routers[1].admin, letter["id"].as_str().expect("id")).await,
        202
    );
    let delivered = s.sink.wait_for_delivered(1, PATIENCE).await;
    assert_eq!(number(&delivered[0]), 7);
    // Gone from both lists.
    wait_until(
        "the letter gone from both lists",
        PATIENCE,
        || async {
            (
                dead_letters(&s.routers[0].admin).await,
                dead_letters(&s.routers[1].admin).await,
            )
        },
        |lists| *lists == (serde_json::json!([]), serde_json::json!([])),
    )
    .await;
}

/// Runs `serve` on `config`, which must fail at start; its stderr.
fn start_error(config: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(["serve", "--config"])
        .arg(config)
        .output()
        .expect("run serve");
    assert!(!output.status.success(), "serve started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_wrong_with_the_nats_server_is_said_at_start() {
    let dir = fresh_dir("errors");
    let sink = Sink::healthy().await;
    // No server there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let config = write_config(&dir, 1, &format!("nats://{closed}"), &sink, "", "");
    let error = start_error(&config);
    assert!(error.contains("cannot connect to NATS at"), "{error}");

    // A server without JetStream.
    let plain = NatsServer::start_without_jetstream(&dir.join("plain"));
    let text = std::fs::read_to_string(&config).expect("config");
    let plain_config = dir.join("plain.toml");
    std::fs::write(
        &plain_config,
        text.replace(&format!("nats://{closed}"), &plain.url()),
    )
    .expect("write");
    let error = start_error(&plain_config);
    assert!(error.contains("does not offer JetStream"), "{error}");
    drop(plain);

    // A server that wants a token: refused without it, served with it.
    let guarded = NatsServer::start_with_token(&dir.join("guarded"), "t0ken");
    let guarded_config = dir.join("guarded.toml");
    let with_url = text.replace(&format!("nats://{closed}"), &guarded.url());
    std::fs::write(&guarded_config, &with_url).expect("write");
    let error = start_error(&guarded_config);
    assert!(
        error.contains("cannot connect to NATS at") && error.contains("uthorization"),
        "{error}"
    );
    let with_token = with_url.replace("[queue]\n", "[queue]\ntoken = \"${NATS_TEST_TOKEN}\"\n");
    std::fs::write(&guarded_config, with_token).expect("write");
    // The token comes through `${ENV}`, as an operator would keep it out of the file.
    let router = RouterProcess::start_with_env(
        Path::new(env!("CARGO_BIN_EXE_webhook-router")),
        &guarded_config,
        &[("NATS_TEST_TOKEN", "t0ken")],
    );
    let (clean, log) = router.stop();
    assert!(clean, "{log:#?}");
    drop(guarded);

    let nats = NatsServer::start(&dir.join("nats"));
    // Events larger than the server takes.
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(&format!("nats://{closed}"), &nats.url());
    std::fs::write(&config, text.replace("\"256KiB\"", "\"4MiB\"")).expect("write");
    let error = start_error(&config);
    assert!(error.contains("max_payload"), "{error}");

    // A stream of that name made for something else.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    async_nats::jetstream::new(client)
        .create_stream(async_nats::jetstream::stream::Config {
            name: "WEBHOOKS".into(),
            subjects: vec!["other.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
    std::fs::write(&config, text).expect("write");
    let error = start_error(&config);
    assert!(
        error.contains("the NATS stream \"WEBHOOKS\" exists with incompatible settings"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_left_for_a_destination_or_partition_no_longer_configured_are_named_at_start() {
    let mut s = setup("orphans", HANG, "", "").await;
    let ingresses = vec![s.routers[0].ingress.clone()];
    assert_eq!(accepted(&post_all(&ingresses, 0..5, 5).await).len(), 5);
    for router in s.routers.drain(..) {
        let (clean, log) = router.stop();
        assert!(clean, "{log:#?}");
    }
    // The same router with the destination renamed: the 5 events stay in the stream, named.
    let config = s._dir.join("router1.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("[destinations.sink]", "[destinations.other]")
            .replace("destinations = [\"sink\"]", "destinations = [\"other\"]"),
    )
    .expect("write");
    // And an ordered event on a partition past `partitions` (16): as after lowering it.
    let js = jetstream(&s.nats).await;
    js.publish("WEBHOOKS.deliver.other.ordered.40", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let mut router = start(&config);
    let line = router.wait_for_log("which is not in the config");
    assert!(
        line.contains("5 events wait in the stream for destination \"sink\""),
        "{line}"
    );
    let line = router.wait_for_log("past [queue] partitions");
    assert!(
        line.contains("1 ordered events wait in the stream on partition 40 of destination \"other\", past [queue] partitions = 16"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_answers_503_and_keeps_what_it_accepted() {
    let mut s = setup("full", HANG, "max_bytes = \"1MiB\"", "").await;
    s.routers.truncate(1);
    let ingress = s.routers[0].ingress.clone();
    let answers = post_all(std::slice::from_ref(&ingress), 0..1500, 8).await;
    let kept = accepted(&answers);
    let refused = answers.iter().filter(|(_, status)| *status == 503).count();
    eprintln!(
        "1 MiB stream: {} accepted, {refused} answered 503",
        kept.len()
    );
    assert!(refused > 0 && !kept.is_empty(), "{answers:?}");
    let answer = client()
        .post(format!("http://{ingress}/hooks"))
        .header("content-type", "application/json")
        .body(numbered::body(9999))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    let reason = answer.text().await.expect("text");
    assert!(reason.contains("NATS stream full (max_bytes)"), "{reason}");
    // What was accepted is still there: delivered once the destination answers.
    s.mode.store(OK, Ordering::Release);
    drop(s.routers.remove(0));
    let mut router = start(&s._dir.join("router1.toml"));
    router.wait_for_log("router started");
    let counts = wait_delivered(&s.sink, &kept).await;
    assert_all_delivered(&kept, &counts);
}

/// A GitHub delivery signed with `s3cret`, to `/hooks` at `ingress`.
fn github_request(ingress: &str, delivery: &str, body: &[u8]) -> reqwest::RequestBuilder {
    let mut request = client()
        .post(format!("http://{ingress}/hooks"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", delivery);
    for (name, value) in webhook_router_tests::signing::sign("github", "s3cret", body, 0) {
        request = request.header(name, value);
    }
    request.body(body.to_vec())
}

/// Posts [`github_request`]: its status and the event id it was answered with.
async fn post_github(ingress: &str, delivery: &str, body: &[u8]) -> (u16, String) {
    let answer = github_request(ingress, delivery, body)
        .send()
        .await
        .expect("post");
    let status = answer.status().as_u16();
    let json: serde_json::Value = answer.json().await.unwrap_or_default();
    (status, json["id"].as_str().unwrap_or_default().to_owned())
}

/// The route's entries in the shared dedup window (24 h: bucket `WEBHOOKS_dedup_86400s`), as
/// the server holds them now.
async fn dedup_entries(nats: &NatsServer) -> Vec<(String, String)> {
    use futures_util::StreamExt;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let Ok(bucket) = async_nats::jetstream::new(client)
        .get_key_value("WEBHOOKS_dedup_86400s")
        .await
    else {
        return Vec::new();
    };
    let keys: Vec<String> = bucket
        .keys()
        .await
        .expect("keys")
        .filter_map(|key| async move { key.ok() })
        .collect()
        .await;
    let mut entries = Vec::new();
    for key in keys {
        if let Some(value) = bucket.get(&key).await.expect("get") {
            entries.push((key, String::from_utf8_lossy(&value).into_owned()));
        }
    }
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_router_killed_before_publishing_expires_within_seconds() {
    const DELIVERY: &str = "9b1c2e4a-0d6f-11ef-8a3b-5f2e7d9c1a00";
    let dir = fresh_dir("claim");
    let nats = NatsServer::start(&dir.join("nats"));
    let sink = Sink::healthy().await;
    let dedup = "verify = { preset = \"github\", secrets = [\"s3cret\"] }\ndedup = {}\n";
    // Router 1's plugin sleeps for a minute on every event, after the delivery id is claimed
    // and before the event is published: the window a crash leaves a pending claim in. A
    // publish_timeout of 1 s makes a pending claim live 6 s (publish_timeout + 5 s).
    let holding = format!(
        "{dedup}[[routes.plugins]]\nmodule = \"{}\"\n\
         config = {{ mode = \"sleep\", bytes = 60000 }}\nlimits = {{ time = \"10s\" }}\n",
        webhook_router_tests::wasm::module("hostile").display()
    );
    let queue = "publish_timeout = \"1s\"";
    let one = start(&write_config(&dir, 1, &nats.url(), &sink, queue, &holding));
    let mut two = start(&write_config(&dir, 2, &nats.url(), &sink, queue, dedup));
    let body = br#"{"action":"opened","number":1}"#;

    let held = tokio::spawn(github_request(&one.ingress, DELIVERY, body).send());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let claim = loop {
        if let Some(entry) = dedup_entries(&nats).await.pop() {
            break entry;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "router 1 never claimed the id"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = one.kill();
    let killed_at = std::time::Instant::now();
    let answer = held.await.expect("join");
    assert!(
        answer.is_err(),
        "router 1 died before answering: {answer:?}"
    );
    eprintln!("router 1 killed with its claim pending: {claim:?}");
    assert!(claim.1.starts_with('?'), "a pending claim: {claim:?}");
    assert_eq!(
        dedup_entries(&nats).await,
        vec![claim.clone()],
        "the dead router's claim is left as it was"
    );

    // The sender retries on router 2: "being accepted" until the claim's deadline, then taken.
    let mut refused = 0;
    let accepted_id = loop {
        let (status, id) = post_github(&two.ingress, DELIVERY, body).await;
        if status == 202 {
            break id;
        }
        assert_eq!(status, 503, "in progress until the claim expires");
        refused += 1;
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "the dead router's claim never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = killed_at.elapsed();
    eprintln!(
        "202 from router 2 {:.1} s after router 1 was killed ({refused} answers 503 before)",
        took.as_secs_f64()
    );
    assert!(refused > 0, "the claim was honoured while it was alive");
    assert!(
        took < Duration::from_secs(8),
        "202 within seconds: {took:?}"
    );
    two.wait_for_log("taken over");

    // Delivered once; the id is now a duplicate answered with that event.
    sink.wait_for_delivered(1, PATIENCE).await;
    let (status, again) = post_github(&two.ingress, DELIVERY, body).await;
    assert_eq!((status, again.as_str()), (202, accepted_id.as_str()));
    wait_idle(&two.admin).await;
    assert_eq!(sink.delivered().len(), 1, "delivered once");
    assert_eq!(
        metric(&two.admin, "webhook_duplicates_total{route=\"hooks\"}").await,
        Some(1.0)
    );
    let entries = dedup_entries(&nats).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1, accepted_id, "committed as router 2's event");
}

/// The test's own JetStream client on `nats`.
async fn jetstream(nats: &NatsServer) -> async_nats::jetstream::Context {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    async_nats::jetstream::new(client)
}

/// The consumer that delivers to destination `sink`.
async fn sink_consumer(
    stream: &async_nats::jetstream::stream::Stream,
) -> async_nats::jetstream::consumer::Info {
    stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("deliver-sink")
        .await
        .expect("consumer")
        .get_info()
        .await
        .expect("consumer info")
}

/// The letters listed by `admin`, once there are `count` of them (at most [`PATIENCE`]).
async fn wait_letters(admin: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let letters = dead_letters(admin)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default();
        if letters.len() >= count || tokio::time::Instant::now() > deadline {
            return letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_handed_back_at_twelve_stops_and_kills_end_delivered_or_dead_lettered() {
    // `max_attempts = 1` and a destination that never answers: every stop cuts the attempts
    // off (they finish nothing) and hands the messages back, every kill leaves them to
    // `ack_wait`. JetStream counts each as a delivery; the old `max_deliver` (max_attempts +
    // 10 = 11) left a message in the stream for ever after the 11th.
    const FIRST: u64 = 20;
    const LATER: u64 = 10;
    const CYCLES: usize = 12;
    let dir = fresh_dir("cycles");
    let nats = NatsServer::start(&dir.join("nats"));
    let mode = Arc::new(AtomicU8::new(HANG));
    // A hanging request is recorded with a status that is not 2xx, so that only the answers
    // given once the destination is back count as deliveries.
    let sink = {
        let mode = Arc::clone(&mode);
        Sink::start(move |_| match mode.load(Ordering::Acquire) {
            HANG => Reply {
                delay: Some(Duration::from_secs(3600)),
                ..Reply::status(504)
            },
            _ => Reply::ok(),
        })
        .await
    };
    let config = write_config(&dir, 1, &nats.url(), &sink, "", "");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("max_attempts = 5", "max_attempts = 1"),
    )
    .expect("write");
    let mut first = BTreeSet::new();
    let mut later = BTreeSet::new();
    let mut stream = None;
    let started = std::time::Instant::now();
    for cycle in 1..=CYCLES {
        let router = start(&config);
        let ingress = vec![router.ingress.clone()];
        // 20 events from the start (handed out 12 times by the end), 10 from the 7th cycle on
        // (6 times).
        if cycle == 1 {
            first = accepted(&post_all(&ingress, 0..FIRST, 8).await);
            assert_eq!(first.len() as u64, FIRST, "every post was accepted");
        }
        if cycle == 7 {
            later = accepted(&post_all(&ingress, FIRST..FIRST + LATER, 8).await);
            assert_eq!(later.len() as u64, LATER, "every post was accepted");
        }
        let stream = match &stream {
            Some(stream) => stream,
            None => stream.insert(webhooks_stream(&nats).await),
        };
        // Every message in the stream is handed out to this router before it stops: the router
        // holds as many events as the stream has messages.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let in_stream = messages_in(stream).await;
            let held = metric(&router.admin, "webhook_queue_depth")
                .await
                .expect("webhook_queue_depth");
            if held == in_stream as f64 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cycle {cycle}: the router holds {held} events, the stream has {in_stream}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if cycle % 3 == 0 {
            let _ = router.kill();
        } else {
            let (clean, log) = router.stop();
            assert!(clean, "{log:#?}");
        }
    }
    eprintln!(
        "{CYCLES} start/stop cycles (every third a SIGKILL) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let stream = stream.expect("stream");
    assert_eq!(
        sink_consumer(&stream).await.config.max_deliver,
        -1,
        "JetStream's redelivery limit is off"
    );
    // The destination answers again: what is left is delivered.
    mode.store(OK, Ordering::Release);
    let router = start(&config);
    let counts = wait_delivered(&sink, &later).await;
    assert_all_delivered(&later, &counts);
    let letters = wait_letters(&router.admin, FIRST as usize).await;
    wait_idle(&router.admin).await;
    assert_eq!(
        stream_messages(&nats).await,
        0,
        "nothing is left in the stream"
    );
    let delivered: BTreeSet<u64> = deliveries(&sink).into_keys().collect();
    eprintln!(
        "{} of {} accepted events delivered, {} dead-lettered",
        delivered.len(),
        FIRST + LATER,
        letters.len()
    );
    // The first 20 were handed out 12 times without an attempt finishing: dead letters that
    // say so, with their true attempt count (none). The later 10 were handed out 6 times, and
    // those hand-backs did not use up their one attempt: delivered.
    assert_eq!(
        delivered, later,
        "the later events, and only they, delivered"
    );
    assert_eq!(letters.len(), first.len(), "{letters:#?}");
    let events: BTreeSet<&str> = letters
        .iter()
        .map(|l| l["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(events.len() as u64, FIRST, "one letter per event");
    for letter in &letters {
        let reason = letter["last_error"].as_str().expect("last_error");
        assert!(
            reason.starts_with("given up: JetStream handed the message out 12 times, 11 of them"),
            "{reason}"
        );
        assert_eq!(letter["attempts"], 0, "{letter}");
    }
}

/// The keys of the live attempt records (`WEBHOOKS_attempts`).
async fn attempt_records(js: &async_nats::jetstream::Context) -> Vec<String> {
    use futures_util::StreamExt;
    let bucket = js
        .get_key_value("WEBHOOKS_attempts")
        .await
        .expect("the attempts bucket");
    let keys = bucket.keys().await.expect("keys");
    tokio::time::timeout(PATIENCE, keys.collect::<Vec<_>>())
        .await
        .expect("keys listed")
        .into_iter()
        .map(|key| key.expect("key"))
        .collect()
}

/// Sets the dead-letter bucket's message limit (-1: none).
async fn limit_letter_bucket(js: &async_nats::jetstream::Context, max_messages: i64) {
    let mut bucket = js
        .get_stream("KV_WEBHOOKS_dead_letters")
        .await
        .expect("the dead-letter bucket");
    let mut config = bucket.info().await.expect("bucket info").config.clone();
    config.max_messages = max_messages;
    js.update_stream(config).await.expect("limit the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_acked_only_once_its_dead_letter_is_stored() {
    const EVENTS: u64 = 20;
    const ROOM: u64 = 5;
    // The destination refuses every event for good (400): each becomes a dead letter at its
    // first attempt. The shared bucket takes only 5 letters.
    let s = setup("letter_store", REJECT, "", "").await;
    let js = jetstream(&s.nats).await;
    limit_letter_bucket(&js, ROOM as i64).await;
    let ingresses: Vec<String> = s.routers.iter().map(|r| r.ingress.clone()).collect();
    let wanted = accepted(&post_all(&ingresses, 0..EVENTS, 8).await);
    assert_eq!(wanted.len() as u64, EVENTS, "every post was accepted");
    let failures = || async {
        let mut total = 0.0;
        for router in &s.routers {
            total += metric(&router.admin, "webhook_dead_letter_store_failures_total")
                .await
                .expect("webhook_dead_letter_store_failures_total");
        }
        total
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while failures().await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bucket never refused a letter"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // For 12 s (two rounds of dead-lettering again), every event has its message in the
    // stream or its letter in the bucket. (The stream is read first: a letter is stored
    // before its message is acked.)
    let stream = webhooks_stream(&s.nats).await;
    let bucket = js
        .get_stream("KV_WEBHOOKS_dead_letters")
        .await
        .expect("bucket");
    let window = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut samples = 0;
    while tokio::time::Instant::now() < window {
        let messages = messages_in(&stream).await;
        let letters = bucket.get_info().await.expect("bucket info").state.messages;
        assert!(
            messages + letters >= EVENTS,
            "{messages} messages in the stream and {letters} letters in the bucket: an event \
             was acked without its letter"
        );
        assert!(letters <= ROOM);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = failures().await;
    eprintln!(
        "bucket limited to {ROOM} letters: {refused} letters refused; {samples} samples of \
         stream + bucket, none short of {EVENTS}"
    );
    assert!(
        refused > (EVENTS - ROOM) as f64,
        "each refused letter is tried again"
    );
    // An event whose letter was refused is dead-lettered again without another attempt: its
    // verdict waits in an attempt record.
    assert_eq!(
        s.sink.requests().len() as u64,
        EVENTS,
        "one attempt per event"
    );
    let verdicts = attempt_records(&js).await.len();
    assert!(verdicts > 0, "the refused letters' verdicts are recorded");
    // The bucket takes letters again: every event ends a dead letter, listed on both routers.
    limit_letter_bucket(&js, -1).await;
    let one = wait_letters(&s.routers[0].admin, EVENTS as usize).await;
    let two = wait_letters(&s.routers[1].admin, EVENTS as usize).await;
    assert_eq!((one.len(), two.len()), (EVENTS as usize, EVENTS as usize));
    assert_eq!(stream_messages(&s.nats).await, 0, "every message acked");
    let events: BTreeSet<&str> = one
        .iter()
        .map(|l| l["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(events.len() as u64, EVENTS, "one letter per event");
    for letter in &one {
        assert_eq!(letter["last_status"], 400, "{letter}");
        assert_eq!(letter["attempts"], 1, "{letter}");
    }
    for router in &s.routers {
        wait_idle(&router.admin).await;
    }
    assert_eq!(
        s.sink.requests().len() as u64,
        EVENTS,
        "one attempt per event"
    );
    // Each record is deleted once its message is acked.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let left = attempt_records(&js).await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempt records left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{verdicts} verdicts were recorded while the bucket refused letters; none is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_does_not_decode_becomes_a_dead_letter_holding_its_raw_bytes() {
    use webhook_router::queue::nats::encoding;
    let s = setup("undecodable", OK, "", "").await;
    let js = jetstream(&s.nats).await;
    let publish = |id: &str, payload: Vec<u8>, version: Option<&str>| {
        let mut message = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(id);
        if let Some(version) = version {
            message = message.header(encoding::HEADER, version);
        }
        let js = js.clone();
        async move {
            js.send_publish("WEBHOOKS.deliver.sink", message)
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    };
    // A message as a router from before the version header wrote it: still delivered.
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("value"));
    let legacy = webhook_router::event::Event {
        id: webhook_router::event::Event::new_id(),
        route: "hooks".into(),
        method: http::Method::POST,
        path: "/hooks".into(),
        query: String::new(),
        headers,
        body: numbered::body(1000).into(),
        received_at: std::time::SystemTime::now(),
        plugin_headers: None,
        order_key: None,
        trace: None,
    };
    publish(&legacy.id, encoding::encode(&legacy).to_vec(), None).await;
    // Bytes that are no event, and a version this router does not know.
    let garbage = b"\x00\x01 not an event \xff".to_vec();
    let newer = br#"{"written":"by a newer router"}"#.to_vec();
    publish("garbage-1", garbage.clone(), None).await;
    publish("newer-1", newer.clone(), Some("99")).await;
    let ingresses: Vec<String> = s.routers.iter().map(|r| r.ingress.clone()).collect();
    let mut wanted = accepted(&post_all(&ingresses, 0..10, 4).await);
    assert_eq!(wanted.len(), 10, "every post was accepted");
    wanted.insert(1000);
    let counts = wait_delivered(&s.sink, &wanted).await;
    assert_eq!(assert_all_delivered(&wanted, &counts), 0);
    let letters = wait_letters(&s.routers[1].admin, 2).await;
    for router in &s.routers {
        wait_idle(&router.admin).await;
    }
    assert_eq!(stream_messages(&s.nats).await, 0, "the stream ends empty");
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let letter = |event: &str| {
        letters
            .iter()
            .find(|l| l["event_id"] == event)
            .unwrap_or_else(|| panic!("no letter for {event}: {letters:#?}"))
            .clone()
    };
    let (bad, new) = (letter("garbage-1"), letter("newer-1"));
    eprintln!("{bad}\n{new}");
    assert_eq!(bad["body_bytes"], garbage.len());
    assert_eq!(new["body_bytes"], newer.len());
    assert_eq!(bad["destination"], "sink");
    let reason = |l: &serde_json::Value| l["last_error"].as_str().expect("reason").to_owned();
    assert!(
        reason(&bad).contains("does not decode: its payload does not read as encoding version 1"),
        "{bad}"
    );
    assert!(
        reason(&new).contains("does not decode: its encoding version \"99\""),
        "{new}"
    );
    // The letters hold the raw bytes: replayed, the destination receives exactly them.
    for letter in [&bad, &new] {
        assert_eq!(
            replay(&s.routers[0].admin, letter["id"].as_str().expect("id")).await,
            202
        );
    }
    let raw = s
        .sink
        .wait_for(2, PATIENCE, |r| {
            r.body.as_ref() == garbage.as_slice() || r.body.as_ref() == newer.as_slice()
        })
        .await;
    assert_eq!(raw.len(), 2, "both raw payloads delivered as they were");
    assert_eq!(stream_messages(&s.nats).await, 0, "the stream ends empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_backs_do_not_use_up_attempts_every_event_gets_max_attempts() {
    // Every attempt fails after 300 ms (503), `max_attempts = 3`; router 1 is stopped and
    // started again three times meanwhile, handing back what it held. Each event still gets
    // exactly 3 attempts: JetStream's delivery count (attempts and hand-backs) is not the
    // attempt count. (An attempt takes less than the last quarter of `shutdown_grace`, in which
    // a stopping router starts none: no attempt is cut off, unrecorded, and made again.)
    const EVENTS: u64 = 40;
    let dir = fresh_dir("attempts");
    let nats = NatsServer::start(&dir.join("nats"));
    let sink = Sink::start(|_| Reply {
        delay: Some(Duration::from_millis(300)),
        ..Reply::status(503)
    })
    .await;
    let configs: Vec<PathBuf> = (1..=2)
        .map(|n| {
            let config = write_config(&dir, n, &nats.url(), &sink, "", "");
            let text = std::fs::read_to_string(&config).expect("config");
            // No circuit breaker: it would hold the deliveries back for longer and longer.
            let text = text
                .replace("max_attempts = 5", "max_attempts = 3")
                .replace("retry = {", "circuit = { failures = 10000 }\nretry = {");
            std::fs::write(&config, text).expect("write");
            config
        })
        .collect();
    let mut one = start(&configs[0]);
    let two = start(&configs[1]);
    let ingresses = vec![one.ingress.clone(), two.ingress.clone()];
    let wanted = accepted(&post_all(&ingresses, 0..EVENTS, 8).await);
    assert_eq!(wanted.len() as u64, EVENTS, "every post was accepted");
    for round in 1..=3 {
        sink.wait_for(round * 20, PATIENCE, |_| true).await;
        let (clean, log) = one.stop();
        assert!(clean, "{log:#?}");
        one = start(&configs[0]);
    }
    let letters = wait_letters(&two.admin, EVENTS as usize).await;
    for router in [&one, &two] {
        wait_idle(&router.admin).await;
    }
    assert_eq!(stream_messages(&nats).await, 0, "every message acked");
    let mut attempts = std::collections::BTreeMap::<u64, usize>::new();
    for request in sink.requests() {
        *attempts.entry(number(&request)).or_default() += 1;
    }
    let hand_outs = sink_consumer(&webhooks_stream(&nats).await)
        .await
        .delivered
        .consumer_sequence;
    eprintln!(
        "{EVENTS} events, {} attempts, {hand_outs} hand-outs by JetStream, {} dead letters",
        attempts.values().sum::<usize>(),
        letters.len()
    );
    assert_eq!(attempts.keys().copied().collect::<BTreeSet<_>>(), wanted);
    let off: Vec<_> = attempts.iter().filter(|&(_, &count)| count != 3).collect();
    assert!(off.is_empty(), "events not attempted 3 times: {off:?}");
    assert_eq!(letters.len() as u64, EVENTS, "{letters:#?}");
    for letter in &letters {
        assert_eq!(letter["attempts"], 3, "{letter}");
        assert_eq!(letter["last_status"], 503, "{letter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_an_older_router_made_loses_its_max_deliver_at_start() {
    let dir = fresh_dir("upgrade");
    let nats = NatsServer::start(&dir.join("nats"));
    let sink = Sink::healthy().await;
    let config = write_config(&dir, 1, &nats.url(), &sink, "", "");
    let (clean, log) = start(&config).stop();
    assert!(clean, "{log:#?}");
    // The consumer as an older router left it: `max_deliver` = max_attempts + 10.
    let stream = webhooks_stream(&nats).await;
    let mut older = sink_consumer(&stream).await.config;
    older.max_deliver = 15;
    stream
        .create_consumer(older)
        .await
        .expect("update the consumer");
    assert_eq!(sink_consumer(&stream).await.config.max_deliver, 15);
    let router = start(&config);
    assert_eq!(
        sink_consumer(&stream).await.config.max_deliver,
        -1,
        "JetStream's redelivery limit is off again"
    );
    let (clean, log) = router.stop();
    assert!(clean, "{log:#?}");
}
