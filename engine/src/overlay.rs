//! The facts overlay: what the index's documents no longer say about the volatile match facts.
//!
//! A musician's document holds terms (instruments, genres, dates, cells, text) and the match
//! facts readers score with ([`DocFacts`]). Most profile edits touch only the volatile facts:
//! the fee, the currency, the travel radius, the active flag, and every rating (a rating
//! changes the Bayesian rating and nothing else). Re-indexing the whole document for those
//! (tokenizing it, then merging its ~50 terms again and again) was the largest single cost of a
//! changed-profile write on every replica (docs/perf.md). So the indexer does not: when a
//! change leaves a musician's terms as they were ([`crate::index::same_terms`]), it records the
//! new facts here, keyed by musician id, and leaves the document alone.
//!
//! At each commit the indexer finds every overlaid musician's live document in the new
//! searcher and publishes, with that searcher, a [`FactsOverlay`]: per segment, the overlaid
//! documents in doc order with their current facts. Scans read a document's facts through
//! [`SegmentOverlay::facts`], which answers from the overlay where it lists the document and
//! from the segment's columns otherwise.
//!
//! The overlay lives in memory only. Each index commit records in its payload the lowest
//! sequence whose change lives only in the overlay ([`OverlayState::since`]); the change log is
//! pruned only below it, and an index opened with such a payload replays the change log from
//! there, re-indexing those musicians in full. The indexer folds the overlay into the index
//! (re-indexes every overlaid musician and empties it) when it holds more than its configured
//! number of musicians or its oldest entry is older than its configured age (an idle indexer
//! wakes for that), so the change log kept for it and the replay after a crash stay bounded.
//! The records are read from the store before the overlay is emptied, so a failed read leaves
//! it whole.
//!
//! Promises:
//! - For every live document of a published searcher, the facts a scan reads through the
//!   overlay published with that searcher are those of the record the index's sequence holds
//!   for the document's musician, as if the document had been re-indexed.
//! - Each overlaid musician has exactly one live document in a searcher that covers its last
//!   full re-index; a lookup that finds none is logged and the musician read from its columns.
//! - An empty overlay costs a scan one `Option` test per segment.

use crate::columns::{DocFacts, SegmentColumns};
use crate::index::IndexError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::index::SegmentId;
use tantivy::schema::Field;
use tantivy::{DocId, Searcher};

/// One segment's overlaid documents: doc ids ascending, and each one's facts at the same
/// position. Kept apart so that a scan skipping ahead reads 4 bytes per entry it passes, not 64.
pub(crate) struct SegmentFacts {
    docs: Box<[DocId]>,
    facts: Box<[DocFacts]>,
}

/// See [`SegmentFacts`].
pub(crate) type SegmentEntries = Arc<SegmentFacts>;

/// The overlay as of one published searcher: see the module documentation.
#[derive(Default)]
pub(crate) struct FactsOverlay {
    segments: HashMap<SegmentId, SegmentEntries>,
    musicians: usize,
}

impl FactsOverlay {
    /// The overlaid documents of segment `id`, if any.
    pub(crate) fn segment(&self, id: SegmentId) -> Option<SegmentEntries> {
        self.segments.get(&id).cloned()
    }

    /// Musicians whose facts the overlay holds.
    pub(crate) fn musicians(&self) -> usize {
        self.musicians
    }
}

/// Reads the facts of one segment's documents through its overlay. Documents asked in
/// increasing order (as tantivy's collectors give them) move a cursor forward by galloping
/// (exponential, then binary search), so a scan that reads V of the segment's documents past E
/// overlay entries costs O(V log(E/V)) steps, not O(E): at 1M documents a match reads a few
/// thousand while the overlay may list tens of thousands. Any order is answered correctly.
pub(crate) struct SegmentOverlay {
    entries: Option<SegmentEntries>,
    /// Index of the first entry whose doc is ≥ the last doc asked.
    next: usize,
}

impl SegmentOverlay {
    pub(crate) fn new(entries: Option<SegmentEntries>) -> SegmentOverlay {
        SegmentOverlay { entries, next: 0 }
    }

    /// The match facts of `doc`: the overlay's when it lists the document, else its columns'.
    #[inline]
    pub(crate) fn facts(&mut self, cols: &SegmentColumns, doc: DocId) -> Option<DocFacts> {
        self.entry(doc).or_else(|| cols.facts(doc))
    }

    /// The overlay's facts for `doc`, if it lists the document.
    #[inline]
    fn entry(&mut self, doc: DocId) -> Option<DocFacts> {
        let e = self.entries.as_deref()?;
        let docs = &e.docs[..];
        let mut i = self.next;
        if i > 0 && docs[i - 1] >= doc {
            // Backwards: search the whole list.
            i = docs.partition_point(|d| *d < doc);
        } else if i < docs.len() && docs[i] < doc {
            // Forwards past `i`: gallop until an entry ≥ doc (or the end), then search the last
            // step. Invariant: docs[lo] < doc.
            let (mut lo, mut step) = (i, 1);
            while lo + step < docs.len() && docs[lo + step] < doc {
                lo += step;
                step *= 2;
            }
            let hi = (lo + step).min(docs.len());
            i = lo + 1 + docs[lo + 1..hi].partition_point(|d| *d < doc);
        }
        self.next = i;
        (docs.get(i) == Some(&doc)).then(|| e.facts[i])
    }
}

/// When the indexer folds the overlay back into the index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FoldPolicy {
    /// Fold once more musicians than this are overlaid; 0 turns the overlay off (every change
    /// re-indexes its musician).
    pub max_musicians: usize,
    /// Fold once the oldest overlaid change is older than this.
    pub max_age: Duration,
}

/// The indexer's side of the overlay: the current facts of each overlaid musician and where its
/// document was last found.
#[derive(Default)]
pub(crate) struct OverlayState {
    facts: HashMap<String, DocFacts>,
    found: HashMap<String, (SegmentId, DocId)>,
    /// The sequence of the oldest change that lives only here, and when it arrived.
    since: Option<(u64, Instant)>,
}

impl OverlayState {
    /// Records `facts` as `id`'s, from the change of sequence `seq` (which left its terms as
    /// they were).
    pub(crate) fn set(&mut self, id: String, facts: DocFacts, seq: u64) {
        self.since.get_or_insert_with(|| (seq, Instant::now()));
        self.facts.insert(id, facts);
    }

    /// Forgets `id`: its document is being re-indexed in full (or deleted).
    pub(crate) fn forget(&mut self, id: &str) {
        if self.facts.remove(id).is_some() {
            self.found.remove(id);
            if self.facts.is_empty() {
                self.since = None;
            }
        }
    }

    /// The sequence of the oldest change that lives only in the overlay.
    pub(crate) fn since(&self) -> Option<u64> {
        self.since.map(|(seq, _)| seq)
    }

    /// Whether `policy` asks for a fold now.
    pub(crate) fn due(&self, policy: &FoldPolicy) -> bool {
        self.facts.len() > policy.max_musicians
            || self
                .since
                .is_some_and(|(_, at)| at.elapsed() >= policy.max_age)
    }

    /// How long ago the oldest change that lives only here arrived.
    pub(crate) fn age(&self) -> Option<Duration> {
        self.since.map(|(_, at)| at.elapsed())
    }

    /// The ids of the overlaid musicians.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.facts.keys().map(String::as_str)
    }

    /// Empties the overlay (the indexer has re-indexed every musician it held).
    pub(crate) fn clear(&mut self) {
        self.facts.clear();
        self.found.clear();
        self.since = None;
    }

    /// The overlay for `searcher`: finds each overlaid musician's live document (reusing where
    /// it was found before when that segment is still in the searcher) and groups the facts by
    /// segment in doc order.
    pub(crate) fn publish(
        &mut self,
        searcher: &Searcher,
        id_field: Field,
    ) -> Result<Arc<FactsOverlay>, IndexError> {
        if self.facts.is_empty() {
            return Ok(Arc::new(FactsOverlay::default()));
        }
        let live: std::collections::HashSet<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|s| s.segment_id())
            .collect();
        let mut by_segment: HashMap<SegmentId, Vec<(DocId, DocFacts)>> = HashMap::new();
        let mut lost = 0usize;
        for (id, facts) in &self.facts {
            let at = match self.found.get(id) {
                Some(at) if live.contains(&at.0) => Some(*at),
                _ => {
                    let at = live_doc(searcher, id_field, id)?;
                    match at {
                        Some(at) => {
                            self.found.insert(id.clone(), at);
                        }
                        None => {
                            self.found.remove(id);
                        }
                    }
                    at
                }
            };
            match at {
                Some((segment, doc)) => by_segment.entry(segment).or_default().push((doc, *facts)),
                None => lost += 1,
            }
        }
        if lost > 0 {
            tracing::error!(
                musicians = lost,
                "overlaid musicians without a live index document; their columns are read"
            );
        }
        let segments = by_segment
            .into_iter()
            .map(|(segment, mut entries)| {
                entries.sort_unstable_by_key(|e| e.0);
                let (docs, facts): (Vec<DocId>, Vec<DocFacts>) = entries.into_iter().unzip();
                let entries = SegmentFacts {
                    docs: docs.into(),
                    facts: facts.into(),
                };
                (segment, Arc::new(entries))
            })
            .collect();
        Ok(Arc::new(FactsOverlay {
            segments,
            musicians: self.facts.len(),
        }))
    }
}

/// The live document of musician `id` in `searcher`: its segment and doc id.
fn live_doc(
    searcher: &Searcher,
    id_field: Field,
    id: &str,
) -> Result<Option<(SegmentId, DocId)>, IndexError> {
    Ok(crate::index::docs_of(searcher, id_field, id)?
        .into_iter()
        .map(|(ord, doc)| (searcher.segment_reader(ord), doc))
        .find(|(seg, doc)| seg.alive_bitset().is_none_or(|a| a.is_alive(*doc)))
        .map(|(seg, doc)| (seg.segment_id(), doc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(fee: u64) -> DocFacts {
        DocFacts {
            lat: 1.0,
            lon: 2.0,
            radius: 3.0,
            bayes: 3.5,
            fee,
            currency: 7,
            active: true,
        }
    }

    proptest::proptest! {
        /// Whatever the entries and the order of the docs asked (ascending runs with jumps, as
        /// scans ask, and going back), the cursor answers what a lookup in the list answers.
        #[test]
        fn the_cursor_answers_as_a_lookup_in_any_order(
            listed in proptest::collection::btree_set(0u32..400, 0..120),
            asked in proptest::collection::vec(0u32..420, 0..200),
            ascending in proptest::bool::ANY,
        ) {
            let mut asked = asked;
            if ascending {
                asked.sort_unstable();
            }
            let entries: SegmentEntries = Arc::new(SegmentFacts {
                docs: listed.iter().copied().collect(),
                facts: listed.iter().map(|d| facts(u64::from(*d))).collect(),
            });
            let mut o = SegmentOverlay::new(Some(entries));
            for doc in asked {
                let want = listed.contains(&doc).then(|| facts(u64::from(doc)));
                proptest::prop_assert_eq!(o.entry(doc), want, "doc {}", doc);
            }
            proptest::prop_assert_eq!(SegmentOverlay::new(None).entry(2), None);
        }
    }
}
