//! JSON request bodies through the server's own path: the depth guard
//! (`request::nests_deeper_than`), `request::decode_json` (400 malformed / 422 wrong shape), then
//! the engine's one validation path (`validate_musician`, `validate_gig`, `validate_booking`,
//! `SearchQuery::validated`).
//!
//! Properties: nothing panics; the depth guard agrees with the depth of the document serde_json
//! parses (brackets inside strings never count); decode errors are typed and name a field;
//! validation errors name a field and a rule; a validated record is a fixed point of validation
//! (normalizing twice changes nothing) and survives a JSON round trip unchanged.

use mussikon_engine::{
    validate_booking, validate_gig, validate_musician, Booking, Gig, Musician, SearchQuery,
    ValidationError,
};
use mussikon_server::http::problem::ApiError;
use mussikon_server::http::request::{decode_json, nests_deeper_than};
use mussikon_server::http::routes::bookings::BookingBody;
use mussikon_server::http::routes::matching::AdHocBody;
use mussikon_server::http::routes::musicians::RatingBody;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Runs every JSON body check on `data` (first byte: which body and the depth limit).
pub fn check(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    check_depth(body, usize::from(pick >> 3));
    if nests_deeper_than(body, mussikon_server::config::DEFAULT_MAX_JSON_DEPTH, false) {
        return; // answered 400 json-too-deep before parsing
    }
    match pick % 6 {
        0 => {
            if let Some(m) = decoded::<Musician>(body) {
                validated(m, validate_musician);
            }
        }
        1 => {
            if let Some(g) = decoded::<Gig>(body) {
                validated(g, validate_gig);
            }
        }
        2 => {
            if let Some(b) = decoded::<BookingBody>(body) {
                let booking = Booking {
                    gig_id: "g-1".into(),
                    slot: b.slot,
                    musician_id: b.musician_id,
                };
                if let Err(e) = validate_booking(&booking) {
                    check_validation_error(&e);
                }
            }
        }
        3 => {
            if let Some(q) = decoded::<SearchQuery>(body) {
                match q.validated() {
                    Ok(v) => assert_eq!(
                        v.validated().as_ref(),
                        Ok(&v),
                        "search query validation is not idempotent"
                    ),
                    Err(e) => check_validation_error(&e),
                }
            }
        }
        4 => {
            if let Some(b) = decoded::<AdHocBody>(body) {
                validated(b.gig, validate_gig);
            }
        }
        _ => {
            let _ = decoded::<RatingBody>(body);
        }
    }
}

/// `decode_json` as the handlers call it; errors must be the typed 400/422 variants.
fn decoded<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    match decode_json::<T>(body) {
        Ok(v) => Some(v),
        Err(ApiError::MalformedJson { line, column, .. }) => {
            assert!(
                line >= 1,
                "malformed JSON reported at line 0 (column {column})"
            );
            None
        }
        Err(ApiError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "422 without a field error");
            for e in &errors {
                assert!(
                    !e.field.is_empty() && !e.rule.is_empty(),
                    "empty field error {e:?}"
                );
            }
            None
        }
        Err(other) => panic!("decode_json returned an unexpected error: {other:?}"),
    }
}

fn validated<T>(record: T, validate: fn(T) -> Result<T, ValidationError>)
where
    T: Clone + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned,
{
    match validate(record) {
        Ok(normal) => {
            let again = validate(normal.clone());
            assert_eq!(again.as_ref(), Ok(&normal), "validation is not idempotent");
            let json = serde_json::to_vec(&normal).expect("a valid record serializes");
            let back: T = decode_json(&json).expect("a valid record's JSON decodes");
            assert_eq!(back, normal, "JSON round trip changed a valid record");
        }
        Err(e) => check_validation_error(&e),
    }
}

fn check_validation_error(e: &ValidationError) {
    assert!(
        !e.errors.is_empty(),
        "a validation error without a broken rule"
    );
    for f in &e.errors {
        assert!(
            !f.field.is_empty() && !f.rule.is_empty(),
            "empty field error {f:?}"
        );
    }
}

/// The depth guard against serde_json's own parse: for any document serde_json accepts, the
/// guard says "deeper than `limit`" exactly when the parsed value nests deeper.
fn check_depth(body: &[u8], limit: usize) {
    let guard = nests_deeper_than(body, limit, false);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let depth = depth_of(&value);
        assert_eq!(
            guard,
            depth > limit,
            "depth guard says {guard} for a document of depth {depth} (limit {limit})"
        );
    }
}

fn depth_of(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}
