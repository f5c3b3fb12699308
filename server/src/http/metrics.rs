//! Prometheus metrics: the names, their help texts, the histogram buckets, the recorder, and the
//! `GET /metrics` route that renders it.
//!
//! The recorder is the process-wide `metrics` recorder, installed once (the first [`install`]
//! wins; later calls return the same handle), without an HTTP listener of its own: `GET
//! /metrics` renders it. Every metric is described at installation, so the exposition carries a
//! HELP line for each one even before it has a sample.
//!
//! Label rules: `route` is always a route template (`/v1/musicians/{id}`), never a raw path;
//! `method` is one of the standard methods or `OTHER`; `instrument` is a normalized instrument
//! name, and after [`MAX_INSTRUMENT_LABELS`] distinct names further ones count as `other`, so no
//! client can grow the exposition without bound.

use crate::http::app::App;
use crate::http::problem::ApiError;
use crate::http::response::ApiResponse;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use mussikon_cluster::log_store::{LOG_APPEND_ENTRIES, LOG_APPEND_SECONDS};
use mussikon_cluster::network::PEER_RPC_SECONDS;
use mussikon_cluster::state_machine::{APPLY_ENTRIES, APPLY_SECONDS};
use mussikon_engine::Status;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use warp::http::StatusCode;

/// Requests answered, by route template, method and status.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// Request latency histogram, by route template and method.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Requests being handled now.
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
/// Matching requests, by slot instrument.
pub const MATCHES_TOTAL: &str = "mussikon_matches_total";
/// Matching latency histogram.
pub const MATCH_DURATION: &str = "mussikon_match_duration_seconds";
/// Age of the oldest write not yet searchable.
pub const INDEX_LAG: &str = "mussikon_index_lag_seconds";
/// Musicians whose searchable facts live in the index's facts overlay.
pub const INDEX_OVERLAY: &str = "mussikon_index_overlay_musicians";
/// Store size on disk.
pub const STORE_BYTES: &str = "mussikon_store_bytes";
/// Musicians stored.
pub const MUSICIANS: &str = "mussikon_musicians";
/// Gigs stored.
pub const GIGS: &str = "mussikon_gigs";
/// WebSocket event connections open now.
pub const WS_CONNECTIONS: &str = "mussikon_ws_connections";
/// Event frames queued to WebSocket subscribers, by event type.
pub const WS_EVENTS_TOTAL: &str = "mussikon_ws_events_total";
/// WebSocket subscribers dropped because their queue was full.
pub const WS_DROPPED_SUBSCRIBERS_TOTAL: &str = "mussikon_ws_dropped_subscribers_total";
/// Created gigs that got no `gig.matching` events because the matching queue was full.
pub const WS_MATCHING_SKIPPED_TOTAL: &str = "mussikon_ws_matching_skipped_total";
/// Requests refused by a rate limit, by class.
pub const RATE_LIMITED_TOTAL: &str = "mussikon_rate_limited_total";
/// Requests refused by authentication (401) or authorization (403), by status.
pub const AUTH_REJECTED_TOTAL: &str = "mussikon_auth_rejected_total";

/// Upper bounds of the batch-size histograms (Raft log appends, state machine applies), entries.
pub const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Upper bounds of the latency histograms, seconds.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Distinct instrument label values kept before the rest count as `other`.
pub const MAX_INSTRUMENT_LABELS: usize = 256;

/// Why the recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("metrics recorder: {0}")]
pub struct MetricsError(String);

static HANDLE: OnceLock<Result<PrometheusHandle, MetricsError>> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUEST_DURATION.into()),
                    &LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(MATCH_DURATION.into()), &LATENCY_BUCKETS)
                })
                .and_then(|b| {
                    [LOG_APPEND_SECONDS, APPLY_SECONDS, PEER_RPC_SECONDS]
                        .into_iter()
                        .try_fold(b, |b, name| {
                            b.set_buckets_for_metric(Matcher::Full(name.into()), &LATENCY_BUCKETS)
                        })
                })
                .and_then(|b| {
                    [LOG_APPEND_ENTRIES, APPLY_ENTRIES]
                        .into_iter()
                        .try_fold(b, |b, name| {
                            b.set_buckets_for_metric(Matcher::Full(name.into()), &BATCH_BUCKETS)
                        })
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| MetricsError(e.to_string()))?;
            describe();
            Ok(handle)
        })
        .clone()
}

fn describe() {
    describe_histogram!(
        LOG_APPEND_SECONDS,
        Unit::Seconds,
        "Raft log appends: time to write and fdatasync one batch of entries (cluster nodes)."
    );
    describe_histogram!(
        LOG_APPEND_ENTRIES,
        Unit::Count,
        "Raft log appends: entries per batch, each batch one fdatasync (cluster nodes)."
    );
    describe_histogram!(
        APPLY_SECONDS,
        Unit::Seconds,
        "State machine: time to apply one batch of committed entries in one store transaction (cluster nodes)."
    );
    describe_histogram!(
        APPLY_ENTRIES,
        Unit::Count,
        "State machine: committed entries per applied batch (cluster nodes)."
    );
    describe_histogram!(
        PEER_RPC_SECONDS,
        Unit::Seconds,
        "Peer RPCs this node sent (rpc: append, vote), from encoding to the decoded answer or the failure (cluster nodes)."
    );
    describe_counter!(
        mussikon_cluster::network::LOG_REVERTED_TOTAL,
        "Append-entries answers of a peer that no longer holds entries it acknowledged (its data was lost or wiped): not replicated to, by peer (cluster leaders)."
    );
    describe_counter!(
        mussikon_cluster::election::EARLY_ELECTIONS_TOTAL,
        "Elections this node stood at once, without waiting for its election timer: a candidate whose log was behind asked for its vote after the leader had been silent for longer than its lease and could not be reached at all (cluster nodes)."
    );
    describe_counter!(
        mussikon_cluster::node::WRITES_RESUBMITTED_TOTAL,
        "Writes carrying an Idempotency-Key that this node submitted again because their first outcome was unknown (the leader they were forwarded to failed with them in flight); the engine applies each at most once (cluster nodes)."
    );
    describe_counter!(
        mussikon_cluster::node::HANDOVERS_TOTAL,
        "Leadership handovers this node started as leader (transfer-leader, step-down), by outcome: ok or failed (cluster nodes)."
    );
    describe_counter!(
        mussikon_cluster::network::MISDIRECTED_RPCS_TOTAL,
        "Peer RPCs refused (404) because they were for another node, one this node replaced at its address (cluster nodes)."
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by route template, method and status code."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time from receiving a request to having its response ready, by route template and method."
    );
    describe_gauge!(
        HTTP_REQUESTS_IN_FLIGHT,
        "HTTP requests being handled right now."
    );
    describe_counter!(
        MATCHES_TOTAL,
        "Matching requests answered, counted once per instrument asked for by the gig's slots."
    );
    describe_histogram!(
        MATCH_DURATION,
        Unit::Seconds,
        "Time the engine took to rank and assign musicians for one gig."
    );
    describe_gauge!(
        INDEX_LAG,
        Unit::Seconds,
        "How long the oldest write not yet searchable has waited (0 when the index is current)."
    );
    describe_gauge!(
        INDEX_OVERLAY,
        "Musicians whose changed fee, rating, radius or active flag the index keeps in memory \
         instead of re-indexing them (folded into the index past index.overlay_max_musicians)."
    );
    describe_gauge!(STORE_BYTES, Unit::Bytes, "Size of the store on disk.");
    describe_gauge!(MUSICIANS, "Musicians stored.");
    describe_gauge!(GIGS, "Gigs stored.");
    describe_gauge!(
        WS_CONNECTIONS,
        "WebSocket connections to /v1/events open right now."
    );
    describe_counter!(
        WS_EVENTS_TOTAL,
        "Event frames queued to WebSocket subscribers (one per subscriber reached), by event type."
    );
    describe_counter!(
        WS_DROPPED_SUBSCRIBERS_TOTAL,
        "WebSocket subscribers disconnected (close code 1013) because their event queue was full."
    );
    describe_counter!(
        WS_MATCHING_SKIPPED_TOTAL,
        "Created gigs that got no gig.matching events because the matching queue was full."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests answered 429 because the client used up its rate limit, by class (reads, writes, matches)."
    );
    describe_counter!(
        AUTH_REJECTED_TOTAL,
        "Requests refused before reaching a handler: 401 (no valid token) or 403 (role not allowed), by status."
    );
    // Register the gauges so they appear before the first scrape sets them.
    gauge!(HTTP_REQUESTS_IN_FLIGHT).set(0.0);
    gauge!(WS_CONNECTIONS).increment(0.0);
    counter!(WS_DROPPED_SUBSCRIBERS_TOTAL).increment(0);
}

/// Counts one more open event connection.
pub fn ws_connected() {
    gauge!(WS_CONNECTIONS).increment(1.0);
}

/// Counts one event connection closed.
pub fn ws_disconnected() {
    gauge!(WS_CONNECTIONS).decrement(1.0);
}

/// Counts `n` frames of an event type queued to subscribers.
pub fn ws_events(kind: &'static str, n: u64) {
    if n > 0 {
        counter!(WS_EVENTS_TOTAL, "type" => kind).increment(n);
    }
}

/// Counts one subscriber dropped for being too slow.
pub fn ws_dropped() {
    counter!(WS_DROPPED_SUBSCRIBERS_TOTAL).increment(1);
}

/// Counts one created gig whose `gig.matching` was skipped.
pub fn ws_matching_skipped() {
    counter!(WS_MATCHING_SKIPPED_TOTAL).increment(1);
}

/// Counts a request in flight from creation to drop (so a panicking handler is still counted
/// out).
pub struct InFlight(());

impl InFlight {
    /// Counts one more request in flight.
    pub fn start() -> InFlight {
        gauge!(HTTP_REQUESTS_IN_FLIGHT).increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(HTTP_REQUESTS_IN_FLIGHT).decrement(1.0);
    }
}

/// The `method` label of a request method.
pub fn method_label(method: &warp::http::Method) -> &'static str {
    use warp::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Records one answered request.
pub fn record_request(route: &'static str, method: &'static str, status: u16, took: Duration) {
    counter!(HTTP_REQUESTS_TOTAL, "route" => route, "method" => method, "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_REQUEST_DURATION, "route" => route, "method" => method)
        .record(took.as_secs_f64());
}

/// Counts one request refused by the rate limit of `class`.
pub fn record_rate_limited(class: &'static str) {
    counter!(RATE_LIMITED_TOTAL, "class" => class).increment(1);
}

/// Counts one request refused by authentication or authorization.
pub fn record_auth_rejected(status: u16) {
    counter!(AUTH_REJECTED_TOTAL, "status" => status.to_string()).increment(1);
}

static INSTRUMENTS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();

fn instrument_label(name: &str) -> String {
    let seen = INSTRUMENTS.get_or_init(|| Mutex::new(HashSet::new()));
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.contains(name) {
        return name.to_string();
    }
    if seen.len() < MAX_INSTRUMENT_LABELS {
        seen.insert(name.to_string());
        return name.to_string();
    }
    "other".to_string()
}

/// Records one matching request over slots playing `instruments`.
pub fn record_match<'a>(instruments: impl IntoIterator<Item = &'a str>, took: Duration) {
    let mut distinct: Vec<&str> = instruments.into_iter().collect();
    distinct.sort_unstable();
    distinct.dedup();
    for name in distinct {
        counter!(MATCHES_TOTAL, "instrument" => instrument_label(name)).increment(1);
    }
    histogram!(MATCH_DURATION).record(took.as_secs_f64());
}

/// Sets the engine gauges from a status reading.
pub fn record_status(s: &Status) {
    gauge!(INDEX_LAG).set(s.index_lag_ms as f64 / 1000.0);
    gauge!(INDEX_OVERLAY).set(s.index_overlay_musicians as f64);
    gauge!(STORE_BYTES).set(s.store_bytes as f64);
    gauge!(MUSICIANS).set(s.musicians as f64);
    gauge!(GIGS).set(s.gigs as f64);
}

/// `GET /metrics`: refreshes the engine gauges, then renders the Prometheus text exposition.
pub async fn render(app: &App) -> Result<ApiResponse, ApiError> {
    let handle = app.metrics()?.clone();
    if let Ok(s) = app.blocking(|e| e.status()).await? {
        record_status(&s);
    }
    handle.run_upkeep();
    Ok(ApiResponse::with_body(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        bytes::Bytes::from(handle.render()),
    ))
}
