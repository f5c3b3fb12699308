//! Real `mussikon serve --node-id` processes on 127.0.0.1, each with its own data directory,
//! talking over sockets: replication, leader failure, catch-up from the log and from a
//! snapshot, concurrent bookings, leadership handovers, the secret on peer RPCs, peer RPCs on a
//! port of their own, a cluster moved from its API ports to peer ports in place, partitions,
//! membership changes,
//! a new cluster started from a restored backup, a voter that keeps no search index, and a
//! linearizability check of concurrent clients' histories.
#![allow(clippy::unwrap_used)]

mod events;
mod harness;
mod leadership;
mod linearizability;
mod membership;
mod migrate;
#[path = "../support/otlp.rs"]
mod otlp;
mod partition;
mod peer_port;
mod replication;
mod restore;
#[path = "../support/rss.rs"]
mod rss;
mod without_index;
#[path = "../support/ws.rs"]
mod ws;
