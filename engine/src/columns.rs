//! Fast-field columns of the index's segments, opened once per segment and shared by readers.
//!
//! Opening a column is not free: tantivy's blockwise-linear codec decodes every block header
//! (one per 512 documents) on open, which at 1M documents cost more per match than scoring the
//! admitted documents (measured with callgrind; docs/perf.md). Segments are immutable, and
//! their fast fields do not change when documents are deleted, so a segment's columns can be
//! opened once and reused by every query until the segment is merged away.
//!
//! The match fields of every document (home, travel radius, rating, fee, currency, active) are
//! also copied side by side into one array per segment, [`DocFacts`], when every document has
//! them all: at 1M documents each column read was a likely cache miss, and the reads were the
//! largest single cost of a match (docs/perf.md, "HTTP"); one 56-byte record is one or two cache
//! lines and needs no decoding. The copy costs 56 bytes per document in memory; it is built
//! when the cache warms a new searcher (see [`ColumnCache`]), before any query uses the segment.
//!
//! Promises:
//! - [`ColumnCache::get`] returns the columns of exactly the segment it is given (keyed by
//!   segment id), opening them on first use.
//! - [`SegmentColumns::facts`] returns, for any document, exactly the values its columns hold
//!   (bit for bit: they are copied from them), or `None` when one of them has no value.
//! - As the reader's warmer, the cache drops the entries of segments no live searcher holds
//!   (tantivy calls its garbage collection about once a second), so it holds at most the
//!   segments of the searchers in use plus those opened since; a segment still held by an
//!   older searcher that a query is using is never dropped from under it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tantivy::columnar::{Column, ColumnIndex, StrColumn};
use tantivy::index::SegmentId;
use tantivy::{DocId, Searcher, SearcherGeneration, SegmentReader, Warmer};

/// The match fields of one document, as its columns hold them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DocFacts {
    pub lat: f64,
    pub lon: f64,
    pub radius: f64,
    pub bayes: f64,
    pub fee: u64,
    pub currency: u64,
    pub active: bool,
}

/// Every fast field of one segment.
pub(crate) struct SegmentColumns {
    pub lat: Column<f64>,
    pub lon: Column<f64>,
    pub radius: Column<f64>,
    pub bayes: Column<f64>,
    pub fee: Column<u64>,
    pub currency: Column<u64>,
    pub active: Column<u64>,
    pub id: StrColumn,
    pub id0: Column<u64>,
    pub id1: Column<u64>,
    /// Every document's [`DocFacts`], by doc id, when every document of the segment has a
    /// value in each of the match columns (`lat` … `active`). True for every segment this crate
    /// writes (each musician document carries all of them); checked, not assumed.
    facts: Option<Box<[DocFacts]>>,
}

impl SegmentColumns {
    fn open(reader: &SegmentReader) -> tantivy::Result<SegmentColumns> {
        let ff = reader.fast_fields();
        let mut cols = SegmentColumns {
            lat: ff.f64("lat")?,
            lon: ff.f64("lon")?,
            radius: ff.f64("radius")?,
            bayes: ff.f64("bayes")?,
            fee: ff.u64("fee")?,
            currency: ff.u64("currency")?,
            active: ff.u64("active")?,
            id: ff.str("id")?.ok_or_else(|| {
                tantivy::TantivyError::SchemaError("index has no id column".to_string())
            })?,
            id0: ff.u64("id0")?,
            id1: ff.u64("id1")?,
            facts: None,
        };
        let full = |i: &ColumnIndex| matches!(i, ColumnIndex::Full);
        let all_full = [&cols.lat, &cols.lon, &cols.radius, &cols.bayes]
            .iter()
            .all(|c| full(&c.index))
            && [&cols.fee, &cols.currency, &cols.active]
                .iter()
                .all(|c| full(&c.index));
        if all_full {
            let n = reader.max_doc();
            cols.facts = Some(
                (0..n)
                    .map(|doc| DocFacts {
                        lat: cols.lat.values.get_val(doc),
                        lon: cols.lon.values.get_val(doc),
                        radius: cols.radius.values.get_val(doc),
                        bayes: cols.bayes.values.get_val(doc),
                        fee: cols.fee.values.get_val(doc),
                        currency: cols.currency.values.get_val(doc),
                        active: cols.active.values.get_val(doc) == 1,
                    })
                    .collect(),
            );
        }
        Ok(cols)
    }

    /// The match fields of `doc`, or `None` when one of its columns has no value for it.
    #[inline]
    pub(crate) fn facts(&self, doc: DocId) -> Option<DocFacts> {
        if let Some(all) = &self.facts {
            return all.get(doc as usize).copied();
        }
        Some(DocFacts {
            lat: self.lat.first(doc)?,
            lon: self.lon.first(doc)?,
            radius: self.radius.first(doc)?,
            bayes: self.bayes.first(doc)?,
            fee: self.fee.first(doc)?,
            currency: self.currency.first(doc)?,
            active: self.active.first(doc)? == 1,
        })
    }
}

/// Opened columns by segment; see the module documentation. As a tantivy [`Warmer`], it opens
/// the columns of a new searcher's segments before the reader hands that searcher out, so no
/// query pays for it (a segment of 1M documents takes tens of milliseconds), and forgets the
/// segments of searchers no longer alive.
#[derive(Default)]
pub(crate) struct ColumnCache {
    segments: Mutex<HashMap<SegmentId, Arc<SegmentColumns>>>,
}

impl ColumnCache {
    /// The columns of `reader`'s segment.
    pub(crate) fn get(&self, reader: &SegmentReader) -> tantivy::Result<Arc<SegmentColumns>> {
        let id = reader.segment_id();
        if let Some(c) = crate::index::lock(&self.segments).get(&id) {
            return Ok(Arc::clone(c));
        }
        // Opened outside the lock: two readers may both open a new segment; one result wins.
        let opened = Arc::new(SegmentColumns::open(reader)?);
        Ok(Arc::clone(
            crate::index::lock(&self.segments)
                .entry(id)
                .or_insert(opened),
        ))
    }
}

impl Warmer for ColumnCache {
    fn warm(&self, searcher: &Searcher) -> tantivy::Result<()> {
        for reader in searcher.segment_readers() {
            self.get(reader)?;
        }
        Ok(())
    }

    fn garbage_collect(&self, live: &[&SearcherGeneration]) {
        let mut map = crate::index::lock(&self.segments);
        map.retain(|id, _| live.iter().any(|g| g.segments().contains_key(id)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tantivy::{doc, Index};

    /// One segment of `docs` (lat, lon, active-or-none) in memory, with every other match
    /// field set.
    fn segment(docs: &[(f64, f64, Option<u64>)]) -> (Index, Searcher) {
        let (schema, f) = crate::index::schema();
        let index = Index::create_in_ram(schema);
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for (i, (lat, lon, active)) in docs.iter().enumerate() {
            let mut d = doc!(
                f.id => format!("m-{i}"),
                f.lat => *lat, f.lon => *lon, f.radius => 10.0 + i as f64, f.bayes => 3.5,
                f.fee => 100 * i as u64, f.currency => crate::index::currency_code("EUR"),
            );
            if let Some(a) = active {
                d.add_u64(f.active, *a);
            }
            w.add_document(d).unwrap();
        }
        w.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        (index, searcher)
    }

    #[test]
    fn facts_are_the_columns_values_in_both_layouts() {
        // Every field present: the packed copy. One document without `active`: the columns.
        for with_gap in [false, true] {
            let docs = [
                (40.4168, -3.7038, Some(1)),
                (41.3874, 2.1686, if with_gap { None } else { Some(0) }),
                (-33.8688, 151.2093, Some(1)),
            ];
            let (_index, searcher) = segment(&docs);
            let cache = ColumnCache::default();
            let cols = cache.get(searcher.segment_reader(0)).unwrap();
            assert_eq!(cols.facts.is_some(), !with_gap);
            for (doc, (lat, lon, active)) in docs.iter().enumerate() {
                let got = cols.facts(doc as DocId);
                match active {
                    None => assert_eq!(got, None),
                    Some(a) => {
                        let f = got.unwrap();
                        assert_eq!(
                            (f.lat.to_bits(), f.lon.to_bits()),
                            (lat.to_bits(), lon.to_bits())
                        );
                        assert_eq!(f.active, *a == 1);
                        assert_eq!(f.radius, 10.0 + doc as f64);
                        assert_eq!(f.fee, 100 * doc as u64);
                        assert_eq!(f.currency, crate::index::currency_code("EUR"));
                    }
                }
            }
            assert_eq!(
                cols.facts(docs.len() as DocId),
                None,
                "past the last document"
            );
        }
    }

    #[test]
    fn the_cache_warms_each_new_searcher_before_it_is_handed_out() {
        let (schema, f) = crate::index::schema();
        let index = Index::create_in_ram(schema);
        let cache = Arc::new(ColumnCache::default());
        let warmer: std::sync::Weak<dyn Warmer> = Arc::downgrade(&cache) as _;
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .warmers(vec![warmer])
            .try_into()
            .unwrap();
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let add = |w: &mut tantivy::IndexWriter, i: u64| {
            w.add_document(doc!(
                f.id => format!("m-{i}"), f.lat => 40.0, f.lon => -3.0, f.radius => 10.0,
                f.bayes => 3.5, f.fee => i, f.currency => 1u64, f.active => 1u64,
            ))
            .unwrap();
        };
        for batch in 0..2 {
            add(&mut w, batch);
            w.commit().unwrap();
            reader.reload().unwrap();
            // Every segment of the searcher readers now get is already in the cache.
            let searcher = reader.searcher();
            let map = crate::index::lock(&cache.segments);
            for seg in searcher.segment_readers() {
                assert!(map.contains_key(&seg.segment_id()), "segment not warmed");
                assert!(map[&seg.segment_id()].facts.is_some());
            }
        }
        // Garbage collection keeps what a live searcher holds and drops the rest.
        let searcher = reader.searcher();
        cache.garbage_collect(&[searcher.generation()]);
        assert_eq!(
            crate::index::lock(&cache.segments).len(),
            searcher.segment_readers().len()
        );
        cache.garbage_collect(&[]);
        assert!(crate::index::lock(&cache.segments).is_empty());
    }
}
