//! Commands: every change to the engine's state, as data.
//!
//! A [`Command`] is deterministic: applying the same sequence of commands to two empty engines
//! yields the same state and the same [`Outcome`]s. Nothing node-local (clock, randomness, thread
//! count) may influence what a command does; a timestamp, where one is needed, travels inside it.
//! Commands are what the Raft log carries, so their serde and bincode forms are wire formats.

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
}

impl Command {
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
    /// The command was refused; nothing changed except the applied sequence.
    Refused(Refusal),
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
}
