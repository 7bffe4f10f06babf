//! Accepting connections, with the limits a server on the public internet
//! needs: at most `max_connections` open at once, request headers (and an
//! idle keep-alive connection's next request) within `header_timeout`, and a
//! drain at shutdown that ends by a deadline whatever clients do.
//!
//! The request body and its handling are bounded separately, by the router's
//! request timeout (see [`super::router`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time to receive a request's headers, counted from the connection's
    /// opening or from the previous response (so it closes idle keep-alive
    /// connections too).
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in progress finish, and closes whatever is still
/// open `grace` after the shutdown began — a client that sent half a request
/// cannot hold the process. Returns, once every connection is closed, that
/// deadline (the rest of the shutdown keeps to it too).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Instant {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let service = TowerToHyperService::new(router.clone());
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            // Upgrades: web chat sockets (their tasks then run on their own).
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = async { closing.wait_for(|closing| *closing).await.is_ok() } => {
                    // Finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let deadline = Instant::now() + grace;
    let drained = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "closing connections still open at the end of the grace period"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    deadline
}

/// Raises the soft limit on open descriptors to the hard limit, so the
/// connection cap, not the descriptor limit, decides; returns the limit now
/// in force, if known.
pub fn raise_descriptor_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}
