//! Fast-field columns of the index's segments, opened once per segment and shared by readers.
//!
//! Opening a column is not free: tantivy's blockwise-linear codec decodes every block header
//! (one per 512 documents) on open, which at 1M documents cost more per match than scoring the
//! admitted documents (measured with callgrind; docs/perf.md). Segments are immutable, and
//! their fast fields do not change when documents are deleted, so a segment's columns can be
//! opened once and reused by every query until the segment is merged away.
//!
//! Promises:
//! - [`ColumnCache::get`] returns the columns of exactly the segment it is given (keyed by
//!   segment id), opening them on first use.
//! - [`ColumnCache::retain`] drops the entries of segments a searcher no longer has, so the
//!   cache holds at most the segments of the searchers in use plus those opened since.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tantivy::columnar::{Column, ColumnIndex, StrColumn};
use tantivy::index::SegmentId;
use tantivy::{DocId, Searcher, SegmentReader};

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
    /// Every document of the segment has a value in each of the match columns (`lat` …
    /// `active`): [`SegmentColumns::value`] then reads the values directly, without the
    /// optional index's rank lookup. True for every segment this crate writes (each musician
    /// document carries all of them); checked, not assumed.
    full: bool,
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
            full: false,
        };
        let full = |i: &ColumnIndex| matches!(i, ColumnIndex::Full);
        cols.full = [&cols.lat, &cols.lon, &cols.radius, &cols.bayes]
            .iter()
            .all(|c| full(&c.index))
            && [&cols.fee, &cols.currency, &cols.active]
                .iter()
                .all(|c| full(&c.index));
        Ok(cols)
    }

    /// The value of `doc` in `col`, one of this segment's match columns (the first value,
    /// `None` when it has none).
    #[inline]
    pub(crate) fn value<T>(&self, col: &Column<T>, doc: DocId) -> Option<T>
    where
        T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static,
    {
        if self.full {
            Some(col.values.get_val(doc))
        } else {
            col.first(doc)
        }
    }
}

/// Opened columns by segment; see the module documentation.
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

    /// Forgets segments that `searcher` does not have.
    pub(crate) fn retain(&self, searcher: &Searcher) {
        let mut map = crate::index::lock(&self.segments);
        if map.len() > searcher.segment_readers().len() {
            let live: Vec<SegmentId> = searcher
                .segment_readers()
                .iter()
                .map(|r| r.segment_id())
                .collect();
            map.retain(|id, _| live.contains(id));
        }
    }
}
