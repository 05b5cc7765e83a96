//! Plugins written in other languages than Rust (`examples/plugins/`): each example is built by
//! its own script, with its toolchain from PyPI or npm (cached under `target/languages/`), and
//! run on GitHub's sample webhooks with the verdicts `examples/plugins/cases/` expects, through
//! `webhook-router plugin run --cases`: the same sandbox a route runs them in.
//!
//! `tests/run.sh` builds them in its `languages` stage and points
//! `WEBHOOK_ROUTER_LANGUAGES_DIR` at them; without it a test builds its module first.
//!
//! Configured with `fail = true`, the Python and JavaScript examples raise or throw in
//! `handle`: the exception's own text must reach `plugin run`'s output and `serve`'s failure
//! log line.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use webhook_router_tests::RouterProcess;

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

/// What the example's exception says, up to the event's id (which follows it): Python's
/// traceback names the exception's class; the JavaScript example throws the `Error`'s text.
fn exception_text(language: &str) -> &'static str {
    match language {
        "python" => "RuntimeError: bot-filter was told to fail on event ",
        "javascript" => "Error: bot-filter was told to fail on event ",
        other => panic!("no failing example in {other}"),
    }
}

/// `plugin run` on `language`'s example told to fail: exits non-zero, printing the text.
fn plugin_run_shows_the_exception(language: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(["plugin", "run"])
        .arg(module(language))
        .args(["--config", r#"{"fail": true}"#, "--event"])
        .arg(root().join("tests/fixtures/github/push.json"))
        .args(["-H", "X-GitHub-Event: push"])
        .output()
        .expect("run plugin run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let failed = stderr
        .lines()
        .find(|line| line.starts_with("plugin failed: "))
        .unwrap_or_else(|| panic!("no `plugin failed` line: {stderr}"));
    eprintln!("{language}, plugin run: {failed}");
    assert!(failed.contains(exception_text(language)), "{failed}");
    assert!(!failed.contains("denied"), "{failed}");
}

/// One POST of `body` over a fresh connection; the answer's status.
fn post(address: &str, path: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: router\r\ncontent-type: application/json\r\nx-github-event: push\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .expect("send request");
    stream.write_all(body).expect("send body");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// `serve` with a route running `language`'s example told to fail: the event is refused, the
/// failure counted as `kind`, and its log line carries the exception's text for that event.
fn serve_logs_the_exception(language: &str, kind: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("languages-{language}"));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let config = dir.join("router.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

# Never reached: the plugin refuses every event.
[destinations.sink]
url = "http://127.0.0.1:9/in"

[[routes]]
id = "github"
path = "/hooks/github"
destinations = ["sink"]

[[routes.plugins]]
module = "{}"
config = {{ fail = true }}
"#,
            module(language).display()
        ),
    )
    .expect("write config");
    let mut serving =
        RouterProcess::start(Path::new(env!("CARGO_BIN_EXE_webhook-router")), &config);
    let body = std::fs::read(root().join("tests/fixtures/github/push.json")).expect("fixture");
    assert_eq!(post(&serving.ingress, "/hooks/github", &body), 500);
    let line = serving.wait_for_log("plugin failed");
    let event_id = line
        .split("event_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no event_id in {line}"));
    eprintln!("{language}, serve: {line}");
    let text = format!("{}{event_id}", exception_text(language));
    assert!(line.contains(&text), "no {text:?} in {line}");
    assert!(line.contains(&format!("kind=\"{kind}\"")), "{line}");

    let mut stream = TcpStream::connect(&serving.admin).expect("connect to admin");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nhost: router\r\nconnection: close\r\n\r\n"
    )
    .expect("ask for metrics");
    let mut metrics = String::new();
    stream.read_to_string(&mut metrics).expect("read metrics");
    let series = metrics
        .lines()
        .find(|line| {
            line.starts_with("webhook_plugin_errors_total{")
                && line.contains(&format!("kind=\"{kind}\""))
                && line.contains(&format!("plugin=\"bot_filter_{language}\""))
        })
        .unwrap_or_else(|| panic!("no {kind} errors series in {metrics}"));
    assert!(series.ends_with(" 1"), "{series}");
    let (stopped, log) = serving.stop();
    assert!(stopped, "{log:#?}");
}

#[test]
fn an_exception_in_the_python_example_shows_its_text_in_plugin_run_and_serve() {
    plugin_run_shows_the_exception("python");
    // An uncaught exception: CPython prints the traceback and the call traps.
    serve_logs_the_exception("python", "trap");
}

#[test]
fn an_exception_in_the_javascript_example_shows_its_text_in_plugin_run_and_serve() {
    plugin_run_shows_the_exception("javascript");
    // The example throws the Error's text: the call's error.
    serve_logs_the_exception("javascript", "error");
}
