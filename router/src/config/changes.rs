//! What changed between two versions of a config file, for a reload: the keys that cannot
//! change while the router runs (each named, to be refused with "restart needed"), the routes
//! added, removed and changed, by id, and the destinations changed.
//!
//! Both compare the files as written (TOML values, so layout and comments do not count): a key
//! written out with its default value where it was left out before is a change.

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::{Spanned, Table, Value};

use super::error::ErrorSink;
use super::{ConfigError, ConfigErrors};

/// Tables whose every key is fixed for the life of the process: listeners and limits, the
/// queue backend and journal, and the trace exporter (installed with the logging, at start).
const FIXED_TABLES: &[&str] = &["server", "queue", "telemetry"];
/// The keys of a destination that a reload applies (from the switch on: to the attempts that
/// start after it, its lane's workers, its cap, its circuit). Destinations may be added and
/// removed too.
pub const LIVE_DESTINATION_KEYS: &[&str] = &[
    "url",
    "timeout",
    "headers",
    "sign",
    "max_in_flight",
    "max_held",
    "retry",
    "circuit",
    "rate",
    "ca",
    "client_cert",
    "client_key",
    "http2",
];
/// Keys of `[server]` a reload applies: the files a listener's certificate is read from. A
/// listener cannot take up or drop TLS while it runs: adding or removing one is fixed.
const LIVE_SERVER_KEYS: &[&str] = &["tls", "admin_tls"];
/// Keys of `[plugins]` fixed at start: the compile cache the plugin engine was made with.
const FIXED_PLUGIN_KEYS: &[&str] = &["cache"];

/// The routes added, removed and changed by a reload, by id, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Ids only in the new file.
    pub added: Vec<String>,
    /// Ids only in the old file.
    pub removed: Vec<String>,
    /// Ids in both whose entries differ.
    pub changed: Vec<String>,
}

impl RouteChanges {
    /// Whether no route was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The keys of `new` (read from `source`) that differ from `old` (the file the router started
/// with) where no change can be applied live, each an error saying a restart is needed.
/// Either text failing to parse gives none (the parse errors say what is wrong).
pub fn fixed_changes(old: &str, new: &str, source: &Path) -> ConfigErrors {
    let (Ok(old_table), Ok(new_table)) = (old.parse::<Table>(), new.parse::<Table>()) else {
        return ConfigErrors(Vec::new());
    };
    let spans = DeTable::parse(new).ok().map(Spanned::into_inner);
    let mut sink = ErrorSink::new(source, new);
    let mut changed = Vec::new();
    for table in FIXED_TABLES {
        let (mut old, mut new) = (
            old_table.get(*table).cloned(),
            new_table.get(*table).cloned(),
        );
        if *table == "server" {
            for key in LIVE_SERVER_KEYS {
                let take = |value: &mut Option<Value>| match value {
                    Some(Value::Table(server)) => server.remove(*key).is_some(),
                    _ => false,
                };
                if take(&mut old) != take(&mut new) {
                    changed.push(format!("server.{key}"));
                }
            }
        }
        differing_keys(old.as_ref(), new.as_ref(), table, &mut changed);
    }
    let destinations = |table: &Table| match table.get("destinations") {
        Some(Value::Table(destinations)) => destinations.clone(),
        _ => Table::new(),
    };
    let (old_destinations, new_destinations) = (destinations(&old_table), destinations(&new_table));
    let names: std::collections::BTreeSet<&String> = old_destinations
        .keys()
        .chain(new_destinations.keys())
        .collect();
    for name in names {
        let key = format!("destinations.{name}");
        match (old_destinations.get(name), new_destinations.get(name)) {
            (Some(Value::Table(old)), Some(Value::Table(new))) => {
                let (mut old, mut new) = (old.clone(), new.clone());
                for live in LIVE_DESTINATION_KEYS {
                    old.remove(*live);
                    new.remove(*live);
                }
                differing_keys(
                    Some(&Value::Table(old)),
                    Some(&Value::Table(new)),
                    &key,
                    &mut changed,
                );
            }
            // Added, or removed (its lane delivers what it holds, then stops): both live.
            (None, Some(_)) | (Some(_), None) => {}
            (old, new) if old != new => changed.push(key),
            _ => {}
        }
    }
    let (old_plugins, new_plugins) = (old_table.get("plugins"), new_table.get("plugins"));
    for key in FIXED_PLUGIN_KEYS {
        let lookup = |value: Option<&Value>| value.and_then(|v| v.get(key)).cloned();
        if lookup(old_plugins) != lookup(new_plugins) {
            changed.push(format!("plugins.{key}"));
        }
    }
    for key in changed {
        let span = spans.as_ref().and_then(|root| span_of_key(root, &key));
        sink.push(
            span,
            key,
            "this key cannot change while the router runs: restart it to apply this".to_owned(),
        );
    }
    sink.finish()
}

/// The keys of the table `prefix` that differ between `old` and `new` (the table itself when
/// it is written in one only).
fn differing_keys(old: Option<&Value>, new: Option<&Value>, prefix: &str, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    let (Some(Value::Table(old)), Some(Value::Table(new))) = (old, new) else {
        out.push(prefix.to_owned());
        return;
    };
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        if old.get(key) != new.get(key) {
            out.push(format!("{prefix}.{key}"));
        }
    }
}

/// The span of the dotted `key` in `root`, or of its nearest written parent.
fn span_of_key(root: &DeTable<'_>, key: &str) -> Option<std::ops::Range<usize>> {
    let mut parts = key.split('.');
    let first = parts.next()?;
    let (_, mut value) = root.iter().find(|(k, _)| k.get_ref().as_ref() == first)?;
    let mut span = value.span();
    for part in parts {
        let DeValue::Table(table) = value.get_ref() else {
            break;
        };
        let Some((_, inner)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part) else {
            break;
        };
        value = inner;
        span = value.span();
    }
    Some(span)
}

/// The routes added, removed and changed from `old` to `new` (both valid config texts), by id.
pub fn route_changes(old: &str, new: &str) -> RouteChanges {
    let routes = |text: &str| -> BTreeMap<String, Value> {
        let Ok(table) = text.parse::<Table>() else {
            return BTreeMap::new();
        };
        let Some(Value::Array(routes)) = table.get("routes") else {
            return BTreeMap::new();
        };
        routes
            .iter()
            .filter_map(|route| {
                let id = route.get("id")?.as_str()?.to_owned();
                Some((id, route.clone()))
            })
            .collect()
    };
    let (old, new) = (routes(old), routes(new));
    let mut changes = RouteChanges::default();
    for (id, route) in &new {
        match old.get(id) {
            None => changes.added.push(id.clone()),
            Some(before) if before != route => changes.changed.push(id.clone()),
            Some(_) => {}
        }
    }
    changes.removed = old
        .keys()
        .filter(|id| !new.contains_key(*id))
        .cloned()
        .collect();
    changes
}

/// The destinations in both `old` and `new` whose entries differ (in their live keys: the
/// others are refused by [`fixed_changes`]), sorted.
pub fn destination_changes(old: &str, new: &str) -> Vec<String> {
    let destinations = |text: &str| -> Table {
        match text
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("destinations"))
        {
            Some(Value::Table(destinations)) => destinations,
            _ => Table::new(),
        }
    };
    let (old, new) = (destinations(old), destinations(new));
    new.iter()
        .filter(|(name, entry)| old.get(*name).is_some_and(|before| before != *entry))
        .map(|(name, _)| name.clone())
        .collect()
}

/// An error about the whole file `source` (one that cannot be read, say).
pub fn file_error(source: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: source.to_path_buf(),
        line: None,
        column: None,
        key: String::new(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"
[server]
listen = "127.0.0.1:8080"

[queue]
path = "data"

[destinations.ci]
url = "http://127.0.0.1:9000/ci"

[[routes]]
id = "a"
path = "/a"
destinations = ["ci"]

[[routes]]
id = "b"
path = "/b"
destinations = ["ci"]
"#;

    #[test]
    fn fixed_keys_are_named_with_their_line() {
        let new = OLD
            .replace("127.0.0.1:8080", "127.0.0.1:8081")
            .replace(
                "path = \"data\"",
                "path = \"other\"\nbackend = \"journal\"\n\n[telemetry]\notlp_endpoint = \"http://c/\"",
            )
            .replace("9000/ci\"", "9001/ci\"\nmax_in_flight = 3")
            .replace(
                "[[routes]]\nid = \"a\"",
                "[destinations.new]\nurl = \"http://x/\"\n\n[[routes]]\nid = \"a\"",
            );
        let errors = fixed_changes(OLD, &new, Path::new("r.toml")).0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["server.listen", "queue.path", "queue.backend", "telemetry"]
        );
        // A destination's settings are live: applied, not refused.
        let settings = OLD.replace(
            "9000/ci\"",
            "9001/ci\"\nmax_in_flight = 3\nmax_held = 9\nretry = { max_attempts = 2 }\n\
             circuit = { failures = 2 }\nhttp2 = true",
        );
        assert!(
            fixed_changes(OLD, &settings, Path::new("r.toml"))
                .0
                .is_empty()
        );
        assert_eq!(destination_changes(OLD, &settings), ["ci"]);
        // So is the rate.
        let rate = OLD.replace("9000/ci\"", "9000/ci\"\nrate = { per_second = 5 }");
        assert!(fixed_changes(OLD, &rate, Path::new("r.toml")).0.is_empty());
        assert_eq!(destination_changes(OLD, &rate), ["ci"]);
        assert_eq!(errors[0].line, Some(3));
        assert!(errors[0].to_string().contains("restart"), "{}", errors[0]);
        assert!(fixed_changes(OLD, OLD, Path::new("r.toml")).0.is_empty());
    }

    #[test]
    fn a_listener_certificate_may_move_but_not_appear_or_go() {
        let with = |files: &str| {
            OLD.replace(
                "listen = \"127.0.0.1:8080\"",
                &format!("listen = \"127.0.0.1:8080\"\ntls = {{ {files} }}"),
            )
        };
        let old = with("cert = \"a.pem\", key = \"a.key\"");
        let moved = with("cert = \"b.pem\", key = \"b.key\"");
        let fixed = |old: &str, new: &str| -> Vec<String> {
            let errors = fixed_changes(old, new, Path::new("r.toml")).0;
            errors.into_iter().map(|e| e.key).collect()
        };
        assert!(fixed(&old, &moved).is_empty());
        assert_eq!(fixed(OLD, &old), ["server.tls"]);
        assert_eq!(fixed(&old, OLD), ["server.tls"]);
    }

    #[test]
    fn routes_are_compared_by_id() {
        let new = OLD
            .replace("id = \"a\"", "id = \"c\"")
            .replace("path = \"/b\"", "path = \"/bb\"");
        let changes = route_changes(OLD, &new);
        assert_eq!(changes.added, ["c"]);
        assert_eq!(changes.removed, ["a"]);
        assert_eq!(changes.changed, ["b"]);
        assert!(route_changes(OLD, OLD).is_empty());
    }
}
