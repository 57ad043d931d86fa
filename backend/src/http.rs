//! The HTTP listener: accepts connections up to a global limit and serves the router on each with hyper's
//! header-read timer, so a client that opens connections and never finishes a request cannot hold them.
//!
//! Each request carries the peer's address (`ConnectInfo`), the local address it arrived on ([`LocalAddr`], for
//! the Host check) and the connection's [`ConnectionSlot`], which a WebSocket keeps after the upgrade so that
//! long-lived sockets count against the limit too. On shutdown the listener closes, every connection is asked to finish
//! its current request and close, and [`serve_router`] returns once all have (WebSockets close themselves on
//! the server's shutdown signal; REST requests waiting for a job end when the job does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::routes::guard::LocalAddr;

/// One of the listener's connection slots; the connection is counted until every clone is dropped.
#[derive(Debug, Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// Limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Connections served at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (also bounds an idle keep-alive connection).
    pub header_read_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains the open connections.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (close_tx, close_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let local = stream.local_addr().unwrap_or(peer);
        let router = router.clone();
        let close_rx = close_rx.clone();
        let slot = ConnectionSlot(Arc::new(permit));
        tokio::spawn(serve_connection(stream, peer, local, slot, router, limits, close_rx));
    }
    drop(listener);
    let _ = close_tx.send(true);
    // Every connection holds a permit until it ends: all of them back means all connections are closed.
    let _ = permits.acquire_many(max as u32).await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    slot: ConnectionSlot,
    router: Router,
    limits: ListenerLimits,
    mut close: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(router.map_request(move |req: axum::http::Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(LocalAddr(local));
        req.extensions_mut().insert(slot.clone());
        req
    }));
    // HTTP/1.1 only: the header-read timer runs from the moment the connection is open (HTTP version detection
    // would wait for a first byte without any timer), and browsers speak HTTP/2 only over TLS, which a reverse
    // proxy in front of this server terminates.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = *close.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            c = close.changed(), if !closing => {
                if c.is_err() || *close.borrow() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
