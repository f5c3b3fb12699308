//! The store: sled trees that are the source of truth, and the one `apply` that changes them.
//!
//! Layout (one sled database, one tree each):
//! - `musicians`: id → [`MusicianRecord`] (profile, version, booked dates);
//! - `gigs`: id → [`GigRecord`] (gig, version, its bookings);
//! - `meta`: `applied` (last applied sequence), `format`, record counts;
//! - `changes`: sequence → ids of musicians that command changed (the index's replay log,
//!   pruned once the index has committed past it);
//! - `messages`: gig id, `0x00`, per-gig message number (8 bytes big-endian) → [`Message`], so
//!   a gig's thread is one contiguous key range in posting order;
//! - `message_index`: derived from `messages`, kept in the same transactions: `gig id 0x00` →
//!   the gig's last message number, and `gig id 0x00 message id` → that message's number (the
//!   uniqueness of client message ids within a gig). Ids never contain `0x00`, so no key of one
//!   gig is a prefix of another gig's keys.
//!
//! - `idempotency`: `k key` → [`IdemEntry`] (the fingerprint, time and first outcome of a keyed
//!   command), and `o n` (8 bytes big-endian) → key, the keys in recording order, so the
//!   oldest can be forgotten with point reads only; `meta` holds the queue's head and tail.
//!   Written in the same transaction as the command it records.
//!
//! Messages are only ever removed with their gig, so a gig's messages are numbered exactly
//! `1..=last` ([`Store::check_messages`] verifies it, and the id index).
//!
//! A booking is written on both sides in the same transaction: the gig's seat list and the
//! musician's booked dates. Invariant: `(gig, slot, musician)` is in the gig's list exactly when
//! `(gig's date, gig, slot)` is in the musician's list ([`Store::check_bookings`] verifies it).
//!
//! Promises: `apply(seq, cmd)` writes the command's effects, its change-log entry and the new
//! applied sequence in one sled transaction, so after a crash either all of them are there or
//! none. A sequence ≤ the applied one is a no-op. Nothing is durable until [`Store::flush`]
//! returns (or sled's background flush, every `flush_every_ms`, has run): the engine calls flush
//! before acknowledging a write when configured for synchronous durability (the default).
//! Callers serialize `apply` (the engine holds one writer lock); reads may run concurrently.

use crate::codec::{self, CodecError, RecordKind};
use crate::command::{
    Command, Conflict, Effect, Expected, Guard, IdempotencyKey, Outcome, Refusal,
    IDEMPOTENCY_KEYS_KEPT, IDEMPOTENCY_TTL_MS, MAX_BATCH, MAX_BULK, MAX_IDEMPOTENCY_KEY,
};
use crate::index;
use crate::model::{BookedDate, Booking, Gig, Message, Musician, Timestamp};
use crate::validate::{
    self, check_id, validate_booking, validate_gig, validate_musician, validate_post, Checker,
    ValidationError,
};
use crate::view::{self, OpenView, View, Viewed, Views};
use bincode::{Decode, Encode};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::path::Path;
use std::sync::Arc;

/// A stored musician: the profile plus what the store tracks about it.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct MusicianRecord {
    /// The profile, validated and normalized.
    pub musician: Musician,
    /// Sequence of the last command that changed this record.
    pub version: u64,
    /// Dates the musician is booked, sorted by date (at most one booking per date).
    pub booked: Vec<BookedDate>,
}

/// A stored gig and its bookings.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct GigRecord {
    /// The gig, validated and normalized.
    pub gig: Gig,
    /// Sequence of the last command that changed this record.
    pub version: u64,
    /// `(slot, musician_id)`, sorted.
    pub bookings: Vec<(i64, String)>,
}

/// Errors from the storage layer: I/O, or bytes that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption it detected).
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("corrupt value under key {key:?}: {source}")]
    Corrupt {
        /// The key, lossily as text.
        key: String,
        /// Why.
        source: CodecError,
    },
    /// The store was written by an incompatible version.
    #[error("store format {found} is not supported by this build (expects {expected})")]
    Format {
        /// Format found.
        found: u8,
        /// Format expected.
        expected: u8,
    },
}

/// What one apply did: the outcome and the musicians whose indexed state changed.
pub(crate) struct Applied {
    pub outcome: Outcome,
    pub changed: Vec<Changed>,
}

/// A musician whose indexed state one command changed.
pub(crate) struct Changed {
    pub id: String,
    /// The new record; `None` when deleted.
    pub record: Option<MusicianRecord>,
    /// True when the command created the musician: no earlier version can be in the index,
    /// so the indexer adds the document without first deleting the id.
    pub created: bool,
    /// True when the new record has the terms of the one before it ([`index::same_terms`]):
    /// its document would differ only in the volatile match facts, which the indexer may then
    /// keep in the facts overlay ([`crate::overlay`]) instead of re-indexing. False whenever
    /// unsure.
    pub facts_only: bool,
}

impl Changed {
    pub(crate) fn upserted(id: String, record: MusicianRecord, created: bool) -> Changed {
        Changed {
            id,
            record: Some(record),
            created,
            facts_only: false,
        }
    }

    /// `record` replaced `old`.
    fn replaced(id: String, old: &MusicianRecord, record: MusicianRecord) -> Changed {
        Changed {
            facts_only: index::same_terms(old, &record),
            ..Changed::upserted(id, record, false)
        }
    }

    fn updated(id: String, record: MusicianRecord) -> Changed {
        Changed::upserted(id, record, false)
    }

    pub(crate) fn deleted(id: String) -> Changed {
        Changed {
            id,
            record: None,
            created: false,
            facts_only: false,
        }
    }
}

const APPLIED: &[u8] = b"applied";
/// Opaque metadata of the replication layer, written atomically with the applied sequence.
const ANNEX: &[u8] = b"annex";
const FORMAT: &[u8] = b"format";
const MUSICIAN_COUNT: &[u8] = b"count.musicians";
const GIG_COUNT: &[u8] = b"count.gigs";
const IDEM_HEAD: &[u8] = b"idempotency.head";
const IDEM_TAIL: &[u8] = b"idempotency.tail";
/// Highest sequence whose change-log entries may have been dropped: an index covering less
/// cannot be replayed from the change log.
const CHANGES_PRUNED: &[u8] = b"changes.pruned";

/// A recorded idempotency key.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub(crate) struct IdemEntry {
    fingerprint: u64,
    at_ms: i64,
    /// Its number in the recording order.
    n: u64,
    outcome: Outcome,
}

fn idem_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(b'k');
    k.extend_from_slice(key.as_bytes());
    k
}

fn idem_order_key(n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'o');
    k.extend_from_slice(&codec::u64_key(n));
    k
}

/// Storage tuning.
#[derive(Clone, Debug)]
pub(crate) struct StoreOptions {
    pub cache_bytes: u64,
    pub flush_every_ms: Option<u64>,
}

pub(crate) struct Store {
    db: sled::Db,
    musicians: sled::Tree,
    gigs: sled::Tree,
    meta: sled::Tree,
    changes: sled::Tree,
    messages: sled::Tree,
    message_index: sled::Tree,
    idempotency: sled::Tree,
    /// Readers' views of a past state (exports), which every write records its pre-images in.
    views: Views,
}

/// `gig id 0x00`: the prefix of every key of the gig's messages, and its counter key in
/// `message_index`.
fn thread_prefix(gig_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(gig_id.len() + 9);
    k.extend_from_slice(gig_id.as_bytes());
    k.push(0);
    k
}

/// Key of message `n` of a gig in `messages`.
fn message_key(gig_id: &str, n: u64) -> Vec<u8> {
    let mut k = thread_prefix(gig_id);
    k.extend_from_slice(&codec::u64_key(n));
    k
}

/// Key of a client message id in `message_index`.
fn message_id_key(gig_id: &str, message_id: &str) -> Vec<u8> {
    let mut k = thread_prefix(gig_id);
    k.extend_from_slice(message_id.as_bytes());
    k
}

fn decode_message(key: &[u8], v: &[u8]) -> Result<Message, StoreError> {
    codec::decode(RecordKind::Message, v).map_err(|e| corrupt(key, e))
}

fn corrupt(key: &[u8], source: CodecError) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    }
}

fn decode_musician(key: &[u8], v: &[u8]) -> Result<MusicianRecord, StoreError> {
    codec::decode(RecordKind::Musician, v).map_err(|e| corrupt(key, e))
}

fn decode_gig(key: &[u8], v: &[u8]) -> Result<GigRecord, StoreError> {
    codec::decode(RecordKind::Gig, v).map_err(|e| corrupt(key, e))
}

fn encode<T: Encode>(kind: RecordKind, v: &T, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    codec::encode(kind, v).map_err(|e| corrupt(key, e))
}

fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|b| codec::u64_from_key(&b)).unwrap_or(0)
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// The trees as seen inside one transaction.
struct Tx<'a> {
    musicians: &'a TransactionalTree,
    gigs: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    changes: &'a TransactionalTree,
    messages: &'a TransactionalTree,
    message_index: &'a TransactionalTree,
    idempotency: &'a TransactionalTree,
    /// The views open when the transaction began (see [`crate::view`]).
    views: &'a [Arc<View>],
}

impl Tx<'_> {
    /// Records `key`'s pre-image in `tree` in every open view; every write to a viewed tree
    /// calls it first.
    fn before_write(&self, tree: Viewed, key: &[u8]) -> TxResult<()> {
        if self.views.is_empty() {
            return Ok(());
        }
        let t = match tree {
            Viewed::Musicians => self.musicians,
            Viewed::Gigs => self.gigs,
            Viewed::Messages => self.messages,
        };
        view::before_write(self.views, tree, key, || Ok(t.get(key)?))
    }

    fn remove_musician(&self, id: &str) -> TxResult<()> {
        self.before_write(Viewed::Musicians, id.as_bytes())?;
        self.musicians.remove(id.as_bytes())?;
        Ok(())
    }

    fn remove_gig(&self, id: &str) -> TxResult<()> {
        self.before_write(Viewed::Gigs, id.as_bytes())?;
        self.gigs.remove(id.as_bytes())?;
        Ok(())
    }

    fn musician(&self, id: &str) -> TxResult<Option<MusicianRecord>> {
        match self.musicians.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => decode_musician(id.as_bytes(), &v).map(Some).or_else(abort),
        }
    }

    /// Stores `musician` as of `seq`, keeping its booked dates: whether it was created, and its
    /// index change. None when the profile is the stored one: the document is built from the
    /// profile and the booked dates only ([`crate::index`]), never from the version, and the
    /// booked dates are kept, so a PUT that rewrites a profile unchanged (a retry, a sync job
    /// re-sending what it sent before) costs the index nothing, on every replica, and leaves
    /// nothing in the change log for readers to re-check.
    fn upsert_musician(&self, musician: &Musician, seq: u64) -> TxResult<(bool, Option<Changed>)> {
        let old = self.musician(&musician.id)?;
        let created = old.is_none();
        let unchanged = old.as_ref().is_some_and(|o| o.musician == *musician);
        // The booked dates are kept, so the document's terms change only if the profile's do.
        let facts_only = old
            .as_ref()
            .is_some_and(|o| index::same_profile_terms(&o.musician, musician));
        let rec = MusicianRecord {
            musician: musician.clone(),
            version: seq,
            booked: old.map(|o| o.booked).unwrap_or_default(),
        };
        self.put_musician(&rec)?;
        let change = (!unchanged).then(|| Changed {
            facts_only,
            ..Changed::upserted(musician.id.clone(), rec, created)
        });
        Ok((created, change))
    }

    fn put_musician(&self, rec: &MusicianRecord) -> TxResult<()> {
        let key = rec.musician.id.as_bytes();
        let v = encode(RecordKind::Musician, rec, key).or_else(abort)?;
        self.before_write(Viewed::Musicians, key)?;
        self.musicians.insert(key, v)?;
        Ok(())
    }

    fn gig(&self, id: &str) -> TxResult<Option<GigRecord>> {
        match self.gigs.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => decode_gig(id.as_bytes(), &v).map(Some).or_else(abort),
        }
    }

    fn put_gig(&self, rec: &GigRecord) -> TxResult<()> {
        let key = rec.gig.id.as_bytes();
        let v = encode(RecordKind::Gig, rec, key).or_else(abort)?;
        self.before_write(Viewed::Gigs, key)?;
        self.gigs.insert(key, v)?;
        Ok(())
    }

    /// Removes every message of a gig and its index entries; returns how many there were.
    fn delete_thread(&self, gig_id: &str) -> TxResult<u64> {
        let counter = thread_prefix(gig_id);
        let last = read_u64(self.message_index.get(&counter)?);
        for n in 1..=last {
            let key = message_key(gig_id, n);
            self.before_write(Viewed::Messages, &key)?;
            if let Some(v) = self.messages.remove(key.as_slice())? {
                let m = decode_message(&key, &v).or_else(abort)?;
                if let Some(mid) = &m.message_id {
                    self.message_index
                        .remove(message_id_key(gig_id, mid).as_slice())?;
                }
            }
        }
        self.message_index.remove(counter.as_slice())?;
        Ok(last)
    }

    fn idem(&self, key: &str) -> TxResult<Option<IdemEntry>> {
        let k = idem_key(key);
        match self.idempotency.get(&k)? {
            None => Ok(None),
            Some(v) => codec::decode(RecordKind::Idempotency, &v)
                .map(Some)
                .map_err(|e| corrupt(&k, e))
                .or_else(abort),
        }
    }

    /// Records `outcome` under `key`, then forgets at most two of the oldest keys: those beyond
    /// [`IDEMPOTENCY_KEYS_KEPT`] or older than [`IDEMPOTENCY_TTL_MS`] before `key.at_ms`.
    fn record_idem(&self, key: &IdempotencyKey, outcome: &Outcome) -> TxResult<()> {
        let mut head = read_u64(self.meta.get(IDEM_HEAD)?);
        let tail = read_u64(self.meta.get(IDEM_TAIL)?) + 1;
        let entry = IdemEntry {
            fingerprint: key.fingerprint,
            at_ms: key.at_ms,
            n: tail,
            outcome: outcome.clone(),
        };
        let k = idem_key(&key.key);
        let v = encode(RecordKind::Idempotency, &entry, &k).or_else(abort)?;
        self.idempotency.insert(k, v)?;
        self.idempotency
            .insert(idem_order_key(tail), key.key.as_bytes())?;
        self.meta.insert(IDEM_TAIL, &codec::u64_key(tail))?;
        let cutoff = key.at_ms.saturating_sub(IDEMPOTENCY_TTL_MS);
        for _ in 0..2 {
            let oldest = head + 1;
            let Some(old_key) = self.idempotency.get(idem_order_key(oldest))? else {
                break;
            };
            let old_key = String::from_utf8_lossy(&old_key).into_owned();
            let old = self.idem(&old_key)?;
            let over = tail - head > IDEMPOTENCY_KEYS_KEPT;
            let expired = old.as_ref().is_some_and(|e| e.at_ms < cutoff);
            if !over && !expired {
                break;
            }
            if old.is_some_and(|e| e.n == oldest) {
                self.idempotency.remove(idem_key(&old_key))?;
            }
            self.idempotency.remove(idem_order_key(oldest))?;
            head = oldest;
        }
        self.meta.insert(IDEM_HEAD, &codec::u64_key(head))?;
        Ok(())
    }

    /// `Some(refusal)` when `guard`'s owner or version condition does not hold for the record
    /// `cmd` names.
    fn check_guard(&self, guard: &Guard, cmd: &Command) -> TxResult<Option<Refusal>> {
        if guard.owner.is_none() && guard.booked.is_none() && guard.version.is_none() {
            return Ok(None);
        }
        let (kind, id, current, gig) = match target(cmd) {
            Some(Target::Musician(id)) => {
                let v = self.musician(id)?.map(|r| r.version);
                ("musician", id, v, None)
            }
            Some(Target::Gig(id)) => {
                let gig = self.gig(id)?;
                ("gig", id, gig.as_ref().map(|r| r.version), gig)
            }
            // `prepare` refuses conditions on commands that name no record.
            None => return Ok(None),
        };
        if let (Some(want), Some(g)) = (&guard.owner, &gig) {
            if g.gig.owner.as_deref() != Some(want.as_str()) {
                return Ok(Some(Refusal::Conflict(Conflict::NotOwner {
                    gig_id: id.to_string(),
                })));
            }
        }
        if let (Some(m), Some(g)) = (&guard.booked, &gig) {
            if !g.bookings.iter().any(|(_, b)| b == m) {
                return Ok(Some(Refusal::Conflict(Conflict::NotBooked {
                    gig_id: id.to_string(),
                    musician_id: m.clone(),
                })));
            }
        }
        let holds = match (&guard.version, current) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(Expected::Exists), Some(_)) => true,
            (Some(Expected::Versions(vs)), Some(v)) => vs.contains(&v),
        };
        if holds {
            return Ok(None);
        }
        Ok(Some(Refusal::Conflict(Conflict::VersionMismatch {
            kind: kind.to_string(),
            id: id.to_string(),
            current,
        })))
    }

    /// `cmd` with the fields `guard` keeps taken from the stored record.
    fn keep_stored(&self, guard: &Guard, cmd: &Command) -> TxResult<Command> {
        Ok(match cmd {
            Command::UpsertMusician { musician } if guard.keep_rating => {
                let mut musician = musician.clone();
                musician.rating = self.musician(&musician.id)?.and_then(|r| r.musician.rating);
                Command::UpsertMusician { musician }
            }
            Command::UpsertGig { gig } if guard.keep_owner && gig.owner.is_none() => {
                let mut gig = gig.clone();
                gig.owner = self.gig(&gig.id)?.and_then(|r| r.gig.owner);
                Command::UpsertGig { gig }
            }
            other => other.clone(),
        })
    }

    fn add_count(&self, key: &[u8], delta: i64) -> TxResult<()> {
        let n = read_u64(self.meta.get(key)?) as i64 + delta;
        self.meta.insert(key, &codec::u64_key(n.max(0) as u64))?;
        Ok(())
    }
}

/// What a transaction decided: a keyed command seen before, or the command's own result.
enum Done {
    Seen(Outcome),
    Ran(Result<(Effect, Vec<Changed>), Refusal>),
}

type ExecResult = TxResult<Result<(Effect, Vec<Changed>), Refusal>>;

fn not_found(kind: &str, id: &str) -> Refusal {
    Refusal::NotFound {
        kind: kind.into(),
        id: id.into(),
    }
}

/// The record a command names, for [`Guard`] conditions.
enum Target<'a> {
    Musician(&'a str),
    Gig(&'a str),
}

fn target(cmd: &Command) -> Option<Target<'_>> {
    Some(match cmd {
        Command::UpsertMusician { musician } => Target::Musician(&musician.id),
        Command::DeleteMusician { id } => Target::Musician(id),
        Command::RateMusician { musician_id, .. } => Target::Musician(musician_id),
        Command::UpsertGig { gig } => Target::Gig(&gig.id),
        Command::DeleteGig { id } => Target::Gig(id),
        Command::Book(b) => Target::Gig(&b.gig_id),
        Command::CancelBooking { gig_id, .. } | Command::PostMessage { gig_id, .. } => {
            Target::Gig(gig_id)
        }
        Command::BulkUpsert { .. } | Command::Guarded { .. } | Command::Batch { .. } => {
            return None
        }
    })
}

/// The idempotency key of a guarded command, when it is well formed (a malformed one makes the
/// whole command invalid in [`prepare`], and nothing is recorded).
fn idempotency_of(cmd: &Command) -> Option<&IdempotencyKey> {
    match cmd {
        Command::Guarded {
            guard: Guard {
                idempotency: Some(k),
                ..
            },
            ..
        } if !k.key.is_empty() && k.key.len() <= MAX_IDEMPOTENCY_KEY => Some(k),
        _ => None,
    }
}

/// Validates a guard for the command it wraps.
fn check_guard_fields(c: &mut Checker, guard: &Guard, cmd: &Command) {
    if matches!(cmd, Command::Batch { .. }) {
        c.fail("command", "a batch cannot be guarded (guard its commands)");
    }
    if matches!(cmd, Command::Guarded { .. }) {
        c.fail("command", "a guarded command cannot be guarded again");
    }
    let target = target(cmd);
    if target.is_none() && guard.version.is_some() {
        c.fail(
            "guard.version",
            "applies only to commands that name one record",
        );
    }
    for (field, value) in [
        ("guard.owner", &guard.owner),
        ("guard.booked", &guard.booked),
    ] {
        if let Some(v) = value {
            check_id(c, field, v);
            if !matches!(target, Some(Target::Gig(_))) {
                c.fail(field, "applies only to commands that name a gig");
            }
        }
    }
    if guard.keep_rating && !matches!(cmd, Command::UpsertMusician { .. }) {
        c.fail("guard.keep_rating", "applies only to upsert_musician");
    }
    if guard.keep_owner && !matches!(cmd, Command::UpsertGig { .. }) {
        c.fail("guard.keep_owner", "applies only to upsert_gig");
    }
    if let Some(k) = &guard.idempotency {
        c.check(
            !k.key.is_empty() && k.key.len() <= MAX_IDEMPOTENCY_KEY,
            "guard.idempotency.key",
            &format!("must be 1-{MAX_IDEMPOTENCY_KEY} bytes"),
        );
    }
}

/// Validates and normalizes a command before any store access. Pure.
fn prepare(cmd: &Command) -> Result<Command, ValidationError> {
    let mut c = Checker::default();
    let out = match cmd {
        Command::Guarded { guard, command } => {
            check_guard_fields(&mut c, guard, command);
            let inner = match prepare(command) {
                Ok(inner) => inner,
                Err(e) => {
                    e.errors.into_iter().for_each(|f| c.fail(f.field, f.rule));
                    command.as_ref().clone()
                }
            };
            Command::Guarded {
                guard: guard.clone(),
                command: Box::new(inner),
            }
        }
        Command::UpsertMusician { musician } => Command::UpsertMusician {
            musician: validate_musician(musician.clone())?,
        },
        Command::UpsertGig { gig } => Command::UpsertGig {
            gig: validate_gig(gig.clone())?,
        },
        Command::DeleteMusician { id } | Command::DeleteGig { id } => {
            check_id(&mut c, "id", id);
            cmd.clone()
        }
        Command::Book(b) => {
            validate_booking(b)?;
            cmd.clone()
        }
        Command::CancelBooking {
            gig_id,
            musician_id,
        } => {
            check_id(&mut c, "gig_id", gig_id);
            check_id(&mut c, "musician_id", musician_id);
            cmd.clone()
        }
        Command::RateMusician { musician_id, stars } => {
            check_id(&mut c, "musician_id", musician_id);
            validate::check_stars(&mut c, *stars);
            cmd.clone()
        }
        Command::Batch { .. } => {
            c.fail("commands", NESTED_BATCH);
            cmd.clone()
        }
        Command::BulkUpsert { musicians, gigs } => {
            if musicians.len() + gigs.len() > MAX_BULK {
                c.fail(
                    "musicians",
                    format!("a bulk command carries at most {MAX_BULK} records"),
                );
            }
            let mut ms = Vec::with_capacity(musicians.len());
            for (i, m) in musicians.iter().enumerate() {
                match validate_musician(m.clone()) {
                    Ok(m) => ms.push(m),
                    Err(e) => e
                        .errors
                        .into_iter()
                        .for_each(|f| c.fail(format!("musicians[{i}].{}", f.field), f.rule)),
                }
            }
            let mut gs = Vec::with_capacity(gigs.len());
            for (i, g) in gigs.iter().enumerate() {
                match validate_gig(g.clone()) {
                    Ok(g) => gs.push(g),
                    Err(e) => e
                        .errors
                        .into_iter()
                        .for_each(|f| c.fail(format!("gigs[{i}].{}", f.field), f.rule)),
                }
            }
            Command::BulkUpsert {
                musicians: ms,
                gigs: gs,
            }
        }
        Command::PostMessage {
            gig_id,
            message_id,
            author,
            text,
            at,
        } => {
            let ok = validate_post(gig_id, message_id.as_deref(), author, text, at)?;
            Command::PostMessage {
                gig_id: gig_id.clone(),
                message_id: message_id.clone(),
                author: author.clone(),
                text: ok.text,
                at: Timestamp::Millis(ok.at_ms),
            }
        }
    };
    c.finish(out)
}

/// Checks that replacing `old` by `new` keeps every existing booking valid.
fn check_gig_update(old: &GigRecord, new: &Gig) -> Result<(), Conflict> {
    if old.bookings.is_empty() {
        return Ok(());
    }
    let conflict = |detail: String| Conflict::GigHasBookings {
        gig_id: new.id.clone(),
        detail,
    };
    if old.gig.date != new.date {
        return Err(conflict(
            "the date cannot change while bookings exist".into(),
        ));
    }
    for (slot, _) in &old.bookings {
        let booked = old.bookings.iter().filter(|(s, _)| s == slot).count() as i64;
        let (Some(o), Some(n)) = (
            old.gig.slots.get(*slot as usize),
            new.slots.get(*slot as usize),
        ) else {
            return Err(conflict(format!(
                "slot {slot} has bookings and must remain"
            )));
        };
        if o.instrument != n.instrument || n.count < booked {
            return Err(conflict(format!(
                "slot {slot} has {booked} bookings for {}: keep its instrument and at least that many seats",
                o.instrument
            )));
        }
    }
    Ok(())
}

/// The rule a batch breaks anywhere but at the top of a step (inside a guard or a batch).
const NESTED_BATCH: &str = "a batch is applied on its own, never inside another command";

/// A command prepared (validated and normalized) before its transaction, with its
/// idempotency key.
type Prepared<'c> = (Result<Command, ValidationError>, Option<&'c IdempotencyKey>);

/// The work of one step of [`Store::apply_batch`], decided before its transaction.
enum Work<'c> {
    /// No command (a Raft entry that only advances the sequence).
    Nothing,
    /// The step's commands: one, or those of a [`Command::Batch`] (`batch`), whose outcome is
    /// then an [`Outcome::Batch`].
    Commands {
        batch: bool,
        commands: Vec<Prepared<'c>>,
    },
}

impl<'c> Work<'c> {
    fn of(cmd: Option<&'c Command>) -> Work<'c> {
        let prepared = |c: &'c Command| (prepare(c), idempotency_of(c));
        match cmd {
            None => Work::Nothing,
            Some(Command::Batch { commands }) if (1..=MAX_BATCH).contains(&commands.len()) => {
                Work::Commands {
                    batch: true,
                    commands: commands.iter().map(prepared).collect(),
                }
            }
            Some(Command::Batch { .. }) => Work::Commands {
                batch: false,
                commands: vec![(
                    Err(ValidationError::single(
                        "commands",
                        format!("a batch carries 1 to {MAX_BATCH} commands"),
                    )),
                    None,
                )],
            },
            Some(cmd) => Work::Commands {
                batch: false,
                commands: vec![prepared(cmd)],
            },
        }
    }
}

impl Done {
    /// The outcome, moving the changed musicians (of a command that ran) into `changed`.
    fn into_outcome(self, changed: &mut Vec<Changed>) -> Outcome {
        match self {
            Done::Seen(outcome) => outcome,
            Done::Ran(Ok((effect, c))) => {
                changed.extend(c);
                Outcome::Done(effect)
            }
            Done::Ran(Err(refusal)) => Outcome::Refused(refusal),
        }
    }
}

/// Writes the change record of sequence `seq`: the ids whose indexed state `done` changed.
fn record_changes<'a>(tx: &Tx<'_>, seq: u64, done: impl Iterator<Item = &'a Done>) -> TxResult<()> {
    let ids: Vec<&str> = done
        .filter_map(|d| match d {
            Done::Ran(Ok((_, changed))) => Some(changed.iter().map(|c| c.id.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    if !ids.is_empty() {
        let v = encode(RecordKind::Changes, &ids, b"changes").or_else(abort)?;
        tx.changes.insert(&codec::u64_key(seq), v)?;
    }
    Ok(())
}

/// One command's part of an apply transaction: the idempotency check, the command (or its
/// validation refusal) and the key record. The change record, the applied sequence and the
/// annex are the caller's to write.
fn run_step(
    tx: &Tx<'_>,
    seq: u64,
    prepared: &Result<Command, ValidationError>,
    idem: Option<&IdempotencyKey>,
) -> TxResult<Done> {
    if let Some(k) = idem {
        if let Some(first) = tx.idem(&k.key)? {
            return Ok(Done::Seen(if first.fingerprint == k.fingerprint {
                Outcome::Replayed {
                    first: Box::new(first.outcome),
                }
            } else {
                Outcome::Refused(Refusal::Conflict(Conflict::IdempotencyKeyReused {
                    key: k.key.clone(),
                }))
            }));
        }
    }
    let done = match prepared {
        Err(e) => Err(Refusal::Invalid(e.clone())),
        Ok(cmd) => exec(tx, seq, cmd)?,
    };
    if let Some(k) = idem {
        let outcome = match &done {
            Ok((effect, _)) => Outcome::Done(effect.clone()),
            Err(r) => Outcome::Refused(r.clone()),
        };
        tx.record_idem(k, &outcome)?;
    }
    Ok(Done::Ran(done))
}

/// The deterministic heart of the engine: executes one prepared command inside a transaction.
/// Every refusal is decided before the first write.
fn exec(tx: &Tx<'_>, seq: u64, cmd: &Command) -> ExecResult {
    match cmd {
        // `prepare` refuses a batch anywhere but at the top, where `Store::apply_batch` splits
        // it: this arm is never taken.
        Command::Batch { .. } => Ok(Err(Refusal::Invalid(ValidationError::single(
            "commands",
            NESTED_BATCH,
        )))),
        Command::Guarded { guard, command } => {
            if let Some(refusal) = tx.check_guard(guard, command)? {
                return Ok(Err(refusal));
            }
            let command = tx.keep_stored(guard, command)?;
            exec(tx, seq, &command)
        }
        Command::UpsertMusician { musician } => {
            let (created, change) = tx.upsert_musician(musician, seq)?;
            if created {
                tx.add_count(MUSICIAN_COUNT, 1)?;
            }
            Ok(Ok((
                Effect::MusicianUpserted {
                    id: musician.id.clone(),
                    created,
                },
                change.into_iter().collect(),
            )))
        }
        Command::DeleteMusician { id } => {
            let Some(old) = tx.musician(id)? else {
                return Ok(Err(not_found("musician", id)));
            };
            for b in &old.booked {
                if let Some(mut g) = tx.gig(&b.gig_id)? {
                    g.bookings.retain(|(_, m)| m != id);
                    g.version = seq;
                    tx.put_gig(&g)?;
                }
            }
            tx.remove_musician(id)?;
            tx.add_count(MUSICIAN_COUNT, -1)?;
            Ok(Ok((
                Effect::MusicianDeleted {
                    id: id.clone(),
                    released: old.booked.len() as u32,
                },
                vec![Changed::deleted(id.clone())],
            )))
        }
        Command::UpsertGig { gig } => {
            let old = tx.gig(&gig.id)?;
            if let Some(o) = &old {
                if let Err(c) = check_gig_update(o, gig) {
                    return Ok(Err(Refusal::Conflict(c)));
                }
            }
            let created = old.is_none();
            let rec = GigRecord {
                gig: gig.clone(),
                version: seq,
                bookings: old.map(|o| o.bookings).unwrap_or_default(),
            };
            tx.put_gig(&rec)?;
            if created {
                tx.add_count(GIG_COUNT, 1)?;
            }
            Ok(Ok((
                Effect::GigUpserted {
                    id: gig.id.clone(),
                    created,
                },
                vec![],
            )))
        }
        Command::DeleteGig { id } => {
            let Some(old) = tx.gig(id)? else {
                return Ok(Err(not_found("gig", id)));
            };
            let mut changed = Vec::new();
            for (_, mid) in &old.bookings {
                if let Some(mut m) = tx.musician(mid)? {
                    m.booked.retain(|b| &b.gig_id != id);
                    m.version = seq;
                    tx.put_musician(&m)?;
                    changed.push(Changed::updated(mid.clone(), m));
                }
            }
            tx.delete_thread(id)?;
            tx.remove_gig(id)?;
            tx.add_count(GIG_COUNT, -1)?;
            Ok(Ok((
                Effect::GigDeleted {
                    id: id.clone(),
                    released: old.bookings.len() as u32,
                },
                changed,
            )))
        }
        Command::Book(b) => book(tx, seq, b),
        Command::CancelBooking {
            gig_id,
            musician_id,
        } => {
            let Some(mut g) = tx.gig(gig_id)? else {
                return Ok(Err(not_found("gig", gig_id)));
            };
            let Some(pos) = g.bookings.iter().position(|(_, m)| m == musician_id) else {
                return Ok(Err(not_found(
                    "booking",
                    &format!("{gig_id}/{musician_id}"),
                )));
            };
            let (slot, _) = g.bookings.remove(pos);
            g.version = seq;
            tx.put_gig(&g)?;
            let mut changed = Vec::new();
            if let Some(mut m) = tx.musician(musician_id)? {
                m.booked.retain(|b| &b.gig_id != gig_id);
                m.version = seq;
                tx.put_musician(&m)?;
                changed.push(Changed::updated(musician_id.clone(), m));
            }
            Ok(Ok((
                Effect::Cancelled(Booking {
                    gig_id: gig_id.clone(),
                    slot,
                    musician_id: musician_id.clone(),
                }),
                changed,
            )))
        }
        Command::RateMusician { musician_id, stars } => {
            let Some(mut m) = tx.musician(musician_id)? else {
                return Ok(Err(not_found("musician", musician_id)));
            };
            let before = m.clone();
            let old = m.musician.rating.unwrap_or(crate::model::Rating {
                average: 0.0,
                count: 0,
            });
            let count = old.count + 1;
            let average = (old.average * old.count as f64 + *stars as f64) / count as f64;
            m.musician.rating = Some(crate::model::Rating { average, count });
            m.version = seq;
            tx.put_musician(&m)?;
            Ok(Ok((
                Effect::Rated {
                    musician_id: musician_id.clone(),
                    average,
                    count,
                },
                vec![Changed::replaced(musician_id.clone(), &before, m)],
            )))
        }
        Command::BulkUpsert { musicians, gigs } => {
            // Refusals first, against the state before the command.
            for g in gigs {
                if let Some(o) = tx.gig(&g.id)? {
                    if let Err(c) = check_gig_update(&o, g) {
                        return Ok(Err(Refusal::Conflict(c)));
                    }
                }
            }
            // Then the writes, each reading the record as the earlier writes of this command
            // left it: a gig id given twice is created once and counted once.
            for g in gigs {
                let old = tx.gig(&g.id)?;
                if old.is_none() {
                    tx.add_count(GIG_COUNT, 1)?;
                }
                tx.put_gig(&GigRecord {
                    gig: g.clone(),
                    version: seq,
                    bookings: old.map(|o| o.bookings).unwrap_or_default(),
                })?;
            }
            let mut changed = Vec::with_capacity(musicians.len());
            let mut created = 0i64;
            for m in musicians {
                let (new, change) = tx.upsert_musician(m, seq)?;
                created += i64::from(new);
                changed.extend(change);
            }
            if created > 0 {
                tx.add_count(MUSICIAN_COUNT, created)?;
            }
            Ok(Ok((
                Effect::BulkUpserted {
                    musicians: musicians.len() as u32,
                    gigs: gigs.len() as u32,
                },
                changed,
            )))
        }
        Command::PostMessage {
            gig_id,
            message_id,
            author,
            text,
            at,
        } => post_message(tx, seq, gig_id, message_id.as_deref(), author, text, at),
    }
}

/// Stores a prepared message as the gig's next one.
fn post_message(
    tx: &Tx<'_>,
    seq: u64,
    gig_id: &str,
    message_id: Option<&str>,
    author: &str,
    text: &str,
    at: &Timestamp,
) -> ExecResult {
    if tx.gig(gig_id)?.is_none() {
        return Ok(Err(not_found("gig", gig_id)));
    }
    if let Some(mid) = message_id {
        if tx
            .message_index
            .get(message_id_key(gig_id, mid).as_slice())?
            .is_some()
        {
            return Ok(Err(Refusal::Conflict(Conflict::MessageIdTaken {
                gig_id: gig_id.to_string(),
                message_id: mid.to_string(),
            })));
        }
    }
    // `prepare` normalized the time to milliseconds in range; anything else is a bug upstream.
    let at_ms = validate::timestamp_millis(at).unwrap_or(0);
    let counter = thread_prefix(gig_id);
    let n = read_u64(tx.message_index.get(counter.as_slice())?) + 1;
    let message = Message {
        gig_id: gig_id.to_string(),
        seq: n,
        message_id: message_id.map(str::to_string),
        author: author.to_string(),
        text: text.to_string(),
        at: validate::format_millis(at_ms).unwrap_or_default(),
        at_ms,
        version: seq,
    };
    let key = message_key(gig_id, n);
    let v = encode(RecordKind::Message, &message, &key).or_else(abort)?;
    tx.before_write(Viewed::Messages, &key)?;
    tx.messages.insert(key, v)?;
    tx.message_index
        .insert(counter.as_slice(), &codec::u64_key(n))?;
    if let Some(mid) = message_id {
        tx.message_index
            .insert(message_id_key(gig_id, mid), &codec::u64_key(n))?;
    }
    Ok(Ok((Effect::MessagePosted(message), vec![])))
}

fn book(tx: &Tx<'_>, seq: u64, b: &Booking) -> ExecResult {
    let Some(mut g) = tx.gig(&b.gig_id)? else {
        return Ok(Err(not_found("gig", &b.gig_id)));
    };
    let Some(slot) = g.gig.slots.get(b.slot as usize).cloned() else {
        return Ok(Err(Refusal::Conflict(Conflict::NoSuchSlot {
            slot: b.slot,
        })));
    };
    let Some(mut m) = tx.musician(&b.musician_id)? else {
        return Ok(Err(not_found("musician", &b.musician_id)));
    };
    let date = g.gig.date.clone();
    let conflict = if !m.musician.active {
        Some(Conflict::MusicianInactive {
            musician_id: b.musician_id.clone(),
        })
    } else if m.musician.level_on(&slot.instrument).unwrap_or(0) < slot.min_level {
        Some(Conflict::InstrumentMismatch {
            instrument: slot.instrument.clone(),
            min_level: slot.min_level,
        })
    } else if m.musician.busy.binary_search(&date).is_ok() {
        Some(Conflict::MusicianBusy {
            musician_id: b.musician_id.clone(),
            date: date.clone(),
        })
    } else if let Some(taken) = m.booked.iter().find(|x| x.date == date) {
        Some(Conflict::MusicianAlreadyBooked {
            musician_id: b.musician_id.clone(),
            date: date.clone(),
            gig_id: taken.gig_id.clone(),
        })
    } else if g.bookings.iter().filter(|(s, _)| *s == b.slot).count() as i64 >= slot.count {
        Some(Conflict::SlotFull {
            slot: b.slot,
            count: slot.count,
        })
    } else {
        None
    };
    if let Some(c) = conflict {
        return Ok(Err(Refusal::Conflict(c)));
    }
    g.bookings.push((b.slot, b.musician_id.clone()));
    g.bookings.sort();
    g.version = seq;
    tx.put_gig(&g)?;
    let entry = BookedDate {
        date,
        gig_id: b.gig_id.clone(),
        slot: b.slot,
    };
    let at = m.booked.partition_point(|x| x.date < entry.date);
    m.booked.insert(at, entry);
    m.version = seq;
    tx.put_musician(&m)?;
    Ok(Ok((
        Effect::Booked(b.clone()),
        vec![Changed::updated(b.musician_id.clone(), m)],
    )))
}

/// How long [`Store::open`] waits for sled's directory lock.
///
/// Dropping a store does not release the lock at once: sled's I/O threads finish the buffers
/// they were writing and hold the file until then (sled's own tests block on the lock for that
/// reason). So an `Engine` dropped and reopened on the same directory in one process (a restore
/// followed by an open, found by the `raft_rpc` and `commands` fuzz targets) could fail with
/// "could not acquire lock". The open retries for this long; a directory another process holds
/// still fails, after this wait, with sled's message.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens sled with `config`, retrying while its directory lock is held (see [`LOCK_WAIT`]).
fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let started = std::time::Instant::now();
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                // No event to wait for: sled gives no way to learn when its threads let go.
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Opens (or creates) the store under `path`.
    pub(crate) fn open(path: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(opts.cache_bytes)
            .flush_every_ms(opts.flush_every_ms)
            // sled's own default waits for each buffer's writeback (`sync_file_range`) and still
            // is not durable; with this (vendor/sled patch 4) buffers are only written, and
            // `flush` ends with one `fdatasync` of the file for all the buffers it covers.
            .sync_writes(false);
        let db = open_waiting_for_lock(&config)?;
        let meta = db.open_tree("meta")?;
        match meta.get(FORMAT)? {
            Some(v) if v.as_ref() != [codec::FORMAT_VERSION] => {
                return Err(StoreError::Format {
                    found: v.first().copied().unwrap_or(0),
                    expected: codec::FORMAT_VERSION,
                })
            }
            Some(_) => {}
            None => {
                meta.insert(FORMAT, &[codec::FORMAT_VERSION])?;
            }
        }
        Ok(Store {
            musicians: db.open_tree("musicians")?,
            gigs: db.open_tree("gigs")?,
            changes: db.open_tree("changes")?,
            messages: db.open_tree("messages")?,
            message_index: db.open_tree("message_index")?,
            idempotency: db.open_tree("idempotency")?,
            meta,
            db,
            views: Views::default(),
        })
    }

    /// Last applied sequence number (0 for an empty store).
    pub(crate) fn applied_seq(&self) -> Result<u64, StoreError> {
        Ok(read_u64(self.meta.get(APPLIED)?))
    }

    /// The replication layer's metadata stored by the last annexed apply or load, if any.
    pub(crate) fn annex(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(ANNEX)?.map(|v| v.to_vec()))
    }

    /// Number of musicians and gigs.
    pub(crate) fn counts(&self) -> Result<(u64, u64), StoreError> {
        Ok((
            read_u64(self.meta.get(MUSICIAN_COUNT)?),
            read_u64(self.meta.get(GIG_COUNT)?),
        ))
    }

    /// Applies `cmd` as sequence `seq` ([`Store::apply_batch`] of one step, without an annex).
    /// Callers serialize calls.
    pub(crate) fn apply(&self, seq: u64, cmd: &Command) -> Result<Applied, StoreError> {
        let mut applied = self.apply_batch(&[(seq, Some(cmd))], None)?;
        // A step with a command always has an answer; the fallback is never taken.
        Ok(applied.pop().flatten().unwrap_or(Applied {
            outcome: Outcome::AlreadyApplied { applied: seq },
            changed: Vec::new(),
        }))
    }

    /// Applies a batch of steps in order, each as its sequence number, in **one** sled
    /// transaction: a step is a command, or `None` for an entry that only advances the applied
    /// sequence (a Raft entry without a command). Each step sees the effects of the steps
    /// before it, exactly as if they were applied one by one; `annex`, when given, is stored
    /// with them. One transaction instead of one per step is the point: sled writes its log
    /// buffer out (a `pwrite` and a `sync_file_range`) twice per transaction, whatever its size.
    ///
    /// Returns one entry per step, in order: `None` for a step without a command, the
    /// command's [`Applied`] otherwise. A step whose sequence is not above the applied one (or
    /// the previous step's) is a no-op ([`Outcome::AlreadyApplied`] for a command); when every
    /// step is one, nothing is written, the annex included. An error (storage, or a stored
    /// record that does not decode) writes nothing of the batch. Callers serialize calls.
    pub(crate) fn apply_batch(
        &self,
        steps: &[(u64, Option<&Command>)],
        annex: Option<&[u8]>,
    ) -> Result<Vec<Option<Applied>>, StoreError> {
        let mut applied = self.applied_seq()?;
        // Decided outside the transaction, which may run more than once: which steps run (and
        // the answer of those that do not), and each command's prepared form.
        let mut out: Vec<Option<Applied>> = Vec::with_capacity(steps.len());
        let mut runs = Vec::new();
        for (i, &(seq, cmd)) in steps.iter().enumerate() {
            out.push(cmd.map(|_| Applied {
                outcome: Outcome::AlreadyApplied { applied },
                changed: Vec::new(),
            }));
            if seq > applied {
                applied = seq;
                runs.push((i, seq, Work::of(cmd)));
            }
        }
        if runs.is_empty() {
            return Ok(out);
        }
        let views = self.views.current();
        let result = (
            &self.musicians,
            &self.gigs,
            &self.meta,
            &self.changes,
            &self.messages,
            &self.message_index,
            &self.idempotency,
        )
            .transaction(
                |(musicians, gigs, meta, changes, messages, message_index, idempotency)| {
                    let tx = Tx {
                        musicians,
                        gigs,
                        meta,
                        changes,
                        messages,
                        message_index,
                        idempotency,
                        views: &views,
                    };
                    let mut done = Vec::with_capacity(runs.len());
                    for (i, seq, work) in &runs {
                        if let Work::Commands { batch, commands } = work {
                            let mut ds = Vec::with_capacity(commands.len());
                            for (prepared, idem) in commands {
                                ds.push(run_step(&tx, *seq, prepared, *idem)?);
                            }
                            record_changes(&tx, *seq, ds.iter())?;
                            done.push((*i, ds, *batch));
                        }
                    }
                    if let Some(annex) = annex {
                        tx.meta.insert(ANNEX, annex)?;
                    }
                    tx.meta.insert(APPLIED, &codec::u64_key(applied))?;
                    Ok(done)
                },
            );
        let done = match result {
            Ok(done) => done,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(StoreError::Sled(e)),
        };
        for (i, ds, batch) in done {
            let mut changed = Vec::new();
            let mut outcomes: Vec<Outcome> = ds
                .into_iter()
                .map(|d| d.into_outcome(&mut changed))
                .collect();
            let outcome = if batch {
                Outcome::Batch { outcomes }
            } else {
                // A step that is not a batch has exactly one command.
                match outcomes.pop() {
                    Some(one) => one,
                    None => continue,
                }
            };
            out[i] = Some(Applied { outcome, changed });
        }
        Ok(out)
    }

    /// Makes every applied command durable: sled writes out its buffers, then `fdatasync`s its
    /// file (the disk's write cache flushed, the file's size recorded; `sync_writes(false)`,
    /// vendor/sled patch 4). Returns bytes flushed.
    pub(crate) fn flush(&self) -> Result<usize, StoreError> {
        Ok(self.db.flush()?)
    }

    pub(crate) fn musician(&self, id: &str) -> Result<Option<MusicianRecord>, StoreError> {
        match self.musicians.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => decode_musician(id.as_bytes(), &v).map(Some),
        }
    }

    pub(crate) fn gig(&self, id: &str) -> Result<Option<GigRecord>, StoreError> {
        match self.gigs.get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => decode_gig(id.as_bytes(), &v).map(Some),
        }
    }

    /// Musicians with id > `after`, in id order.
    pub(crate) fn musicians_after(
        &self,
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<MusicianRecord, StoreError>> + '_ {
        let range = match after {
            Some(a) => self.musicians.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.musicians.iter(),
        };
        range.map(|r| {
            let (k, v) = r?;
            decode_musician(&k, &v)
        })
    }

    /// Gigs with id > `after`, in id order.
    pub(crate) fn gigs_after(
        &self,
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<GigRecord, StoreError>> + '_ {
        let range = match after {
            Some(a) => self.gigs.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.gigs.iter(),
        };
        range.map(|r| {
            let (k, v) = r?;
            decode_gig(&k, &v)
        })
    }

    /// Messages of a gig with number > `after`, in posting order.
    pub(crate) fn messages_after(
        &self,
        gig_id: &str,
        after: u64,
    ) -> impl Iterator<Item = Result<Message, StoreError>> + '_ {
        let from = message_key(gig_id, after.saturating_add(1));
        let to = message_key(gig_id, u64::MAX);
        // Nothing follows the last possible number.
        let take = if after == u64::MAX { 0 } else { usize::MAX };
        self.messages.range(from..=to).take(take).map(|r| {
            let (k, v) = r?;
            decode_message(&k, &v)
        })
    }

    /// Opens a view of the store as it is now (see [`crate::view`]); the caller holds the
    /// engine's writer lock, so that no write is half done.
    pub(crate) fn open_view(&self) -> OpenView<'_> {
        self.views.open()
    }

    /// Every musician as of `view`'s opening, in id order.
    pub(crate) fn musicians_as_of<'a>(
        &'a self,
        view: &'a View,
    ) -> impl Iterator<Item = Result<MusicianRecord, StoreError>> + 'a {
        self.decoded_as_of(view, Viewed::Musicians, decode_musician)
    }

    /// Every gig as of `view`'s opening, in id order.
    pub(crate) fn gigs_as_of<'a>(
        &'a self,
        view: &'a View,
    ) -> impl Iterator<Item = Result<GigRecord, StoreError>> + 'a {
        self.decoded_as_of(view, Viewed::Gigs, decode_gig)
    }

    /// Every message as of `view`'s opening, by gig id then number.
    pub(crate) fn messages_as_of<'a>(
        &'a self,
        view: &'a View,
    ) -> impl Iterator<Item = Result<Message, StoreError>> + 'a {
        self.decoded_as_of(view, Viewed::Messages, decode_message)
    }

    fn decoded_as_of<'a, T: 'a>(
        &'a self,
        view: &'a View,
        which: Viewed,
        decode: fn(&[u8], &[u8]) -> Result<T, StoreError>,
    ) -> impl Iterator<Item = Result<T, StoreError>> + 'a {
        let tree = match which {
            Viewed::Musicians => &self.musicians,
            Viewed::Gigs => &self.gigs,
            Viewed::Messages => &self.messages,
        };
        view.as_of(which, tree.iter()).map(move |r| {
            let (k, v) = r?;
            decode(&k, &v)
        })
    }

    /// Ids of musicians changed by commands with sequence > `after`, deduplicated.
    pub(crate) fn changed_since(&self, after: u64) -> Result<Vec<String>, StoreError> {
        let mut ids = std::collections::BTreeSet::new();
        for r in self
            .changes
            .range(codec::u64_key(after.saturating_add(1))..)
        {
            let (k, v) = r?;
            let list: Vec<String> =
                codec::decode(RecordKind::Changes, &v).map_err(|e| corrupt(&k, e))?;
            ids.extend(list);
        }
        Ok(ids.into_iter().collect())
    }

    /// Drops change-log entries with sequence ≤ `upto` (the index covers them). The horizon is
    /// recorded first, so after a crash it may be ahead of what was really dropped, never behind.
    pub(crate) fn prune_changes(&self, upto: u64) -> Result<(), StoreError> {
        if upto > self.changes_pruned_upto()? {
            self.meta.insert(CHANGES_PRUNED, &codec::u64_key(upto))?;
        }
        let mut batch = sled::Batch::default();
        for r in self.changes.range(..=codec::u64_key(upto)) {
            let (k, _) = r?;
            batch.remove(k);
        }
        self.changes.apply_batch(batch)?;
        Ok(())
    }

    /// Highest sequence whose change-log entries may have been dropped (0: none).
    pub(crate) fn changes_pruned_upto(&self) -> Result<u64, StoreError> {
        Ok(read_u64(self.meta.get(CHANGES_PRUNED)?))
    }

    /// Bytes the database occupies on disk.
    pub(crate) fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Replaces the whole content with the given records (restore). Not atomic across a crash:
    /// the engine marks the store incomplete before and complete after.
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        self.musicians.clear()?;
        self.gigs.clear()?;
        self.changes.clear()?;
        self.messages.clear()?;
        self.message_index.clear()?;
        self.idempotency.clear()?;
        self.meta.remove(IDEM_HEAD)?;
        self.meta.remove(IDEM_TAIL)?;
        self.meta.remove(APPLIED)?;
        self.meta.remove(ANNEX)?;
        self.meta.remove(MUSICIAN_COUNT)?;
        self.meta.remove(GIG_COUNT)?;
        Ok(())
    }

    /// Writes restored records in one batch per tree.
    pub(crate) fn load(
        &self,
        musicians: &[MusicianRecord],
        gigs: &[GigRecord],
    ) -> Result<(), StoreError> {
        let mut mb = sled::Batch::default();
        for m in musicians {
            let key = m.musician.id.as_bytes();
            mb.insert(key, encode(RecordKind::Musician, m, key)?);
        }
        self.musicians.apply_batch(mb)?;
        let mut gb = sled::Batch::default();
        for g in gigs {
            let key = g.gig.id.as_bytes();
            gb.insert(key, encode(RecordKind::Gig, g, key)?);
        }
        self.gigs.apply_batch(gb)?;
        Ok(())
    }

    /// Every recorded idempotency key in recording order, with the window's bounds
    /// (`head`, `tail`), for a snapshot.
    pub(crate) fn idempotency_records(
        &self,
    ) -> Result<(u64, u64, Vec<crate::snapshot::IdempotencyRecord>), StoreError> {
        let head = read_u64(self.meta.get(IDEM_HEAD)?);
        let tail = read_u64(self.meta.get(IDEM_TAIL)?);
        let mut out = Vec::new();
        for kv in self.idempotency.scan_prefix(b"k") {
            let (k, v) = kv?;
            let e: IdemEntry =
                codec::decode(RecordKind::Idempotency, &v).map_err(|e| corrupt(&k, e))?;
            out.push(crate::snapshot::IdempotencyRecord {
                key: String::from_utf8_lossy(&k[1..]).into_owned(),
                fingerprint: e.fingerprint,
                at_ms: e.at_ms,
                n: e.n,
                outcome: e.outcome,
            });
        }
        out.sort_by_key(|r| r.n);
        Ok((head, tail, out))
    }

    /// Loads idempotency keys from a snapshot (into a cleared store); the caller checked them
    /// (`snapshot::load_frames`).
    pub(crate) fn load_idempotency(
        &self,
        head: u64,
        tail: u64,
        records: &[crate::snapshot::IdempotencyRecord],
    ) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for r in records {
            let k = idem_key(&r.key);
            let entry = IdemEntry {
                fingerprint: r.fingerprint,
                at_ms: r.at_ms,
                n: r.n,
                outcome: r.outcome.clone(),
            };
            b.insert(k.as_slice(), encode(RecordKind::Idempotency, &entry, &k)?);
            b.insert(idem_order_key(r.n), r.key.as_bytes());
        }
        self.idempotency.apply_batch(b)?;
        self.meta.insert(IDEM_HEAD, &codec::u64_key(head))?;
        self.meta.insert(IDEM_TAIL, &codec::u64_key(tail))?;
        Ok(())
    }

    /// Writes restored messages in one batch per tree, with their index entries (numbers kept;
    /// a gig's counter becomes the highest number seen for it).
    pub(crate) fn load_messages(&self, messages: &[Message]) -> Result<(), StoreError> {
        let mut mb = sled::Batch::default();
        let mut ib = sled::Batch::default();
        let mut last: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for m in messages {
            let key = message_key(&m.gig_id, m.seq);
            mb.insert(key.as_slice(), encode(RecordKind::Message, m, &key)?);
            if let Some(mid) = &m.message_id {
                ib.insert(message_id_key(&m.gig_id, mid), &codec::u64_key(m.seq));
            }
            let top = last.entry(m.gig_id.as_str()).or_insert(0);
            *top = (*top).max(m.seq);
        }
        for (gig, n) in last {
            let counter = thread_prefix(gig);
            let have = read_u64(self.message_index.get(&counter)?);
            ib.insert(counter, &codec::u64_key(have.max(n)));
        }
        self.messages.apply_batch(mb)?;
        self.message_index.apply_batch(ib)?;
        Ok(())
    }

    /// Verifies the message invariants: every message belongs to a stored gig and sits under
    /// its own key; a gig's messages are numbered exactly `1..=last` with `last` its counter;
    /// the id index holds exactly the client ids of the stored messages. Returns every
    /// violation.
    pub(crate) fn check_messages(&self) -> Result<Vec<String>, StoreError> {
        use std::collections::BTreeMap;
        let mut problems = Vec::new();
        let mut count: BTreeMap<String, u64> = BTreeMap::new();
        let mut ids: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut counters: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for r in self.messages.iter() {
            let (k, v) = r?;
            let m = decode_message(&k, &v)?;
            if k.as_ref() != message_key(&m.gig_id, m.seq).as_slice() {
                problems.push(format!(
                    "message {}#{} is stored under another key",
                    m.gig_id, m.seq
                ));
            }
            if !count.contains_key(&m.gig_id) && self.gigs.get(m.gig_id.as_bytes())?.is_none() {
                problems.push(format!("messages of gig {} outlive the gig", m.gig_id));
            }
            *count.entry(m.gig_id.clone()).or_insert(0) += 1;
            let top = counters.entry(thread_prefix(&m.gig_id)).or_insert(0);
            *top = (*top).max(m.seq);
            if let Some(mid) = &m.message_id {
                ids.insert(message_id_key(&m.gig_id, mid), m.seq);
            }
        }
        for (gig, n) in &count {
            let top = counters.get(&thread_prefix(gig)).copied().unwrap_or(0);
            if *n != top {
                problems.push(format!(
                    "gig {gig} holds {n} messages but its highest number is {top}"
                ));
            }
        }
        let mut indexed_ids = BTreeMap::new();
        let mut indexed_counters = BTreeMap::new();
        for r in self.message_index.iter() {
            let (k, v) = r?;
            let n = codec::u64_from_key(&v).unwrap_or(0);
            if k.last() == Some(&0) {
                indexed_counters.insert(k.to_vec(), n);
            } else {
                indexed_ids.insert(k.to_vec(), n);
            }
        }
        if indexed_counters != counters {
            problems.push(format!(
                "message counters disagree with the messages ({} counters, {} threads)",
                indexed_counters.len(),
                counters.len()
            ));
        }
        if indexed_ids != ids {
            problems.push(format!(
                "message id index disagrees with the messages ({} entries, {} ids)",
                indexed_ids.len(),
                ids.len()
            ));
        }
        Ok(problems)
    }

    /// Sets the applied sequence and counts after a restore.
    pub(crate) fn finish_load(&self, applied: u64) -> Result<(), StoreError> {
        self.finish_load_annexed(applied, None)
    }

    /// [`Store::finish_load`], also storing the replication layer's metadata.
    pub(crate) fn finish_load_annexed(
        &self,
        applied: u64,
        annex: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if let Some(annex) = annex {
            self.meta.insert(ANNEX, annex)?;
        }
        self.meta.insert(APPLIED, &codec::u64_key(applied))?;
        self.meta
            .insert(MUSICIAN_COUNT, &codec::u64_key(self.musicians.len() as u64))?;
        self.meta
            .insert(GIG_COUNT, &codec::u64_key(self.gigs.len() as u64))?;
        Ok(())
    }

    /// Verifies the booking invariant between gigs and musicians; returns every violation.
    pub(crate) fn check_bookings(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let mut from_gigs = std::collections::BTreeSet::new();
        for g in self.gigs_after(None) {
            let g = g?;
            for (slot, mid) in &g.bookings {
                from_gigs.insert((mid.clone(), g.gig.date.clone(), g.gig.id.clone(), *slot));
            }
        }
        let mut from_musicians = std::collections::BTreeSet::new();
        for m in self.musicians_after(None) {
            let m = m?;
            let mut dates = std::collections::BTreeSet::new();
            for b in &m.booked {
                if !dates.insert(b.date.clone()) {
                    problems.push(format!(
                        "musician {} booked twice on {}",
                        m.musician.id, b.date
                    ));
                }
                from_musicians.insert((
                    m.musician.id.clone(),
                    b.date.clone(),
                    b.gig_id.clone(),
                    b.slot,
                ));
            }
        }
        for x in from_gigs.symmetric_difference(&from_musicians) {
            problems.push(format!("booking recorded on one side only: {x:?}"));
        }
        Ok(problems)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn musician(fee: i64) -> Musician {
        serde_json::from_value(serde_json::json!({
            "id": "m-1", "name": "Ana", "instruments": [{"name": "guitar", "level": 4}],
            "location": {"lat": 40.42, "lon": -3.70}, "travel_radius_km": 50,
            "fee": {"amount": fee, "currency": "EUR"}
        }))
        .unwrap()
    }

    fn put(store: &Store, seq: u64, fee: i64) -> Applied {
        let cmd = Command::UpsertMusician {
            musician: musician(fee),
        };
        let mut out = store.apply_batch(&[(seq, Some(&cmd))], None).unwrap();
        out.pop().flatten().unwrap()
    }

    #[test]
    fn a_profile_rewritten_unchanged_is_stored_but_not_sent_to_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            cache_bytes: 1 << 20,
            flush_every_ms: None,
        };
        let store = Store::open(dir.path(), &opts).unwrap();
        let first = put(&store, 1, 100);
        assert!(first.outcome.is_done());
        assert_eq!(first.changed.len(), 1);
        assert!(first.changed[0].created);

        // The same profile again: a new version, a done outcome, no index change.
        let again = put(&store, 2, 100);
        assert!(again.outcome.is_done());
        assert!(again.changed.is_empty(), "nothing indexed changed");
        assert_eq!(store.musician("m-1").unwrap().unwrap().version, 2);
        assert_eq!(store.changed_since(1).unwrap(), Vec::<String>::new());

        // A changed fee is indexed (a fast field), as an update.
        let changed = put(&store, 3, 200);
        assert_eq!(changed.changed.len(), 1);
        assert!(!changed.changed[0].created);
        assert_eq!(store.changed_since(1).unwrap(), vec!["m-1".to_string()]);
    }
}
