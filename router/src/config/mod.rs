//! The route config file: its TOML schema, loading and validation.
//!
//! A file has three parts: `[server]` (listeners and limits), `[destinations.NAME]` (where events
//! go and how they are retried) and `[[routes]]` (which path feeds which destinations), and may
//! have `[queue]` (where events are held), `[plugins]` (plugin module bounds), `[inspect]`
//! (the record of recent events) and `[telemetry]` (trace export). Loading
//! reports every problem it finds, each with file, line and key, instead of stopping at the first.
//! Each table's schema, defaults and checks are in its own file (`server`, `queue`,
//! `destination`, `route`, `order`, `verify`, `plugins`, `inspect`, `telemetry`); this one reads the
//! file and puts them together.

pub(crate) mod bounds;
pub mod changes;
mod destination;
mod error;
mod inspect;
mod order;
mod plugins;
mod queue;
mod route;
mod server;
mod telemetry;
mod tls;
mod values;
mod verify;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use destination::{
    CircuitConfig, DeliveryRate, DestinationConfig, DestinationUrl, Jitter, RetryConfig,
};
pub use error::{ConfigError, ConfigErrors};
pub use inspect::InspectConfig;
pub use order::{OnDeadLetter, OrderConfig};
pub use plugins::{CompileCache, PluginsConfig};
pub use queue::{FsyncMode, QueueBackend, QueueConfig};
pub use route::{
    ConfigLocation, Isolation, OnPluginError, PluginConfig, PluginLimitsConfig, RouteConfig,
};
pub use server::{DEFAULT_MAX_BODY_BYTES, ServerConfig};
pub use telemetry::TelemetryConfig;
pub use tls::TlsFiles;
pub use values::{ByteSize, EnvString, HumanDuration, Secret};
pub use verify::{DedupConfig, SignConfig};

use destination::parse_destinations;
use error::ErrorSink;
use queue::check_nats;
use route::{parse_routes, validate_routes};
use server::check_server;

/// A validated router configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (used in messages).
    pub source: PathBuf,
    /// Listeners, limits and admin settings.
    pub server: ServerConfig,
    /// Where accepted events are held: in memory, or in the journal.
    pub queue: QueueConfig,
    /// What every route's plugin modules may be, and where their compiled code is cached.
    pub plugins: PluginsConfig,
    /// Delivery targets, by name.
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// Webhook routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// The record of recent events (`GET /events`).
    pub inspect: InspectConfig,
    /// Where traces are exported; `None` (no `[telemetry]` table): tracing is off.
    pub telemetry: Option<TelemetryConfig>,
    /// Test-only fault injection; never read from a file.
    #[doc(hidden)]
    pub test_faults: crate::supervise::TestFaults,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: String::new(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config `text`; `source` names it in error messages.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
        let mut sink = ErrorSink::new(source, text);
        let root = match DeTable::parse(text) {
            Ok(root) => root.into_inner(),
            Err(e) => {
                sink.push_toml("", &e);
                return Err(sink.finish());
            }
        };
        let config = Self::from_table(root, source, &mut sink);
        if !sink.is_empty() {
            return Err(sink.finish());
        }
        Ok(config)
    }

    /// Parses config `text` as far as it can be read, past syntax errors too, and returns
    /// every error found with what could be read (a reload checks that config's plugins too,
    /// so that one answer lists every fault). The config is never to be served when there are
    /// errors: a syntax error may have cut a table short.
    pub fn parse_all(text: &str, source: &Path) -> (Config, ConfigErrors) {
        let mut sink = ErrorSink::new(source, text);
        let (root, syntax) = DeTable::parse_recoverable(text);
        for error in &syntax {
            sink.push_toml("", error);
        }
        let config = Self::from_table(root.into_inner(), source, &mut sink);
        (config, sink.finish())
    }

    /// Reads the config out of the parsed `root`, recording its problems in `sink`.
    fn from_table(root: DeTable<'_>, source: &Path, sink: &mut ErrorSink<'_>) -> Config {
        let mut server = None;
        let mut queue = None;
        let mut plugins = None;
        let mut inspect = None;
        let mut telemetry = None;
        let mut destinations = BTreeMap::new();
        let mut destination_names = HashSet::new();
        let mut raw_routes = Vec::new();
        for (key, value) in root {
            let key_span = key.span();
            match key.get_ref().as_ref() {
                "server" => {
                    // Problems with the two listeners are shown at `admin_listen`, or at the
                    // table when it is not written.
                    let admin_span =
                        span_of(&value, &["admin_listen"]).or_else(|| span_of(&value, &[]));
                    let tls_span = span_of(&value, &["tls"]);
                    let admin_tls_span = span_of(&value, &["admin_tls"]);
                    server = deserialize_item::<ServerConfig>(value, "server", sink);
                    if let Some(server) = &mut server {
                        check_server(server, admin_span, sink);
                        let base = source.parent().unwrap_or_else(|| Path::new(""));
                        tls::check_listener(
                            server.tls.as_mut(),
                            base,
                            ("server.tls", tls_span),
                            sink,
                        );
                        tls::check_listener(
                            server.admin_tls.as_mut(),
                            base,
                            ("server.admin_tls", admin_tls_span),
                            sink,
                        );
                    }
                }
                "queue" => {
                    let backend_span =
                        span_of(&value, &["backend"]).or_else(|| span_of(&value, &[]));
                    queue = deserialize_item::<QueueConfig>(value, "queue", sink);
                    if let Some(queue) = &mut queue {
                        if queue.backend == Some(QueueBackend::Journal) && queue.path.is_none() {
                            sink.push(
                                backend_span.clone(),
                                "queue.backend",
                                "backend = \"journal\" needs `path`, the journal's directory",
                            );
                        }
                        check_nats(queue, backend_span, sink);
                        let base = source.parent().unwrap_or_else(|| Path::new(""));
                        for path in [&mut queue.path, &mut queue.credentials]
                            .into_iter()
                            .flatten()
                        {
                            if path.is_relative() {
                                *path = base.join(&*path);
                            }
                        }
                    }
                }
                "plugins" => {
                    plugins = deserialize_item::<PluginsConfig>(value, "plugins", sink);
                    if let Some(PluginsConfig {
                        cache: CompileCache::Directory(dir),
                        ..
                    }) = &mut plugins
                        && dir.is_relative()
                    {
                        *dir = source.parent().unwrap_or_else(|| Path::new("")).join(&*dir);
                    }
                }
                "destinations" => {
                    let base = source.parent().unwrap_or_else(|| Path::new(""));
                    parse_destinations(
                        value,
                        base,
                        sink,
                        &mut destinations,
                        &mut destination_names,
                    );
                }
                "routes" => parse_routes(value, sink, &mut raw_routes),
                "inspect" => inspect = deserialize_item(value, "inspect", sink),
                "telemetry" => telemetry = deserialize_item(value, "telemetry", sink),
                other => sink.push(
                    Some(key_span),
                    other,
                    "unknown key, expected one of `server`, `queue`, `plugins`, `inspect`, \
                     `telemetry`, `destinations`, `routes`",
                ),
            }
        }
        let server = server.unwrap_or_default();
        let signing: HashSet<&str> = destinations
            .iter()
            .filter(|(_, destination)| destination.sign.is_some())
            .map(|(name, _)| name.as_str())
            .collect();
        let routes = validate_routes(raw_routes, &destination_names, &signing, sink);
        Config {
            source: source.to_path_buf(),
            server,
            queue: queue.unwrap_or_default(),
            plugins: plugins.unwrap_or_default(),
            destinations,
            routes,
            inspect: inspect.unwrap_or_default(),
            telemetry,
            test_faults: crate::supervise::TestFaults::default(),
        }
    }
}

/// The span of the value at `path` (table keys, outermost first) inside `value`, if present.
fn span_of(value: &Spanned<DeValue<'_>>, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value.span());
    };
    let DeValue::Table(table) = value.get_ref() else {
        return None;
    };
    let (_, inner) = table
        .iter()
        .find(|(key, _)| key.get_ref().as_ref() == *first)?;
    span_of(inner, rest)
}

/// Deserializes one item, recording (and swallowing) its error so that loading can go on.
fn deserialize_item<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    key: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(item) => Some(item),
        Err(e) => {
            sink.push_toml(key, &e);
            None
        }
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::time::Duration;

    use super::*;

    const VALID: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_body_bytes = "64KiB"
queue_capacity = 10

[destinations.ci]
url = "http://127.0.0.1:9000/ci"
timeout = "2s"
retry = { max_attempts = 3, initial_backoff = "100ms", max_backoff = "1s", jitter = "none" }

[[routes]]
id = "github"
path = "/hooks/github"
destinations = ["ci"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn valid_config_parses_with_values_and_defaults() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.server.max_body_bytes, Some(ByteSize(64 * 1024)));
        assert_eq!(config.server.queue_capacity.get(), 10);
        assert_eq!(config.server.header_read_timeout.0, Duration::from_secs(10));
        let ci = &config.destinations["ci"];
        assert_eq!(ci.retry.max_attempts.get(), 3);
        assert_eq!(ci.retry.jitter, Jitter::None);
        assert_eq!(ci.max_in_flight.get(), 64);
        assert!(!ci.http2);
        assert_eq!(config.routes[0].destinations, vec!["ci".to_owned()]);
        let h2 = parse(&VALID.replace("timeout = \"2s\"", "timeout = \"2s\"\nhttp2 = true"));
        assert!(h2.expect("valid").destinations["ci"].http2);
    }

    #[test]
    fn reports_typo_and_unknown_destination_together_with_lines() {
        let text = VALID
            .replace("timeout = \"2s\"", "timeuot = \"2s\"")
            .replace(
                "destinations = [\"ci\"]",
                "destinations = [\"ci\", \"billing\"]",
            );
        let errors = parse(&text).unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[0].line, Some(10));
        assert_eq!(errors[0].key, "destinations.ci");
        assert!(
            errors[0].message.contains("unknown field `timeuot`"),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[1].line, Some(16));
        assert_eq!(errors[1].key, "routes[0].destinations");
        assert!(
            errors[1]
                .message
                .contains("unknown destination \"billing\"")
        );
        assert!(errors[1].to_string().starts_with("test.toml:16:"));
    }

    #[test]
    fn rejects_duplicate_ids_paths_and_bad_values() {
        let text = format!(
            "{VALID}\n[[routes]]\nid = \"github\"\npath = \"/hooks/github\"\ndestinations = [\"ci\"]\n"
        );
        let errors = parse(&text).unwrap_err().0;
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert!(
            messages.iter().any(|m| m.contains("duplicate route id")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("already used by routes[0]")),
            "{messages:?}"
        );

        let errors =
            parse(&VALID.replace("queue_capacity = 10", "queue_capacity = 0")).unwrap_err();
        assert_eq!(errors.0[0].key, "server");
        assert_eq!(errors.0[0].line, Some(6));

        let errors = parse(&VALID.replace("http://127.0.0.1:9000/ci", "ftp://x/ci")).unwrap_err();
        assert!(errors.0[0].message.contains("scheme"), "{errors}");

        let errors = parse(&VALID.replace("timeout = \"2s\"", "http2 = \"yes\"")).unwrap_err();
        assert_eq!(
            (errors.0[0].key.as_str(), errors.0[0].line),
            ("destinations.ci", Some(10))
        );
        assert!(
            errors.0[0].message.contains("expected a boolean"),
            "{errors}"
        );

        let circuit = VALID.replace(
            "url = \"http://127.0.0.1:9000/ci\"",
            "url = \"http://127.0.0.1:9000/ci\"\ncircuit = { open_for = \"10m\", max_open_for = \"1m\" }\nmax_held = 0",
        );
        let errors = parse(&circuit).unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("max_held = 0 is out of range"), "{text}");
        let errors = parse(&circuit.replace("max_held = 0", "max_held = 5")).unwrap_err();
        assert_eq!(errors.0[0].key, "destinations.ci.circuit", "{errors}");
        assert!(
            errors.0[0]
                .message
                .contains("open_for is longer than max_open_for"),
            "{errors}"
        );
    }

    #[test]
    fn a_destination_rate_defaults_its_burst_to_a_second_and_is_checked() {
        let with_rate = |rate: &str| {
            parse(&VALID.replace(
                "timeout = \"2s\"",
                &format!("timeout = \"2s\"\nrate = {rate}"),
            ))
        };
        assert!(
            parse(VALID).expect("valid").destinations["ci"]
                .rate
                .is_none()
        );
        for (rate, per_second, burst) in [
            ("{ per_second = 50, burst = 100 }", 50.0, 100),
            ("{ per_second = 50 }", 50.0, 50),
            ("{ per_second = 2.5 }", 2.5, 3),
            ("{ per_second = 0.2 }", 0.2, 1),
        ] {
            let config = with_rate(rate).expect(rate);
            let read = config.destinations["ci"].rate.expect("a rate");
            assert_eq!(read.per_second, per_second, "{rate}");
            assert_eq!(read.burst().get(), burst, "{rate}");
        }
        let read = with_rate("{ per_second = 4 }").expect("valid");
        assert_eq!(
            read.destinations["ci"].rate.expect("a rate").period(),
            Duration::from_millis(250)
        );
        // A rate built in code out of the file's range is held to it, never a panic.
        for (per_second, period) in [
            (0.0, Duration::from_secs(1000)),
            (f64::NAN, Duration::from_secs(1000)),
            (f64::INFINITY, Duration::from_micros(1)),
        ] {
            let rate = DeliveryRate {
                per_second,
                burst: None,
            };
            assert_eq!(rate.period(), period, "{per_second}");
            assert!(rate.burst().get() >= 1);
        }
        for (rate, wanted) in [
            ("{ per_second = 0 }", "per_second = 0 is out of range"),
            ("{ per_second = -5 }", "per_second = -5 is out of range"),
            ("{ per_second = nan }", "out of range"),
            ("{ per_second = 2000000 }", "between 0.001 and 1000000"),
            ("{ per_second = 5, burst = 0 }", "burst = 0 is out of range"),
            ("{ burst = 5 }", "missing field `per_second`"),
            ("{ per_second = 5, brust = 5 }", "unknown field `brust`"),
            ("50", "expected struct DeliveryRate"),
        ] {
            let errors = with_rate(rate).unwrap_err();
            assert_eq!(errors.0[0].key, "destinations.ci", "{errors}");
            assert_eq!(errors.0[0].line, Some(11), "{errors}");
            assert!(errors.0[0].message.contains(wanted), "{rate}: {errors}");
        }
    }

    #[test]
    fn nats_keys_are_checked_and_located() {
        let nats = |queue: &str| parse(&format!("{VALID}\n[queue]\n{queue}\n"));
        let config = nats("backend = \"nats\"\nurl = \"nats://127.0.0.1:4222\"").expect("valid");
        assert_eq!(config.queue.stream, "WEBHOOKS");
        assert_eq!(config.queue.ack_wait.0, Duration::from_secs(30));
        assert!(config.queue.journal_dir().is_none());

        let errors = nats("backend = \"nats\"").unwrap_err();
        assert_eq!(errors.0[0].key, "queue.backend", "{errors}");
        assert!(errors.0[0].message.contains("needs `url`"), "{errors}");
        assert!(errors.0[0].line.is_some(), "{errors}");

        let errors = nats("url = \"nats://127.0.0.1:4222\"").unwrap_err();
        assert_eq!(errors.0[0].key, "queue.url", "{errors}");
        assert!(
            errors.0[0].message.contains("needs backend = \"nats\""),
            "{errors}"
        );

        let base = "backend = \"nats\"\nurl = \"nats://x:4222\"\n";
        for (extra, expected) in [
            ("stream = \"a.b\"", "a stream name is 1 to 32 letters"),
            ("replicas = 7", "replicas = 7 is out of range"),
            ("ack_wait = \"10ms\"", "ack_wait = 10ms is out of range"),
            (
                "partitions = 2000",
                "partitions = 2000 is out of range: must be between 1 and 1024",
            ),
            ("user = \"u\"", "`user` and `password` go together"),
            ("path = \"data\"", "remove `path`"),
        ] {
            let errors = nats(&format!("{base}{extra}")).unwrap_err();
            assert!(errors.to_string().contains(expected), "{extra}: {errors}");
        }
    }

    #[test]
    fn ingress_limits_have_defaults_and_bad_values_are_located() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.server.idle_timeout.0, Duration::from_secs(60));
        assert_eq!(config.server.max_connections, None);
        assert_eq!(config.server.max_requests_in_flight.get(), 128);
        let limits = "queue_capacity = 10\nidle_timeout = \"2s\"\nmax_connections = 100\n\
                      max_requests_in_flight = 8";
        let config = parse(&VALID.replace("queue_capacity = 10", limits)).expect("valid");
        assert_eq!(config.server.idle_timeout.0, Duration::from_secs(2));
        assert_eq!(
            config.server.max_connections.map(NonZeroUsize::get),
            Some(100)
        );
        assert_eq!(config.server.max_requests_in_flight.get(), 8);
        for (bad, message) in [
            (
                "idle_timeout = \"1ms\"",
                "idle_timeout = 1ms is out of range",
            ),
            ("max_connections = 0", "max_connections = 0 is out of range"),
            (
                "max_requests_in_flight = 2000000",
                "max_requests_in_flight = 2000000 is out of range: must be between 1 and 1000000",
            ),
        ] {
            let text = VALID.replace(
                "queue_capacity = 10",
                &format!("queue_capacity = 10\n{bad}"),
            );
            let errors = parse(&text).unwrap_err();
            assert_eq!(errors.0[0].key, "server", "{errors}");
            assert_eq!(errors.0[0].line, Some(7), "{errors}");
            assert!(errors.to_string().starts_with("test.toml:7:"), "{errors}");
            assert!(errors.0[0].message.contains(message), "{errors}");
        }
    }

    #[test]
    fn tls_files_are_found_from_the_config_folder_and_read_at_load() {
        let with = |server: &str, destination: &str| {
            VALID
                .replace(
                    "queue_capacity = 10",
                    &format!("queue_capacity = 10\n{server}"),
                )
                .replace(
                    "timeout = \"2s\"",
                    &format!("timeout = \"2s\"\n{destination}"),
                )
        };
        let source = Path::new("/etc/router/r.toml");
        let text = with(
            "tls = { cert = \"certs/a.pem\", key = \"/keys/a.key\" }",
            "",
        );
        let errors = Config::parse(&text, source).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].key, "server.tls");
        assert_eq!(errors.0[0].line, Some(7));
        assert!(
            errors.0[0]
                .message
                .starts_with("cannot read /etc/router/certs/a.pem:"),
            "{errors}"
        );

        let text = with(
            "admin_tls = { cert = \"a.pem\", key = \"a.key\", chain = \"c\" }",
            "",
        );
        let errors = Config::parse(&text, source).unwrap_err();
        assert!(
            errors.to_string().contains("unknown field `chain`"),
            "{errors}"
        );

        let text = with("", "ca = \"ca.pem\"\nclient_key = \"k.pem\"");
        let errors = Config::parse(&text, source).unwrap_err().to_string();
        for wanted in [
            "destinations.ci.url: `ca` and `client_cert` need an https URL",
            "destinations.ci.ca: cannot read /etc/router/ca.pem",
            "destinations.ci.client_cert: `client_cert` and `client_key` go together",
        ] {
            assert!(errors.contains(wanted), "{wanted} in {errors}");
        }
    }

    #[test]
    fn syntax_errors_and_unknown_sections_are_located() {
        let errors = parse("[server\nlisten = 1").unwrap_err();
        assert_eq!(errors.0[0].line, Some(1));
        let errors = parse(&format!("{VALID}\n[extra]\nx = 1\n")).unwrap_err();
        assert_eq!(errors.0[0].key, "extra");
    }

    #[test]
    fn parse_all_goes_on_past_a_syntax_error() {
        let text = VALID
            .replace("queue_capacity = 10", "queue_capacity = 10\nbroken = = 1")
            .replace("destinations = [\"ci\"]", "destinations = [\"nowhere\"]");
        let (config, errors) = Config::parse_all(&text, Path::new("test.toml"));
        let shown = errors.to_string();
        assert!(shown.contains("test.toml:7:10: extra `=`"), "{shown}");
        assert!(
            shown.contains(
                "test.toml:17:17: routes[0].destinations: unknown destination \"nowhere\""
            ),
            "{shown}"
        );
        assert_eq!(config.routes.len(), 1);
        // `parse` stops at the syntax error.
        assert_eq!(parse(&text).unwrap_err().0.len(), 1);
    }

    #[test]
    fn missing_env_var_is_named_not_expanded() {
        let text = VALID.replace(
            "http://127.0.0.1:9000/ci",
            "${WEBHOOK_ROUTER_TEST_UNSET_VAR}",
        );
        let errors = parse(&text).unwrap_err();
        assert!(
            errors.0[0]
                .message
                .contains("WEBHOOK_ROUTER_TEST_UNSET_VAR is not set"),
            "{errors}"
        );
    }

    #[test]
    fn the_inspect_table_has_defaults_bounds_and_no_unknown_keys() {
        let config = parse(VALID).expect("valid");
        assert_eq!(config.inspect.events, 10_000);
        assert_eq!(config.inspect.max_age.0, Duration::from_secs(24 * 3600));
        assert!(!config.routes[0].inspect_bodies);
        let text = VALID.replace(
            "destinations = [\"ci\"]",
            "destinations = [\"ci\"]\ninspect_bodies = true",
        );
        let config = parse(&format!(
            "{text}\n[inspect]\nevents = 0\nmax_age = \"1h\"\n"
        ))
        .expect("valid");
        assert_eq!(config.inspect.events, 0);
        assert_eq!(config.inspect.max_age.0, Duration::from_secs(3600));
        assert!(config.routes[0].inspect_bodies);
        for (table, wanted) in [
            ("events = -1", "events = -1 is out of range"),
            ("events = 2_000_000", "between 0 (off) and 1000000"),
            ("max_age = \"0s\"", "max_age"),
            ("evnets = 5", "unknown field `evnets`"),
        ] {
            let errors = parse(&format!("{VALID}\n[inspect]\n{table}\n")).unwrap_err();
            assert_eq!(errors.0[0].key, "inspect", "{errors}");
            assert!(errors.0[0].message.contains(wanted), "{table}: {errors}");
            assert!(errors.0[0].line.is_some(), "{errors}");
        }
    }
}
