//! The WebSocket job protocol on `/ws` (docs/protocol.md).
//!
//! One task reads the socket, one writes it; job events reach the writer through an mpsc channel fed by one
//! forwarding task per attached job, so several jobs (and several clients per job) work at once. The server
//! pings every `ping_interval` (15 s) and drops a connection silent for `client_timeout` (45 s). Closing the
//! socket never cancels a job.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use sf3d_shared::{
    ClientMessage, ErrorCode, GenerateParams, ImageRef, PROTOCOL_VERSION, SOFTWARE_VERSION, ServerMessage,
};
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::error::ApiError;
use crate::jobs::{Job, JobInput, JobRequest};

/// Outgoing messages buffered per connection.
const OUTBOX: usize = 256;
/// Close code for a policy violation (auth).
const CLOSE_POLICY: u16 = 1008;
/// Close code for "going away" (shutdown).
const CLOSE_GOING_AWAY: u16 = 1001;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

pub(crate) async fn handler(ws: WebSocketUpgrade, Query(q): Query<WsQuery>, State(state): State<AppState>) -> Response {
    let authed = state.authorized(q.token.as_deref());
    // Frames up to twice the upload limit are read (and refused in our format); bigger ones end the connection.
    let max = (2 * state.config.max_upload_bytes + (1 << 20)) as usize;
    ws.max_message_size(max).on_upgrade(move |socket| connection(socket, state, authed))
}

enum Out {
    Msg(ServerMessage),
    Ping,
    Close(u16, &'static str),
}

struct PendingUpload {
    request_id: Option<String>,
    params: Result<GenerateParams, ApiError>,
    size: u64,
    filename: Option<String>,
}

fn is_terminal(m: &ServerMessage) -> bool {
    matches!(m, ServerMessage::Done { .. } | ServerMessage::Error { .. } | ServerMessage::Cancelled { .. })
}

/// Streams a job's events into the connection's outbox until the job ends or the connection goes away.
/// `rx` is a receiver subscribed before the job was queued (a new job: everything from `accepted` on); without it
/// the job is re-attached (`subscribe`): a `status` snapshot first, then what it missed and the live events.
fn attach(job: Arc<Job>, out: mpsc::Sender<Out>, rx: Option<broadcast::Receiver<ServerMessage>>) {
    tokio::spawn(async move {
        let mut rx = match rx {
            Some(rx) => rx,
            None => {
                let (status, replay, rx) = job.subscribe();
                if out.send(Out::Msg(status)).await.is_err() {
                    return;
                }
                for m in replay {
                    let end = is_terminal(&m);
                    if out.send(Out::Msg(m)).await.is_err() || end {
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
                    if out.send(Out::Msg(m)).await.is_err() || end {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow a reader: resynchronise with a fresh snapshot.
                    let (status, replay, fresh) = job.subscribe();
                    rx = fresh;
                    let done = replay.iter().any(is_terminal);
                    if out.send(Out::Msg(status)).await.is_err() {
                        return;
                    }
                    for m in replay {
                        if out.send(Out::Msg(m)).await.is_err() {
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

async fn connection(socket: WebSocket, state: AppState, mut authed: bool) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUTBOX);

    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let res = match o {
                Out::Msg(m) => match serde_json::to_string(&m) {
                    Ok(text) => sink.send(Message::Text(text.into())).await,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serialise a server message");
                        continue;
                    }
                },
                Out::Ping => sink.send(Message::Ping(Vec::new().into())).await,
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) })))
                        .await;
                    break;
                }
            };
            if res.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let send = |m: ServerMessage| {
        let tx = out_tx.clone();
        async move { tx.send(Out::Msg(m)).await.is_ok() }
    };
    let h = state.health();
    let hello = ServerMessage::Hello {
        protocol: PROTOCOL_VERSION,
        server_version: SOFTWARE_VERSION.into(),
        device: h.device,
        model: h.model,
        auth_required: state.config.api_key.is_some(),
        max_upload_bytes: state.config.max_upload_bytes,
    };
    send(hello).await;

    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(state.config.ping_interval);
    ping.tick().await;
    let mut last_seen = Instant::now();
    let mut pending: Option<PendingUpload> = None;

    loop {
        tokio::select! {
            incoming = stream.next() => {
                let Some(Ok(msg)) = incoming else { break };
                last_seen = Instant::now();
                match msg {
                    Message::Text(text) => {
                        if pending.take().is_some() {
                            send(ServerMessage::error(ErrorCode::BadRequest, "expected the image as a binary frame after `generate`; the generate was dropped")).await;
                        }
                        match handle_text(&state, text.as_str(), &mut authed, &out_tx).await {
                            Flow::Continue => {}
                            Flow::Pending(p) => pending = Some(p),
                            Flow::Close(code, reason) => {
                                let _ = out_tx.send(Out::Close(code, reason)).await;
                                break;
                            }
                        }
                    }
                    Message::Binary(bytes) => match pending.take() {
                        None => {
                            send(ServerMessage::error(ErrorCode::BadRequest, "unexpected binary frame: send `generate` first")).await;
                        }
                        Some(p) => {
                            let reply = submit_upload(&state, p, bytes.to_vec(), &out_tx);
                            if let Some(m) = reply {
                                send(m).await;
                            }
                        }
                    },
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > state.config.client_timeout {
                    tracing::debug!("websocket client timed out");
                    let _ = out_tx.send(Out::Close(CLOSE_GOING_AWAY, "no answer to pings")).await;
                    break;
                }
                if out_tx.send(Out::Ping).await.is_err() {
                    break;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    let _ = out_tx.send(Out::Close(CLOSE_GOING_AWAY, "server shutting down")).await;
                    break;
                }
            }
        }
    }
    drop(out_tx);
    let _ = writer.await;
}

enum Flow {
    Continue,
    Pending(PendingUpload),
    Close(u16, &'static str),
}

async fn handle_text(state: &AppState, text: &str, authed: &mut bool, out: &mpsc::Sender<Out>) -> Flow {
    let send = |m: ServerMessage| {
        let out = out.clone();
        async move {
            let _ = out.send(Out::Msg(m)).await;
        }
    };
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            let known = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string));
            let err = match known.as_deref() {
                Some(t) if !["auth", "generate", "regenerate", "cancel", "subscribe"].contains(&t) => {
                    ServerMessage::error(
                        ErrorCode::UnknownMessage,
                        format!("unknown message type {t:?} (protocol {PROTOCOL_VERSION})"),
                    )
                }
                Some(t) => invalid_message(t, text, &e),
                None => ServerMessage::error(ErrorCode::BadRequest, format!("not a protocol message: {e}")),
            };
            send(err).await;
            return Flow::Continue;
        }
    };
    if !*authed {
        if let ClientMessage::Auth { token } = &msg
            && state.authorized(Some(token))
        {
            *authed = true;
            return Flow::Continue;
        }
        send(ServerMessage::error(ErrorCode::Unauthorized, "missing or wrong API key")).await;
        return Flow::Close(CLOSE_POLICY, "unauthorized");
    }
    match msg {
        ClientMessage::Auth { token } => {
            if !state.authorized(Some(&token)) {
                send(ServerMessage::error(ErrorCode::Unauthorized, "wrong API key")).await;
                return Flow::Close(CLOSE_POLICY, "unauthorized");
            }
        }
        ClientMessage::Generate { request_id, params, image } => match image {
            ImageRef::Binary { size, filename } => {
                let params = params.validate().map(|()| params).map_err(ApiError::from);
                return Flow::Pending(PendingUpload { request_id, params, size, filename });
            }
            ImageRef::Mesh { mesh_id } => {
                if let Err(e) = params.validate() {
                    send(ApiError::from(e).to_message(None)).await;
                } else if let Err(e) = state.engine.gallery.get(&mesh_id) {
                    send(ApiError::from(e).to_message(None)).await;
                } else {
                    submit(state, JobRequest { input: JobInput::FromMesh { mesh_id }, params }, request_id, out, &send)
                        .await;
                }
            }
        },
        ClientMessage::Regenerate { request_id, mesh_id, params } => {
            if let Err(e) = params.validate() {
                send(ApiError::from(e).to_message(None)).await;
            } else if let Err(e) = state.engine.gallery.get(&mesh_id) {
                send(ApiError::from(e).to_message(None)).await;
            } else {
                submit(
                    state,
                    JobRequest { input: JobInput::Regenerate { parent_id: mesh_id }, params },
                    request_id,
                    out,
                    &send,
                )
                .await;
            }
        }
        ClientMessage::Cancel { job_id } => {
            if !state.jobs.cancel(&job_id) {
                send(ServerMessage::Error {
                    job_id: Some(job_id),
                    code: ErrorCode::NotFound,
                    message: "no such job".into(),
                    field: None,
                })
                .await;
            }
        }
        ClientMessage::Subscribe { job_id } => match state.jobs.get(&job_id) {
            Some(job) => attach(job, out.clone(), None),
            None => {
                send(ServerMessage::Error {
                    job_id: Some(job_id),
                    code: ErrorCode::NotFound,
                    message: "no such job (finished jobs are kept for an hour)".into(),
                    field: None,
                })
                .await
            }
        },
    }
    Flow::Continue
}

fn invalid_message(kind: &str, text: &str, e: &serde_json::Error) -> ServerMessage {
    // Name the offending parameter when the `params` object is what failed (serde's message may not).
    if let Some(err) = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| params_error(v.get("params")?))
    {
        return ApiError::from(err).to_message(None);
    }
    ServerMessage::Error {
        job_id: None,
        code: ErrorCode::BadRequest,
        message: format!("invalid {kind} message: {e}"),
        field: None,
    }
}

/// The first parameter of a JSON `params` object that does not parse, checked field by field.
fn params_error(params: &serde_json::Value) -> Option<sf3d_shared::ParamError> {
    let obj = params.as_object()?;
    let mut p = GenerateParams::default();
    for (k, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !GenerateParams::is_field(k) || matches!(k.as_str(), "remesh_option" | "target_vertex_count") {
            return Some(sf3d_shared::ParamError::new(k.as_str(), "unknown parameter"));
        }
        if let Err(e) = p.set_field(k, &text) {
            return Some(e);
        }
    }
    None
}

async fn submit<F, Fut>(
    state: &AppState,
    req: JobRequest,
    request_id: Option<String>,
    out: &mpsc::Sender<Out>,
    send: &F,
) where
    F: Fn(ServerMessage) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    match state.jobs.submit_subscribed(req, request_id) {
        Ok((job, rx)) => attach(job, out.clone(), Some(rx)),
        Err(e) => send(ApiError::from(e).to_message(None)).await,
    }
}

/// Queues an upload whose binary frame arrived; returns an error frame to send, if any.
fn submit_upload(state: &AppState, p: PendingUpload, bytes: Vec<u8>, out: &mpsc::Sender<Out>) -> Option<ServerMessage> {
    let limit = state.config.max_upload_bytes;
    if bytes.len() as u64 != p.size {
        return Some(ServerMessage::error(
            ErrorCode::BadRequest,
            format!("the binary frame has {} bytes, `generate` announced {}", bytes.len(), p.size),
        ));
    }
    if bytes.len() as u64 > limit {
        return Some(ServerMessage::error(
            ErrorCode::PayloadTooLarge,
            format!("the image has {} bytes; the limit is {limit}", bytes.len()),
        ));
    }
    let params = match p.params {
        Ok(params) => params,
        Err(e) => return Some(e.to_message(None)),
    };
    let request = JobRequest { input: JobInput::Image { bytes, filename: p.filename }, params };
    match state.jobs.submit_subscribed(request, p.request_id) {
        Ok((job, rx)) => {
            attach(job, out.clone(), Some(rx));
            None
        }
        Err(e) => Some(ApiError::from(e).to_message(None)),
    }
}
