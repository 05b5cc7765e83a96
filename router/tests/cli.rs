//! The `webhook-router` binary's `check` command, run as a user would.

use std::path::{Path, PathBuf};
use std::process::Command;

use webhook_router_tests::certs::TestCerts;

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
fn check_warns_when_the_admin_listener_has_no_token_and_not_when_it_has_one() {
    let path = config_file("no-token.toml", VALID);
    let (success, stdout, stderr) = check(&path);
    assert!(success, "a warning does not fail the check: {stderr}");
    assert_eq!(stdout, "ok\n");
    assert_eq!(
        stderr,
        "warning: server.admin_token is not set: any process that can reach the admin \
         listener (127.0.0.1:9090) can read dead letters (event bodies) and replay them; set \
         admin_token, e.g. admin_token = \"${ADMIN_TOKEN}\"\n"
    );

    let with_token = VALID.replace("[server]\n", "[server]\nadmin_token = \"correct-horse\"\n");
    let path = config_file("token.toml", &with_token);
    let (success, stdout, stderr) = check(&path);
    assert!(success, "{stderr}");
    assert_eq!(stdout, "ok\n");
    assert_eq!(stderr, "", "no warning with a token");
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

/// `VALID` with `line` added to `[server]`, as line 3.
fn with_server_line(line: &str) -> String {
    let listen = "listen = \"127.0.0.1:8080\"\n";
    VALID.replacen(listen, &format!("{listen}{line}\n"), 1)
}

/// `VALID` with `line` added to `[destinations.ci]`, as line 7.
fn with_destination_line(line: &str) -> String {
    let timeout = "timeout = \"10s\"\n";
    VALID.replacen(timeout, &format!("{timeout}{line}\n"), 1)
}

#[test]
fn hostile_values_are_rejected_with_their_line() {
    // (file name, config, line of the hostile value, what the error says)
    let cases = [
        (
            "max-body.toml",
            with_server_line("max_body_bytes = \"1TiB\""),
            3,
            "server: max_body_bytes = 1.0 TiB is out of range: must be between 1 B and 256.0 MiB",
        ),
        (
            "header-timeout-huge.toml",
            with_server_line("header_read_timeout = \"500000000000y\""),
            3,
            "server: header_read_timeout = 500000000000years is out of range: must be between 100ms and 1h",
        ),
        (
            "header-timeout-zero.toml",
            with_server_line("header_read_timeout = \"0s\""),
            3,
            "server: header_read_timeout = 0s is out of range",
        ),
        (
            "body-timeout-zero.toml",
            with_server_line("body_read_timeout = \"0s\""),
            3,
            "server: body_read_timeout = 0s is out of range",
        ),
        (
            "grace-zero.toml",
            with_server_line("shutdown_grace = \"0s\""),
            3,
            "server: shutdown_grace = 0s is out of range",
        ),
        (
            "same-listeners.toml",
            with_server_line("admin_listen = \"127.0.0.1:8080\""),
            3,
            "server.admin_listen: 127.0.0.1:8080 is also the ingress address (`listen`)",
        ),
        (
            "in-flight.toml",
            with_destination_line("max_in_flight = 1000000000"),
            7,
            "destinations.ci: max_in_flight = 1000000000 is out of range: must be between 1 and 10000",
        ),
        (
            "attempts.toml",
            with_destination_line("retry = { max_attempts = 4000000000 }"),
            7,
            "destinations.ci: max_attempts = 4000000000 is out of range: must be between 1 and 100",
        ),
        (
            "attempts-without-backoff.toml",
            with_destination_line(
                "retry = { max_attempts = 4000000000, initial_backoff = \"0s\" }",
            ),
            7,
            "is out of range: must be between",
        ),
        (
            "backoff-zero.toml",
            with_destination_line("retry = { initial_backoff = \"0s\" }"),
            7,
            "destinations.ci: initial_backoff = 0s is out of range",
        ),
        (
            "backoff-years.toml",
            with_destination_line("retry = { max_backoff = \"5y\" }"),
            7,
            "is out of range: must be between 1ms and 7days",
        ),
        (
            "backoff-order.toml",
            with_destination_line("retry = { initial_backoff = \"2h\", max_backoff = \"1h\" }"),
            7,
            "destinations.ci.retry: initial_backoff is longer than max_backoff",
        ),
    ];
    for (name, text, line, message) in cases {
        let path = config_file(name, &text);
        let (success, stdout, stderr) = check(&path);
        assert!(!success, "{name}: accepted:\n{text}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        let located = format!("{}:{line}:", path.display());
        assert!(
            stderr.starts_with(&located) && stderr.contains(message),
            "{name}: expected {located} and {message:?}, got: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
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

#[test]
fn an_unverified_route_to_a_signing_destination_is_refused_unless_it_signs_anyway() {
    let signing = with_destination_line(
        "sign = { scheme = \"standard-webhooks\", secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"] }",
    );
    let path = config_file("unverified-signing.toml", &signing);
    let (success, stdout, stderr) = check(&path);
    assert!(!success, "exit status must be non-zero");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with(&format!("{}:12:", path.display()))
            && stderr.contains("routes[0].destinations")
            && stderr.contains("destination \"ci\" signs its deliveries")
            && stderr.contains("unverified = \"sign-anyway\""),
        "{stderr}"
    );

    let anyway = format!("{signing}unverified = \"sign-anyway\"\n");
    let path = config_file("sign-anyway.toml", &anyway);
    let (success, stdout, stderr) = check(&path);
    assert!(success, "{stderr}");
    assert_eq!(stdout.trim(), "ok");

    let verified = format!("{signing}verify = {{ preset = \"github\", secrets = [\"s\"] }}\n");
    let path = config_file("verified-signing.toml", &verified);
    let (success, _, stderr) = check(&path);
    assert!(
        success,
        "a verified route may feed a signing destination: {stderr}"
    );
}

#[test]
fn trusted_proxies_that_cover_every_address_are_warned_about() {
    for everything in ["0.0.0.0/0", "::/0"] {
        let text = with_server_line(&format!(
            "trusted_proxies = [\"10.0.0.1\", \"{everything}\"]"
        ));
        let path = config_file("trust-everyone.toml", &text);
        let (success, stdout, stderr) = check(&path);
        assert!(success, "a warning, not an error: {stderr}");
        assert_eq!(stdout.trim(), "ok");
        assert!(
            stderr.contains(&format!(
                "warning: server.trusted_proxies: {everything} covers every address"
            )),
            "{stderr}"
        );
    }
    let path = config_file(
        "trust-one.toml",
        &with_server_line("trusted_proxies = [\"10.0.0.0/8\"]"),
    );
    let (success, _, stderr) = check(&path);
    assert!(success && !stderr.contains("trusted_proxies"), "{stderr}");
}

#[test]
fn an_unreadable_or_mismatched_certificate_is_an_error_naming_the_file() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-check-tls");
    let certs = TestCerts::make(&dir);
    let (first, second) = (certs.server("first", 30), certs.server("second", 30));
    let client = certs.client("client");
    let tls = |cert: &Path, key: &Path| {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        )
    };
    let https = format!(
        "url = \"https://127.0.0.1:9000/ci\"\nca = \"{}\"\nclient_cert = \"{}\"\n\
         client_key = \"{}\"",
        certs.ca().display(),
        client.cert.display(),
        client.key.display()
    );
    let text = |ingress: &str, destination: &str| {
        VALID
            .replace(
                "[server]\n",
                &format!(
                    "[server]\nadmin_token = \"t\"\ntls = {ingress}\nadmin_tls = {}\n",
                    tls(&second.cert, &second.key)
                ),
            )
            .replace("url = \"http://127.0.0.1:9000/ci\"", destination)
    };
    let path = config_file("tls.toml", &text(&tls(&first.cert, &first.key), &https));
    let (success, stdout, stderr) = check(&path);
    assert!(success, "{stderr}");
    assert_eq!(stdout, "ok\n");

    let missing = dir.join("missing.pem");
    for (ingress, destination, wanted) in [
        (
            tls(&first.cert, &second.key),
            https.clone(),
            format!(
                "tls.toml:3:7: server.tls: {} is not the private key of the certificate in {}",
                second.key.display(),
                first.cert.display()
            ),
        ),
        (
            tls(&missing, &first.key),
            https.clone(),
            format!(
                "tls.toml:3:7: server.tls: cannot read {}: No such file",
                missing.display()
            ),
        ),
        (
            tls(&first.cert, &first.key),
            https.replace(
                &certs.ca().display().to_string(),
                &first.key.display().to_string(),
            ),
            format!(
                "destinations.ci.ca: {}: no certificate in it",
                first.key.display()
            ),
        ),
        (
            tls(&first.cert, &first.key),
            https.replace("client_key", "# client_key"),
            "destinations.ci.client_cert: `client_cert` and `client_key` go together".to_owned(),
        ),
    ] {
        let path = config_file("tls.toml", &text(&ingress, &destination));
        let (success, _, stderr) = check(&path);
        assert!(!success, "{ingress} {destination}");
        assert!(stderr.contains(&wanted), "{wanted} in {stderr}");
    }
}
