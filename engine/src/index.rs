//! The search index: a tantivy index derived from the store, and the thread that keeps it so.
//!
//! One document per musician. Terms carry what the matcher filters on: `inst` holds
//! `"{instrument}@{l}"` for every level `l` up to the musician's (so "plays guitar at level ≥ 3"
//! is one term, `guitar@3`), `genre`, `unavail` (busy and booked dates), `home` (the location's
//! cell at every other grid level, [`crate::geo::HOME_LEVELS`]), `place`
//! (`"{cell}|{instrument}"` for every instrument played at level ≥ 1 and the home cell at each
//! of [`crate::geo::PLACE_LEVELS`], so that a query near a point reads only the musicians who
//! play the instrument there, not everyone who lives there) and `text` (name and bio, for free-text search). Fast (columnar) fields carry what readers
//! test or score per document: `lat`, `lon`, `radius` (travel radius), `bayes` (Bayesian
//! rating), `fee`, `currency` (the code packed by [`currency_code`]) and `active` (0 or 1).
//! `id` is an indexed and fast string, the way back to the store; ids of up to 16 bytes are
//! also packed into the fast u64 fields `id0`, `id1` (see [`pack_id`]), because reading an id
//! back from the string column's dictionary costs about 100k instructions (it decodes a
//! dictionary block from its start) and two column reads cost about 20.
//!
//! Promises:
//! - The index is derived: the store alone is the truth, and every read path re-checks the
//!   stored record before returning it, so a stale document can only cause a miss within the
//!   visibility bound, never a wrong answer.
//! - Writes become visible within `commit_interval` (default 250 ms): the indexer thread batches
//!   changes, commits, and reloads the reader explicitly. [`IndexHandle::refresh`] forces it.
//!   Under a backlog (changes queued faster than they are indexed, as in a bulk import) a
//!   commit waits for the queue to drain, at most [`BACKLOG_COMMIT_FACTOR`] intervals, so that
//!   bulk loads make large segments instead of many small ones to merge. Readers stay exact
//!   meanwhile: the engine evaluates changes the searcher lacks from the store.
//! - A change that leaves a musician's terms as they were ([`same_terms`]: only the fee,
//!   currency, travel radius, active flag or rating differ) is not re-indexed: its new facts go
//!   to the facts overlay ([`crate::overlay`]), published with each searcher
//!   ([`IndexHandle::published`]), which scans read facts through.
//! - Each commit's payload records the applied sequence it covers and, while the overlay holds
//!   changes, the first of them (`overlay_since`): the index covers in full the lower of the two
//!   (see [`read_payload`]), and the change log is pruned only up to it. On open, an index behind the
//!   store is brought up to date from the store's change log; a missing, unreadable, damaged
//!   (tantivy errors or panics on it) or older-schema index, or one older than the change log
//!   reaches, is deleted and rebuilt from the store, with progress logged.

use crate::columns::DocFacts;
use crate::geo::point_cell;
use crate::overlay::{FactsOverlay, FoldPolicy, OverlayState};
use crate::store::{Changed, MusicianRecord, Store, StoreError};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::StrColumn;
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STRING,
};
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term,
};

/// Bumped whenever the document layout changes; an index with another version is rebuilt.
const SCHEMA_VERSION: u32 = 8;

/// Errors from the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// tantivy failed.
    #[error("index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The store failed while the index read from it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Filesystem error around the index directory.
    #[error("index directory: {0}")]
    Io(#[from] std::io::Error),
    /// The index contradicts itself (a document without its id, say); reopening rebuilds it.
    #[error("index is inconsistent: {0}")]
    Corrupt(String),
    /// The indexer thread is gone (the engine is shutting down).
    #[error("the indexer thread has stopped")]
    Stopped,
}

#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub id: Field,
    pub text: Field,
    pub inst: Field,
    pub genre: Field,
    pub unavail: Field,
    pub home: Field,
    pub place: Field,
    pub currency: Field,
    pub active: Field,
    pub fee: Field,
    pub lat: Field,
    pub lon: Field,
    pub radius: Field,
    pub bayes: Field,
    pub id_words: [Field; 2],
}

pub(crate) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | FAST),
        text: b.add_text_field("text", text_opts),
        inst: b.add_text_field("inst", STRING),
        genre: b.add_text_field("genre", STRING),
        unavail: b.add_text_field("unavail", STRING),
        home: b.add_text_field("home", STRING),
        place: b.add_text_field("place", STRING),
        currency: b.add_u64_field("currency", FAST),
        active: b.add_u64_field("active", FAST),
        fee: b.add_u64_field("fee", FAST),
        lat: b.add_f64_field("lat", FAST),
        lon: b.add_f64_field("lon", FAST),
        radius: b.add_f64_field("radius", FAST),
        bayes: b.add_f64_field("bayes", FAST),
        id_words: [b.add_u64_field("id0", FAST), b.add_u64_field("id1", FAST)],
    };
    (b.build(), fields)
}

/// A currency code as one `u64` for the `currency` fast field: its bytes, big-endian, in the
/// low bytes. Injective for the codes validation admits (three upper-case ASCII letters) and
/// for any string up to eight bytes; longer strings never reach the index.
pub(crate) fn currency_code(code: &str) -> u64 {
    code.bytes()
        .take(8)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(b))
}

pub(crate) fn inst_term(instrument: &str, min_level: i64) -> String {
    format!("{instrument}@{min_level}")
}

/// The `place` term of a musician who plays `instrument` (at any level ≥ 1) and lives in `cell`
/// (a [`crate::geo`] cell term, which holds no `|`).
pub(crate) fn place_term(cell: &str, instrument: &str) -> String {
    format!("{cell}|{instrument}")
}

/// What a musician's document is built from besides its [`DocFacts`]: every input of its terms
/// and of its fixed columns (`lat`, `lon`, the id words). [`document`] reads a record only
/// through this and [`doc_facts`], so two records with equal sources and equal facts have equal
/// documents, and two with equal sources have documents that differ at most in their facts'
/// columns, which the facts overlay ([`crate::overlay`]) can then stand in for.
#[derive(PartialEq)]
struct DocSource<'a> {
    id: &'a str,
    name: &'a str,
    bio: Option<&'a str>,
    instruments: &'a [crate::model::InstrumentSkill],
    genres: &'a [String],
    busy: &'a [String],
    booked: &'a [crate::model::BookedDate],
    location: crate::model::GeoPoint,
}

impl<'a> DocSource<'a> {
    fn of(rec: &'a MusicianRecord) -> DocSource<'a> {
        DocSource::of_parts(&rec.musician, &rec.booked)
    }

    fn of_parts(m: &'a crate::model::Musician, booked: &'a [crate::model::BookedDate]) -> Self {
        DocSource {
            id: &m.id,
            name: &m.name,
            bio: m.bio.as_deref(),
            instruments: &m.instruments,
            genres: &m.genres,
            busy: &m.busy,
            booked,
            location: m.location,
        }
    }
}

/// True when `old` and `new` have the same terms and fixed columns, so that the document of
/// `new` differs from that of `old` at most in the volatile facts (travel radius, rating, fee,
/// currency, active). Conservative: a false answer only costs a re-index.
pub(crate) fn same_terms(old: &MusicianRecord, new: &MusicianRecord) -> bool {
    DocSource::of(old) == DocSource::of(new)
}

/// [`same_terms`] for a profile replaced with the record's booked dates kept as they were.
pub(crate) fn same_profile_terms(
    old: &crate::model::Musician,
    new: &crate::model::Musician,
) -> bool {
    DocSource::of_parts(old, &[]) == DocSource::of_parts(new, &[])
}

/// The match facts of `rec` exactly as its document's columns hold them.
pub(crate) fn doc_facts(rec: &MusicianRecord) -> DocFacts {
    let m = &rec.musician;
    DocFacts {
        lat: m.location.lat,
        lon: m.location.lon,
        radius: m.travel_radius_km,
        bayes: m.bayesian_rating(),
        fee: m.fee.amount.max(0) as u64,
        currency: currency_code(&m.fee.currency),
        active: m.active,
    }
}

fn document(f: &Fields, rec: &MusicianRecord) -> TantivyDocument {
    let s = DocSource::of(rec);
    let facts = doc_facts(rec);
    let mut d = TantivyDocument::default();
    d.add_text(f.id, s.id);
    d.add_text(f.text, s.name);
    if let Some(bio) = s.bio {
        d.add_text(f.text, bio);
    }
    for i in s.instruments {
        for l in 1..=i.level.clamp(0, 5) {
            d.add_text(f.inst, inst_term(&i.name, l));
        }
    }
    for g in s.genres {
        d.add_text(f.genre, g);
    }
    for day in s.busy {
        d.add_text(f.unavail, day);
    }
    for b in s.booked {
        d.add_text(f.unavail, &b.date);
    }
    // Only the cells the document records (not all of `point_cells`: a re-index builds each).
    for level in crate::geo::PLACE_LEVELS {
        let cell = point_cell(s.location, *level);
        for i in s.instruments.iter().filter(|i| i.level >= 1) {
            d.add_text(f.place, place_term(&cell, &i.name));
        }
    }
    for level in crate::geo::HOME_LEVELS {
        d.add_text(f.home, point_cell(s.location, *level));
    }
    // The location's columns are fixed by the source (it gives the `home` terms too); the
    // rest are the volatile facts.
    d.add_f64(f.lat, s.location.lat);
    d.add_f64(f.lon, s.location.lon);
    d.add_u64(f.currency, facts.currency);
    d.add_u64(f.active, u64::from(facts.active));
    d.add_u64(f.fee, facts.fee);
    d.add_f64(f.radius, facts.radius);
    d.add_f64(f.bayes, facts.bayes);
    for (field, word) in f.id_words.iter().zip(pack_id(s.id)) {
        d.add_u64(*field, word);
    }
    d
}

/// An id of 1 to 16 bytes as two big-endian words, zero-padded; `[0, 0]` for a longer id
/// (readers then fall back to the `id` string column). Valid ids have no zero byte, so the
/// padding is unambiguous.
pub(crate) fn pack_id(id: &str) -> [u64; 2] {
    let bytes = id.as_bytes();
    if bytes.is_empty() || bytes.len() > 16 {
        return [0, 0];
    }
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    let (hi, lo) = buf.split_at(8);
    let word = |b: &[u8]| b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    [word(hi), word(lo)]
}

/// The id [`pack_id`] packed, or `None` for `[0, 0]` (not packed) or bytes that are not UTF-8.
pub(crate) fn unpack_id(words: [u64; 2]) -> Option<String> {
    if words[0] == 0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    bytes.extend_from_slice(&words[0].to_be_bytes());
    bytes.extend_from_slice(&words[1].to_be_bytes());
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    bytes.truncate(len);
    String::from_utf8(bytes).ok()
}

/// The musician id of document `doc`, read from its segment's packed id words, or from the
/// `id` column when the id is too long to be packed.
pub(crate) fn stored_id(
    cols: &crate::columns::SegmentColumns,
    doc: DocId,
) -> Result<String, IndexError> {
    if let (Some(w0), Some(w1)) = (cols.id0.first(doc), cols.id1.first(doc)) {
        if let Some(id) = unpack_id([w0, w1]) {
            return Ok(id);
        }
    }
    let col = &cols.id;
    let ord = col
        .term_ords(doc)
        .next()
        .ok_or_else(|| IndexError::Corrupt("index document without an id".into()))?;
    let mut bytes = Vec::new();
    if !col
        .ord_to_bytes(ord, &mut bytes)
        .map_err(|e| IndexError::Corrupt(e.to_string()))?
    {
        return Err(IndexError::Corrupt("index id ordinal out of range".into()));
    }
    String::from_utf8(bytes).map_err(|_| IndexError::Corrupt("index id is not UTF-8".into()))
}

/// Collects the ids (and scores, when asked) of matching documents without ranking them.
pub(crate) struct IdCollector {
    pub scoring: bool,
}

pub(crate) struct IdSegmentCollector {
    column: Option<StrColumn>,
    hits: Vec<(u64, Score)>,
}

impl Collector for IdCollector {
    type Fruit = Vec<(String, Score)>;
    type Child = IdSegmentCollector;

    fn for_segment(
        &self,
        _ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<IdSegmentCollector> {
        Ok(IdSegmentCollector {
            column: reader.fast_fields().str("id")?,
            hits: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(String, Score)>>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for IdSegmentCollector {
    type Fruit = Vec<(String, Score)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(col) = &self.column {
            if let Some(ord) = col.term_ords(doc).next() {
                self.hits.push((ord, score));
            }
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        let Some(col) = self.column else {
            return Vec::new();
        };
        // Resolve ordinals in sorted order: one pass over the dictionary's blocks.
        self.hits.sort_unstable_by_key(|h| h.0);
        let mut ords: Vec<u64> = self.hits.iter().map(|h| h.0).collect();
        ords.dedup();
        let mut names = Vec::with_capacity(ords.len());
        let found = col
            .dictionary()
            .sorted_ords_to_term_cb(ords.iter().copied(), |bytes| {
                names.push(String::from_utf8_lossy(bytes).into_owned());
                Ok(())
            });
        if !matches!(found, Ok(true)) || names.len() != ords.len() {
            tracing::error!("index id column is inconsistent; results of this segment skipped");
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.hits.len());
        let mut j = 0;
        for (ord, score) in self.hits {
            while ords[j] != ord {
                j += 1;
            }
            out.push((names[j].clone(), score));
        }
        out
    }
}

/// What the indexer thread is told.
enum IndexMsg {
    Change {
        seq: u64,
        docs: Vec<Changed>,
    },
    Commit(Sender<Result<u64, String>>),
    /// Commit, then merge every searchable segment into one; answers the segments merged.
    Compact(Sender<Result<usize, String>>),
    Stop,
}

/// Shared view of the index: the searcher of its last commit ([`IndexHandle::published`]) and
/// the sequence it covers.
pub(crate) struct IndexHandle {
    tx: Mutex<Sender<IndexMsg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    visible: Arc<(Mutex<VisibleState>, Condvar)>,
    published: Arc<Mutex<Published>>,
}

/// A searcher and the facts overlay of the same commit: scans read document facts through the
/// overlay ([`crate::overlay`]). Replaced before [`VisibleState::seq`] moves past its commit.
#[derive(Clone)]
pub(crate) struct Published {
    pub searcher: Searcher,
    pub overlay: Arc<FactsOverlay>,
}

#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct VisibleState {
    /// Highest applied sequence whose changes are searchable.
    pub seq: u64,
    /// Highest sequence handed to the indexer.
    pub sent: u64,
    /// When the oldest not-yet-visible change was sent.
    pub oldest_pending: Option<Instant>,
}

/// tantivy's log merge policy with a smaller floor: by default every segment under 10,000
/// documents counts as one size, so a collection of a few thousand musicians had its whole
/// index re-merged with every 8 small segments the commits cut (about once every 8 s under
/// steady writes, on every node). With a floor of 1,000 documents, small segments merge with
/// each other and reach a large one only once they are of its size.
fn merge_policy() -> tantivy::indexer::LogMergePolicy {
    let mut policy = tantivy::indexer::LogMergePolicy::default();
    policy.set_min_layer_size(MERGE_MIN_LAYER_DOCS);
    policy
}

/// See [`merge_policy`].
const MERGE_MIN_LAYER_DOCS: u32 = 1_000;

/// Fewest indexing threads a build of the whole index from the store uses, whatever
/// [`IndexOptions::writer_threads`] says (a rebuild is a bulk load; steady writes are a trickle).
const REBUILD_WRITER_THREADS: usize = 2;

pub(crate) struct IndexOptions {
    pub commit_interval: Duration,
    pub writer_threads: usize,
    pub writer_heap_bytes: usize,
    /// Run on every new searcher before it is handed out (the column cache: readers then never
    /// pay for opening a segment's columns).
    pub warmers: Vec<std::sync::Weak<dyn tantivy::Warmer>>,
    /// When the facts overlay is folded back into the index.
    pub fold: FoldPolicy,
}

/// The schema version and the sequence an index's last commit covers in full: its `seq`, or
/// just below its `overlay_since` when changes from there on lived only in the facts overlay
/// (which is not on disk; see [`crate::overlay`]).
fn read_payload(index: &Index) -> Option<(u32, u64)> {
    let payload = index.load_metas().ok()?.payload?;
    let v: serde_json::Value = serde_json::from_str(&payload).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    let since = v.get("overlay_since").and_then(|s| s.as_u64());
    Some((
        u32::try_from(v.get("schema")?.as_u64()?).ok()?,
        covered_in_full(seq, since),
    ))
}

/// The sequence an index at `seq` covers in full when the changes from `overlay_since` on live
/// only in the facts overlay: what an open must replay after, and what the change log may be
/// pruned up to.
fn covered_in_full(seq: u64, overlay_since: Option<u64>) -> u64 {
    match overlay_since {
        Some(since) => seq.min(since.saturating_sub(1)),
        None => seq,
    }
}

/// Every document (live or deleted) holding musician `id` in `searcher`: its segment's
/// ordinal and its doc id.
pub(crate) fn docs_of(
    searcher: &Searcher,
    id_field: Field,
    id: &str,
) -> Result<Vec<(SegmentOrdinal, DocId)>, IndexError> {
    let term = Term::from_field_text(id_field, id);
    let mut docs = Vec::new();
    for (ord, seg) in searcher.segment_readers().iter().enumerate() {
        let inv = seg.inverted_index(id_field)?;
        if let Some(mut p) = inv.read_postings(&term, IndexRecordOption::Basic)? {
            while p.doc() != tantivy::TERMINATED {
                docs.push((ord as SegmentOrdinal, p.doc()));
                p.advance();
            }
        }
    }
    Ok(docs)
}

/// Commits what the writer holds as covering `seq`, recording `overlay_since` (see
/// [`read_payload`]).
fn commit(writer: &mut IndexWriter, seq: u64, overlay_since: Option<u64>) -> tantivy::Result<()> {
    let mut prepared = writer.prepare_commit()?;
    let mut payload = serde_json::json!({"schema": SCHEMA_VERSION, "seq": seq});
    if let Some(since) = overlay_since {
        payload["overlay_since"] = since.into();
    }
    prepared.set_payload(&payload.to_string());
    prepared.commit()?;
    Ok(())
}

/// Brings the index from `seq` level with the store at `applied`: re-indexes every musician
/// changed since, then commits.
fn replay(
    writer: &mut IndexWriter,
    store: &Store,
    fields: &Fields,
    seq: u64,
    applied: u64,
) -> Result<(), IndexError> {
    let ids = store.changed_since(seq)?;
    tracing::info!(
        from = seq,
        to = applied,
        musicians = ids.len(),
        "index behind the store: replaying"
    );
    for id in ids {
        writer.delete_term(Term::from_field_text(fields.id, &id));
        if let Some(rec) = store.musician(&id)? {
            writer.add_document(document(fields, &rec))?;
        }
    }
    commit(writer, applied, None)?;
    Ok(())
}

fn open_index(dir: &Path) -> Result<(Index, Option<u64>), IndexError> {
    let (schema, _) = schema();
    if dir.join("meta.json").exists() {
        match Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => {
                if let Some((SCHEMA_VERSION, seq)) = read_payload(&index) {
                    return Ok((index, Some(seq)));
                }
                tracing::warn!("index payload missing or of another schema version: rebuilding");
            }
            Ok(_) => tracing::warn!("index schema differs from this build: rebuilding"),
            Err(e) => tracing::warn!(error = %e, "index unreadable: rebuilding"),
        }
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok((Index::create_in_dir(dir, schema)?, None))
}

/// An index brought level with the store, before its indexer thread starts.
struct Level {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    applied: u64,
}

/// Opens (or creates) the index in `dir` and brings it level with `store`: nothing to do when it
/// covers the store's applied sequence, a replay of the change log when it is behind and the
/// change log still reaches back to it, a build from the store otherwise.
fn bring_level(dir: &Path, store: &Store, opts: &IndexOptions) -> Result<Level, IndexError> {
    let (index, covered) = open_index(dir)?;
    let (_, fields) = schema();
    let writer_for = |threads: usize| -> Result<IndexWriter, IndexError> {
        let threads = threads.max(1);
        let writer: IndexWriter = index
            .writer_with_num_threads(threads, opts.writer_heap_bytes.max(15_000_000 * threads))?;
        writer.set_merge_policy(Box::new(merge_policy()));
        Ok(writer)
    };
    // A build from the store is a bulk load: it gets at least REBUILD_WRITER_THREADS threads,
    // then the writer is replaced by one with the configured threads for the trickle of writes.
    let rebuild_threads = opts.writer_threads.max(REBUILD_WRITER_THREADS);
    let mut writer = writer_for(if covered.is_none() {
        rebuild_threads
    } else {
        opts.writer_threads
    })?;
    let applied = store.applied_seq()?;
    let pruned = store.changes_pruned_upto()?;
    match covered {
        Some(seq) if seq >= applied => {}
        Some(seq) if seq >= pruned => {
            // A kill during a commit can leave files tantivy wrote but never listed in
            // meta.json; replaying the same changes would write them again and fail
            // (FileAlreadyExists). Collect them first.
            let _ = writer.garbage_collect_files().wait();
            replay(&mut writer, store, &fields, seq, applied)?;
        }
        Some(seq) => {
            // Older than what the change log still holds (an index directory restored from
            // elsewhere, say): a replay would miss changes.
            return Err(IndexError::Corrupt(format!(
                "the index covers sequence {seq}, the change log starts after {pruned}"
            )));
        }
        None => {
            let (total, _) = store.counts()?;
            tracing::info!(musicians = total, "building the index from the store");
            let started = Instant::now();
            let mut n = 0u64;
            for rec in store.musicians_after(None) {
                writer.add_document(document(&fields, &rec?))?;
                n += 1;
                if n.is_multiple_of(100_000) {
                    tracing::info!(done = n, total, "index rebuild progress");
                }
            }
            commit(&mut writer, applied, None)?;
            tracing::info!(
                musicians = n,
                secs = started.elapsed().as_secs_f64(),
                "index rebuilt"
            );
            if rebuild_threads != opts.writer_threads.max(1) {
                // Dropping a writer joins its threads and releases the directory lock.
                drop(writer);
                writer = writer_for(opts.writer_threads)?;
            }
        }
    }
    store.prune_changes(applied)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .warmers(opts.warmers.clone())
        .try_into()?;
    Ok(Level {
        writer,
        reader,
        fields,
        applied,
    })
}

/// [`bring_level`], with a panic (tantivy panics on some damaged files) turned into an error.
fn bring_level_guarded(
    dir: &Path,
    store: &Store,
    opts: &IndexOptions,
) -> Result<Level, IndexError> {
    // The closure's state is dropped with the panic; nothing half-built is used afterwards.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bring_level(dir, store, opts)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(IndexError::Corrupt(format!(
            "opening the index panicked: {what}"
        )))
    })
}

impl IndexHandle {
    /// Opens the index in `dir`, brings it level with `store`, and starts the indexer thread.
    /// An existing index that cannot be brought level (damaged files, a failed replay, older
    /// than the change log) is deleted and rebuilt from the store, which alone is the truth.
    pub(crate) fn open(
        dir: &Path,
        store: Arc<Store>,
        opts: IndexOptions,
    ) -> Result<IndexHandle, IndexError> {
        let level = match bring_level_guarded(dir, &store, &opts) {
            Ok(level) => level,
            Err(IndexError::Store(e)) => return Err(IndexError::Store(e)),
            Err(e) => {
                tracing::warn!(error = %e, "the index cannot be brought level with the store: rebuilding it");
                if dir.exists() {
                    std::fs::remove_dir_all(dir)?;
                }
                bring_level_guarded(dir, &store, &opts)?
            }
        };
        let Level {
            writer,
            reader,
            fields,
            applied,
        } = level;
        let (tx, rx) = mpsc::channel();
        let visible = Arc::new((
            Mutex::new(VisibleState {
                seq: applied,
                sent: applied,
                oldest_pending: None,
            }),
            Condvar::new(),
        ));
        let published = Arc::new(Mutex::new(Published {
            searcher: reader.searcher(),
            overlay: Arc::new(FactsOverlay::default()),
        }));
        let worker = Indexer {
            writer,
            reader,
            fields,
            store,
            visible: visible.clone(),
            published: published.clone(),
            interval: opts.commit_interval,
            overlay: OverlayState::default(),
            fold: opts.fold,
        };
        let thread = std::thread::Builder::new()
            .name("mussikon-indexer".into())
            .spawn(move || worker.run(rx))?;
        Ok(IndexHandle {
            tx: Mutex::new(tx),
            thread: Mutex::new(Some(thread)),
            visible,
            published,
        })
    }

    /// The searcher of the last commit and its facts overlay.
    pub(crate) fn published(&self) -> Published {
        lock(&self.published).clone()
    }

    /// Hands the changes of `seq` to the indexer. Called in sequence order by the writer.
    pub(crate) fn send(&self, seq: u64, docs: Vec<Changed>) {
        {
            let mut v = lock(&self.visible.0);
            v.sent = seq;
            if !docs.is_empty() && v.oldest_pending.is_none() {
                v.oldest_pending = Some(Instant::now());
            }
        }
        // A send only fails after stop(); the store stays correct and the next open replays.
        let _ = lock(&self.tx).send(IndexMsg::Change { seq, docs });
    }

    /// Commits everything sent so far and waits until it is searchable.
    pub(crate) fn refresh(&self) -> Result<u64, IndexError> {
        let (reply, wait) = mpsc::channel();
        lock(&self.tx)
            .send(IndexMsg::Commit(reply))
            .map_err(|_| IndexError::Stopped)?;
        match wait.recv() {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(IndexError::Tantivy(tantivy::TantivyError::InternalError(e))),
            Err(_) => Err(IndexError::Stopped),
        }
    }

    /// Commits everything sent so far, then merges the index into one segment.
    pub(crate) fn compact(&self) -> Result<usize, IndexError> {
        let (reply, wait) = mpsc::channel();
        lock(&self.tx)
            .send(IndexMsg::Compact(reply))
            .map_err(|_| IndexError::Stopped)?;
        match wait.recv() {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(IndexError::Tantivy(tantivy::TantivyError::InternalError(e))),
            Err(_) => Err(IndexError::Stopped),
        }
    }

    /// Sequence covered by the searchable index, and how long the oldest invisible change has
    /// waited.
    pub(crate) fn visibility(&self) -> VisibleState {
        *lock(&self.visible.0)
    }

    /// Waits until changes up to `seq` are searchable, or `timeout` passes. True when visible.
    pub(crate) fn wait_visible(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut v = lock(&self.visible.0);
        while v.seq < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            v = match self.visible.1.wait_timeout(v, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// Stops the indexer thread after a final commit.
    pub(crate) fn stop(&self) {
        let _ = lock(&self.tx).send(IndexMsg::Stop);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data under
    // these locks stays valid, so go on rather than spread the panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// While changes keep arriving faster than the indexer drains them, a commit waits for the
/// queue to empty, but never longer than this many commit intervals (5 s at the default 250 ms).
const BACKLOG_COMMIT_FACTOR: u32 = 20;

/// See [`Indexer::merge_all`]: how long it retries, and how often. A background merge of a
/// million documents takes about 10 s on the bench machine.
const MERGE_ALL_PATIENCE: Duration = Duration::from_secs(120);
const MERGE_ALL_RETRY_EVERY: Duration = Duration::from_millis(250);

/// Soonest an idle indexer wakes to fold its facts overlay (see [`crate::overlay`]), so that a
/// fold that failed is retried at this pace rather than in a spin.
const FOLD_RETRY_AFTER: Duration = Duration::from_secs(1);

struct Indexer {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    store: Arc<Store>,
    visible: Arc<(Mutex<VisibleState>, Condvar)>,
    published: Arc<Mutex<Published>>,
    interval: Duration,
    overlay: OverlayState,
    fold: FoldPolicy,
}

impl Indexer {
    fn run(mut self, rx: Receiver<IndexMsg>) {
        let mut pending_since: Option<Instant> = None;
        let mut last_seq = lock(&self.visible.0).seq;
        // A message taken off the queue to see whether a backlog is waiting.
        let mut next: Option<IndexMsg> = None;
        loop {
            let timeout = match (pending_since, self.overlay.age()) {
                (Some(t), _) => self.interval.saturating_sub(t.elapsed()),
                // Idle with facts in the overlay: wake when they are due to be folded.
                // (At least FOLD_RETRY_AFTER: a fold that failed is not retried in a spin.)
                (None, Some(age)) => self.fold.max_age.saturating_sub(age).max(FOLD_RETRY_AFTER),
                (None, None) => Duration::from_secs(3600),
            };
            let msg = match next.take() {
                Some(m) => Ok(m),
                None => rx.recv_timeout(timeout),
            };
            let mut reply = None;
            let mut compact = None;
            let mut stop = false;
            match msg {
                Ok(IndexMsg::Change { seq, docs }) => {
                    for c in docs {
                        match c.record {
                            // The document keeps its terms: only its facts change.
                            Some(rec) if c.facts_only && self.fold.max_musicians > 0 => {
                                self.overlay.set(c.id, doc_facts(&rec), seq);
                            }
                            record => {
                                self.overlay.forget(&c.id);
                                self.reindex(&c.id, c.created, record.as_ref());
                            }
                        }
                    }
                    last_seq = seq;
                    pending_since.get_or_insert_with(Instant::now);
                }
                Ok(IndexMsg::Commit(r)) => reply = Some(r),
                Ok(IndexMsg::Compact(r)) => compact = Some(r),
                Ok(IndexMsg::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let due = pending_since.is_some_and(|t| t.elapsed() >= self.interval);
            let asked = reply.is_some() || compact.is_some() || stop;
            // An idle node folds its overlay too, so the change log behind it is pruned.
            let fold_due = pending_since.is_none() && self.overlay.due(&self.fold);
            let mut commit_now = due || asked || fold_due;
            if due && !asked {
                // More changes are already queued (a bulk import, say): committing now would
                // cut a small segment that merges soon redo, and would not make the queued
                // changes visible any sooner. Drain first, up to BACKLOG_COMMIT_FACTOR
                // intervals.
                let overdue = pending_since
                    .is_some_and(|t| t.elapsed() >= self.interval * BACKLOG_COMMIT_FACTOR);
                if !overdue {
                    if let Ok(m) = rx.try_recv() {
                        next = Some(m);
                        commit_now = false;
                    }
                }
            }
            if commit_now {
                let result = self.commit_and_reload(last_seq);
                match &result {
                    Ok(()) => pending_since = None,
                    Err(e) if reply.is_none() && compact.is_none() => {
                        tracing::warn!(error = %e, "index commit failed; retried at the next one");
                    }
                    Err(_) => {}
                }
                if let Some(r) = compact {
                    // A failed commit is reported as it is, not merged over.
                    let merged = match &result {
                        Ok(()) => self.merge_all().map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = r.send(merged);
                }
                if let Some(r) = reply {
                    let _ = r.send(result.map(|_| last_seq).map_err(|e| e.to_string()));
                }
            }
            if stop {
                break;
            }
        }
    }

    /// Merges every searchable segment into one and reloads the reader; the number merged.
    /// Runs on the indexer thread, so indexing waits meanwhile.
    ///
    /// A merge the merge policy started in the background may still be running on some of the
    /// segments; the explicit merge then fails, at its start or at its end (tantivy: "segments
    /// that are not all uncommitted or committed", "the segments that were merged could not be
    /// found"). So no new background merge starts meanwhile, and a failed merge is retried on
    /// the segments as they then are, every [`MERGE_ALL_RETRY_EVERY`], until the running merges
    /// have had [`MERGE_ALL_PATIENCE`] to end.
    fn merge_all(&mut self) -> Result<usize, IndexError> {
        self.writer
            .set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        let started = Instant::now();
        let result = loop {
            match self.merge_all_once() {
                Err(IndexError::Tantivy(tantivy::TantivyError::InvalidArgument(why)))
                    if started.elapsed() < MERGE_ALL_PATIENCE =>
                {
                    tracing::info!(why, "merging the index raced a background merge: retrying");
                    std::thread::sleep(MERGE_ALL_RETRY_EVERY);
                }
                other => break other,
            }
        };
        self.writer.set_merge_policy(Box::new(merge_policy()));
        result
    }

    fn merge_all_once(&mut self) -> Result<usize, IndexError> {
        let ids = self.writer.index().searchable_segment_ids()?;
        if ids.len() > 1 {
            self.writer.merge(&ids).wait()?;
            self.reader.reload()?;
            self.publish()?;
        }
        Ok(ids.len())
    }

    /// Deletes `id`'s document (unless `created`: it has none) and adds `record`'s.
    fn reindex(&mut self, id: &str, created: bool, record: Option<&MusicianRecord>) {
        if !created {
            self.writer
                .delete_term(Term::from_field_text(self.fields.id, id));
        }
        if let Some(rec) = record {
            if let Err(e) = self.writer.add_document(document(&self.fields, rec)) {
                tracing::error!(error = %e, "indexing failed; the next open rebuilds");
            }
        }
    }

    /// Re-indexes every overlaid musician from the store and empties the overlay. The store
    /// may be ahead of the changes the indexer has seen; a document of a later state is
    /// harmless: readers evaluate musicians changed after the index's sequence from the store
    /// and skip their documents, and the later change re-indexes them again.
    fn fold_overlay(&mut self) -> Result<(), IndexError> {
        // Every record is read before the overlay is emptied: a failed read leaves it whole.
        let records = self
            .overlay
            .ids()
            .map(|id| Ok((id.to_string(), self.store.musician(id)?)))
            .collect::<Result<Vec<_>, IndexError>>()?;
        tracing::debug!(
            musicians = records.len(),
            "folding the facts overlay into the index"
        );
        self.overlay.clear();
        for (id, rec) in records {
            self.reindex(&id, false, rec.as_ref());
        }
        Ok(())
    }

    /// Publishes the reader's current searcher with the overlay found in it.
    fn publish(&mut self) -> Result<(), IndexError> {
        let searcher = self.reader.searcher();
        let overlay = self.overlay.publish(&searcher, self.fields.id)?;
        *lock(&self.published) = Published { searcher, overlay };
        Ok(())
    }

    fn commit_and_reload(&mut self, seq: u64) -> Result<(), IndexError> {
        let current = lock(&self.visible.0).seq;
        let fold = self.overlay.due(&self.fold);
        if fold {
            self.fold_overlay()?;
        }
        if seq > current || fold {
            commit(&mut self.writer, seq, self.overlay.since())?;
        }
        self.reader.reload()?;
        // Published before the sequence moves: a reader that sees the new sequence gets at
        // least this searcher and overlay.
        self.publish()?;
        {
            let mut v = lock(&self.visible.0);
            v.seq = v.seq.max(seq);
            if v.sent <= v.seq {
                v.oldest_pending = None;
            }
        }
        self.visible.1.notify_all();
        // Changes that live only in the overlay stay in the change log: an open replays them.
        if let Err(e) = self
            .store
            .prune_changes(covered_in_full(seq, self.overlay.since()))
        {
            tracing::warn!(error = %e, "could not prune the index change log");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packed_ids_round_trip(id in "[A-Za-z0-9._-]{1,16}") {
            prop_assert_eq!(unpack_id(pack_id(&id)), Some(id));
        }

        #[test]
        fn long_ids_are_not_packed(id in "[A-Za-z0-9._-]{17,64}") {
            prop_assert_eq!(pack_id(&id), [0, 0]);
            prop_assert_eq!(unpack_id(pack_id(&id)), None);
        }

        #[test]
        fn currency_codes_are_distinct(a in "[A-Z]{3}", b in "[A-Z]{3}") {
            prop_assert_eq!(currency_code(&a) == currency_code(&b), a == b);
        }
    }

    /// Process CPU seconds (user + system) from `/proc/self/stat`, in Linux's fixed 100 ticks
    /// per second.
    fn process_cpu_s() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    }

    /// A measurement, run by hand (docs/perf.md, "A text document split from the match
    /// document"): `cargo test --release -p mussikon-engine --lib reindex_cost -- --ignored
    /// --nocapture`. For each of three documents, re-indexes 150,000 generated musicians over
    /// 5,000 keys into a fresh on-disk index with the product's writer settings (one thread,
    /// 128 MB, `merge_policy()`), each a delete of the key's document and an add as the indexer
    /// does, committing every 4,500 (the cluster bench's second), waits for the merges, and
    /// prints the process CPU per document. It asserts only that each key keeps one document.
    #[cfg(target_os = "linux")]
    #[test]
    #[ignore]
    fn reindex_cost_per_document() {
        let gen = crate::generate::Generator::new(crate::generate::GenConfig {
            musicians: 5000,
            ..Default::default()
        })
        .unwrap();
        let recs: Vec<MusicianRecord> = gen
            .musicians()
            .map(|musician| MusicianRecord {
                musician,
                version: 1,
                booked: vec![],
            })
            .collect();
        let text_only = |f: &Fields, rec: &MusicianRecord| {
            let s = DocSource::of(rec);
            let mut d = TantivyDocument::default();
            d.add_text(f.id, s.id);
            d.add_text(f.text, s.name);
            if let Some(bio) = s.bio {
                d.add_text(f.text, bio);
            }
            for (field, word) in f.id_words.iter().zip(pack_id(s.id)) {
                d.add_u64(*field, word);
            }
            d
        };
        let without_text = |f: &Fields, rec: &MusicianRecord| {
            let mut rec = rec.clone();
            rec.musician.name.clear();
            rec.musician.bio = None;
            document(f, &rec)
        };
        type Build<'a> = &'a dyn Fn(&Fields, &MusicianRecord) -> TantivyDocument;
        let variants: [(&str, Build); 3] = [
            ("the product's document", &document),
            ("the same without name and bio", &without_text),
            (
                "a text-only document (id, name, bio, packed id)",
                &text_only,
            ),
        ];
        let n = 150_000;
        for (name, build) in variants {
            let dir = tempfile::tempdir().unwrap();
            let (schema, fields) = schema();
            let index = Index::create_in_dir(dir.path(), schema).unwrap();
            let mut writer: IndexWriter = index.writer_with_num_threads(1, 128_000_000).unwrap();
            writer.set_merge_policy(Box::new(merge_policy()));
            for r in &recs {
                writer.add_document(build(&fields, r)).unwrap();
            }
            writer.commit().unwrap();
            let values: usize = recs.iter().map(|r| build(&fields, r).len()).sum();
            let started = process_cpu_s();
            for k in 0..n {
                let r = &recs[(k * 7919) % recs.len()];
                writer.delete_term(Term::from_field_text(fields.id, &r.musician.id));
                writer.add_document(build(&fields, r)).unwrap();
                if k % 4500 == 4499 {
                    writer.commit().unwrap();
                }
            }
            writer.commit().unwrap();
            writer.wait_merging_threads().unwrap();
            let cpu = process_cpu_s() - started;
            let docs = index.reader().unwrap().searcher().num_docs();
            assert_eq!(docs, recs.len() as u64, "{name}: one document per key");
            println!(
                "{name}: {:.1} field values, {:.1} CPU µs per re-indexed document",
                values as f64 / recs.len() as f64,
                cpu * 1e6 / n as f64
            );
        }
    }
}
