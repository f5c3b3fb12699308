//! The description of `GET /v1/events`, the WebSocket event stream.
//!
//! Kept apart from the routes the router serves today because other work adds this route: when
//! it lands, its entry in [`super::AHEAD_OF_ROUTER`] can go, and the event payloads can be
//! described here once they are settled. OpenAPI describes the upgrade handshake only; what
//! flows over the socket is described in words.

use utoipa::OpenApi;

/// The path of the stream.
pub const PATH: &str = "/v1/events";

/// Stubs carrying the operation; never called.
#[allow(dead_code)]
pub mod paths {
    /// Subscribe to events (WebSocket)
    ///
    /// A WebSocket upgrade (RFC 6455): send `GET /v1/events` with `Connection: Upgrade`,
    /// `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`, plus the bearer
    /// token as on every `/v1` route. The server answers `101 Switching Protocols`; from then on it
    /// sends one JSON text frame per event, in the order the changes were applied. A request that
    /// is not an upgrade is refused with a problem body.
    #[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "events",
        params(
            ("Connection" = String, Header, description = "`Upgrade`."),
            ("Upgrade" = String, Header, description = "`websocket`."),
            ("Sec-WebSocket-Version" = String, Header, description = "`13`."),
            ("Sec-WebSocket-Key" = String, Header, description = "A base64-encoded 16-byte nonce."),
        ),
        responses(
            (status = 101, description = "Switching Protocols: the connection is now a WebSocket carrying JSON event frames.",
                headers(("Upgrade" = String, description = "`websocket`."),
                    ("Connection" = String, description = "`Upgrade`."),
                    ("Sec-WebSocket-Accept" = String, description = "Proof of the handshake (RFC 6455 §4.2.2)."))),
            (status = 400, description = "Not a WebSocket upgrade request."),
            (status = 503, description = "`events.max_subscribers` event streams are open; retry later (problem body)."),
        ))]
    pub fn events() {}
}

/// The stream's part of the document.
#[derive(OpenApi)]
#[openapi(
    paths(paths::events),
    tags((name = "events", description = "Live events over a WebSocket."))
)]
pub struct Events;
