//! `Idempotency-Key`: a retried POST gets the first answer instead of doing the work twice.
//!
//! The first request with a key runs and its response (status, headers, body) is kept under the
//! key; a later request with the same key and the same method, path and body gets that response
//! back, marked `Idempotent-Replayed: true`. The same key with a different request is refused
//! (422); a retry that arrives while the first is still running is told to wait (409).
//! Server errors (5xx) are not kept, so a retry after one runs again.
//!
//! Limits, stated plainly: keys live in a bounded in-memory LRU (the least recently used key is
//! forgotten first), so they do not survive a restart and are not shared between nodes. A key
//! forgotten by either route is simply a new key.

use crate::http::problem::ApiError;
use crate::http::request::Request;
use crate::http::response::ApiResponse;
use lru::LruCache;
use mussikon_engine::FieldError;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use warp::http::header::HeaderName;

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";
/// The response header marking a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

#[derive(Clone, Debug)]
enum Entry {
    Running {
        fingerprint: u64,
    },
    Done {
        fingerprint: u64,
        response: ApiResponse,
    },
}

type Cache = Arc<Mutex<LruCache<String, Entry>>>;

/// The keys seen recently and their answers. Cheap to clone (shared).
#[derive(Clone)]
pub struct IdempotencyCache {
    entries: Cache,
}

enum Begin {
    Run(RunGuard),
    Replay(ApiResponse),
    Running,
    Mismatch,
}

/// Forgets a running key unless its answer was stored, so a request that died (a panic) does
/// not block its retries.
struct RunGuard {
    entries: Cache,
    key: String,
    fingerprint: u64,
    finished: bool,
}

impl RunGuard {
    fn finish(mut self, response: &ApiResponse) {
        self.finished = true;
        let mut entries = lock(&self.entries);
        if response.status.is_server_error() {
            entries.pop(&self.key);
        } else {
            entries.put(
                std::mem::take(&mut self.key),
                Entry::Done {
                    fingerprint: self.fingerprint,
                    response: response.clone(),
                },
            );
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.entries).pop(&self.key);
        }
    }
}

fn lock(m: &Mutex<LruCache<String, Entry>>) -> MutexGuard<'_, LruCache<String, Entry>> {
    // The lock is never held across code that can panic; recover the map if it ever was.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The fingerprint of a request: method, path and body.
pub fn fingerprint(req: &Request, body: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.method.as_str().hash(&mut h);
    req.path.hash(&mut h);
    body.hash(&mut h);
    h.finish()
}

/// The shape of every POST that must not take effect twice: reads the JSON body, then runs
/// `work` on it under the request's `Idempotency-Key` (a retry with the same key and body gets
/// the first answer; see [`Idempotency::run`]).
pub async fn json_post<F, Fut>(
    app: &crate::http::app::App,
    mut req: Request,
    work: F,
) -> Result<ApiResponse, ApiError>
where
    F: FnOnce(bytes::Bytes) -> Fut,
    Fut: Future<Output = Result<ApiResponse, ApiError>>,
{
    let key = key_of(&req)?;
    let body = req
        .body(
            crate::http::request::BodyKind::Json,
            app.config().max_body_bytes,
        )
        .await?;
    let fingerprint = fingerprint(&req, &body);
    Ok(app
        .idempotency()
        .run(key, fingerprint, &req.request_id, work(body))
        .await)
}

/// The request's key, if it sent one: 1–255 visible ASCII characters.
pub fn key_of(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_string()))
}

impl IdempotencyCache {
    /// A cache remembering at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> IdempotencyCache {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        IdempotencyCache {
            entries: Arc::new(Mutex::new(LruCache::new(cap))),
        }
    }

    fn begin(&self, key: &str, fingerprint: u64) -> Begin {
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some(Entry::Done {
                fingerprint: f,
                response,
            }) if *f == fingerprint => Begin::Replay(response.clone()),
            Some(Entry::Running { fingerprint: f }) if *f == fingerprint => Begin::Running,
            Some(_) => Begin::Mismatch,
            None => {
                entries.put(key.to_string(), Entry::Running { fingerprint });
                Begin::Run(RunGuard {
                    entries: self.entries.clone(),
                    key: key.to_string(),
                    fingerprint,
                    finished: false,
                })
            }
        }
    }

    /// Runs `work` once per key: without a key it simply runs; with one it runs the first time
    /// and replays the stored answer afterwards. Errors become problem responses here, so that
    /// a refusal is replayed like a success.
    pub async fn run<F>(
        &self,
        key: Option<String>,
        fingerprint: u64,
        request_id: &str,
        work: F,
    ) -> ApiResponse
    where
        F: Future<Output = Result<ApiResponse, ApiError>>,
    {
        let answer =
            |r: Result<ApiResponse, ApiError>| r.unwrap_or_else(|e| e.into_response(request_id));
        let Some(key) = key else {
            return answer(work.await);
        };
        match self.begin(&key, fingerprint) {
            Begin::Replay(resp) => resp.header(HeaderName::from_static(REPLAYED), "true"),
            Begin::Running => ApiError::IdempotencyInFlight.into_response(request_id),
            Begin::Mismatch => ApiError::Invalid(vec![FieldError {
                field: "Idempotency-Key".into(),
                rule:
                    "was already used for a different request (method, path or body); use a new key"
                        .into(),
            }])
            .into_response(request_id),
            Begin::Run(guard) => {
                let resp = answer(work.await);
                guard.finish(&resp);
                resp
            }
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use warp::http::StatusCode;

    fn ok(n: u8) -> Result<ApiResponse, ApiError> {
        Ok(ApiResponse::with_body(
            StatusCode::CREATED,
            "text/plain",
            bytes::Bytes::from(vec![n]),
        ))
    }

    #[tokio::test]
    async fn replays_the_first_answer_and_refuses_a_different_request() {
        let cache = IdempotencyCache::new(2);
        let first = cache.run(Some("k".into()), 1, "r1", async { ok(1) }).await;
        let again = cache.run(Some("k".into()), 1, "r2", async { ok(2) }).await;
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers.get(REPLAYED).unwrap(), "true");
        let other = cache.run(Some("k".into()), 9, "r3", async { ok(3) }).await;
        assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[tokio::test]
    async fn forgets_server_errors_and_old_keys() {
        let cache = IdempotencyCache::new(2);
        let failed = cache
            .run(Some("k".into()), 1, "r", async {
                Err(ApiError::Internal("boom".into()))
            })
            .await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(cache.is_empty());
        for k in ["a", "b", "c"] {
            cache.run(Some(k.into()), 1, "r", async { ok(0) }).await;
        }
        assert_eq!(cache.len(), 2);
    }
}
