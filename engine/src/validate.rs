//! The one validation path for every record, whatever door it came in by.
//!
//! `validate_*` take a record as decoded from JSON and return it normalized (names trimmed and
//! lower-cased, genres and busy dates sorted and deduplicated), or a [`ValidationError`] that lists
//! every bad field with the rule it broke. Nothing is written for an invalid record: the apply path
//! calls these functions again before touching the store, so a command that skipped the edge is
//! still refused.

use crate::model::{Booking, Gig, Musician};
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One broken rule: which field (a JSON path such as `instruments[1].level`) and what it must be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// JSON path of the field.
    pub field: String,
    /// The rule, in words.
    pub rule: String,
}

/// Every rule a record broke.
///
/// ```
/// use mussikon_engine::{validate_booking, Booking};
/// let err = validate_booking(&Booking { gig_id: "".into(), slot: -1, musician_id: "ok".into() }).unwrap_err();
/// assert_eq!(err.errors.len(), 2);
/// assert_eq!(err.errors[0].field, "gig_id");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, thiserror::Error)]
pub struct ValidationError {
    /// The broken rules, in field order.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid record: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{}: {}", e.field, e.rule)?;
        }
        Ok(())
    }
}

impl ValidationError {
    /// An error with one broken rule.
    pub(crate) fn single(field: impl std::fmt::Display, rule: impl Into<String>) -> Self {
        ValidationError {
            errors: vec![FieldError {
                field: field.to_string(),
                rule: rule.into(),
            }],
        }
    }
}

/// Collects field errors while a record is checked.
#[derive(Default)]
pub(crate) struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    /// Records a failed rule. `field` is only rendered here, on failure: validation of a valid
    /// record (the bulk-import path) formats nothing.
    pub(crate) fn fail(&mut self, field: impl std::fmt::Display, rule: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_string(),
            rule: rule.into(),
        });
    }

    pub(crate) fn check(&mut self, ok: bool, field: impl std::fmt::Display, rule: &str) {
        if !ok {
            self.fail(field, rule);
        }
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, ValidationError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ValidationError {
                errors: self.errors,
            })
        }
    }
}

/// Largest radius accepted, in km (half the Earth's circumference, rounded).
pub const MAX_RADIUS_KM: f64 = 20_000.0;

/// True when `id` is 1–64 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

const ID_RULE: &str = "must be 1-64 characters of [A-Za-z0-9._-]";

pub(crate) fn check_id(c: &mut Checker, field: impl std::fmt::Display + Copy, id: &str) {
    c.check(is_valid_id(id), field, ID_RULE);
}

fn check_text(c: &mut Checker, field: impl std::fmt::Display + Copy, s: &str, max: usize) {
    let n = s.chars().count();
    if s.trim().is_empty() || n > max {
        c.fail(field, format!("must be 1-{max} characters, not blank"));
    }
}

/// Trims and lower-cases a name (instrument or genre).
pub fn normalize_name(s: &str) -> String {
    s.trim().to_lowercase()
}

fn check_name(c: &mut Checker, field: impl std::fmt::Display + Copy, s: &str) {
    let n = s.chars().count();
    c.check(
        (1..=40).contains(&n),
        field,
        "must be 1-40 characters after trimming",
    );
}

fn check_point(c: &mut Checker, field: impl std::fmt::Display + Copy, lat: f64, lon: f64) {
    c.check(
        lat.is_finite() && (-90.0..=90.0).contains(&lat),
        format_args!("{field}.lat"),
        "must be a finite number in [-90, 90]",
    );
    c.check(
        lon.is_finite() && (-180.0..=180.0).contains(&lon),
        format_args!("{field}.lon"),
        "must be a finite number in [-180, 180]",
    );
}

fn check_radius(c: &mut Checker, field: impl std::fmt::Display + Copy, r: f64) {
    c.check(
        r.is_finite() && r > 0.0 && r <= MAX_RADIUS_KM,
        field,
        "must be a number in (0, 20000]",
    );
}

/// True when `code` is three upper-case ASCII letters.
pub fn is_valid_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

pub(crate) fn check_currency(c: &mut Checker, field: impl std::fmt::Display + Copy, code: &str) {
    c.check(
        is_valid_currency(code),
        field,
        "must be a 3-letter upper-case currency code",
    );
}

fn check_level(c: &mut Checker, field: impl std::fmt::Display + Copy, level: i64) {
    c.check(
        (1..=5).contains(&level),
        field,
        "must be an integer from 1 to 5",
    );
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// True when `s` is a real calendar date written `YYYY-MM-DD` (years 1000–9999).
///
/// ```
/// use mussikon_engine::is_valid_date;
/// assert!(is_valid_date("2028-02-29"));
/// assert!(!is_valid_date("2026-02-29"));
/// assert!(!is_valid_date("2026-2-1"));
/// ```
pub fn is_valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &b[r];
        if part.iter().all(u8::is_ascii_digit) {
            Some(
                part.iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
            )
        } else {
            None
        }
    };
    match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => y >= 1000 && d >= 1 && d <= days_in_month(y, m),
        _ => false,
    }
}

const DATE_RULE: &str = "must be a calendar date written YYYY-MM-DD";

pub(crate) fn check_date(c: &mut Checker, field: impl std::fmt::Display + Copy, s: &str) {
    c.check(is_valid_date(s), field, DATE_RULE);
}

fn normalize_names(
    c: &mut Checker,
    field: impl std::fmt::Display + Copy,
    names: &[String],
    max: usize,
) -> Vec<String> {
    if names.len() > max {
        c.fail(field, format!("must have at most {max} entries"));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, g) in names.iter().enumerate() {
        let n = normalize_name(g);
        check_name(c, format_args!("{field}[{i}]"), &n);
        out.push(n);
    }
    out.sort();
    out.dedup();
    out
}

/// Checks and normalizes a musician.
///
/// ```
/// use mussikon_engine::{validate_musician, Musician};
/// let m: Musician = serde_json::from_str(r#"{"id":"m-1","name":"Ana","instruments":[{"name":" Guitar ","level":9}],
///   "location":{"lat":40.4,"lon":-3.7},"travel_radius_km":50,"fee":{"amount":15000,"currency":"EUR"}}"#).unwrap();
/// let err = validate_musician(m).unwrap_err();
/// assert_eq!(err.errors[0].field, "instruments[0].level");
/// ```
pub fn validate_musician(mut m: Musician) -> Result<Musician, ValidationError> {
    let mut c = Checker::default();
    check_id(&mut c, "id", &m.id);
    check_text(&mut c, "name", &m.name, 200);
    if m.instruments.is_empty() || m.instruments.len() > 16 {
        c.fail("instruments", "must have 1-16 entries");
    }
    for (i, s) in m.instruments.iter_mut().enumerate() {
        s.name = normalize_name(&s.name);
        check_name(&mut c, format_args!("instruments[{i}].name"), &s.name);
        check_level(&mut c, format_args!("instruments[{i}].level"), s.level);
    }
    m.genres = normalize_names(&mut c, "genres", &m.genres, 16);
    check_point(&mut c, "location", m.location.lat, m.location.lon);
    if let Some(city) = &m.city {
        check_text(&mut c, "city", city, 200);
    }
    check_radius(&mut c, "travel_radius_km", m.travel_radius_km);
    c.check(m.fee.amount >= 0, "fee.amount", "must be an integer >= 0");
    check_currency(&mut c, "fee.currency", &m.fee.currency);
    if let Some(r) = &m.rating {
        c.check(r.count >= 0, "rating.count", "must be an integer >= 0");
        let ok = if r.count > 0 {
            r.average.is_finite() && (1.0..=5.0).contains(&r.average)
        } else {
            r.average.is_finite() && (0.0..=5.0).contains(&r.average)
        };
        c.check(
            ok,
            "rating.average",
            "must be a number in [1, 5] when count > 0",
        );
    }
    if m.busy.len() > 366 {
        c.fail("busy", "must have at most 366 dates");
    }
    for (i, d) in m.busy.iter().enumerate() {
        check_date(&mut c, format_args!("busy[{i}]"), d);
    }
    m.busy.sort();
    m.busy.dedup();
    if let Some(bio) = &m.bio {
        c.check(
            bio.chars().count() <= 4000,
            "bio",
            "must be at most 4000 characters",
        );
    }
    c.finish(m)
}

/// Checks and normalizes a gig.
///
/// ```
/// use mussikon_engine::{validate_gig, Gig};
/// let g: Gig = serde_json::from_str(r#"{"id":"g-1","title":"Wedding","date":"2026-13-05",
///   "location":{"lat":40.42,"lon":-3.70},"radius_km":30,"slots":[{"instrument":"guitar","count":1}],
///   "budget":{"max_fee":20000,"currency":"EUR"}}"#).unwrap();
/// assert_eq!(validate_gig(g).unwrap_err().errors[0].field, "date");
/// ```
pub fn validate_gig(mut g: Gig) -> Result<Gig, ValidationError> {
    let mut c = Checker::default();
    check_id(&mut c, "id", &g.id);
    check_text(&mut c, "title", &g.title, 200);
    check_date(&mut c, "date", &g.date);
    check_point(&mut c, "location", g.location.lat, g.location.lon);
    check_radius(&mut c, "radius_km", g.radius_km);
    if g.slots.is_empty() || g.slots.len() > 16 {
        c.fail("slots", "must have 1-16 entries");
    }
    for (i, s) in g.slots.iter_mut().enumerate() {
        s.instrument = normalize_name(&s.instrument);
        check_name(&mut c, format_args!("slots[{i}].instrument"), &s.instrument);
        c.check(
            (1..=20).contains(&s.count),
            format_args!("slots[{i}].count"),
            "must be an integer from 1 to 20",
        );
        check_level(&mut c, format_args!("slots[{i}].min_level"), s.min_level);
    }
    g.genres = normalize_names(&mut c, "genres", &g.genres, 16);
    c.check(
        g.budget.max_fee >= 0,
        "budget.max_fee",
        "must be an integer >= 0",
    );
    check_currency(&mut c, "budget.currency", &g.budget.currency);
    if let Some(r) = g.min_rating {
        c.check(
            r.is_finite() && (1.0..=5.0).contains(&r),
            "min_rating",
            "must be a number in [1, 5]",
        );
    }
    if let Some(owner) = &g.owner {
        check_id(&mut c, "owner", owner);
    }
    c.finish(g)
}

/// Checks a booking's shape (ids and slot index); whether it can be made is the apply path's call.
///
/// ```
/// use mussikon_engine::{validate_booking, Booking};
/// assert!(validate_booking(&Booking { gig_id: "g-1".into(), slot: 0, musician_id: "m-1".into() }).is_ok());
/// ```
pub fn validate_booking(b: &Booking) -> Result<(), ValidationError> {
    let mut c = Checker::default();
    check_id(&mut c, "gig_id", &b.gig_id);
    c.check(
        (0..16).contains(&b.slot),
        "slot",
        "must be a slot index from 0 to 15",
    );
    check_id(&mut c, "musician_id", &b.musician_id);
    c.finish(())
}

/// Checks a star rating: an integer from 1 to 5.
pub(crate) fn check_stars(c: &mut Checker, stars: i64) {
    c.check(
        (1..=5).contains(&stars),
        "stars",
        "must be an integer from 1 to 5",
    );
}

/// Most characters of a chat message, after trimming.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Latest instant a timestamp may name: 9999-12-31T23:59:59.999Z, in unix milliseconds.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

const TIMESTAMP_RULE: &str = "must be an RFC 3339 date-time with an offset (2026-12-05T21:30:00Z) \
     or unix milliseconds, from 1970 to 9999";

/// A timestamp in unix milliseconds (sub-millisecond digits dropped), or `None` when it is not
/// an RFC 3339 date-time with an offset or unix milliseconds between 1970 and 9999.
///
/// ```
/// use mussikon_engine::{validate::timestamp_millis, Timestamp};
/// let t = Timestamp::Rfc3339("1970-01-01T01:00:00.0019+01:00".into());
/// assert_eq!(timestamp_millis(&t), Some(1));
/// assert_eq!(timestamp_millis(&Timestamp::Millis(-1)), None);
/// assert_eq!(timestamp_millis(&Timestamp::Rfc3339("2026-12-05".into())), None);
/// ```
pub fn timestamp_millis(t: &crate::model::Timestamp) -> Option<i64> {
    let ms = match t {
        crate::model::Timestamp::Millis(ms) => *ms,
        crate::model::Timestamp::Rfc3339(s) => {
            let dt = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()?;
            i64::try_from(dt.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?
        }
    };
    (0..=MAX_TIMESTAMP_MS).contains(&ms).then_some(ms)
}

/// The canonical text of a timestamp: RFC 3339 in UTC with milliseconds
/// (`2026-12-05T20:30:00.000Z`). `ms` must be in `0..=MAX_TIMESTAMP_MS`.
///
/// ```
/// use mussikon_engine::validate::format_millis;
/// assert_eq!(format_millis(1_000).as_deref(), Some("1970-01-01T00:00:01.000Z"));
/// ```
pub fn format_millis(ms: i64) -> Option<String> {
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    let d = dt.date();
    let t = dt.time();
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

/// A chat message as posted, checked and normalized: text trimmed, time in unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedPost {
    /// Text, trimmed.
    pub text: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// Checks the fields of a chat message: the gig and the author are ids, the message id (when
/// given) is an id, the text is 1–2000 characters after trimming, and the time is a valid
/// timestamp (see [`timestamp_millis`]). Every broken rule is listed.
///
/// ```
/// use mussikon_engine::{validate::validate_post, Timestamp};
/// let ok = validate_post("g-1", None, "m-1", "  hello ", &Timestamp::Millis(5)).unwrap();
/// assert_eq!(ok.text, "hello");
/// let err = validate_post("g-1", Some("bad id"), "", " ", &Timestamp::Millis(-5)).unwrap_err();
/// assert_eq!(err.errors.len(), 4);
/// ```
pub fn validate_post(
    gig_id: &str,
    message_id: Option<&str>,
    author: &str,
    text: &str,
    at: &crate::model::Timestamp,
) -> Result<CheckedPost, ValidationError> {
    let mut c = Checker::default();
    check_id(&mut c, "gig_id", gig_id);
    if let Some(mid) = message_id {
        check_id(&mut c, "message_id", mid);
    }
    check_id(&mut c, "author", author);
    let trimmed = text.trim();
    let n = trimmed.chars().count();
    c.check(
        (1..=MAX_MESSAGE_CHARS).contains(&n),
        "text",
        "must be 1-2000 characters after trimming",
    );
    let at_ms = timestamp_millis(at);
    c.check(at_ms.is_some(), "at", TIMESTAMP_RULE);
    c.finish(CheckedPost {
        text: trimmed.to_string(),
        at_ms: at_ms.unwrap_or(0),
    })
}
