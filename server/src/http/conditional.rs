//! ETags and `If-Match`: optimistic concurrency for musicians and gigs.
//!
//! A record's ETag is its engine version (the applied sequence of its last change), quoted:
//! `"42"`. It is a strong validator: it changes whenever the stored record or its bookings change.
//!
//! `If-Match` on PUT and DELETE becomes the engine's [`mussikon_engine::Expected`] version in
//! the command's guard and is checked inside the same apply as the write, under the engine's
//! writer lock: no other write can land between the check and the change (see
//! [`crate::http::routes::resource`]). A mismatch comes back as the engine's
//! `version_mismatch` conflict, answered 412 with the current ETag.

use crate::http::problem::ApiError;
use warp::http::header::IF_MATCH;
use warp::http::HeaderMap;

/// The ETag of a record at `version`.
///
/// ```
/// assert_eq!(mussikon_server::http::conditional::etag(7), "\"7\"");
/// ```
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// A parsed `If-Match` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the record must exist.
    Any,
    /// One of these versions must be current. Tags that are weak or not ours never match.
    Versions(Vec<u64>),
}

impl IfMatch {
    /// The condition in `headers`, if any (several `If-Match` headers are combined).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
        let mut versions = Vec::new();
        let mut any = false;
        let mut present = false;
        for value in headers.get_all(IF_MATCH) {
            present = true;
            let text = value
                .to_str()
                .map_err(|_| ApiError::BadRequest("If-Match must be visible ASCII".into()))?;
            for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if tag == "*" {
                    any = true;
                } else if let Some(v) = tag
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    // Strong comparison is octet equality: only the canonical digits of a
                    // version match it (`"08"` and `"+8"` are other tags).
                    .and_then(|t| t.parse::<u64>().ok().filter(|v| v.to_string() == t))
                {
                    versions.push(v);
                }
                // Anything else (a weak tag, a foreign tag) can never match: it is dropped, so
                // an If-Match made only of such tags fails with 412 as RFC 9110 asks.
            }
        }
        Ok(match (present, any) {
            (false, _) => None,
            (true, true) => Some(IfMatch::Any),
            (true, false) => Some(IfMatch::Versions(versions)),
        })
    }

    /// Ok when the condition holds for a record at `current` (None: no such record).
    pub fn check(&self, current: Option<u64>) -> Result<(), ApiError> {
        let holds = match (self, current) {
            (_, None) => false,
            (IfMatch::Any, Some(_)) => true,
            (IfMatch::Versions(vs), Some(v)) => vs.contains(&v),
        };
        if holds {
            Ok(())
        } else {
            Err(ApiError::PreconditionFailed { current })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use warp::http::HeaderValue;

    fn parse(values: &[&str]) -> Option<IfMatch> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(IF_MATCH, HeaderValue::from_str(v).unwrap());
        }
        IfMatch::from_headers(&h).unwrap()
    }

    #[test]
    fn parses_lists_stars_and_foreign_tags() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&["*"]), Some(IfMatch::Any));
        assert_eq!(
            parse(&["\"3\", \"5\"", "\"9\""]),
            Some(IfMatch::Versions(vec![3, 5, 9]))
        );
        assert_eq!(
            parse(&["W/\"3\", \"abc\""]),
            Some(IfMatch::Versions(vec![]))
        );
    }

    #[test]
    fn checks_against_the_current_version() {
        assert!(IfMatch::Any.check(Some(1)).is_ok());
        assert!(IfMatch::Any.check(None).is_err());
        assert!(IfMatch::Versions(vec![1, 2]).check(Some(2)).is_ok());
        assert!(IfMatch::Versions(vec![1, 2]).check(Some(3)).is_err());
        assert!(IfMatch::Versions(vec![]).check(Some(3)).is_err());
    }
}
