//! The HTTP listener loop shared by the ingress and admin listeners: accepts connections within
//! the listener's `max_connections` ([`connections`]), runs the TLS handshake on a listener
//! with `tls` ([`handshake`]), serves HTTP/1.1 and HTTP/2 on each (h2c by prior knowledge, or
//! as agreed by ALPN) with bounded buffers ([`protocol`]), caps the requests in flight on the
//! listener and per client ([`in_flight`]), closes silent and idle connections
//! ([`connection`]), drains open connections on shutdown (each HTTP/1 answer after the stop
//! says `Connection: close`) and closes those still open when told to. [`descriptors`] raises
//! the descriptor limit and sizes `max_connections` from it; [`settings`] gives each listener
//! its limits; [`sockets`] binds the listeners or takes those passed by the service manager
//! (socket activation).

mod connection;
mod connections;
pub mod descriptors;
mod handshake;
mod in_flight;
pub mod protocol;
pub mod settings;
pub mod sockets;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::allow_list::Peer;
use crate::reply::ResponseBody;
use connection::{Deadlines, drive};
use connections::Connections;
use handshake::{Agreed, handshake};
use in_flight::InFlightCaps;

pub use settings::{ListenerSettings, Listeners};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// When a listener stops.
#[derive(Debug, Clone, Default)]
pub struct StopTokens {
    /// Cancelled to stop accepting connections and let the open ones finish their requests.
    pub stop_accepting: CancellationToken,
    /// Cancelled to close the connections still open (the shutdown grace period is over).
    pub close_now: CancellationToken,
}

/// Serves `handler` (called with each request and where it came from) on `listener`
/// until `stop.stop_accepting` is cancelled, then waits for open connections to finish, or
/// closes them once `stop.close_now` is cancelled. The listener is shared so that a new run
/// (after a panic) serves the same socket.
pub async fn serve<H, F>(
    listener: Arc<TcpListener>,
    settings: ListenerSettings,
    stop: StopTokens,
    handler: H,
) where
    H: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let builders = Arc::new(protocol::builders(protocol::max_concurrent_streams(
        settings.max_requests_in_flight_per_client,
    )));
    let acceptor = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let table = Connections::new(settings.max_connections, settings.metrics.clone());
    let caps = InFlightCaps::new(
        settings.max_requests_in_flight,
        settings.metrics.busy.clone(),
        settings.max_requests_in_flight_per_client,
        settings.metrics.client_busy.clone(),
        &settings.trusted_proxies,
    );
    let deadlines = Deadlines {
        header_read_timeout: settings.header_read_timeout,
        idle_timeout: settings.idle_timeout,
    };
    let tasks = TaskTracker::new();
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
        let Some(slot) = table.admit() else {
            tracing::debug!(%peer, "connection refused: max_connections open, all busy");
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let handler = handler.clone();
        let activity = Arc::clone(&slot.activity);
        let caps = caps.clone();
        let in_flight = settings.metrics.requests_in_flight.clone();
        let stopping = stop.stop_accepting.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let request_guard = activity.begin(&in_flight);
            let http1 = request.version() < http::Version::HTTP_2;
            let stopping = stopping.clone();
            let mut client = None;
            // The handler's future (the ingress's whole state machine) is boxed once, here:
            // hyper moves the service's future into place for every request, and this block
            // would otherwise hold it twice (captured, then awaited), kilobytes each.
            let admitted = caps
                .enter(request.headers(), &mut client, peer.ip())
                .map(|permit| {
                    let handled = handler(request, Peer { addr: peer, client });
                    (permit, Box::pin(handled))
                });
            async move {
                let _request = request_guard;
                let mut response = match admitted {
                    Ok((_permit, response)) => response.await,
                    Err(refusal) => refusal.answer(),
                };
                // Once the listener stops, an HTTP/1 connection ends with the answer it is
                // sending (HTTP/2 gets its GOAWAY from the graceful shutdown).
                if http1 && stopping.is_cancelled() {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(response)
            }
        });
        let (builders, acceptor) = (Arc::clone(&builders), acceptor.clone());
        let (tokens, metrics) = (stop.clone(), settings.metrics.clone());
        tasks.spawn(async move {
            let Some(acceptor) = acceptor else {
                let connection = builders
                    .either
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                return drive(connection, slot, deadlines, tokens, metrics, peer).await;
            };
            let timeout = deadlines.header_read_timeout;
            let Some((stream, agreed)) =
                handshake(&acceptor, stream, (&slot, peer), timeout, &tokens, &metrics).await
            else {
                return;
            };
            let builder = match agreed {
                Agreed::Http1 => &builders.http1,
                Agreed::Http2 => &builders.http2,
                Agreed::Either => &builders.either,
            };
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            drive(connection, slot, deadlines, tokens, metrics, peer).await;
        });
    }
    drop(listener);
    // Every connection ends by itself or at `close_now`.
    tasks.close();
    tasks.wait().await;
}
