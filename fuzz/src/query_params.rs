//! Query strings of the search, match and list routes (`http::query::Params` and the route
//! readers built on it).
//!
//! Properties: nothing panics; a 422 names at least one field, each with a rule; a query string
//! that parses is re-written by an independent encoder and parses to the same value (so nothing
//! is lost or invented between the raw string and the engine's `SearchQuery`); the engine's
//! validation of a parsed query either succeeds or names a field; match weights given are
//! finite.

use mussikon_engine::{InstrumentMode, SearchQuery, SortBy};
use mussikon_server::http::problem::ApiError;
use mussikon_server::http::query::Page;
use mussikon_server::http::routes::matching::params_of_stored;
use mussikon_server::http::routes::search::query_from_params;

/// Runs every query-string check on `data`.
pub fn check(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match query_from_params(raw) {
        Ok(q) => {
            let again = encode_search(&q);
            let back = query_from_params(&again)
                .unwrap_or_else(|e| panic!("re-encoded query {again:?} refused: {e:?}"));
            assert_eq!(back, q, "search query changed through {again:?}");
            if let Err(e) = q.validated() {
                assert!(e
                    .errors
                    .iter()
                    .all(|f| !f.field.is_empty() && !f.rule.is_empty()));
            }
        }
        Err(e) => check_invalid(&e),
    }
    match params_of_stored(raw) {
        Ok((_, Some(w))) => assert!(
            [w.proximity, w.rating, w.genres, w.price, w.level]
                .iter()
                .all(|x| x.is_finite()),
            "non-finite weight accepted: {w:?}"
        ),
        Ok((_, None)) => {}
        Err(e) => check_invalid(&e),
    }
    match Page::from_query(raw) {
        Ok(p) => {
            assert!(
                (1..=1000).contains(&p.limit),
                "limit {} out of range",
                p.limit
            );
            if let Some(a) = &p.after {
                assert!(
                    mussikon_engine::is_valid_id(a),
                    "invalid after {a:?} accepted"
                );
            }
        }
        Err(e) => check_invalid(&e),
    }
}

fn check_invalid(e: &ApiError) {
    match e {
        ApiError::Invalid(errors) => {
            assert!(!errors.is_empty(), "422 without a field");
            for f in errors {
                assert!(
                    !f.field.is_empty() && !f.rule.is_empty(),
                    "empty field error {f:?}"
                );
            }
        }
        other => panic!("a query string gave {other:?}, not a 422"),
    }
}

/// Writes `q` back as GET parameters, the way a client following the route's table would.
fn encode_search(q: &SearchQuery) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for f in &q.instruments {
        s.append_pair("instrument", &f.name);
    }
    if let Some(f) = q.instruments.first() {
        s.append_pair("min_level", &f.min_level.to_string());
    }
    if q.instrument_mode == InstrumentMode::All {
        s.append_pair("mode", "all");
    }
    for g in &q.genres {
        s.append_pair("genre", g);
    }
    if let Some(n) = &q.near {
        s.append_pair("lat", &n.lat.to_string());
        s.append_pair("lon", &n.lon.to_string());
        s.append_pair("radius_km", &n.radius_km.to_string());
    }
    if let Some(d) = &q.available_on {
        s.append_pair("available_on", d);
    }
    if let Some(t) = &q.text {
        s.append_pair("text", t);
    }
    if let Some(m) = &q.max_fee {
        s.append_pair("max_fee", &m.amount.to_string());
        s.append_pair("currency", &m.currency);
    }
    if let Some(r) = q.min_rating {
        s.append_pair("min_rating", &r.to_string());
    }
    match q.sort {
        SortBy::Relevance => {}
        SortBy::Distance => {
            s.append_pair("sort", "distance");
        }
        SortBy::Rating => {
            s.append_pair("sort", "rating");
        }
        SortBy::Fee => {
            s.append_pair("sort", "fee");
        }
    }
    if let Some(l) = q.limit {
        s.append_pair("limit", &l.to_string());
    }
    if let Some(c) = &q.cursor {
        s.append_pair("cursor", c);
    }
    if q.include_inactive {
        s.append_pair("include_inactive", "true");
    }
    s.finish()
}
