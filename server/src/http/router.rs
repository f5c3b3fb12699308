//! The route table: the one list of every path the API serves, with its methods.
//!
//! Dispatch, the `Allow` header of a 405 and the `route` label of the request metrics all come
//! from [`ROUTES`], so they cannot disagree. Paths are matched segment by segment; `{name}`
//! segments capture a percent-decoded value. Routes are tried in order and the first whose path
//! matches decides, so the literal `/v1/musicians/search` and `/v1/musicians/bulk` come before
//! `/v1/musicians/{id}`: musicians whose id is `search` or `bulk` are therefore not addressable
//! by id over HTTP. HEAD is accepted wherever GET is.
//!
//! `GET /v1/events` is in the table too, so that its 405 and metrics follow the same rules; a
//! WebSocket upgrade request to it is taken by the events filter before the table is consulted
//! (see [`crate::http::filter`]), and a plain GET gets 426.

use warp::http::Method;

/// Every route the API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteId {
    /// `GET /health`
    Health,
    /// `GET /health/ready`
    Ready,
    /// `GET /metrics`
    Metrics,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /v1/musicians`
    Musicians,
    /// `GET|POST /v1/musicians/search`
    MusicianSearch,
    /// `POST /v1/musicians/bulk`
    MusicianBulk,
    /// `PUT|GET|DELETE /v1/musicians/{id}`
    Musician,
    /// `POST /v1/musicians/{id}/ratings`
    MusicianRatings,
    /// `GET /v1/gigs`
    Gigs,
    /// `PUT|GET|DELETE /v1/gigs/{id}`
    Gig,
    /// `GET /v1/gigs/{id}/matches`
    GigMatches,
    /// `POST /v1/gigs/{id}/bookings`
    GigBookings,
    /// `DELETE /v1/gigs/{id}/bookings/{musician_id}`
    GigBooking,
    /// `GET|POST /v1/gigs/{id}/messages`
    GigMessages,
    /// `GET /v1/events` (WebSocket)
    Events,
    /// `POST /v1/match`
    Match,
}

/// One entry of the table.
#[derive(Debug)]
pub struct RouteDef {
    /// Which route.
    pub id: RouteId,
    /// The path template, also the metrics label.
    pub template: &'static str,
    /// Methods served (HEAD is implied by GET).
    pub methods: &'static [Method],
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const PUT_GET_DELETE: &[Method] = &[Method::PUT, Method::GET, Method::DELETE];
const DELETE: &[Method] = &[Method::DELETE];

/// The route table, in matching order.
pub const ROUTES: &[RouteDef] = &[
    RouteDef {
        id: RouteId::Health,
        template: "/health",
        methods: GET,
    },
    RouteDef {
        id: RouteId::Ready,
        template: "/health/ready",
        methods: GET,
    },
    RouteDef {
        id: RouteId::Metrics,
        template: "/metrics",
        methods: GET,
    },
    RouteDef {
        id: RouteId::OpenApi,
        template: "/openapi.json",
        methods: GET,
    },
    RouteDef {
        id: RouteId::Musicians,
        template: "/v1/musicians",
        methods: GET,
    },
    RouteDef {
        id: RouteId::MusicianSearch,
        template: "/v1/musicians/search",
        methods: GET_POST,
    },
    RouteDef {
        id: RouteId::MusicianBulk,
        template: "/v1/musicians/bulk",
        methods: POST,
    },
    RouteDef {
        id: RouteId::Musician,
        template: "/v1/musicians/{id}",
        methods: PUT_GET_DELETE,
    },
    RouteDef {
        id: RouteId::MusicianRatings,
        template: "/v1/musicians/{id}/ratings",
        methods: POST,
    },
    RouteDef {
        id: RouteId::Gigs,
        template: "/v1/gigs",
        methods: GET,
    },
    RouteDef {
        id: RouteId::Gig,
        template: "/v1/gigs/{id}",
        methods: PUT_GET_DELETE,
    },
    RouteDef {
        id: RouteId::GigMatches,
        template: "/v1/gigs/{id}/matches",
        methods: GET,
    },
    RouteDef {
        id: RouteId::GigBookings,
        template: "/v1/gigs/{id}/bookings",
        methods: POST,
    },
    RouteDef {
        id: RouteId::GigBooking,
        template: "/v1/gigs/{id}/bookings/{musician_id}",
        methods: DELETE,
    },
    RouteDef {
        id: RouteId::GigMessages,
        template: "/v1/gigs/{id}/messages",
        methods: GET_POST,
    },
    RouteDef {
        id: RouteId::Match,
        template: "/v1/match",
        methods: POST,
    },
    RouteDef {
        id: RouteId::Events,
        template: EVENTS,
        methods: GET,
    },
];

/// The path of the WebSocket event stream.
pub const EVENTS: &str = "/v1/events";

/// The `route` label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// What the table says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A route serves this method on this path.
    Found {
        /// The route.
        id: RouteId,
        /// Its template.
        template: &'static str,
        /// Captured `{…}` segments, in order, percent-decoded.
        params: Vec<String>,
    },
    /// The path is served, but not with this method.
    MethodNotAllowed {
        /// The route's template.
        template: &'static str,
        /// The `Allow` header value.
        allow: String,
    },
    /// No route has this path.
    NotFound,
}

impl Resolved {
    /// The `route` metrics label.
    pub fn template(&self) -> &'static str {
        match self {
            Resolved::Found { template, .. } | Resolved::MethodNotAllowed { template, .. } => {
                template
            }
            Resolved::NotFound => UNMATCHED,
        }
    }
}

/// The `Allow` header value for `methods` (HEAD beside every GET).
pub(crate) fn allow(methods: &[Method]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for m in methods {
        names.push(m.as_str());
        if *m == Method::GET {
            names.push("HEAD");
        }
    }
    names.join(", ")
}

pub(crate) fn capture(template: &str, path: &str) -> Option<Vec<String>> {
    let mut want = template.split('/');
    let mut have = path.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return None;
                }
                let decoded = percent_encoding::percent_decode_str(h).decode_utf8().ok()?;
                params.push(decoded.into_owned());
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

/// Finds the route for `method` on `path` (a path without its query string).
///
/// ```
/// use mussikon_server::http::router::{resolve, Resolved, RouteId};
/// use warp::http::Method;
/// match resolve(&Method::GET, "/v1/musicians/m-1") {
///     Resolved::Found { id, params, .. } => { assert_eq!(id, RouteId::Musician); assert_eq!(params, ["m-1"]); }
///     other => panic!("{other:?}"),
/// }
/// assert!(matches!(resolve(&Method::PATCH, "/v1/musicians/m-1"), Resolved::MethodNotAllowed { .. }));
/// assert_eq!(resolve(&Method::GET, "/nope"), Resolved::NotFound);
/// ```
pub fn resolve(method: &Method, path: &str) -> Resolved {
    for def in ROUTES {
        let Some(params) = capture(def.template, path) else {
            continue;
        };
        let wanted = if *method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        return if def.methods.contains(wanted) {
            Resolved::Found {
                id: def.id,
                template: def.template,
                params,
            }
        } else {
            Resolved::MethodNotAllowed {
                template: def.template,
                allow: allow(def.methods),
            }
        };
    }
    Resolved::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_routes_win_over_captures() {
        assert!(matches!(
            resolve(&Method::GET, "/v1/musicians/search"),
            Resolved::Found {
                id: RouteId::MusicianSearch,
                ..
            }
        ));
        assert_eq!(
            resolve(&Method::PUT, "/v1/musicians/search"),
            Resolved::MethodNotAllowed {
                template: "/v1/musicians/search",
                allow: "GET, HEAD, POST".into()
            }
        );
    }

    #[test]
    fn captures_are_decoded_and_never_empty() {
        match resolve(&Method::DELETE, "/v1/gigs/g%2D1/bookings/m-2") {
            Resolved::Found { params, .. } => assert_eq!(params, ["g-1", "m-2"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(resolve(&Method::GET, "/v1/gigs/"), Resolved::NotFound);
        assert_eq!(resolve(&Method::GET, "/v1/gigs/g-1/"), Resolved::NotFound);
        assert_eq!(resolve(&Method::GET, "/v1/gigs/%FF"), Resolved::NotFound);
    }

    #[test]
    fn head_is_served_where_get_is() {
        assert!(matches!(
            resolve(&Method::HEAD, "/health"),
            Resolved::Found {
                id: RouteId::Health,
                ..
            }
        ));
        assert_eq!(
            resolve(&Method::POST, "/v1/musicians/m-1"),
            Resolved::MethodNotAllowed {
                template: "/v1/musicians/{id}",
                allow: "PUT, GET, HEAD, DELETE".into()
            }
        );
    }
}
