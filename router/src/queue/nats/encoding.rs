//! How an event is written into a NATS message, and read back: the payload is the journal's
//! record encoding ([`codec`]: postcard metadata, then the body), and the message's
//! `Webhook-Router-Encoding` header says which version of it.
//!
//! Version 1 is the layout the first NATS releases wrote without a header: a message without
//! the header (written by a router from before the header) reads as version 1, so a rolling
//! upgrade loses nothing; an older router ignores the header and reads a version-1 message as
//! before. Version 2 adds the codec's extension after the body (the order key); it is written
//! only for an event that has one, so an unordered event is still version 1, readable by every
//! router. A message of a version this router does not know (written by a newer router) is an
//! error that names the version: the queue makes it a dead letter holding the raw bytes.

use bytes::Bytes;

use crate::event::Event;
use crate::journal::codec::{self, CodecError};

/// The header naming the payload's encoding version.
pub const HEADER: &str = "Webhook-Router-Encoding";
/// The version this router writes for an event without extension fields (and what a message
/// without the header is).
pub const VERSION: &str = "1";
/// The version this router writes for an event with extension fields (an order key).
pub const VERSION_EXTENDED: &str = "2";
/// The versions this router reads (besides messages without the header, read as version 1).
const KNOWN: &[&str] = &[VERSION, VERSION_EXTENDED];

/// Why a message does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Its encoding version is not one this router knows.
    #[error(
        "its encoding version {found:?} (header {HEADER}) is unknown to this router, which \
         reads version {VERSION} and messages without the header (was it written by a newer \
         router?)"
    )]
    UnknownVersion {
        /// The version the message names.
        found: String,
    },
    /// Its version is known, but the payload does not read as that version.
    #[error("its payload does not read as encoding version {version}: {cause}")]
    Malformed {
        /// The version it was read as.
        version: String,
        /// What went wrong.
        cause: CodecError,
    },
}

/// The encoding version of `event`'s messages, for [`HEADER`].
pub fn version(event: &Event) -> &'static str {
    if codec::extended(event) {
        VERSION_EXTENDED
    } else {
        VERSION
    }
}

/// The payload of `event`'s messages (the version goes in [`HEADER`]: [`version`]).
pub fn encode(event: &Event) -> Bytes {
    let mut payload = Vec::with_capacity(event.body.len() + 256);
    codec::encode(&(), event, &mut payload);
    Bytes::from(payload)
}

/// Reads a message's event, given its headers (if any) and payload.
pub fn decode(
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Result<Event, DecodeError> {
    let version = headers
        .and_then(|headers| headers.get(HEADER))
        .map_or(VERSION, |value| value.as_str());
    if !KNOWN.contains(&version) {
        return Err(DecodeError::UnknownVersion {
            found: version.to_owned(),
        });
    }
    let malformed = |cause| DecodeError::Malformed {
        version: version.to_owned(),
        cause,
    };
    let ((), event) = codec::decode::<()>(payload).map_err(malformed)?;
    if version == VERSION && codec::extended(&event) {
        return Err(malformed(CodecError::new(
            "an extension after the body, which version 1 does not have",
        )));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn event() -> Event {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", http::HeaderValue::from_static("text/plain"));
        Event {
            id: "evt-1".into(),
            route: "hooks".into(),
            method: http::Method::POST,
            path: "/hooks".into(),
            query: "a=1".into(),
            headers,
            body: Bytes::from_static(b"hello"),
            received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            plugin_headers: None,
            order_key: None,
            trace: None,
        }
    }

    fn versioned(version: &str) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HEADER, version);
        headers
    }

    fn same(a: &Event, b: &Event) -> bool {
        (
            &a.id, &a.route, &a.method, &a.path, &a.query, &a.headers, &a.body,
        ) == (
            &b.id, &b.route, &b.method, &b.path, &b.query, &b.headers, &b.body,
        ) && a.received_at == b.received_at
    }

    #[test]
    fn an_event_round_trips_with_its_version() {
        let payload = encode(&event());
        assert_eq!(version(&event()), VERSION);
        let read = decode(Some(&versioned(VERSION)), &payload).expect("decodes");
        assert!(same(&read, &event()));

        let keyed = Event {
            order_key: Some("order-1".into()),
            ..event()
        };
        assert_eq!(version(&keyed), VERSION_EXTENDED);
        let payload = encode(&keyed);
        let read = decode(Some(&versioned(VERSION_EXTENDED)), &payload).expect("decodes");
        assert!(same(&read, &keyed));
        assert_eq!(read.order_key.as_deref(), Some("order-1"));
        let error = decode(Some(&versioned(VERSION)), &payload).expect_err("not version 1");
        assert!(
            error.to_string().contains("version 1 does not have"),
            "{error}"
        );
    }

    #[test]
    fn a_message_without_the_header_reads_as_the_unversioned_layout() {
        // What a router from before the header wrote: the same payload, no header.
        let mut legacy = Vec::new();
        codec::encode(&(), &event(), &mut legacy);
        let read = decode(None, &legacy).expect("decodes");
        assert!(same(&read, &event()));
        let read = decode(Some(&async_nats::HeaderMap::new()), &legacy).expect("decodes");
        assert!(same(&read, &event()));
    }

    #[test]
    fn an_unknown_version_is_refused_with_a_clear_error() {
        let payload = encode(&event());
        let error = decode(Some(&versioned("7")), &payload).expect_err("refused");
        assert!(
            matches!(&error, DecodeError::UnknownVersion { found } if found == "7"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "its encoding version \"7\" (header Webhook-Router-Encoding) is unknown to this \
             router, which reads version 1 and messages without the header (was it written by \
             a newer router?)"
        );
    }

    #[test]
    fn bytes_that_are_not_an_event_are_refused() {
        let error = decode(None, b"not an event").expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("its payload does not read as encoding version 1: "),
            "{error}"
        );
    }
}
