//! The engine: one store, one index, one writer. The API that programs, the server and the Raft
//! state machine use.
//!
//! Write path: [`Engine::execute`] (or [`Engine::apply`] with a sequence chosen by the caller,
//! e.g. a Raft log index) takes the writer lock, applies the command to the store in one
//! transaction, hands the changed musicians to the indexer, releases the lock, and — with
//! [`Durability::Sync`], the default — flushes the store before returning. So when `execute`
//! returns `Ok`, the command and its effects are on disk.
//!
//! Read path: reads go straight to the store (gets, lists) or ask the index for candidates and
//! re-check every candidate against its stored record (search, match). They never take the
//! writer lock.

use crate::command::{Command, Outcome};
use crate::index::{lock, IndexError, IndexHandle, IndexOptions};
use crate::matching::{assign, evaluate_record, rank, Assignment, Candidate, Weights};
use crate::model::{Booking, GeoPoint, Gig, GigView, Message, Musician, MusicianView};
use crate::search::{self, Cursor, InstrumentMode, SearchHit, SearchPage, SearchQuery};
use crate::store::{GigRecord, MusicianRecord, Store, StoreError, StoreOptions};
use crate::validate::{is_valid_id, validate_gig, ValidationError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tantivy::query::{AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

/// When an acknowledged write reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Durability {
    /// `execute` returns after the store is flushed (fsync). A crash loses nothing acknowledged.
    /// Concurrent writers share flushes (group commit).
    Sync,
    /// The store is flushed every `flush_every_ms` in the background: a crash may lose the
    /// writes of the last interval. For bulk loads and for Raft state machines, whose log is
    /// the durable copy.
    Periodic {
        /// Interval between background flushes.
        flush_every_ms: u64,
    },
}

/// Engine settings. `Config::default()` is right for most uses.
///
/// ```
/// use mussikon_engine::{Config, Durability};
/// let c = Config { durability: Durability::Periodic { flush_every_ms: 500 }, ..Config::default() };
/// assert_eq!(c.index_commit_interval.as_millis(), 250);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// When writes reach the disk.
    pub durability: Durability,
    /// sled page cache, bytes.
    pub cache_bytes: u64,
    /// Longest time a write waits to become searchable.
    pub index_commit_interval: Duration,
    /// tantivy indexing threads.
    pub index_writer_threads: usize,
    /// tantivy indexing memory budget, bytes (split among threads).
    pub index_heap_bytes: usize,
    /// Keep the search index. Without it the engine stores, applies, exports and reads records
    /// by id as usual, and refuses searches and matches ([`EngineError::NoIndex`]): for a
    /// replica that only stores and votes while others serve search. Opening without it removes
    /// an index left from before; turning it back on builds the index from the store when the
    /// engine opens.
    pub index_enabled: bool,
    /// Most musicians whose volatile match facts (fee, currency, travel radius, rating, active)
    /// the index keeps in memory instead of re-indexing their documents (the facts overlay,
    /// see ARCHITECTURE.md); past it, or past [`Config::index_overlay_max_age`], the overlay is
    /// folded into the index. 0 re-indexes every change.
    pub index_overlay_max_musicians: usize,
    /// Longest time a change stays in the facts overlay before the overlay is folded into the
    /// index (at the next index commit, or, on an engine with no writes, when the indexer wakes
    /// for it, at least 1 s after its last try). Bounds the change log an open replays after a
    /// crash.
    pub index_overlay_max_age: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            durability: Durability::Sync,
            cache_bytes: 256 * 1024 * 1024,
            index_commit_interval: Duration::from_millis(250),
            index_writer_threads: 2,
            index_heap_bytes: 128 * 1024 * 1024,
            index_enabled: true,
            index_overlay_max_musicians: 50_000,
            index_overlay_max_age: Duration::from_secs(60),
        }
    }
}

/// Every error the engine returns.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A request (not a command) broke validation rules.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A record the request names does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// "musician" or "gig".
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// Reading or writing a snapshot or import stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot stream is malformed.
    #[error("bad snapshot: {0}")]
    Snapshot(String),
    /// A search or match on an engine opened without its search index
    /// ([`Config::index_enabled`] false).
    #[error(
        "this engine keeps no search index (index_enabled is false): it cannot search or match"
    )]
    NoIndex,
    /// A restore into a store that is not empty, without `force`.
    #[error(
        "the store is not empty ({musicians} musicians, {gigs} gigs); pass force to replace it"
    )]
    NotEmpty {
        /// Musicians present.
        musicians: u64,
        /// Gigs present.
        gigs: u64,
    },
}

/// A command's sequence number and what it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    /// The applied sequence of this command.
    pub seq: u64,
    /// What happened.
    pub outcome: Outcome,
}

/// A numbers-only view of the engine, for health checks and metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Last applied sequence.
    pub applied_seq: u64,
    /// Sequence covered by the searchable index.
    pub index_seq: u64,
    /// How long the oldest change not yet searchable has waited, ms (0 when none).
    pub index_lag_ms: u64,
    /// Musicians whose searchable match facts live in the index's facts overlay rather than
    /// in their documents ([`Config::index_overlay_max_musicians`]).
    pub index_overlay_musicians: u64,
    /// Musicians stored.
    pub musicians: u64,
    /// Gigs stored.
    pub gigs: u64,
    /// Bytes on disk of the store.
    pub store_bytes: u64,
}

/// What to match: a stored gig by id or a gig given in full.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchTarget {
    /// A stored gig; seats already booked are not offered again.
    Stored(String),
    /// An ad-hoc gig, not stored.
    AdHoc(Gig),
}

/// A matching request.
///
/// ```
/// use mussikon_engine::{MatchRequest, MatchTarget};
/// let r = MatchRequest { target: MatchTarget::Stored("g-1".into()), k: Some(5), weights: None };
/// assert_eq!(r.k, Some(5));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatchRequest {
    /// The gig.
    pub target: MatchTarget,
    /// Candidates per slot, 1–100 (default 10).
    pub k: Option<usize>,
    /// Ranking weights (default 0.35/0.30/0.15/0.10/0.10).
    pub weights: Option<Weights>,
}

/// Default candidates per slot.
pub const DEFAULT_K: usize = 10;
/// Most candidates per slot.
pub const MAX_K: usize = 100;

/// Ranked candidates for one slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlotMatches {
    /// Slot index in the gig.
    pub slot: usize,
    /// The slot's instrument.
    pub instrument: String,
    /// Seats still open in the slot.
    pub open_seats: usize,
    /// Up to k candidates, best first.
    pub candidates: Vec<Candidate>,
    /// Eligible musicians found for the slot (before the cut to k).
    pub eligible: usize,
}

/// The answer to a matching request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MatchResult {
    /// The gig's id.
    pub gig_id: String,
    /// The gig's date.
    pub date: String,
    /// Per-slot rankings.
    pub slots: Vec<SlotMatches>,
    /// The optimal filling of the open seats.
    pub assignment: Assignment,
}

struct Inner {
    store: Arc<Store>,
    /// `None` when the engine keeps no search index ([`Config::index_enabled`]).
    index: Option<IndexHandle>,
    /// The index's schema fields (known without an index: queries are built from them).
    fields: crate::index::Fields,
    columns: Arc<crate::columns::ColumnCache>,
    writer: Mutex<()>,
    /// Held shared by each running export and exclusively by a snapshot install, which clears
    /// the store under the exports' views (taken before `writer`, never while holding it).
    exports: std::sync::RwLock<()>,
    config: Config,
    path: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(index) = &self.index {
            index.stop();
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// The embedded matching engine. Cheap to clone (shared handle); safe to use from many threads.
///
/// ```
/// use mussikon_engine::{Engine, Config, Command};
/// let dir = tempfile::tempdir().unwrap();
/// let engine = Engine::open(dir.path(), Config::default()).unwrap();
/// let m = serde_json::from_str(r#"{"id":"m-1","name":"Ana","instruments":[{"name":"guitar","level":4}],
///   "location":{"lat":40.42,"lon":-3.70},"travel_radius_km":50,"fee":{"amount":10000,"currency":"EUR"}}"#).unwrap();
/// let done = engine.execute(&Command::UpsertMusician { musician: m }).unwrap();
/// assert!(done.outcome.is_done());
/// assert!(engine.musician("m-1").unwrap().is_some());
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// See [`Engine::fresh_view`].
struct FreshView {
    searcher: tantivy::Searcher,
    /// The searcher's facts overlay.
    overlay: Arc<crate::overlay::FactsOverlay>,
    /// Documents of changed musicians, shared by every slot scan of one request.
    exclude: Arc<HashSet<(u32, tantivy::DocId)>>,
    /// Current stored records of the changed musicians (deleted ones are absent).
    changed: Vec<MusicianRecord>,
}

/// Any of `terms` in `field`, as a lazy union of posting lists.
///
/// Not `TermSetQuery`: that one materializes a bitset of `max_doc` bits per segment for every
/// query, which at 1M documents cost more than the rest of a match (measured; docs/perf.md).
fn any_term(field: tantivy::schema::Field, terms: Vec<String>) -> Box<dyn Query> {
    let mut uniq = terms;
    uniq.sort_unstable();
    uniq.dedup();
    Box::new(BooleanQuery::new(
        uniq.into_iter()
            .map(|t| (Occur::Should, term(field, &t)))
            .collect(),
    ))
}

/// Most cells of a `home` cover (the plan for circles no `place` level covers in
/// [`crate::geo::PLACE_COVER_CELLS`]): a match's and a search's.
const HOME_COVER_CELLS_MATCH: usize = 32;
const HOME_COVER_CELLS_SEARCH: usize = 64;

/// The `place` terms of `instruments` over the cells of a circle, or `None` when no place
/// level covers it in [`crate::geo::PLACE_COVER_CELLS`] cells (the caller then uses the `home` cover).
fn place_cover(center: GeoPoint, radius_km: f64, instruments: &[&str]) -> Option<Vec<String>> {
    let (_, cells) = crate::geo::cover_cells_at(
        center,
        radius_km,
        crate::geo::PLACE_COVER_CELLS,
        crate::geo::PLACE_LEVELS,
    )?;
    let mut terms = Vec::with_capacity(cells.len() * instruments.len());
    for c in &cells {
        for i in instruments {
            terms.push(crate::index::place_term(c, i));
        }
    }
    Some(terms)
}

fn term(field: tantivy::schema::Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::Basic,
    ))
}

fn filter(q: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
}

impl Engine {
    /// Opens the engine on `path` (created if missing): the store in `path/store`, the index in
    /// `path/index`. Brings the index level with the store before returning.
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<Engine, EngineError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)?;
        if path.join("RESTORING").exists() {
            return Err(EngineError::Snapshot(format!(
                "{} holds an unfinished restore; run the restore again",
                path.display()
            )));
        }
        let flush_every_ms = match config.durability {
            Durability::Sync => Some(1000),
            Durability::Periodic { flush_every_ms } => Some(flush_every_ms.max(1)),
        };
        let store = Arc::new(Store::open(
            &path.join("store"),
            &StoreOptions {
                cache_bytes: config.cache_bytes,
                flush_every_ms,
            },
        )?);
        // The column cache warms every new searcher's segments before readers get it.
        let columns: Arc<crate::columns::ColumnCache> = Arc::default();
        let warmer: std::sync::Weak<dyn tantivy::Warmer> = Arc::downgrade(&columns) as _;
        let index = if config.index_enabled {
            Some(IndexHandle::open(
                &path.join("index"),
                store.clone(),
                IndexOptions {
                    commit_interval: config.index_commit_interval,
                    writer_threads: config.index_writer_threads,
                    writer_heap_bytes: config.index_heap_bytes,
                    warmers: vec![warmer],
                    fold: crate::overlay::FoldPolicy {
                        max_musicians: config.index_overlay_max_musicians,
                        max_age: config.index_overlay_max_age,
                    },
                },
            )?)
        } else {
            // An index left from when it was on would be stale when it is turned on again
            // (an install may even have replaced the store meanwhile): remove it, so that
            // turning it on rebuilds it from the store.
            let old = path.join("index");
            if old.exists() {
                tracing::info!(
                    path = %old.display(),
                    "the search index is off: removing the old one (turning it on rebuilds it)"
                );
                std::fs::remove_dir_all(&old)?;
            }
            None
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                index,
                fields: crate::index::schema().1,
                columns,
                writer: Mutex::new(()),
                exports: std::sync::RwLock::new(()),
                config,
                path,
            }),
        })
    }

    /// The directory the engine lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Applies `cmd` as the next sequence number. Durable on return with [`Durability::Sync`].
    pub fn execute(&self, cmd: &Command) -> Result<Executed, EngineError> {
        let executed = {
            let _w = lock(&self.inner.writer);
            let seq = self.inner.store.applied_seq()? + 1;
            self.apply_locked(seq, cmd)?
        };
        self.sync_if_configured()?;
        Ok(executed)
    }

    /// Applies `cmd` as sequence `seq` (e.g. a Raft log index). A `seq` not above the applied
    /// one is a no-op answered with [`Outcome::AlreadyApplied`]. Gaps are allowed.
    pub fn apply(&self, seq: u64, cmd: &Command) -> Result<Executed, EngineError> {
        let executed = {
            let _w = lock(&self.inner.writer);
            self.apply_locked(seq, cmd)?
        };
        self.sync_if_configured()?;
        Ok(executed)
    }

    fn apply_locked(&self, seq: u64, cmd: &Command) -> Result<Executed, EngineError> {
        let applied = self.inner.store.apply(seq, cmd)?;
        if !matches!(applied.outcome, Outcome::AlreadyApplied { .. }) {
            self.send_to_index(seq, applied.changed);
        }
        Ok(Executed {
            seq,
            outcome: applied.outcome,
        })
    }

    fn sync_if_configured(&self) -> Result<(), EngineError> {
        if self.inner.config.durability == Durability::Sync {
            self.inner.store.flush()?;
        }
        Ok(())
    }

    /// Flushes the store to disk now. Everything applied before the call is durable after it.
    pub fn flush(&self) -> Result<(), EngineError> {
        self.inner.store.flush()?;
        Ok(())
    }

    /// Makes every change applied so far searchable, and waits for it.
    pub fn refresh(&self) -> Result<(), EngineError> {
        if let Some(index) = self.index() {
            index.refresh()?;
        }
        Ok(())
    }

    /// Makes every change applied so far searchable, then merges the index into one segment;
    /// returns how many segments there were. Meant for after a bulk import: every read pays a
    /// fixed cost per segment (term lookups, scorer setup), so one segment serves fastest. The
    /// indexer does nothing else while it merges (seconds per million musicians); writes are
    /// still accepted and become searchable afterwards.
    ///
    /// ```
    /// # use mussikon_engine::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let engine = Engine::open(dir.path(), Config::default()).unwrap();
    /// let segments_before = engine.compact_index().unwrap();
    /// assert!(segments_before <= 1, "an empty index has at most one segment");
    /// ```
    pub fn compact_index(&self) -> Result<usize, EngineError> {
        match self.index() {
            Some(index) => Ok(index.compact()?),
            None => Ok(0),
        }
    }

    /// Waits, without forcing a commit, until the changes of sequence `seq` are searchable;
    /// false if `timeout` passed first. Writes become visible within
    /// [`Config::index_commit_interval`] plus the commit's own time.
    ///
    /// ```
    /// # use mussikon_engine::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let engine = Engine::open(dir.path(), Config::default()).unwrap();
    /// # let m = serde_json::from_str(r#"{"id":"m-1","name":"Ana","instruments":[{"name":"guitar","level":4}],
    /// #   "location":{"lat":40.42,"lon":-3.70},"travel_radius_km":50,"fee":{"amount":10000,"currency":"EUR"}}"#).unwrap();
    /// let done = engine.upsert_musician(m).unwrap();
    /// assert!(engine.wait_visible(done.seq, std::time::Duration::from_secs(10)));
    /// ```
    pub fn wait_visible(&self, seq: u64, timeout: Duration) -> bool {
        // Without an index nothing is searched, so nothing waits to become searchable.
        self.index()
            .is_none_or(|index| index.wait_visible(seq, timeout))
    }

    /// Whether the engine keeps a search index ([`Config::index_enabled`]): without one,
    /// [`Engine::search`] and [`Engine::match_gig`] answer [`EngineError::NoIndex`].
    pub fn searchable(&self) -> bool {
        self.inner.index.is_some()
    }

    /// Last applied sequence number.
    pub fn applied_seq(&self) -> Result<u64, EngineError> {
        Ok(self.inner.store.applied_seq()?)
    }

    /// Counters for health checks and metrics.
    pub fn status(&self) -> Result<Status, EngineError> {
        let (musicians, gigs) = self.inner.store.counts()?;
        let applied_seq = self.inner.store.applied_seq()?;
        // Without an index there is nothing to lag: it reports the store's sequence.
        let (index_seq, oldest_pending, overlaid) = match self.index() {
            Some(index) => {
                let v = index.visibility();
                (
                    v.seq,
                    v.oldest_pending,
                    index.published().overlay.musicians(),
                )
            }
            None => (applied_seq, None, 0),
        };
        Ok(Status {
            applied_seq,
            index_seq,
            index_lag_ms: oldest_pending
                .map(|t| t.elapsed().as_millis() as u64)
                .unwrap_or(0),
            index_overlay_musicians: overlaid as u64,
            musicians,
            gigs,
            store_bytes: self.inner.store.size_on_disk()?,
        })
    }

    /// A stored musician.
    pub fn musician(&self, id: &str) -> Result<Option<MusicianView>, EngineError> {
        if !is_valid_id(id) {
            return Ok(None);
        }
        Ok(self.inner.store.musician(id)?.map(|r| MusicianView {
            musician: r.musician,
            version: r.version,
            booked: r.booked,
        }))
    }

    /// A stored gig with its bookings.
    pub fn gig(&self, id: &str) -> Result<Option<GigView>, EngineError> {
        if !is_valid_id(id) {
            return Ok(None);
        }
        Ok(self.inner.store.gig(id)?.map(gig_view))
    }

    /// Up to `limit` musicians with id greater than `after`, in id order.
    pub fn list_musicians(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MusicianView>, EngineError> {
        self.inner
            .store
            .musicians_after(after)
            .take(limit)
            .map(|r| {
                let r = r?;
                Ok(MusicianView {
                    musician: r.musician,
                    version: r.version,
                    booked: r.booked,
                })
            })
            .collect()
    }

    /// Up to `limit` gigs with id greater than `after`, in id order.
    pub fn list_gigs(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<GigView>, EngineError> {
        self.inner
            .store
            .gigs_after(after)
            .take(limit)
            .map(|r| Ok(gig_view(r?)))
            .collect()
    }

    /// Up to `limit` chat messages of a gig numbered above `after` (all when `None`), in
    /// posting order. [`EngineError::NotFound`] when the gig does not exist.
    ///
    /// ```
    /// # use mussikon_engine::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let engine = Engine::open(dir.path(), Config::default()).unwrap();
    /// # let g = serde_json::from_str(r#"{"id":"g-1","title":"Wedding","date":"2026-12-05",
    /// #   "location":{"lat":40.42,"lon":-3.70},"radius_km":30,"slots":[{"instrument":"guitar","count":1}],
    /// #   "budget":{"max_fee":20000,"currency":"EUR"}}"#).unwrap();
    /// engine.upsert_gig(g).unwrap();
    /// engine.execute(&Command::PostMessage { gig_id: "g-1".into(), message_id: None,
    ///     author: "m-1".into(), text: "Hi!".into(), at: Timestamp::Millis(0) }).unwrap();
    /// let thread = engine.messages("g-1", None, 10).unwrap();
    /// assert_eq!((thread[0].seq, thread[0].at.as_str()), (1, "1970-01-01T00:00:00.000Z"));
    /// ```
    pub fn messages(
        &self,
        gig_id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>, EngineError> {
        let missing = || EngineError::NotFound {
            kind: "gig",
            id: gig_id.to_string(),
        };
        if !is_valid_id(gig_id) || self.inner.store.gig(gig_id)?.is_none() {
            return Err(missing());
        }
        Ok(self
            .inner
            .store
            .messages_after(gig_id, after.unwrap_or(0))
            .take(limit)
            .collect::<Result<_, _>>()?)
    }

    /// Verifies the engine's invariants: bookings recorded on both sides, every gig's messages
    /// numbered without gaps and indexed, and every stored musician indexed exactly once with
    /// the index agreeing with the store, down to the match facts scans read through the facts
    /// overlay (call [`Engine::refresh`] first, with no writes running). Returns the violations
    /// found; empty means consistent.
    pub fn check_consistency(&self) -> Result<Vec<String>, EngineError> {
        let mut problems = self.inner.store.check_bookings()?;
        problems.extend(self.inner.store.check_messages()?);
        let Some(index) = self.index() else {
            return Ok(problems);
        };
        // The searcher and overlay scans use, for the ids and the facts alike.
        let published = index.published();
        let ids = published
            .searcher
            .search(&AllQuery, &crate::index::IdCollector { scoring: false })
            .map_err(IndexError::from)?;
        let mut indexed: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
        indexed.sort();
        let stored: Vec<String> = self
            .inner
            .store
            .musicians_after(None)
            .map(|r| r.map(|m| m.musician.id))
            .collect::<Result<_, _>>()?;
        if indexed != stored {
            let dup = indexed.windows(2).filter(|w| w[0] == w[1]).count();
            problems.push(format!(
                "index holds {} documents ({} duplicated), store {} musicians",
                indexed.len(),
                dup,
                stored.len()
            ));
        }
        problems.extend(self.check_index_facts(&published)?);
        Ok(problems)
    }

    /// Every live document's match facts, as scans read them (through the facts overlay),
    /// against its musician's stored record.
    fn check_index_facts(
        &self,
        published: &crate::index::Published,
    ) -> Result<Option<String>, EngineError> {
        let (mut wrong, mut first) = (0usize, None);
        for seg in published.searcher.segment_readers() {
            let cols = self.inner.columns.get(seg).map_err(IndexError::from)?;
            let mut overlay =
                crate::overlay::SegmentOverlay::new(published.overlay.segment(seg.segment_id()));
            let alive = seg.alive_bitset();
            for doc in 0..seg.max_doc() {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                let id = crate::index::stored_id(&cols, doc)?;
                let facts = overlay.facts(&cols, doc);
                let agrees = match self.inner.store.musician(&id)? {
                    Some(rec) => facts == Some(crate::index::doc_facts(&rec)),
                    None => true, // counted above, with the ids
                };
                if !agrees {
                    wrong += 1;
                    first.get_or_insert(id);
                }
            }
        }
        Ok(first.map(|id| {
            format!("{wrong} index documents disagree with the store on their match facts (first: {id})")
        }))
    }

    fn fetch(&self, ids: Vec<String>) -> Result<Vec<MusicianRecord>, EngineError> {
        let store = &self.inner.store;
        let recs: Result<Vec<Option<MusicianRecord>>, StoreError> =
            ids.par_iter().map(|id| store.musician(id)).collect();
        Ok(recs?.into_iter().flatten().collect())
    }

    fn candidates(
        &self,
        query: &dyn Query,
        scoring: bool,
    ) -> Result<Vec<(String, f32)>, EngineError> {
        let searcher = self.searchable_index()?.published().searcher;
        Ok(searcher
            .search(query, &crate::index::IdCollector { scoring })
            .map_err(IndexError::from)?)
    }

    /// Searches musicians. See [`crate::search`] for the exact semantics.
    ///
    /// Without free text the index answers alone ([`crate::search_scan`]): filters and sort keys
    /// come from fast fields, and only the page's musicians are read from the store. With text,
    /// every candidate is fetched and re-checked, because the text rule is defined on the stored
    /// name and bio, not on the index's tokens.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage, EngineError> {
        let q = query.validated()?;
        let text_tokens = q.text.as_deref().map(search::tokens).unwrap_or_default();
        let query = self.search_query(&q, &text_tokens);
        let hits = if text_tokens.is_empty() {
            self.search_by_index(&q, &query)?
        } else {
            self.search_by_records(&q, &text_tokens, &query)?
        };
        Ok(search_page(&q, hits))
    }

    /// The term part of a search: what the index can decide by itself.
    fn search_query(&self, q: &SearchQuery, text_tokens: &[String]) -> BooleanQuery {
        let f = self.inner.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for t in text_tokens {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.text, t),
                    IndexRecordOption::WithFreqs,
                )),
            ));
        }
        if !q.instruments.is_empty() {
            let terms: Vec<String> = q
                .instruments
                .iter()
                .map(|i| crate::index::inst_term(&i.name, i.min_level))
                .collect();
            match q.instrument_mode {
                InstrumentMode::Any => clauses.push(filter(any_term(f.inst, terms))),
                InstrumentMode::All => {
                    for t in terms {
                        clauses.push(filter(term(f.inst, &t)));
                    }
                }
            }
        }
        if !q.genres.is_empty() {
            clauses.push(filter(any_term(f.genre, q.genres.clone())));
        }
        if let Some(n) = &q.near {
            // With instruments, the circle is a `place` cover of those the query needs: any of
            // them (mode any) or the first (mode all; the others are required above anyway).
            let names: Vec<&str> = match q.instrument_mode {
                InstrumentMode::Any => q.instruments.iter().map(|i| i.name.as_str()).collect(),
                InstrumentMode::All => q
                    .instruments
                    .iter()
                    .take(1)
                    .map(|i| i.name.as_str())
                    .collect(),
            };
            let place = if names.is_empty() {
                None
            } else {
                place_cover(n.point(), n.radius_km, &names)
            };
            clauses.push(filter(match place {
                Some(terms) => any_term(f.place, terms),
                None => any_term(
                    f.home,
                    crate::geo::home_cover(n.point(), n.radius_km, HOME_COVER_CELLS_SEARCH),
                ),
            }));
        }
        if let Some(d) = &q.available_on {
            clauses.push((Occur::MustNot, term(f.unavail, d)));
        }
        if !clauses.iter().any(|(o, _)| *o == Occur::Must) {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        BooleanQuery::new(clauses)
    }

    /// Hits of a search without text, at most `limit + 1` past the cursor, from the index plus
    /// the musicians changed since the searcher's sequence (see [`Engine::fresh_view`]).
    fn search_by_index(
        &self,
        q: &SearchQuery,
        query: &BooleanQuery,
    ) -> Result<Vec<(f64, SearchHit)>, EngineError> {
        let limit = q.limit.unwrap_or(search::DEFAULT_LIMIT);
        let after = q.cursor.as_deref().and_then(Cursor::decode);
        let view = self.fresh_view()?;
        let job = Arc::new(crate::search_scan::SearchJob {
            sort: q.sort,
            near: q.near.map(|n| (n.point(), n.radius_km)),
            include_inactive: q.include_inactive,
            max_fee: q
                .max_fee
                .as_ref()
                .map(|m| (crate::index::currency_code(&m.currency), m.amount)),
            min_rating: q.min_rating,
            after: after.clone(),
            keep: limit + 1,
            exclude: Arc::clone(&view.exclude),
            overlay: Arc::clone(&view.overlay),
        });
        let fruit = view
            .searcher
            .search(
                query,
                &crate::search_scan::SearchCollector {
                    job,
                    columns: Arc::clone(&self.inner.columns),
                },
            )
            .map_err(IndexError::from)?;
        if let Some(why) = fruit.corrupt {
            return Err(IndexError::Corrupt(why).into());
        }
        let mut page: Vec<(f64, String, Option<f64>)> = fruit
            .docs
            .into_iter()
            .map(|d| (d.key, d.id, d.distance_km))
            .collect();
        for rec in &view.changed {
            if matches_query(q, &[], rec) {
                let m = &rec.musician;
                let dist = q
                    .near
                    .map(|n| crate::geo::haversine_km(n.point(), m.location));
                page.push((search::sort_key(q.sort, 0.0, dist, m), m.id.clone(), dist));
            }
        }
        page.retain(|(k, id, _)| after.as_ref().is_none_or(|c| c.precedes(*k, id)));
        page.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        page.truncate(limit + 1);
        let mut hits = Vec::with_capacity(page.len());
        for (key, id, distance_km) in page {
            // A musician written after the scan is dropped rather than shown out of its rules.
            if let Some(rec) = self.inner.store.musician(&id)? {
                if matches_query(q, &[], &rec) {
                    hits.push((
                        key,
                        SearchHit {
                            musician: rec.musician,
                            distance_km,
                            relevance: 0.0,
                        },
                    ));
                }
            }
        }
        Ok(hits)
    }

    /// Hits of a text search: every candidate fetched and re-checked against its record.
    fn search_by_records(
        &self,
        q: &SearchQuery,
        text_tokens: &[String],
        query: &BooleanQuery,
    ) -> Result<Vec<(f64, SearchHit)>, EngineError> {
        let found = self.candidates(query, true)?;
        let relevance: std::collections::HashMap<String, f32> = found.iter().cloned().collect();
        let ids: Vec<String> = relevance.keys().cloned().collect();
        let recs = self.fetch(ids)?;
        Ok(recs
            .into_par_iter()
            .filter(|r| matches_query(q, text_tokens, r))
            .map(|r| {
                let rel = relevance.get(&r.musician.id).copied().unwrap_or(0.0) as f64;
                let dist = q
                    .near
                    .map(|n| crate::geo::haversine_km(n.point(), r.musician.location));
                let key = search::sort_key(q.sort, rel, dist, &r.musician);
                (
                    key,
                    SearchHit {
                        musician: r.musician,
                        distance_km: dist,
                        relevance: rel,
                    },
                )
            })
            .collect())
    }

    /// Ranks candidates for every slot of a gig and assigns its open seats optimally.
    /// See [`crate::matching`] for the exact rules.
    pub fn match_gig(&self, req: &MatchRequest) -> Result<MatchResult, EngineError> {
        let mut c = crate::validate::Checker::default();
        let k = req.k.unwrap_or(DEFAULT_K);
        c.check(
            (1..=MAX_K).contains(&k),
            "k",
            "must be an integer from 1 to 100",
        );
        let weights = match req.weights.unwrap_or_default().normalized() {
            Ok(w) => w,
            Err(rule) => {
                c.fail("weights", rule);
                Weights::default()
            }
        };
        c.finish(())?;
        let (gig, booked): (Gig, Vec<(i64, String)>) = match &req.target {
            MatchTarget::Stored(id) => {
                let rec = self
                    .inner
                    .store
                    .gig(id)?
                    .filter(|_| is_valid_id(id))
                    .ok_or_else(|| EngineError::NotFound {
                        kind: "gig",
                        id: id.clone(),
                    })?;
                (rec.gig, rec.bookings)
            }
            MatchTarget::AdHoc(g) => (validate_gig(g.clone())?, Vec::new()),
        };
        let open: Vec<usize> = gig
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let taken = booked.iter().filter(|(b, _)| *b == i as i64).count();
                (s.count.max(0) as usize).saturating_sub(taken)
            })
            .collect();
        let total_open: usize = open.iter().sum();
        let keep = k.max(total_open);
        let mut slots = Vec::with_capacity(gig.slots.len());
        let mut lists = Vec::with_capacity(gig.slots.len());
        let view = self.fresh_view()?;
        // Slots are scanned in parallel (rayon); each scan is exact on its own.
        let scanned: Vec<Result<(Vec<Candidate>, usize), EngineError>> = gig
            .slots
            .par_iter()
            .map(|slot| self.slot_candidates(&view, &gig, slot, &weights, keep))
            .collect();
        for ((i, slot), found) in gig.slots.iter().enumerate().zip(scanned) {
            let (mut cands, eligible) = found?;
            cands.truncate(keep);
            slots.push(SlotMatches {
                slot: i,
                instrument: slot.instrument.clone(),
                open_seats: open[i],
                candidates: cands.iter().take(k).cloned().collect(),
                eligible,
            });
            lists.push(cands);
        }
        let assignment = assign(&lists, &open);
        Ok(MatchResult {
            gig_id: gig.id.clone(),
            date: gig.date.clone(),
            slots,
            assignment,
        })
    }

    /// A searcher plus what it does not yet know: the musicians changed after the sequence it
    /// covers, with their current stored records and their documents in the searcher, which
    /// readers must skip.
    fn fresh_view(&self) -> Result<FreshView, EngineError> {
        // Order matters: the sequence first, then the change log, then the searcher. The
        // searcher then covers at least `seq`, and every change after `seq` that it might not
        // cover is still in the log (the log is pruned only after the reader has reloaded).
        let index = self.searchable_index()?;
        let seq = index.visibility().seq;
        let changed_ids = self.inner.store.changed_since(seq)?;
        let crate::index::Published { searcher, overlay } = index.published();
        let f = self.inner.fields;
        let mut exclude = HashSet::new();
        let mut changed = Vec::with_capacity(changed_ids.len());
        for id in changed_ids {
            exclude.extend(crate::index::docs_of(&searcher, f.id, &id)?);
            changed.push(self.inner.store.musician(&id)?);
        }
        Ok(FreshView {
            searcher,
            overlay,
            exclude: Arc::new(exclude),
            changed: changed.into_iter().flatten().collect(),
        })
    }

    /// Eligible candidates of one slot, ranked, at least the best `keep` of them (more when
    /// tied), and how many were eligible in all. Exact with respect to the store: documents of
    /// musicians changed since the searcher's sequence are replaced by their stored records.
    fn slot_candidates(
        &self,
        view: &FreshView,
        gig: &Gig,
        slot: &crate::model::Slot,
        weights: &Weights,
        keep: usize,
    ) -> Result<(Vec<Candidate>, usize), EngineError> {
        let f = self.inner.fields;
        let query = self.slot_query(gig, slot);
        let job = Arc::new(crate::slot_scan::SlotJob {
            gig: gig.clone(),
            slot: slot.clone(),
            weights: *weights,
            keep,
            currency: crate::index::currency_code(&gig.budget.currency),
            exclude: Arc::clone(&view.exclude),
            overlay: Arc::clone(&view.overlay),
        });
        let fruit = view
            .searcher
            .search(
                &query,
                &crate::slot_scan::SlotCollector {
                    fields: f,
                    job,
                    columns: Arc::clone(&self.inner.columns),
                },
            )
            .map_err(IndexError::from)?;
        let mut cands = Vec::with_capacity(fruit.best.len() + view.changed.len());
        for h in fruit.best {
            let cols = self
                .inner
                .columns
                .get(view.searcher.segment_reader(h.segment))
                .map_err(IndexError::from)?;
            let id = crate::index::stored_id(&cols, h.doc)?;
            cands.push(Candidate {
                musician_id: id,
                score: h.score,
                components: h.components,
                distance_km: h.distance_km,
            });
        }
        let mut eligible = fruit.eligible;
        for rec in &view.changed {
            if let Some(c) = evaluate_record(gig, slot, rec, weights) {
                eligible += 1;
                cands.push(c);
            }
        }
        rank(&mut cands);
        Ok((cands, eligible))
    }

    /// The term part of a slot scan: free on the date, and either plays the instrument with a
    /// home in the `place` cover of the gig's circle (the level is checked by the collector),
    /// or, for circles too wide for the place levels, plays it at the minimum level with a home
    /// in the `home` cover.
    fn slot_query(&self, gig: &Gig, slot: &crate::model::Slot) -> BooleanQuery {
        let f = self.inner.fields;
        let mut clauses = vec![(Occur::MustNot, term(f.unavail, &gig.date))];
        match place_cover(gig.location, gig.radius_km, &[&slot.instrument]) {
            Some(terms) => clauses.push(filter(any_term(f.place, terms))),
            None => {
                clauses.push(filter(term(
                    f.inst,
                    &crate::index::inst_term(&slot.instrument, slot.min_level),
                )));
                clauses.push(filter(any_term(
                    f.home,
                    crate::geo::home_cover(gig.location, gig.radius_km, HOME_COVER_CELLS_MATCH),
                )));
            }
        }
        BooleanQuery::new(clauses)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn writer_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.inner.writer)
    }

    /// Held by an export for its whole length: keeps installs out (see `Inner::exports`).
    pub(crate) fn exports_running(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner.exports.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by an install: waits for running exports and keeps new ones out.
    pub(crate) fn no_exports_running(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.inner
            .exports
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the changes of `seq` to the indexer, when the engine keeps an index.
    pub(crate) fn send_to_index(&self, seq: u64, docs: Vec<crate::store::Changed>) {
        if let Some(index) = self.index() {
            index.send(seq, docs);
        }
    }

    /// The search index, when the engine keeps one.
    pub(crate) fn index(&self) -> Option<&IndexHandle> {
        self.inner.index.as_ref()
    }

    /// The search index, for a read that needs it: [`EngineError::NoIndex`] without one.
    fn searchable_index(&self) -> Result<&IndexHandle, EngineError> {
        self.index().ok_or(EngineError::NoIndex)
    }

    /// Convenience: book a musician (same as `execute(&Command::Book(..))`).
    pub fn book(&self, booking: Booking) -> Result<Executed, EngineError> {
        self.execute(&Command::Book(booking))
    }

    /// Convenience: upsert one musician.
    pub fn upsert_musician(&self, musician: Musician) -> Result<Executed, EngineError> {
        self.execute(&Command::UpsertMusician { musician })
    }

    /// Convenience: upsert one gig.
    pub fn upsert_gig(&self, gig: Gig) -> Result<Executed, EngineError> {
        self.execute(&Command::UpsertGig { gig })
    }
}

fn gig_view(r: GigRecord) -> GigView {
    let bookings = r
        .bookings
        .iter()
        .map(|(slot, m)| Booking {
            gig_id: r.gig.id.clone(),
            slot: *slot,
            musician_id: m.clone(),
        })
        .collect();
    GigView {
        gig: r.gig,
        version: r.version,
        bookings,
    }
}

/// The exact search predicate on a stored record.
/// Orders hits by `(key, id)`, drops those at or before the cursor, and cuts the page.
fn search_page(q: &SearchQuery, mut hits: Vec<(f64, SearchHit)>) -> SearchPage {
    hits.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| a.1.musician.id.cmp(&b.1.musician.id))
    });
    if let Some(cur) = q.cursor.as_deref().and_then(Cursor::decode) {
        let start = hits.partition_point(|(k, h)| !cur.precedes(*k, &h.musician.id));
        hits.drain(..start);
    }
    let limit = q.limit.unwrap_or(search::DEFAULT_LIMIT);
    let more = hits.len() > limit;
    hits.truncate(limit);
    let next_cursor = if more {
        hits.last().map(|(k, h)| {
            Cursor {
                key: *k,
                id: h.musician.id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    SearchPage {
        hits: hits.into_iter().map(|(_, h)| h).collect(),
        next_cursor,
    }
}

fn matches_query(q: &SearchQuery, text_tokens: &[String], r: &MusicianRecord) -> bool {
    let m = &r.musician;
    if !q.include_inactive && !m.active {
        return false;
    }
    if !text_tokens.is_empty() {
        let mut have = search::tokens(&m.name);
        if let Some(b) = &m.bio {
            have.extend(search::tokens(b));
        }
        if !text_tokens.iter().all(|t| have.contains(t)) {
            return false;
        }
    }
    if !q.instruments.is_empty() {
        let ok =
            |f: &search::InstrumentFilter| m.level_on(&f.name).is_some_and(|l| l >= f.min_level);
        let pass = match q.instrument_mode {
            InstrumentMode::Any => q.instruments.iter().any(ok),
            InstrumentMode::All => q.instruments.iter().all(ok),
        };
        if !pass {
            return false;
        }
    }
    if !q.genres.is_empty() && !q.genres.iter().any(|g| m.genres.contains(g)) {
        return false;
    }
    if let Some(n) = &q.near {
        if crate::geo::haversine_km(n.point(), m.location) > n.radius_km {
            return false;
        }
    }
    if let Some(d) = &q.available_on {
        if m.busy.contains(d) || r.booked.iter().any(|b| &b.date == d) {
            return false;
        }
    }
    if let Some(f) = &q.max_fee {
        if m.fee.currency != f.currency || m.fee.amount > f.amount {
            return false;
        }
    }
    if let Some(min) = q.min_rating {
        if m.bayesian_rating() < min {
            return false;
        }
    }
    true
}
