//! The openraft type configuration and the binary codec of everything that crosses the wire or
//! lands in the log.
//!
//! Application data is the engine's [`Command`] and the response its [`Outcome`] with the
//! applied sequence (the log index). Both are carried as bincode 2 bytes of the engine's own
//! `Encode` form inside the serde tree openraft builds, because their serde forms are
//! internally tagged JSON (which a binary serde format cannot read back). Everything else
//! (entries, votes, RPC requests) goes through serde into bincode 2 with [`encode`] /
//! [`decode`], the only two functions that know the codec.

use mussikon_engine::{Command, Executed, Outcome};
use openraft::BasicNode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::PathBuf;
use std::sync::Arc;

openraft::declare_raft_types!(
    /// MussikOn's Raft types: engine commands in, engine outcomes out, u64 node ids, nodes
    /// addressed by their peer address (the HTTP listener serving their peer RPCs).
    pub TypeConfig:
        D = Request,
        R = Reply,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// A node id.
pub type NodeId = u64;
/// The Raft handle of this crate's types.
pub type Raft = openraft::Raft<TypeConfig>;

/// One command to replicate. Shared, so that cloning an entry (the log store's cache hands
/// replication and the state machine clones of the entries it keeps) copies a pointer, not the
/// command: a group-commit entry carries a batch of whole musician profiles.
#[derive(Clone, Debug, PartialEq)]
pub struct Request(pub Arc<Command>);

impl From<Command> for Request {
    fn from(cmd: Command) -> Request {
        Request(Arc::new(cmd))
    }
}

/// What applying an entry did: `None` for entries that carry no command (blank, membership).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Reply(pub Option<Executed>);

/// A snapshot on disk: the engine's export stream, preceded by nothing (the metadata travels
/// beside it). Moving the value moves the file's ownership, not its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Where the export stream is.
    pub path: PathBuf,
}

/// Codec errors.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed.
    #[error("could not encode: {0}")]
    Encode(String),
    /// Decoding failed (bad bytes, trailing bytes, too large).
    #[error("could not decode: {0}")]
    Decode(String),
}

/// Largest message [`decode`] accepts (snapshots are streamed, not decoded).
const LIMIT: usize = 256 * 1024 * 1024;

/// Largest snapshot head (the sender's vote and the snapshot's metadata, before the export
/// stream) a receiver reads; a longer declared head is refused before any of it is buffered.
pub const SNAPSHOT_HEAD_MAX: usize = 16 * 1024 * 1024;

/// What precedes the export stream in a snapshot RPC body: the sender's vote and the
/// snapshot's metadata.
pub type SnapshotHead = (
    openraft::Vote<NodeId>,
    openraft::SnapshotMeta<NodeId, BasicNode>,
);

/// The start of a snapshot RPC body, `[u32 LE n][n bytes: the encoded head]`; the engine's
/// export stream follows it. The receiver (`Node::receive_snapshot`) splits it off again.
pub fn snapshot_prefix(head: &SnapshotHead) -> Result<Vec<u8>, CodecError> {
    let head = encode(head)?;
    let mut prefix = (head.len() as u32).to_le_bytes().to_vec();
    prefix.extend_from_slice(&head);
    Ok(prefix)
}

/// How much memory a decode may claim per input byte. bincode sums, over a whole message, the
/// in-memory size of what it decodes (8 bytes for a `u64` that took one varint byte, a string's
/// length for its bytes) and refuses past its limit *before* allocating a declared length. No
/// valid encoding claims more than 16 times its length (the widest primitive, `u128`, is 16
/// bytes from at least one), so the limit follows the input: a 10-byte body that declares a
/// 200 MB string is refused without the allocation.
const CLAIM_PER_INPUT_BYTE: usize = 16;

/// bincode's limit is a const generic: [`decode`] picks the smallest of these tiers that is at
/// least [`CLAIM_PER_INPUT_BYTE`] times the input.
fn limited<const N: usize>() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<N>,
> {
    bincode::config::standard().with_limit::<N>()
}

/// Evaluates `$body` with `$c` bound to the config of the tier an input of `$len` bytes falls in.
macro_rules! with_tier {
    ($len:expr, $c:ident => $body:expr) => {{
        let claim = ($len).saturating_mul(CLAIM_PER_INPUT_BYTE);
        if claim <= 64 * 1024 {
            let $c = limited::<{ 64 * 1024 }>();
            $body
        } else if claim <= 1024 * 1024 {
            let $c = limited::<{ 1024 * 1024 }>();
            $body
        } else if claim <= 16 * 1024 * 1024 {
            let $c = limited::<{ 16 * 1024 * 1024 }>();
            $body
        } else {
            let $c = limited::<LIMIT>();
            $body
        }
    }};
}

/// Encodes a serde value in bincode 2.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, limited::<LIMIT>())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a serde value from the start of `bytes` (with [`decode`]'s memory limit); the value
/// and how many bytes it took. Bincode encodes a tuple as its fields one after the other, so a
/// tuple's leading fields decode this way and the rest follow.
pub fn decode_prefix<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, usize), CodecError> {
    with_tier!(bytes.len(), c => bincode::serde::decode_from_slice(bytes, c))
        .map_err(|e| CodecError::Decode(e.to_string()))
}

/// Decodes a serde value from bincode 2; trailing bytes are an error, and so is a message that
/// would claim more memory than its tier allows (see [`CLAIM_PER_INPUT_BYTE`]).
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (v, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(v)
}

fn native_encode<T: bincode::Encode>(v: &T) -> Result<Vec<u8>, String> {
    bincode::encode_to_vec(v, bincode::config::standard()).map_err(|e| e.to_string())
}

fn native_decode<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<T, String> {
    let (v, used) = with_tier!(bytes.len(), c => bincode::decode_from_slice(bytes, c))
        .map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err("trailing bytes".into());
    }
    Ok(v)
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = native_encode(&*self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes_buf::Buf = Deserialize::deserialize(d)?;
        native_decode::<Command>(&bytes.0)
            .map(Request::from)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v: Option<(u64, Outcome)> = self.0.as_ref().map(|e| (e.seq, e.outcome.clone()));
        let bytes = native_encode(&v).map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes_buf::Buf = Deserialize::deserialize(d)?;
        let v: Option<(u64, Outcome)> =
            native_decode(&bytes.0).map_err(serde::de::Error::custom)?;
        Ok(Reply(v.map(|(seq, outcome)| Executed { seq, outcome })))
    }
}

/// A byte buffer that deserializes from serde bytes (or a sequence of u8, as JSON gives).
mod serde_bytes_buf {
    use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
    use std::fmt;

    pub struct Buf(pub Vec<u8>);

    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Buf;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Buf, E> {
                    Ok(Buf(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Buf, E> {
                    Ok(Buf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Buf, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = a.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(Buf(out))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mussikon_engine::Booking;

    #[test]
    fn requests_and_replies_round_trip_through_the_wire_codec() {
        let r = Request::from(Command::Book(Booking {
            gig_id: "g-1".into(),
            slot: 0,
            musician_id: "m-1".into(),
        }));
        let back: Request = decode(&encode(&r).expect("encode")).expect("decode");
        assert_eq!(back, r);
        let reply = Reply(Some(Executed {
            seq: 7,
            outcome: Outcome::AlreadyApplied { applied: 9 },
        }));
        let back: Reply = decode(&encode(&reply).expect("encode")).expect("decode");
        assert_eq!(back, reply);
        assert!(decode::<Reply>(&[1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn a_short_body_declaring_a_huge_length_is_refused_by_the_limit_not_by_running_out() {
        // A string of 200 MiB declared in 5 bytes (varint tag 252: a u32 follows).
        let mut body = vec![252u8];
        body.extend_from_slice(&(200u32 * 1024 * 1024).to_le_bytes());
        let err = decode::<String>(&body).expect_err("declared past the input");
        let CodecError::Decode(message) = err else {
            panic!("not a decode error: {err:?}")
        };
        assert!(message.contains("LimitExceeded"), "{message}");
        // The same inside a raft request's command bytes.
        let err = decode::<Request>(&[5, 252, 0, 0, 0, 64]).expect_err("declared past the input");
        assert!(matches!(err, CodecError::Decode(_)), "{err:?}");
    }

    #[test]
    fn integer_heavy_messages_stay_within_their_tier() {
        // Each zero is one varint byte on the wire and claims 8 (u64) or 16 (u128) bytes: the
        // densest claims a valid message makes, at every tier boundary.
        for n in [10usize, 4_000, 70_000, 1_100_000] {
            let small = vec![0u64; n];
            let back: Vec<u64> = decode(&encode(&small).expect("encode")).expect("u64s");
            assert_eq!(back.len(), n);
            let wide = vec![0u128; n];
            let back: Vec<u128> = decode(&encode(&wide).expect("encode")).expect("u128s");
            assert_eq!(back.len(), n);
        }
    }

    /// One valid body of each message a peer receives or answers, in the `raft_rpc` fuzz
    /// target's order (`fuzz/src/raft_rpc.rs`, `KINDS`): its seed corpus. Each round-trips here;
    /// `MUSSIKON_WRITE_FUZZ_SEEDS=DIR` also writes them to DIR as `[kind][body]` files.
    #[test]
    fn every_peer_rpc_body_round_trips_and_seeds_the_fuzz_target() {
        use crate::node::AdminOp;
        use openraft::error::Fatal;
        use openraft::raft::{
            AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest,
            VoteResponse,
        };
        use openraft::{
            CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
            StoredMembership, Vote,
        };
        use std::collections::{BTreeMap, BTreeSet};

        fn seed<T: Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(
            out: &mut Vec<(String, Vec<u8>)>,
            kind: u8,
            name: &str,
            value: &T,
        ) {
            let bytes = encode(value).expect("encode");
            let back: T = decode(&bytes).expect("decode");
            assert_eq!(format!("{back:?}"), format!("{value:?}"), "{name}");
            out.push((name.to_string(), [vec![kind], bytes].concat()));
        }
        let log_id = |term, index| LogId::new(CommittedLeaderId::new(term, 1), index);
        let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
            .map(|i| (i, BasicNode::new(format!("127.0.0.1:700{i}"))))
            .collect();
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
        let entry = |index, payload| Entry::<TypeConfig> {
            log_id: log_id(2, index),
            payload,
        };
        let book = Request::from(Command::Book(Booking {
            gig_id: "g-1".into(),
            slot: 0,
            musician_id: "m-1".into(),
        }));
        let mut seeds = Vec::new();
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(1, 4)),
            entries: vec![
                entry(5, EntryPayload::Blank),
                entry(6, EntryPayload::Normal(book.clone())),
                entry(7, EntryPayload::Membership(membership.clone())),
            ],
            leader_commit: Some(log_id(1, 4)),
        };
        seed(&mut seeds, 0, "append", &append);
        let heartbeat = AppendEntriesRequest::<TypeConfig> {
            entries: Vec::new(),
            ..append
        };
        seed(&mut seeds, 0, "append-heartbeat", &heartbeat);
        let vote = VoteRequest::new(Vote::new(3, 2), Some(log_id(2, 7)));
        seed(&mut seeds, 1, "vote", &vote);
        seed(&mut seeds, 2, "write", &book);
        let cancel = Request::from(Command::CancelBooking {
            gig_id: "g-1".into(),
            musician_id: "m-1".into(),
        });
        seed(&mut seeds, 8, "writes", &vec![book.clone(), cancel.clone()]);
        let batch = Request::from(Command::Batch {
            commands: vec![(*book.0).clone(), (*cancel.0).clone()],
        });
        seed(&mut seeds, 0, "append-batch", &{
            let mut a = heartbeat.clone();
            a.entries = vec![entry(8, EntryPayload::Normal(batch))];
            a
        });
        let add = AdminOp::Add {
            id: 4,
            addr: "127.0.0.1:7004".into(),
            voter: true,
        };
        seed(&mut seeds, 3, "members-add", &add);
        seed(&mut seeds, 3, "members-remove", &AdminOp::Remove { id: 4 });
        let transfer = AdminOp::TransferLeader { to: Some(2) };
        seed(&mut seeds, 3, "members-transfer-leader", &transfer);
        let meta = SnapshotMeta::<NodeId, BasicNode> {
            last_log_id: Some(log_id(2, 7)),
            last_membership: StoredMembership::new(Some(log_id(2, 7)), membership),
            snapshot_id: "2-1-7-1".into(),
        };
        let prefix = snapshot_prefix(&(Vote::new_committed(2, 1), meta)).expect("encode");
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = mussikon_engine::Engine::open(dir.path(), Default::default()).expect("open");
        let mut stream = Vec::new();
        engine.export(&mut stream).expect("export");
        let snapshot = [vec![4], prefix, stream].concat();
        seeds.push(("snapshot".into(), snapshot));
        seed(
            &mut seeds,
            5,
            "append-answer",
            &AppendEntriesResponse::<NodeId>::Success,
        );
        let conflict = AppendEntriesResponse::<NodeId>::HigherVote(Vote::new(4, 3));
        seed(&mut seeds, 5, "append-answer-higher", &conflict);
        let granted = VoteResponse::new(Vote::new(3, 2), Some(log_id(2, 7)), true);
        seed(&mut seeds, 6, "vote-answer", &granted);
        let installed: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            Ok(SnapshotResponse::new(Vote::new_committed(2, 1)));
        seed(&mut seeds, 7, "snapshot-answer", &installed);
        let stopped: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> = Err(Fatal::Stopped);
        seed(&mut seeds, 7, "snapshot-answer-stopped", &stopped);
        seed(&mut seeds, 9, "whois", &4u64);
        let view = crate::node::PeerView {
            leads: true,
            member: true,
            retired: false,
            matched: Some(7),
        };
        seed(&mut seeds, 10, "whois-answer", &view);
        let retired = BTreeSet::from([4u64, 1 << 40]);
        let mut file = b"MUSSNAP2 stream".to_vec();
        crate::state_machine::write_trailer(&mut file, &retired).expect("trailer");
        let (back, stream_len) =
            crate::state_machine::read_trailer(&mut std::io::Cursor::new(&file)).expect("read");
        assert_eq!((back, stream_len), (retired, 15));
        seeds.push(("snapshot-trailer".into(), [vec![11], file].concat()));
        let refused: Result<(), String> = Err("this node is not a voter".into());
        seed(&mut seeds, 12, "elect-answer", &refused);
        if let Ok(out) = std::env::var("MUSSIKON_WRITE_FUZZ_SEEDS") {
            for (name, bytes) in &seeds {
                std::fs::write(std::path::Path::new(&out).join(name), bytes).expect("write");
            }
        }
    }
}
