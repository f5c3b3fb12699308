//! Logs: where they go, in which format, how verbose, and what a panic leaves behind.
//!
//! Logs go to stderr (stdout is kept for command output, e.g. the `listening on` line), as one
//! JSON object per line or as human-readable text. The level comes from `MUSSIKON_LOG` (or
//! `RUST_LOG`) in `tracing_subscriber::EnvFilter` syntax, else the command's default. A panic is
//! logged as an error event in the span that was current when it happened, so a request's panic
//! carries its request id.

use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global subscriber. `default_level` applies when neither `MUSSIKON_LOG` nor
/// `RUST_LOG` is set. Calling it twice keeps the first subscriber.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = std::env::var("MUSSIKON_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Replaces the panic hook with one that logs the panic (message and location) as an error
/// event. The default hook's stderr text would bypass the log format.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-text panic payload)".to_string());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %message, location = %location, "panic");
    }));
}
