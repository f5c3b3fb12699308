//! A running node: openraft over the log store, the engine state machine and the HTTP network;
//! start-up and first initialization; writes (forwarded once to the leader); read barriers per
//! consistency level; membership changes; status and metrics; and the server side of peer RPCs.
//!
//! Promises:
//! - A write returns `Ok` only after its entry is committed (on a majority of logs, each
//!   fsynced) and applied to this node's leader engine; the outcome is the engine's. A follower
//!   forwards the command to the leader it knows; while none is known, the known one cannot be
//!   dialed or refuses as no longer leader (the command was not taken), it tries again until
//!   [`LEADER_WAIT`], then answers [`WriteError::NoLeader`]; the leader never forwards again.
//!   A forwarded write whose outcome is unknown (the leader failed with it in flight) is
//!   answered [`WriteError::Unknown`], unless it carries an idempotency key: then it is
//!   submitted again until [`LEADER_WAIT`], and the engine, which applies a keyed command at
//!   most once, answers its one outcome.
//! - [`Consistency::Linearizable`] reads run after a ReadIndex round (`ensure_linearizable` on
//!   the leader: a quorum confirms leadership, and the local engine has applied up to the read
//!   index); a follower asks the leader for the read index and waits until it has applied it.
//!   While no leader is known, or the one asked no longer leads, a read asks again until
//!   [`LEADER_WAIT`] (reads change nothing, so repeating one is safe).
//!   [`Consistency::Leader`] waits until this node has applied what the leader has applied (no
//!   quorum round). [`Consistency::Stale`] reads the local engine at once.
//! - First boot: the node with the lowest id of `--peers` initializes the cluster when its log
//!   and vote are empty; the others wait to be contacted. A restarted node never re-initializes.
//!   A directory restored with `mussikon restore --cluster` starts a new cluster whose first
//!   state is the restored data ([`crate::bootstrap`]); other engine data without Raft state
//!   is refused.
//! - One membership change at a time ([`AdminError::Busy`] otherwise); a leadership handover
//!   ([`Node::transfer_leadership`], [`Node::step_down`]) counts as one. A change asked while
//!   the leader has not committed the last one (a new leader inherits it uncommitted) is retried
//!   until [`LEADER_WAIT`], then answered [`AdminError::Uncommitted`]; no openraft refusal of a
//!   change is an internal error (`membership_error`).
//! - A handover loses no acknowledged write and fails none: the leader stops taking writes
//!   (they wait), lets the ones in flight commit, waits until the target has every entry, and
//!   asks it to stand for election (openraft 0.9 has no leader transfer; this is Raft's
//!   TimeoutNow done from outside). The waiting writes then go to the new leader. A read asked
//!   of the old leader meanwhile is asked again of the new one (see the reads above).

use crate::election::{self, LeaderContact};
use crate::faults::{Faults, FaultsDisabled};
use crate::group_commit::{self, Queue};
use crate::log_store::LogStore;
use crate::network::{http_client, Dialer, Network, TransportError, SECRET_HEADER};
use crate::state_machine::StateMachine;
use crate::types::{decode, encode, NodeId, Raft, Reply, Request, SnapshotFile, TypeConfig};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use mussikon_engine::{Command, Engine, Executed};
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, Fatal, RaftError,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, ChangeMembers, ServerState, Snapshot, StoredMembership};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

pub use crate::network::SECRET_HEADER as CLUSTER_SECRET_HEADER;

/// How long a write or read waits for a leader to be known.
pub const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a follower waits to apply up to a read index, and a leader for a quorum to
/// confirm its leadership.
pub const READ_WAIT: Duration = Duration::from_secs(5);
/// How long the leader waits for a write to commit; past it the outcome is unknown (a leader
/// cut from its quorum would otherwise hold the client forever).
pub const WRITE_WAIT: Duration = Duration::from_secs(10);
/// How long a handover waits for the writes in flight to commit, then for the target to catch
/// up, then for the new leader to be known (each).
pub const HANDOVER_WAIT: Duration = Duration::from_secs(5);
/// Leadership handovers by outcome (`ok`, `failed`).
pub const HANDOVERS_TOTAL: &str = "mussikon_raft_leader_handovers_total";
/// Writes carrying an idempotency key submitted again after their outcome was unknown.
pub const WRITES_RESUBMITTED_TOTAL: &str = "mussikon_raft_writes_resubmitted_total";

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (≥ 1).
    pub id: NodeId,
    /// The initial members, id → peer address (`HOST:PORT` where the node serves the peer
    /// RPCs over HTTP), this node included.
    pub peers: BTreeMap<NodeId, String>,
    /// Shared by every node; carried by every peer RPC.
    pub secret: String,
    /// Directory of the log and the snapshots.
    pub dir: PathBuf,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_logs: u64,
    /// Entries kept in the log below the last snapshot (for followers slightly behind).
    pub keep_logs: u64,
    /// Most entries a follower may lag behind the leader and still be ready.
    pub ready_max_lag: u64,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Election timeout range, ms; `None`: [`default_election_ms`]. The greater bound is also
    /// how long openraft 0.9 has a follower refuse votes after its leader's last heartbeat (its
    /// leader lease), so failover takes about one to two of it.
    pub election_ms: Option<(u64, u64)>,
    /// Accept fault injection ([`crate::faults`]); tests only.
    pub fault_injection: bool,
    /// How long an idle connection to a peer is kept for reuse. Must be shorter than the time
    /// after which the peers close an idle connection (the server's `header_read_timeout`):
    /// otherwise a request sent on a connection the peer is closing at that moment fails, and
    /// a forwarded write then answers 503 "outcome unknown" ([`crate::network::http_client`]).
    pub peer_idle: std::time::Duration,
}

impl NodeConfig {
    /// Defaults for the tunables.
    pub fn new(id: NodeId, peers: BTreeMap<NodeId, String>, secret: String, dir: PathBuf) -> Self {
        NodeConfig {
            id,
            peers,
            secret,
            dir,
            snapshot_logs: 10_000,
            keep_logs: 1_000,
            ready_max_lag: 1_000,
            heartbeat_ms: 100,
            election_ms: None,
            fault_injection: false,
            peer_idle: crate::network::DEFAULT_PEER_IDLE,
        }
    }
}

/// The election timeout range for a heartbeat of `heartbeat_ms`: 2.5 to 4 heartbeats (250–400
/// ms at the default 100 ms).
///
/// openraft 0.9 has a follower refuse votes until the greater bound has passed since its
/// leader's last heartbeat (the leader lease), so the first candidate after a leader dies
/// usually loses and the second round wins: failover takes about twice the timeout. Measured
/// (docs/perf.md, "Failover"): 5–10 heartbeats gave 1.8–2.1 s, 3–5 gave 0.93–1.04 s, 2.5–4
/// gives 0.75–0.83 s, with no election from delayed heartbeats under 64 writing clients on a
/// loaded 2-core machine.
pub fn default_election_ms(heartbeat_ms: u64) -> (u64, u64) {
    (heartbeat_ms * 5 / 2, heartbeat_ms * 4)
}

/// Read consistency levels (query parameter `consistency`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// ReadIndex through the leader: sees every write acknowledged before the read began.
    Linearizable,
    /// Waits until this node has applied what the leader has applied; no quorum round.
    Leader,
    /// The local engine as it is.
    Stale,
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "leader" => Ok(Consistency::Leader),
            "stale" => Ok(Consistency::Stale),
            other => Err(format!(
                "consistency must be linearizable, leader or stale (got {other:?})"
            )),
        }
    }
}

/// Errors of starting a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The log or state machine could not be opened.
    #[error("storage: {0}")]
    Storage(String),
    /// openraft refused the configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
    /// The settings are unusable.
    #[error("{0}")]
    Config(String),
}

/// How long a starting node waits for each peer's `whois` answer.
const WHOIS_WAIT: Duration = Duration::from_secs(1);
/// How long the leader waits for a member to answer at the address it is to move to.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Asks the initial members what they know of this node's id before it takes part, and
/// refuses to start (a) a node whose id was removed from the cluster (it would campaign with a
/// stale membership; its directory is marked as a removed node's, see [`crate::identity`]),
/// and (b) a `fresh` node (empty log and state) whose leader has already replicated entries to
/// its id: its data was lost or wiped, and answering under the old id would make the leader's
/// view of its log go backwards (openraft 0.9's leader panics on that). Peers that do not
/// answer within [`WHOIS_WAIT`] (down, older builds) are not counted: with none answering, the
/// node starts as before.
async fn check_identity(
    dialer: &Dialer,
    config: &NodeConfig,
    fresh: bool,
) -> Result<(), StartError> {
    let id = config.id;
    let body = encode(&id).map_err(|e| StartError::Config(e.to_string()))?;
    let asks = config
        .peers
        .iter()
        .filter(|(peer, _)| **peer != id)
        .map(|(peer, addr)| {
            let body = body.clone();
            async move {
                dialer
                    .post::<PeerView>(*peer, addr, "whois", body.into(), WHOIS_WAIT)
                    .await
                    .ok()
            }
        });
    let views: Vec<PeerView> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    if views.iter().any(|v| v.retired) {
        if let Err(e) = crate::identity::mark_retired(&config.dir) {
            tracing::warn!(error = %e, "could not mark the directory as a removed node's");
        }
        return Err(StartError::Config(format!(
            "cluster.node_id: node {id} was removed from the cluster, and a removed node's id is \
             never reused: start this node under a new id (--node-id auto clears this directory \
             and draws one) and add it with `mussikon cluster join`"
        )));
    }
    if fresh {
        if let Some(matched) = views
            .iter()
            .find(|v| v.leads && v.member)
            .and_then(|v| v.matched)
        {
            return Err(StartError::Config(format!(
                "cluster.node_id: this node's data directory is empty, but the cluster's leader \
                 has already replicated its log up to index {matched} to node {id}: the node's \
                 data was lost or wiped. Remove it (`mussikon cluster remove {id}`), then start \
                 it under a new id (--node-id auto draws one) and add it with `mussikon cluster \
                 join`"
            )));
        }
    }
    Ok(())
}

/// How long an early election's check of the old leader waits for it to answer
/// ([`Node::outrun_stale_candidate`]).
const LEADER_PROBE_WAIT: Duration = Duration::from_millis(200);

/// How long a follower waits for the leader's answer to forwarded writes.
const FORWARD_WAIT: Duration = Duration::from_secs(30);

/// A write waiting to be forwarded, with the W3C `traceparent` of the client request it
/// serves.
#[derive(Clone, Debug)]
struct Forward {
    req: Request,
    traceparent: Option<String>,
}

/// The follower's forwarding queue: concurrent writes to be forwarded share one request.
fn forward_queue(me: std::sync::Weak<Inner>) -> Queue<Forward> {
    let submit: group_commit::Submit<Forward> = Arc::new(move |batch| {
        let me = me.clone();
        Box::pin(async move {
            match me.upgrade() {
                Some(inner) => Node { inner }.forward(batch).await,
                None => {
                    vec![Err(WriteError::Fatal("the node is shutting down".into())); batch.len()]
                }
            }
        })
    });
    Queue::start(
        group_commit::IN_FLIGHT,
        group_commit::MAX_COMMANDS,
        |f: &Forward| group_commit::is_bulk(&f.req.0),
        submit,
    )
}

/// Why a write failed.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum WriteError {
    /// No leader known (election in progress, or no quorum).
    #[error("no leader is known; retry shortly")]
    NoLeader,
    /// The leader changed while forwarding; the outcome may or may not have been applied.
    #[error("the write was forwarded to {leader} and its outcome is unknown: {reason}")]
    Unknown {
        /// Leader address dialed.
        leader: String,
        /// Why.
        reason: String,
    },
    /// The node is shutting down or its storage failed.
    #[error("raft failed: {0}")]
    Fatal(String),
}

/// Why a read barrier failed.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum ReadError {
    /// No leader, or leadership could not be confirmed by a quorum.
    #[error("no confirmed leader; retry shortly or read with consistency=stale")]
    NoLeader,
    /// This node did not apply up to the read index in time.
    #[error("this node is behind the leader; retry or read elsewhere")]
    Behind,
}

/// Why a membership change failed.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum AdminError {
    /// Another change is in progress.
    #[error("another membership change is in progress; retry when it is done")]
    Busy,
    /// No leader known.
    #[error("no leader is known; retry shortly")]
    NoLeader,
    /// The request makes no sense for the current membership.
    #[error("{0}")]
    Invalid(String),
    /// openraft refused or failed.
    #[error("membership change failed: {0}")]
    Failed(String),
    /// It could not be done now (a handover whose target did not catch up or get elected in
    /// time); nothing changed, or the cluster moved on by itself. Retry.
    #[error("{0}")]
    NotNow(String),
    /// The node id is not a member of the cluster (and never was, or it would be retired).
    #[error("node {0} is not a member of the cluster")]
    NotMember(NodeId),
    /// The address asked for cannot be the member's (held by another member, or the node does
    /// not answer there as itself).
    #[error("{0}")]
    BadAddr(String),
    /// The leader has a membership change that it has not yet committed (openraft's
    /// `InProgress`): the change of a moment ago, or one a new leader inherited from its
    /// predecessor and commits with its first entry of its term. Retried until
    /// [`LEADER_WAIT`]; nothing was changed. Retry.
    #[error("{0}")]
    Uncommitted(String),
    /// The leader was asked and no answer came back (it failed or the connection broke after
    /// the request was sent): the change may or may not have been made; `cluster status`
    /// shows which.
    #[error("{0}")]
    Unknown(String),
}

/// The admin error for a membership call openraft refused: a change that cannot be made
/// (the last voter removed, a voter promoted before it is a learner) is the caller's
/// [`AdminError::Invalid`], an uncommitted earlier change is [`AdminError::Uncommitted`] (a
/// retry will do), a lost leadership is [`AdminError::NoLeader`]; only openraft's own failures
/// are [`AdminError::Failed`].
fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> AdminError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => AdminError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
            ChangeMembershipError::InProgress(p) => AdminError::Uncommitted(format!(
                "the last membership change (log index {}) is not committed yet (committed: \
                 {}); retry when it is",
                p.membership_log_id.map_or(0, |l| l.index),
                p.committed.map_or(0, |l| l.index),
            )),
            ChangeMembershipError::EmptyMembership(_) => AdminError::Invalid(
                "the cluster must keep at least one voter: add another before removing this one"
                    .into(),
            ),
            ChangeMembershipError::LearnerNotFound(l) => AdminError::Invalid(format!(
                "node {} must be a learner before it becomes a voter",
                l.node_id
            )),
        },
        other => AdminError::Failed(other.to_string()),
    }
}

/// Waits for a membership change openraft was given to commit, at most [`WRITE_WAIT`], as a
/// write waits: a leader cut from its quorum answers [`AdminError::Unknown`] then (the change
/// stays in its log and may yet commit, or be dropped by the next leader), instead of holding
/// the one-change-at-a-time lock forever.
async fn bounded_commit(
    proposed: impl std::future::Future<
        Output = Result<
            openraft::raft::ClientWriteResponse<TypeConfig>,
            RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
        >,
    >,
) -> Result<openraft::raft::ClientWriteResponse<TypeConfig>, AdminError> {
    match tokio::time::timeout(WRITE_WAIT, proposed).await {
        Ok(committed) => committed.map_err(membership_error),
        Err(_) => Err(AdminError::Unknown(format!(
            "the change was proposed but not committed within {WRITE_WAIT:?} (this leader \
             reaches no quorum); it may yet take effect: `cluster status` shows whether"
        ))),
    }
}

/// Why a peer RPC could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Unknown RPC name.
    #[error("no such raft rpc: {0}")]
    Unknown(String),
    /// The body could not be decoded.
    #[error("bad rpc body: {0}")]
    BadBody(String),
    /// Local failure.
    #[error("{0}")]
    Internal(String),
}

/// What a node knows about a node id: the answer to the `whois` peer RPC, which a node asks
/// its peers at start (see [`Node::start`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerView {
    /// The answering node leads.
    pub leads: bool,
    /// The id is in the answering node's membership.
    pub member: bool,
    /// The id was removed from the cluster (the state machine's retired set).
    pub retired: bool,
    /// From a leader: the index up to which its log has been replicated to the id, if any.
    pub matched: Option<u64>,
}

/// One member as `cluster status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Peer address (where the peer RPCs reach it).
    pub addr: String,
    /// "leader", "voter" or "learner".
    pub role: String,
    /// Last log index known replicated to it (leader's view; `None` elsewhere or unknown).
    pub matched: Option<u64>,
    /// Entries it lags behind the leader's log (leader's view).
    pub lag: Option<u64>,
}

/// A node's view of the cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    /// This node.
    pub node_id: NodeId,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub state: String,
    /// Current leader, if known.
    pub leader: Option<NodeId>,
    /// Its address.
    pub leader_addr: Option<String>,
    /// Current term.
    pub term: u64,
    /// Last log index on this node.
    pub last_log_index: u64,
    /// Last committed index this node knows of.
    pub commit_index: u64,
    /// Last index applied to this node's engine.
    pub applied_index: u64,
    /// Members with their roles.
    pub members: Vec<MemberStatus>,
}

/// What a forwarded write answers.
type WireWrite = Result<Reply, WriteError>;

/// A membership change, possibly forwarded to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AdminOp {
    /// Add `id` at `addr`; as voter when `voter`.
    Add {
        /// Node id.
        id: NodeId,
        /// Its peer address.
        addr: String,
        /// Promote after catching up.
        voter: bool,
    },
    /// Remove `id`.
    Remove {
        /// Node id.
        id: NodeId,
    },
    /// Hand leadership over to voter `to`, or to the voter with the most of the log.
    TransferLeader {
        /// The voter to lead next; `None`: the best-placed one.
        to: Option<NodeId>,
    },
    /// Change member `id`'s peer address to `addr` (appended last: the variants are encoded
    /// by position on the wire).
    SetAddr {
        /// Node id.
        id: NodeId,
        /// Its new peer address.
        addr: String,
    },
}

struct Inner {
    id: NodeId,
    raft: Raft,
    sm: StateMachine,
    log: LogStore,
    dialer: Dialer,
    ready_max_lag: u64,
    admin: tokio::sync::Mutex<()>,
    /// Writes as leader hold it shared; a handover holds it exclusively, so they wait while
    /// leadership moves (and the ones in flight commit first).
    handover: tokio::sync::RwLock<()>,
    /// The term this node last became leader in, and when (seen from its metrics, so no
    /// earlier than openraft's own record): a handover waits out this node's leader lease.
    leading_since: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
    /// openraft's leader lease: the greater election timeout.
    lease: Duration,
    leader_changes: AtomicU64,
    /// When this node last heard from a leader (the peer RPCs it served).
    leader_contact: LeaderContact,
    /// Set while this node stands at once against a candidate that cannot win
    /// ([`Node::outrun_stale_candidate`]), so that one such election runs at a time.
    standing: AtomicBool,
    /// This node's writes as leader go through it.
    commits: Queue<Command>,
    /// Writes this node forwards to the leader go through it (several per request).
    forwards: Queue<Forward>,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// Node `id`'s address in the membership metrics `m` show.
fn own_addr_in(m: &openraft::RaftMetrics<NodeId, BasicNode>, id: NodeId) -> Option<String> {
    m.membership_config
        .membership()
        .get_node(&id)
        .map(|n| n.addr.clone())
}

/// The member of `m` other than `id` whose peer address is `addr`, if any (one address is one
/// listening process).
fn other_member_at(
    m: &openraft::Membership<NodeId, BasicNode>,
    id: NodeId,
    addr: &str,
) -> Option<NodeId> {
    m.nodes()
        .find(|(other, node)| **other != id && node.addr == addr)
        .map(|(other, _)| *other)
}

/// The node has shut down: nothing it reports will change any more.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the cluster node has shut down")]
pub struct NodeStopped;

/// The last log index a leader's metrics `m` show replicated to node `id`, if any.
fn matched_index(m: &openraft::RaftMetrics<NodeId, BasicNode>, id: NodeId) -> Option<u64> {
    m.replication
        .as_ref()?
        .get(&id)
        .copied()
        .flatten()
        .map(|l| l.index)
}

fn state_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl Node {
    /// Opens the log and state machine under `config.dir`, starts openraft, and — on the
    /// lowest id of an uninitialized cluster — initializes it with `config.peers`.
    pub async fn start(config: NodeConfig, engine: Engine) -> Result<Node, StartError> {
        if !config.peers.contains_key(&config.id) {
            tracing::info!(
                node_id = config.id,
                "this node is not among the initial members (--peers): it waits to be added \
                 with `mussikon cluster join`"
            );
        }
        let log = LogStore::open(config.dir.join("log"))
            .map_err(|e| StartError::Storage(e.to_string()))?;
        // Refuses single-node data; makes data restored for a new cluster its first state.
        crate::bootstrap::settle(&config, &engine, &log)?;
        let fresh = log.is_fresh()
            && engine
                .annex()
                .map_err(|e| StartError::Storage(e.to_string()))?
                .is_none();
        let dir = config.dir.join("snapshots");
        let sm = tokio::task::spawn_blocking(move || StateMachine::open(engine, dir))
            .await
            .map_err(|e| StartError::Storage(e.to_string()))?
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let hb = config.heartbeat_ms.max(10);
        let (election_min, election_max) = config.election_ms.unwrap_or(default_election_ms(hb));
        let raft_config = openraft::Config {
            cluster_name: "mussikon".into(),
            heartbeat_interval: hb,
            election_timeout_min: election_min,
            election_timeout_max: election_max,
            max_payload_entries: 512,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs.max(1)),
            max_in_snapshot_log_to_keep: config.keep_logs,
            purge_batch_size: 256,
            // Snapshots are sent whole by `full_snapshot`, with a size-based timeout; these only
            // bound the (unused) chunked path.
            install_snapshot_timeout: 60_000,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
        let dialer = Dialer {
            me: config.id,
            client: http_client(config.peer_idle),
            secret: config.secret.clone(),
            faults: Faults::new(config.fault_injection),
        };
        check_identity(&dialer, &config, fresh).await?;
        let network = Network {
            dialer: dialer.clone(),
        };
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            network,
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let lowest = config.peers.keys().next().copied();
        if lowest == Some(config.id)
            && !raft
                .is_initialized()
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?
        {
            let members: BTreeMap<NodeId, BasicNode> = config
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            tracing::info!(members = ?config.peers, "initializing the cluster (first boot)");
            if let Err(e) = raft.initialize(members).await {
                tracing::warn!(error = %e, "initialization refused (already initialized?)");
            }
        }
        let commits = group_commit::commit_queue(config.id, raft.clone());
        let node = Node {
            inner: Arc::new_cyclic(|me| Inner {
                id: config.id,
                raft,
                sm,
                log,
                dialer,
                ready_max_lag: config.ready_max_lag,
                admin: tokio::sync::Mutex::new(()),
                handover: tokio::sync::RwLock::new(()),
                leading_since: std::sync::Mutex::new(None),
                lease: Duration::from_millis(election_max),
                leader_changes: AtomicU64::new(0),
                leader_contact: LeaderContact::default(),
                standing: AtomicBool::new(false),
                commits,
                forwards: forward_queue(me.clone()),
            }),
        };
        node.spawn_metrics();
        Ok(node)
    }

    /// Tells `observer` the outcome of every command this node applies from now on, in log
    /// order (see [`crate::state_machine::AppliedObserver`]).
    pub fn observe_applied(&self, observer: crate::state_machine::AppliedObserver) {
        self.inner.sm.observe_applied(observer);
    }

    /// The openraft handle.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The engine this node applies to.
    pub fn engine(&self) -> &Engine {
        self.inner.sm.engine()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// Why this node does not serve an RPC addressed to `to` (the [`TO_HEADER`] value, as
    /// sent), counted in `mussikon_raft_misdirected_rpcs_total`; `None` when it is this node,
    /// or when the sender named no addressee (an older build).
    ///
    /// [`TO_HEADER`]: crate::network::TO_HEADER
    pub fn misaddressed(&self, to: Option<&str>) -> Option<String> {
        let to = to.filter(|t| t.parse::<NodeId>().ok() != Some(self.inner.id))?;
        metrics::counter!(crate::network::MISDIRECTED_RPCS_TOTAL).increment(1);
        Some(format!(
            "this is node {}, not node {to}: the peer RPC is for a node no longer at this address",
            self.inner.id
        ))
    }

    /// True unless fault injection cut this node from the peer that sent an RPC (`from`, the
    /// sender's id header; a request without one is admitted).
    pub fn admits_peer(&self, from: Option<NodeId>) -> bool {
        from.is_none_or(|id| !self.inner.dialer.faults.is_cut(id))
    }

    /// Cuts this node from `peers` (both ways), replacing any earlier cut; empty heals.
    pub fn set_cut(&self, peers: BTreeSet<NodeId>) -> Result<(), FaultsDisabled> {
        self.inner.dialer.faults.set_cut(peers)
    }

    /// The fault-injection state: `None` when it is off, else the cut peers.
    pub fn cut(&self) -> Option<BTreeSet<NodeId>> {
        let f = &self.inner.dialer.faults;
        f.enabled().then(|| f.cut())
    }

    /// True when `secret` is the cluster secret (compared in constant time).
    pub fn authorized(&self, secret: Option<&str>) -> bool {
        let want = self.inner.dialer.secret.as_bytes();
        match secret {
            None => false,
            Some(got) => {
                let got = got.as_bytes();
                got.len() == want.len()
                    && got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            }
        }
    }

    /// The current leader's id and address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        // Borrowed, not cloned: every API answer names the leader, and a clone copies the
        // whole metrics (membership, replication map) each time.
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// This node's peer address in its current (effective) membership: where the other
    /// members send it peer RPCs. `None` while it is not a member.
    pub fn own_addr(&self) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        own_addr_in(&m, self.inner.id)
    }

    /// Waits until this node's address in its membership ([`Node::own_addr`]) differs from
    /// `known`, and returns it; [`NodeStopped`] once the node's metrics end (it shut down).
    pub async fn own_addr_change(
        &self,
        known: &Option<String>,
    ) -> Result<Option<String>, NodeStopped> {
        let mut metrics = self.inner.raft.metrics();
        loop {
            let now = own_addr_in(&metrics.borrow_and_update(), self.inner.id);
            if now != *known {
                return Ok(now);
            }
            metrics.changed().await.map_err(|_| NodeStopped)?;
        }
    }

    async fn wait_leader(&self) -> Option<(NodeId, String)> {
        if let Some(l) = self.leader() {
            return Some(l);
        }
        let _ = self
            .inner
            .raft
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await;
        self.leader()
    }

    /// Replicates `cmd` and returns what the engine did with it, forwarding to the leader when
    /// this node is not it.
    pub async fn write(&self, cmd: Command) -> Result<Executed, WriteError> {
        self.write_traced(cmd, None).await
    }

    /// [`Node::write`] on behalf of a client request in the W3C trace `traceparent`: when the
    /// write is forwarded, the leader joins that trace (see [`crate::network::TRACEPARENT_HEADER`]).
    pub async fn write_traced(
        &self,
        cmd: Command,
        traceparent: Option<String>,
    ) -> Result<Executed, WriteError> {
        let req = Forward {
            req: Request::from(cmd),
            traceparent,
        };
        // While the leader is unknown, unreachable, or no longer the leader (each means the
        // command was not taken), try again until LEADER_WAIT: an election takes a few
        // heartbeats, and a write should wait for it rather than fail at once. A write whose
        // outcome is unknown (the leader it was forwarded to died with it in flight) is tried
        // again only when it carries an idempotency key: the engine applies it at most once,
        // and a second submission answers the first outcome.
        let resubmit = req.req.0.idempotency_key().is_some();
        self.retry_for(
            LEADER_WAIT,
            Duration::from_millis(100),
            |e| match e {
                WriteError::NoLeader => true,
                WriteError::Unknown { leader, reason } if resubmit => {
                    tracing::info!(
                        leader,
                        reason,
                        "a keyed write's outcome is unknown: submitting it again"
                    );
                    metrics::counter!(WRITES_RESUBMITTED_TOTAL).increment(1);
                    true
                }
                _ => false,
            },
            || self.write_once(&req),
        )
        .await
    }

    /// One attempt of [`Node::write`]: here when this node leads (or no leader is known),
    /// else forwarded once, in a request shared with other writes being forwarded.
    async fn write_once(&self, req: &Forward) -> Result<Executed, WriteError> {
        let leader = self.inner.raft.metrics().borrow().current_leader;
        if leader.is_none_or(|id| id == self.inner.id) {
            match self.write_local(req.req.clone()).await {
                Err(WriteError::NoLeader) => {}
                other => return other,
            }
        }
        let done = self.inner.forwards.call(req.clone()).await?;
        self.await_local_apply(&done).await;
        Ok(done)
    }

    /// Sends `batch` to the leader in one `writes` RPC (a lone write as a `write` RPC, which
    /// every version serves); one answer per write. Written here if this node became leader.
    async fn forward(&self, batch: Vec<Forward>) -> Vec<Result<Executed, WriteError>> {
        let n = batch.len();
        let Some((id, addr)) = self.wait_leader().await else {
            return vec![Err(WriteError::NoLeader); n];
        };
        let trace: Vec<String> = batch.iter().filter_map(|f| f.traceparent.clone()).collect();
        let mut batch: Vec<Request> = batch.into_iter().map(|f| f.req).collect();
        if id == self.inner.id {
            return self.write_all_local(batch).await;
        }
        let answers: Result<Vec<WireWrite>, TransportError> = if n == 1 {
            let Some(req) = batch.pop() else {
                return Vec::new();
            };
            let body = match encode(&req) {
                Ok(b) => b,
                Err(e) => return vec![Err(WriteError::Fatal(e.to_string()))],
            };
            let one: Result<WireWrite, TransportError> = self
                .inner
                .dialer
                .post_traced(id, &addr, "write", body.into(), FORWARD_WAIT, &trace)
                .await;
            one.map(|a| vec![a])
        } else {
            let body = match encode(&batch) {
                Ok(b) => b,
                Err(e) => return vec![Err(WriteError::Fatal(e.to_string())); n],
            };
            self.inner
                .dialer
                .post_traced(id, &addr, "writes", body.into(), FORWARD_WAIT, &trace)
                .await
        };
        match answers {
            Ok(answers) if answers.len() == n => answers
                .into_iter()
                .map(|a| match a {
                    Ok(Reply(Some(done))) => Ok(done),
                    Ok(Reply(None)) => {
                        Err(WriteError::Fatal("the leader applied no command".into()))
                    }
                    Err(e) => Err(e),
                })
                .collect(),
            Ok(answers) => vec![
                Err(WriteError::Unknown {
                    leader: addr,
                    reason: format!("{n} forwarded writes were answered {} times", answers.len()),
                });
                n
            ],
            Err(TransportError::Unreachable(..)) => vec![Err(WriteError::NoLeader); n],
            Err(e) => vec![
                Err(WriteError::Unknown {
                    leader: addr,
                    reason: e.to_string(),
                });
                n
            ],
        }
    }

    /// Read-your-writes on a follower: waits (up to [`READ_WAIT`]) until this node has applied
    /// the entry the leader applied `done` from, so the handler's reads after the write see it.
    /// The write is committed either way; a node that stays behind only logs it.
    async fn await_local_apply(&self, done: &Executed) {
        let index = crate::state_machine::log_index_of(done.seq);
        let waited = self
            .inner
            .raft
            .wait(Some(READ_WAIT))
            .applied_index_at_least(Some(index), "forwarded write")
            .await;
        if waited.is_err() {
            tracing::warn!(
                index,
                "a forwarded write is committed but not yet applied here"
            );
        }
    }

    /// `client_write` on this node, through its group commit ([`crate::group_commit`]);
    /// [`WriteError::NoLeader`] when it is not the leader.
    async fn write_local(&self, req: Request) -> Result<Executed, WriteError> {
        let _open = self.inner.handover.read().await;
        self.inner.commits.call(Arc::unwrap_or_clone(req.0)).await
    }

    /// [`Node::write_local`] of each of `reqs`, all queued at once so they can share entries.
    async fn write_all_local(&self, reqs: Vec<Request>) -> Vec<Result<Executed, WriteError>> {
        futures_util::future::join_all(reqs.into_iter().map(|r| self.write_local(r))).await
    }

    /// Waits until a read at `level` may be served from this node's engine.
    pub async fn read_barrier(&self, level: Consistency) -> Result<(), ReadError> {
        self.read_barrier_traced(level, None).await
    }

    /// [`Node::read_barrier`] on behalf of a client request in the W3C trace `traceparent`:
    /// when the leader is asked for the read index, it joins that trace.
    pub async fn read_barrier_traced(
        &self,
        level: Consistency,
        traceparent: Option<String>,
    ) -> Result<(), ReadError> {
        let rpc = match level {
            Consistency::Stale => return Ok(()),
            Consistency::Linearizable => "read-index",
            Consistency::Leader => "applied-index",
        };
        // Reads change nothing, so any attempt may be repeated: while no leader is known, or
        // the one asked no longer leads (an election, a handover), ask again until
        // LEADER_WAIT, as a write waits for a leader.
        let index = self
            .retry_for(
                LEADER_WAIT,
                Duration::from_millis(50),
                |e| matches!(e, ReadError::NoLeader),
                || self.read_index_once(level, rpc, &traceparent),
            )
            .await?;
        self.inner
            .raft
            .wait(Some(READ_WAIT))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|_| ReadError::Behind)
    }

    /// One attempt of finding the index a read at `level` must wait for: here when this node
    /// leads, else asked of the leader (`rpc`).
    async fn read_index_once(
        &self,
        level: Consistency,
        rpc: &str,
        traceparent: &Option<String>,
    ) -> Result<u64, ReadError> {
        match self.local_read_index(level).await {
            Ok(i) => Ok(i),
            Err(ReadError::NoLeader) => match self.wait_leader().await {
                None => Err(ReadError::NoLeader),
                Some((id, _)) if id == self.inner.id => self.local_read_index(level).await,
                Some((id, addr)) => {
                    let answer: Result<Result<u64, ReadError>, TransportError> = self
                        .inner
                        .dialer
                        .post_traced(
                            id,
                            &addr,
                            rpc,
                            Vec::new().into(),
                            READ_WAIT,
                            traceparent.as_slice(),
                        )
                        .await;
                    answer.map_err(|_| ReadError::NoLeader)?
                }
            },
            Err(e) => Err(e),
        }
    }

    /// On the leader: the index a read at `level` must see. `NoLeader` elsewhere.
    async fn local_read_index(&self, level: Consistency) -> Result<u64, ReadError> {
        let raft = &self.inner.raft;
        if raft.metrics().borrow().current_leader != Some(self.inner.id) {
            return Err(ReadError::NoLeader);
        }
        match level {
            Consistency::Linearizable => {
                // openraft gives each confirming heartbeat one heartbeat interval; on a loaded
                // machine a round can miss it with no election. Retry until READ_WAIT, unless
                // this node is no longer the leader.
                let confirmed = self.retry_for(
                    READ_WAIT,
                    Duration::from_millis(20),
                    |e| {
                        matches!(
                            e,
                            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))
                        )
                    },
                    || raft.ensure_linearizable(),
                );
                match tokio::time::timeout(READ_WAIT, confirmed).await {
                    Ok(Ok(id)) => Ok(id.map(|l| l.index).unwrap_or(0)),
                    Ok(Err(_)) | Err(_) => Err(ReadError::NoLeader),
                }
            }
            _ => Ok(raft
                .metrics()
                .borrow()
                .last_applied
                .map(|l| l.index)
                .unwrap_or(0)),
        }
    }

    /// Applies a membership change on the leader (forwarding once when this node is not it).
    pub async fn change_members(&self, op: AdminOp) -> Result<ClusterStatus, AdminError> {
        // Right after a leader removed itself (or died) no leader may be known for an election
        // timeout: keep trying for LEADER_WAIT before answering NoLeader.
        self.retry_for(
            LEADER_WAIT,
            Duration::from_millis(100),
            |e| matches!(e, AdminError::NoLeader | AdminError::Uncommitted(_)),
            || self.change_members_once(op.clone()),
        )
        .await
    }

    /// One attempt of [`Node::change_members`]: here when this node leads, else forwarded.
    async fn change_members_once(&self, op: AdminOp) -> Result<ClusterStatus, AdminError> {
        match self.wait_leader().await {
            None => Err(AdminError::NoLeader),
            Some((id, _)) if id == self.inner.id => self.change_members_local(op).await,
            Some((id, addr)) => {
                let body = encode(&op).map_err(|e| AdminError::Failed(e.to_string()))?;
                let answer: Result<Result<ClusterStatus, AdminError>, TransportError> = self
                    .inner
                    .dialer
                    .post(id, &addr, "members", body.into(), Duration::from_secs(600))
                    .await;
                match answer {
                    Ok(a) => a,
                    Err(TransportError::Unreachable(..)) => Err(AdminError::NoLeader),
                    Err(e @ TransportError::Failed(..)) => Err(AdminError::Unknown(format!(
                        "the leader (node {id}) did not answer: {e}; the change may have been \
                         made: `cluster status` shows whether it was"
                    ))),
                    Err(e) => Err(AdminError::Failed(e.to_string())),
                }
            }
        }
    }

    async fn change_members_local(&self, op: AdminOp) -> Result<ClusterStatus, AdminError> {
        let Ok(_one) = self.inner.admin.try_lock() else {
            return Err(AdminError::Busy);
        };
        let raft = &self.inner.raft;
        let membership = raft.metrics().borrow().membership_config.clone();
        match op {
            AdminOp::Add { id, addr, voter } => {
                if id == 0 {
                    return Err(AdminError::Invalid("node_id must be at least 1".into()));
                }
                if let Some(learner) = self.admit(id, &addr, &membership).await? {
                    tracing::warn!(
                        old = learner,
                        new = id,
                        %addr,
                        "learner {learner} held this address: removing it, the new node replaces it"
                    );
                    self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([learner])))
                        .await?;
                }
                let is_voter = membership.membership().voter_ids().any(|v| v == id);
                if !is_voter {
                    let entry = bounded_commit(raft.add_learner(id, BasicNode { addr }, false))
                        .await?
                        .log_id;
                    self.wait_caught_up(id, entry.index).await?;
                }
                if voter && !is_voter {
                    self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                        .await?;
                }
            }
            AdminOp::SetAddr { id, addr } => {
                let Some(old) = self.readdress(id, &addr, &membership).await? else {
                    return Ok(self.status());
                };
                self.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(
                    id,
                    BasicNode { addr: addr.clone() },
                )])))
                .await?;
                tracing::info!(node_id = id, from = %old, to = %addr, "member address changed");
            }
            AdminOp::TransferLeader { to } => return self.hand_over(to).await,
            AdminOp::Remove { id } => {
                let is_voter = membership.membership().voter_ids().any(|v| v == id);
                let known = membership.membership().get_node(&id).is_some();
                if !known {
                    return Err(AdminError::Invalid(format!("node {id} is not a member")));
                }
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                self.change_membership(change).await?;
            }
        }
        Ok(self.status())
    }

    /// Proposes `change` (this node leads) and waits until it is committed ([`bounded_commit`]).
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, BasicNode>,
    ) -> Result<(), AdminError> {
        bounded_commit(self.inner.raft.change_membership(change, false))
            .await
            .map(|_| ())
    }

    /// Waits until learner `id` has every entry up to `index` (the entry that added it), as
    /// openraft's blocking `add_learner` does, for as long as it takes (a snapshot of a large
    /// collection takes minutes) while this node leads. When leadership moves meanwhile the
    /// answer is [`AdminError::NoLeader`]: the join is retried on the new leader while
    /// [`Node::change_members`]' retries run (else the caller asks again), where adding a
    /// learner again changes nothing and the wait starts over.
    async fn wait_caught_up(&self, id: NodeId, index: u64) -> Result<(), AdminError> {
        let me = self.inner.id;
        let m = self
            .inner
            .raft
            .wait(None)
            .metrics(
                |m| {
                    m.current_leader != Some(me) || matched_index(m, id).is_some_and(|i| i >= index)
                },
                "the new learner caught up",
            )
            .await
            .map_err(|e| AdminError::Failed(e.to_string()))?;
        if m.current_leader != Some(me) {
            return Err(AdminError::NoLeader);
        }
        Ok(())
    }

    /// Changes member `id`'s peer address to `addr`, asked of any node (forwarded to the
    /// leader), as one membership entry (openraft's `ChangeMembers::SetNodes`; the voters stay
    /// as they are). Refused for a removed id ([`AdminError::Invalid`]), an id that is not a
    /// member ([`AdminError::NotMember`]), another member's address, or an address where the
    /// leader does not reach node `id` itself ([`AdminError::BadAddr`]): a peer RPC naming
    /// `id` must be answered there (openraft warns that pointing a member at another node's
    /// address can split the brain; every RPC here names its addressee, so such a node would
    /// refuse, but the leader would then have lost the member). Nothing to do when `addr` is
    /// already the member's. The status after the change.
    pub async fn set_member_addr(
        &self,
        id: NodeId,
        addr: String,
    ) -> Result<ClusterStatus, AdminError> {
        self.change_members(AdminOp::SetAddr { id, addr }).await
    }

    /// Hands leadership over to voter `to` (`None`: the voter with the most of the log),
    /// asked of any node (forwarded to the leader). Answers once the new leader is known, with
    /// the status the old leader then sees; nothing to do when `to` already leads.
    pub async fn transfer_leadership(
        &self,
        to: Option<NodeId>,
    ) -> Result<ClusterStatus, AdminError> {
        self.change_members(AdminOp::TransferLeader { to }).await
    }

    /// If this node leads, hands leadership over to the best-placed voter (as
    /// [`Node::transfer_leadership`] with `None`); otherwise nothing to do. For a node about to
    /// stop (a pod's preStop, a rolling upgrade): it is never forwarded.
    pub async fn step_down(&self) -> Result<ClusterStatus, AdminError> {
        if self.leader().map(|(id, _)| id) != Some(self.inner.id) {
            return Ok(self.status());
        }
        match self
            .change_members_local(AdminOp::TransferLeader { to: None })
            .await
        {
            // It stopped leading meanwhile: what was asked is done.
            Err(AdminError::NoLeader) => Ok(self.status()),
            other => other,
        }
    }

    /// The handover on the leader (under the admin lock): see the module's promises. The
    /// writes held meanwhile go on when it ends, whatever the outcome; a failed handover leaves
    /// this node leading unless the target's election went on without it.
    async fn hand_over(&self, to: Option<NodeId>) -> Result<ClusterStatus, AdminError> {
        let raft = &self.inner.raft;
        let me = self.inner.id;
        let (target, addr) = {
            let m = raft.metrics();
            let m = m.borrow();
            if m.current_leader != Some(me) {
                return Err(AdminError::NoLeader);
            }
            if to == Some(me) {
                return Ok(self.status_of(&m));
            }
            let membership = m.membership_config.membership();
            let target = match to {
                Some(t) if membership.voter_ids().any(|v| v == t) => t,
                Some(t) => {
                    return Err(AdminError::Invalid(format!(
                        "node_id {t} is not a voter of the cluster: leadership goes only to a \
                         voter"
                    )))
                }
                // The most of the log, then the lowest id.
                None => membership
                    .voter_ids()
                    .filter(|v| *v != me)
                    .max_by_key(|v| (matched_index(&m, *v), std::cmp::Reverse(*v)))
                    .ok_or_else(|| {
                        AdminError::Invalid(
                            "this node is the only voter: there is no one to hand leadership \
                             over to"
                                .into(),
                        )
                    })?,
            };
            let addr = membership
                .get_node(&target)
                .map(|n| n.addr.clone())
                .ok_or_else(|| AdminError::Failed(format!("node {target} has no address")))?;
            (target, addr)
        };
        let started = std::time::Instant::now();
        let held = tokio::time::timeout(HANDOVER_WAIT, self.inner.handover.write())
            .await
            .map_err(|_| {
                AdminError::NotNow(format!(
                    "the writes in flight did not commit within {HANDOVER_WAIT:?}; leadership \
                     stays here"
                ))
            })?;
        self.wait_out_own_lease().await;
        // This node must not stand again once it has granted the target its vote (its election
        // timer would run while the target's round is under way).
        raft.runtime_config().elect(false);
        let moved = self.move_leadership(target, &addr).await;
        raft.runtime_config().elect(true);
        drop(held);
        let outcome = if moved.is_ok() { "ok" } else { "failed" };
        metrics::counter!(HANDOVERS_TOTAL, "outcome" => outcome).increment(1);
        match moved {
            Ok(leader) => {
                tracing::info!(
                    to = target,
                    leader,
                    ms = started.elapsed().as_millis() as u64,
                    "leadership handed over"
                );
                Ok(self.status())
            }
            Err(e) => {
                tracing::warn!(to = target, error = %e, "leadership handover failed");
                Err(e)
            }
        }
    }

    /// Waits until this node's own leader lease has run out: until then it refuses any vote
    /// (openraft 0.9 counts the lease from when a node's vote last changed, on the leader its
    /// election), and the target needs its vote.
    async fn wait_out_own_lease(&self) {
        let term = self.inner.raft.metrics().borrow().current_term;
        let since = self
            .inner
            .leading_since
            .lock()
            .ok()
            .and_then(|s| *s)
            .filter(|(t, _)| *t == term)
            .map(|(_, at)| at);
        let margin = Duration::from_millis(20);
        let left = match since {
            Some(at) => (at + self.inner.lease + margin)
                .saturating_duration_since(std::time::Instant::now()),
            // Not seen yet: elected a moment ago.
            None => self.inner.lease + margin,
        };
        if !left.is_zero() {
            tokio::time::sleep(left).await;
        }
    }

    /// The steps of [`Node::hand_over`] while writes are held: the target catches up, is asked
    /// to stand for election, and someone other than this node leads. The new leader's id.
    async fn move_leadership(&self, target: NodeId, addr: &str) -> Result<NodeId, AdminError> {
        let raft = &self.inner.raft;
        let me = self.inner.id;
        let last = raft.metrics().borrow().last_log_index.unwrap_or(0);
        raft.wait(Some(HANDOVER_WAIT))
            .metrics(
                |m| matched_index(m, target).is_some_and(|i| i >= last),
                "handover target caught up",
            )
            .await
            .map_err(|_| {
                AdminError::NotNow(format!(
                    "node {target} did not catch up to index {last} within {HANDOVER_WAIT:?}"
                ))
            })?;
        let body = encode(&last).map_err(|e| AdminError::Failed(e.to_string()))?;
        // Heartbeats go on: this node's vote wins the target the election in a 3-voter cluster
        // (its own lease ran out long ago; a follower refuses votes for one lease after its
        // leader's last heartbeat), and the other followers must not time out and stand
        // themselves (stopping heartbeats made one of them win now and then under load). This
        // node stops heartbeating once it grants the vote, or once a heartbeat's answer shows
        // the target's higher term; with more voters the target wins a later round, once the
        // followers' leases have run out.
        let answer: Result<Result<(), String>, TransportError> = self
            .inner
            .dialer
            .post(target, addr, "elect", body.into(), HANDOVER_WAIT)
            .await;
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(AdminError::NotNow(format!("node {target}: {why}"))),
            Err(e) => {
                return Err(AdminError::NotNow(format!(
                    "could not ask node {target} to stand for election: {e}"
                )))
            }
        }
        let m = raft
            .wait(Some(HANDOVER_WAIT))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "a new leader after the handover",
            )
            .await
            .map_err(|_| {
                AdminError::NotNow(format!(
                    "no other leader was elected within {HANDOVER_WAIT:?} of asking node {target}"
                ))
            })?;
        match m.current_leader {
            Some(leader) if leader == target => Ok(leader),
            Some(other) => Err(AdminError::NotNow(format!(
                "node {other} won the election, not node {target}: ask again to move \
                 leadership on"
            ))),
            None => Err(AdminError::Failed("the new leader is not known".into())),
        }
    }

    /// Runs `attempt` until it succeeds or fails with an error `retry` does not accept, starting
    /// none after `wait` has passed (`retry` is asked only before an attempt that will be
    /// made). Between attempts it pauses `pause`, or less: until the leader this node knows
    /// changes from the one it knew when the attempt started (an election ended, a handover
    /// moved leadership), so that a write waiting for a new leader goes to it at once. The one
    /// retry loop of this module: writes and membership changes waiting for a leader, reads
    /// asking for a read index, and a leader's linearizable read confirmation.
    async fn retry_for<T, E, Fut>(
        &self,
        wait: Duration,
        pause: Duration,
        retry: impl Fn(&E) -> bool,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, E>
    where
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let known = self.inner.raft.metrics().borrow().current_leader;
            match attempt().await {
                Err(e) if tokio::time::Instant::now() < deadline && retry(&e) => {
                    self.pause_unless_leader_changes(known, pause).await;
                }
                other => return other,
            }
        }
    }

    /// Waits `pause`, or until the leader this node knows is not `known` (at once if it is
    /// not already).
    async fn pause_unless_leader_changes(&self, known: Option<NodeId>, pause: Duration) {
        let mut metrics = self.inner.raft.metrics();
        let changed = async move {
            while metrics.borrow_and_update().current_leader == known {
                if metrics.changed().await.is_err() {
                    // The node is stopping: no change will come; the pause runs out.
                    std::future::pending::<()>().await;
                }
            }
        };
        let _ = tokio::time::timeout(pause, changed).await;
    }

    /// Whether this node is a voter of its effective membership.
    fn is_voter(&self) -> bool {
        let me = self.inner.id;
        self.inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == me)
    }

    /// Having answered `resp` to the vote request `req`: when the candidate cannot win and this
    /// node would stand anyway once its timer fires ([`election::stand_term`]), and the leader
    /// it followed cannot be reached at all ([`Node::leader_is_gone`]), stands now, in a task of
    /// its own (the refusal is answered first), at a term that wins over the candidate's vote.
    /// Voters only; one such election at a time.
    fn outrun_stale_candidate(&self, req: &VoteRequest<NodeId>, resp: &VoteResponse<NodeId>) {
        let inner = &self.inner;
        let silent = inner.leader_contact.silent_for_longer_than(inner.lease);
        let Some(term) = election::stand_term(inner.id, req, resp, silent) else {
            return;
        };
        if !self.is_voter()
            || inner
                .standing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let (me, candidate) = (inner.id, *req.vote.leader_id());
        let node = self.clone();
        let resp = resp.clone();
        tokio::spawn(async move {
            if node.leader_is_gone().await {
                tracing::info!(
                    candidate = candidate.node_id,
                    candidate_term = candidate.term,
                    term,
                    "standing for election at once: the leader is gone and the candidate's log \
                     is behind this node's"
                );
                match election::stand_at(&node.inner.raft, me, term, &resp).await {
                    Ok(()) => metrics::counter!(election::EARLY_ELECTIONS_TOTAL).increment(1),
                    Err(e) => {
                        tracing::warn!(
                            candidate = candidate.node_id,
                            term,
                            "could not stand at once: {e}"
                        )
                    }
                }
            }
            node.inner.standing.store(false, Ordering::Release);
        });
    }

    /// Whether the leader this node last followed cannot be reached at all: its address
    /// refuses connections (the process is gone) or holds another node, or fault injection
    /// cuts it. A leader that is only slow (a starved process still accepts connections) is
    /// not gone: then this node's own election timer decides, as before.
    async fn leader_is_gone(&self) -> bool {
        let Some((leader, addr)) = self.leader() else {
            return false;
        };
        if leader == self.inner.id {
            return false;
        }
        match self
            .inner
            .dialer
            .reaches(leader, &addr, LEADER_PROBE_WAIT)
            .await
        {
            Err(TransportError::Unreachable(_, why)) => {
                tracing::info!(leader, why, "the leader cannot be reached");
                true
            }
            Ok(()) => false,
            Err(e) => {
                tracing::info!(leader, error = %e, "the leader may still be there: not standing at once");
                false
            }
        }
    }

    /// The `elect` peer RPC (a handover's TimeoutNow): stands for election at once if this
    /// node is a voter holding the log up to `at_least`, the leader's last index.
    async fn stand_for_election(&self, at_least: u64) -> Result<(), String> {
        if !self.is_voter() {
            return Err("this node is not a voter".into());
        }
        // The leader saw the entries acknowledged; this node's metrics may show them a moment
        // later (openraft publishes them after the append returns).
        let caught_up = self
            .inner
            .raft
            .wait(Some(Duration::from_secs(1)))
            .metrics(
                |m| m.last_log_index.unwrap_or(0) >= at_least,
                "the log the leader hands over",
            )
            .await;
        if caught_up.is_err() {
            let have = self.inner.raft.metrics().borrow().last_log_index;
            return Err(format!(
                "this node's log ends at {}, before the leader's {at_least}",
                have.unwrap_or(0)
            ));
        }
        tracing::info!(at_least, "standing for election: the leader hands over");
        self.inner
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| e.to_string())
    }

    /// Whether node `id` at `addr` may be added to `membership` (the leader's effective one):
    /// never an id removed before (the state machine's retired set, read once every
    /// membership entry up to `membership` is applied), nor a member's id at another address,
    /// nor a voter's address. A *learner* holding `addr` under another id is gone (one address
    /// is one listening process): its id is returned, for the caller to remove first.
    async fn admit(
        &self,
        id: NodeId,
        addr: &str,
        membership: &StoredMembership<NodeId, BasicNode>,
    ) -> Result<Option<NodeId>, AdminError> {
        if self.retired_as_of(membership).await?.contains(&id) {
            return Err(AdminError::Invalid(format!(
                "node_id {id} was removed from the cluster, and a removed node's id is never \
                 reused: start the node on an empty data directory with a new id \
                 (--node-id auto draws one)"
            )));
        }
        let m = membership.membership();
        if let Some(node) = m.get_node(&id) {
            if node.addr != addr {
                return Err(AdminError::Invalid(format!(
                    "node_id {id} is already a member at {}; move it to {addr} with \
                     `mussikon cluster set-addr` once it answers there, or add the node at \
                     {addr} under a new id",
                    node.addr
                )));
            }
        }
        match other_member_at(m, id, addr) {
            Some(voter) if m.voter_ids().any(|v| v == voter) => Err(AdminError::Invalid(format!(
                "addr {addr} is voter {voter}'s address; remove node {voter} first"
            ))),
            other => Ok(other),
        }
    }

    /// Whether member `id` may move to `addr` in `membership` (the leader's effective one):
    /// its current address when it may (`None`: it is there already). See
    /// [`Node::set_member_addr`] for the refusals.
    async fn readdress(
        &self,
        id: NodeId,
        addr: &str,
        membership: &StoredMembership<NodeId, BasicNode>,
    ) -> Result<Option<String>, AdminError> {
        let m = membership.membership();
        let Some(node) = m.get_node(&id) else {
            if self.retired_as_of(membership).await?.contains(&id) {
                return Err(AdminError::Invalid(format!(
                    "node_id {id} was removed from the cluster; a removed node has no address \
                     to change"
                )));
            }
            return Err(AdminError::NotMember(id));
        };
        if node.addr == addr {
            return Ok(None);
        }
        if let Some(other) = other_member_at(m, id, addr) {
            return Err(AdminError::BadAddr(format!(
                "{addr} is node {other}'s address; one address is one node"
            )));
        }
        self.inner
            .dialer
            .reaches(id, addr, PROBE_WAIT)
            .await
            .map_err(|e| {
                AdminError::BadAddr(format!(
                    "node {id} does not answer peer RPCs at {addr} ({e}); start it with its \
                     peer listener there (--peer-listen, MUSSIKON_CLUSTER_PEER_LISTEN) first"
                ))
            })?;
        Ok(Some(node.addr.clone()))
    }

    /// The node ids removed from the cluster as of `membership` (the leader's effective one):
    /// the state machine's retired set, read once every entry up to that membership's is
    /// applied (the set is updated as membership entries are applied).
    async fn retired_as_of(
        &self,
        membership: &StoredMembership<NodeId, BasicNode>,
    ) -> Result<BTreeSet<NodeId>, AdminError> {
        if let Some(index) = membership.log_id().map(|l| l.index) {
            self.inner
                .raft
                .wait(Some(LEADER_WAIT))
                .applied_index_at_least(Some(index), "membership applied")
                .await
                .map_err(|e| AdminError::Failed(e.to_string()))?;
        }
        self.retired().await.map_err(AdminError::Failed)
    }

    /// What this node knows of node `id` (the `whois` peer RPC).
    async fn whois(&self, id: NodeId) -> Result<PeerView, RpcError> {
        let retired = self.retired().await.map_err(RpcError::Internal)?;
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        Ok(PeerView {
            leads: m.state == ServerState::Leader,
            member: m.membership_config.membership().get_node(&id).is_some(),
            retired: retired.contains(&id),
            matched: matched_index(&m, id),
        })
    }

    /// The state machine's retired node ids, read on the blocking pool.
    async fn retired(&self) -> Result<BTreeSet<NodeId>, String> {
        let sm = self.inner.sm.clone();
        tokio::task::spawn_blocking(move || sm.retired())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        self.status_of(&m)
    }

    /// The status as `m`, openraft's metrics, shows it.
    fn status_of(&self, m: &openraft::RaftMetrics<NodeId, BasicNode>) -> ClusterStatus {
        let last = m.last_log_index.unwrap_or(0);
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .map(|l| l.map(|l| l.index).unwrap_or(0));
                MemberStatus {
                    id: *id,
                    addr: node.addr.clone(),
                    role: if m.current_leader == Some(*id) {
                        "leader"
                    } else if voters.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .into(),
                    matched,
                    lag: matched.map(|x| last.saturating_sub(x)),
                }
            })
            .collect();
        let leader_addr = m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()));
        ClusterStatus {
            node_id: self.inner.id,
            state: state_name(m.state).into(),
            leader: m.current_leader,
            leader_addr,
            term: m.current_term,
            last_log_index: last,
            commit_index: self.inner.log.committed_index(),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            members,
        }
    }

    /// Ready to serve: a leader is known and this node's applied index is within the
    /// configured bound of the commit index it knows. The reason when not.
    pub fn readiness(&self) -> Result<(), String> {
        let s = self.status();
        if s.leader.is_none() {
            return Err("no raft leader is known".into());
        }
        let lag = s.commit_index.saturating_sub(s.applied_index);
        if lag > self.inner.ready_max_lag {
            return Err(format!(
                "applied index {} lags the commit index {} by more than {}",
                s.applied_index, s.commit_index, self.inner.ready_max_lag
            ));
        }
        Ok(())
    }

    fn spawn_metrics(&self) {
        let node = self.clone();
        let mut rx = self.inner.raft.metrics();
        tokio::spawn(async move {
            let mut leader = None;
            loop {
                let m = rx.borrow_and_update().clone();
                if m.state == ServerState::Leader {
                    if let Ok(mut since) = node.inner.leading_since.lock() {
                        if since.is_none_or(|(term, _)| term != m.current_term) {
                            *since = Some((m.current_term, std::time::Instant::now()));
                        }
                    }
                }
                if m.current_leader != leader {
                    if m.current_leader.is_some() {
                        node.inner.leader_changes.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("mussikon_raft_leader_changes_total").increment(1);
                    }
                    leader = m.current_leader;
                }
                node.publish_gauges();
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    fn publish_gauges(&self) {
        let s = self.status();
        metrics::gauge!("mussikon_raft_term").set(s.term as f64);
        metrics::gauge!("mussikon_raft_has_leader").set(if s.leader.is_some() { 1.0 } else { 0.0 });
        metrics::gauge!("mussikon_raft_commit_index").set(s.commit_index as f64);
        metrics::gauge!("mussikon_raft_applied_index").set(s.applied_index as f64);
        for member in &s.members {
            if let Some(lag) = member.lag {
                metrics::gauge!("mussikon_raft_replication_lag", "peer" => member.id.to_string())
                    .set(lag as f64);
            }
        }
        let f = self.inner.sm.figures();
        metrics::gauge!("mussikon_raft_snapshot_bytes").set(f.bytes as f64);
        metrics::gauge!("mussikon_raft_snapshot_duration_seconds").set(f.seconds);
    }

    /// Serves a peer RPC (`append`, `vote`, `write`, `writes`, `read-index`, `applied-index`,
    /// `whois`, `members`, `elect`)
    /// whose body is `body`; the answer's bytes. The caller has checked the secret.
    pub async fn handle_rpc(&self, rpc: &str, body: &[u8]) -> Result<Vec<u8>, RpcError> {
        let bad = |e: crate::types::CodecError| RpcError::BadBody(e.to_string());
        let out = |r: Result<Vec<u8>, crate::types::CodecError>| {
            r.map_err(|e| RpcError::Internal(e.to_string()))
        };
        let raft = &self.inner.raft;
        match rpc {
            "append" => {
                let req: AppendEntriesRequest<TypeConfig> = decode(body).map_err(bad)?;
                let answer = raft.append_entries(req).await;
                if matches!(&answer, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
                    self.inner.leader_contact.heard();
                }
                out(encode(&answer))
            }
            "vote" => {
                let req: VoteRequest<NodeId> = decode(body).map_err(bad)?;
                let answer = raft.vote(req.clone()).await;
                if let Ok(a) = &answer {
                    self.outrun_stale_candidate(&req, a);
                }
                out(encode(&answer))
            }
            "write" => {
                let req: Request = decode(body).map_err(bad)?;
                let answer: WireWrite = self.write_local(req).await.map(|d| Reply(Some(d)));
                out(encode(&answer))
            }
            "writes" => {
                let reqs: Vec<Request> = decode(body).map_err(bad)?;
                if reqs.len() > group_commit::MAX_COMMANDS {
                    return Err(RpcError::BadBody(format!(
                        "{} writes in one request; at most {}",
                        reqs.len(),
                        group_commit::MAX_COMMANDS
                    )));
                }
                let answers: Vec<WireWrite> = self
                    .write_all_local(reqs)
                    .await
                    .into_iter()
                    .map(|a| a.map(|d| Reply(Some(d))))
                    .collect();
                out(encode(&answers))
            }
            "read-index" | "applied-index" => {
                let level = if rpc == "read-index" {
                    Consistency::Linearizable
                } else {
                    Consistency::Leader
                };
                out(encode(&self.local_read_index(level).await))
            }
            "whois" => {
                let id: NodeId = decode(body).map_err(bad)?;
                out(encode(&self.whois(id).await?))
            }
            "members" => {
                let op: AdminOp = decode(body).map_err(bad)?;
                out(encode(&self.change_members_local(op).await))
            }
            "elect" => {
                let at_least: u64 = decode(body).map_err(bad)?;
                out(encode(&self.stand_for_election(at_least).await))
            }
            other => Err(RpcError::Unknown(other.to_string())),
        }
    }

    /// Serves the `snapshot` RPC: a body of `[u32 LE n][n bytes: vote and meta][export stream]`,
    /// written to a file, fsynced, then installed. The answer's bytes.
    pub async fn receive_snapshot<S, E>(&self, body: S) -> Result<Vec<u8>, RpcError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // Only a leader sends snapshots (the RPC carries the cluster secret).
        self.inner.leader_contact.heard();
        let mut body = body;
        let file = self.inner.sm.receiving_file();
        let mut head: Vec<u8> = Vec::new();
        let mut need: Option<usize> = None;
        let mut out = tokio::fs::File::create(&file.path)
            .await
            .map_err(|e| RpcError::Internal(e.to_string()))?;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| RpcError::BadBody(e.to_string()))?;
            let mut rest: &[u8] = &chunk;
            if need.is_none_or(|n| head.len() < n + 4) {
                let want = need.map(|n| n + 4).unwrap_or(4);
                let take = (want - head.len()).min(rest.len());
                head.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if need.is_none() && head.len() == 4 {
                    let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                    if n > crate::types::SNAPSHOT_HEAD_MAX {
                        return Err(RpcError::BadBody("snapshot header too large".into()));
                    }
                    need = Some(n);
                    let take = n.min(rest.len());
                    head.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                }
            }
            if !rest.is_empty() {
                out.write_all(rest)
                    .await
                    .map_err(|e| RpcError::Internal(e.to_string()))?;
                written += rest.len() as u64;
            }
        }
        out.sync_all()
            .await
            .map_err(|e| RpcError::Internal(e.to_string()))?;
        drop(out);
        let Some(n) = need.filter(|n| head.len() == n + 4) else {
            let _ = tokio::fs::remove_file(&file.path).await;
            return Err(RpcError::BadBody(
                "snapshot body shorter than its header".into(),
            ));
        };
        let (vote, meta): crate::types::SnapshotHead =
            decode(&head[4..4 + n]).map_err(|e| RpcError::BadBody(e.to_string()))?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = written, "snapshot received");
        let answer: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> = self
            .inner
            .raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: Box::new(SnapshotFile { path: file.path }),
                },
            )
            .await;
        encode(&answer).map_err(|e| RpcError::Internal(e.to_string()))
    }

    /// Stops openraft (the engine is flushed by its owner).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown failed");
        }
    }
}

/// The header name of the cluster secret, for servers mounting the RPC routes.
pub fn secret_header() -> &'static str {
    SECRET_HEADER
}
