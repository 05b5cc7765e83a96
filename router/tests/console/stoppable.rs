//! A destination that can be stopped and started again on the same port: a loopback hyper
//! server answering 200 and counting what it received. Stopping it closes its listener and
//! every connection, as a destination that goes down does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The server; [`Stoppable::stop`] and [`Stoppable::start`] take it down and up.
pub struct Stoppable {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    tasks: Option<JoinSet<()>>,
}

impl Stoppable {
    /// A running server on a free port.
    pub async fn new() -> Stoppable {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut server = Stoppable {
            addr: listener.local_addr().expect("address"),
            received: Arc::default(),
            tasks: None,
        };
        server.serve(listener);
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}/in", self.addr)
    }

    /// Requests received (all answered 200).
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection.
    pub fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
        }
    }

    /// Listens again on the same port.
    pub async fn start(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the same port");
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let received = Arc::clone(&self.received);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let received = Arc::clone(&received);
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let received = Arc::clone(&received);
                    async move {
                        let _ = request.into_body().collect().await;
                        received.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::new(),
                        )))
                    }
                });
                // Connections live in this task's set: aborting the task drops them all.
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        self.tasks = Some(tasks);
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        self.stop();
    }
}
