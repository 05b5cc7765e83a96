//! # route-by-field
//!
//! Chooses the event's destinations from one field (a header, or a value of the JSON body)
//! and fans the unchanged event out to them.
//!
//! ## Config
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `field` | `{ "header": "<name>" }` or `{ "pointer": "<JSON pointer>" }` | where the routing value is read: a header (case-insensitive), or the body at this RFC 6901 pointer (strings as they are, numbers and booleans as JSON text) |
//! | `routes` | table: value → destination name or list of names | the destinations for each value (exact match) |
//! | `default` | destination name or list of names | the destinations when the value has no route, or there is no value; without it such events are dropped |
//!
//! Destination names are those of the router config, and the route must name each one in its
//! `destinations` or its `fan_out` list; any other name makes the event fail (the route's
//! `on_plugin_error` applies). Each destination gets one delivery of the same event (a name listed
//! twice gets one). A route with an empty list drops the event.
//!
//! ## Example
//!
//! ```toml
//! [[routes.plugins]]
//! module = "target/wasm/wasm32-wasip2/release/route_by_field.wasm"
//! config = { field = { header = "x-github-event" }, routes = { pull_request = ["reviews"], issues = ["triage", "archive"] }, default = ["fallback"] }
//! ```
//!
//! or, routing on the body:
//!
//! ```json
//! { "field": { "pointer": "/action" }, "routes": { "opened": "triage", "closed": ["archive"] } }
//! ```

use std::collections::HashMap;

use serde::Deserialize;
use webhook_router_sdk::serde_json::Value;
use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, verdict};

/// The configured router.
#[derive(Debug)]
pub struct RouteByField {
    field: Field,
    routes: HashMap<String, Vec<String>>,
    default: Option<Vec<String>>,
}

/// Where the routing value is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Field {
    Header(String),
    Pointer(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    field: Field,
    #[serde(default)]
    routes: HashMap<String, OneOrMany>,
    #[serde(default)]
    default: Option<OneOrMany>,
}

/// Destination names, checked and without repeats.
fn destinations(names: OneOrMany, at: &str) -> Result<Vec<String>, String> {
    let names = match names {
        OneOrMany::One(name) => vec![name],
        OneOrMany::Many(names) => names,
    };
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if name.trim().is_empty() {
            return Err(format!("{at}: a destination name is empty"));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

impl RouteByField {
    /// Builds the router from its config (see the crate docs).
    pub fn from_config(config: Value) -> Result<Self, String> {
        let raw: RawConfig = webhook_router_sdk::from_config(config)?;
        let field = match raw.field {
            Field::Header(name) if name.trim().is_empty() => {
                return Err("field.header is empty".into());
            }
            Field::Header(name) => Field::Header(name.to_ascii_lowercase()),
            Field::Pointer(p) if !(p.is_empty() || p.starts_with('/')) => {
                return Err(format!(
                    "field.pointer {p:?} is not a JSON pointer: it must start with \"/\""
                ));
            }
            field => field,
        };
        let routes = raw
            .routes
            .into_iter()
            .map(|(value, names)| {
                let names = destinations(names, &format!("routes.{value}"))?;
                Ok((value, names))
            })
            .collect::<Result<_, String>>()?;
        let default = raw
            .default
            .map(|names| destinations(names, "default"))
            .transpose()?;
        Ok(Self {
            field,
            routes,
            default,
        })
    }

    /// The routing value of `event`, if it has one.
    fn value(&self, event: &Event) -> Option<String> {
        match &self.field {
            Field::Header(name) => event.header(name).map(str::to_owned),
            Field::Pointer(pointer) => {
                let body: Value = event.json().ok()?;
                match body.pointer(pointer)? {
                    Value::String(s) => Some(s.clone()),
                    v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
                    _ => None,
                }
            }
        }
    }

    fn describe_field(&self) -> String {
        match &self.field {
            Field::Header(name) => format!("header {name}"),
            Field::Pointer(pointer) => format!("{pointer:?}"),
        }
    }

    /// The verdict for `event`.
    pub fn route(&self, event: Event) -> Verdict {
        let value = self.value(&event);
        let chosen = value.as_ref().and_then(|v| self.routes.get(v));
        let Some(names) = chosen.or(self.default.as_ref()) else {
            return verdict::drop(match &value {
                Some(value) => format!("no route for {} = {value:?}", self.describe_field()),
                None => format!("no route: no value at {}", self.describe_field()),
            });
        };
        if names.is_empty() {
            return verdict::drop(match &value {
                Some(value) => format!(
                    "the route for {} = {value:?} has no destinations",
                    self.describe_field()
                ),
                None => "the default route has no destinations".to_owned(),
            });
        }
        let mut deliveries: Vec<(String, Event)> = Vec::with_capacity(names.len());
        if let Some((last, rest)) = names.split_last() {
            deliveries.extend(rest.iter().map(|name| (name.clone(), event.clone())));
            deliveries.push((last.clone(), event));
        }
        verdict::fan_out(deliveries)
    }
}

impl Plugin for RouteByField {
    fn configure(config: Value) -> Result<Self, String> {
        Self::from_config(config)
    }

    fn handle(&self, event: Event) -> Result<Verdict, String> {
        Ok(self.route(event))
    }
}

export_plugin!(RouteByField);

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_router_sdk::serde_json::json;

    fn router(config: Value) -> RouteByField {
        RouteByField::from_config(config).unwrap()
    }

    fn targets(verdict: Verdict, event: &Event) -> Vec<String> {
        match verdict {
            Verdict::FanOut(deliveries) => deliveries
                .into_iter()
                .map(|d| {
                    assert_eq!(&d.event, event, "every delivery gets the same event");
                    d.destination
                })
                .collect(),
            other => panic!("not a fan-out: {other:?}"),
        }
    }

    #[test]
    fn by_header() {
        let r = router(json!({
            "field": {"header": "X-GitHub-Event"},
            "routes": {"pull_request": ["reviews"], "issues": ["triage", "archive", "triage"]},
            "default": "fallback"
        }));
        let event = |kind: &str| Event::from_body("{}").with_header("x-github-event", kind);
        let pr = event("pull_request");
        assert_eq!(targets(r.route(pr.clone()), &pr), ["reviews"]);
        let issues = event("issues");
        assert_eq!(
            targets(r.route(issues.clone()), &issues),
            ["triage", "archive"]
        );
        let push = event("push");
        assert_eq!(targets(r.route(push.clone()), &push), ["fallback"]);
        let none = Event::from_body("{}");
        assert_eq!(targets(r.route(none.clone()), &none), ["fallback"]);
    }

    #[test]
    fn by_pointer_without_default() {
        let r = router(json!({
            "field": {"pointer": "/action"},
            "routes": {"opened": "triage", "42": ["answers"], "true": ["yes"], "closed": []}
        }));
        let event = |body: Value| Event::from_body(body.to_string());
        let opened = event(json!({"action": "opened"}));
        assert_eq!(targets(r.route(opened.clone()), &opened), ["triage"]);
        let number = event(json!({"action": 42}));
        assert_eq!(targets(r.route(number.clone()), &number), ["answers"]);
        let boolean = event(json!({"action": true}));
        assert_eq!(targets(r.route(boolean.clone()), &boolean), ["yes"]);
        assert_eq!(
            r.route(event(json!({"action": "edited"}))),
            verdict::drop("no route for \"/action\" = \"edited\"")
        );
        assert_eq!(
            r.route(event(json!({"action": {"x": 1}}))),
            verdict::drop("no route: no value at \"/action\"")
        );
        assert_eq!(
            r.route(Event::from_body("not json")),
            verdict::drop("no route: no value at \"/action\"")
        );
        assert_eq!(
            r.route(event(json!({"action": "closed"}))),
            verdict::drop("the route for \"/action\" = \"closed\" has no destinations")
        );
    }

    #[test]
    fn config_errors() {
        let err = |config: Value| RouteByField::from_config(config).unwrap_err();
        assert!(err(json!({"routes": {}})).contains("missing field `field`"));
        assert!(err(json!({"field": {"body": "/a"}})).contains("unknown variant `body`"));
        assert!(err(json!({"field": {"pointer": "action"}})).contains("not a JSON pointer"));
        assert!(err(json!({"field": {"header": ""}})).contains("empty"));
        assert!(
            err(json!({"field": {"header": "a"}, "routes": {"x": [""]}}))
                .contains("routes.x: a destination name is empty")
        );
        assert!(
            err(json!({"field": {"header": "a"}, "route": {}})).contains("unknown field `route`")
        );
    }
}
