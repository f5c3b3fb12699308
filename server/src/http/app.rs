//! The state every handler shares: the engine, the HTTP settings, the token verifier, the rate
//! limiters, the metrics handle, the event hub and the span exporter; and the ways handlers
//! call the engine.
//!
//! Engine calls block (sled, tantivy), so they never run on the async workers:
//! [`App::blocking`] (reads) and [`App::write`] (writes) move them to tokio's blocking pool,
//! inside the request's tracing span. A panic in there becomes a 500 for that request only.
//! Writes go through [`Writer::execute`], which publishes the command's events once the engine
//! has applied it (durably) — so every write handler announces what it did, and no read path
//! can.

use crate::config::HttpConfig;
use crate::http::auth::{KeyError, Verifier};
use crate::http::events::{Events, Hub};
use crate::http::metrics;
use crate::http::problem::ApiError;
use crate::http::ratelimit::RateLimits;
use crate::telemetry::SpanExport;
use metrics_exporter_prometheus::PrometheusHandle;
use mussikon_cluster::Node;
use mussikon_engine::{Command, Engine, EngineError, Executed};
use std::sync::Arc;

struct Inner {
    engine: Engine,
    config: HttpConfig,
    verifier: Option<Verifier>,
    rate_limits: Option<RateLimits>,
    metrics: Result<PrometheusHandle, metrics::MetricsError>,
    events: Events,
    cluster: Option<Node>,
    spans: Option<SpanExport>,
}

/// The engine as a write handler sees it: reads through [`Writer::engine`], commands through
/// [`Writer::execute`], which publishes their events.
pub struct Writer<'a> {
    engine: &'a Engine,
    events: &'a Events,
    cluster: Option<&'a Node>,
    /// The request's `traceparent`, for a write forwarded to the leader.
    traceparent: Option<String>,
}

impl Writer<'_> {
    /// The engine, for reads.
    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// Executes `cmd` (in a cluster: replicates it through the leader, see
    /// [`crate::http::cluster`]); when it took effect, its events are published (without
    /// waiting for any subscriber): here on a single node; on a cluster node by the state
    /// machine as it applies the command, on every node ([`App::with_cluster`]).
    pub fn execute(&self, cmd: &Command) -> Result<Executed, EngineError> {
        match self.cluster {
            None => {
                let done = self.engine.execute(cmd)?;
                self.events.executed(&done);
                Ok(done)
            }
            Some(node) => crate::http::cluster::replicate(node, cmd, self.traceparent.clone()),
        }
    }
}

/// Shared server state. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

impl App {
    /// State for serving `engine` with `config`. Installs the metrics recorder if no server in
    /// this process has yet. Fails only when the configured token key cannot be used.
    pub fn new(engine: Engine, config: HttpConfig) -> Result<App, KeyError> {
        let metrics = metrics::install();
        if let Err(e) = &metrics {
            tracing::warn!(error = %e, "metrics are disabled");
        }
        Ok(App {
            inner: Arc::new(Inner {
                events: Events::new(Hub::new(config.events.clone())),
                verifier: Verifier::new(&config.auth)?,
                rate_limits: RateLimits::new(&config.rate_limit),
                engine,
                config,
                metrics,
                cluster: None,
                spans: None,
            }),
        })
    }

    /// The same state, serving as a node of a cluster: writes go through `node`, and every
    /// command `node` applies, whichever node took it, publishes its events here.
    pub fn with_cluster(self, node: Node) -> App {
        self.configured("with_cluster", |inner| {
            let events = inner.events.clone();
            node.observe_applied(Arc::new(move |seq, outcome| events.outcome(seq, outcome)));
            inner.cluster = Some(node);
        })
    }

    /// The same state, exporting each request's span through `spans` (`crate::telemetry`).
    pub fn with_span_export(self, spans: Option<SpanExport>) -> App {
        self.configured("with_span_export", |inner| inner.spans = spans)
    }

    /// This state changed by `change`, while it is not yet shared (the builder methods run
    /// before serving); on a shared App, logs that `what` was ignored and changes nothing.
    fn configured(self, what: &str, change: impl FnOnce(&mut Inner)) -> App {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                change(&mut inner);
                App {
                    inner: Arc::new(inner),
                }
            }
            Err(shared) => {
                tracing::error!("{what} on a shared App; ignored");
                App { inner: shared }
            }
        }
    }

    /// The span exporter, when spans are exported.
    pub fn span_export(&self) -> Option<&SpanExport> {
        self.inner.spans.as_ref()
    }

    /// The cluster node, when this server is one.
    pub fn cluster(&self) -> Option<&Node> {
        self.inner.cluster.as_ref()
    }

    /// The token verifier; `None` when authentication is off.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.inner.verifier.as_ref()
    }

    /// The rate limiters; `None` when rate limiting is off.
    pub fn rate_limits(&self) -> Option<&RateLimits> {
        self.inner.rate_limits.as_ref()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The HTTP settings.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// The event hub and publisher.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The metrics handle, or why there is none.
    pub fn metrics(&self) -> Result<&PrometheusHandle, ApiError> {
        self.inner
            .metrics
            .as_ref()
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Runs `f` with the engine on the blocking pool and returns its result.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        tokio::task::spawn_blocking(self.bound(f))
            .await
            .map_err(|e| engine_call_failed(e.is_panic()))
    }

    /// `f` bound to the engine and the caller's span, to run on another thread.
    fn bound<T, F>(&self, f: F) -> impl FnOnce() -> T + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        let engine = self.inner.engine.clone();
        let span = tracing::Span::current();
        move || span.in_scope(|| f(&engine))
    }

    /// Runs `f` with the engine on the compute pool, rayon's (one thread per core), and returns
    /// its result: for the calls that scan and rank (matching, search). They are CPU-bound, so
    /// more threads than cores only add switches: through [`App::blocking`], 64 concurrent
    /// matches ran on 64 threads of tokio's blocking pool, each with its own allocator heap
    /// (docs/perf.md, "HTTP"). Here the excess waits in rayon's queue, first in, first out. A
    /// panic in `f` is caught and answered as [`App::blocking`] answers one.
    pub async fn compute<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        on_compute_pool(self.bound(f)).await
    }

    /// Runs `f` with the engine here, on the async worker: for reads of a few keys (a get by
    /// id is one sled lookup, about 10 µs), where the trip to the blocking pool of
    /// [`App::blocking`] (a queue, a thread woken and one woken back) cost more than the read:
    /// with it, a third of a GET's CPU was thread switches (docs/perf.md, "HTTP"). Anything
    /// that scans, ranks or writes goes through [`App::blocking`]. A panic in `f` is the
    /// request task's, which the pipeline answers 500 (`http::isolated`).
    pub fn read_now<T>(&self, f: impl FnOnce(&Engine) -> T) -> T {
        f(&self.inner.engine)
    }

    /// Executes one command, as [`Writer::execute`] does. On a cluster node the write is
    /// replicated from here, the async worker: it only waits (for the group commit or the
    /// leader), so the trip to the blocking pool of [`App::write`] and its `block_on` (two
    /// thread hand-offs each way) were pure cost, about a tenth of a node's CPU under
    /// replicated puts (docs/perf.md, "Cluster"). A single node's write runs the engine's
    /// transaction and fsync, so it still goes through [`App::write`].
    pub async fn execute(&self, cmd: Command) -> Result<Executed, ApiError> {
        match self.cluster() {
            Some(node) => {
                Ok(
                    crate::http::cluster::replicated(node, cmd, crate::http::trace::current())
                        .await?,
                )
            }
            None => Ok(self.write(move |w| w.execute(&cmd)).await??),
        }
    }

    /// Like [`App::blocking`], for handlers that change state: `f` gets a [`Writer`].
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Writer<'_>) -> T + Send + 'static,
    {
        let events = self.inner.events.clone();
        let cluster = self.inner.cluster.clone();
        let traceparent = crate::http::trace::current();
        self.blocking(move |engine| {
            f(&Writer {
                engine,
                events: &events,
                cluster: cluster.as_ref(),
                traceparent,
            })
        })
        .await
    }
}

/// Runs `f` on rayon's pool and hands its result back to the awaiting task; a panic in `f` is
/// caught there (rayon would abort the process) and answered 500. See [`App::compute`].
async fn on_compute_pool<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // The request may be gone (client hung up): nobody to tell.
        let _ = tx.send(out);
    });
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(engine_call_failed(true)),
        Err(_) => Err(engine_call_failed(false)),
    }
}

/// The 500 for an engine call that panicked, or that was dropped before it answered.
fn engine_call_failed(panicked: bool) -> ApiError {
    ApiError::Internal(if panicked {
        "an engine call panicked".into()
    } else {
        "an engine call was cancelled".into()
    })
}

#[cfg(test)]
mod compute_tests {
    use super::*;

    #[tokio::test]
    async fn the_compute_pool_answers_and_turns_a_panic_into_an_internal_error() {
        assert_eq!(on_compute_pool(|| 6 * 7).await.ok(), Some(42));
        let failed = on_compute_pool(|| -> u32 { panic!("engine bug") }).await;
        assert!(
            matches!(&failed, Err(ApiError::Internal(m)) if m == "an engine call panicked"),
            "{failed:?}"
        );
        // The pool survives the panic.
        assert_eq!(on_compute_pool(|| 1).await.ok(), Some(1));
    }
}
