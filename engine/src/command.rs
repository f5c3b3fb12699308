//! Commands: every change to the engine's state, as data.
//!
//! A [`Command`] is deterministic: applying the same sequence of commands to two empty engines
//! yields the same state and the same [`Outcome`]s. Nothing node-local (clock, randomness, thread
//! count) may influence what a command does; a timestamp, where one is needed, travels inside it.
//! Commands are what the Raft log carries, so their serde and bincode forms are wire formats.
//! New variants and fields are only ever appended (bincode is positional), so a command encoded
//! by an older build still decodes: [`Command::Guarded`], [`Command::Batch`], [`Outcome::Replayed`],
//! [`Outcome::Batch`] and the last
//! [`Conflict`]s came after the first format.
//!
//! [`Command::Guarded`] wraps a command with a [`Guard`]: conditions on the record the command
//! names (its version, a gig's owner), fields to keep from the stored record, and an
//! idempotency key. The guard is evaluated inside the same apply as the command, under the
//! writer lock and in the same store transaction, so nothing can change between the check and
//! the write (an HTTP `If-Match` is atomic with its PUT or DELETE).

use crate::model::{Booking, Gig, Message, Musician, Timestamp};
use crate::validate::ValidationError;
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Most records one bulk command may carry.
pub const MAX_BULK: usize = 100_000;

/// One change to the engine.
///
/// ```
/// use mussikon_engine::{Command, Booking};
/// let c = Command::Book(Booking { gig_id: "g-1".into(), slot: 0, musician_id: "m-1".into() });
/// let json = serde_json::to_string(&c).unwrap();
/// assert!(json.starts_with(r#"{"op":"book""#));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Create or replace a musician; bookings and ratings history are kept.
    UpsertMusician {
        /// The new profile.
        musician: Musician,
    },
    /// Delete a musician and release their bookings.
    DeleteMusician {
        /// Musician id.
        id: String,
    },
    /// Create or replace a gig. Refused while bookings exist if the date changes or a slot
    /// would hold fewer seats than it has bookings.
    UpsertGig {
        /// The new gig.
        gig: Gig,
    },
    /// Delete a gig and release its bookings.
    DeleteGig {
        /// Gig id.
        id: String,
    },
    /// Book a musician into a slot (compare-and-set on availability and seats).
    Book(Booking),
    /// Cancel a booking.
    CancelBooking {
        /// Gig id.
        gig_id: String,
        /// Musician id.
        musician_id: String,
    },
    /// Add one rating of 1–5 stars to a musician's average.
    RateMusician {
        /// Musician id.
        musician_id: String,
        /// 1–5.
        stars: i64,
    },
    /// Create or replace many records at once, atomically.
    BulkUpsert {
        /// Musicians to upsert.
        #[serde(default)]
        musicians: Vec<Musician>,
        /// Gigs to upsert.
        #[serde(default)]
        gigs: Vec<Gig>,
    },
    /// Post a chat message on a gig. The message gets the gig's next message number; `at` is
    /// stamped by the caller (the engine reads no clock).
    PostMessage {
        /// The gig.
        gig_id: String,
        /// The client's id for the message; when given it must be unique within the gig.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// Who writes (an id).
        author: String,
        /// 1–2000 characters after trimming.
        text: String,
        /// When it was posted.
        at: Timestamp,
    },
    /// `command`, applied only when `guard` holds; see [`Guard`]. A guard may not wrap another
    /// guarded command.
    Guarded {
        /// The conditions, kept fields and idempotency key.
        guard: Guard,
        /// The command to apply.
        command: Box<Command>,
    },
    /// Several commands applied in order as one sequence number, each exactly as if it were
    /// applied alone (each sees the ones before it; a refused one changes nothing and the
    /// others still apply): what a replicated node's group commit puts in one log entry. The
    /// outcome is [`Outcome::Batch`], one outcome per command. At most [`MAX_BATCH`]
    /// commands; a batch may not contain a batch. Records changed by the batch all get its
    /// sequence number as their version.
    Batch {
        /// The commands, in order.
        commands: Vec<Command>,
    },
}

/// Most commands one [`Command::Batch`] carries.
pub const MAX_BATCH: usize = 1024;

/// Conditions and options evaluated in the same apply as the command they guard.
///
/// Checked in this order, each refusal deciding before any write:
/// 1. `idempotency`: a key already recorded answers [`Outcome::Replayed`] with the first
///    outcome (same fingerprint) or refuses with [`Conflict::IdempotencyKeyReused`]; nothing
///    else is evaluated;
/// 2. `owner`: when the gig the command names exists, its owner must be this subject, else
///    [`Conflict::NotOwner`]; `booked`: when it exists, this musician must be booked on it,
///    else [`Conflict::NotBooked`];
/// 3. `version`: the version of the record the command names, else
///    [`Conflict::VersionMismatch`];
/// 4. `keep_rating` / `keep_owner` change the upserted record, then the command runs.
///
/// The record a command names: the musician of `upsert_musician`, `delete_musician` and
/// `rate_musician`; the gig of `upsert_gig`, `delete_gig`, `book`, `cancel_booking` and
/// `post_message`. `bulk_upsert` names none and takes only an idempotency key.
///
/// ```
/// use mussikon_engine::{Command, Guard, Expected};
/// let c = Command::Guarded {
///     guard: Guard { version: Some(Expected::Versions(vec![7])), ..Guard::default() },
///     command: Box::new(Command::DeleteGig { id: "g-1".into() }),
/// };
/// let json = serde_json::to_string(&c).unwrap();
/// assert_eq!(json, r#"{"op":"guarded","guard":{"version":{"versions":[7]}},"command":{"op":"delete_gig","id":"g-1"}}"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// The version the named record must be at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Expected>,
    /// When the named gig exists, its `owner` must be this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When the named gig exists, this musician must be booked on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booked: Option<String>,
    /// `upsert_musician`: keep the stored rating (none for a new musician), whatever the
    /// command's musician says.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_rating: bool,
    /// `upsert_gig`: when the command's gig has no owner, keep the stored gig's owner.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_owner: bool,
    /// Apply at most once per key; see [`IdempotencyKey`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<IdempotencyKey>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The version a guarded command expects of the record it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// The record must exist, at any version.
    Exists,
    /// The record must exist at one of these versions (none: never holds).
    Versions(Vec<u64>),
}

/// Most idempotency keys the store keeps; the oldest are forgotten first.
pub const IDEMPOTENCY_KEYS_KEPT: u64 = 100_000;
/// How long a key is kept, measured on the `at_ms` of later keyed commands (never a clock).
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest idempotency key, bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 512;

/// A key under which a command's outcome is recorded, in the same transaction as its effects,
/// so that a retry carrying the same key gets the first outcome back instead of applying twice
/// — across restarts, and on every replica applying the same commands.
///
/// Retention is deterministic: at most [`IDEMPOTENCY_KEYS_KEPT`] keys, and a key is forgotten
/// once a later keyed command's `at_ms` is more than [`IDEMPOTENCY_TTL_MS`] past its own (each
/// keyed command forgets at most two old keys, so the work per command stays bounded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyKey {
    /// The key, 1–512 bytes; callers scope it (e.g. by client) as they need.
    pub key: String,
    /// A digest of the request the key was first used for; the same key with another
    /// fingerprint is refused.
    pub fingerprint: u64,
    /// When the request was made, milliseconds since the Unix epoch, stamped by the caller.
    pub at_ms: i64,
}

impl Command {
    /// This command under `guard`; itself when the guard is empty.
    pub fn guarded_by(self, guard: Guard) -> Command {
        if guard == Guard::default() {
            self
        } else {
            Command::Guarded {
                guard,
                command: Box::new(self),
            }
        }
    }

    /// The idempotency key the command is guarded by, if any: a command that carries one may
    /// be submitted again when its first outcome is unknown, since the engine applies it at
    /// most once (a second apply answers [`Outcome::Replayed`]).
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        match self {
            Command::Guarded { guard, .. } => guard.idempotency.as_ref(),
            _ => None,
        }
    }

    /// The command without its guard.
    pub fn unguarded(&self) -> &Command {
        match self {
            Command::Guarded { command, .. } => command,
            other => other,
        }
    }

    /// Short name of the command, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::UpsertMusician { .. } => "upsert_musician",
            Command::DeleteMusician { .. } => "delete_musician",
            Command::UpsertGig { .. } => "upsert_gig",
            Command::DeleteGig { .. } => "delete_gig",
            Command::Book(_) => "book",
            Command::CancelBooking { .. } => "cancel_booking",
            Command::RateMusician { .. } => "rate_musician",
            Command::BulkUpsert { .. } => "bulk_upsert",
            Command::PostMessage { .. } => "post_message",
            Command::Guarded { command, .. } => command.name(),
            Command::Batch { .. } => "batch",
        }
    }
}

/// What applying a command did. Deterministic: every replica computes the same outcome.
///
/// ```
/// use mussikon_engine::{Outcome, Effect};
/// let o = Outcome::Done(Effect::MusicianDeleted { id: "m-1".into(), released: 0 });
/// assert!(o.is_done());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The command took effect.
    Done(Effect),
    /// The sequence number was already applied; nothing changed.
    AlreadyApplied {
        /// The engine's applied sequence.
        applied: u64,
    },
    /// The command was refused; nothing changed except the applied sequence (and, for a keyed
    /// command, the record of its key).
    Refused(Refusal),
    /// The command's idempotency key was already recorded for the same request: nothing
    /// changed (except the applied sequence); `first` is the outcome of the first time.
    Replayed {
        /// What the command did the first time (`done` or `refused`).
        first: Box<Outcome>,
    },
    /// The outcomes of a [`Command::Batch`]'s commands, in order.
    Batch {
        /// One per command.
        outcomes: Vec<Outcome>,
    },
}

impl Outcome {
    /// True when the command took effect.
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done(_))
    }
}

/// The effect of a successful command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// A musician was created (`created`) or replaced.
    MusicianUpserted {
        /// Musician id.
        id: String,
        /// True when it did not exist before.
        created: bool,
    },
    /// A musician was deleted.
    MusicianDeleted {
        /// Musician id.
        id: String,
        /// Bookings released.
        released: u32,
    },
    /// A gig was created or replaced.
    GigUpserted {
        /// Gig id.
        id: String,
        /// True when it did not exist before.
        created: bool,
    },
    /// A gig was deleted.
    GigDeleted {
        /// Gig id.
        id: String,
        /// Bookings released.
        released: u32,
    },
    /// A booking was made.
    Booked(Booking),
    /// A booking was cancelled.
    Cancelled(Booking),
    /// A rating was folded into a musician's average.
    Rated {
        /// Musician id.
        musician_id: String,
        /// New average.
        average: f64,
        /// New count.
        count: i64,
    },
    /// Records were upserted in bulk.
    BulkUpserted {
        /// Musicians written.
        musicians: u32,
        /// Gigs written.
        gigs: u32,
    },
    /// A chat message was stored.
    MessagePosted(Message),
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The command's data broke validation rules.
    #[error("{0}")]
    Invalid(ValidationError),
    /// A record the command names does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// "musician", "gig" or "booking".
        kind: String,
        /// The id.
        id: String,
    },
    /// A booking or change conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(Conflict),
}

/// Booking conflicts and other state conflicts, each naming what is in the way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "conflict", rename_all = "snake_case")]
pub enum Conflict {
    /// The musician marked the date busy.
    #[error("musician {musician_id} is busy on {date}")]
    MusicianBusy {
        /// Musician id.
        musician_id: String,
        /// The date.
        date: String,
    },
    /// The musician is already booked that date.
    #[error("musician {musician_id} is already booked on {date} (gig {gig_id})")]
    MusicianAlreadyBooked {
        /// Musician id.
        musician_id: String,
        /// The date.
        date: String,
        /// The gig holding the date.
        gig_id: String,
    },
    /// The slot has no free seat.
    #[error("slot {slot} is full ({count} seats)")]
    SlotFull {
        /// Slot index.
        slot: i64,
        /// Seats in the slot.
        count: i64,
    },
    /// The gig has no such slot.
    #[error("gig has no slot {slot}")]
    NoSuchSlot {
        /// Slot index asked for.
        slot: i64,
    },
    /// The musician does not play the instrument at the slot's minimum level.
    #[error("musician does not play {instrument} at level {min_level} or better")]
    InstrumentMismatch {
        /// The slot's instrument.
        instrument: String,
        /// The slot's minimum level.
        min_level: i64,
    },
    /// The musician is inactive.
    #[error("musician {musician_id} is inactive")]
    MusicianInactive {
        /// Musician id.
        musician_id: String,
    },
    /// A gig update would invalidate existing bookings.
    #[error("gig {gig_id} has bookings that the change would break: {detail}")]
    GigHasBookings {
        /// Gig id.
        gig_id: String,
        /// What would break.
        detail: String,
    },
    /// The gig already holds a message with this client id.
    #[error("gig {gig_id} already has a message with id {message_id}")]
    MessageIdTaken {
        /// Gig id.
        gig_id: String,
        /// The message id.
        message_id: String,
    },
    /// A guarded command expected another version of the record it names.
    #[error("{kind} {id} is at version {current:?}, not the one expected")]
    VersionMismatch {
        /// "musician" or "gig".
        kind: String,
        /// The record's id.
        id: String,
        /// Its current version; `None` when it does not exist.
        current: Option<u64>,
    },
    /// A guarded command required another owner of the gig it names.
    #[error("gig {gig_id} is owned by someone else")]
    NotOwner {
        /// Gig id.
        gig_id: String,
    },
    /// A guarded command required a musician booked on the gig it names.
    #[error("musician {musician_id} is not booked on gig {gig_id}")]
    NotBooked {
        /// Gig id.
        gig_id: String,
        /// Musician id.
        musician_id: String,
    },
    /// The idempotency key was recorded for a different request.
    #[error("idempotency key {key} was used for a different request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
}
