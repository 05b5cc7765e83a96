//! The journal keeps the promise of a 202, tested by crashing: the router runs as a process on a
//! data directory, is killed (SIGKILL) or stopped (SIGTERM) mid-load, its journal is torn or
//! damaged, and is started again on the same directory; then what got a 202 is counted against
//! what the sink received.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use webhook_router_tests::keyed::{assert_first_deliveries_in_order, first_deliveries, post_keyed};
use webhook_router_tests::numbered::{
    self, PATIENCE, body, client, dead_letters, deliveries, duplicates, metric, post_accepted,
    replay, wait_delivered, wait_idle,
};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::{Reply, RouterProcess, Sink};

/// How the test sink answers, switched while a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Ok = 0,
    Slow = 1,
    Hang = 2,
    Fail = 3,
    Reject = 4,
}

/// A sink whose answers follow `mode`.
async fn switchable_sink(mode: &Arc<AtomicU8>) -> Sink {
    let mode = Arc::clone(mode);
    Sink::start(move |_| match mode.load(Ordering::Acquire) {
        1 => Reply {
            delay: Some(Duration::from_millis(20)),
            ..Reply::ok()
        },
        // Never answers (and counts as no delivery if the router gives up on it).
        2 => Reply {
            delay: Some(Duration::from_secs(3600)),
            ..Reply::status(504)
        },
        3 => Reply::status(500),
        4 => Reply::status(400),
        _ => Reply::ok(),
    })
    .await
}

/// A fresh data directory (and config location) for test `name`, under the target directory.
fn fresh_dir(name: &str) -> PathBuf {
    numbered::fresh_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), "journal", name)
}

/// Writes a config journaling under `dir/data` that routes `/hooks` to `sink`; `server`,
/// `queue`, `destination` and `route` lines are added to their tables.
fn write_config(dir: &Path, sink: &Sink, extra: &Extra<'_>) -> PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}\n\
         [queue]\npath = \"data\"\nfsync = \"always\"\n{}\n\
         [destinations.sink]\nurl = \"{}\"\ntimeout = \"1h\"\n{}\n\
         [[routes]]\nid = \"hooks\"\npath = \"/hooks\"\ndestinations = [\"sink\"]\n{}\n",
        extra.server,
        extra.queue,
        sink.url("/in"),
        extra.destination,
        extra.route
    );
    let path = dir.join("router.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Lines added to the tables of [`write_config`].
#[derive(Default)]
struct Extra<'a> {
    server: &'a str,
    queue: &'a str,
    destination: &'a str,
    route: &'a str,
}

/// A sink answering as `mode` starts, and the config of test `name` routing to it.
async fn setup(
    name: &str,
    mode: Mode,
    extra: &Extra<'_>,
) -> (Arc<AtomicU8>, Sink, PathBuf, PathBuf) {
    let mode = Arc::new(AtomicU8::new(mode as u8));
    let sink = switchable_sink(&mode).await;
    let dir = fresh_dir(name);
    let config = write_config(&dir, &sink, extra);
    (mode, sink, dir, config)
}

fn start(config: &Path) -> RouterProcess {
    RouterProcess::start(Path::new(env!("CARGO_BIN_EXE_webhook-router")), config)
}

const MAX_IN_FLIGHT: usize = 4;

/// 2,000 events accepted with a slow sink; the router stopped by `signal` once about half are
/// delivered, then started again with a fast sink. Returns (delivered before the stop,
/// duplicates, the stopped router's log).
async fn stop_mid_load(name: &str, signal: &str, grace: &str) -> (usize, usize, Vec<String>) {
    const EVENTS: u64 = 2000;
    let (mode, sink, _dir, config) = setup(
        name,
        Mode::Slow,
        &Extra {
            server: &format!("shutdown_grace = \"{grace}\""),
            destination: &format!("max_in_flight = {MAX_IN_FLIGHT}"),
            ..Extra::default()
        },
    )
    .await;
    let router = start(&config);
    let accepted = post_accepted(&router.ingress, 0..EVENTS, 32).await;
    assert_eq!(accepted.len() as u64, EVENTS, "every post was accepted");
    sink.wait_for_delivered(EVENTS as usize / 2, PATIENCE).await;
    let log = match signal {
        "KILL" => router.kill(),
        _ => {
            let (success, log) = router.stop();
            assert!(success, "{log:#?}");
            log
        }
    };
    let before = sink.delivered().len();
    assert!(
        before < EVENTS as usize,
        "all were delivered before the stop"
    );
    mode.store(Mode::Ok as u8, Ordering::Release);
    let mut router = start(&config);
    router.wait_for_log("journal recovered");
    let counts = wait_delivered(&sink, &accepted).await;
    let lost: Vec<_> = accepted
        .iter()
        .filter(|n| !counts.contains_key(n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} accepted events never delivered: {lost:?}",
        lost.len()
    );
    let recovered = metric(&router.admin, "webhook_journal_recovered_total").await;
    assert!(
        recovered.is_some_and(|r| r >= (EVENTS as usize - before) as f64 - 1.0),
        "recovered {recovered:?} with {before} delivered before the stop"
    );
    wait_idle(&router.admin).await;
    let duplicates = duplicates(&deliveries(&sink));
    let (success, _) = router.stop();
    assert!(success);
    (before, duplicates, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_accepted_event() {
    let (before, duplicates, _) = stop_mid_load("sigkill", "KILL", "30s").await;
    eprintln!(
        "SIGKILL after {before} of 2000 deliveries: every accepted event delivered; \
         {duplicates} duplicates (attempts in flight at the kill: at most {MAX_IN_FLIGHT})"
    );
    // A worker does not wait for the report of a finished delivery to be on disk (it goes in
    // the journal's next group commit), so the kill can also catch deliveries finished since
    // the last commit: one a worker, besides its attempt in flight. (Seen: 5, once, in a
    // fresh-clone suite run.)
    assert!(duplicates <= 2 * MAX_IN_FLIGHT, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_short_grace_leaves_the_rest_for_the_next_start() {
    let (before, duplicates, log) = stop_mid_load("sigterm", "TERM", "1s").await;
    eprintln!(
        "SIGTERM after {before} of 2000 deliveries: every accepted event delivered; {duplicates} duplicates"
    );
    assert_eq!(duplicates, 0, "a graceful stop finishes its attempts");
    assert!(
        log.iter()
            .any(|line| line.contains("events left for the next start")),
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_event_keeps_its_attempt_count_across_a_restart() {
    let (_mode, sink, _dir, config) = setup(
        "attempts",
        Mode::Fail,
        &Extra {
            server: "shutdown_grace = \"100ms\"",
            destination: "retry = { max_attempts = 3, initial_backoff = \"300ms\", max_backoff = \"300ms\", jitter = \"none\" }",
            ..Extra::default()
        },
    )
    .await;
    let router = start(&config);
    assert_eq!(post_accepted(&router.ingress, 0..1, 1).await.len(), 1);
    // Two attempts failed (and their progress was recorded) in this process...
    let series = "webhook_deliveries_total{route=\"hooks\",destination=\"sink\",outcome=\"retry\"}";
    wait_until(
        "a second retry",
        PATIENCE,
        || metric(&router.admin, series),
        |retries| *retries == Some(2.0),
    )
    .await;
    let (success, log) = router.stop();
    assert!(success, "{log:#?}");
    assert_eq!(sink.requests().len(), 2);
    // ...so the next process makes the third and last, and dead-letters the event.
    let router = start(&config);
    wait_idle(&router.admin).await;
    assert_eq!(
        sink.requests().len(),
        3,
        "3 attempts in all, not 3 per process"
    );
    let letters = dead_letters(&router.admin).await;
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters}");
    assert_eq!(letters[0]["attempts"], 3, "{letters}");
    assert!(router.stop().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_the_dedup_window_survive_a_restart() {
    let (mode, sink, _dir, config) = setup(
        "letters",
        Mode::Reject,
        &Extra {
            route: "verify = { preset = \"github\", secrets = [\"s3cret\"] }\ndedup = {}",
            ..Extra::default()
        },
    )
    .await;
    let payload = body(7);
    let post = |ingress: String| {
        let payload = payload.clone();
        async move {
            let mut request = client()
                .post(format!("http://{ingress}/hooks"))
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-github-delivery", "delivery-7")
                .body(payload.clone());
            for (name, value) in webhook_router_tests::signing::sign(
                "github",
                "s3cret",
                payload.as_bytes(),
                webhook_router_tests::signing::unix_now(),
            ) {
                request = request.header(name, value);
            }
            let answer = request.send().await.expect("post");
            let status = answer.status().as_u16();
            let json: serde_json::Value = answer.json().await.expect("json");
            (status, json["id"].as_str().unwrap_or_default().to_owned())
        }
    };
    let router = start(&config);
    let (status, first_id) = post(router.ingress.clone()).await;
    assert_eq!(status, 202);
    wait_idle(&router.admin).await;
    let letters = dead_letters(&router.admin).await;
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters}");
    assert!(router.stop().0);

    mode.store(Mode::Ok as u8, Ordering::Release);
    let router = start(&config);
    let after = dead_letters(&router.admin).await;
    assert_eq!(after, letters, "the same letters after the restart");
    // The delivery id is still remembered: answered with the first event's id, not queued.
    let (status, again_id) = post(router.ingress.clone()).await;
    assert_eq!((status, again_id.as_str()), (202, first_id.as_str()));
    assert_eq!(
        metric(&router.admin, "webhook_duplicates_total{route=\"hooks\"}").await,
        Some(1.0)
    );
    // And the letter replays.
    let letter = after[0]["id"].as_str().expect("letter id");
    assert_eq!(replay(&router.admin, letter).await, 202);
    wait_idle(&router.admin).await;
    assert_eq!(
        sink.delivered().len(),
        1,
        "the replay, and not the duplicate"
    );
    assert_eq!(dead_letters(&router.admin).await, serde_json::json!([]));
    assert!(router.stop().0);
    // Replayed letters stay replayed.
    let router = start(&config);
    assert_eq!(dead_letters(&router.admin).await, serde_json::json!([]));
    assert!(router.stop().0);
}

/// The segment files of the journal in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
        .expect("data dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments
}

/// The newest segment file of the journal in `dir`.
fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("a segment")
}

/// Where the records of a (preallocated) segment end: after its last byte that is not zero.
fn data_end(segment: &Path) -> u64 {
    let data = std::fs::read(segment).expect("read segment");
    data.iter().rposition(|&b| b != 0).expect("records") as u64 + 1
}

/// Posts 20 events one by one to a sink that never answers, and kills the router: the journal
/// holds them all, the last one written last.
async fn twenty_held_then_killed(
    name: &str,
) -> (PathBuf, PathBuf, Arc<AtomicU8>, Sink, BTreeSet<u64>) {
    let (mode, sink, dir, config) = setup(name, Mode::Hang, &Extra::default()).await;
    let router = start(&config);
    let accepted = post_accepted(&router.ingress, 0..20, 1).await;
    assert_eq!(accepted.len(), 20);
    router.kill();
    mode.store(Mode::Ok as u8, Ordering::Release);
    (dir, config, mode, sink, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_truncated_and_the_rest_delivered() {
    let (dir, config, _mode, sink, mut accepted) = twenty_held_then_killed("torn").await;
    // A power cut in the middle of writing event 19: half of its 1 KiB body never made it.
    // (The file is truncated there, past the preallocated zeros.)
    let segment = last_segment(&dir);
    let end = data_end(&segment);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    file.set_len(end - 500).expect("truncate");
    drop(file);
    let mut router = start(&config);
    let line = router.wait_for_log("torn last record");
    assert!(line.contains(&segment.display().to_string()), "{line}");
    accepted.remove(&19);
    let counts = wait_delivered(&sink, &accepted).await;
    wait_idle(&router.admin).await;
    let delivered: BTreeSet<u64> = deliveries(&sink).into_keys().collect();
    assert_eq!(delivered, accepted, "{counts:?}");
    assert!(router.stop().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_middle_is_counted_and_skipped() {
    let (dir, config, _mode, sink, accepted) = twenty_held_then_killed("garbage").await;
    let segment = last_segment(&dir);
    let mut data = std::fs::read(&segment).expect("read");
    let middle = usize::try_from(data_end(&segment) / 2).expect("size");
    data[middle..middle + 100].fill(0xAB);
    std::fs::write(&segment, &data).expect("write");
    let mut router = start(&config);
    router.wait_for_log("damaged bytes");
    wait_idle(&router.admin).await;
    assert_eq!(
        metric(&router.admin, "webhook_journal_corrupt_records_total").await,
        Some(1.0)
    );
    let delivered: BTreeSet<u64> = deliveries(&sink).into_keys().collect();
    // 100 bytes inside one 1 KiB record, or across the end of one and the start of the next.
    assert!(delivered.is_subset(&accepted));
    assert!(delivered.len() >= 18, "{delivered:?}");
    assert!(router.stop().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_answers_503_and_opens_after_a_restart() {
    let (mode, sink, _dir, config) = setup(
        "full",
        Mode::Hang,
        &Extra {
            server: "shutdown_grace = \"100ms\"",
            queue: "max_bytes = \"1MiB\"",
            ..Extra::default()
        },
    )
    .await;
    let router = start(&config);
    let client = client();
    let mut accepted = BTreeSet::new();
    let mut refusal = None;
    for n in 0..2000 {
        let answer = client
            .post(format!("http://{}/hooks", router.ingress))
            .header("content-type", "application/json")
            .body(body(n))
            .send()
            .await
            .expect("post");
        if answer.status().as_u16() == 202 {
            accepted.insert(n);
        } else {
            refusal = Some(answer);
            break;
        }
    }
    let refusal = refusal.expect("a 1 MiB journal refuses 2,000 events of 1 KiB");
    assert_eq!(refusal.status().as_u16(), 503);
    assert!(refusal.headers().contains_key("retry-after"));
    assert!(
        refusal.text().await.expect("text").contains("journal full"),
        "says why"
    );
    assert!(accepted.len() > 500, "{} accepted", accepted.len());
    let (success, log) = router.stop();
    assert!(success, "{log:#?}");
    mode.store(Mode::Ok as u8, Ordering::Release);
    let router = start(&config);
    let counts = wait_delivered(&sink, &accepted).await;
    assert!(accepted.iter().all(|n| counts.contains_key(n)));
    wait_idle(&router.admin).await;
    assert!(router.stop().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_destination_left_the_config_becomes_a_dead_letter() {
    let (_mode, sink, _dir, config) = setup(
        "orphan",
        Mode::Hang,
        &Extra {
            server: "shutdown_grace = \"100ms\"",
            ..Extra::default()
        },
    )
    .await;
    let router = start(&config);
    assert_eq!(post_accepted(&router.ingress, 0..1, 1).await.len(), 1);
    sink.wait_for(1, PATIENCE, |_| true).await;
    let (success, log) = router.stop();
    assert!(success, "{log:#?}");
    // The next deploy renames the destination.
    let text = std::fs::read_to_string(&config).expect("read config");
    std::fs::write(&config, text.replace("sink", "renamed")).expect("write config");
    let router = start(&config);
    wait_idle(&router.admin).await;
    let letters = dead_letters(&router.admin).await;
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters}");
    assert_eq!(letters[0]["destination"], "sink");
    assert!(
        letters[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer in the config")),
        "{letters}"
    );
    // The event record says so too (rebuilt at start from the journaled event).
    let event_id = letters[0]["event_id"].as_str().expect("event id");
    let record: serde_json::Value = client()
        .get(format!("http://{}/events/{event_id}", router.admin))
        .send()
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("json");
    assert_eq!(record["outcome"], "dead_lettered", "{record}");
    assert_eq!(record["destinations"][0]["name"], "sink", "{record}");
    let letter = letters[0]["id"].as_str().expect("id");
    assert_eq!(
        replay(&router.admin, letter).await,
        409,
        "no destination to replay to"
    );
    assert!(router.stop().0);
    // The letter and the event's deletes were written as one batch: the next start reads back
    // the letter and no event.
    let mut router = start(&config);
    let recovered = router.wait_for_log("journal recovered");
    assert!(
        recovered.contains("events=0") && recovered.contains("dead_letters=1"),
        "{recovered}"
    );
    wait_idle(&router.admin).await;
    let again = dead_letters(&router.admin).await;
    assert_eq!(again.as_array().map(Vec::len), Some(1), "{again}");
    assert_eq!(again[0]["id"], letter);
    assert!(router.stop().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_opened_stops_the_router_with_one_line() {
    let (_mode, _sink, dir, config) = setup("unopenable", Mode::Ok, &Extra::default()).await;
    let binary = env!("CARGO_BIN_EXE_webhook-router");
    let serve = || {
        std::process::Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .expect("run serve")
    };
    // Held by another router process.
    let router = start(&config);
    let second = serve();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&dir.join("data").display().to_string())
            && stderr.contains("in use by another router process"),
        "{stderr}"
    );
    assert!(router.stop().0);
    // Not a directory.
    std::fs::remove_dir_all(dir.join("data")).expect("remove data");
    std::fs::write(dir.join("data"), "a file").expect("write file");
    let output = serve();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot open the journal") && stderr.contains("data"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("os error").count(),
        1,
        "the cause once: {stderr}"
    );
}

/// The fault directory of test `dir` (see `journal/faults.rs`), created, with `files` in it;
/// the environment that turns the journal's fault seam on.
fn faults(dir: &Path, files: &[(&str, &str)]) -> (PathBuf, String) {
    let faults = dir.join("faults");
    std::fs::create_dir_all(&faults).expect("create faults dir");
    for (name, text) in files {
        std::fs::write(faults.join(name), text).expect("write fault file");
    }
    let env = faults.display().to_string();
    (faults, env)
}

fn start_with_faults(config: &Path, faults: &str) -> RouterProcess {
    RouterProcess::start_with_env(
        Path::new(env!("CARGO_BIN_EXE_webhook-router")),
        config,
        &[(webhook_router::journal::FAULTS_VAR, faults)],
    )
}

/// What a power cut leaves of the journal in `dir` after a kill: the segment synced last zeroed
/// past the offset its last successful sync reached (as the fault seam recorded it), and any
/// newer segment zeroed whole. Returns the bytes dropped.
fn drop_unsynced_tail(dir: &Path, faults: &Path) -> u64 {
    let synced = std::fs::read_to_string(faults.join("synced")).expect("a sync was recorded");
    let (name, offset) = synced.trim().split_once(' ').expect("name and offset");
    let offset: u64 = offset.parse().expect("offset");
    let synced_segment = dir.join("data").join(name);
    let mut dropped = 0;
    for segment in segments(dir) {
        let from = match segment.cmp(&synced_segment) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => offset,
            std::cmp::Ordering::Greater => 0,
        };
        let end = data_end(&segment).max(from);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .expect("open segment");
        std::os::unix::fs::FileExt::write_all_at(
            &file,
            &vec![0; usize::try_from(end - from).expect("size")],
            from,
        )
        .expect("zero the unsynced tail");
        dropped += end - from;
    }
    dropped
}

/// Waits until `series` is at least `wanted`.
async fn wait_metric_at_least(admin: &str, series: &str, wanted: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let value = metric(admin, series).await;
        if value.is_some_and(|v| v >= wanted) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {value:?}, not {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Replays every dead letter the router lists; how many.
async fn replay_all(admin: &str) -> usize {
    let letters = dead_letters(admin).await;
    let letters = letters.as_array().expect("a list");
    for letter in letters {
        let id = letter["id"].as_str().expect("letter id");
        assert_eq!(replay(admin, id).await, 202, "{letter}");
    }
    letters.len()
}

const RETRIES: &str =
    "webhook_deliveries_total{route=\"hooks\",destination=\"sink\",outcome=\"retry\"}";
const LETTERED: &str =
    "webhook_deliveries_total{route=\"hooks\",destination=\"sink\",outcome=\"dead_letter\"}";
const WRITE_ERRORS: &str = "webhook_journal_write_errors_total";

/// Issue #20, item 1: the events of the oldest segment are dead-lettered (and the events
/// around them delivered) while the disk stops syncing; the journal must not delete the
/// segment on the strength of records that are not on disk. After a power cut (the unsynced
/// tail zeroed) every accepted event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_segment_is_deleted_before_what_frees_it_is_synced() {
    // Events 0..20 fail twice (and are dead-lettered at the second); then succeed. Events
    // 100..160 succeed: they fill the rest of the first 64 KiB segment and start the next.
    let failing = 0..20;
    let passing = 100..160;
    let sink = {
        let failing = failing.clone();
        Sink::start_per_body(move |body, attempt| {
            let value: serde_json::Value = serde_json::from_slice(body).expect("json body");
            let n = value["n"].as_u64().expect("n");
            if failing.contains(&n) && attempt <= 2 {
                Reply::status(500)
            } else {
                Reply::ok()
            }
        })
        .await
    };
    let dir = fresh_dir("unsynced-reclaim");
    let config = write_config(
        &dir,
        &sink,
        &Extra {
            // One letter kept: each new one deletes the one before, so that the first segment
            // holds nothing live once its events are dead-lettered.
            server: "dead_letter_capacity = 1",
            queue: "max_bytes = \"1MiB\"",
            // (And the circuit breaker stays out of it.)
            destination: "retry = { max_attempts = 2, initial_backoff = \"3s\", max_backoff = \"3s\", jitter = \"none\" }\n\
                          circuit = { failures = 10000 }",
            ..Extra::default()
        },
    );
    let (faults, env) = faults(&dir, &[]);
    let mut router = start_with_faults(&config, &env);
    let mut accepted = post_accepted(&router.ingress, failing.clone(), 1).await;
    accepted.append(&mut post_accepted(&router.ingress, passing.clone(), 1).await);
    assert_eq!(
        accepted.len(),
        failing.clone().count() + passing.clone().count()
    );
    // The failing events failed once; their last attempt is due 3 s after the first.
    wait_metric_at_least(&router.admin, RETRIES, failing.clone().count() as f64).await;
    let passed: BTreeSet<u64> = passing.clone().collect();
    wait_delivered(&sink, &passed).await;
    std::fs::write(faults.join("fail-sync"), "").expect("fail the syncs");
    // The last attempts fail: the events are dead-lettered and deleted, in records that never
    // reach the disk.
    wait_metric_at_least(&router.admin, LETTERED, failing.clone().count() as f64).await;
    router.wait_for_log("a sync failed; no segment is deleted");
    // The committer retries the sync every 100 ms: six failures span more than one reclaim
    // period (500 ms) after the last letter.
    let failures = metric(&router.admin, WRITE_ERRORS)
        .await
        .expect("write errors");
    wait_metric_at_least(&router.admin, WRITE_ERRORS, failures + 6.0).await;
    router.kill();
    // The power cut: the page cache's unsynced tail never made it.
    let dropped = drop_unsynced_tail(&dir, &faults);
    std::fs::remove_file(faults.join("fail-sync")).expect("disk mended");
    let router = start(&config);
    let letters = replay_all(&router.admin).await;
    let counts = wait_delivered(&sink, &accepted).await;
    let delivered: BTreeSet<u64> = counts.keys().copied().collect();
    let lost: Vec<_> = accepted.difference(&delivered).collect();
    eprintln!(
        "{} accepted, {} of them dead-lettered while the disk failed to sync; {dropped} \
         unsynced bytes dropped by the power cut; after it {} delivered ({letters} dead \
         letters replayed), {} lost",
        accepted.len(),
        failing.clone().count(),
        delivered.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "accepted events lost: {lost:?}");
    assert!(router.stop().0);
}

/// Issue #20, item 2: the append holding a dead letter fails (EIO); the event's delete must
/// not reach the disk without the letter. After a power cut every accepted event is delivered
/// or dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dead_letter_write_does_not_lose_its_event() {
    const EVENTS: u64 = 20;
    let (mode, sink, dir, config) = setup("failed-letter", Mode::Reject, &Extra::default()).await;
    // The 5th append holding a dead letter (key space 3) fails.
    let (faults, env) = faults(&dir, &[("fail-append", "5 3")]);
    let router = start_with_faults(&config, &env);
    let answers = numbered::post_all(std::slice::from_ref(&router.ingress), 0..EVENTS, 1).await;
    let accepted = numbered::accepted(&answers);
    // An event whose write shared the failed append was refused (503), never accepted.
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, status)| *status != 202)
        .collect();
    assert!(
        refused.len() <= 1 && refused.iter().all(|(_, status)| *status == 503),
        "{refused:?}"
    );
    wait_metric_at_least(&router.admin, LETTERED, accepted.len() as f64).await;
    wait_idle(&router.admin).await;
    assert_eq!(metric(&router.admin, WRITE_ERRORS).await, Some(1.0));
    let before = dead_letters(&router.admin).await;
    assert_eq!(before.as_array().map(Vec::len), Some(accepted.len()));
    let log = router.kill();
    assert!(
        log.iter()
            .any(|line| line.contains("records nobody waits for are kept")),
        "{log:#?}"
    );
    let dropped = drop_unsynced_tail(&dir, &faults);
    mode.store(Mode::Ok as u8, Ordering::Release);
    let router = start(&config);
    // Events whose delete did not reach the disk are delivered again; the rest are letters.
    let letters = replay_all(&router.admin).await;
    let counts = wait_delivered(&sink, &accepted).await;
    let delivered: BTreeSet<u64> = counts.keys().copied().collect();
    let lost: Vec<_> = accepted.difference(&delivered).collect();
    eprintln!(
        "{} accepted ({} refused), all dead-lettered, one letter's write failed; {dropped} \
         unsynced bytes dropped; after the restart {letters} letters replayed and {} delivered, \
         {} lost",
        accepted.len(),
        refused.len(),
        delivered.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "accepted events lost: {lost:?}");
    assert!(router.stop().0);
}

/// Zeroes every other 4 KiB page of the journal in `dir` past the offset its last successful
/// sync reached (and every other page of any newer segment): a power cut after which the OS had
/// written back only some of the unsynced pages. Returns the bytes dropped.
fn drop_every_other_unsynced_page(dir: &Path, faults: &Path) -> u64 {
    const PAGE: u64 = 4096;
    let synced = std::fs::read_to_string(faults.join("synced")).expect("a sync was recorded");
    let (name, offset) = synced.trim().split_once(' ').expect("name and offset");
    let offset: u64 = offset.parse().expect("offset");
    let synced_segment = dir.join("data").join(name);
    let mut dropped = 0;
    for segment in segments(dir) {
        let from = match segment.cmp(&synced_segment) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => offset,
            std::cmp::Ordering::Greater => 0,
        };
        let end = data_end(&segment);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .expect("open segment");
        // The page holding `from` is the first one lost.
        let mut page = from / PAGE;
        while page * PAGE < end {
            let start = (page * PAGE).max(from);
            let stop = ((page + 1) * PAGE).min(end);
            std::os::unix::fs::FileExt::write_all_at(
                &file,
                &vec![0; usize::try_from(stop - start).expect("size")],
                start,
            )
            .expect("zero a page");
            dropped += stop - start;
            page += 2;
        }
    }
    dropped
}

/// Issue #20, item 2: events are dead-lettered while the disk does not sync, and a power cut
/// then keeps only every other page of what was written since the last sync: a letter's page
/// lost and its event's delete kept, if they were separate records. Each letter and its
/// event's delete are one all-or-nothing batch: after the restart every accepted event is a
/// dead letter or delivered again, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_that_keeps_some_pages_loses_no_dead_lettered_event() {
    const EVENTS: u64 = 60;
    let (mode, sink, dir, config) = setup(
        "torn-letters",
        Mode::Fail,
        &Extra {
            // One failed attempt, then the last one 2 s later. (A letter carries its event's
            // 1 KB body: the 60 batches span some 30 pages.)
            destination: "retry = { max_attempts = 2, initial_backoff = \"2s\", max_backoff = \"2s\", jitter = \"none\" }\n\
                          circuit = { failures = 10000 }",
            ..Extra::default()
        },
    )
    .await;
    let (faults, env) = faults(&dir, &[]);
    let router = start_with_faults(&config, &env);
    let accepted = post_accepted(&router.ingress, 0..EVENTS, 1).await;
    assert_eq!(accepted.len() as u64, EVENTS);
    // Every event failed once (500); its last attempt is due 2 s after the first.
    wait_metric_at_least(&router.admin, RETRIES, EVENTS as f64).await;
    std::fs::write(faults.join("fail-sync"), "").expect("fail the syncs");
    // The last attempts are refused (400): each event is dead-lettered, in a batch that never
    // reaches the disk.
    mode.store(Mode::Reject as u8, Ordering::Release);
    wait_metric_at_least(&router.admin, LETTERED, EVENTS as f64).await;
    wait_idle(&router.admin).await;
    let listed = dead_letters(&router.admin).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(EVENTS as usize));
    router.kill();
    let dropped = drop_every_other_unsynced_page(&dir, &faults);
    std::fs::remove_file(faults.join("fail-sync")).expect("disk mended");
    mode.store(Mode::Ok as u8, Ordering::Release);
    let router = start(&config);
    // Letters whose batch survived are replayed; events whose batch was lost are delivered
    // again from the journal.
    let letters = replay_all(&router.admin).await;
    let counts = wait_delivered(&sink, &accepted).await;
    let delivered: BTreeSet<u64> = counts.keys().copied().collect();
    let lost: Vec<_> = accepted.difference(&delivered).collect();
    let log = router.stop();
    let damaged = log
        .1
        .iter()
        .filter(|line| line.contains("damaged bytes") || line.contains("torn last record"))
        .count();
    eprintln!(
        "{} accepted, all dead-lettered while the disk failed to sync; every other unsynced \
         page dropped ({dropped} bytes, {damaged} damaged regions logged); after the restart \
         {letters} letters replayed, {} events delivered again without a letter, {} lost",
        accepted.len(),
        delivered.len() - letters.min(delivered.len()),
        lost.len()
    );
    assert!(lost.is_empty(), "accepted events lost: {lost:?}");
    assert!(damaged > 0, "the cut hit the batches: {:#?}", log.1);
    assert!(
        letters > 0 && letters < EVENTS as usize,
        "some batches were kept, some lost: {letters} letters"
    );
    assert!(log.0);
}

/// Issue #20, item 3: a live record in the oldest segment is damaged on disk while the router
/// runs. It is dropped, counted and logged once, and stops pinning its segment: three times
/// `max_bytes` of events then go through without one 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_does_not_fill_the_journal() {
    const HELD: u64 = 20;
    let (mode, sink, dir, config) = setup(
        "damaged-pin",
        Mode::Fail,
        &Extra {
            queue: "max_bytes = \"1MiB\"",
            destination: "retry = { max_attempts = 100, initial_backoff = \"1h\", max_backoff = \"1h\", jitter = \"none\" }\n\
                          circuit = { failures = 10000 }",
            ..Extra::default()
        },
    )
    .await;
    let router = start(&config);
    // Twenty events fail once and wait an hour to retry: they pin the oldest segment.
    let held = post_accepted(&router.ingress, 0..HELD, 1).await;
    assert_eq!(held.len() as u64, HELD);
    wait_metric_at_least(&router.admin, RETRIES, HELD as f64).await;
    // The disk flips a byte in the middle of their records.
    let oldest = segments(&dir).first().expect("a segment").clone();
    let middle = data_end(&oldest) / 2;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&oldest)
        .expect("open segment");
    let mut byte = [0u8];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, middle).expect("read");
    std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 0x40], middle).expect("damage");
    drop(file);
    // Three times max_bytes of ~1 KiB events, delivered as they come.
    mode.store(Mode::Ok as u8, Ordering::Release);
    let posted = 100..100 + 3 * 1024;
    let answers =
        numbered::post_all(std::slice::from_ref(&router.ingress), posted.clone(), 4).await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, status)| *status != 202)
        .collect();
    let accepted = numbered::accepted(&answers);
    let counts = wait_delivered(&sink, &accepted).await;
    let delivered = accepted.iter().filter(|n| counts.contains_key(n)).count();
    eprintln!(
        "{} posted after the damage: {} accepted, {} refused, {delivered} delivered",
        posted.end - posted.start,
        accepted.len(),
        refused.len()
    );
    assert!(
        refused.is_empty(),
        "{} refused, the first: {:?}",
        refused.len(),
        refused.first()
    );
    assert_eq!(delivered, accepted.len());
    assert_eq!(
        metric(&router.admin, "webhook_journal_corrupt_records_total").await,
        Some(1.0)
    );
    let (success, log) = router.stop();
    assert!(success, "{log:#?}");
    let reports: Vec<_> = log
        .iter()
        .filter(|line| line.contains("no longer reads back"))
        .collect();
    assert_eq!(reports.len(), 1, "logged once: {log:#?}");
    assert!(
        reports[0].contains(&oldest.display().to_string()),
        "{}",
        reports[0]
    );
}

/// Issue #21: a journal created under umask 022 is private: its directory 0700, its files
/// 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_journal_is_private_under_umask_022() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let (_mode, sink, dir, config) = setup("private", Mode::Ok, &Extra::default()).await;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_webhook-router"))
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    let ingress = line
        .split("webhooks on http://")
        .nth(1)
        .and_then(|rest| rest.split([',', '\n']).next())
        .unwrap_or_else(|| panic!("listening line: {line:?}"))
        .to_owned();
    // One event through, so that the journal has written and synced.
    assert_eq!(post_accepted(&ingress, 0..1, 1).await.len(), 1);
    sink.wait_for_delivered(1, PATIENCE).await;
    let data = dir.join("data");
    let mode = |path: &Path| {
        std::fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    let files: Vec<(PathBuf, u32)> = std::fs::read_dir(&data)
        .expect("data dir")
        .map(|entry| entry.expect("entry").path())
        .map(|path| {
            let mode = mode(&path);
            (path, mode)
        })
        .collect();
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    assert!(
        files.iter().any(|(path, _)| path.ends_with("LOCK"))
            && files
                .iter()
                .any(|(path, _)| path.extension().is_some_and(|e| e == "log")),
        "{files:?}"
    );
    for (path, mode) in &files {
        assert_eq!(*mode, 0o600, "{}", path.display());
    }
}

/// Issue #21: a data directory that group or others may write is refused at start with one
/// line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_others_may_write_is_refused_with_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let (_mode, _sink, dir, config) = setup("writable", Mode::Ok, &Extra::default()).await;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create data");
    for mode in [0o775, 0o757] {
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-router"))
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .expect("run serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{mode:o}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&data.display().to_string())
                && stderr.contains("writable by group or others")
                && stderr.contains(&format!("{mode:o}")),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&data).expect("data dir").count(),
        0,
        "nothing written into it"
    );
}

/// Issue #26, ordered delivery: 5,000 events over 50 keys (`order_by = "/key"`), each key's
/// events posted one after the other (the next once the one before got its 202), to a sink that
/// fails 20 % of attempts at random; the router is SIGKILLed once about half are accepted and
/// started again on its journal. For every key the sink's first deliveries come in the order of
/// acceptance, and every event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_keys_keep_their_order_through_failures_and_a_sigkill() {
    const KEYS: u64 = 50;
    const PER_KEY: u64 = 100;
    let started = std::time::Instant::now();
    let sink = Sink::failing_at_random(0.2).await;
    let dir = fresh_dir("ordered");
    let config = write_config(
        &dir,
        &sink,
        &Extra {
            destination: "max_in_flight = 50\nretry = { max_attempts = 100, initial_backoff = \"5ms\", max_backoff = \"20ms\", jitter = \"none\" }",
            route: "order_by = \"/key\"",
            ..Extra::default()
        },
    );
    let router = start(&config);
    let ingress = Arc::new(std::sync::RwLock::new(vec![router.ingress.clone()]));
    let posts = post_keyed(KEYS, PER_KEY, &ingress);
    posts.wait_half_accepted().await;
    router.kill();
    let at_kill = (posts.accepted(), sink.delivered().len());
    let mut router = start(&config);
    *ingress.write().expect("lock") = vec![router.ingress.clone()];
    router.wait_for_log("journal recovered");
    posts.finish().await;

    // Every event delivered...
    let most_waiting = std::cell::Cell::new(0.0_f64);
    wait_until(
        "every event delivered",
        PATIENCE,
        || {
            let waiting = metric(
                &router.admin,
                "webhook_ordered_keys_waiting{destination=\"sink\"}",
            );
            async {
                let waiting = waiting.await.expect("webhook_ordered_keys_waiting");
                most_waiting.set(most_waiting.get().max(waiting));
                first_deliveries(&sink).1
            }
        },
        |&delivered| delivered == KEYS * PER_KEY,
    )
    .await;
    // ...and each key's first deliveries in the order of acceptance.
    assert_first_deliveries_in_order(&sink, KEYS, PER_KEY);
    wait_idle(&router.admin).await;
    assert_eq!(
        metric(
            &router.admin,
            "webhook_ordered_keys_waiting{destination=\"sink\"}"
        )
        .await,
        Some(0.0)
    );
    let attempts = sink.requests().len();
    let duplicates = sink.delivered().len() as u64 - KEYS * PER_KEY;
    eprintln!(
        "ordered: {} events over {KEYS} keys in {:.1} s; SIGKILL at {} accepted, {} delivered; \
         {attempts} attempts ({:.0} % failed), {duplicates} duplicates; at most {most_waiting} \
         keys waiting at once (sampled after the restart)",
        KEYS * PER_KEY,
        started.elapsed().as_secs_f64(),
        at_kill.0,
        at_kill.1,
        100.0 * (attempts - sink.delivered().len()) as f64 / attempts as f64,
        most_waiting = most_waiting.get(),
    );
    assert!(router.stop().0);
}

/// Issue #26, `on_dead_letter = "hold"` across a restart: the dead letter of a key's first
/// event stops the key; killed and started again, the router still holds the key (the later
/// events wait, none is attempted) until the letter is replayed, which delivers it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_key_stays_held_across_a_restart_until_its_letter_is_replayed() {
    let first = "{\"key\":\"k\",\"n\":0}";
    let sink = Sink::start_per_body(move |body, attempt| {
        if body == first.as_bytes() && attempt == 1 {
            Reply::status(400)
        } else {
            Reply::ok()
        }
    })
    .await;
    let dir = fresh_dir("held");
    let config = write_config(
        &dir,
        &sink,
        &Extra {
            route: "order_by = \"/key\"\non_dead_letter = \"hold\"",
            ..Extra::default()
        },
    );
    let waiting = "webhook_ordered_keys_waiting{destination=\"sink\"}";
    let sent = |sink: &Sink| -> Vec<u64> {
        sink.requests()
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).expect("json")["n"]
                    .as_u64()
                    .expect("n")
            })
            .collect()
    };
    let router = start(&config);
    for n in 0..3 {
        let answer = client()
            .post(format!("http://{}/hooks", router.ingress))
            .header("content-type", "application/json")
            .body(format!("{{\"key\":\"k\",\"n\":{n}}}"))
            .send()
            .await
            .expect("post");
        assert_eq!(answer.status(), 202);
    }
    wait_until(
        "the key held, its two later events waiting",
        PATIENCE,
        || metric(&router.admin, waiting),
        |now| *now == Some(1.0),
    )
    .await;
    assert_eq!(sent(&sink), [0], "only the first event was attempted");
    router.kill();

    let mut router = start(&config);
    router.wait_for_log("journal recovered");
    wait_until(
        "the key held again after the restart",
        PATIENCE,
        || metric(&router.admin, waiting),
        |now| *now == Some(1.0),
    )
    .await;
    assert_eq!(sent(&sink), [0], "nothing attempted after the restart");
    let letters = dead_letters(&router.admin).await;
    let letter = letters[0]["id"].as_str().expect("the letter");
    assert_eq!(replay(&router.admin, letter).await, 202);
    wait_idle(&router.admin).await;
    assert_eq!(
        sent(&sink),
        [0, 0, 1, 2],
        "the replayed letter first, then the rest"
    );
    assert_eq!(metric(&router.admin, waiting).await, Some(0.0));
    assert!(router.stop().0);
}
