//! One delivery attempt: POST an event to a destination and classify the answer.
//!
//! Success is any 2xx. Connect errors, timeouts, 408, 425, 429 and 5xx are retryable (with the
//! destination's `Retry-After`, if any). Everything else — other 4xx, 3xx (redirects are not
//! followed) — is permanent and goes straight to the dead letters.

use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tracing::Span;
use tracing::field::Empty;

use crate::config::{DestinationConfig, RetryConfig};
use crate::delivery::backoff::parse_retry_after;
use crate::delivery::client::{self, ClientError};
use crate::event::Event;
use crate::telemetry;
use crate::verify::StandardSigner;

/// How much of an error response's body is kept for the dead-letter record.
const ERROR_SNIPPET_BYTES: usize = 256;
/// How much of a response body is read (and dropped) so the connection can be reused.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024;

/// The `webhook-id` header carrying the event id on every delivery.
pub static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// The `webhook-timestamp` header of a signed delivery (Unix seconds of the attempt).
pub static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// The `webhook-signature` header of a signed delivery.
pub static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// A destination, ready for delivery.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Its name in the config.
    pub name: String,
    /// Where events are POSTed.
    pub url: reqwest::Url,
    /// Limit for one attempt.
    pub timeout: Duration,
    /// Most requests at once.
    pub max_in_flight: usize,
    /// Most attempts a second, if set.
    pub rate: Option<crate::config::DeliveryRate>,
    /// Retry policy.
    pub retry: RetryConfig,
    /// When to stop attempts to it while it keeps failing.
    pub circuit: crate::config::CircuitConfig,
    /// Extra headers sent with every delivery.
    pub headers: HeaderMap,
    /// Signs each attempt (Standard Webhooks), if configured.
    pub signer: Option<StandardSigner>,
    /// Its own HTTP client (a `ca`, a `client_cert` or `http2`), or `None` for the shared one.
    pub client: Option<reqwest::Client>,
}

/// Why a destination cannot be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// A header cannot be used.
    #[error(transparent)]
    Header(#[from] InvalidHeader),
    /// Its own HTTP client cannot be built.
    #[error("destination {destination:?}: {source}")]
    Client {
        /// Destination name.
        destination: String,
        /// Why.
        source: ClientError,
    },
}

impl DestinationError {
    /// The key at fault within the destination's table.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Header(_) => "headers",
            Self::Client { source, .. } => source.key(),
        }
    }
}

/// A destination's configured header could not be used.
#[derive(Debug, thiserror::Error)]
#[error("destination {destination:?}: header {header:?} has an invalid value")]
pub struct InvalidHeader {
    /// Destination name.
    pub destination: String,
    /// Header name.
    pub header: String,
}

impl Destination {
    /// Builds a destination from its config (reading its TLS files, if any, now).
    pub fn from_config(name: &str, config: &DestinationConfig) -> Result<Self, DestinationError> {
        let mut headers = HeaderMap::new();
        for (header, value) in &config.headers {
            let invalid = || InvalidHeader {
                destination: name.to_owned(),
                header: header.clone(),
            };
            let header_name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(&value.0).map_err(|_| invalid())?;
            value.set_sensitive(true);
            headers.insert(header_name, value);
        }
        Ok(Self {
            name: name.to_owned(),
            url: config.url.0.clone(),
            timeout: crate::clock::cap(config.timeout.0),
            max_in_flight: config.max_in_flight.get(),
            rate: config.rate,
            retry: config.retry,
            circuit: config.circuit,
            headers,
            signer: config.sign.as_ref().map(|sign| sign.0.clone()),
            client: client::for_destination(config).map_err(|source| DestinationError::Client {
                destination: name.to_owned(),
                source,
            })?,
        })
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The destination answered 2xx.
    Delivered {
        /// The status.
        status: u16,
    },
    /// A failure worth retrying.
    Retry {
        /// The status, if the destination answered.
        status: Option<u16>,
        /// The destination's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// What went wrong.
        error: String,
    },
    /// A failure that retrying will not fix.
    Permanent {
        /// The status, if the destination answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

/// Sends delivery attempts over one shared, pooled HTTP client, or a destination's own.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
}

impl Deliverer {
    /// A deliverer with a pooled rustls client that does not follow redirects.
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: client::shared()?,
        })
    }

    /// POSTs `event` to `destination` once.
    ///
    /// The request is put together from the destination's parts built once (its parsed `Url`,
    /// its header block, its keyed signer) and the event's shared `Bytes` body, and sent with
    /// `Client::execute`: no request builder, no per-attempt parsing on our side. Under an
    /// [`attempt_span`] (tracing on), the request carries that span's `traceparent`, and the
    /// span gets the destination, the status and the duration.
    pub async fn attempt(&self, destination: &Destination, event: &Event) -> AttemptOutcome {
        let span = telemetry::enabled().then(Span::current);
        let started = Instant::now();
        let mut request = reqwest::Request::new(http::Method::POST, destination.url.clone());
        *request.timeout_mut() = Some(destination.timeout);
        let headers = request.headers_mut();
        *headers = outbound_headers(destination, event);
        if let Some(span) = &span {
            span.record("destination", destination.name.as_str());
            telemetry::inject_current(headers);
        }
        // webhook-id, content-type and the two signing headers, without growing the map.
        headers.reserve(4);
        let Ok(id) = HeaderValue::from_str(&event.id) else {
            return unbuildable("the event id");
        };
        headers.insert(&WEBHOOK_ID, id);
        if let Some(content_type) = event.content_type() {
            headers.insert(http::header::CONTENT_TYPE, content_type.clone());
        }
        if let Some(signer) = &destination.signer {
            // Signed per attempt: a retry carries a fresh timestamp the receiver accepts.
            let timestamp = crate::event::unix_millis(SystemTime::now()) / 1000;
            let signature = signer.sign(&event.id, timestamp, &event.body);
            headers.insert(&WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
            let Ok(signature) = HeaderValue::try_from(signature) else {
                return unbuildable("the signature");
            };
            headers.insert(&WEBHOOK_SIGNATURE, signature);
        }
        *request.body_mut() = Some(event.body.clone().into());
        let client = destination.client.as_ref().unwrap_or(&self.client);
        let outcome = match client.execute(request).await {
            Ok(response) => classify_response(response).await,
            Err(error) => classify_error(&error, destination.timeout),
        };
        if let Some(span) = &span {
            let (result, status) = match &outcome {
                AttemptOutcome::Delivered { status } => ("delivered", Some(*status)),
                AttemptOutcome::Retry { status, .. } => ("retry", *status),
                AttemptOutcome::Permanent { status, .. } => ("failed", *status),
            };
            span.record("outcome", result);
            if let Some(status) = status {
                span.record("http.response.status_code", status);
            }
            span.record("duration_ms", started.elapsed().as_secs_f64() * 1000.0);
        }
        outcome
    }
}

/// The span of attempt `number` (from 1) to deliver `event`, a child of the span the event was
/// accepted under ([`telemetry::continue_event_trace`]); [`Span::none`] when tracing is off.
/// [`Deliverer::attempt`] fills in the rest under it.
pub fn attempt_span(event: &Event, number: u32) -> Span {
    let span = telemetry::span(|| {
        tracing::info_span!("attempt", event_id = %event.id, route = %event.route,
            attempt = number, destination = Empty, outcome = Empty,
            http.response.status_code = Empty, duration_ms = Empty, trace_id = Empty)
    });
    telemetry::continue_event_trace(&span, event);
    span
}

/// The outcome of an attempt whose request could not be built: `what` is no header value.
fn unbuildable(what: &str) -> AttemptOutcome {
    AttemptOutcome::Permanent {
        status: None,
        error: format!("cannot build request: {what} is not a valid header value"),
    }
}

/// Headers plugins set on the event, then the destination's own (which win on a clash).
fn outbound_headers(destination: &Destination, event: &Event) -> HeaderMap {
    let Some(plugin_headers) = &event.plugin_headers else {
        return destination.headers.clone();
    };
    let mut headers = HeaderMap::clone(plugin_headers);
    for (name, value) in &destination.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

async fn classify_response(mut response: reqwest::Response) -> AttemptOutcome {
    let status = response.status();
    if status.is_success() {
        drain(&mut response, None).await;
        return AttemptOutcome::Delivered {
            status: status.as_u16(),
        };
    }
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut snippet = Vec::new();
    drain(&mut response, Some(&mut snippet)).await;
    let error = describe_status(status, &snippet);
    if is_retryable_status(status) {
        AttemptOutcome::Retry {
            status: Some(status.as_u16()),
            retry_after,
            error,
        }
    } else {
        AttemptOutcome::Permanent {
            status: Some(status.as_u16()),
            error,
        }
    }
}

/// Whether a non-2xx status is worth retrying: 408, 425, 429 and 5xx.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error()
}

fn classify_error(error: &reqwest::Error, timeout: Duration) -> AttemptOutcome {
    if error.is_builder() {
        return AttemptOutcome::Permanent {
            status: None,
            error: format!("cannot build request: {}", describe_error(error)),
        };
    }
    let error = if error.is_timeout() {
        format!("timed out after {}", humantime::format_duration(timeout))
    } else if error.is_connect() {
        format!("connect error: {}", describe_error(error))
    } else {
        format!("request error: {}", describe_error(error))
    };
    AttemptOutcome::Retry {
        status: None,
        retry_after: None,
        error,
    }
}

/// The error and its causes, without the URL (which may carry credentials).
fn describe_error(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() {
        text = "unknown error".to_owned();
    }
    text
}

fn describe_status(status: StatusCode, snippet: &[u8]) -> String {
    let body = String::from_utf8_lossy(snippet);
    let body = body.trim();
    if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    }
}

/// Reads the response body (bounded) so the pooled connection can be reused, keeping the
/// first bytes in `snippet` if asked.
async fn drain(response: &mut reqwest::Response, mut snippet: Option<&mut Vec<u8>>) {
    let mut read = 0;
    while read < DRAIN_LIMIT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if let Some(snippet) = snippet.as_deref_mut() {
                    let room = ERROR_SNIPPET_BYTES.saturating_sub(snippet.len());
                    snippet.extend_from_slice(&chunk[..room.min(chunk.len())]);
                }
                read += chunk.len();
            }
            Ok(None) | Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_follow_the_design() {
        for code in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [301, 400, 401, 403, 404, 410, 422] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn status_description_includes_a_trimmed_body() {
        assert_eq!(
            describe_status(StatusCode::BAD_REQUEST, b""),
            "HTTP 400 Bad Request"
        );
        assert_eq!(
            describe_status(StatusCode::BAD_REQUEST, b" bad json\n"),
            "HTTP 400 Bad Request: bad json"
        );
    }
}
