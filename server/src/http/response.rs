//! The response a handler returns: status, headers and a fully buffered body.
//!
//! Handlers build [`ApiResponse`] values rather than warp replies so that a response can be kept
//! (the idempotency cache replays it), inspected (the pipeline reads its status for metrics and
//! logs) and decorated (request id) before it becomes a warp response at the very end.

use crate::http::problem::ApiError;
use bytes::Bytes;
use serde::Serialize;
use warp::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, ETAG, LOCATION};
use warp::http::{HeaderMap, StatusCode};

/// Media type of every JSON body the API returns.
pub const JSON: &str = "application/json";
/// Media type of error bodies (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A complete response.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers (content type included).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl ApiResponse {
    /// A response without a body.
    pub fn empty(status: StatusCode) -> ApiResponse {
        ApiResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// A body of `content_type`.
    pub fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> ApiResponse {
        let mut r = ApiResponse::empty(status);
        r.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        r.body = body;
        r
    }

    /// `value` serialized as JSON.
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<ApiResponse, ApiError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| ApiError::Internal(format!("serializing the response: {e}")))?;
        Ok(ApiResponse::with_body(status, JSON, Bytes::from(body)))
    }

    /// Sets a header (replacing any value it had). A value that is not a valid header value is
    /// dropped: callers only pass values they built from ids and numbers.
    pub fn header(mut self, name: HeaderName, value: &str) -> ApiResponse {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    /// Sets `ETag` to the quoted record version.
    pub fn etag(self, version: u64) -> ApiResponse {
        self.header(ETAG, &crate::http::conditional::etag(version))
    }

    /// Sets `Location`.
    pub fn location(self, path: &str) -> ApiResponse {
        self.header(LOCATION, path)
    }

    /// Converts into the response warp sends.
    pub fn into_warp(self) -> warp::reply::Response {
        let mut resp = warp::reply::Response::new(self.body.into());
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}
