//! The facts overlay's lifecycle seen from outside the engine: a fee edit or a rating lands in
//! it, and an idle engine folds it into the index once it is older than its configured age.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;
use std::time::{Duration, Instant};

#[test]
fn an_idle_engine_folds_its_overlay_once_it_is_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(
        dir.path(),
        Config {
            durability: Durability::Periodic {
                flush_every_ms: 1000,
            },
            // Commits only when asked or when the overlay is due: nothing else wakes it.
            index_commit_interval: Duration::from_secs(3600),
            index_overlay_max_age: Duration::from_millis(200),
            ..Config::default()
        },
    )
    .unwrap();
    for id in ["m-1", "m-2"] {
        e.upsert_musician(musician_json(id)).unwrap();
    }
    e.refresh().unwrap();
    let mut m = musician_json("m-1");
    m.fee.amount = 9_000;
    e.upsert_musician(m).unwrap();
    e.execute(&Command::RateMusician {
        musician_id: "m-2".into(),
        stars: 1,
    })
    .unwrap();
    e.refresh().unwrap();
    assert_eq!(e.status().unwrap().index_overlay_musicians, 2);
    // No write and no refresh from here: only the indexer's own wake-up can fold.
    let deadline = Instant::now() + Duration::from_secs(30);
    while e.status().unwrap().index_overlay_musicians != 0 {
        assert!(Instant::now() < deadline, "the overlay was never folded");
        std::thread::yield_now();
    }
    // Folded into the documents: the index agrees with the store, and a fee search finds the
    // new fee and not the old one.
    assert!(e.check_consistency().unwrap().is_empty());
    let q = |max: i64| SearchQuery {
        max_fee: Some(Money {
            amount: max,
            currency: "EUR".into(),
        }),
        ..SearchQuery::default()
    };
    let ids = |max| -> Vec<String> {
        e.search(&q(max))
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.musician.id)
            .collect()
    };
    assert_eq!(ids(9_000), vec!["m-1".to_string()]);
    assert_eq!(ids(8_999), Vec::<String>::new());
}
