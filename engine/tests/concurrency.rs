//! Many threads booking at once: exactly one booking wins each contested date or seat.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;
use std::sync::{Arc, Barrier};

#[test]
fn many_threads_booking_one_musician_on_one_date_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.upsert_musician(musician_json("m-1")).unwrap();
    let threads = 16;
    for t in 0..threads {
        let mut g = gig_json(&format!("g-{t}"));
        g.slots[0].min_level = 1;
        e.upsert_gig(g).unwrap();
    }
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (e, barrier) = (e.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                e.book(Booking {
                    gig_id: format!("g-{t}"),
                    slot: 0,
                    musician_id: "m-1".into(),
                })
                .unwrap()
                .outcome
            })
        })
        .collect();
    let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins = outcomes.iter().filter(|o| o.is_done()).count();
    assert_eq!(wins, 1, "{outcomes:?}");
    assert!(outcomes.iter().filter(|o| !o.is_done()).all(|o| matches!(
        o,
        Outcome::Refused(Refusal::Conflict(Conflict::MusicianAlreadyBooked { .. }))
    )));
    assert_eq!(e.musician("m-1").unwrap().unwrap().booked.len(), 1);
    e.refresh().unwrap();
    assert!(e.check_consistency().unwrap().is_empty());
}

#[test]
fn many_threads_racing_for_one_seat_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let threads = 16;
    for t in 0..threads {
        e.upsert_musician(musician_json(&format!("m-{t}"))).unwrap();
    }
    e.upsert_gig(gig_json("g-1")).unwrap();
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (e, barrier) = (e.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                e.book(Booking {
                    gig_id: "g-1".into(),
                    slot: 0,
                    musician_id: format!("m-{t}"),
                })
                .unwrap()
                .outcome
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|o| o.is_done())
        .count();
    assert_eq!(wins, 1);
    assert_eq!(e.gig("g-1").unwrap().unwrap().bookings.len(), 1);
}

#[test]
fn match_results_do_not_depend_on_the_thread_count() {
    let gen = generate::Generator::new(generate::GenConfig {
        musicians: 3000,
        gigs: 30,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.execute(&Command::BulkUpsert {
        musicians: gen.musicians().collect(),
        gigs: gen.gigs().collect(),
    })
    .unwrap();
    e.refresh().unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (0..30)
                .map(|j| {
                    e.match_gig(&MatchRequest {
                        target: MatchTarget::Stored(gen.gig(j).id),
                        k: Some(20),
                        weights: None,
                    })
                    .unwrap()
                })
                .collect::<Vec<_>>()
        })
    };
    let one = run(1);
    assert!(
        one.iter()
            .any(|r| r.slots.iter().any(|s| !s.candidates.is_empty())),
        "the data set yields candidates"
    );
    assert_eq!(one, run(4));
}
