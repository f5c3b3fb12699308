//! Reference oracle: for random worlds and random requests, `search` and `match_gig` must equal
//! a brute-force scan of the store that applies the documented rules (same ids, same order,
//! scores within 1e-9), and the assignment must be as good as an exhaustive search.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;
use proptest::prelude::*;

const R: f64 = 6371.0088;

fn dist(a: GeoPoint, b: GeoPoint) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let h = ((p2 - p1) / 2.0).sin().powi(2)
        + p1.cos() * p2.cos() * ((b.lon - a.lon).to_radians() / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().min(1.0).asin()
}

fn bayes(m: &Musician) -> f64 {
    match m.rating {
        Some(r) => (r.count as f64 * r.average + 17.5) / (r.count as f64 + 5.0),
        None => 3.5,
    }
}

/// Brute-force ranking of one slot: (id, score) best first.
/// Brute-force search over every stored musician: `(sort key, id)` of the hits, unordered.
fn oracle_search(all: &[MusicianView], q: &SearchQuery) -> Vec<(f64, String)> {
    let mut expect: Vec<(f64, String)> = Vec::new();
    for v in all {
        let m = &v.musician;
        let lvl = |n: &str| {
            m.instruments
                .iter()
                .filter(|i| i.name == n)
                .map(|i| i.level)
                .max()
        };
        let inst_ok = |f: &InstrumentFilter| lvl(&f.name).is_some_and(|x| x >= f.min_level);
        let text_ok = q.text.as_ref().is_none_or(|t| {
            let t = t.to_lowercase();
            let hay = format!("{} {}", m.name, m.bio.clone().unwrap_or_default()).to_lowercase();
            hay.split(|c: char| !c.is_alphanumeric()).any(|w| w == t)
        });
        let d = q.near.map(|n| dist(n.point(), m.location));
        let all_mode = q.instrument_mode == InstrumentMode::All;
        let ok = (q.include_inactive || m.active)
            && text_ok
            && (q.instruments.is_empty()
                || if all_mode {
                    q.instruments.iter().all(inst_ok)
                } else {
                    q.instruments.iter().any(inst_ok)
                })
            && (q.genres.is_empty() || q.genres.iter().any(|g| m.genres.contains(g)))
            && q.near.is_none_or(|n| d.is_some_and(|d| d <= n.radius_km))
            && q.available_on.as_ref().is_none_or(|day| {
                !m.busy.contains(day) && !v.booked.iter().any(|b| &b.date == day)
            })
            && q.max_fee
                .as_ref()
                .is_none_or(|f| m.fee.currency == f.currency && m.fee.amount <= f.amount)
            && q.min_rating.is_none_or(|r| bayes(m) >= r);
        if ok {
            let key = match q.sort {
                SortBy::Relevance => 0.0,
                SortBy::Distance => d.unwrap_or(0.0),
                SortBy::Rating => -bayes(m),
                SortBy::Fee => m.fee.amount as f64,
            };
            expect.push((key, m.id.clone()));
        }
    }
    expect
}

/// Every hit of `q`, fetched page by page with `page` hits per page; fails on an oversized page.
fn paged_ids(engine: &Engine, q: &SearchQuery, page: usize) -> Vec<String> {
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let p = engine
            .search(&SearchQuery {
                limit: Some(page),
                cursor: cursor.clone(),
                ..q.clone()
            })
            .unwrap();
        assert!(
            p.hits.len() <= page,
            "page of {} for limit {page}",
            p.hits.len()
        );
        paged.extend(p.hits.iter().map(|h| h.musician.id.clone()));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    paged
}

fn oracle_slot(all: &[MusicianView], g: &Gig, s: &Slot, w: [f64; 5]) -> Vec<(String, f64)> {
    let sum: f64 = w.iter().sum();
    let mut out = Vec::new();
    for v in all {
        let m = &v.musician;
        let level = m
            .instruments
            .iter()
            .filter(|i| i.name == s.instrument)
            .map(|i| i.level)
            .max();
        let Some(level) = level else { continue };
        let d = dist(m.location, g.location);
        let r = g.radius_km.min(m.travel_radius_km);
        let b = bayes(m);
        let ok = m.active
            && level >= s.min_level
            && !m.busy.contains(&g.date)
            && !v.booked.iter().any(|x| x.date == g.date)
            && d <= r
            && m.fee.currency == g.budget.currency
            && m.fee.amount <= g.budget.max_fee
            && g.min_rating.is_none_or(|min| b >= min);
        if !ok {
            continue;
        }
        let genres = if g.genres.is_empty() {
            1.0
        } else {
            g.genres.iter().filter(|x| m.genres.contains(x)).count() as f64 / g.genres.len() as f64
        };
        let price = if g.budget.max_fee == 0 {
            1.0
        } else {
            1.0 - m.fee.amount as f64 / g.budget.max_fee as f64
        };
        let c = [
            1.0 - d / r,
            (b - 1.0) / 4.0,
            genres,
            price,
            (level - s.min_level + 1) as f64 / (6 - s.min_level) as f64,
        ];
        let score: f64 = c.iter().zip(w).map(|(c, w)| c * w / sum).sum();
        out.push((m.id.clone(), score));
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Exhaustive best total over all eligible musicians (small cases only).
fn best_total(lists: &[Vec<(String, f64)>], seats: &[usize]) -> f64 {
    let mut slots_of_seat = Vec::new();
    for (s, n) in seats.iter().enumerate() {
        for _ in 0..*n {
            slots_of_seat.push(s);
        }
    }
    fn go(i: usize, seats: &[usize], lists: &[Vec<(String, f64)>], used: &mut Vec<String>) -> f64 {
        if i == seats.len() {
            return 0.0;
        }
        let mut best = go(i + 1, seats, lists, used); // leave the seat empty
        for (id, sc) in &lists[seats[i]] {
            if !used.contains(id) {
                used.push(id.clone());
                best = best.max(sc + go(i + 1, seats, lists, used));
                used.pop();
            }
        }
        best
    }
    go(0, &slots_of_seat, lists, &mut Vec::new())
}

/// Musicians, gigs, and bookings to attempt as (musician, gig, slot) indexes.
type World = (Vec<Musician>, Vec<Gig>, Vec<(usize, usize, usize)>);

fn world() -> impl Strategy<Value = World> {
    (
        musicians(1..60),
        gigs(1..6),
        prop::collection::vec((0usize..60, 0usize..6, 0usize..3), 0..25),
    )
}

/// Writes after the index's last commit: replaces some musicians (same ids, new data), deletes
/// some, books more.
fn second_wave(
    engine: &Engine,
    ms: &[Musician],
    gs: &[Gig],
    changes: Vec<Musician>,
    deletes: &[usize],
    more_books: &[(usize, usize, usize)],
) {
    for (i, mut m) in changes.into_iter().enumerate() {
        m.id = ms[i % ms.len()].id.clone();
        engine.upsert_musician(m).unwrap();
    }
    for d in deletes {
        engine
            .execute(&Command::DeleteMusician {
                id: ms[d % ms.len()].id.clone(),
            })
            .unwrap();
    }
    for (m, g, sl) in more_books {
        let b = Booking {
            gig_id: gs[g % gs.len()].id.clone(),
            slot: *sl as i64,
            musician_id: ms[m % ms.len()].id.clone(),
        };
        engine.book(b).unwrap();
    }
}

fn load(engine: &Engine, ms: &[Musician], gs: &[Gig], books: &[(usize, usize, usize)]) {
    engine
        .execute(&Command::BulkUpsert {
            musicians: ms.to_vec(),
            gigs: gs.to_vec(),
        })
        .expect("bulk");
    for (m, g, s) in books {
        let b = Booking {
            gig_id: gs[g % gs.len()].id.clone(),
            slot: *s as i64,
            musician_id: ms[m % ms.len()].id.clone(),
        };
        engine.book(b).expect("book");
    }
    engine.refresh().expect("refresh");
}

fn weights_strategy() -> impl Strategy<Value = Option<[f64; 5]>> {
    prop::option::of([
        0.0f64..1.0,
        0.0f64..1.0,
        0.0f64..1.0,
        0.0f64..1.0,
        0.05f64..1.0,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn match_gig_equals_brute_force((ms, gs, books) in world(), k in 1usize..8, w in weights_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        load(&engine, &ms, &gs, &books);
        let all = engine.list_musicians(None, usize::MAX).unwrap();
        let wv = w.unwrap_or([0.35, 0.30, 0.15, 0.10, 0.10]);
        let weights = w.map(|w| Weights { proximity: w[0], rating: w[1], genres: w[2], price: w[3], level: w[4] });
        for g in &gs {
            let stored = engine.gig(&g.id).unwrap().unwrap();
            let res = engine.match_gig(&MatchRequest { target: MatchTarget::Stored(g.id.clone()), k: Some(k), weights }).unwrap();
            let mut lists = Vec::new();
            let mut open = Vec::new();
            for (i, slot) in stored.gig.slots.iter().enumerate() {
                let expect = oracle_slot(&all, &stored.gig, slot, wv);
                let got = &res.slots[i];
                prop_assert_eq!(got.eligible, expect.len());
                let ids: Vec<&str> = got.candidates.iter().map(|c| c.musician_id.as_str()).collect();
                let want: Vec<&str> = expect.iter().take(k).map(|c| c.0.as_str()).collect();
                prop_assert_eq!(ids, want, "gig {} slot {}", g.id, i);
                for (c, e) in got.candidates.iter().zip(&expect) {
                    prop_assert!((c.score - e.1).abs() < 1e-9);
                }
                let booked = stored.bookings.iter().filter(|b| b.slot == i as i64).count();
                open.push((slot.count as usize).saturating_sub(booked));
                lists.push(expect);
            }
            // Assignment: distinct musicians, each eligible for its slot, optimal total.
            let seated: Vec<&String> = res.assignment.seats.iter().filter_map(|s| s.musician_id.as_ref()).collect();
            let mut uniq = seated.clone();
            uniq.sort();
            uniq.dedup();
            prop_assert_eq!(uniq.len(), seated.len(), "a musician in two seats");
            for s in &res.assignment.seats {
                if let Some(id) = &s.musician_id {
                    prop_assert!(lists[s.slot].iter().any(|(m, _)| m == id));
                }
            }
            if open.iter().sum::<usize>() <= 4 && lists.iter().all(|l| l.len() <= 8) {
                let best = best_total(&lists, &open);
                prop_assert!((res.assignment.total_score - best).abs() < 1e-6, "total {} best {}", res.assignment.total_score, best);
            }
        }
    }

    /// The index is made stale on purpose (commit interval of an hour, no refresh after the
    /// second wave of writes): matching must still equal the brute force over the store,
    /// because musicians changed after the index's sequence are evaluated from the store.
    #[test]
    fn match_gig_is_exact_while_the_index_is_stale(
        (ms, gs, books) in world(),
        changes in musicians(1..40),
        deletes in prop::collection::vec(0usize..60, 0..5),
        more_books in prop::collection::vec((0usize..60, 0usize..6, 0usize..3), 0..10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = stale_engine(dir.path());
        load(&engine, &ms, &gs, &books);
        let covered = engine.status().unwrap().index_seq;
        second_wave(&engine, &ms, &gs, changes, &deletes, &more_books);
        prop_assert_eq!(engine.status().unwrap().index_seq, covered, "the index must still be stale");
        let all = engine.list_musicians(None, usize::MAX).unwrap();
        let wv = [0.35, 0.30, 0.15, 0.10, 0.10];
        for g in &gs {
            let stored = engine.gig(&g.id).unwrap().unwrap();
            let res = engine.match_gig(&MatchRequest { target: MatchTarget::Stored(g.id.clone()), k: Some(5), weights: None }).unwrap();
            for (i, slot) in stored.gig.slots.iter().enumerate() {
                let expect = oracle_slot(&all, &stored.gig, slot, wv);
                let got = &res.slots[i];
                prop_assert_eq!(got.eligible, expect.len());
                let ids: Vec<&str> = got.candidates.iter().map(|c| c.musician_id.as_str()).collect();
                let want: Vec<&str> = expect.iter().take(5).map(|c| c.0.as_str()).collect();
                prop_assert_eq!(ids, want, "gig {} slot {}", g.id, i);
                for (c, e) in got.candidates.iter().zip(&expect) {
                    prop_assert!((c.score - e.1).abs() < 1e-9);
                }
            }
        }
    }

    /// Search without text answers from the index's fast fields and cuts each segment's hits
    /// by id ordinal: with the index split into several segments (some documents replaced,
    /// some deleted) and then made stale on purpose, every page must still equal the brute
    /// force over the store.
    #[test]
    fn search_is_exact_across_segments_while_the_index_is_stale(
        (ms, gs, books) in world(),
        changes in musicians(1..40),
        deletes in prop::collection::vec(0usize..60, 0..5),
        more_books in prop::collection::vec((0usize..60, 0usize..6, 0usize..3), 0..10),
        near in prop::option::of((point(), 5.0f64..150.0)),
        date in prop::option::of(0..DATES.len()),
        max_fee in prop::option::of(0i64..300),
        sort in 0usize..4,
        page in 1usize..7,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = stale_engine(dir.path());
        // Three segments at least: two partial waves, then everything again (replacing).
        for wave in ms.chunks(ms.len().div_ceil(2)) {
            engine.execute(&Command::BulkUpsert { musicians: wave.to_vec(), gigs: Vec::new() }).unwrap();
            engine.refresh().unwrap();
        }
        load(&engine, &ms, &gs, &books);
        let covered = engine.status().unwrap().index_seq;
        second_wave(&engine, &ms, &gs, changes, &deletes, &more_books);
        prop_assert_eq!(engine.status().unwrap().index_seq, covered, "the index must still be stale");
        let sort = [SortBy::Relevance, SortBy::Distance, SortBy::Rating, SortBy::Fee][sort];
        let near = near.map(|(p, r)| Near { lat: p.lat, lon: p.lon, radius_km: r });
        let sort = if sort == SortBy::Distance && near.is_none() { SortBy::Rating } else { sort };
        let q = SearchQuery {
            near,
            available_on: date.map(|d| DATES[d].to_string()),
            max_fee: max_fee.map(|f| Money { amount: f * 100, currency: "EUR".into() }),
            sort,
            limit: Some(1000),
            ..SearchQuery::default()
        };
        let all = engine.list_musicians(None, usize::MAX).unwrap();
        let mut expect = oracle_search(&all, &q);
        expect.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<String> = expect.iter().map(|e| e.1.clone()).collect();
        let got: Vec<String> = engine.search(&q).unwrap().hits.iter().map(|h| h.musician.id.clone()).collect();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(paged_ids(&engine, &q, page), want);
    }

    #[test]
    fn search_equals_brute_force(
        (ms, gs, books) in world(),
        insts in prop::collection::vec((0..INSTRUMENTS.len(), 1i64..=5), 0..3),
        all_mode in any::<bool>(),
        genres in prop::collection::vec(0..GENRES.len(), 0..2),
        near in prop::option::of((point(), 5.0f64..150.0)),
        date in prop::option::of(0..DATES.len()),
        max_fee in prop::option::of(0i64..300),
        min_rating in prop::option::of(2.0f64..4.5),
        text in prop::option::of(0..WORDS.len()),
        include_inactive in any::<bool>(),
        sort in 0usize..4,
        page in 1usize..7,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        load(&engine, &ms, &gs, &books);
        let sort = [SortBy::Relevance, SortBy::Distance, SortBy::Rating, SortBy::Fee][sort];
        let near = near.map(|(p, r)| Near { lat: p.lat, lon: p.lon, radius_km: r });
        let sort = if sort == SortBy::Distance && near.is_none() { SortBy::Fee } else { sort };
        let q = SearchQuery {
            text: text.map(|t| WORDS[t].to_string()),
            instruments: insts.iter().map(|(i, l)| InstrumentFilter { name: INSTRUMENTS[*i].into(), min_level: *l }).collect(),
            instrument_mode: if all_mode { InstrumentMode::All } else { InstrumentMode::Any },
            genres: genres.iter().map(|g| GENRES[*g].to_string()).collect(),
            near,
            available_on: date.map(|d| DATES[d].to_string()),
            max_fee: max_fee.map(|f| Money { amount: f * 100, currency: "EUR".into() }),
            min_rating,
            include_inactive,
            sort,
            limit: Some(1000),
            cursor: None,
        };
        let all = engine.list_musicians(None, usize::MAX).unwrap();
        let mut expect = oracle_search(&all, &q);
        let full = engine.search(&q).unwrap();
        let got: Vec<String> = full.hits.iter().map(|h| h.musician.id.clone()).collect();
        if sort == SortBy::Relevance && q.text.is_some() {
            // BM25 order is tantivy's; check the set and that relevance never increases.
            let mut a = got.clone();
            a.sort();
            let mut b: Vec<String> = expect.iter().map(|e| e.1.clone()).collect();
            b.sort();
            prop_assert_eq!(a, b);
            prop_assert!(full.hits.windows(2).all(|w| w[0].relevance >= w[1].relevance));
        } else {
            expect.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<String> = expect.iter().map(|e| e.1.clone()).collect();
            prop_assert_eq!(&got, &want);
        }
        // Paging through with a small limit gives the same sequence, without repeats.
        prop_assert_eq!(paged_ids(&engine, &q, page), got);
    }
}

prop_compose! {
    /// A musician close to (40.4, -3.7), most within a few km (many to a grid cell at every
    /// level), some up to about 600 km away.
    fn dense_musician(i: usize)(
        m in musician(i),
        far in prop::bool::weighted(0.2),
        dlat in -0.05f64..0.05, dlon in -0.05f64..0.05,
        flat in -5.0f64..5.0, flon in -5.0f64..5.0,
        radius in prop_oneof![0.5f64..20.0, 20.0f64..400.0, 400.0f64..3000.0],
    ) -> Musician {
        let (dlat, dlon) = if far { (flat, flon) } else { (dlat, dlon) };
        Musician {
            location: GeoPoint { lat: 40.4 + dlat, lon: -3.7 + dlon },
            travel_radius_km: radius,
            ..m
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The query plans that read the `place` terms (instrument × home cell at a few grid levels)
    /// and the one that falls back on the `home` cover (radii no place level covers in few
    /// cells) give exactly the brute-force answer, for dense clusters around cell boundaries
    /// and radii from half a kilometre to a few thousand.
    #[test]
    fn match_and_search_are_exact_at_every_cover_level(
        ms in (20usize..120).prop_flat_map(|n| (0..n).map(dense_musician).collect::<Vec<_>>()),
        gs in gigs(1..4),
        at in prop::collection::vec((-0.06f64..0.06, -0.06f64..0.06), 4),
        radii in prop::collection::vec(prop_oneof![0.3f64..5.0, 5.0f64..200.0, 200.0f64..5000.0], 4),
        insts in prop::collection::vec((0..INSTRUMENTS.len(), 1i64..=5), 1..3),
        all_mode in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        // Gigs moved into the cluster, with radii across the cover levels.
        let gs: Vec<Gig> = gs
            .into_iter()
            .enumerate()
            .map(|(i, g)| Gig {
                location: GeoPoint { lat: 40.4 + at[i].0, lon: -3.7 + at[i].1 },
                radius_km: radii[i],
                ..g
            })
            .collect();
        load(&engine, &ms, &gs, &[]);
        let all = engine.list_musicians(None, usize::MAX).unwrap();
        let w = [0.35, 0.30, 0.15, 0.10, 0.10];
        for g in &gs {
            let res = engine.match_gig(&MatchRequest { target: MatchTarget::Stored(g.id.clone()), k: Some(100), weights: None }).unwrap();
            for (i, slot) in g.slots.iter().enumerate() {
                let expect = oracle_slot(&all, g, slot, w);
                let got = &res.slots[i];
                prop_assert_eq!(got.eligible, expect.len(), "gig {} r={} slot {}", g.id, g.radius_km, i);
                let ids: Vec<&str> = got.candidates.iter().map(|c| c.musician_id.as_str()).collect();
                let want: Vec<&str> = expect.iter().take(100).map(|c| c.0.as_str()).collect();
                prop_assert_eq!(ids, want);
            }
        }
        for (i, r) in radii.iter().enumerate() {
            let q = SearchQuery {
                instruments: insts.iter().map(|(k, l)| InstrumentFilter { name: INSTRUMENTS[*k].into(), min_level: *l }).collect(),
                instrument_mode: if all_mode { InstrumentMode::All } else { InstrumentMode::Any },
                near: Some(Near { lat: 40.4 + at[i].0, lon: -3.7 + at[i].1, radius_km: *r }),
                sort: SortBy::Distance,
                limit: Some(1000),
                ..SearchQuery::default()
            };
            let mut expect = oracle_search(&all, &q);
            expect.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<String> = expect.into_iter().map(|e| e.1).collect();
            let got: Vec<String> = engine.search(&q).unwrap().hits.into_iter().map(|h| h.musician.id).collect();
            prop_assert_eq!(got, want, "r={}", r);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Many eligible musicians for a short list, with genres and level weighing most: the scan
    /// skips documents whose best possible score (every genre, the top level) cannot reach the
    /// k-th best so far, and the answer must still be exactly the brute force's top k.
    #[test]
    fn a_short_list_from_a_crowd_is_exact(
        ms in (60usize..200).prop_flat_map(|n| (0..n).map(dense_musician).collect::<Vec<_>>()),
        gs in gigs(1..4),
        k in 1usize..6,
        w in (0.0f64..0.3, 0.0f64..0.3, 0.5f64..1.0, 0.0f64..0.3, 0.5f64..1.0),
        radius in 5.0f64..60.0,
        min_level in 1i64..=3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(dir.path());
        let gs: Vec<Gig> = gs
            .into_iter()
            .map(|g| Gig {
                location: GeoPoint { lat: 40.4, lon: -3.7 },
                radius_km: radius,
                genres: vec!["jazz".into(), "rock".into(), "salsa".into()],
                slots: g.slots.into_iter().map(|s| Slot { min_level, ..s }).collect(),
                ..g
            })
            .collect();
        load(&engine, &ms, &gs, &[]);
        let all = engine.list_musicians(None, usize::MAX).unwrap();
        let weights = Weights { proximity: w.0, rating: w.1, genres: w.2, price: w.3, level: w.4 };
        for g in &gs {
            let res = engine.match_gig(&MatchRequest { target: MatchTarget::Stored(g.id.clone()), k: Some(k), weights: Some(weights) }).unwrap();
            for (i, slot) in g.slots.iter().enumerate() {
                let expect = oracle_slot(&all, g, slot, [w.0, w.1, w.2, w.3, w.4]);
                let got = &res.slots[i];
                prop_assert_eq!(got.eligible, expect.len());
                let ids: Vec<&str> = got.candidates.iter().map(|c| c.musician_id.as_str()).collect();
                let want: Vec<&str> = expect.iter().take(k).map(|c| c.0.as_str()).collect();
                prop_assert_eq!(ids, want, "gig {} slot {} k {}", g.id, i, k);
                for (c, e) in got.candidates.iter().zip(&expect) {
                    prop_assert!((c.score - e.1).abs() < 1e-9);
                }
            }
        }
    }
}

/// A change to one musician's volatile match facts only, or (`Terms`) to its terms too.
#[derive(Clone, Debug)]
enum FactsEdit {
    Fee(i64),
    Currency,
    Radius(f64),
    Active,
    Rate(i64),
    /// A new bio and genre: the terms change, the document is re-indexed in full.
    Terms(usize),
    Delete,
}

fn facts_edit() -> impl Strategy<Value = FactsEdit> {
    prop_oneof![
        4 => (0i64..300).prop_map(FactsEdit::Fee),
        1 => Just(FactsEdit::Currency),
        2 => (5.0f64..80.0).prop_map(FactsEdit::Radius),
        2 => Just(FactsEdit::Active),
        3 => (1i64..=5).prop_map(FactsEdit::Rate),
        2 => (0..GENRES.len()).prop_map(FactsEdit::Terms),
        1 => Just(FactsEdit::Delete),
    ]
}

/// Applies `edits` (musician index, edit) to the stored musicians: the ids whose last edit
/// changed facts only (those the overlay must then hold, once the index commits).
fn apply_edits(engine: &Engine, ms: &[Musician], edits: &[(usize, FactsEdit)]) -> Vec<String> {
    let mut overlaid = std::collections::BTreeSet::new();
    for (i, edit) in edits {
        let id = ms[i % ms.len()].id.clone();
        let Some(stored) = engine.musician(&id).unwrap() else {
            continue;
        };
        let before = stored.musician.clone();
        let mut m = stored.musician;
        let mut facts_only = true;
        match edit {
            FactsEdit::Rate(stars) => {
                engine
                    .execute(&Command::RateMusician {
                        musician_id: id.clone(),
                        stars: *stars,
                    })
                    .unwrap();
                overlaid.insert(id);
                continue;
            }
            FactsEdit::Delete => {
                engine
                    .execute(&Command::DeleteMusician { id: id.clone() })
                    .unwrap();
                overlaid.remove(&id);
                continue;
            }
            FactsEdit::Fee(f) => m.fee.amount = f * 100 + 1,
            FactsEdit::Currency => {
                m.fee.currency = if m.fee.currency == "EUR" {
                    "USD"
                } else {
                    "EUR"
                }
                .into()
            }
            FactsEdit::Radius(r) => m.travel_radius_km = *r + 0.5,
            FactsEdit::Active => m.active = !m.active,
            FactsEdit::Terms(g) => {
                m.bio = Some(format!(
                    "{} {}",
                    m.bio.unwrap_or_default(),
                    WORDS[g % WORDS.len()]
                ));
                m.genres = vec![GENRES[*g].to_string()];
                facts_only = false;
            }
        }
        let unchanged = m == before;
        engine.upsert_musician(m).unwrap();
        if unchanged {
            // A rewrite of the stored profile changes nothing, the index included.
            continue;
        }
        if facts_only {
            overlaid.insert(id);
        } else {
            overlaid.remove(&id);
        }
    }
    overlaid.into_iter().collect()
}

/// Every stored gig matched and a search sorted by `sort` equal the brute force over the
/// store.
fn assert_exact(engine: &Engine, gs: &[Gig], sort: SortBy, max_fee: Option<i64>, stage: &str) {
    let all = engine.list_musicians(None, usize::MAX).unwrap();
    let wv = [0.35, 0.30, 0.15, 0.10, 0.10];
    for g in gs {
        let stored = engine.gig(&g.id).unwrap().unwrap();
        let res = engine
            .match_gig(&MatchRequest {
                target: MatchTarget::Stored(g.id.clone()),
                k: Some(5),
                weights: None,
            })
            .unwrap();
        for (i, slot) in stored.gig.slots.iter().enumerate() {
            let expect = oracle_slot(&all, &stored.gig, slot, wv);
            let got = &res.slots[i];
            assert_eq!(got.eligible, expect.len(), "{stage}: gig {} slot {i}", g.id);
            let ids: Vec<&str> = got
                .candidates
                .iter()
                .map(|c| c.musician_id.as_str())
                .collect();
            let want: Vec<&str> = expect.iter().take(5).map(|c| c.0.as_str()).collect();
            assert_eq!(ids, want, "{stage}: gig {} slot {i}", g.id);
            for (c, e) in got.candidates.iter().zip(&expect) {
                assert!(
                    (c.score - e.1).abs() < 1e-9,
                    "{stage}: score of {}",
                    c.musician_id
                );
            }
        }
    }
    for include_inactive in [false, true] {
        let q = SearchQuery {
            max_fee: max_fee.map(|f| Money {
                amount: f * 100,
                currency: "EUR".into(),
            }),
            min_rating: (sort == SortBy::Rating).then_some(3.4),
            include_inactive,
            sort,
            limit: Some(1000),
            ..SearchQuery::default()
        };
        let mut expect = oracle_search(&all, &q);
        expect.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<String> = expect.iter().map(|e| e.1.clone()).collect();
        let got: Vec<String> = engine
            .search(&q)
            .unwrap()
            .hits
            .iter()
            .map(|h| h.musician.id.clone())
            .collect();
        assert_eq!(got, want, "{stage}: search {q:?}");
        assert_eq!(paged_ids(engine, &q, 3), want, "{stage}: paged search");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Edits that leave a musician's terms alone (fee, currency, travel radius, active, every
    /// rating) go to the index's facts overlay instead of re-indexing the document. Searches
    /// and matches must equal the brute force over the store at every stage: overlay
    /// published, overlay plus changes the index has not committed (some re-indexing an
    /// overlaid musician, some deleting one), after a merge into one segment renumbered the
    /// documents, after a reopen (the overlay is not on disk: the open replays its changes),
    /// and with an overlay small enough to be folded into the index at once.
    #[test]
    fn search_and_match_are_exact_with_facts_in_the_overlay(
        (ms, gs, books) in world(),
        first in prop::collection::vec((0usize..60, facts_edit()), 1..40),
        second in prop::collection::vec((0usize..60, facts_edit()), 1..30),
        sort in 0usize..3,
        max_fee in prop::option::of(0i64..300),
        fold_at in 0usize..6,
    ) {
        let sort = [SortBy::Relevance, SortBy::Rating, SortBy::Fee][sort];
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = stale_engine(dir.path());
            // Two segments at least, so that documents move when they merge.
            let half = ms.len().div_ceil(2);
            engine.execute(&Command::BulkUpsert { musicians: ms[..half].to_vec(), gigs: Vec::new() }).unwrap();
            engine.refresh().unwrap();
            load(&engine, &ms, &gs, &books);
            let overlaid = apply_edits(&engine, &ms, &first);
            engine.refresh().unwrap();
            prop_assert_eq!(engine.status().unwrap().index_overlay_musicians, overlaid.len() as u64);
            assert_exact(&engine, &gs, sort, max_fee, "overlay published");
            apply_edits(&engine, &ms, &second);
            assert_exact(&engine, &gs, sort, max_fee, "overlay and uncommitted changes");
            engine.refresh().unwrap();
            assert_exact(&engine, &gs, sort, max_fee, "second overlay published");
            engine.compact_index().unwrap();
            assert_exact(&engine, &gs, sort, max_fee, "after a merge");
        }
        {
            let engine = stale_engine(dir.path());
            prop_assert_eq!(engine.status().unwrap().index_overlay_musicians, 0);
            assert_exact(&engine, &gs, sort, max_fee, "reopened");
        }
        let engine = Engine::open(
            dir.path(),
            Config { index_overlay_max_musicians: fold_at, ..stale_config() },
        )
        .unwrap();
        let overlaid = apply_edits(&engine, &ms, &first);
        engine.refresh().unwrap();
        let held = engine.status().unwrap().index_overlay_musicians;
        if fold_at == 0 {
            prop_assert_eq!(held, 0);
        } else {
            prop_assert!(held as usize <= fold_at, "overlay of {held} past {fold_at}");
            prop_assert!(held as usize == overlaid.len() || held == 0);
        }
        assert_exact(&engine, &gs, sort, max_fee, "folded");
    }
}
