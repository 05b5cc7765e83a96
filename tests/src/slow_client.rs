//! Clients that send their request head and then trickle the body, from a chosen loopback
//! address (Linux routes all of 127.0.0.0/8 to the loopback interface, so each address is a
//! different client to the router): raw HTTP/1.1 connections, and h2c streams on connections
//! opened with prior knowledge.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpSocket, TcpStream};

/// A request body that trickles ([`trickle_body`]).
pub type TrickleBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Connects to `to` from `source` (an address of this host, e.g. `127.0.0.2`).
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens an HTTP/1.1 connection from `source` to `to` and sends the head of a POST to `path`
/// with `headers`, declaring `declared` body bytes, then one byte of body at once and one more
/// every `every` (on a task of its own, until the connection fails). Returns the connection's
/// read half, for the answer.
pub async fn trickle_http1(
    source: IpAddr,
    to: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    declared: u64,
    every: Duration,
) -> std::io::Result<OwnedReadHalf> {
    let stream = connect_from(source, to).await?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {to}\r\ncontent-type: application/json\r\n\
         content-length: {declared}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n{");
    let (read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await?;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    Ok(read)
}

/// Reads the status code of the answer on `stream` (the first line is enough).
pub async fn read_status(stream: &mut OwnedReadHalf) -> std::io::Result<u16> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 512];
    while !buffer.windows(2).any(|w| w == b"\r\n") {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let line = String::from_utf8_lossy(&buffer);
    line.get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP/1.1 answer: {line:?}")))
}

/// Opens an h2c (prior knowledge) connection from `source` to `to`; the connection runs on
/// its own task until every sender is dropped.
pub async fn h2c_from(source: IpAddr, to: SocketAddr) -> std::io::Result<SendRequest<TrickleBody>> {
    let stream = connect_from(source, to).await?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A body that sends `{` at once and one more byte every `every`, never ending.
pub fn trickle_body(every: Duration) -> TrickleBody {
    let bytes = futures_util::stream::unfold(true, move |first| async move {
        if !first {
            tokio::time::sleep(every).await;
        }
        let byte = if first { &b"{"[..] } else { &b" "[..] };
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(byte))),
            false,
        ))
    });
    StreamBody::new(bytes).boxed()
}

/// Sends a POST to `path` with `headers` on `sender`, declaring `declared` body bytes and
/// trickling one every `every` ([`trickle_body`]); the status of the answer.
pub async fn trickle_h2(
    sender: &mut SendRequest<TrickleBody>,
    to: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    declared: u64,
    every: Duration,
) -> Result<u16, hyper::Error> {
    let mut request = http::Request::post(format!("http://{to}{path}"))
        .header("content-type", "application/json")
        .header("content-length", declared);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(trickle_body(every)).expect("a valid request");
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // The answer's body is short; reading it ends the stream on this side.
    let _ = response.into_body().collect().await;
    Ok(status)
}
