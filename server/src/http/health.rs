//! Health endpoints for orchestrators: liveness (`GET /health`) and readiness
//! (`GET /health/ready`).
//!
//! Liveness says only that the process answers HTTP; it never touches the engine, so a slow disk
//! does not get the process killed. Readiness runs each check, times it, and grades it:
//! - `store`: `engine.status()` answers within [`CHECK_TIMEOUT`] → healthy, else unhealthy;
//! - `index`: the oldest write not yet searchable has waited at most [`MAX_INDEX_LAG_MS`] →
//!   healthy, longer → degraded (search answers are stale but correct for what they show).
//!
//! The overall status is the worst check; the answer is 200 unless it is unhealthy (503).  Each
//! readiness probe also refreshes the engine gauges of `/metrics`.

use crate::http::app::App;
use crate::http::metrics;
use crate::http::problem::ApiError;
use crate::http::response::ApiResponse;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use warp::http::StatusCode;

/// Longest a readiness check may take before it counts as unhealthy.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Index lag above which the index check is degraded, ms.
pub const MAX_INDEX_LAG_MS: u64 = 1000;

/// How well a check or the whole server is doing, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Working as intended.
    Healthy,
    /// Working, with reduced quality.
    Degraded,
    /// Not working.
    Unhealthy,
}

/// One check's result.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// Its grade.
    pub status: Health,
    /// How long it took, ms.
    pub duration_ms: f64,
    /// What it found, in words.
    pub detail: String,
}

/// The liveness answer: always `{"status":"healthy"}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `healthy`: the process answers HTTP.
    pub status: Health,
}

/// The readiness answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// The worst check.
    pub status: Health,
    /// Each check by name.
    pub checks: BTreeMap<&'static str, Check>,
}

/// `GET /health`.
pub fn live() -> Result<ApiResponse, ApiError> {
    ApiResponse::json(
        StatusCode::OK,
        &Liveness {
            status: Health::Healthy,
        },
    )
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Runs the checks.
pub async fn readiness(app: &App) -> Readiness {
    let mut checks = BTreeMap::new();
    let started = Instant::now();
    let status = tokio::time::timeout(CHECK_TIMEOUT, app.blocking(|e| e.status())).await;
    let store_took = started.elapsed();
    let status = match status {
        Ok(Ok(Ok(s))) => Ok(s),
        Ok(Ok(Err(e))) => Err(format!("engine status failed: {e}")),
        Ok(Err(e)) => Err(format!("engine status failed: {e}")),
        Err(_) => Err(format!(
            "engine status did not answer within {} ms",
            CHECK_TIMEOUT.as_millis()
        )),
    };
    match &status {
        Ok(s) => {
            metrics::record_status(s);
            checks.insert(
                "store",
                Check {
                    status: Health::Healthy,
                    duration_ms: ms(store_took),
                    detail: format!(
                        "{} musicians, {} gigs, applied sequence {}",
                        s.musicians, s.gigs, s.applied_seq
                    ),
                },
            );
            let t = Instant::now();
            let (grade, detail) = if s.index_lag_ms <= MAX_INDEX_LAG_MS {
                (Health::Healthy, format!("index lag {} ms", s.index_lag_ms))
            } else {
                (
                    Health::Degraded,
                    format!(
                        "index lag {} ms exceeds {MAX_INDEX_LAG_MS} ms; searches miss recent writes",
                        s.index_lag_ms
                    ),
                )
            };
            checks.insert(
                "index",
                Check {
                    status: grade,
                    duration_ms: ms(t.elapsed()),
                    detail,
                },
            );
        }
        Err(detail) => {
            tracing::warn!(detail = %detail, "readiness: store check failed");
            for name in ["store", "index"] {
                checks.insert(
                    name,
                    Check {
                        status: Health::Unhealthy,
                        duration_ms: ms(store_took),
                        detail: detail.clone(),
                    },
                );
            }
        }
    }
    if let Some(node) = app.cluster() {
        let t = Instant::now();
        let (status, detail) = match node.readiness() {
            Ok(()) => {
                let s = node.status();
                (
                    Health::Healthy,
                    format!(
                        "{} in term {}, leader {:?}, applied index {}",
                        s.state, s.term, s.leader, s.applied_index
                    ),
                )
            }
            Err(why) => (Health::Unhealthy, why),
        };
        checks.insert(
            "raft",
            Check {
                status,
                duration_ms: ms(t.elapsed()),
                detail,
            },
        );
    }
    let status = checks
        .values()
        .map(|c| c.status)
        .max()
        .unwrap_or(Health::Unhealthy);
    Readiness { status, checks }
}

/// `GET /health/ready`.
pub async fn ready(app: &App) -> Result<ApiResponse, ApiError> {
    let r = readiness(app).await;
    let code = if r.status == Health::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    ApiResponse::json(code, &r)
}
