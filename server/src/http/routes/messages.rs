//! `/v1/gigs/{id}/messages`: a gig's chat thread.
//!
//! `POST` with `{"author":"ID","text":"…"}` (optionally `"message_id":"ID"`, unique within the
//! gig, for clients that want to recognise their own messages) stores a message and answers
//! 201 with it: its number in the thread (`seq`, from 1), its time (`at`, RFC 3339 UTC, and
//! `at_ms`) and `version` (the applied sequence). The server stamps the time from its clock
//! before building the command; the engine reads no clock. Text is trimmed and must then hold
//! 1–2000 characters. A missing gig is 404, a taken `message_id` is 409
//! (`message_id_taken`). Honours `Idempotency-Key`, since a retry would post twice.
//!
//! Who takes part: admins, the gig's owner and the musicians booked on it (403 for anyone
//! else). For a post this is a guard on the command ([`crate::http::auth::Caller::chat_guard`]),
//! decided in the same apply as the message; a list checks the stored gig first.
//!
//! `GET ?after=N&limit=N` lists the thread in posting order: `{"items":[Message…],"next":N|null}`
//! where `next` is the `after` of the following page (null on the last one); `limit` is 1–1000,
//! 100 by default.

use crate::http::app::App;
use crate::http::idempotency;
use crate::http::problem::{unexpected, ApiError};
use crate::http::query::Params;
use crate::http::request::{decode_json, Request};
use crate::http::response::ApiResponse;
use mussikon_engine::{is_valid_id, Command, Effect, Message, Timestamp};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;

/// The body of `POST /v1/gigs/{id}/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(examples(json!({"author": "m-1", "text": "Sound check at 18:00?"})))]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// Who writes (an id).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub author: String,
    /// The text, 1–2000 characters after trimming (so not blank).
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    pub text: String,
    /// The client's id for the message, unique within the gig (a second message with it is
    /// refused, 409 `message_id_taken`).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub message_id: Option<String>,
}

/// One page of a thread.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    /// Messages in posting order.
    pub items: Vec<Message>,
    /// The `after` of the next page; null on the last page.
    pub next: Option<u64>,
}

/// `POST /v1/gigs/{id}/messages`.
pub async fn post(app: &App, gig_id: String, req: Request) -> Result<ApiResponse, ApiError> {
    if !is_valid_id(&gig_id) {
        return Err(ApiError::not_found("gig", &gig_id));
    }
    let guard = req.caller.chat_guard();
    idempotency::json_post(
        app,
        req,
        guard,
        |body| {
            let b: MessageBody = decode_json(&body)?;
            Ok(Command::PostMessage {
                gig_id,
                message_id: b.message_id,
                author: b.author,
                text: b.text,
                at: Timestamp::Millis(idempotency::now_ms()),
            })
        },
        |effect| match effect {
            Effect::MessagePosted(m) => ApiResponse::json(StatusCode::CREATED, &m),
            other => Err(unexpected(other)),
        },
    )
    .await
}

/// `GET /v1/gigs/{id}/messages?after=N&limit=N`.
pub async fn list(app: &App, gig_id: String, req: &Request) -> Result<ApiResponse, ApiError> {
    let mut p = Params::parse(&req.query);
    let limit = p.page_limit();
    // Message numbers are documented as int64: larger values are refused like any other
    // number out of range, not read as u64.
    let rule = "must be a message number: an integer from 0 to 9223372036854775807 (the next field of a page)";
    let after = match p.parsed::<i64>("after", rule) {
        Some(n) if n < 0 => {
            p.fail("after", rule);
            None
        }
        n => n.map(i64::unsigned_abs),
    };
    p.finish()?;
    if !is_valid_id(&gig_id) {
        return Err(ApiError::not_found("gig", &gig_id));
    }
    let gig = app
        .read_now(|e| e.gig(&gig_id))?
        .ok_or_else(|| ApiError::not_found("gig", &gig_id))?;
    req.caller.may_follow_gig(&gig)?;
    let mut items = app
        .blocking(move |e| e.messages(&gig_id, after, limit + 1))
        .await??;
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(|m| m.seq)
    } else {
        None
    };
    ApiResponse::json(StatusCode::OK, &MessagePage { items, next })
}
