//! What a replicated state machine needs beyond [`Engine::apply`]: metadata stored atomically
//! with the data, entries that carry no command, and installing a snapshot into a running
//! engine.
//!
//! The replication layer (the `cluster` crate) keeps its own metadata — the last applied log
//! id and the membership — as an opaque `annex` in the store's `meta` tree, written in the same
//! sled transaction (or batch) as the command's effects and the applied sequence. So after a
//! crash the data, the applied sequence and the annex agree: a restart neither re-applies nor
//! skips an entry. The engine never interprets the annex.
//!
//! Durability: these calls do not flush. A replica opens the engine with
//! [`crate::Durability::Periodic`] (its log is the durable copy) and calls [`Engine::flush`]
//! when it must (before a snapshot lets the log be purged).
//!
//! [`Engine::install`] replaces the whole content under the writer lock: it tells the indexer
//! to drop every old musician and add every new one, and leaves a `REINDEX` marker until the
//! index has committed, so a crash in between makes [`Engine::open_replica`] rebuild the index
//! from the store.

use crate::command::Command;
use crate::engine::{Config, Engine, EngineError, Executed};
use crate::snapshot::{load_frames, read_header, FrameReader, SnapshotSummary};
use crate::store::Changed;
use std::io::Read;
use std::path::Path;

/// Marker file: an install did not reach an index commit; the index must be rebuilt.
const REINDEX: &str = "REINDEX";
/// Musicians per indexer message while an install retracts the old content.
const RETRACT_BATCH: usize = 10_000;

impl Engine {
    /// [`Engine::open`] for a replica: first discards an index that an interrupted
    /// [`Engine::install`] left behind, so the open rebuilds it from the store.
    pub fn open_replica(path: impl AsRef<Path>, config: Config) -> Result<Engine, EngineError> {
        let path = path.as_ref();
        let marker = path.join(REINDEX);
        if marker.exists() {
            tracing::warn!("a snapshot install was interrupted: rebuilding the index");
            let index = path.join("index");
            if index.exists() {
                std::fs::remove_dir_all(&index)?;
            }
            std::fs::remove_file(&marker)?;
        }
        Engine::open(path, config)
    }

    /// Applies `cmd` as sequence `seq` like [`Engine::apply`], and stores `annex` in the same
    /// transaction. A `seq` not above the applied one changes nothing (annex included).
    pub fn apply_annexed(
        &self,
        seq: u64,
        cmd: &Command,
        annex: &[u8],
    ) -> Result<Executed, EngineError> {
        let done = self.apply_batch_annexed(&[(seq, Some(cmd))], annex)?;
        // A step with a command always has an answer; the fallback is never taken.
        Ok(done.into_iter().flatten().next().unwrap_or(Executed {
            seq,
            outcome: crate::Outcome::AlreadyApplied { applied: seq },
        }))
    }

    /// Applies a batch of log entries in one store transaction, storing `annex` (which
    /// describes the batch's last entry) with them: each step is `(seq, Some(command))`, or
    /// `(seq, None)` for an entry that carries no command and only advances the applied
    /// sequence. The same outcomes as [`Engine::apply_annexed`] step by step (each step sees the
    /// ones before it), at a fraction of the cost: the store's fixed cost per transaction is
    /// paid once per batch. Answers one entry per step: `None` for a step without a command.
    /// Steps not above the applied sequence are no-ops; if all are, nothing is written.
    ///
    /// ```
    /// # use mussikon_engine::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let engine = Engine::open(dir.path(), Config::default()).unwrap();
    /// let m: Musician = serde_json::from_str(r#"{"id":"m-1","name":"Ana","instruments":[{"name":"guitar","level":4}],
    ///   "location":{"lat":40.42,"lon":-3.70},"travel_radius_km":50,"fee":{"amount":10000,"currency":"EUR"}}"#).unwrap();
    /// let put = Command::UpsertMusician { musician: m };
    /// let del = Command::DeleteMusician { id: "m-1".into() };
    /// let out = engine.apply_batch_annexed(&[(1, Some(&put)), (2, None), (3, Some(&del))], b"log id 3").unwrap();
    /// assert!(out[0].as_ref().unwrap().outcome.is_done());
    /// assert!(out[1].is_none());
    /// assert!(out[2].as_ref().unwrap().outcome.is_done(), "the delete saw the upsert before it");
    /// assert_eq!(engine.applied_seq().unwrap(), 3);
    /// assert_eq!(engine.annex().unwrap().as_deref(), Some(&b"log id 3"[..]));
    /// ```
    pub fn apply_batch_annexed(
        &self,
        steps: &[(u64, Option<&Command>)],
        annex: &[u8],
    ) -> Result<Vec<Option<Executed>>, EngineError> {
        let _w = self.writer_lock();
        let applied = self.store().apply_batch(steps, Some(annex))?;
        let mut out = Vec::with_capacity(applied.len());
        for (&(seq, _), a) in steps.iter().zip(applied) {
            out.push(a.map(|a| {
                if !matches!(a.outcome, crate::Outcome::AlreadyApplied { .. }) {
                    self.send_to_index(seq, a.changed);
                }
                Executed {
                    seq,
                    outcome: a.outcome,
                }
            }));
        }
        Ok(out)
    }

    /// Advances the applied sequence to `seq` with no command and stores `annex`, atomically.
    /// False (nothing written) when `seq` is not above the applied sequence.
    pub fn advance(&self, seq: u64, annex: &[u8]) -> Result<bool, EngineError> {
        let _w = self.writer_lock();
        let before = self.store().applied_seq()?;
        self.store().apply_batch(&[(seq, None)], Some(annex))?;
        Ok(seq > before)
    }

    /// The annex of the last annexed apply, advance or install; `None` for a store that never
    /// had one.
    pub fn annex(&self) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.store().annex()?)
    }

    /// Replaces the whole content with the snapshot `input` (the [`Engine::export`] format),
    /// storing `annex` with it, and makes it searchable before returning. Writes wait while it
    /// runs; reads see the old content, then a mix while records are loaded, then the new
    /// content. A stream that fails its checks leaves an error and a store to install again.
    pub fn install<R: Read>(&self, input: R, annex: &[u8]) -> Result<SnapshotSummary, EngineError> {
        let mut reader = FrameReader::new(input)?;
        let applied_seq = read_header(&mut reader)?;
        let marker = self.path().join(REINDEX);
        let summary = {
            let _exports = self.no_exports_running();
            let _w = self.writer_lock();
            crate::snapshot::write_marker(
                &marker,
                b"a snapshot install did not finish; the index is rebuilt\n",
            )?;
            let store = self.store();
            let mut old = Vec::with_capacity(RETRACT_BATCH);
            for r in store.musicians_after(None) {
                old.push(Changed::deleted(r?.musician.id));
                if old.len() == RETRACT_BATCH {
                    self.send_to_index(applied_seq, std::mem::take(&mut old));
                }
            }
            self.send_to_index(applied_seq, old);
            store.clear()?;
            let (musicians, gigs, messages) = load_frames(store, &mut reader, |batch| {
                // Every old document was retracted above, so the new ones are added as created.
                let docs = batch
                    .iter()
                    .map(|m| Changed::upserted(m.musician.id.clone(), m.clone(), true))
                    .collect();
                self.send_to_index(applied_seq, docs);
            })?;
            store.finish_load_annexed(applied_seq, Some(annex))?;
            store.flush()?;
            SnapshotSummary {
                applied_seq,
                musicians,
                gigs,
                messages,
            }
        };
        self.refresh()?;
        std::fs::remove_file(&marker)?;
        Ok(summary)
    }
}
