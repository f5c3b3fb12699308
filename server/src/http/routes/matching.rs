//! Matching: ranked candidates per slot and the optimal filling of a gig's open seats.
//!
//! `GET /v1/gigs/{id}/matches?k=10&w_proximity=..&w_rating=..&w_genres=..&w_price=..&w_level=..`
//! matches a stored gig (seats already booked are not offered again); `POST /v1/match` with
//! `{"gig": Gig, "k": n, "weights": Weights}` matches a gig that is not stored. Both answer the
//! engine's `MatchResult`. A weight left out of the query keeps its default
//! (0.35/0.30/0.15/0.10/0.10); the engine scales the weights to sum 1. Each answered request is
//! counted in `mussikon_matches_total{instrument}` and timed in `mussikon_match_duration_seconds`.

use crate::http::app::App;
use crate::http::metrics;
use crate::http::problem::ApiError;
use crate::http::query::Params;
use crate::http::request::Request;
use crate::http::response::ApiResponse;
use mussikon_engine::{
    validate_gig, FieldError, Gig, MatchRequest, MatchResult, MatchTarget, Weights,
};
use serde::Deserialize;
use std::time::Instant;
use warp::http::StatusCode;

async fn run(app: &App, req: MatchRequest) -> Result<ApiResponse, ApiError> {
    let started = Instant::now();
    let result: MatchResult = app.compute(move |e| e.match_gig(&req)).await??;
    metrics::record_match(
        result.slots.iter().map(|s| s.instrument.as_str()),
        started.elapsed(),
    );
    ApiResponse::json(StatusCode::OK, &result)
}

/// `GET /v1/gigs/{id}/matches`.
pub async fn stored(app: &App, gig_id: String, req: &Request) -> Result<ApiResponse, ApiError> {
    let (k, weights) = params_of_stored(&req.query)?;
    if !mussikon_engine::is_valid_id(&gig_id) {
        return Err(ApiError::not_found("gig", &gig_id));
    }
    crate::http::routes::gigs::check_manager(app, &req.caller, &gig_id).await?;
    run(
        app,
        MatchRequest {
            target: MatchTarget::Stored(gig_id),
            k,
            weights,
        },
    )
    .await
}

/// `k` and the weights of `GET /v1/gigs/{id}/matches` from its raw query string; every
/// unparsable or unknown parameter is reported. The engine checks the ranges.
///
/// ```
/// use mussikon_server::http::routes::matching::params_of_stored;
/// let (k, w) = params_of_stored("k=5&w_rating=1").unwrap();
/// assert_eq!((k, w.map(|w| w.rating)), (Some(5), Some(1.0)));
/// assert!(params_of_stored("w_rating=x").is_err());
/// ```
pub fn params_of_stored(raw: &str) -> Result<(Option<usize>, Option<Weights>), ApiError> {
    let mut p = Params::parse(raw);
    let k = p.parsed::<usize>("k", "must be an integer from 1 to 100");
    let d = Weights::default();
    let given = [
        p.number("w_proximity"),
        p.number("w_rating"),
        p.number("w_genres"),
        p.number("w_price"),
        p.number("w_level"),
    ];
    p.finish()?;
    let weights = given.iter().any(Option::is_some).then(|| Weights {
        proximity: given[0].unwrap_or(d.proximity),
        rating: given[1].unwrap_or(d.rating),
        genres: given[2].unwrap_or(d.genres),
        price: given[3].unwrap_or(d.price),
        level: given[4].unwrap_or(d.level),
    });
    Ok((k, weights))
}

/// The body of `POST /v1/match`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdHocBody {
    /// The gig to match; not stored.
    pub gig: Gig,
    /// Candidates per slot, 1–100 (default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub k: Option<usize>,
    /// Ranking weights (default 0.35/0.30/0.15/0.10/0.10).
    #[serde(default)]
    pub weights: Option<Weights>,
}

/// `POST /v1/match`.
pub async fn ad_hoc(app: &App, mut req: Request) -> Result<ApiResponse, ApiError> {
    let body: AdHocBody = req.json(app.config().max_body_bytes).await?;
    // Validate the gig here so its errors can be named by their place in this body.
    if let Err(v) = validate_gig(body.gig.clone()) {
        return Err(ApiError::Invalid(
            v.errors
                .into_iter()
                .map(|f| FieldError {
                    field: format!("gig.{}", f.field),
                    rule: f.rule,
                })
                .collect(),
        ));
    }
    run(
        app,
        MatchRequest {
            target: MatchTarget::AdHoc(body.gig),
            k: body.k,
            weights: body.weights,
        },
    )
    .await
}
