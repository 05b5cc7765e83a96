//! A loopback HTTP sink: a real hyper server on an ephemeral port that records every request
//! (and when it arrived) and answers as a test script says (status, headers, delay, or never);
//! plain, or over TLS (rustls) for destinations with a private CA and a client certificate;
//! HTTP/1.1 and h2 as the client chooses, or h2 only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How the sink answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status to answer with.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering; `None` answers at once.
    pub delay: Option<Duration>,
}

impl Reply {
    /// Answer `status` at once.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: None,
        }
    }

    /// Answer 200 at once.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Never answer (well, not within any test's patience).
    pub fn hang() -> Self {
        Self {
            delay: Some(Duration::from_secs(3600)),
            ..Self::ok()
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// 1-based number of the request, in arrival order.
    pub number: usize,
    /// Request path.
    pub path: String,
    /// The HTTP version it came over.
    pub version: hyper::Version,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// The status the sink answered (or was going to answer).
    pub status: u16,
}

/// How the sink answers: from the request's number (1-based, in arrival order), its body, and
/// how many times that same body has arrived (1 for the first).
type Script = dyn Fn(usize, &[u8], usize) -> Reply + Send + Sync;

struct State {
    script: Box<Script>,
    count: AtomicUsize,
    /// Connections accepted (TCP), TLS handshake or not.
    connections: AtomicUsize,
    received: Mutex<Vec<Received>>,
    changed: Notify,
}

impl State {
    fn new(script: Box<Script>) -> Arc<State> {
        Arc::new(State {
            script,
            count: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }
}

/// A running sink. Dropping it stops the server.
pub struct Sink {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    server: tokio::task::AbortHandle,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Sink {
    /// A sink that answers 200 to everything.
    pub async fn healthy() -> Sink {
        Self::start(|_| Reply::ok()).await
    }

    /// A sink whose answer to the n-th request (1-based) is `script(n)`.
    pub async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Sink {
        Self::start_scripted(Box::new(move |n, _, _| script(n))).await
    }

    /// A sink whose answer depends on the request's body and on which attempt at that body it
    /// is: `script(body, attempt)`, `attempt` 1 for the first time a body arrives. Unlike
    /// arrival numbers, this does not depend on how the router interleaves its attempts.
    pub async fn start_per_body(
        script: impl Fn(&[u8], usize) -> Reply + Send + Sync + 'static,
    ) -> Sink {
        Self::start_scripted(Box::new(move |_, body, attempt| script(body, attempt))).await
    }

    /// A sink that answers 503 to a random `share` of all requests (0.2: one in five) and 200
    /// to the rest.
    pub async fn failing_at_random(share: f64) -> Sink {
        Self::start(move |_| {
            if fastrand::f64() < share {
                Reply::status(503)
            } else {
                Reply::ok()
            }
        })
        .await
    }

    /// A sink that fails (500) every attempt at a body containing `dead` and the first at one
    /// containing `retried`, takes everything else, and fails everything while `healthy` is
    /// false: a delivered, a retried and a dead-lettered event by what their bodies say.
    pub async fn start_by_word(healthy: Arc<AtomicBool>) -> Sink {
        Self::start_per_body(move |body, attempt| {
            let has = |word: &[u8]| body.windows(word.len()).any(|w| w == word);
            if !healthy.load(Ordering::SeqCst) || has(b"dead") || (has(b"retried") && attempt == 1)
            {
                Reply::status(500)
            } else {
                Reply::ok()
            }
        })
        .await
    }

    /// A sink answering 200 to everything on `listener`, for a destination that comes up on a
    /// port the router was already sending to. It runs on a thread and runtime of its own, so
    /// that the arrival times it records are not delayed by the work of an in-process router.
    pub async fn healthy_on(listener: std::net::TcpListener) -> Sink {
        let addr = listener.local_addr().expect("sink address");
        let state = State::new(Box::new(|_, _, _| Reply::ok()));
        let (sender, server) = tokio::sync::oneshot::channel();
        let serving = Arc::clone(&state);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("sink runtime");
            runtime.block_on(async move {
                listener
                    .set_nonblocking(true)
                    .expect("non-blocking listener");
                let listener = TcpListener::from_std(listener).expect("sink listener");
                let task = tokio::spawn(serve(listener, None, false, serving));
                let _ = sender.send(task.abort_handle());
                // Ends when the sink is dropped (aborted), and the runtime with it.
                let _ = task.await;
            });
        });
        Sink {
            addr,
            scheme: "http",
            state,
            server: server.await.expect("the sink thread starts"),
        }
    }

    /// A sink that answers 200 to everything, over TLS with `tls` (which may require a client
    /// certificate: see `certs::TestCerts::sink_config`).
    pub async fn healthy_tls(tls: Arc<rustls::ServerConfig>) -> Sink {
        Self::start_on(Box::new(|_, _, _| Reply::ok()), Some(tls), false).await
    }

    /// A sink that speaks only HTTP/2 (h2c from the first byte, or over TLS with `tls`, whose
    /// ALPN should offer `h2`) and answers the n-th request `script(n)`: an HTTP/1.1 request
    /// fails its connection.
    pub async fn http2_only(
        tls: Option<Arc<rustls::ServerConfig>>,
        script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> Sink {
        Self::start_on(Box::new(move |n, _, _| script(n)), tls, true).await
    }

    async fn start_scripted(script: Box<Script>) -> Sink {
        Self::start_on(script, None, false).await
    }

    async fn start_on(
        script: Box<Script>,
        tls: Option<Arc<rustls::ServerConfig>>,
        http2_only: bool,
    ) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        let state = State::new(script);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        let server =
            tokio::spawn(serve(listener, tls, http2_only, Arc::clone(&state))).abort_handle();
        Sink {
            addr,
            scheme,
            state,
            server,
        }
    }

    /// The sink's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The sink's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.received.lock().expect("sink lock").clone()
    }

    /// Requests answered with a 2xx: the deliveries that succeeded.
    pub fn delivered(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Waits until `count` requests match `filter`, or `timeout` passes; returns the matches.
    pub async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
        filter: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.state.changed.notified();
            let matching: Vec<Received> = self.requests().into_iter().filter(&filter).collect();
            if matching.len() >= count || tokio::time::Instant::now() >= deadline {
                return matching;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    /// Waits until `count` deliveries (2xx answers) arrived, or `timeout` passes.
    pub async fn wait_for_delivered(&self, count: usize, timeout: Duration) -> Vec<Received> {
        self.wait_for(count, timeout, |r| (200..300).contains(&r.status))
            .await
    }
}

/// How many of `requests` arrived in each second since `since` (by the sink's clock): index 0
/// counts those in the first second. Requests before `since` are not counted.
pub fn arrivals_per_second<'a>(
    requests: impl IntoIterator<Item = &'a Received>,
    since: Instant,
) -> Vec<usize> {
    let mut seconds = Vec::new();
    for request in requests {
        let Some(after) = request.at.checked_duration_since(since) else {
            continue;
        };
        let second = usize::try_from(after.as_secs()).expect("seconds fit");
        if seconds.len() <= second {
            seconds.resize(second + 1, 0);
        }
        seconds[second] += 1;
    }
    seconds
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http2_only: bool,
    state: Arc<State>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&state, request).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            if http2_only {
                builder = builder.http2_only();
            }
            match tls {
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                // A client the TLS config refuses (no certificate, say) never gets a request
                // through.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
    }
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let number = state.count.fetch_add(1, Ordering::SeqCst) + 1;
    let reply;
    {
        let mut received = state.received.lock().expect("sink lock");
        let attempt = 1 + received.iter().filter(|r| r.body == body).count();
        reply = (state.script)(number, &body, attempt);
        received.push(Received {
            number,
            path: parts.uri.path().to_owned(),
            version: parts.version,
            headers: parts.headers,
            body,
            at: Instant::now(),
            status: reply.status,
        });
    }
    state.changed.notify_waiters();
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("valid status");
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    response
}
