//! The description of the cluster's admin routes (`server/src/http/cluster.rs`), which are
//! served beside the router's table rather than from it. On a single node they answer 404; the
//! peer RPCs under `/raft` are not part of the API and are not described.

use crate::http::cluster::{AddMember, SetFaults};
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
            (status = 503, description = "Another change is running, or no leader is known."),
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
            (status = 422, description = "The id is not a member."),
            (status = 503, description = "Another change is running, or no leader is known."),
        ))]
    pub fn remove_member() {}

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
        paths::status, paths::add_member, paths::remove_member,
        paths::get_faults, paths::set_faults, paths::heal_faults,
    ),
    components(schemas(ClusterStatus, MemberStatus, AddMember, SetFaults)),
    tags((name = "cluster", description = "Replication: status, membership and (tests only) fault injection. Admin role."))
)]
pub struct Cluster;
