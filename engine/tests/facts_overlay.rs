//! The facts overlay seen from outside the engine: an idle engine folds it into the index once
//! it is older than its configured age, and any mix of changes and commits leaves the index
//! exact.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;
use std::time::{Duration, Instant};

#[test]
fn an_idle_engine_folds_its_overlay_once_it_is_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    // Commits only when asked or when the overlay is due: nothing else wakes it.
    let e = Engine::open(
        dir.path(),
        Config {
            index_overlay_max_age: Duration::from_millis(200),
            ..stale_config()
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

/// One step of [`any_mix_of_changes_and_commits_leaves_the_index_exact`].
#[derive(Clone, Debug)]
enum Step {
    /// Upsert musician `id` (created when absent) with genre `genre` and fee `fee`.
    Put {
        id: usize,
        genre: usize,
        fee: i64,
    },
    Rate {
        id: usize,
        stars: i64,
    },
    Delete {
        id: usize,
    },
    /// An index commit.
    Refresh,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        5 => (0usize..5, 0..GENRES.len(), 0i64..4).prop_map(|(id, genre, fee)| Step::Put { id, genre, fee }),
        2 => (0usize..5, 1i64..=5).prop_map(|(id, stars)| Step::Rate { id, stars }),
        2 => (0usize..5).prop_map(|id| Step::Delete { id }),
        1 => Just(Step::Refresh),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Whatever the mix of creations, term changes, fee changes, ratings (the last two kept in
    /// the overlay), deletions and re-creations of a few musicians, and wherever the commits
    /// fall, the index then holds each stored musician once, with its stored facts, and a search
    /// by genre or by fee finds exactly the stored musicians that qualify.
    #[test]
    fn any_mix_of_changes_and_commits_leaves_the_index_exact(
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let e = stale_engine(dir.path());
        for s in &steps {
            match s {
                Step::Put { id, genre, fee } => {
                    let mut m = musician_json(&format!("m-{id}"));
                    m.genres = vec![GENRES[*genre].to_string()];
                    m.fee.amount = 10_000 + fee * 1_000;
                    e.upsert_musician(m).unwrap();
                }
                Step::Rate { id, stars } => {
                    // A refusal (no such musician) changes nothing.
                    e.execute(&Command::RateMusician { musician_id: format!("m-{id}"), stars: *stars }).unwrap();
                }
                Step::Delete { id } => {
                    e.execute(&Command::DeleteMusician { id: format!("m-{id}") }).unwrap();
                }
                Step::Refresh => e.refresh().unwrap(),
            }
        }
        e.refresh().unwrap();
        proptest::prop_assert_eq!(e.check_consistency().unwrap(), Vec::<String>::new());
        let stored = e.list_musicians(None, usize::MAX).unwrap();
        let found = |q: SearchQuery| -> Vec<String> {
            let mut ids: Vec<String> = e.search(&SearchQuery { limit: Some(100), ..q }).unwrap().hits.into_iter().map(|h| h.musician.id).collect();
            ids.sort();
            ids
        };
        for g in GENRES {
            let want: Vec<String> = stored.iter().filter(|v| v.musician.genres.iter().any(|x| x == g)).map(|v| v.musician.id.clone()).collect();
            proptest::prop_assert_eq!(found(SearchQuery { genres: vec![g.to_string()], ..SearchQuery::default() }), want, "genre {}", g);
        }
        for max in [10_999, 12_000] {
            let want: Vec<String> = stored.iter().filter(|v| v.musician.fee.amount <= max).map(|v| v.musician.id.clone()).collect();
            let q = SearchQuery { max_fee: Some(Money { amount: max, currency: "EUR".into() }), ..SearchQuery::default() };
            proptest::prop_assert_eq!(found(q), want, "max fee {}", max);
        }
    }
}
