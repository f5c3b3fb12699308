//! Raft RPC bodies as a peer receives them on `POST /raft/{rpc}` (and the answers the sender
//! decodes), through the decode call the receiving code makes: `mussikon_cluster::types::decode`
//! at the type `Node::handle_rpc` / `Node::receive_snapshot` name for each RPC.
//!
//! The first input byte picks the message (see [`KINDS`]); the rest is the body. Also the
//! `whois` question and answer a starting node exchanges, the answer to a handover's `elect`
//! (its question is a bare index, as `whois`'s is a bare id), and the retired-ids trailer at the
//! end of a received snapshot file (`state_machine::read_trailer`). A `snapshot`
//! body is `[u32 LE n][n bytes: (vote, meta)][engine export stream]`, one streamed request (no
//! chunks): its head is split off as the receiver does (n at most 16 MiB) and decoded; when it
//! decodes, the stream goes through the `snapshot` checks (the frame reader and restore a
//! follower's install runs).
//!
//! Properties: decoding never panics and never allocates a declared length the input cannot
//! back: the codec's memory limit is 16 bytes per input byte, at least 64 KiB (run with
//! `-malloc_limit_mb`; `fuzz/run.sh` gives this target 64 MB, which a 256 MiB allocation, the
//! codec's old fixed limit, would exceed); a failure is `CodecError::Decode` with a message; what decodes re-encodes no longer
//! than the input, the re-encoding decodes to an equal value (`Debug`-equal: openraft's
//! append-entries request has no `PartialEq`) and its encoding is a fixed point.

use mussikon_cluster::node::{AdminOp, PeerView};
use mussikon_cluster::state_machine::{read_trailer, write_trailer};
use mussikon_cluster::types::{decode, encode, CodecError, SnapshotHead, SNAPSHOT_HEAD_MAX};
use mussikon_cluster::{NodeId, Request, TypeConfig};
use openraft::error::Fatal;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// The messages, by the selector byte (`pick % KINDS.len()`). Seeds in `fuzz/corpus/raft_rpc`
/// start with this index.
pub const KINDS: [&str; 13] = [
    "append",
    "vote",
    "write",
    "members",
    "snapshot",
    "append-answer",
    "vote-answer",
    "snapshot-answer",
    "writes",
    "whois",
    "whois-answer",
    "snapshot-trailer",
    "elect-answer",
];

/// Runs the check of the message `data[0]` picks on `data[1..]`.
pub fn check(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let _decoded = match KINDS[usize::from(pick) % KINDS.len()] {
        "append" => round_trip::<AppendEntriesRequest<TypeConfig>>(body),
        "vote" => round_trip::<VoteRequest<NodeId>>(body),
        "write" => round_trip::<Request>(body),
        "members" => round_trip::<AdminOp>(body),
        "snapshot" => snapshot(body),
        "append-answer" => round_trip::<AppendEntriesResponse<NodeId>>(body),
        "vote-answer" => round_trip::<VoteResponse<NodeId>>(body),
        "writes" => round_trip::<Vec<Request>>(body),
        "whois" => round_trip::<NodeId>(body),
        "whois-answer" => round_trip::<PeerView>(body),
        "snapshot-trailer" => trailer(body),
        "elect-answer" => round_trip::<Result<(), String>>(body),
        _ => round_trip::<Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>(body),
    };
}

/// A received snapshot file's end, read as the state machine reads it before installing:
/// never a panic; a trailer it accepts lies within the file, and writing its ids back after
/// the stream it names gives a file that reads the same. Whether a trailer was found.
fn trailer(body: &[u8]) -> bool {
    let Ok((ids, stream_len)) = read_trailer(&mut std::io::Cursor::new(body)) else {
        return false;
    };
    let stream_len = usize::try_from(stream_len).expect("within the input");
    assert!(stream_len <= body.len());
    if stream_len == body.len() {
        assert!(ids.is_empty(), "no trailer, no ids");
        return false;
    }
    let mut rebuilt = body[..stream_len].to_vec();
    write_trailer(&mut rebuilt, &ids).expect("a Vec takes any write");
    let again = read_trailer(&mut std::io::Cursor::new(&rebuilt)).expect("reads back");
    assert_eq!(again, (ids, stream_len as u64));
    true
}

/// Whether the head decoded.
fn snapshot(body: &[u8]) -> bool {
    let Some((len, rest)) = body.split_first_chunk::<4>() else {
        return false;
    };
    let n = u32::from_le_bytes(*len) as usize;
    if n > SNAPSHOT_HEAD_MAX || rest.len() < n {
        return false;
    }
    let (head, stream) = rest.split_at(n);
    let decoded = round_trip::<SnapshotHead>(head);
    if decoded {
        crate::snapshot::check(stream);
    }
    decoded
}

/// Decodes `bytes` as `T` and checks the round trip; whether it decoded.
fn round_trip<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8]) -> bool {
    let value = match decode::<T>(bytes) {
        Ok(v) => v,
        Err(CodecError::Decode(m)) => {
            assert!(!m.is_empty(), "a decode error without a message");
            return false;
        }
        Err(e) => panic!("decoding failed with a non-decode error: {e}"),
    };
    let encoded = encode(&value).expect("a decoded value re-encodes");
    assert!(
        encoded.len() <= bytes.len(),
        "re-encoding is longer than the input ({} > {})",
        encoded.len(),
        bytes.len()
    );
    let back: T = decode(&encoded).expect("a re-encoding decodes");
    assert_eq!(
        format!("{back:?}"),
        format!("{value:?}"),
        "the re-encoding decodes to another value"
    );
    assert_eq!(
        encode(&back).expect("encode"),
        encoded,
        "the encoding is not a fixed point"
    );
    true
}
