//! # mussikon-server
//!
//! The `mussikon` binary and the HTTP API over the matching engine. In: HTTP requests and CLI
//! invocations. Out: JSON answers (the engine's JSON forms, unchanged), RFC 9457 problem bodies,
//! Prometheus metrics, JSON logs.
//!
//! Code map:
//! - [`cli`]: the subcommands (`serve`, `import`, `export`, `restore`, `gen`, `healthcheck`,
//!   `token`, `version`), each in its own file; `main.rs` only parses and reports.
//! - [`config`]: the settings of a running server and their defaults;
//!   [`config::sources`] layers them from file, environment and flags.
//! - [`http`]: the API. [`http::router`] is the route table, [`http::routes`] the handlers (one
//!   file per resource), [`http::problem`] every error and its status, [`http::request`] body
//!   reading, [`http::health`] and [`http::metrics`] the operations endpoints,
//!   [`http::events`] the WebSocket event stream and its hub.
//!   [`http::auth`] tokens and access rules, [`http::ratelimit`] per-client limits,
//!   [`http::cors`] CORS and security headers (see `docs/security.md`).
//! - [`logging`]: the tracing subscriber and the panic hook.
//! - [`telemetry`]: span export over OTLP (off unless `tracing.otlp_endpoint` is set).
//!
//! Architecture invariant: this crate is the only one that knows HTTP. It changes state only by
//! executing engine commands, and calls the engine only from blocking tasks.
//!
//! ```no_run
//! # async fn ex() -> Result<(), Box<dyn std::error::Error>> {
//! use mussikon_engine::{Config, Engine};
//! use mussikon_server::{config::HttpConfig, http};
//! let engine = Engine::open("./data", Config::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let app = http::app::App::new(engine, HttpConfig::default())?;
//! http::serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }, std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod config;
pub mod http;
pub mod logging;
pub mod telemetry;
