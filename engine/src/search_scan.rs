//! The index side of search without free text: filters, sorts and pages straight from the index.
//!
//! The search query (built by the engine) admits documents by their terms: instruments at their
//! minimum levels, genres, the `near` circle's cell cover (`place` cells of the instruments
//! asked for when there are any, else `home` cells), and not busy or booked on `available_on`. [`SearchCollector`] then applies, per admitted document, the rules the terms
//! leave out or only approximate, from fast fields: `active`, `currency` and `fee` (for
//! `max_fee`), `bayes` (for `min_rating`) and the exact haversine distance from `lat`/`lon` (for
//! `near`). It computes the sort key with [`crate::search::sort_key_of`], the function the record
//! path uses too, skips everything at or before the cursor, and keeps each segment's first
//! `keep` documents in `(key, id)` order. Only those have their ids read.
//!
//! Promises:
//! - For every document it is given, admission and key equal what the record path
//!   (`matches_query` and `sort_key`) computes on the record the document was built from: the
//!   same stored values feed the same functions.
//! - Within a segment, the order of the `id` column's term ordinals is the order of the ids, so
//!   the per-segment cut in `(key, ordinal)` order loses nothing of the global `(key, id)` order.
//! - Documents listed in `exclude` (musicians changed after the searcher's sequence) are skipped;
//!   the engine evaluates those from the store, which makes the page exact with respect to it.

use crate::columns::{ColumnCache, SegmentColumns};
use crate::geo::{farther_than_by_latitude, haversine_km};
use crate::model::GeoPoint;
use crate::overlay::{FactsOverlay, SegmentOverlay};
use crate::search::{sort_key_of, Cursor, SortBy};
use std::collections::HashSet;
use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// What one search scan needs to know, shared by its segment collectors.
pub(crate) struct SearchJob {
    pub sort: SortBy,
    /// Centre and radius (km) of `near`.
    pub near: Option<(GeoPoint, f64)>,
    pub include_inactive: bool,
    /// Packed currency code and the largest admitted fee.
    pub max_fee: Option<(u64, i64)>,
    pub min_rating: Option<f64>,
    /// Only hits strictly after this `(key, id)` are wanted.
    pub after: Option<Cursor>,
    /// How many hits each segment returns at most.
    pub keep: usize,
    /// `(segment, doc)` pairs to skip.
    pub exclude: Arc<HashSet<(SegmentOrdinal, DocId)>>,
    /// Facts that replace the columns' for overlaid documents.
    pub overlay: Arc<FactsOverlay>,
}

/// One admitted document of a segment's first `keep`, with its id read.
#[derive(Clone, Debug)]
pub(crate) struct SearchDoc {
    pub key: f64,
    pub id: String,
    pub distance_km: Option<f64>,
}

/// Filters, keys and cuts; see the module documentation.
pub(crate) struct SearchCollector {
    pub job: Arc<SearchJob>,
    pub columns: Arc<ColumnCache>,
}

/// Each segment's first documents, in no particular order across segments.
#[derive(Debug, Default)]
pub(crate) struct SearchFruit {
    pub docs: Vec<SearchDoc>,
    /// Set when the id column could not be read; the engine reports it as a corrupt index.
    pub corrupt: Option<String>,
}

pub(crate) struct SearchSegmentCollector {
    job: Arc<SearchJob>,
    segment: SegmentOrdinal,
    cols: Arc<SegmentColumns>,
    overlay: SegmentOverlay,
    /// With a cursor: the first id ordinal of this segment greater than the cursor's id (ties
    /// on the key pass from there on).
    first_after: u64,
    /// Admitted documents.
    hits: Vec<Admitted>,
    corrupt: Option<String>,
}

/// An admitted document: its key, its id's ordinal in the segment (the tie-break) and distance.
#[derive(Clone, Copy)]
struct Admitted {
    key: f64,
    ord: u64,
    doc: DocId,
    distance_km: Option<f64>,
}

impl Collector for SearchCollector {
    type Fruit = SearchFruit;
    type Child = SearchSegmentCollector;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SearchSegmentCollector> {
        let cols = self.columns.get(reader)?;
        let id = &cols.id;
        let first_after = match &self.job.after {
            None => 0,
            Some(cur) => {
                let mut stream = id
                    .dictionary()
                    .range()
                    .gt(cur.id.as_bytes())
                    .into_stream()?;
                if stream.advance() {
                    stream.term_ord()
                } else {
                    id.num_terms() as u64
                }
            }
        };
        Ok(SearchSegmentCollector {
            job: Arc::clone(&self.job),
            segment,
            overlay: SegmentOverlay::new(self.job.overlay.segment(reader.segment_id())),
            cols,
            first_after,
            hits: Vec::new(),
            corrupt: None,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SearchFruit>) -> tantivy::Result<SearchFruit> {
        let mut all = SearchFruit::default();
        for f in fruits {
            all.docs.extend(f.docs);
            all.corrupt = all.corrupt.or(f.corrupt);
        }
        Ok(all)
    }
}

impl SearchSegmentCollector {
    /// Admission and key of one document, or `None` when a rule fails.
    fn admit(&mut self, doc: DocId) -> Option<Admitted> {
        // One record holds every field read here (`columns::DocFacts`); the facts overlay
        // stands in for the columns of documents whose facts changed since they were indexed.
        let f = self.overlay.facts(&self.cols, doc)?;
        let job = &*self.job;
        let c = &self.cols;
        let distance = match job.near {
            None => None,
            Some((centre, radius)) => {
                let home = GeoPoint {
                    lat: f.lat,
                    lon: f.lon,
                };
                if farther_than_by_latitude(home, centre, radius) {
                    return None;
                }
                let d = haversine_km(centre, home);
                if d > radius {
                    return None;
                }
                Some(d)
            }
        };
        if !job.include_inactive && !f.active {
            return None;
        }
        let (fee, bayes) = (f.fee, f.bayes);
        if let Some((currency, max)) = job.max_fee {
            if f.currency != currency || i64::try_from(fee).ok()? > max {
                return None;
            }
        }
        if job.min_rating.is_some_and(|min| bayes < min) {
            return None;
        }
        let key = sort_key_of(job.sort, 0.0, distance, bayes, fee as f64);
        let ord = c.id.term_ords(doc).next()?;
        if let Some(cur) = &job.after {
            match key.total_cmp(&cur.key) {
                std::cmp::Ordering::Less => return None,
                std::cmp::Ordering::Equal if ord < self.first_after => return None,
                _ => {}
            }
        }
        Some(Admitted {
            key,
            ord,
            doc,
            distance_km: distance,
        })
    }
}

impl SegmentCollector for SearchSegmentCollector {
    type Fruit = SearchFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if !self.job.exclude.is_empty() && self.job.exclude.contains(&(self.segment, doc)) {
            return;
        }
        if let Some(hit) = self.admit(doc) {
            self.hits.push(hit);
        }
    }

    fn harvest(mut self) -> SearchFruit {
        let keep = self.job.keep;
        let order = |a: &Admitted, b: &Admitted| a.key.total_cmp(&b.key).then(a.ord.cmp(&b.ord));
        if self.hits.len() > keep && keep > 0 {
            self.hits.select_nth_unstable_by(keep - 1, order);
        }
        self.hits.truncate(keep);
        let mut docs = Vec::with_capacity(self.hits.len());
        for h in &self.hits {
            match crate::index::stored_id(&self.cols, h.doc) {
                Ok(id) => docs.push(SearchDoc {
                    key: h.key,
                    id,
                    distance_km: h.distance_km,
                }),
                Err(e) => self.corrupt = Some(e.to_string()),
            }
        }
        SearchFruit {
            docs,
            corrupt: self.corrupt,
        }
    }
}
