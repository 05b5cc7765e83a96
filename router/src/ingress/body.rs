//! Reading request bodies within a size limit and a time limit.
//!
//! The limit is enforced while the body streams in: reading stops at the first frame that
//! would cross it, so an oversized body is never held in memory (at most the limit plus one
//! frame is). Frames are copied, as they arrive, into one buffer that the caller sizes (from
//! `Content-Length`), so a held event costs one allocation of exactly its size, and the
//! connection's read buffer is free again at once.

use std::time::Duration;

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
    /// The connection failed or the body was malformed.
    #[error("could not read body: {0}")]
    Read(String),
}

/// Most bytes allocated for a body before any of it arrives, whatever its `Content-Length`
/// says: a declared length proves nothing until the bytes come.
pub const FIRST_CHUNK: usize = 16 * 1024;

/// Reads `body` whole, failing fast once it exceeds `limit` bytes or takes longer than
/// `timeout`. The buffer starts at [`FIRST_CHUNK`] (or `declared`, if smaller) and grows as data
/// arrives, doubling what has arrived but never past `declared` while the body stays within it,
/// so memory follows the bytes received, not the bytes promised. It keeps `extra` bytes of room
/// after the body (where the caller puts the header values).
pub async fn read_body<B>(
    body: B,
    limit: usize,
    timeout: Duration,
    declared: usize,
    extra: usize,
) -> Result<BytesMut, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut buffer = BytesMut::with_capacity(declared.min(FIRST_CHUNK).saturating_add(extra));
        while let Some(frame) = body.frame().await {
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
        Ok(buffer)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::Timeout(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::StreamBody;

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
        let result = read_body(body, 1024 * 1024, Duration::from_secs(5), 0, 0).await;
        assert_eq!(result, Err(BodyError::TooLarge { limit: 1024 * 1024 }));
        // 16 frames fill the limit exactly; the 17th crosses it and stops the read.
        assert_eq!(pulled.load(Ordering::SeqCst), 17);
    }

    #[tokio::test]
    async fn body_within_limit_is_returned_whole() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let body = counted_body(2, pulled);
        let bytes = read_body(body, 1024 * 1024, Duration::from_secs(5), 128 * 1024, 10)
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
        let bytes = read_body(body, huge, Duration::from_secs(5), huge, 100)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"ten bytes!");
        assert!(
            bytes.capacity() <= FIRST_CHUNK + 100,
            "{}",
            bytes.capacity()
        );
        // A body that streams in grows the buffer to about twice what arrived, not to the
        // declared 200 MiB.
        let pulled = Arc::new(AtomicUsize::new(0));
        let bytes = read_body(
            counted_body(3, pulled),
            huge,
            Duration::from_secs(5),
            huge,
            0,
        )
        .await
        .unwrap();
        assert_eq!(bytes.len(), 3 * 64 * 1024);
        assert!(bytes.capacity() <= 2 * bytes.len(), "{}", bytes.capacity());
    }
}
