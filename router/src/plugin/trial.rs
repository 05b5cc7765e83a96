//! Trying a plugin outside a router (`webhook-router plugin run`): one event built from a file
//! and command-line headers, run through the same host, sandbox and limits as in a route, and
//! the verdict rendered for a person to read.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::bindings::{self, Verdict};
use super::{LoadedPlugin, PluginFailure};
use crate::event::Event;

/// Parses a `Name: value` header argument.
pub fn parse_header(argument: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = argument
        .split_once(':')
        .ok_or_else(|| format!("header {argument:?} is not `Name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name in {argument:?}"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid header value in {argument:?}"))?;
    Ok((name, value))
}

/// An event as a route would have accepted it: `body` posted to `/<route>` with `headers`.
/// A body that parses as JSON gets `content-type: application/json` unless one is given.
pub fn trial_event(route: &str, body: Vec<u8>, mut headers: HeaderMap) -> Event {
    if !headers.contains_key(http::header::CONTENT_TYPE)
        && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok()
    {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Event {
        id: Event::new_id(),
        route: route.to_owned(),
        method: Method::POST,
        path: format!("/{route}"),
        query: String::new(),
        headers,
        body: Bytes::from(body),
        received_at: SystemTime::now(),
        plugin_headers: None,
        order_key: None,
        trace: None,
    }
}

/// What one plugin call gave, and how long it took.
#[derive(Debug)]
pub struct TrialOutcome {
    /// The verdict, or the failure.
    pub result: Result<Verdict, PluginFailure>,
    /// Time spent in the call (instantiation included when isolation is `fresh`).
    pub elapsed: Duration,
    /// The call's CPU time (what `limits.time` budgets), read exactly.
    pub cpu_time: Duration,
}

/// Runs `plugin` once on `event`.
pub async fn run_once(plugin: &LoadedPlugin, event: &Event) -> TrialOutcome {
    let started = Instant::now();
    let outcome = plugin.call_exact(event).await;
    let elapsed = started.elapsed();
    outcome.stdio.log(plugin.name(), &event.route, &event.id);
    TrialOutcome {
        result: outcome.result,
        elapsed,
        cpu_time: outcome.cpu_time.unwrap_or_default(),
    }
}

/// `used` CPU time as a share of `budget`, for a person: `0.3% of the time limit`.
pub fn budget_share(used: Duration, budget: Duration) -> String {
    let percent = used.as_secs_f64() * 100.0 / budget.as_secs_f64().max(f64::MIN_POSITIVE);
    format!("{percent:.1}% of the time limit")
}

/// Call times of a plugin run on one event several times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimes {
    /// Calls made.
    pub calls: usize,
    /// Median call time.
    pub p50: Duration,
    /// 99th percentile call time (nearest rank).
    pub p99: Duration,
}

impl CallTimes {
    /// Percentiles of `samples` (nearest rank); `None` for no samples.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        samples.sort_unstable();
        let rank = |percent: usize| {
            let index = (samples.len() * percent).div_ceil(100).saturating_sub(1);
            samples.get(index).copied()
        };
        Some(Self {
            calls: samples.len(),
            p50: rank(50)?,
            p99: rank(99)?,
        })
    }
}

/// Runs `plugin` on `event` `times` times (at least once): the last call's outcome, and the
/// call times of all of them.
pub async fn run_repeated(
    plugin: &LoadedPlugin,
    event: &Event,
    times: usize,
) -> (TrialOutcome, CallTimes) {
    let mut samples = Vec::with_capacity(times.max(1));
    let mut last = run_once(plugin, event).await;
    samples.push(last.elapsed);
    for _ in 1..times {
        last = run_once(plugin, event).await;
        samples.push(last.elapsed);
    }
    let times = CallTimes::of(samples).unwrap_or(CallTimes {
        calls: 1,
        p50: last.elapsed,
        p99: last.elapsed,
    });
    (last, times)
}

/// A verdict on `input` for a person: its kind, then for each resulting event its headers and
/// its body (pretty-printed when it is JSON).
pub fn render_verdict(verdict: &Verdict, input: &Event) -> String {
    let mut out = String::new();
    match verdict {
        Verdict::Forward(event) => {
            out.push_str("verdict: forward\n");
            render_event(&mut out, event);
        }
        Verdict::Pass => {
            out.push_str("verdict: pass (the event goes on unchanged)\n");
            render_event(&mut out, &bindings::to_guest(input));
        }
        Verdict::Drop(reason) => {
            let _ = writeln!(out, "verdict: drop ({reason})");
        }
        Verdict::Reject(rejection) => {
            let _ = writeln!(
                out,
                "verdict: reject {} ({})",
                rejection.status, rejection.message
            );
        }
        Verdict::FanOut(deliveries) => {
            let _ = writeln!(
                out,
                "verdict: fan-out to {} destination(s)",
                deliveries.len()
            );
            for delivery in deliveries {
                let _ = writeln!(out, "\n--> {}", delivery.destination);
                render_event(&mut out, &delivery.event);
            }
        }
    }
    out
}

fn render_event(out: &mut String, event: &bindings::Event) {
    for header in &event.headers {
        let _ = writeln!(out, "{}: {}", header.name, header.value);
    }
    out.push('\n');
    match serde_json::from_slice::<serde_json::Value>(&event.body) {
        Ok(json) => {
            let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
            out.push_str(&pretty);
        }
        Err(_) => out.push_str(&String::from_utf8_lossy(&event.body)),
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_arguments_parse_or_say_why_not() {
        let (name, value) = parse_header("X-GitHub-Event: push").unwrap();
        assert_eq!(name.as_str(), "x-github-event");
        assert_eq!(value, "push");
        assert!(
            parse_header("no colon")
                .unwrap_err()
                .contains("Name: value")
        );
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn json_bodies_get_a_json_content_type_unless_one_is_given() {
        let event = trial_event("github", br#"{"a":1}"#.to_vec(), HeaderMap::new());
        assert_eq!(event.content_type().unwrap(), "application/json");
        assert_eq!(event.path, "/github");
        let event = trial_event("r", b"plain".to_vec(), HeaderMap::new());
        assert!(event.content_type().is_none());
    }

    #[test]
    fn call_times_are_nearest_rank_percentiles() {
        let ms = Duration::from_millis;
        let times = CallTimes::of((1..=100).rev().map(ms).collect()).unwrap();
        assert_eq!(times.calls, 100);
        assert_eq!(times.p50, ms(50));
        assert_eq!(times.p99, ms(99));
        let one = CallTimes::of(vec![ms(7)]).unwrap();
        assert_eq!((one.p50, one.p99), (ms(7), ms(7)));
        assert_eq!(CallTimes::of(Vec::new()), None);
    }

    #[test]
    fn verdicts_render_with_pretty_json_bodies() {
        let event = bindings::Event {
            id: "e".into(),
            route: "r".into(),
            method: "POST".into(),
            path: "/r".into(),
            query: String::new(),
            headers: vec![bindings::Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: br#"{"text":"hi"}"#.to_vec(),
            received_at_ms: 0,
        };
        let input = trial_event("r", br#"{"text":"hi"}"#.to_vec(), HeaderMap::new());
        let text = render_verdict(&Verdict::Forward(event), &input);
        assert_eq!(
            text,
            "verdict: forward\ncontent-type: application/json\n\n{\n  \"text\": \"hi\"\n}\n"
        );
        let text = render_verdict(&Verdict::Pass, &input);
        assert!(
            text.starts_with("verdict: pass (the event goes on unchanged)\n"),
            "{text}"
        );
        assert!(text.ends_with("\n{\n  \"text\": \"hi\"\n}\n"), "{text}");
        let text = render_verdict(&Verdict::Drop("not main".into()), &input);
        assert_eq!(text, "verdict: drop (not main)\n");
    }
}
