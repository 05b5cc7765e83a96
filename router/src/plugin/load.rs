//! Loading plugins: read (with bounds), compile (once per module file, under a deadline),
//! pre-instantiate and configure. `serve` and `check` both go through here, so `check` catches
//! everything `serve` would. The engine starts at the first module that is read whole, so a
//! config whose modules are all refused fails without it.
//!
//! A reload loads through [`CompiledModules`], which keeps each compiled module by the SHA-256
//! of its bytes: a module whose bytes have not changed is not compiled again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use wasmtime::component::Component;

use super::engine::PluginEngine;
use super::module::{ModuleBounds, compile_within, read_module};
use super::{LoadedPlugin, PluginChain, PluginLimits};
use crate::config::{
    CompileCache, Config, ConfigErrors, Isolation, PluginConfig, PluginLimitsConfig,
};
use crate::metrics::Metrics;
use crate::queue::DestinationId;

impl From<PluginLimitsConfig> for PluginLimits {
    fn from(config: PluginLimitsConfig) -> Self {
        Self {
            memory_bytes: usize::try_from(config.memory.0).unwrap_or(usize::MAX),
            time: config.time.0,
            output_bytes: usize::try_from(config.output.0).unwrap_or(usize::MAX),
            fan_out: usize::try_from(config.fan_out).unwrap_or(usize::MAX),
        }
    }
}

/// Loads one plugin outside any config (for `webhook-router plugin run`), with the `[plugins]`
/// defaults: module bounds and compile cache.
pub async fn load_plugin(
    module: &Path,
    route: &str,
    config_json: &str,
    limits: PluginLimits,
    isolation: Isolation,
) -> Result<LoadedPlugin, String> {
    let mut engine = None;
    let component = compile_file(
        &mut engine,
        &CompileCache::Default,
        module,
        ModuleBounds::default(),
    )
    .await?;
    let engine = engine.ok_or("the plugin engine did not start")?;
    let name = module
        .file_stem()
        .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
    LoadedPlugin::load(
        engine,
        &component,
        &name,
        route,
        config_json.to_owned(),
        limits,
        isolation,
    )
    .await
    .map_err(|failure| failure.message)
}

/// Compiled plugin modules by the SHA-256 of their bytes, kept from one load to the next.
#[derive(Default)]
pub struct CompiledModules {
    by_hash: Mutex<HashMap<[u8; 32], Component>>,
    /// The hashes of the modules the last load used.
    last_used: Mutex<HashSet<[u8; 32]>>,
    /// The hashes of the modules the config serving uses.
    serving: Mutex<HashSet<[u8; 32]>>,
    compiled: AtomicU64,
}

impl std::fmt::Debug for CompiledModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModules")
            .field("compiled", &self.compiled())
            .finish_non_exhaustive()
    }
}

impl CompiledModules {
    /// How many modules were compiled through it in all (a module found by its hash is not).
    pub fn compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    fn get(&self, hash: &[u8; 32]) -> Option<Component> {
        self.lock().get(hash).cloned()
    }

    fn insert(&self, hash: [u8; 32], component: Component) {
        self.compiled.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(hash, component);
    }

    /// The last load's config now serves: forgets the modules it did not use.
    pub fn forget_unused(&self) {
        let used = self
            .last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.lock().retain(|hash, _| used.contains(hash));
        *self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = used;
    }

    /// The last load was refused: forgets what it compiled that the config serving does not
    /// use, so that refused reloads (a module rebuilt again and again under `--watch`) do not
    /// pile up compiled code.
    pub fn forget_refused(&self) {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.lock().retain(|hash, _| serving.contains(hash));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Component>> {
        self.by_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Loads every route's plugin chain. Errors name the plugin entry's file, line and key.
pub async fn load_chains(
    config: &Config,
    destination_ids: &Arc<HashMap<String, DestinationId>>,
    metrics: &Metrics,
) -> Result<HashMap<String, PluginChain>, ConfigErrors> {
    load_chains_with(
        config,
        destination_ids,
        metrics,
        &CompiledModules::default(),
    )
    .await
}

/// Loads every route's plugin chain as [`load_chains`] does, taking each module compiled
/// before from `modules` by the hash of its bytes (see [`CompiledModules::forget_unused`]).
pub async fn load_chains_with(
    config: &Config,
    destination_ids: &Arc<HashMap<String, DestinationId>>,
    metrics: &Metrics,
    modules: &CompiledModules,
) -> Result<HashMap<String, PluginChain>, ConfigErrors> {
    let mut chains = HashMap::new();
    let mut loader = Loader {
        engine: None,
        cache: &config.plugins.cache,
        bounds: ModuleBounds::from(&config.plugins),
        components: HashMap::new(),
        modules,
        used: HashSet::new(),
    };
    let mut errors = Vec::new();
    for route in &config.routes {
        let mut plugins = Vec::with_capacity(route.plugins.len());
        for plugin in &route.plugins {
            match loader.load_entry(plugin, &route.id).await {
                Ok(loaded) => plugins.push(loaded),
                Err(message) => errors.push(plugin.location.error(message)),
            }
        }
        if !route.plugins.is_empty() && plugins.len() == route.plugins.len() {
            // A fan-out may name the route's own destinations and its `fan_out` list only.
            let reachable = route
                .destinations
                .iter()
                .chain(&route.fan_out)
                .filter_map(|name| Some((name.clone(), *destination_ids.get(name)?)))
                .collect();
            let chain = PluginChain::new(
                &route.id,
                plugins,
                route.on_plugin_error,
                Arc::new(reachable),
                metrics,
            );
            chains.insert(route.id.clone(), chain);
        }
    }
    *modules
        .last_used
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = loader.used;
    if errors.is_empty() {
        Ok(chains)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Compiles and configures every plugin of `config` as `serve` would, then drops them (for
/// `webhook-router check`). Returns how many plugin entries were loaded.
pub async fn check_plugins(config: &Config) -> Result<usize, ConfigErrors> {
    let destination_ids = Arc::new(
        config
            .destinations
            .keys()
            .enumerate()
            .map(|(id, name)| (name.clone(), id))
            .collect(),
    );
    let chains = load_chains(config, &destination_ids, &Metrics::new()).await?;
    Ok(chains.values().map(PluginChain::len).sum())
}

/// What loading a config's plugins keeps between entries.
struct Loader<'a> {
    /// The engine, once a module has been read whole.
    engine: Option<&'static PluginEngine>,
    /// The config's compile cache, for starting the engine.
    cache: &'a CompileCache,
    /// The config's module bounds.
    bounds: ModuleBounds,
    /// Each module file compiled so far (entries naming one file share its compile).
    components: HashMap<PathBuf, Component>,
    /// Modules compiled by earlier loads, by the hash of their bytes.
    modules: &'a CompiledModules,
    /// The hashes of the modules this load used.
    used: HashSet<[u8; 32]>,
}

impl Loader<'_> {
    async fn load_entry(
        &mut self,
        plugin: &PluginConfig,
        route: &str,
    ) -> Result<LoadedPlugin, String> {
        let component = match self.components.get(&plugin.module) {
            Some(component) => component.clone(),
            None => {
                let wasm = read_module(&plugin.module, self.bounds.max_bytes)
                    .map_err(|e| e.to_string())?;
                let hash: [u8; 32] = Sha256::digest(&wasm).into();
                let engine = start_engine(&mut self.engine, self.cache)?;
                let component = match self.modules.get(&hash) {
                    Some(component) => component,
                    None => {
                        let component = compile_within(
                            engine,
                            wasm,
                            &plugin.module,
                            self.bounds.compile_timeout,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                        self.modules.insert(hash, component.clone());
                        component
                    }
                };
                self.used.insert(hash);
                self.components
                    .insert(plugin.module.clone(), component.clone());
                component
            }
        };
        let engine = self.engine.ok_or("the plugin engine did not start")?;
        LoadedPlugin::load(
            engine,
            &component,
            &plugin.name,
            route,
            plugin.config.to_string(),
            plugin.limits.into(),
            plugin.isolation,
        )
        .await
        .map_err(|failure| format!("plugin {:?}: {}", plugin.name, failure.message))
    }
}

/// Reads `module` within `bounds`, starts the engine (into `engine`) if it is not yet, and
/// compiles the module under the deadline.
async fn compile_file(
    engine: &mut Option<&'static PluginEngine>,
    cache: &CompileCache,
    module: &Path,
    bounds: ModuleBounds,
) -> Result<Component, String> {
    let wasm = read_module(module, bounds.max_bytes).map_err(|e| e.to_string())?;
    let started = start_engine(engine, cache)?;
    compile_within(started, wasm, module, bounds.compile_timeout)
        .await
        .map_err(|e| e.to_string())
}

/// The engine in `engine`, started (with `cache`) if it is not yet.
fn start_engine(
    engine: &mut Option<&'static PluginEngine>,
    cache: &CompileCache,
) -> Result<&'static PluginEngine, String> {
    match *engine {
        Some(started) => Ok(started),
        None => Ok(*engine.insert(PluginEngine::shared(cache).map_err(|e| e.to_string())?)),
    }
}
