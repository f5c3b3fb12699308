//! The storage codec: every record type the store, snapshots and (later) the Raft log decode.
//!
//! The first input byte picks a record type; the rest is its payload, wrapped as
//! `[FORMAT_VERSION][kind][payload]`. The raw input is also decoded as every type, to check the
//! typed errors for a short record, a foreign version byte and a foreign kind byte. Properties:
//! decoding never panics; what decodes re-encodes, and the re-encoding is a fixed point
//! (decode(encode(v)) encodes to the same bytes); errors are the documented variants.

use mussikon_engine::codec::{decode, encode, CodecError, RecordKind, FORMAT_VERSION};
use mussikon_engine::snapshot::Frame;
use mussikon_engine::{Booking, Command, GigRecord, Message, MusicianRecord, Outcome};

const KINDS: [RecordKind; 9] = [
    RecordKind::Musician,
    RecordKind::Gig,
    RecordKind::Booking,
    RecordKind::Changes,
    RecordKind::Command,
    RecordKind::SnapshotFrame,
    RecordKind::Outcome,
    RecordKind::Message,
    RecordKind::Idempotency,
];

/// Runs every codec check on `data`.
pub fn check(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(pick) % KINDS.len()];
    let mut record = vec![FORMAT_VERSION, kind as u8];
    record.extend_from_slice(payload);
    for k in KINDS {
        // The well-formed wrapper under its own kind, and the raw input under every kind.
        if k == kind {
            decode_as(k, &record);
        }
        decode_as(k, data);
    }
}

fn decode_as(kind: RecordKind, bytes: &[u8]) {
    match kind {
        RecordKind::Musician => round_trip::<MusicianRecord>(kind, bytes),
        RecordKind::Gig => round_trip::<GigRecord>(kind, bytes),
        RecordKind::Booking => round_trip::<Booking>(kind, bytes),
        RecordKind::Changes => round_trip::<Vec<String>>(kind, bytes),
        RecordKind::Command => round_trip::<Command>(kind, bytes),
        RecordKind::SnapshotFrame => round_trip::<Frame>(kind, bytes),
        RecordKind::Outcome => round_trip::<Outcome>(kind, bytes),
        RecordKind::Message => round_trip::<Message>(kind, bytes),
        // The store's private `IdemEntry { fingerprint, at_ms, n, outcome }`: the derived codec
        // writes fields in order, so this tuple has the same encoding.
        RecordKind::Idempotency => round_trip::<(u64, i64, u64, Outcome)>(kind, bytes),
    }
}

fn round_trip<T>(kind: RecordKind, bytes: &[u8])
where
    T: bincode::Encode + bincode::Decode<()> + std::fmt::Debug,
{
    match decode::<T>(kind, bytes) {
        Ok(value) => {
            let again = encode(kind, &value).expect("a decoded value must encode");
            assert!(
                again.len() <= bytes.len(),
                "{kind:?}: re-encoding grew from {} to {} bytes",
                bytes.len(),
                again.len()
            );
            let back: T = decode(kind, &again)
                .unwrap_or_else(|e| panic!("{kind:?}: own encoding does not decode: {e}"));
            let third = encode(kind, &back).expect("encode");
            assert_eq!(again, third, "{kind:?}: encoding is not a fixed point");
        }
        Err(e) => check_error(kind, bytes, &e),
    }
}

fn check_error(kind: RecordKind, bytes: &[u8], e: &CodecError) {
    let expected_prefix_error = if bytes.len() < 2 {
        Some(CodecError::TooShort(bytes.len()))
    } else if bytes[0] != FORMAT_VERSION {
        Some(CodecError::UnknownVersion { found: bytes[0] })
    } else if bytes[1] != kind as u8 {
        Some(CodecError::WrongKind {
            expected: kind,
            found: bytes[1],
        })
    } else {
        None
    };
    match expected_prefix_error {
        Some(want) => assert_eq!(&want, e, "{kind:?}: wrong error for a bad prefix"),
        None => assert!(
            matches!(e, CodecError::Corrupt(_) | CodecError::Trailing(_)),
            "{kind:?}: a payload error must be Corrupt or Trailing, got {e:?}"
        ),
    }
    if let CodecError::Trailing(n) = e {
        assert!(
            *n > 0 && *n <= bytes.len() - 2,
            "{kind:?}: trailing count {n} out of range"
        );
    }
}
