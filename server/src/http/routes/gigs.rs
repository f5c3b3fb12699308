//! `/v1/gigs`: create or replace, read, delete, list.
//!
//! Same rules as musicians: a PUT body is a `Gig`, a read answers a `GigView` (gig, version,
//! bookings), the `ETag` is the version and `If-Match` guards PUT and DELETE. A change that
//! would break existing bookings (a new date, fewer seats than booked) is a 409 carrying the
//! engine's `gig_has_bookings` conflict.
//!
//! Ownership (see [`crate::http::auth`]): a gig an organizer writes is owned by their subject;
//! replacing, deleting, booking into, cancelling and matching a stored gig needs its owner or
//! an admin, checked before `If-Match` so a 412 never tells a stranger the version. A replace
//! that leaves `owner` out keeps the current owner. The owner check and the change are two
//! engine calls, like `If-Match`: a concurrent change of owner can slip between them.

use crate::http::app::App;
use crate::http::auth::Caller;
use crate::http::conditional::IfMatch;
use crate::http::problem::{expect_done, unexpected, ApiError};
use crate::http::query::{ListPage, Page};
use crate::http::request::Request;
use crate::http::response::ApiResponse;
use crate::http::routes::gig_path;
use mussikon_engine::{is_valid_id, Command, Effect, Gig, GigView};
use warp::http::StatusCode;

/// `PUT /v1/gigs/{id}`: 201 when created, 200 when replaced; the body is the stored view.
pub async fn put(app: &App, id: String, mut req: Request) -> Result<ApiResponse, ApiError> {
    let condition = IfMatch::from_headers(&req.headers)?;
    let mut gig: Gig = req.json(app.config().max_body_bytes).await?;
    if gig.id != id {
        return Err(ApiError::invalid(
            "id",
            format!("must equal the id in the path ({id})"),
        ));
    }
    let caller = req.caller.clone();
    gig.owner = caller.owner_for_new_gig(gig.owner.take())?;
    let (effect, view) = app
        .write(move |w| -> Result<(Effect, Option<GigView>), ApiError> {
            let current = w.engine().gig(&id)?;
            if let Some(v) = &current {
                caller.may_manage_gig(&id, v.gig.owner.as_deref())?;
                if gig.owner.is_none() {
                    gig.owner = v.gig.owner.clone();
                }
            }
            if let Some(c) = &condition {
                c.check(current.map(|v| v.version))?;
            }
            let effect = expect_done(w.execute(&Command::UpsertGig { gig })?.outcome)?;
            Ok((effect, w.engine().gig(&id)?))
        })
        .await??;
    let Effect::GigUpserted { id, created } = effect else {
        return Err(unexpected(effect));
    };
    let view = view.ok_or_else(|| ApiError::not_found("gig", &id))?;
    let resp = if created {
        ApiResponse::json(StatusCode::CREATED, &view)?.location(&gig_path(&id))
    } else {
        ApiResponse::json(StatusCode::OK, &view)?
    };
    Ok(resp.etag(view.version))
}

/// `GET /v1/gigs/{id}`.
pub async fn get(app: &App, id: String) -> Result<ApiResponse, ApiError> {
    let found = {
        let id = id.clone();
        app.blocking(move |e| e.gig(&id)).await??
    };
    let view = found.ok_or_else(|| ApiError::not_found("gig", &id))?;
    Ok(ApiResponse::json(StatusCode::OK, &view)?.etag(view.version))
}

/// `DELETE /v1/gigs/{id}`: 204, releasing the gig's bookings.
pub async fn delete(app: &App, id: String, req: &Request) -> Result<ApiResponse, ApiError> {
    let condition = IfMatch::from_headers(&req.headers)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found("gig", &id));
    }
    let caller = req.caller.clone();
    let effect = app
        .write(move |w| -> Result<Effect, ApiError> {
            let current = w.engine().gig(&id)?;
            if let Some(v) = &current {
                caller.may_manage_gig(&id, v.gig.owner.as_deref())?;
            }
            if let Some(c) = &condition {
                c.check(current.map(|v| v.version))?;
            }
            expect_done(w.execute(&Command::DeleteGig { id })?.outcome)
        })
        .await??;
    match effect {
        Effect::GigDeleted { .. } => Ok(ApiResponse::empty(StatusCode::NO_CONTENT)),
        other => Err(unexpected(other)),
    }
}

/// `GET /v1/gigs?after=ID&limit=N`: `{"items":[GigView…],"next":"ID"|null}` in id order.
pub async fn list(app: &App, req: &Request) -> Result<ApiResponse, ApiError> {
    let page = Page::from_query(&req.query)?;
    let limit = page.limit;
    let items = app
        .blocking(move |e| e.list_gigs(page.after.as_deref(), limit + 1))
        .await??;
    let page = ListPage::cut(items, limit, |v| v.gig.id.as_str());
    ApiResponse::json(StatusCode::OK, &page)
}

/// 403 unless `caller` may manage gig `id`. A gig that does not exist passes: the action that
/// follows answers its own 404.
pub async fn check_manager(app: &App, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if caller.manages_all_gigs() || !is_valid_id(id) {
        return Ok(());
    }
    let owner = {
        let id = id.to_string();
        app.blocking(move |e| e.gig(&id)).await??
    }
    .map(|v| v.gig.owner);
    match owner {
        None => Ok(()),
        Some(owner) => caller.may_manage_gig(id, owner.as_deref()),
    }
}
