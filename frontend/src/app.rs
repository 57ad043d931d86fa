//! The root component and the state the components share.
//!
//! All shared state is one [`Studio`] (a bundle of signals, `Copy`) provided through the Leptos context. Its
//! methods are the app's actions (pick an image, start, cancel, open, tweak, delete, compare); components only
//! read signals and call actions. Server data is never cached beyond what is on screen: the gallery is re-read
//! from the server, and only the running job's id is kept in `sessionStorage` so a reload re-attaches to it.

use std::sync::atomic::{AtomicU32, Ordering};

use js_sys::ArrayBuffer;
use leptos::prelude::*;
use leptos::task::spawn_local;
use sf3d_shared::protocol::{ImageRef, PROTOCOL_VERSION};
use sf3d_shared::{
    ClientMessage, DeviceInfo, ErrorCode, GenerateParams, HealthResponse, MeshEntry, ModelInfo, ParamError,
    ServerMessage,
};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::File;

use crate::api::{self, ApiError, js_error_text};
use crate::components::compare::CompareView;
use crate::components::gallery::Gallery;
use crate::components::health::HealthBanner;
use crate::components::params::ParamsPanel;
use crate::components::progress::ProgressPanel;
use crate::components::upload::{UploadPanel, sniff_image};
use crate::components::viewer::MainViewer;
use crate::job::{JobView, Phase, Problem};
use crate::ws::{self, SocketEvent};

/// Gallery entries fetched per page.
pub const GALLERY_PAGE: u32 = 12;
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

/// All shared state, as signals; `Copy`, provided by [`App`] through the context.
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

    /// Re-reads `GET /api/health`.
    pub fn refresh_health(self) {
        spawn_local(async move {
            let result = api::health().await;
            self.health.try_set(Some(result));
        });
    }

    fn on_socket(self, event: SocketEvent) {
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
        if let ServerMessage::Hello { protocol, server_version, device, model, auth_required, max_upload_bytes } = msg {
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
                if code == sf3d_shared::ErrorCode::NotFound {
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

    /// Takes a picked, dropped or pasted file: checks it is an image the server can read and shows it.
    pub fn choose_file(self, file: File) {
        let name = file.name();
        let size = file.size();
        let max = self.server.with_untracked(|s| s.as_ref().map(|s| s.max_upload_bytes));
        spawn_local(async move {
            let head = match read_head(&file).await {
                Ok(head) => head,
                Err(why) => {
                    self.upload_error
                        .try_set(Some(Problem::local(format!("could not read {name}: {why}"), "Pick the file again.")));
                    return;
                }
            };
            if sniff_image(&head).is_none() {
                self.upload_error.try_set(Some(Problem::server(
                    ErrorCode::UnsupportedImage,
                    format!("{name} is not a PNG, JPEG or WebP image"),
                    None,
                )));
                return;
            }
            if let Some(max) = max.filter(|&m| size > m as f64) {
                self.upload_error.try_set(Some(Problem::server(
                    ErrorCode::PayloadTooLarge,
                    format!("{name} has {} MB; the server accepts up to {} MB", mb(size), mb(max as f64)),
                    None,
                )));
                return;
            }
            let url = web_sys::Url::create_object_url_with_blob(&file).unwrap_or_default();
            let previous = self.upload.try_update(|u| u.replace(Upload { file, name, size, url })).flatten();
            if let Some(old) = previous {
                let _ = web_sys::Url::revoke_object_url(&old.url);
            }
            self.upload_error.try_set(None);
            self.tweak.try_set(None);
            self.prepared.try_set(None);
        });
    }

    /// Validates the parameters and starts a job: `generate` with the picked image, or `regenerate` from the
    /// tweaked gallery entry.
    pub fn start(self) {
        if self.job.with_untracked(JobView::is_active) {
            return;
        }
        if self.draft_error.with_untracked(Option::is_some) {
            return;
        }
        let params = self.params.get_untracked();
        if let Err(e) = params.validate() {
            self.param_error.set(Some(e));
            return;
        }
        self.param_error.set(None);
        if self.conn.get_untracked() != ConnState::Connected {
            self.job.set(JobView::failed(Problem::local(
                "not connected to the server",
                "Wait until the connection is back (see the top of the page), then start again.",
            )));
            return;
        }
        let request_id = next_request_id();
        if let Some(parent) = self.tweak.get_untracked() {
            self.job.set(JobView::submitting(request_id.clone()));
            let msg = ClientMessage::Regenerate { request_id: Some(request_id), mesh_id: parent.id, params };
            if let Err(e) = ws::send(&msg) {
                self.job.set(JobView::failed(Problem::local(e.to_string(), "Start it again once connected.")));
            }
            return;
        }
        let Some(upload) = self.upload.get_untracked() else {
            self.upload_error.set(Some(Problem::local("no image chosen", "Drop, paste or choose an image first.")));
            return;
        };
        self.job.set(JobView::submitting(request_id.clone()));
        self.prepared.set(None);
        spawn_local(async move {
            let bytes = match JsFuture::from(upload.file.array_buffer()).await {
                Ok(v) => v.unchecked_into::<ArrayBuffer>(),
                Err(e) => {
                    let problem = Problem::local(
                        format!("could not read {}: {}", upload.name, js_error_text(&e)),
                        "Pick the file again.",
                    );
                    self.job.try_set(JobView::failed(problem));
                    return;
                }
            };
            let image = ImageRef::Binary { size: u64::from(bytes.byte_length()), filename: Some(upload.name.clone()) };
            let msg = ClientMessage::Generate { request_id: Some(request_id), params, image };
            if let Err(e) = ws::send_with_binary(&msg, &bytes) {
                self.job.try_set(JobView::failed(Problem::local(e.to_string(), "Start it again once connected.")));
            }
        });
    }

    /// Cancels the followed job.
    pub fn cancel(self) {
        let Some(job_id) = self.job.with_untracked(|j| j.job_id.clone().filter(|_| j.is_active())) else {
            return;
        };
        if let Err(e) = ws::send(&ClientMessage::Cancel { job_id }) {
            self.notice.set(Some(Problem::local(format!("could not cancel: {e}"), "Try again in a moment.")));
        }
    }

    /// Sets the parameters back to `GenerateParams::default()`.
    pub fn reset_params(self) {
        self.params.set(GenerateParams::default());
        self.param_error.set(None);
        self.draft_error.set(None);
    }

    /// Re-reads the first gallery page.
    pub fn refresh_gallery(self) {
        self.load_gallery(None);
    }

    /// Appends the next gallery page.
    pub fn load_more(self) {
        if let Some(cursor) = self.gallery.with_untracked(|g| g.next_cursor.clone()) {
            self.load_gallery(Some(cursor));
        }
    }

    fn load_gallery(self, cursor: Option<String>) {
        self.gallery.update(|g| g.loading = true);
        spawn_local(async move {
            let result = api::meshes(GALLERY_PAGE, cursor.as_deref()).await;
            self.gallery.try_update(|g| {
                g.loading = false;
                match result {
                    Ok(list) => {
                        if cursor.is_none() {
                            g.items.clear();
                        }
                        // A page may overlap what we have when entries were added meanwhile.
                        for item in list.items {
                            if !g.items.iter().any(|i| i.id == item.id) {
                                g.items.push(item);
                            }
                        }
                        g.next_cursor = list.next_cursor;
                        g.skipped = list.skipped;
                        g.loaded = true;
                        g.error = None;
                    }
                    Err(e) => g.error = Some(e),
                }
            });
        });
    }

    /// Shows a gallery entry in the main viewer.
    pub fn open(self, entry: MeshEntry) {
        self.shown.set(Some(Shown { entry, preview: false }));
        scroll_to("viewer");
    }

    /// Shows the gallery entry `id` (fetched; used for parent links).
    pub fn open_by_id(self, id: String) {
        spawn_local(async move {
            match api::mesh(&id).await {
                Ok(entry) => self.open(entry),
                Err(e) => {
                    let hint = e.hint();
                    self.notice.try_set(Some(Problem::local(format!("could not open {id}: {e}"), hint)));
                }
            }
        });
    }

    /// Loads an entry's parameters into the panel; starting then regenerates from it.
    pub fn tweak(self, entry: MeshEntry) {
        self.params.set(GenerateParams { preview: false, ..entry.metadata.params.clone() });
        self.param_error.set(None);
        self.draft_error.set(None);
        self.upload_error.set(None);
        self.prepared.set(Some(entry.urls.preprocessed.clone()));
        self.shown.set(Some(Shown { entry: entry.clone(), preview: false }));
        self.tweak.set(Some(entry));
        scroll_to("params");
    }

    /// Deletes a gallery entry on the server and everywhere it is shown.
    pub fn delete(self, id: String) {
        spawn_local(async move {
            if let Err(e) = api::delete_mesh(&id).await {
                let hint = e.hint();
                self.notice.try_set(Some(Problem::local(format!("could not delete {id}: {e}"), hint)));
                return;
            }
            self.gallery.try_update(|g| g.items.retain(|i| i.id != id));
            let prefix = format!("/api/meshes/{id}/");
            if self.prepared.with_untracked(|p| p.as_ref().is_some_and(|p| p.starts_with(&prefix))) {
                self.prepared.try_set(None);
            }
            if self.shown.with_untracked(|s| s.as_ref().is_some_and(|s| s.entry.id == id)) {
                self.shown.try_set(None);
            }
            if self.tweak.with_untracked(|t| t.as_ref().is_some_and(|t| t.id == id)) {
                self.tweak.try_set(None);
            }
            if self.compare_pick.with_untracked(|t| t.as_ref().is_some_and(|t| t.id == id)) {
                self.compare_pick.try_set(None);
            }
            if self.compare.with_untracked(|c| c.as_ref().is_some_and(|(a, b)| a.id == id || b.id == id)) {
                self.compare.try_set(None);
            }
        });
    }

    /// Picks an entry for a comparison; the second pick opens the side-by-side view.
    pub fn pick_for_compare(self, entry: MeshEntry) {
        match self.compare_pick.get_untracked() {
            Some(first) if first.id != entry.id => {
                self.compare_pick.set(None);
                self.compare.set(Some((first, entry)));
                scroll_to("compare");
            }
            Some(_) => self.compare_pick.set(None),
            None => self.compare_pick.set(Some(entry)),
        }
    }

    /// Compares an entry with the one it was regenerated from.
    pub fn compare_with_parent(self, entry: MeshEntry) {
        let Some(parent_id) = entry.metadata.parent_id.clone() else {
            return;
        };
        spawn_local(async move {
            match api::mesh(&parent_id).await {
                Ok(parent) => {
                    self.compare.try_set(Some((parent, entry)));
                    scroll_to("compare");
                }
                Err(e) => {
                    let hint = e.hint();
                    self.notice
                        .try_set(Some(Problem::local(format!("could not load the parent {parent_id}: {e}"), hint)));
                }
            }
        });
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.1}", bytes / 1_048_576.0)
}

/// Reads the first bytes of a file (enough to recognise the image format).
async fn read_head(file: &File) -> Result<Vec<u8>, String> {
    let head = file.slice_with_i32_and_i32(0, 16).map_err(|e| js_error_text(&e))?;
    let value = JsFuture::from(head.array_buffer()).await.map_err(|e| js_error_text(&e))?;
    Ok(js_sys::Uint8Array::new(&value).to_vec())
}

fn next_request_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("ui-{}-{}", js_sys::Date::now() as u64, NEXT.fetch_add(1, Ordering::Relaxed))
}

fn session() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

/// The job id this tab follows, kept across reloads.
pub fn session_job() -> Option<String> {
    session().and_then(|s| s.get_item(SESSION_JOB_KEY).ok().flatten()).filter(|s| !s.is_empty())
}

fn set_session_job(job_id: Option<&str>) {
    if let Some(s) = session() {
        let _ = match job_id {
            Some(id) => s.set_item(SESSION_JOB_KEY, id),
            None => s.remove_item(SESSION_JOB_KEY),
        };
    }
}

fn scroll_to(id: &str) {
    if let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id(id)) {
        el.scroll_into_view();
    }
}

/// The whole page: health banner, input and parameters, progress, viewer, comparison and gallery.
#[component]
pub fn App() -> impl IntoView {
    let studio = Studio::new();
    provide_context(studio);
    studio.refresh_health();
    studio.refresh_gallery();
    ws::start(move |event| studio.on_socket(event));
    // Paste an image anywhere on the page (text pastes into inputs are left alone).
    let paste = window_event_listener(leptos::ev::paste, move |ev| {
        let file = ev.clipboard_data().and_then(|d| d.files()).and_then(|f| f.get(0));
        if let Some(file) = file {
            ev.prevent_default();
            studio.choose_file(file);
        }
    });
    on_cleanup(move || paste.remove());

    view! {
        <div class="app">
            <header class="topbar">
                <h1 class="brand">"SF3D Studio"</h1>
                <HealthBanner />
            </header>
            {move || {
                studio
                    .notice
                    .get()
                    .map(|p| {
                        view! {
                            <div class="notice" role="alert" data-testid="notice">
                                <p>
                                    <strong>{p.message}</strong>
                                </p>
                                <p class="hint">{p.hint}</p>
                                <button type="button" class="ghost" on:click=move |_| studio.notice.set(None)>
                                    "Dismiss"
                                </button>
                            </div>
                        }
                    })
            }}
            <main class="workspace">
                <div class="column inputs">
                    <UploadPanel />
                    <ParamsPanel />
                </div>
                <div class="column outputs">
                    <MainViewer />
                    <ProgressPanel />
                </div>
            </main>
            <CompareView />
            <Gallery />
        </div>
    }
}
