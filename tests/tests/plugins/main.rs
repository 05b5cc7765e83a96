//! The bundled plugins, and the sandbox, tested as they run in production: the real `.wasm`
//! built from `plugins/` (and `tests/guests/`), through the router's real host, on real GitHub
//! payloads from `tests/fixtures/github/`.

mod contained;
mod event_filter;
mod hostile;
mod json_map;
mod redact;
mod route_by_field;
mod slack_notify;

use webhook_router::plugin::bindings::{Event, Verdict};
use webhook_router_tests::wasm::{github_event, github_payload};

/// The event a `forward` verdict carries; panics on any other verdict.
pub fn forwarded(verdict: Verdict) -> Event {
    match verdict {
        Verdict::Forward(event) => event,
        other => panic!("expected forward, got {other:?}"),
    }
}

/// The body of a guest event, as JSON.
pub fn json_body(event: &Event) -> serde_json::Value {
    serde_json::from_slice(&event.body).expect("the plugin produced JSON")
}

/// The first value of header `name` of a guest event.
pub fn header<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.value.as_str())
}

/// An event that makes the hostile guest behave as `mode`.
pub fn event_in_mode(mode: &str) -> webhook_router::event::Event {
    let mut event = github_event("push", github_payload("push"));
    event.headers.insert(
        "x-hostile-mode",
        http::HeaderValue::from_str(mode).expect("modes are header-safe"),
    );
    event
}
