//! Response compression, honouring the client's `Accept-Encoding` (RFC 9110 §12.5.3).
//!
//! A response is gzip-encoded when the request's `Accept-Encoding` accepts `gzip` (by name or
//! through `*`) with a non-zero weight, its body is at least [`MIN_BYTES`], it is of a textual
//! type we send (JSON, problem+json, NDJSON, text) and it carries no `Content-Encoding` yet.
//! Such responses also carry `Vary: Accept-Encoding`, compressed or not, so caches keep the
//! variants apart. Without `Accept-Encoding`, or with `gzip;q=0`, the body goes out as is.
//! Brotli is not offered: gzip alone keeps the build small, and every HTTP client speaks it.

use crate::http::response::ApiResponse;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use warp::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use warp::http::{HeaderMap, HeaderValue};

/// Smallest body worth compressing, bytes.
pub const MIN_BYTES: usize = 1024;

/// Does `Accept-Encoding` accept gzip? Codings are compared case-insensitively; an explicit
/// `gzip` entry wins over `*`.
///
/// ```
/// use mussikon_server::http::compress::accepts_gzip;
/// assert!(accepts_gzip("gzip, deflate, br"));
/// assert!(accepts_gzip("br;q=1.0, *;q=0.1"));
/// assert!(!accepts_gzip("gzip;q=0, *"));
/// assert!(!accepts_gzip("identity"));
/// ```
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .find_map(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = Some(q > 0.0),
            _ => {}
        }
    }
    star.unwrap_or(false)
}

fn compressible(resp: &ApiResponse) -> bool {
    let ctype = resp
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let textual =
        ctype.starts_with("text/") || (ctype.starts_with("application/") && ctype.contains("json"));
    textual && !resp.headers.contains_key(CONTENT_ENCODING)
}

/// Compresses `resp` in place when the request's headers allow it (see the module comment).
pub fn negotiate(request: &HeaderMap, resp: &mut ApiResponse) {
    if !compressible(resp) {
        return;
    }
    resp.headers
        .append(VARY, HeaderValue::from_static("accept-encoding"));
    if resp.body.len() < MIN_BYTES {
        return;
    }
    let accepted = request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_gzip);
    if !accepted {
        return;
    }
    let mut gz = GzEncoder::new(Vec::with_capacity(resp.body.len() / 4), Compression::fast());
    // Writing into a Vec cannot fail; if it ever did, the body goes out uncompressed.
    if gz.write_all(&resp.body).is_err() {
        return;
    }
    if let Ok(out) = gz.finish() {
        resp.body = bytes::Bytes::from(out);
        resp.headers
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read;
    use warp::http::StatusCode;

    fn big() -> ApiResponse {
        ApiResponse::with_body(
            StatusCode::OK,
            crate::http::response::JSON,
            bytes::Bytes::from(format!("[{}0]", "1,".repeat(2000))),
        )
    }

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn gzips_when_asked_and_round_trips() {
        let mut r = big();
        let plain = r.body.clone();
        negotiate(&accept("br, gzip"), &mut r);
        assert_eq!(r.headers[CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers[VARY], "accept-encoding");
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);
        assert!(r.body.len() < plain.len());
    }

    #[test]
    fn leaves_the_body_alone_otherwise() {
        for h in [HeaderMap::new(), accept("gzip;q=0"), accept("identity")] {
            let mut r = big();
            negotiate(&h, &mut r);
            assert!(!r.headers.contains_key(CONTENT_ENCODING));
            assert_eq!(r.headers[VARY], "accept-encoding");
        }
        let mut small = ApiResponse::json(StatusCode::OK, &[1]).unwrap();
        negotiate(&accept("gzip"), &mut small);
        assert!(!small.headers.contains_key(CONTENT_ENCODING));
    }
}
