//! Accepting connections: our accept loop around the warp filter, so that the connection limits
//! `warp::serve` leaves unset are set.
//!
//! Promises:
//! - a client must send a request's whole header within `header_read_timeout` (10 s by
//!   default), or its connection is closed: a slow-loris client sending a byte a second cannot
//!   hold a connection (hyper's own timeout, which needs the timer warp does not give it);
//! - at most `max_connections` connections (4096 by default) are served at once; a connection
//!   over the cap is closed on accept, before a byte is read, so a flood costs a socket each,
//!   briefly, not a task and buffers. A WebSocket leaves this count when it upgrades; the event
//!   hub caps those separately (`events.max_subscribers`);
//! - every request carries the peer's address as a [`Peer`] extension (what `warp::addr::remote`
//!   gives under `warp::serve`);
//! - shutdown: stop accepting, then wait for the open connections to finish (hyper's graceful
//!   shutdown: idle keep-alive connections are closed, in-flight requests complete).

use crate::config::ConnectionLimits;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::Filter;

/// The address of the connection a request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Serves `filter` on `listener` within `limits` until `shutdown` resolves, then drains.
pub async fn serve_connections<F, S>(
    listener: TcpListener,
    filter: F,
    limits: ConnectionLimits,
    shutdown: S,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S: Future<Output = ()> + Send,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: at the connection cap");
            drop(stream);
            continue;
        };
        let svc = warp::service(filter.clone());
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                tower_service::Service::call(&mut svc.clone(), req)
            });
        let watcher = graceful.watcher();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
