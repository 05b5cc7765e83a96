//! Config reload: read the file again, check it whole, and switch the ingress to it at once.
//!
//! A reload is asked for by `SIGHUP`, `POST /reload` on the admin listener, or `serve --watch`
//! ([`watch`]). It reads the file, parses it as far as it can be read (past a syntax error
//! too, so that one answer lists every fault), refuses the keys that cannot change while the
//! router runs ([`crate::config::changes::fixed_changes`]), and compiles and `configure`s the
//! plugins (a module whose bytes have not changed is not compiled again). Any error refuses
//! the reload whole and the old config keeps serving. Otherwise the routes, their verification
//! secrets, rate limits, allow-lists and plugin chains switch at once ([`Ingress::switch`]);
//! requests already inside the ingress finish on the config they started with. A destination's
//! URL, timeout, headers, signing secret and retry policy apply to the attempts that start
//! after the switch, and its circuit thresholds, `max_held` and `max_in_flight` (its lane's
//! workers) from the switch on ([`DispatchControl`]). Events already accepted keep their
//! destinations by name: each name keeps its id for the life of the process, and a new one
//! gets the next id, its lane and its metrics before the switch. A destination left out of
//! the file keeps delivering what it holds until each event is final, then its lane stops
//! (with NATS, the lane stays, and adding a destination needs a restart: each has a consumer
//! made at start).
//!
//! A listener with `tls` reads its certificate and key again at each reload (a pair that
//! cannot be used refuses the reload whole), and, whatever the config, whenever a file in their
//! folders changes ([`watch::watch_certs`], [`Reloader::reread_certs`]): new connections get
//! the new certificate, open ones go on with theirs.
//!
//! Reloads are counted by `webhook_config_reloads_total{result}`; `webhook_config_info{hash}`
//! and `webhook_config_last_reload_timestamp_seconds` say which config serves since when.

pub mod watch;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use metrics::{Counter, Gauge};
use sha2::{Digest, Sha256};

use crate::config::changes::{
    RouteChanges, destination_changes, file_error, fixed_changes, route_changes,
};
use crate::config::{Config, ConfigError, ConfigErrors, QueueBackend, TlsFiles};
use crate::delivery::attempt::Destination;
use crate::delivery::dispatch::DispatchControl;
use crate::ingress::{Ingress, RouteTable};
use crate::metrics::Metrics;
use crate::plugin::{CompiledModules, load_chains_with};
use crate::queue::{DestinationId, held_caps};
use crate::tls::{CertPair, ServedCert};

/// Why a reload was refused: every error found, each `file:line:col: key: message`.
#[derive(Debug, thiserror::Error)]
#[error("config reload refused, the old config keeps serving:\n{0}")]
pub struct ReloadError(pub ConfigErrors);

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The hash of the config file now serving (as in `webhook_config_info`).
    pub hash: String,
    /// The routes added, removed and changed, by id.
    pub routes: RouteChanges,
    /// The destinations whose settings changed, by name.
    pub destinations: Vec<String>,
    /// Plugin modules compiled for it (the others were unchanged and reused).
    pub modules_compiled: u64,
}

/// The config serving: its text, hash and info gauge.
#[derive(Debug)]
struct Serving {
    text: String,
    hash: String,
    info: Gauge,
    /// The destinations it names.
    destinations: BTreeSet<String>,
}

/// Reloads a running router's config from its file.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    ingress: Arc<Ingress>,
    /// Every destination name ever served, with its id: a name keeps its id when it is
    /// removed, and gets it back when added again.
    ids: std::sync::Mutex<HashMap<String, DestinationId>>,
    dispatch: DispatchControl,
    metrics: Metrics,
    modules: CompiledModules,
    serving: tokio::sync::Mutex<Serving>,
    /// The file the router started with: what the keys fixed at start are compared with.
    started_with: String,
    /// The serving config's plugin module files, for [`watch`] (read without waiting for a
    /// reload under way).
    watched: std::sync::Mutex<Vec<PathBuf>>,
    ok: Counter,
    refused: Counter,
    last_reload: Gauge,
    /// Told the new config after each switch (the admin API's route table).
    on_switch: std::sync::Mutex<Vec<SwitchHook>>,
    /// The certificates the listeners with `tls` serve.
    certs: ListenerCerts,
}

/// The certificates the ingress and admin listeners serve, each if the listener has `tls`.
#[derive(Debug, Clone, Default)]
pub struct ListenerCerts {
    /// The ingress listener's (`server.tls`).
    pub ingress: Option<Arc<ServedCert>>,
    /// The admin listener's (`server.admin_tls`).
    pub admin: Option<Arc<ServedCert>>,
}

impl ListenerCerts {
    /// Each listener's certificate with its key in the config (`server.tls`, `server.admin_tls`).
    fn each(&self) -> [(Option<&Arc<ServedCert>>, &'static str); 2] {
        [
            (self.ingress.as_ref(), "server.tls"),
            (self.admin.as_ref(), "server.admin_tls"),
        ]
    }
}

/// Told the config a reload switched to.
struct SwitchHook(Box<dyn Fn(&Config) + Send + Sync>);

impl std::fmt::Debug for SwitchHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SwitchHook")
    }
}

impl Reloader {
    /// A reloader for the router serving `config` (read from `text`) through `ingress`, and
    /// delivering through `dispatch`. `modules` holds the plugin modules compiled at start.
    pub fn new(
        config: &Config,
        text: String,
        ingress: Arc<Ingress>,
        (destination_ids, dispatch): (Arc<HashMap<String, DestinationId>>, DispatchControl),
        metrics: &Metrics,
        modules: CompiledModules,
    ) -> Self {
        let hash = hash_of(&text);
        let info = metrics.config_info(&hash);
        info.set(1.0);
        let last_reload = metrics.config_last_reload();
        last_reload.set(unix_seconds());
        let ok = metrics.config_reloads("ok");
        let refused = metrics.config_reloads("error");
        ok.absolute(0);
        refused.absolute(0);
        Self {
            path: config.source.clone(),
            ingress,
            ids: std::sync::Mutex::new(HashMap::clone(&destination_ids)),
            dispatch,
            metrics: metrics.clone(),
            modules,
            started_with: text.clone(),
            serving: tokio::sync::Mutex::new(Serving {
                text,
                hash,
                info,
                destinations: config.destinations.keys().cloned().collect(),
            }),
            watched: std::sync::Mutex::new(module_files(config)),
            ok,
            refused,
            last_reload,
            on_switch: std::sync::Mutex::default(),
            certs: ListenerCerts::default(),
        }
    }

    /// The reloader, reading `certs` again at each reload.
    #[must_use]
    pub fn with_certs(mut self, certs: ListenerCerts) -> Self {
        self.certs = certs;
        self
    }

    /// The certificate and key files the listeners serve now.
    pub fn cert_files(&self) -> Vec<PathBuf> {
        self.certs
            .each()
            .into_iter()
            .filter_map(|(served, _)| served)
            .flat_map(|served| {
                let (cert, key) = served.files();
                [cert, key]
            })
            .collect()
    }

    /// Reads the listeners' certificate files again and serves those that changed, to new
    /// connections; a pair that cannot be used (a certificate written before its key, say) is
    /// logged and the old certificate keeps serving. Waits for a reload under way.
    pub async fn reread_certs(&self) {
        let _serving = self.serving.lock().await;
        for (served, key) in self.certs.each() {
            let Some(served) = served else { continue };
            match served.reread() {
                Ok(true) => tracing::info!(
                    key,
                    "TLS certificate files changed: new connections get the new certificate"
                ),
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    key,
                    %error,
                    "TLS certificate files changed but cannot be used: the old certificate keeps serving"
                ),
            }
        }
    }

    /// Has `hook` told the config of every reload that switches, right after the switch.
    pub fn on_switch(&self, hook: impl Fn(&Config) + Send + Sync + 'static) {
        self.on_switch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(SwitchHook(Box::new(hook)));
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plugin module files of the config serving.
    pub fn module_files(&self) -> Vec<PathBuf> {
        self.watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the config file again and switches to it, or refuses it whole (the old config
    /// keeps serving). One reload runs at a time; a second waits for the first.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let mut serving = self.serving.lock().await;
        let compiled_before = self.modules.compiled();
        match self.try_reload().await {
            Ok(Loaded {
                config,
                text,
                table,
                destinations,
                certs,
            }) => {
                let routes = route_changes(&serving.text, &text);
                let changed_destinations = destination_changes(&serving.text, &text);
                let hash = hash_of(&text);
                let names: BTreeSet<String> = config.destinations.keys().cloned().collect();
                let mut ids = self
                    .ids
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Before the switch: a new destination's lane is ready for the first event.
                for (id, destination, max_held) in destinations {
                    if ids.contains_key(&destination.name) {
                        self.dispatch.reconfigure(id, destination, max_held);
                    } else {
                        let name = destination.name.clone();
                        let given = self.dispatch.add(destination, max_held);
                        debug_assert_eq!(given, id, "ids are given in order");
                        ids.insert(name, given);
                    }
                }
                self.ingress.switch(table);
                let shared_stream = config.queue.backend == Some(QueueBackend::Nats);
                for removed in serving.destinations.difference(&names) {
                    if let Some(&id) = ids.get(removed) {
                        self.dispatch.remove(id, !shared_stream);
                    }
                }
                drop(ids);
                for (served, files, pair) in certs {
                    served.install((&files.cert, &files.key), &pair);
                }
                self.modules.forget_unused();
                for hook in self
                    .on_switch
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                {
                    (hook.0)(&config);
                }
                serving.info.set(0.0);
                let info = self.metrics.config_info(&hash);
                info.set(1.0);
                *self
                    .watched
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = module_files(&config);
                let before = std::mem::replace(
                    &mut *serving,
                    Serving {
                        text,
                        hash: hash.clone(),
                        info,
                        destinations: names,
                    },
                );
                self.last_reload.set(unix_seconds());
                self.ok.increment(1);
                let reloaded = Reloaded {
                    hash,
                    routes,
                    destinations: changed_destinations,
                    modules_compiled: self.modules.compiled().saturating_sub(compiled_before),
                };
                tracing::info!(
                    file = %self.path.display(),
                    hash = %reloaded.hash,
                    previous_hash = %before.hash,
                    routes_added = ?reloaded.routes.added,
                    routes_removed = ?reloaded.routes.removed,
                    routes_changed = ?reloaded.routes.changed,
                    destinations_changed = ?reloaded.destinations,
                    modules_compiled = reloaded.modules_compiled,
                    "config reloaded"
                );
                Ok(reloaded)
            }
            Err(errors) => {
                self.modules.forget_refused();
                self.refused.increment(1);
                tracing::warn!(file = %self.path.display(), errors = errors.0.len(), "config reload refused, the old config keeps serving:\n{errors}");
                Err(ReloadError(errors))
            }
        }
    }

    /// Reads, checks and loads the file, or gives every error found.
    async fn try_reload(&self) -> Result<Loaded, ConfigErrors> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            ConfigErrors(vec![file_error(
                &self.path,
                format!("cannot read config file: {e}"),
            )])
        })?;
        let (mut config, mut errors) = Config::parse_all(&text, &self.path);
        errors
            .0
            .extend(fixed_changes(&self.started_with, &text, &self.path).0);
        // Test fault injection is never read from a file; a reload keeps none.
        config.test_faults = crate::supervise::TestFaults::default();
        let mut destinations = Vec::new();
        let caps: HashMap<String, usize> = held_caps(&config).into_iter().collect();
        let known = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // The config's destinations by id: a known name keeps its id, a new one takes the
        // next (in name order, as the switch adds them).
        let mut destination_ids = HashMap::new();
        let mut next = known.len();
        for name in config.destinations.keys() {
            let id = match known.get(name) {
                Some(&id) => id,
                None => {
                    let id = next;
                    next += 1;
                    id
                }
            };
            destination_ids.insert(name.clone(), id);
            if !known.contains_key(name) && config.queue.backend == Some(QueueBackend::Nats) {
                errors.0.push(ConfigError {
                    file: self.path.clone(),
                    line: None,
                    column: None,
                    key: format!("destinations.{name}"),
                    message: "with backend = \"nats\" each destination has its consumer, made \
                              at start: adding one needs a restart"
                        .to_owned(),
                });
            }
        }
        let destination_ids = Arc::new(destination_ids);
        for (name, settings) in &config.destinations {
            let (Some(&id), Some(&max_held)) = (destination_ids.get(name), caps.get(name)) else {
                continue;
            };
            match Destination::from_config(name, settings) {
                Ok(destination) => destinations.push((id, destination, max_held)),
                Err(error) => errors.0.push(ConfigError {
                    file: self.path.clone(),
                    line: None,
                    column: None,
                    key: format!("destinations.{name}.{}", error.key()),
                    message: error.to_string(),
                }),
            }
        }
        match load_chains_with(&config, &destination_ids, &self.metrics, &self.modules).await {
            Ok(chains) if errors.0.is_empty() => {
                let table = self.ingress.prepare(&config, chains, &destination_ids);
                if config.queue.backend == Some(QueueBackend::Nats) {
                    errors
                        .0
                        .extend(unshared_dedup(&config, table.fresh_dedup()));
                }
                let certs = self.load_certs(&config, &mut errors);
                if errors.0.is_empty() {
                    return Ok(Loaded {
                        config,
                        text,
                        table,
                        destinations,
                        certs,
                    });
                }
            }
            Ok(_) => {}
            Err(plugin_errors) => errors.0.extend(plugin_errors.0),
        }
        errors
            .0
            .sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
        Err(errors)
    }
}

impl Reloader {
    /// The certificates `config` has the listeners serve, read again (even when the paths are
    /// the same: the files may have changed), each with its files; an error for a pair that
    /// cannot be used. (Adding or removing a listener's `tls` is refused by `fixed_changes`.)
    fn load_certs(
        &self,
        config: &Config,
        errors: &mut ConfigErrors,
    ) -> Vec<(Arc<ServedCert>, TlsFiles, CertPair)> {
        let mut certs = Vec::new();
        let files = [&config.server.tls, &config.server.admin_tls];
        for ((served, key), files) in self.certs.each().into_iter().zip(files) {
            let (Some(served), Some(files)) = (served, files) else {
                continue;
            };
            match CertPair::load(&files.cert, &files.key) {
                Ok(pair) => certs.push((Arc::clone(served), files.clone(), pair)),
                Err(error) => errors.0.push(ConfigError {
                    file: self.path.clone(),
                    line: None,
                    column: None,
                    key: key.to_owned(),
                    message: error.to_string(),
                }),
            }
        }
        certs
    }
}

/// A config read, checked and loaded, ready to switch to.
struct Loaded {
    config: Config,
    text: String,
    table: RouteTable,
    /// Every destination's new settings and cap (`max_held`), by id (for a new one, the id
    /// it will be given).
    destinations: Vec<(DestinationId, Destination, usize)>,
    /// The listeners' certificates, read again, with their files.
    certs: Vec<(Arc<ServedCert>, TlsFiles, CertPair)>,
}

/// With the NATS backend a route's dedup window is shared with the other routers when the
/// router starts: the errors for the routes `fresh` (by id) whose window a reload would make.
fn unshared_dedup(config: &Config, fresh: &[String]) -> Vec<ConfigError> {
    config
        .routes
        .iter()
        .enumerate()
        .filter(|(_, route)| fresh.contains(&route.id))
        .map(|(index, _)| ConfigError {
            file: config.source.clone(),
            line: None,
            column: None,
            key: format!("routes[{index}].dedup"),
            message: "with backend = \"nats\" a route's dedup window is shared with the other \
                      routers from the start: adding or changing one (or a `verify` preset that \
                      brings one) needs a restart"
                .to_owned(),
        })
        .collect()
}

/// The first 16 hex digits of the SHA-256 of `text`.
fn hash_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

/// The plugin module files `config` names, each once.
fn module_files(config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config
        .routes
        .iter()
        .flat_map(|route| route.plugins.iter().map(|plugin| plugin.module.clone()))
        .collect();
    files.sort();
    files.dedup();
    files
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
