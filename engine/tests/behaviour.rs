//! The apply path's behaviour: bookings as compare-and-set, releases on delete, ratings,
//! idempotent sequences, snapshots, imports and index recovery.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;

fn booking(g: &str, slot: i64, m: &str) -> Booking {
    Booking {
        gig_id: g.into(),
        slot,
        musician_id: m.into(),
    }
}

fn conflict(o: &Outcome) -> &Conflict {
    match o {
        Outcome::Refused(Refusal::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn booking_is_a_compare_and_set_with_typed_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.upsert_musician(musician_json("m-1")).unwrap();
    let mut busy = musician_json("m-busy");
    busy.busy = vec!["2026-12-05".into()];
    e.upsert_musician(busy).unwrap();
    let mut drummer = musician_json("m-drum");
    drummer.instruments = vec![InstrumentSkill {
        name: "drums".into(),
        level: 2,
    }];
    e.upsert_musician(drummer).unwrap();
    e.upsert_gig(gig_json("g-1")).unwrap();
    let mut g2 = gig_json("g-2");
    g2.slots[0].min_level = 5;
    e.upsert_gig(g2).unwrap();

    // Missing gig / musician.
    let o = e.book(booking("g-none", 0, "m-1")).unwrap().outcome;
    assert!(matches!(o, Outcome::Refused(Refusal::NotFound { ref kind, .. }) if kind == "gig"));
    let o = e.book(booking("g-1", 0, "m-none")).unwrap().outcome;
    assert!(
        matches!(o, Outcome::Refused(Refusal::NotFound { ref kind, .. }) if kind == "musician")
    );
    // No such slot, wrong instrument, level too low, busy.
    assert!(matches!(
        conflict(&e.book(booking("g-1", 7, "m-1")).unwrap().outcome),
        Conflict::NoSuchSlot { slot: 7 }
    ));
    assert!(matches!(
        conflict(&e.book(booking("g-1", 1, "m-1")).unwrap().outcome),
        Conflict::InstrumentMismatch { .. }
    ));
    assert!(matches!(
        conflict(&e.book(booking("g-2", 0, "m-1")).unwrap().outcome),
        Conflict::InstrumentMismatch { min_level: 5, .. }
    ));
    assert!(matches!(
        conflict(&e.book(booking("g-1", 0, "m-busy")).unwrap().outcome),
        Conflict::MusicianBusy { .. }
    ));
    // Success, then the musician is taken on that date and the slot is full.
    assert_eq!(
        e.book(booking("g-1", 0, "m-1")).unwrap().outcome,
        Outcome::Done(Effect::Booked(booking("g-1", 0, "m-1")))
    );
    let mut g3 = gig_json("g-3");
    g3.slots[0].min_level = 1;
    e.upsert_gig(g3).unwrap();
    assert!(
        matches!(conflict(&e.book(booking("g-3", 0, "m-1")).unwrap().outcome), Conflict::MusicianAlreadyBooked { gig_id, .. } if gig_id == "g-1")
    );
    let mut other = musician_json("m-2");
    other.busy.clear();
    e.upsert_musician(other).unwrap();
    assert!(matches!(
        conflict(&e.book(booking("g-1", 0, "m-2")).unwrap().outcome),
        Conflict::SlotFull { slot: 0, count: 1 }
    ));
    // The drummer fits slot 1.
    assert!(e
        .book(booking("g-1", 1, "m-drum"))
        .unwrap()
        .outcome
        .is_done());
    let view = e.gig("g-1").unwrap().unwrap();
    assert_eq!(
        view.bookings,
        vec![booking("g-1", 0, "m-1"), booking("g-1", 1, "m-drum")]
    );
    assert_eq!(
        e.musician("m-1").unwrap().unwrap().booked[0].date,
        "2026-12-05"
    );
    e.refresh().unwrap();
    assert!(e.check_consistency().unwrap().is_empty());

    // A booked musician is no longer a candidate for that date.
    let r = e
        .match_gig(&MatchRequest {
            target: MatchTarget::Stored("g-3".into()),
            k: None,
            weights: None,
        })
        .unwrap();
    assert!(r.slots[0].candidates.iter().all(|c| c.musician_id != "m-1"));
}

#[test]
fn deleting_releases_bookings_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.upsert_musician(musician_json("m-1")).unwrap();
    e.upsert_musician(musician_json("m-2")).unwrap();
    let mut g = gig_json("g-1");
    g.slots[0].count = 2;
    e.upsert_gig(g).unwrap();
    e.book(booking("g-1", 0, "m-1")).unwrap();
    e.book(booking("g-1", 0, "m-2")).unwrap();
    // Deleting a musician frees their seat.
    let o = e
        .execute(&Command::DeleteMusician { id: "m-2".into() })
        .unwrap()
        .outcome;
    assert_eq!(
        o,
        Outcome::Done(Effect::MusicianDeleted {
            id: "m-2".into(),
            released: 1
        })
    );
    assert_eq!(e.gig("g-1").unwrap().unwrap().bookings.len(), 1);
    // Deleting the gig frees the musician's date.
    let o = e
        .execute(&Command::DeleteGig { id: "g-1".into() })
        .unwrap()
        .outcome;
    assert_eq!(
        o,
        Outcome::Done(Effect::GigDeleted {
            id: "g-1".into(),
            released: 1
        })
    );
    assert!(e.musician("m-1").unwrap().unwrap().booked.is_empty());
    e.refresh().unwrap();
    assert!(e.check_consistency().unwrap().is_empty());
    // Deleting again is a typed not-found.
    let o = e
        .execute(&Command::DeleteGig { id: "g-1".into() })
        .unwrap()
        .outcome;
    assert!(matches!(o, Outcome::Refused(Refusal::NotFound { .. })));
}

#[test]
fn cancel_and_gig_updates_respect_bookings() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.upsert_musician(musician_json("m-1")).unwrap();
    e.upsert_gig(gig_json("g-1")).unwrap();
    e.book(booking("g-1", 0, "m-1")).unwrap();
    let mut moved = gig_json("g-1");
    moved.date = "2026-12-06".into();
    assert!(matches!(
        conflict(&e.upsert_gig(moved).unwrap().outcome),
        Conflict::GigHasBookings { .. }
    ));
    let mut renamed = gig_json("g-1");
    renamed.title = "New title".into();
    assert!(e.upsert_gig(renamed).unwrap().outcome.is_done());
    assert_eq!(
        e.gig("g-1").unwrap().unwrap().bookings.len(),
        1,
        "an update keeps bookings"
    );
    let cancel = Command::CancelBooking {
        gig_id: "g-1".into(),
        musician_id: "m-1".into(),
    };
    assert_eq!(
        e.execute(&cancel).unwrap().outcome,
        Outcome::Done(Effect::Cancelled(booking("g-1", 0, "m-1")))
    );
    assert!(matches!(
        e.execute(&cancel).unwrap().outcome,
        Outcome::Refused(Refusal::NotFound { .. })
    ));
    assert!(e.musician("m-1").unwrap().unwrap().booked.is_empty());
}

#[test]
fn ratings_fold_into_the_average() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let mut m = musician_json("m-1");
    m.rating = None;
    e.upsert_musician(m).unwrap();
    for stars in [5, 4, 3] {
        e.execute(&Command::RateMusician {
            musician_id: "m-1".into(),
            stars,
        })
        .unwrap();
    }
    let r = e.musician("m-1").unwrap().unwrap().musician.rating.unwrap();
    assert_eq!(r.count, 3);
    assert!((r.average - 4.0).abs() < 1e-12);
    let bad = e
        .execute(&Command::RateMusician {
            musician_id: "m-1".into(),
            stars: 6,
        })
        .unwrap()
        .outcome;
    assert!(matches!(bad, Outcome::Refused(Refusal::Invalid(_))));
    assert_eq!(
        e.musician("m-1")
            .unwrap()
            .unwrap()
            .musician
            .rating
            .unwrap()
            .count,
        3
    );
}

#[test]
fn sequences_are_idempotent_and_may_have_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let cmd = Command::UpsertMusician {
        musician: musician_json("m-1"),
    };
    assert!(e.apply(5, &cmd).unwrap().outcome.is_done());
    assert_eq!(e.applied_seq().unwrap(), 5);
    let del = Command::DeleteMusician { id: "m-1".into() };
    assert_eq!(
        e.apply(5, &del).unwrap().outcome,
        Outcome::AlreadyApplied { applied: 5 }
    );
    assert_eq!(
        e.apply(3, &del).unwrap().outcome,
        Outcome::AlreadyApplied { applied: 5 }
    );
    assert!(
        e.musician("m-1").unwrap().is_some(),
        "a re-applied sequence changes nothing"
    );
    assert!(e.apply(9, &del).unwrap().outcome.is_done());
    assert_eq!(e.applied_seq().unwrap(), 9);
    // A refused command still advances the sequence, so replicas stay in step.
    let bad = Command::Book(booking("g-x", 0, "m-1"));
    assert!(!e.apply(10, &bad).unwrap().outcome.is_done());
    assert_eq!(e.applied_seq().unwrap(), 10);
}

#[test]
fn same_commands_same_state_on_two_engines() {
    let gen = generate::Generator::new(generate::GenConfig {
        musicians: 300,
        gigs: 20,
        ..Default::default()
    })
    .unwrap();
    let mut cmds = vec![Command::BulkUpsert {
        musicians: gen.musicians().collect(),
        gigs: gen.gigs().collect(),
    }];
    for j in 0..20 {
        let g = gen.gig(j);
        for i in 0..30 {
            cmds.push(Command::Book(booking(
                &g.id,
                (i % g.slots.len()) as i64,
                &gen.musician(i * 7 + j).id,
            )));
        }
        cmds.push(Command::RateMusician {
            musician_id: gen.musician(j).id,
            stars: (j % 5 + 1) as i64,
        });
    }
    let exports: Vec<(Vec<Outcome>, Vec<u8>)> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let e = open_engine(dir.path());
            let outcomes = cmds.iter().map(|c| e.execute(c).unwrap().outcome).collect();
            let mut bytes = Vec::new();
            e.export(&mut bytes).unwrap();
            (outcomes, bytes)
        })
        .collect();
    assert_eq!(exports[0], exports[1]);
}

#[test]
fn export_restore_round_trip_and_rebuilt_index() {
    let gen = generate::Generator::new(generate::GenConfig {
        musicians: 2500,
        gigs: 50,
        ..Default::default()
    })
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    let e = open_engine(src.path());
    e.execute(&Command::BulkUpsert {
        musicians: gen.musicians().collect(),
        gigs: gen.gigs().collect(),
    })
    .unwrap();
    let g = gen.gig(0);
    for i in 0..40 {
        e.book(booking(&g.id, 0, &gen.musician(i).id)).unwrap();
    }
    let mut snap = Vec::new();
    let summary = e.export(&mut snap).unwrap();
    assert_eq!((summary.musicians, summary.gigs), (2500, 50));

    let dst = tempfile::tempdir().unwrap();
    let restored = Engine::restore(dst.path(), &snap[..], false).unwrap();
    assert_eq!(restored, summary);
    // A second restore into the now non-empty store is refused without force.
    assert!(matches!(
        Engine::restore(dst.path(), &snap[..], false),
        Err(EngineError::NotEmpty { .. })
    ));
    let e2 = open_engine(dst.path());
    let mut again = Vec::new();
    e2.export(&mut again).unwrap();
    assert_eq!(
        snap, again,
        "export of the restore equals the original export"
    );
    assert!(e2.check_consistency().unwrap().is_empty());
    let q = MatchRequest {
        target: MatchTarget::Stored(g.id.clone()),
        k: Some(10),
        weights: None,
    };
    e.refresh().unwrap();
    assert_eq!(e.match_gig(&q).unwrap(), e2.match_gig(&q).unwrap());

    // Corrupt or truncated snapshots are refused with an error, never a panic.
    for cut in [0, 7, 8, 20, snap.len() / 2, snap.len() - 1] {
        let d = tempfile::tempdir().unwrap();
        assert!(
            Engine::restore(d.path(), &snap[..cut], false).is_err(),
            "cut at {cut}"
        );
    }
    let mut flipped = snap.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let d = tempfile::tempdir().unwrap();
    assert!(Engine::restore(d.path(), &flipped[..], false).is_err());
    assert!(
        Engine::open(d.path(), Config::default()).is_err(),
        "a failed restore leaves a marker that blocks open"
    );
}

#[test]
fn index_is_rebuilt_when_missing_or_corrupt() {
    let gen = generate::Generator::new(generate::GenConfig {
        musicians: 800,
        gigs: 5,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let q = MatchRequest {
        target: MatchTarget::Stored(gen.gig(1).id),
        k: Some(10),
        weights: None,
    };
    let before = {
        let e = open_engine(dir.path());
        e.execute(&Command::BulkUpsert {
            musicians: gen.musicians().collect(),
            gigs: gen.gigs().collect(),
        })
        .unwrap();
        e.refresh().unwrap();
        e.match_gig(&q).unwrap()
    };
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    {
        let e = open_engine(dir.path());
        assert_eq!(e.match_gig(&q).unwrap(), before);
        assert!(e.check_consistency().unwrap().is_empty());
    }
    std::fs::write(dir.path().join("index").join("meta.json"), b"{not json").unwrap();
    let e = open_engine(dir.path());
    assert_eq!(e.match_gig(&q).unwrap(), before);
    assert!(e.check_consistency().unwrap().is_empty());
}

#[test]
fn import_reports_bad_lines_and_reject_mode_writes_nothing() {
    let gen = generate::Generator::new(generate::GenConfig {
        musicians: 50,
        gigs: 5,
        ..Default::default()
    })
    .unwrap();
    let mut text = Vec::new();
    gen.write_musicians_jsonl(&mut text).unwrap();
    gen.write_gigs_jsonl(&mut text).unwrap();
    let mut text = String::from_utf8(text).unwrap();
    text.push_str("{\"id\":\"m-x\",\"name\":\"\",\"instruments\":[],\"location\":{\"lat\":99,\"lon\":0},\"travel_radius_km\":1,\"fee\":{\"amount\":1,\"currency\":\"EUR\"}}\n");
    text.push_str("not json\n\n");
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let opts = ImportOptions {
        on_error: OnError::Reject,
        batch: 7,
        ..Default::default()
    };
    let r = e.import_jsonl(text.as_bytes(), &opts, |_| {}).unwrap();
    assert!(r.aborted);
    assert_eq!((r.musicians, r.gigs, r.rejected), (0, 0, 2));
    assert_eq!(e.status().unwrap().musicians, 0);
    assert_eq!(r.errors[0].line, 56);
    assert!(
        r.errors[0].error.contains("name") && r.errors[0].error.contains("location.lat"),
        "{}",
        r.errors[0].error
    );
    let mut calls = 0;
    let r = e
        .import_jsonl(
            text.as_bytes(),
            &ImportOptions {
                batch: 7,
                ..Default::default()
            },
            |_| calls += 1,
        )
        .unwrap();
    assert_eq!((r.musicians, r.gigs, r.rejected), (50, 5, 2));
    assert!(calls >= 8, "progress is reported per batch");
    assert_eq!(e.status().unwrap().musicians, 50);
}

#[test]
fn search_never_returns_a_stale_match() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(
        dir.path(),
        Config {
            index_commit_interval: std::time::Duration::from_secs(3600),
            ..Config::default()
        },
    )
    .unwrap();
    e.upsert_musician(musician_json("m-1")).unwrap();
    e.refresh().unwrap();
    let q = SearchQuery {
        instruments: vec![InstrumentFilter {
            name: "guitar".into(),
            min_level: 1,
        }],
        ..Default::default()
    };
    assert_eq!(e.search(&q).unwrap().hits.len(), 1);
    // Change the musician; the index is not refreshed (commit interval of an hour).
    let mut m = musician_json("m-1");
    m.instruments = vec![InstrumentSkill {
        name: "drums".into(),
        level: 3,
    }];
    e.upsert_musician(m).unwrap();
    assert_eq!(
        e.search(&q).unwrap().hits.len(),
        0,
        "the stored record is re-checked"
    );
    e.execute(&Command::DeleteMusician { id: "m-1".into() })
        .unwrap();
    let q2 = SearchQuery {
        instruments: vec![InstrumentFilter {
            name: "drums".into(),
            min_level: 1,
        }],
        ..Default::default()
    };
    assert_eq!(e.search(&q2).unwrap().hits.len(), 0);
    assert!(e.status().unwrap().applied_seq > e.status().unwrap().index_seq);
}

#[test]
fn a_profile_rewritten_unchanged_stays_searchable_with_its_bookings() {
    // An upsert that leaves the musician's document as it was is not sent to the index
    // (store.rs, Changed::stored_over): searches must not tell the difference, before and
    // after the index commits, and the booked dates the index holds must stay.
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.upsert_musician(musician_json("m-1")).unwrap();
    e.upsert_gig(gig_json("g-1")).unwrap();
    e.refresh().unwrap();
    assert!(e.book(booking("g-1", 0, "m-1")).unwrap().outcome.is_done());
    e.refresh().unwrap();
    let free_on = |date: &str| SearchQuery {
        instruments: vec![InstrumentFilter {
            name: "guitar".into(),
            min_level: 1,
        }],
        available_on: Some(date.into()),
        ..Default::default()
    };
    let hits = |q: &SearchQuery| e.search(q).unwrap().hits.len();
    assert_eq!(
        (hits(&free_on("2026-12-05")), hits(&free_on("2026-12-06"))),
        (0, 1)
    );
    for _ in 0..2 {
        let done = e.upsert_musician(musician_json("m-1")).unwrap();
        assert!(done.outcome.is_done());
        assert_eq!(e.musician("m-1").unwrap().unwrap().version, done.seq);
        assert_eq!(
            (hits(&free_on("2026-12-05")), hits(&free_on("2026-12-06"))),
            (0, 1)
        );
        e.refresh().unwrap();
        assert_eq!(
            (hits(&free_on("2026-12-05")), hits(&free_on("2026-12-06"))),
            (0, 1)
        );
    }
    // A real change after the skipped ones is indexed.
    let mut m = musician_json("m-1");
    m.instruments[0].name = "drums".into();
    e.upsert_musician(m).unwrap();
    e.refresh().unwrap();
    assert_eq!(hits(&free_on("2026-12-06")), 0);
    assert_eq!(e.check_consistency().unwrap(), Vec::<String>::new());
}

#[test]
fn writes_become_searchable_without_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let done = e.upsert_musician(musician_json("m-1")).unwrap();
    // Awaits the indexer's own periodic commit (the event), not a fixed sleep.
    assert!(e.wait_visible(done.seq, std::time::Duration::from_secs(30)));
    let q = SearchQuery {
        text: Some("jazz".into()),
        ..Default::default()
    };
    assert_eq!(e.search(&q).unwrap().hits.len(), 1);
    assert_eq!(e.status().unwrap().index_seq, done.seq);
}

#[test]
fn pages_stay_consistent_while_writes_happen() {
    let gen = generate::Generator::new(generate::GenConfig {
        musicians: 400,
        gigs: 1,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.execute(&Command::BulkUpsert {
        musicians: gen.musicians().collect(),
        gigs: vec![],
    })
    .unwrap();
    e.refresh().unwrap();
    let q = SearchQuery {
        sort: SortBy::Fee,
        limit: Some(25),
        ..Default::default()
    };
    let before: Vec<String> = e
        .search(&SearchQuery {
            limit: Some(1000),
            ..q.clone()
        })
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.musician.id)
        .collect();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut page = 0;
    loop {
        let p = e
            .search(&SearchQuery {
                cursor: cursor.clone(),
                ..q.clone()
            })
            .unwrap();
        seen.extend(p.hits.iter().map(|h| h.musician.id.clone()));
        // Between pages, insert new musicians and delete some already seen.
        let mut m = musician_json(&format!("new-{page}"));
        m.fee.amount = (page as i64) * 1000;
        e.upsert_musician(m).unwrap();
        e.execute(&Command::DeleteMusician {
            id: seen[page % seen.len()].clone(),
        })
        .unwrap();
        e.refresh().unwrap();
        page += 1;
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no record appears twice");
    for id in &before {
        // Every record present throughout (never deleted) was seen exactly once.
        if e.musician(id).unwrap().is_some() {
            assert!(seen.contains(id), "{id} skipped");
        }
    }
}

/// Compaction merges the segments that separate commits made, and changes no answer.
#[test]
fn compacting_the_index_merges_segments_and_keeps_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    for wave in 0..3 {
        for i in 0..5 {
            let mut m = musician_json(&format!("m-{wave}-{i}"));
            m.fee.amount += (wave * 10 + i) as i64;
            engine.upsert_musician(m).unwrap();
        }
        engine.refresh().unwrap();
    }
    let q = SearchQuery {
        sort: SortBy::Fee,
        ..SearchQuery::default()
    };
    let before = engine.search(&q).unwrap();
    assert_eq!(before.hits.len(), 15);
    let merged = engine.compact_index().unwrap();
    assert!(
        merged >= 3,
        "three commits made at least three segments, got {merged}"
    );
    assert_eq!(
        engine.compact_index().unwrap(),
        1,
        "one segment after compaction"
    );
    assert_eq!(engine.search(&q).unwrap(), before);
    // Writes after compaction are indexed as usual.
    engine.upsert_musician(musician_json("m-after")).unwrap();
    engine.refresh().unwrap();
    assert_eq!(engine.search(&q).unwrap().hits.len(), 16);
}

/// A bulk command that names the same new record twice creates it once: the counts say so
/// (found by the `commands` fuzz target).
#[test]
fn a_bulk_naming_a_new_id_twice_counts_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let done = engine
        .execute(&Command::BulkUpsert {
            musicians: vec![musician_json("m-1"), musician_json("m-1")],
            gigs: vec![gig_json("g-1"), gig_json("g-1")],
        })
        .unwrap();
    assert!(done.outcome.is_done(), "{:?}", done.outcome);
    let st = engine.status().unwrap();
    assert_eq!((st.musicians, st.gigs), (1, 1));
    assert_eq!(engine.list_gigs(None, 10).unwrap().len(), 1);
}

#[test]
fn an_import_batch_refused_by_the_store_is_reported_within_max_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.upsert_musician(musician_json("m-1")).unwrap();
    e.upsert_gig(gig_json("g-1")).unwrap();
    e.book(Booking {
        gig_id: "g-1".into(),
        slot: 0,
        musician_id: "m-1".into(),
    })
    .unwrap();
    // The gig moved to another date while it has a booking: the whole batch is refused.
    let mut moved = gig_json("g-1");
    moved.date = "2026-12-06".parse().unwrap();
    let line = format!("{}\n", serde_json::to_string(&moved).unwrap());
    for (max_errors, reported) in [(0usize, 0usize), (1, 1)] {
        let opts = ImportOptions {
            max_errors,
            ..Default::default()
        };
        let r = e.import_jsonl(line.as_bytes(), &opts, |_| {}).unwrap();
        assert_eq!((r.gigs, r.rejected), (0, 1), "max_errors {max_errors}");
        assert_eq!(
            r.errors.len(),
            reported,
            "max_errors {max_errors}: {:?}",
            r.errors
        );
    }
    assert_eq!(
        e.gig("g-1").unwrap().unwrap().gig.date,
        gig_json("g-1").date
    );
}
