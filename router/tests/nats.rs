//! Several routers on one NATS JetStream (`backend = "nats"`), tested with a real `nats-server`
//! started for each test on a free port: two routers share the work, one is killed (SIGKILL)
//! mid-load, the server is stopped for 5 s under load, a delivery id is a duplicate across
//! routers, and a dead letter made by one router is replayed through the other. Each counts
//! what was 202'd against what the sink received.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use webhook_router_tests::nats::NatsServer;
use webhook_router_tests::numbered::{
    self, PATIENCE, accepted, assert_all_delivered, client, dead_letters, deliveries, metric,
    number, post_all, wait_delivered, wait_idle,
};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, RouterProcess, Sink};

/// How the sink answers, switched while a test runs.
const OK: u8 = 0;
const SLOW: u8 = 1;
const REJECT: u8 = 2;
const HANG: u8 = 3;

async fn switchable_sink(mode: &Arc<AtomicU8>) -> Sink {
    let mode = Arc::clone(mode);
    Sink::start(move |_| match mode.load(Ordering::Acquire) {
        SLOW => Reply {
            delay: Some(Duration::from_millis(20)),
            ..Reply::ok()
        },
        REJECT => Reply::status(400),
        HANG => Reply::hang(),
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
    let replay = client()
        .post(format!(
            "http://{}/dead-letters/{}/replay",
            s.routers[1].admin,
            letter["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 202);
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
async fn events_left_for_a_destination_no_longer_configured_are_named_at_start() {
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
    let mut router = start(&config);
    let line = router.wait_for_log("which is not in the config");
    assert!(
        line.contains("5 events wait in the stream for destination \"sink\""),
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
