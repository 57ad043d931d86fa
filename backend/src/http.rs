//! The HTTP listener: accepts connections up to a global limit and a per-client limit and serves the router on
//! each with hyper's header-read timer, so a client that opens connections and never finishes a request cannot
//! hold them; a connection whose writes make no progress for the write timeout (a client that stops reading a
//! response or a WebSocket) is dropped.
//!
//! Each request carries the peer's address (`ConnectInfo`), the local address it arrived on ([`LocalAddr`], for
//! the Host check) and the connection's [`ConnectionSlot`], which a WebSocket keeps after the upgrade so that
//! long-lived sockets count against the limit too. On shutdown the listener closes, every connection is asked to finish
//! its current request and close, and [`serve_router`] returns once all have (WebSockets close themselves on
//! the server's shutdown signal; REST requests waiting for a job end when the job does) or the drain timeout
//! has passed.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::routes::guard::LocalAddr;

/// Open connections per client address.
type PerClient = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A connection's place in the global and per-client counts, released when it drops.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    client: IpAddr,
    per_client: PerClient,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// One of the listener's connection slots; the connection is counted until every clone is dropped.
#[derive(Debug, Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<Slot>);

/// Limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Connections served at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address may hold; more are closed at once.
    pub max_connections_per_client: usize,
    /// Time a client has to send a request's headers (also bounds an idle keep-alive connection).
    pub header_read_timeout: Duration,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// How long shutdown waits for open connections before it returns anyway.
    pub drain_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains the open connections.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let per_client: PerClient = Arc::default();
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
        let client = peer.ip();
        {
            let mut m = per_client.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(client).or_insert(0);
            if *n >= limits.max_connections_per_client {
                tracing::info!(%client, "refused a connection beyond the per-client limit");
                continue;
            }
            *n += 1;
        }
        let slot = ConnectionSlot(Arc::new(Slot { _permit: permit, client, per_client: per_client.clone() }));
        let local = stream.local_addr().unwrap_or(peer);
        let router = router.clone();
        let close_rx = close_rx.clone();
        let io = StallGuard { io: stream, timeout: limits.write_timeout, stall: None };
        tokio::spawn(serve_connection(io, peer, local, slot, router, limits, close_rx));
    }
    drop(listener);
    let _ = close_tx.send(true);
    // Every connection holds a permit until it ends: all of them back means all connections are closed.
    if tokio::time::timeout(limits.drain_timeout, permits.acquire_many(max as u32)).await.is_err() {
        tracing::warn!(open = max - permits.available_permits(), "connections still open after the drain timeout");
    }
    Ok(())
}

async fn serve_connection(
    stream: StallGuard,
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

/// A TCP stream whose writes fail once they have made no progress for `timeout` (reads are left alone: a REST
/// client waits silently for its job, and the WebSocket has its own heartbeat).
struct StallGuard {
    io: TcpStream,
    timeout: Duration,
    stall: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    /// Passes `r` through, clearing the stall timer on progress and failing once it has run out.
    fn track<T>(&mut self, r: Poll<std::io::Result<T>>, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(v) => {
                self.stall = None;
                Poll::Ready(v)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let stall = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.track(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.track(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.track(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
