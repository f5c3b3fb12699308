//! Point-in-time reads of the store while writes go on: what lets an export (a backup, a Raft
//! snapshot) copy the state at one applied sequence without stopping writes for its length.
//!
//! sled 0.34 has no snapshots: an iterator reads each leaf as it is when it gets there. So a
//! reader that wants the store as of one moment opens a [`View`] at that moment (the engine
//! does it under its writer lock, where no write is half done) and from then on every write
//! to a viewed tree first records the key's *pre-image*, its value as it was before the write
//! (or "absent"), in every open view. The first record of a key wins, so a view holds, for
//! every key written since it opened, the key's value at the opening. [`View::as_of`] merges a
//! live iteration of a tree with those pre-images:
//!
//! - a key the iteration yields that a write touched since the opening reads as its
//!   pre-image (dropped when it was absent: created since);
//! - a key with a pre-image that the iteration skipped (deleted by the time the iteration
//!   passed it) is put back in its place, so the output stays in key order.
//!
//! Why it is exact: a write records its pre-image inside its transaction, before its commit
//! can be seen. So whatever an iteration reads of a key written since the opening, the
//! pre-image is already recorded when the reader looks it up (right after the iteration has
//! yielded the next key), and a key never written since reads as it was at the opening.
//!
//! Promises: an iteration through a view yields exactly the (key, value) pairs of the tree at
//! the view's opening, in key order, whatever writes ran meanwhile (proved by the tests below
//! and `snapshot`'s). A view costs writes one extra read of each key they write while it is
//! open, and memory for each distinct key written meanwhile; dropping the [`OpenView`] ends both.
//! Bulk loads and clears bypass views: the engine keeps them from running while one is open.

use crate::index::lock;
use sled::IVec;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

/// The trees a view covers: those an export reads by iterating while writes go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Viewed {
    Musicians = 0,
    Gigs = 1,
    Messages = 2,
}

/// Pre-images of the keys of one tree, by key; `None`: the key was absent at the opening.
type PreImages = BTreeMap<Vec<u8>, Option<IVec>>;

/// One reader's view of the store as of its opening.
#[derive(Default)]
pub(crate) struct View {
    pre: [Mutex<PreImages>; 3],
}

impl View {
    /// Records `key`'s pre-image in `tree` unless one is recorded already. `read` gives the
    /// key's value as the writing transaction sees it, and is called only when needed.
    fn record<E>(
        &self,
        tree: Viewed,
        key: &[u8],
        read: impl FnOnce() -> Result<Option<IVec>, E>,
    ) -> Result<(), E> {
        let mut pre = lock(&self.pre[tree as usize]);
        if !pre.contains_key(key) {
            pre.insert(key.to_vec(), read()?);
        }
        Ok(())
    }

    /// How many pre-images this view holds (all trees).
    pub(crate) fn recorded(&self) -> usize {
        self.pre.iter().map(|p| lock(p).len()).sum()
    }

    /// `live` (an iteration of `tree` in key order, begun after this view opened) as `tree`
    /// was at the opening.
    pub(crate) fn as_of<'a, I>(&'a self, tree: Viewed, live: I) -> AsOf<'a, I>
    where
        I: Iterator<Item = sled::Result<(IVec, IVec)>>,
    {
        AsOf {
            live,
            pre: &self.pre[tree as usize],
            last: None,
            ready: VecDeque::new(),
            done: false,
        }
    }
}

/// The iterator of [`View::as_of`].
pub(crate) struct AsOf<'a, I> {
    live: I,
    pre: &'a Mutex<PreImages>,
    /// The last key the live iteration yielded.
    last: Option<IVec>,
    ready: VecDeque<(IVec, IVec)>,
    done: bool,
}

impl<I> AsOf<'_, I> {
    /// Queues the pre-images of keys after `last` and before `upto` (to the end: `None`) that
    /// existed at the opening: keys the live iteration did not yield, so gone when it passed.
    fn restore_skipped(&mut self, pre: &PreImages, upto: Option<&[u8]>) {
        let from = match &self.last {
            Some(k) => Bound::Excluded(k.as_ref()),
            None => Bound::Unbounded,
        };
        let to = match upto {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        for (k, v) in pre.range::<[u8], _>((from, to)) {
            if let Some(v) = v {
                self.ready.push_back((IVec::from(k.as_slice()), v.clone()));
            }
        }
    }
}

impl<I> Iterator for AsOf<'_, I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(kv) = self.ready.pop_front() {
                return Some(Ok(kv));
            }
            if self.done {
                return None;
            }
            match self.live.next() {
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok((k, v))) => {
                    let pre = lock(self.pre);
                    self.restore_skipped(&pre, Some(&k));
                    match pre.get(k.as_ref()) {
                        None => self.ready.push_back((k.clone(), v)),
                        Some(Some(old)) => self.ready.push_back((k.clone(), old.clone())),
                        // Created since the opening.
                        Some(None) => {}
                    }
                    drop(pre);
                    self.last = Some(k);
                }
                None => {
                    let pre = lock(self.pre);
                    self.restore_skipped(&pre, None);
                    drop(pre);
                    self.done = true;
                }
            }
        }
    }
}

/// The views open on one store.
#[derive(Default)]
pub(crate) struct Views {
    open: Mutex<Vec<Arc<View>>>,
}

impl Views {
    /// Opens a view of the store as it is now, closed when the answer is dropped. The caller
    /// keeps writes from running while it opens (the engine's writer lock), so the view starts
    /// between two writes.
    pub(crate) fn open(&self) -> OpenView<'_> {
        let view = Arc::new(View::default());
        lock(&self.open).push(view.clone());
        OpenView { views: self, view }
    }

    /// The views a write about to start must record into (usually none).
    pub(crate) fn current(&self) -> Vec<Arc<View>> {
        lock(&self.open).clone()
    }
}

/// A view while it is open; dropping it closes it (writes stop recording into it).
pub(crate) struct OpenView<'a> {
    views: &'a Views,
    view: Arc<View>,
}

impl std::ops::Deref for OpenView<'_> {
    type Target = View;
    fn deref(&self) -> &View {
        &self.view
    }
}

impl Drop for OpenView<'_> {
    fn drop(&mut self) {
        lock(&self.views.open).retain(|v| !Arc::ptr_eq(v, &self.view));
    }
}

/// Records, in each of `views`, `key`'s pre-image in `tree` before a write changes it; `read`
/// gives the key's current value as the writing transaction sees it.
pub(crate) fn before_write<E>(
    views: &[Arc<View>],
    tree: Viewed,
    key: &[u8],
    read: impl Fn() -> Result<Option<IVec>, E>,
) -> Result<(), E> {
    for view in views {
        view.record(tree, key, &read)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A tree as a map, written through the view protocol: pre-image first, then the write.
    fn write(tree: &sled::Tree, views: &[Arc<View>], key: &[u8], value: Option<&[u8]>) {
        before_write(views, Viewed::Gigs, key, || tree.get(key)).unwrap();
        match value {
            Some(v) => tree.insert(key, v).unwrap(),
            None => tree.remove(key).unwrap(),
        };
    }

    fn contents(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        tree.iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Write (`Some`) or delete (`None`) a key.
        Write(u8, Option<u8>),
        /// Take this many more pairs from the view's iteration.
        Read(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..40, proptest::option::of(any::<u8>())).prop_map(|(k, v)| Op::Write(k, v)),
            (0u8..4).prop_map(Op::Read),
        ]
    }

    proptest! {
        /// Whatever writes run between the reads of an iteration, the view yields the tree as
        /// it was when the view opened; the live iteration alone does not (checked apart).
        #[test]
        fn a_view_reads_the_tree_as_it_was_at_its_opening(
            initial in proptest::collection::btree_map(0u8..40, any::<u8>(), 0..30),
            ops in proptest::collection::vec(op(), 0..80),
        ) {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let tree = db.open_tree("t").unwrap();
            for (k, v) in &initial {
                tree.insert([*k], &[*v]).unwrap();
            }
            let before = contents(&tree);
            let views = Views::default();
            let view = views.open();
            let mut it = view.as_of(Viewed::Gigs, tree.iter());
            let mut seen = Vec::new();
            for op in ops {
                match op {
                    Op::Write(k, v) => write(&tree, &views.current(), &[k], v.as_ref().map(std::slice::from_ref)),
                    Op::Read(n) => {
                        for kv in it.by_ref().take(n as usize) {
                            let (k, v) = kv.unwrap();
                            seen.push((k.to_vec(), v.to_vec()));
                        }
                    }
                }
            }
            seen.extend(it.map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()));
            prop_assert_eq!(seen, before);
            drop(view);
            prop_assert!(views.current().is_empty(), "a dropped view is closed");
        }
    }

    #[test]
    fn the_first_pre_image_of_a_key_wins_and_a_closed_view_records_nothing() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(b"a", b"1").unwrap();
        let views = Views::default();
        let view = views.open();
        write(&tree, &views.current(), b"a", Some(b"2"));
        write(&tree, &views.current(), b"a", Some(b"3"));
        write(&tree, &views.current(), b"b", Some(b"9"));
        let got: BTreeMap<Vec<u8>, Vec<u8>> = view
            .as_of(Viewed::Gigs, tree.iter())
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([(b"a".to_vec(), b"1".to_vec())]),
            "a as it was, b (created since) absent"
        );
        assert_eq!(view.recorded(), 2);
        let kept = view.view.clone();
        drop(view);
        write(&tree, &views.current(), b"c", Some(b"1"));
        assert_eq!(kept.recorded(), 2, "a closed view records nothing");
    }
}
