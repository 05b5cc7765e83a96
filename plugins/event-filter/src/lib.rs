//! # event-filter
//!
//! Lets through only the events that match conditions on their headers and JSON body; the
//! others are dropped (the sender still gets `202`) or rejected with a 4xx.
//!
//! ## Config
//!
//! Every key is optional; unknown keys are an error.
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `match` | `"all"` (default) or `"any"` | whether every condition, or at least one, must hold |
//! | `allow_events` | list of strings | condition: the `x-github-event` header is one of these (GitHub shorthand) |
//! | `headers` | table: header name → string or list of strings | one condition per header: present with one of the values (an empty list: present with any value); names are case-insensitive, values exact |
//! | `json` | list of JSON conditions (below) | one condition each, on the body |
//! | `deny_events` | list of strings | the event is refused if `x-github-event` is one of these, whatever `match` says |
//! | `deny_headers` | like `headers` | the event is refused if one of these header conditions holds |
//! | `on_mismatch` | `"drop"` (default) or `"reject"` | what to do with a refused event |
//! | `reject_status` | integer 400–599, default `422` | the status of a rejection |
//! | `reject_message` | string | the message of a rejection (default: the reason) |
//!
//! A JSON condition is a table with a `pointer` (an RFC 6901 JSON pointer such as `/ref` or
//! `/pull_request/base/ref`; `""` is the whole body) and exactly one test:
//!
//! - `equals = <any JSON value>`: the value there equals it (numbers compare as written: `1`
//!   is not `1.0`);
//! - `in = [<values>]`: the value there is one of these;
//! - `exists = true | false`: there is a value there (`null` counts as none);
//! - `prefix = "<text>"`: the value there is a string (or a number or boolean, as JSON text)
//!   that starts with the text;
//! - `regex = "<pattern>"`: the value there (as for `prefix`) contains a match of the
//!   pattern (Rust `regex` syntax; anchor with `^…$` for a whole match).
//!
//! Add `not = true` to invert a condition. A body that is not JSON has no value anywhere. No
//! conditions at all: everything passes (except what `deny_*` refuses).
//!
//! ## Example
//!
//! ```toml
//! [[routes.plugins]]
//! module = "target/wasm/wasm32-wasip2/release/event_filter.wasm"
//! config = { allow_events = ["push"], json = [{ pointer = "/ref", equals = "refs/heads/main" }] }
//! ```
//!
//! As JSON, with more of the schema:
//!
//! ```json
//! {
//!   "match": "all",
//!   "allow_events": ["pull_request"],
//!   "headers": { "user-agent": [] },
//!   "json": [
//!     { "pointer": "/action", "in": ["opened", "synchronize"] },
//!     { "pointer": "/pull_request/draft", "equals": true, "not": true },
//!     { "pointer": "/pull_request/base/ref", "regex": "^(main|release/.+)$" }
//!   ],
//!   "deny_events": ["ping"],
//!   "on_mismatch": "reject",
//!   "reject_status": 422
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use regex_lite::Regex;
use serde::Deserialize;
use webhook_router_sdk::serde_json::Value;
use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, verdict};

/// The header that `allow_events` and `deny_events` read.
const GITHUB_EVENT_HEADER: &str = "x-github-event";

/// The configured filter.
#[derive(Debug)]
pub struct EventFilter {
    any: bool,
    conditions: Vec<Condition>,
    denials: Vec<Condition>,
    on_mismatch: OnMismatch,
}

/// What to do with an event that does not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OnMismatch {
    Drop,
    Reject {
        status: u16,
        message: Option<String>,
    },
}

/// One condition on an event.
#[derive(Debug)]
enum Condition {
    /// The header is present with one of `values` (any value if empty).
    Header { name: String, values: Vec<String> },
    /// A test on the value at `pointer` of the JSON body.
    Json {
        pointer: String,
        test: Test,
        negate: bool,
    },
}

/// A test on one JSON value (`None`: nothing there).
#[derive(Debug)]
enum Test {
    Equals(Value),
    In(Vec<Value>),
    Exists(bool),
    Prefix(String),
    Regex(Regex),
}

/// The config as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, rename = "match")]
    mode: MatchMode,
    #[serde(default)]
    allow_events: Option<Vec<String>>,
    #[serde(default)]
    headers: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    json: Vec<RawJsonCondition>,
    #[serde(default)]
    deny_events: Vec<String>,
    #[serde(default)]
    deny_headers: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    on_mismatch: RawOnMismatch,
    #[serde(default = "default_reject_status")]
    reject_status: u16,
    #[serde(default)]
    reject_message: Option<String>,
}

fn default_reject_status() -> u16 {
    422
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum MatchMode {
    #[default]
    All,
    Any,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawOnMismatch {
    #[default]
    Drop,
    Reject,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJsonCondition {
    pointer: String,
    // `deserialize_with` so that `equals = null` is `Some(Null)`, not `None`.
    #[serde(default, deserialize_with = "present")]
    equals: Option<Value>,
    #[serde(default, rename = "in")]
    one_of: Option<Vec<Value>>,
    #[serde(default)]
    exists: Option<bool>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    not: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl EventFilter {
    /// Builds the filter from its config (see the crate docs).
    pub fn from_config(config: Value) -> Result<Self, String> {
        let raw: RawConfig = webhook_router_sdk::from_config(config)?;
        let mut conditions = Vec::new();
        if let Some(events) = raw.allow_events {
            if events.is_empty() {
                return Err("allow_events is empty: no event could pass".into());
            }
            conditions.push(Condition::Header {
                name: GITHUB_EVENT_HEADER.into(),
                values: events,
            });
        }
        for (name, values) in raw.headers {
            conditions.push(Condition::Header {
                name: name.to_ascii_lowercase(),
                values: values.into_vec(),
            });
        }
        for (index, raw) in raw.json.into_iter().enumerate() {
            conditions.push(json_condition(raw).map_err(|e| format!("json[{index}]: {e}"))?);
        }
        let mut denials = Vec::new();
        if !raw.deny_events.is_empty() {
            denials.push(Condition::Header {
                name: GITHUB_EVENT_HEADER.into(),
                values: raw.deny_events,
            });
        }
        for (name, values) in raw.deny_headers {
            denials.push(Condition::Header {
                name: name.to_ascii_lowercase(),
                values: values.into_vec(),
            });
        }
        let on_mismatch = match raw.on_mismatch {
            RawOnMismatch::Drop => OnMismatch::Drop,
            RawOnMismatch::Reject => {
                if !(400..=599).contains(&raw.reject_status) {
                    return Err(format!(
                        "reject_status {} is not a 4xx or 5xx status",
                        raw.reject_status
                    ));
                }
                OnMismatch::Reject {
                    status: raw.reject_status,
                    message: raw.reject_message,
                }
            }
        };
        Ok(Self {
            any: raw.mode == MatchMode::Any,
            conditions,
            denials,
            on_mismatch,
        })
    }

    /// `Ok(())` if `event` passes, or why it does not.
    pub fn check(&self, event: &Event) -> Result<(), String> {
        let needs_body = self
            .conditions
            .iter()
            .chain(&self.denials)
            .any(|c| matches!(c, Condition::Json { .. }));
        let body: Option<Value> = if needs_body { event.json().ok() } else { None };
        let body = body.as_ref();

        if let Some(denial) = self.denials.iter().find(|c| c.holds(event, body)) {
            return Err(format!("denied: {denial} ({})", denial.actual(event, body)));
        }
        if self.conditions.is_empty() {
            return Ok(());
        }
        if self.any {
            if self.conditions.iter().any(|c| c.holds(event, body)) {
                return Ok(());
            }
            let mut reason = String::from("no condition holds:");
            for (i, condition) in self.conditions.iter().enumerate() {
                let sep = if i == 0 { " " } else { "; " };
                let _ = write!(
                    reason,
                    "{sep}{condition} ({})",
                    condition.actual(event, body)
                );
            }
            return Err(reason);
        }
        match self.conditions.iter().find(|c| !c.holds(event, body)) {
            Some(failed) => Err(format!(
                "{failed} does not hold ({})",
                failed.actual(event, body)
            )),
            None => Ok(()),
        }
    }

    /// The verdict for `event`.
    pub fn decide(&self, event: &Event) -> Verdict {
        match self.check(event) {
            Ok(()) => verdict::pass(),
            Err(reason) => match &self.on_mismatch {
                OnMismatch::Drop => verdict::drop(reason),
                OnMismatch::Reject { status, message } => {
                    verdict::reject(*status, message.clone().unwrap_or(reason))
                }
            },
        }
    }
}

fn json_condition(raw: RawJsonCondition) -> Result<Condition, String> {
    if !(raw.pointer.is_empty() || raw.pointer.starts_with('/')) {
        return Err(format!(
            "pointer {:?} is not a JSON pointer: it must start with \"/\" (or be \"\" for the whole body)",
            raw.pointer
        ));
    }
    let mut tests = Vec::new();
    if let Some(value) = raw.equals {
        tests.push(Test::Equals(value));
    }
    if let Some(values) = raw.one_of {
        tests.push(Test::In(values));
    }
    if let Some(exists) = raw.exists {
        tests.push(Test::Exists(exists));
    }
    if let Some(prefix) = raw.prefix {
        tests.push(Test::Prefix(prefix));
    }
    if let Some(pattern) = raw.regex {
        let regex =
            Regex::new(&pattern).map_err(|e| format!("regex {pattern:?} is not valid: {e}"))?;
        tests.push(Test::Regex(regex));
    }
    if tests.len() != 1 {
        return Err(format!(
            "needs exactly one of \"equals\", \"in\", \"exists\", \"prefix\", \"regex\" (found {})",
            tests.len()
        ));
    }
    let test = tests.remove(0);
    Ok(Condition::Json {
        pointer: raw.pointer,
        test,
        negate: raw.not,
    })
}

impl Condition {
    fn holds(&self, event: &Event, body: Option<&Value>) -> bool {
        match self {
            Condition::Header { name, values } => {
                let mut found = event.header_values(name).peekable();
                if values.is_empty() {
                    found.peek().is_some()
                } else {
                    found.any(|v| values.iter().any(|want| want == v))
                }
            }
            Condition::Json {
                pointer,
                test,
                negate,
            } => {
                let value = body
                    .and_then(|b| b.pointer(pointer))
                    .filter(|v| !v.is_null());
                test.holds(value) != *negate
            }
        }
    }

    /// What the event has where this condition looks, for reasons.
    fn actual(&self, event: &Event, body: Option<&Value>) -> String {
        match self {
            Condition::Header { name, .. } => {
                let values: Vec<&str> = event.header_values(name).collect();
                match values.as_slice() {
                    [] => format!("no {name} header"),
                    [one] => format!("{name} is {one:?}"),
                    many => format!("{name} is {many:?}"),
                }
            }
            Condition::Json { pointer, .. } => match body {
                None => "the body is not JSON".to_owned(),
                Some(body) => match body.pointer(pointer).filter(|v| !v.is_null()) {
                    None => format!("nothing at {pointer:?}"),
                    Some(value) => format!("{pointer:?} is {}", short_json(value)),
                },
            },
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Header { name, values } if values.is_empty() => {
                write!(f, "header {name} present")
            }
            Condition::Header { name, values } => write!(f, "header {name} in {values:?}"),
            Condition::Json {
                pointer,
                test,
                negate,
            } => {
                if *negate {
                    f.write_str("not ")?;
                }
                match test {
                    Test::Equals(value) => write!(f, "{pointer:?} equals {}", short_json(value)),
                    Test::In(values) => write!(
                        f,
                        "{pointer:?} in {}",
                        short_json(&Value::Array(values.clone()))
                    ),
                    Test::Exists(true) => write!(f, "{pointer:?} exists"),
                    Test::Exists(false) => write!(f, "{pointer:?} absent"),
                    Test::Prefix(prefix) => write!(f, "{pointer:?} starts with {prefix:?}"),
                    Test::Regex(regex) => write!(f, "{pointer:?} matches {:?}", regex.as_str()),
                }
            }
        }
    }
}

impl Test {
    fn holds(&self, value: Option<&Value>) -> bool {
        match self {
            Test::Equals(want) => value == Some(want),
            Test::In(wants) => value.is_some_and(|v| wants.contains(v)),
            Test::Exists(want) => value.is_some() == *want,
            Test::Prefix(prefix) => value
                .and_then(scalar_text)
                .is_some_and(|t| t.starts_with(prefix.as_str())),
            Test::Regex(regex) => value
                .and_then(scalar_text)
                .is_some_and(|t| regex.is_match(&t)),
        }
    }
}

/// A string as itself; a number or boolean as its JSON text; nothing for the rest.
fn scalar_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(b.to_string().into()),
        _ => None,
    }
}

/// Compact JSON, cut to a readable length.
fn short_json(value: &Value) -> String {
    const MAX: usize = 80;
    let mut text = value.to_string();
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

impl Plugin for EventFilter {
    fn configure(config: Value) -> Result<Self, String> {
        Self::from_config(config)
    }

    fn handle(&self, event: Event) -> Result<Verdict, String> {
        Ok(self.decide(&event))
    }
}

export_plugin!(EventFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_router_sdk::serde_json::json;

    fn filter(config: Value) -> EventFilter {
        EventFilter::from_config(config).unwrap()
    }

    fn push(git_ref: &str) -> Event {
        Event::from_body(json!({"ref": git_ref, "size": 2, "draft": null}).to_string())
            .with_header("X-GitHub-Event", "push")
    }

    #[test]
    fn design_example() {
        let f = filter(json!({
            "allow_events": ["push"],
            "json": [{"pointer": "/ref", "equals": "refs/heads/main"}]
        }));
        assert_eq!(f.decide(&push("refs/heads/main")), verdict::pass());
        let Verdict::Drop(reason) = f.decide(&push("refs/heads/dev")) else {
            panic!("not dropped")
        };
        assert_eq!(
            reason,
            r#""/ref" equals "refs/heads/main" does not hold ("/ref" is "refs/heads/dev")"#
        );
        let issues = push("refs/heads/main").with_header("x-github-event", "issues");
        let Verdict::Drop(reason) = f.decide(&issues) else {
            panic!("not dropped")
        };
        assert_eq!(
            reason,
            r#"header x-github-event in ["push"] does not hold (x-github-event is "issues")"#
        );
        let Verdict::Drop(reason) = f.decide(&Event::from_body("{}")) else {
            panic!("not dropped")
        };
        assert!(reason.contains("no x-github-event header"), "{reason}");
    }

    #[test]
    fn json_tests() {
        let event = push("refs/tags/v1.2.0");
        let holds = |condition: Value| filter(json!({ "json": [condition] })).check(&event).is_ok();
        assert!(holds(json!({"pointer": "/ref", "prefix": "refs/tags/"})));
        assert!(!holds(json!({"pointer": "/ref", "prefix": "refs/heads/"})));
        assert!(holds(
            json!({"pointer": "/ref", "regex": r"^refs/tags/v\d+\.\d+\.\d+$"})
        ));
        assert!(!holds(json!({"pointer": "/ref", "regex": "^v"})));
        assert!(holds(json!({"pointer": "/size", "in": [1, 2, 3]})));
        assert!(holds(json!({"pointer": "/size", "regex": "^2$"})));
        assert!(!holds(json!({"pointer": "/size", "equals": "2"})));
        assert!(holds(json!({"pointer": "/size", "exists": true})));
        assert!(holds(json!({"pointer": "/draft", "exists": false})));
        assert!(holds(json!({"pointer": "/nope", "exists": false})));
        assert!(holds(
            json!({"pointer": "/nope", "equals": "x", "not": true})
        ));
        assert!(!holds(
            json!({"pointer": "/ref", "prefix": "refs/", "not": true})
        ));
        assert!(holds(json!({"pointer": "", "exists": true})));
        assert!(holds(
            json!({"pointer": "/draft", "equals": null, "not": true})
        ));
    }

    #[test]
    fn non_json_body_has_no_values() {
        let f = filter(json!({"json": [{"pointer": "/a", "exists": false}]}));
        assert!(f.check(&Event::from_body("not json")).is_ok());
        let f = filter(json!({"json": [{"pointer": "/a", "exists": true}]}));
        let reason = f.check(&Event::from_body("not json")).unwrap_err();
        assert!(reason.contains("the body is not JSON"), "{reason}");
    }

    #[test]
    fn headers_any_and_deny() {
        let f = filter(json!({
            "match": "any",
            "headers": {"X-Source": ["a", "b"], "x-flag": []},
            "deny_events": ["ping"],
            "deny_headers": {"x-debug": "1"}
        }));
        let base = Event::from_body("{}");
        assert!(f.check(&base.clone().with_header("x-source", "b")).is_ok());
        assert!(f.check(&base.clone().with_header("x-flag", "")).is_ok());
        let reason = f
            .check(&base.clone().with_header("x-source", "c"))
            .unwrap_err();
        assert_eq!(
            reason,
            r#"no condition holds: header x-source in ["a", "b"] (x-source is "c"); header x-flag present (no x-flag header)"#
        );
        let ping = base
            .clone()
            .with_header("x-source", "a")
            .with_header("x-github-event", "ping");
        assert!(
            f.check(&ping)
                .unwrap_err()
                .starts_with("denied: header x-github-event in [\"ping\"]")
        );
        let debug = base
            .with_header("x-source", "a")
            .with_header("x-debug", "1");
        assert!(
            f.check(&debug)
                .unwrap_err()
                .starts_with("denied: header x-debug")
        );
    }

    #[test]
    fn no_conditions_pass_everything() {
        assert!(filter(json!({})).check(&Event::from_body("")).is_ok());
        assert!(
            filter(json!({"match": "any"}))
                .check(&Event::from_body(""))
                .is_ok()
        );
    }

    #[test]
    fn reject_on_mismatch() {
        let f = filter(json!({"allow_events": ["push"], "on_mismatch": "reject"}));
        let Verdict::Reject(rejection) = f.decide(&Event::from_body("")) else {
            panic!("not rejected")
        };
        assert_eq!(rejection.status, 422);
        assert!(rejection.message.contains("x-github-event"));
        let f = filter(json!({
            "allow_events": ["push"], "on_mismatch": "reject",
            "reject_status": 403, "reject_message": "only pushes"
        }));
        assert_eq!(
            f.decide(&Event::from_body("")),
            verdict::reject(403, "only pushes")
        );
    }

    #[test]
    fn config_errors() {
        let err = |config: Value| EventFilter::from_config(config).unwrap_err();
        assert!(err(json!({"allow_event": ["push"]})).contains("unknown field `allow_event`"));
        assert_eq!(
            err(json!({"json": [{"pointer": "/a"}]})),
            r#"json[0]: needs exactly one of "equals", "in", "exists", "prefix", "regex" (found 0)"#
        );
        assert!(
            err(json!({"json": [{"pointer": "/a", "equals": 1, "prefix": "x"}]}))
                .contains("found 2")
        );
        assert!(
            err(json!({"json": [{"pointer": "a", "exists": true}]})).contains("not a JSON pointer")
        );
        assert!(
            err(json!({"json": [{"pointer": "/a", "regex": "("}]}))
                .starts_with("json[0]: regex \"(\" is not valid")
        );
        assert!(
            err(json!({"on_mismatch": "reject", "reject_status": 200}))
                .contains("not a 4xx or 5xx")
        );
        assert!(err(json!({"allow_events": []})).contains("empty"));
        assert!(err(json!({"match": "some"})).contains("unknown variant"));
    }
}
