//! A bare hyper server: the baseline the router's ingress is measured against.
//!
//! It does the least an ingress can do — accept the connection (HTTP/1.1 or h2c, through the
//! same hyper-util auto builder as the router), read the whole body, answer `202` with a small
//! JSON body — and nothing else: no routing, limits, queue, metrics or delivery.
//!
//! As a benchmark's destination it can also stamp when each numbered request
//! ([`crate::load::numbered_body`]) arrived, and run on a thread of its own, so that the CPU
//! time of the process around it can be told apart from its own; and speak only h2c, the
//! destination of a router delivering with `http2 = true`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::load::Stamps;

/// The body of every answer.
const ANSWER: &[u8] = br#"{"id":"x"}"#;

/// A running bare server on an ephemeral loopback port. Dropping it stops the server.
pub struct BareServer {
    addr: SocketAddr,
    counts: Arc<Counts>,
    server: Serving,
}

/// Where the server runs.
enum Serving {
    /// A task on the caller's runtime.
    Task(tokio::task::JoinHandle<()>),
    /// A single-threaded runtime on a thread of its own (its id), stopped through the sender.
    Thread {
        tid: Option<u32>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl std::fmt::Debug for BareServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BareServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        match &mut self.server {
            Serving::Task(task) => task.abort(),
            Serving::Thread { stop, thread, .. } => {
                drop(stop.take());
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

impl BareServer {
    /// Starts a bare server on `127.0.0.1:0` that answers every request with `202 {"id":"x"}`
    /// once it has read the request body.
    pub async fn start() -> std::io::Result<BareServer> {
        Self::start_with(None).await
    }

    /// Like [`BareServer::start`], and stamps in `arrivals` when each numbered request
    /// arrived (once its body was read).
    pub async fn start_recording(arrivals: Arc<Stamps>) -> std::io::Result<BareServer> {
        Self::start_with(Some(arrivals)).await
    }

    async fn start_with(arrivals: Option<Arc<Stamps>>) -> std::io::Result<BareServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            last_answer_ns: AtomicU64::new(0),
            arrivals,
        });
        let server = Serving::Task(tokio::spawn(serve(
            listener,
            Arc::clone(&counts),
            Protocols::Both,
        )));
        Ok(BareServer {
            addr,
            counts,
            server,
        })
    }

    /// Like [`BareServer::start`], on a single-threaded runtime on a thread of its own, whose
    /// CPU time [`BareServer::cpu_time`] reads: a destination whose cost can be subtracted from
    /// that of the process it shares with a router.
    pub fn start_dedicated() -> std::io::Result<BareServer> {
        Self::start_dedicated_speaking(Protocols::Both)
    }

    /// Like [`BareServer::start_dedicated`], speaking only HTTP/2 with prior knowledge (h2c):
    /// an HTTP/1.1 request fails its connection, so every request answered came over h2.
    pub fn start_dedicated_h2c() -> std::io::Result<BareServer> {
        Self::start_dedicated_speaking(Protocols::H2cOnly)
    }

    fn start_dedicated_speaking(protocols: Protocols) -> std::io::Result<BareServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            last_answer_ns: AtomicU64::new(0),
            arrivals: None,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, tid) = std::sync::mpsc::channel();
        let served = Arc::clone(&counts);
        let thread = std::thread::Builder::new()
            .name("bare-destination".into())
            .spawn(move || {
                let _ = started.send(crate::process_stats::current_thread_id());
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = serve(listener, served, protocols) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        let tid = tid.recv().ok().flatten();
        Ok(BareServer {
            addr,
            counts,
            server: Serving::Thread {
                tid,
                stop: Some(stop),
                thread: Some(thread),
            },
        })
    }

    /// The CPU time the server's own thread has used (only for [`BareServer::start_dedicated`]).
    pub fn cpu_time(&self) -> Option<std::time::Duration> {
        match &self.server {
            Serving::Thread { tid: Some(tid), .. } => crate::process_stats::thread_cpu_time(*tid),
            _ => None,
        }
    }

    /// The server's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// When the latest answer was made (to within a nanosecond), if any was.
    pub fn last_answer(&self) -> Option<Instant> {
        match self.counts.last_answer_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.counts.started + std::time::Duration::from_nanos(ns)),
        }
    }
}

/// What the server counts, shared by its connections.
struct Counts {
    started: Instant,
    requests: AtomicU64,
    /// Nanoseconds from `started` to the latest answer; 0 before the first.
    last_answer_ns: AtomicU64,
    /// Where numbered requests' arrivals are stamped, if anywhere.
    arrivals: Option<Arc<Stamps>>,
}

/// The HTTP versions the server speaks.
#[derive(Debug, Clone, Copy)]
enum Protocols {
    /// HTTP/1.1, or h2c for a client that opens with its preface.
    Both,
    /// h2c only.
    H2cOnly,
}

async fn serve(listener: TcpListener, counts: Arc<Counts>, protocols: Protocols) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Protocols::H2cOnly = protocols {
        builder = builder.http2_only();
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Like the router's listener.
        let _ = stream.set_nodelay(true);
        let counts = Arc::clone(&counts);
        let service = service_fn(move |request| {
            let counts = Arc::clone(&counts);
            async move { Ok::<_, Infallible>(answer(&counts, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn answer(counts: &Counts, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let status = match request.into_body().collect().await {
        Ok(body) => {
            if let Some(arrivals) = &counts.arrivals
                && let Some(seq) = crate::load::body_seq(&body.to_bytes())
            {
                arrivals.stamp(seq);
            }
            StatusCode::ACCEPTED
        }
        Err(_) => StatusCode::BAD_REQUEST,
    };
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let now = u64::try_from(counts.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    counts
        .last_answer_ns
        .fetch_max(now.max(1), Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
