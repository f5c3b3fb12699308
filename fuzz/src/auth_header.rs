//! Request headers a client controls: `Authorization` (bearer parsing and JWT verification),
//! `If-Match`, `X-Forwarded-For` and `Idempotency-Key`.
//!
//! The input is up to four header values separated by NUL bytes. The verifier is configured
//! like production (HS256 with a fixed fuzz-only key, issuer and audience required) and the seed
//! corpus holds tokens signed with that key. Properties: nothing panics; a bearer token is
//! non-empty and trimmed; a token the verifier accepts was signed by us: its header and claims
//! are exactly those of one of the [`KNOWN`] tokens (no `alg: none`, no algorithm confusion, no
//! edited claims) and its subject is 1–256 bytes; `If-Match` versions come from quoted tags in
//! the header; an idempotency key is 1–255 visible ASCII characters.

use mussikon_server::config::{AuthConfig, AuthKey, Secret};
use mussikon_server::http::auth::{bearer, Verifier, MAX_SUBJECT_BYTES};
use mussikon_server::http::conditional::IfMatch;
use mussikon_server::http::idempotency;
use mussikon_server::http::ratelimit::client_ip;
use mussikon_server::http::request::Request;
use std::sync::OnceLock;
use warp::http::{HeaderMap, HeaderValue, Method};

/// The fuzz-only HS256 key (not a secret: it signs nothing but the seed corpus).
pub const FUZZ_KEY: &[u8] = b"mussikon-fuzz-key-not-a-secret-0123456789";

/// Header and claims segments (`header.claims`) of the tokens signed with [`FUZZ_KEY`] in the
/// seed corpus (`exp` 2100-01-01, `iss` fuzz-iss, `aud` fuzz-aud).
pub const KNOWN: &[&str] = &[
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbi0xIiwicm9sZSI6ImFkbWluIiwiZXhwIjo0MTAyNDQ0ODAwLCJpc3MiOiJmdXp6LWlzcyIsImF1ZCI6ImZ1enotYXVkIn0",
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtLTEiLCJyb2xlIjoibXVzaWNpYW4iLCJleHAiOjQxMDI0NDQ4MDAsImlzcyI6ImZ1enotaXNzIiwiYXVkIjoiZnV6ei1hdWQifQ",
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcmctMSIsInJvbGUiOiJvcmdhbml6ZXIiLCJleHAiOjQxMDI0NDQ4MDAsImlzcyI6ImZ1enotaXNzIiwiYXVkIjoiZnV6ei1hdWQifQ",
];

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let config = AuthConfig {
            key: Some(AuthKey::Hs256(Secret::new(FUZZ_KEY.to_vec()))),
            issuer: Some("fuzz-iss".into()),
            audience: Some("fuzz-aud".into()),
            public_reads: false,
            leeway_s: 30,
        };
        Verifier::new(&config).expect("key").expect("auth on")
    })
}

/// Runs the header checks on `data`.
pub fn check(data: &[u8]) {
    let mut fields = data.split(|b| *b == 0);
    let names = [
        "authorization",
        "if-match",
        "x-forwarded-for",
        "idempotency-key",
    ];
    let mut headers = HeaderMap::new();
    for name in names {
        if let Some(v) = fields.next().and_then(|f| HeaderValue::from_bytes(f).ok()) {
            headers.insert(name, v);
        }
    }
    if let Ok(Some(token)) = bearer(&headers) {
        assert!(
            !token.is_empty() && token.trim() == token,
            "bearer token {token:?}"
        );
        check_token(token);
    }
    if let Some(Ok(raw)) = data.split(|b| *b == 0).next().map(std::str::from_utf8) {
        check_token(raw); // the verifier also sees text no header would carry
    }
    if let Ok(Some(IfMatch::Versions(vs))) = IfMatch::from_headers(&headers) {
        let text = headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for v in vs {
            assert!(
                text.contains(&format!("\"{v}")),
                "version {v} not in {text:?}"
            );
        }
    }
    let _ = client_ip(None, &headers, true);
    let req = Request::new(
        Method::POST,
        "/v1/gigs/g-1/bookings".into(),
        String::new(),
        headers,
        "r-1".into(),
        Box::pin(futures_util::stream::empty()),
    );
    if let Ok(Some(key)) = idempotency::key_of(&req) {
        assert!(
            (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "idempotency key {key:?}"
        );
    }
}

fn check_token(token: &str) {
    if let Ok(p) = verifier().verify(token) {
        let signed = token.rsplit_once('.').map(|(s, _)| s).unwrap_or("");
        assert!(
            KNOWN.contains(&signed),
            "a token we never signed was accepted: {token:?}"
        );
        assert!(
            (1..=MAX_SUBJECT_BYTES).contains(&p.subject.len()),
            "subject of {} bytes",
            p.subject.len()
        );
    }
}
