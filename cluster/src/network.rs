//! The peer transport, client side: openraft's RPCs as HTTP POSTs to `http://ADDR/raft/…` on
//! the peer's own API listener, bodies in bincode 2 ([`crate::types::encode`]).
//!
//! Every request carries the cluster secret in [`SECRET_HEADER`]; a peer without it answers
//! 401 and changes nothing. Timeouts come from openraft's per-RPC budget (append, vote) or from
//! the snapshot's size (at least [`SNAPSHOT_MIN_TIMEOUT`] plus one second per
//! [`SNAPSHOT_BYTES_PER_SEC`]), so a large snapshot is never cut off and re-sent forever: a
//! snapshot goes as one streamed request (openraft's `full_snapshot`), not in chunks with a
//! per-chunk timeout. Connection failures make openraft back off (50 ms doubling to 2 s).
//! A node never dials itself. Every request names its sender ([`FROM_HEADER`]), so a peer can
//! refuse a cut one (fault injection, [`crate::faults`]), and its addressee ([`TO_HEADER`]):
//! a process at the address that is another node answers 404, which counts as unreachable
//! (the addressee is not there), so a replaced node's successor never answers for it.
//! A peer that no longer holds an entry it acknowledged (its data was wiped) counts as
//! unreachable too, and is logged and counted ([`LOG_REVERTED_TOTAL`]): openraft 0.9's leader
//! would panic on its answer. Failures count in
//! `mussikon_raft_peer_rpc_errors_total{peer,rpc}`; the time of each, answered or not, in
//! `mussikon_raft_peer_rpc_seconds{rpc}`.
//!
//! Routes served by the peer: `append`, `vote`, `snapshot` (raft), `write`, `writes` and `read-index`
//! (client forwarding, see [`crate::node`]). Forwarded writes carry their clients' W3C trace
//! context ([`TRACEPARENT_HEADER`], [`TRACE_LINKS_HEADER`]), so the leader's logs and spans
//! join the clients' traces.

use crate::faults::Faults;
use crate::types::{decode, encode, snapshot_prefix, NodeId, TypeConfig};
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// Header carrying the cluster secret on every peer request.
pub const SECRET_HEADER: &str = "x-mussikon-cluster-secret";
/// Header naming the node that sends a peer request.
pub const FROM_HEADER: &str = "x-mussikon-node-id";
/// Header naming the node a peer request is for. A node that is not it answers 404 and does
/// nothing: after a node is replaced, another node may listen at its old address, and must not
/// take (or answer) the old node's replication.
pub const TO_HEADER: &str = "x-mussikon-to-node-id";
/// Counter: peer RPCs this node refused because they were for another node (see [`TO_HEADER`]).
/// Rising, it means some member still points at this node's address: a replaced node.
pub const MISDIRECTED_RPCS_TOTAL: &str = "mussikon_raft_misdirected_rpcs_total";
/// Histogram: seconds per peer RPC this node sends (`rpc`: append, vote), answered or not.
pub const PEER_RPC_SECONDS: &str = "mussikon_raft_peer_rpc_seconds";
/// W3C trace context of the (first) client request a forwarded write serves.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The `traceparent` values of the other client requests a batch of forwarded writes serves,
/// comma-separated.
pub const TRACE_LINKS_HEADER: &str = "x-mussikon-trace-links";

/// Shortest time allowed for sending a snapshot.
pub const SNAPSHOT_MIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Slowest transfer rate assumed for a snapshot.
pub const SNAPSHOT_BYTES_PER_SEC: u64 = 4 * 1024 * 1024;

/// How long an idle peer connection is kept by default: half the server's default
/// `header_read_timeout` (10 s), after which the server closes an idle keep-alive connection.
pub const DEFAULT_PEER_IDLE: Duration = Duration::from_secs(5);

/// An HTTP client shared by every peer connection (its pool keeps one set of connections per
/// peer). Idle ones are dropped after `idle`, which must be shorter than the peers' own idle
/// limit: a connection reused just as the peer closes it fails the request on it (a forwarded
/// write sent after exactly the server's 10 s did, in a partition test under CI load). A
/// restarted peer is redialed as well.
pub fn http_client(idle: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(idle)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// What every peer request of this node goes through: the shared client, the secret and this
/// node's id on every request, and the fault-injection cut (a cut peer is unreachable).
#[derive(Clone)]
pub struct Dialer {
    /// This node, never dialed.
    pub me: NodeId,
    /// The shared client.
    pub client: reqwest::Client,
    /// The cluster secret.
    pub secret: String,
    /// Peers cut by fault injection.
    pub faults: Faults,
}

impl Dialer {
    /// POSTs `body` to peer `target` at `http://addr/raft/{rpc}` and decodes the answer.
    pub async fn post<Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        rpc: &str,
        body: reqwest::Body,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        self.post_traced(target, addr, rpc, body, timeout, &[])
            .await
    }

    /// [`Dialer::post`] on behalf of client requests in the traces `trace` names (W3C
    /// `traceparent` values): the first goes as the `traceparent` header, the others as
    /// [`TRACE_LINKS_HEADER`], so the peer's work joins the first trace and links the rest.
    pub async fn post_traced<Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        rpc: &str,
        body: reqwest::Body,
        timeout: Duration,
        trace: &[String],
    ) -> Result<Resp, TransportError> {
        if target == self.me {
            return Err(TransportError::SelfDial);
        }
        self.unless_cut(target, addr)?;
        post(self, target, addr, rpc, body, timeout, trace).await
    }

    /// Refuses to dial `target` while fault injection cuts it off (as if it were unreachable).
    fn unless_cut(&self, target: NodeId, addr: &str) -> Result<(), TransportError> {
        if self.faults.is_cut(target) {
            return Err(TransportError::Unreachable(
                addr.to_string(),
                "cut by fault injection".into(),
            ));
        }
        Ok(())
    }
}

impl Dialer {
    /// Whether `addr` reaches node `target` (a member about to be moved there, which may be
    /// this node at its new address): a `whois` RPC answered there. Every RPC names its
    /// addressee, so only `target` itself answers.
    pub async fn reaches(
        &self,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let body = crate::types::encode(&target)
            .map_err(|e| TransportError::Failed(addr.to_string(), e.to_string()))?;
        // Unlike `post`, this node may probe itself (the leader at its own new address).
        self.unless_cut(target, addr)?;
        post::<crate::node::PeerView>(self, target, addr, "whois", body.into(), timeout, &[])
            .await
            .map(|_| ())
    }
}

/// Builds the connection to each peer.
#[derive(Clone)]
pub struct Network {
    /// How peers are dialed.
    pub dialer: Dialer,
}

/// One peer's connection.
pub struct Peer {
    target: NodeId,
    addr: String,
    dialer: Dialer,
    /// The highest log index the peer has acknowledged holding, through this connection.
    acknowledged: Option<u64>,
    /// Whether the peer's log going backwards was logged already (once per connection).
    reverted_logged: bool,
}

/// Counter: append-entries answers refused because the peer no longer holds entries it had
/// acknowledged (its data was lost or wiped), by peer.
pub const LOG_REVERTED_TOTAL: &str = "mussikon_raft_peer_log_reverted_total";

/// An RPC failure before the peer's answer was read.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not connect.
    #[error("peer {0} unreachable: {1}")]
    Unreachable(String, String),
    /// Sent, but no valid answer.
    #[error("rpc to {0} failed: {1}")]
    Failed(String, String),
    /// The peer refused the secret.
    #[error(
        "peer {0} refused the cluster secret (401): every node needs the same --cluster-secret"
    )]
    Unauthorized(String),
    /// This node would dial itself.
    #[error("a node never dials itself")]
    SelfDial,
}

fn count_error(peer: NodeId, rpc: &'static str) {
    metrics::counter!("mussikon_raft_peer_rpc_errors_total", "peer" => peer.to_string(), "rpc" => rpc)
        .increment(1);
}

/// POSTs `body` to `http://addr/raft/{rpc}` and decodes the answer.
async fn post<Resp: DeserializeOwned>(
    dialer: &Dialer,
    target: NodeId,
    addr: &str,
    rpc: &str,
    body: reqwest::Body,
    timeout: Duration,
    trace: &[String],
) -> Result<Resp, TransportError> {
    let url = format!("http://{addr}/raft/{rpc}");
    let mut request = dialer
        .client
        .post(&url)
        .header(SECRET_HEADER, &dialer.secret)
        .header(FROM_HEADER, dialer.me.to_string())
        .header(TO_HEADER, target.to_string())
        .header("content-type", "application/octet-stream");
    if let Some((first, others)) = trace.split_first() {
        request = request.header(TRACEPARENT_HEADER, first);
        if !others.is_empty() {
            request = request.header(TRACE_LINKS_HEADER, others.join(","));
        }
    }
    let resp = request
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                TransportError::Unreachable(addr.to_string(), e.to_string())
            } else {
                TransportError::Failed(addr.to_string(), e.to_string())
            }
        })?;
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(TransportError::Unauthorized(addr.to_string()));
    }
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(TransportError::Unreachable(
            addr.to_string(),
            format!("node {target} is not there (another node, or no peer RPCs, at the address)"),
        ));
    }
    if !resp.status().is_success() {
        return Err(TransportError::Failed(
            addr.to_string(),
            format!("status {}", resp.status()),
        ));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| TransportError::Failed(addr.to_string(), e.to_string()))?;
    decode(&bytes).map_err(|e| TransportError::Failed(addr.to_string(), e.to_string()))
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        rpc: &'static str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let started = std::time::Instant::now();
        let body = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer: Result<Result<Resp, RaftError<NodeId, E>>, TransportError> = self
            .dialer
            .post(self.target, &self.addr, rpc, body.into(), timeout)
            .await;
        metrics::histogram!(PEER_RPC_SECONDS, "rpc" => rpc).record(started.elapsed().as_secs_f64());
        match answer {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => {
                count_error(self.target, rpc);
                Err(RPCError::RemoteError(RemoteError::new(self.target, remote)))
            }
            Err(e @ (TransportError::Unreachable(..) | TransportError::SelfDial)) => {
                count_error(self.target, rpc);
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => {
                count_error(self.target, rpc);
                Err(RPCError::Network(NetworkError::new(&e)))
            }
        }
    }
}

impl Peer {
    /// The answer to a peer that says it lacks entry `prev` after acknowledging entries up to
    /// `held`: its log went backwards (its data was lost or wiped and it restarted under its
    /// id). openraft 0.9's leader panics on such an answer; it gets "unreachable" instead, so
    /// this leader goes on without the peer, which must be removed and re-added under a new id.
    fn log_reverted(
        &mut self,
        prev: u64,
        held: u64,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId>> {
        metrics::counter!(LOG_REVERTED_TOTAL, "peer" => self.target.to_string()).increment(1);
        let reason = format!(
            "node {} at {} no longer holds log index {prev}, though it acknowledged entries up to \
             {held}: its data was lost or wiped. Not replicating to it; remove it (`mussikon \
             cluster remove {}`) and add it again under a new id",
            self.target, self.addr, self.target
        );
        if !std::mem::replace(&mut self.reverted_logged, true) {
            tracing::error!(target = self.target, "{reason}");
        }
        RPCError::Unreachable(Unreachable::new(&std::io::Error::other(reason)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        if target == self.dialer.me {
            // openraft never replicates to the leader itself; keep the promise visible.
            tracing::error!(
                target,
                "asked to dial this node itself; every RPC will fail"
            );
        }
        Peer {
            target,
            addr: node.addr.clone(),
            dialer: self.dialer.clone(),
            acknowledged: None,
            reverted_logged: false,
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let prev = rpc.prev_log_id.map(|l| l.index);
        let last = rpc.entries.last().map(|e| e.log_id.index).or(prev);
        let resp: AppendEntriesResponse<NodeId> =
            self.call("append", &rpc, option.hard_ttl()).await?;
        match &resp {
            AppendEntriesResponse::Success => self.acknowledged = self.acknowledged.max(last),
            AppendEntriesResponse::PartialSuccess(upto) => {
                self.acknowledged = self.acknowledged.max(upto.map(|l| l.index));
            }
            AppendEntriesResponse::Conflict => {
                if let (Some(held), Some(prev)) = (self.acknowledged, prev) {
                    if prev <= held {
                        return Err(self.log_reverted(prev, held));
                    }
                }
            }
            AppendEntriesResponse::HigherVote(_) => {}
        }
        Ok(resp)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let net = |e: &dyn std::fmt::Display| {
            StreamingError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
        };
        let file = tokio::fs::File::open(&snapshot.snapshot.path)
            .await
            .map_err(|e| net(&e))?;
        let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let prefix = snapshot_prefix(&(vote, snapshot.meta.clone())).map_err(|e| net(&e))?;
        let stream = futures_util::stream::once(async move {
            Ok::<bytes::Bytes, std::io::Error>(bytes::Bytes::from(prefix))
        })
        .chain(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let timeout = SNAPSHOT_MIN_TIMEOUT + Duration::from_secs(size / SNAPSHOT_BYTES_PER_SEC);
        tracing::info!(target = self.target, bytes = size, "sending snapshot");
        let send = self
            .dialer
            .post::<Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>(
                self.target,
                &self.addr,
                "snapshot",
                reqwest::Body::wrap_stream(stream),
                timeout,
            );
        let installed = snapshot.meta.last_log_id.map(|l| l.index);
        let answer = tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = send => match answer {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(fatal)) => {
                    count_error(self.target, "snapshot");
                    Err(StreamingError::RemoteError(RemoteError::new(self.target, fatal)))
                }
                Err(e @ (TransportError::Unreachable(..) | TransportError::SelfDial)) => {
                    count_error(self.target, "snapshot");
                    Err(StreamingError::Unreachable(Unreachable::new(&e)))
                }
                Err(e) => {
                    count_error(self.target, "snapshot");
                    Err(StreamingError::Network(NetworkError::new(&e)))
                }
            }
        };
        if answer.is_ok() {
            self.acknowledged = self.acknowledged.max(installed);
        }
        answer
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            (0u32..).map(|i| Duration::from_millis(50u64.saturating_mul(1 << i.min(6)).min(2000))),
        )
    }
}

use futures_util::StreamExt as _;
