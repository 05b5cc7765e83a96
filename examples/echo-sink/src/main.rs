//! `echo-sink [ADDR]`: answers 200 to every request and prints it (method, path, the
//! `webhook-id` and `content-type` headers, and the body) to stdout. Default address:
//! 127.0.0.1:9000, where `examples/quickstart.toml` delivers.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(text) => text
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => SocketAddr::from(([127, 0, 0, 1], 9000)),
    };
    let listener = TcpListener::bind(addr).await?;
    println!("echo-sink listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(|request| async { Ok::<_, Infallible>(echo(request).await) });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn echo(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    println!(
        "echo-sink: {} {} webhook-id={} content-type={}\n  {}",
        parts.method,
        parts.uri.path(),
        header("webhook-id"),
        header("content-type"),
        String::from_utf8_lossy(&body)
    );
    Response::new(Full::new(Bytes::from_static(b"ok\n")))
}
