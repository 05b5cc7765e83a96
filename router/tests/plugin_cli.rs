//! `webhook-router plugin run` and `check` with plugins, run as a plugin author would, on
//! plugins built from source.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use webhook_router_tests::wasm::{module, repo_root};

fn router(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run webhook-router")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn module_arg(name: &str) -> String {
    module(name).display().to_string()
}

/// `webhook-router plugin run <plugin module> <args>` in `dir`.
fn plugin_run(plugin: &str, args: &[&str], dir: &Path) -> Output {
    let module = module_arg(plugin);
    let mut all = vec!["plugin", "run", module.as_str()];
    all.extend_from_slice(args);
    router(&all, dir)
}

#[test]
fn plugin_run_on_the_template_as_its_readme_shows() {
    // examples/plugin-template/README.md: run from the template's directory on event.json.
    let dir = repo_root().join("examples/plugin-template");
    let output = plugin_run(
        "plugin_template",
        &[
            "--config",
            r#"{"header": "x-processed-by", "value": "my-plugin"}"#,
            "--event",
            "event.json",
            "--header",
            "X-GitHub-Event: push",
        ],
        &dir,
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.starts_with("verdict: forward\n"), "{stdout}");
    assert!(stdout.contains("x-processed-by: my-plugin\n"), "{stdout}");
    assert!(stdout.contains("x-github-event: push\n"), "{stdout}");
    assert!(
        stdout.contains("\n{\n  \""),
        "the body is pretty JSON: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("time: ")),
        "{stdout}"
    );
}

#[test]
fn plugin_run_on_event_filter_with_a_fixture_and_a_config_file() {
    let root = repo_root();
    let config = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("main-pushes.json");
    std::fs::write(
        &config,
        r#"{"allow_events": ["push"], "json": [{"pointer": "/ref", "prefix": "refs/tags/"}]}"#,
    )
    .expect("write config");
    let config_arg = format!("@{}", config.display());
    let run = |event: &str, kind: &str| {
        plugin_run(
            "event_filter",
            &[
                "--config",
                &config_arg,
                "--event",
                event,
                "-H",
                &format!("X-GitHub-Event: {kind}"),
            ],
            root,
        )
    };
    let pass = run("tests/fixtures/github/push.json", "push");
    assert!(pass.status.success(), "{}", text(&pass.stderr));
    assert!(
        text(&pass.stdout).starts_with("verdict: pass (the event goes on unchanged)\n"),
        "{}",
        text(&pass.stdout)
    );
    assert!(text(&pass.stdout).contains("\"ref\": \"refs/tags/simple-tag\""));

    let dropped = run("tests/fixtures/github/issues.opened.json", "issues");
    assert!(
        dropped.status.success(),
        "a drop is a verdict, not a failure"
    );
    let stdout = text(&dropped.stdout);
    assert!(stdout.starts_with("verdict: drop ("), "{stdout}");
    assert!(
        stdout.contains("x-github-event"),
        "the reason names the header: {stdout}"
    );
}

#[test]
fn plugin_run_exits_non_zero_when_the_plugin_fails() {
    let root = repo_root();
    let trap = plugin_run(
        "hostile",
        &[
            "--config",
            r#"{"mode": "trap"}"#,
            "--event",
            "tests/fixtures/github/ping.json",
        ],
        root,
    );
    assert!(!trap.status.success());
    assert!(
        text(&trap.stderr).contains("plugin failed: trap"),
        "{}",
        text(&trap.stderr)
    );

    let bad_config = plugin_run(
        "event_filter",
        &[
            "--config",
            r#"{"alow_events": ["push"]}"#,
            "--event",
            "tests/fixtures/github/ping.json",
        ],
        root,
    );
    assert!(!bad_config.status.success());
    assert!(
        text(&bad_config.stderr).contains("alow_events"),
        "{}",
        text(&bad_config.stderr)
    );
}

#[test]
fn check_compiles_and_configures_every_plugin() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-check");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let config = |plugin_config: &str| {
        format!(
            "[destinations.ci]\nurl = \"http://127.0.0.1:9000/ci\"\n\n\
             [[routes]]\nid = \"github\"\npath = \"/hooks/github\"\ndestinations = [\"ci\"]\n\n\
             [[routes.plugins]]\nmodule = \"{}\"\nconfig = {plugin_config}\n",
            module_arg("event_filter")
        )
    };
    let good = dir.join("good.toml");
    std::fs::write(&good, config(r#"{ allow_events = ["push"] }"#)).expect("write");
    let ok = router(&["check", "--config", &good.display().to_string()], &dir);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout).trim(), "ok");

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        config(r#"{ json = [{ pointer = "/ref", regex = "([" }] }"#),
    )
    .expect("write");
    let refused = router(&["check", "--config", &bad.display().to_string()], &dir);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("bad.toml:9:"),
        "file and line of the entry: {stderr}"
    );
    assert!(stderr.contains("routes[0].plugins[0]"), "{stderr}");
    assert!(
        stderr.contains("regex"),
        "the plugin's own message: {stderr}"
    );

    let missing = dir.join("missing.toml");
    std::fs::write(
        &missing,
        config("{}").replace("event_filter.wasm", "no_such.wasm"),
    )
    .expect("write");
    let refused = router(&["check", "--config", &missing.display().to_string()], &dir);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("cannot read plugin module"),
        "{}",
        text(&refused.stderr)
    );
}

/// The first ```toml block of the template's README that declares a route.
fn readme_route_snippet() -> String {
    let readme = std::fs::read_to_string(repo_root().join("examples/plugin-template/README.md"))
        .expect("read the template README");
    readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("[[routes]]"))
        .expect("the README has a route snippet")
        .to_owned()
}

#[test]
fn the_template_readme_route_snippet_passes_check_as_written() {
    // The snippet's module path is relative to the config file: lay out a directory as the
    // README says (the config beside the template's own `target/`).
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("template-readme");
    let release = dir.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&release).expect("create temp dir");
    std::fs::copy(
        module("plugin_template"),
        release.join("plugin_template.wasm"),
    )
    .expect("copy the module");
    let config = dir.join("router.toml");
    std::fs::write(&config, readme_route_snippet()).expect("write config");
    let checked = router(&["check", "--config", "router.toml"], &dir);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert_eq!(text(&checked.stdout).trim(), "ok");
}

#[test]
fn plugin_run_checks_a_directory_of_cases() {
    // The template's own cases, as its README runs them.
    let template = repo_root().join("examples/plugin-template");
    let ran = plugin_run("plugin_template", &["--cases", "cases"], &template);
    let stdout = text(&ran.stdout);
    assert!(ran.status.success(), "{stdout}{}", text(&ran.stderr));
    assert_eq!(
        stdout,
        "ok   json-is-tagged: verdict: forward\n\
         ok   text-is-dropped: verdict: drop (the body is not JSON)\n\
         cases: 2 passed, 0 failed\n"
    );

    // A case that does not hold fails the run and says why.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("failing-cases");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    std::fs::copy(template.join("event.json"), dir.join("push.json")).expect("copy event");
    std::fs::write(
        dir.join("a.toml"),
        "event = \"push.json\"\nexpect = \"drop\"\n",
    )
    .expect("write case");
    std::fs::write(
        dir.join("b.toml"),
        "event = \"push.json\"\nexpect = \"forward\"\ncontains = \"x-other: 1\"\n",
    )
    .expect("write case");
    let ran = plugin_run("plugin_template", &["--cases", "."], &dir);
    let stdout = text(&ran.stdout);
    assert!(!ran.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL a: expected drop, got verdict: forward\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL b: verdict: forward, but the output does not contain \"x-other: 1\""),
        "{stdout}"
    );
    assert!(stdout.ends_with("cases: 0 passed, 2 failed\n"), "{stdout}");
}

#[test]
fn plugin_run_repeat_prints_call_time_percentiles() {
    let ran = plugin_run(
        "event_filter",
        &[
            "--config",
            r#"{"allow_events": ["push"]}"#,
            "--event",
            "tests/fixtures/github/push.json",
            "-H",
            "X-GitHub-Event: push",
            "--repeat",
            "200",
        ],
        repo_root(),
    );
    let stdout = text(&ran.stdout);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let timing = stdout.lines().last().unwrap_or_default();
    assert!(timing.starts_with("time: p50 "), "{stdout}");
    assert!(timing.contains(", p99 "), "{stdout}");
    assert!(
        timing.contains(" over 200 calls (load and configure: "),
        "{stdout}"
    );
    assert!(timing.contains("; CPU: "), "{stdout}");
}

#[test]
fn plugin_run_limit_errors_name_the_limit() {
    let root = repo_root();
    let timed_out = plugin_run(
        "hostile",
        &[
            "--config",
            r#"{"mode": "loop"}"#,
            "--event",
            "tests/fixtures/github/ping.json",
            "--time-limit",
            "5ms",
        ],
        root,
    );
    assert!(!timed_out.status.success());
    let stderr = text(&timed_out.stderr);
    assert!(
        stderr.contains("plugin failed: timeout (plugin used up its CPU budget of 5ms)"),
        "{stderr}"
    );

    let bomb = plugin_run(
        "hostile",
        &[
            "--config",
            r#"{"mode": "memory"}"#,
            "--event",
            "tests/fixtures/github/ping.json",
            "--memory",
            "4MiB",
        ],
        root,
    );
    assert!(!bomb.status.success());
    let stderr = text(&bomb.stderr);
    assert!(stderr.contains("plugin failed: memory ("), "{stderr}");
    assert!(
        stderr.contains("memory limit of 4.0 MiB reached"),
        "{stderr}"
    );

    // A module whose own initial memory is over the limit cannot load, and says so.
    let too_small = plugin_run(
        "event_filter",
        &[
            "--event",
            "tests/fixtures/github/ping.json",
            "--memory",
            "64KiB",
        ],
        root,
    );
    assert!(!too_small.status.success());
    let stderr = text(&too_small.stderr);
    assert!(
        stderr.contains("initial memory of ")
            && stderr.contains("is over the plugin's memory limit of 64.0 KiB"),
        "{stderr}"
    );
}

#[test]
fn what_a_plugin_prints_goes_to_the_log_tagged_and_a_trap_shows_its_stderr() {
    let event = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("print-event.json");
    std::fs::write(&event, "{}").expect("write event");
    let output = plugin_run(
        "hostile",
        &[
            "--config",
            r#"{"mode": "print"}"#,
            "--event",
            &event.display().to_string(),
        ],
        repo_root(),
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("verdict: forward\n"), "{stdout}");
    assert!(!stdout.contains("hostile plugin writes"), "{stdout}");
    for stream in ["stdout", "stderr"] {
        let line = stderr
            .lines()
            .find(|line| line.contains(&format!("hostile plugin writes to {stream}")))
            .unwrap_or_else(|| panic!("no {stream} line in the log: {stderr}"));
        assert!(
            line.contains(r#"plugin="hostile""#)
                && line.contains(r#"route="trial""#)
                && line.contains("event_id=")
                && line.contains(&format!(r#"stream="{stream}""#)),
            "{line}"
        );
    }
    assert!(!stderr.contains("panicked at"), "{stderr}");

    let trapped = plugin_run(
        "hostile",
        &[
            "--config",
            r#"{"mode": "stderr-trap"}"#,
            "--event",
            &event.display().to_string(),
        ],
        repo_root(),
    );
    let stderr = text(&trapped.stderr);
    assert!(!trapped.status.success(), "{stderr}");
    assert!(
        stderr.contains("plugin failed: trap (")
            && stderr
                .contains("; stderr: uncaught exception: TypeError: hostile is not a function)"),
        "{stderr}"
    );
}

#[test]
fn plugin_inspect_lists_imports_with_their_status_and_the_exports() {
    let output = router(&["plugin", "inspect", &module_arg("hostile")], repo_root());
    let stdout = text(&output.stdout);
    // The hostile guest imports an interface no router provides: listed, and the exit status
    // says so.
    assert!(!output.status.success(), "{}", text(&output.stderr));
    let status_of = |prefix: &str| {
        stdout
            .lines()
            .find(|line| line.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no import {prefix}: {stdout}"))
            .to_owned()
    };
    assert!(status_of("log ").ends_with(" granted"), "{stdout}");
    assert!(
        status_of("wasi:cli/stdout@0.2.").ends_with(" granted"),
        "{stdout}"
    );
    assert!(
        status_of("wasi:cli/environment@0.2.").ends_with(" linked, denied"),
        "{stdout}"
    );
    assert!(
        status_of("hostile:denied/nope ").ends_with(" not available"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("exports:\n  configure\n  handle\n"),
        "{stdout}"
    );
}
