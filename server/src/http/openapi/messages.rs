//! The description of `POST|GET /v1/gigs/{id}/messages`, a gig's message thread
//! (`crate::http::routes::messages`), whose body and answer types carry their schemas.

pub use crate::http::routes::messages::{MessageBody, MessagePage};
pub use mussikon_engine::Message;
use utoipa::OpenApi;

/// The path of the thread.
pub const PATH: &str = "/v1/gigs/{id}/messages";

/// Query parameters of `GET /v1/gigs/{id}/messages`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Describes the parameters `routes::messages::list` reads; never built.
pub struct MessageParams {
    /// List messages with a `seq` greater than this: the `next` of the previous page.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Stubs carrying the operations; never called.
#[allow(dead_code)]
pub mod paths {
    use super::*;

    /// Post a message to a gig's thread
    #[utoipa::path(post, path = "/v1/gigs/{id}/messages", tag = "messages", operation_id = "postMessage",
        params(("id" = String, Path, description = "The gig's id."),
            ("Idempotency-Key" = Option<String>, Header, description = "1–255 visible ASCII characters; a retry with the same key and request gets the first answer (marked `Idempotent-Replayed: true`), also after a restart; keys are kept per caller for 24 h.")),
        request_body = MessageBody,
        responses(
            (status = 201, description = "Posted; the stored message.", body = Message,
                headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same key."))),
            (status = 400, description = "The body is not well-formed JSON, or the `Idempotency-Key` is malformed."),
            (status = 404, description = "No such gig."),
            (status = 409, description = "The gig already has a message with this `message_id` (`message_id_taken`)."),
            (status = 413, description = "The body is too large."),
            (status = 415, description = "The body is not `application/json`."),
            (status = 422, description = "`author`, `text` or `message_id` breaks rules, or the key was used for a different request."),
        ))]
    pub fn post_message() {}

    /// Read a gig's thread
    ///
    /// Messages in `seq` order, one page at a time: pass the page's `next` as `after`.
    #[utoipa::path(get, path = "/v1/gigs/{id}/messages", tag = "messages", operation_id = "listMessages",
        params(("id" = String, Path, description = "The gig's id."), MessageParams),
        responses(
            (status = 200, description = "One page.", body = MessagePage,
                example = json!({"items": [{"gig_id": "g-1", "seq": 1, "author": "Ana",
                    "text": "Sound check at 18:00?", "at": "2026-11-29T18:00:00.000Z", "at_ms": 1795975200000_i64, "version": 7}], "next": null})),
            (status = 404, description = "No such gig."),
            (status = 422, description = "A parameter is invalid or unknown."),
        ))]
    pub fn list_messages() {}
}

/// The thread's part of the document.
#[derive(OpenApi)]
#[openapi(
    paths(paths::post_message, paths::list_messages),
    components(schemas(MessageBody, Message, MessagePage)),
    tags((name = "messages", description = "A gig's message thread."))
)]
pub struct Messages;
