//! Search requests: what a caller may ask, how it is checked, and how results are ordered and
//! paged.
//!
//! Semantics (the oracle in `tests/oracle.rs` implements the same rules by brute force):
//! - `text`: every token of the text (split on non-alphanumerics, lower-cased) occurs in the
//!   musician's name or bio;
//! - `instruments`: with `mode = any`, the musician plays at least one of them at its
//!   `min_level` or better; with `all`, every one;
//! - `genres`: the musician plays at least one of them;
//! - `near`: home within `radius_km` of the point (haversine);
//! - `available_on`: not busy and not booked that date;
//! - `max_fee`: same currency and fee ≤ amount;
//! - `min_rating`: Bayesian rating ≥ the value;
//! - inactive musicians are left out unless `include_inactive`.
//!
//! Orders: `relevance` (text score descending, then id; without text, by id), `distance`
//! (ascending, needs `near`), `rating` (Bayesian, descending), `fee` (ascending); ties by id.
//! Pages are keyset pages: the cursor holds the last hit's sort key and id, and the next page
//! starts strictly after it, so a record that did not change is never repeated nor skipped
//! while other records are written.

use crate::model::{GeoPoint, Money};
use crate::validate::{check_currency, check_date, normalize_name, Checker, ValidationError};
use serde::{Deserialize, Serialize};

/// Most hits one page may hold.
pub const MAX_LIMIT: usize = 1000;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 20;

/// An instrument filter: plays `name` at `min_level` or better.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InstrumentFilter {
    /// Instrument name.
    pub name: String,
    /// Minimum level, 1–5 (default 1).
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(default = 1))]
    pub min_level: i64,
}

fn one() -> i64 {
    1
}

/// Whether any or all instrument filters must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InstrumentMode {
    /// At least one.
    #[default]
    Any,
    /// Every one.
    All,
}

/// A circle to search in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Near {
    /// Latitude of the center.
    pub lat: f64,
    /// Longitude of the center.
    pub lon: f64,
    /// Radius in km, (0, 20000].
    pub radius_km: f64,
}

impl Near {
    /// The center as a point.
    pub fn point(&self) -> GeoPoint {
        GeoPoint {
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// How hits are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    /// Text score, then id.
    #[default]
    Relevance,
    /// Distance from `near`, ascending.
    Distance,
    /// Bayesian rating, descending.
    Rating,
    /// Fee, ascending.
    Fee,
}

/// A search request.
///
/// ```
/// use mussikon_engine::SearchQuery;
/// let q: SearchQuery = serde_json::from_str(r#"{"instruments":[{"name":"guitar","min_level":3}],
///   "near":{"lat":40.4,"lon":-3.7,"radius_km":25},"available_on":"2026-12-05","sort":"distance"}"#).unwrap();
/// assert!(q.validated().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct SearchQuery {
    /// Free text over name and bio.
    pub text: Option<String>,
    /// Instrument filters.
    pub instruments: Vec<InstrumentFilter>,
    /// Any or all of the instrument filters.
    pub instrument_mode: InstrumentMode,
    /// Genres, any of.
    pub genres: Vec<String>,
    /// Circle to search in.
    pub near: Option<Near>,
    /// A date the musician must be free on.
    pub available_on: Option<String>,
    /// Highest fee, in one currency.
    pub max_fee: Option<Money>,
    /// Lowest Bayesian rating.
    pub min_rating: Option<f64>,
    /// Include inactive musicians.
    pub include_inactive: bool,
    /// Order of hits.
    pub sort: SortBy,
    /// Page size, 1–1000 (default 20).
    pub limit: Option<usize>,
    /// Cursor from the previous page (its `next_cursor`: `c1.`, the last hit's finite sort key
    /// as 16 hex digits, `.`, its id).
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^c1\.(?:[0-689a-eA-E][0-9a-fA-F]{2}|[7fF][0-9a-eA-E][0-9a-fA-F]|[7fF][fF][0-9a-eA-E])[0-9a-fA-F]{13}\.[A-Za-z0-9._-]{1,64}$"
        )
    )]
    pub cursor: Option<String>,
}

/// Where a page starts: after the hit with this sort key and id.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cursor {
    pub key: f64,
    pub id: String,
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        format!("c1.{:016x}.{}", self.key.to_bits(), self.id)
    }

    /// True when a hit with sort key `key` and id `id` comes strictly after this cursor, i.e.
    /// belongs on a later page.
    pub(crate) fn precedes(&self, key: f64, id: &str) -> bool {
        key.total_cmp(&self.key)
            .then_with(|| id.cmp(&self.id))
            .is_gt()
    }

    pub(crate) fn decode(s: &str) -> Option<Cursor> {
        let rest = s.strip_prefix("c1.")?;
        let (bits, id) = rest.split_once('.')?;
        if bits.len() != 16 || !crate::validate::is_valid_id(id) {
            return None;
        }
        let key = f64::from_bits(u64::from_str_radix(bits, 16).ok()?);
        key.is_finite().then(|| Cursor {
            key,
            id: id.to_string(),
        })
    }
}

impl SearchQuery {
    /// The query checked and normalized (names lower-cased, limit defaulted), or every rule it
    /// breaks.
    pub fn validated(&self) -> Result<SearchQuery, ValidationError> {
        let mut c = Checker::default();
        let mut q = self.clone();
        if let Some(t) = &q.text {
            if t.chars().count() > 1000 {
                c.fail("text", "must be at most 1000 characters");
            }
        }
        if q.instruments.len() > 16 {
            c.fail("instruments", "must have at most 16 entries");
        }
        for (i, f) in q.instruments.iter_mut().enumerate() {
            f.name = normalize_name(&f.name);
            let n = f.name.chars().count();
            c.check(
                (1..=40).contains(&n),
                format_args!("instruments[{i}].name"),
                "must be 1-40 characters after trimming",
            );
            c.check(
                (1..=5).contains(&f.min_level),
                format_args!("instruments[{i}].min_level"),
                "must be an integer from 1 to 5",
            );
        }
        if q.genres.len() > 16 {
            c.fail("genres", "must have at most 16 entries");
        }
        for (i, g) in q.genres.iter_mut().enumerate() {
            *g = normalize_name(g);
            let n = g.chars().count();
            c.check(
                (1..=40).contains(&n),
                format_args!("genres[{i}]"),
                "must be 1-40 characters after trimming",
            );
        }
        if let Some(n) = &q.near {
            c.check(
                n.lat.is_finite() && (-90.0..=90.0).contains(&n.lat),
                "near.lat",
                "must be a finite number in [-90, 90]",
            );
            c.check(
                n.lon.is_finite() && (-180.0..=180.0).contains(&n.lon),
                "near.lon",
                "must be a finite number in [-180, 180]",
            );
            c.check(
                n.radius_km.is_finite() && n.radius_km > 0.0 && n.radius_km <= 20_000.0,
                "near.radius_km",
                "must be a number in (0, 20000]",
            );
        }
        if let Some(d) = &q.available_on {
            check_date(&mut c, "available_on", d);
        }
        if let Some(f) = &q.max_fee {
            c.check(f.amount >= 0, "max_fee.amount", "must be an integer >= 0");
            check_currency(&mut c, "max_fee.currency", &f.currency);
        }
        if let Some(r) = q.min_rating {
            c.check(
                r.is_finite() && (1.0..=5.0).contains(&r),
                "min_rating",
                "must be a number in [1, 5]",
            );
        }
        if q.sort == SortBy::Distance && q.near.is_none() {
            c.fail("sort", "sorting by distance needs `near`");
        }
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        c.check(
            (1..=MAX_LIMIT).contains(&limit),
            "limit",
            "must be an integer from 1 to 1000",
        );
        q.limit = Some(limit);
        if let Some(cur) = &q.cursor {
            c.check(
                Cursor::decode(cur).is_some(),
                "cursor",
                "must be a cursor returned by a previous page",
            );
        }
        c.finish(q)
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// The musician as stored.
    pub musician: crate::model::Musician,
    /// Distance from `near`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
    /// Text relevance score (0 without text).
    pub relevance: f64,
}

/// One page of results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchPage {
    /// Hits in order.
    pub hits: Vec<SearchHit>,
    /// Cursor for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Tokens of a text as the index sees them: split on non-alphanumeric characters, lower-cased,
/// tokens longer than 40 bytes dropped (tantivy's default tokenizer).
///
/// ```
/// use mussikon_engine::search::tokens;
/// assert_eq!(tokens("Jazz-Guitar, bossa!"), ["jazz", "guitar", "bossa"]);
/// ```
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.len() < 40)
        .map(|t| t.to_lowercase())
        .collect()
}

/// The sort key of a hit, oriented so that smaller comes first.
pub(crate) fn sort_key(
    sort: SortBy,
    relevance: f64,
    distance: Option<f64>,
    m: &crate::model::Musician,
) -> f64 {
    sort_key_of(
        sort,
        relevance,
        distance,
        m.bayesian_rating(),
        m.fee.amount as f64,
    )
}

/// [`sort_key`] from the values it depends on; the index path (which reads them from fast
/// fields) and the record path share it, so both give bit-identical keys.
pub(crate) fn sort_key_of(
    sort: SortBy,
    relevance: f64,
    distance: Option<f64>,
    bayesian: f64,
    fee: f64,
) -> f64 {
    match sort {
        SortBy::Relevance => -relevance,
        SortBy::Distance => distance.unwrap_or(f64::INFINITY),
        SortBy::Rating => -bayesian,
        SortBy::Fee => fee,
    }
}
