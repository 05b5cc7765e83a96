//! `webhook-router serve` run as an operator would: signals, and the admin API's exposure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use webhook_router_tests::RouterProcess;

/// Patience for what should take milliseconds on an idle machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Writes `text` to a fresh file under the target directory and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-serve");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

const CONFIG: &str = r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

# Nothing listens there: one attempt, then a dead letter, so that a stop has nothing to wait for.
[destinations.sink]
url = "http://127.0.0.1:9/in"
retry = { max_attempts = 1 }

[[routes]]
id = "hooks"
path = "/hooks"
destinations = ["sink"]
"#;

/// Starts `serve` on `config`.
fn serve(config: &Path) -> RouterProcess {
    RouterProcess::start(Path::new(env!("CARGO_BIN_EXE_webhook-router")), config)
}

/// One HTTP/1.1 request over a fresh connection; the status and the whole answer.
fn request(address: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: router\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    )
    .expect("send request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    (status, answer)
}

#[test]
fn sighup_reloads_and_the_router_keeps_serving() {
    let path = config_file("sighup.toml", CONFIG);
    let mut serving = serve(&path);
    serving.signal("HUP");
    serving.wait_for_log("config reloaded");
    assert_eq!(request(&serving.admin, "GET", "/healthz").0, 200);
    assert_eq!(request(&serving.ingress, "POST", "/hooks").0, 202);
    let (success, log) = serving.stop();
    assert!(success, "{log:#?}");
    let reload_lines = log.iter().filter(|line| line.contains("SIGHUP")).count();
    assert_eq!(reload_lines, 1, "{log:#?}");
    assert!(
        log.iter().any(|line| line.contains("stop signal received")),
        "{log:#?}"
    );
}

#[test]
fn a_public_admin_address_without_a_token_refuses_to_start() {
    let public = CONFIG.replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"0.0.0.0:0\"",
    );
    let path = config_file("public-admin.toml", &public);
    for command in ["serve", "check"] {
        let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
            .args([command, "--config"])
            .arg(&path)
            .output()
            .expect("run webhook-router");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command} accepted it: {stderr}");
        assert!(
            stderr.starts_with(&format!("{}:3:", path.display()))
                && stderr.contains("server.admin_listen: 0.0.0.0:0 is reachable from the network and no admin_token is set"),
            "{command}: {stderr}"
        );
    }

    // Said to be meant: it starts, warns, and `/metrics` stays open.
    let meant = public.replace(
        "admin_listen = \"0.0.0.0:0\"",
        "admin_listen = \"0.0.0.0:0\"\nadmin_public = true",
    );
    let path = config_file("public-admin-meant.toml", &meant);
    let mut serving = serve(&path);
    serving.wait_for_log("the admin API is reachable from the network without a token");
    let (status, metrics) = request(&serving.admin, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("webhook_queue_depth"), "{metrics}");
    let (success, log) = serving.stop();
    assert!(success, "{log:#?}");
}

#[test]
fn destinations_prints_each_destination_with_its_circuit_and_last_error() {
    let path = config_file("destinations.toml", CONFIG);
    let serving = serve(&path);
    assert_eq!(request(&serving.ingress, "POST", "/hooks").0, 202);
    // The one attempt fails (nothing listens on port 9); wait until the table shows its error.
    let deadline = std::time::Instant::now() + PATIENCE;
    let table = loop {
        let output = Command::new(env!("CARGO_BIN_EXE_webhook-router"))
            .args(["destinations", "--admin"])
            .arg(format!("http://{}", serving.admin))
            .output()
            .expect("run destinations");
        assert!(output.status.success(), "{output:?}");
        let table = String::from_utf8_lossy(&output.stdout).into_owned();
        let row = table
            .lines()
            .find(|line| line.starts_with("sink"))
            .unwrap_or_default();
        if !row.ends_with(" -") || std::time::Instant::now() > deadline {
            break table;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("DESTINATION") && lines[0].contains("CIRCUIT"),
        "{table}"
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with("sink"))
        .expect("a row for sink");
    assert!(row.contains("closed"), "{table}");
    assert!(
        row.contains("0/1"),
        "nothing held, one in flight at most: {table}"
    );
    assert!(!row.ends_with(" -"), "the last error is shown: {table}");
    let (success, log) = serving.stop();
    assert!(success, "{log:#?}");
}
