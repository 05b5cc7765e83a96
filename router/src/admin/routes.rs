//! The routes API: `GET /routes` and `GET /routes/{id}`.
//!
//! Each route as configured (path, verify preset with each secret's fingerprint, never a
//! secret; plugins with their module path, SHA-256 and limits; destinations) and its counts
//! since the router started, read from the same counters `/metrics` shows: ingress answers by
//! status, and per destination the deliveries, retries and dead letters.

use std::collections::BTreeMap;
use std::path::Path;

use http::{Method, Response, StatusCode};
use serde::Serialize;

use super::Admin;
use crate::config::{Config, Isolation, PluginConfig, RouteConfig};
use crate::metrics::{Metrics, catalogue};
use crate::reply::{self, ResponseBody};

/// The routes as configured, built once from the config.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<RouteInfo>,
}

/// One route as the API shows it, without its counts.
#[derive(Debug, Clone, Serialize)]
struct RouteInfo {
    id: String,
    path: String,
    verify: Option<VerifyInfo>,
    plugins: Vec<PluginInfo>,
    destinations: Vec<String>,
    fan_out: Vec<String>,
}

/// A route's verification, without its secrets.
#[derive(Debug, Clone, Serialize)]
struct VerifyInfo {
    preset: &'static str,
    /// See [`crate::verify::fingerprint`].
    secret_fingerprints: Vec<String>,
}

/// One plugin of a route.
#[derive(Debug, Clone, Serialize)]
struct PluginInfo {
    name: String,
    module: String,
    /// SHA-256 of the module file, hex (`None` if it could not be read at start).
    sha256: Option<String>,
    isolation: &'static str,
    limits: LimitsInfo,
}

/// A plugin's limits.
#[derive(Debug, Clone, Serialize)]
struct LimitsInfo {
    memory_bytes: u64,
    time_ms: u128,
    output_bytes: u64,
    fan_out: u32,
}

/// A route with its counts, as answered.
#[derive(Debug, Serialize)]
struct RouteAnswer<'a> {
    #[serde(flatten)]
    info: &'a RouteInfo,
    counts: Counts,
}

/// A route's counts since start.
#[derive(Debug, Default, Serialize)]
struct Counts {
    /// Ingress answers by HTTP status (those given at least once).
    requests: BTreeMap<String, u64>,
    /// Events accepted (answered 202).
    accepted: u64,
    /// Per destination: `delivered`, `retry` and `dead_letter`.
    deliveries: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RouteTable {
    /// The routes of `config`; each plugin module is read and hashed.
    pub fn from_config(config: &Config) -> Self {
        Self {
            routes: config
                .routes
                .iter()
                .map(|route| RouteInfo::new(route, config.plugins.max_module_bytes.0))
                .collect(),
        }
    }
}

impl RouteInfo {
    fn new(route: &RouteConfig, max_module_bytes: u64) -> Self {
        Self {
            id: route.id.clone(),
            path: route.path.clone(),
            verify: route.verify.as_ref().map(|verifier| VerifyInfo {
                preset: verifier.preset(),
                secret_fingerprints: verifier.secret_fingerprints().to_vec(),
            }),
            plugins: route
                .plugins
                .iter()
                .map(|plugin| PluginInfo::new(plugin, max_module_bytes))
                .collect(),
            destinations: route.destinations.clone(),
            fan_out: route.fan_out.clone(),
        }
    }
}

impl PluginInfo {
    fn new(plugin: &PluginConfig, max_module_bytes: u64) -> Self {
        let limits = &plugin.limits;
        Self {
            name: plugin.name.clone(),
            module: plugin.module.display().to_string(),
            sha256: hash_file(&plugin.module, max_module_bytes),
            isolation: match plugin.isolation {
                Isolation::Reuse => "reuse",
                Isolation::Fresh => "fresh",
            },
            limits: LimitsInfo {
                memory_bytes: limits.memory.0,
                time_ms: limits.time.0.as_millis(),
                output_bytes: limits.output.0,
                fan_out: limits.fan_out,
            },
        }
    }
}

/// The SHA-256 of a plugin module, hex, read within the same bounds as loading it (a regular
/// file of at most `max_bytes`); `None` (logged) if it cannot be read.
fn hash_file(path: &Path, max_bytes: u64) -> Option<String> {
    use sha2::Digest as _;
    crate::plugin::module::read_module(path, max_bytes)
        .map(|bytes| hex::encode(sha2::Sha256::digest(&bytes)))
        .inspect_err(|error| {
            tracing::warn!(module = %path.display(), %error, "cannot hash a plugin module for /routes");
        })
        .ok()
}

/// The counts of every route, by route id, from `metrics`' counters.
fn counts(metrics: &Metrics) -> BTreeMap<String, Counts> {
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let label = |labels: &[(String, String)], key: &str| super::label(labels, key).to_owned();
    for (labels, value) in metrics.counters(catalogue::REQUESTS.name) {
        let route = counts.entry(label(&labels, "route")).or_default();
        let status = label(&labels, "status");
        if status == "202" {
            route.accepted += value;
        }
        if value > 0 {
            *route.requests.entry(status).or_default() += value;
        }
    }
    for (labels, value) in metrics.counters(catalogue::DELIVERIES.name) {
        *counts
            .entry(label(&labels, "route"))
            .or_default()
            .deliveries
            .entry(label(&labels, "destination"))
            .or_default()
            .entry(label(&labels, "outcome"))
            .or_default() += value;
    }
    counts
}

impl Admin {
    /// Serves `/routes` and `/routes/{id}`.
    pub(super) fn route_api(&self, method: &Method, path: &str) -> Response<ResponseBody> {
        if method != Method::GET {
            return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        let table = self.routes();
        let mut counts = counts(&self.metrics);
        let mut answer = |info| RouteAnswer {
            info,
            counts: counts.remove(&info.id).unwrap_or_default(),
        };
        match path.strip_prefix("/routes/") {
            None => {
                let all: Vec<_> = table.routes.iter().map(&mut answer).collect();
                reply::json(StatusCode::OK, &all)
            }
            Some(id) => match table.routes.iter().find(|r| r.id == id) {
                Some(info) => reply::json(StatusCode::OK, &answer(info)),
                None => reply::error(StatusCode::NOT_FOUND, "no route with this id"),
            },
        }
    }
}
