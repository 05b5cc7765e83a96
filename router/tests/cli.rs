//! The `webhook-router` binary's `check` command, run as a user would.

use std::path::PathBuf;
use std::process::Command;

/// Writes `text` to a fresh file under the target directory and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-check");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn check(path: &PathBuf) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("run webhook-router");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const VALID: &str = r#"[server]
listen = "127.0.0.1:8080"

[destinations.ci]
url = "http://127.0.0.1:9000/ci"
timeout = "10s"

[[routes]]
id = "github"
path = "/hooks/github"
destinations = ["ci"]
"#;

#[test]
fn valid_config_prints_ok() {
    let path = config_file("valid.toml", VALID);
    let (success, stdout, stderr) = check(&path);
    assert!(success, "{stderr}");
    assert_eq!(stdout.trim(), "ok");
}

#[test]
fn typo_and_unknown_destination_are_both_reported_with_file_and_line() {
    let text = VALID
        .replace("timeout = \"10s\"", "timout = \"10s\"")
        .replace(
            "destinations = [\"ci\"]",
            "destinations = [\"ci\", \"billing\"]",
        );
    let path = config_file("broken.toml", &text);
    let (success, stdout, stderr) = check(&path);
    assert!(!success, "exit status must be non-zero");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let file = path.display().to_string();
    assert!(
        lines[0].starts_with(&format!(
            "{file}:6:1: destinations.ci: unknown field `timout`"
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("{file}:11:"))
            && lines[1].contains("unknown destination \"billing\""),
        "{}",
        lines[1]
    );
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("does-not-exist.toml");
    let (success, _, stderr) = check(&path);
    assert!(!success);
    assert!(
        stderr.contains("does-not-exist.toml: cannot read config file"),
        "{stderr}"
    );
}

#[test]
fn a_twilio_route_without_its_public_url_is_refused_with_file_and_line() {
    let text = format!("{VALID}verify = {{ preset = \"twilio\", secrets = [\"${{HOME}}\"] }}\n");
    let path = config_file("twilio.toml", &text);
    let (success, stdout, stderr) = check(&path);
    assert!(!success, "exit status must be non-zero");
    assert!(stdout.is_empty(), "{stdout}");
    let file = path.display().to_string();
    assert!(
        stderr.starts_with(&format!("{file}:12:"))
            && stderr.contains("routes[0].verify")
            && stderr.contains("the twilio preset needs `public_url`"),
        "{stderr}"
    );
}
