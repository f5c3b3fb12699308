//! An engine opened without its search index (`Config::index_enabled` false): it stores,
//! applies, books and reads by id as usual, refuses searches and matches with
//! `EngineError::NoIndex` instead of answering from nothing, and, opened with the index again,
//! rebuilds it from the store so that everything written meanwhile is found.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;

fn open(dir: &std::path::Path, index_enabled: bool) -> Engine {
    Engine::open(
        dir,
        Config {
            index_enabled,
            ..Config::default()
        },
    )
    .unwrap()
}

/// Stores musician `id`, which must take effect.
fn put(e: &Engine, id: &str) {
    let done = e.upsert_musician(musician_json(id)).unwrap();
    assert!(done.outcome.is_done(), "{id}: {done:?}");
}

fn match_g1() -> MatchRequest {
    MatchRequest {
        target: MatchTarget::Stored("g-1".into()),
        k: None,
        weights: None,
    }
}

#[test]
fn without_an_index_writes_and_reads_by_id_work_and_searches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path(), false);
        assert!(!e.searchable());
        for id in ["m-1", "m-2"] {
            put(&e, id);
        }
        assert!(e.upsert_gig(gig_json("g-1")).unwrap().outcome.is_done());
        let booked = e
            .book(Booking {
                gig_id: "g-1".into(),
                slot: 0,
                musician_id: "m-1".into(),
            })
            .unwrap();
        assert!(booked.outcome.is_done(), "{booked:?}");
        assert!(e.musician("m-2").unwrap().is_some());
        assert!(matches!(
            e.search(&SearchQuery::default()),
            Err(EngineError::NoIndex)
        ));
        assert!(matches!(
            e.match_gig(&match_g1()),
            Err(EngineError::NoIndex)
        ));
        let status = e.status().unwrap();
        assert_eq!(status.index_seq, status.applied_seq, "nothing lags");
        assert_eq!(status.index_lag_ms, 0);
        assert!(e.check_consistency().unwrap().is_empty());
        assert!(!dir.path().join("index").exists(), "no index is built");
    }
    // Turned on: built from the store, with every musician written while it was off.
    let e = open(dir.path(), true);
    assert!(e.searchable());
    assert_eq!(guitarist_ids(&e), ["m-1", "m-2"]);
    let r = e.match_gig(&match_g1()).unwrap();
    assert!(
        r.slots[0].candidates.iter().all(|c| c.musician_id != "m-1"),
        "the booking made while the index was off counts"
    );
    assert!(e.check_consistency().unwrap().is_empty());
}

#[test]
fn turning_the_index_off_removes_it_and_turning_it_on_rebuilds_it_with_the_writes_between() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path(), true);
        put(&e, "m-1");
        e.refresh().unwrap();
        assert_eq!(guitarist_ids(&e), ["m-1"]);
    }
    assert!(dir.path().join("index").exists());
    {
        let e = open(dir.path(), false);
        assert!(
            !dir.path().join("index").exists(),
            "a stale index is not kept"
        );
        put(&e, "m-2");
        let gone = e
            .execute(&Command::DeleteMusician { id: "m-1".into() })
            .unwrap();
        assert!(gone.outcome.is_done(), "{gone:?}");
    }
    let e = open(dir.path(), true);
    assert_eq!(
        guitarist_ids(&e),
        ["m-2"],
        "the delete and the new musician are both seen"
    );
}

/// A replica without an index that falls behind gets a snapshot: installing it replaces the
/// store (reads by id see the new content) without an index to feed, and the index built when
/// it is turned on holds exactly the installed musicians.
#[test]
fn a_snapshot_installs_without_an_index_and_the_index_built_later_matches_it() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = open(source_dir.path(), true);
    for id in ["m-1", "m-2", "m-3"] {
        put(&source, id);
    }
    let mut snapshot = Vec::new();
    source.export(&mut snapshot).unwrap();

    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path(), false);
        put(&e, "old");
        let summary = e.install(snapshot.as_slice(), b"annex").unwrap();
        assert_eq!(summary.musicians, 3);
        assert!(e.musician("m-3").unwrap().is_some());
        assert!(
            e.musician("old").unwrap().is_none(),
            "the install replaced the store"
        );
        assert_eq!(e.annex().unwrap().as_deref(), Some(&b"annex"[..]));
    }
    let e = open(dir.path(), true);
    assert_eq!(guitarist_ids(&e), ["m-1", "m-2", "m-3"]);
    assert!(e.check_consistency().unwrap().is_empty());
}
