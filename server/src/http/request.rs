//! The request as handlers see it, and the one way a body is read: media type checked, size
//! capped, JSON decoded with a precise error.
//!
//! Promises:
//! - a body is never buffered past the route's limit; a larger one is answered 413 (a declared
//!   `Content-Length` over the limit is refused before any byte is read);
//! - a body whose media type is not the route's gets 415, whatever its bytes;
//! - JSON that is not well-formed gets 400 with the line and column of the fault; well-formed
//!   JSON of the wrong shape (missing or unknown field, wrong type) gets 422 naming the field by
//!   its JSON path, the same path syntax the engine's validation uses (`instruments[0].level`);
//! - a JSON body (or an NDJSON line) nesting arrays and objects deeper than
//!   `http.max_json_depth` gets 400 `json-too-deep` before it is parsed.

use crate::http::auth::Caller;
use crate::http::problem::ApiError;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use mussikon_engine::FieldError;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use warp::http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use warp::http::{HeaderMap, Method};

/// The request body, not yet read.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// How many bytes past the limit are read and thrown away before a 413 is answered, so that a
/// client still sending gets the answer rather than a reset connection.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;

/// What a route's body must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (or any `application/*+json`).
    Json,
    /// `application/x-ndjson`: one JSON object per line.
    Ndjson,
}

impl BodyKind {
    fn expected(self) -> &'static str {
        match self {
            BodyKind::Json => "application/json",
            BodyKind::Ndjson => "application/x-ndjson",
        }
    }

    fn accepts(self, essence: &str) -> bool {
        match self {
            BodyKind::Json => {
                essence == "application/json"
                    || (essence.starts_with("application/") && essence.ends_with("+json"))
            }
            BodyKind::Ndjson => essence == "application/x-ndjson" || essence == "application/jsonl",
        }
    }
}

/// One incoming request.
pub struct Request {
    /// The method (HEAD already folded into GET by the router).
    pub method: Method,
    /// The raw path, as sent.
    pub path: String,
    /// The raw query string (empty when absent).
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The request id (from `X-Request-Id` or generated).
    pub request_id: String,
    /// Who is calling (set by the pipeline after authentication).
    pub caller: Caller,
    /// Deepest nesting of arrays/objects accepted in a JSON body.
    max_json_depth: usize,
    /// In a mutex only so that `&Request` can cross threads; it is only ever taken through
    /// `&mut self`, so the lock is never contended.
    body: std::sync::Mutex<Option<BodyStream>>,
}

impl Request {
    /// A request whose body has not been read yet.
    pub fn new(
        method: Method,
        path: String,
        query: String,
        headers: HeaderMap,
        request_id: String,
        body: BodyStream,
    ) -> Request {
        Request {
            method,
            path,
            query,
            headers,
            request_id,
            caller: Caller::Unrestricted,
            max_json_depth: crate::config::DEFAULT_MAX_JSON_DEPTH,
            body: std::sync::Mutex::new(Some(body)),
        }
    }

    /// Sets who is calling.
    pub fn with_caller(mut self, caller: Caller) -> Request {
        self.caller = caller;
        self
    }

    /// Sets the deepest JSON nesting accepted in the body.
    pub fn with_max_json_depth(mut self, depth: usize) -> Request {
        self.max_json_depth = depth;
        self
    }

    /// The body's bytes, after checking its media type against `kind` and its size against
    /// `limit`.
    pub async fn body(&mut self, kind: BodyKind, limit: usize) -> Result<Bytes, ApiError> {
        let essence = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        match &essence {
            Some(e) if kind.accepts(e) => {}
            _ => {
                return Err(ApiError::UnsupportedMediaType {
                    expected: kind.expected(),
                    got: essence,
                })
            }
        }
        let declared = self
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut stream = self
            .body
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .ok_or_else(|| ApiError::Internal("the body was read twice".into()))?;
        if declared.is_some_and(|n| n > limit as u64) {
            // A client waiting for `100 Continue` never sends the body: answer at once.
            let waits = self
                .headers
                .get(EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            if !waits {
                drain(&mut stream).await;
            }
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
            if buf.len() + chunk.len() > limit {
                drain(&mut stream).await;
                return Err(ApiError::PayloadTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        if nests_deeper_than(&buf, self.max_json_depth, kind == BodyKind::Ndjson) {
            return Err(ApiError::TooDeep {
                limit: self.max_json_depth,
            });
        }
        Ok(buf.freeze())
    }

    /// The body decoded from JSON (see [`decode_json`]).
    pub async fn json<T: DeserializeOwned>(&mut self, limit: usize) -> Result<T, ApiError> {
        let bytes = self.body(BodyKind::Json, limit).await?;
        decode_json(&bytes)
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Does JSON text nest arrays/objects more than `limit` deep? Brackets inside strings do not
/// count. With `per_line` (NDJSON) each line is counted on its own. Malformed text is left to
/// the parser: this only bounds the depth it will be asked to handle.
///
/// ```
/// use mussikon_server::http::request::nests_deeper_than;
/// assert!(!nests_deeper_than(br#"{"a":[1,{"b":"[[[["}]}"#, 3, false));
/// assert!(nests_deeper_than(b"[[[[]]]]", 3, false));
/// assert!(!nests_deeper_than(b"[[[]]]\n[[[]]]", 3, true));
/// ```
pub fn nests_deeper_than(bytes: &[u8], limit: usize, per_line: bool) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if per_line && b == b'\n' {
            // A raw newline ends an NDJSON record, even one with an unterminated string.
            (depth, in_string, escaped) = (0, false, false);
            continue;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

async fn drain(stream: &mut BodyStream) {
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > DRAIN_BYTES {
            break;
        }
    }
}

/// Decodes one JSON document: 400 with line and column for malformed JSON (trailing bytes
/// included), 422 naming the field for a document of the wrong shape (a key given twice in one
/// object included). A whole number written as a float (`3.0`, within ±2^53) is the integer it
/// spells: JSON Schema's `integer`, which the OpenAPI document uses, admits it, and serde's
/// integer types alone would refuse it.
///
/// ```
/// use mussikon_server::http::{problem::ApiError, request::decode_json};
/// #[derive(serde::Deserialize, Debug)]
/// #[serde(deny_unknown_fields)]
/// struct Stars { stars: i64 }
/// assert!(matches!(decode_json::<Stars>(b"{\"stars\":"), Err(ApiError::MalformedJson { line: 1, .. })));
/// match decode_json::<Stars>(b"{\"stars\":\"five\"}") {
///     Err(ApiError::Invalid(errors)) => assert_eq!(errors[0].field, "stars"),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(decode_json::<Stars>(b"{\"stars\":5.0}").unwrap().stars, 5);
/// assert!(decode_json::<Stars>(b"{\"stars\":4.5}").is_err());
/// assert!(decode_json::<Stars>(b"{\"stars\":4,\"stars\":5}").is_err());
/// ```
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(document) =
        serde::Deserialize::deserialize(&mut de).map_err(|e| json_error(e, "."))?;
    de.end().map_err(|e| json_error(e, "."))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        json_error(e.into_inner(), &path)
    })
}

/// A JSON value read with the rules of [`decode_json`]: whole floats become integers, and a key
/// twice in one object is an error (a `serde_json::Value` would keep the last silently).
struct Strict(serde_json::Value);

/// Largest magnitude up to which every whole `f64` is exact.
const EXACT_F64: f64 = 9_007_199_254_740_992.0;

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    #[allow(clippy::cast_possible_truncation)] // Whole and within ±2^53: exact.
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() == 0.0 && v.abs() <= EXACT_F64 {
            return Ok((v as i64).into());
        }
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(items.into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate field `{key}`"
                )));
            }
            let Strict(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(object.into())
    }
}

fn json_error(e: serde_json::Error, path: &str) -> ApiError {
    use serde_json::error::Category;
    let full = e.to_string();
    // serde_json appends " at line L column C"; the position is reported separately.
    let message = full
        .rsplit_once(" at line ")
        .map(|(m, _)| m.to_string())
        .unwrap_or(full);
    match e.classify() {
        Category::Data => {
            let base = if path == "." { "" } else { path };
            let (field, rule) = match missing_field(&message) {
                Some(name) if base.is_empty() => (name.to_string(), "is required".to_string()),
                Some(name) => (format!("{base}.{name}"), "is required".to_string()),
                None => {
                    let field = if base.is_empty() { "(body)" } else { base };
                    let rule = match message.split_once(", expected one of ") {
                        Some((_, known)) if message.starts_with("unknown field") => {
                            format!("is not a field here; known fields: {known}")
                        }
                        _ => message,
                    };
                    (field.to_string(), rule)
                }
            };
            ApiError::Invalid(vec![FieldError { field, rule }])
        }
        Category::Syntax | Category::Eof => ApiError::MalformedJson {
            line: e.line(),
            column: e.column(),
            message,
        },
        Category::Io => ApiError::BadRequest(message),
    }
}

/// The field a "missing field `x`" message names (an unknown field is already in the path).
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name)
}
