//! # mussikon-cluster
//!
//! The MussikOn engine replicated on several nodes with openraft 0.9: every engine command goes
//! through a Raft log and is applied on every node, in the same order, through the engine's one
//! apply path (engine sequence = log index + 1).
//!
//! Modules, each with one job: [`types`] (the openraft type config and the wire codec),
//! [`log_store`] (the durable log and vote), [`state_machine`] (the engine as state machine,
//! snapshots in the engine's export format), [`network`] (the HTTP client for peer RPCs), and
//! [`node`] (a running node: start-up, writes with forwarding to the leader, read barriers,
//! membership changes, status), [`identity`] (the node id kept in the data directory,
//! `auto` ids), [`bootstrap`] (a new cluster started from a restored backup), [`election`]
//! (standing at once against a candidate whose log is behind, after the leader fell silent),
//! and [`faults`] (cutting peers, for partition tests; off by default). **Invariant:** this crate knows the
//! engine only through `Command`, `apply`, `advance`, `export` and `install`; it knows no
//! routes: the server mounts
//! [`node::Node::handle_rpc`] under `/raft/…`.

// openraft's storage traits fix `StorageError` (over 200 bytes) as the error type of every
// storage call; the helpers that feed them return it too.
#![allow(clippy::result_large_err)]

pub mod bootstrap;
pub mod election;
pub mod faults;
pub mod group_commit;
pub mod identity;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod types;

pub use log_store::LogStore;
pub use node::{ClusterStatus, Consistency, Node, NodeConfig};
pub use state_machine::StateMachine;
pub use types::{NodeId, Raft, Reply, Request, SnapshotFile, TypeConfig};
