//! An in-process HTTP/1.1 load generator for what wrk cannot do: send an exact number of
//! requests (to hold that many events in the router), or send at a fixed rate and remember
//! when each request left (for ingest → delivery latency).
//!
//! Request bodies carry a sequence number at a fixed place ([`numbered_body`]), so a
//! destination can say which request it received ([`body_seq`]) and stamp its arrival in a
//! [`Stamps`] shared with the generator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: a loopback address, a path and extra headers.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path, e.g. `/hooks/bench`.
    pub path: String,
    /// Headers sent besides `Host` and `Content-Type: application/json`.
    pub headers: HeaderMap,
}

/// How a batch of requests was answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    /// Answered `202 Accepted`.
    pub accepted: u64,
    /// Answered with any other status.
    pub other: u64,
}

impl Answers {
    fn add(&mut self, other: Answers) {
        self.accepted += other.accepted;
        self.other += other.other;
    }

    fn count(&mut self, status: StatusCode) {
        if status == StatusCode::ACCEPTED {
            self.accepted += 1;
        } else {
            self.other += 1;
        }
    }
}

/// Sends `count` POSTs of `body` over `connections` keep-alive connections, each connection
/// waiting for an answer before sending its next request.
pub async fn send_count(
    target: &Target,
    body: Bytes,
    count: u64,
    connections: usize,
) -> Result<Answers> {
    ensure!(connections > 0, "need at least one connection");
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (target, body, next) = (target.clone(), body.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            let mut sender = connect(target.addr).await?;
            let mut answers = Answers::default();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                answers.count(post(&mut sender, &target, body.clone()).await?);
            }
            anyhow::Ok(answers)
        });
    }
    join_answers(tasks).await
}

/// Sends `count` POSTs at `rate` per second, spread over `connections` keep-alive
/// connections: request `seq` is due at `sent.epoch() + seq / rate` and carries
/// [`numbered_body`]`(seq, body_bytes)`. The moment each request leaves is stamped in `sent`.
///
/// The schedule does not wait for answers, except that one connection sends one request at a
/// time: give it enough connections that each is idle most of the time.
pub async fn send_paced(
    target: &Target,
    rate: f64,
    count: u64,
    connections: usize,
    body_bytes: usize,
    sent: Arc<Stamps>,
) -> Result<Answers> {
    ensure!(connections > 0, "need at least one connection");
    ensure!(rate > 0.0, "the rate must be positive");
    ensure!(
        sent.len() as u64 >= count,
        "the stamps hold fewer than {count} requests"
    );
    let mut tasks = tokio::task::JoinSet::new();
    for first in 0..connections as u64 {
        let (target, sent) = (target.clone(), Arc::clone(&sent));
        tasks.spawn(async move {
            let mut sender = connect(target.addr).await?;
            let mut answers = Answers::default();
            let mut seq = first;
            while seq < count {
                let due = sent.epoch() + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let body = numbered_body(seq, body_bytes);
                sent.stamp(seq);
                answers.count(post(&mut sender, &target, body).await?);
                seq += connections as u64;
            }
            anyhow::Ok(answers)
        });
    }
    join_answers(tasks).await
}

async fn join_answers(mut tasks: tokio::task::JoinSet<Result<Answers>>) -> Result<Answers> {
    let mut total = Answers::default();
    while let Some(joined) = tasks.join_next().await {
        total.add(joined.context("a load connection panicked")??);
    }
    Ok(total)
}

/// Opens an HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake failed")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// POSTs `body` to `target` and reads the whole answer.
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    body: Bytes,
) -> Result<StatusCode> {
    sender.ready().await.context("connection closed")?;
    let mut request = Request::post(target.path.as_str()).body(Full::new(body))?;
    let headers = request.headers_mut();
    headers.insert(HOST, HeaderValue::from_str(&target.addr.to_string())?);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.extend(target.headers.clone());
    let response = sender
        .send_request(request)
        .await
        .context("request failed")?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .context("cannot read the answer")?;
    Ok(status)
}

/// Where the sequence number sits in a [`numbered_body`]: `{"seq":"` then ten digits.
const SEQ_DIGITS: std::ops::Range<usize> = 8..18;

/// A JSON object of exactly `bytes` bytes (at least 30) that carries `seq`:
/// `{"seq":"0000000042","pad":"xxxx…"}`.
pub fn numbered_body(seq: u64, bytes: usize) -> Bytes {
    let head = format!(r#"{{"seq":"{seq:010}","pad":""#);
    let pad = bytes.saturating_sub(head.len() + 2);
    let mut body = Vec::with_capacity(head.len() + pad + 2);
    body.extend_from_slice(head.as_bytes());
    body.resize(body.len() + pad, b'x');
    body.extend_from_slice(b"\"}");
    Bytes::from(body)
}

/// The sequence number of a [`numbered_body`], if `body` is one.
pub fn body_seq(body: &[u8]) -> Option<u64> {
    let digits = body.get(SEQ_DIGITS)?;
    if !body.starts_with(br#"{"seq":""#) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One moment per request, by sequence number, as nanoseconds from a shared epoch; lock-free,
/// so a server's connections and the generator can stamp concurrently.
#[derive(Debug)]
pub struct Stamps {
    epoch: Instant,
    /// Nanoseconds after `epoch`, plus one; 0 until stamped.
    at: Vec<AtomicU64>,
}

impl Stamps {
    /// Room for `count` stamps, measured from `epoch`.
    pub fn new(epoch: Instant, count: usize) -> Stamps {
        Stamps {
            epoch,
            at: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The moment stamps are measured from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// How many stamps fit.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no stamp fits.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Records now for `seq` (the first stamp wins; out-of-range numbers are ignored).
    pub fn stamp(&self, seq: u64) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        if let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.at.get(i)) {
            let _ = slot.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// When `seq` was stamped, from the epoch.
    pub fn get(&self, seq: usize) -> Option<Duration> {
        match self.at.get(seq)?.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns - 1)),
        }
    }

    /// For every request stamped in both `self` (sent) and `arrived`, the time between.
    pub fn latencies(&self, arrived: &Stamps) -> Vec<Duration> {
        let shift = arrived.epoch.saturating_duration_since(self.epoch);
        (0..self.len())
            .filter_map(|seq| (arrived.get(seq)? + shift).checked_sub(self.get(seq)?))
            .collect()
    }
}

/// The `q`-quantile (0.0..=1.0) of `values`, which it sorts.
pub fn quantile(values: &mut [Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_bodies_are_json_of_the_asked_size() {
        for bytes in [30, 1024, 65_536] {
            let body = numbered_body(42, bytes);
            assert_eq!(body.len(), bytes);
            let json: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(json["seq"], "0000000042");
            assert_eq!(body_seq(&body), Some(42));
        }
        assert_eq!(body_seq(br#"{"pad":"0000000042xxxxxxxx"}"#), None);
        assert_eq!(body_seq(b"{}"), None);
    }

    #[test]
    fn stamps_pair_up_into_latencies() {
        let epoch = Instant::now();
        let (sent, arrived) = (Stamps::new(epoch, 3), Stamps::new(epoch, 3));
        sent.stamp(0);
        sent.stamp(1);
        std::thread::sleep(Duration::from_millis(5));
        arrived.stamp(1);
        arrived.stamp(2);
        arrived.stamp(99);
        let latencies = sent.latencies(&arrived);
        assert_eq!(
            latencies.len(),
            1,
            "only request 1 was both sent and received"
        );
        assert!(latencies[0] >= Duration::from_millis(5));
        let mut values = vec![Duration::from_millis(3), Duration::from_millis(1)];
        assert_eq!(quantile(&mut values, 0.5), Some(Duration::from_millis(3)));
        assert_eq!(quantile(&mut [], 0.5), None);
    }
}
