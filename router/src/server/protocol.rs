//! The HTTP/1.1 and HTTP/2 settings every connection is served with: the buffer and flow-control
//! limits that bound the body bytes a connection may hold before its requests read them (the
//! README's "Ingress limits" adds them up), the same whether the connection is plain or TLS.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// Largest read buffer of an HTTP/1 connection (hyper's default is ~400 KB), which also bounds a
/// request head. Large bodies stream through it in frames, each copied out at once, so a bigger
/// buffer saves no work; smaller buffers keep the transient allocations of every connection
/// under the allocator's mmap threshold, where they fragment the heap that held events live in.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Most HTTP/2 streams (requests) open at once on one connection; the client waits for one to
/// end before opening another. A listener with a per-client cap allows no more than the cap
/// ([`max_concurrent_streams`]): more streams at once could only get 503.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// HTTP/2 flow-control window of one stream: body bytes a client may send ahead of the
/// router reading them.
pub const STREAM_WINDOW_BYTES: u32 = 64 * 1024;
/// HTTP/2 flow-control window of a whole connection, shared by its streams: the most body bytes
/// one connection may have buffered, unread, at once.
pub const CONNECTION_WINDOW_BYTES: u32 = 128 * 1024;
/// Largest HTTP/2 request head (decoded header list), as for HTTP/1 (`READ_BUFFER_BYTES`).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// How often an HTTP/2 connection is pinged to notice a peer that has gone away.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// The HTTP/2 stream limit of a listener that lets one client have `per_client` requests in
/// flight (`None`: no per-client cap).
pub fn max_concurrent_streams(per_client: Option<usize>) -> u32 {
    per_client.map_or(MAX_CONCURRENT_STREAMS, |cap| {
        u32::try_from(cap).map_or(MAX_CONCURRENT_STREAMS, |cap| {
            cap.clamp(1, MAX_CONCURRENT_STREAMS)
        })
    })
}

/// A connection builder for HTTP/1.1 and h2c (prior knowledge) with the limits above and
/// `max_streams` HTTP/2 streams per connection. Timeouts are the connection task's
/// (`connection::drive`), not hyper's: hyper's HTTP/1 header read timeout runs between
/// keep-alive requests too, which would cut `idle_timeout` short, and it does not cover a
/// connection that has not yet sent enough bytes to choose a protocol.
pub fn builder(max_streams: u32) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(READ_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_concurrent_streams(max_streams)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .adaptive_window(false)
        .max_header_list_size(MAX_HEADER_LIST_BYTES);
    builder
}

/// A listener's connection builders, all with the same limits: one that tells the HTTP version
/// from a connection's first bytes (plain connections, and TLS ones whose client offered no
/// ALPN), and one for each version ALPN can agree on.
#[derive(Debug, Clone)]
pub struct Builders {
    /// HTTP/1.1 or HTTP/2 (prior knowledge), told from the first bytes.
    pub either: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 only (ALPN `http/1.1`).
    pub http1: auto::Builder<TokioExecutor>,
    /// HTTP/2 only (ALPN `h2`).
    pub http2: auto::Builder<TokioExecutor>,
}

/// The builders ([`builder`]) of a listener allowing `max_streams` HTTP/2 streams per
/// connection.
pub fn builders(max_streams: u32) -> Builders {
    let either = builder(max_streams);
    Builders {
        http1: either.clone().http1_only(),
        http2: either.clone().http2_only(),
        either,
    }
}
