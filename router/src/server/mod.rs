//! The HTTP listener loop shared by the ingress and admin listeners: accepts connections,
//! serves HTTP/1.1 and h2c (prior knowledge) on each, enforces the header read timeout, drains
//! open connections on shutdown and closes those still open when told to.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::reply::ResponseBody;

/// Largest read buffer of an HTTP/1 connection (hyper's default is ~400 KB), which also bounds a
/// request head. Large bodies stream through it in frames, each copied out at once, so a bigger
/// buffer saves no work; smaller buffers keep the transient allocations of every connection
/// under the allocator's mmap threshold, where they fragment the heap that held events live in.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Listener settings.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSettings {
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
}

/// When a listener stops.
#[derive(Debug, Clone, Default)]
pub struct StopTokens {
    /// Cancelled to stop accepting connections and let the open ones finish their requests.
    pub stop_accepting: CancellationToken,
    /// Cancelled to close the connections still open (the shutdown grace period is over).
    pub close_now: CancellationToken,
}

/// Serves `handler` (called with each request and its connection's TCP peer) on `listener`
/// until `stop.stop_accepting` is cancelled, then waits for open connections to finish, or
/// closes them once `stop.close_now` is cancelled. The listener is shared so that a new run
/// (after a panic) serves the same socket.
pub async fn serve<H, F>(
    listener: Arc<TcpListener>,
    settings: ListenerSettings,
    stop: StopTokens,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(READ_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            () = stop.stop_accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let handler = handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = handler(request, peer);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let close_now = stop.close_now.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                },
                () = close_now.cancelled() => {
                    tracing::debug!(%peer, "connection closed: the shutdown grace period is over");
                }
            }
        });
    }
    drop(listener);
    // Every connection ends by itself or at `close_now`.
    graceful.shutdown().await;
}
