//! Browser-facing headers: CORS for an allow-list of origins, and the security headers every
//! response carries.
//!
//! CORS: a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an
//! allowed origin is answered 204 with `Access-Control-Allow-Origin` (the origin itself, never
//! `*`), `-Allow-Methods`, `-Allow-Headers` and `-Max-Age`; from any other origin it is answered
//! 403 without CORS headers, so the browser blocks the call. Actual requests from an allowed
//! origin get `Access-Control-Allow-Origin` and `-Expose-Headers`; every response that depends
//! on `Origin` says so in `Vary`. Origins compare exactly (`scheme://host[:port]`).
//!
//! Security headers, on every response: `X-Content-Type-Options: nosniff`,
//! `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, `Content-Security-Policy:
//! default-src 'none'; frame-ancestors 'none'` (the API serves JSON, never pages), and
//! `Strict-Transport-Security` only when the request reached us over HTTPS, which we know only
//! from a trusted proxy's `X-Forwarded-Proto: https` (TLS ends at the proxy; see
//! docs/security.md).

use crate::config::CorsConfig;
use crate::http::problem::ApiError;
use crate::http::response::ApiResponse;
use warp::http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_SECURITY_POLICY, ORIGIN, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use warp::http::{HeaderMap, Method, StatusCode};

/// Methods the API serves, as answered to a preflight.
pub const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, DELETE";
/// Request headers a browser may send.
pub const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, If-Match, Idempotency-Key, X-Request-Id";
/// Response headers a browser script may read.
pub const EXPOSE_HEADERS: &str = "ETag, Location, Retry-After, X-Request-Id";
/// `Strict-Transport-Security` value: one year.
pub const HSTS: &str = "max-age=31536000";

/// The `Origin` of a request when it is on the allow-list.
fn allowed_origin<'a>(cors: &CorsConfig, headers: &'a HeaderMap) -> Option<&'a str> {
    let origin = headers.get(ORIGIN)?.to_str().ok()?;
    cors.allowed_origins
        .iter()
        .any(|o| o == origin)
        .then_some(origin)
}

/// Is this a CORS preflight?
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight.
pub fn preflight(cors: &CorsConfig, headers: &HeaderMap, request_id: &str) -> ApiResponse {
    let Some(origin) = allowed_origin(cors, headers) else {
        let origin = headers
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(unreadable)");
        return ApiError::OriginNotAllowed(origin.to_string())
            .into_response(request_id)
            .header(VARY, "Origin");
    };
    ApiResponse::empty(StatusCode::NO_CONTENT)
        .header(ACCESS_CONTROL_ALLOW_ORIGIN, origin)
        .header(ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS)
        .header(ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS)
        .header(ACCESS_CONTROL_MAX_AGE, &cors.max_age_s.to_string())
        .header(VARY, "Origin")
}

/// Adds the CORS headers of an actual (non-preflight) request to its response.
pub fn decorate(cors: &CorsConfig, request: &HeaderMap, response: &mut HeaderMap) {
    if !request.contains_key(ORIGIN) {
        return;
    }
    response.append(VARY, HeaderValue::from_static("Origin"));
    if let Some(v) = allowed_origin(cors, request).and_then(|o| HeaderValue::from_str(o).ok()) {
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v);
        response.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
}

/// Did the request reach the proxy over HTTPS? Only a trusted proxy's word counts.
pub fn came_over_https(request: &HeaderMap, trust_forwarded: bool) -> bool {
    trust_forwarded
        && request
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// Sets the security headers on a response.
pub fn security_headers(response: &mut HeaderMap, https: bool) {
    let set = |r: &mut HeaderMap, name: HeaderName, value: &'static str| {
        r.insert(name, HeaderValue::from_static(value));
    };
    set(response, X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(response, X_FRAME_OPTIONS, "DENY");
    set(response, REFERRER_POLICY, "no-referrer");
    set(
        response,
        CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    );
    if https {
        set(response, STRICT_TRANSPORT_SECURITY, HSTS);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn https_is_believed_only_from_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(came_over_https(&h, true));
        assert!(!came_over_https(&h, false));
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        assert!(!came_over_https(&h, true));
    }
}
