//! `/v1/gigs/{id}/bookings`: booking a musician into a gig's slot, and cancelling it.
//!
//! The engine checks and books in one step under its writer lock, so two requests racing for
//! the same musician on the same date get exactly one 201; the other gets 409 with the engine's
//! typed conflict (`musician_already_booked`, `slot_full`, `musician_busy`, …) in `conflict`.
//! A POST may carry `Idempotency-Key` (see [`crate::http::idempotency`]). The gig's ownership
//! (an organizer books into and cancels on their own gigs only) is a guard on the command,
//! checked by the engine in the same apply as the booking.

use crate::http::app::App;
use crate::http::auth::Caller;
use crate::http::idempotency;
use crate::http::problem::{expect_done, unexpected, ApiError};
use crate::http::request::{decode_json, Request};
use crate::http::response::ApiResponse;
use mussikon_engine::{is_valid_id, Booking, Command, Effect, Guard};
use serde::Deserialize;
use warp::http::StatusCode;

/// The body of `POST /v1/gigs/{id}/bookings`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingBody {
    /// Index of the slot in the gig's `slots` (a gig has at most 16).
    #[schema(minimum = 0, maximum = 15)]
    pub slot: i64,
    /// The musician to book.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub musician_id: String,
}

/// `POST /v1/gigs/{id}/bookings`: 201 with the booking, 409 with the conflict, 404 when the
/// gig or the musician does not exist.
pub async fn book(app: &App, gig_id: String, req: Request) -> Result<ApiResponse, ApiError> {
    if !is_valid_id(&gig_id) {
        return Err(ApiError::not_found("gig", &gig_id));
    }
    let guard = Guard {
        owner: req.caller.gig_owner_condition(),
        ..Guard::default()
    };
    idempotency::json_post(
        app,
        req,
        guard,
        |body| {
            let b: BookingBody = decode_json(&body)?;
            Ok(Command::Book(Booking {
                gig_id,
                slot: b.slot,
                musician_id: b.musician_id,
            }))
        },
        |effect| match effect {
            Effect::Booked(b) => Ok(ApiResponse::json(StatusCode::CREATED, &b)?
                .location(&format!("/v1/gigs/{}/bookings/{}", b.gig_id, b.musician_id))),
            other => Err(unexpected(other)),
        },
    )
    .await
}

/// `DELETE /v1/gigs/{id}/bookings/{musician_id}`: 204, or 404 when there is no such booking.
pub async fn cancel(
    app: &App,
    gig_id: String,
    musician_id: String,
    caller: &Caller,
) -> Result<ApiResponse, ApiError> {
    if !is_valid_id(&gig_id) || !is_valid_id(&musician_id) {
        return Err(ApiError::NotFound(format!(
            "booking {gig_id}/{musician_id} not found"
        )));
    }
    let cmd = Command::CancelBooking {
        gig_id,
        musician_id,
    }
    .guarded_by(Guard {
        owner: caller.gig_owner_condition(),
        ..Guard::default()
    });
    let done = app.execute(cmd).await?;
    match expect_done(done.outcome)? {
        Effect::Cancelled(_) => Ok(ApiResponse::empty(StatusCode::NO_CONTENT)),
        other => Err(unexpected(other)),
    }
}
