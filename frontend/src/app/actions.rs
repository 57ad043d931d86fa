//! The user actions: [`Studio`]'s public methods, which the components call (pick an image, start, cancel,
//! reset or tweak the parameters, load, open, delete and compare gallery entries, re-read the server's health).
//!
//! Each action checks what it can on this side, then changes the signals or talks to the server: jobs go over
//! the socket ([`crate::ws`]), everything else through the REST calls ([`crate::api`]). Answers on the socket
//! come back through `dispatch.rs`.

use std::sync::atomic::{AtomicU32, Ordering};

use js_sys::ArrayBuffer;
use leptos::prelude::*;
use leptos::task::spawn_local;
use sf3d_shared::protocol::ImageRef;
use sf3d_shared::{ClientMessage, ErrorCode, GenerateParams, MeshEntry};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::File;

use super::store::{ConnState, Shown, Studio, Upload};
use crate::api::{self, js_error_text};
use crate::components::upload::sniff_image;
use crate::job::{JobView, Problem};
use crate::ws;

/// Gallery entries fetched per page.
pub const GALLERY_PAGE: u32 = 12;

impl Studio {
    /// Re-reads `GET /api/health`.
    pub fn refresh_health(self) {
        spawn_local(async move {
            let result = api::health().await;
            self.health.try_set(Some(result));
        });
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

/// Bytes as megabytes with one decimal (the caller writes the unit).
fn mb(bytes: f64) -> String {
    format!("{:.1}", bytes / 1_048_576.0)
}

/// Reads the first bytes of a file (enough to recognise the image format).
async fn read_head(file: &File) -> Result<Vec<u8>, String> {
    let head = file.slice_with_i32_and_i32(0, 16).map_err(|e| js_error_text(&e))?;
    let value = JsFuture::from(head.array_buffer()).await.map_err(|e| js_error_text(&e))?;
    Ok(js_sys::Uint8Array::new(&value).to_vec())
}

/// A request id unique to this page load (`ui-<ms since the epoch>-<counter>`), echoed back in `accepted`.
fn next_request_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("ui-{}-{}", js_sys::Date::now() as u64, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Scrolls the element with this `id` into view.
fn scroll_to(id: &str) {
    if let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id(id)) {
        el.scroll_into_view();
    }
}
