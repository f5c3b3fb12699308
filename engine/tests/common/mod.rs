//! Shared helpers for the engine's integration tests: small random worlds and an engine on a
//! temporary directory.
#![allow(dead_code, missing_docs)]

use mussikon_engine::*;
use proptest::prelude::*;

pub const INSTRUMENTS: &[&str] = &["guitar", "drums", "bass", "vocals"];
pub const GENRES: &[&str] = &["jazz", "rock", "pop", "salsa"];
pub const DATES: &[&str] = &["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"];
pub const CENTERS: &[(f64, f64)] = &[(40.4, -3.7), (41.4, 2.2), (-33.9, 151.2), (64.1, -21.9)];
pub const WORDS: &[&str] = &["blue", "night", "soul", "fire", "Ana", "Luis"];

pub fn open_engine(dir: &std::path::Path) -> Engine {
    Engine::open(
        dir,
        Config {
            durability: Durability::Periodic {
                flush_every_ms: 1000,
            },
            ..Config::default()
        },
    )
    .expect("open engine")
}

/// A configuration whose index commits only when asked (commit interval of an hour), so a test
/// decides when the index is stale.
pub fn stale_config() -> Config {
    Config {
        durability: Durability::Periodic {
            flush_every_ms: 1000,
        },
        index_commit_interval: std::time::Duration::from_secs(3600),
        ..Config::default()
    }
}

/// An engine on [`stale_config`].
pub fn stale_engine(dir: &std::path::Path) -> Engine {
    Engine::open(dir, stale_config()).expect("open engine")
}

prop_compose! {
    pub fn point()(c in 0..CENTERS.len(), dlat in -0.6f64..0.6, dlon in -0.6f64..0.6) -> GeoPoint {
        GeoPoint { lat: CENTERS[c].0 + dlat, lon: CENTERS[c].1 + dlon }
    }
}

prop_compose! {
    pub fn musician(i: usize)(
        insts in prop::collection::btree_map(0..INSTRUMENTS.len(), 1i64..=5, 1..3),
        genres in prop::collection::btree_set(0..GENRES.len(), 0..3),
        loc in point(),
        radius in prop_oneof![Just(10.0f64), 5.0f64..80.0],
        fee in 0i64..300,
        usd in prop::bool::weighted(0.2),
        rating in prop::option::of((1.0f64..=5.0, 1i64..50)),
        busy in prop::collection::btree_set(0..DATES.len(), 0..2),
        words in prop::collection::vec(0..WORDS.len(), 0..3),
        active in prop::bool::weighted(0.9),
    ) -> Musician {
        Musician {
            id: format!("m-{i:03}"),
            name: format!("Player {}", WORDS[i % WORDS.len()]),
            instruments: insts.into_iter().map(|(k, level)| InstrumentSkill { name: INSTRUMENTS[k].into(), level }).collect(),
            genres: genres.into_iter().map(|g| GENRES[g].to_string()).collect(),
            location: loc,
            city: None,
            travel_radius_km: radius,
            fee: Money { amount: fee * 100, currency: if usd { "USD".into() } else { "EUR".into() } },
            rating: rating.map(|(average, count)| Rating { average, count }),
            busy: busy.into_iter().map(|d| DATES[d].to_string()).collect(),
            bio: if words.is_empty() { None } else { Some(words.iter().map(|w| WORDS[*w]).collect::<Vec<_>>().join(" ")) },
            active,
        }
    }
}

prop_compose! {
    pub fn gig(j: usize)(
        slots in prop::collection::btree_map(0..INSTRUMENTS.len(), (1i64..=2, 1i64..=4), 1..4),
        genres in prop::collection::btree_set(0..GENRES.len(), 0..3),
        date in 0..DATES.len(),
        loc in point(),
        radius in prop_oneof![Just(10.0f64), 5.0f64..100.0],
        max_fee in 0i64..300,
        min_rating in prop::option::of(2.5f64..4.5),
        owner in prop::option::of("o-[a-z0-9]{1,8}"),
    ) -> Gig {
        Gig {
            id: format!("g-{j:03}"),
            title: "Test gig".into(),
            date: DATES[date].into(),
            location: loc,
            radius_km: radius,
            slots: slots.into_iter().map(|(k, (count, min_level))| Slot { instrument: INSTRUMENTS[k].into(), count, min_level }).collect(),
            genres: genres.into_iter().map(|g| GENRES[g].to_string()).collect(),
            budget: Budget { max_fee: max_fee * 100, currency: "EUR".into() },
            min_rating,
            owner,
        }
    }
}

pub fn musicians(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Musician>> {
    n.prop_flat_map(|count| (0..count).map(musician).collect::<Vec<_>>())
}

pub fn gigs(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Gig>> {
    n.prop_flat_map(|count| (0..count).map(gig).collect::<Vec<_>>())
}

pub fn musician_json(id: &str) -> Musician {
    serde_json::from_value(serde_json::json!({
        "id": id, "name": "Ana Pérez",
        "instruments": [{"name": "guitar", "level": 4}, {"name": "vocals", "level": 3}],
        "genres": ["jazz", "bossa nova"], "location": {"lat": 40.4168, "lon": -3.7038},
        "city": "Madrid", "travel_radius_km": 50.0, "fee": {"amount": 15000, "currency": "EUR"},
        "rating": {"average": 4.7, "count": 23}, "busy": ["2026-12-24"], "bio": "Jazz guitarist"
    }))
    .expect("valid musician json")
}

pub fn gig_json(id: &str) -> Gig {
    serde_json::from_value(serde_json::json!({
        "id": id, "title": "Wedding reception", "date": "2026-12-05",
        "location": {"lat": 40.42, "lon": -3.70}, "radius_km": 30.0,
        "slots": [{"instrument": "guitar", "count": 1, "min_level": 3}, {"instrument": "drums", "count": 1}],
        "genres": ["jazz"], "budget": {"max_fee": 20000, "currency": "EUR"}, "min_rating": 4.0
    }))
    .expect("valid gig json")
}

/// The ids of every musician a search for guitarists (any level) finds, sorted.
pub fn guitarist_ids(e: &Engine) -> Vec<String> {
    let q = SearchQuery {
        instruments: vec![InstrumentFilter {
            name: "guitar".into(),
            min_level: 1,
        }],
        limit: Some(100),
        ..Default::default()
    };
    let mut ids: Vec<String> = e
        .search(&q)
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.musician.id)
        .collect();
    ids.sort();
    ids
}
