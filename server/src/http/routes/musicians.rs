//! `/v1/musicians`: create or replace, read, delete, list, rate.
//!
//! Bodies and answers use the engine's JSON forms unchanged: a PUT body is a `Musician`, a read
//! answers a `MusicianView` (profile, version, booked dates). The `ETag` of a musician is its
//! version; `If-Match` on PUT and DELETE is checked by the engine in the same apply as the
//! write ([`crate::http::routes::resource`]).
//!
//! A musician editing their own profile cannot rate themselves: a PUT by a token of role
//! `musician` keeps the stored `rating` (none for a new profile) whatever the body says (a
//! `keep_rating` guard, so a rating landing meanwhile is not lost).

use crate::http::app::App;
use crate::http::auth::{Caller, Role};
use crate::http::idempotency;
use crate::http::problem::{unexpected, ApiError};
use crate::http::query::{ListPage, Page};
use crate::http::request::{decode_json, Request};
use crate::http::response::ApiResponse;
use crate::http::routes::musician_path;
use crate::http::routes::resource::Resource;
use mussikon_engine::{
    is_valid_id, Command, Effect, Engine, EngineError, Guard, Musician, MusicianView,
};
use serde::Deserialize;
use warp::http::StatusCode;

/// `/v1/musicians/{id}` as a [`Resource`]: PUT, GET and DELETE are [`crate::http::routes::resource`]'s.
pub struct Musicians;

impl Resource for Musicians {
    type Body = Musician;
    type View = MusicianView;
    const KIND: &'static str = "musician";
    fn id(body: &Musician) -> &str {
        &body.id
    }
    fn path(id: &str) -> String {
        musician_path(id)
    }
    fn version(view: &MusicianView) -> u64 {
        view.version
    }
    fn read(engine: &Engine, id: &str) -> Result<Option<MusicianView>, EngineError> {
        engine.musician(id)
    }
    fn put_guard(caller: &Caller, _: &mut Musician) -> Result<Guard, ApiError> {
        Ok(Guard {
            keep_rating: matches!(caller, Caller::User(p) if p.role == Role::Musician),
            ..Guard::default()
        })
    }
    fn delete_guard(_: &Caller) -> Guard {
        Guard::default()
    }
    fn upsert(musician: Musician) -> Command {
        Command::UpsertMusician { musician }
    }
    fn delete(id: String) -> Command {
        Command::DeleteMusician { id }
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
    idempotency::json_post(
        app,
        req,
        Guard::default(),
        |body| {
            let rating: RatingBody = decode_json(&body)?;
            Ok(Command::RateMusician {
                musician_id: id,
                stars: rating.stars,
            })
        },
        |effect| match effect {
            rated @ Effect::Rated { .. } => ApiResponse::json(StatusCode::OK, &rated),
            other => Err(unexpected(other)),
        },
    )
    .await
}
