//! What the app does with each [`SocketEvent`]: tracks the connection in [`Studio::conn`], checks the protocol
//! version of every `hello` and re-attaches to the followed job after it, feeds job messages to
//! [`JobView::apply`], and shows what a finished or previewed job produced.
//!
//! The socket itself (connecting, decoding, reconnecting) is [`crate::ws`]; this is the one handler it calls.

use leptos::prelude::*;
use sf3d_shared::protocol::PROTOCOL_VERSION;
use sf3d_shared::{ClientMessage, ErrorCode, MeshEntry, ParamError, ServerMessage};

use super::store::{ConnState, ServerInfo, Shown, Studio, set_session_job};
use crate::job::{JobView, Phase, Problem};
use crate::ws::{self, SocketEvent};

impl Studio {
    /// Handles one event of the job socket (the handler given to [`ws::start`]).
    pub(super) fn on_socket(self, event: SocketEvent) {
        match event {
            SocketEvent::Connecting { attempt } => {
                if !matches!(self.conn.get_untracked(), ConnState::Mismatch { .. }) {
                    self.conn.set(ConnState::Connecting { attempt });
                }
            }
            SocketEvent::Closed { retry_in, .. } => {
                let retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
                self.conn.set(ConnState::Retrying { retry_in_ms });
                // A request sent on the dropped connection and never accepted is lost.
                if self.job.with_untracked(|j| j.phase == Phase::Submitting) {
                    self.job.set(JobView::failed(Problem::local(
                        "the connection dropped before the server accepted the job",
                        "Start it again once the connection is back.",
                    )));
                }
                if self.health.with_untracked(|h| matches!(h, Some(Ok(_)))) {
                    self.refresh_health();
                }
            }
            SocketEvent::Invalid(what) => self.notice.set(Some(Problem::local(
                format!("the server sent a message this page does not understand ({what})"),
                ErrorCode::ProtocolMismatch.hint(),
            ))),
            SocketEvent::Message(msg) => self.on_message(msg),
        }
    }

    fn on_message(self, msg: ServerMessage) {
        if let ServerMessage::Hello {
            protocol, server_version, device, model, auth_required, max_upload_bytes, ..
        } = msg
        {
            if protocol != PROTOCOL_VERSION {
                ws::stop();
                self.conn.set(ConnState::Mismatch { server: protocol });
                return;
            }
            self.server.set(Some(ServerInfo {
                version: server_version,
                device,
                model,
                auth_required,
                max_upload_bytes,
            }));
            self.conn.set(ConnState::Connected);
            self.refresh_health();
            // The server is back: re-read what failed while it was away.
            if self.gallery.with_untracked(|g| g.error.is_some()) {
                self.refresh_gallery();
            }
            // Re-attach to the job we follow (after a reconnect, or a reload: the id is in the session).
            let resume = self.job.with_untracked(|j| if j.is_active() { j.job_id.clone() } else { None });
            if let Some(job_id) = resume
                && let Err(e) = ws::send(&ClientMessage::Subscribe { job_id })
            {
                self.notice.set(Some(Problem::local(e.to_string(), "The page retries by itself.")));
            }
            return;
        }
        let mut concerned = false;
        self.job.update(|j| concerned = j.apply(&msg));
        if !concerned {
            if let ServerMessage::Error { job_id: None, code, message, .. } = msg {
                self.notice.set(Some(Problem::server(code, message, None)));
            }
            return;
        }
        match msg {
            ServerMessage::Accepted { job_id, .. } => set_session_job(Some(&job_id)),
            ServerMessage::Preview { mesh_id, urls, metadata, .. } => {
                self.prepared.set(Some(urls.preprocessed.clone()));
                let entry = MeshEntry { id: mesh_id, metadata: *metadata, urls, cached: false };
                self.shown.set(Some(Shown { entry, preview: true }));
            }
            ServerMessage::Done { mesh_id, urls, metadata, .. } => {
                set_session_job(None);
                self.prepared.set(Some(urls.preprocessed.clone()));
                let entry = MeshEntry {
                    id: mesh_id,
                    metadata: *metadata,
                    urls,
                    // Whether its scene codes are cached is only known once the gallery is re-read.
                    cached: false,
                };
                self.shown.set(Some(Shown { entry, preview: false }));
                self.refresh_gallery();
            }
            ServerMessage::Error { field, message, code, .. } => {
                set_session_job(None);
                if let Some(field) = field {
                    self.param_error.set(Some(ParamError::new(field, message)));
                }
                if code == ErrorCode::NotFound {
                    // A job lost in a restart may have finished first: show what the gallery has.
                    self.refresh_gallery();
                }
            }
            ServerMessage::Cancelled { .. } => set_session_job(None),
            ServerMessage::Status { state, .. } if state.is_final() => {
                // It ended while we were away: its result (if any) is in the gallery.
                set_session_job(None);
                self.refresh_gallery();
            }
            _ => {}
        }
    }
}
