//! The event: one accepted webhook, as it travels from ingress to its destinations.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method};

/// One accepted webhook request.
///
/// The body is a reference-counted [`Bytes`]: fan-out, retries and dead letters share it
/// instead of copying it.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique, time-ordered id (UUIDv7) that follows the event through logs, delivery
    /// headers (`webhook-id`) and dead letters.
    pub id: String,
    /// Id of the route that accepted it.
    pub route: String,
    /// Request method.
    pub method: Method,
    /// Request path.
    pub path: String,
    /// Raw query string, without the `?` (empty if none).
    pub query: String,
    /// Request headers, as received.
    pub headers: HeaderMap,
    /// Request body, exactly as received.
    pub body: Bytes,
    /// When the router accepted the request.
    pub received_at: SystemTime,
    /// Headers that plugins set or changed: sent with every delivery of the event. (The
    /// sender's own headers are not forwarded, except `Content-Type`.) `None` when there are
    /// none, as for most events: an empty `HeaderMap` would still take 96 bytes of every held
    /// event.
    pub plugin_headers: Option<Box<HeaderMap>>,
    /// The key its route orders deliveries by (`order_by`, `order_by_header`), read from the
    /// request as received: events with the same key reach each destination one at a time, in
    /// the order they were accepted. `None`: the route orders nothing, or the request has no key.
    pub order_key: Option<String>,
    /// The span context of the `ingress` span the event was accepted under, when tracing is
    /// on: its delivery attempts are children of it ([`crate::telemetry`]). Not stored with
    /// the event (journal, NATS): an event read back continues its sender's `traceparent`,
    /// kept in `headers`. Boxed, like `plugin_headers`, for the events held without one.
    pub trace: Option<Box<opentelemetry::trace::SpanContext>>,
}

#[cfg(test)]
impl Event {
    /// A POST to `/` of `route` with no headers and `body`, received now: the event unit tests
    /// build and then adjust.
    pub(crate) fn for_test(id: impl Into<String>, route: &str, body: impl Into<Bytes>) -> Event {
        Event {
            id: id.into(),
            route: route.to_owned(),
            method: Method::POST,
            path: "/".into(),
            query: String::new(),
            headers: HeaderMap::new(),
            body: body.into(),
            received_at: SystemTime::now(),
            plugin_headers: None,
            order_key: None,
            trace: None,
        }
    }
}

impl Event {
    /// Generates a new event id: a UUIDv7, so ids sort by creation time.
    pub fn new_id() -> String {
        NewId::generate().as_str().to_owned()
    }

    /// The `Content-Type` the sender gave, if any.
    pub fn content_type(&self) -> Option<&http::HeaderValue> {
        self.headers.get(http::header::CONTENT_TYPE)
    }

    /// Milliseconds since the Unix epoch at which the event was received.
    pub fn received_at_ms(&self) -> u64 {
        unix_millis(self.received_at)
    }
}

/// A new event id (see [`Event::new_id`]) written on the stack: the ingress gives the event
/// its one copy on the heap and still has the id to answer with once the event is queued.
#[derive(Debug, Clone, Copy)]
pub struct NewId {
    text: [u8; uuid::fmt::Hyphenated::LENGTH],
}

impl NewId {
    /// A new UUIDv7, in its hyphenated lower-case form.
    pub fn generate() -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
        Self { text }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).expect("a hyphenated UUID is ASCII")
    }
}

/// Milliseconds since the Unix epoch (zero for times before it).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
