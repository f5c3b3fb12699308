//! The Raft log: a purpose-built append-only file store (segments), plus the vote.
//!
//! Layout under the log directory:
//! - `seg-{first index:020}.log`: records `[u32 LE length][u32 LE crc32][bincode entry]`, in
//!   index order; a new segment starts when the current one passes [`SEGMENT_BYTES`];
//! - `vote`, `purged`: small files replaced atomically (write a temporary file, fsync, rename,
//!   fsync the directory); `committed`: a restart hint, replaced by rename without a sync, and
//!   ignored when unreadable.
//!
//! Promises:
//! - When `append` reports the batch flushed to openraft, every entry of the batch is on disk:
//!   one write and one `fdatasync` per batch (and a directory sync when the batch opened a new
//!   segment). `save_vote` returns after the vote is on disk.
//! - A crash can tear only the tail of the last segment; opening drops a record whose length or
//!   checksum does not hold, and everything after it (those entries were never reported
//!   flushed). `truncate` cuts the files at once and syncs.
//! - `purge(upto)` records the purged log id durably, then deletes every segment that holds
//!   only purged entries, so disk stays bounded by the snapshot policy plus one segment.
//! - All file work runs on tokio's blocking pool (`spawn_blocking`), never on async workers.
//! - The newest entries are also kept decoded in memory ([`Recent`], at most
//!   [`RECENT_ENTRIES`] entries and [`RECENT_BYTES`] of their encoding): a read wholly among
//!   them (the replication streams and the state machine read what was just appended) is
//!   served on the calling task without touching the files. The cache holds exactly the
//!   entries the files hold at those indexes: appends add to it, truncation and purges cut it
//!   as they cut the files.
//!
//! Why not sled: openraft dropped its own sled store for runaway memory and disk use; sled's
//! `flush()` is not durable on Linux (`sync_file_range`, no cache flush); made durable, a sled log
//! is level at batch 1 and slower at batch 64, takes three times the disk per entry and does not
//! give it back when entries are removed. The figures are in docs/cluster.md
//! (`cargo test -p mussikon-cluster --release --test log_bench -- --nocapture`).
//! Proved by `tests/storage_suite.rs` (openraft's conformance suite) and the unit tests below.

use crate::types::{decode, encode, NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Most entry bytes one AppendEntries carries (at least one entry is always sent).
pub const MAX_APPEND_BYTES: u64 = 1024 * 1024;
/// Histogram: seconds per appended batch, write and `fdatasync`.
pub const LOG_APPEND_SECONDS: &str = "mussikon_raft_log_append_seconds";
/// Histogram: entries per appended batch.
pub const LOG_APPEND_ENTRIES: &str = "mussikon_raft_log_append_entries";
/// Record header: length and checksum.
const HEADER: usize = 8;

/// Most entries [`Recent`] keeps. Under 64 writers the leader appends about 600 entries a
/// second, so this covers a follower or the state machine running a second or more behind.
pub const RECENT_ENTRIES: usize = 1024;

/// Most bytes (of their encoding) of the entries [`Recent`] keeps: a bound for bulk imports,
/// whose entries carry thousands of musicians each.
pub const RECENT_BYTES: u64 = 32 * 1024 * 1024;

/// The newest entries of the log, decoded, contiguous by index: a suffix of the log (or empty).
/// Cloning one is cheap (the command inside is shared, [`crate::types::Request`]).
struct Recent {
    /// Each entry with the length of its record.
    entries: VecDeque<(Entry<TypeConfig>, u32)>,
    /// Sum of the records' lengths.
    bytes: u64,
    max_entries: usize,
    max_bytes: u64,
}

impl Recent {
    fn new(max_entries: usize, max_bytes: u64) -> Recent {
        Recent {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.get_log_id().index)
    }

    /// Adds the entry that follows the last one (any other empties the cache first, so it stays
    /// contiguous), then drops the oldest beyond the bounds.
    fn push(&mut self, entry: Entry<TypeConfig>, len: u32) {
        let index = entry.get_log_id().index;
        let follows = self
            .entries
            .back()
            .is_none_or(|(e, _)| e.get_log_id().index + 1 == index);
        if !follows {
            self.entries.clear();
            self.bytes = 0;
        }
        self.entries.push_back((entry, len));
        self.bytes += u64::from(len);
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some((_, len)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= u64::from(len);
        }
    }

    /// Drops the entries from `index` on (a truncation).
    fn drop_from(&mut self, index: u64) {
        while let Some((e, len)) = self.entries.back() {
            if e.get_log_id().index < index {
                break;
            }
            self.bytes -= u64::from(*len);
            self.entries.pop_back();
        }
    }

    /// Drops the entries up to `index` included (a purge).
    fn drop_upto(&mut self, index: u64) {
        while let Some((e, len)) = self.entries.front() {
            if e.get_log_id().index > index {
                break;
            }
            self.bytes -= u64::from(*len);
            self.entries.pop_front();
        }
    }

    fn get(&self, index: u64) -> Option<&Entry<TypeConfig>> {
        let first = self.first_index()?;
        let at = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(at).map(|(e, _)| e)
    }
}

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io_write(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(anyerror::AnyError::error(e.to_string())).into()
}

fn io_read(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_logs(anyerror::AnyError::error(e.to_string())).into()
}

/// Where one entry lives.
#[derive(Clone, Copy, Debug)]
struct Loc {
    log_id: LogId<NodeId>,
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    /// Shared so that a batch's `fdatasync` can run after the store's lock is released.
    file: Arc<File>,
    size: u64,
}

struct Inner {
    dir: PathBuf,
    /// By first index.
    segments: BTreeMap<u64, Segment>,
    entries: BTreeMap<u64, Loc>,
    purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    /// When the commit hint file was last written.
    committed_saved: Option<Instant>,
    /// Least time between two writes of the commit hint ([`COMMIT_HINT_EVERY`]).
    hint_every: Duration,
    /// The newest entries, decoded.
    recent: Recent,
}

/// The commit hint is written at most this often. It is only a hint (the leader re-sends the
/// commit index), and writing it on every advance cost a blocking task, a file create and a
/// rename per replicated batch (about 3 % of a follower's CPU under write load): a restarted
/// node applies up to a hint at most this old, then learns the rest from the leader.
const COMMIT_HINT_EVERY: Duration = Duration::from_millis(200);

/// The durable log store. Cheap to clone; clones share the files.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.log"))
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    replace_file(dir, name, bytes, true)
}

/// Replaces `dir/name` with `bytes` through a renamed temporary file, so a kill leaves the old
/// or the new content, never a torn one; `durable` adds the fsyncs that make it survive a
/// power loss too.
fn replace_file(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

fn read_small<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> StorageResult<Option<T>> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => decode(&bytes).map(Some).map_err(io_read),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_read(e)),
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, dropping a torn tail.
    pub fn open(dir: impl AsRef<Path>) -> StorageResult<LogStore> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_write)?;
        let purged: Option<LogId<NodeId>> = read_small(&dir, "purged")?;
        let vote = read_small(&dir, "vote")?;
        // Only a hint for a faster restart (the leader re-sends the commit index): an
        // unreadable one is dropped rather than keeping the node down.
        let committed: Option<LogId<NodeId>> =
            match read_small::<Option<LogId<NodeId>>>(&dir, "committed") {
                Ok(c) => c.flatten(),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring an unreadable commit hint");
                    None
                }
            };
        let mut firsts = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io_read)? {
            let name = e.map_err(io_read)?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("seg-")
                .and_then(|s| s.strip_suffix(".log"))
            {
                firsts.push(n.parse::<u64>().map_err(io_read)?);
            }
        }
        firsts.sort_unstable();
        let mut inner = Inner {
            dir,
            segments: BTreeMap::new(),
            entries: BTreeMap::new(),
            purged,
            vote,
            committed,
            committed_saved: None,
            hint_every: COMMIT_HINT_EVERY,
            recent: Recent::new(RECENT_ENTRIES, RECENT_BYTES),
        };
        let count = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            inner.load_segment(first, i + 1 == count)?;
        }
        let floor = inner.purged.map(|p| p.index);
        if let Some(p) = floor {
            inner.entries = inner.entries.split_off(&(p + 1));
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// `f` on the store here, on the calling task, if its lock is free now; `None` if it is held
    /// (a file operation may be holding it: never wait for one on an async worker) or `f` gives
    /// `None`.
    fn cached<T>(&self, f: impl FnOnce(&Inner) -> Option<T>) -> Option<T> {
        match self.inner.try_lock() {
            Ok(inner) => f(&inner),
            Err(std::sync::TryLockError::Poisoned(e)) => f(&e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    async fn run<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner) -> StorageResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&inner)))
            .await
            .map_err(io_write)?
    }

    /// Appends `entries` (contiguous after the last one) and returns once they are on disk.
    ///
    /// The batch is written under the store's lock and synced (one `fdatasync`) after the lock
    /// is released, so reads of earlier entries (the replication streams, the state machine)
    /// do not wait for the disk. Appends are never concurrent: openraft awaits each one.
    /// Records `mussikon_raft_log_append_seconds` (write and sync) and
    /// `mussikon_raft_log_append_entries` (batch size).
    pub async fn append_durably(&self, entries: Vec<Entry<TypeConfig>>) -> StorageResult<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let count = entries.len();
            let written = lock(&inner).append(entries)?;
            if let Some(file) = written {
                file.sync_data().map_err(io_write)?;
                metrics::histogram!(LOG_APPEND_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::histogram!(LOG_APPEND_ENTRIES).record(count as f64);
            }
            Ok(())
        })
        .await
        .map_err(io_write)?
    }

    /// The last commit index openraft reported (0 before any).
    pub fn committed_index(&self) -> u64 {
        lock(&self.inner).committed.map(|c| c.index).unwrap_or(0)
    }

    /// Bytes the log occupies on disk (segments only).
    pub fn disk_bytes(&self) -> u64 {
        lock(&self.inner).segments.values().map(|s| s.size).sum()
    }
}

impl Inner {
    fn load_segment(&mut self, first: u64, last: bool) -> StorageResult<()> {
        let path = segment_path(&self.dir, first);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_read)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_read)?;
        let mut off = 0usize;
        let mut good = 0usize;
        while off + HEADER <= bytes.len() {
            let len =
                u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]])
                    as usize;
            let crc = u32::from_le_bytes([
                bytes[off + 4],
                bytes[off + 5],
                bytes[off + 6],
                bytes[off + 7],
            ]);
            let Some(body) = bytes.get(off + HEADER..off + HEADER + len) else {
                break;
            };
            if crc32fast::hash(body) != crc {
                break;
            }
            let entry: Entry<TypeConfig> = decode(body).map_err(io_read)?;
            let log_id = *entry.get_log_id();
            self.entries.insert(
                log_id.index,
                Loc {
                    log_id,
                    segment: first,
                    offset: off as u64,
                    len: (HEADER + len) as u32,
                },
            );
            off += HEADER + len;
            good = off;
        }
        if good < bytes.len() {
            if !last {
                return Err(io_read(format!(
                    "{} is damaged at byte {good} and is not the last segment",
                    path.display()
                )));
            }
            tracing::warn!(path = %path.display(), at = good, "dropping the torn tail of the log");
            file.set_len(good as u64).map_err(io_write)?;
            file.sync_all().map_err(io_write)?;
        }
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                size: good as u64,
            },
        );
        Ok(())
    }

    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries
            .values()
            .next_back()
            .map(|l| l.log_id)
            .or(self.purged)
    }

    /// The entry at `loc`: from [`Recent`] when it is there, else read from its segment.
    fn read(&self, loc: &Loc) -> StorageResult<Entry<TypeConfig>> {
        if let Some(entry) = self.recent.get(loc.log_id.index) {
            return Ok(entry.clone());
        }
        let seg = self
            .segments
            .get(&loc.segment)
            .ok_or_else(|| io_read(format!("segment {} missing", loc.segment)))?;
        let mut buf = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(io_read)?;
        decode(&buf[HEADER..]).map_err(io_read)
    }

    fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.collect(range, u64::MAX, |loc| self.read(loc).map(Some))
            .map(Option::unwrap_or_default)
    }

    /// Entries `[start, end)`, stopping before the one that would bring the encoded total
    /// above `max_bytes`, but always at least the first (a non-empty range never reads empty).
    fn entries_limited(
        &self,
        start: u64,
        end: u64,
        max_bytes: u64,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.collect(start..end, max_bytes, |loc| self.read(loc).map(Some))
            .map(Option::unwrap_or_default)
    }

    /// What [`Inner::entries`] or [`Inner::entries_limited`] would read, if every entry of it
    /// is in [`Recent`]; `None` if one is not.
    fn cached_entries<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        max_bytes: u64,
    ) -> Option<Vec<Entry<TypeConfig>>> {
        let read = |loc: &Loc| Ok(self.recent.get(loc.log_id.index).cloned());
        self.collect(range, max_bytes, read).ok().flatten()
    }

    /// The entries in `range` through `read`, stopping before the one that would bring the
    /// encoded total above `max_bytes` (always at least the first); `None` as soon as `read`
    /// gives `None` for one.
    fn collect<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        max_bytes: u64,
        read: impl Fn(&Loc) -> StorageResult<Option<Entry<TypeConfig>>>,
    ) -> StorageResult<Option<Vec<Entry<TypeConfig>>>> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
            (start, end)
        {
            if s > e
                || (s == e && !matches!((start, end), (Bound::Included(_), Bound::Included(_))))
            {
                return Ok(Some(Vec::new()));
            }
        }
        let mut total = 0u64;
        let mut out = Vec::new();
        for loc in self.entries.range((start, end)).map(|(_, loc)| loc) {
            total += u64::from(loc.len);
            if !out.is_empty() && total > max_bytes {
                break;
            }
            match read(loc)? {
                Some(entry) => out.push(entry),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// Writes `entries` after the last one and records where they are; returns the segment
    /// file to sync (`None`: nothing was written). Not durable until that sync: the caller
    /// syncs before it reports the batch flushed.
    fn append(&mut self, mut entries: Vec<Entry<TypeConfig>>) -> StorageResult<Option<Arc<File>>> {
        // Entries at or below the purge point are already covered by a snapshot: skip them
        // (openraft's suite appends such entries after a state machine got ahead of the log).
        if let Some(p) = self.purged {
            entries.retain(|e| e.get_log_id().index > p.index);
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let mut next = self.last_log_id().map(|l| l.index + 1);
        let need_new = match self.segments.iter().next_back() {
            None => true,
            Some((_, s)) => s.size >= SEGMENT_BYTES,
        };
        let first_index = entries[0].get_log_id().index;
        if need_new || self.segments.is_empty() {
            let path = segment_path(&self.dir, first_index);
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(io_write)?;
            sync_dir(&self.dir).map_err(io_write)?;
            self.segments.insert(
                first_index,
                Segment {
                    file: Arc::new(file),
                    size: 0,
                },
            );
        }
        let Some((&seg_first, _)) = self.segments.iter().next_back() else {
            return Err(io_write("no segment"));
        };
        let mut buf = Vec::new();
        let mut locs: Vec<Loc> = Vec::with_capacity(entries.len());
        let base = self.segments.get(&seg_first).map(|s| s.size).unwrap_or(0);
        for entry in &entries {
            let log_id = *entry.get_log_id();
            if next.is_some_and(|n| n != log_id.index) {
                return Err(io_write(format!(
                    "append of index {} after {:?}: the log must stay contiguous",
                    log_id.index,
                    self.last_log_id()
                )));
            }
            next = Some(log_id.index + 1);
            let body = encode(entry).map_err(io_write)?;
            let offset = base + buf.len() as u64;
            buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            buf.extend_from_slice(&body);
            locs.push(Loc {
                log_id,
                segment: seg_first,
                offset,
                len: (HEADER + body.len()) as u32,
            });
        }
        let seg = self
            .segments
            .get_mut(&seg_first)
            .ok_or_else(|| io_write("no segment"))?;
        seg.file.write_all_at(&buf, base).map_err(io_write)?;
        seg.size = base + buf.len() as u64;
        let file = seg.file.clone();
        for (loc, entry) in locs.into_iter().zip(entries) {
            self.entries.insert(loc.log_id.index, loc);
            self.recent.push(entry, loc.len);
        }
        Ok(Some(file))
    }

    /// Deletes entries from `index` on.
    fn truncate(&mut self, index: u64) -> StorageResult<()> {
        let Some(first) = self.entries.range(index..).next().map(|(_, l)| *l) else {
            return Ok(());
        };
        self.entries.split_off(&index);
        self.recent.drop_from(index);
        let later: Vec<u64> = self
            .segments
            .range(first.segment + 1..)
            .map(|(k, _)| *k)
            .collect();
        for k in later {
            self.segments.remove(&k);
            std::fs::remove_file(segment_path(&self.dir, k)).map_err(io_write)?;
        }
        if let Some(seg) = self.segments.get_mut(&first.segment) {
            seg.file.set_len(first.offset).map_err(io_write)?;
            seg.file.sync_all().map_err(io_write)?;
            seg.size = first.offset;
        }
        sync_dir(&self.dir).map_err(io_write)
    }

    fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        if self.purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        write_atomic(&self.dir, "purged", &encode(&log_id).map_err(io_write)?).map_err(io_write)?;
        self.purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        self.recent.drop_upto(log_id.index);
        // A segment can go when the next one starts at or below the first kept index.
        let keep_from = log_id.index + 1;
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        for pair in firsts.windows(2) {
            if pair[1] <= keep_from {
                self.segments.remove(&pair[0]);
                std::fs::remove_file(segment_path(&self.dir, pair[0])).map_err(io_write)?;
            }
        }
        if self.entries.is_empty() {
            // Everything is purged: the remaining segment holds only purged entries.
            let all: Vec<u64> = self.segments.keys().copied().collect();
            for k in all {
                self.segments.remove(&k);
                std::fs::remove_file(segment_path(&self.dir, k)).map_err(io_write)?;
            }
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        if let Some(hit) = self.cached(|inner| inner.cached_entries(range, u64::MAX)) {
            return Ok(hit);
        }
        self.run(move |inner| inner.entries(range)).await
    }

    /// What replication sends in one AppendEntries: at most [`MAX_APPEND_BYTES`] of entries
    /// (at least one). openraft gives each AppendEntries one heartbeat interval (100 ms by
    /// default) to complete, so a count limit alone let a learner catching up on large entries
    /// (bulk imports, 5,000 musicians each) time out on every attempt and never catch up.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        if let Some(hit) = self.cached(|inner| inner.cached_entries(start..end, MAX_APPEND_BYTES)) {
            return Ok(hit);
        }
        self.run(move |inner| inner.entries_limited(start, end, MAX_APPEND_BYTES))
            .await
    }
}

impl LogStore {
    /// Whether nothing was ever stored: no vote, no entry, nothing purged.
    pub fn is_fresh(&self) -> bool {
        let inner = lock(&self.inner);
        inner.vote.is_none() && inner.purged.is_none() && inner.last_log_id().is_none()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = lock(&self.inner);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: inner.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let vote = *vote;
        self.run(move |inner| {
            let bytes = encode(&vote).map_err(io_write)?;
            write_atomic(&inner.dir, "vote", &bytes).map_err(|e| {
                StorageError::from(StorageIOError::write_vote(anyerror::AnyError::error(
                    e.to_string(),
                )))
            })?;
            inner.vote = Some(vote);
            Ok(())
        })
        .await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(lock(&self.inner).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // Not needed for safety (the leader re-sends the commit index), only for a faster
        // restart: kept in memory on every advance, written at most every COMMIT_HINT_EVERY,
        // replaced by rename (a kill never leaves a torn file) but not synced.
        {
            let mut inner = lock(&self.inner);
            inner.committed = committed;
            let every = inner.hint_every;
            if inner.committed_saved.is_some_and(|t| t.elapsed() < every) {
                return Ok(());
            }
            inner.committed_saved = Some(Instant::now());
        }
        self.run(move |inner| {
            // The newest value when the write runs (a later advance may have overtaken this one).
            let bytes = encode(&inner.committed).map_err(io_write)?;
            replace_file(&inner.dir, "committed", &bytes, false).map_err(io_write)
        })
        .await
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.append_durably(entries.into_iter().collect()).await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.run(move |inner| inner.truncate(log_id.index)).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.run(move |inner| inner.purge(log_id)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_torn_commit_hint_does_not_keep_the_log_from_opening() {
        let dir = tempfile::tempdir().unwrap();
        drop(LogStore::open(dir.path()).unwrap());
        // What a kill between truncating and writing used to leave.
        std::fs::write(dir.path().join("committed"), b"").unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        assert_eq!(log.committed_index(), 0);
    }

    #[tokio::test]
    async fn the_commit_hint_is_kept_in_memory_at_once_and_written_at_most_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path()).unwrap();
        // An interval no stall of a loaded machine reaches, so the test cannot flake.
        lock(&log.inner).hint_every = Duration::from_secs(3600);
        let id = |index| Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index));
        log.save_committed(id(5)).await.unwrap();
        // Within the interval of the first write: memory only.
        log.save_committed(id(9)).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), id(9));
        assert_eq!(log.committed_index(), 9);
        drop(log);
        // A restart sees the older hint, as after a kill; the leader re-sends the rest.
        let reopened = LogStore::open(dir.path()).unwrap();
        assert_eq!(reopened.committed_index(), 5);
    }

    /// An entry of `term` at `index` whose command names both (a stale entry of another term
    /// at the same index reads differently).
    fn termed(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: openraft::EntryPayload::Normal(crate::types::Request::from(
                mussikon_engine::Command::DeleteMusician {
                    id: format!("t{term}-i{index}"),
                },
            )),
        }
    }

    /// One step of [`reads_through_the_recent_entries_cache_agree_with_the_log`]: what to do
    /// (`kind`, 0..10), a number to pick its argument with, and four reads (a start offset and
    /// a length each).
    #[derive(Debug, Clone)]
    struct Step {
        kind: u64,
        pick: u64,
        reads: [(u64, u64); 4],
    }

    fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
        use proptest::prelude::*;
        let step = (0..10u64, any::<u64>(), any::<[(u64, u64); 4]>())
            .prop_map(|(kind, pick, reads)| Step { kind, pick, reads });
        proptest::collection::vec(step, 400)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Appends, truncations and purges in random order, on stores whose cache keeps 3
        /// entries, 7 entries or at most 2 KiB: every read (whole ranges, and replication's
        /// byte-limited ones) gives what a model of the log holds, whether it came from the
        /// cache or the files; a read served by the cache alone gives the same; and the files
        /// reopened give the model.
        #[test]
        fn reads_through_the_recent_entries_cache_agree_with_the_log(
            (max_entries, max_bytes) in proptest::prop_oneof![
                proptest::strategy::Just((3usize, u64::MAX)),
                proptest::strategy::Just((7, u64::MAX)),
                proptest::strategy::Just((64, 2048)),
            ],
            steps in steps(),
        ) {
            check_cache_against_model(max_entries, max_bytes, &steps);
        }
    }

    fn check_cache_against_model(max_entries: usize, max_bytes: u64, steps: &[Step]) {
        // `pick` and the reads' numbers taken below `n` (0 when `n` is 0).
        let below = |v: u64, n: u64| v % n.max(1);
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        lock(&log.inner).recent = Recent::new(max_entries, max_bytes);
        let mut model: BTreeMap<u64, Entry<TypeConfig>> = BTreeMap::new();
        let mut purged = 0u64;
        let mut term = 1u64;
        let mut served_by_cache = 0;
        for step in steps {
            let last = model.keys().next_back().copied().unwrap_or(purged);
            let mut inner = lock(&log.inner);
            match step.kind {
                0..=5 => {
                    let n = 1 + below(step.pick, 4);
                    let batch: Vec<_> = (last + 1..=last + n).map(|i| termed(term, i)).collect();
                    inner.append(batch.clone()).unwrap();
                    model.extend(batch.into_iter().map(|e| (e.log_id.index, e)));
                }
                6..=7 if last > purged => {
                    // A new leader's entries replace the tail from `at` on.
                    let at = purged + 1 + below(step.pick, last - purged);
                    inner.truncate(at).unwrap();
                    model.split_off(&at);
                    term += 1;
                }
                8 if last > purged + 2 => {
                    let upto = purged + 1 + below(step.pick, last - purged - 2);
                    let id = model[&upto].log_id;
                    inner.purge(id).unwrap();
                    model = model.split_off(&(upto + 1));
                    purged = upto;
                }
                _ => {}
            }
            let last = model.keys().next_back().copied().unwrap_or(purged);
            for &(start, len) in &step.reads {
                let a = purged + 1 + below(start, last + 2 - purged);
                let b = a + below(len, 6);
                let want: Vec<_> = model.range(a..b).map(|(_, e)| e.clone()).collect();
                assert_eq!(inner.entries(a..b).unwrap(), want, "{a}..{b}");
                if let Some(hit) = inner.cached_entries(a..b, u64::MAX) {
                    assert_eq!(hit, want, "cached {a}..{b}");
                    served_by_cache += usize::from(!want.is_empty());
                }
                let limited = inner.entries_limited(a, b, 100).unwrap();
                assert_eq!(limited[..], want[..limited.len()]);
                assert_eq!(limited.is_empty(), want.is_empty());
                if let Some(hit) = inner.cached_entries(a..b, 100) {
                    assert_eq!(hit, limited, "cached, limited {a}..{b}");
                }
                let want: Vec<_> = model.range(a..).map(|(_, e)| e.clone()).collect();
                assert_eq!(inner.entries(a..).unwrap(), want, "{a}..");
            }
            // The cache holds only what the log holds at those indexes.
            for (e, _) in &inner.recent.entries {
                assert_eq!(model.get(&e.log_id.index), Some(e), "cached {}", e.log_id);
            }
            assert!(inner.recent.entries.len() <= max_entries);
            assert!(inner.recent.bytes <= max_bytes);
        }
        assert!(
            served_by_cache > 50,
            "the cache served {served_by_cache} reads"
        );
        drop(log);
        let reopened = LogStore::open(dir.path()).unwrap();
        let want: Vec<_> = model.values().cloned().collect();
        assert_eq!(lock(&reopened.inner).entries(..).unwrap(), want);
    }

    /// An entry of about `kb` KiB.
    fn entry(index: u64, kb: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(crate::types::Request::from(
                mussikon_engine::Command::DeleteMusician {
                    id: "x".repeat(kb * 1024),
                },
            )),
        }
    }

    #[tokio::test]
    async fn replication_reads_are_limited_by_bytes_but_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path()).unwrap();
        let mut all: Vec<_> = (1..=10).map(|i| entry(i, 300)).collect();
        all.push(entry(11, 3 * 1024));
        all.push(entry(12, 1));
        log.append_durably(all.clone()).await.unwrap();
        // 300 KiB entries: three fit in MAX_APPEND_BYTES (1 MiB), a fourth would not.
        let got = log.limited_get_log_entries(1, 13).await.unwrap();
        assert_eq!(got, all[0..3]);
        let got = log.limited_get_log_entries(9, 13).await.unwrap();
        assert_eq!(got, all[8..10], "the 3 MiB entry does not join a batch");
        // An entry above the limit is still sent, alone.
        let got = log.limited_get_log_entries(11, 13).await.unwrap();
        assert_eq!(got, all[10..11]);
        let got = log.limited_get_log_entries(12, 13).await.unwrap();
        assert_eq!(got, all[11..12]);
        assert!(log.limited_get_log_entries(5, 5).await.unwrap().is_empty());
    }
}
