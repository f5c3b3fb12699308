//! The index side of matching: scores one slot's candidates straight from the index.
//!
//! The slot query (built by the engine) admits documents by their terms: not busy or booked on
//! the date, and plays the instrument with a home in a coarse cover of the gig's circle (the
//! `place` terms; for circles too wide for them, the `home` cover and the min-level term).
//! [`SlotCollector`] then reads, per admitted document, the fast fields: `active` and `currency`
//! must hold (the categorical rules the terms leave out, because a term matching nearly every
//! document costs the intersection more than a column read), and `lat`, `lon`, `radius`, `fee`,
//! `bayes` plus the postings of the level terms from the slot's minimum up (the minimum is
//! checked here, after the cheaper numeric rules, rather than intersected in the query) and of
//! the gig's genre terms fill [`Facts`], scored through the functions the record path uses too
//! ([`crate::matching::numeric_rules`], then [`components_of`]). Once a segment holds `keep` scored documents, a
//! document whose best possible score (all of the gig's genres, the top level, its known
//! proximity, rating and price) is below the least of them is counted as eligible but not
//! scored: its level and genre postings are never read. Floating-point rounding is monotone, so
//! that bound is never below the document's real score. Nothing is fetched from the store and
//! ids are resolved only for the documents that can still make the top `keep`.
//!
//! Promises:
//! - For every document it is given, the result equals [`crate::matching::evaluate`] on the
//!   record the document was built from: the same stored values feed the same function.
//! - Documents listed in `exclude` (musicians changed after the searcher's sequence) are skipped;
//!   the engine evaluates those from the store instead, which makes the whole answer exact with
//!   respect to the store, not merely to the index.
//! - Each segment returns its best `keep` documents plus every document tied with the last of
//!   them, so the global cut, which breaks ties by musician id, loses nothing.

use crate::columns::{ColumnCache, SegmentColumns};
use crate::index::{inst_term, Fields};
use crate::matching::{
    components_of, distance_within_gig_radius, numeric_rules_at, Components, Facts, Weights,
};
use crate::model::{GeoPoint, Gig, Slot};
use crate::overlay::{FactsOverlay, SegmentOverlay};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::postings::SegmentPostings;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Score, SegmentOrdinal, SegmentReader, Term};

/// One scored document, before its id is known.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScoredDoc {
    pub score: f64,
    pub components: Components,
    pub distance_km: f64,
    pub segment: SegmentOrdinal,
    pub doc: DocId,
}

/// What one slot scan needs to know, shared by its segment collectors.
pub(crate) struct SlotJob {
    pub gig: Gig,
    pub slot: Slot,
    pub weights: Weights,
    pub keep: usize,
    /// The gig's currency as [`crate::index::currency_code`] packs it.
    pub currency: u64,
    /// `(segment, doc)` pairs to skip.
    pub exclude: Arc<HashSet<(SegmentOrdinal, DocId)>>,
    /// Facts that replace the columns' for overlaid documents.
    pub overlay: Arc<FactsOverlay>,
}

/// Scores the documents of a slot query; see the module documentation.
pub(crate) struct SlotCollector {
    pub fields: Fields,
    pub job: Arc<SlotJob>,
    pub columns: Arc<ColumnCache>,
}

/// The best documents of a scan and how many were eligible in all.
#[derive(Debug, Default)]
pub(crate) struct SlotFruit {
    pub best: Vec<ScoredDoc>,
    pub eligible: usize,
}

pub(crate) struct SlotSegmentCollector {
    job: Arc<SlotJob>,
    segment: SegmentOrdinal,
    cols: Arc<SegmentColumns>,
    overlay: SegmentOverlay,
    /// Postings of `instrument@l` for l from the slot's min level (from 2 when that is 1),
    /// ascending.
    levels: Vec<(i64, SegmentPostings)>,
    /// Whether a document must be found in the first of `levels` (min level above 1).
    check_min: bool,
    /// Postings of each gig genre (absent when no musician of the segment plays it).
    genres: Vec<Option<SegmentPostings>>,
    hits: Vec<ScoredDoc>,
    /// The best `keep` scores so far, for the bound that skips hopeless documents.
    kept: BestScores,
    eligible: usize,
}

/// The best `keep` scores offered so far, as a min-heap: its least is the floor a document
/// must reach to be among them.
struct BestScores {
    keep: usize,
    heap: BinaryHeap<Reverse<TotalF64>>,
}

/// An `f64` ordered by [`f64::total_cmp`].
#[derive(Clone, Copy, PartialEq)]
struct TotalF64(f64);

impl Eq for TotalF64 {}

impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl BestScores {
    fn new(keep: usize) -> Self {
        BestScores {
            keep,
            heap: BinaryHeap::with_capacity(keep.saturating_add(1).min(1024)),
        }
    }

    /// The least of the best `keep` scores, once `keep` have been offered (`keep` > 0).
    fn floor(&self) -> Option<f64> {
        if self.keep > 0 && self.heap.len() >= self.keep {
            self.heap.peek().map(|r| r.0 .0)
        } else {
            None
        }
    }

    fn offer(&mut self, score: f64) {
        if self.heap.len() < self.keep {
            self.heap.push(Reverse(TotalF64(score)));
        } else if let Some(mut least) = self.heap.peek_mut() {
            if score.total_cmp(&least.0 .0).is_gt() {
                *least = Reverse(TotalF64(score));
            }
        }
    }
}

fn contains(p: &mut SegmentPostings, doc: DocId) -> bool {
    if p.doc() < doc {
        p.seek(doc);
    }
    p.doc() == doc
}

/// Keeps the best `keep` by score and every document tied with the last kept, best first.
///
/// Dense areas admit thousands of eligible documents for a top 10, so the best are selected
/// first (linear) and only they are sorted.
fn cut(hits: &mut Vec<ScoredDoc>, keep: usize) {
    let best_first = |a: &ScoredDoc, b: &ScoredDoc| b.score.total_cmp(&a.score);
    if keep == 0 {
        hits.clear();
        return;
    }
    if hits.len() > keep {
        hits.select_nth_unstable_by(keep - 1, best_first);
        let last = hits[keep - 1].score;
        // Everything after `keep - 1` scores at most `last`; keep the ties.
        let mut end = keep;
        for i in keep..hits.len() {
            if hits[i].score.total_cmp(&last).is_eq() {
                hits.swap(end, i);
                end += 1;
            }
        }
        hits.truncate(end);
    }
    hits.sort_by(best_first);
}

impl Collector for SlotCollector {
    type Fruit = SlotFruit;
    type Child = SlotSegmentCollector;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SlotSegmentCollector> {
        let cols = self.columns.get(reader)?;
        let job = &self.job;
        let inst = reader.inverted_index(self.fields.inst)?;
        // The query's terms only say that a document plays the instrument (at level ≥ 1, the
        // least there is); a higher minimum is checked here, after the cheaper column rules.
        let check_min = job.slot.min_level > 1;
        let mut levels = Vec::new();
        for l in job.slot.min_level.max(2)..=5 {
            let t = Term::from_field_text(self.fields.inst, &inst_term(&job.slot.instrument, l));
            if let Some(p) = inst.read_postings(&t, IndexRecordOption::Basic)? {
                levels.push((l, p));
            }
        }
        let genre = reader.inverted_index(self.fields.genre)?;
        let mut genres = Vec::with_capacity(job.gig.genres.len());
        for g in &job.gig.genres {
            let t = Term::from_field_text(self.fields.genre, g);
            genres.push(genre.read_postings(&t, IndexRecordOption::Basic)?);
        }
        Ok(SlotSegmentCollector {
            job: job.clone(),
            segment,
            overlay: SegmentOverlay::new(job.overlay.segment(reader.segment_id())),
            cols,
            levels,
            check_min,
            genres,
            hits: Vec::new(),
            kept: BestScores::new(job.keep),
            eligible: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SlotFruit>) -> tantivy::Result<SlotFruit> {
        let mut all = SlotFruit::default();
        for f in fruits {
            all.eligible += f.eligible;
            all.best.extend(f.best);
        }
        cut(&mut all.best, self.job.keep);
        Ok(all)
    }
}

impl SegmentCollector for SlotSegmentCollector {
    type Fruit = SlotFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let job = &*self.job;
        if !job.exclude.is_empty() && job.exclude.contains(&(self.segment, doc)) {
            return;
        }
        // One record holds every match field (`columns::DocFacts`): a cache line, not seven
        // column reads that each missed the cache at 1M documents. The facts overlay stands in
        // for the columns of documents whose facts changed since they were indexed.
        let Some(f) = self.overlay.facts(&self.cols, doc) else {
            tracing::error!(doc, "index document without match fields; skipped");
            return;
        };
        let home = GeoPoint {
            lat: f.lat,
            lon: f.lon,
        };
        let Some(distance) = distance_within_gig_radius(&job.gig, home) else {
            return;
        };
        if !f.active || f.currency != job.currency {
            return;
        }
        let mut facts = Facts {
            level: job.slot.min_level,
            fee: i64::try_from(f.fee).unwrap_or(i64::MAX),
            bayesian: f.bayes,
            location: home,
            travel_radius_km: f.radius,
            shared_genres: 0,
        };
        // Eligibility does not depend on a level above the minimum nor on genres, so the
        // numeric rules are tried first and the postings are only read for eligible documents.
        let Some(reach) = numeric_rules_at(&job.gig, &job.slot, &facts, distance) else {
            return;
        };
        // A musician at level l has the terms of every level up to l, so the first term missed
        // ends the walk; with `check_min`, missing the first (the minimum) rules them out.
        let mut levels = self.levels.iter_mut();
        let mut level = job.slot.min_level;
        if self.check_min {
            let Some((l, p)) = levels.next() else {
                return;
            };
            if !contains(p, doc) {
                return;
            }
            level = *l;
        }
        self.eligible += 1;
        // Once `keep` documents are held, one whose best possible score (every genre, the top
        // level) is below the worst of them cannot make the cut: its postings are not read.
        let floor = self.kept.floor();
        if let Some(floor) = floor {
            let mut best = components_of(&job.gig, &job.slot, &facts, reach);
            best.genres = 1.0;
            best.level = 1.0;
            if best.score(&job.weights).total_cmp(&floor).is_lt() {
                return;
            }
        }
        for (l, p) in levels {
            if !contains(p, doc) {
                break;
            }
            level = *l;
        }
        facts.level = level;
        for p in self.genres.iter_mut().flatten() {
            if contains(p, doc) {
                facts.shared_genres += 1;
            }
        }
        let components = components_of(&job.gig, &job.slot, &facts, reach);
        let score = components.score(&job.weights);
        if floor.is_some_and(|f| score.total_cmp(&f).is_lt()) {
            return;
        }
        self.kept.offer(score);
        self.hits.push(ScoredDoc {
            score,
            components,
            distance_km: reach.distance_km,
            segment: self.segment,
            doc,
        });
    }

    fn harvest(mut self) -> SlotFruit {
        cut(&mut self.hits, self.job.keep);
        SlotFruit {
            best: self.hits,
            eligible: self.eligible,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(score: f64, d: DocId) -> ScoredDoc {
        ScoredDoc {
            score,
            components: Components {
                proximity: 0.0,
                rating: 0.0,
                genres: 0.0,
                price: 0.0,
                level: 0.0,
            },
            distance_km: 0.0,
            segment: 0,
            doc: d,
        }
    }

    proptest::proptest! {
        /// The selecting cut keeps what sorting everything and cutting after the ties kept.
        #[test]
        fn cut_equals_sort_then_truncate(
            scores in proptest::collection::vec(0u8..6, 0..60),
            keep in 0usize..12,
        ) {
            let mut v: Vec<ScoredDoc> = scores
                .iter()
                .enumerate()
                .map(|(i, s)| doc(f64::from(*s) / 5.0, i as DocId))
                .collect();
            let mut want: Vec<(u64, DocId)> = v.iter().map(|h| (h.score.to_bits(), h.doc)).collect();
            want.sort_by(|a, b| f64::from_bits(b.0).total_cmp(&f64::from_bits(a.0)).then(a.1.cmp(&b.1)));
            if keep == 0 {
                want.clear();
            } else if want.len() > keep {
                let last = want[keep - 1].0;
                let end = want.iter().position(|w| f64::from_bits(w.0) < f64::from_bits(last)).unwrap_or(want.len());
                want.truncate(end);
            }
            cut(&mut v, keep);
            proptest::prop_assert!(v.windows(2).all(|w| w[0].score >= w[1].score));
            let mut got: Vec<(u64, DocId)> = v.iter().map(|h| (h.score.to_bits(), h.doc)).collect();
            got.sort_by(|a, b| f64::from_bits(b.0).total_cmp(&f64::from_bits(a.0)).then(a.1.cmp(&b.1)));
            proptest::prop_assert_eq!(got, want);
        }
    }

    proptest::proptest! {
        /// The floor is the least of the best `keep` scores offered, once `keep` were offered.
        #[test]
        fn floor_is_the_least_of_the_best_keep(
            scores in proptest::collection::vec(0u16..1000, 0..80),
            keep in 0usize..12,
        ) {
            let mut best = BestScores::new(keep);
            let mut seen: Vec<f64> = Vec::new();
            for s in scores {
                let s = f64::from(s) / 999.0;
                best.offer(s);
                seen.push(s);
                seen.sort_by(|a, b| b.total_cmp(a));
                let want = (keep > 0 && seen.len() >= keep).then(|| seen[keep - 1]);
                proptest::prop_assert_eq!(best.floor(), want);
            }
        }
    }

    #[test]
    fn cut_keeps_ties_at_the_boundary() {
        let mut v = vec![
            doc(0.5, 1),
            doc(0.9, 2),
            doc(0.5, 3),
            doc(0.1, 4),
            doc(0.5, 5),
        ];
        cut(&mut v, 2);
        let docs: Vec<DocId> = v.iter().map(|h| h.doc).collect();
        assert_eq!(docs.len(), 4, "0.9 plus all three tied at 0.5: {docs:?}");
        assert_eq!(docs[0], 2);
        cut(&mut v, 0);
        assert!(v.is_empty());
    }
}
