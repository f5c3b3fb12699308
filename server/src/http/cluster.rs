//! The cluster's HTTP face (only when `serve` runs with `--node-id`; see docs/cluster.md):
//!
//! - peer RPCs, `POST /raft/{append|vote|snapshot|write|writes|read-index|applied-index|members|
//!   whois|elect}`, in bincode 2; each must carry the cluster secret header (otherwise 401 and
//!   nothing changes). They are served before the request pipeline on the API listener, or,
//!   with `cluster.peer_listen`, on a listener of their own ([`peer_filter`]: nothing else
//!   there, every other request 404), and the API listener answers `/raft/...` 404, except
//!   while the node's own membership entry still names the API port
//!   ([`peer_rpcs_on_api_port`], checked per request: a cluster moving to peer ports). The
//!   addresses of the membership (`--peers`, `cluster join --addr`, `POST /v1/cluster/members`,
//!   `PUT /v1/cluster/members/{id}`) are these peer addresses: where RPCs and forwarded writes
//!   go;
//! - the admin endpoints `GET /v1/cluster/status`, `POST /v1/cluster/members`
//!   (`{"node_id": 4, "addr": "HOST:PORT", "voter": true}`),
//!   `PUT /v1/cluster/members/{id}` (`{"addr": "HOST:PORT"}`: move a member's peer address;
//!   404 for an id that is not a member) and `DELETE /v1/cluster/members/{id}`, which need the
//!   `admin` role (as every admin route);
//! - `POST /v1/cluster/leader` (`{"node_id": 2}`, or `{}` for the best-placed voter): hand
//!   leadership over, from any node (admin); `POST /v1/cluster/step-down`: this node hands
//!   leadership over if it leads, else nothing (admin; for a node about to stop);
//! - `GET|PUT|DELETE /v1/cluster/faults` (admin; 404 unless `cluster.fault_injection` is on):
//!   cut this node from peers, for partition tests;
//! - the hooks of the request pipeline: writes replicate through [`replicate`] (the leader's
//!   outcome, so the same status codes as on one node; 503 with `Retry-After` while no leader is
//!   known), reads wait at their consistency level ([`read_barrier`], query parameter
//!   `consistency=linearizable|leader|stale`, stripped before the handler sees the query), and
//!   every answer names the leader, when one is known: its id in `X-Mussikon-Leader-Id` and
//!   its peer address (not necessarily an API address) in `X-Mussikon-Leader`.
//!
//! Route defaults: search and matching read `stale`; every other read of `/v1` (gets by id,
//! lists, a gig's bookings and messages) reads `linearizable`.

use crate::http::app::App;
use crate::http::auth::{self, Access, Role};
use crate::http::problem::ApiError;
use crate::http::request::{decode_json, BodyStream};
use crate::http::response::ApiResponse;
use crate::http::router::{Resolved, RouteId};
use crate::http::trace::{self, TraceContext};
use bytes::Bytes;
use futures_util::StreamExt;
use mussikon_cluster::network::{FROM_HEADER, TO_HEADER, TRACE_LINKS_HEADER};
use mussikon_cluster::node::{AdminError, AdminOp, ReadError, WriteError, CLUSTER_SECRET_HEADER};
use mussikon_cluster::{ClusterStatus, Consistency, Node};
use mussikon_engine::{Command, EngineError, Executed};
use serde::Deserialize;
use tracing::Instrument as _;
use warp::http::header::{HeaderName, HeaderValue};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

/// The routes this module serves outside the router's table, `(method, path template)` as the
/// OpenAPI document spells them (the peer RPCs under `/raft` are not part of the API).
pub const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/cluster/status"),
    ("post", "/v1/cluster/members"),
    ("put", "/v1/cluster/members/{id}"),
    ("delete", "/v1/cluster/members/{id}"),
    ("post", "/v1/cluster/leader"),
    ("post", "/v1/cluster/step-down"),
    ("get", "/v1/cluster/faults"),
    ("put", "/v1/cluster/faults"),
    ("delete", "/v1/cluster/faults"),
];

/// The `Allow` value for `method` on `path` when `path` is an admin route's and `method` is not
/// one it serves (HEAD counts as GET). The admin routes are served beside the router's table
/// (on a single node they answer 404), so without this such a request fell through to the
/// router's "no route has this path" 404 instead of the 405 every other route gives.
pub fn admin_method_not_allowed(method: &Method, path: &str) -> Option<String> {
    let served: Vec<Method> = ADMIN_ROUTES
        .iter()
        .filter(|(_, template)| crate::http::router::capture(template, path).is_some())
        .filter_map(|(m, _)| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .collect();
    let asked = if *method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    if served.is_empty() || served.contains(asked) {
        return None;
    }
    Some(crate::http::router::allow(&served))
}

/// Response header naming the leader's peer address (the address its membership entry holds:
/// its API address only when it serves the peer RPCs there).
pub const LEADER_HEADER: &str = "x-mussikon-leader";
/// Response header naming the leader's node id.
pub const LEADER_ID_HEADER: &str = "x-mussikon-leader-id";
/// The query parameter choosing a read's consistency.
pub const CONSISTENCY: &str = "consistency";
/// Largest body of a peer RPC other than a snapshot.
const MAX_RPC_BYTES: u64 = 256 * 1024 * 1024;

/// Replicates `cmd` through `node`, on behalf of the request in the trace `traceparent`; a
/// failure travels as an I/O error that [`unavailable`] turns into a 503.
pub async fn replicated(
    node: &Node,
    cmd: Command,
    traceparent: Option<String>,
) -> Result<Executed, EngineError> {
    node.write_traced(cmd, traceparent)
        .await
        .map_err(|e| EngineError::Io(std::io::Error::other(e)))
}

/// [`replicated`] from a blocking-pool thread (where [`App::write`] runs writers).
pub fn replicate(
    node: &Node,
    cmd: &Command,
    traceparent: Option<String>,
) -> Result<Executed, EngineError> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))?;
    handle.block_on(replicated(node, cmd.clone(), traceparent))
}

/// The 503 a failed replicated write maps to; `None` for other I/O errors.
pub fn unavailable(io: &std::io::Error) -> Option<ApiError> {
    let e = io.get_ref()?.downcast_ref::<WriteError>()?;
    Some(ApiError::Unavailable {
        reason: match e {
            WriteError::Unknown { .. } => format!(
                "{e}; read the record to learn whether the write took effect before retrying"
            ),
            other => other.to_string(),
        },
        retry_after_s: 1,
    })
}

/// Removes `consistency` from a raw query string; the rest, and the level asked for.
pub fn take_consistency(query: &str) -> (String, Result<Option<Consistency>, ApiError>) {
    if !query.contains(CONSISTENCY) {
        return (query.to_string(), Ok(None));
    }
    let mut level = Ok(None);
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == CONSISTENCY {
            level = match (level, v.parse::<Consistency>()) {
                (Ok(None), Ok(l)) => Ok(Some(l)),
                (Ok(Some(_)), _) => Err(ApiError::invalid(CONSISTENCY, "give it at most once")),
                (_, Err(rule)) => Err(ApiError::invalid(CONSISTENCY, rule)),
                (Err(e), _) => Err(e),
            };
        } else {
            rest.append_pair(&k, &v);
        }
    }
    (rest.finish(), level)
}

/// The level a route's reads take when the request names none; `None` for routes that are
/// not reads of replicated data.
pub fn default_consistency(route: RouteId) -> Option<Consistency> {
    match route {
        RouteId::MusicianSearch | RouteId::GigMatches | RouteId::Match => Some(Consistency::Stale),
        RouteId::Musicians
        | RouteId::Musician
        | RouteId::Gigs
        | RouteId::Gig
        | RouteId::GigMessages
        | RouteId::GigBookings
        | RouteId::GigBooking => Some(Consistency::Linearizable),
        _ => None,
    }
}

/// The default consistency of `method` on route `id` when that request reads replicated data
/// (GET or HEAD of a data route, POST of a search or an ad-hoc match); `None` for writes and
/// routes without replicated data. The read barrier and the OpenAPI document both ask here.
pub fn read_consistency(method: &Method, id: RouteId) -> Option<Consistency> {
    let read = *method == Method::GET
        || *method == Method::HEAD
        || (id == RouteId::MusicianSearch || id == RouteId::Match) && *method == Method::POST;
    if read {
        default_consistency(id)
    } else {
        None
    }
}

/// Waits until this node may answer a read of `resolved` at the requested (or default) level,
/// for the request in the trace `trace` (the leader's read-index answer joins it).
/// Single node, writes and non-data routes pass at once.
pub async fn read_barrier(
    app: &App,
    method: &Method,
    resolved: &Resolved,
    requested: Option<Consistency>,
    trace: &TraceContext,
) -> Result<(), ApiError> {
    let Some(node) = app.cluster() else {
        return Ok(());
    };
    let Resolved::Found { id, .. } = resolved else {
        return Ok(());
    };
    let Some(default) = read_consistency(method, *id) else {
        return Ok(());
    };
    let level = requested.unwrap_or(default);
    // Only a read that may ask the leader carries the trace (a stale one never does).
    let traceparent = (level != Consistency::Stale).then(|| trace.header_value());
    node.read_barrier_traced(level, traceparent)
        .await
        .map_err(|e| ApiError::Unavailable {
            reason: match e {
                ReadError::NoLeader => format!("{e}"),
                ReadError::Behind => format!("{e}"),
            },
            retry_after_s: 1,
        })
}

/// Names the leader in `X-Mussikon-Leader` (peer address) and `X-Mussikon-Leader-Id` when one
/// is known.
pub fn leader_header(app: &App, headers: &mut HeaderMap) {
    if let Some((id, addr)) = app.cluster().and_then(Node::leader) {
        if let Ok(v) = HeaderValue::from_str(&addr) {
            headers.insert(HeaderName::from_static(LEADER_HEADER), v);
        }
        headers.insert(
            HeaderName::from_static(LEADER_ID_HEADER),
            HeaderValue::from(id),
        );
    }
}

fn problem(e: ApiError) -> warp::reply::Response {
    e.into_response("-").into_warp()
}

fn no_cluster() -> ApiError {
    ApiError::NotFound("this server is not a cluster node (start it with --node-id)".into())
}

/// `POST /raft/{rpc}`: the peer RPCs.
pub fn raft_filter(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::post()
        .and(warp::path("raft"))
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::header::optional::<String>(CLUSTER_SECRET_HEADER))
        .and(warp::header::optional::<String>(FROM_HEADER))
        .and(warp::header::optional::<String>(TO_HEADER))
        .and(warp::header::optional::<String>(trace::TRACEPARENT))
        .and(warp::header::optional::<String>(TRACE_LINKS_HEADER))
        .and(warp::body::stream().map(super::boxed_body))
        .then(
            move |rpc: String,
                  secret: Option<String>,
                  from: Option<String>,
                  to: Option<String>,
                  traceparent: Option<String>,
                  links: Option<String>,
                  body: BodyStream| {
                let app = app.clone();
                async move {
                    let started = std::time::SystemTime::now();
                    let forwarded = forwarded_trace(&rpc, traceparent.as_deref(), links.as_deref());
                    let Some(trace) = forwarded else {
                        return raft_rpc(app, rpc, secret, (from, to), body).await;
                    };
                    // Work for traced client requests elsewhere: its logs here carry the
                    // client's trace id, and its span joins that trace.
                    let span = tracing::info_span!(
                        "forwarded",
                        trace_id = %trace.context.trace_id,
                        rpc = %rpc,
                        linked = trace.links.len(),
                    );
                    let route = format!("/raft/{rpc}");
                    let resp = raft_rpc(app.clone(), rpc, secret, (from, to), body)
                        .instrument(span)
                        .await;
                    if let Some(spans) = app.span_export() {
                        let ended = std::time::SystemTime::now();
                        spans.request(
                            &trace.context,
                            crate::telemetry::RequestSpan {
                                method: "POST",
                                route: &route,
                                path: &route,
                                status: resp.status().as_u16(),
                                request_id: "",
                                start: started,
                                end: ended.max(started),
                                links: &trace.links,
                            },
                        );
                    }
                    resp
                }
            },
        )
}

/// What a listener of its own for the peer RPCs serves (`cluster.peer_listen`): exactly
/// [`raft_filter`]; every other request (another path, another method) is answered 404
/// problem+json, without the API's pipeline (no token, no rate limit, no metrics: nothing but
/// the peers is meant to reach this port).
pub fn peer_filter(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    raft_filter(app)
        .or(warp::any().map(|| {
            problem(ApiError::NotFound(
                "this is the cluster's peer port: it serves only the Raft peer RPCs \
                 (POST /raft/...); the API is on the node's API listener"
                    .into(),
            ))
        }))
        .unify()
}

/// The bound ports of a node with a peer listener of its own (`cluster.peer_listen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerPorts {
    /// The API listener's.
    pub api: u16,
    /// The peer listener's.
    pub peer: u16,
}

/// Whether a node with a peer listener (`ports`) also serves the peer RPCs on its API
/// listener, given its own address in its membership (`own`, [`Node::own_addr`]): exactly
/// while that address's port is the API listener's port and not the peer listener's. The
/// other members send this node's RPCs to that address, so while it names the API port (a
/// cluster first booted with its peers there, upgraded to a peer port: docs/operations.md,
/// "Upgrade and roll back") they must be answered there; once `cluster set-addr` moves the
/// entry to the peer port, the API port answers `/raft/...` 404 again.
///
/// Only ports are compared: the entry holds the name or address the others dial (a DNS
/// name, a Service's), the listeners hold what was bound (often `0.0.0.0`), and neither can
/// be resolved to the other here. Behind a port mapping (the listed port not the bound one)
/// the API port serves no peer RPCs, as before this rule; an entry at neither port too.
pub fn peer_rpcs_on_api_port(own: Option<&str>, ports: ListenerPorts) -> bool {
    let port = own
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok());
    port == Some(ports.api) && port != Some(ports.peer)
}

/// [`peer_rpcs_on_api_port`] for this node now (false on a single node).
pub fn serves_peer_rpcs_on_api_port(app: &App, ports: ListenerPorts) -> bool {
    app.cluster()
        .is_some_and(|node| peer_rpcs_on_api_port(node.own_addr().as_deref(), ports))
}

/// Logs (info) when this node starts serving the peer RPCs on its API port as well
/// ([`peer_rpcs_on_api_port`]; at start, if it does) and when it stops, following its
/// membership until the node shuts down.
pub async fn log_peer_rpcs_on_api_port(node: Node, ports: ListenerPorts) {
    let mut own = node.own_addr();
    let mut serving = false;
    loop {
        let now = peer_rpcs_on_api_port(own.as_deref(), ports);
        if now && !serving {
            tracing::info!(
                addr = own.as_deref().unwrap_or_default(),
                api_port = ports.api,
                peer_port = ports.peer,
                "serving the peer RPCs on the API port as well: this node's membership entry \
                 names its API port, where the other members send them; `mussikon cluster \
                 set-addr` moves it to the peer port"
            );
        } else if serving && !now {
            tracing::info!(
                addr = own.as_deref().unwrap_or_default(),
                peer_port = ports.peer,
                "no longer serving the peer RPCs on the API port: this node's membership entry \
                 no longer names it (the API port answers /raft/... 404)"
            );
        }
        serving = now;
        match node.own_addr_change(&own).await {
            Ok(changed) => own = changed,
            Err(_) => return,
        }
    }
}

/// The trace context a forwarded write RPC carries: the first client request's, joined, and
/// the other requests' as links.
struct ForwardedTrace {
    context: TraceContext,
    links: Vec<String>,
}

/// The trace of the RPCs a node sends on behalf of a client request (forwarded writes, a
/// follower's read-index question) when they carry a `traceparent`; `None` otherwise
/// (openraft's own RPCs serve no single request).
fn forwarded_trace(
    rpc: &str,
    traceparent: Option<&str>,
    links: Option<&str>,
) -> Option<ForwardedTrace> {
    if !matches!(rpc, "write" | "writes" | "read-index" | "applied-index") {
        return None;
    }
    let context = TraceContext::join(traceparent?)?;
    // Malformed links are dropped where they are parsed (`telemetry`).
    let links = links
        .map(|v| v.split(',').map(|t| t.trim().to_string()).collect())
        .unwrap_or_default();
    Some(ForwardedTrace { context, links })
}

async fn raft_rpc(
    app: App,
    rpc: String,
    secret: Option<String>,
    (from, to): (Option<String>, Option<String>),
    mut body: BodyStream,
) -> warp::reply::Response {
    let Some(node) = app.cluster() else {
        return problem(no_cluster());
    };
    if !node.authorized(secret.as_deref()) {
        return problem(ApiError::Unauthorized {
            reason: "peer RPCs need the cluster secret header".into(),
            token_given: secret.is_some(),
        });
    }
    // A request for another node (which this one replaced at its address) is not served.
    if let Some(reason) = node.misaddressed(to.as_deref()) {
        return problem(ApiError::NotFound(reason));
    }
    let from = from.and_then(|f| f.parse::<u64>().ok());
    if !node.admits_peer(from) {
        return problem(ApiError::Unavailable {
            reason: "this node is cut from the sender by fault injection".into(),
            retry_after_s: 1,
        });
    }
    let answer = if rpc == "snapshot" {
        node.receive_snapshot(&mut body).await
    } else {
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => {
                    if buf.len() as u64 + c.len() as u64 > MAX_RPC_BYTES {
                        return problem(ApiError::PayloadTooLarge {
                            limit: MAX_RPC_BYTES as usize,
                        });
                    }
                    buf.extend_from_slice(&c);
                }
                Err(e) => return problem(ApiError::BadRequest(e.to_string())),
            }
        }
        node.handle_rpc(&rpc, &buf).await
    };
    match answer {
        Ok(bytes) => ApiResponse::with_body(
            StatusCode::OK,
            "application/octet-stream",
            Bytes::from(bytes),
        )
        .into_warp(),
        Err(e @ mussikon_cluster::node::RpcError::Unknown(_)) => {
            problem(ApiError::NotFound(e.to_string()))
        }
        Err(e @ mussikon_cluster::node::RpcError::BadBody(_)) => {
            problem(ApiError::BadRequest(e.to_string()))
        }
        Err(e) => problem(ApiError::Internal(e.to_string())),
    }
}

/// Body of `POST /v1/cluster/members`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The new node's id (never one used before).
    pub node_id: u64,
    /// Its peer address, `HOST:PORT`: where the other nodes send it peer RPCs (its
    /// `cluster.peer_listen` address, or its API listen address when it has none).
    pub addr: String,
    /// Promote to voter once caught up (default true); false keeps it a learner (read replica).
    #[serde(default = "yes")]
    pub voter: bool,
}

/// Body of `PUT /v1/cluster/members/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMemberAddr {
    /// The member's new peer address, `HOST:PORT`, where it must already answer peer RPCs
    /// (its `cluster.peer_listen` address, or its API address when it has none).
    pub addr: String,
}

/// The one rule for a peer address in a request body: `HOST:PORT`, a host (a name, an IPv4
/// address or a bracketed IPv6 one) and a port from 1 to 65535.
fn peer_addr_rule(addr: &str) -> Result<(), ApiError> {
    let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c))
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "addr",
            "must be HOST:PORT (a host name or IP address, and a port from 1 to 65535)",
        ))
    }
}

/// Body of `POST /v1/cluster/leader`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLeader {
    /// The voter to lead next; absent: the voter holding the most of the log.
    #[serde(default)]
    pub node_id: Option<u64>,
}

fn yes() -> bool {
    true
}

fn admin_only(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    const ADMIN: &[Role] = &[Role::Admin];
    let access = Access::Roles(ADMIN);
    let identified = auth::identify(app.verifier(), headers, access);
    auth::authorize(identified, access, false, &[]).map(|_| ())
}

fn admin_error(e: AdminError) -> ApiError {
    match e {
        AdminError::Busy => ApiError::Unavailable {
            reason: e.to_string(),
            retry_after_s: 5,
        },
        AdminError::NoLeader => ApiError::Unavailable {
            reason: e.to_string(),
            retry_after_s: 1,
        },
        AdminError::Invalid(rule) => ApiError::invalid("node_id", rule),
        AdminError::NotNow(reason)
        | AdminError::Uncommitted(reason)
        | AdminError::Unknown(reason) => ApiError::Unavailable {
            reason,
            retry_after_s: 1,
        },
        AdminError::Failed(m) => ApiError::Internal(m),
        e @ AdminError::NotMember(_) => ApiError::NotFound(e.to_string()),
        AdminError::BadAddr(rule) => ApiError::invalid("addr", rule),
    }
}

/// An admin route's answer: the admin role checked, 404 on a single node, then `op` on this
/// node; the cluster status it returns as JSON (200), or its error as a problem.
async fn admin_call<F, Fut>(app: App, headers: HeaderMap, op: F) -> warp::reply::Response
where
    F: FnOnce(Node) -> Fut,
    Fut: std::future::Future<Output = Result<ClusterStatus, ApiError>>,
{
    let answer = async {
        admin_only(&app, &headers)?;
        let node = app.cluster().ok_or_else(no_cluster)?.clone();
        let status = op(node).await?;
        ApiResponse::json(StatusCode::OK, &status)
    };
    answer
        .await
        .map(ApiResponse::into_warp)
        .unwrap_or_else(problem)
}

/// An admin route's JSON body through the API's one decoder ([`decode_json`]: 400 with the
/// position for malformed JSON, 422 naming the field otherwise); `T::default()` when the body
/// is empty.
fn admin_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    decode_json(body)
}

/// `/v1/cluster/status`, `/v1/cluster/members[/{id}]` (POST; PUT and DELETE with the id),
/// `/v1/cluster/leader`,
/// `/v1/cluster/step-down`.
pub fn admin_filter(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let with_app = {
        let app = app.clone();
        move || {
            let app = app.clone();
            warp::any().map(move || app.clone())
        }
    };
    let body = || {
        warp::header::headers_cloned()
            .and(warp::body::content_length_limit(64 * 1024))
            .and(warp::body::bytes())
    };
    let status = warp::get()
        .and(warp::path!("v1" / "cluster" / "status"))
        .and(with_app())
        .and(warp::header::headers_cloned())
        .then(|app: App, headers: HeaderMap| {
            admin_call(app, headers, |node| async move { Ok(node.status()) })
        });
    let add = warp::post()
        .and(warp::path!("v1" / "cluster" / "members"))
        .and(with_app())
        .and(body())
        .then(|app: App, headers: HeaderMap, body: Bytes| {
            admin_call(app, headers, move |node| async move {
                let m: AddMember = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
                if m.node_id == 0 {
                    return Err(ApiError::invalid("node_id", "must be at least 1"));
                }
                peer_addr_rule(&m.addr)?;
                node.change_members(AdminOp::Add {
                    id: m.node_id,
                    addr: m.addr,
                    voter: m.voter,
                })
                .await
                .map_err(admin_error)
            })
        });
    let remove = warp::delete()
        .and(warp::path!("v1" / "cluster" / "members" / u64))
        .and(with_app())
        .and(warp::header::headers_cloned())
        .then(|id: u64, app: App, headers: HeaderMap| {
            admin_call(app, headers, move |node| async move {
                node.change_members(AdminOp::Remove { id })
                    .await
                    .map_err(admin_error)
            })
        });
    let set_addr = warp::put()
        .and(warp::path!("v1" / "cluster" / "members" / u64))
        .and(with_app())
        .and(body())
        .then(|id: u64, app: App, headers: HeaderMap, body: Bytes| {
            admin_call(app, headers, move |node| async move {
                let m: SetMemberAddr = decode_json(&body)?;
                peer_addr_rule(&m.addr)?;
                node.set_member_addr(id, m.addr).await.map_err(admin_error)
            })
        });
    let transfer = warp::post()
        .and(warp::path!("v1" / "cluster" / "leader"))
        .and(with_app())
        .and(body())
        .then(|app: App, headers: HeaderMap, body: Bytes| {
            admin_call(app, headers, move |node| async move {
                let t: TransferLeader = admin_body(&body)?;
                if t.node_id == Some(0) {
                    return Err(ApiError::invalid("node_id", "must be at least 1"));
                }
                node.transfer_leadership(t.node_id)
                    .await
                    .map_err(admin_error)
            })
        });
    let step_down = warp::post()
        .and(warp::path!("v1" / "cluster" / "step-down"))
        .and(with_app())
        .and(warp::header::headers_cloned())
        .then(|app: App, headers: HeaderMap| {
            admin_call(app, headers, |node| async move {
                node.step_down().await.map_err(admin_error)
            })
        });
    status
        .or(add)
        .unify()
        .or(remove)
        .unify()
        .or(set_addr)
        .unify()
        .or(transfer)
        .unify()
        .or(step_down)
        .unify()
        .or(faults_filter(app))
        .unify()
}

/// Body of `PUT /v1/cluster/faults`; also the answer of every faults route.
#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFaults {
    /// Peers this node is cut from (both ways); empty heals.
    pub cut: Vec<u64>,
}

/// `GET|PUT|DELETE /v1/cluster/faults`: fault injection (see `mussikon_cluster::faults`), admin
/// only, 404 unless `cluster.fault_injection` is on. GET shows the cut peers, PUT replaces
/// them, DELETE heals.
fn faults_filter(
    app: App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let path = || warp::path!("v1" / "cluster" / "faults").and(warp::header::headers_cloned());
    let show = {
        let app = app.clone();
        warp::get()
            .and(path())
            .map(move |headers: HeaderMap| set_faults(&app, &headers, None))
    };
    let heal = {
        let app = app.clone();
        warp::delete()
            .and(path())
            .map(move |headers: HeaderMap| set_faults(&app, &headers, Some(Ok(Default::default()))))
    };
    let cut = warp::put()
        .and(path())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .map(move |headers: HeaderMap, body: Bytes| {
            let cut = serde_json::from_slice::<SetFaults>(&body)
                .map(|f| f.cut.into_iter().collect())
                .map_err(|e| ApiError::BadRequest(format!("body: {e}")));
            set_faults(&app, &headers, Some(cut))
        });
    show.or(heal).unify().or(cut).unify()
}

/// Applies a fault-injection change (`None`: only show) and answers the cut peers.
fn set_faults(
    app: &App,
    headers: &HeaderMap,
    cut: Option<Result<std::collections::BTreeSet<u64>, ApiError>>,
) -> warp::reply::Response {
    let op = || {
        admin_only(app, headers)?;
        let node = app.cluster().ok_or_else(no_cluster)?;
        if node.cut().is_none() {
            return Err(ApiError::NotFound(
                "fault injection is off on this node (cluster.fault_injection)".into(),
            ));
        }
        if let Some(cut) = cut {
            let cut = cut?;
            if cut.contains(&node.id()) {
                return Err(ApiError::invalid("cut", "must not name this node"));
            }
            node.set_cut(cut)
                .map_err(|e| ApiError::NotFound(e.to_string()))?;
        }
        ApiResponse::json(
            StatusCode::OK,
            &SetFaults {
                cut: node.cut().unwrap_or_default().into_iter().collect(),
            },
        )
    };
    op().map(ApiResponse::into_warp).unwrap_or_else(problem)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_consistency_parameter_is_taken_out_and_checked() {
        let (rest, level) = take_consistency("limit=5&consistency=stale&after=m-1");
        assert_eq!(rest, "limit=5&after=m-1");
        assert_eq!(level.unwrap(), Some(Consistency::Stale));
        let (rest, level) = take_consistency("limit=5");
        assert_eq!((rest.as_str(), level.unwrap()), ("limit=5", None));
        let (_, level) = take_consistency("consistency=strong");
        assert!(level.unwrap_err().to_string().contains("invalid"));
        let (_, level) = take_consistency("consistency=stale&consistency=leader");
        assert!(level.is_err());
    }

    #[test]
    fn the_api_port_serves_peer_rpcs_only_while_the_membership_names_it() {
        let ports = ListenerPorts {
            api: 8080,
            peer: 7000,
        };
        // Named at the API port: by a DNS name, an IP, IPv6.
        for own in [
            "mussikon-0.mussikon-peers:8080",
            "10.0.0.1:8080",
            "[fd00::1]:8080",
        ] {
            assert!(peer_rpcs_on_api_port(Some(own), ports), "{own}");
        }
        // At the peer port, at neither (a port mapping), unparsable, not a member.
        for own in [
            Some("mussikon-0.mussikon-peers:7000"),
            Some("10.0.0.1:30080"),
            Some("10.0.0.1"),
            Some("10.0.0.1:http"),
            None,
        ] {
            assert!(!peer_rpcs_on_api_port(own, ports), "{own:?}");
        }
        // Both ports alike (two IPs of one host): never the API port.
        let alike = ListenerPorts {
            api: 8080,
            peer: 8080,
        };
        assert!(!peer_rpcs_on_api_port(Some("10.0.0.1:8080"), alike));
    }

    #[test]
    fn a_peer_address_is_host_and_port() {
        for good in [
            "10.0.0.1:7000",
            "mussikon-0.peers:7000",
            "[::1]:7000",
            "h:65535",
        ] {
            assert!(peer_addr_rule(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "7000",
            ":7000",
            "h:",
            "h:0",
            "h:65536",
            "h:x",
            "h :7000",
            "http://h:7000",
            "u@h:7000",
        ] {
            let ApiError::Invalid(fields) = peer_addr_rule(bad).expect_err(bad) else {
                panic!("{bad}: not a field error")
            };
            assert_eq!(fields[0].field, "addr", "{bad}");
        }
    }
}
