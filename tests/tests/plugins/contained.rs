//! Async execution and the limits only a plugin can break (#14): a guest that sleeps, polls,
//! floods stdout or returns an aliasing fan-out fails its own call, within its limit and with
//! its own kind; time is the call's CPU time, so load does not fail a fast plugin; what
//! a guest prints is captured; an import the router does not provide fails only the call that
//! uses it; files, sockets and outgoing HTTP are denied, failing the call and naming the
//! interface, while the clocks tell the time; and a healthy plugin keeps serving while hostile
//! calls run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use webhook_router::plugin::stdio::Stream;
use webhook_router::plugin::{Isolation, LoadedPlugin, PluginErrorKind, PluginLimits};
use webhook_router_tests::wasm::{HandleBlocking, block_on, load_plugin_async, try_load};

use crate::{event_in_mode, forwarded};

const TIME_LIMIT: Duration = Duration::from_millis(25);
/// Room for the OS to schedule this thread on a busy machine.
const SCHEDULING_SLACK: Duration = Duration::from_millis(300);

fn limits() -> PluginLimits {
    PluginLimits {
        time: TIME_LIMIT,
        ..PluginLimits::default()
    }
}

fn hostile(config: &serde_json::Value) -> LoadedPlugin {
    try_load("hostile", config, limits(), Isolation::Reuse).expect("the hostile guest loads")
}

/// Runs `mode` once: its failure and how long it took; then checks the plugin still works.
fn fail_timed(
    plugin: &LoadedPlugin,
    mode: &str,
) -> (webhook_router::plugin::PluginFailure, Duration) {
    let started = Instant::now();
    let failure = plugin
        .handle_blocking(&event_in_mode(mode))
        .expect_err("the hostile call fails");
    let elapsed = started.elapsed();
    forwarded(
        plugin
            .handle_blocking(&event_in_mode("ok"))
            .expect("the next call works"),
    );
    (failure, elapsed)
}

/// This process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

#[test]
fn a_ten_second_wasi_sleep_ends_at_the_wall_clock_backstop() {
    let plugin = hostile(&json!({ "bytes": 10_000 }));
    let (failure, elapsed) = fail_timed(&plugin, "sleep");
    assert_eq!(failure.kind, PluginErrorKind::Timeout, "{failure}");
    assert!(failure.message.contains("backstop of 250ms"), "{failure}");
    assert!(
        elapsed >= limits().backstop() && elapsed <= limits().backstop() + SCHEDULING_SLACK,
        "ended at {elapsed:?}, backstop {:?}",
        limits().backstop()
    );
}

#[test]
fn a_busy_loop_of_polls_ends_within_its_backstop() {
    let plugin = hostile(&json!({}));
    let (failure, elapsed) = fail_timed(&plugin, "poll-loop");
    assert_eq!(failure.kind, PluginErrorKind::Timeout, "{failure}");
    assert!(
        elapsed <= limits().backstop() + SCHEDULING_SLACK,
        "ended at {elapsed:?}"
    );
}

#[test]
fn a_100_mb_stdout_flood_fails_at_the_output_cap() {
    let plugin = hostile(&json!({}));
    let (failure, elapsed) = fail_timed(&plugin, "stdout-flood");
    assert_eq!(failure.kind, PluginErrorKind::OutputTooLarge, "{failure}");
    assert!(
        failure
            .message
            .contains("more than 1048576 bytes to stdout and stderr"),
        "{failure}"
    );
    assert!(
        elapsed <= limits().backstop() + SCHEDULING_SLACK,
        "{elapsed:?}"
    );
    // Within the cap, the same mode is fine.
    let within = hostile(&json!({ "mode": "stdout-flood", "bytes": 100_000 }));
    let out = forwarded(
        within
            .handle_blocking(&event_in_mode("stdout-flood"))
            .expect("within the cap"),
    );
    assert_eq!(crate::header(&out, "x-hostile-written"), Some("100000"));
}

#[test]
fn an_aliasing_fan_out_is_refused_before_the_host_copies_it() {
    // A generous CPU budget: the limit tested here is the output.
    let plugin = try_load(
        "hostile",
        &json!({}),
        PluginLimits {
            time: Duration::from_secs(1),
            ..limits()
        },
        Isolation::Reuse,
    )
    .expect("the hostile guest loads");
    let before = peak_rss();
    let started = Instant::now();
    let failure = plugin
        .handle_blocking(&event_in_mode("alias-fan-out"))
        .expect_err("the fan-out is refused");
    let elapsed = started.elapsed();
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(failure.kind, PluginErrorKind::OutputTooLarge, "{failure}");
    assert!(
        failure.message.contains("refused before copying"),
        "{failure}"
    );
    // 1,000 entries × 1 MiB would be 1,000 MiB copied; the cap is 1 MiB.
    assert!(
        grown < 64 * 1024 * 1024,
        "peak RSS grew by {grown} bytes in {elapsed:?}"
    );
    forwarded(
        plugin
            .handle_blocking(&event_in_mode("ok"))
            .expect("the next call works"),
    );
}

#[test]
fn stdout_and_stderr_are_captured_per_call_not_printed() {
    let plugin = hostile(&json!({}));
    for _ in 0..2 {
        let outcome = block_on(plugin.call(&event_in_mode("print")));
        forwarded(outcome.result.expect("printing is allowed"));
        assert_eq!(
            outcome.stdio.lines,
            [
                (Stream::Stdout, "hostile plugin writes to stdout".to_owned()),
                (Stream::Stderr, "hostile plugin writes to stderr".to_owned()),
            ],
            "each call sees only its own lines"
        );
        assert_eq!(outcome.stdio.cut_lines, 0);
    }
}

#[test]
fn an_uncaught_exception_text_is_in_the_failure() {
    let plugin = hostile(&json!({}));
    let (failure, _) = fail_timed(&plugin, "stderr-trap");
    assert_eq!(failure.kind, PluginErrorKind::Trap, "{failure}");
    assert!(
        failure
            .message
            .ends_with("stderr: uncaught exception: TypeError: hostile is not a function"),
        "{failure}"
    );
}

#[test]
fn a_fast_plugin_never_times_out_on_a_loaded_machine() {
    // Four threads spinning on a machine of two cores or so: each call of the plugin waits for a
    // core now and then, longer than its 2 ms limit, which counts only the guest's own work.
    let limits = PluginLimits {
        time: Duration::from_millis(2),
        ..PluginLimits::default()
    };
    let plugin =
        try_load("hostile", &json!({}), limits, Isolation::Reuse).expect("the hostile guest loads");
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            })
        })
        .collect();
    let event = event_in_mode("ok");
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    for _ in 0..300 {
        let call = Instant::now();
        if let Err(failure) = plugin.handle_blocking(&event) {
            failures.push(failure);
        }
        slowest = slowest.max(call.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().expect("spinner ends");
    }
    assert!(
        failures.is_empty(),
        "{} of 300 calls failed (slowest {slowest:?}, all in {:?}): {:?}",
        failures.len(),
        started.elapsed(),
        failures.first()
    );
}

#[test]
fn a_healthy_plugin_keeps_serving_while_hostile_calls_run() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let hostile_limits = PluginLimits {
            time: Duration::from_millis(100),
            ..PluginLimits::default()
        };
        let hostile = load_plugin_async("hostile", &json!({}), hostile_limits)
            .await
            .expect("the hostile guest loads");
        let healthy = load_plugin_async("hostile", &json!({}), PluginLimits::default())
            .await
            .expect("the healthy guest loads");
        let cases = [
            ("loop", PluginErrorKind::Timeout),
            ("loop", PluginErrorKind::Timeout),
            ("sleep", PluginErrorKind::Timeout),
            ("poll-loop", PluginErrorKind::Timeout),
            ("memory", PluginErrorKind::Memory),
            ("stdout-flood", PluginErrorKind::OutputTooLarge),
            ("alias-fan-out", PluginErrorKind::OutputTooLarge),
        ];
        let started = Instant::now();
        let tasks: Vec<_> = cases
            .iter()
            .map(|&(mode, kind)| {
                let hostile = hostile.clone();
                tokio::spawn(async move {
                    let failure = hostile
                        .handle(&event_in_mode(mode))
                        .await
                        .expect_err("the hostile call fails");
                    assert_eq!(failure.kind, kind, "{mode}: {failure}");
                    mode
                })
            })
            .collect();
        // Meanwhile, the healthy plugin answers each event at once, on the same two workers.
        let event = event_in_mode("ok");
        let mut calls = 0;
        let mut slowest = Duration::ZERO;
        while started.elapsed() < Duration::from_millis(500) {
            let call = Instant::now();
            forwarded(healthy.handle(&event).await.expect("healthy call works"));
            slowest = slowest.max(call.elapsed());
            calls += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for task in tasks {
            task.await.expect("hostile task ends as expected");
        }
        // Unyielding guests would hold both workers for their budget (the loops spin for 100 to
        // 200 ms).
        assert!(
            slowest < Duration::from_millis(60),
            "slowest healthy call {slowest:?} of {calls}"
        );
        assert!(
            started.elapsed() <= hostile_limits.backstop() + SCHEDULING_SLACK,
            "hostile calls ended by {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn an_import_the_router_does_not_provide_fails_only_the_call_that_uses_it() {
    // The hostile guest imports `hostile:denied/nope`, which no router provides: it loads, and
    // serves events that do not call it.
    let plugin = hostile(&json!({}));
    let (failure, _) = fail_timed(&plugin, "denied-import");
    assert_eq!(failure.kind, PluginErrorKind::Error, "{failure}");
    assert!(
        failure.message.starts_with(
            "the plugin called `hostile:denied/nope#ping`, which the router does not provide"
        ),
        "{failure}"
    );
}

#[test]
fn files_do_not_open_and_the_guest_sees_an_ordinary_error() {
    // Files that exist on the host, by absolute and by relative path (the test runs in the
    // crate's directory): the guest has no directory to find them in.
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    assert!(std::path::Path::new(manifest).is_file());
    for path in [manifest, "Cargo.toml"] {
        let plugin = hostile(&json!({ "message": path }));
        let event = forwarded(
            plugin
                .handle_blocking(&event_in_mode("open-file"))
                .expect("a failed open is the guest's to handle, not the call's failure"),
        );
        let got = crate::header(&event, "x-hostile-file").expect("x-hostile-file");
        assert!(got.starts_with("error: "), "{path}: the guest got {got:?}");
    }
}

#[test]
fn sockets_and_outgoing_http_are_denied_failing_the_call_and_naming_the_interface() {
    // A real listener the guest is pointed at: nothing may reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let address = listener.local_addr().expect("address").to_string();
    for (mode, called) in [
        (
            "connect",
            "`wasi:sockets/tcp-create-socket.create-tcp-socket`",
        ),
        ("http", "`wasi:http/outgoing-handler.handle`"),
    ] {
        let plugin = hostile(&json!({ "message": address }));
        let (failure, _) = fail_timed(&plugin, mode);
        assert_eq!(failure.kind, PluginErrorKind::Denied, "{mode}: {failure}");
        assert!(
            failure
                .message
                .starts_with(&format!("the plugin called {called}, which is denied")),
            "{mode}: {failure}"
        );
    }
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a guest reached the listener: {accepted:?}"
    );
}

#[test]
fn the_wall_and_monotonic_clocks_tell_the_time() {
    let plugin = hostile(&json!({}));
    let before = std::time::SystemTime::now();
    let event = forwarded(
        plugin
            .handle_blocking(&event_in_mode("clock"))
            .expect("reading the clocks is allowed"),
    );
    let after = std::time::SystemTime::now();
    let millis = |time: std::time::SystemTime| {
        time.duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis()
    };
    let wall: u128 = crate::header(&event, "x-hostile-wall-ms")
        .and_then(|ms| ms.parse().ok())
        .expect("x-hostile-wall-ms");
    assert!(
        (millis(before)..=millis(after)).contains(&wall),
        "the guest's wall clock says {wall}, the host's {}..={}",
        millis(before),
        millis(after)
    );
    let moved: u128 = crate::header(&event, "x-hostile-monotonic-ns")
        .and_then(|ns| ns.parse().ok())
        .expect("x-hostile-monotonic-ns");
    assert!(
        moved > 0,
        "the monotonic clock did not move over a million reads"
    );
}
