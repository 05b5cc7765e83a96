//! Reading request bodies within a size limit, a time limit and a minimum rate.
//!
//! The limit is enforced while the body streams in: reading stops at the first frame that
//! would cross it, so an oversized body is never held in memory (at most the limit plus one
//! frame is). Frames are copied, as they arrive, into one buffer that the caller sizes (from
//! `Content-Length`), so a held event costs one allocation of exactly its size, and the
//! connection's read buffer is free again at once.
//!
//! A body that trickles is cut off ([`Pace`]): after a grace period, each byte received buys
//! `1 / min_rate` seconds more, so a client that sends slower than `min_rate` loses its request
//! (and the place it holds) long before the whole-body timeout.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The body is larger than the limit.
    #[error("body exceeds the {limit}-byte limit")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client did not send the whole body in time.
    #[error("body not received within {0:?}")]
    Timeout(Duration),
    /// The body arrived slower than the minimum rate, after the grace period.
    #[error("body arrived slower than {min_rate} bytes/s")]
    TooSlow {
        /// The minimum rate, in bytes per second.
        min_rate: u64,
    },
    /// The connection failed or the body was malformed.
    #[error("could not read body: {0}")]
    Read(String),
}

/// Most bytes allocated for a body before any of it arrives, whatever its `Content-Length`
/// says: a declared length proves nothing until the bytes come.
pub const FIRST_CHUNK: usize = 16 * 1024;

/// How fast a body must arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The most time the whole body may take.
    pub timeout: Duration,
    /// The least rate, in bytes per second, once `grace` is over; 0 for none.
    pub min_rate: u64,
    /// How long a body may take before the rate counts.
    pub grace: Duration,
}

impl Pace {
    /// When reading must end, `received` bytes into a body begun at `started`: the timeout,
    /// or sooner, the grace plus `1 / min_rate` seconds per byte received. The second value
    /// says which.
    fn deadline(&self, started: Instant, received: usize) -> (Instant, BodyError) {
        let timeout = crate::clock::after(started, self.timeout);
        if self.min_rate == 0 {
            return (timeout, BodyError::Timeout(self.timeout));
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        let slow = crate::clock::after(started, self.grace.saturating_add(earned));
        if slow < timeout {
            (
                slow,
                BodyError::TooSlow {
                    min_rate: self.min_rate,
                },
            )
        } else {
            (timeout, BodyError::Timeout(self.timeout))
        }
    }
}

/// Reads `body` whole, failing fast once it exceeds `limit` bytes or arrives slower than
/// `pace` allows. The buffer starts at [`FIRST_CHUNK`] (or `declared`, if smaller) and grows as
/// data arrives, doubling what has arrived but never past `declared` while the body stays within it,
/// so memory follows the bytes received, not the bytes promised. It keeps `extra` bytes of room
/// after the body (where the caller puts the header values).
pub async fn read_body<B>(
    body: B,
    limit: usize,
    pace: Pace,
    declared: usize,
    extra: usize,
) -> Result<BytesMut, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let mut body = std::pin::pin!(body);
    let mut buffer = BytesMut::with_capacity(declared.min(FIRST_CHUNK).saturating_add(extra));
    loop {
        let (deadline, late) = pace.deadline(started, buffer.len());
        let next = tokio::time::timeout_at(deadline.into(), body.frame()).await;
        let Ok(next) = next else {
            return Err(late);
        };
        let Some(frame) = next else {
            return Ok(buffer);
        };
        let frame = frame.map_err(|error| BodyError::Read(error.into().to_string()))?;
        if let Ok(data) = frame.into_data() {
            if data.len() > limit - buffer.len() {
                return Err(BodyError::TooLarge { limit });
            }
            let needed = buffer.len() + data.len();
            if needed.saturating_add(extra) > buffer.capacity() {
                let target = if needed <= declared {
                    needed.saturating_mul(2).min(declared)
                } else {
                    needed.saturating_mul(2).min(limit)
                };
                // A new buffer of exactly the target (`reserve` may round up).
                let mut grown = BytesMut::with_capacity(target.saturating_add(extra));
                grown.extend_from_slice(&buffer);
                buffer = grown;
            }
            buffer.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::StreamBody;

    /// A pace no test body comes near.
    fn patient() -> Pace {
        Pace {
            timeout: Duration::from_secs(5),
            min_rate: 1,
            grace: Duration::from_secs(5),
        }
    }

    /// A body that sends one byte every `every`, `bytes` times.
    fn trickle(
        bytes: usize,
        every: Duration,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        StreamBody::new(futures_util::stream::unfold(0, move |sent| async move {
            if sent == bytes {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((
                Ok(http_body::Frame::data(Bytes::from_static(b"x"))),
                sent + 1,
            ))
        }))
    }

    #[tokio::test]
    async fn a_trickle_is_cut_off_after_the_grace_and_a_steady_body_is_not() {
        let pace = Pace {
            timeout: Duration::from_secs(10),
            min_rate: 100,
            grace: Duration::from_millis(200),
        };
        // 10 bytes/s against 100: cut off when the grace and the 10 ms each byte bought are
        // over, at about 220 ms.
        let started = Instant::now();
        let result = read_body(trickle(100, Duration::from_millis(100)), 1000, pace, 100, 0).await;
        assert_eq!(result, Err(BodyError::TooSlow { min_rate: 100 }));
        let took = started.elapsed();
        assert!(
            took >= pace.grace && took < Duration::from_secs(2),
            "{took:?}"
        );
        // 200 bytes/s for half a second: past the grace, never behind.
        let body = read_body(trickle(100, Duration::from_millis(5)), 1000, pace, 100, 0)
            .await
            .expect("a steady body is read");
        assert_eq!(body.len(), 100);
        // Without a minimum rate, only the timeout cuts a body off.
        let unpaced = Pace {
            timeout: Duration::from_millis(300),
            min_rate: 0,
            ..pace
        };
        let started = Instant::now();
        let result = read_body(
            trickle(100, Duration::from_millis(100)),
            1000,
            unpaced,
            100,
            0,
        )
        .await;
        assert_eq!(result, Err(BodyError::Timeout(Duration::from_millis(300))));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    /// A body of `frames` frames of 64 KiB that counts how many frames were pulled from it.
    fn counted_body(
        frames: usize,
        pulled: Arc<AtomicUsize>,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        StreamBody::new(futures_util::stream::iter((0..frames).map(move |_| {
            pulled.fetch_add(1, Ordering::SeqCst);
            Ok(http_body::Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
        })))
    }

    #[tokio::test]
    async fn oversized_body_stops_at_the_limit_without_reading_the_rest() {
        let pulled = Arc::new(AtomicUsize::new(0));
        // 32 frames of 64 KiB = 2 MiB, against a 1 MiB limit.
        let body = counted_body(32, Arc::clone(&pulled));
        let result = read_body(body, 1024 * 1024, patient(), 0, 0).await;
        assert_eq!(result, Err(BodyError::TooLarge { limit: 1024 * 1024 }));
        // 16 frames fill the limit exactly; the 17th crosses it and stops the read.
        assert_eq!(pulled.load(Ordering::SeqCst), 17);
    }

    #[tokio::test]
    async fn body_within_limit_is_returned_whole() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let body = counted_body(2, pulled);
        let bytes = read_body(body, 1024 * 1024, patient(), 128 * 1024, 10)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 128 * 1024);
        assert_eq!(
            bytes.capacity(),
            128 * 1024 + 10,
            "grown to the declared length, with the room asked for"
        );
    }

    #[tokio::test]
    async fn an_unproven_length_allocates_only_what_arrives() {
        let huge = 200 * 1024 * 1024;
        let body = http_body_util::Full::new(Bytes::from_static(b"ten bytes!"));
        let bytes = read_body(body, huge, patient(), huge, 100).await.unwrap();
        assert_eq!(&bytes[..], b"ten bytes!");
        assert!(
            bytes.capacity() <= FIRST_CHUNK + 100,
            "{}",
            bytes.capacity()
        );
        // A body that streams in grows the buffer to about twice what arrived, not to the
        // declared 200 MiB.
        let pulled = Arc::new(AtomicUsize::new(0));
        let bytes = read_body(counted_body(3, pulled), huge, patient(), huge, 0)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 3 * 64 * 1024);
        assert!(bytes.capacity() <= 2 * bytes.len(), "{}", bytes.capacity());
    }
}
