//! Loading plugins: read (with bounds), compile (once per module file, under a deadline),
//! pre-instantiate and configure. `serve` and `check` both go through here, so `check` catches
//! everything `serve` would. The engine starts at the first module that is read whole, so a
//! config whose modules are all refused fails without it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Loads every route's plugin chain. Errors name the plugin entry's file, line and key.
pub async fn load_chains(
    config: &Config,
    destination_ids: &Arc<HashMap<String, DestinationId>>,
    metrics: &Metrics,
) -> Result<HashMap<String, PluginChain>, ConfigErrors> {
    let mut chains = HashMap::new();
    let mut loader = Loader {
        engine: None,
        cache: &config.plugins.cache,
        bounds: ModuleBounds::from(&config.plugins),
        components: HashMap::new(),
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
                let component =
                    compile_file(&mut self.engine, self.cache, &plugin.module, self.bounds).await?;
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
    let started = match *engine {
        Some(started) => started,
        None => *engine.insert(PluginEngine::shared(cache).map_err(|e| e.to_string())?),
    };
    compile_within(started, wasm, module, bounds.compile_timeout)
        .await
        .map_err(|e| e.to_string())
}
