//! OpenTelemetry traces (`[telemetry]`): the OTLP exporter and its `tracing` layer, and the
//! span context an event carries from its ingress span to its delivery attempts.
//!
//! One trace per event: `ingress` (child of the sender's `traceparent`, if any) holds `verify`,
//! one `plugin` span per plugin and `enqueue`; each delivery `attempt`, made later on a lane
//! worker, is a child of `ingress` too and sends its own `traceparent` to the destination.
//! The spans are ordinary `tracing` spans: the layer made here exports them, and the log lines
//! written inside them carry their fields, `trace_id` among them.
//!
//! Off (no `[telemetry]` table), no layer is installed and [`span`] builds no span at all, so
//! the request path costs one relaxed atomic load per would-be span.

use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

use crate::config::TelemetryConfig;
use crate::event::Event;

/// Whether a trace layer is installed: set once, by [`Tracing::start`].
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The trace exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter for {endpoint}: {source}")]
pub struct TelemetryError {
    /// The configured `otlp_endpoint`.
    pub endpoint: String,
    /// Why.
    #[source]
    pub source: opentelemetry_otlp::ExporterBuildError,
}

/// The running trace export: spans are batched and POSTed from the exporter's own thread.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Sets up export to `config.otlp_endpoint` and returns it with the `tracing` layer that
    /// feeds it (to add to the subscriber). From here on [`span`] builds spans.
    pub fn start<S>(
        config: &TelemetryConfig,
    ) -> Result<(Self, OpenTelemetryLayer<S, SdkTracer>), TelemetryError>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&config.otlp_endpoint)
            .build()
            .map_err(|source| TelemetryError {
                endpoint: config.otlp_endpoint.clone(),
                source,
            })?;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling,
            ))))
            .with_resource(resource)
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("webhook-router"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false);
        ENABLED.store(true, Ordering::Relaxed);
        Ok((Self { provider }, layer))
    }

    /// Exports the spans still batched and stops the exporter (at shutdown).
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "could not export the last spans");
        }
    }
}

/// Whether spans are being built and exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span `make` builds when tracing is on; [`Span::none`] (which records nothing and costs
/// nothing to enter) when it is off.
pub fn span(make: impl FnOnce() -> Span) -> Span {
    if enabled() { make() } else { Span::none() }
}

/// Makes `span` (an event's `ingress` span) a child of the W3C `traceparent` in the request's
/// `headers`, if one is there, and records its `trace_id` field.
pub fn continue_sender_trace(span: &Span, headers: &HeaderMap) {
    if span.is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
    record_trace_id(span);
}

/// The span context of the current span (an event's `ingress` span, at ingress), for the
/// event to carry to its delivery attempts; `None` when tracing is off.
pub fn current_event_trace() -> Option<Box<SpanContext>> {
    if !enabled() {
        return None;
    }
    let context = Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| Box::new(span_context))
}

/// Makes `span` (a delivery attempt's) a child of the span `event` was accepted under, and
/// records its `trace_id` field. An event read back after a restart or from NATS no longer has
/// that span's context: its attempts join the sender's trace, from the `traceparent` kept with
/// its headers, if it had one.
pub fn continue_event_trace(span: &Span, event: &Event) {
    if span.is_none() {
        return;
    }
    let parent = match &event.trace {
        Some(trace) => Context::new().with_remote_span_context(SpanContext::clone(trace)),
        None => TraceContextPropagator::new().extract(&HeaderExtractor(&event.headers)),
    };
    let _ = span.set_parent(parent);
    record_trace_id(span);
}

/// Adds the `traceparent` (and `tracestate`) of the current span to `headers`, so that the
/// receiving service continues the trace; nothing when tracing is off.
pub fn inject_current(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let context = Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

fn record_trace_id(span: &Span) {
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
}
