//! Handlers, one module per resource, and the dispatch from a resolved route to its handler.
//!
//! A handler takes the shared [`App`], the captured path segments and the [`Request`], and
//! returns an [`ApiResponse`] or an [`ApiError`]; this module turns errors into problem bodies.
//! Handlers read bodies through [`Request::body`]/[`Request::json`] only and call the engine
//! through [`App::blocking`] only.

pub mod bookings;
pub mod bulk;
pub mod gigs;
pub mod matching;
pub mod messages;
pub mod musicians;
pub mod resource;
pub mod search;

use crate::http::app::App;
use crate::http::problem::ApiError;
use crate::http::request::Request;
use crate::http::response::ApiResponse;
use crate::http::router::{Resolved, RouteId};
use crate::http::{health, metrics, openapi};
use gigs::Gigs;
use musicians::Musicians;
use warp::http::Method;

/// Answers one request.
pub async fn dispatch(app: App, resolved: Resolved, req: Request) -> ApiResponse {
    let request_id = req.request_id.clone();
    let result = match resolved {
        Resolved::Found { id, params, .. } => route(&app, id, params, req).await,
        Resolved::MethodNotAllowed { allow, .. } => Err(ApiError::MethodNotAllowed { allow }),
        Resolved::NotFound => Err(
            match crate::http::cluster::admin_method_not_allowed(&req.method, &req.path) {
                Some(allow) => ApiError::MethodNotAllowed { allow },
                None => {
                    ApiError::NotFound("no route has this path; the API lives under /v1".into())
                }
            },
        ),
    };
    result.unwrap_or_else(|e| e.into_response(&request_id))
}

async fn route(
    app: &App,
    id: RouteId,
    params: Vec<String>,
    req: Request,
) -> Result<ApiResponse, ApiError> {
    let mut params = params.into_iter();
    let mut param = || params.next().unwrap_or_default();
    let method = if req.method == Method::HEAD {
        Method::GET
    } else {
        req.method.clone()
    };
    match (id, method) {
        (RouteId::Health, _) => health::live(),
        (RouteId::Ready, _) => health::ready(app).await,
        (RouteId::Metrics, _) => metrics::render(app).await,
        (RouteId::OpenApi, _) => openapi::serve(),
        (RouteId::Musicians, _) => musicians::list(app, &req).await,
        (RouteId::MusicianSearch, Method::GET) => search::get(app, &req).await,
        (RouteId::MusicianSearch, _) => search::post(app, req).await,
        (RouteId::MusicianBulk, _) => bulk::post(app, req).await,
        (RouteId::Musician, Method::PUT) => resource::put::<Musicians>(app, param(), req).await,
        (RouteId::Musician, Method::DELETE) => {
            resource::delete::<Musicians>(app, param(), &req).await
        }
        (RouteId::Musician, _) => resource::get::<Musicians>(app, param()).await,
        (RouteId::MusicianRatings, _) => musicians::rate(app, param(), req).await,
        (RouteId::Gigs, _) => gigs::list(app, &req).await,
        (RouteId::Gig, Method::PUT) => resource::put::<Gigs>(app, param(), req).await,
        (RouteId::Gig, Method::DELETE) => resource::delete::<Gigs>(app, param(), &req).await,
        (RouteId::Gig, _) => resource::get::<Gigs>(app, param()).await,
        (RouteId::GigMatches, _) => matching::stored(app, param(), &req).await,
        (RouteId::GigBookings, _) => bookings::book(app, param(), req).await,
        (RouteId::GigBooking, _) => {
            let gig = param();
            bookings::cancel(app, gig, param(), &req.caller).await
        }
        (RouteId::GigMessages, Method::POST) => messages::post(app, param(), req).await,
        (RouteId::GigMessages, _) => messages::list(app, param(), &req).await,
        (RouteId::Match, _) => matching::ad_hoc(app, req).await,
        (RouteId::Events, _) => Err(ApiError::UpgradeRequired),
    }
}

/// Path of a stored musician.
pub fn musician_path(id: &str) -> String {
    format!("/v1/musicians/{id}")
}

/// Path of a stored gig.
pub fn gig_path(id: &str) -> String {
    format!("/v1/gigs/{id}")
}
