//! The delivery client's floor: a fixed number of POSTs, a fixed number of them in flight, sent
//! to a destination by reqwest as a delivery attempt sends them, by the hyper-util pooled client
//! reqwest is built on, and by bare hyper connections — so that what reqwest itself costs per
//! request can be told apart from what the pool and HTTP/1.1 cost.
//!
//! Every client sends the same request: `POST`, the event's `Bytes` body (shared, not copied),
//! `webhook-id` made from an id string per request and `content-type` (as
//! `Deliverer::attempt` adds them), within the delivery timeout, and reads the answer's body to
//! the end so the connection can be reused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// The event id every request carries (a UUIDv7, as the router's are).
const EVENT_ID: &str = "0193a9a5-6c1e-7cc2-9d54-4f1a8b2e7d10";
/// The limit of one request (the router's default delivery timeout).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A client whose cost per request is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorClient {
    /// The router's delivery client (`delivery::client::builder`), `Client::execute`.
    Reqwest,
    /// The same settings and `.http1_only()`.
    ReqwestHttp1Only,
    /// The same settings and `.referer(false)`.
    ReqwestNoReferer,
    /// The same settings and a retry policy that never clones the request
    /// (`retry::never().max_retries_per_request(0)`).
    ReqwestNoRetry,
    /// hyper-util's legacy pooled `Client` over an `HttpConnector`, reqwest's pool settings.
    HyperUtil,
    /// One hyper HTTP/1.1 connection per request in flight, each a `SendRequest`.
    Hyper,
}

impl FloorClient {
    /// How the rows name it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Reqwest => "reqwest `Client::execute`, the router's client",
            Self::ReqwestHttp1Only => "reqwest, the router's settings + `http1_only()`",
            Self::ReqwestNoReferer => "reqwest, the router's settings + `referer(false)`",
            Self::ReqwestNoRetry => "reqwest, the router's settings + no protocol-NACK retry",
            Self::HyperUtil => "hyper-util legacy pooled `Client`",
            Self::Hyper => "bare hyper http1 connections, a `SendRequest` each",
        }
    }

    /// The router's client settings (`delivery::client::builder`) with this variant's change;
    /// `None` for the clients that are not reqwest.
    fn reqwest(self) -> Result<Option<reqwest::Client>> {
        let builder = webhook_router::delivery::client::builder();
        let builder = match self {
            Self::Reqwest => builder,
            Self::ReqwestHttp1Only => builder.http1_only(),
            Self::ReqwestNoReferer => builder.referer(false),
            Self::ReqwestNoRetry => {
                builder.retry(reqwest::retry::never().max_retries_per_request(0))
            }
            Self::HyperUtil | Self::Hyper => return Ok(None),
        };
        Ok(Some(builder.build()?))
    }
}

/// What one measured run of [`send`] took.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// From the first measured request sent to the last answered.
    pub elapsed: Duration,
    /// The CPU time the caller's `cpu` counted over the same span, if it could be read.
    pub cpu: Option<Duration>,
}

/// Sends `warm_up` POSTs of `body` to `url` (`http://host:port/path`), then `requests` more,
/// with `in_flight` of them at a time, through `client`, on the current runtime; measures the
/// second batch, with `cpu` read before its first request and after its last answer. Fails on
/// the first request that does not come back 2xx.
pub async fn send(
    client: FloorClient,
    url: &str,
    body: Bytes,
    [warm_up, requests]: [u64; 2],
    in_flight: usize,
    cpu: impl Fn() -> Option<Duration>,
) -> Result<Sent> {
    let plan = Arc::new(Plan {
        warm_up,
        requests,
        warm: AtomicU64::new(0),
        measured: AtomicU64::new(0),
        barrier: tokio::sync::Barrier::new(in_flight + 1),
    });
    let uri: http::Uri = url.parse()?;
    let mut senders = tokio::task::JoinSet::new();
    if client == FloorClient::Hyper {
        let authority = uri.authority().context("the URL has no host")?.clone();
        let host = HeaderValue::from_str(authority.as_str())?;
        for _ in 0..in_flight {
            let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let turns = Turns::new(&plan);
            senders.spawn(hyper_loop(
                sender,
                uri.clone(),
                host.clone(),
                body.clone(),
                turns,
            ));
        }
    } else if let Some(reqwest) = client.reqwest()? {
        let url = reqwest::Url::parse(url)?;
        for _ in 0..in_flight {
            let turns = Turns::new(&plan);
            senders.spawn(reqwest_loop(
                reqwest.clone(),
                url.clone(),
                body.clone(),
                turns,
            ));
        }
    } else {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let pooled = PooledClient::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        for _ in 0..in_flight {
            let turns = Turns::new(&plan);
            senders.spawn(pooled_loop(
                pooled.clone(),
                uri.clone(),
                body.clone(),
                turns,
            ));
        }
    }
    // Every sender done with the warm-up (or one failed in it) ...
    tokio::select! {
        _ = plan.barrier.wait() => {}
        Some(ended) = senders.join_next() => {
            ended??;
            return Err(anyhow!("a sender ended in the warm-up"));
        }
    }
    let (started, cpu_before) = (Instant::now(), cpu());
    // ... then all of them go.
    plan.barrier.wait().await;
    while let Some(ended) = senders.join_next().await {
        ended??;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_before
        .zip(cpu())
        .and_then(|(before, after)| after.checked_sub(before));
    Ok(Sent { elapsed, cpu })
}

/// The requests the senders share out: the warm-up's, then the measured ones, with a barrier
/// (the senders and the caller) in between.
struct Plan {
    warm_up: u64,
    requests: u64,
    warm: AtomicU64,
    measured: AtomicU64,
    barrier: tokio::sync::Barrier,
}

/// One sender's view of the [`Plan`].
struct Turns {
    plan: Arc<Plan>,
    measuring: bool,
}

impl Turns {
    fn new(plan: &Arc<Plan>) -> Self {
        Self {
            plan: Arc::clone(plan),
            measuring: false,
        }
    }

    /// Whether to send one more request; between the warm-up and the measured requests it
    /// waits for every other sender and the caller.
    async fn next(&mut self) -> bool {
        let plan = &self.plan;
        if !self.measuring {
            if plan.warm.fetch_add(1, Ordering::Relaxed) < plan.warm_up {
                return true;
            }
            plan.barrier.wait().await;
            plan.barrier.wait().await;
            self.measuring = true;
        }
        plan.measured.fetch_add(1, Ordering::Relaxed) < plan.requests
    }
}

/// The headers `Deliverer::attempt` puts on a request: the destination's (none here), then
/// `webhook-id` and `content-type`.
fn headers() -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.reserve(4);
    headers.insert("webhook-id", HeaderValue::from_str(EVENT_ID)?);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(headers)
}

async fn reqwest_loop(
    client: reqwest::Client,
    url: reqwest::Url,
    body: Bytes,
    mut turns: Turns,
) -> Result<()> {
    while turns.next().await {
        let mut request = reqwest::Request::new(Method::POST, url.clone());
        *request.timeout_mut() = Some(TIMEOUT);
        *request.headers_mut() = headers()?;
        *request.body_mut() = Some(body.clone().into());
        let mut response = client.execute(request).await?.error_for_status()?;
        while response.chunk().await?.is_some() {}
    }
    Ok(())
}

async fn pooled_loop(
    client: PooledClient<HttpConnector, Full<Bytes>>,
    uri: http::Uri,
    body: Bytes,
    mut turns: Turns,
) -> Result<()> {
    while turns.next().await {
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers()?;
        tokio::time::timeout(TIMEOUT, async {
            let response = client.request(request).await?;
            answered(response).await
        })
        .await??;
    }
    Ok(())
}

async fn hyper_loop(
    mut sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    uri: http::Uri,
    host: HeaderValue,
    body: Bytes,
    mut turns: Turns,
) -> Result<()> {
    let path = uri.path_and_query().context("the URL has no path")?.clone();
    while turns.next().await {
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = path.clone().into();
        let mut headers = headers()?;
        headers.insert(HOST, host.clone());
        *request.headers_mut() = headers;
        tokio::time::timeout(TIMEOUT, async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            answered(response).await
        })
        .await??;
    }
    Ok(())
}

/// Reads `response`'s body to the end; an error unless it is 2xx.
async fn answered(response: http::Response<hyper::body::Incoming>) -> Result<()> {
    let status = response.status();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(anyhow!("the destination answered {status}"))
    }
}
