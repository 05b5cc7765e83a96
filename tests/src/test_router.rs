//! A real router started in-process on ephemeral loopback ports, with an HTTP client.

use std::path::Path;
use std::time::Duration;

use webhook_router::{Config, Router};

use crate::wait::wait_until;

/// A running router for a test, and a client to talk to it.
#[derive(Debug)]
pub struct TestRouter {
    /// The router.
    pub router: Router,
    /// A client for the router's listeners.
    pub client: reqwest::Client,
}

impl TestRouter {
    /// Starts a router on `config` (TOML). Its `[server]` table should listen on port 0;
    /// a missing `[server]` table gets one that does.
    pub async fn start(config: &str) -> TestRouter {
        Self::start_with(config, |_| {}).await
    }

    /// Like [`TestRouter::start`], with `edit` applied to the parsed config first: for values
    /// the config file cannot express (a config built in code, test-only fault hooks).
    pub async fn start_with(config: &str, edit: impl FnOnce(&mut Config)) -> TestRouter {
        let config = if config.contains("[server]") {
            config.to_owned()
        } else {
            format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{config}")
        };
        let mut config = Config::parse(&config, Path::new("test.toml"))
            .unwrap_or_else(|errors| panic!("test config is invalid:\n{errors}"));
        edit(&mut config);
        let router = Router::start(&config).await.expect("router starts");
        TestRouter {
            router,
            client: reqwest::Client::new(),
        }
    }

    /// Starts a router on the config file `path` (which a reload reads again), talking to it
    /// through `client` (one that trusts the certificate of a TLS listener, say).
    pub async fn start_file(path: &Path, client: reqwest::Client) -> TestRouter {
        let config =
            Config::load(path).unwrap_or_else(|errors| panic!("test config is invalid:\n{errors}"));
        let router = Router::start(&config).await.expect("router starts");
        TestRouter { router, client }
    }

    /// URL of `path` on the ingress listener.
    pub fn url(&self, path: &str) -> String {
        let scheme = self.router.ingress_scheme();
        format!("{scheme}://{}{path}", self.router.ingress_addr())
    }

    /// URL of `path` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        let scheme = self.router.admin_scheme();
        format!("{scheme}://{}{path}", self.router.admin_addr())
    }

    /// POSTs a JSON `body` to `path` on the ingress.
    pub async fn post_json(&self, path: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("ingress answers")
    }

    /// POSTs a JSON `body` with `headers` to `path` on the ingress through `client` (one bound
    /// to a chosen source address, say); the status and the JSON answer.
    pub async fn post_from(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &[u8],
        headers: &[(String, String)],
    ) -> (u16, serde_json::Value) {
        let mut request = client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("router answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json answer"))
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("admin answers")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the metric line starting with `series` (name and labels), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics().await, series)
    }
}

impl TestRouter {
    /// Waits until the router holds nothing (`webhook_queue_depth` 0): every delivery is final,
    /// so nothing more can reach a destination. The check for "nothing else arrived".
    pub async fn wait_idle(&self, patience: Duration) {
        self.wait_for_metric("webhook_queue_depth", 0.0, patience)
            .await;
    }

    /// The admin API's JSON answer to `GET path`.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.admin_url(path))
            .send()
            .await
            .expect("admin answers")
            .json()
            .await
            .expect("admin JSON")
    }

    /// Waits until the metric `series` reads `value`, polling `/metrics`; panics after
    /// `patience`.
    pub async fn wait_for_metric(&self, series: &str, value: f64, patience: Duration) {
        wait_until(
            &format!("{series} to read {value}"),
            patience,
            || self.metric(series),
            |now| *now == Some(value),
        )
        .await;
    }
}

/// Finds `series` (e.g. `webhook_requests_total{route="a",status="202"}`) in a Prometheus
/// exposition and parses its value.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}
