//! Settings of a running server, with their defaults, in one place.
//!
//! [`ServeConfig`] is what `mussikon serve` runs with (built from flags and environment by the
//! CLI, and logged field by field at start); [`HttpConfig`] is the part the HTTP layer needs and
//! what tests construct directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest JSON request body accepted by default: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest NDJSON body accepted by `POST /v1/musicians/bulk` by default: 64 MiB.
pub const DEFAULT_MAX_BULK_BYTES: usize = 64 * 1024 * 1024;
/// Idempotency keys remembered by default (least recently used are forgotten first).
pub const DEFAULT_IDEMPOTENCY_KEYS: usize = 10_000;
/// How long in-flight requests may run after a shutdown signal before the server stops anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the HTTP layer needs to know.
///
/// ```
/// use mussikon_server::config::HttpConfig;
/// let c = HttpConfig::default();
/// assert_eq!(c.max_body_bytes, 1024 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest JSON request body, bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest NDJSON body of the bulk route, bytes.
    pub max_bulk_bytes: usize,
    /// Idempotency keys remembered (an in-memory LRU: keys do not survive a restart).
    pub idempotency_keys: usize,
    /// The WebSocket event stream (`GET /v1/events`).
    pub events: EventsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            idempotency_keys: DEFAULT_IDEMPOTENCY_KEYS,
            events: EventsConfig::default(),
        }
    }
}

/// Settings of the WebSocket event stream; see [`crate::http::events`] for the protocol.
///
/// ```
/// use mussikon_server::config::EventsConfig;
/// assert_eq!(EventsConfig::default().queue, 256);
/// ```
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// Events queued per subscriber; a subscriber whose queue is full when an event is
    /// published is disconnected (close code 1013).
    pub queue: usize,
    /// Most topics one connection may subscribe to.
    pub max_topics: usize,
    /// Largest frame (and message) a client may send, bytes; a larger one closes the
    /// connection (close code 1009).
    pub max_frame_bytes: usize,
    /// How often the server pings each connection; a connection from which nothing (pong or
    /// any frame) arrived for two intervals is closed as dead.
    pub ping_interval: Duration,
    /// Candidates per slot asked of the matcher when a gig is created (`gig.matching`).
    pub match_k: usize,
    /// Created gigs waiting for their `gig.matching` computation; when full, further gigs are
    /// skipped (counted in `mussikon_ws_matching_skipped_total`).
    pub match_queue: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            queue: 256,
            max_topics: 1000,
            max_frame_bytes: 64 * 1024,
            ping_interval: Duration::from_secs(20),
            match_k: 20,
            match_queue: 256,
        }
    }
}

/// Everything `mussikon serve` runs with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    pub listen: SocketAddr,
    /// Directory holding the engine's store and index.
    pub data_dir: PathBuf,
    /// Musicians to generate into an empty store at start (0: none).
    pub demo: usize,
    /// Longest wait for in-flight requests after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// HTTP settings.
    pub http: HttpConfig,
}
