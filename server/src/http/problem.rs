//! Every way a request can fail, and how each failure is shown to the client: an RFC 9457
//! `application/problem+json` body `{"type","title","status","detail","errors":[{"field","rule"}]}`.
//!
//! Promises: a client error is never a 5xx; a 5xx body never carries internals (the cause is
//! logged with the request id instead, and the body carries that id). The `type` of a problem is a
//! stable URN (`urn:mussikon:problem:<kind>`) that clients may switch on; `errors` is always
//! present (empty when no field is at fault). Extension members: `request_id` always,
//! `line`/`column` for malformed JSON, `conflict` (the engine's typed conflict) for 409,
//! `current_etag` for 412, `limit_bytes` for 413, `max_depth` for a body nested too deeply,
//! `retry_after_s` for 429 (which also carries `Retry-After`). A 401 carries
//! `WWW-Authenticate: Bearer` (RFC 6750), with `error="invalid_token"` when a token was sent.

use crate::http::response::{ApiResponse, PROBLEM_JSON};
use bytes::Bytes;
use mussikon_engine::{Conflict, EngineError, FieldError, Refusal};
use serde::Serialize;
use warp::http::header::{ALLOW, RETRY_AFTER, UPGRADE, WWW_AUTHENTICATE};
use warp::http::StatusCode;

/// The problem+json body, members in the order RFC 9457 lists them, extensions after. Published
/// in the OpenAPI document as the `Problem` schema.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub(crate) struct ProblemBody<'a> {
    /// Stable problem kind: `urn:mussikon:problem:<kind>`.
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:mussikon:problem:[a-z-]+$")]
    kind: String,
    /// Short summary of the kind.
    title: &'a str,
    /// The HTTP status code.
    status: u16,
    /// What went wrong with this request, in words.
    detail: String,
    /// Every broken field rule (422); empty otherwise.
    errors: &'a [FieldError],
    /// The request id, also sent as `X-Request-Id`.
    request_id: &'a str,
    /// Malformed JSON (400): 1-based line of the fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    /// Malformed JSON (400): 1-based column of the fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    /// The engine's typed conflict (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    conflict: Option<&'a Conflict>,
    /// The current ETag (412); `null` when the record does not exist.
    // `Some(None)` is a record that does not exist: serialized as `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_etag: Option<Option<String>>,
    /// The body limit that was exceeded, bytes (413).
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_depth: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u64>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not well-formed JSON (400).
    #[error("the body is not well-formed JSON: {message} (line {line}, column {column})")]
    MalformedJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// Some other malformed part of the request, e.g. a header (400).
    #[error("{0}")]
    BadRequest(String),
    /// The JSON body nests arrays/objects deeper than allowed (400).
    #[error("the body nests arrays and objects more than {limit} levels deep (rule: http.max_json_depth = {limit})")]
    TooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
    /// No valid bearer token (401). The reason never contains the token.
    #[error("{reason}")]
    Unauthorized {
        /// What was wrong with the credentials.
        reason: String,
        /// Whether a token (or Authorization header) was sent at all.
        token_given: bool,
    },
    /// A valid token whose role or ownership does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// A CORS preflight from an origin that is not allowed (403).
    #[error("origin {0} is not allowed to call this API from a browser (cors.allowed_origins)")]
    OriginNotAllowed(String),
    /// The client has used up its rate limit for this class of request (429).
    #[error("too many {class} requests from this client; retry after {retry_after_s} s")]
    TooManyRequests {
        /// `reads`, `writes` or `matches`.
        class: &'static str,
        /// Whole seconds until a request may succeed, ≥ 1.
        retry_after_s: u64,
    },
    /// Fields broke rules (422); every broken rule is listed.
    #[error("the request is invalid")]
    Invalid(Vec<FieldError>),
    /// The route or the record does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method (405).
    #[error("this route does not accept the method; allowed: {allow}")]
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: String,
    },
    /// The engine refused a change because of the current state (409).
    #[error("{0}")]
    Conflict(Conflict),
    /// `If-Match` named a version that is not the current one (412).
    #[error("{}", precondition_detail(.current))]
    PreconditionFailed {
        /// The record's current version, if it exists.
        current: Option<u64>,
    },
    /// The body is larger than the route accepts (413).
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The body's media type is not the one the route reads (415).
    #[error("send the body with Content-Type: {expected} (got {})", .got.as_deref().unwrap_or("none"))]
    UnsupportedMediaType {
        /// The media type expected.
        expected: &'static str,
        /// The media type sent, if any.
        got: Option<String>,
    },
    /// The route speaks WebSocket and the request is not an upgrade (426).
    #[error(
        "this route is a WebSocket: send a GET with Connection: Upgrade and Upgrade: websocket"
    )]
    UpgradeRequired,
    /// A search or match sent to a cluster node that keeps no search index; another node can
    /// answer it (421 Misdirected Request).
    #[error(
        "this node keeps no search index (index.enabled = false): send searches and matches to \
         a node that does, such as a read replica"
    )]
    NoSearchIndex,
    /// The service cannot answer now: a cluster without a leader, a full event stream (503, with Retry-After).
    #[error("{reason}")]
    Unavailable {
        /// Why, and what to do.
        reason: String,
        /// Whole seconds before a retry may succeed.
        retry_after_s: u64,
    },
    /// A fault of the server (500). The text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

fn precondition_detail(current: &Option<u64>) -> String {
    match current {
        Some(v) => format!("If-Match does not match the current version (ETag \"{v}\"); fetch the record and retry with its ETag"),
        None => "If-Match was given but the record does not exist".to_string(),
    }
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![FieldError {
            field: field.into(),
            rule: rule.into(),
        }])
    }

    /// A missing record of `kind` ("musician", "gig", …).
    pub fn not_found(kind: &str, id: &str) -> ApiError {
        ApiError::NotFound(format!("{kind} {id} not found"))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson { .. } | ApiError::BadRequest(_) | ApiError::TooDeep { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            ApiError::NoSearchIndex => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::MalformedJson { .. } => ("malformed-json", "Malformed JSON"),
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::TooDeep { .. } => ("json-too-deep", "JSON nested too deeply"),
            ApiError::Unauthorized { .. } => ("unauthorized", "Authentication required"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::OriginNotAllowed(_) => ("cors-origin-not-allowed", "Origin not allowed"),
            ApiError::TooManyRequests { .. } => ("rate-limited", "Too many requests"),
            ApiError::Invalid(_) => ("validation", "Invalid request"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::Conflict(_) => ("conflict", "Conflict with the current state"),
            ApiError::PreconditionFailed { .. } => ("precondition-failed", "Precondition failed"),
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Body too large"),
            ApiError::UnsupportedMediaType { .. } => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::UpgradeRequired => ("upgrade-required", "Upgrade required"),
            ApiError::NoSearchIndex => ("no-search-index", "This node keeps no search index"),
            ApiError::Unavailable { .. } => ("unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal", "Internal server error"),
        }
    }

    /// The problem+json response for this error. Internal errors are logged here, in the
    /// request's span, and answered without their cause.
    pub fn into_response(self, request_id: &str) -> ApiResponse {
        let status = self.status();
        let (kind, title) = self.kind_and_title();
        let detail = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                "the server failed to handle the request; report the request_id to the operators"
                    .to_string()
            }
            ApiError::Invalid(errors) => match errors.len() {
                1 => format!("{}: {}", errors[0].field, errors[0].rule),
                n => format!("{n} fields are invalid; see errors"),
            },
            other => other.to_string(),
        };
        let mut body = ProblemBody {
            kind: format!("urn:mussikon:problem:{kind}"),
            title,
            status: status.as_u16(),
            detail,
            errors: match &self {
                ApiError::Invalid(errors) => errors.as_slice(),
                _ => &[],
            },
            request_id,
            line: None,
            column: None,
            conflict: None,
            current_etag: None,
            limit_bytes: None,
            max_depth: None,
            retry_after_s: None,
        };
        match &self {
            ApiError::MalformedJson { line, column, .. } => {
                body.line = Some(*line);
                body.column = Some(*column);
            }
            ApiError::Conflict(c) => body.conflict = Some(c),
            ApiError::PreconditionFailed { current } => {
                body.current_etag = Some(current.map(crate::http::conditional::etag));
            }
            ApiError::PayloadTooLarge { limit } => body.limit_bytes = Some(*limit),
            ApiError::TooDeep { limit } => body.max_depth = Some(*limit),
            ApiError::TooManyRequests { retry_after_s, .. } => {
                body.retry_after_s = Some(*retry_after_s)
            }
            _ => {}
        }
        // Serializing plain strings and numbers cannot fail; fall back to a bare object anyway.
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let resp = ApiResponse::with_body(status, PROBLEM_JSON, Bytes::from(bytes));
        match self {
            ApiError::MethodNotAllowed { allow } => resp.header(ALLOW, &allow),
            ApiError::UpgradeRequired => resp.header(UPGRADE, "websocket"),
            ApiError::Unauthorized { token_given, .. } => resp.header(
                WWW_AUTHENTICATE,
                if token_given {
                    "Bearer realm=\"mussikon\", error=\"invalid_token\""
                } else {
                    "Bearer realm=\"mussikon\""
                },
            ),
            ApiError::TooManyRequests { retry_after_s, .. } => {
                resp.header(RETRY_AFTER, &retry_after_s.to_string())
            }
            ApiError::Unavailable { retry_after_s, .. } => {
                resp.header(RETRY_AFTER, &retry_after_s.to_string())
            }
            _ => resp,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Invalid(v) => ApiError::Invalid(v.errors),
            EngineError::NotFound { kind, id } => ApiError::not_found(kind, &id),
            EngineError::NoIndex => ApiError::NoSearchIndex,
            EngineError::Io(io) => match crate::http::cluster::unavailable(&io) {
                Some(e) => e,
                None => ApiError::Internal(EngineError::Io(io).to_string()),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Invalid(v) => ApiError::Invalid(v.errors),
            Refusal::NotFound { kind, id } => ApiError::not_found(&kind, &id),
            Refusal::Conflict(c) => c.into(),
        }
    }
}

impl From<Conflict> for ApiError {
    /// Guard refusals become the statuses of the checks they replace: a version mismatch is
    /// If-Match's 412, another owner is 403, a reused idempotency key is 422; every other
    /// conflict is a 409 carrying it.
    fn from(c: Conflict) -> ApiError {
        match c {
            Conflict::VersionMismatch { current, .. } => ApiError::PreconditionFailed { current },
            Conflict::NotOwner { gig_id } => ApiError::Forbidden(format!(
                "gig {gig_id} is not owned by the caller; an organizer manages only their own gigs"
            )),
            Conflict::NotBooked { gig_id, musician_id } => ApiError::Forbidden(format!(
                "musician {musician_id} is not booked on gig {gig_id}; only the gig's owner and the musicians booked on it take part in its chat"
            )),
            Conflict::IdempotencyKeyReused { .. } => ApiError::Invalid(vec![FieldError {
                field: "Idempotency-Key".into(),
                rule: "was already used for a different request (method, path or body); use a new key"
                    .into(),
            }]),
            other => ApiError::Conflict(other),
        }
    }
}

/// The effect of a command that took effect, or the error its refusal maps to.
pub fn expect_done(outcome: mussikon_engine::Outcome) -> Result<mussikon_engine::Effect, ApiError> {
    match outcome {
        mussikon_engine::Outcome::Done(effect) => Ok(effect),
        mussikon_engine::Outcome::Refused(r) => Err(r.into()),
        mussikon_engine::Outcome::Replayed { first } => expect_done(*first),
        // The API sends no batch (a cluster node splits its group commits before answering).
        other @ (mussikon_engine::Outcome::AlreadyApplied { .. }
        | mussikon_engine::Outcome::Batch { .. }) => {
            Err(ApiError::Internal(format!("execute answered {other:?}")))
        }
    }
}

/// An effect other than the one the command produces.
pub fn unexpected(effect: mussikon_engine::Effect) -> ApiError {
    ApiError::Internal(format!("unexpected effect {effect:?}"))
}
