//! # json-map
//!
//! Rewrites the event: a new JSON body built from a template that quotes the incoming body,
//! headers and event fields; and headers set or removed.
//!
//! ## Config
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `template` | any JSON | the new body (omit to keep the body as it is) |
//! | `set_headers` | table: header name → template string | headers to set (after `remove_headers`) |
//! | `remove_headers` | list of header names | headers to remove (case-insensitive) |
//! | `on_missing` | `"null"` (default), `"error"` or `"drop"` | what a reference to nothing does |
//!
//! Every string in `template` (not object keys) and every `set_headers` value may contain
//! references in double braces:
//!
//! - `{{/json/pointer}}`: the value at this RFC 6901 pointer of the incoming JSON body
//!   (`{{}}`: the whole body);
//! - `{{header:name}}`: the first header of that name (case-insensitive), as a string;
//! - `{{event:id}}`, `{{event:route}}`, `{{event:method}}`, `{{event:path}}`,
//!   `{{event:query}}` (strings) and `{{event:received_at_ms}}` (a number).
//!
//! A string that is exactly one reference (`"{{/pull_request/number}}"`) becomes the
//! referenced value with its JSON type: a number stays a number, an object an object. A
//! reference inside longer text is stringified: strings as they are, numbers and booleans as
//! JSON text, `null` as nothing, arrays and objects as compact JSON. Spaces inside the braces
//! are ignored; `\{{` is a literal `{{`; any other `{{…}}` is a config error. The template is
//! applied recursively through objects and arrays; the new body is serialized with the
//! template's key order, with `content-type: application/json`.
//!
//! A reference to nothing (no such pointer, no such header, or a body that is not JSON) is
//! `null` (embedded: empty text) with `on_missing = "null"`; a plugin failure with
//! `"error"`; and drops the event with `"drop"`.
//!
//! ## Example
//!
//! ```json
//! {
//!   "template": {
//!     "repo": "{{/repository/full_name}}",
//!     "number": "{{/pull_request/number}}",
//!     "summary": "PR #{{/pull_request/number}} {{/action}} by {{/sender/login}}",
//!     "labels": "{{/pull_request/labels}}",
//!     "kind": "{{header:x-github-event}}",
//!     "id": "{{event:id}}"
//!   },
//!   "set_headers": { "x-repo": "{{/repository/full_name}}" },
//!   "remove_headers": ["x-hub-signature", "x-hub-signature-256"],
//!   "on_missing": "null"
//! }
//! ```

use std::fmt;

use serde::Deserialize;
use webhook_router_sdk::serde_json::{Map, Value};
use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, verdict};

/// The configured mapping.
#[derive(Debug)]
pub struct JsonMap {
    template: Option<Node>,
    set_headers: Vec<(String, Text)>,
    remove_headers: Vec<String>,
    on_missing: OnMissing,
    /// Whether a reference reads the body (else it is not parsed).
    reads_body: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnMissing {
    #[default]
    Null,
    Error,
    Drop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, deserialize_with = "present")]
    template: Option<Value>,
    #[serde(default)]
    set_headers: Map<String, Value>,
    #[serde(default)]
    remove_headers: Vec<String>,
    #[serde(default)]
    on_missing: OnMissing,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// A compiled template value.
#[derive(Debug)]
enum Node {
    /// No references inside: used as it is.
    Literal(Value),
    /// A string that is exactly one reference: the referenced value, typed.
    Whole(Ref),
    /// A string with references inside text: stringified.
    Text(Text),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// A string of literal parts and references.
#[derive(Debug, Default)]
struct Text(Vec<Part>);

#[derive(Debug)]
enum Part {
    Literal(String),
    Ref(Ref),
}

/// Something a template refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ref {
    Pointer(String),
    Header(String),
    Id,
    Route,
    Method,
    Path,
    Query,
    ReceivedAtMs,
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Pointer(pointer) => write!(f, "{{{{{pointer}}}}}"),
            Ref::Header(name) => write!(f, "{{{{header:{name}}}}}"),
            Ref::Id => f.write_str("{{event:id}}"),
            Ref::Route => f.write_str("{{event:route}}"),
            Ref::Method => f.write_str("{{event:method}}"),
            Ref::Path => f.write_str("{{event:path}}"),
            Ref::Query => f.write_str("{{event:query}}"),
            Ref::ReceivedAtMs => f.write_str("{{event:received_at_ms}}"),
        }
    }
}

impl Ref {
    fn parse(text: &str) -> Result<Ref, String> {
        let text = text.trim();
        if text.is_empty() || text.starts_with('/') {
            return Ok(Ref::Pointer(text.to_owned()));
        }
        if let Some(name) = text.strip_prefix("header:") {
            let name = name.trim();
            if name.is_empty() {
                return Err("{{header:}} needs a header name".into());
            }
            return Ok(Ref::Header(name.to_ascii_lowercase()));
        }
        match text {
            "event:id" => Ok(Ref::Id),
            "event:route" => Ok(Ref::Route),
            "event:method" => Ok(Ref::Method),
            "event:path" => Ok(Ref::Path),
            "event:query" => Ok(Ref::Query),
            "event:received_at_ms" => Ok(Ref::ReceivedAtMs),
            other => Err(format!(
                "unknown reference {{{{{other}}}}}: use {{{{/json/pointer}}}}, {{{{header:name}}}} or \
                 {{{{event:id|route|method|path|query|received_at_ms}}}} (write \\{{{{ for a literal {{{{)"
            )),
        }
    }
}

impl Text {
    /// Splits `s` into literal text and references.
    fn parse(s: &str) -> Result<Text, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if rest[..start].ends_with('\\') {
                literal.push_str(&rest[..start - 1]);
                literal.push_str("{{");
                rest = &rest[start + 2..];
                continue;
            }
            let Some(len) = rest[start + 2..].find("}}") else {
                break;
            };
            literal.push_str(&rest[..start]);
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Ref(Ref::parse(&rest[start + 2..start + 2 + len])?));
            rest = &rest[start + 2 + len + 2..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Text(parts))
    }

    fn has_refs(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Part::Ref(_)))
    }

    fn render(&self, source: &Source<'_>) -> Result<String, Missing> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Ref(r) => match source.get(r)? {
                    Value::String(s) => out.push_str(&s),
                    Value::Null => {}
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(out)
    }
}

impl Node {
    fn compile(value: Value) -> Result<Node, String> {
        Ok(match value {
            Value::String(s) => {
                let text = Text::parse(&s)?;
                if !text.has_refs() {
                    // Escapes resolved.
                    Node::Literal(Value::String(text.render_literal()))
                } else if let [Part::Ref(r)] = text.0.as_slice() {
                    Node::Whole(r.clone())
                } else {
                    Node::Text(text)
                }
            }
            Value::Array(items) => {
                let nodes = items
                    .into_iter()
                    .map(Node::compile)
                    .collect::<Result<Vec<_>, _>>()?;
                if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                    Node::Literal(Value::Array(
                        nodes.into_iter().map(Node::into_literal).collect(),
                    ))
                } else {
                    Node::Array(nodes)
                }
            }
            Value::Object(map) => {
                let mut entries = Vec::with_capacity(map.len());
                for (key, value) in map {
                    let node = Node::compile(value).map_err(|e| format!("{key}: {e}"))?;
                    entries.push((key, node));
                }
                if entries.iter().all(|(_, n)| matches!(n, Node::Literal(_))) {
                    Node::Literal(Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, n)| (k, n.into_literal()))
                            .collect(),
                    ))
                } else {
                    Node::Object(entries)
                }
            }
            other => Node::Literal(other),
        })
    }

    fn into_literal(self) -> Value {
        match self {
            Node::Literal(value) => value,
            _ => Value::Null,
        }
    }

    fn render(&self, source: &Source<'_>) -> Result<Value, Missing> {
        Ok(match self {
            Node::Literal(value) => value.clone(),
            Node::Whole(r) => source.get(r)?,
            Node::Text(text) => Value::String(text.render(source)?),
            Node::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|n| n.render(source))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, n)| Ok((k.clone(), n.render(source)?)))
                    .collect::<Result<_, Missing>>()?,
            ),
        })
    }
}

impl Text {
    /// The text of a reference-free `Text` (escapes resolved).
    fn render_literal(&self) -> String {
        self.0
            .iter()
            .filter_map(|p| match p {
                Part::Literal(text) => Some(text.as_str()),
                Part::Ref(_) => None,
            })
            .collect()
    }
}

/// A reference that found nothing (with `on_missing` other than `null`).
#[derive(Debug)]
struct Missing(Ref);

/// What references read: the incoming event and its parsed body.
struct Source<'a> {
    event: &'a Event,
    body: Option<Value>,
    on_missing: OnMissing,
}

impl Source<'_> {
    fn get(&self, r: &Ref) -> Result<Value, Missing> {
        let found = match r {
            Ref::Pointer(pointer) => self.body.as_ref().and_then(|b| b.pointer(pointer)).cloned(),
            Ref::Header(name) => self.event.header(name).map(|v| Value::String(v.to_owned())),
            Ref::Id => Some(self.event.id.clone().into()),
            Ref::Route => Some(self.event.route.clone().into()),
            Ref::Method => Some(self.event.method.clone().into()),
            Ref::Path => Some(self.event.path.clone().into()),
            Ref::Query => Some(self.event.query.clone().into()),
            Ref::ReceivedAtMs => Some(self.event.received_at_ms.into()),
        };
        match found {
            Some(value) => Ok(value),
            None if self.on_missing == OnMissing::Null => Ok(Value::Null),
            None => Err(Missing(r.clone())),
        }
    }
}

impl JsonMap {
    /// Builds the mapping from its config (see the crate docs).
    pub fn from_config(config: Value) -> Result<Self, String> {
        let raw: RawConfig = webhook_router_sdk::from_config(config)?;
        let template = raw
            .template
            .map(Node::compile)
            .transpose()
            .map_err(|e| format!("template: {e}"))?;
        let mut set_headers = Vec::new();
        for (name, value) in raw.set_headers {
            let Value::String(value) = value else {
                return Err(format!("set_headers.{name}: must be a string"));
            };
            let text = Text::parse(&value).map_err(|e| format!("set_headers.{name}: {e}"))?;
            set_headers.push((name.to_ascii_lowercase(), text));
        }
        let mut map = Self {
            template,
            set_headers,
            remove_headers: raw.remove_headers,
            on_missing: raw.on_missing,
            reads_body: false,
        };
        map.reads_body = map.needs_body();
        Ok(map)
    }

    fn needs_body(&self) -> bool {
        fn node(n: &Node) -> bool {
            match n {
                Node::Literal(_) => false,
                Node::Whole(r) => matches!(r, Ref::Pointer(_)),
                Node::Text(t) => text(t),
                Node::Array(items) => items.iter().any(node),
                Node::Object(entries) => entries.iter().any(|(_, n)| node(n)),
            }
        }
        fn text(t: &Text) -> bool {
            t.0.iter().any(|p| matches!(p, Part::Ref(Ref::Pointer(_))))
        }
        self.template.as_ref().is_some_and(node) || self.set_headers.iter().any(|(_, t)| text(t))
    }

    /// Applies the mapping to `event`.
    pub fn apply(&self, event: Event) -> Result<Verdict, String> {
        let body = if self.reads_body {
            event.json().ok()
        } else {
            None
        };
        let source = Source {
            event: &event,
            body,
            on_missing: self.on_missing,
        };
        let rendered = self
            .template
            .as_ref()
            .map(|t| t.render(&source))
            .transpose()
            .and_then(|body| {
                let headers = self
                    .set_headers
                    .iter()
                    .map(|(name, text)| Ok((name.clone(), text.render(&source)?)))
                    .collect::<Result<Vec<_>, Missing>>()?;
                Ok((body, headers))
            });
        let (body, headers) = match rendered {
            Ok(rendered) => rendered,
            Err(Missing(r)) => {
                let reason = if source.body.is_none() && matches!(r, Ref::Pointer(_)) {
                    format!("{r} has no value: the body is not JSON")
                } else {
                    format!("{r} has no value")
                };
                return match self.on_missing {
                    OnMissing::Drop => Ok(verdict::drop(reason)),
                    _ => Err(reason),
                };
            }
        };
        let mut event = event;
        for name in &self.remove_headers {
            event.remove_header(name);
        }
        for (name, value) in headers {
            event.set_header(name, value);
        }
        if let Some(body) = body {
            event = event.with_json_body(&body)?;
        }
        Ok(verdict::forward(event))
    }
}

impl Plugin for JsonMap {
    fn configure(config: Value) -> Result<Self, String> {
        Self::from_config(config)
    }

    fn handle(&self, event: Event) -> Result<Verdict, String> {
        self.apply(event)
    }
}

export_plugin!(JsonMap);

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_router_sdk::serde_json::json;

    fn map(config: Value) -> JsonMap {
        JsonMap::from_config(config).unwrap()
    }

    fn pull_request() -> Event {
        let body = json!({
            "action": "opened",
            "number": 7,
            "pull_request": {"title": "Fix it", "draft": false, "labels": [{"name": "bug"}], "merged_at": null},
            "repository": {"full_name": "acme/widgets"}
        });
        let mut event = Event::from_body(body.to_string())
            .with_header("X-GitHub-Event", "pull_request")
            .with_header("X-Hub-Signature-256", "sha256=abc");
        event.id = "evt-1".into();
        event.route = "github".into();
        event.received_at_ms = 1_700_000_000_000;
        event
    }

    fn forwarded(verdict: Verdict) -> Event {
        match verdict {
            Verdict::Forward(event) => event,
            other => panic!("not forwarded: {other:?}"),
        }
    }

    #[test]
    fn whole_references_keep_types() {
        let m = map(json!({"template": {
            "repo": "{{/repository/full_name}}",
            "number": "{{ /number }}",
            "draft": "{{/pull_request/draft}}",
            "labels": "{{/pull_request/labels}}",
            "merged": "{{/pull_request/merged_at}}",
            "missing": "{{/nope}}",
            "kind": "{{header:X-GitHub-Event}}",
            "id": "{{event:id}}",
            "at": "{{event:received_at_ms}}",
            "fixed": [1, "two", {"three": 3}],
            "nested": [{"n": "{{/number}}"}]
        }}));
        let event = forwarded(m.apply(pull_request()).unwrap());
        assert_eq!(
            event.json::<Value>().unwrap(),
            json!({
                "repo": "acme/widgets", "number": 7, "draft": false,
                "labels": [{"name": "bug"}], "merged": null, "missing": null,
                "kind": "pull_request", "id": "evt-1", "at": 1_700_000_000_000u64,
                "fixed": [1, "two", {"three": 3}], "nested": [{"n": 7}]
            })
        );
        // Template key order is kept.
        assert!(
            event
                .body_str()
                .unwrap()
                .starts_with(r#"{"repo":"acme/widgets","number":7,"#)
        );
        assert_eq!(event.header("content-type"), Some("application/json"));
    }

    #[test]
    fn embedded_references_are_text() {
        let m = map(json!({"template": {
            "text": "PR #{{/number}} {{/action}}: {{/pull_request/title}} ({{/pull_request/draft}}){{/pull_request/merged_at}}{{/nope}}",
            "labels": "labels={{/pull_request/labels}}",
            "literal": "a \\{{/number}} b {{ unclosed",
            "whole": "{{}}"
        }}));
        let body: Value = forwarded(m.apply(pull_request()).unwrap()).json().unwrap();
        assert_eq!(body["text"], "PR #7 opened: Fix it (false)");
        assert_eq!(body["labels"], r#"labels=[{"name":"bug"}]"#);
        assert_eq!(body["literal"], "a {{/number}} b {{ unclosed");
        assert_eq!(body["whole"]["number"], 7);
    }

    #[test]
    fn headers() {
        let m = map(json!({
            "set_headers": {"X-Repo": "{{/repository/full_name}}", "x-static": "1"},
            "remove_headers": ["x-hub-signature-256", "X-GitHub-Event"]
        }));
        let original = pull_request();
        let event = forwarded(m.apply(original.clone()).unwrap());
        assert_eq!(event.body, original.body, "no template: body unchanged");
        let headers: Vec<_> = event
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(headers, [("x-repo", "acme/widgets"), ("x-static", "1")]);
    }

    #[test]
    fn on_missing() {
        let template = json!({"a": "{{/nope}}"});
        let err = map(json!({"template": template, "on_missing": "error"}))
            .apply(pull_request())
            .unwrap_err();
        assert_eq!(err, "{{/nope}} has no value");
        let dropped = map(json!({"template": template, "on_missing": "drop"}))
            .apply(pull_request())
            .unwrap();
        assert_eq!(dropped, verdict::drop("{{/nope}} has no value"));
        let err = map(json!({"template": {"a": "x{{/a}}"}, "on_missing": "error"}))
            .apply(Event::from_body("not json"))
            .unwrap_err();
        assert_eq!(err, "{{/a}} has no value: the body is not JSON");
        let err = map(json!({"set_headers": {"x": "{{header:nope}}"}, "on_missing": "error"}))
            .apply(pull_request())
            .unwrap_err();
        assert_eq!(err, "{{header:nope}} has no value");
    }

    #[test]
    fn literal_templates_need_no_body() {
        let m = map(json!({"template": {"fixed": true}}));
        let event = forwarded(m.apply(Event::from_body("not json")).unwrap());
        assert_eq!(event.body_str(), Some(r#"{"fixed":true}"#));
    }

    #[test]
    fn config_errors() {
        let err = |config: Value| JsonMap::from_config(config).unwrap_err();
        assert!(
            err(json!({"template": {"a": ["{{nope}}"]}}))
                .starts_with("template: a: unknown reference {{nope}}")
        );
        assert!(err(json!({"set_headers": {"x": 1}})).contains("must be a string"));
        assert!(err(json!({"set_headers": {"x": "{{header:}}"}})).contains("needs a header name"));
        assert!(err(json!({"templat": {}})).contains("unknown field"));
        assert!(err(json!({"on_missing": "ignore"})).contains("unknown variant"));
    }
}
