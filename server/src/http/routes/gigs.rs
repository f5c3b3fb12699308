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
//! that leaves `owner` out keeps the current owner. Both are guards on the command, decided by
//! the engine in the same apply as the change ([`crate::http::routes::resource`]); reads that need the owner
//! ([`check_manager`], for matches) read it first.

use crate::http::app::App;
use crate::http::auth::Caller;
use crate::http::problem::ApiError;
use crate::http::query::{ListPage, Page};
use crate::http::request::Request;
use crate::http::response::ApiResponse;
use crate::http::routes::gig_path;
use crate::http::routes::resource::Resource;
use mussikon_engine::{is_valid_id, Command, Engine, EngineError, Gig, GigView, Guard};
use warp::http::StatusCode;

/// `/v1/gigs/{id}` as a [`Resource`]: PUT, GET and DELETE are [`crate::http::routes::resource`]'s.
pub struct Gigs;

impl Resource for Gigs {
    type Body = Gig;
    type View = GigView;
    const KIND: &'static str = "gig";
    fn id(body: &Gig) -> &str {
        &body.id
    }
    fn path(id: &str) -> String {
        gig_path(id)
    }
    fn version(view: &GigView) -> u64 {
        view.version
    }
    fn read(engine: &Engine, id: &str) -> Result<Option<GigView>, EngineError> {
        engine.gig(id)
    }
    fn put_guard(caller: &Caller, gig: &mut Gig) -> Result<Guard, ApiError> {
        gig.owner = caller.owner_for_new_gig(gig.owner.take())?;
        Ok(Guard {
            owner: caller.gig_owner_condition(),
            keep_owner: true,
            ..Guard::default()
        })
    }
    fn delete_guard(caller: &Caller) -> Guard {
        Guard {
            owner: caller.gig_owner_condition(),
            ..Guard::default()
        }
    }
    fn upsert(gig: Gig) -> Command {
        Command::UpsertGig { gig }
    }
    fn delete(id: String) -> Command {
        Command::DeleteGig { id }
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
    let owner = app.read_now(|e| e.gig(id))?.map(|v| v.gig.owner);
    match owner {
        None => Ok(()),
        Some(owner) => caller.may_manage_gig(id, owner.as_deref()),
    }
}
