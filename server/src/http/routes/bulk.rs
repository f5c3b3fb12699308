//! `POST /v1/musicians/bulk`: many musicians at once, as NDJSON.
//!
//! The body (`Content-Type: application/x-ndjson`, at most `max_bulk_bytes`, 64 MiB by default)
//! holds one `Musician` per line and goes through the engine's `import_jsonl` unchanged: every
//! line is validated like a single PUT, good lines are written in atomic batches, bad lines are
//! skipped and reported by line number. The answer is always 200
//! `{"accepted":n,"rejected":n,"errors":[{"line","error"}…]}` with at most the first 100 errors;
//! a client that wants all-or-nothing checks `rejected` before relying on the import.

use crate::http::app::App;
use crate::http::problem::ApiError;
use crate::http::request::{BodyKind, Request};
use crate::http::response::ApiResponse;
use mussikon_engine::import::RecordKind;
use mussikon_engine::LineError;
use mussikon_engine::{EngineError, ImportOptions, OnError};
use serde::Serialize;
use warp::http::StatusCode;

/// The answer of a bulk upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    /// Musicians written.
    pub accepted: u64,
    /// Lines refused.
    pub rejected: u64,
    /// The first refused lines (at most 100), with what was wrong.
    pub errors: Vec<LineError>,
}

/// Musicians per command (per Raft entry on a cluster node): about 440 KB, so that one entry
/// stays well inside what one AppendEntries carries within openraft's per-RPC timeout (a
/// heartbeat interval). Larger batches only save little per-transaction work on one node.
const BULK_BATCH: usize = 1000;

/// `POST /v1/musicians/bulk`.
pub async fn post(app: &App, mut req: Request) -> Result<ApiResponse, ApiError> {
    let body = req
        .body(BodyKind::Ndjson, app.config().max_bulk_bytes)
        .await?;
    // Each batch goes through the writer, so on a cluster node it is replicated like any
    // other command (writing the engine directly would put it ahead of the log).
    let report = app
        .write(move |w| -> Result<_, EngineError> {
            let opts = ImportOptions {
                on_error: OnError::Skip,
                kind: RecordKind::Musicians,
                batch: BULK_BATCH,
                ..ImportOptions::default()
            };
            w.engine().import_jsonl_via(
                std::io::Cursor::new(body),
                &opts,
                |_| {},
                |cmd| w.execute(cmd),
            )
        })
        .await??;
    app.events()
        .imported(report.applied_seq, report.musicians, report.rejected);
    ApiResponse::json(
        StatusCode::OK,
        &BulkReport {
            accepted: report.musicians,
            rejected: report.rejected,
            errors: report.errors,
        },
    )
}
