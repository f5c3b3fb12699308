//! The HTTP API: the only part of MussikOn that knows routes, status codes and JSON error bodies.
//!
//! Every request takes the same path through [`handle`]: take or make a request id, resolve the
//! route in [`router::ROUTES`]; answer a CORS preflight at once ([`cors`]); otherwise read the
//! bearer token, charge the client's rate limit ([`ratelimit`]; a refused token is charged to
//! the client's address, so guessing tokens is limited too), apply the route's access rule
//! ([`auth`]: 401/403 before any body is read), and run the handler in its own task (so a
//! client that hangs up does not cancel a write half-way, and a panic becomes a 500 problem for
//! that request only); then set the CORS and security headers and `X-Request-Id`, count and
//! time the request under its route template, compress the body when `Accept-Encoding` allows
//! ([`compress`]), echo `traceparent` ([`trace`]: the request's span carries the W3C trace id,
//! taken from the caller's `traceparent` or new), and log one line in the request's span (with
//! the caller's subject, never their token). warp provides the request filters and [`listener`]
//! the connection handling (header-read timeout, connection cap); routing is our
//! table, so that 404, 405 with `Allow`, body limits and metrics labels all follow from one list.
//!
//! The one exception is the WebSocket upgrade of `GET /v1/events` ([`events`]): warp's upgrade
//! filter takes it before the pipeline (it is still counted under its route template, with
//! status 101); every other request to that path goes through the table like any other.
//!
//! The Raft peer RPCs (`POST /raft/...`, [`cluster::raft_filter`]) are taken before the pipeline
//! too. They are served either on the API listener ([`serve`], [`filter`]) or, on a cluster node
//! with `cluster.peer_listen`, on a listener of their own that serves nothing else
//! ([`serve_with_peers`], [`cluster::peer_filter`]); the API listener then answers `/raft/...`
//! 404 through the pipeline, as any path without a route, except while the node's own
//! membership entry still names the API port (a cluster moving to peer ports:
//! [`cluster::peer_rpcs_on_api_port`]).
//!
//! [`serve`] runs the API on a listener the caller bound (port 0 works) until the shutdown future
//! resolves, then stops accepting, lets in-flight requests finish within a grace period, and
//! returns.
//!
//! ```no_run
//! # async fn ex(engine: mussikon_engine::Engine) -> Result<(), Box<dyn std::error::Error>> {
//! use mussikon_server::{config::HttpConfig, http};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app = http::app::App::new(engine, HttpConfig::default())?;
//! let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! http::serve(listener, app, async { let _ = stopped.await; }, std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

pub mod app;
pub mod auth;
pub mod cluster;
pub mod compress;
pub mod conditional;
pub mod cors;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod query;
pub mod ratelimit;
pub mod request;
pub mod response;
pub mod router;
pub mod routes;
pub mod trace;

use crate::http::app::App;
use crate::http::auth::{Access, Caller};
use crate::http::problem::ApiError;
use crate::http::request::{BodyStream, Request};
use crate::http::response::ApiResponse;
use bytes::Buf;
use futures_util::StreamExt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::Instrument;
use warp::http::header::{HeaderName, HeaderValue};
use warp::http::{HeaderMap, Method};
use warp::Filter;

/// The request and response header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// How [`serve`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ran out with requests still in flight.
    GraceExpired,
}

/// A request id from the client is kept when it is 1–128 characters of `[A-Za-z0-9._:-]`;
/// otherwise (or when absent) a UUID v4 is made.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The target of the one access-log line per answered request (`request answered`, in the
/// request's span): `MUSSIKON_LOG=info,mussikon::access=off` keeps every other line and drops
/// these (docs/operations.md, "Logs").
pub const ACCESS_LOG: &str = "mussikon::access";

/// Answers one request; see the module documentation for the steps. `peer` is the address of
/// the connection, when known.
pub async fn handle(
    app: App,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    peer: Option<SocketAddr>,
    body: BodyStream,
) -> warp::reply::Response {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let _in_flight = metrics::InFlight::start();
    let id = request_id(&headers);
    let new_trace_ratio = app.span_export().map_or(0.0, |s| s.sample_ratio());
    let trace = trace::TraceContext::from_headers(&headers, new_trace_ratio);
    // The path goes on into the request; the exported span needs its own copy.
    let span_path = app.span_export().map(|_| path.clone());
    let resolved = router::resolve(&method, &path);
    let route = resolved.template();
    let method_label = metrics::method_label(&method);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = %trace.trace_id,
        method = method_label,
        route,
        path = %path,
        caller = tracing::field::Empty,
    );
    let config = app.config();
    let https = cors::came_over_https(&headers, config.trust_forwarded);
    let preflight = cors::is_preflight(&method, &headers);
    let mut resp = if preflight {
        cors::preflight(&config.cors, &headers, &id)
    } else {
        match guard(&app, &resolved, &method, &headers, peer) {
            Err(e) => span.in_scope(|| e.into_response(&id)),
            Ok(caller) => {
                span.record("caller", caller_label(&caller));
                // Cluster: the read's consistency level, and the wait it asks for.
                let (query, level) = cluster::take_consistency(&query);
                let barrier = match level {
                    Ok(level) => {
                        cluster::read_barrier(&app, &method, &resolved, level, &trace)
                            .instrument(span.clone())
                            .await
                    }
                    Err(e) => Err(e),
                };
                match barrier {
                    Err(e) => span.in_scope(|| e.into_response(&id)),
                    Ok(()) => {
                        let req =
                            Request::new(method, path, query, headers.clone(), id.clone(), body)
                                .with_caller(caller)
                                .with_max_json_depth(config.max_json_depth);
                        // Only a cluster node sends work elsewhere (forwarded writes).
                        let propagate = app.cluster().is_some();
                        let work = trace::serving(
                            &trace,
                            propagate,
                            routes::dispatch(app.clone(), resolved, req),
                        );
                        isolated(work, &span, &id).await
                    }
                }
            }
        }
    };
    if !preflight {
        cors::decorate(&config.cors, &headers, &mut resp.headers);
    }
    cors::security_headers(&mut resp.headers, https);
    cluster::leader_header(&app, &mut resp.headers);
    compress::negotiate(&headers, &mut resp);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers.insert(HeaderName::from_static(REQUEST_ID), v);
    }
    if let Ok(v) = HeaderValue::from_str(&trace.header_value()) {
        resp.headers
            .insert(HeaderName::from_static(trace::TRACEPARENT), v);
    }
    let took = started.elapsed();
    metrics::record_request(route, method_label, resp.status.as_u16(), took);
    if let (Some(spans), Some(path)) = (app.span_export(), &span_path) {
        spans.request(
            &trace,
            crate::telemetry::RequestSpan {
                method: method_label,
                route,
                path,
                status: resp.status.as_u16(),
                request_id: &id,
                start: started_at,
                end: started_at + took,
                links: &[],
            },
        );
    }
    span.in_scope(|| {
        tracing::info!(
            target: ACCESS_LOG,
            status = resp.status.as_u16(),
            duration_ms = took.as_secs_f64() * 1000.0,
            "request answered"
        )
    });
    resp.into_warp()
}

fn caller_label(caller: &Caller) -> &str {
    match caller {
        Caller::Unrestricted => "unrestricted",
        Caller::Anonymous => "anonymous",
        Caller::User(p) => &p.subject,
    }
}

/// Identifies the caller, charges the rate limit and applies the route's access rule. Requests
/// that match no route need no token (they get their 404/405) but are rate limited as reads.
fn guard(
    app: &App,
    resolved: &router::Resolved,
    method: &Method,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Caller, ApiError> {
    let (route, params) = match resolved {
        router::Resolved::Found { id, params, .. } => (Some(*id), params.as_slice()),
        _ => (None, &[][..]),
    };
    let access = route.map_or(Access::Open, |r| auth::access(r, method));
    let identified = auth::identify(app.verifier(), headers, access);
    let config = app.config();
    if let (Some(limits), Some(class)) = (app.rate_limits(), ratelimit::class_of(route, method)) {
        let ip = ratelimit::client_ip(peer, headers, config.trust_forwarded);
        limits.check(class, &ratelimit::client_key(identified.as_ref().ok(), ip))?;
    }
    auth::authorize(identified, access, config.auth.public_reads, params).inspect_err(|e| {
        metrics::record_auth_rejected(e.status().as_u16());
    })
}

/// Runs `work` in its own task within `span`: it runs to completion even if the client hangs
/// up, and a panic in it becomes a 500 problem (the panic itself is logged by the panic hook).
async fn isolated<F>(work: F, span: &tracing::Span, request_id: &str) -> ApiResponse
where
    F: Future<Output = ApiResponse> + Send + 'static,
{
    match tokio::spawn(work.instrument(span.clone())).await {
        Ok(resp) => resp,
        Err(e) => {
            let cause = if e.is_panic() {
                "the handler panicked"
            } else {
                "the handler was cancelled"
            };
            span.in_scope(|| ApiError::Internal(cause.into()).into_response(request_id))
        }
    }
}

/// The caller of a WebSocket upgrade, through the same identification, rate limit and access
/// rule as every request. Browsers cannot set `Authorization` on a WebSocket, so the token may
/// come as the `access_token` query parameter instead (never logged).
fn events_caller(
    app: &App,
    mut headers: HeaderMap,
    query: &str,
    peer: Option<SocketAddr>,
) -> Result<Caller, ApiError> {
    if !headers.contains_key(warp::http::header::AUTHORIZATION) {
        let token = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned());
        if let Some(v) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
            headers.insert(warp::http::header::AUTHORIZATION, v);
        }
    }
    let resolved = router::resolve(&Method::GET, router::EVENTS);
    guard(app, &resolved, &Method::GET, &headers, peer)
}

/// The WebSocket upgrade of `GET /v1/events`; rejects every other request.
fn events_filter(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::get()
        .and(warp::path!("v1" / "events"))
        .and(warp::ws())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::addr::remote())
        .map(move |ws: warp::ws::Ws, headers: HeaderMap, query: String, peer| {
            let started = Instant::now();
            let id = request_id(&headers);
            let problem = |e: ApiError| {
                let mut resp = e.into_response(&id);
                cors::security_headers(&mut resp.headers, false);
                resp.into_warp()
            };
            let hub = app.events().hub().clone();
            let resp = match events_caller(&app, headers, &query, peer) {
                Err(e) => problem(e),
                Ok(caller) => match hub.try_admit() {
                    None => problem(ApiError::Unavailable {
                        reason: format!(
                            "the event stream is full ({} connections, events.max_subscribers); retry later",
                            hub.config().max_subscribers
                        ),
                        retry_after_s: 1,
                    }),
                    Some(admission) => {
                        let limit = hub.config().max_frame_bytes;
                        let access = events::socket::TopicAccess {
                            caller,
                            engine: app.engine().clone(),
                        };
                        let resp = ws.max_frame_size(limit).max_message_size(limit).on_upgrade(
                            move |socket| async move {
                                events::socket::serve(hub, access, socket).await;
                                drop(admission);
                            },
                        );
                        warp::Reply::into_response(resp)
                    }
                },
            };
            metrics::record_request(
                router::EVENTS,
                "GET",
                resp.status().as_u16(),
                started.elapsed(),
            );
            resp
        })
}

/// Where a listener's filter finds the peer RPCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRpcs {
    /// Served here, beside the API (no `cluster.peer_listen`).
    Here,
    /// Served by a listener of their own (at these ports): here `/raft/...` is a path without
    /// a route (404), except while this node's membership entry still names the API port
    /// ([`cluster::peer_rpcs_on_api_port`], checked per request).
    Elsewhere(cluster::ListenerPorts),
}

/// The warp filter serving the whole API, the peer RPCs included. It never rejects: every
/// request is answered by [`handle`] (or, for a WebSocket upgrade of `/v1/events`, by
/// [`events`]).
pub fn filter(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    api_filter(app, PeerRpcs::Here)
}

/// [`filter`], with the peer RPCs served here or not.
pub fn api_filter(
    app: App,
    peer_rpcs: PeerRpcs,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let ws = events_filter(app.clone());
    // When the RPCs are elsewhere a request for `/raft/...` is rejected here (unless the
    // membership still sends them to this port), before the RPC filter reads it: it goes on to
    // the pipeline, whose router has no `/raft` route.
    let gate = {
        let app = app.clone();
        move |path: warp::path::Peek| {
            let here = match peer_rpcs {
                PeerRpcs::Here => true,
                PeerRpcs::Elsewhere(ports) => {
                    path.as_str().starts_with("raft/")
                        && cluster::serves_peer_rpcs_on_api_port(&app, ports)
                }
            };
            async move {
                if here {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        }
    };
    let peers = warp::path::peek()
        .and_then(gate)
        .untuple_one()
        .and(cluster::raft_filter(app.clone()));
    let admin = cluster::admin_filter(app.clone());
    let api = warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(
            warp::ext::optional::<listener::Peer>().map(|p: Option<listener::Peer>| p.map(|p| p.0)),
        )
        .and(warp::body::stream().map(boxed_body))
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  peer: Option<SocketAddr>,
                  body: BodyStream| {
                handle(
                    app.clone(),
                    method,
                    path.as_str().to_string(),
                    query,
                    headers,
                    peer,
                    body,
                )
            },
        )
        .recover(|_rejection| async {
            // Unreachable: the filters above do not reject. Answer something sane anyway.
            Ok::<_, std::convert::Infallible>(
                ApiError::Internal("request rejected by the server framework".into())
                    .into_response("-")
                    .into_warp(),
            )
        })
        .unify();
    peers.or(admin).unify().or(ws).unify().or(api).unify()
}

fn boxed_body<S, B>(body: S) -> BodyStream
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(body.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining()))))
}

/// Serves the API on `listener` until `shutdown` resolves; then stops accepting connections and
/// waits up to `grace` for in-flight requests to finish.
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: S,
    grace: Duration,
) -> Stopped
where
    S: Future<Output = ()> + Send + 'static,
{
    serve_with_peers(listener, None, app, shutdown, grace).await
}

/// Where the peer RPCs are served, given the API `listener` and the peer listener if any.
fn peer_rpcs_for(
    listener: &tokio::net::TcpListener,
    peer_listener: Option<&tokio::net::TcpListener>,
) -> PeerRpcs {
    let Some(peer_listener) = peer_listener else {
        return PeerRpcs::Here;
    };
    let ports = listener
        .local_addr()
        .and_then(|api| Ok((api.port(), peer_listener.local_addr()?.port())));
    match ports {
        Ok((api, peer)) => PeerRpcs::Elsewhere(cluster::ListenerPorts { api, peer }),
        Err(e) => {
            // Port 0 is never a membership entry's: the API port then serves no peer RPCs.
            tracing::warn!(error = %e, "could not read the listeners' ports; the API port answers /raft/... 404");
            PeerRpcs::Elsewhere(cluster::ListenerPorts { api: 0, peer: 0 })
        }
    }
}

/// [`serve`], with the peer RPCs on `peer_listener` when there is one (and then not on
/// `listener` unless this node's membership entry still names the API port:
/// [`cluster::peer_rpcs_on_api_port`]). Both listeners have the API's connection limits, each its own connection cap,
/// so a flood of API connections cannot take the places the peers need.
///
/// Shutdown: the API listener stops accepting and drains first (up to `grace`); the peer
/// listener goes on serving meanwhile (a follower's forwarded write in flight waits for the
/// leader's appends to reach it), then stops and drains within what is left of `grace`.
pub async fn serve_with_peers<S>(
    listener: tokio::net::TcpListener,
    peer_listener: Option<tokio::net::TcpListener>,
    app: App,
    shutdown: S,
    grace: Duration,
) -> Stopped
where
    S: Future<Output = ()> + Send + 'static,
{
    let upkeep = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                // Histogram samples wait in the recorder until upkeep folds them in; without a
                // scrape they would grow without bound.
                if let Ok(handle) = app.metrics() {
                    handle.run_upkeep();
                }
                // Rate-limit state of clients gone quiet is dropped (see ratelimit).
                if let Some(limits) = app.rate_limits() {
                    limits.upkeep();
                }
            }
        })
    };
    let matcher = app.events().start_matcher(app.engine().clone());
    let hub = app.events().hub().clone();
    let (begin_tx, begin_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = app.config().connections;
    let peer_rpcs = peer_rpcs_for(&listener, peer_listener.as_ref());
    let logs_peer_rpcs = match (peer_rpcs, app.cluster()) {
        (PeerRpcs::Elsewhere(ports), Some(node)) => Some(tokio::spawn(
            cluster::log_peer_rpcs_on_api_port(node.clone(), ports),
        )),
        _ => None,
    };
    let peers = peer_listener.map(|peer_listener| {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(listener::serve_connections(
            peer_listener,
            cluster::peer_filter(app.clone()),
            limits,
            async move {
                let _ = stop_rx.await;
            },
        ));
        (stop_tx, server)
    });
    let server = tokio::spawn(listener::serve_connections(
        listener,
        api_filter(app, peer_rpcs),
        limits,
        async move {
            let _ = begin_rx.await;
        },
    ));
    shutdown.await;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: no new connections; waiting for in-flight requests"
    );
    let deadline = tokio::time::Instant::now() + grace;
    let _ = begin_tx.send(());
    // Upgraded connections are no longer the HTTP server's to drain: close them (1001).
    hub.shutdown();
    let mut stopped = match tokio::time::timeout_at(deadline, server).await {
        Ok(_) => Stopped::Drained,
        Err(_) => {
            tracing::warn!("grace period over with requests still in flight; stopping anyway");
            Stopped::GraceExpired
        }
    };
    if let Some((stop, server)) = peers {
        let _ = stop.send(());
        if tokio::time::timeout_at(deadline, server).await.is_err() {
            tracing::warn!(
                "grace period over with peer RPCs still in flight; stopping the peer listener anyway"
            );
            stopped = Stopped::GraceExpired;
        }
    }
    upkeep.abort();
    if let Some(task) = logs_peer_rpcs {
        task.abort();
    }
    if let Some(task) = matcher {
        task.abort();
    }
    stopped
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_becomes_a_500_problem_without_internals() {
        let resp = isolated(
            async {
                let fail = true;
                if fail {
                    panic!("secret internals");
                }
                ApiResponse::empty(warp::http::StatusCode::OK)
            },
            &tracing::Span::none(),
            "req-1",
        )
        .await;
        assert_eq!(resp.status.as_u16(), 500);
        assert_eq!(resp.headers["content-type"], "application/problem+json");
        let body = String::from_utf8(resp.body.to_vec()).unwrap();
        assert!(!body.contains("secret"), "{body}");
        assert!(!body.contains("panicked"), "{body}");
        assert!(body.contains("req-1"), "{body}");
    }

    #[test]
    fn request_ids_are_kept_only_when_safe() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-1.2:3"));
        assert_eq!(request_id(&h), "abc-1.2:3");
        h.insert(REQUEST_ID, HeaderValue::from_static("a b"));
        assert_eq!(request_id(&h).len(), 36);
    }
}
