//! The index is derived data: when it cannot be brought level with the store (files damaged by a
//! crash, a replay that fails), opening the engine rebuilds it from the store instead of
//! refusing to start. These tests damage an index on purpose and check that the reopened engine
//! answers exactly what the store holds. (A replay after a crash, where the change log covers
//! what the index lacks, is tested by `crash.rs`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn replace_dir(dir: &Path, with: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    copy_dir(with, dir);
}

/// Writes the musicians `{prefix}0..{prefix}{n}` and waits until they are indexed.
fn add_musicians(e: &Engine, prefix: &str, n: usize) {
    for i in 0..n {
        e.upsert_musician(musician_json(&format!("{prefix}{i}")))
            .unwrap();
    }
    e.refresh().unwrap();
}

/// Builds a store of 40 musicians (5 of the first 20 deleted later) whose index, kept from
/// when only the first 20 existed, is 25 commands behind; returns the saved old index.
fn store_ahead_of_its_index(dir: &Path, saved: &Path) {
    {
        let e = open_engine(dir);
        add_musicians(&e, "m-a", 20);
        e.flush().unwrap();
        copy_dir(&dir.join("index"), saved);
        add_musicians(&e, "m-b", 20);
        for i in 0..5 {
            e.execute(&Command::DeleteMusician {
                id: format!("m-a{i}"),
            })
            .unwrap();
        }
        e.refresh().unwrap();
    }
    replace_dir(&dir.join("index"), saved);
}

fn assert_index_agrees(e: &Engine) {
    assert_eq!(e.check_consistency().unwrap(), Vec::<String>::new());
    assert_eq!(e.status().unwrap().musicians, 35);
    let ids = guitarist_ids(e);
    let mut want: Vec<String> = (5..20)
        .map(|i| format!("m-a{i}"))
        .chain((0..20).map(|i| format!("m-b{i}")))
        .collect();
    want.sort();
    assert_eq!(ids, want);
}

/// The change log was pruned past the saved index: replaying it would leave out the musicians
/// of the first commands after the save (this test failed so, 20 documents for 35 musicians).
#[test]
fn an_index_older_than_the_change_log_is_rebuilt_not_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    store_ahead_of_its_index(&dir, &tmp.path().join("saved"));
    let e = open_engine(&dir);
    assert_index_agrees(&e);
}

#[test]
fn an_index_whose_segments_are_damaged_is_rebuilt_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    store_ahead_of_its_index(&dir, &tmp.path().join("saved"));
    // Truncate every segment file (meta.json stays intact, so the index still opens and the
    // damage shows only when the replay reads the segments).
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir.join("index")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") && !name.starts_with('.') {
            std::fs::write(&path, b"damaged").unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "the saved index has segment files");
    let e = open_engine(&dir);
    assert_index_agrees(&e);
}

#[test]
fn an_index_with_an_unreadable_meta_file_is_rebuilt_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    store_ahead_of_its_index(&dir, &tmp.path().join("saved"));
    std::fs::write(dir.join("index").join("meta.json"), b"{not json").unwrap();
    let e = open_engine(&dir);
    assert_index_agrees(&e);
}

/// Dropping an engine and opening its directory at once, as a restore followed by an open
/// does: sled's I/O threads may still hold the directory lock for a moment, and the open waits
/// for it instead of failing "could not acquire lock" (found by the `raft_rpc` fuzz target under
/// ASan). Repeated, because the window is short.
#[test]
fn an_engine_reopened_at_once_after_a_drop_or_restore_opens() {
    let src = tempfile::tempdir().unwrap();
    let mut snapshot = Vec::new();
    {
        let e = open_engine(src.path());
        add_musicians(&e, "m-", 30);
        e.export(&mut snapshot).unwrap();
    }
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let summary = Engine::restore(dir.path(), snapshot.as_slice(), false).unwrap();
        let e = open_engine(dir.path());
        assert_eq!(
            e.status().unwrap().applied_seq,
            summary.applied_seq,
            "round {round}"
        );
        e.upsert_musician(musician_json("m-extra")).unwrap();
        drop(e);
        let e = open_engine(dir.path());
        assert_eq!(e.status().unwrap().musicians, 31, "round {round}");
    }
}

/// An index written by another build (another schema version in its commit payload: before
/// version 6 the documents had no `place` terms, which near-queries now read, before 7 the
/// payload did not say which changes lived only in the facts overlay, and 8 records `home` at
/// every other level only) is rebuilt on open, not used: otherwise every search near a point
/// and every match would come back empty, an older build would read stale facts, or miss homes
/// at the levels 8 no longer records.
#[test]
fn an_index_of_an_older_schema_version_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    {
        let e = open_engine(&dir);
        add_musicians(&e, "m-a", 20);
        e.upsert_gig(gig_json("g-1")).unwrap();
        e.flush().unwrap();
    }
    let meta = dir.join("index").join("meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let current = "\\\"schema\\\":8";
    assert!(text.contains(current), "payload of this build: {text}");
    std::fs::write(&meta, text.replace(current, "\\\"schema\\\":7")).unwrap();
    let e = open_engine(&dir);
    assert!(!std::fs::read_to_string(&meta)
        .unwrap()
        .contains("\\\"schema\\\":7"));
    let q = SearchQuery {
        instruments: vec![InstrumentFilter {
            name: "guitar".into(),
            min_level: 2,
        }],
        near: Some(Near {
            lat: 40.42,
            lon: -3.70,
            radius_km: 10.0,
        }),
        limit: Some(100),
        ..Default::default()
    };
    assert_eq!(e.search(&q).unwrap().hits.len(), 20);
    let m = e
        .match_gig(&MatchRequest {
            target: MatchTarget::Stored("g-1".into()),
            k: Some(5),
            weights: None,
        })
        .unwrap();
    assert!(m.slots.iter().any(|s| s.eligible > 0), "{m:?}");
}
