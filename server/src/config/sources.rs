//! Where `mussikon serve` settings come from, and in which order they win: built-in defaults,
//! then a TOML file (`--config FILE`), then `MUSSIKON_*` environment variables, then flags.
//!
//! Every setting has one dotted name ([`KEYS`]); the file uses it as TOML tables
//! (`[rate_limit.reads] per_second = 5`), the environment as `MUSSIKON_` + the name upper-cased
//! with dots as underscores (`MUSSIKON_RATE_LIMIT_READS_PER_SECOND=5`), and flags either as a
//! dedicated flag (`--listen`) or as `--set rate_limit.reads.per_second=5`. Each source is read
//! into a TOML table; the tables are merged key by key and the result is deserialized once into
//! [`Settings`], so there is one parser and one set of defaults whatever the source.
//!
//! Promises: an unknown key in the file, an unknown `--set` name or a value of the wrong type
//! is an error naming the source and the key, never ignored; secrets cannot be given as flags
//! (they would show in `ps`); [`Settings::redacted_json`] never contains a secret;
//! [`Settings::resolve`] refuses production without a token key and any secret shorter than
//! [`MIN_SECRET_BYTES`].

use crate::config::{
    AuthConfig, AuthKey, CorsConfig, HttpConfig, Mode, Rate, RateLimitConfig, Secret, ServeConfig,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BULK_BYTES, DEFAULT_MAX_JSON_DEPTH, DEV_CORS_ORIGINS,
    MIN_SECRET_BYTES,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

/// The text printed instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Environment variables that start with `MUSSIKON_` but are not settings.
pub const NON_SETTING_ENV: [&str; 5] = [
    "MUSSIKON_LOG",
    "MUSSIKON_LOG_FORMAT",
    "MUSSIKON_CONFIG",
    // Read by the `serve` flags `--node-id` and `--peers` themselves.
    "MUSSIKON_NODE_ID",
    "MUSSIKON_PEERS",
];

/// The type of a setting's value, which says how an environment or flag string is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Any text.
    Text,
    /// A non-negative integer.
    Integer,
    /// A number (fractions allowed).
    Number,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// A list of texts, comma-separated outside TOML.
    List,
}

/// One setting.
#[derive(Debug)]
pub struct Key {
    /// Dotted name, e.g. `auth.public_reads`.
    pub name: &'static str,
    /// Value type.
    pub kind: Kind,
    /// Never printed, never accepted as a flag.
    pub secret: bool,
}

impl Key {
    /// The environment variable that sets this key.
    ///
    /// ```
    /// use mussikon_server::config::sources::key;
    /// assert_eq!(key("rate_limit.reads.burst").unwrap().env_var(), "MUSSIKON_RATE_LIMIT_READS_BURST");
    /// ```
    pub fn env_var(&self) -> String {
        format!(
            "MUSSIKON_{}",
            self.name.replace('.', "_").to_ascii_uppercase()
        )
    }
}

const fn k(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        secret: false,
    }
}

/// A secret setting: never printed, never a flag.
const fn secret(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        secret: true,
    }
}

/// Every setting (documented in `deploy/config/mussikon.example.toml`).
pub const KEYS: &[Key] = &[
    k("mode", Kind::Text),
    k("listen", Kind::Text),
    k("data_dir", Kind::Text),
    k("demo", Kind::Integer),
    k("shutdown_grace_s", Kind::Integer),
    k("http.max_body_bytes", Kind::Integer),
    k("http.max_bulk_bytes", Kind::Integer),
    k("http.max_json_depth", Kind::Integer),
    k("http.trust_forwarded", Kind::Bool),
    k("http.max_connections", Kind::Integer),
    k("http.header_read_timeout_s", Kind::Integer),
    secret("auth.secret", Kind::Text),
    k("auth.secret_file", Kind::Text),
    k("auth.public_key_file", Kind::Text),
    k("auth.issuer", Kind::Text),
    k("auth.audience", Kind::Text),
    k("auth.public_reads", Kind::Bool),
    k("auth.leeway_s", Kind::Integer),
    k("rate_limit.enabled", Kind::Bool),
    k("rate_limit.reads.per_second", Kind::Number),
    k("rate_limit.reads.burst", Kind::Integer),
    k("rate_limit.writes.per_second", Kind::Number),
    k("rate_limit.writes.burst", Kind::Integer),
    k("rate_limit.matches.per_second", Kind::Number),
    k("rate_limit.matches.burst", Kind::Integer),
    k("rate_limit.max_clients", Kind::Integer),
    k("cors.allowed_origins", Kind::List),
    k("cors.max_age_s", Kind::Integer),
    k("cluster.node_id", Kind::Text),
    k("cluster.peers", Kind::List),
    k("cluster.peer_listen", Kind::Text),
    secret("cluster.secret", Kind::Text),
    k("cluster.snapshot_logs", Kind::Integer),
    k("cluster.keep_logs", Kind::Integer),
    k("cluster.ready_max_lag", Kind::Integer),
    k("cluster.heartbeat_ms", Kind::Integer),
    k("cluster.election_min_ms", Kind::Integer),
    k("cluster.election_max_ms", Kind::Integer),
    k("cluster.fault_injection", Kind::Bool),
    k("events.queue", Kind::Integer),
    k("events.max_subscribers", Kind::Integer),
    k("events.max_topics", Kind::Integer),
    k("events.max_frame_bytes", Kind::Integer),
    k("events.ping_interval_s", Kind::Integer),
    k("events.match_k", Kind::Integer),
    k("events.match_queue", Kind::Integer),
    k("index.commit_interval_ms", Kind::Integer),
    k("index.writer_threads", Kind::Integer),
    k("index.enabled", Kind::Bool),
    k("index.overlay_max_musicians", Kind::Integer),
    k("index.overlay_max_age_s", Kind::Integer),
    k("tracing.otlp_endpoint", Kind::Text),
    k("tracing.service_name", Kind::Text),
    k("tracing.sample_ratio", Kind::Number),
    secret("tracing.otlp_headers", Kind::List),
];

/// The setting called `name`, if there is one.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Why the settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read or is not valid TOML.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A source named a setting that does not exist.
    #[error(
        "{source_name}: unknown setting `{name}`; known settings: {}",
        known_names()
    )]
    UnknownKey {
        /// Where it was named (`environment`, `--set`, a file).
        source_name: String,
        /// The name.
        name: String,
    },
    /// A value could not be read as the setting's type.
    #[error("{source_name}: `{name}`: {message}")]
    Value {
        /// Where it was given.
        source_name: String,
        /// The setting.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A secret was given on the command line.
    #[error("`{0}` is secret and cannot be a flag (it would show in the process list); set it in the environment (MUSSIKON_AUTH_SECRET) or point auth.secret_file at a file")]
    SecretFlag(String),
    /// The merged settings break a rule.
    #[error("setting `{name}`: {message}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// The rule broken.
        message: String,
    },
    /// Production mode without a key to verify tokens with.
    #[error("production mode requires authentication, but no token key is configured: set auth.secret_file (or MUSSIKON_AUTH_SECRET) for HS256, or auth.public_key_file for RS256; refusing to start")]
    ProductionWithoutAuth,
}

fn known_names() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// All settings after merging, before key files are read. Field names are the setting names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `development` or `production`.
    pub mode: Mode,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Demo musicians for an empty store.
    pub demo: usize,
    /// Shutdown grace, seconds.
    pub shutdown_grace_s: u64,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[auth]`.
    pub auth: AuthSettings,
    /// `[rate_limit]`.
    pub rate_limit: RateLimitSettings,
    /// `[cors]`.
    pub cors: CorsSettings,
    /// `[cluster]`.
    pub cluster: ClusterSettings,
    /// `[events]`.
    pub events: EventsSettings,
    /// `[index]`.
    pub index: IndexSettings,
    /// `[tracing]`.
    pub tracing: TracingSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Development,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            demo: 0,
            shutdown_grace_s: 10,
            http: HttpSettings::default(),
            auth: AuthSettings::default(),
            rate_limit: RateLimitSettings::default(),
            cors: CorsSettings::default(),
            cluster: ClusterSettings::default(),
            events: EventsSettings::default(),
            index: IndexSettings::default(),
            tracing: TracingSettings::default(),
        }
    }
}

/// `[tracing]`: span export over OTLP (see `crate::telemetry`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSettings {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to
    /// `{base}/v1/traces`. Empty or absent: no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of new traces (requests without a sampled caller) exported, 0 to 1.
    pub sample_ratio: f64,
    /// `NAME=VALUE` headers on every export request (a hosted collector's API key): secret,
    /// as `OTEL_EXPORTER_OTLP_HEADERS` is written.
    pub otlp_headers: Option<Vec<String>>,
}

impl Default for TracingSettings {
    fn default() -> Self {
        TracingSettings {
            otlp_endpoint: None,
            service_name: "mussikon".to_string(),
            sample_ratio: 1.0,
            otlp_headers: None,
        }
    }
}

impl TracingSettings {
    /// The headers with their values redacted.
    fn redacted_headers(&self) -> Option<Vec<String>> {
        self.otlp_headers.as_ref().map(|list| {
            list.iter()
                .map(|h| format!("{}={REDACTED}", h.split('=').next().unwrap_or("")))
                .collect()
        })
    }
}

impl std::fmt::Debug for TracingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingSettings")
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("otlp_headers", &self.redacted_headers())
            .finish()
    }
}

impl TracingSettings {
    fn resolve(&self) -> Result<crate::config::TracingConfig, ConfigError> {
        let invalid = |name: &'static str, message: String| ConfigError::Invalid { name, message };
        let name = self.service_name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid(
                "tracing.service_name",
                "must be 1 to 100 characters".to_string(),
            ));
        }
        let otlp_endpoint = match self.otlp_endpoint.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => Some(
                traces_url(url)
                    .map_err(|m| invalid("tracing.otlp_endpoint", format!("`{url}` {m}")))?,
            ),
        };
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "tracing.sample_ratio",
                "must be a number from 0 to 1".to_string(),
            ));
        }
        let mut otlp_headers = Vec::new();
        for pair in self.otlp_headers.iter().flatten() {
            let (header, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (header, value) = (header.trim(), value.trim());
            let header_ok = warp::http::HeaderName::from_bytes(header.as_bytes()).is_ok();
            let value_ok = !value.is_empty() && warp::http::HeaderValue::from_str(value).is_ok();
            if !header_ok || !value_ok {
                // The value is secret: name only the header.
                return Err(invalid(
                    "tracing.otlp_headers",
                    format!(
                        "`{}`: each item must be NAME=VALUE with a valid HTTP header name and a \
                         non-empty printable value",
                        if header_ok { header } else { "(invalid name)" }
                    ),
                ));
            }
            otlp_headers.push((
                header.to_ascii_lowercase(),
                crate::config::Secret::new(value.as_bytes().to_vec()),
            ));
        }
        Ok(crate::config::TracingConfig {
            otlp_endpoint,
            service_name: name.to_string(),
            sample_ratio: self.sample_ratio,
            otlp_headers,
        })
    }
}

/// The OTLP/HTTP traces URL of a collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// read: `http[s]://host[:port][/prefix]` + `/v1/traces`.
///
/// ```
/// use mussikon_server::config::sources::traces_url;
/// assert_eq!(traces_url("http://otel:4318/").unwrap(), "http://otel:4318/v1/traces");
/// assert!(traces_url("otel:4318").is_err());
/// ```
pub fn traces_url(base: &str) -> Result<String, &'static str> {
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || base.contains(['?', '#', ' ']) {
        return Err("must be a collector's base URL: scheme, host, optional port and path");
    }
    let url = format!("{}/v1/traces", base.trim_end_matches('/'));
    url.parse::<warp::http::Uri>()
        .map_err(|_| "is not a valid URL")?;
    Ok(url)
}

/// `[index]`: the search index's cadence (see `mussikon_engine::Config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexSettings {
    /// Longest time, ms, before a write is in the index's committed segments.
    pub commit_interval_ms: u64,
    /// tantivy indexing threads.
    pub writer_threads: usize,
    /// Keep the search index; a cluster node may turn it off (it then serves no search).
    pub enabled: bool,
    /// Most musicians whose changed fee, currency, travel radius, rating or active flag the
    /// index keeps in memory instead of re-indexing them (the facts overlay); 0: none.
    pub overlay_max_musicians: usize,
    /// Longest time, s, a change stays in the facts overlay before it is folded into the index.
    pub overlay_max_age_s: u64,
}

/// See [`IndexSettings::overlay_max_musicians`] (the engine library's default).
pub const DEFAULT_INDEX_OVERLAY_MAX_MUSICIANS: usize = 50_000;
/// See [`IndexSettings::overlay_max_age_s`] (the engine library's default).
pub const DEFAULT_INDEX_OVERLAY_MAX_AGE_S: u64 = 60;

/// A serving node's index defaults, not the engine library's (250 ms, 2 threads): a node's
/// writes are a trickle of single records, for which one indexing thread and a commit a second
/// cut indexing CPU per replicated write by 40 % (docs/perf.md). Builds of the whole index
/// (a restore, a snapshot install) use at least two threads whatever this says.
pub const DEFAULT_INDEX_COMMIT_INTERVAL_MS: u64 = 1000;
/// See [`DEFAULT_INDEX_COMMIT_INTERVAL_MS`].
pub const DEFAULT_INDEX_WRITER_THREADS: usize = 1;

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            commit_interval_ms: DEFAULT_INDEX_COMMIT_INTERVAL_MS,
            writer_threads: DEFAULT_INDEX_WRITER_THREADS,
            enabled: true,
            overlay_max_musicians: DEFAULT_INDEX_OVERLAY_MAX_MUSICIANS,
            overlay_max_age_s: DEFAULT_INDEX_OVERLAY_MAX_AGE_S,
        }
    }
}

/// `[events]`: the WebSocket event stream (see `crate::config::EventsConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSettings {
    /// Events queued per subscriber before it is dropped.
    pub queue: usize,
    /// Most connections at once.
    pub max_subscribers: usize,
    /// Most topics per connection.
    pub max_topics: usize,
    /// Largest client frame, bytes.
    pub max_frame_bytes: usize,
    /// Ping interval, seconds.
    pub ping_interval_s: u64,
    /// Candidates per slot for `gig.matching`.
    pub match_k: usize,
    /// Created gigs waiting for `gig.matching`.
    pub match_queue: usize,
}

impl Default for EventsSettings {
    fn default() -> Self {
        let d = crate::config::EventsConfig::default();
        EventsSettings {
            queue: d.queue,
            max_subscribers: d.max_subscribers,
            max_topics: d.max_topics,
            max_frame_bytes: d.max_frame_bytes,
            ping_interval_s: d.ping_interval.as_secs(),
            match_k: d.match_k,
            match_queue: d.match_queue,
        }
    }
}

/// `cluster.node_id` as written: a TOML integer, or text (`"auto"`, or digits from the
/// environment or a flag).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeIdValue {
    /// `node_id = 3`.
    Number(i64),
    /// `node_id = "auto"` or `"3"`.
    Text(String),
}

impl NodeIdValue {
    fn setting(&self) -> Result<mussikon_cluster::identity::NodeIdSetting, String> {
        match self {
            NodeIdValue::Number(n) => n.to_string().parse(),
            NodeIdValue::Text(t) => t.parse(),
        }
    }
}

/// `[cluster]`: replication with openraft (see docs/cluster.md). Without `node_id` the server
/// runs single-node. Its `Debug` form redacts the secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// This node's id (≥ 1), or `auto`: the id kept in the data directory, drawn on first start.
    pub node_id: Option<NodeIdValue>,
    /// Initial members as `ID=HOST:PORT`, each a node's peer address.
    pub peers: Vec<String>,
    /// `IP:PORT` of a listener serving only the peer RPCs; unset or empty: they share the API
    /// listener. Text rather than an address, so that a bad value is refused naming this key.
    pub peer_listen: Option<String>,
    /// Shared secret of peer RPCs.
    pub secret: Option<String>,
    /// Snapshot after this many entries.
    pub snapshot_logs: u64,
    /// Entries kept below a snapshot.
    pub keep_logs: u64,
    /// Largest applied lag of a ready node.
    pub ready_max_lag: u64,
    /// Raft heartbeat, ms.
    pub heartbeat_ms: u64,
    /// Least election timeout, ms (0: 2.5 heartbeats).
    pub election_min_ms: u64,
    /// Greatest election timeout, ms, also openraft's leader lease (0: 4 heartbeats).
    pub election_max_ms: u64,
    /// Accept fault injection (partition tests only).
    pub fault_injection: bool,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: None,
            peers: Vec::new(),
            peer_listen: None,
            secret: None,
            snapshot_logs: 10_000,
            keep_logs: 1_000,
            ready_max_lag: 1_000,
            heartbeat_ms: 100,
            election_min_ms: 0,
            election_max_ms: 0,
            fault_injection: false,
        }
    }
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("node_id", &self.node_id)
            .field("peers", &self.peers)
            .field("peer_listen", &self.peer_listen)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .finish_non_exhaustive()
    }
}

impl ClusterSettings {
    /// The cluster configuration, `None` when `node_id` is unset (single node). `listen` is the
    /// API listener's address, which the peer listener's must not take.
    fn resolve(
        &self,
        listen: SocketAddr,
    ) -> Result<Option<crate::config::ClusterConfig>, ConfigError> {
        let invalid = |name: &'static str, message: String| ConfigError::Invalid { name, message };
        let peer_listen = self.peer_listen(listen)?;
        let Some(node_id) = &self.node_id else {
            // Refused rather than ignored: an operator who set it expects a port to open (and
            // a firewall rule to matter), and a single node has no peer RPCs to serve there.
            return match peer_listen {
                None => Ok(None),
                Some(_) => Err(invalid(
                    "cluster.peer_listen",
                    "only a cluster node serves peer RPCs: set cluster.node_id (--node-id) too, \
                     or leave cluster.peer_listen unset on a single node"
                        .into(),
                )),
            };
        };
        let node_id = node_id
            .setting()
            .map_err(|rule| invalid("cluster.node_id", rule))?;
        let mut peers = std::collections::BTreeMap::new();
        for p in &self.peers {
            let (id, addr) = p.split_once('=').ok_or_else(|| {
                invalid(
                    "cluster.peers",
                    format!("`{p}` must be ID=HOST:PORT, e.g. 1=10.0.0.1:8080"),
                )
            })?;
            let id: u64 = id.trim().parse().ok().filter(|i| *i > 0).ok_or_else(|| {
                invalid(
                    "cluster.peers",
                    format!("`{p}`: the id must be an integer ≥ 1"),
                )
            })?;
            let addr = addr.trim();
            if addr
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
            {
                return Err(invalid(
                    "cluster.peers",
                    format!("`{p}`: the address must be HOST:PORT"),
                ));
            }
            if peers.insert(id, addr.to_string()).is_some() {
                return Err(invalid("cluster.peers", format!("id {id} is listed twice")));
            }
        }
        if peers.is_empty() {
            return Err(invalid(
                "cluster.peers",
                "a cluster node needs the cluster's initial members as ID=HOST:PORT,... \
                 (MUSSIKON_PEERS or --peers)"
                    .into(),
            ));
        }
        let secret = self.secret.clone().unwrap_or_default();
        if secret.len() < 16 {
            return Err(invalid(
                "cluster.secret",
                "a cluster needs a shared secret of at least 16 bytes (MUSSIKON_CLUSTER_SECRET or --cluster-secret)".into(),
            ));
        }
        let heartbeat_ms = self.heartbeat_ms.max(10);
        let (default_min, default_max) = mussikon_cluster::node::default_election_ms(heartbeat_ms);
        let min = match self.election_min_ms {
            0 => default_min,
            n => n,
        };
        let max = match self.election_max_ms {
            0 => default_max,
            n => n,
        };
        // The error names the setting that breaks the rule (a default counts as not set).
        if min <= heartbeat_ms * 2 {
            return Err(invalid(
                "cluster.election_min_ms",
                format!(
                    "must be more than twice cluster.heartbeat_ms (have {min} ms, heartbeat {heartbeat_ms} ms)"
                ),
            ));
        }
        if max <= min {
            let (field, set) = if self.election_max_ms != 0 || self.election_min_ms == 0 {
                ("cluster.election_max_ms", "must be greater than")
            } else {
                ("cluster.election_min_ms", "must be less than")
            };
            return Err(invalid(
                field,
                format!(
                    "{set} the other election bound: election_min_ms < election_max_ms (have {min} ms and {max} ms)"
                ),
            ));
        }
        Ok(Some(crate::config::ClusterConfig {
            node_id,
            peers,
            peer_listen,
            secret: Secret::new(secret.into_bytes()),
            snapshot_logs: self.snapshot_logs.max(1),
            keep_logs: self.keep_logs,
            ready_max_lag: self.ready_max_lag,
            heartbeat_ms,
            election_ms: (min, max),
            fault_injection: self.fault_injection,
        }))
    }
}

impl ClusterSettings {
    /// `peer_listen` as an address (`None` when unset or empty), checked against the API
    /// listener's `listen`: the two may not be one port (port 0 on both is two free ports).
    fn peer_listen(&self, listen: SocketAddr) -> Result<Option<SocketAddr>, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            name: "cluster.peer_listen",
            message,
        };
        let text = match self.peer_listen.as_deref().map(str::trim) {
            None | Some("") => return Ok(None),
            Some(text) => text,
        };
        let addr: SocketAddr = text.parse().map_err(|_| {
            invalid(format!(
                "`{text}` is not IP:PORT (e.g. 0.0.0.0:7000; a host name is not accepted)"
            ))
        })?;
        let same_ip =
            addr.ip() == listen.ip() || addr.ip().is_unspecified() || listen.ip().is_unspecified();
        if addr.port() != 0 && addr.port() == listen.port() && same_ip {
            return Err(invalid(format!(
                "`{addr}` is the API listener's port (listen = {listen}); give the peer \
                 listener its own port, or leave cluster.peer_listen unset to serve the peer \
                 RPCs on the API listener"
            )));
        }
        Ok(Some(addr))
    }
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest JSON body, bytes.
    pub max_body_bytes: usize,
    /// Largest bulk NDJSON body, bytes.
    pub max_bulk_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Believe `X-Forwarded-For`/`X-Forwarded-Proto`.
    pub trust_forwarded: bool,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Seconds a client has to send a request's whole header.
    pub header_read_timeout_s: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            trust_forwarded: false,
            max_connections: crate::config::ConnectionLimits::default().max_connections,
            header_read_timeout_s: crate::config::ConnectionLimits::default()
                .header_read_timeout
                .as_secs(),
        }
    }
}

/// `[auth]`. Its `Debug` form redacts the secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// HS256 secret itself (prefer `secret_file` or the environment).
    pub secret: Option<String>,
    /// File holding the HS256 secret (trailing newlines ignored).
    pub secret_file: Option<PathBuf>,
    /// PEM file with the RS256 public key.
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Reads without a token.
    pub public_reads: bool,
    /// Clock skew tolerated on `exp`, seconds.
    pub leeway_s: u64,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("secret_file", &self.secret_file)
            .field("public_key_file", &self.public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("public_reads", &self.public_reads)
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            secret: None,
            secret_file: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            public_reads: false,
            leeway_s: 30,
        }
    }
}

/// `[rate_limit.<class>]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSettings {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Burst size.
    pub burst: u32,
}

/// `[rate_limit]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Unset: on in production, off in development.
    pub enabled: Option<bool>,
    /// Reads.
    pub reads: RateSettings,
    /// Writes.
    pub writes: RateSettings,
    /// Matching.
    pub matches: RateSettings,
    /// Clients tracked per class before the state is reset.
    pub max_clients: usize,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let d = RateLimitConfig::default();
        let rate = |r: Rate| RateSettings {
            per_second: r.per_second,
            burst: r.burst,
        };
        RateLimitSettings {
            enabled: None,
            reads: rate(d.reads),
            writes: rate(d.writes),
            matches: rate(d.matches),
            max_clients: d.max_clients,
        }
    }
}

/// `[cors]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSettings {
    /// Unset: the local dev servers in development, none in production.
    pub allowed_origins: Option<Vec<String>>,
    /// Preflight cache time, seconds.
    pub max_age_s: u64,
}

impl Default for CorsSettings {
    fn default() -> Self {
        CorsSettings {
            allowed_origins: None,
            max_age_s: CorsConfig::default().max_age_s,
        }
    }
}

/// Reads a value given as text (environment or flag) as `key`'s type.
fn typed(key: &Key, raw: &str, source_name: &str) -> Result<Value, ConfigError> {
    let bad = |message: String| ConfigError::Value {
        source_name: source_name.to_string(),
        name: key.name.to_string(),
        message,
    };
    // A secret is taken byte for byte, as `mussikon token` takes it.
    let raw = if key.secret { raw } else { raw.trim() };
    Ok(match key.kind {
        Kind::Text => Value::String(raw.to_string()),
        Kind::Integer => Value::Integer(
            raw.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad(format!("`{raw}` is not a non-negative integer")))?,
        ),
        Kind::Number => Value::Float(
            raw.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| bad(format!("`{raw}` is not a number")))?,
        ),
        Kind::Bool => Value::Boolean(match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad(format!("`{raw}` is not true or false"))),
        }),
        Kind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
    })
}

/// Sets the dotted `name` in `table`, creating sub-tables.
fn insert(table: &mut Table, name: &str, value: Value) {
    let mut parts: Vec<&str> = name.split('.').collect();
    let last = parts.pop().unwrap_or(name);
    let mut at = table;
    for p in parts {
        let entry = at
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(t) = entry else {
            return;
        };
        at = t;
    }
    at.insert(last.to_string(), value);
}

/// Merges `over` into `base`: tables key by key, any other value replaced whole.
pub fn merge(base: &mut Table, over: Table) {
    for (name, value) in over {
        match (base.get_mut(&name), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(name, v);
            }
        }
    }
}

/// The built-in defaults as a layer, so that a source may set one key of a table (e.g. only
/// `rate_limit.reads.burst`) and keep the defaults of the others.
pub fn defaults_layer() -> Table {
    // Serializing plain settings cannot fail; an empty table would still deserialize to the
    // same defaults where serde defaults exist.
    Table::try_from(Settings::default()).unwrap_or_default()
}

/// The layer of a TOML configuration file's text; `path` names it in errors.
pub fn file_layer(text: &str, path: &Path) -> Result<Table, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let table: Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    // Check names and types now, so that the error names this file.
    let mut checked = defaults_layer();
    merge(&mut checked, table.clone());
    Settings::deserialize(Value::Table(checked))
        .map_err(|e| err(e.to_string().trim().to_string()))?;
    Ok(table)
}

/// Reads and parses a configuration file.
pub fn read_file_layer(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: format!("cannot read it: {e}"),
    })?;
    file_layer(&text, path)
}

/// The layer of the environment: every `MUSSIKON_*` variable that names a setting. Also returns
/// the names of `MUSSIKON_*` variables that name nothing (likely typos), to warn about.
pub fn env_layer<I>(vars: I) -> Result<(Table, Vec<String>), ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut table = Table::new();
    let mut unknown = Vec::new();
    for (name, value) in vars {
        if !name.starts_with("MUSSIKON_") || NON_SETTING_ENV.contains(&name.as_str()) {
            continue;
        }
        match KEYS.iter().find(|k| k.env_var() == name) {
            Some(key) => insert(&mut table, key.name, typed(key, &value, &name)?),
            None => unknown.push(name),
        }
    }
    unknown.sort();
    Ok((table, unknown))
}

/// The layer of flags: `(setting name, text value)` pairs, from dedicated flags and `--set`.
pub fn flag_layer(pairs: &[(String, String)]) -> Result<Table, ConfigError> {
    let mut table = Table::new();
    for (name, value) in pairs {
        let key = key(name).ok_or_else(|| ConfigError::UnknownKey {
            source_name: "--set".into(),
            name: name.clone(),
        })?;
        if key.secret {
            return Err(ConfigError::SecretFlag(name.clone()));
        }
        insert(&mut table, key.name, typed(key, value, "flag")?);
    }
    Ok(table)
}

impl Settings {
    /// Defaults overridden by each layer in turn (later layers win).
    ///
    /// ```
    /// use mussikon_server::config::sources::{flag_layer, Settings};
    /// let flags = flag_layer(&[("demo".into(), "5".into())]).unwrap();
    /// assert_eq!(Settings::from_layers(vec![flags]).unwrap().demo, 5);
    /// ```
    pub fn from_layers(layers: Vec<Table>) -> Result<Settings, ConfigError> {
        let mut merged = defaults_layer();
        for layer in layers {
            merge(&mut merged, layer);
        }
        Settings::deserialize(Value::Table(merged)).map_err(|e| ConfigError::Value {
            source_name: "settings".into(),
            name: "(merged)".into(),
            message: e.to_string().trim().to_string(),
        })
    }

    /// These settings as one line of JSON with every secret replaced by `<redacted>`: what the
    /// server logs at start.
    pub fn redacted_json(&self) -> String {
        let mut shown = self.clone();
        if shown.auth.secret.is_some() {
            shown.auth.secret = Some(REDACTED.to_string());
        }
        if shown.cluster.secret.is_some() {
            shown.cluster.secret = Some(REDACTED.to_string());
        }
        shown.tracing.otlp_headers = shown.tracing.redacted_headers();
        serde_json::to_string(&shown).unwrap_or_else(|e| format!("(unprintable: {e})"))
    }

    /// Checks the settings, reads key files, and builds what the server runs with.
    pub fn resolve(&self) -> Result<ServeConfig, ConfigError> {
        let production = self.mode == Mode::Production;
        let key = self.auth_key()?;
        if production && key.is_none() {
            return Err(ConfigError::ProductionWithoutAuth);
        }
        let invalid = |name: &'static str, message: &str| ConfigError::Invalid {
            name,
            message: message.to_string(),
        };
        let rate = |name: &'static str, r: RateSettings| -> Result<Rate, ConfigError> {
            if !(r.per_second.is_finite() && r.per_second > 0.0) {
                return Err(invalid(name, "per_second must be a number > 0"));
            }
            if r.burst == 0 {
                return Err(invalid(name, "burst must be at least 1"));
            }
            Ok(Rate {
                per_second: r.per_second,
                burst: r.burst,
            })
        };
        let rl = &self.rate_limit;
        if rl.max_clients == 0 {
            return Err(invalid("rate_limit.max_clients", "must be at least 1"));
        }
        if self.http.max_json_depth == 0 {
            return Err(invalid("http.max_json_depth", "must be at least 1"));
        }
        if !(1..=60_000).contains(&self.index.commit_interval_ms) {
            return Err(invalid("index.commit_interval_ms", "must be 1 to 60000"));
        }
        if !(1..=16).contains(&self.index.writer_threads) {
            return Err(invalid("index.writer_threads", "must be 1 to 16"));
        }
        if self.index.overlay_max_musicians > 10_000_000 {
            return Err(invalid(
                "index.overlay_max_musicians",
                "must be 0 to 10000000",
            ));
        }
        if !(1..=3600).contains(&self.index.overlay_max_age_s) {
            return Err(invalid("index.overlay_max_age_s", "must be 1 to 3600"));
        }
        if self.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if self.http.header_read_timeout_s == 0 {
            return Err(invalid("http.header_read_timeout_s", "must be at least 1"));
        }
        let origins = match &self.cors.allowed_origins {
            Some(list) => list.clone(),
            None if production => Vec::new(),
            None => DEV_CORS_ORIGINS.iter().map(|s| s.to_string()).collect(),
        };
        for o in &origins {
            check_origin(o).map_err(|m| ConfigError::Invalid {
                name: "cors.allowed_origins",
                message: format!("`{o}` {m}"),
            })?;
        }
        let auth = AuthConfig {
            key,
            issuer: self.auth.issuer.clone().filter(|s| !s.is_empty()),
            audience: self.auth.audience.clone().filter(|s| !s.is_empty()),
            public_reads: self.auth.public_reads,
            leeway_s: self.auth.leeway_s,
        };
        if auth.key.is_some() {
            crate::http::auth::Verifier::new(&auth).map_err(|e| ConfigError::Invalid {
                name: "auth.public_key_file",
                message: e.to_string(),
            })?;
        }
        let cluster = self.cluster.resolve(self.listen)?;
        if !self.index.enabled && cluster.is_none() {
            return Err(invalid(
                "index.enabled",
                "may be false only on a cluster node (--node-id, --peers): a single node \
                 serves every search itself",
            ));
        }
        Ok(ServeConfig {
            cluster,
            tracing: self.tracing.resolve()?,
            index: crate::config::IndexConfig {
                commit_interval: Duration::from_millis(self.index.commit_interval_ms),
                writer_threads: self.index.writer_threads,
                enabled: self.index.enabled,
                overlay_max_musicians: self.index.overlay_max_musicians,
                overlay_max_age: Duration::from_secs(self.index.overlay_max_age_s),
            },
            mode: self.mode,
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            demo: self.demo,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_s),
            http: HttpConfig {
                max_body_bytes: self.http.max_body_bytes,
                max_bulk_bytes: self.http.max_bulk_bytes,
                max_json_depth: self.http.max_json_depth,
                trust_forwarded: self.http.trust_forwarded,
                auth,
                rate_limit: RateLimitConfig {
                    enabled: rl.enabled.unwrap_or(production),
                    reads: rate("rate_limit.reads", rl.reads)?,
                    writes: rate("rate_limit.writes", rl.writes)?,
                    matches: rate("rate_limit.matches", rl.matches)?,
                    max_clients: rl.max_clients,
                },
                cors: CorsConfig {
                    allowed_origins: origins,
                    max_age_s: self.cors.max_age_s,
                },
                events: crate::config::EventsConfig {
                    queue: self.events.queue.max(1),
                    max_subscribers: self.events.max_subscribers,
                    max_topics: self.events.max_topics.max(1),
                    max_frame_bytes: self.events.max_frame_bytes.max(1024),
                    ping_interval: Duration::from_secs(self.events.ping_interval_s.max(1)),
                    match_k: self.events.match_k.clamp(1, mussikon_engine::MAX_K),
                    match_queue: self.events.match_queue.max(1),
                },
                connections: crate::config::ConnectionLimits {
                    max_connections: self.http.max_connections,
                    header_read_timeout: Duration::from_secs(self.http.header_read_timeout_s),
                },
            },
        })
    }

    fn auth_key(&self) -> Result<Option<AuthKey>, ConfigError> {
        let a = &self.auth;
        let from_file = match &a.secret_file {
            Some(path) => Some(read_secret_file(path)?),
            None => None,
        };
        let secret = match (&a.secret, from_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "auth.secret",
                    message: "set auth.secret or auth.secret_file, not both".into(),
                })
            }
            (Some(s), None) => Some(Secret::new(s.as_bytes().to_vec())),
            (None, from_file) => from_file,
        };
        match (secret, &a.public_key_file) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                name: "auth.public_key_file",
                message: "set an HS256 secret or an RS256 public key, not both".into(),
            }),
            (Some(s), None) => {
                if s.expose().len() < MIN_SECRET_BYTES {
                    return Err(ConfigError::Invalid {
                        name: "auth.secret",
                        message: format!(
                            "an HS256 secret must be at least {MIN_SECRET_BYTES} bytes (got {}); \
                             make one with `head -c 48 /dev/urandom | base64`",
                            s.expose().len()
                        ),
                    });
                }
                Ok(Some(AuthKey::Hs256(s)))
            }
            (None, Some(path)) => {
                let pem = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    name: "auth.public_key_file",
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                Ok(Some(AuthKey::Rs256 {
                    public_key_pem: pem,
                }))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Reads an HS256 secret file; a trailing newline (as editors and `echo` leave) is not part of
/// the secret.
pub fn read_secret_file(path: &Path) -> Result<Secret, ConfigError> {
    let mut bytes = std::fs::read(path).map_err(|e| ConfigError::Invalid {
        name: "auth.secret_file",
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(Secret::new(bytes))
}

/// An origin is `http://` or `https://`, a host, maybe a port; no path, no trailing slash.
fn check_origin(o: &str) -> Result<(), &'static str> {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains('/') || rest.contains('*') {
        return Err("must be scheme://host[:port] with no path, no trailing slash and no wildcard");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn flags_win_over_environment_over_file_over_defaults() {
        let file = file_layer(
            "demo = 1\nshutdown_grace_s = 1\n[http]\nmax_json_depth = 1\nmax_body_bytes = 1\n",
            Path::new("test.toml"),
        )
        .unwrap();
        let (env, unknown) = env_layer(pairs(&[
            ("MUSSIKON_SHUTDOWN_GRACE_S", "2"),
            ("MUSSIKON_HTTP_MAX_JSON_DEPTH", "2"),
            ("MUSSIKON_DEMO", "2"),
            ("MUSSIKON_LOG", "debug"),
            ("MUSSIKON_DEMOO", "3"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        assert_eq!(unknown, ["MUSSIKON_DEMOO"]);
        let flags = flag_layer(&pairs(&[("demo", "3")])).unwrap();
        let s = Settings::from_layers(vec![file, env, flags]).unwrap();
        assert_eq!(s.demo, 3, "flag over env");
        assert_eq!(s.shutdown_grace_s, 2, "env over file");
        assert_eq!(s.http.max_json_depth, 2, "env over file, nested");
        assert_eq!(s.http.max_body_bytes, 1, "file over default");
        assert_eq!(
            s.http.max_bulk_bytes, DEFAULT_MAX_BULK_BYTES,
            "default when nothing says otherwise, beside a key the file set"
        );
        assert_eq!(s.mode, Mode::Development);
    }

    #[test]
    fn one_key_of_a_table_keeps_the_defaults_of_the_others() {
        assert_eq!(Settings::from_layers(vec![]).unwrap(), Settings::default());
        let flags = flag_layer(&pairs(&[("rate_limit.reads.burst", "7")])).unwrap();
        let s = Settings::from_layers(vec![flags]).unwrap();
        assert_eq!(s.rate_limit.reads.burst, 7);
        assert_eq!(
            s.rate_limit.reads.per_second,
            RateLimitSettings::default().reads.per_second
        );
        file_layer("[rate_limit.writes]\nburst = 3\n", Path::new("f.toml")).unwrap();
    }

    #[test]
    fn the_overlay_defaults_are_the_engine_librarys() {
        let engine = mussikon_engine::Config::default();
        assert_eq!(
            DEFAULT_INDEX_OVERLAY_MAX_MUSICIANS,
            engine.index_overlay_max_musicians
        );
        assert_eq!(
            Duration::from_secs(DEFAULT_INDEX_OVERLAY_MAX_AGE_S),
            engine.index_overlay_max_age
        );
    }

    #[test]
    fn every_key_has_a_field_and_an_example() {
        let example = include_str!("../../../deploy/config/mussikon.example.toml");
        for key in KEYS {
            let value = match key.kind {
                Kind::Text if key.name == "mode" => "production",
                Kind::Text if key.name == "listen" => "0.0.0.0:80",
                Kind::Text => "x",
                Kind::Integer | Kind::Number => "7",
                Kind::Bool => "true",
                Kind::List => "http://a.example,http://b.example",
            };
            let (layer, _) = env_layer(vec![(key.env_var(), value.to_string())]).unwrap();
            Settings::from_layers(vec![layer]).unwrap_or_else(|e| panic!("{}: {e}", key.name));
            let leaf = key.name.rsplit('.').next().unwrap();
            assert!(
                example.contains(&format!("{leaf} =")),
                "{} is not documented in the example config",
                key.name
            );
        }
        // The example itself is a valid configuration.
        file_layer(example, Path::new("mussikon.example.toml")).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let e = file_layer("[auth]\npublic_read = true\n", Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("a.toml"), "{e}");
        assert!(e.to_string().contains("public_read"), "{e}");
        let e = env_layer(pairs(&[("MUSSIKON_DEMO", "many")])).unwrap_err();
        assert!(e.to_string().contains("MUSSIKON_DEMO"), "{e}");
        let e = flag_layer(&pairs(&[("nope", "1")])).unwrap_err();
        assert!(e.to_string().contains("unknown setting `nope`"), "{e}");
        let e = flag_layer(&pairs(&[("auth.secret", "x")])).unwrap_err();
        assert!(matches!(e, ConfigError::SecretFlag(_)), "{e}");
    }

    #[test]
    fn secrets_are_redacted_in_the_logged_form() {
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-42";
        let (env, _) = env_layer(pairs(&[("MUSSIKON_AUTH_SECRET", secret)])).unwrap();
        let s = Settings::from_layers(vec![env]).unwrap();
        let shown = s.redacted_json();
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("\"secret\":\"<redacted>\""), "{shown}");
        assert!(!format!("{s:?}").contains(secret));
        let c = s.resolve().unwrap();
        assert!(!format!("{c:?}").contains(secret));

        let key = "hosted-collector-api-key-0042";
        let value = format!("x-api-key={key},x-tenant=blue");
        let (env, _) = env_layer(pairs(&[("MUSSIKON_TRACING_OTLP_HEADERS", &value)])).unwrap();
        let s = Settings::from_layers(vec![env]).unwrap();
        let shown = s.redacted_json();
        assert!(!shown.contains(key) && !shown.contains("blue"), "{shown}");
        assert!(shown.contains("x-api-key=<redacted>"), "{shown}");
        assert!(!format!("{s:?}").contains(key));
        let c = s.resolve().unwrap();
        assert!(!format!("{c:?}").contains(key));
        assert_eq!(c.tracing.otlp_headers.len(), 2);
        assert_eq!(c.tracing.otlp_headers[0].1.expose(), key.as_bytes());
        let e = flag_layer(&pairs(&[("tracing.otlp_headers", "a=b")])).unwrap_err();
        assert!(matches!(e, ConfigError::SecretFlag(_)), "{e}");
        for bad in ["no-value", "bad name=v", "x-key="] {
            let (env, _) = env_layer(pairs(&[("MUSSIKON_TRACING_OTLP_HEADERS", bad)])).unwrap();
            let e = Settings::from_layers(vec![env])
                .unwrap()
                .resolve()
                .unwrap_err();
            assert!(e.to_string().contains("tracing.otlp_headers"), "{bad}: {e}");
        }
    }

    #[test]
    fn production_needs_a_key_and_secrets_must_be_long() {
        let prod = flag_layer(&pairs(&[("mode", "production")])).unwrap();
        let e = Settings::from_layers(vec![prod.clone()])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(matches!(e, ConfigError::ProductionWithoutAuth), "{e}");
        let (short, _) = env_layer(pairs(&[("MUSSIKON_AUTH_SECRET", "short")])).unwrap();
        let e = Settings::from_layers(vec![short])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("at least 32 bytes"), "{e}");
        let (long, _) = env_layer(pairs(&[("MUSSIKON_AUTH_SECRET", &"k".repeat(32))])).unwrap();
        let c = Settings::from_layers(vec![prod, long])
            .unwrap()
            .resolve()
            .unwrap();
        assert!(c.http.rate_limit.enabled, "on by default in production");
        assert!(c.http.cors.allowed_origins.is_empty());
    }

    #[test]
    fn development_defaults() {
        let c = Settings::default().resolve().unwrap();
        assert!(c.http.auth.key.is_none());
        assert!(!c.http.rate_limit.enabled);
        assert_eq!(c.http.cors.allowed_origins, DEV_CORS_ORIGINS);
        let e = Settings::from_layers(vec![flag_layer(&pairs(&[(
            "cors.allowed_origins",
            "https://app.example/",
        )]))
        .unwrap()])
        .unwrap()
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("trailing slash"), "{e}");
    }

    #[test]
    fn connection_limits_come_from_the_settings_and_zero_is_refused() {
        let (env, _) = env_layer(vec![
            ("MUSSIKON_HTTP_MAX_CONNECTIONS".into(), "5".into()),
            ("MUSSIKON_HTTP_HEADER_READ_TIMEOUT_S".into(), "3".into()),
        ])
        .unwrap();
        let c = Settings::from_layers(vec![env]).unwrap().resolve().unwrap();
        assert_eq!(c.http.connections.max_connections, 5);
        assert_eq!(
            c.http.connections.header_read_timeout,
            Duration::from_secs(3)
        );
        for key in ["http.max_connections", "http.header_read_timeout_s"] {
            let e = Settings::from_layers(vec![flag_layer(&pairs(&[(key, "0")])).unwrap()])
                .unwrap()
                .resolve()
                .unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn the_index_may_be_off_only_on_a_cluster_node() {
        let off = ("index.enabled", "false");
        let e = Settings::from_layers(vec![flag_layer(&pairs(&[off])).unwrap()])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("index.enabled"), "{e}");
        let (env, _) = env_layer(vec![(
            "MUSSIKON_CLUSTER_SECRET".into(),
            "0123456789abcdef0123".into(),
        )])
        .unwrap();
        let node = [
            ("cluster.node_id", "1"),
            ("cluster.peers", "1=127.0.0.1:7001,2=127.0.0.1:7002"),
            off,
        ];
        let c = Settings::from_layers(vec![env, flag_layer(&pairs(&node)).unwrap()])
            .unwrap()
            .resolve()
            .unwrap();
        assert!(!c.index.enabled);
        assert!(
            !c.index
                .apply_to(mussikon_engine::Config::default())
                .index_enabled
        );
        let on = Settings::from_layers(vec![]).unwrap().resolve().unwrap();
        assert!(on.index.enabled, "on by default");
    }

    #[test]
    fn the_node_id_is_an_integer_or_auto_from_every_source() {
        use mussikon_cluster::identity::NodeIdSetting;
        let (env, _) = env_layer(vec![(
            "MUSSIKON_CLUSTER_SECRET".into(),
            "0123456789abcdef0123".into(),
        )])
        .unwrap();
        let from_file = |node_id: &str| {
            let text = format!("[cluster]\nnode_id = {node_id}\npeers = [\"1=127.0.0.1:7001\"]\n");
            let file = file_layer(&text, Path::new("mussikon.toml")).unwrap();
            Settings::from_layers(vec![file, env.clone()])
                .unwrap()
                .resolve()
        };
        let id = |c: Result<ServeConfig, ConfigError>| c.unwrap().cluster.unwrap().node_id;
        assert_eq!(id(from_file("2")), NodeIdSetting::Fixed(2));
        assert_eq!(id(from_file("\"auto\"")), NodeIdSetting::Auto);
        let from_flag = |node_id: &str| {
            let flags = flag_layer(&pairs(&[
                ("cluster.node_id", node_id),
                ("cluster.peers", "1=127.0.0.1:7001"),
            ]))
            .unwrap();
            Settings::from_layers(vec![env.clone(), flags])
                .unwrap()
                .resolve()
        };
        assert_eq!(id(from_flag("5")), NodeIdSetting::Fixed(5));
        assert_eq!(id(from_flag("auto")), NodeIdSetting::Auto);
        for bad in ["0", "-3", "one"] {
            let e = from_flag(bad).unwrap_err().to_string();
            assert!(
                e.contains("cluster.node_id") && e.contains("integer ≥ 1 or `auto`"),
                "{bad}: {e}"
            );
        }
        let e = from_file("0").unwrap_err().to_string();
        assert!(e.contains("cluster.node_id"), "{e}");
        // A node that is not among the initial members is a joining node, not an error.
        assert_eq!(id(from_flag("9")), NodeIdSetting::Fixed(9));
    }

    #[test]
    fn the_peer_listener_comes_from_every_source_and_is_checked() {
        let secret = (
            "MUSSIKON_CLUSTER_SECRET".to_string(),
            "0123456789abcdef0123".to_string(),
        );
        let node = [
            ("cluster.node_id", "1"),
            ("cluster.peers", "1=127.0.0.1:7001"),
        ];
        let resolve = |layers: Vec<Table>| Settings::from_layers(layers).unwrap().resolve();
        let peer_listen =
            |c: Result<ServeConfig, ConfigError>| c.unwrap().cluster.unwrap().peer_listen;
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let flags = |extra: &[(&str, &str)]| {
            let mut all = node.to_vec();
            all.extend_from_slice(extra);
            flag_layer(&pairs(&all)).unwrap()
        };
        let env = |value: &str| {
            env_layer(vec![
                secret.clone(),
                ("MUSSIKON_CLUSTER_PEER_LISTEN".into(), value.into()),
            ])
            .unwrap()
            .0
        };
        let (secret_only, _) = env_layer(vec![secret.clone()]).unwrap();
        // Unset: the peer RPCs stay on the API listener.
        assert_eq!(
            peer_listen(resolve(vec![secret_only.clone(), flags(&[])])),
            None
        );
        // File < environment < flag.
        let file = file_layer(
            "[cluster]\npeer_listen = \"0.0.0.0:7000\"\n",
            Path::new("mussikon.toml"),
        )
        .unwrap();
        assert_eq!(
            peer_listen(resolve(vec![file.clone(), secret_only.clone(), flags(&[])])),
            addr("0.0.0.0:7000")
        );
        assert_eq!(
            peer_listen(resolve(vec![
                file.clone(),
                env("10.0.0.1:7100"),
                flags(&[])
            ])),
            addr("10.0.0.1:7100")
        );
        assert_eq!(
            peer_listen(resolve(vec![
                file,
                env("10.0.0.1:7100"),
                flags(&[("cluster.peer_listen", "127.0.0.1:0")])
            ])),
            addr("127.0.0.1:0")
        );
        // Empty is unset (a compose file may blank it).
        assert_eq!(peer_listen(resolve(vec![env(""), flags(&[])])), None);
        // Port 0 for both listeners is two free ports, not a clash.
        assert_eq!(
            peer_listen(resolve(vec![
                env("127.0.0.1:0"),
                flags(&[("listen", "127.0.0.1:0")])
            ])),
            addr("127.0.0.1:0")
        );
        // Each refusal names the setting.
        for (value, listen, says) in [
            ("7000", "127.0.0.1:8080", "is not IP:PORT"),
            ("peers.example:7000", "127.0.0.1:8080", "is not IP:PORT"),
            (
                "127.0.0.1:8080",
                "127.0.0.1:8080",
                "the API listener's port",
            ),
            ("0.0.0.0:8080", "127.0.0.1:8080", "the API listener's port"),
            ("127.0.0.1:9000", "0.0.0.0:9000", "the API listener's port"),
        ] {
            let e = resolve(vec![env(value), flags(&[("listen", listen)])])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("cluster.peer_listen") && e.contains(says),
                "{value} beside {listen}: {e}"
            );
        }
        // The same port on two different addresses is two sockets.
        assert_eq!(
            peer_listen(resolve(vec![
                env("10.0.0.1:8080"),
                flags(&[("listen", "127.0.0.1:8080")])
            ])),
            addr("10.0.0.1:8080")
        );
        // A single node has no peer RPCs: refused, not ignored.
        let single = flag_layer(&pairs(&[("cluster.peer_listen", "0.0.0.0:7000")])).unwrap();
        let e = resolve(vec![single]).unwrap_err().to_string();
        assert!(
            e.contains("cluster.peer_listen") && e.contains("cluster.node_id"),
            "{e}"
        );
        // A bad value in the file is refused with the file's name once resolved.
        let file = file_layer(
            "[cluster]\npeer_listen = \"nowhere\"\n",
            Path::new("bad.toml"),
        )
        .unwrap();
        let e = resolve(vec![file, secret_only, flags(&[])])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cluster.peer_listen") && e.contains("nowhere"),
            "{e}"
        );
    }

    #[test]
    fn election_timeouts_derive_from_the_heartbeat_or_are_checked() {
        let cluster = |extra: &[(&str, &str)]| {
            let mut all = vec![
                ("cluster.node_id", "1"),
                (
                    "cluster.peers",
                    "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003",
                ),
            ];
            all.extend_from_slice(extra);
            // A secret may not come from a flag.
            let (env, _) = env_layer(vec![(
                "MUSSIKON_CLUSTER_SECRET".into(),
                "0123456789abcdef0123".into(),
            )])
            .unwrap();
            Settings::from_layers(vec![env, flag_layer(&pairs(&all)).unwrap()])
                .unwrap()
                .resolve()
        };
        let c = cluster(&[]).unwrap().cluster.unwrap();
        assert_eq!((c.heartbeat_ms, c.election_ms), (100, (250, 400)));
        let c = cluster(&[("cluster.heartbeat_ms", "50")])
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.election_ms, (125, 200));
        let c = cluster(&[
            ("cluster.election_min_ms", "600"),
            ("cluster.election_max_ms", "900"),
        ])
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(c.election_ms, (600, 900));
        // Each error names the setting at fault.
        let cases: [(&[(&str, &str)], &str); 4] = [
            (
                &[
                    ("cluster.election_min_ms", "150"),
                    ("cluster.election_max_ms", "900"),
                ],
                "cluster.election_min_ms",
            ),
            (
                &[
                    ("cluster.election_min_ms", "500"),
                    ("cluster.election_max_ms", "500"),
                ],
                "cluster.election_max_ms",
            ),
            // Only the maximum set, below the default minimum (250 ms): the maximum is wrong.
            (
                &[("cluster.election_max_ms", "200")],
                "cluster.election_max_ms",
            ),
            // Only the minimum set, above the default maximum (400 ms): the minimum is wrong.
            (
                &[("cluster.election_min_ms", "450")],
                "cluster.election_min_ms",
            ),
        ];
        for (bad, field) in cases {
            let e = cluster(bad).unwrap_err().to_string();
            assert!(e.contains(field), "{bad:?}: {e}");
            let other = if field.ends_with("min_ms") {
                "max_ms"
            } else {
                "min_ms"
            };
            assert!(
                !e.contains(&format!("cluster.election_{other}")),
                "{bad:?} blames the other bound: {e}"
            );
        }
    }
}
