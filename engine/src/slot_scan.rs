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
//! the gig's genre terms fill [`Facts`], scored through [`score_facts`], the function the record
//! path uses too. Nothing is fetched from the store and
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
use crate::matching::{score_facts, Components, Facts, Weights};
use crate::model::{GeoPoint, Gig, Slot};
use std::collections::HashSet;
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
    /// Postings of `instrument@l` for l from the slot's min level (from 2 when that is 1),
    /// ascending.
    levels: Vec<(i64, SegmentPostings)>,
    /// Whether a document must be found in the first of `levels` (min level above 1).
    check_min: bool,
    /// Postings of each gig genre (absent when no musician of the segment plays it).
    genres: Vec<Option<SegmentPostings>>,
    hits: Vec<ScoredDoc>,
    eligible: usize,
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
            cols,
            levels,
            check_min,
            genres,
            hits: Vec::new(),
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
        let c = &*self.cols;
        if c.active.first(doc) != Some(1) || c.currency.first(doc) != Some(job.currency) {
            return;
        }
        let (Some(lat), Some(lon), Some(radius), Some(bayes), Some(fee)) = (
            c.lat.first(doc),
            c.lon.first(doc),
            c.radius.first(doc),
            c.bayes.first(doc),
            c.fee.first(doc),
        ) else {
            tracing::error!(doc, "index document without match fields; skipped");
            return;
        };
        let mut facts = Facts {
            level: job.slot.min_level,
            fee: i64::try_from(fee).unwrap_or(i64::MAX),
            bayesian: bayes,
            location: GeoPoint { lat, lon },
            travel_radius_km: radius,
            shared_genres: 0,
        };
        // Eligibility does not depend on a level above the minimum (the query term already
        // holds the minimum) nor on genres, so the numeric rules are tried first and the
        // postings are only read for eligible documents.
        if score_facts(&job.gig, &job.slot, &facts, &job.weights).is_none() {
            return;
        }
        // A musician at level l has the terms of every level up to l, so the first term missed
        // ends the walk; with `check_min`, missing the first (the minimum) rules them out.
        let mut level = (!self.check_min).then_some(job.slot.min_level);
        for (l, p) in &mut self.levels {
            if !contains(p, doc) {
                break;
            }
            level = Some(*l);
        }
        let Some(level) = level else {
            return;
        };
        facts.level = level;
        for p in self.genres.iter_mut().flatten() {
            if contains(p, doc) {
                facts.shared_genres += 1;
            }
        }
        if let Some((score, components, distance_km)) =
            score_facts(&job.gig, &job.slot, &facts, &job.weights)
        {
            self.eligible += 1;
            self.hits.push(ScoredDoc {
                score,
                components,
                distance_km,
                segment: self.segment,
                doc,
            });
        }
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
