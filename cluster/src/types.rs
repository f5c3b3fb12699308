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

openraft::declare_raft_types!(
    /// MussikOn's Raft types: engine commands in, engine outcomes out, u64 node ids, nodes
    /// addressed by their HTTP listen address.
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

/// One command to replicate.
#[derive(Clone, Debug, PartialEq)]
pub struct Request(pub Command);

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

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes a serde value in bincode 2.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a serde value from bincode 2; trailing bytes are an error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (v, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
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
    let (v, used) = bincode::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err("trailing bytes".into());
    }
    Ok(v)
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = native_encode(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes_buf::Buf = Deserialize::deserialize(d)?;
        native_decode(&bytes.0)
            .map(Request)
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
        let r = Request(Command::Book(Booking {
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
}
