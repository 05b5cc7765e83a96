//! # redact
//!
//! Masks or removes sensitive fields of a JSON body, chosen by JSON pointer or by key name
//! anywhere in the document, and sensitive headers.
//!
//! ## Config
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `pointers` | list of JSON pointers | fields to redact; a `*` segment matches every element of an array or every member of an object |
//! | `keys` | list of strings | object members with these names (case-insensitive) to redact, at any depth, inside nested objects and arrays |
//! | `headers` | list of header names | headers to redact (case-insensitive) |
//! | `mode` | `"mask"` (default) or `"remove"` | replace each value by `mask`, or delete it (from its object, or its array) |
//! | `mask` | string, default `"***"` | the replacement in `mask` mode (whatever the value's type) |
//! | `on_non_json` | `"error"` (default), `"forward"` or `"drop"` | what to do when there are `pointers` or `keys` but the body is not JSON: fail (the route's `on_plugin_error` applies), pass it on unredacted, or drop it |
//!
//! Pointers are RFC 6901 (`~1` is `/`, `~0` is `~`), apply first and in order; a pointer to
//! nothing changes nothing. Then `keys` apply to what is left (a matched member is redacted
//! whole, not searched further). An empty body has nothing to redact. When nothing is
//! redacted the body is forwarded byte for byte; otherwise it is re-serialized compactly,
//! members in their original order.
//!
//! ## Example
//!
//! ```json
//! {
//!   "pointers": ["/pusher/email", "/commits/*/author/email", "/commits/*/committer/email"],
//!   "keys": ["token", "password", "secret"],
//!   "headers": ["authorization"],
//!   "mode": "mask",
//!   "mask": "[redacted]"
//! }
//! ```

use serde::Deserialize;
use webhook_router_sdk::serde_json::{self, Value};
use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, verdict};

/// The configured redaction.
#[derive(Debug)]
pub struct Redact {
    pointers: Vec<Vec<Segment>>,
    keys: Vec<String>,
    headers: Vec<String>,
    mode: Mode,
    on_non_json: OnNonJson,
}

/// How a value is redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Mask(String),
    Remove,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnNonJson {
    #[default]
    Error,
    Forward,
    Drop,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    #[default]
    Mask,
    Remove,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pointers: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    mode: RawMode,
    #[serde(default = "default_mask")]
    mask: String,
    #[serde(default)]
    on_non_json: OnNonJson,
}

fn default_mask() -> String {
    "***".to_owned()
}

/// One step of a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// An object member, or (if it is a number) an array index.
    Key(String),
    /// Every member or element.
    Any,
}

fn parse_pointer(pointer: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "{pointer:?} is not a JSON pointer to a field: it must start with \"/\""
        ));
    };
    Ok(rest
        .split('/')
        .map(|s| match s {
            "*" => Segment::Any,
            s => Segment::Key(s.replace("~1", "/").replace("~0", "~")),
        })
        .collect())
}

impl Redact {
    /// Builds the redaction from its config (see the crate docs).
    pub fn from_config(config: Value) -> Result<Self, String> {
        let raw: RawConfig = webhook_router_sdk::from_config(config)?;
        let pointers = raw
            .pointers
            .iter()
            .enumerate()
            .map(|(i, p)| parse_pointer(p).map_err(|e| format!("pointers[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            pointers,
            keys: raw.keys,
            headers: raw.headers,
            mode: match raw.mode {
                RawMode::Mask => Mode::Mask(raw.mask),
                RawMode::Remove => Mode::Remove,
            },
            on_non_json: raw.on_non_json,
        })
    }

    /// Redacts `body` in place; tells whether anything changed.
    fn redact_value(&self, body: &mut Value) -> bool {
        let mut changed = false;
        for pointer in &self.pointers {
            changed |= redact_at(body, pointer, &self.mode);
        }
        if !self.keys.is_empty() {
            changed |= redact_keys(body, &self.keys, &self.mode);
        }
        changed
    }

    /// The verdict for `event`.
    pub fn redact(&self, mut event: Event) -> Result<Verdict, String> {
        for name in &self.headers {
            match &self.mode {
                Mode::Remove => {
                    event.remove_header(name);
                }
                Mode::Mask(mask) => {
                    if event.header(name).is_some() {
                        event.set_header(name, mask.clone());
                    }
                }
            }
        }
        if (self.pointers.is_empty() && self.keys.is_empty()) || event.body.is_empty() {
            return Ok(verdict::forward(event));
        }
        let mut body: Value = match serde_json::from_slice(&event.body) {
            Ok(body) => body,
            Err(e) => {
                let reason = format!("the body is not JSON, so it cannot be redacted: {e}");
                return match self.on_non_json {
                    OnNonJson::Error => Err(reason),
                    OnNonJson::Forward => Ok(verdict::forward(event)),
                    OnNonJson::Drop => Ok(verdict::drop(reason)),
                };
            }
        };
        if self.redact_value(&mut body) {
            let bytes =
                serde_json::to_vec(&body).map_err(|e| format!("cannot serialize the body: {e}"))?;
            event.set_body(bytes);
        }
        Ok(verdict::forward(event))
    }
}

/// Redacts what `pointer` designates under `value`.
fn redact_at(value: &mut Value, pointer: &[Segment], mode: &Mode) -> bool {
    let Some((first, rest)) = pointer.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return redact_child(value, first, mode);
    }
    match (value, first) {
        (Value::Object(map), Segment::Key(key)) => {
            map.get_mut(key).is_some_and(|v| redact_at(v, rest, mode))
        }
        (Value::Array(items), Segment::Key(key)) => index(key)
            .and_then(|i| items.get_mut(i))
            .is_some_and(|v| redact_at(v, rest, mode)),
        (Value::Object(map), Segment::Any) => map
            .values_mut()
            .fold(false, |c, v| redact_at(v, rest, mode) | c),
        (Value::Array(items), Segment::Any) => items
            .iter_mut()
            .fold(false, |c, v| redact_at(v, rest, mode) | c),
        _ => false,
    }
}

/// Redacts the child `segment` of `value`.
fn redact_child(value: &mut Value, segment: &Segment, mode: &Mode) -> bool {
    match (value, segment, mode) {
        (Value::Object(map), Segment::Key(key), Mode::Remove) => map.shift_remove(key).is_some(),
        (Value::Object(map), Segment::Key(key), Mode::Mask(mask)) => match map.get_mut(key) {
            Some(v) => {
                *v = Value::String(mask.clone());
                true
            }
            None => false,
        },
        (Value::Array(items), Segment::Key(key), Mode::Remove) => {
            match index(key).filter(|&i| i < items.len()) {
                Some(i) => {
                    items.remove(i);
                    true
                }
                None => false,
            }
        }
        (Value::Array(items), Segment::Key(key), Mode::Mask(mask)) => {
            match index(key).and_then(|i| items.get_mut(i)) {
                Some(v) => {
                    *v = Value::String(mask.clone());
                    true
                }
                None => false,
            }
        }
        (Value::Object(map), Segment::Any, Mode::Remove) => {
            let changed = !map.is_empty();
            map.clear();
            changed
        }
        (Value::Array(items), Segment::Any, Mode::Remove) => {
            let changed = !items.is_empty();
            items.clear();
            changed
        }
        (Value::Object(map), Segment::Any, Mode::Mask(mask)) => {
            map.values_mut()
                .for_each(|v| *v = Value::String(mask.clone()));
            !map.is_empty()
        }
        (Value::Array(items), Segment::Any, Mode::Mask(mask)) => {
            items
                .iter_mut()
                .for_each(|v| *v = Value::String(mask.clone()));
            !items.is_empty()
        }
        _ => false,
    }
}

/// An array index segment (decimal, no sign).
fn index(segment: &str) -> Option<usize> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// Redacts members named one of `keys` anywhere under `value`.
fn redact_keys(value: &mut Value, keys: &[String], mode: &Mode) -> bool {
    let matches = |name: &str| keys.iter().any(|k| k.eq_ignore_ascii_case(name));
    match value {
        Value::Object(map) => {
            let mut changed = false;
            if *mode == Mode::Remove {
                let before = map.len();
                map.retain(|name, _| !matches(name));
                changed = map.len() != before;
            }
            for (name, v) in map.iter_mut() {
                if let Mode::Mask(mask) = mode
                    && matches(name)
                {
                    *v = Value::String(mask.clone());
                    changed = true;
                } else {
                    changed |= redact_keys(v, keys, mode);
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |c, v| redact_keys(v, keys, mode) | c),
        _ => false,
    }
}

impl Plugin for Redact {
    fn configure(config: Value) -> Result<Self, String> {
        Self::from_config(config)
    }

    fn handle(&self, event: Event) -> Result<Verdict, String> {
        self.redact(event)
    }
}

export_plugin!(Redact);

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_router_sdk::serde_json::json;

    fn redact(config: Value) -> Redact {
        Redact::from_config(config).unwrap()
    }

    fn payload() -> Value {
        json!({
            "ref": "refs/heads/main",
            "pusher": {"name": "mona", "email": "mona@example.com"},
            "commits": [
                {"id": "1", "author": {"name": "A", "Email": "a@example.com"}},
                {"id": "2", "author": {"name": "B", "email": "b@example.com"}, "token": {"nested": true}}
            ],
            "meta": {"a/b": 1, "m~n": 2, "list": [10, 20, 30]}
        })
    }

    fn run(r: &Redact, body: &Value) -> Value {
        match r.redact(Event::from_body(body.to_string())).unwrap() {
            Verdict::Forward(event) => event.json().unwrap(),
            other => panic!("not forwarded: {other:?}"),
        }
    }

    #[test]
    fn mask_by_pointer() {
        let r = redact(
            json!({"pointers": ["/pusher/email", "/commits/*/author/name", "/meta/a~1b", "/meta/list/1", "/nope/x"]}),
        );
        let out = run(&r, &payload());
        assert_eq!(out["pusher"], json!({"name": "mona", "email": "***"}));
        assert_eq!(out["commits"][0]["author"]["name"], "***");
        assert_eq!(out["commits"][1]["author"]["name"], "***");
        assert_eq!(
            out["meta"],
            json!({"a/b": "***", "m~n": 2, "list": [10, "***", 30]})
        );
    }

    #[test]
    fn remove_by_pointer() {
        let r = redact(
            json!({"pointers": ["/pusher/email", "/meta/m~0n", "/meta/list/0", "/commits/*/token"], "mode": "remove"}),
        );
        let out = run(&r, &payload());
        assert_eq!(out["pusher"], json!({"name": "mona"}));
        assert_eq!(out["meta"], json!({"a/b": 1, "list": [20, 30]}));
        assert!(out["commits"][1].get("token").is_none());
        // Order of the remaining members is kept.
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["ref", "pusher", "commits", "meta"]);

        let r = redact(json!({"pointers": ["/meta/list/*", "/commits/*"], "mode": "remove"}));
        let out = run(&r, &payload());
        assert_eq!(out["commits"], json!([]));
        assert_eq!(out["meta"]["list"], json!([]));
    }

    #[test]
    fn keys_anywhere() {
        let r = redact(json!({"keys": ["email", "token"], "mask": "[x]"}));
        let out = run(&r, &payload());
        assert_eq!(out["pusher"]["email"], "[x]");
        assert_eq!(
            out["commits"][0]["author"]["Email"], "[x]",
            "case-insensitive"
        );
        assert_eq!(out["commits"][1]["author"]["email"], "[x]");
        assert_eq!(out["commits"][1]["token"], "[x]");

        let r = redact(json!({"keys": ["email", "token"], "mode": "remove"}));
        let out = run(&r, &payload());
        assert_eq!(out["pusher"], json!({"name": "mona"}));
        assert_eq!(out["commits"][0]["author"], json!({"name": "A"}));
        assert_eq!(
            out["commits"][1],
            json!({"id": "2", "author": {"name": "B"}})
        );
    }

    #[test]
    fn unchanged_bodies_are_forwarded_as_they_are() {
        let r = redact(json!({"keys": ["password"]}));
        let body = "{ \"a\" : 1 }";
        let event = Event::from_body(body);
        assert_eq!(r.redact(event.clone()).unwrap(), verdict::forward(event));
        let empty = Event::from_body("");
        assert_eq!(r.redact(empty.clone()).unwrap(), verdict::forward(empty));
    }

    #[test]
    fn headers() {
        let event = Event::from_body("x")
            .with_header("Authorization", "Bearer s3cret")
            .with_header("x-ok", "1");
        let Verdict::Forward(masked) = redact(json!({"headers": ["authorization", "x-missing"]}))
            .redact(event.clone())
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(masked.header("authorization"), Some("***"));
        assert_eq!(masked.header("x-missing"), None);
        let Verdict::Forward(removed) =
            redact(json!({"headers": ["AUTHORIZATION"], "mode": "remove"}))
                .redact(event)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(removed.headers.len(), 1);
        assert_eq!(removed.body, b"x");
    }

    #[test]
    fn non_json() {
        let event = Event::from_body("a=b");
        let err = redact(json!({"keys": ["a"]}))
            .redact(event.clone())
            .unwrap_err();
        assert!(err.starts_with("the body is not JSON"), "{err}");
        let forwarded = redact(json!({"keys": ["a"], "on_non_json": "forward"}))
            .redact(event.clone())
            .unwrap();
        assert_eq!(forwarded, verdict::forward(event.clone()));
        let dropped = redact(json!({"keys": ["a"], "on_non_json": "drop"}))
            .redact(event)
            .unwrap();
        assert!(matches!(dropped, Verdict::Drop(_)));
    }

    #[test]
    fn config_errors() {
        let err = |config: Value| Redact::from_config(config).unwrap_err();
        assert!(
            err(json!({"pointers": ["email"]}))
                .starts_with("pointers[0]: \"email\" is not a JSON pointer")
        );
        assert!(err(json!({"pointers": [""]})).contains("not a JSON pointer"));
        assert!(err(json!({"mode": "hash"})).contains("unknown variant"));
        assert!(err(json!({"key": ["a"]})).contains("unknown field"));
    }
}
