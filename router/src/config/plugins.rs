//! The `[plugins]` table: what the router accepts as a plugin module (its size, its compile
//! time) and where compiled plugin code is cached. Every route's plugins share these settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::{ByteSize, EnvString, HumanDuration, bounds};

/// The `[plugins]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Largest module file accepted; a larger one is refused before it is read.
    #[serde(
        default = "default_max_module_bytes",
        deserialize_with = "bounds::max_module_bytes"
    )]
    pub max_module_bytes: ByteSize,
    /// Longest one module may take to compile; past it loading the plugin fails.
    #[serde(
        default = "default_compile_timeout",
        deserialize_with = "bounds::compile_timeout"
    )]
    pub compile_timeout: HumanDuration,
    /// Where compiled plugin code is cached between runs.
    #[serde(default)]
    pub cache: CompileCache,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            max_module_bytes: default_max_module_bytes(),
            compile_timeout: default_compile_timeout(),
            cache: CompileCache::default(),
        }
    }
}

fn default_max_module_bytes() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}

fn default_compile_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// `[plugins] cache`: where compiled plugin code is kept, so a module compiles once, not at
/// every start. Whatever is in the directory is loaded as native code, so it must be the
/// router's own: see `plugin::cache` for the checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CompileCache {
    /// Key absent: `$XDG_CACHE_HOME/webhook-router`, else `$HOME/.cache/webhook-router`.
    #[default]
    Default,
    /// `cache = "off"`: every module is compiled at every load.
    Off,
    /// `cache = "DIR"`: this directory (relative paths are resolved against the config file's
    /// folder when the config is loaded).
    Directory(PathBuf),
}

impl<'de> Deserialize<'de> for CompileCache {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let EnvString(text) = EnvString::deserialize(deserializer)?;
        match text.as_str() {
            "off" => Ok(Self::Off),
            "" => Err(de::Error::custom(
                "cache must be \"off\" or a directory, not empty",
            )),
            dir => Ok(Self::Directory(PathBuf::from(dir))),
        }
    }
}
