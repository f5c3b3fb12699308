//! Structure-aware command sequences: arbitrary-derived operations over a small id space
//! (4 musicians, 3 gigs, 3 dates, 2 instruments), applied to a real engine in a temp dir and to
//! a plain in-memory model of the booking rules written from their documentation
//! (`engine/src/store.rs` `book`, `check_gig_update`).
//!
//! Properties, after every command: the engine's outcome (done or refused) is the model's; and
//! after every sequence and every reopen: every musician and gig exists exactly when the model
//! says so, with exactly the model's bookings on both sides (never doubled: one booking per
//! musician and date, never more than a slot's seats), deletes are honoured (a deleted record
//! and its bookings are gone, also after a reopen), and `check_consistency` (both sides of
//! each booking, index agrees with the store) finds nothing.
//!
//! One engine is kept across inputs for speed (a fresh tantivy index per input would cost more
//! than the sequence): each input starts by deleting every id of the space, which the check
//! then verifies left nothing behind. The data lives on /dev/shm when present, so the fsync of
//! `Durability::Sync` is cheap and a reopen sees exactly what was acknowledged.

use arbitrary::Arbitrary;
use mussikon_engine::{
    Booking, Budget, Command, Config, Durability, Engine, GeoPoint, Gig, InstrumentSkill, Money,
    Musician, Outcome, Slot,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

const MUSICIANS: u8 = 4;
const GIGS: u8 = 3;
const DATES: [&str; 3] = ["2027-01-10", "2027-01-11", "2027-01-12"];
const INSTRUMENTS: [&str; 2] = ["guitar", "drums"];

/// One operation of a sequence.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// Create or replace musician `m`.
    UpsertMusician(MusicianSpec),
    /// Delete musician `m`.
    DeleteMusician(u8),
    /// Create or replace gig `g`.
    UpsertGig(GigSpec),
    /// Delete gig `g`.
    DeleteGig(u8),
    /// Book musician `m` into slot `slot` of gig `g`.
    Book {
        /// Gig.
        g: u8,
        /// Slot index (may be out of range).
        slot: u8,
        /// Musician.
        m: u8,
    },
    /// Cancel musician `m`'s booking on gig `g`.
    Cancel {
        /// Gig.
        g: u8,
        /// Musician.
        m: u8,
    },
    /// Rate musician `m`.
    Rate {
        /// Musician.
        m: u8,
        /// Stars, reduced to 1-5.
        stars: u8,
    },
    /// Many musicians and gigs in one command.
    Bulk(Vec<MusicianSpec>, Vec<GigSpec>),
    /// Close the engine and open it again.
    Reopen,
}

/// A musician of the small space.
#[derive(Arbitrary, Debug, Clone)]
pub struct MusicianSpec {
    m: u8,
    instrument: u8,
    level: u8,
    active: bool,
    busy: Option<u8>,
}

/// A gig of the small space.
#[derive(Arbitrary, Debug, Clone)]
pub struct GigSpec {
    g: u8,
    date: u8,
    slots: Vec<(u8, u8, u8)>,
}

fn mid(m: u8) -> String {
    format!("m-{}", m % MUSICIANS)
}

fn gid(g: u8) -> String {
    format!("g-{}", g % GIGS)
}

#[derive(Clone, Debug, PartialEq)]
struct ModelMusician {
    instrument: &'static str,
    level: i64,
    active: bool,
    busy: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq)]
struct ModelGig {
    date: &'static str,
    /// (instrument, seats, min level)
    slots: Vec<(&'static str, i64, i64)>,
}

impl MusicianSpec {
    fn model(&self) -> (String, ModelMusician) {
        (
            mid(self.m),
            ModelMusician {
                instrument: INSTRUMENTS[usize::from(self.instrument) % INSTRUMENTS.len()],
                level: i64::from(self.level % 5) + 1,
                active: self.active,
                busy: self.busy.map(|d| DATES[usize::from(d) % DATES.len()]),
            },
        )
    }

    fn record(&self) -> Musician {
        let (id, m) = self.model();
        Musician {
            name: format!("Musician {id}"),
            id,
            instruments: vec![InstrumentSkill {
                name: m.instrument.into(),
                level: m.level,
            }],
            genres: vec![],
            location: GeoPoint {
                lat: 40.4,
                lon: -3.7,
            },
            city: None,
            travel_radius_km: 50.0,
            fee: Money {
                amount: 10_000,
                currency: "EUR".into(),
            },
            rating: None,
            busy: m.busy.map(|d| vec![d.to_string()]).unwrap_or_default(),
            bio: None,
            active: m.active,
        }
    }
}

impl GigSpec {
    fn model(&self) -> (String, ModelGig) {
        let mut slots: Vec<(&'static str, i64, i64)> = self
            .slots
            .iter()
            .take(3)
            .map(|(i, c, l)| {
                (
                    INSTRUMENTS[usize::from(*i) % INSTRUMENTS.len()],
                    i64::from(c % 2) + 1,
                    i64::from(l % 5) + 1,
                )
            })
            .collect();
        if slots.is_empty() {
            slots.push(("guitar", 1, 1));
        }
        (
            gid(self.g),
            ModelGig {
                date: DATES[usize::from(self.date) % DATES.len()],
                slots,
            },
        )
    }

    fn record(&self) -> Gig {
        let (id, g) = self.model();
        Gig {
            title: format!("Gig {id}"),
            id,
            date: g.date.into(),
            location: GeoPoint {
                lat: 40.4,
                lon: -3.7,
            },
            radius_km: 30.0,
            slots: g
                .slots
                .iter()
                .map(|(i, c, l)| Slot {
                    instrument: (*i).into(),
                    count: *c,
                    min_level: *l,
                })
                .collect(),
            genres: vec![],
            budget: Budget {
                max_fee: 20_000,
                currency: "EUR".into(),
            },
            min_rating: None,
            owner: None,
        }
    }
}

/// The documented rules, on plain maps.
#[derive(Default, Debug)]
struct Model {
    musicians: BTreeMap<String, ModelMusician>,
    gigs: BTreeMap<String, ModelGig>,
    /// (gig, slot, musician)
    bookings: BTreeSet<(String, i64, String)>,
}

impl Model {
    fn booked_in(&self, g: &str, slot: i64) -> i64 {
        self.bookings
            .iter()
            .filter(|(bg, bs, _)| bg == g && *bs == slot)
            .count() as i64
    }

    fn gig_update_allowed(&self, id: &str, new: &ModelGig) -> bool {
        let Some(old) = self.gigs.get(id) else {
            return true;
        };
        let booked: Vec<i64> = self
            .bookings
            .iter()
            .filter(|(g, _, _)| g == id)
            .map(|(_, s, _)| *s)
            .collect();
        if booked.is_empty() {
            return true;
        }
        if old.date != new.date {
            return false;
        }
        booked.iter().all(|s| {
            let (o, n) = (&old.slots[*s as usize], new.slots.get(*s as usize));
            n.is_some_and(|n| n.0 == o.0 && n.1 >= self.booked_in(id, *s))
        })
    }

    /// Applies `op`; returns whether it must take effect (None: not a command).
    fn apply(&mut self, op: &Op) -> Option<bool> {
        Some(match op {
            Op::UpsertMusician(spec) => {
                let (id, m) = spec.model();
                self.musicians.insert(id, m);
                true
            }
            Op::DeleteMusician(m) => {
                let id = mid(*m);
                let done = self.musicians.remove(&id).is_some();
                self.bookings.retain(|(_, _, bm)| *bm != id);
                done
            }
            Op::UpsertGig(spec) => {
                let (id, g) = spec.model();
                let ok = self.gig_update_allowed(&id, &g);
                if ok {
                    self.gigs.insert(id, g);
                }
                ok
            }
            Op::DeleteGig(g) => {
                let id = gid(*g);
                let done = self.gigs.remove(&id).is_some();
                self.bookings.retain(|(bg, _, _)| *bg != id);
                done
            }
            Op::Book { g, slot, m } => {
                let (g, m, slot) = (gid(*g), mid(*m), i64::from(*slot % 4));
                let ok = self.bookable(&g, slot, &m);
                if ok {
                    self.bookings.insert((g, slot, m));
                }
                ok
            }
            Op::Cancel { g, m } => {
                let (g, m) = (gid(*g), mid(*m));
                let found = self
                    .bookings
                    .iter()
                    .find(|(bg, _, bm)| *bg == g && *bm == m)
                    .cloned();
                match found {
                    Some(b) if self.gigs.contains_key(&g) => {
                        self.bookings.remove(&b);
                        true
                    }
                    _ => false,
                }
            }
            Op::Rate { m, .. } => self.musicians.contains_key(&mid(*m)),
            Op::Bulk(ms, gs) => {
                // Atomic: refused as a whole when one gig update would break bookings.
                let gigs: Vec<(String, ModelGig)> = gs.iter().map(GigSpec::model).collect();
                if !gigs.iter().all(|(id, g)| self.gig_update_allowed(id, g)) {
                    return Some(false);
                }
                for spec in ms {
                    let (id, m) = spec.model();
                    self.musicians.insert(id, m);
                }
                for (id, g) in gigs {
                    self.gigs.insert(id, g);
                }
                true
            }
            Op::Reopen => return None,
        })
    }

    fn bookable(&self, g: &str, slot: i64, m: &str) -> bool {
        let (Some(gig), Some(mus)) = (self.gigs.get(g), self.musicians.get(m)) else {
            return false;
        };
        let Some((instrument, seats, min_level)) = gig.slots.get(slot as usize) else {
            return false;
        };
        let level = if mus.instrument == *instrument {
            mus.level
        } else {
            0
        };
        let booked_that_day = self
            .bookings
            .iter()
            .any(|(bg, _, bm)| bm == m && self.gigs.get(bg).is_some_and(|x| x.date == gig.date));
        mus.active
            && level >= *min_level
            && mus.busy != Some(gig.date)
            && !booked_that_day
            && self.booked_in(g, slot) < *seats
    }
}

fn command(op: &Op) -> Option<Command> {
    Some(match op {
        Op::UpsertMusician(spec) => Command::UpsertMusician {
            musician: spec.record(),
        },
        Op::DeleteMusician(m) => Command::DeleteMusician { id: mid(*m) },
        Op::UpsertGig(spec) => Command::UpsertGig { gig: spec.record() },
        Op::DeleteGig(g) => Command::DeleteGig { id: gid(*g) },
        Op::Book { g, slot, m } => Command::Book(Booking {
            gig_id: gid(*g),
            slot: i64::from(*slot % 4),
            musician_id: mid(*m),
        }),
        Op::Cancel { g, m } => Command::CancelBooking {
            gig_id: gid(*g),
            musician_id: mid(*m),
        },
        Op::Rate { m, stars } => Command::RateMusician {
            musician_id: mid(*m),
            stars: i64::from(stars % 5) + 1,
        },
        Op::Bulk(ms, gs) => Command::BulkUpsert {
            musicians: ms.iter().map(MusicianSpec::record).collect(),
            gigs: gs.iter().map(GigSpec::record).collect(),
        },
        Op::Reopen => return None,
    })
}

struct Shared {
    dir: tempfile::TempDir,
    engine: Option<Engine>,
}

fn config() -> Config {
    Config {
        durability: Durability::Sync,
        cache_bytes: 8 * 1024 * 1024,
        index_heap_bytes: 15 * 1024 * 1024,
        index_writer_threads: 1,
        ..Config::default()
    }
}

fn shared() -> &'static Mutex<Shared> {
    static SHARED: std::sync::OnceLock<Mutex<Shared>> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let engine = Engine::open(dir.path(), config()).expect("open");
        Mutex::new(Shared {
            dir,
            engine: Some(engine),
        })
    })
}

/// Executes the queued commands (alone, or as one `Command::Batch`) and checks each outcome
/// against the model's.
fn run_pending(state: &mut Shared, model: &mut Model, pending: &mut Vec<(usize, &Op, Command)>) {
    if pending.is_empty() {
        return;
    }
    let engine = state.engine.as_ref().expect("engine");
    let outcomes = if pending.len() == 1 {
        vec![engine.execute(&pending[0].2).expect("execute").outcome]
    } else {
        let commands = pending.iter().map(|(_, _, c)| c.clone()).collect();
        match engine
            .execute(&Command::Batch { commands })
            .expect("execute")
            .outcome
        {
            Outcome::Batch { outcomes } => outcomes,
            other => panic!("a batch answered {other:?}"),
        }
    };
    assert_eq!(outcomes.len(), pending.len(), "one outcome per command");
    for ((i, op, _), outcome) in pending.drain(..).zip(outcomes) {
        let want = model.apply(op).expect("a command");
        let done = match &outcome {
            Outcome::Done(_) => true,
            Outcome::Refused(_) => false,
            Outcome::AlreadyApplied { .. } => panic!("execute picked an applied sequence"),
            Outcome::Replayed { .. } => panic!("a replay, though no command here has a key"),
            Outcome::Batch { .. } => panic!("a batch inside a batch's outcomes"),
        };
        assert_eq!(
            done, want,
            "op {i} {op:?}: engine said {outcome:?}, model expected done={want}\nmodel: {model:?}"
        );
    }
}

/// Applies `ops` to the engine and the model and checks they agree.
pub fn check(ops: &[Op]) {
    let mut guard = shared().lock().unwrap_or_else(|p| p.into_inner());
    let state = &mut *guard;
    let mut model = Model::default();
    {
        let engine = state.engine.as_ref().expect("engine");
        for g in 0..GIGS {
            engine
                .execute(&Command::DeleteGig { id: gid(g) })
                .expect("wipe");
        }
        for m in 0..MUSICIANS {
            engine
                .execute(&Command::DeleteMusician { id: mid(m) })
                .expect("wipe");
        }
    }
    compare(state.engine.as_ref().expect("engine"), &model);
    // Consecutive commands go one by one or in batches of 2–4 (`Command::Batch`, what a
    // cluster leader's group commit writes), chosen by the input's length: each command of a
    // batch must do exactly what the model does with it alone.
    let group = ops.len() % 4 + 1;
    let mut pending: Vec<(usize, &Op, Command)> = Vec::new();
    for (i, op) in ops.iter().take(64).enumerate() {
        match command(op) {
            Some(cmd) => {
                pending.push((i, op, cmd));
                if pending.len() == group {
                    run_pending(state, &mut model, &mut pending);
                }
            }
            None => {
                run_pending(state, &mut model, &mut pending);
                state.engine = None; // closes sled and the indexer before reopening
                state.engine = Some(reopen(state.dir.path()));
                compare(state.engine.as_ref().expect("engine"), &model);
            }
        }
    }
    run_pending(state, &mut model, &mut pending);
    let engine = state.engine.as_ref().expect("engine");
    compare(engine, &model);
    engine.refresh().expect("refresh");
    let problems = engine.check_consistency().expect("check");
    assert!(problems.is_empty(), "inconsistent engine: {problems:?}");
}

/// The engine's records and bookings equal the model's, on both sides of every booking.
fn compare(engine: &Engine, model: &Model) {
    let status = engine.status().expect("status");
    let counts = (status.musicians, status.gigs);
    let want = (model.musicians.len() as u64, model.gigs.len() as u64);
    assert_eq!(counts, want, "musician and gig counts");
    for m in 0..MUSICIANS {
        let id = mid(m);
        let view = engine.musician(&id).expect("read");
        assert_eq!(
            view.is_some(),
            model.musicians.contains_key(&id),
            "musician {id} presence"
        );
        if let Some(v) = view {
            let mut got: Vec<(String, i64)> = v
                .booked
                .iter()
                .map(|b| (b.gig_id.clone(), b.slot))
                .collect();
            got.sort();
            let want: Vec<(String, i64)> = model
                .bookings
                .iter()
                .filter(|(_, _, bm)| *bm == id)
                .map(|(g, s, _)| (g.clone(), *s))
                .collect();
            assert_eq!(got, want, "bookings of musician {id}");
            let mut dates: Vec<&str> = v.booked.iter().map(|b| b.date.as_str()).collect();
            let n = dates.len();
            dates.dedup();
            assert_eq!(dates.len(), n, "musician {id} booked twice on one date");
        }
    }
    for g in 0..GIGS {
        let id = gid(g);
        let view = engine.gig(&id).expect("read");
        assert_eq!(
            view.is_some(),
            model.gigs.contains_key(&id),
            "gig {id} presence"
        );
        if let Some(v) = view {
            let got: BTreeSet<(i64, String)> = v
                .bookings
                .iter()
                .map(|b| (b.slot, b.musician_id.clone()))
                .collect();
            assert_eq!(
                got.len(),
                v.bookings.len(),
                "gig {id} holds a booking twice"
            );
            let want: BTreeSet<(i64, String)> = model
                .bookings
                .iter()
                .filter(|(bg, _, _)| *bg == id)
                .map(|(_, s, m)| (*s, m.clone()))
                .collect();
            assert_eq!(got, want, "bookings of gig {id}");
            for (s, slot) in v.gig.slots.iter().enumerate() {
                let n = v.bookings.iter().filter(|b| b.slot == s as i64).count() as i64;
                assert!(
                    n <= slot.count,
                    "gig {id} slot {s}: {n} bookings for {} seats",
                    slot.count
                );
            }
        }
    }
}

/// Opens the engine again after a drop. `Engine::open` itself waits for the directory lock
/// that sled's I/O threads may still hold for a moment (docs/reliability.md), so a failure here
/// is a finding.
fn reopen(path: &std::path::Path) -> Engine {
    Engine::open(path, config()).expect("the engine reopens after a drop")
}
