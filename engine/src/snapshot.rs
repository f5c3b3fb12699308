//! Snapshots: a consistent, point-in-time copy of the whole store as one versioned stream.
//!
//! The same format serves exports, backups, restores and (later) Raft snapshots. Layout:
//! an 8-byte magic, then frames `[u32 little-endian length][codec record]`, where each record
//! is a [`Frame`] (storage codec, kind `SnapshotFrame`): one `Header` (format, applied
//! sequence), any number of `Musicians`, `Gigs` and `Messages` batches, and one end frame with
//! the record counts and an FNV-1a checksum of every frame before it. A reader therefore
//! detects truncation, reordering and bit flips, and never allocates more than one frame (nor
//! more than the bytes that actually arrived).
//!
//! Versions, told apart by the magic:
//! - `MUSSNAP1` (version 1): no `Messages` frames; ends with `End`.
//! - `MUSSNAP2` (version 2, written by this build): may hold `Messages` frames (after the
//!   gigs they belong to); ends with `EndV2`, which also counts the messages.
//!
//! This build restores both; a version-1 snapshot restores with no messages. A build that only
//! knows version 1 refuses a version-2 stream at its magic, rather than half-way through.
//! New frame kinds are only ever appended to [`Frame`], so their encodings stay stable.
//!
//! Export is exactly the state at `applied_seq` and does not hold writes back: it takes the
//! writer lock only to pick its moment (the applied sequence, the annex, the idempotency keys,
//! and a [`crate::view`] opened there), then streams the records through that view while writes
//! go on. A snapshot install waits for running exports (it clears the store under them).
//! Restore works on a closed data directory: it replaces the store (refusing a non-empty one
//! unless forced), marks the directory incomplete until the last record is written, and removes
//! the index so that the next [`Engine::open`] rebuilds it.

use crate::codec::{self, RecordKind};
use crate::engine::{Engine, EngineError};
use crate::model::Message;
use crate::store::{GigRecord, MusicianRecord, Store, StoreOptions};
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

/// Magic bytes opening every snapshot this build writes (version 2).
pub const MAGIC: &[u8; 8] = b"MUSSNAP2";
/// Magic bytes of version-1 snapshots (no messages), still restored.
pub const MAGIC_V1: &[u8; 8] = b"MUSSNAP1";
/// Records per frame.
const BATCH: usize = 1000;
/// Largest frame a reader accepts.
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A recorded idempotency key as a snapshot carries it.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct IdempotencyRecord {
    /// The client's key.
    pub key: String,
    /// Fingerprint of the first request's body.
    pub fingerprint: u64,
    /// When it was recorded (the command's time), ms since the epoch.
    pub at_ms: i64,
    /// Its number in the recording order.
    pub n: u64,
    /// The first answer.
    pub outcome: crate::Outcome,
}

/// One frame of the stream.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum Frame {
    /// First frame.
    Header {
        /// Storage format version.
        format: u8,
        /// Applied sequence the snapshot is at.
        applied_seq: u64,
    },
    /// A batch of musicians.
    Musicians(Vec<MusicianRecord>),
    /// A batch of gigs.
    Gigs(Vec<GigRecord>),
    /// Last frame.
    End {
        /// Musicians in the stream.
        musicians: u64,
        /// Gigs in the stream.
        gigs: u64,
        /// FNV-1a 64 of every frame's bytes before this one.
        checksum: u64,
    },
    /// A batch of chat messages (version 2).
    Messages(Vec<Message>),
    /// A batch of recorded idempotency keys with the window's bounds (version 2; streams
    /// written before keys were recorded have none). Replicas must hold the same keys, or a
    /// retried request would replay on one node and run again on another.
    Idempotency {
        /// Numbers up to `head` were forgotten.
        head: u64,
        /// The last number given.
        tail: u64,
        /// The keys in this batch.
        records: Vec<IdempotencyRecord>,
    },
    /// Last frame of a version-2 stream.
    EndV2 {
        /// Musicians in the stream.
        musicians: u64,
        /// Gigs in the stream.
        gigs: u64,
        /// Messages in the stream.
        messages: u64,
        /// FNV-1a 64 of every frame's bytes before this one.
        checksum: u64,
    },
}

/// What a snapshot held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Applied sequence of the snapshot.
    pub applied_seq: u64,
    /// Musicians.
    pub musicians: u64,
    /// Gigs.
    pub gigs: u64,
    /// Chat messages (0 for a version-1 snapshot).
    #[serde(default)]
    pub messages: u64,
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::Snapshot(msg.into())
}

struct FrameWriter<W: Write> {
    out: W,
    sum: Fnv,
}

impl<W: Write> FrameWriter<W> {
    fn write(&mut self, frame: &Frame) -> Result<(), EngineError> {
        let bytes =
            codec::encode(RecordKind::SnapshotFrame, frame).map_err(|e| bad(e.to_string()))?;
        let len = u32::try_from(bytes.len()).map_err(|_| bad("frame too large"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&bytes)?;
        self.sum.update(&bytes);
        Ok(())
    }
}

/// Reads frames one at a time, checking the checksum at the end.
pub struct FrameReader<R: Read> {
    input: R,
    sum: Fnv,
    buf: Vec<u8>,
    version: u8,
}

impl<R: Read> FrameReader<R> {
    /// Checks the magic and returns a reader positioned on the first frame.
    pub fn new(mut input: R) -> Result<FrameReader<R>, EngineError> {
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| bad("stream shorter than the magic"))?;
        let version = if &magic == MAGIC {
            2
        } else if &magic == MAGIC_V1 {
            1
        } else {
            return Err(bad("not a MussikOn snapshot (bad magic)"));
        };
        Ok(FrameReader {
            input,
            sum: Fnv::new(),
            buf: Vec::new(),
            version,
        })
    }

    /// The snapshot version the magic announced (1 or 2).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The next frame; an error on truncation, a bad frame, or a checksum mismatch at `End`.
    pub fn next_frame(&mut self) -> Result<Frame, EngineError> {
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|_| bad("truncated: missing frame length"))?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(bad(format!("frame of {len} bytes exceeds the limit")));
        }
        // Grow the buffer as bytes arrive rather than to the claimed length, so a short,
        // hostile stream claiming a huge frame costs only the bytes it actually sent.
        self.buf.clear();
        let read = (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| bad(format!("reading a frame: {e}")))?;
        if read < len {
            return Err(bad("truncated: frame shorter than its length"));
        }
        let frame: Frame =
            codec::decode(RecordKind::SnapshotFrame, &self.buf).map_err(|e| bad(e.to_string()))?;
        let checksum = match (&frame, self.version) {
            (Frame::End { checksum, .. }, 1) | (Frame::EndV2 { checksum, .. }, 2) => {
                Some(*checksum)
            }
            (Frame::Header { .. } | Frame::Musicians(_) | Frame::Gigs(_), _)
            | (Frame::Messages(_) | Frame::Idempotency { .. }, 2) => None,
            (_, v) => return Err(bad(format!("a frame that version {v} does not have"))),
        };
        if checksum.is_some_and(|c| c != self.sum.0) {
            return Err(bad("checksum mismatch"));
        }
        self.sum.update(&self.buf);
        Ok(frame)
    }
}

impl Engine {
    /// Writes a consistent snapshot of the whole store to `out`.
    ///
    /// ```
    /// # use mussikon_engine::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let engine = Engine::open(dir.path(), Config::default()).unwrap();
    /// let mut bytes = Vec::new();
    /// let summary = engine.export(&mut bytes).unwrap();
    /// assert_eq!(summary.musicians, 0);
    /// assert!(bytes.starts_with(b"MUSSNAP2"));
    /// ```
    pub fn export<W: Write>(&self, out: W) -> Result<SnapshotSummary, EngineError> {
        Ok(self.export_annexed(out)?.0)
    }

    /// [`Engine::export`], also returning the replication metadata (see
    /// [`Engine::apply_annexed`]) of exactly the exported state. Writes go on while it runs
    /// (they wait only while it reads the applied sequence, the annex and the idempotency keys);
    /// each costs one more read while an export is open.
    pub fn export_annexed<W: Write>(
        &self,
        out: W,
    ) -> Result<(SnapshotSummary, Option<Vec<u8>>), EngineError> {
        // Installs (which clear the store) wait until this export is done.
        let _installs = self.exports_running();
        let store = self.store();
        // The state to copy is the one at this moment, between two writes: its sequence,
        // annex and idempotency keys (at most IDEMPOTENCY_KEYS_KEPT) are read under the writer
        // lock, and the records through a view opened under it (crate::view), while writes go
        // on.
        let (view, applied_seq, annex, idempotency) = {
            let _w = self.writer_lock();
            (
                store.open_view(),
                store.applied_seq()?,
                store.annex()?,
                store.idempotency_records()?,
            )
        };
        let mut out = out;
        out.write_all(MAGIC)?;
        let mut fw = FrameWriter {
            out,
            sum: Fnv::new(),
        };
        fw.write(&Frame::Header {
            format: codec::FORMAT_VERSION,
            applied_seq,
        })?;
        let mut musicians = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        for r in store.musicians_as_of(&view) {
            batch.push(r?);
            if batch.len() == BATCH {
                musicians += batch.len() as u64;
                fw.write(&Frame::Musicians(std::mem::take(&mut batch)))?;
            }
        }
        if !batch.is_empty() {
            musicians += batch.len() as u64;
            fw.write(&Frame::Musicians(batch))?;
        }
        let mut gigs = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        for r in store.gigs_as_of(&view) {
            batch.push(r?);
            if batch.len() == BATCH {
                gigs += batch.len() as u64;
                fw.write(&Frame::Gigs(std::mem::take(&mut batch)))?;
            }
        }
        if !batch.is_empty() {
            gigs += batch.len() as u64;
            fw.write(&Frame::Gigs(batch))?;
        }
        let mut messages = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        for r in store.messages_as_of(&view) {
            batch.push(r?);
            if batch.len() == BATCH {
                messages += batch.len() as u64;
                fw.write(&Frame::Messages(std::mem::take(&mut batch)))?;
            }
        }
        if !batch.is_empty() {
            messages += batch.len() as u64;
            fw.write(&Frame::Messages(batch))?;
        }
        let (head, tail, keys) = idempotency;
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            fw.write(&Frame::Idempotency {
                head,
                tail,
                records: keys.by_ref().take(BATCH).collect(),
            })?;
        }
        tracing::debug!(
            applied_seq,
            musicians,
            gigs,
            messages,
            written_meanwhile = view.recorded(),
            "exported while writes went on"
        );
        drop(view);
        let checksum = fw.sum.0;
        fw.write(&Frame::EndV2 {
            musicians,
            gigs,
            messages,
            checksum,
        })?;
        fw.out.flush()?;
        Ok((
            SnapshotSummary {
                applied_seq,
                musicians,
                gigs,
                messages,
            },
            annex,
        ))
    }

    /// Restores a snapshot into the (closed) data directory `path`. Refuses a non-empty store
    /// unless `force`. The next [`Engine::open`] rebuilds the index.
    pub fn restore<R: Read>(
        path: impl AsRef<Path>,
        input: R,
        force: bool,
    ) -> Result<SnapshotSummary, EngineError> {
        let path = path.as_ref();
        std::fs::create_dir_all(path)?;
        let store = Store::open(
            &path.join("store"),
            &StoreOptions {
                cache_bytes: 64 * 1024 * 1024,
                flush_every_ms: Some(1000),
            },
        )?;
        let (m, g) = store.counts()?;
        if (m > 0 || g > 0) && !force {
            return Err(EngineError::NotEmpty {
                musicians: m,
                gigs: g,
            });
        }
        let mut reader = FrameReader::new(input)?;
        let applied_seq = read_header(&mut reader)?;
        let marker = path.join("RESTORING");
        write_marker(&marker, b"a restore did not finish; restore again\n")?;
        let index_dir = path.join("index");
        if index_dir.exists() {
            std::fs::remove_dir_all(&index_dir)?;
        }
        store.clear()?;
        let (musicians, gigs, messages) = load_frames(&store, &mut reader, |_| {})?;
        store.finish_load(applied_seq)?;
        store.flush()?;
        std::fs::remove_file(&marker)?;
        Ok(SnapshotSummary {
            applied_seq,
            musicians,
            gigs,
            messages,
        })
    }
}

/// Creates the marker file `path` with `text`, durably (the file and its directory are synced)
/// before the work it guards changes anything: the store's writes may reach the disk before a
/// marker that only sat in the page cache, and a power loss would then leave half the work
/// without the marker that says so.
pub(crate) fn write_marker(path: &Path, text: &[u8]) -> Result<(), EngineError> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(text)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads the header frame; the applied sequence it announces.
pub(crate) fn read_header<R: Read>(reader: &mut FrameReader<R>) -> Result<u64, EngineError> {
    let Frame::Header {
        format,
        applied_seq,
    } = reader.next_frame()?
    else {
        return Err(bad("the first frame is not a header"));
    };
    if format != codec::FORMAT_VERSION {
        return Err(bad(format!("snapshot format {format} is not supported")));
    }
    Ok(applied_seq)
}

/// Writes every record frame after the header into `store` (cleared by the caller), handing
/// each musician batch to `loaded` once written; checks the end frame's counts. Returns the
/// musicians, gigs and messages loaded.
pub(crate) fn load_frames<R: Read>(
    store: &Store,
    reader: &mut FrameReader<R>,
    mut loaded: impl FnMut(&[MusicianRecord]),
) -> Result<(u64, u64, u64), EngineError> {
    let (mut musicians, mut gigs, mut messages) = (0u64, 0u64, 0u64);
    loop {
        match reader.next_frame()? {
            Frame::Messages(batch) => {
                messages += batch.len() as u64;
                store.load_messages(&batch)?;
            }
            Frame::Musicians(batch) => {
                musicians += batch.len() as u64;
                store.load(&batch, &[])?;
                loaded(&batch);
            }
            Frame::Gigs(batch) => {
                gigs += batch.len() as u64;
                store.load(&[], &batch)?;
            }
            Frame::Idempotency {
                head,
                tail,
                records,
            } => {
                let fits = |r: &IdempotencyRecord| {
                    !r.key.is_empty()
                        && r.key.len() <= crate::command::MAX_IDEMPOTENCY_KEY
                        && r.n > head
                        && r.n <= tail
                };
                if !records.iter().all(fits) {
                    return Err(bad(
                        "an idempotency key is empty, too long or outside its window",
                    ));
                }
                store.load_idempotency(head, tail, &records)?;
            }
            Frame::End {
                musicians: em,
                gigs: eg,
                ..
            } => {
                if em != musicians || eg != gigs {
                    return Err(bad("record counts differ from the end frame"));
                }
                break;
            }
            Frame::EndV2 {
                musicians: em,
                gigs: eg,
                messages: en,
                ..
            } => {
                if em != musicians || eg != gigs || en != messages {
                    return Err(bad("record counts differ from the end frame"));
                }
                break;
            }
            Frame::Header { .. } => return Err(bad("a second header")),
        }
    }
    Ok((musicians, gigs, messages))
}
