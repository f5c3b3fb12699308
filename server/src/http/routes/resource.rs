//! The stored records with an id in the path — musicians and gigs — and the one way they are
//! created or replaced, read and deleted.
//!
//! `PUT /v1/{kind}s/{id}` answers 201 (with `Location`) when it created the record, 200 when it
//! replaced it, with the stored view as body; `GET` answers the view; `DELETE` answers 204. The
//! `ETag` of a record is its version ([`crate::http::conditional`]).
//!
//! Promise: `If-Match` and every per-caller rule of a resource (a gig's owner, the rating a
//! musician may not set) travel with the command as an engine [`Guard`], so they are decided in
//! the same apply as the write: no other write can land between the check and the change.

use crate::http::app::App;
use crate::http::auth::Caller;
use crate::http::conditional::IfMatch;
use crate::http::problem::{expect_done, unexpected, ApiError};
use crate::http::request::Request;
use crate::http::response::ApiResponse;
use mussikon_engine::{is_valid_id, Command, Effect, Engine, EngineError, Expected, Guard};
use serde::de::DeserializeOwned;
use serde::Serialize;
use warp::http::StatusCode;

/// What differs between musicians and gigs.
pub trait Resource: 'static {
    /// The PUT body (the engine's record type).
    type Body: DeserializeOwned + Send + 'static;
    /// The stored view a read answers.
    type View: Serialize + Send + 'static;
    /// `musician` or `gig`, for messages.
    const KIND: &'static str;
    /// The id inside a body.
    fn id(body: &Self::Body) -> &str;
    /// The record's path.
    fn path(id: &str) -> String;
    /// The version of a view.
    fn version(view: &Self::View) -> u64;
    /// Reads a stored record.
    fn read(engine: &Engine, id: &str) -> Result<Option<Self::View>, EngineError>;
    /// Adjusts a PUT body for `caller` and says what the engine must check or keep.
    fn put_guard(caller: &Caller, body: &mut Self::Body) -> Result<Guard, ApiError>;
    /// What the engine must check before deleting for `caller`.
    fn delete_guard(caller: &Caller) -> Guard;
    /// The command storing `body`.
    fn upsert(body: Self::Body) -> Command;
    /// The command deleting `id`.
    fn delete(id: String) -> Command;
}

fn expected(condition: Option<IfMatch>) -> Option<Expected> {
    condition.map(|c| match c {
        IfMatch::Any => Expected::Exists,
        IfMatch::Versions(vs) => Expected::Versions(vs),
    })
}

/// `PUT`: create or replace.
pub async fn put<R: Resource>(
    app: &App,
    id: String,
    mut req: Request,
) -> Result<ApiResponse, ApiError> {
    let condition = IfMatch::from_headers(&req.headers)?;
    let mut body: R::Body = req.json(app.config().max_body_bytes).await?;
    if R::id(&body) != id {
        return Err(ApiError::invalid(
            "id",
            format!("must equal the id in the path ({id})"),
        ));
    }
    let mut guard = R::put_guard(&req.caller, &mut body)?;
    guard.version = expected(condition);
    let cmd = R::upsert(body).guarded_by(guard);
    let effect = expect_done(app.execute(cmd).await?.outcome)?;
    // One sled lookup: on the async worker, as a GET by id.
    let view = app.read_now(|e| R::read(e, &id))?;
    let (Effect::MusicianUpserted { id, created } | Effect::GigUpserted { id, created }) = effect
    else {
        return Err(unexpected(effect));
    };
    // A delete racing this request can leave nothing to show; the write itself happened.
    let view = view.ok_or_else(|| ApiError::not_found(R::KIND, &id))?;
    let version = R::version(&view);
    let resp = if created {
        ApiResponse::json(StatusCode::CREATED, &view)?.location(&R::path(&id))
    } else {
        ApiResponse::json(StatusCode::OK, &view)?
    };
    Ok(resp.etag(version))
}

/// `GET`.
pub async fn get<R: Resource>(app: &App, id: String) -> Result<ApiResponse, ApiError> {
    let found = app.read_now(|e| R::read(e, &id))?;
    let view = found.ok_or_else(|| ApiError::not_found(R::KIND, &id))?;
    let version = R::version(&view);
    Ok(ApiResponse::json(StatusCode::OK, &view)?.etag(version))
}

/// `DELETE`: 204.
pub async fn delete<R: Resource>(
    app: &App,
    id: String,
    req: &Request,
) -> Result<ApiResponse, ApiError> {
    let condition = IfMatch::from_headers(&req.headers)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(R::KIND, &id));
    }
    let mut guard = R::delete_guard(&req.caller);
    guard.version = expected(condition);
    let cmd = R::delete(id).guarded_by(guard);
    let effect = expect_done(app.execute(cmd).await?.outcome)?;
    match effect {
        Effect::MusicianDeleted { .. } | Effect::GigDeleted { .. } => {
            Ok(ApiResponse::empty(StatusCode::NO_CONTENT))
        }
        other => Err(unexpected(other)),
    }
}
