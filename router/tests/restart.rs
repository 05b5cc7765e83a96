//! Restarts that refuse no one: the router run as a process on a journal, restarted under load
//! on a listening socket that a launcher holds and passes to each process as systemd socket
//! activation does (`LISTEN_FDS`), so that connections wait in the listen backlog during the
//! handover; a SIGTERM that leaves the queued events in the journal instead of draining them;
//! passed sockets the router must refuse; and the systemd units in `examples/systemd/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use webhook_router_tests::launcher::{listening_socket, serve_command};
use webhook_router_tests::numbered::{
    self, PATIENCE, accepted, assert_all_delivered, deliveries, post_accepted, post_paced,
    wait_delivered, wait_idle,
};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, RouterProcess, Sink, SocketHolder};

/// How long the test destination takes to answer each delivery.
const ATTEMPT: Duration = Duration::from_millis(300);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_webhook-router"))
}

/// A fresh directory for test `name`, under the target directory.
fn fresh_dir(name: &str) -> PathBuf {
    numbered::fresh_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "restart", name)
}

/// A sink that answers 200 after [`ATTEMPT`].
async fn slow_sink() -> Sink {
    Sink::start(|_| Reply {
        delay: Some(ATTEMPT),
        ..Reply::ok()
    })
    .await
}

/// Writes a config journaling under `dir/data` (synced before each 202) that routes `/hooks`
/// to `sink` with `max_in_flight` attempts at once; returns its path.
///
/// The connections queued during a handover reach the next process at once, about rate ×
/// handover time of them (some 130 here), on top of the requests still arriving: the ingress
/// must take that many in flight, or the excess is answered 503 busy (with the default 128, up
/// to 60 of 1,800 posts in a run were). Every post here comes from 127.0.0.1, so the per-client
/// limit is raised with it.
fn write_config(dir: &Path, sink: &Sink, max_in_flight: usize) -> PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"30s\"\n\
         max_requests_in_flight = 1024\nmax_requests_in_flight_per_client = 1024\n\
         [queue]\npath = \"data\"\nfsync = \"always\"\n\
         [destinations.sink]\nurl = \"{}\"\ntimeout = \"1h\"\nmax_in_flight = {max_in_flight}\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\n",
        sink.url("/in"),
    );
    let path = dir.join("router.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Held by the tests that time a SIGTERM, so that they do not load the machine for each other.
static TIMED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a SIGTERM with the journal may take: the attempts in flight, and at least 1 s.
fn stop_bound() -> Duration {
    ATTEMPT.max(Duration::from_secs(1))
}

/// SIGTERMs `router`, waits for it to exit, and starts the next process on the sockets that
/// `holder` keeps open: how long the stop took, and the new process.
fn hand_over(
    router: RouterProcess,
    holder: &SocketHolder,
    config: &Path,
) -> (Duration, RouterProcess) {
    let stopping = Instant::now();
    let (clean, log) = router.stop();
    let stopped_in = stopping.elapsed();
    assert!(clean, "{log:#?}");
    assert!(
        log.iter()
            .any(|line| line.contains("events left for the next start")
                || line.contains("stopped with no events left undelivered")),
        "{log:#?}"
    );
    (stopped_in, holder.start(binary(), config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_load_refuse_no_one_and_lose_nothing() {
    // 300 events/s for 6 s; 64 attempts of 300 ms at once deliver about 213/s, so a queue
    // builds up, and each restart finds hundreds of events queued and 64 in flight.
    const RATE: f64 = 300.0;
    const EVENTS: u64 = 1800;
    const MAX_IN_FLIGHT: usize = 64;
    const RESTARTS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(4)];
    let _timed = TIMED.lock().await;
    let sink = slow_sink().await;
    let dir = fresh_dir("under_load");
    let config = write_config(&dir, &sink, MAX_IN_FLIGHT);
    let holder = Arc::new(SocketHolder::bind());
    let first = {
        let (holder, config) = (Arc::clone(&holder), config.clone());
        tokio::task::spawn_blocking(move || holder.start(binary(), &config))
            .await
            .expect("start")
    };
    assert_eq!(first.ingress, holder.ingress_addr().to_string());
    assert_eq!(first.admin, holder.admin_addr().to_string());

    let started = tokio::time::Instant::now();
    let load = tokio::spawn({
        let ingress = first.ingress.clone();
        async move { post_paced(&ingress, 0..EVENTS, RATE).await }
    });
    let mut router = first;
    let mut stops = Vec::new();
    for at in RESTARTS {
        tokio::time::sleep_until(started + at).await;
        let queued = numbered::metric(&router.admin, "webhook_queue_depth")
            .await
            .expect("webhook_queue_depth");
        let (holder, config) = (Arc::clone(&holder), config.clone());
        let handing = Instant::now();
        let (stopped_in, next) =
            tokio::task::spawn_blocking(move || hand_over(router, &holder, &config))
                .await
                .expect("hand over");
        stops.push((queued, stopped_in, handing.elapsed()));
        router = next;
    }
    let (answers, slowest) = load.await.expect("load");
    let no_answer = answers.iter().filter(|(_, status)| *status == 0).count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, status)| *status != 0 && *status != 202)
        .collect();
    let wanted = accepted(&answers);
    let counts = wait_delivered(&sink, &wanted).await;
    let duplicates = assert_all_delivered(&wanted, &counts);
    wait_idle(&router.admin).await;
    let (clean, log) = router.stop();
    assert!(clean, "{log:#?}");

    for (restart, (queued, stopped_in, handover)) in stops.iter().enumerate() {
        eprintln!(
            "restart {}: {queued} events held at the SIGTERM; the process exited {:.0} ms later; \
             the next one listened {:.0} ms after the SIGTERM",
            restart + 1,
            stopped_in.as_secs_f64() * 1000.0,
            handover.as_secs_f64() * 1000.0
        );
    }
    eprintln!(
        "{EVENTS} posts at {RATE}/s across {} restarts: {no_answer} without an answer, {} refused, \
         {} accepted and delivered, {duplicates} delivered twice; the slowest answer took {:.0} ms",
        RESTARTS.len(),
        refused.len(),
        wanted.len(),
        slowest.as_secs_f64() * 1000.0
    );
    assert_eq!(no_answer, 0, "posts failed during a restart");
    assert!(refused.is_empty(), "posts refused: {refused:?}");
    assert_eq!(wanted.len() as u64, EVENTS);
    assert!(
        duplicates <= RESTARTS.len() * MAX_IN_FLIGHT,
        "{duplicates} duplicates: more than the attempts in flight at the restarts"
    );
    for (queued, stopped_in, _) in &stops {
        assert!(
            *queued > MAX_IN_FLIGHT as f64,
            "only {queued} events were held at a restart: the test did not queue any"
        );
        assert!(
            *stopped_in <= stop_bound(),
            "a SIGTERM took {stopped_in:?}, more than {:?}",
            stop_bound()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_journal_leaves_the_queue_to_the_next_process() {
    const EVENTS: u64 = 600;
    const MAX_IN_FLIGHT: usize = 8;
    let _timed = TIMED.lock().await;
    let sink = slow_sink().await;
    let dir = fresh_dir("sigterm");
    let config = write_config(&dir, &sink, MAX_IN_FLIGHT);
    let router = RouterProcess::start(binary(), &config);
    let wanted = post_accepted(&router.ingress, 0..EVENTS, 32).await;
    assert_eq!(wanted.len() as u64, EVENTS, "every post was accepted");
    // Attempts are in flight (8 at a time, 300 ms each: draining would take 22 s).
    sink.wait_for(MAX_IN_FLIGHT, PATIENCE, |_| true).await;
    let queued = numbered::metric(&router.admin, "webhook_queue_depth")
        .await
        .expect("webhook_queue_depth");
    let stopping = Instant::now();
    let (clean, log) = router.stop();
    let stopped_in = stopping.elapsed();
    assert!(clean, "{log:#?}");
    let delivered_before = deliveries(&sink).len();
    let left = log
        .iter()
        .find(|line| line.contains("events left for the next start"))
        .unwrap_or_else(|| panic!("no line about the events left: {log:#?}"));
    eprintln!(
        "SIGTERM with {queued} events held: exited after {:.0} ms, {delivered_before} delivered \
         ({left})",
        stopped_in.as_secs_f64() * 1000.0
    );
    assert!(
        stopped_in <= stop_bound(),
        "the SIGTERM took {stopped_in:?}, more than {:?}: it drained the queue",
        stop_bound()
    );
    assert!(
        delivered_before < EVENTS as usize / 2,
        "{delivered_before} delivered before the stop: the queue was drained"
    );

    let mut router = RouterProcess::start(binary(), &config);
    router.wait_for_log("journal recovered");
    let counts = wait_delivered(&sink, &wanted).await;
    let duplicates = assert_all_delivered(&wanted, &counts);
    wait_idle(&router.admin).await;
    assert!(router.stop().0);
    eprintln!("the next process delivered the rest: {duplicates} delivered twice");
    assert_eq!(
        duplicates,
        0,
        "the stop finished its attempts in flight, so none was made again: {:?}",
        duplicates_of(&sink)
    );
}

/// The numbers delivered more than once.
fn duplicates_of(sink: &Sink) -> Vec<u64> {
    deliveries(sink)
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(n, _)| n)
        .collect()
}

/// Runs `serve` with `sockets` passed and expects it to refuse them: its stderr.
fn refused_start(config: &Path, sockets: Vec<std::os::fd::OwnedFd>) -> String {
    let output = serve_command(binary(), config, sockets)
        .output()
        .expect("run serve");
    assert!(!output.status.success(), "serve started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn passed_sockets_that_cannot_serve_stop_the_router_with_one_line() {
    let sink = slow_sink().await;
    let dir = fresh_dir("refused");
    let config = write_config(&dir, &sink, 1);
    let socket = || {
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket")
    };

    // Bound but not listening.
    let unlistened = socket();
    unlistened
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
                .into(),
        )
        .expect("bind");
    let error = refused_start(&config, vec![unlistened.into()]);
    assert!(
        error.contains("the ingress socket passed as fd 3 cannot be used: it does not listen"),
        "{error}"
    );
    assert_eq!(error.trim().lines().count(), 1, "{error}");

    // A UDP socket is not a TCP listener.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let error = refused_start(&config, vec![udp.into()]);
    assert!(
        error.contains("the ingress socket passed as fd 3 cannot be used"),
        "{error}"
    );

    // More sockets than listeners.
    let three = (0..3).map(|_| listening_socket().into()).collect();
    let error = refused_start(&config, three);
    assert!(error.contains("LISTEN_FDS passes 3 sockets"), "{error}");

    // An admin socket listening on every address, with no admin_token: what `check` refuses
    // for a configured admin_listen is refused for a passed socket too. (Nothing connects.)
    let everywhere = socket();
    everywhere
        .bind(
            &"0.0.0.0:0"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
                .into(),
        )
        .expect("bind");
    everywhere.listen(16).expect("listen");
    let error = refused_start(&config, vec![listening_socket().into(), everywhere.into()]);
    assert!(
        error.contains("is reachable from the network without admin_token"),
        "{error}"
    );
}

#[test]
fn the_systemd_units_pass_systemd_analyze() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed (Debian package `systemd`)");
        return;
    }
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/systemd");
    let dir = fresh_dir("systemd");
    // The units name the binary where README installs it; here it is the one cargo built,
    // since `verify` checks that `ExecStart` is executable.
    let service = std::fs::read_to_string(units.join("webhook-router.service")).expect("service");
    assert!(service.contains("ExecStart=/usr/local/bin/webhook-router serve"));
    std::fs::write(
        dir.join("webhook-router.service"),
        service.replace(
            "/usr/local/bin/webhook-router",
            &binary().display().to_string(),
        ),
    )
    .expect("write service");
    std::fs::copy(
        units.join("webhook-router.socket"),
        dir.join("webhook-router.socket"),
    )
    .expect("copy socket");

    let verify = Command::new("systemd-analyze")
        .current_dir(&dir)
        .args([
            "verify",
            "./webhook-router.socket",
            "./webhook-router.service",
        ])
        .output()
        .expect("run systemd-analyze verify");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{said}");
    // Unknown keys and bad values are only warnings to `verify`: any line is a failure here.
    assert!(said.trim().is_empty(), "{said}");

    // The hardening, as systemd rates it (0 to 100; 20 is "OK" on its 0–10 display).
    let security = Command::new("systemd-analyze")
        .current_dir(&dir)
        .args([
            "security",
            "--offline=true",
            "--threshold=20",
            "./webhook-router.service",
        ])
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let overall = report
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{report}"));
    eprintln!("{overall}");
    assert!(security.status.success(), "{overall}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_before_the_stop_gets_its_first_request_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sink = slow_sink().await;
    let dir = fresh_dir("accepted");
    let config = write_config(&dir, &sink, 1);
    let holder = SocketHolder::bind();
    let mut router = holder.start(binary(), &config);
    // A client that connected (and was accepted) but has not sent its request yet.
    let mut client = tokio::net::TcpStream::connect(holder.ingress_addr())
        .await
        .expect("connect");
    let series = "webhook_connections{listener=\"ingress\"}";
    wait_until(
        "the router to accept the connection",
        PATIENCE,
        || numbered::metric(&router.admin, series),
        |open| *open == Some(1.0),
    )
    .await;
    router.signal("TERM");
    router.wait_for_log("stop signal received");
    let body = numbered::body(7);
    client
        .write_all(
            format!(
                "POST /hooks HTTP/1.1\r\nhost: router\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("send the request");
    let mut answer = String::new();
    client
        .read_to_string(&mut answer)
        .await
        .expect("read the answer");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer:?}");
    assert!(answer.contains("connection: close"), "{answer:?}");
    let (clean, log) = router.stop();
    assert!(clean, "{log:#?}");
}
