//! Bulk import of JSON Lines: one musician or gig object per line, in the public JSON form.
//!
//! Each line goes through the same parsing and validation as every other entry point. A bad
//! line is reported with its number and the rule it broke. The caller chooses:
//! [`OnError::Skip`] applies the good lines and reports the bad ones; [`OnError::Reject`] reads
//! the whole file first and writes nothing if any line is bad (it holds the valid records in
//! memory until the end). Good records are written in batches, each one `BulkUpsert` command
//! (atomic and durable like any other command). A line is taken as a gig when it has a
//! `"slots"` key, as a musician otherwise, unless the caller fixes the kind.

use crate::command::{Command, Outcome};
use crate::engine::{Engine, EngineError, Executed};
use crate::model::{Gig, Musician};
use crate::validate::{validate_gig, validate_musician};
use serde::{Deserialize, Serialize};
use std::io::BufRead;

/// What to do with bad lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Import the good lines, report the bad ones.
    #[default]
    Skip,
    /// Import nothing if any line is bad.
    Reject,
}

/// What the lines hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Decide per line (`"slots"` key → gig).
    #[default]
    Auto,
    /// Every line is a musician.
    Musicians,
    /// Every line is a gig.
    Gigs,
}

/// Import settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportOptions {
    /// Bad-line policy.
    pub on_error: OnError,
    /// What the lines hold.
    pub kind: RecordKind,
    /// Records per command (1–100,000).
    pub batch: usize,
    /// Most line errors kept in the report.
    pub max_errors: usize,
    /// Longest line accepted, bytes (not counting its `\n`).
    pub max_line_bytes: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            on_error: OnError::Skip,
            kind: RecordKind::Auto,
            batch: 5000,
            max_errors: 100,
            max_line_bytes: 1024 * 1024,
        }
    }
}

/// One bad line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong, naming the field and the rule.
    pub error: String,
}

/// Progress so far, passed to the callback after every batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Records written.
    pub written: u64,
    /// Bad lines.
    pub rejected: u64,
}

/// The result of an import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Musicians written.
    pub musicians: u64,
    /// Gigs written.
    pub gigs: u64,
    /// Bad lines (blank lines are skipped silently).
    pub rejected: u64,
    /// The first `max_errors` bad lines.
    pub errors: Vec<LineError>,
    /// True when nothing was written because of bad lines (`OnError::Reject`).
    pub aborted: bool,
    /// Applied sequence after the last batch.
    pub applied_seq: u64,
}

enum Record {
    Musician(Musician),
    Gig(Gig),
}

fn parse_line(line: &str, kind: RecordKind) -> Result<Record, String> {
    let as_gig = match kind {
        RecordKind::Gigs => true,
        RecordKind::Musicians => false,
        RecordKind::Auto => line.contains("\"slots\""),
    };
    if as_gig {
        let g: Gig = serde_json::from_str(line).map_err(|e| e.to_string())?;
        validate_gig(g).map(Record::Gig).map_err(|e| e.to_string())
    } else {
        let m: Musician = serde_json::from_str(line).map_err(|e| e.to_string())?;
        validate_musician(m)
            .map(Record::Musician)
            .map_err(|e| e.to_string())
    }
}

impl Engine {
    /// Imports JSON Lines from `input`, calling `progress` after each batch.
    ///
    /// ```
    /// # use mussikon_engine::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let engine = Engine::open(dir.path(), Config::default()).unwrap();
    /// let data = "{\"id\":\"m-1\",\"name\":\"Ana\",\"instruments\":[{\"name\":\"guitar\",\"level\":4}],\"location\":{\"lat\":40.4,\"lon\":-3.7},\"travel_radius_km\":50,\"fee\":{\"amount\":1,\"currency\":\"EUR\"}}\n{\"id\":\"bad id\"}\n";
    /// let report = engine.import_jsonl(data.as_bytes(), &ImportOptions::default(), |_| {}).unwrap();
    /// assert_eq!((report.musicians, report.rejected), (1, 1));
    /// assert_eq!(report.errors[0].line, 2);
    /// ```
    pub fn import_jsonl<R: BufRead>(
        &self,
        input: R,
        opts: &ImportOptions,
        progress: impl FnMut(&ImportProgress),
    ) -> Result<ImportReport, EngineError> {
        self.import_jsonl_via(input, opts, progress, |cmd| self.execute(cmd))
    }

    /// [`Engine::import_jsonl`], with each batch's `BulkUpsert` handed to `execute` instead of
    /// [`Engine::execute`]: a replicated node passes its replicating write, so the batches go
    /// through the log like every other command.
    pub fn import_jsonl_via<R: BufRead>(
        &self,
        mut input: R,
        opts: &ImportOptions,
        mut progress: impl FnMut(&ImportProgress),
        mut execute: impl FnMut(&Command) -> Result<Executed, EngineError>,
    ) -> Result<ImportReport, EngineError> {
        let batch_size = opts.batch.clamp(1, crate::command::MAX_BULK);
        let mut report = ImportReport::default();
        let mut prog = ImportProgress::default();
        let mut musicians: Vec<Musician> = Vec::new();
        let mut gigs: Vec<Gig> = Vec::new();
        let mut raw = Vec::new();
        let hold_all = opts.on_error == OnError::Reject;
        loop {
            raw.clear();
            let n = read_line_capped(&mut input, &mut raw, opts.max_line_bytes)?;
            if n == 0 {
                break;
            }
            prog.lines += 1;
            prog.bytes += n as u64;
            // The line's length without its `\n`; `raw` holds at most `max_line_bytes + 1`
            // bytes of it, so only an untruncated line can end with the terminator.
            let content_len = if raw.last() == Some(&b'\n') {
                raw.len() - 1
            } else {
                n
            };
            let result = match std::str::from_utf8(&raw) {
                _ if content_len > opts.max_line_bytes => {
                    Err(format!("line longer than {} bytes", opts.max_line_bytes))
                }
                Ok(s) if s.trim().is_empty() => continue,
                Ok(s) => parse_line(s.trim_end_matches(['\n', '\r']), opts.kind),
                Err(_) => Err("line is not valid UTF-8".to_string()),
            };
            match result {
                Ok(Record::Musician(m)) => musicians.push(m),
                Ok(Record::Gig(g)) => gigs.push(g),
                Err(error) => {
                    report.rejected += 1;
                    prog.rejected += 1;
                    if report.errors.len() < opts.max_errors {
                        report.errors.push(LineError {
                            line: prog.lines,
                            error,
                        });
                    }
                }
            }
            if !hold_all && musicians.len() + gigs.len() >= batch_size {
                write_batch(
                    &mut execute,
                    &mut musicians,
                    &mut gigs,
                    &mut report,
                    &mut prog,
                    opts.max_errors,
                )?;
                progress(&prog);
            }
        }
        if hold_all && report.rejected > 0 {
            report.aborted = true;
            progress(&prog);
            return Ok(report);
        }
        while !musicians.is_empty() || !gigs.is_empty() {
            let take_m = musicians.len().min(batch_size);
            let take_g = gigs.len().min(batch_size - take_m);
            let mut bm: Vec<Musician> = musicians.drain(..take_m).collect();
            let mut bg: Vec<Gig> = gigs.drain(..take_g).collect();
            write_batch(
                &mut execute,
                &mut bm,
                &mut bg,
                &mut report,
                &mut prog,
                opts.max_errors,
            )?;
            progress(&prog);
        }
        report.applied_seq = self.applied_seq()?;
        Ok(report)
    }
}

/// Executes one `BulkUpsert` of the batch through `execute` and folds its outcome into the
/// report (which keeps at most `max_errors` errors, like the line errors).
fn write_batch(
    execute: &mut impl FnMut(&Command) -> Result<Executed, EngineError>,
    musicians: &mut Vec<Musician>,
    gigs: &mut Vec<Gig>,
    report: &mut ImportReport,
    prog: &mut ImportProgress,
    max_errors: usize,
) -> Result<(), EngineError> {
    let (nm, ng) = (musicians.len() as u64, gigs.len() as u64);
    let cmd = Command::BulkUpsert {
        musicians: std::mem::take(musicians),
        gigs: std::mem::take(gigs),
    };
    let done = execute(&cmd)?;
    match done.outcome {
        Outcome::Done(_) => {
            report.musicians += nm;
            report.gigs += ng;
            prog.written += nm + ng;
        }
        Outcome::Refused(r) => {
            // Records were validated line by line, so only a state conflict (a gig update
            // that would break bookings) lands here; report it against the batch.
            report.rejected += nm + ng;
            prog.rejected += nm + ng;
            if report.errors.len() < max_errors {
                report.errors.push(LineError {
                    line: prog.lines,
                    error: format!("batch ending at this line refused: {r}"),
                });
            }
        }
        // The command carries no idempotency key, so it is never replayed, and it is no batch.
        Outcome::AlreadyApplied { .. } | Outcome::Replayed { .. } | Outcome::Batch { .. } => {}
    }
    Ok(())
}

/// Reads one line into `buf`, keeping at most `cap + 1` bytes of it (the rest is consumed and
/// dropped, so a huge line costs no memory). Returns the line's full length.
fn read_line_capped<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(total);
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = (cap + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        r.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}
