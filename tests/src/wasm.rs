//! The repository's WebAssembly plugins, and the GitHub payloads they are tested on.
//!
//! The plugins come from the directory named by [`WASM_DIR_VAR`] when it is set (`tests/run.sh`
//! builds them once and sets it for every test process); otherwise they are built from source by
//! `plugins/build.sh` the first time a test process asks for one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};
use webhook_router::event::Event;
use webhook_router::plugin::bindings::Verdict;
use webhook_router::plugin::{
    Isolation, LoadedPlugin, PluginFailure, PluginLimits, load_plugin, trial,
};

/// The environment variable naming a directory of prebuilt plugins (`event_filter.wasm`, ...).
/// When it is set, tests load the plugins from there and never build them.
pub const WASM_DIR_VAR: &str = "WEBHOOK_ROUTER_WASM_DIR";

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
}

/// The built component of crate `name` (`event_filter`, `hostile`, ...): from [`WASM_DIR_VAR`]
/// when set, else built (every plugin, once per process; an up-to-date build takes a second or
/// two).
pub fn module(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| match std::env::var_os(WASM_DIR_VAR) {
            Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
            _ => build_all(),
        })
        .as_ref()
        .unwrap_or_else(|error| {
            panic!("cannot build the plugins: {error}");
        });
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "no plugin at {} (built by plugins/build.sh; {WASM_DIR_VAR} names the directory)",
        path.display()
    );
    path
}

fn build_all() -> Result<PathBuf, String> {
    let root = repo_root();
    let output = Command::new("bash")
        .arg(root.join("plugins/build.sh"))
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run plugins/build.sh: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "plugins/build.sh failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(root.join("target/wasm/wasm32-wasip2/release"))
}

/// Runs `future` to completion on this thread's own single-threaded tokio runtime: plugin calls
/// are async, and most plugin tests are plain `#[test]`s. Not for use inside a runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime starts");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// [`LoadedPlugin::handle`] from synchronous code (see [`block_on`]).
pub trait HandleBlocking {
    /// Runs the plugin on `event` and waits for its verdict.
    fn handle_blocking(&self, event: &Event) -> Result<Verdict, PluginFailure>;
}

impl HandleBlocking for LoadedPlugin {
    fn handle_blocking(&self, event: &Event) -> Result<Verdict, PluginFailure> {
        block_on(self.handle(event))
    }
}

/// Loads plugin `name` with `config` and default limits, as a route would.
pub fn load(name: &str, config: &serde_json::Value) -> LoadedPlugin {
    try_load(name, config, PluginLimits::default(), Isolation::Reuse)
        .unwrap_or_else(|error| panic!("plugin {name} does not load: {error}"))
}

/// Loads plugin `name` with `config` and `limits` (isolation `reuse`) from async code.
pub async fn load_plugin_async(
    name: &str,
    config: &serde_json::Value,
    limits: PluginLimits,
) -> Result<LoadedPlugin, String> {
    load_plugin(
        &module(name),
        "test",
        &config.to_string(),
        limits,
        Isolation::Reuse,
    )
    .await
}

/// Loads plugin `name`, or says why it cannot be.
pub fn try_load(
    name: &str,
    config: &serde_json::Value,
    limits: PluginLimits,
    isolation: Isolation,
) -> Result<LoadedPlugin, String> {
    block_on(load_plugin(
        &module(name),
        "test",
        &config.to_string(),
        limits,
        isolation,
    ))
}

/// A GitHub payload from `tests/fixtures/github/` (e.g. `push`, `pull_request.opened`).
pub fn github_payload(fixture: &str) -> Vec<u8> {
    let path = repo_root().join(format!("tests/fixtures/github/{fixture}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A GitHub webhook as the router would accept it: the payload, `x-github-event: kind` and a
/// JSON content type.
pub fn github_event(kind: &str, body: Vec<u8>) -> Event {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-github-event",
        HeaderValue::from_str(kind).expect("event kinds are header-safe"),
    );
    trial::trial_event("test", body, headers)
}

/// `payload` with the JSON value at `pointer` replaced by `value`.
pub fn with_json(payload: &[u8], pointer: &str, value: serde_json::Value) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(payload).expect("payload is JSON");
    *json
        .pointer_mut(pointer)
        .expect("pointer exists in the payload") = value;
    serde_json::to_vec(&json).expect("JSON serializes")
}
