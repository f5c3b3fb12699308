//! The storage codec: the only place that knows how records become bytes.
//!
//! Every value is `[FORMAT_VERSION][kind][bincode 2 payload]`. Decoding checks the version and
//! the kind byte, caps allocations at [`MAX_RECORD_BYTES`], requires the payload to be consumed
//! exactly, and returns a [`CodecError`] — never panics — on any bytes it cannot read. Swapping
//! bincode for another format means changing this file only.

use bincode::{Decode, Encode};

/// Version byte written first in every stored value (and the store's and snapshots' format).
///
/// 2: `Gig` gained `owner`. bincode fields are positional, so version-1 gig records cannot be
/// read by this build; the store refuses a version-1 data directory at open with a clear error
/// rather than reporting corrupt records later.
pub const FORMAT_VERSION: u8 = 2;

/// Largest payload the decoder will allocate for; larger claims are refused as corrupt.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_RECORD_BYTES>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// What a stored value holds; the second byte of every value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A musician record.
    Musician = 1,
    /// A gig record.
    Gig = 2,
    /// A booking entry (musician, date) → (gig, slot).
    Booking = 3,
    /// A list of musician ids changed by one command (the index change log).
    Changes = 4,
    /// A command (Raft log entries, snapshots).
    Command = 5,
    /// A frame of the snapshot stream.
    SnapshotFrame = 6,
    /// An outcome of a command.
    Outcome = 7,
    /// A chat message of a gig.
    Message = 8,
    /// A recorded idempotency key (fingerprint, time, first outcome).
    Idempotency = 9,
}

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// Fewer than two bytes.
    #[error("record too short ({0} bytes)")]
    TooShort(usize),
    /// The version byte is not one this build reads.
    #[error("unknown format version {found} (this build reads {FORMAT_VERSION})")]
    UnknownVersion {
        /// The byte found.
        found: u8,
    },
    /// The record is of another kind than the caller expected.
    #[error("expected a {expected:?} record, found kind byte {found}")]
    WrongKind {
        /// What the caller asked for.
        expected: RecordKind,
        /// The byte found.
        found: u8,
    },
    /// The payload is not a valid encoding.
    #[error("corrupt payload: {0}")]
    Corrupt(String),
    /// The payload decoded but bytes were left over.
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
    /// Encoding failed (only on values larger than the limit).
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Encodes `value` as a record of `kind`.
///
/// ```
/// use mussikon_engine::codec::{encode, decode, RecordKind};
/// let bytes = encode(RecordKind::Changes, &vec!["m-1".to_string()]).unwrap();
/// let back: Vec<String> = decode(RecordKind::Changes, &bytes).unwrap();
/// assert_eq!(back, ["m-1"]);
/// ```
pub fn encode<T: Encode>(kind: RecordKind, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    bincode::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a record of `kind`; any other bytes give an error, never a panic.
///
/// ```
/// use mussikon_engine::codec::{decode, RecordKind, CodecError};
/// let r: Result<Vec<String>, _> = decode(RecordKind::Changes, &[9, 4, 0]);
/// assert_eq!(r.unwrap_err(), CodecError::UnknownVersion { found: 9 });
/// ```
pub fn decode<T: Decode<()>>(kind: RecordKind, bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() < 2 {
        return Err(CodecError::TooShort(bytes.len()));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion { found: bytes[0] });
    }
    if bytes[1] != kind as u8 {
        return Err(CodecError::WrongKind {
            expected: kind,
            found: bytes[1],
        });
    }
    let payload = &bytes[2..];
    let (value, used): (T, usize) = bincode::decode_from_slice(payload, config())
        .map_err(|e| CodecError::Corrupt(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::Trailing(payload.len() - used));
    }
    Ok(value)
}

/// Encodes a u64 as 8 big-endian bytes, so that keys sort numerically.
pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Decodes 8 big-endian bytes; `None` for any other length.
pub fn u64_from_key(b: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = b.try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}
