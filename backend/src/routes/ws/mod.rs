//! The WebSocket job protocol on `/ws` (docs/protocol.md).
//!
//! One task reads the socket, one writes it; job events reach the writer through a bounded outbox fed by one
//! forwarding task per followed job, so several jobs (and several clients per job) work at once. The server
//! pings every `ping_interval` (15 s) and drops a connection silent for `client_timeout` (45 s). Closing the
//! socket never cancels a job.
//!
//! Bounds: with an API key, a connection without a valid `?token=` must send `auth` as its first frame within
//! [`AUTH_TIMEOUT`] (and keeps small frames: the library buffers a frame
//! whole before it can be looked at); text frames are limited to [`parse::MAX_TEXT_BYTES`] and binary frames to
//! the upload limit, which must arrive within the upload timeout after their `generate`; a connection has at most
//! `max_jobs_per_connection` queued or running jobs and follows at most `max_subscriptions_per_connection`; a
//! client that stops reading (its outbox fills) is disconnected.

mod outbox;
mod parse;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use sf3d_shared::{
    ClientMessage, ErrorCode, GenerateParams, ImageRef, JobState, PROTOCOL_VERSION, SOFTWARE_VERSION, ServerMessage,
};
use tokio::sync::broadcast;

use self::outbox::{Out, Outbox};
use crate::AppState;
use crate::error::ApiError;
use crate::http::ConnectionSlot;
use crate::jobs::{Job, JobInput, JobRequest};

/// Close code for a policy violation (auth, limits).
const CLOSE_POLICY: u16 = 1008;
/// Close code for "going away" (shutdown, timeouts).
const CLOSE_GOING_AWAY: u16 = 1001;
/// Time a connection that needs a key has to send `auth`.
pub(crate) const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest text frame before authentication (an `auth` message).
const MAX_AUTH_FRAME: usize = 4096;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

pub(crate) async fn handler(
    ws: WebSocketUpgrade,
    Query(q): Query<WsQuery>,
    State(state): State<AppState>,
    slot: Option<Extension<ConnectionSlot>>,
) -> Response {
    let full = state.config.max_upload_bytes;
    let (authed, max_upload) = if state.authorized(q.token.as_deref()) {
        (true, full)
    } else {
        // Not authenticated (no token, or a wrong one: the socket opens so that a page can show the server's
        // `unauthorized` answer in words, then closes). The library would buffer a whole frame before the first
        // one can be checked, so such a socket keeps small frames for its whole life (images go over sockets
        // opened with a valid ?token=).
        (false, parse::MAX_TEXT_BYTES as u64)
    };
    // One binary frame holds an image up to the upload limit; text frames are bounded after reading.
    let max = max_upload as usize + parse::MAX_TEXT_BYTES;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        // The socket keeps its connection slot until it closes.
        let _slot = slot;
        connection(socket, state, authed, max_upload).await
    })
}

/// A `generate` whose binary frame is awaited.
struct PendingUpload {
    request_id: Option<String>,
    params: Result<GenerateParams, ApiError>,
    size: u64,
    filename: Option<String>,
}

fn is_terminal(m: &ServerMessage) -> bool {
    matches!(m, ServerMessage::Done { .. } | ServerMessage::Error { .. } | ServerMessage::Cancelled { .. })
}

/// What one connection owns and follows.
struct Conn {
    state: AppState,
    out: Outbox,
    /// Jobs this connection submitted (pruned to the unfinished ones when counted).
    jobs: Vec<Arc<Job>>,
    /// Forwarding tasks alive (jobs followed).
    following: Arc<AtomicUsize>,
    authed: bool,
    /// Largest image this socket takes (the server's limit, or a small one for sockets without `?token=`).
    max_upload: u64,
}

/// Decrements the followed-jobs count when a forwarding task ends, however it ends.
struct Following(Arc<AtomicUsize>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    fn send(&self, m: ServerMessage) {
        self.out.push(Out::Msg(m));
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(ServerMessage::error(code, message));
    }

    /// Streams a job's events into the outbox until the job ends or the connection goes away. `rx` is a
    /// receiver subscribed before the job was queued (a new job: everything from `accepted` on); without it the
    /// job is re-attached (`subscribe`): a `status` snapshot first, then what it missed and the live events.
    fn attach(&self, job: Arc<Job>, rx: Option<broadcast::Receiver<ServerMessage>>) {
        self.following.fetch_add(1, Ordering::SeqCst);
        let guard = Following(self.following.clone());
        let out = self.out.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let mut rx = match rx {
                Some(rx) => rx,
                None => {
                    let (status, replay, rx) = job.subscribe();
                    if !out.push(Out::Msg(status)) {
                        return;
                    }
                    for m in replay {
                        let end = is_terminal(&m);
                        if !out.push(Out::Msg(m)) || end {
                            return;
                        }
                    }
                    rx
                }
            };
            loop {
                match rx.recv().await {
                    Ok(m) => {
                        let end = is_terminal(&m);
                        if !out.push(Out::Msg(m)) || end {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Events were dropped for this receiver: resynchronise with a fresh snapshot.
                        let (status, replay, fresh) = job.subscribe();
                        rx = fresh;
                        let done = replay.iter().any(is_terminal);
                        if !out.push(Out::Msg(status)) {
                            return;
                        }
                        for m in replay {
                            if !out.push(Out::Msg(m)) {
                                return;
                            }
                        }
                        if done {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Refuses a new job or subscription beyond this connection's limits.
    fn check_limits(&mut self, new_job: bool) -> Result<(), ApiError> {
        let c = &self.state.config;
        if new_job {
            self.jobs.retain(|j| matches!(j.state(), JobState::Queued | JobState::Running));
            if self.jobs.len() >= c.max_jobs_per_connection {
                let mut e = ApiError::new(
                    ErrorCode::QueueFull,
                    format!(
                        "this connection already has {} jobs queued or running (the limit per connection); wait \
                         for one to finish",
                        self.jobs.len()
                    ),
                );
                e.retry_after = Some(crate::RETRY_AFTER_SECS);
                return Err(e);
            }
        }
        if self.following.load(Ordering::SeqCst) >= c.max_subscriptions_per_connection {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this connection already follows {} jobs (the limit per connection); open another connection \
                     or wait for them to end",
                    c.max_subscriptions_per_connection
                ),
            ));
        }
        Ok(())
    }

    /// Queues a job and follows it.
    fn submit(&mut self, req: JobRequest, request_id: Option<String>) {
        if let Err(e) = self.check_limits(true) {
            return self.send(e.to_message(None));
        }
        match self.state.jobs.submit_subscribed(req, request_id) {
            Ok((job, rx)) => {
                self.jobs.push(job.clone());
                self.attach(job, Some(rx));
            }
            Err(e) => self.send(ApiError::from(e).to_message(None)),
        }
    }

    /// Handles one text frame; `Err` closes the connection with that code and reason.
    fn text(&mut self, text: &str) -> Result<Option<PendingUpload>, (u16, &'static str)> {
        if !self.authed {
            // The first frame must be a small `auth` with the key; anything else ends the connection.
            let ok = text.len() <= MAX_AUTH_FRAME
                && matches!(parse::parse(text, 0), Ok(ClientMessage::Auth { token }) if self.state.authorized(Some(&token)));
            if ok {
                self.authed = true;
                return Ok(None);
            }
            self.error(ErrorCode::Unauthorized, "missing or wrong API key: send `auth` first, or connect with ?token=");
            return Err((CLOSE_POLICY, "unauthorized"));
        }
        let msg = match parse::parse(text, self.max_upload) {
            Ok(m) => m,
            Err(mut e) => {
                if e.code == ErrorCode::PayloadTooLarge && self.max_upload < self.state.config.max_upload_bytes {
                    e.message.push_str(" on a socket that authenticated with `auth`; connect with ?token= to upload");
                }
                self.send(e.to_message(None));
                return Ok(None);
            }
        };
        match msg {
            ClientMessage::Auth { token } => {
                if !self.state.authorized(Some(&token)) {
                    self.error(ErrorCode::Unauthorized, "wrong API key");
                    return Err((CLOSE_POLICY, "unauthorized"));
                }
            }
            ClientMessage::Generate { request_id, params, image } => match image {
                ImageRef::Binary { size, filename } => {
                    let params = params.validate().map(|()| params).map_err(ApiError::from);
                    return Ok(Some(PendingUpload { request_id, params, size, filename }));
                }
                ImageRef::Mesh { mesh_id } => {
                    if let Err(e) = params.validate() {
                        self.send(ApiError::from(e).to_message(None));
                    } else if let Err(e) = self.state.engine.gallery.get(&mesh_id) {
                        self.send(ApiError::from(e).to_message(None));
                    } else {
                        self.submit(JobRequest { input: JobInput::FromMesh { mesh_id }, params }, request_id);
                    }
                }
            },
            ClientMessage::Regenerate { request_id, mesh_id, params } => {
                if let Err(e) = params.validate() {
                    self.send(ApiError::from(e).to_message(None));
                } else if let Err(e) = self.state.engine.gallery.get(&mesh_id) {
                    self.send(ApiError::from(e).to_message(None));
                } else {
                    self.submit(JobRequest { input: JobInput::Regenerate { parent_id: mesh_id }, params }, request_id);
                }
            }
            ClientMessage::Cancel { job_id } => {
                // Any client that passed the site policy and the key may cancel a job whose id it holds (see the
                // protocol's Security section: ids are unguessable and only given to the submitter).
                if !self.state.jobs.cancel(&job_id) {
                    self.send(not_found(job_id, "no such job"));
                }
            }
            ClientMessage::Subscribe { job_id } => match self.state.jobs.get(&job_id) {
                Some(job) => match self.check_limits(false) {
                    Ok(()) => self.attach(job, None),
                    Err(e) => self.send(e.to_message(Some(job_id))),
                },
                None => self.send(not_found(job_id, "no such job (finished jobs are kept for a day)")),
            },
        }
        Ok(None)
    }

    /// Queues an upload whose binary frame arrived.
    fn upload(&mut self, p: PendingUpload, bytes: Vec<u8>) {
        if bytes.len() as u64 != p.size {
            return self.error(
                ErrorCode::BadRequest,
                format!("the binary frame has {} bytes, `generate` announced {}", bytes.len(), p.size),
            );
        }
        match p.params {
            Ok(params) => {
                self.submit(JobRequest { input: JobInput::Image { bytes, filename: p.filename }, params }, p.request_id)
            }
            Err(e) => self.send(e.to_message(None)),
        }
    }
}

fn not_found(job_id: String, message: &str) -> ServerMessage {
    ServerMessage::Error {
        job_id: Some(job_id),
        code: ErrorCode::NotFound,
        message: message.into(),
        field: None,
        retry_after: None,
    }
}

async fn connection(socket: WebSocket, state: AppState, authed: bool, max_upload: u64) {
    // Counted in `sf3d_websocket_connections` until this function returns, however it returns.
    let _counted = state.engine.metrics.websocket_opened();
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx, overflow) = Outbox::new();
    let write_timeout = state.config.client_timeout;

    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let frame = match o {
                Out::Msg(m) => match serde_json::to_string(&m) {
                    Ok(text) => Message::Text(text.into()),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serialise a server message");
                        continue;
                    }
                },
                Out::Ping => Message::Ping(Vec::new().into()),
                Out::Stop => break,
                Out::Close(code, reason) => {
                    let close = Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }));
                    let _ = tokio::time::timeout(write_timeout, sink.send(close)).await;
                    break;
                }
            };
            // A client that stops reading blocks this write; it is cut off rather than waited for.
            match tokio::time::timeout(write_timeout, sink.send(frame)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    });

    let h = state.health();
    out.push(Out::Msg(ServerMessage::Hello {
        protocol: PROTOCOL_VERSION,
        server_version: SOFTWARE_VERSION.into(),
        device: h.device,
        model: h.model,
        auth_required: state.config.api_key.is_some(),
        max_upload_bytes: max_upload,
        workers: h.workers,
    }));

    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(state.config.ping_interval);
    ping.tick().await;
    let auth_deadline = tokio::time::sleep(AUTH_TIMEOUT);
    tokio::pin!(auth_deadline);
    // Armed by `generate`: its binary frame must arrive within the upload timeout.
    let upload_deadline = tokio::time::sleep(state.config.upload_timeout);
    tokio::pin!(upload_deadline);
    let mut last_seen = Instant::now();
    let mut pending: Option<PendingUpload> = None;
    let mut conn = Conn {
        state: state.clone(),
        out: out.clone(),
        jobs: Vec::new(),
        following: Arc::default(),
        authed,
        max_upload,
    };
    let mut overflowed = false;

    let close: Option<(u16, &'static str)> = loop {
        tokio::select! {
            incoming = stream.next() => {
                let Some(Ok(msg)) = incoming else { break None };
                last_seen = Instant::now();
                match msg {
                    Message::Text(text) => {
                        if pending.take().is_some() {
                            conn.error(ErrorCode::BadRequest, "expected the image as a binary frame after `generate`; the generate was dropped");
                        }
                        match conn.text(text.as_str()) {
                            Ok(p) => {
                                if p.is_some() {
                                    upload_deadline.as_mut().reset(tokio::time::Instant::now() + state.config.upload_timeout);
                                }
                                pending = p;
                            }
                            Err(c) => break Some(c),
                        }
                    }
                    Message::Binary(bytes) => {
                        if !conn.authed {
                            conn.error(ErrorCode::Unauthorized, "send `auth` first");
                            break Some((CLOSE_POLICY, "unauthorized"));
                        }
                        match pending.take() {
                            None => conn.error(ErrorCode::BadRequest, "unexpected binary frame: send `generate` first"),
                            Some(p) => conn.upload(p, bytes.to_vec()),
                        }
                    }
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            () = &mut auth_deadline, if !conn.authed => {
                conn.error(ErrorCode::Unauthorized, "no `auth` message within the time allowed");
                break Some((CLOSE_POLICY, "unauthorized"));
            }
            () = &mut upload_deadline, if pending.is_some() => {
                conn.error(ErrorCode::RequestTimeout, "the image did not arrive within the upload timeout after `generate`");
                break Some((CLOSE_POLICY, "upload timeout"));
            }
            () = overflow.notified() => {
                tracing::info!("websocket client does not read its messages; disconnecting");
                overflowed = true;
                break None;
            }
            _ = ping.tick() => {
                // While an image is on its way the upload deadline governs (a large frame on a slow link is
                // silent for longer than the heartbeat allows).
                if pending.is_none() && last_seen.elapsed() > state.config.client_timeout {
                    tracing::debug!("websocket client timed out");
                    break Some((CLOSE_GOING_AWAY, "no answer to pings"));
                }
                out.push(Out::Ping);
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break Some((CLOSE_GOING_AWAY, "server shutting down"));
                }
            }
        }
    };
    let last = match close {
        Some((code, reason)) => Out::Close(code, reason),
        None => Out::Stop,
    };
    if overflowed || !out.finish(last) {
        // The writer is stuck on a client that does not read: drop the socket now.
        writer.abort();
        return;
    }
    // The writer sends what is queued (and the close frame), each write bounded by its timeout.
    let mut writer = writer;
    if tokio::time::timeout(write_timeout + Duration::from_secs(1), &mut writer).await.is_err() {
        writer.abort();
    }
}
