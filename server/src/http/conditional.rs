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

/// The syntax `If-Match` must have (RFC 9110: `*`, or a comma list of entity tags, weak or
/// strong, of visible ASCII without `"`; empty list elements are allowed and ignored), as a
/// regular expression; the OpenAPI document gives it to the header. Anything else is refused
/// with 400. An empty list names no version: it never matches (412).
pub const IF_MATCH_PATTERN: &str =
    r#"^(\*|[ \t]*((W/)?"[!#-~]*")?[ \t]*(,[ \t]*((W/)?"[!#-~]*")?[ \t]*)*)$"#;

fn malformed() -> ApiError {
    ApiError::BadRequest(
        "If-Match must be * or a comma-separated list of entity tags such as \"7\"".into(),
    )
}

impl IfMatch {
    /// The condition in `headers`, if any (several `If-Match` headers are combined, as one
    /// comma list). A value not of [`IF_MATCH_PATTERN`] is refused (400).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
        let mut lines = Vec::new();
        for value in headers.get_all(IF_MATCH) {
            lines.push(value.to_str().map_err(|_| malformed())?);
        }
        if lines.is_empty() {
            return Ok(None);
        }
        let text = lines.join(",");
        let text = text.trim_matches([' ', '\t']);
        if text == "*" {
            return Ok(Some(IfMatch::Any));
        }
        // A list of entity tags; an opaque tag may hold commas, so the list is scanned.
        let bytes = text.as_bytes();
        let skip_ows = |mut i: usize| {
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            i
        };
        let mut versions = Vec::new();
        let mut i = 0;
        loop {
            i = skip_ows(i);
            if i < bytes.len() && bytes[i] != b',' {
                let weak = bytes[i..].starts_with(b"W/");
                if weak {
                    i += 2;
                }
                if bytes.get(i) != Some(&b'"') {
                    return Err(malformed());
                }
                let start = i + 1;
                let len = bytes[start..]
                    .iter()
                    .position(|&b| b == b'"')
                    .ok_or_else(malformed)?;
                let inner = &text[start..start + len];
                if !inner
                    .bytes()
                    .all(|b| b == b'!' || (b'#'..=b'~').contains(&b))
                {
                    return Err(malformed());
                }
                i = skip_ows(start + len + 1);
                // A weak tag, or a strong one that is not a version of ours, can never match:
                // it is dropped, so an If-Match made only of such tags fails with 412 as RFC
                // 9110 asks. Strong comparison is octet equality: only the canonical digits of
                // a version match it (`"08"` and `"+8"` are other tags).
                if !weak {
                    if let Some(v) = inner.parse::<u64>().ok().filter(|v| v.to_string() == inner) {
                        versions.push(v);
                    }
                }
            }
            match bytes.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(malformed()),
            }
        }
        Ok(Some(IfMatch::Versions(versions)))
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
    fn refuses_what_is_not_entity_tag_syntax() {
        let cases = [
            ("J", false),
            ("null", false),
            ("7", false),
            ("\"7", false),
            ("*, \"7\"", false),
            ("*,", false),
            ("w/\"7\"", false),
            ("\"a\"b\"", false),
            ("\"1\" \"2\"", false),
            ("*", true),
            ("\"7\"", true),
            ("W/\"7\", \"abc\"", true),
            ("\"\",\"1\"", true),
            ("", true),
            ("\"7\",,\"8\"", true),
            ("\"a,b\", \"9\"", true),
        ];
        for (value, ok) in cases {
            let mut h = HeaderMap::new();
            h.append(IF_MATCH, HeaderValue::from_str(value).unwrap());
            assert_eq!(IfMatch::from_headers(&h).is_ok(), ok, "{value:?}");
        }
        assert_eq!(parse(&["\"a,b\", \"9\""]), Some(IfMatch::Versions(vec![9])));
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
