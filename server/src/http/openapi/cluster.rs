//! The description of the cluster's admin routes (`server/src/http/cluster.rs`), which are
//! served beside the router's table rather than from it. On a single node they answer 404; the
//! peer RPCs under `/raft` are not part of the API and are not described.

use crate::http::cluster::{AddMember, SetFaults, SetMemberAddr, TransferLeader};
use mussikon_cluster::node::MemberStatus;
use mussikon_cluster::ClusterStatus;
use utoipa::OpenApi;

/// Stubs carrying the operations; never called.
#[allow(dead_code)]
pub mod paths {
    use super::*;

    /// Cluster status
    ///
    /// This node's view: its state, the leader, the term, the last log, commit and applied
    /// indexes, and each member's role with (on the leader) its matched index and lag.
    #[utoipa::path(get, path = "/v1/cluster/status", tag = "cluster", operation_id = "clusterStatus",
        responses(
            (status = 200, description = "The node's view of the cluster.", body = ClusterStatus),
            (status = 404, description = "This server is not a cluster node."),
        ))]
    pub fn status() {}

    /// Add a member
    ///
    /// Adds the node as a learner, waits until it has caught up, then (unless `voter` is false)
    /// promotes it to voter. Any node takes it and forwards it to the leader. One membership
    /// change at a time.
    #[utoipa::path(post, path = "/v1/cluster/members", tag = "cluster", operation_id = "addMember",
        request_body(content = AddMember, content_type = "application/json"),
        responses(
            (status = 200, description = "The change is committed; the status after it.", body = ClusterStatus),
            (status = 400, description = "The body is not valid JSON or has unknown fields."),
            (status = 404, description = "This server is not a cluster node."),
            (status = 422, description = "`node_id` or `addr` is invalid."),
            (status = 503, description = "Another change is running or not yet committed, or no leader is known (retried for 5 s first), or the leader's answer was lost: then the change may have been made, and the status shows whether."),
        ))]
    pub fn add_member() {}

    /// Remove a member
    ///
    /// Removes a voter or learner (the leader included: it steps down once the change is
    /// committed). Never reuse a removed node's id.
    #[utoipa::path(delete, path = "/v1/cluster/members/{id}", tag = "cluster", operation_id = "removeMember",
        params(("id" = u64, Path, description = "The member's node id.")),
        responses(
            (status = 200, description = "The change is committed; the status after it.", body = ClusterStatus),
            (status = 404, description = "This server is not a cluster node."),
            (status = 422, description = "The id is not a member, or it is the last voter."),
            (status = 503, description = "Another change is running or not yet committed, or no leader is known (retried for 5 s first), or the leader's answer was lost: then the change may have been made, and the status shows whether."),
        ))]
    pub fn remove_member() {}

    /// Change a member's address
    ///
    /// Moves a member's peer address (where the other members send it peer RPCs), e.g. from
    /// its API port to its `cluster.peer_listen` port when a cluster first booted with its
    /// peers on the API ports moves to a peer port (docs/operations.md, "Upgrade and roll
    /// back"). The leader first checks that the member answers peer RPCs at the new address
    /// as itself. One membership entry; the voters stay as they are. Any node takes it and
    /// forwards it to the leader. One membership change at a time.
    #[utoipa::path(put, path = "/v1/cluster/members/{id}", tag = "cluster", operation_id = "setMemberAddr",
        params(("id" = u64, Path, description = "The member's node id.")),
        request_body(content = SetMemberAddr, content_type = "application/json"),
        responses(
            (status = 200, description = "The change is committed (or the member was at the address already); the status after it.", body = ClusterStatus),
            (status = 400, description = "The body is not valid JSON (its position is given)."),
            (status = 404, description = "This server is not a cluster node, or the id is not a member."),
            (status = 422, description = "`addr` is not HOST:PORT, is another member's address, or the member does not answer peer RPCs there; or `node_id` was removed from the cluster."),
            (status = 503, description = "Another change is running or not yet committed, or no leader is known (retried for 5 s first), or the leader's answer was lost: then the change may have been made, and the status shows whether."),
        ))]
    pub fn set_member_addr() {}

    /// Hand leadership over
    ///
    /// Makes `node_id` (a voter), or the voter holding the most of the log, the leader. Any
    /// node takes it and forwards it to the leader. The leader holds new writes (they wait,
    /// none fails), lets the ones in flight commit, waits until the target has its whole log,
    /// and asks it to stand for election; the held writes then go to the new leader. Answers
    /// once the new leader is known; 503 if another voter won (ask again). Counts as a
    /// membership change (one at a time).
    #[utoipa::path(post, path = "/v1/cluster/leader", tag = "cluster", operation_id = "transferLeader",
        request_body(content = TransferLeader, content_type = "application/json"),
        responses(
            (status = 200, description = "The new leader is known; the status after the handover.", body = ClusterStatus),
            (status = 400, description = "The body is not valid JSON (its position is given)."),
            (status = 404, description = "This server is not a cluster node."),
            (status = 422, description = "A field is unknown or of the wrong type, `node_id` is not a voter, or there is no other voter."),
            (status = 503, description = "Another change is running, no leader is known, or the target did not catch up or win the election in time."),
        ))]
    pub fn transfer_leader() {}

    /// Step down
    ///
    /// If this node leads, it hands leadership over to the voter holding the most of the log
    /// (as `POST /v1/cluster/leader` with `{}`); otherwise there is nothing to do. Never
    /// forwarded: for a node about to stop (a pod's preStop hook, a rolling upgrade).
    #[utoipa::path(post, path = "/v1/cluster/step-down", tag = "cluster", operation_id = "stepDown",
        responses(
            (status = 200, description = "This node does not lead (any more); its status.", body = ClusterStatus),
            (status = 404, description = "This server is not a cluster node."),
            (status = 422, description = "This node is the only voter."),
            (status = 503, description = "Another change is running, or the handover did not complete in time."),
        ))]
    pub fn step_down() {}

    /// Fault injection: show the cut peers
    ///
    /// Only when `cluster.fault_injection` is on (partition tests; never in production).
    #[utoipa::path(get, path = "/v1/cluster/faults", tag = "cluster", operation_id = "getFaults",
        responses(
            (status = 200, description = "The peers this node is cut from.", body = SetFaults),
            (status = 404, description = "Not a cluster node, or fault injection is off."),
        ))]
    pub fn get_faults() {}

    /// Fault injection: cut this node from peers
    ///
    /// Replaces the set of peers this node is cut from, both ways: its RPCs to them fail, theirs
    /// to it are refused. Client traffic is not cut.
    #[utoipa::path(put, path = "/v1/cluster/faults", tag = "cluster", operation_id = "setFaults",
        request_body(content = SetFaults, content_type = "application/json"),
        responses(
            (status = 200, description = "The peers this node is now cut from.", body = SetFaults),
            (status = 400, description = "The body is not valid JSON or has unknown fields."),
            (status = 404, description = "Not a cluster node, or fault injection is off."),
            (status = 422, description = "`cut` names this node."),
        ))]
    pub fn set_faults() {}

    /// Fault injection: heal
    ///
    /// Removes every cut of this node.
    #[utoipa::path(delete, path = "/v1/cluster/faults", tag = "cluster", operation_id = "healFaults",
        responses(
            (status = 200, description = "No peer is cut any more.", body = SetFaults),
            (status = 404, description = "Not a cluster node, or fault injection is off."),
        ))]
    pub fn heal_faults() {}
}

/// The cluster's part of the document.
#[derive(OpenApi)]
#[openapi(
    paths(
        paths::status, paths::add_member, paths::remove_member, paths::set_member_addr,
        paths::transfer_leader, paths::step_down,
        paths::get_faults, paths::set_faults, paths::heal_faults,
    ),
    components(schemas(ClusterStatus, MemberStatus, AddMember, SetMemberAddr, TransferLeader, SetFaults)),
    tags((name = "cluster", description = "Replication: status, membership, leadership and (tests only) fault injection. Admin role. \
        On a cluster node every response names the leader, when one is known: its node id in `X-Mussikon-Leader-Id` and its \
        peer address in `X-Mussikon-Leader` (where the peer RPCs reach it: a separate peer port when the node has \
        `cluster.peer_listen`, so not necessarily an address that serves this API). A member's `addr` is likewise its peer address."))
)]
pub struct Cluster;
