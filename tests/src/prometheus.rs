//! A Prometheus server for the tests: the Debian `prometheus` package's binary, started on a free
//! loopback port with its own storage directory, scraping what the test names every second and
//! evaluating its rules every second, queried over its HTTP API, and killed when dropped.
//! `tests/servers.sh` installs the package (which also provides `promtool`) when it is missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::wait::wait_until;

/// How long the server may take to answer its readiness probe.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where the binary `name` (`prometheus`, `promtool`) is, if installed.
pub fn find(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Where the binary `name` is; panics saying how to install it when it is not.
pub fn binary(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| {
        panic!(
            "{name} is not installed: run tests/servers.sh (it installs the Debian package \
             prometheus, as root or with sudo -n), or put {name} on PATH"
        )
    })
}

/// A running `prometheus`.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts a server under `dir` (emptied first: its config and storage) that scrapes
    /// `target` (`host:port`, path `/metrics`) as job `webhook-router` every second and
    /// evaluates `rules` (a rule file's text) every second.
    pub async fn start(dir: &Path, target: &str, rules: &str) -> Prometheus {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("data")).expect("create the Prometheus directory");
        std::fs::write(dir.join("rules.yml"), rules).expect("write the rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: webhook-router\n    static_configs:\n      - targets: ['{target}']\n",
            rules = dir.join("rules.yml").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write the config");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create the log");
        let child = Command::new(binary("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run prometheus");
        let server = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let ready_url = format!("{}/-/ready", server.url);
        let ready = |status: &Option<reqwest::StatusCode>| status.is_some_and(|s| s.is_success());
        wait_until(
            "Prometheus to be ready",
            PATIENCE,
            || async {
                server
                    .client
                    .get(&ready_url)
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status())
            },
            ready,
        )
        .await;
        server
    }

    /// `GET /api/v1/PATH` with `params`: the JSON answer, whatever its status (an error is
    /// `{"status": "error", "error": ...}`).
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        self.client
            .get(format!("{}/api/v1/{path}", self.url))
            .query(params)
            .send()
            .await
            .expect("Prometheus answers")
            .json()
            .await
            .expect("Prometheus answers JSON")
    }

    /// Evaluates `expr` now: `Ok(result vector)` or `Err(the error Prometheus gave)`.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let answer = self.api("query", &[("query", expr)]).await;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        match &answer["data"]["result"] {
            Value::Array(result) => Ok(result.clone()),
            // A scalar or a string: one value.
            other => Ok(vec![other.clone()]),
        }
    }

    /// Every loaded rule (`/api/v1/rules`), flattened out of its groups.
    pub async fn rules(&self) -> Vec<Value> {
        let answer = self.api("rules", &[]).await;
        answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The alerts pending or firing now (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Vec<Value> {
        let answer = self.api("alerts", &[]).await;
        answer["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
