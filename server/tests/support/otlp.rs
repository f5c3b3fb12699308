//! A stand-in OpenTelemetry collector for tests: it accepts OTLP/HTTP protobuf POSTs on
//! `/v1/traces` at a port chosen at run time and hands over every span it receives, with the
//! `service.name` of its resource.
//! Each test binary uses part of it.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use warp::Filter as _;

/// The collector: its base URL (what `tracing.otlp_endpoint` takes) and what it received.
pub struct Collector {
    pub base: String,
    received: UnboundedReceiver<(ExportTraceServiceRequest, warp::http::HeaderMap)>,
}

/// A received span, the `service.name` of the process that sent it and the headers of the
/// export request that carried it.
pub struct Received {
    pub service: Option<String>,
    pub span: Span,
    pub headers: warp::http::HeaderMap,
}

impl Collector {
    /// Starts one on 127.0.0.1. Answers 200 with an empty body (an empty
    /// `ExportTraceServiceResponse`).
    pub async fn start() -> Collector {
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        let route = warp::post()
            .and(warp::path!("v1" / "traces"))
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |headers: warp::http::HeaderMap, body: bytes::Bytes| {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP body");
                let _ = tx.send((request, headers));
                warp::reply()
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Collector {
            base: format!("http://{addr}"),
            received,
        }
    }

    /// Every span received so far, without waiting.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok((request, headers)) = self.received.try_recv() {
            unpack(request, &headers, &mut out);
        }
        out
    }

    /// Waits (at most `deadline`) for the first span `wanted` accepts; every span received
    /// meanwhile goes into `seen`.
    pub async fn wait_for(
        &mut self,
        deadline: Duration,
        seen: &mut Vec<Received>,
        wanted: impl Fn(&Received) -> bool,
    ) -> Option<usize> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(i) = seen.iter().position(&wanted) {
                return Some(i);
            }
            let (request, headers) = tokio::time::timeout_at(until, self.received.recv())
                .await
                .ok()??;
            unpack(request, &headers, seen);
        }
    }
}

fn unpack(
    request: ExportTraceServiceRequest,
    headers: &warp::http::HeaderMap,
    out: &mut Vec<Received>,
) {
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(s) => Some(s.clone()),
                _ => None,
            });
        for scope in resource.scope_spans {
            for span in scope.spans {
                out.push(Received {
                    service: service.clone(),
                    span,
                    headers: headers.clone(),
                });
            }
        }
    }
}

/// Lowercase hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `(trace id, span id)` a `traceparent` value names.
pub fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    (parts[1].to_string(), parts[2].to_string())
}

/// The value of a span's attribute `name`.
pub fn attribute(span: &Span, name: &str) -> Option<Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == name)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
}
