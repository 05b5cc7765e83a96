//! The TLS handshake of a connection on a listener with `tls`. It counts against the
//! connection's `header_read_timeout` (from the accept to the first request's head), so that a
//! client that stalls part-way through it holds its place no longer than a silent one; a
//! connection still in its handshake has had no request, so it is the first the table closes
//! to make room; once the listener stops it has [`FIRST_REQUEST_AT_STOP`] to finish, as a
//! connection with no request yet has to send one, and the end of the grace period closes it
//! in any case. A failed handshake is counted
//! (`webhook_connections_closed_total{reason="tls_handshake"}`) and logged at debug level.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::StopTokens;
use super::connection::FIRST_REQUEST_AT_STOP;
use super::connections::Slot;
use crate::metrics::ListenerMetrics;

/// The HTTP version ALPN agreed on for a TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Agreed {
    /// `http/1.1`.
    Http1,
    /// `h2`.
    Http2,
    /// None (a client that does not use ALPN): the version is told from the first bytes.
    Either,
}

/// Runs the TLS handshake of `stream` from `peer` (admitted as `slot`); the TLS stream and the
/// version ALPN agreed on, or `None` once the connection is closed.
pub(super) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    (slot, peer): (&Slot, SocketAddr),
    header_read_timeout: Duration,
    stop: &StopTokens,
    metrics: &ListenerMetrics,
) -> Option<(TlsStream<TcpStream>, Agreed)> {
    let deadline = crate::clock::after(slot.activity.accepted(), header_read_timeout);
    let stopped = async {
        stop.stop_accepting.cancelled().await;
        tokio::time::sleep(FIRST_REQUEST_AT_STOP).await;
    };
    tokio::select! {
        biased;
        () = stop.close_now.cancelled() => None,
        () = slot.activity.evicted() => None,
        () = stopped => None,
        () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
            metrics.closed_header_timeout.increment(1);
            tracing::debug!(%peer, "connection closed: TLS handshake not done within header_read_timeout");
            None
        }
        accepted = acceptor.accept(stream) => match accepted {
            Ok(stream) => {
                let agreed = match stream.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Agreed::Http2,
                    Some(b"http/1.1") => Agreed::Http1,
                    _ => Agreed::Either,
                };
                Some((stream, agreed))
            }
            Err(error) => {
                metrics.closed_tls_handshake.increment(1);
                tracing::debug!(%peer, %error, "TLS handshake failed");
                None
            }
        },
    }
}
