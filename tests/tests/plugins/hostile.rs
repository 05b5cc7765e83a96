//! The sandbox against a hostile guest: every misbehaviour is stopped at its limit, classified,
//! and leaves the plugin usable for the next event.

use std::time::{Duration, Instant};

use http::HeaderValue;
use serde_json::json;
use webhook_router::plugin::{Isolation, LoadedPlugin, PluginErrorKind, PluginLimits};
use webhook_router_tests::wasm::{HandleBlocking, try_load};

use crate::{event_in_mode, forwarded, header};

const TIME_LIMIT: Duration = Duration::from_millis(25);
/// Room for the OS to schedule this thread on a busy machine.
const SCHEDULING_SLACK: Duration = Duration::from_millis(300);

fn limits() -> PluginLimits {
    PluginLimits {
        memory_bytes: 16 * 1024 * 1024,
        time: TIME_LIMIT,
        output_bytes: 1024 * 1024,
        ..PluginLimits::default()
    }
}

fn hostile(config: &serde_json::Value, isolation: Isolation) -> LoadedPlugin {
    try_load("hostile", config, limits(), isolation).expect("the hostile guest loads")
}

fn assert_fails_with(plugin: &LoadedPlugin, mode: &str, kind: PluginErrorKind) {
    let failure = plugin
        .handle_blocking(&event_in_mode(mode))
        .expect_err("the hostile call fails");
    assert_eq!(failure.kind, kind, "{mode}: {failure}");
    // The same plugin still serves a well-behaved event afterwards.
    let ok = plugin
        .handle_blocking(&event_in_mode("ok"))
        .expect("the next call works");
    forwarded(ok);
}

#[test]
fn an_infinite_loop_uses_up_its_cpu_budget() {
    let plugin = hostile(&json!({}), Isolation::Reuse);
    let started = Instant::now();
    let failure = plugin
        .handle_blocking(&event_in_mode("loop"))
        .expect_err("the loop is interrupted");
    let elapsed = started.elapsed();
    assert_eq!(failure.kind, PluginErrorKind::Timeout, "{failure}");
    assert!(
        failure.message.contains("CPU budget of 25ms"),
        "stopped by its CPU budget, not the backstop: {failure}"
    );
    assert!(
        elapsed <= limits().backstop() + SCHEDULING_SLACK,
        "stopped long after its deadline: {elapsed:?}"
    );
    forwarded(
        plugin
            .handle_blocking(&event_in_mode("ok"))
            .expect("the next call works"),
    );
}

#[test]
fn a_memory_bomb_is_contained_at_the_limit() {
    // A wall-clock budget the bomb cannot reach even on a loaded machine: the limit tested
    // here is memory.
    let limits = PluginLimits {
        time: Duration::from_secs(2),
        ..limits()
    };
    let plugin =
        try_load("hostile", &json!({}), limits, Isolation::Reuse).expect("the hostile guest loads");
    assert_fails_with(&plugin, "memory", PluginErrorKind::Memory);
    // Up to the limit is fine.
    let within = try_load(
        "hostile",
        &json!({ "mode": "memory", "bytes": 8 * 1024 * 1024 }),
        limits,
        Isolation::Reuse,
    )
    .expect("the hostile guest loads");
    let out = forwarded(
        within
            .handle_blocking(&event_in_mode("memory"))
            .expect("within the limit"),
    );
    assert_eq!(header(&out, "x-hostile-allocated"), Some("8388608"));
}

#[test]
fn traps_panics_and_stack_overflows_are_traps() {
    let plugin = hostile(&json!({}), Isolation::Reuse);
    assert_fails_with(&plugin, "trap", PluginErrorKind::Trap);
    assert_fails_with(&plugin, "panic", PluginErrorKind::Trap);
    assert_fails_with(&plugin, "recursion", PluginErrorKind::Trap);
}

#[test]
fn output_over_the_cap_is_refused() {
    // Copying 2 MiB out of the guest is slow in an unoptimised test build: a generous budget.
    let limits = PluginLimits {
        time: Duration::from_secs(2),
        ..limits()
    };
    let plugin = try_load(
        "hostile",
        &json!({ "bytes": 2 * 1024 * 1024 }),
        limits,
        Isolation::Reuse,
    )
    .expect("the hostile guest loads");
    assert_fails_with(&plugin, "big-output", PluginErrorKind::OutputTooLarge);
}

#[test]
fn errors_are_errors() {
    let plugin = hostile(&json!({}), Isolation::Reuse);
    assert_fails_with(&plugin, "error", PluginErrorKind::Error);
}

#[test]
fn a_failing_configure_fails_the_load() {
    for (mode, words) in [
        ("configure-error", "refusing to be configured"),
        ("configure-trap", "unreachable"),
        ("configure-loop", "CPU budget"),
    ] {
        // `configure` gets 50 × the limit: a small limit keeps the loop short.
        let limits = PluginLimits {
            time: Duration::from_millis(1),
            ..limits()
        };
        let error = try_load(
            "hostile",
            &json!({ "mode": mode }),
            limits,
            Isolation::Reuse,
        )
        .expect_err("configure fails");
        assert!(error.contains(words), "{mode}: {error}");
    }
}

#[test]
fn a_failed_instance_is_discarded_and_fresh_isolation_keeps_no_state() {
    let reused = hostile(&json!({ "mode": "count" }), Isolation::Reuse);
    let count = |plugin: &LoadedPlugin| {
        let out = forwarded(
            plugin
                .handle_blocking(&event_in_mode("count"))
                .expect("counts"),
        );
        header(&out, "x-hostile-count")
            .expect("count header")
            .to_owned()
    };
    assert_eq!(count(&reused), "1");
    assert_eq!(count(&reused), "2", "a reused instance keeps its state");
    reused
        .handle_blocking(&event_in_mode("trap"))
        .expect_err("the instance traps");
    assert_eq!(count(&reused), "1", "the trapped instance was replaced");

    let fresh = hostile(&json!({ "mode": "count" }), Isolation::Fresh);
    assert_eq!(count(&fresh), "1");
    assert_eq!(count(&fresh), "1", "every event gets a new instance");
}

#[test]
fn two_plugins_of_one_module_share_no_state() {
    let first = hostile(&json!({ "mode": "count" }), Isolation::Reuse);
    let second = hostile(&json!({ "mode": "count" }), Isolation::Reuse);
    for _ in 0..3 {
        first
            .handle_blocking(&event_in_mode("count"))
            .expect("counts");
    }
    let out = forwarded(
        second
            .handle_blocking(&event_in_mode("count"))
            .expect("counts"),
    );
    assert_eq!(header(&out, "x-hostile-count"), Some("1"));
}

#[test]
fn the_guest_sees_every_field_of_the_event_as_the_router_holds_it() {
    // The ok mode forwards the event it got untouched, so what comes back is what went in.
    let plugin = hostile(&json!({}), Isolation::Reuse);
    let mut event = event_in_mode("ok");
    event.query = "a=1&b=two".to_owned();
    event
        .headers
        .append("x-repeated", HeaderValue::from_static("first"));
    event
        .headers
        .append("x-repeated", HeaderValue::from_static("second"));
    event.headers.insert(
        "x-not-utf8",
        HeaderValue::from_bytes(b"caf\xe9").expect("a valid, non-UTF-8 header value"),
    );
    let seen = forwarded(plugin.handle_blocking(&event).expect("plugin runs"));
    // `to_guest` is the plain copy of the event into the contract's types.
    let expected = webhook_router::plugin::bindings::to_guest(&event);
    assert_eq!(format!("{seen:?}"), format!("{expected:?}"));
    assert_eq!(header(&seen, "x-not-utf8"), Some("caf\u{fffd}"));
    let repeated: Vec<&str> = seen
        .headers
        .iter()
        .filter(|h| h.name == "x-repeated")
        .map(|h| h.value.as_str())
        .collect();
    assert_eq!(repeated, ["first", "second"]);
}
