//! An OTLP/HTTP trace receiver: a loopback [`Sink`] that takes an exporter's protobuf POSTs,
//! read back with the official OpenTelemetry protocol types (`opentelemetry-proto`).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;

use crate::sink::Sink;

/// One span a collector received.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// Span id, 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's span id (hex), empty for a root span.
    pub parent_span_id: String,
    /// Attributes, each value as text (`true`, `42`, `1.5`, or the string).
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// The attribute `key`, which the test expects to be there.
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes
            .get(key)
            .unwrap_or_else(|| panic!("span {} has no attribute {key}: {self:#?}", self.name))
    }
}

/// A running OTLP/HTTP receiver on 127.0.0.1. Dropping it stops the server.
#[derive(Debug)]
pub struct Collector {
    sink: Sink,
}

impl Collector {
    /// Starts a receiver that answers 200 to every export.
    pub async fn start() -> Collector {
        Collector {
            sink: Sink::healthy().await,
        }
    }

    /// The traces endpoint, for `[telemetry] otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        self.sink.url("/v1/traces")
    }

    /// Every span received so far, in arrival order. Panics on an export that is not an OTLP
    /// protobuf `ExportTraceServiceRequest` sent to `/v1/traces`.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut spans = Vec::new();
        for request in self.sink.requests() {
            assert_eq!(request.path, "/v1/traces", "export to the traces path");
            assert_eq!(
                request.headers.get("content-type").map(|v| v.as_bytes()),
                Some(&b"application/x-protobuf"[..]),
                "OTLP over HTTP/protobuf"
            );
            let export = ExportTraceServiceRequest::decode(request.body.as_ref())
                .expect("an OTLP ExportTraceServiceRequest");
            for resource in export.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| attributes(&r.attributes).remove("service.name"))
                    .unwrap_or_default();
                for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        spans
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}
