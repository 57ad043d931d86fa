//! The shared state: [`Studio`], one bundle of signals (`Copy`) provided through the Leptos context, the types
//! its signals hold, and the one piece of it kept across reloads (the followed job's id, in `sessionStorage`).
//!
//! Nothing here talks to the server: [`super::dispatch`] writes server messages into these signals and
//! [`super::actions`] changes them on the user's behalf.

use leptos::prelude::*;
use sf3d_shared::{DeviceInfo, GenerateParams, HealthResponse, MeshEntry, ModelInfo, ParamError};
use web_sys::File;

use crate::api::ApiError;
use crate::job::{JobView, Problem};

/// `sessionStorage` key holding the id of the job this tab follows.
pub const SESSION_JOB_KEY: &str = "sf3d.job_id";

/// State of the job socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Opening (`attempt` failures since the last good connection).
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
    },
    /// Open and greeted (`hello` received, protocol checked).
    Connected,
    /// Dropped; retrying in `retry_in_ms`.
    Retrying {
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// The server speaks another protocol version; the client gave up.
    Mismatch {
        /// The server's version.
        server: u32,
    },
}

impl ConnState {
    /// The name used in the page (`data-state`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ConnState::Connecting { .. } => "connecting",
            ConnState::Connected => "connected",
            ConnState::Retrying { .. } => "retrying",
            ConnState::Mismatch { .. } => "mismatch",
        }
    }
}

/// What the server said about itself in `hello`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// Software version.
    pub version: String,
    /// Compute device.
    pub device: DeviceInfo,
    /// Loaded model.
    pub model: ModelInfo,
    /// Whether the server wants an API key.
    pub auth_required: bool,
    /// Largest accepted image in bytes.
    pub max_upload_bytes: u64,
}

/// The image the user picked.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The file (read when the job starts).
    pub file: File,
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: f64,
    /// An object URL showing it (revoked when replaced).
    pub url: String,
}

/// The gallery as loaded so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GalleryState {
    /// Entries, newest first.
    pub items: Vec<MeshEntry>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
    /// Entries the server skipped because their files were missing.
    pub skipped: u32,
    /// A request is in flight.
    pub loading: bool,
    /// At least one page arrived.
    pub loaded: bool,
    /// Why the last request failed.
    pub error: Option<ApiError>,
}

/// The mesh in the main viewer.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    /// The gallery entry.
    pub entry: MeshEntry,
    /// Whether it is the quick preview of a running job.
    pub preview: bool,
}

/// All shared state, as signals; `Copy`, provided by [`App`](super::App) through the context.
#[derive(Clone, Copy)]
pub struct Studio {
    /// `GET /api/health`: `None` while the first answer is pending.
    pub health: RwSignal<Option<Result<HealthResponse, ApiError>>>,
    /// The latest `hello`.
    pub server: RwSignal<Option<ServerInfo>>,
    /// The job socket.
    pub conn: RwSignal<ConnState>,
    /// The parameter panel's values.
    pub params: RwSignal<GenerateParams>,
    /// The error shown next to a parameter (from `GenerateParams::validate` or the server).
    pub param_error: RwSignal<Option<ParamError>>,
    /// Text typed into a numeric field that does not parse (blocks starting).
    pub draft_error: RwSignal<Option<ParamError>>,
    /// The picked image.
    pub upload: RwSignal<Option<Upload>, LocalStorage>,
    /// Why the last picked file was refused.
    pub upload_error: RwSignal<Option<Problem>>,
    /// The gallery entry being tweaked: starting sends `regenerate` from it instead of a new image.
    pub tweak: RwSignal<Option<MeshEntry>>,
    /// The followed job.
    pub job: RwSignal<JobView>,
    /// The background-removed input of the current image, once the server prepared it.
    pub prepared: RwSignal<Option<String>>,
    /// The main viewer's mesh.
    pub shown: RwSignal<Option<Shown>>,
    /// The gallery.
    pub gallery: RwSignal<GalleryState>,
    /// The first entry picked for a comparison.
    pub compare_pick: RwSignal<Option<MeshEntry>>,
    /// Two entries side by side.
    pub compare: RwSignal<Option<(MeshEntry, MeshEntry)>>,
    /// A message not tied to a panel (a refused frame, a failed delete).
    pub notice: RwSignal<Option<Problem>>,
}

impl Default for Studio {
    fn default() -> Self {
        Self::new()
    }
}

impl Studio {
    /// Fresh state; the followed job is read back from `sessionStorage` (a reload re-attaches to it).
    pub fn new() -> Self {
        let job = match session_job() {
            Some(id) => JobView::resuming(id),
            None => JobView::default(),
        };
        Self {
            health: RwSignal::new(None),
            server: RwSignal::new(None),
            conn: RwSignal::new(ConnState::Connecting { attempt: 0 }),
            params: RwSignal::new(GenerateParams::default()),
            param_error: RwSignal::new(None),
            draft_error: RwSignal::new(None),
            upload: RwSignal::new_local(None),
            upload_error: RwSignal::new(None),
            tweak: RwSignal::new(None),
            job: RwSignal::new(job),
            prepared: RwSignal::new(None),
            shown: RwSignal::new(None),
            gallery: RwSignal::new(GalleryState::default()),
            compare_pick: RwSignal::new(None),
            compare: RwSignal::new(None),
            notice: RwSignal::new(None),
        }
    }

    /// The studio of the running app.
    pub fn get() -> Self {
        expect_context::<Studio>()
    }
}

fn session() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

/// The job id this tab follows, kept across reloads.
pub fn session_job() -> Option<String> {
    session().and_then(|s| s.get_item(SESSION_JOB_KEY).ok().flatten()).filter(|s| !s.is_empty())
}

/// Records (or, with `None`, forgets) the job id this tab follows.
pub(super) fn set_session_job(job_id: Option<&str>) {
    if let Some(s) = session() {
        let _ = match job_id {
            Some(id) => s.set_item(SESSION_JOB_KEY, id),
            None => s.remove_item(SESSION_JOB_KEY),
        };
    }
}
