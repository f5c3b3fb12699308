//! The storage codec: arbitrary bytes never panic the decoder, and every record type
//! round-trips.
#![allow(clippy::unwrap_used)]

mod common;

use mussikon_engine::codec::{decode, encode, CodecError, RecordKind, FORMAT_VERSION};
use mussikon_engine::snapshot::{Frame, FrameReader};
use mussikon_engine::*;
use proptest::prelude::*;

fn record(m: Musician, version: u64) -> MusicianRecord {
    MusicianRecord {
        booked: m
            .busy
            .iter()
            .map(|d| BookedDate {
                date: d.clone(),
                gig_id: "g-1".into(),
                slot: 0,
            })
            .collect(),
        musician: m,
        version,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), kind in 0u8..10) {
        let mut b = bytes;
        if b.len() >= 2 && kind < 9 { b[0] = 1; b[1] = kind; }
        let _ = decode::<MusicianRecord>(RecordKind::Musician, &b);
        let _ = decode::<GigRecord>(RecordKind::Gig, &b);
        let _ = decode::<Vec<String>>(RecordKind::Changes, &b);
        let _ = decode::<Command>(RecordKind::Command, &b);
        let _ = decode::<Frame>(RecordKind::SnapshotFrame, &b);
        let _ = decode::<Outcome>(RecordKind::Outcome, &b);
        let _ = decode::<Message>(RecordKind::Message, &b);
        for magic in [b"MUSSNAP1", b"MUSSNAP2"] {
            let mut framed = magic.to_vec();
            framed.extend_from_slice(&b);
            if let Ok(mut r) = FrameReader::new(&framed[..]) {
                for _ in 0..4 { if r.next_frame().is_err() { break } }
            }
        }
    }

    #[test]
    fn records_round_trip(ms in common::musicians(1..4), gs in common::gigs(1..3), v in any::<u64>()) {
        for m in ms {
            let rec = record(m.clone(), v);
            let bytes = encode(RecordKind::Musician, &rec).unwrap();
            prop_assert_eq!(decode::<MusicianRecord>(RecordKind::Musician, &bytes).unwrap(), rec);
            let cmd = Command::UpsertMusician { musician: m };
            let bytes = encode(RecordKind::Command, &cmd).unwrap();
            prop_assert_eq!(decode::<Command>(RecordKind::Command, &bytes).unwrap(), cmd);
        }
        for g in gs {
            let rec = GigRecord { gig: g.clone(), version: v, bookings: vec![(0, "m-1".into())] };
            let bytes = encode(RecordKind::Gig, &rec).unwrap();
            prop_assert_eq!(decode::<GigRecord>(RecordKind::Gig, &bytes).unwrap(), rec);
        }
    }
}

#[test]
fn header_errors_are_typed() {
    let rec = encode(RecordKind::Changes, &vec!["a".to_string()]).unwrap();
    assert_eq!(
        decode::<Vec<String>>(RecordKind::Changes, &[]),
        Err(CodecError::TooShort(0))
    );
    let mut v = rec.clone();
    v[0] = FORMAT_VERSION + 1;
    assert_eq!(
        decode::<Vec<String>>(RecordKind::Changes, &v),
        Err(CodecError::UnknownVersion {
            found: FORMAT_VERSION + 1
        })
    );
    assert!(matches!(
        decode::<MusicianRecord>(RecordKind::Musician, &rec),
        Err(CodecError::WrongKind { .. })
    ));
    let mut long = rec.clone();
    long.push(0);
    assert_eq!(
        decode::<Vec<String>>(RecordKind::Changes, &long),
        Err(CodecError::Trailing(1))
    );
    // A length prefix claiming a huge allocation is refused, not attempted.
    let huge = [
        FORMAT_VERSION,
        RecordKind::Changes as u8,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        0x7F,
    ];
    assert!(decode::<Vec<String>>(RecordKind::Changes, &huge).is_err());
}
