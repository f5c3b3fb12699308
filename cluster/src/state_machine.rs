//! The Raft state machine: the engine itself, applied through its one apply path.
//!
//! Each log entry is applied as engine sequence = log index + 1 (openraft's first entry has
//! index 0, and the engine's sequence 0 means "nothing applied"): a command entry through
//! [`Engine::apply_annexed`], a blank or membership entry through [`Engine::advance`]. Either
//! way the engine stores, in the same sled transaction as the data, an *annex*: the last applied
//! log id and the last membership. So after a crash the data and what openraft is told was
//! applied agree, and a restart neither re-applies nor skips an entry.
//!
//! The engine runs with periodic durability here (the Raft log is the durable copy); before a
//! snapshot is reported built, the engine is flushed, so the log it lets openraft purge is never
//! needed to rebuild the state.
//!
//! The annex also holds the *retired* node ids: every id a membership entry dropped. The leader
//! refuses to add one again ([`StateMachine::retired`]), so a removed node's id is never reused.
//! The set only grows; it is written in the annex only once it is non-empty (until then the
//! annex keeps its older two-field form, which older builds read).
//!
//! Snapshots are the engine's export stream in `snapshots/`, named by their id, with their
//! openraft metadata beside them (`.meta`), followed by a trailer with the retired ids
//! (`[ids][u32 LE length][RETIRED_MAGIC]`; the engine reads a stream up to its end frame, so a
//! build that knows no trailer installs such a snapshot and ignores it). A snapshot received from the leader is first made
//! the current snapshot on disk, then installed into the running engine ([`Engine::install`]
//! rebuilds store and index); if the process dies during the install, the next open installs the
//! current snapshot again. The two newest snapshots are kept (one may still be being sent).
//!
//! Whoever runs the node may observe every applied command's outcome
//! ([`StateMachine::observe_applied`]): the server publishes its real-time events from there, so
//! every node announces every change, whichever node took the request.
//!
//! All engine and file work runs on tokio's blocking pool.

use crate::log_store::write_atomic;
use crate::types::{decode, encode, NodeId, Reply, SnapshotFile, TypeConfig};
use mussikon_engine::Engine;
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Histogram: seconds per applied batch of committed entries.
pub const APPLY_SECONDS: &str = "mussikon_raft_apply_seconds";
/// Histogram: entries per applied batch.
pub const APPLY_ENTRIES: &str = "mussikon_raft_apply_entries";

type StorageResult<T> = Result<T, StorageError<NodeId>>;
type Meta = SnapshotMeta<NodeId, BasicNode>;
/// What openraft reads back from the annex: last applied log id and membership.
type Annex = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);
/// The annex's full form once a node id was retired: [`Annex`] plus the retired ids.
type RetiredAnnex = (
    Option<LogId<NodeId>>,
    StoredMembership<NodeId, BasicNode>,
    BTreeSet<NodeId>,
);

/// Ends a snapshot file that carries the retired node ids.
pub const RETIRED_MAGIC: &[u8; 8] = b"MUSRETI1";

/// Decodes an annex of either form in one pass (it is read for every applied batch): the two
/// leading fields, then the retired ids when bytes follow them.
fn decode_annex(bytes: &[u8]) -> Result<RetiredAnnex, crate::types::CodecError> {
    let ((applied, membership), used) = crate::types::decode_prefix::<Annex>(bytes)?;
    let retired = match &bytes[used..] {
        [] => BTreeSet::new(),
        rest => decode(rest)?,
    };
    Ok((applied, membership, retired))
}

/// Encodes an annex, in the older two-field form while no id is retired.
pub(crate) fn encode_annex(
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    retired: &BTreeSet<NodeId>,
) -> Result<Vec<u8>, crate::types::CodecError> {
    if retired.is_empty() {
        encode(&(applied, membership))
    } else {
        encode(&(applied, membership, retired))
    }
}

/// The ids a membership change from `old` to `new` drops.
fn dropped_ids(
    old: &StoredMembership<NodeId, BasicNode>,
    new: &openraft::Membership<NodeId, BasicNode>,
) -> Vec<NodeId> {
    old.membership()
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| new.get_node(id).is_none())
        .collect()
}

/// Appends the retired-ids trailer to a snapshot file.
pub fn write_trailer(out: &mut impl Write, retired: &BTreeSet<NodeId>) -> std::io::Result<()> {
    let ids = encode(retired).map_err(std::io::Error::other)?;
    let len = u32::try_from(ids.len()).map_err(std::io::Error::other)?;
    out.write_all(&ids)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(RETIRED_MAGIC)
}

/// Reads the trailer of a snapshot file: the retired ids and the length of the export stream
/// before it (the whole file, with no ids, when it has no trailer); leaves `file` at its
/// start. A trailer that claims more bytes than the file holds, or ids that do not decode, is
/// an error (no allocation beyond the file's size).
pub fn read_trailer<F: Read + Seek>(file: &mut F) -> std::io::Result<(BTreeSet<NodeId>, u64)> {
    let size = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    let none = (BTreeSet::new(), size);
    if size < 12 {
        return Ok(none);
    }
    let mut tail = [0u8; 12];
    file.seek(SeekFrom::Start(size - 12))?;
    file.read_exact(&mut tail)?;
    file.seek(SeekFrom::Start(0))?;
    if &tail[4..] != RETIRED_MAGIC {
        return Ok(none);
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let Some(start) = size.checked_sub(12 + len) else {
        return Err(std::io::Error::other(
            "snapshot trailer longer than the file",
        ));
    };
    let mut ids = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut ids)?;
    file.seek(SeekFrom::Start(0))?;
    let retired = decode(&ids).map_err(std::io::Error::other)?;
    Ok((retired, start))
}

fn sm_write(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(anyerror::AnyError::error(e.to_string())).into()
}

fn sm_read(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(anyerror::AnyError::error(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, anyerror::AnyError::error(e.to_string())).into()
}

/// Figures of the last snapshot built or installed, for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotFigures {
    /// Bytes of the export stream.
    pub bytes: u64,
    /// Seconds it took to build or install.
    pub seconds: f64,
}

/// Told the outcome of each command the state machine applies, with its engine sequence, on
/// every node and in log order (a [`mussikon_engine::Outcome::Batch`]'s commands one by one).
/// Runs on the applying thread: it must not block.
pub type AppliedObserver = Arc<dyn Fn(u64, &mussikon_engine::Outcome) + Send + Sync>;

struct Shared {
    engine: Engine,
    dir: PathBuf,
    current: Mutex<Option<Meta>>,
    figures: Mutex<SnapshotFigures>,
    observer: Mutex<Option<AppliedObserver>>,
}

/// Tells `observer` each command outcome in `outcome`, a batch's one by one.
fn tell(observer: &AppliedObserver, seq: u64, outcome: &mussikon_engine::Outcome) {
    match outcome {
        mussikon_engine::Outcome::Batch { outcomes } => {
            for o in outcomes {
                tell(observer, seq, o);
            }
        }
        other => observer(seq, other),
    }
}

/// The engine as openraft's state machine. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn data_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.snap"))
}

fn meta_name(id: &str) -> String {
    format!("{id}.meta")
}

/// The engine sequence of the entry at `log_id`: index + 1, since the engine's 0 is "nothing".
fn engine_seq(log_id: LogId<NodeId>) -> u64 {
    log_id.index + 1
}

/// The log index of the entry applied as engine sequence `seq` (the inverse of
/// [`engine_seq`]).
pub(crate) fn log_index_of(seq: u64) -> u64 {
    seq.saturating_sub(1)
}

/// Snapshot ids sort by time of creation: `{last index:020}-{unix millis:015}`.
fn new_snapshot_id(last: Option<LogId<NodeId>>) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{:020}-{ms:015}", last.map(|l| l.index).unwrap_or(0))
}

impl StateMachine {
    /// The state machine over `engine`, with snapshots in `dir`. If an install was interrupted
    /// (`reinstall`), installs the current snapshot again.
    pub fn open(engine: Engine, dir: impl AsRef<Path>) -> StorageResult<StateMachine> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(snap_err)?;
        let mut metas: Vec<Meta> = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(snap_err)? {
            let path = e.map_err(snap_err)?.path();
            if path.extension().is_some_and(|x| x == "meta") {
                let bytes = std::fs::read(&path).map_err(snap_err)?;
                let meta: Meta = decode(&bytes).map_err(snap_err)?;
                if data_path(&dir, &meta.snapshot_id).exists() {
                    metas.push(meta);
                }
            } else if path.extension().is_some_and(|x| x == "part") {
                let _ = std::fs::remove_file(&path);
            }
        }
        metas.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
        let current = metas.pop();
        let sm = StateMachine {
            shared: Arc::new(Shared {
                engine,
                dir,
                current: Mutex::new(current),
                figures: Mutex::new(SnapshotFigures::default()),
                observer: Mutex::new(None),
            }),
        };
        if let Some(meta) = lock(&sm.shared.current).clone() {
            let (applied, _, _) = sm.read_annex()?;
            if applied < meta.last_log_id {
                tracing::warn!(
                    snapshot = %meta.snapshot_id,
                    "the state is behind the current snapshot (an install was interrupted): installing it again"
                );
                sm.install_file(&meta)?;
            }
        }
        Ok(sm)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Tells `observer` every command applied from now on (replacing an earlier observer).
    pub fn observe_applied(&self, observer: AppliedObserver) {
        *lock(&self.shared.observer) = Some(observer);
    }

    /// Size and duration of the last snapshot built or installed.
    pub fn figures(&self) -> SnapshotFigures {
        *lock(&self.shared.figures)
    }

    fn read_annex(&self) -> StorageResult<RetiredAnnex> {
        match self.shared.engine.annex().map_err(sm_read)? {
            None => Ok((None, StoredMembership::default(), BTreeSet::new())),
            Some(bytes) => decode_annex(&bytes).map_err(sm_read),
        }
    }

    /// The node ids removed from the membership as of the last applied entry: never to be
    /// added again.
    pub fn retired(&self) -> StorageResult<BTreeSet<NodeId>> {
        Ok(self.read_annex()?.2)
    }

    async fn blocking<T, F>(&self, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&StateMachine) -> StorageResult<T> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(sm_write)?
    }

    /// Applies a batch of committed entries in one engine transaction, with the annex of the
    /// last one (its log id and the membership as of it). Records
    /// `mussikon_raft_apply_seconds` and `mussikon_raft_apply_entries` per batch.
    fn apply_all(&self, entries: Vec<Entry<TypeConfig>>) -> StorageResult<Vec<Reply>> {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let (_, mut membership, mut retired) = self.read_annex()?;
        let mut steps = Vec::with_capacity(entries.len());
        for entry in &entries {
            if let EntryPayload::Membership(m) = &entry.payload {
                retired.extend(dropped_ids(&membership, m));
                membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
            let cmd = match &entry.payload {
                EntryPayload::Normal(req) => Some(&*req.0),
                EntryPayload::Blank | EntryPayload::Membership(_) => None,
            };
            steps.push((engine_seq(entry.log_id), cmd));
        }
        let annex = encode_annex(Some(last), membership, &retired).map_err(sm_write)?;
        let started = Instant::now();
        let executed = self
            .shared
            .engine
            .apply_batch_annexed(&steps, &annex)
            .map_err(sm_write)?;
        metrics::histogram!(APPLY_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(APPLY_ENTRIES).record(steps.len() as f64);
        if let Some(observer) = lock(&self.shared.observer).clone() {
            for done in executed.iter().flatten() {
                tell(&observer, done.seq, &done.outcome);
            }
        }
        Ok(executed.into_iter().map(Reply).collect())
    }

    /// Makes `meta` (whose data is already in `dir`) the current snapshot and drops all but the
    /// two newest.
    fn set_current(&self, meta: &Meta) -> StorageResult<()> {
        let dir = &self.shared.dir;
        write_atomic(
            dir,
            &meta_name(&meta.snapshot_id),
            &encode(meta).map_err(snap_err)?,
        )
        .map_err(snap_err)?;
        *lock(&self.shared.current) = Some(meta.clone());
        let mut ids: Vec<String> = std::fs::read_dir(dir)
            .map_err(snap_err)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".meta"))
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        let keep = ids.len().saturating_sub(2);
        for id in &ids[..keep] {
            let _ = std::fs::remove_file(dir.join(meta_name(id)));
            let _ = std::fs::remove_file(data_path(dir, id));
        }
        Ok(())
    }

    fn install_file(&self, meta: &Meta) -> StorageResult<()> {
        let started = Instant::now();
        let path = data_path(&self.shared.dir, &meta.snapshot_id);
        let mut file = std::fs::File::open(&path).map_err(snap_err)?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (retired, stream_len) = read_trailer(&mut file).map_err(snap_err)?;
        let annex = encode_annex(meta.last_log_id, meta.last_membership.clone(), &retired)
            .map_err(snap_err)?;
        let summary = self
            .shared
            .engine
            .install(
                std::io::BufReader::with_capacity(1 << 20, file.take(stream_len)),
                &annex,
            )
            .map_err(snap_err)?;
        *lock(&self.shared.figures) = SnapshotFigures {
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            snapshot = %meta.snapshot_id,
            musicians = summary.musicians,
            gigs = summary.gigs,
            bytes,
            secs = started.elapsed().as_secs_f64(),
            "snapshot installed"
        );
        Ok(())
    }

    fn build(&self) -> StorageResult<Snapshot<TypeConfig>> {
        let started = Instant::now();
        let dir = &self.shared.dir;
        let tmp = dir.join(format!("build-{}.part", new_snapshot_id(None)));
        let file = std::fs::File::create(&tmp).map_err(snap_err)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let (_, annex) = self
            .shared
            .engine
            .export_annexed(&mut out)
            .map_err(snap_err)?;
        let (last_log_id, last_membership, retired) = match annex {
            Some(b) => decode_annex(&b).map_err(snap_err)?,
            None => (None, StoredMembership::default(), BTreeSet::new()),
        };
        if !retired.is_empty() {
            write_trailer(&mut out, &retired).map_err(snap_err)?;
        }
        let file = out.into_inner().map_err(snap_err)?;
        file.sync_all().map_err(snap_err)?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        drop(file);
        // What the snapshot covers must be durable in the engine before the log may go.
        self.shared.engine.flush().map_err(snap_err)?;
        let meta = Meta {
            last_log_id,
            last_membership,
            snapshot_id: new_snapshot_id(last_log_id),
        };
        let path = data_path(dir, &meta.snapshot_id);
        std::fs::rename(&tmp, &path).map_err(snap_err)?;
        self.set_current(&meta)?;
        *lock(&self.shared.figures) = SnapshotFigures {
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(snapshot = %meta.snapshot_id, bytes, secs = started.elapsed().as_secs_f64(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path }),
        })
    }

    /// A fresh file to receive a snapshot into (see `network`'s snapshot route).
    pub fn receiving_file(&self) -> SnapshotFile {
        SnapshotFile {
            path: self
                .shared
                .dir
                .join(format!("recv-{}.part", new_snapshot_id(None))),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        self.blocking(|sm| sm.build()).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> StorageResult<Annex> {
        self.blocking(|sm| sm.read_annex().map(|(applied, m, _)| (applied, m)))
            .await
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Reply>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        self.blocking(move |sm| sm.apply_all(entries)).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<SnapshotFile>> {
        Ok(Box::new(self.receiving_file()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<SnapshotFile>,
    ) -> StorageResult<()> {
        let meta = meta.clone();
        self.blocking(move |sm| {
            let target = data_path(&sm.shared.dir, &meta.snapshot_id);
            if snapshot.path != target {
                // A received file is moved; another node's file (tests) is copied.
                if snapshot.path.starts_with(&sm.shared.dir) {
                    std::fs::rename(&snapshot.path, &target).map_err(snap_err)?;
                } else {
                    std::fs::copy(&snapshot.path, &target).map_err(snap_err)?;
                }
                std::fs::File::open(&target)
                    .and_then(|f| f.sync_all())
                    .map_err(snap_err)?;
            }
            sm.set_current(&meta)?;
            sm.install_file(&meta)
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let meta = lock(&self.shared.current).clone();
        Ok(meta.map(|meta| {
            let path = data_path(&self.shared.dir, &meta.snapshot_id);
            Snapshot {
                meta,
                snapshot: Box::new(SnapshotFile { path }),
            }
        }))
    }
}
