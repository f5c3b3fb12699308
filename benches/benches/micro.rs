//! Criterion micro-benchmarks of the engine's hot inner functions:
//!
//! - `matching::evaluate` of one musician against one slot (an eligible pair, so every check and
//!   the whole score run, and a pair rejected on the instrument);
//! - `geo::home_cover` (the cover the engine queries `home` terms with) for a 50 km circle with
//!   at most 16 cells, and `geo::haversine_km`;
//! - the storage codec: encode and decode of a `MusicianRecord`;
//! - `validate_musician` of a generated (already normal) musician.
//!
//! Inputs come from the seeded generator, so runs are comparable. Kept short (20 samples, 2 s
//! each). Run with your own target dir on a shared machine:
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-bench cargo bench -p mussikon-benches --bench micro
//! ```

use criterion::{black_box, BatchSize, Criterion};
use mussikon_engine::codec::{decode, encode, RecordKind};
use mussikon_engine::generate::{GenConfig, Generator};
use mussikon_engine::geo::{haversine_km, home_cover};
use mussikon_engine::matching::evaluate;
use mussikon_engine::{
    validate_musician, Budget, GeoPoint, Gig, Musician, MusicianRecord, Slot, Weights,
};
use std::time::Duration;

fn sample_musician() -> Musician {
    let gen = Generator::new(GenConfig::default()).expect("the default generator config is valid");
    // A musician with a rating, some busy days and two instruments exercises the most code.
    (0..1000)
        .map(|i| gen.musician(i))
        .find(|m| m.active && m.rating.is_some() && m.instruments.len() >= 2 && m.busy.len() >= 3)
        .unwrap_or_else(|| gen.musician(0))
}

/// A gig a few km from the musician that the musician is eligible for.
fn gig_for(m: &Musician) -> Gig {
    let date = (1..=28)
        .map(|d| format!("2026-12-{d:02}"))
        .find(|d| !m.busy.contains(d))
        .unwrap_or_else(|| "2027-06-01".to_string());
    Gig {
        id: "g-bench".into(),
        title: "Bench night".into(),
        date,
        location: GeoPoint {
            lat: m.location.lat + 0.03,
            lon: m.location.lon + 0.02,
        },
        radius_km: 50.0,
        slots: vec![Slot {
            instrument: m.instruments[0].name.clone(),
            count: 1,
            min_level: 1,
        }],
        genres: vec!["jazz".into(), "rock".into(), "pop".into()],
        budget: Budget {
            max_fee: m.fee.amount * 2 + 100,
            currency: m.fee.currency.clone(),
        },
        min_rating: None,
        owner: None,
    }
}

fn bench_matching(c: &mut Criterion) {
    let m = sample_musician();
    let gig = gig_for(&m);
    let w = Weights::default()
        .normalized()
        .expect("the default weights are valid");
    let booked: [&str; 0] = [];
    assert!(
        evaluate(&gig, &gig.slots[0], &m, &booked, &w).is_some(),
        "the bench pair must be eligible"
    );
    c.bench_function("matching::evaluate (eligible)", |b| {
        b.iter(|| {
            evaluate(
                black_box(&gig),
                black_box(&gig.slots[0]),
                black_box(&m),
                &booked,
                &w,
            )
        })
    });
    let other = Slot {
        instrument: "no such instrument".into(),
        count: 1,
        min_level: 1,
    };
    c.bench_function("matching::evaluate (rejected on instrument)", |b| {
        b.iter(|| {
            evaluate(
                black_box(&gig),
                black_box(&other),
                black_box(&m),
                &booked,
                &w,
            )
        })
    });
}

fn bench_geo(c: &mut Criterion) {
    let madrid = GeoPoint {
        lat: 40.4168,
        lon: -3.7038,
    };
    let barcelona = GeoPoint {
        lat: 41.3874,
        lon: 2.1686,
    };
    c.bench_function("geo::home_cover (50 km, 16 cells)", |b| {
        b.iter(|| home_cover(black_box(madrid), black_box(50.0), black_box(16)))
    });
    c.bench_function("geo::haversine_km", |b| {
        b.iter(|| haversine_km(black_box(madrid), black_box(barcelona)))
    });
}

fn bench_codec(c: &mut Criterion) {
    let rec = MusicianRecord {
        musician: sample_musician(),
        version: 123_456,
        booked: Vec::new(),
    };
    let bytes = encode(RecordKind::Musician, &rec).expect("a musician record encodes");
    let back: MusicianRecord =
        decode(RecordKind::Musician, &bytes).expect("an encoded record decodes");
    assert_eq!(back, rec, "codec round trip");
    c.bench_function(
        &format!("codec::encode MusicianRecord ({} bytes)", bytes.len()),
        |b| b.iter(|| encode(RecordKind::Musician, black_box(&rec))),
    );
    c.bench_function("codec::decode MusicianRecord", |b| {
        b.iter(|| decode::<MusicianRecord>(RecordKind::Musician, black_box(&bytes)))
    });
}

fn bench_validate(c: &mut Criterion) {
    let m = sample_musician();
    c.bench_function("validate_musician (input clone excluded)", |b| {
        b.iter_batched(|| m.clone(), validate_musician, BatchSize::SmallInput)
    });
}

fn main() {
    // Written out rather than with `criterion_group!`/`criterion_main!`, whose generated public
    // function has no documentation (the workspace denies missing docs in CI).
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_matching(&mut c);
    bench_geo(&mut c);
    bench_codec(&mut c);
    bench_validate(&mut c);
    c.final_summary();
}
