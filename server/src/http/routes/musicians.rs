//! `/v1/musicians`: create or replace, read, delete, list, rate.
//!
//! Bodies and answers use the engine's JSON forms unchanged: a PUT body is a `Musician`, a read
//! answers a `MusicianView` (profile, version, booked dates). The `ETag` of a musician is its
//! version; `If-Match` on PUT and DELETE is checked as described in
//! [`crate::http::conditional`].
//!
//! A musician editing their own profile cannot rate themselves: a PUT by a token of role
//! `musician` keeps the stored `rating` (none for a new profile) whatever the body says.

use crate::http::app::App;
use crate::http::auth::{Caller, Role};
use crate::http::conditional::IfMatch;
use crate::http::idempotency;
use crate::http::problem::{expect_done, unexpected, ApiError};
use crate::http::query::{ListPage, Page};
use crate::http::request::{decode_json, Request};
use crate::http::response::ApiResponse;
use crate::http::routes::musician_path;
use mussikon_engine::{is_valid_id, Command, Effect, Musician, MusicianView};
use serde::Deserialize;
use warp::http::StatusCode;

/// `PUT /v1/musicians/{id}`: 201 when created, 200 when replaced; the body is the stored view.
pub async fn put(app: &App, id: String, mut req: Request) -> Result<ApiResponse, ApiError> {
    let condition = IfMatch::from_headers(&req.headers)?;
    let mut musician: Musician = req.json(app.config().max_body_bytes).await?;
    if musician.id != id {
        return Err(ApiError::invalid(
            "id",
            format!("must equal the id in the path ({id})"),
        ));
    }
    let self_service = matches!(&req.caller, Caller::User(p) if p.role == Role::Musician);
    let (effect, view) = app
        .write(
            move |w| -> Result<(Effect, Option<MusicianView>), ApiError> {
                let current = w.engine().musician(&id)?;
                if self_service {
                    musician.rating = current.as_ref().and_then(|v| v.musician.rating);
                }
                if let Some(c) = &condition {
                    c.check(current.map(|v| v.version))?;
                }
                let effect =
                    expect_done(w.execute(&Command::UpsertMusician { musician })?.outcome)?;
                Ok((effect, w.engine().musician(&id)?))
            },
        )
        .await??;
    let Effect::MusicianUpserted { id, created } = effect else {
        return Err(unexpected(effect));
    };
    // A delete racing this request can leave nothing to show; the write itself happened.
    let view = view.ok_or_else(|| ApiError::not_found("musician", &id))?;
    let resp = if created {
        ApiResponse::json(StatusCode::CREATED, &view)?.location(&musician_path(&id))
    } else {
        ApiResponse::json(StatusCode::OK, &view)?
    };
    Ok(resp.etag(view.version))
}

/// `GET /v1/musicians/{id}`.
pub async fn get(app: &App, id: String) -> Result<ApiResponse, ApiError> {
    let found = {
        let id = id.clone();
        app.blocking(move |e| e.musician(&id)).await??
    };
    let view = found.ok_or_else(|| ApiError::not_found("musician", &id))?;
    Ok(ApiResponse::json(StatusCode::OK, &view)?.etag(view.version))
}

/// `DELETE /v1/musicians/{id}`: 204, releasing the musician's bookings.
pub async fn delete(app: &App, id: String, req: &Request) -> Result<ApiResponse, ApiError> {
    let condition = IfMatch::from_headers(&req.headers)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found("musician", &id));
    }
    let effect = app
        .write(move |w| -> Result<Effect, ApiError> {
            if let Some(c) = &condition {
                c.check(w.engine().musician(&id)?.map(|v| v.version))?;
            }
            expect_done(w.execute(&Command::DeleteMusician { id })?.outcome)
        })
        .await??;
    match effect {
        Effect::MusicianDeleted { .. } => Ok(ApiResponse::empty(StatusCode::NO_CONTENT)),
        other => Err(unexpected(other)),
    }
}

/// `GET /v1/musicians?after=ID&limit=N`: `{"items":[MusicianView…],"next":"ID"|null}` in id
/// order; `next` is the `after` of the following page.
pub async fn list(app: &App, req: &Request) -> Result<ApiResponse, ApiError> {
    let page = Page::from_query(&req.query)?;
    let limit = page.limit;
    let items = app
        .blocking(move |e| e.list_musicians(page.after.as_deref(), limit + 1))
        .await??;
    let page = ListPage::cut(items, limit, |v| v.musician.id.as_str());
    ApiResponse::json(StatusCode::OK, &page)
}

/// The body of `POST /v1/musicians/{id}/ratings`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingBody {
    /// 1–5.
    pub stars: i64,
}

/// `POST /v1/musicians/{id}/ratings`: folds one rating into the musician's average and answers
/// the engine's `rated` effect. Honours `Idempotency-Key`, since a retry would rate twice.
pub async fn rate(app: &App, id: String, req: Request) -> Result<ApiResponse, ApiError> {
    if !is_valid_id(&id) {
        return Err(ApiError::not_found("musician", &id));
    }
    idempotency::json_post(app, req, |body| async move {
        let rating: RatingBody = decode_json(&body)?;
        let effect = app
            .write(move |w| {
                w.execute(&Command::RateMusician {
                    musician_id: id,
                    stars: rating.stars,
                })
            })
            .await??;
        match expect_done(effect.outcome)? {
            rated @ Effect::Rated { .. } => ApiResponse::json(StatusCode::OK, &rated),
            other => Err(unexpected(other)),
        }
    })
    .await
}
