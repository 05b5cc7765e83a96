//! The alert rules and the Grafana dashboard in examples/, against `promtool` and a real
//! Prometheus scraping a real router: the rules pass their unit tests; every rule and every
//! panel's expression evaluates without error; the panels for the traffic driven return series;
//! the backlog alert fires while a destination is down; and the dashboard and the rules name
//! only metrics and labels of the router's catalogue.
//!
//! Bounded time: Prometheus scrapes and evaluates every second, and loads a test copy of
//! alerts.yml in which every `for:` is `1s` and the backlog alert's threshold is 2 s instead of
//! 900 s (see [`test_rules`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use webhook_router::metrics::catalogue;
use webhook_router_tests::prometheus::{Prometheus, binary};
use webhook_router_tests::promql;
use webhook_router_tests::signing::{sign, unix_now};
use webhook_router_tests::wait::wait_until;
use webhook_router_tests::wasm::module;
use webhook_router_tests::{Reply, Sink, TestRouter};

use crate::{PATIENCE, destination, route};

/// How long the backlog alert may take to fire once the down destination's oldest event is
/// past the (test) threshold: a few scrapes and evaluations.
const ALERT_PATIENCE: Duration = Duration::from_secs(30);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The test copy of alerts.yml: every `for:` 1 s, and the backlog threshold 2 s.
fn test_rules() -> String {
    let rules = std::fs::read_to_string(examples().join("prometheus/alerts.yml"))
        .expect("read examples/prometheus/alerts.yml");
    let threshold = "(webhook_oldest_event_age_seconds) > 900";
    assert!(
        rules.contains(threshold),
        "alerts.yml's backlog rule no longer reads {threshold:?}: update this test"
    );
    rules
        .replace(threshold, "(webhook_oldest_event_age_seconds) > 2")
        .lines()
        .map(|line| match line.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 1s"),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = examples().join("prometheus");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"][..],
    ] {
        let output = Command::new(binary("promtool"))
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            output.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Every (panel title, expression, legend) of the dashboard, and its variables' queries.
fn dashboard() -> (Vec<(String, String, String)>, Vec<String>) {
    let text = std::fs::read_to_string(examples().join("grafana/webhook-router.json"))
        .expect("read examples/grafana/webhook-router.json");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let variables: Vec<&Value> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect();
    let names: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for wanted in ["datasource", "route", "destination"] {
        assert!(names.contains(&wanted), "no ${wanted} variable: {names:?}");
    }
    let queries = variables
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| v["definition"].as_str().expect("a definition").to_owned())
        .collect();
    let mut targets = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title");
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: use the datasource variable"
        );
        for target in panel["targets"].as_array().expect("targets") {
            targets.push((
                title.to_owned(),
                target["expr"].as_str().expect("an expr").to_owned(),
                target["legendFormat"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    (targets, queries)
}

/// A dashboard expression as Grafana sends it with "All" selected.
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$route", ".*")
        .replace("$destination", ".*")
}

/// Labels every scraped series has, besides its own.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// Fails naming `what` if `expr` (or `extra_labels`, from its legend or annotations) names a
/// metric or label the router does not export.
fn check_names(what: &str, expr: &str, extra_labels: &[String]) {
    let names = promql::names(expr);
    let mut labels: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
    for metric in &names.metrics {
        if metric == "up" {
            continue;
        }
        let known = catalogue::find(metric).unwrap_or_else(|| {
            panic!("{what} names {metric}, which the router does not export: {expr}")
        });
        labels.extend(known.labels);
        if metric.ends_with("_bucket") {
            labels.insert("le");
        }
    }
    for label in names.labels.iter().chain(extra_labels) {
        assert!(
            labels.contains(label.as_str()),
            "{what} names the label {label}, which none of {:?} carries: {expr}",
            names.metrics
        );
    }
}

/// `{{label}}` and `$labels.label` references in a legend or an annotation.
fn referenced_labels(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for open in ["{{", "$labels."] {
        let mut rest = text;
        while let Some(at) = rest.find(open) {
            rest = &rest[at + open.len()..];
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !name.starts_with('$') {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn the_dashboard_and_the_rules_name_only_exported_metrics_and_labels() {
    let (targets, queries) = dashboard();
    for (title, expr, legend) in &targets {
        check_names(
            &format!("panel {title:?}"),
            expr,
            &referenced_labels(legend),
        );
    }
    for query in &queries {
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .expect("label_values(metric, label)");
        let (metric, label) = inner.split_once(',').expect("metric, label");
        check_names("a variable", metric.trim(), &[label.trim().to_owned()]);
    }
    // The rules' expressions are checked as Prometheus loaded them, in the live test below;
    // here, each rule's runbook is a README section.
    let rules = std::fs::read_to_string(examples().join("prometheus/alerts.yml")).expect("rules");
    let readme = std::fs::read_to_string(examples().join("../README.md")).expect("README");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 15, "{alerts:?}");
    for alert in alerts {
        let link = format!("runbook: \"README.md#runbook-{}\"", alert.to_lowercase());
        assert!(rules.contains(&link), "{alert}: no {link}");
        let heading = format!("\n### Runbook: {alert}\n");
        assert!(readme.contains(&heading), "README.md has no {heading:?}");
    }
}

#[test]
#[should_panic(expected = "which the router does not export")]
fn a_metric_missing_from_the_catalogue_fails_the_name_check() {
    check_names("a test", "sum(rate(webhook_made_up_total[5m]))", &[]);
}

#[test]
#[should_panic(expected = "names the label reason")]
fn a_label_the_metric_does_not_carry_fails_the_name_check() {
    check_names(
        "a test",
        "sum by (reason) (rate(webhook_deliveries_total[5m]))",
        &[],
    );
}

/// A sink's script: 503 while `down` is set, 200 otherwise.
fn switchable(down: &Arc<AtomicBool>) -> impl Fn(usize) -> Reply + Send + Sync + 'static {
    let down = Arc::clone(down);
    move |_| {
        if down.load(Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_evaluates_every_panel_and_rule_and_fires_the_backlog_alert() {
    let healthy = Sink::healthy().await;
    let broken = Sink::start(|_| Reply::status(500)).await;
    let down_flag = Arc::new(AtomicBool::new(true));
    let down = Sink::start(switchable(&down_flag)).await;
    let secret = "the-right-secret";
    // The events go through the journal, so that its panels have data too.
    let dir =
        std::env::temp_dir().join(format!("webhook-router-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = format!(
        "[queue]\npath = \"{}\"\n{}{}\
         [destinations.down]\nurl = \"{}\"\ntimeout = \"2s\"\n\
         retry = {{ max_attempts = 100, initial_backoff = \"50ms\", max_backoff = \"200ms\", jitter = \"none\" }}\n\
         {}{}{}{}verify = {{ preset = \"github\", secrets = [\"{secret}\"] }}\n\
         {}[[routes.plugins]]\nmodule = \"{}\"\nconfig = {{ allow_events = [\"push\"] }}\n",
        dir.join("journal").display(),
        destination("healthy", &healthy.url("/"), 3),
        destination("broken", &broken.url("/"), 2),
        down.url("/"),
        route("ok", "/ok", &["healthy"]),
        route("fail", "/fail", &["broken"]),
        route("stuck", "/stuck", &["down"]),
        route("signed", "/signed", &["healthy"]),
        route("filtered", "/filtered", &["healthy"]),
        module("event_filter").display(),
    );
    let router = TestRouter::start(&config).await;
    let prometheus = Prometheus::start(
        &dir.join("prometheus"),
        &router.router.admin_addr().to_string(),
        &test_rules(),
    )
    .await;

    // The first scrape before any traffic, so that rates see the counters rise.
    wait_until(
        "Prometheus's first scrape of the router",
        PATIENCE,
        || prometheus.query("up{job=\"webhook-router\"} == 1"),
        |result| matches!(result, Ok(series) if series.len() == 1),
    )
    .await
    .expect("the query evaluates");

    for n in 0..5 {
        let response = router.post_json("/ok", &format!("{{\"n\":{n}}}")).await;
        assert_eq!(response.status(), 202);
    }
    for n in 0..3 {
        let response = router.post_json("/fail", &format!("{{\"n\":{n}}}")).await;
        assert_eq!(response.status(), 202);
    }
    for n in 0..2 {
        let response = router.post_json("/stuck", &format!("{{\"n\":{n}}}")).await;
        assert_eq!(response.status(), 202);
    }
    for event in ["push", "push", "issues"] {
        let response = router
            .client
            .post(router.url("/filtered"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .body("{}")
            .send()
            .await
            .expect("ingress answers");
        assert_eq!(response.status(), 202, "{event}");
    }
    for n in 0..3 {
        let body = format!("{{\"n\":{n}}}");
        let mut request = router
            .client
            .post(router.url("/signed"))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("forged-{n}"));
        for (name, value) in sign("github", "a-wrong-secret", body.as_bytes(), unix_now()) {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.expect("ingress answers");
        assert_eq!(response.status(), 401);
    }
    // 5 to /ok, and the 2 pushes the filter forwarded.
    healthy.wait_for_delivered(7, PATIENCE).await;
    router
        .wait_for_metric("webhook_dead_letters", 3.0, PATIENCE)
        .await;

    // The backlog alert: the down destination's oldest event passes 2 s, and the rule (for: 1s)
    // goes pending, then firing.
    let started = tokio::time::Instant::now();
    let backlog = |alerts: &Vec<Value>| -> Vec<Value> {
        alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == "WebhookBacklogOld")
            .cloned()
            .collect()
    };
    let alerts = wait_until(
        "WebhookBacklogOld to fire",
        ALERT_PATIENCE,
        || prometheus.alerts(),
        |alerts| backlog(alerts).iter().any(|a| a["state"] == "firing"),
    )
    .await;
    let active = backlog(&alerts);
    eprintln!(
        "WebhookBacklogOld firing {:?} after the traffic",
        started.elapsed()
    );
    assert!(
        active.iter().all(|a| a["labels"]["destination"] == "down"),
        "only the down destination's backlog is old: {active:#?}"
    );

    // Prometheus has scraped the state after the traffic: the dead letters are in.
    wait_until(
        "Prometheus to have scraped the 3 dead letters",
        PATIENCE,
        || prometheus.query("webhook_dead_letters == 3"),
        |result| matches!(result, Ok(series) if series.len() == 1),
    )
    .await
    .expect("the query evaluates");

    // Every panel's expression evaluates; the panels of the traffic driven return series.
    let (targets, _) = dashboard();
    let mut failed = Vec::new();
    let mut with_data = BTreeSet::new();
    for (title, expr, _) in &targets {
        match prometheus.query(&as_grafana_sends(expr)).await {
            Ok(series) if !series.is_empty() => {
                with_data.insert(title.clone());
            }
            Ok(_) => {}
            Err(error) => failed.push(format!("{title}: {expr}: {error}")),
        }
    }
    assert!(failed.is_empty(), "expressions failed: {failed:#?}");
    for panel in [
        "Ingress answers by status",
        "Verification failures",
        "Plugin verdicts",
        "Plugin errors",
        "Plugin call p99",
        "Queue depth",
        "Held per destination",
        "Oldest event age",
        "Deliveries by outcome",
        "Attempt latency p50 / p99",
        "Event latency p99 (receipt to final)",
        "Circuit states (0 closed, 1 half-open, 2 open)",
        "Dead letters",
        "Journal bytes",
        "Journal fsync p50 / p99",
        "Connections",
        "Rejections",
    ] {
        assert!(
            with_data.contains(panel),
            "panel {panel:?} returned no series; those that did: {with_data:?}"
        );
    }
    eprintln!(
        "{} expressions evaluated, 0 failed; {} of {} panels with data",
        targets.len(),
        with_data.len(),
        targets
            .iter()
            .map(|(title, ..)| title)
            .collect::<BTreeSet<_>>()
            .len()
    );

    // Every rule was evaluated without error, and names only what the router exports.
    let rules = wait_until(
        "every rule to have been evaluated",
        PATIENCE,
        || prometheus.rules(),
        |rules| !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown"),
    )
    .await;
    assert_eq!(rules.len(), 15, "every rule of alerts.yml is loaded");
    for rule in &rules {
        let name = rule["name"].as_str().expect("a rule name");
        assert_eq!(rule["health"], "ok", "{name}: {}", rule["lastError"]);
        let mut annotations = String::new();
        for (_, text) in rule["annotations"].as_object().into_iter().flatten() {
            annotations.push_str(text.as_str().unwrap_or(""));
            annotations.push(' ');
        }
        check_names(
            &format!("rule {name}"),
            rule["query"].as_str().expect("a query"),
            &referenced_labels(&annotations),
        );
    }

    // What the router exports is the catalogue's: each metric with its kind and a HELP text.
    let exposition = router.metrics().await;
    for line in exposition.lines() {
        let Some(typed) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = typed.split_once(' ').expect("# TYPE name kind");
        let metric = catalogue::find(name)
            .unwrap_or_else(|| panic!("the router exports {name}, missing from the catalogue"));
        assert_eq!(metric.kind.as_str(), kind, "{name}");
        assert!(
            exposition.contains(&format!("# HELP {name} {}\n", metric.help_text())),
            "{name} has no HELP, or not the catalogue's"
        );
    }

    // The destination recovers: its backlog drains and the age falls to 0.
    let age = "webhook_oldest_event_age_seconds{destination=\"down\"}";
    let before = router.metric(age).await.expect("the age series");
    assert!(before > 2.0, "the age rose while down: {before}");
    down_flag.store(false, Ordering::SeqCst);
    router.wait_for_metric(age, 0.0, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    drop(prometheus);
    drop(router);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_oldest_event_age_rises_while_a_destination_is_down_and_falls_to_0_when_it_recovers() {
    let down_flag = Arc::new(AtomicBool::new(true));
    let sink = Sink::start(switchable(&down_flag)).await;
    let healthy = Sink::healthy().await;
    let config = format!(
        "[destinations.flaky]\nurl = \"{}\"\ntimeout = \"2s\"\n\
         retry = {{ max_attempts = 100, initial_backoff = \"20ms\", max_backoff = \"100ms\", jitter = \"none\" }}\n\
         circuit = {{ failures = 10000 }}\n{}{}{}",
        sink.url("/"),
        destination("healthy", &healthy.url("/"), 3),
        route("both", "/both", &["flaky", "healthy"]),
        route("other", "/other", &["healthy"]),
    );
    let router = TestRouter::start(&config).await;
    let age = "webhook_oldest_event_age_seconds{destination=\"flaky\"}";
    let healthy_age = "webhook_oldest_event_age_seconds{destination=\"healthy\"}";
    let latency = "webhook_event_latency_seconds_count{route=\"both\"}";
    assert_eq!(router.metric(age).await, Some(0.0), "no event held yet");

    for n in 0..3 {
        let response = router.post_json("/both", &format!("{{\"n\":{n}}}")).await;
        assert_eq!(response.status(), 202);
    }
    healthy.wait_for_delivered(3, PATIENCE).await;
    // The age rises while flaky answers 503: read it, and read it again higher.
    let first = wait_until(
        "the age of flaky's oldest event to pass 0.5 s",
        PATIENCE,
        || router.metric(age),
        |seen| seen.is_some_and(|s| s > 0.5),
    )
    .await
    .expect("the series");
    let later = wait_until(
        "the age to rise by another 0.5 s",
        PATIENCE,
        || router.metric(age),
        |seen| seen.is_some_and(|s| s >= first + 0.5),
    )
    .await
    .expect("the series");
    assert_eq!(
        router.metric(healthy_age).await,
        Some(0.0),
        "healthy delivered its copies: it holds nothing"
    );
    assert_eq!(
        router.metric(latency).await,
        Some(0.0),
        "no event of route both is final yet"
    );

    // Recovery: flaky takes the held events; the age falls to 0 and each event's latency
    // (receipt to its last final outcome) is at least as long as it was held.
    down_flag.store(false, Ordering::SeqCst);
    router.wait_for_metric(age, 0.0, PATIENCE).await;
    router.wait_idle(PATIENCE).await;
    assert_eq!(router.metric(latency).await, Some(3.0));
    let sum = router
        .metric("webhook_event_latency_seconds_sum{route=\"both\"}")
        .await
        .expect("the sum");
    assert!(
        sum >= 3.0 * later - 0.5,
        "three events held about {later} s each: {sum}"
    );
    eprintln!(
        "age read {first:.2} s, then {later:.2} s while down; 0 after recovery; latency sum {sum:.2} s for 3 events"
    );
}
