//! Span export over OTLP: one span per answered HTTP request, sent to an OpenTelemetry
//! collector over OTLP/HTTP (protobuf) when `tracing.otlp_endpoint` is set. Off by default:
//! without an endpoint nothing here is built and nothing is sent.
//!
//! A request's span carries exactly the ids its `traceparent` answer names
//! ([`crate::http::trace`]): the trace id (the caller's, or a new one), the request's own span
//! id, and the caller's span id as its parent, so a trace viewer shows the request under the
//! caller's span. Sampling follows the caller: a `traceparent` whose sampled flag is 0 is not
//! exported. A request without one starts a trace that is sampled for a share
//! `tracing.sample_ratio` of trace ids (default all; its answer's flags say which).
//! Attributes follow OpenTelemetry's HTTP server conventions (`http.request.method`,
//! `http.route`, `url.path`, `http.response.status_code`) plus `mussikon.request_id`; a 5xx
//! answer marks the span as an error.
//!
//! Spans queue in memory ([`MAX_QUEUE`]) and leave in batches from one background thread (the
//! SDK's batch processor) every [`EXPORT_INTERVAL`] or per [`MAX_BATCH`] spans. A full queue
//! drops spans rather than slowing a request; a collector that is down costs failed exports on
//! that thread and the SDK's warnings in the log, nothing else. [`SpanExport::shutdown`]
//! flushes the queue (each export bounded by [`EXPORT_TIMEOUT`]).
//!
//! This is the only module that knows OpenTelemetry's crates.

use crate::config::TracingConfig;
use crate::http::trace::TraceContext;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use std::time::{Duration, SystemTime};

/// Spans waiting for export at most; more are dropped.
pub const MAX_QUEUE: usize = 4096;
/// Spans per export request at most.
pub const MAX_BATCH: usize = 512;
/// Longest time a span waits for its batch.
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest time one export request may take.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why span export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint: the OTLP exporter could not be built: {0}")]
pub struct TelemetryError(String);

/// The process's span exporter (cheap to clone).
#[derive(Clone, Debug)]
pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    sample_ratio: f64,
}

/// What a request's span records.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpan<'a> {
    /// Method.
    pub method: &'a str,
    /// Route template (`/v1/musicians/{id}`), or the path kind for unmatched requests.
    pub route: &'a str,
    /// Path as requested.
    pub path: &'a str,
    /// Status answered.
    pub status: u16,
    /// The request id (`X-Request-Id`).
    pub request_id: &'a str,
    /// When the request arrived.
    pub start: SystemTime,
    /// When it was answered.
    pub end: SystemTime,
    /// `traceparent` values of other traces this work also serves (a batch of forwarded
    /// writes), exported as span links.
    pub links: &'a [String],
}

impl SpanExport {
    /// The exporter `config` asks for: `None` without an endpoint. Call it outside the async
    /// runtime (building the HTTP client blocks briefly).
    pub fn start(config: &TracingConfig) -> Result<Option<SpanExport>, TelemetryError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(
                config
                    .otlp_headers
                    .iter()
                    .map(|(name, value)| {
                        let value = String::from_utf8_lossy(value.expose()).into_owned();
                        (name.clone(), value)
                    })
                    .collect(),
            )
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        let batches = BatchConfigBuilder::default()
            .with_max_queue_size(MAX_QUEUE)
            .with_max_export_batch_size(MAX_BATCH)
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build();
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        // The sampling decision is the trace context's (its flags); the SDK records what it
        // is given.
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("mussikon");
        tracing::info!(endpoint = %endpoint, service = %config.service_name, "exporting request spans over OTLP");
        Ok(Some(SpanExport {
            provider,
            tracer,
            sample_ratio: config.sample_ratio,
        }))
    }

    /// The share of new traces sampled (`tracing.sample_ratio`).
    pub fn sample_ratio(&self) -> f64 {
        self.sample_ratio
    }

    /// Records the span of one answered request (queued; sent by the background thread), if
    /// its trace is sampled.
    pub fn request(&self, trace: &TraceContext, span: RequestSpan<'_>) {
        if !trace.sampled() {
            return;
        }
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(&trace.trace_id),
            SpanId::from_hex(&trace.span_id),
        ) else {
            return;
        };
        let parent = trace
            .parent_id
            .as_deref()
            .and_then(|parent| remote(&trace.trace_id, parent, trace.flags))
            .map_or_else(Context::new, |p| Context::new().with_remote_span_context(p));
        let mut attributes = vec![
            KeyValue::new("http.request.method", span.method.to_string()),
            KeyValue::new("http.route", span.route.to_string()),
            KeyValue::new("url.path", span.path.to_string()),
            KeyValue::new("http.response.status_code", i64::from(span.status)),
        ];
        if !span.request_id.is_empty() {
            attributes.push(KeyValue::new(
                "mussikon.request_id",
                span.request_id.to_string(),
            ));
        }
        let mut out = self
            .tracer
            .span_builder(format!("{} {}", span.method, span.route))
            .with_kind(SpanKind::Server)
            .with_trace_id(trace_id)
            .with_span_id(span_id)
            .with_start_time(span.start)
            .with_attributes(attributes)
            .with_links(span.links.iter().filter_map(|l| link(l)).collect())
            .start_with_context(&self.tracer, &parent);
        if span.status >= 500 {
            out.set_status(Status::error(format!("answered {}", span.status)));
        }
        out.end_with_timestamp(span.end);
    }

    /// Sends what is queued and stops the background thread. Blocks: call it outside the
    /// async runtime, or on its blocking pool.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing the queued spans failed");
        }
    }
}

/// A span link to the span a `traceparent` value names; `None` when it is malformed.
fn link(traceparent: &str) -> Option<Link> {
    let (trace_id, span_id, flags) = crate::http::trace::parse(traceparent)?;
    remote(&trace_id, &span_id, flags).map(Link::with_context)
}

/// The context of a span in another process (a caller's, or a linked request's).
fn remote(trace_id: &str, span_id: &str, flags: u8) -> Option<SpanContext> {
    Some(SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}
