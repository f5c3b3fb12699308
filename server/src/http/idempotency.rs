//! `Idempotency-Key`: a retried POST gets the first answer instead of doing the work twice —
//! after a restart too, and (once replicated) on every node.
//!
//! The key does not live in the server: it travels inside the command, as the engine's
//! [`IdempotencyKey`] in a [`Guard`], and the engine records the command's outcome under it in
//! the same transaction as the command's effects. A retry carrying the same key and the same
//! request (method, path, body: the fingerprint) is answered from the recorded outcome, built
//! into the same response as the first time and marked `Idempotent-Replayed: true`; the same key
//! with a different request is refused (422). Two requests with one key that race are
//! serialized by the engine's writer: one runs, the other replays it.
//!
//! What is recorded is the engine's outcome (the effect, or the refusal: a 404 or a 409 is
//! replayed as such). Requests refused before a command is built (malformed JSON, a bad field)
//! change nothing and record nothing; a retry is judged afresh and gets the same answer.
//!
//! Keys are scoped by caller (the token's subject; one shared scope without authentication), so
//! one client's key never answers another's request. Retention is the engine's: the last
//! [`mussikon_engine::IDEMPOTENCY_KEYS_KEPT`] keys, each for
//! [`mussikon_engine::IDEMPOTENCY_TTL_MS`] (24 h) by the request times the server stamps.

use crate::http::app::App;
use crate::http::auth::Caller;
use crate::http::problem::{expect_done, ApiError};
use crate::http::request::{BodyKind, Request};
use crate::http::response::ApiResponse;
use mussikon_engine::{Command, Effect, Guard, IdempotencyKey, Outcome};
use sha2::{Digest, Sha256};
use warp::http::header::HeaderName;

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";
/// The response header marking a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The fingerprint of a request: method, path and body, hashed with SHA-256 (stable across
/// builds and machines, since it is stored) and cut to 64 bits.
pub fn fingerprint(req: &Request, body: &[u8]) -> u64 {
    let mut h = Sha256::new();
    for part in [
        req.method.as_str().as_bytes(),
        b"\0",
        req.path.as_bytes(),
        b"\0",
    ] {
        h.update(part);
    }
    h.update(body);
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// The request's key, if it sent one: 1–255 visible ASCII characters.
pub fn key_of(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers.get(HEADER) else {
        return Ok(None);
    };
    // `to_str` admits spaces and tabs; a key is visible ASCII only (0x21-0x7E), so that two
    // keys that print alike are the same key.
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    let visible = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if key.is_empty() || key.len() > MAX_KEY_LEN || !visible {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_string()))
}

/// The key as the engine stores it: the caller's scope, a newline, the client's key.
fn scoped(caller: &Caller, key: &str) -> String {
    format!("{}\n{key}", caller.subject().unwrap_or("-"))
}

/// Milliseconds since the Unix epoch by this server's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The shape of every POST that must not take effect twice: reads the JSON body, `build`s the
/// command from it, guards it with `guard` plus the request's `Idempotency-Key`, executes it
/// and turns the effect into the answer with `respond` — the same function for the first
/// answer and its replays.
pub async fn json_post<B, R>(
    app: &App,
    mut req: Request,
    mut guard: Guard,
    build: B,
    respond: R,
) -> Result<ApiResponse, ApiError>
where
    B: FnOnce(bytes::Bytes) -> Result<Command, ApiError>,
    R: FnOnce(Effect) -> Result<ApiResponse, ApiError>,
{
    let key = key_of(&req)?;
    let body = req
        .body(BodyKind::Json, app.config().max_body_bytes)
        .await?;
    let fingerprint = fingerprint(&req, &body);
    let command = build(body)?;
    guard.idempotency = key.map(|k| IdempotencyKey {
        key: scoped(&req.caller, &k),
        fingerprint,
        at_ms: now_ms(),
    });
    let cmd = command.guarded_by(guard);
    let done = app.execute(cmd).await?;
    match done.outcome {
        Outcome::Replayed { first } => {
            let replayed = HeaderName::from_static(REPLAYED);
            Ok(match expect_done(*first).and_then(respond) {
                Ok(resp) => resp.header(replayed, "true"),
                Err(e) => e.into_response(&req.request_id).header(replayed, "true"),
            })
        }
        outcome => respond(expect_done(outcome)?),
    }
}
