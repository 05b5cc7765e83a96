//! The `[[routes]]` entries and their plugin lists: their raw shape, defaults, and the checks
//! of routes against each other and against the destinations.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::error::{ConfigError, ErrorSink};
use super::order::{OnDeadLetter, OrderConfig, RawOrder};
use super::{
    ByteSize, DedupConfig, EnvString, HumanDuration, bounds, deserialize_item, is_identifier,
    list_or_none, verify,
};

/// A `[[routes]]` entry: a path that accepts webhooks and the destinations they go to.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Stable identifier, used in logs and metric labels.
    pub id: String,
    /// Request path, e.g. `/hooks/github`.
    pub path: String,
    /// Names of the destinations every accepted event is delivered to.
    pub destinations: Vec<String>,
    /// WebAssembly plugins every event passes through, in order.
    pub plugins: Vec<PluginConfig>,
    /// What a plugin failure does to the event.
    pub on_plugin_error: OnPluginError,
    /// How the sender's signature is checked, if it is.
    pub verify: Option<crate::verify::Verifier>,
    /// How repeated deliveries are recognised, if they are: as written, or by default the
    /// verify preset's delivery id (`dedup = false` turns that off).
    pub dedup: Option<DedupConfig>,
    /// How many requests a second the route accepts, if limited.
    pub rate_limit: Option<crate::rate_limit::RateLimitConfig>,
    /// The only client networks the route accepts, if restricted.
    pub allow_ips: Option<Vec<crate::allow_list::Cidr>>,
    /// Whether the event record (`GET /events/{id}`) keeps this route's bodies.
    pub inspect_bodies: bool,
    /// Credential headers (of [`crate::verify::CREDENTIAL_HEADERS`], lower-case) stored and
    /// forwarded all the same; the others are removed once the request is verified.
    pub keep_headers: Vec<String>,
    /// Destinations a plugin's `fan-out` may name besides the route's `destinations`.
    pub fan_out: Vec<String>,
    /// How deliveries of events with the same key are ordered, if they are.
    pub order: Option<OrderConfig>,
}

/// A route's `unverified` key: what a route without `verify` may do all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Unverified {
    /// Deliver to signing destinations: the router signs whatever anyone posts.
    SignAnyway,
}

/// One entry of a route's `plugins` list.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The component file, resolved against the config file's directory.
    pub module: PathBuf,
    /// Label in metrics and logs (default: the module's file stem).
    pub name: String,
    /// The plugin's own configuration, handed to its `configure` as JSON.
    pub config: serde_json::Value,
    /// Resource limits.
    pub limits: PluginLimitsConfig,
    /// How instances are isolated between events.
    pub isolation: Isolation,
    /// Where the entry is written, for errors found when the plugin is loaded.
    pub location: ConfigLocation,
}

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocation {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key, e.g. `routes[0].plugins[1]`.
    pub key: String,
}

impl ConfigLocation {
    /// An error at this place.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: Some(self.line),
            column: Some(self.column),
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

/// A plugin's `limits = { memory, time, output, fan_out }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimitsConfig {
    /// Most linear memory (default 16 MiB, at most 256 MiB).
    #[serde(
        default = "defaults::plugin_memory",
        deserialize_with = "bounds::plugin_memory"
    )]
    pub memory: ByteSize,
    /// Most time per event (default 10 ms).
    #[serde(
        default = "defaults::plugin_time",
        deserialize_with = "bounds::plugin_time"
    )]
    pub time: HumanDuration,
    /// Output cap (default 1 MiB); the larger of this and 4 × the input body applies.
    #[serde(
        default = "defaults::plugin_output",
        deserialize_with = "bounds::plugin_output"
    )]
    pub output: ByteSize,
    /// Most deliveries one `fan-out` verdict may name (default 64).
    #[serde(default = "defaults::plugin_fan_out")]
    pub fan_out: u32,
}

impl Default for PluginLimitsConfig {
    fn default() -> Self {
        Self {
            memory: defaults::plugin_memory(),
            time: defaults::plugin_time(),
            output: defaults::plugin_output(),
            fan_out: defaults::plugin_fan_out(),
        }
    }
}

/// How a plugin's instances are isolated between events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A configured instance is reused for later events of the same route and plugin; one
    /// that fails is discarded (the default: fastest).
    #[default]
    Reuse,
    /// Every event gets a new instance, configured and then dropped.
    Fresh,
}

/// What a plugin failure (trap, timeout, memory, oversized output, error, bad verdict) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPluginError {
    /// Answer the sender 500; nothing is queued (the default).
    #[default]
    Reject,
    /// Answer 202 and deliver nothing.
    Drop,
    /// Carry on with the event as it was before the failing plugin.
    Forward,
}

/// The raw shape of a `[[routes]]` entry, with spans for cross-checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    id: Spanned<String>,
    path: Spanned<String>,
    destinations: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    plugins: Vec<Spanned<RawPlugin>>,
    #[serde(default)]
    on_plugin_error: OnPluginError,
    #[serde(default)]
    verify: Option<Spanned<verify::RawVerify>>,
    #[serde(default)]
    dedup: Option<Spanned<verify::RawDedupSetting>>,
    #[serde(default)]
    rate_limit: Option<Spanned<crate::rate_limit::RateLimitConfig>>,
    #[serde(default)]
    allow_ips: Option<Vec<crate::allow_list::Cidr>>,
    #[serde(default)]
    inspect_bodies: bool,
    #[serde(default)]
    keep_headers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    unverified: Option<Spanned<Unverified>>,
    #[serde(default)]
    fan_out: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    order_by: Option<Spanned<String>>,
    #[serde(default)]
    order_by_header: Option<Spanned<String>>,
    #[serde(default)]
    on_dead_letter: Option<Spanned<OnDeadLetter>>,
}

/// The raw shape of a plugin entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    module: EnvString,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "defaults::plugin_config")]
    config: serde_json::Value,
    #[serde(default)]
    limits: PluginLimitsConfig,
    #[serde(default)]
    isolation: Isolation,
}

pub(super) fn parse_routes(
    value: Spanned<DeValue<'_>>,
    sink: &mut ErrorSink<'_>,
    out: &mut Vec<RawRoute>,
) {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        sink.push(
            Some(span),
            "routes",
            "must be an array of tables: write each route as [[routes]]",
        );
        return;
    };
    for (index, item) in items.into_iter().enumerate() {
        let key = format!("routes[{index}]");
        if let Some(route) = deserialize_item::<RawRoute>(item, &key, sink) {
            out.push(route);
        }
    }
}

/// Checks routes against each other and against the destinations; returns the clean routes.
pub(super) fn validate_routes(
    raw: Vec<RawRoute>,
    destinations: &HashSet<String>,
    signing: &HashSet<&str>,
    sink: &mut ErrorSink<'_>,
) -> Vec<RouteConfig> {
    if raw.is_empty() && sink.is_empty() {
        sink.push(
            None,
            "routes",
            "no routes are configured: add at least one [[routes]] table",
        );
    }
    let mut ids = HashSet::new();
    let mut paths = HashMap::new();
    let mut routes = Vec::with_capacity(raw.len());
    for (index, route) in raw.into_iter().enumerate() {
        let key = format!("routes[{index}]");
        let id = route.id.get_ref();
        if !is_identifier(id) {
            sink.push(
                Some(route.id.span()),
                format!("{key}.id"),
                "route ids may use only letters, digits, '-' and '_'",
            );
        } else if !ids.insert(id.clone()) {
            sink.push(
                Some(route.id.span()),
                format!("{key}.id"),
                format!("duplicate route id {id:?}"),
            );
        }
        let path = route.path.get_ref();
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            sink.push(
                Some(route.path.span()),
                format!("{key}.path"),
                "must be an absolute path such as \"/hooks/github\" (no query or fragment)",
            );
        } else if let Some(other) = paths.insert(path.clone(), index) {
            sink.push(
                Some(route.path.span()),
                format!("{key}.path"),
                format!("path {path:?} is already used by routes[{other}]"),
            );
        }
        if route.destinations.get_ref().is_empty() {
            sink.push(
                Some(route.destinations.span()),
                format!("{key}.destinations"),
                "a route needs at least one destination",
            );
        }
        let mut seen = HashSet::new();
        let fan_out = route.fan_out.map(Spanned::into_inner).unwrap_or_default();
        let listed = (route
            .destinations
            .get_ref()
            .iter()
            .map(|n| ("destinations", n)))
        .chain(fan_out.iter().map(|n| ("fan_out", n)));
        for (list, name) in listed {
            let name_text = name.get_ref();
            if !destinations.contains(name_text) {
                let mut known: Vec<&str> = destinations.iter().map(String::as_str).collect();
                known.sort_unstable();
                sink.push(
                    Some(name.span()),
                    format!("{key}.{list}"),
                    format!(
                        "unknown destination {name_text:?} (defined: {})",
                        list_or_none(&known)
                    ),
                );
            } else if !seen.insert(name_text.clone()) {
                sink.push(
                    Some(name.span()),
                    format!("{key}.{list}"),
                    format!("destination {name_text:?} is listed twice"),
                );
            } else if route.verify.is_none()
                && route.unverified.is_none()
                && signing.contains(name_text.as_str())
            {
                sink.push(
                    Some(name.span()),
                    format!("{key}.{list}"),
                    format!(
                        "destination {name_text:?} signs its deliveries, and this route does not \
                         verify its sender: the router would sign whatever anyone posts. Add \
                         `verify`, or `unverified = \"sign-anyway\"` if that is intended"
                    ),
                );
            }
        }
        if let (Some(_), Some(unverified)) = (&route.verify, &route.unverified) {
            sink.push(
                Some(unverified.span()),
                format!("{key}.unverified"),
                "applies to routes without `verify` only",
            );
        }
        let keep_headers = route.keep_headers.map_or_else(Vec::new, |keep| {
            let span = keep.span();
            let names: Vec<String> = keep
                .into_inner()
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect();
            if let Some(other) = names
                .iter()
                .find(|name| !crate::verify::CREDENTIAL_HEADERS.contains(&name.as_str()))
            {
                sink.push(
                    Some(span),
                    format!("{key}.keep_headers"),
                    format!(
                        "{other:?} is kept anyway: only {} are removed",
                        crate::verify::CREDENTIAL_HEADERS.join(", ")
                    ),
                );
            }
            names
        });
        let plugins = validate_plugins(route.plugins, &key, sink);
        let verify = route.verify.and_then(|raw| {
            let span = raw.span();
            raw.into_inner()
                .build()
                .map_err(|message| sink.push(Some(span), format!("{key}.verify"), message))
                .ok()
        });
        let dedup_span = route.dedup.as_ref().map(Spanned::span);
        let dedup =
            verify::RawDedupSetting::build(route.dedup.map(Spanned::into_inner), verify.as_ref())
                .map_err(|message| sink.push(dedup_span, format!("{key}.dedup"), message))
                .ok()
                .flatten();
        let rate_limit = route.rate_limit.map(|limit| {
            if limit.get_ref().unverified.is_some() && verify.is_none() {
                sink.push(
                    Some(limit.span()),
                    format!("{key}.rate_limit.unverified"),
                    "applies to routes with `verify` only: on this route every request is unverified and charges the route's limit",
                );
            }
            limit.into_inner()
        });
        let order = RawOrder {
            order_by: route.order_by,
            order_by_header: route.order_by_header,
            on_dead_letter: route.on_dead_letter,
        }
        .build(&key, sink);
        routes.push(RouteConfig {
            id: route.id.into_inner(),
            path: route.path.into_inner(),
            destinations: route
                .destinations
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            plugins,
            on_plugin_error: route.on_plugin_error,
            verify,
            dedup,
            rate_limit,
            allow_ips: route.allow_ips,
            inspect_bodies: route.inspect_bodies,
            keep_headers,
            fan_out: fan_out.into_iter().map(Spanned::into_inner).collect(),
            order,
        });
    }
    routes
}

/// Checks a route's plugin entries and resolves their module paths.
fn validate_plugins(
    raw: Vec<Spanned<RawPlugin>>,
    route_key: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<PluginConfig> {
    let base = sink
        .file()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut names = HashSet::new();
    let mut plugins = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let key = format!("{route_key}.plugins[{index}]");
        let span = entry.span();
        let entry = entry.into_inner();
        let module = base.join(&entry.module.0);
        let name = entry.name.clone().unwrap_or_else(|| {
            module
                .file_stem()
                .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned())
        });
        let mut problems = Vec::new();
        if !is_identifier(&name) {
            problems.push(format!(
                "plugin name {name:?} may use only letters, digits, '-' and '_' (set `name`)"
            ));
        } else if !names.insert(name.clone()) {
            problems.push(format!(
                "plugin name {name:?} is used twice in this route (set `name` to tell them apart)"
            ));
        }
        // Its ranges are checked as it is read (`bounds`).
        let limits = entry.limits;
        if !entry.config.is_object() {
            problems.push("config must be a table".to_owned());
        }
        for problem in problems {
            sink.push(Some(span.clone()), &key, problem);
        }
        let location = sink.location(span, &key);
        plugins.push(PluginConfig {
            module,
            name,
            config: entry.config,
            limits,
            isolation: entry.isolation,
            location,
        });
    }
    plugins
}

/// Defaults of the keys not written.
mod defaults {
    use super::*;
    pub fn plugin_memory() -> ByteSize {
        ByteSize(16 * 1024 * 1024)
    }
    pub fn plugin_time() -> HumanDuration {
        HumanDuration(Duration::from_millis(10))
    }
    pub fn plugin_output() -> ByteSize {
        ByteSize(1024 * 1024)
    }
    pub fn plugin_fan_out() -> u32 {
        64
    }
    pub fn plugin_config() -> serde_json::Value {
        serde_json::Value::Object(serde_json::Map::new())
    }
}
