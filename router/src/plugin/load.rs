//! Loading plugins: read, compile (once per module file), pre-instantiate and configure.
//! `serve` and `check` both go through here, so `check` catches everything `serve` would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;

use super::engine::PluginEngine;
use super::{LoadedPlugin, PluginChain, PluginLimits};
use crate::config::{Config, ConfigErrors, Isolation, PluginConfig, PluginLimitsConfig};
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

/// Loads one plugin outside any config (for `webhook-router plugin run`).
pub async fn load_plugin(
    module: &Path,
    route: &str,
    config_json: &str,
    limits: PluginLimits,
    isolation: Isolation,
) -> Result<LoadedPlugin, String> {
    let engine = PluginEngine::shared().map_err(|e| e.to_string())?;
    let component = compile_file(engine, module)?;
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
    if config.routes.iter().all(|route| route.plugins.is_empty()) {
        return Ok(chains);
    }
    let engine = match PluginEngine::shared() {
        Ok(engine) => engine,
        Err(error) => {
            let first = config
                .routes
                .iter()
                .flat_map(|r| &r.plugins)
                .map(|p| p.location.error(error.to_string()));
            return Err(ConfigErrors(first.take(1).collect()));
        }
    };
    let mut components: HashMap<PathBuf, Component> = HashMap::new();
    let mut errors = Vec::new();
    for route in &config.routes {
        let mut plugins = Vec::with_capacity(route.plugins.len());
        for plugin in &route.plugins {
            match load_entry(engine, &mut components, plugin, &route.id).await {
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

async fn load_entry(
    engine: &PluginEngine,
    components: &mut HashMap<PathBuf, Component>,
    plugin: &PluginConfig,
    route: &str,
) -> Result<LoadedPlugin, String> {
    let component = match components.get(&plugin.module) {
        Some(component) => component.clone(),
        None => {
            let component = compile_file(engine, &plugin.module)?;
            components.insert(plugin.module.clone(), component.clone());
            component
        }
    };
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

fn compile_file(engine: &PluginEngine, module: &Path) -> Result<Component, String> {
    let wasm = std::fs::read(module)
        .map_err(|e| format!("cannot read plugin module {}: {e}", module.display()))?;
    engine
        .compile(&wasm)
        .map_err(|e| format!("cannot compile plugin module {}: {e}", module.display()))
}
