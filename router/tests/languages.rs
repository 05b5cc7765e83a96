//! Plugins written in other languages than Rust (`examples/plugins/`): each example is built by
//! its own script, with its toolchain from PyPI or npm (cached under `target/languages/`), and
//! run on GitHub's sample webhooks with the verdicts `examples/plugins/cases/` expects, through
//! `webhook-router plugin run --cases`: the same sandbox a route runs them in.
//!
//! `tests/run.sh` builds them in its `languages` stage and points
//! `WEBHOOK_ROUTER_LANGUAGES_DIR` at them; without it a test builds its module first.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the router crate is in the workspace")
        .to_path_buf()
}

/// The example for `language`, built if it is not there yet.
fn module(language: &str) -> PathBuf {
    let dir = std::env::var_os("WEBHOOK_ROUTER_LANGUAGES_DIR")
        .map_or_else(|| root().join("target/languages"), PathBuf::from);
    let module = dir.join(format!("bot_filter_{language}.wasm"));
    if !module.exists() {
        let script = root().join(format!("examples/plugins/{language}/build.sh"));
        let status = Command::new(&script)
            .arg(&module)
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(status.success(), "{} failed", script.display());
    }
    module
}

/// Runs the shared cases on `language`'s example; asserts that every case held.
fn run_cases(language: &str) {
    let module = module(language);
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(["plugin", "run"])
        .arg(&module)
        .arg("--cases")
        .arg(root().join("examples/plugins/cases"))
        .output()
        .expect("run plugin run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{language}: {stdout}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("cases: 5 passed, 0 failed"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn the_python_example_gives_the_expected_verdicts() {
    run_cases("python");
}

#[test]
fn the_c_example_gives_the_expected_verdicts() {
    run_cases("c");
}

#[test]
fn the_javascript_example_gives_the_expected_verdicts() {
    run_cases("javascript");
}
