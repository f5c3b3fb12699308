//! The description of `POST|GET /v1/gigs/{id}/messages`, a gig's message thread.
//!
//! Kept apart from the routes the router serves today because other work adds these routes:
//! when it lands, its request and answer types should derive `utoipa::ToSchema` and replace the
//! description-only schemas below, and the two entries of
//! [`super::AHEAD_OF_ROUTER`] can go. Until then the route-coverage test accepts them as
//! documented ahead of the router.

use utoipa::OpenApi;

/// The path of the thread.
pub const PATH: &str = "/v1/gigs/{id}/messages";

/// The body of `POST /v1/gigs/{id}/messages`.
#[derive(utoipa::ToSchema)]
#[schema(examples(json!({"author": "Ana", "text": "Sound check at 18:00?"})))]
#[allow(dead_code)] // Description only; see the module documentation.
pub struct MessageBody {
    /// Who writes.
    author: String,
    /// What they write.
    text: String,
}

/// One message of a gig's thread.
#[derive(utoipa::ToSchema)]
#[schema(examples(json!({"gig_id": "g-1", "seq": 1, "author": "Ana",
    "text": "Sound check at 18:00?", "at": "2026-11-29T18:00:00.000Z", "at_ms": 1795975200000_i64, "version": 7})))]
#[allow(dead_code)] // Description only; see the module documentation.
pub struct Message {
    /// The gig.
    gig_id: String,
    /// Position in the thread, from 1, increasing.
    #[schema(minimum = 1)]
    seq: u64,
    /// Who wrote it.
    author: String,
    /// What they wrote.
    text: String,
    /// When the server accepted it (RFC 3339).
    #[schema(format = DateTime)]
    at: String,
}

/// One page of a thread: `{"items":[…],"next":N|null}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Description only; see the module documentation.
pub struct MessagePage {
    /// Messages in `seq` order.
    items: Vec<Message>,
    /// The `after` of the following page; null on the last one.
    next: Option<u64>,
}

/// Query parameters of `GET /v1/gigs/{id}/messages`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Description only; see the module documentation.
pub struct MessageParams {
    /// List messages with a `seq` greater than this: the `next` of the previous page.
    #[param(minimum = 0)]
    after: Option<u64>,
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
        params(("id" = String, Path, description = "The gig's id.")),
        request_body = MessageBody,
        responses(
            (status = 201, description = "Posted; the stored message.", body = Message),
            (status = 400, description = "The body is not well-formed JSON."),
            (status = 404, description = "No such gig."),
            (status = 413, description = "The body is too large."),
            (status = 415, description = "The body is not `application/json`."),
            (status = 422, description = "`author` or `text` breaks rules."),
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
