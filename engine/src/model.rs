//! The public data model: musicians, gigs and bookings.
//!
//! The JSON form of these types is a public contract: the HTTP API, the import files and the
//! generator all use it unchanged. Unknown fields are rejected (`deny_unknown_fields`), optional
//! fields have documented defaults, and every value is checked by [`crate::validate`] before it
//! reaches the store. The same types are encoded in binary by [`crate::codec`] for storage.
//!
//! Dates are ISO `YYYY-MM-DD` strings. After validation they are canonical, so comparing two dates
//! as strings compares them as dates.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// A point on Earth in decimal degrees (WGS 84).
///
/// ```
/// use mussikon_engine::GeoPoint;
/// let madrid = GeoPoint { lat: 40.4168, lon: -3.7038 };
/// assert!(madrid.lat > 40.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GeoPoint {
    /// Latitude in [-90, 90].
    pub lat: f64,
    /// Longitude in [-180, 180].
    pub lon: f64,
}

/// One instrument a musician plays, with a self-declared level from 1 (beginner) to 5 (master).
///
/// ```
/// use mussikon_engine::InstrumentSkill;
/// let s = InstrumentSkill { name: "guitar".into(), level: 4 };
/// assert_eq!(s.level, 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InstrumentSkill {
    /// Instrument name, normalized to trimmed lower case.
    pub name: String,
    /// Level from 1 to 5.
    pub level: i64,
}

/// An amount of money in minor units (cents) of an ISO 4217 currency.
///
/// ```
/// use mussikon_engine::Money;
/// let fee = Money { amount: 15_000, currency: "EUR".into() }; // 150.00 EUR
/// assert_eq!(fee.amount, 15_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Integer amount in minor units, ≥ 0.
    pub amount: i64,
    /// Three upper-case letters, e.g. `EUR`.
    pub currency: String,
}

/// A musician's ratings so far: the mean of `count` ratings of 1 to 5 stars.
///
/// ```
/// use mussikon_engine::Rating;
/// let r = Rating { average: 4.7, count: 23 };
/// assert!(r.bayesian() < 4.7); // pulled towards the prior 3.5
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rating {
    /// Mean stars, in [1, 5] when `count > 0`.
    pub average: f64,
    /// Number of ratings, ≥ 0.
    pub count: i64,
}

/// Prior mean of the Bayesian rating.
pub const RATING_PRIOR_MEAN: f64 = 3.5;
/// Weight (in pseudo-ratings) of the Bayesian prior.
pub const RATING_PRIOR_WEIGHT: f64 = 5.0;

impl Rating {
    /// Bayesian average `(count · average + 5 · 3.5) / (count + 5)`.
    pub fn bayesian(&self) -> f64 {
        let count = self.count.max(0) as f64;
        (count * self.average + RATING_PRIOR_WEIGHT * RATING_PRIOR_MEAN)
            / (count + RATING_PRIOR_WEIGHT)
    }
}

fn default_true() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

/// A musician's public profile.
///
/// ```
/// use mussikon_engine::Musician;
/// let m: Musician = serde_json::from_str(r#"{"id":"m-1","name":"Ana","instruments":[{"name":"guitar","level":4}],
///   "location":{"lat":40.4,"lon":-3.7},"travel_radius_km":50,"fee":{"amount":15000,"currency":"EUR"}}"#).unwrap();
/// assert!(m.active);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(examples(json!({"id": "m-1", "name": "Ana", "instruments": [{"name": "guitar", "level": 4}],
        "location": {"lat": 40.4, "lon": -3.7}, "travel_radius_km": 50,
        "fee": {"amount": 15000, "currency": "EUR"}})))
)]
#[serde(deny_unknown_fields)]
pub struct Musician {
    /// 1–64 characters of `[A-Za-z0-9._-]`.
    pub id: String,
    /// 1–200 characters.
    pub name: String,
    /// 1–16 instruments with levels.
    pub instruments: Vec<InstrumentSkill>,
    /// Up to 16 genres, normalized to trimmed lower case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genres: Vec<String>,
    /// Home location.
    pub location: GeoPoint,
    /// Home city, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// How far the musician travels, in (0, 20000] km.
    pub travel_radius_km: f64,
    /// Fee per gig.
    pub fee: Money,
    /// Ratings so far; absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
    /// Dates the musician is unavailable, at most 366.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub busy: Vec<String>,
    /// Free text, at most 4000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
    /// Inactive musicians are never matched; defaults to true.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub active: bool,
}

impl Musician {
    /// The musician's level on `instrument` (already normalized), if they play it.
    pub fn level_on(&self, instrument: &str) -> Option<i64> {
        self.instruments
            .iter()
            .filter(|s| s.name == instrument)
            .map(|s| s.level)
            .max()
    }

    /// Bayesian rating; 3.5 when the musician has no ratings.
    pub fn bayesian_rating(&self) -> f64 {
        self.rating
            .map(|r| r.bayesian())
            .unwrap_or(RATING_PRIOR_MEAN)
    }
}

fn default_min_level() -> i64 {
    1
}

/// One kind of seat at a gig: `count` musicians playing `instrument` at `min_level` or better.
///
/// ```
/// use mussikon_engine::Slot;
/// let s: Slot = serde_json::from_str(r#"{"instrument":"drums","count":1}"#).unwrap();
/// assert_eq!(s.min_level, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// Instrument name, normalized.
    pub instrument: String,
    /// Seats, 1–20.
    pub count: i64,
    /// Minimum level, 1–5, default 1.
    #[serde(default = "default_min_level")]
    #[cfg_attr(feature = "openapi", schema(default = 1))]
    pub min_level: i64,
}

/// The most a gig pays one musician.
///
/// ```
/// use mussikon_engine::Budget;
/// let b = Budget { max_fee: 20_000, currency: "EUR".into() };
/// assert_eq!(b.currency, "EUR");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Maximum fee per musician in minor units, ≥ 0.
    pub max_fee: i64,
    /// Three upper-case letters.
    pub currency: String,
}

/// A gig looking for musicians.
///
/// ```
/// use mussikon_engine::Gig;
/// let g: Gig = serde_json::from_str(r#"{"id":"g-1","title":"Wedding","date":"2026-12-05",
///   "location":{"lat":40.42,"lon":-3.70},"radius_km":30,"slots":[{"instrument":"guitar","count":1}],
///   "budget":{"max_fee":20000,"currency":"EUR"}}"#).unwrap();
/// assert_eq!(g.slots.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(examples(json!({"id": "g-1", "title": "Wedding", "date": "2026-12-05",
        "location": {"lat": 40.42, "lon": -3.70}, "radius_km": 30,
        "slots": [{"instrument": "guitar", "count": 1}],
        "budget": {"max_fee": 20000, "currency": "EUR"}})))
)]
#[serde(deny_unknown_fields)]
pub struct Gig {
    /// 1–64 characters of `[A-Za-z0-9._-]`.
    pub id: String,
    /// 1–200 characters.
    pub title: String,
    /// ISO date of the gig.
    pub date: String,
    /// Where the gig is.
    pub location: GeoPoint,
    /// How far from the venue musicians may come, in (0, 20000] km.
    pub radius_km: f64,
    /// 1–16 slots.
    pub slots: Vec<Slot>,
    /// Wanted genres, up to 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genres: Vec<String>,
    /// Budget per musician.
    pub budget: Budget,
    /// Minimum Bayesian rating, in [1, 5].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rating: Option<f64>,
    /// Who owns the gig (an id: 1–64 characters of `[A-Za-z0-9._-]`), e.g. the organizer that
    /// created it. The engine stores and validates it; who may set it is the caller's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl Gig {
    /// Total seats over all slots.
    pub fn total_seats(&self) -> usize {
        self.slots.iter().map(|s| s.count.max(0) as usize).sum()
    }
}

/// A musician booked into one slot of a gig; from then on the musician is taken on the gig's date.
///
/// ```
/// use mussikon_engine::Booking;
/// let b: Booking = serde_json::from_str(r#"{"gig_id":"g-1","slot":0,"musician_id":"m-1"}"#).unwrap();
/// assert_eq!(b.slot, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(examples(json!({"gig_id": "g-1", "slot": 0, "musician_id": "m-1"})))
)]
#[serde(deny_unknown_fields)]
pub struct Booking {
    /// The gig.
    pub gig_id: String,
    /// Index of the slot in the gig's `slots`.
    pub slot: i64,
    /// The musician.
    pub musician_id: String,
}

/// A stored musician with what the store knows beyond the profile.
///
/// ```
/// # use mussikon_engine::*;
/// # fn f(v: MusicianView) { let _ = (v.version, v.booked.len()); }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MusicianView {
    /// The profile.
    pub musician: Musician,
    /// Applied sequence number of the last change to this musician (profile, rating or bookings).
    pub version: u64,
    /// Dates on which the musician is booked, with the gig and slot.
    pub booked: Vec<BookedDate>,
}

/// One date on which a musician is booked.
///
/// ```
/// # use mussikon_engine::BookedDate;
/// let b = BookedDate { date: "2026-12-05".into(), gig_id: "g-1".into(), slot: 0 };
/// assert_eq!(b.slot, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BookedDate {
    /// ISO date.
    pub date: String,
    /// The gig.
    pub gig_id: String,
    /// Slot index within the gig.
    pub slot: i64,
}

/// A stored gig with its current bookings.
///
/// ```
/// # use mussikon_engine::*;
/// # fn f(v: GigView) { let _ = (v.version, v.bookings.len()); }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GigView {
    /// The gig.
    pub gig: Gig,
    /// Applied sequence number of the last change to this gig or its bookings.
    pub version: u64,
    /// Current bookings, ordered by slot then musician id.
    pub bookings: Vec<Booking>,
}

/// When something happened, as a command carries it: an RFC 3339 timestamp
/// (`"2026-12-05T21:30:00+01:00"`) or unix milliseconds (`1796500000000`). The engine never reads
/// a clock; the caller stamps the time before building the command.
///
/// ```
/// use mussikon_engine::Timestamp;
/// let t: Timestamp = serde_json::from_str("1796500000000").unwrap();
/// assert_eq!(t, Timestamp::Millis(1_796_500_000_000));
/// let t: Timestamp = serde_json::from_str(r#""2026-12-05T21:30:00Z""#).unwrap();
/// assert!(matches!(t, Timestamp::Rfc3339(_)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Timestamp {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    Millis(i64),
    /// An RFC 3339 date-time with a time zone offset.
    Rfc3339(String),
}

/// One chat message posted on a gig. Messages of a gig are numbered 1, 2, 3… in the order they
/// were applied (`seq`); that order is the listing order.
///
/// ```
/// # use mussikon_engine::Message;
/// # fn f(m: Message) { let _ = (m.seq, m.at_ms, m.version); }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    /// The gig the message belongs to.
    pub gig_id: String,
    /// Position of the message in its gig's thread, from 1.
    pub seq: u64,
    /// The client's id for the message, unique within the gig, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Who wrote it (an id).
    pub author: String,
    /// The text, trimmed, 1–2000 characters.
    pub text: String,
    /// When it was posted, RFC 3339 in UTC with milliseconds (`2026-12-05T20:30:00.000Z`).
    pub at: String,
    /// The same instant in unix milliseconds.
    pub at_ms: i64,
    /// Applied sequence number of the command that posted it.
    pub version: u64,
}
