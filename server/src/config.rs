//! Settings of a running server, with their defaults, in one place.
//!
//! [`ServeConfig`] is what `mussikon serve` runs with: [`sources`] builds it from defaults, a
//! TOML file, `MUSSIKON_*` environment variables and flags (later ones win), checks it, and
//! loads key material. [`HttpConfig`] is the part the HTTP layer needs and what tests construct
//! directly; its [`Default`] is development mode: no authentication, no rate limits, CORS open
//! to the local web and Expo dev servers.
//!
//! Promises: a [`Secret`] never shows in `Debug` output or logs (it prints `<redacted>`); an
//! [`HttpConfig`] whose `auth.key` is `None` serves every request without authentication, and
//! only development mode builds such a config from settings (production refuses to start).

pub mod sources;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Largest JSON request body accepted by default: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest NDJSON body accepted by `POST /v1/musicians/bulk` by default: 64 MiB.
pub const DEFAULT_MAX_BULK_BYTES: usize = 64 * 1024 * 1024;
/// How long in-flight requests may run after a shutdown signal before the server stops anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Deepest nesting of arrays and objects accepted in a JSON body by default.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;
/// Shortest HS256 secret accepted, bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Origins allowed by CORS in development mode: the usual web (3000) and Expo (19006) dev
/// servers.
pub const DEV_CORS_ORIGINS: [&str; 2] = ["http://localhost:3000", "http://localhost:19006"];

/// How strict the server is.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// For a laptop: authentication optional (with a loud warning when off), no rate limits
    /// unless configured, CORS open to the local dev servers.
    #[default]
    Development,
    /// For real traffic: refuses to start without a token key; rate limits on by default; CORS
    /// closed unless origins are configured.
    Production,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Development => "development",
            Mode::Production => "production",
        })
    }
}

/// Secret bytes that never print.
///
/// ```
/// use mussikon_server::config::Secret;
/// let s = Secret::new(b"hunter2hunter2hunter2hunter2hunter2".to_vec());
/// assert_eq!(format!("{s:?}"), "<redacted>");
/// assert_eq!(s.expose().len(), 35);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes.into())
    }

    /// The bytes; call only where they are used as key material.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The key bearer tokens are verified with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKey {
    /// HMAC-SHA256 with a shared secret of at least [`MIN_SECRET_BYTES`] bytes.
    Hs256(Secret),
    /// RSA-SHA256 with a PEM public key (`-----BEGIN PUBLIC KEY-----` or `RSA PUBLIC KEY`).
    Rs256 {
        /// The PEM text.
        public_key_pem: String,
    },
}

/// Who may call the API.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// `None`: authentication is off and every request is allowed (development only).
    pub key: Option<AuthKey>,
    /// When set, tokens must carry exactly this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// Reads of musicians, search and gigs without a token.
    pub public_reads: bool,
    /// Seconds of clock skew tolerated on `exp`.
    pub leeway_s: u64,
}

/// One token bucket: `per_second` tokens refill each second, up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Sustained requests per second (> 0; fractions allowed).
    pub per_second: f64,
    /// Requests allowed at once after a quiet period (≥ 1).
    pub burst: u32,
}

/// Per-client request limits, by kind of request.
#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    /// Off: no request is limited.
    pub enabled: bool,
    /// GET/HEAD of musicians and gigs, and search.
    pub reads: Rate,
    /// PUT, POST and DELETE (except search and matching).
    pub writes: Rate,
    /// `GET /v1/gigs/{id}/matches` and `POST /v1/match`.
    pub matches: Rate,
    /// Clients tracked per class before the state is reset (bounds memory).
    pub max_clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: false,
            reads: Rate {
                per_second: 50.0,
                burst: 100,
            },
            writes: Rate {
                per_second: 10.0,
                burst: 20,
            },
            matches: Rate {
                per_second: 5.0,
                burst: 10,
            },
            max_clients: 100_000,
        }
    }
}

/// Cross-origin requests from browsers.
#[derive(Clone, Debug)]
pub struct CorsConfig {
    /// Exact origins (`scheme://host[:port]`) allowed; others get no CORS headers.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer, seconds.
    pub max_age_s: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: DEV_CORS_ORIGINS.iter().map(|s| s.to_string()).collect(),
            max_age_s: 600,
        }
    }
}

/// What the HTTP layer needs to know.
///
/// ```
/// use mussikon_server::config::HttpConfig;
/// let c = HttpConfig::default();
/// assert_eq!(c.max_body_bytes, 1024 * 1024);
/// assert!(c.auth.key.is_none());
/// ```
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest JSON request body, bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest NDJSON body of the bulk route, bytes.
    pub max_bulk_bytes: usize,
    /// The WebSocket event stream (`GET /v1/events`).
    pub events: EventsConfig,
    /// Deepest nesting of arrays/objects in a JSON body; deeper bodies get 400.
    pub max_json_depth: usize,
    /// Believe `X-Forwarded-For` and `X-Forwarded-Proto` (only behind a proxy that sets them).
    pub trust_forwarded: bool,
    /// Authentication and authorization.
    pub auth: AuthConfig,
    /// Per-client rate limits.
    pub rate_limit: RateLimitConfig,
    /// CORS.
    pub cors: CorsConfig,
    /// Connection limits (see [`crate::http::listener`]).
    pub connections: ConnectionLimits,
}

/// Limits on the connections themselves, before any request is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time a client has to send a request's whole header; a slower one is disconnected.
    pub header_read_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            trust_forwarded: false,
            auth: AuthConfig {
                leeway_s: 30,
                ..AuthConfig::default()
            },
            rate_limit: RateLimitConfig::default(),
            cors: CorsConfig::default(),
            events: EventsConfig::default(),
            connections: ConnectionLimits::default(),
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
    /// Most connections at once; an upgrade beyond it is answered 503. A place is taken
    /// atomically before the upgrade is answered and freed when the connection ends.
    pub max_subscribers: usize,
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
            max_subscribers: 10_000,
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
    /// Development or production.
    pub mode: Mode,
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
    /// Replication; `None` runs a single node.
    pub cluster: Option<ClusterConfig>,
    /// Span export.
    pub tracing: TracingConfig,
    /// The search index's cadence.
    pub index: IndexConfig,
}

/// Span export over OTLP (`[tracing]`; see `crate::telemetry`).
#[derive(Clone, Debug, PartialEq)]
pub struct TracingConfig {
    /// The collector's traces URL (`…/v1/traces`); `None`: spans are not exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of new traces sampled, 0 to 1.
    pub sample_ratio: f64,
    /// Headers on every export request (lower-case names; secret values).
    pub otlp_headers: Vec<(String, Secret)>,
}

/// How the engine keeps its search index (`[index]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Longest time before a write is in a committed index segment. Reads are exact either way
    /// (the engine evaluates newer changes from the store); longer means fewer, larger segments
    /// (less indexing work per write) and more changes for each search to evaluate.
    pub commit_interval: Duration,
    /// tantivy indexing threads; each commit cuts a segment per thread that received documents.
    pub writer_threads: usize,
    /// Keep the search index (`index.enabled`; cluster nodes only may turn it off: such a node
    /// stores, votes and serves reads by id, and answers searches and matches 421).
    pub enabled: bool,
    /// `index.overlay_max_musicians`: see `mussikon_engine::Config::index_overlay_max_musicians`.
    pub overlay_max_musicians: usize,
    /// `index.overlay_max_age_s`: see `mussikon_engine::Config::index_overlay_max_age`.
    pub overlay_max_age: Duration,
}

impl Default for IndexConfig {
    /// A serving node's defaults ([`sources::DEFAULT_INDEX_COMMIT_INTERVAL_MS`],
    /// [`sources::DEFAULT_INDEX_WRITER_THREADS`]).
    fn default() -> Self {
        IndexConfig {
            commit_interval: std::time::Duration::from_millis(
                sources::DEFAULT_INDEX_COMMIT_INTERVAL_MS,
            ),
            writer_threads: sources::DEFAULT_INDEX_WRITER_THREADS,
            enabled: true,
            overlay_max_musicians: sources::DEFAULT_INDEX_OVERLAY_MAX_MUSICIANS,
            overlay_max_age: Duration::from_secs(sources::DEFAULT_INDEX_OVERLAY_MAX_AGE_S),
        }
    }
}

impl IndexConfig {
    /// Applies these settings to an engine configuration.
    pub fn apply_to(&self, config: mussikon_engine::Config) -> mussikon_engine::Config {
        mussikon_engine::Config {
            index_commit_interval: self.commit_interval,
            index_writer_threads: self.writer_threads,
            index_enabled: self.enabled,
            index_overlay_max_musicians: self.overlay_max_musicians,
            index_overlay_max_age: self.overlay_max_age,
            ..config
        }
    }
}

/// A node's place in a cluster (see docs/cluster.md).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id, or `auto` (settled against the data directory at start).
    pub node_id: mussikon_cluster::identity::NodeIdSetting,
    /// Initial members, id → peer address (`HOST:PORT` of the node's peer listener, which is
    /// its API listener unless it has `peer_listen`).
    pub peers: std::collections::BTreeMap<u64, String>,
    /// Where the peer RPCs are served on their own (`cluster.peer_listen`); `None`: on the API
    /// listener.
    pub peer_listen: Option<SocketAddr>,
    /// Shared secret of peer RPCs.
    pub secret: Secret,
    /// Snapshot after this many entries.
    pub snapshot_logs: u64,
    /// Entries kept below a snapshot.
    pub keep_logs: u64,
    /// Largest applied lag of a ready node.
    pub ready_max_lag: u64,
    /// Raft heartbeat, ms.
    pub heartbeat_ms: u64,
    /// Election timeout range, ms (the greater is also openraft's leader lease).
    pub election_ms: (u64, u64),
    /// Accept fault injection (`/v1/cluster/faults`; partition tests only).
    pub fault_injection: bool,
}
