//! The OpenAPI 3.1 description of the API, served at `GET /openapi.json`.
//!
//! This module owns the document and nothing else: it describes every route of
//! [`crate::http::router::ROUTES`] without serving any of them. The schemas come from the very
//! structs serde uses (the engine's JSON types derive `utoipa::ToSchema` behind its `openapi`
//! feature, the server's bodies and answers derive it directly), so a renamed or added field shows
//! up here by itself. Operations are written as `#[utoipa::path]` annotations on the stub
//! functions of [`paths`], one per route and method, since routing is our own table rather than
//! a framework utoipa knows.
//!
//! What every operation shares is added by [`document`] after generation, in one place, so that
//! no operation can forget it:
//! - the optional `X-Request-Id` request header, and `X-Request-Id` on every response;
//! - an `application/problem+json` body (the `Problem` schema, with an example) on every error
//!   response, plus the `Allow`, `Retry-After` headers where they apply;
//! - `500` on every operation; on `/v1` operations the bearer JWT security requirement and
//!   `401`, `403` and `429`;
//! - every error status as a reusable response under `components.responses`.
//!
//! The cluster's admin routes, served beside the router's table, are described in [`cluster`]
//! (and listed in `crate::http::cluster::ADMIN_ROUTES`).
//!
//! `/health`, `/health/ready`, `/metrics` and `/openapi.json` are open. Routes described here
//! before the router serves them are listed in [`AHEAD_OF_ROUTER`] (see [`messages`] and
//! [`events`]).
//!
//! ```
//! let doc = mussikon_server::http::openapi::document();
//! assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
//! assert!(doc["paths"]["/v1/musicians/{id}"]["get"].is_object());
//! ```

pub mod cluster;
pub mod events;
pub mod messages;

use crate::http::cluster::{self as cluster_routes, CONSISTENCY};
use crate::http::conditional::IF_MATCH_PATTERN;
use crate::http::health::{Check, Health, Liveness, Readiness};
use crate::http::idempotency::MAX_KEY_LEN;
use crate::http::problem::{ApiError, ProblemBody};
use crate::http::query::ListPage;
use crate::http::response::{ApiResponse, JSON, PROBLEM_JSON};
use crate::http::router::ROUTES;
use crate::http::routes::bookings::BookingBody;
use crate::http::routes::bulk::BulkReport;
use crate::http::routes::matching::AdHocBody;
use crate::http::routes::musicians::RatingBody;
use bytes::Bytes;
use mussikon_cluster::Consistency;
use mussikon_engine::{
    Assignment, BookedDate, Booking, Budget, Candidate, Components, Conflict, Effect, FieldError,
    GeoPoint, Gig, GigView, InstrumentFilter, InstrumentMode, InstrumentSkill, LineError,
    MatchResult, Money, Musician, MusicianView, Near, Rating, SearchHit, SearchPage, SearchQuery,
    Seat, Slot, SlotMatches, SortBy, Weights,
};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use utoipa::OpenApi;
use warp::http::StatusCode;

/// Operations the document describes although the router does not serve them yet: other work
/// adds them. `(method, path)`, method in lower case as in the document.
pub const AHEAD_OF_ROUTER: &[(&str, &str)] = &[];

/// Name of the security scheme of `/v1` routes.
pub const BEARER: &str = "bearerAuth";

/// Every error status the API may answer, the name of its reusable response, and what it means
/// in general. Operations say what it means for them.
const ERRORS: &[(u16, &str, &str)] = &[
    (400, "BadRequest", "The request is malformed: JSON that does not parse (with `line` and `column`), an unreadable body, or a header not of its documented syntax (`Idempotency-Key`, `If-Match`)."),
    (401, "Unauthorized", "No valid bearer token: the `Authorization` header is missing, malformed, expired or not signed by a trusted key."),
    (403, "Forbidden", "The token is valid but does not allow this operation."),
    (404, "NotFound", "The record, or the route, does not exist."),
    (405, "MethodNotAllowed", "The path exists but not with this method; `Allow` lists the methods it accepts. Answered for every method an operation of this document does not list."),
    (409, "Conflict", "The change conflicts with the current state (`conflict` names what is in the way)."),
    (412, "PreconditionFailed", "`If-Match` does not name the current version; `current_etag` holds it (null when the record does not exist)."),
    (413, "PayloadTooLarge", "The body is larger than the route accepts; `limit_bytes` holds the limit."),
    (415, "UnsupportedMediaType", "The body's `Content-Type` is not the one the route reads."),
    (422, "UnprocessableContent", "Well-formed input breaking rules: every broken rule is listed in `errors` by field (a JSON path, or the query parameter's name). Also: an `Idempotency-Key` reused with a different request."),
    (429, "TooManyRequests", "Too many requests from this client; retry after `Retry-After` seconds. Reserved: answered when request limits are in force."),
    (500, "InternalServerError", "A fault of the server. The body carries no internals; report its `request_id`."),
];

/// Query parameters of the list routes (`GET /v1/musicians`, `GET /v1/gigs`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes parameters read by `query::Page`; never built.
pub struct ListParams {
    /// List ids greater than this one: the `next` of the previous page.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    after: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
}

/// Query parameters of `GET /v1/musicians/search`: the `SearchQuery` spelled as parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes parameters read by `search::query_from_params`; never built.
pub struct SearchParams {
    /// Instruments (repeatable or a comma list); the musician plays any (or all, see `mode`).
    instrument: Option<Vec<String>>,
    /// Minimum level on each `instrument`.
    #[param(minimum = 1, maximum = 5, default = 1)]
    min_level: Option<i64>,
    /// Whether any or all instruments must be played.
    #[param(inline)]
    mode: Option<InstrumentMode>,
    /// Genres (repeatable or a comma list); the musician plays at least one.
    genre: Option<Vec<String>>,
    /// Latitude of the circle to search in; `lat`, `lon` and `radius_km` go together.
    #[param(minimum = -90.0, maximum = 90.0)]
    lat: Option<f64>,
    /// Longitude of the circle's center.
    #[param(minimum = -180.0, maximum = 180.0)]
    lon: Option<f64>,
    /// Radius of the circle, km, in (0, 20000].
    #[param(exclusive_minimum = 0.0, maximum = 20000.0)]
    radius_km: Option<f64>,
    /// A date (`YYYY-MM-DD`) the musician must be free on.
    #[param(format = Date)]
    available_on: Option<String>,
    /// Free text over name and bio: every token must occur.
    text: Option<String>,
    /// Highest fee in minor units (cents); needs `currency`.
    #[param(minimum = 0)]
    max_fee: Option<i64>,
    /// Currency of `max_fee` (ISO 4217, upper case); needs `max_fee`.
    #[param(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    /// Lowest Bayesian rating, in [1, 5].
    #[param(minimum = 1.0, maximum = 5.0)]
    min_rating: Option<f64>,
    /// Order of hits; `distance` needs `lat`/`lon`/`radius_km`.
    #[param(inline)]
    sort: Option<SortBy>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 20)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page (`c1.`, the last hit's finite sort key as 16 hex
    /// digits, `.`, its id).
    #[param(
        pattern = r"^c1\.(?:[0-689a-eA-E][0-9a-fA-F]{2}|[7fF][0-9a-eA-E][0-9a-fA-F]|[7fF][fF][0-9a-eA-E])[0-9a-fA-F]{13}\.[A-Za-z0-9._-]{1,64}$"
    )]
    cursor: Option<String>,
    /// Include inactive musicians.
    #[param(default = false)]
    include_inactive: Option<bool>,
}

/// Query parameters of `GET /v1/gigs/{id}/matches`. A weight left out keeps its default; the
/// engine scales the weights to sum 1.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes parameters read by `matching::stored`; never built.
pub struct MatchParams {
    /// Candidates per slot.
    #[param(minimum = 1, maximum = 100, default = 10)]
    k: Option<usize>,
    /// Weight of proximity.
    #[param(minimum = 0.0, default = 0.35)]
    w_proximity: Option<f64>,
    /// Weight of rating.
    #[param(minimum = 0.0, default = 0.30)]
    w_rating: Option<f64>,
    /// Weight of genre overlap.
    #[param(minimum = 0.0, default = 0.15)]
    w_genres: Option<f64>,
    /// Weight of price.
    #[param(minimum = 0.0, default = 0.10)]
    w_price: Option<f64>,
    /// Weight of level.
    #[param(minimum = 0.0, default = 0.10)]
    w_level: Option<f64>,
}

/// The operations: one stub per route and method, never called; the annotations are the
/// description. Error responses name their status and what it means here; their bodies and
/// headers are filled in by [`document`].
#[allow(dead_code)]
pub mod paths {
    use super::*;

    const ID: &str = "1–64 characters of `[A-Za-z0-9._-]`";

    /// Liveness
    ///
    /// Says only that the process answers HTTP; never touches the engine.
    #[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health",
        responses((status = 200, description = "The process is up.", body = Liveness)))]
    pub fn health() {}

    /// Readiness
    ///
    /// Runs the store and index checks and grades each: the status is the worst check.
    #[utoipa::path(get, path = "/health/ready", tag = "operations", operation_id = "ready",
        responses(
            (status = 200, description = "Healthy or degraded (the index lags: searches miss recent writes).", body = Readiness),
            (status = 503, description = "Unhealthy: a check failed.", body = Readiness),
        ))]
    pub fn ready() {}

    /// Prometheus metrics
    ///
    /// Text exposition format 0.0.4: request counts and durations by route template, matching
    /// counts and durations, engine gauges.
    #[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
        responses((status = 200, description = "The metrics.", body = String, content_type = "text/plain")))]
    pub fn metrics() {}

    /// This document
    ///
    /// The OpenAPI 3.1 description of the API.
    #[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
        responses((status = 200, description = "The OpenAPI document.", body = Object)))]
    pub fn openapi() {}

    /// List musicians
    ///
    /// Musicians in id order, one keyset page at a time: pass the page's `next` as `after`.
    #[utoipa::path(get, path = "/v1/musicians", tag = "musicians", operation_id = "listMusicians",
        params(ListParams),
        responses(
            (status = 200, description = "One page.", body = ListPage<MusicianView>),
            (status = 422, description = "A parameter is invalid or unknown."),
        ))]
    pub fn list_musicians() {}

    /// Search musicians (parameters)
    ///
    /// The same search as the POST form, spelled as query parameters. Field errors name the
    /// parameter (`lat`, not `near.lat`).
    #[utoipa::path(get, path = "/v1/musicians/search", tag = "search", operation_id = "searchMusicians",
        params(SearchParams),
        responses(
            (status = 200, description = "One page of hits; follow `next_cursor` for more.", body = SearchPage),
            (status = 421, description = "This cluster node keeps no search index (`index.enabled = false`): send searches and matches to one that does."),
            (status = 422, description = "A parameter is invalid or unknown."),
        ))]
    pub fn search_get() {}

    /// Search musicians (JSON)
    #[utoipa::path(post, path = "/v1/musicians/search", tag = "search", operation_id = "searchMusiciansJson",
        request_body(content = SearchQuery, description = "The query; every field is optional.",
            example = json!({"instruments": [{"name": "guitar", "min_level": 3}],
                "near": {"lat": 40.4, "lon": -3.7, "radius_km": 25},
                "available_on": "2026-12-05", "sort": "distance"})),
        responses(
            (status = 200, description = "One page of hits; pass `next_cursor` as `cursor` for more.", body = SearchPage),
            (status = 421, description = "This cluster node keeps no search index (`index.enabled = false`): send searches and matches to one that does."),
            (status = 400, description = "The body is not well-formed JSON."),
            (status = 413, description = "The body is too large."),
            (status = 415, description = "The body is not `application/json`."),
            (status = 422, description = "The query breaks rules."),
        ))]
    pub fn search_post() {}

    /// Upload musicians in bulk
    ///
    /// One `Musician` JSON object per line (`#/components/schemas/Musician`). Every line is
    /// checked like a single PUT; good lines are written in atomic batches, bad lines are skipped
    /// and reported by line number. The answer is 200 even when lines were rejected: a client
    /// wanting all-or-nothing checks `rejected`.
    #[utoipa::path(post, path = "/v1/musicians/bulk", tag = "musicians", operation_id = "bulkMusicians",
        request_body(content = String, content_type = "application/x-ndjson",
            description = "NDJSON: one Musician per line (`application/jsonl` is accepted too); at most 64 MiB by default.",
            example = json!("{\"id\":\"m-1\",\"name\":\"Ana\",\"instruments\":[{\"name\":\"guitar\",\"level\":4}],\"location\":{\"lat\":40.4,\"lon\":-3.7},\"travel_radius_km\":50,\"fee\":{\"amount\":15000,\"currency\":\"EUR\"}}\n{\"id\":\"m-2\",\"name\":\"Bea\",\"instruments\":[{\"name\":\"drums\",\"level\":3}],\"location\":{\"lat\":41.39,\"lon\":2.17},\"travel_radius_km\":80,\"fee\":{\"amount\":20000,\"currency\":\"EUR\"}}\n")),
        responses(
            (status = 200, description = "What was written and what was refused (at most the first 100 errors).", body = BulkReport,
                example = json!({"accepted": 2, "rejected": 1, "errors": [{"line": 3, "error": "instruments[0].level: must be an integer from 1 to 5"}]})),
            (status = 400, description = "The body could not be read."),
            (status = 413, description = "The body is larger than the bulk limit."),
            (status = 415, description = "The body is not `application/x-ndjson`."),
        ))]
    pub fn bulk() {}

    /// Create or replace a musician
    ///
    /// The body's `id` must equal the path's. Bookings and rating history are kept.
    #[utoipa::path(put, path = "/v1/musicians/{id}", tag = "musicians", operation_id = "putMusician",
        params(("id" = String, Path, description = ID),
            ("If-Match" = Option<String>, Header, description = "Replace only if the current ETag is one of these (`*`: only if it exists). Entity tags (RFC 9110); weak and foreign tags never match (412), a value that is not entity-tag syntax is refused (400).")),
        request_body = Musician,
        responses(
            (status = 200, description = "Replaced; the stored view.", body = MusicianView,
                headers(("ETag" = String, description = "The new version, quoted."))),
            (status = 201, description = "Created; the stored view.", body = MusicianView,
                headers(("ETag" = String, description = "The new version, quoted."),
                    ("Location" = String, description = "The musician's path."))),
            (status = 400, description = "The body is not well-formed JSON, or `If-Match` is malformed."),
            (status = 404, description = "Deleted by a concurrent request before it could be shown."),
            (status = 412, description = "`If-Match` does not match."),
            (status = 413, description = "The body is too large."),
            (status = 415, description = "The body is not `application/json`."),
            (status = 422, description = "The musician breaks rules, or its `id` differs from the path's."),
        ))]
    pub fn put_musician() {}

    /// Read a musician
    #[utoipa::path(get, path = "/v1/musicians/{id}", tag = "musicians", operation_id = "getMusician",
        params(("id" = String, Path, description = ID)),
        responses(
            (status = 200, description = "The profile, its version and booked dates.", body = MusicianView,
                headers(("ETag" = String, description = "The version, quoted."))),
            (status = 404, description = "No such musician."),
        ))]
    pub fn get_musician() {}

    /// Delete a musician
    ///
    /// Releases the musician's bookings.
    #[utoipa::path(delete, path = "/v1/musicians/{id}", tag = "musicians", operation_id = "deleteMusician",
        params(("id" = String, Path, description = ID),
            ("If-Match" = Option<String>, Header, description = "Delete only if the current ETag is one of these (`*`: only if it exists). Entity tags (RFC 9110); weak and foreign tags never match (412), a value that is not entity-tag syntax is refused (400).")),
        responses(
            (status = 204, description = "Deleted."),
            (status = 400, description = "`If-Match` is malformed."),
            (status = 404, description = "No such musician."),
            (status = 412, description = "`If-Match` does not match."),
        ))]
    pub fn delete_musician() {}

    /// Rate a musician
    ///
    /// Folds one rating into the musician's average and answers the engine's `rated` effect.
    /// Send an `Idempotency-Key` so that a retry does not rate twice.
    #[utoipa::path(post, path = "/v1/musicians/{id}/ratings", tag = "musicians", operation_id = "rateMusician",
        params(("id" = String, Path, description = ID),
            ("Idempotency-Key" = Option<String>, Header, description = "1–255 visible ASCII characters; a retry with the same key and request gets the first answer (marked `Idempotent-Replayed: true`), also after a restart; keys are kept per caller for 24 h.")),
        request_body(content = RatingBody, example = json!({"stars": 5})),
        responses(
            (status = 200, description = "The `rated` effect: the new average and count.", body = Effect,
                headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same key.")),
                example = json!({"effect": "rated", "musician_id": "m-1", "average": 4.5, "count": 2})),
            (status = 400, description = "The body is not well-formed JSON, or the `Idempotency-Key` is malformed."),
            (status = 404, description = "No such musician."),
            (status = 413, description = "The body is too large."),
            (status = 415, description = "The body is not `application/json`."),
            (status = 422, description = "`stars` is not 1–5, or the key was used for a different request."),
        ))]
    pub fn rate_musician() {}

    /// List gigs
    ///
    /// Gigs in id order with their bookings, one keyset page at a time.
    #[utoipa::path(get, path = "/v1/gigs", tag = "gigs", operation_id = "listGigs",
        params(ListParams),
        responses(
            (status = 200, description = "One page.", body = ListPage<GigView>),
            (status = 422, description = "A parameter is invalid or unknown."),
        ))]
    pub fn list_gigs() {}

    /// Create or replace a gig
    ///
    /// The body's `id` must equal the path's. A change that would break existing bookings (a new
    /// date, fewer seats than booked) is refused with 409 `gig_has_bookings`.
    #[utoipa::path(put, path = "/v1/gigs/{id}", tag = "gigs", operation_id = "putGig",
        params(("id" = String, Path, description = ID),
            ("If-Match" = Option<String>, Header, description = "Replace only if the current ETag is one of these (`*`: only if it exists). Entity tags (RFC 9110); weak and foreign tags never match (412), a value that is not entity-tag syntax is refused (400).")),
        request_body = Gig,
        responses(
            (status = 200, description = "Replaced; the stored view.", body = GigView,
                headers(("ETag" = String, description = "The new version, quoted."))),
            (status = 201, description = "Created; the stored view.", body = GigView,
                headers(("ETag" = String, description = "The new version, quoted."),
                    ("Location" = String, description = "The gig's path."))),
            (status = 400, description = "The body is not well-formed JSON, or `If-Match` is malformed."),
            (status = 404, description = "Deleted by a concurrent request before it could be shown."),
            (status = 409, description = "The change would break existing bookings."),
            (status = 412, description = "`If-Match` does not match."),
            (status = 413, description = "The body is too large."),
            (status = 415, description = "The body is not `application/json`."),
            (status = 422, description = "The gig breaks rules, or its `id` differs from the path's."),
        ))]
    pub fn put_gig() {}

    /// Read a gig
    #[utoipa::path(get, path = "/v1/gigs/{id}", tag = "gigs", operation_id = "getGig",
        params(("id" = String, Path, description = ID)),
        responses(
            (status = 200, description = "The gig, its version and bookings.", body = GigView,
                headers(("ETag" = String, description = "The version, quoted."))),
            (status = 404, description = "No such gig."),
        ))]
    pub fn get_gig() {}

    /// Delete a gig
    ///
    /// Releases the gig's bookings.
    #[utoipa::path(delete, path = "/v1/gigs/{id}", tag = "gigs", operation_id = "deleteGig",
        params(("id" = String, Path, description = ID),
            ("If-Match" = Option<String>, Header, description = "Delete only if the current ETag is one of these (`*`: only if it exists). Entity tags (RFC 9110); weak and foreign tags never match (412), a value that is not entity-tag syntax is refused (400).")),
        responses(
            (status = 204, description = "Deleted."),
            (status = 400, description = "`If-Match` is malformed."),
            (status = 404, description = "No such gig."),
            (status = 412, description = "`If-Match` does not match."),
        ))]
    pub fn delete_gig() {}

    /// Match a stored gig
    ///
    /// Ranked candidates per slot and the optimal filling of the open seats; seats already
    /// booked are not offered again.
    #[utoipa::path(get, path = "/v1/gigs/{id}/matches", tag = "matching", operation_id = "matchGig",
        params(("id" = String, Path, description = ID), MatchParams),
        responses(
            (status = 200, description = "The ranking and the assignment.", body = MatchResult),
            (status = 421, description = "This cluster node keeps no search index (`index.enabled = false`): send searches and matches to one that does."),
            (status = 404, description = "No such gig."),
            (status = 422, description = "A parameter is invalid or unknown, or the weights are all zero."),
        ))]
    pub fn match_gig() {}

    /// Book a musician
    ///
    /// Checks and books in one step: of two requests racing for the same musician on the same
    /// date exactly one gets 201. Send an `Idempotency-Key` to retry safely.
    #[utoipa::path(post, path = "/v1/gigs/{id}/bookings", tag = "bookings", operation_id = "book",
        params(("id" = String, Path, description = "The gig's id."),
            ("Idempotency-Key" = Option<String>, Header, description = "1–255 visible ASCII characters; a retry with the same key and request gets the first answer (marked `Idempotent-Replayed: true`), also after a restart; keys are kept per caller for 24 h.")),
        request_body(content = BookingBody, example = json!({"slot": 0, "musician_id": "m-1"})),
        responses(
            (status = 201, description = "Booked.", body = Booking,
                headers(("Location" = String, description = "The booking's path: `/v1/gigs/{id}/bookings/{musician_id}`."),
                    ("Idempotent-Replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same key."))),
            (status = 400, description = "The body is not well-formed JSON, or the `Idempotency-Key` is malformed."),
            (status = 404, description = "No such gig or musician."),
            (status = 409, description = "The booking conflicts (`conflict`: `musician_busy`, `musician_already_booked`, `slot_full`, `no_such_slot`, `instrument_mismatch`, `musician_inactive`)."),
            (status = 413, description = "The body is too large."),
            (status = 415, description = "The body is not `application/json`."),
            (status = 422, description = "The body breaks rules, or the key was used for a different request."),
        ))]
    pub fn book() {}

    /// Cancel a booking
    #[utoipa::path(delete, path = "/v1/gigs/{id}/bookings/{musician_id}", tag = "bookings", operation_id = "cancelBooking",
        params(("id" = String, Path, description = "The gig's id."),
            ("musician_id" = String, Path, description = "The booked musician's id.")),
        responses(
            (status = 204, description = "Cancelled."),
            (status = 404, description = "No such booking."),
        ))]
    pub fn cancel_booking() {}

    /// Match a gig that is not stored
    ///
    /// Same ranking as for a stored gig; nothing is written.
    #[utoipa::path(post, path = "/v1/match", tag = "matching", operation_id = "matchAdHoc",
        request_body(content = AdHocBody, example = json!({"gig": {"id": "g-1", "title": "Wedding", "date": "2026-12-05",
            "location": {"lat": 40.42, "lon": -3.70}, "radius_km": 30,
            "slots": [{"instrument": "guitar", "count": 1}],
            "budget": {"max_fee": 20000, "currency": "EUR"}}, "k": 5})),
        responses(
            (status = 200, description = "The ranking and the assignment.", body = MatchResult),
            (status = 421, description = "This cluster node keeps no search index (`index.enabled = false`): send searches and matches to one that does."),
            (status = 400, description = "The body is not well-formed JSON."),
            (status = 413, description = "The body is too large."),
            (status = 415, description = "The body is not `application/json`."),
            (status = 422, description = "The gig, `k` or the weights break rules (gig fields are named `gig.<field>`)."),
        ))]
    pub fn match_ad_hoc() {}
}

/// The routes the router serves today.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "MussikOn API",
        description = "Musicians, gigs, bookings, search and ranked matching.\n\n\
            Conventions: bodies are JSON (`application/json`) except the NDJSON bulk upload; unknown \
            fields are refused. Every error is an RFC 9457 `application/problem+json` body (the \
            `Problem` schema) whose `type` is a stable URN. Every response carries `X-Request-Id` \
            (the client's, when it is 1–128 characters of `[A-Za-z0-9._:-]`, else a new UUID). \
            Musicians and gigs carry an `ETag` (their version); `If-Match` guards PUT and DELETE. \
            POSTs that must not run twice accept `Idempotency-Key` (on a cluster, a keyed write whose \
            leader fails while it is in flight is submitted again by the node that took it, instead \
            of being answered 503 with its outcome unknown). HEAD is accepted wherever GET is; \
            a method a path does not serve gets 405 with `Allow`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        paths::health, paths::ready, paths::metrics, paths::openapi,
        paths::list_musicians, paths::search_get, paths::search_post, paths::bulk,
        paths::put_musician, paths::get_musician, paths::delete_musician, paths::rate_musician,
        paths::list_gigs, paths::put_gig, paths::get_gig, paths::delete_gig,
        paths::match_gig, paths::book, paths::cancel_booking, paths::match_ad_hoc,
    ),
    components(schemas(
        ProblemBody, FieldError, Conflict, Liveness, Readiness, Check, Health,
        Musician, InstrumentSkill, GeoPoint, Money, Rating, MusicianView, BookedDate,
        Gig, Slot, Budget, GigView, Booking, BookingBody, RatingBody, Effect,
        ListPage<MusicianView>, ListPage<GigView>, BulkReport, LineError,
        SearchQuery, InstrumentFilter, InstrumentMode, Near, SortBy, SearchHit, SearchPage,
        AdHocBody, Weights, MatchResult, SlotMatches, Candidate, Components, Assignment, Seat,
    )),
    tags(
        (name = "operations", description = "Health, metrics and this document; open to all."),
        (name = "musicians", description = "Musician profiles."),
        (name = "search", description = "Musician search."),
        (name = "gigs", description = "Gigs and their slots."),
        (name = "bookings", description = "Booking musicians into gig slots."),
        (name = "matching", description = "Ranked candidates and optimal seat assignment."),
    )
)]
struct Routed;

/// The complete document as JSON: the generated operations and schemas of [`Routed`],
/// [`messages`] and [`events`], with the shared conventions applied (see the module docs).
pub fn document() -> Value {
    let mut api = Routed::openapi();
    api.merge(messages::Messages::openapi());
    api.merge(events::Events::openapi());
    api.merge(cluster::Cluster::openapi());
    // Serializing a document made of maps, strings and numbers does not fail.
    let mut doc = serde_json::to_value(&api).unwrap_or_else(|_| json!({}));
    strip_code_blocks(&mut doc);
    apply_conventions(&mut doc);
    cross_field_rules(&mut doc);
    field_rules(&mut doc);
    doc
}

/// The characters Rust's `str::trim` removes (Unicode `White_Space`), as a regex class body.
/// Spelled out because `\s` differs between regex dialects (Python's also has U+001C–U+001F).
const WS: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// The rules `mussikon_engine::validate` (and the server's own checks) enforce on fields whose
/// Rust type cannot say them (`i64` for a level, `String` for an id or a date), merged into the
/// generated schemas so that the document refuses what the server refuses. Each entry is
/// `(schema, property, rules)`; `rules` is merged into the property's schema.
fn field_rules(doc: &mut Value) {
    let id = json!({"pattern": "^[A-Za-z0-9._-]{1,64}$"});
    let text =
        |max: usize| json!({"minLength": 1, "maxLength": max, "pattern": format!("[^{WS}]")});
    // A name (instrument, genre): 1–40 characters once trimmed.
    let name = json!({"pattern": format!("^[{WS}]*[^{WS}]([\\s\\S]{{0,38}}[^{WS}])?[{WS}]*$")});
    let date = json!({"format": "date",
        "pattern": "^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"});
    let level = json!({"minimum": 1, "maximum": 5});
    let radius = json!({"exclusiveMinimum": 0, "maximum": 20000});
    let names = json!({"maxItems": 16, "items": name.clone()});
    let rules = [
        ("Musician", "id", id.clone()),
        ("Musician", "name", text(200)),
        (
            "Musician",
            "instruments",
            json!({"minItems": 1, "maxItems": 16}),
        ),
        ("Musician", "genres", names.clone()),
        ("Musician", "city", text(200)),
        ("Musician", "travel_radius_km", radius.clone()),
        (
            "Musician",
            "busy",
            json!({"maxItems": 366, "items": date.clone()}),
        ),
        ("Musician", "bio", json!({"maxLength": 4000})),
        ("InstrumentSkill", "name", name.clone()),
        ("InstrumentSkill", "level", level.clone()),
        ("GeoPoint", "lat", json!({"minimum": -90, "maximum": 90})),
        ("GeoPoint", "lon", json!({"minimum": -180, "maximum": 180})),
        ("Near", "lat", json!({"minimum": -90, "maximum": 90})),
        ("Near", "lon", json!({"minimum": -180, "maximum": 180})),
        ("Near", "radius_km", radius.clone()),
        ("Money", "amount", json!({"minimum": 0})),
        ("Money", "currency", json!({"pattern": "^[A-Z]{3}$"})),
        ("Budget", "max_fee", json!({"minimum": 0})),
        ("Budget", "currency", json!({"pattern": "^[A-Z]{3}$"})),
        ("Rating", "count", json!({"minimum": 0})),
        ("Rating", "average", json!({"minimum": 0, "maximum": 5})),
        ("RatingBody", "stars", json!({"minimum": 1, "maximum": 5})),
        ("Gig", "id", id.clone()),
        ("Gig", "title", text(200)),
        ("Gig", "date", date.clone()),
        ("Gig", "radius_km", radius),
        ("Gig", "slots", json!({"minItems": 1, "maxItems": 16})),
        ("Gig", "genres", names.clone()),
        ("Gig", "min_rating", json!({"minimum": 1, "maximum": 5})),
        ("Gig", "owner", id.clone()),
        ("Slot", "instrument", name.clone()),
        ("Slot", "count", json!({"minimum": 1, "maximum": 20})),
        ("Slot", "min_level", level.clone()),
        ("SearchQuery", "text", json!({"maxLength": 1000})),
        ("SearchQuery", "instruments", json!({"maxItems": 16})),
        ("SearchQuery", "genres", names),
        ("SearchQuery", "available_on", date.clone()),
        (
            "SearchQuery",
            "min_rating",
            json!({"minimum": 1, "maximum": 5}),
        ),
        (
            "SearchQuery",
            "limit",
            json!({"minimum": 1, "maximum": 1000}),
        ),
        ("InstrumentFilter", "name", name),
        ("InstrumentFilter", "min_level", level),
    ];
    let schemas = &mut doc["components"]["schemas"];
    for (schema, property, rule) in rules {
        merge(&mut schemas[schema]["properties"][property], rule);
    }
    // `average` is at least 1 once there are ratings.
    if let Some(r) = schemas["Rating"].as_object_mut() {
        r.insert(
            "if".into(),
            json!({"properties": {"count": {"minimum": 1}}, "required": ["count"]}),
        );
        r.insert(
            "then".into(),
            json!({"properties": {"average": {"minimum": 1}}}),
        );
    }
    // The same rules on the query parameters of `GET /v1/musicians/search`; `instrument` and
    // `genre` values may be comma lists of names.
    let list = json!({"items": {"pattern": "^[^,]{0,40}(,[^,]{0,40})*$"}});
    let search = &mut doc["paths"]["/v1/musicians/search"]["get"]["parameters"];
    if let Some(params) = search.as_array_mut() {
        for p in params {
            let rule = match p["name"].as_str() {
                Some("instrument" | "genre") => list.clone(),
                Some("available_on") => date.clone(),
                Some("text") => json!({"maxLength": 1000}),
                _ => continue,
            };
            merge(&mut p["schema"], rule);
        }
    }
}

/// Merges `extra` into `into`, object by object (other values are replaced).
fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (into, extra) => *into = extra,
    }
}

/// Rules between fields of one body that no field's own schema states, written as JSON Schema
/// 2020-12 (OpenAPI 3.1) so that clients and test generators see them:
/// - `SearchQuery`: `sort: distance` needs `near`;
/// - `Weights`: not all zero (they are scaled to sum 1).
///
/// Rules between query parameters (`lat`/`lon`/`radius_km` together, `max_fee` with `currency`,
/// `sort=distance` with the circle, not all `w_*` zero) and between the path and the body (a PUT
/// body's `id` equals the path's) cannot be stated in OpenAPI: the parameters' descriptions and
/// the operations' 422 responses say them.
fn cross_field_rules(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    if let Some(q) = schemas["SearchQuery"].as_object_mut() {
        q.insert(
            "if".into(),
            json!({"properties": {"sort": {"const": "distance"}}, "required": ["sort"]}),
        );
        q.insert(
            "then".into(),
            json!({"properties": {"near": {"type": "object"}}, "required": ["near"]}),
        );
    }
    if let Some(w) = schemas["Weights"].as_object_mut() {
        let zero: Map<String, Value> = ["proximity", "rating", "genres", "price", "level"]
            .into_iter()
            .map(|f| (f.to_string(), json!({"const": 0})))
            .collect();
        w.insert("not".into(), json!({"properties": zero}));
    }
}

/// Removes fenced code blocks from every `description`: the doc comments that become
/// descriptions carry Rust doctests, which mean nothing to an API client (the schemas' `examples`
/// show the JSON instead).
fn strip_code_blocks(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(text) if k == "description" && text.contains("```") => {
                        *text = without_fences(text);
                    }
                    _ => strip_code_blocks(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_code_blocks),
        _ => {}
    }
}

fn without_fences(text: &str) -> String {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push(line);
        }
    }
    out.join("\n").trim().to_string()
}

/// The document as served, serialized once.
fn cached() -> &'static Result<Bytes, String> {
    static DOC: OnceLock<Result<Bytes, String>> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_vec(&document())
            .map(Bytes::from)
            .map_err(|e| format!("serializing the OpenAPI document: {e}"))
    })
}

/// `GET /openapi.json`.
pub fn serve() -> Result<ApiResponse, ApiError> {
    match cached() {
        Ok(body) => Ok(ApiResponse::with_body(StatusCode::OK, JSON, body.clone())),
        Err(e) => Err(ApiError::Internal(e.clone())),
    }
}

fn header(description: &str) -> Value {
    json!({"description": description, "schema": {"type": "string"}})
}

fn request_id_header() -> Value {
    header("The request id: the client's `X-Request-Id` when safe to echo, else a new UUID.")
}

/// An example problem body for `status`.
fn problem_example(status: u16) -> Value {
    let (kind, title, detail) = match status {
        400 => ("malformed-json", "Malformed JSON", "the body is not well-formed JSON: EOF while parsing an object (line 2, column 11)"),
        401 => ("unauthorized", "Unauthorized", "a bearer token is required"),
        403 => ("forbidden", "Forbidden", "the token does not allow this operation"),
        404 => ("not-found", "Not found", "musician m-1 not found"),
        405 => ("method-not-allowed", "Method not allowed", "this route does not accept the method; allowed: PUT, GET, HEAD, DELETE"),
        409 => ("conflict", "Conflict with the current state", "conflict: musician m-1 is already booked on 2026-12-05 (gig g-2)"),
        412 => ("precondition-failed", "Precondition failed", "If-Match does not match the current version (ETag \"7\"); fetch the record and retry with its ETag"),
        413 => ("payload-too-large", "Body too large", "the body is larger than 1048576 bytes"),
        415 => ("unsupported-media-type", "Unsupported media type", "send the body with Content-Type: application/json (got text/plain)"),
        421 => ("no-search-index", "This node keeps no search index", "this node keeps no search index (index.enabled = false): send searches and matches to a node that does, such as a read replica"),
        422 => ("validation", "Invalid request", "instruments[0].level: must be an integer from 1 to 5"),
        429 => ("too-many-requests", "Too many requests", "too many requests; retry after 1 s"),
        _ => ("internal", "Internal server error", "the server failed to handle the request; report the request_id to the operators"),
    };
    let mut body = json!({
        "type": format!("urn:mussikon:problem:{kind}"),
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [],
        "request_id": "7f0c1a52-3a8e-4a7e-9a47-2f3c8f1f1d2e",
    });
    match status {
        400 => {
            body["line"] = json!(2);
            body["column"] = json!(11);
        }
        409 => {
            body["conflict"] = json!({"conflict": "musician_already_booked",
                "musician_id": "m-1", "date": "2026-12-05", "gig_id": "g-2"});
        }
        412 => body["current_etag"] = json!("\"7\""),
        413 => body["limit_bytes"] = json!(1_048_576),
        422 => {
            body["errors"] =
                json!([{"field": "instruments[0].level", "rule": "must be an integer from 1 to 5"}])
        }
        _ => {}
    }
    body
}

/// The body and headers of an error response with `status`.
fn fill_error(response: &mut Map<String, Value>, status: u16) {
    response.insert(
        "content".into(),
        json!({ PROBLEM_JSON: {
            "schema": {"$ref": "#/components/schemas/Problem"},
            "example": problem_example(status),
        }}),
    );
    let headers = response
        .entry("headers")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(h) = headers {
        match status {
            405 => {
                h.insert(
                    "Allow".into(),
                    header("The methods the path accepts, e.g. `GET, HEAD, POST`."),
                );
            }
            429 => {
                h.insert(
                    "Retry-After".into(),
                    header("Seconds to wait before retrying."),
                );
            }
            _ => {}
        }
    }
}

/// The reusable error responses, one per status of [`ERRORS`].
fn error_components() -> Map<String, Value> {
    let mut out = Map::new();
    for (status, name, description) in ERRORS {
        let mut r = Map::new();
        r.insert("description".into(), json!(description));
        r.insert(
            "headers".into(),
            json!({"X-Request-Id": request_id_header()}),
        );
        fill_error(&mut r, *status);
        out.insert((*name).to_string(), Value::Object(r));
    }
    out
}

fn error_ref(status: u16) -> Value {
    let name = ERRORS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, n, _)| *n)
        .unwrap_or("InternalServerError");
    json!({"$ref": format!("#/components/responses/{name}")})
}

/// Gives the conditional and idempotency request headers the syntax the server enforces
/// (anything else is refused with 400): `If-Match` entity tags, `Idempotency-Key` visible ASCII.
/// utoipa writes an optional header as `string | null`, which no header value can be.
fn header_syntax(param: &mut Value) {
    if param["in"] != "header" {
        return;
    }
    let pattern = match param["name"].as_str() {
        Some("If-Match") => IF_MATCH_PATTERN.to_string(),
        Some("Idempotency-Key") => format!("^[!-~]{{1,{MAX_KEY_LEN}}}$"),
        _ => return,
    };
    param["schema"] = json!({"type": "string", "pattern": pattern});
}

/// Applies what every operation shares; see the module documentation.
/// The `consistency` query parameter of the operation `method` on `path`, with the route's
/// default, when that request reads replicated data (`crate::http::cluster::read_consistency`).
fn consistency_parameter(method: &str, path: &str) -> Option<Value> {
    let method = warp::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()?;
    let route = ROUTES.iter().find(|r| r.template == path)?;
    let default = match cluster_routes::read_consistency(&method, route.id)? {
        Consistency::Linearizable => "linearizable",
        Consistency::Leader => "leader",
        Consistency::Stale => "stale",
    };
    Some(json!({
        "name": CONSISTENCY,
        "in": "query",
        "required": false,
        "description": format!(
            "On a cluster node, how fresh the read must be: `linearizable` (sees every write \
             acknowledged before it began), `leader` (what the leader has applied) or `stale` \
             (this node's state at once). Default here: `{default}`. A single node ignores it."
        ),
        "schema": {"type": "string", "enum": ["linearizable", "leader", "stale"]},
    }))
}

fn apply_conventions(doc: &mut Value) {
    if let Some(components) = doc["components"].as_object_mut() {
        components.insert("responses".into(), Value::Object(error_components()));
        components.insert(
            "securitySchemes".into(),
            json!({ BEARER: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "`Authorization: Bearer <JWT>` on every `/v1` route.",
            }}),
        );
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let secured = path.starts_with("/v1/");
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let mut has_consistency = false;
            let params = op.entry("parameters").or_insert_with(|| json!([]));
            if let Some(params) = params.as_array_mut() {
                if let Some(p) = consistency_parameter(method, path) {
                    params.push(p);
                    has_consistency = true;
                }
                for p in params.iter_mut() {
                    header_syntax(p);
                }
                // No pattern: a request id never fails a request; one that is not safe to echo
                // is replaced, not refused.
                params.push(json!({
                    "name": "X-Request-Id",
                    "in": "header",
                    "required": false,
                    "description": "A request id to echo in the response and logs. Kept when it is 1–128 characters of `[A-Za-z0-9._:-]`; any other value is replaced by a new UUID (never refused).",
                    "schema": {"type": "string"},
                }));
            }
            if secured {
                op.insert("security".into(), json!([{ BEARER: [] }]));
            }
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (code, response) in responses.iter_mut() {
                let Some(r) = response.as_object_mut() else {
                    continue;
                };
                if r.contains_key("$ref") {
                    continue;
                }
                if let Some(h) = r
                    .entry("headers")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                {
                    h.insert("X-Request-Id".into(), request_id_header());
                }
                match code.parse::<u16>() {
                    Ok(status) if status >= 400 && status != 503 => fill_error(r, status),
                    _ => {}
                }
            }
            // A `consistency` that is not one of its values is refused (422).
            if has_consistency && !responses.contains_key("422") {
                let mut r = Map::new();
                r.insert(
                    "description".into(),
                    json!("A parameter is invalid (`consistency`)."),
                );
                r.insert(
                    "headers".into(),
                    json!({"X-Request-Id": request_id_header()}),
                );
                fill_error(&mut r, 422);
                responses.insert("422".into(), Value::Object(r));
            }
            let mut common = vec![500];
            if secured {
                common.extend([401, 403, 429]);
            }
            for status in common {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_ref(status));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctests_leave_descriptions_and_prose_stays() {
        let text = "A musician.\n\n```\nlet m = 1;\n```\nMore prose.";
        assert_eq!(without_fences(text), "A musician.\n\nMore prose.");
        let mut doc = json!({"a": {"description": "x\n```rust\ncode\n```"}, "b": ["```"]});
        strip_code_blocks(&mut doc);
        assert_eq!(doc, json!({"a": {"description": "x"}, "b": ["```"]}));
    }

    #[test]
    fn every_error_status_has_an_example_of_its_own_kind() {
        for (status, name, _) in ERRORS {
            let ex = problem_example(*status);
            assert_eq!(ex["status"], json!(status), "{name}");
            assert!(ex["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:mussikon:problem:")));
        }
    }
}
