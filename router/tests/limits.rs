//! Ingress limits, measured on a router process: thousands of idle connections against a low
//! descriptor limit, HTTP/2 streams trickling large bodies, requests that promise far more
//! body than they send, and a flood of refused requests against the lines it logs. The
//! router's resident memory is read from `/proc/<pid>/status`.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use webhook_router::ingress::body::FIRST_CHUNK;
use webhook_router::ingress::refusal_log::SUMMARY_INTERVAL;
use webhook_router::server::protocol::{CONNECTION_WINDOW_BYTES, READ_BUFFER_BYTES};
use webhook_router_tests::process_stats::resident_bytes_of;
use webhook_router_tests::signing::{sign, unix_now};
use webhook_router_tests::test_router::metric_value;
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{RouterProcess, Sink};

/// Patience for what should take a few seconds on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A fresh directory for test `name`'s config, under the target directory.
fn fresh_dir(name: &str) -> PathBuf {
    webhook_router_tests::numbered::fresh_dir(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "limits",
        name,
    )
}

/// Writes the config of test `name`: `[server]` with `server` lines, a route `/hooks` to `sink`
/// and a route `/signed` that verifies Standard Webhooks signatures.
fn write_config(name: &str, sink: &Sink, server: &str) -> PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n\
         [destinations.sink]\nurl = \"{}\"\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\n\
         [[routes]]\nid = \"signed\"\npath = \"/signed\"\ndestinations = [\"sink\"]\n\
         verify = {{ preset = \"standard-webhooks\", secrets = [\"{STANDARD_SECRET}\"] }}\n",
        sink.url("/in"),
    );
    let path = fresh_dir(name).join("router.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_webhook-router"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("client")
}

async fn metrics(admin: &str) -> String {
    client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the metric `series` in the exposition `text`; a series not exported fails the
/// test.
fn required(text: &str, series: &str) -> f64 {
    metric_value(text, series).unwrap_or_else(|| panic!("{series} is not exported"))
}

/// The value of the metric `series`; a series not exported fails the test.
async fn metric(admin: &str, series: &str) -> f64 {
    required(&metrics(admin).await, series)
}

/// Waits until the metric `series` reads `value`.
async fn wait_for_metric(admin: &str, series: &str, value: f64) {
    wait_until(
        &format!("{series} to read {value}"),
        PATIENCE,
        || async { metric_value(&metrics(admin).await, series) },
        |now| *now == Some(value),
    )
    .await;
}

fn rss(router: &RouterProcess) -> u64 {
    resident_bytes_of(router.pid()).expect("the router's VmRSS")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Sends `request` on `stream` and reads the whole answer (with a `Content-Length`); returns
/// its status.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<u16> {
    stream.write_all(request).await?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Ok(status)
}

/// Opens `count` connections to `addr`, `workers` at a time, each of which makes one request
/// (a 404) and then stays open, idle.
async fn open_idle(addr: &str, count: usize, workers: usize) -> Vec<TcpStream> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let next = Arc::clone(&next);
        let addr = addr.to_owned();
        tasks.spawn(async move {
            let mut streams = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let mut stream = TcpStream::connect(&addr).await.expect("connect");
                let status = exchange(&mut stream, b"GET /nothing HTTP/1.1\r\nhost: r\r\n\r\n")
                    .await
                    .expect("one request on a new connection is answered");
                assert_eq!(status, 404);
                streams.push(stream);
            }
            streams
        });
    }
    let mut streams = Vec::with_capacity(count);
    while let Some(opened) = tasks.join_next().await {
        streams.extend(opened.expect("opener"));
    }
    streams
}

/// Whether the router has closed `stream` (EOF or reset) without blocking.
fn closed_now(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_descriptor_limit_lock_out_no_one_and_close_when_idle() {
    const CONNECTIONS: usize = 3000;
    // This process holds 3000 sockets too.
    rlimit::increase_nofile_limit(u64::MAX).expect("raise this process's descriptor limit");
    let sink = Sink::healthy().await;
    let config = write_config(
        "idle_connections",
        &sink,
        "header_read_timeout = \"2s\"\nidle_timeout = \"3s\"",
    );
    let mut router = RouterProcess::start_with_descriptor_limit(binary(), &config, 2048);
    let line = router.wait_for_log("max_connections");
    assert!(
        line.contains("descriptor limit 2048; max_connections 1536"),
        "{line}"
    );
    let before = rss(&router);

    let opening = Instant::now();
    let streams = open_idle(&router.ingress, CONNECTIONS, 32).await;
    let opened_in = opening.elapsed();
    let at_peak = rss(&router);
    let text = metrics(&router.admin).await;
    let value = |series: &str| required(&text, series);
    let open = value("webhook_connections{listener=\"ingress\"}");
    let evicted =
        value("webhook_connections_closed_total{listener=\"ingress\",reason=\"evicted\"}");
    let idle_closed =
        value("webhook_connections_closed_total{listener=\"ingress\",reason=\"idle_timeout\"}");
    let refused = value("webhook_rejected_connections_total{listener=\"ingress\"}");
    assert!(
        open <= 1536.0,
        "{open} connections open past max_connections"
    );
    assert_eq!(refused, 0.0, "idle connections made room: none refused");
    assert_eq!(
        open + evicted + idle_closed,
        CONNECTIONS as f64,
        "every connection is open, evicted or closed idle"
    );
    let closed_early = streams.iter().filter(|s| closed_now(s)).count();

    // A working client and /healthz are served while the ingress is full of idle sockets.
    let answer = client()
        .post(format!("http://{}/hooks", router.ingress))
        .header("content-type", "application/json")
        .body("{\"n\":1}")
        .send()
        .await
        .expect("a new client is answered");
    assert_eq!(answer.status(), 202);
    let health = client()
        .get(format!("http://{}/healthz", router.admin))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(health.status(), 200);
    assert_eq!(sink.wait_for_delivered(1, PATIENCE).await.len(), 1);

    // Every idle socket sees its end: evicted at once, or after idle_timeout.
    let waiting = Instant::now();
    let mut ends = JoinSet::new();
    for mut stream in streams {
        ends.spawn(async move {
            let mut rest = Vec::new();
            tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
                .await
                .is_ok()
        });
    }
    let mut ended = 0;
    while let Some(end) = ends.join_next().await {
        ended += usize::from(end.expect("reader"));
    }
    let all_closed_in = waiting.elapsed();
    assert_eq!(
        ended, CONNECTIONS,
        "idle sockets still open after idle_timeout"
    );
    wait_for_metric(
        &router.admin,
        "webhook_connections{listener=\"ingress\"}",
        0.0,
    )
    .await;
    let after = rss(&router);
    let idle_closed = metric(
        &router.admin,
        "webhook_connections_closed_total{listener=\"ingress\",reason=\"idle_timeout\"}",
    )
    .await;
    eprintln!(
        "{CONNECTIONS} idle connections under a 2048-descriptor limit (max_connections 1536): \
         opened in {opened_in:?}; then {open} open, {evicted} evicted ({closed_early} already \
         seen closed), 0 refused; all closed {all_closed_in:?} later ({idle_closed} by \
         idle_timeout 3s); router RSS {:.1} MiB before, {:.1} MiB with them open, {:.1} MiB after",
        mib(before),
        mib(at_peak),
        mib(after)
    );
    let (stopped, _) = router.stop();
    assert!(stopped);
}

/// A request body of `remaining` bytes sent in `chunk`-byte frames, one every `every`.
struct Trickle {
    remaining: usize,
    chunk: usize,
    ticks: tokio::time::Interval,
}

impl Trickle {
    fn new(size: usize, chunk: usize, every: Duration) -> Self {
        Self {
            remaining: size,
            chunk,
            ticks: tokio::time::interval(every),
        }
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.ticks.poll_tick(cx).is_pending() {
            return Poll::Pending;
        }
        let size = self.chunk.min(self.remaining);
        self.remaining -= size;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; size])))))
    }
}

/// Samples `pid`'s RSS every 10 ms until `stop`; the highest seen.
fn sample_peak_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let peak = AtomicU64::new(0);
        while !stop.load(Ordering::Acquire) {
            peak.fetch_max(resident_bytes_of(pid).unwrap_or(0), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_trickling_large_bodies_stay_within_the_memory_bound() {
    const CONNECTIONS: usize = 3;
    const STREAMS: usize = 200;
    const BODY: usize = 1_000_000;
    const IN_FLIGHT: u64 = 16;
    const MAX_BODY: u64 = MIB;
    let sink = Sink::healthy().await;
    let config = write_config(
        "h2_trickle",
        &sink,
        &format!(
            // A per-client cap above the listener's, so that each connection may open 100
            // streams at once (the most HTTP/2 allows) and only the listener's cap applies.
            "max_requests_in_flight = {IN_FLIGHT}\nmax_requests_in_flight_per_client = 1000\n\
             max_body_bytes = \"1MiB\"\nbody_read_timeout = \"60s\""
        ),
    );
    let router = RouterProcess::start(binary(), &config);
    // The README's bound ("Ingress limits") for these connections: each request in flight holds
    // its body at most twice over (while it is copied into the event), and each connection at
    // most its HTTP/2 connection window and an HTTP/1 read buffer.
    let bound = IN_FLIGHT * 2 * MAX_BODY
        + CONNECTIONS as u64 * (u64::from(CONNECTION_WINDOW_BYTES) + READ_BUFFER_BYTES as u64);
    // What is not body bytes: stream and task state for 600 streams, allocator slack.
    let allowance = 8 * MIB;
    let answer = client()
        .post(format!("http://{}/hooks", router.ingress))
        .body("{}")
        .send()
        .await
        .expect("warm-up");
    assert_eq!(answer.status(), 202);
    let before = rss(&router);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak_rss(router.pid(), Arc::clone(&stop));

    let started = Instant::now();
    let mut requests = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let stream = TcpStream::connect(&router.ingress).await.expect("connect");
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        tokio::spawn(connection);
        for _ in 0..STREAMS {
            let mut sender = sender.clone();
            let request = http::Request::post(format!("http://{}/hooks", router.ingress))
                .body(Trickle::new(BODY, 16 * 1024, Duration::from_millis(20)))
                .expect("request");
            requests.spawn(async move {
                match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.into_body().collect().await;
                        Some(status)
                    }
                    // Refused by the stream limit (REFUSED_STREAM) or reset.
                    Err(_) => None,
                }
            });
        }
    }
    let (mut accepted, mut busy, mut other, mut refused) = (0, 0, 0, 0);
    while let Some(outcome) = tokio::time::timeout(PATIENCE, requests.join_next())
        .await
        .expect("every stream ends in time")
    {
        match outcome.expect("request task") {
            Some(202) => accepted += 1,
            Some(503) => busy += 1,
            Some(_) => other += 1,
            None => refused += 1,
        }
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Release);
    let peak = sampler.await.expect("sampler");
    let grew = peak.saturating_sub(before);
    eprintln!(
        "{CONNECTIONS} h2c connections x {STREAMS} streams of {BODY} bytes trickled: {accepted} \
         accepted, {busy} got 503 (busy), {refused} refused, {other} other, in {took:?}; router \
         RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB); bound {:.1} MiB + {:.1} MiB allowance",
        mib(before),
        mib(peak),
        mib(grew),
        mib(bound),
        mib(allowance)
    );
    assert_eq!(accepted + busy + refused + other, CONNECTIONS * STREAMS);
    assert_eq!(other, 0, "every stream got 202 or 503, or was refused");
    assert!(accepted >= 1 && busy >= 1, "some in flight, the rest busy");
    assert!(
        accepted as u64 <= IN_FLIGHT * 2,
        "{accepted} accepted: more than the in-flight cap let through"
    );
    assert!(
        grew <= bound + allowance,
        "RSS grew {:.1} MiB, past the bound",
        mib(grew)
    );
    assert_eq!(
        sink.wait_for_delivered(accepted + 1, PATIENCE).await.len(),
        accepted + 1
    );
}

/// Opens `count` connections that each send the head of a POST to `/hooks` declaring
/// `content_length` bytes, then 10 bytes of body, and hold it open; returns once the router has
/// them all in flight, with the router's RSS growth over `before` (the highest of a few
/// samples), and the connections.
async fn hold_requests(
    router: &RouterProcess,
    count: usize,
    content_length: u64,
) -> (u64, Vec<TcpStream>) {
    let before = rss(router);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(&router.ingress).await.expect("connect");
        let head = format!(
            "POST /hooks HTTP/1.1\r\nhost: r\r\ncontent-type: application/json\r\n\
             content-length: {content_length}\r\n\r\n{{\"n\":1234}}"
        );
        stream.write_all(head.as_bytes()).await.expect("send");
        held.push(stream);
    }
    let gauge = "webhook_requests_in_flight{listener=\"ingress\"}";
    wait_for_metric(&router.admin, gauge, count as f64).await;
    let mut peak = 0;
    for _ in 0..10 {
        peak = peak.max(rss(router));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (peak.saturating_sub(before), held)
}

/// A router for [`hold_requests`]: bodies up to 256 MiB, and room for every held request, all
/// from this one client, for as long as the test holds them.
fn start_holding_router(name: &str, sink: &Sink) -> RouterProcess {
    let config = write_config(
        name,
        sink,
        "max_body_bytes = \"256MiB\"\nmax_requests_in_flight = 1000\n\
         max_requests_in_flight_per_client = 1000\nbody_read_timeout = \"60s\"\n\
         min_body_rate_grace = \"60s\"",
    );
    RouterProcess::start(binary(), &config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promised_bodies_cost_nothing_until_sent_and_many_signatures_are_refused_fast() {
    const HELD: usize = 200;
    /// The largest `max_body_bytes` allows (`Content-Length: 1073741824` would get 413 first).
    const PROMISED: u64 = 256 * MIB;
    let sink = Sink::healthy().await;
    // Each case in a fresh process, so that neither reuses memory the other freed.
    let small = start_holding_router("held_small", &sink);
    let (small_grew, small_held) = hold_requests(&small, HELD, 11).await;
    let large = start_holding_router("held_large", &sink);
    let (large_grew, large_held) = hold_requests(&large, HELD, PROMISED).await;
    eprintln!(
        "{HELD} requests held open after 10 bytes of body: router RSS +{:.2} MiB with \
         Content-Length 11, +{:.2} MiB with Content-Length {PROMISED}",
        mib(small_grew),
        mib(large_grew)
    );
    // A body's buffer starts at `FIRST_CHUNK` whatever the declared length: at most that much
    // more per request, and 1 MiB of noise.
    let margin = HELD as u64 * FIRST_CHUNK as u64 + MIB;
    assert!(
        large_grew <= small_grew + margin,
        "a promised body costs memory before it arrives: +{:.2} MiB against +{:.2} MiB",
        mib(large_grew),
        mib(small_grew)
    );
    drop(small_held);
    drop(large_held);

    // The literal 1 GiB promise is over the largest max_body_bytes: 413 at once, from the
    // head alone, with the 10 bytes sent and the rest never coming.
    let before = rss(&large);
    let mut stream = TcpStream::connect(&large.ingress).await.expect("connect");
    let head = "POST /hooks HTTP/1.1\r\nhost: r\r\ncontent-type: application/json\r\n\
                content-length: 1073741824\r\n\r\n{\"n\":1234}";
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered before the body arrived")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    eprintln!(
        "Content-Length 1073741824 with 10 bytes sent: 413 at once, router RSS {:+.2} MiB",
        mib(rss(&large)) - mib(before)
    );

    // 1,000 `v1a` entries (and the genuine `v1` signature last) are refused without looking at
    // more than the first few.
    let body = b"{\"type\":\"ping\"}";
    let timestamp = unix_now();
    let mut request = client()
        .post(format!("http://{}/signed", small.ingress))
        .header("content-type", "application/json")
        .body(&body[..]);
    let mut entries: Vec<String> = (0..1000).map(|n| format!("v1a,{}", base64_of(n))).collect();
    for (name, value) in sign("standard-webhooks", STANDARD_SECRET, body, timestamp) {
        if name == "webhook-signature" {
            entries.push(value);
        } else {
            request = request.header(name, value);
        }
    }
    let started = Instant::now();
    let answer = request
        .header("webhook-signature", entries.join(" "))
        .send()
        .await
        .expect("answer");
    let took = started.elapsed();
    let status = answer.status();
    let reason = answer.text().await.expect("reason");
    eprintln!("a signature header of 1,000 v1a entries: {status} in {took:?}: {reason}");
    assert_eq!(status, 401);
    assert!(reason.contains("malformed signature header"), "{reason}");
    assert_eq!(
        metric(
            &small.admin,
            "webhook_verification_failures_total{route=\"signed\",reason=\"malformed\"}"
        )
        .await,
        1.0
    );
}

/// 32 bytes derived from `n`, in base64: the size of an entry, not a signature.
fn base64_of(n: u32) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..32u32).map(|i| (n.wrapping_mul(31) ^ i) as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The router's log lines about refusals for `reason`: the first ones (logged in full, one per
/// route) and the summaries (each with `refused=N`, the refusals it stands for).
fn refusal_lines<'a>(log: &'a [String], reason: &str) -> (Vec<&'a str>, Vec<(&'a str, u64)>) {
    let key = format!("reason=\"{reason}\"");
    let (mut first, mut summaries) = (Vec::new(), Vec::new());
    for line in log.iter().filter(|line| line.contains(&key)) {
        let refused = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("refused="))
            .map(|n| n.parse().expect("refused=N"));
        match refused {
            Some(count) => summaries.push((line.as_str(), count)),
            None => first.push(line.as_str()),
        }
    }
    (first, summaries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_flood_logs_a_few_lines_and_counts_every_refusal() {
    // Long enough for one summary while it lasts.
    const FLOOD: Duration = SUMMARY_INTERVAL.saturating_add(Duration::from_secs(1));
    const CONCURRENCY: usize = 32;
    const MAX_HELD: usize = 20;
    // A destination that never answers: it holds max_held events, and the route answers 503.
    let stuck = Sink::start(|_| webhook_router_tests::Reply::hang()).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         shutdown_grace = \"100ms\"\n\
         [destinations.stuck]\nurl = \"{}\"\ntimeout = \"1h\"\nmax_in_flight = 4\n\
         max_held = {MAX_HELD}\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"stuck\"]\n",
        stuck.url("/in"),
    );
    let config = fresh_dir("refusal_flood").join("router.toml");
    std::fs::write(&config, text).expect("write config");
    let router = RouterProcess::start(binary(), &config);

    let url = format!("http://{}/hooks", router.ingress);
    let started = Instant::now();
    let mut flooders = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, url) = (client(), url.clone());
        flooders.spawn(async move {
            let (mut accepted, mut refused) = (0, 0);
            while started.elapsed() < FLOOD {
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{\"n\":1}")
                    .send()
                    .await
                    .expect("the router answers");
                match answer.status().as_u16() {
                    202 => accepted += 1,
                    503 => refused += 1,
                    status => panic!("answered {status}"),
                }
            }
            (accepted, refused)
        });
    }
    let (mut accepted, mut refused) = (0, 0);
    while let Some(done) = flooders.join_next().await {
        let (a, r) = done.expect("flooder");
        accepted += a;
        refused += r;
    }
    let flood = started.elapsed();
    assert_eq!(accepted, MAX_HELD, "max_held events, then 503");
    assert!(refused > 1000, "a flood: {refused} refusals in {flood:?}");
    // The counters count every refusal.
    assert_eq!(
        metric(
            &router.admin,
            "webhook_requests_total{route=\"hooks\",status=\"503\"}"
        )
        .await,
        refused as f64
    );

    // The stop writes the summary of the refusals since the last one.
    let (success, log) = router.stop();
    assert!(success, "{log:#?}");
    let (first, summaries) = refusal_lines(&log, "destination_full");
    let lines = first.len() + summaries.len();
    // What the router logged until the stop: the flood (and the start).
    let stop = log
        .iter()
        .position(|line| line.contains("stop signal received"))
        .expect("the stop is logged");
    let warnings: Vec<&String> = log[..stop]
        .iter()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    eprintln!(
        "{refused} refusals in {flood:?}, {CONCURRENCY} clients at a time: {lines} log lines \
         about them ({} in full, {} summaries), {} WARN or ERROR lines until the stop, {stop} \
         lines in all; the first: {:?}; the summaries: {summaries:?}",
        first.len(),
        summaries.len(),
        warnings.len(),
        first.first(),
    );
    assert_eq!(first.len(), 1, "one line in full for the route: {first:#?}");
    assert!(
        first[0].contains(" WARN ") && first[0].contains("holds its max_held events"),
        "{}",
        first[0]
    );
    // The line in full, one summary per interval of the flood, and one at the stop.
    let intervals = flood.as_secs().div_ceil(SUMMARY_INTERVAL.as_secs()) as usize;
    assert!(
        summaries.len() >= 2,
        "a summary while the flood lasts and one at the stop: {summaries:#?}"
    );
    assert!(
        lines <= 1 + intervals + 1,
        "{lines} lines for {refused} refusals in {flood:?}: {first:#?} {summaries:#?}"
    );
    assert!(
        warnings.len() <= 1 + intervals,
        "{} WARN or ERROR lines in a flood of {flood:?}: {warnings:#?}",
        warnings.len()
    );
    let summarised: u64 = summaries.iter().map(|(_, count)| count).sum();
    assert_eq!(
        summarised + first.len() as u64,
        refused as u64,
        "the log accounts for every refusal: {summaries:#?}"
    );
}
