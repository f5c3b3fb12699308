//! The checks behind MussikOn's libFuzzer targets (`fuzz_targets/*.rs` are one-line wrappers).
//!
//! Each module owns one decoder of untrusted bytes and promises more than "no panic" where it
//! can: round trips (codec, query strings), agreement with an independent oracle (JSON depth,
//! NDJSON line splitting, the command model), and typed errors. A check signals a finding by
//! panicking with a message naming the broken property; libFuzzer saves the input.
//!
//! The cluster: `raft_rpc` decodes the Raft RPC bodies (and answers) peers exchange; a snapshot
//! RPC's export stream goes through the `snapshot` checks.

#![allow(clippy::unwrap_used)]

pub mod auth_header;
pub mod codec;
pub mod commands;
pub mod json_body;
pub mod ndjson_import;
pub mod query_params;
pub mod raft_rpc;
pub mod snapshot;
