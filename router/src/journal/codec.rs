//! How an [`Event`] is written into a journal record, and read back.
//!
//! `[postcard metadata][body][extension]`: the metadata (ids, route, request line, headers,
//! times, and whatever the caller adds in front) is postcard, compact and versionless; the body
//! follows as it is, so reading it back is one copy. The metadata gives the body's length, so
//! what follows it is the [`Extension`]: fields added since the first layout (the order key),
//! postcard too. It is written only when one of them is set, so an event without them is
//! written exactly as before (and read by older routers), and a record written before the
//! extension existed reads with none.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};

use crate::event::Event;

/// A record that does not decode (written by an incompatible version, or damaged in a way the
/// checksum missed).
#[derive(Debug, thiserror::Error)]
#[error("undecodable journal record: {0}")]
pub struct CodecError(String);

impl CodecError {
    /// An error saying `what`.
    pub(crate) fn new(what: impl std::fmt::Display) -> Self {
        Self(what.to_string())
    }
}

#[derive(Serialize, Deserialize)]
struct EventMeta {
    id: String,
    route: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    received_at_ms: u64,
    plugin_headers: Option<Vec<(String, Vec<u8>)>>,
    body_len: u64,
}

/// [`EventMeta`] as written: borrowed from the event, so that writing allocates nothing.
#[derive(Serialize)]
struct EventMetaRef<'a> {
    id: &'a str,
    route: &'a str,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    received_at_ms: u64,
    plugin_headers: Option<Vec<(&'a str, &'a [u8])>>,
    body_len: u64,
}

/// What follows the body: fields added since the first layout, each `None` when unset. (New
/// fields go at the end, as `Option`s: postcard reads a shorter extension as far as it goes
/// only if the struct is cut there, so an extension is never shortened.)
#[derive(Serialize, Deserialize)]
struct Extension<K> {
    order_key: Option<K>,
}

/// Headers as `EventMeta`'s list of (name, value) pairs, borrowed. (A list of known length:
/// postcard writes the length first.)
fn header_list(map: &HeaderMap) -> Vec<(&str, &[u8])> {
    map.iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect()
}

fn header_map(list: Vec<(String, Vec<u8>)>) -> Result<HeaderMap, CodecError> {
    let mut map = HeaderMap::with_capacity(list.len());
    for (name, value) in list {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(CodecError::new)?;
        let value = HeaderValue::from_bytes(&value).map_err(CodecError::new)?;
        map.append(name, value);
    }
    Ok(map)
}

/// Writes `head` (the caller's own metadata) and then `event` to `out`.
pub fn encode<T: Serialize>(head: &T, event: &Event, out: &mut Vec<u8>) {
    let meta = EventMetaRef {
        id: &event.id,
        route: &event.route,
        method: event.method.as_str(),
        path: &event.path,
        query: &event.query,
        headers: header_list(&event.headers),
        received_at_ms: event.received_at_ms(),
        plugin_headers: event.plugin_headers.as_deref().map(header_list),
        body_len: event.body.len() as u64,
    };
    // Serializing plain structs of known lengths into a Vec cannot fail; were it to, the
    // value would be cut short, not decode, and be reported at the next start.
    let start = out.len();
    if let Err(error) = postcard::to_io(&(head, meta), &mut *out) {
        tracing::error!(%error, "journal: an event could not be encoded");
        out.truncate(start);
        return;
    }
    out.extend_from_slice(&event.body);
    if event.order_key.is_some() {
        let extension = Extension {
            order_key: event.order_key.as_deref(),
        };
        if let Err(error) = postcard::to_io(&extension, &mut *out) {
            tracing::error!(%error, "journal: an event could not be encoded");
            out.truncate(start);
        }
    }
}

/// Whether `event` is written with an [`Extension`] (a layout older readers do not know).
pub fn extended(event: &Event) -> bool {
    event.order_key.is_some()
}

/// Reads back what [`encode`] wrote.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<(T, Event), CodecError> {
    let ((head, meta), rest) =
        postcard::take_from_bytes::<(T, EventMeta)>(bytes).map_err(CodecError::new)?;
    let body_len = usize::try_from(meta.body_len).unwrap_or(usize::MAX);
    let Some((body, extension)) = rest.split_at_checked(body_len) else {
        return Err(CodecError::new(format!(
            "body of {} bytes where {} were written",
            rest.len(),
            meta.body_len
        )));
    };
    let extension = if extension.is_empty() {
        Extension { order_key: None }
    } else {
        postcard::from_bytes::<Extension<String>>(extension)
            .map_err(|error| CodecError::new(format!("its extension: {error}")))?
    };
    let event = Event {
        id: meta.id,
        route: meta.route,
        method: Method::from_bytes(meta.method.as_bytes()).map_err(CodecError::new)?,
        path: meta.path,
        query: meta.query,
        headers: header_map(meta.headers)?,
        body: Bytes::copy_from_slice(body),
        received_at: UNIX_EPOCH + Duration::from_millis(meta.received_at_ms),
        plugin_headers: meta
            .plugin_headers
            .map(header_map)
            .transpose()?
            .map(Box::new),
        order_key: extension.order_key,
        // The span context is the running process's own; a restart continues the sender's
        // `traceparent`, which is in `headers`.
        trace: None,
    };
    Ok((head, event))
}

/// Postcard bytes of `value`.
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Reads back [`to_bytes`].
pub fn from_bytes<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(CodecError::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_as_it_was_written() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let mut plugin = HeaderMap::new();
        plugin.insert(
            "x-plugin",
            HeaderValue::from_bytes(b"\xff\x80 opaque").expect("value"),
        );
        let event = Event {
            id: "0193-id".into(),
            route: "github".into(),
            method: Method::PUT,
            path: "/hooks/github".into(),
            query: "a=1".into(),
            headers,
            body: Bytes::from_static(b"\x00\xffbody{}"),
            received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            plugin_headers: Some(Box::new(plugin)),
            order_key: None,
            trace: None,
        };
        let mut out = Vec::new();
        encode(&(7u32, vec!["a".to_owned()]), &event, &mut out);
        let ((n, names), back): ((u32, Vec<String>), Event) = decode(&out).expect("decodes");
        assert_eq!((n, names), (7, vec!["a".to_owned()]));
        assert_eq!(back.id, event.id);
        assert_eq!(back.method, Method::PUT);
        assert_eq!((&back.path, &back.query), (&event.path, &event.query));
        assert_eq!(back.headers, event.headers);
        assert_eq!(back.plugin_headers, event.plugin_headers);
        assert_eq!(back.body, event.body);
        assert_eq!(back.received_at, event.received_at);
        assert_eq!(back.order_key, None);
        assert!(decode::<(u32, Vec<String>)>(&out[..out.len() - 1]).is_err());

        // With an order key: the same bytes, and the extension after the body.
        let keyed = Event {
            order_key: Some("order-7".into()),
            ..event
        };
        let mut extended = Vec::new();
        encode(&(7u32, vec!["a".to_owned()]), &keyed, &mut extended);
        assert_eq!(
            &extended[..out.len()],
            &out[..],
            "the first layout, then more"
        );
        let (_, back): ((u32, Vec<String>), Event) = decode(&extended).expect("decodes");
        assert_eq!(back.order_key.as_deref(), Some("order-7"));
        assert_eq!(back.body, keyed.body);
        let cut = &extended[..extended.len() - 1];
        assert!(
            decode::<(u32, Vec<String>)>(cut).is_err(),
            "a cut extension"
        );
    }
}
