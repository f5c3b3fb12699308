//! Real-time events over a WebSocket at `GET /v1/events`: what happened to a gig or a
//! musician, pushed to the clients that asked for it. (Also documented in docs/events.md.)
//!
//! Owns: the event hub ([`hub`]), the per-connection protocol loop ([`socket`]) and the
//! translation of engine effects into events ([`publish`]).
//!
//! # Protocol
//!
//! Every frame is one JSON text frame. The client sends
//!
//! ```text
//! {"op":"subscribe","topics":["musician:m-1","gig:g-1"]}
//! {"op":"unsubscribe","topics":["gig:g-1"]}
//! ```
//!
//! and the server answers each with `{"type":"subscribed","topics":[…]}` or
//! `{"type":"unsubscribed","topics":[…]}` (the frame's topics, without duplicates). A topic is
//! `musician:ID` or `gig:ID`, the id following the API's id rule, or `imports`. Who may
//! subscribe: `gig:ID` the gig's owner, the musicians booked on it and admins; `musician:ID`
//! that musician and admins; `imports` admins (see [`crate::http::auth`]); a frame naming a
//! topic the caller may not follow is refused whole with an error frame. A frame that is not JSON, not
//! one of these shapes, names a bad topic, or would take the connection past its topic limit
//! (1000 by default) is answered `{"type":"error","message":"…"}` and changes nothing; the
//! connection stays open. Binary frames get the same error. A frame over the size limit (64 KiB
//! by default) closes the connection with code 1009.
//!
//! Events:
//!
//! ```text
//! {"type":"booking.created","topic":"gig:g-1","seq":42,"data":{"gig_id":"g-1","slot":0,"musician_id":"m-1"}}
//! ```
//!
//! | type | topics | data |
//! | --- | --- | --- |
//! | `booking.created` | `gig:G`, `musician:M` | the booking `{gig_id, slot, musician_id}` |
//! | `booking.cancelled` | `gig:G`, `musician:M` | the booking |
//! | `gig.created` | `gig:G` | `{gig_id}` |
//! | `gig.matching` | `musician:M` for each musician ranked for the new gig | `{gig_id, date, slots:[{slot, instrument, score}]}` |
//! | `rating.changed` | `musician:M` | `{musician_id, average, count}` |
//! | `message.posted` | `gig:G` | the stored message |
//! | `gig.updated` | `gig:G` | `{gig_id}` |
//! | `gig.deleted` | `gig:G` | `{gig_id, released}` (bookings released) |
//! | `import.applied` | `imports` | `{accepted, rejected}`: the counts of a bulk upload |
//!
//! `seq` is the engine's applied sequence of the command that caused the event. An event is
//! sent once per topic: a client subscribed to both `gig:g-1` and `musician:m-1` gets a
//! booking of m-1 on g-1 twice, once with each topic.
//!
//! Guarantees and limits:
//! - Events are published after the command is applied and durable, never for a refused
//!   command, and only to subscriptions acknowledged before the publication: once the client
//!   has read `subscribed`, every later event on those topics is delivered or the connection
//!   is closed.
//! - Events of one command reach a subscriber in one batch, in the order of the table. Events
//!   of commands that race (concurrent requests) may arrive out of `seq` order; `seq` orders
//!   them.
//! - `gig.matching` is computed off the request path (the gig's PUT does not wait for it), on
//!   the blocking pool, after the gig's `gig.created` has been queued, from the ranking of `GET /v1/gigs/{id}/matches?k=20`; it reflects the index at that moment.
//!   When more gigs wait than the matching queue holds, the extra ones get no `gig.matching`.
//! - Each connection has a bounded queue (256 events by default). Publishers never wait for a
//!   subscriber: one whose queue is full is disconnected with close code 1013 ("try again
//!   later") and counted in `mussikon_ws_dropped_subscribers_total`; it should reconnect,
//!   resubscribe, and catch up through the REST API (e.g. `GET /v1/gigs/{id}/messages?after=N`).
//! - The server pings every 20 s; a connection that sent nothing (not even a pong) for two
//!   intervals is closed as dead. On shutdown every connection is closed with code 1001.

pub mod hub;
pub mod publish;
pub mod socket;

use mussikon_engine::is_valid_id;
use serde::{Deserialize, Serialize};

pub use hub::{Hub, HubStats, Kick};
pub use publish::Events;

/// Event types, as the `type` member spells them.
pub mod kind {
    /// A musician was booked into a gig.
    pub const BOOKING_CREATED: &str = "booking.created";
    /// A booking was cancelled.
    pub const BOOKING_CANCELLED: &str = "booking.cancelled";
    /// A gig was created.
    pub const GIG_CREATED: &str = "gig.created";
    /// A new gig for which the musician ranks among the candidates.
    pub const GIG_MATCHING: &str = "gig.matching";
    /// A musician's rating changed.
    pub const RATING_CHANGED: &str = "rating.changed";
    /// A chat message was posted on a gig.
    pub const MESSAGE_POSTED: &str = "message.posted";
    /// A stored gig was replaced.
    pub const GIG_UPDATED: &str = "gig.updated";
    /// A gig was deleted (its bookings released, its chat removed).
    pub const GIG_DELETED: &str = "gig.deleted";
    /// A bulk upload (`POST /v1/musicians/bulk`) was applied.
    pub const IMPORT_APPLIED: &str = "import.applied";
}

/// The topic of bulk imports (admins only).
pub const IMPORTS_TOPIC: &str = "imports";

/// One event for one topic, before serialization.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// One of the [`kind`] constants.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `gig:ID` or `musician:ID`.
    pub topic: String,
    /// Applied sequence of the command behind it.
    pub seq: u64,
    /// What happened.
    pub data: serde_json::Value,
}

/// The topic of a gig.
pub fn gig_topic(id: &str) -> String {
    format!("gig:{id}")
}

/// The topic of a musician.
pub fn musician_topic(id: &str) -> String {
    format!("musician:{id}")
}

/// True when `topic` is `gig:ID` or `musician:ID` with a valid id, or `imports`.
///
/// ```
/// use mussikon_server::http::events::is_valid_topic;
/// assert!(is_valid_topic("gig:g-1"));
/// assert!(!is_valid_topic("gig:"));
/// assert!(!is_valid_topic("band:b-1"));
/// ```
pub fn is_valid_topic(topic: &str) -> bool {
    if topic == IMPORTS_TOPIC {
        return true;
    }
    match topic.split_once(':') {
        Some(("gig" | "musician", id)) => is_valid_id(id),
        _ => false,
    }
}

/// A frame a client sends.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Start receiving events of these topics.
    Subscribe {
        /// Topics.
        topics: Vec<String>,
    },
    /// Stop receiving events of these topics.
    Unsubscribe {
        /// Topics.
        topics: Vec<String>,
    },
}

/// A frame the server sends in answer to a client frame.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The topics are subscribed.
    Subscribed {
        /// The frame's topics, without duplicates.
        topics: Vec<String>,
    },
    /// The topics are no longer subscribed.
    Unsubscribed {
        /// The frame's topics, without duplicates.
        topics: Vec<String>,
    },
    /// The frame was refused; nothing changed.
    Error {
        /// Why.
        message: String,
    },
}

impl Reply {
    /// The reply as JSON text.
    pub fn to_text(&self) -> String {
        // A reply holds only strings; serializing it cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"error"}"#.into())
    }
}
