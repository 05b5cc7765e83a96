//! One connection's task: runs the HTTP connection until it ends, and closes it when it has
//! sent no request within `header_read_timeout` of its accept (a silent socket, one stuck
//! part-way through the HTTP/2 preface while the protocol is being detected, or one whose TLS
//! handshake took most of that time: see `handshake`), when it has had
//! no request in flight for `idle_timeout` (gracefully: HTTP/2 gets a GOAWAY), when the table
//! evicts it to make room, and on shutdown: gracefully when the listener stops accepting (one
//! accepted just before, with no request yet, first gets [`FIRST_REQUEST_AT_STOP`] to send it),
//! at once when the grace period is over.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulConnection;

use super::StopTokens;
use super::connections::Slot;
use crate::metrics::ListenerMetrics;

/// How long a connection accepted just before the listener stopped, with no request yet, has to
/// send its first one before it is closed: its client sent it already or is about to (it arrives
/// a round trip after the accept), and closing the connection under it would refuse it while the
/// next process (socket activation) would have served it. The answer to that request says
/// `Connection: close` (see [`super::serve`]), so the connection ends with it.
pub(super) const FIRST_REQUEST_AT_STOP: Duration = Duration::from_millis(250);

/// The timeouts a connection's task enforces.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    /// From the accept to the first request's head, and from an idle close to the end.
    pub(super) header_read_timeout: Duration,
    /// From the end of the last request to a graceful close.
    pub(super) idle_timeout: Duration,
}

/// Why a connection's task closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The connection ended by itself (the client closed it, or a graceful close finished).
    Ended,
    /// No request within `header_read_timeout` of the accept.
    NoRequest,
    /// An idle close that the client did not complete in time.
    IdleUnfinished,
    /// Evicted from the table to make room.
    Evicted,
    /// The shutdown grace period is over.
    GraceOver,
}

/// Runs `connection` from `peer` until it ends or is closed (see the module doc); `slot` is
/// its place in the listener's table, given back at the end.
pub(super) async fn drive<C>(
    connection: C,
    slot: Slot,
    deadlines: Deadlines,
    stop: StopTokens,
    metrics: ListenerMetrics,
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: Display,
{
    let activity = &slot.activity;
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    // Set while a connection with no request yet waits for its first one at the stop.
    let mut first_request_by: Option<Instant> = None;
    let mut closing_since: Option<Instant> = None;
    let close = loop {
        let wake = next_check(&slot, deadlines, closing_since);
        tokio::select! {
            biased;
            () = stop.close_now.cancelled() => break Close::GraceOver,
            () = activity.evicted() => break Close::Evicted,
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                break Close::Ended;
            }
            () = stop.stop_accepting.cancelled(), if !draining => {
                draining = true;
                if activity.served() {
                    connection.as_mut().graceful_shutdown();
                } else {
                    let by = crate::clock::after(Instant::now(), FIRST_REQUEST_AT_STOP);
                    first_request_by = Some(by);
                }
            }
            () = sleep_until_some(first_request_by), if first_request_by.is_some() => {
                first_request_by = None;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                if activity.in_flight() > 0 || Instant::now() < wake {
                    continue;
                }
                if !activity.served() {
                    metrics.closed_header_timeout.increment(1);
                    break Close::NoRequest;
                }
                if closing_since.is_some() {
                    break Close::IdleUnfinished;
                }
                if next_check(&slot, deadlines, None) <= Instant::now() {
                    metrics.closed_idle.increment(1);
                    closing_since = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    };
    if close != Close::Ended {
        tracing::debug!(%peer, ?close, "connection closed");
    }
}

/// Sleeps until `at`, or forever when it is `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// When the task next looks at the connection: the first-request deadline until a request
/// arrives, the idle deadline while none is in flight, a graceful close's deadline once one
/// began, and an `idle_timeout` from now while a request is in flight.
fn next_check(slot: &Slot, deadlines: Deadlines, closing_since: Option<Instant>) -> Instant {
    let activity = &slot.activity;
    let after = crate::clock::after;
    if activity.in_flight() > 0 {
        return after(Instant::now(), deadlines.idle_timeout);
    }
    if let Some(since) = closing_since {
        return after(since, deadlines.header_read_timeout);
    }
    if !activity.served() {
        return after(activity.accepted(), deadlines.header_read_timeout);
    }
    after(activity.idle_since(), deadlines.idle_timeout)
}
