//! `GET|POST /v1/musicians/search`: musician search, answered with the engine's `SearchPage`.
//!
//! POST takes a `SearchQuery` JSON body as is. GET spells the same query as parameters:
//!
//! | parameter | SearchQuery field |
//! | --- | --- |
//! | `instrument` (repeatable or comma list), `min_level` (applies to each) | `instruments` |
//! | `mode=any\|all` | `instrument_mode` |
//! | `genre` (repeatable or comma list) | `genres` |
//! | `lat`, `lon`, `radius_km` (all three or none) | `near` |
//! | `available_on`, `text`, `min_rating`, `sort`, `limit`, `cursor`, `include_inactive` | same name |
//! | `max_fee` with `currency` | `max_fee` |
//!
//! The engine's field errors are renamed back to the parameter names (`near.lat` → `lat`), so a
//! 422 names what the client actually sent.

use crate::http::app::App;
use crate::http::problem::ApiError;
use crate::http::query::Params;
use crate::http::request::Request;
use crate::http::response::ApiResponse;
use mussikon_engine::{
    FieldError, InstrumentFilter, InstrumentMode, Money, Near, SearchQuery, SortBy,
};
use warp::http::StatusCode;

async fn run(app: &App, q: SearchQuery) -> Result<ApiResponse, ApiError> {
    let page = app.compute(move |e| e.search(&q)).await??;
    ApiResponse::json(StatusCode::OK, &page)
}

/// `POST /v1/musicians/search`.
pub async fn post(app: &App, mut req: Request) -> Result<ApiResponse, ApiError> {
    let q: SearchQuery = req.json(app.config().max_body_bytes).await?;
    run(app, q).await
}

/// `GET /v1/musicians/search`.
pub async fn get(app: &App, req: &Request) -> Result<ApiResponse, ApiError> {
    let q = query_from_params(&req.query)?;
    match run(app, q).await {
        Err(ApiError::Invalid(errors)) => Err(ApiError::Invalid(
            errors.into_iter().map(rename_field).collect(),
        )),
        other => other,
    }
}

/// Builds a `SearchQuery` from GET parameters; every unparsable or unknown parameter is reported.
///
/// ```
/// use mussikon_server::http::routes::search::query_from_params;
/// let q = query_from_params("instrument=guitar,bass&min_level=3&lat=40.4&lon=-3.7&radius_km=25&sort=distance").unwrap();
/// assert_eq!(q.instruments.len(), 2);
/// assert_eq!(q.instruments[1].min_level, 3);
/// assert!(q.near.is_some());
/// assert!(query_from_params("lat=40.4").is_err());
/// ```
pub fn query_from_params(raw: &str) -> Result<SearchQuery, ApiError> {
    let mut p = Params::parse(raw);
    let names = p.list("instrument");
    // Checked here, not only by the engine (which checks it per instrument): without
    // `instrument` the level would otherwise be dropped unchecked.
    let level_rule = "must be an integer from 1 to 5";
    let min_level = match p.parsed::<i64>("min_level", level_rule) {
        Some(l) if !(1..=5).contains(&l) => {
            p.fail("min_level", level_rule);
            1
        }
        l => l.unwrap_or(1),
    };
    let instrument_mode = match p.text("mode").as_deref() {
        None | Some("any") => InstrumentMode::Any,
        Some("all") => InstrumentMode::All,
        Some(_) => {
            p.fail("mode", "must be any or all");
            InstrumentMode::Any
        }
    };
    let genres = p.list("genre");
    let (lat, lon, radius_km) = (p.number("lat"), p.number("lon"), p.number("radius_km"));
    let near = match (lat, lon, radius_km) {
        (Some(lat), Some(lon), Some(radius_km)) => Some(Near {
            lat,
            lon,
            radius_km,
        }),
        (None, None, None) => None,
        _ => {
            for (name, v) in [("lat", lat), ("lon", lon), ("radius_km", radius_km)] {
                if v.is_none() {
                    p.fail(name, "lat, lon and radius_km must be given together");
                }
            }
            None
        }
    };
    let available_on = p.text("available_on");
    let text = p.text("text");
    let max_fee = p.parsed::<i64>(
        "max_fee",
        "must be an integer amount in minor units (cents)",
    );
    let currency = p.text("currency");
    let max_fee = match (max_fee, currency) {
        (Some(amount), Some(currency)) => Some(Money { amount, currency }),
        (None, None) => None,
        (Some(_), None) => {
            p.fail("currency", "is required with max_fee");
            None
        }
        (None, Some(_)) => {
            p.fail("max_fee", "is required with currency");
            None
        }
    };
    let min_rating = p.number("min_rating");
    let sort = match p.text("sort").as_deref() {
        None | Some("relevance") => SortBy::Relevance,
        Some("distance") => SortBy::Distance,
        Some("rating") => SortBy::Rating,
        Some("fee") => SortBy::Fee,
        Some(_) => {
            p.fail("sort", "must be relevance, distance, rating or fee");
            SortBy::Relevance
        }
    };
    let limit = p.parsed::<usize>("limit", "must be an integer from 1 to 1000");
    let cursor = p.text("cursor");
    let include_inactive = p.boolean("include_inactive").unwrap_or(false);
    p.finish()?;
    Ok(SearchQuery {
        text,
        instruments: names
            .into_iter()
            .map(|name| InstrumentFilter { name, min_level })
            .collect(),
        instrument_mode,
        genres,
        near,
        available_on,
        max_fee,
        min_rating,
        include_inactive,
        sort,
        limit,
        cursor,
    })
}

/// The GET parameter that an engine field error is about.
fn rename_field(mut f: FieldError) -> FieldError {
    let base = f.field.split('[').next().unwrap_or_default();
    let leaf = f.field.rsplit('.').next().unwrap_or_default();
    f.field = match (base, leaf) {
        ("near.lat", _) => "lat".into(),
        ("near.lon", _) => "lon".into(),
        ("near.radius_km", _) => "radius_km".into(),
        ("instruments", "min_level") => "min_level".into(),
        ("instruments", _) => "instrument".into(),
        ("genres", _) => "genre".into(),
        ("max_fee.amount", _) => "max_fee".into(),
        ("max_fee.currency", _) => "currency".into(),
        ("instrument_mode", _) => "mode".into(),
        _ => f.field,
    };
    f
}
