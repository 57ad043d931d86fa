//! The 3D viewer: a canvas driven by the three.js bridge `js/viewer.js` (GLTFLoader, OrbitControls, PBR with a
//! RoomEnvironment light through PMREMGenerator, normal map on), with reset view, wireframe and albedo-only
//! toggles, vertex/face counts and a GLB download link.
//!
//! The bridge holds only what three.js must hold; the mesh to show and the toggles are Rust signals passed in on
//! every call. The main viewer publishes `window.__sf3dViewer = {ready, vertices, faces, mesh_id}` once a GLB
//! is on screen (the browser tests wait for it; `ready` is false while a mesh loads).

use js_sys::{ArrayBuffer, Object, Promise, Reflect};
use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;
use sf3d_shared::MeshEntry;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::HtmlCanvasElement;

use crate::api::{self, js_error_text};
use crate::app::Studio;
use crate::job::format_ms;

#[wasm_bindgen(module = "/js/viewer.js")]
extern "C" {
    /// One three.js viewer (renderer, scene, camera, controls) bound to a canvas.
    type ViewerHandle;

    /// What `showGlb` resolves to once the mesh is drawn.
    type MeshStats;

    /// Creates a viewer on `canvas` (loading three.js on first use); viewers with the same non-empty
    /// `link_group` share their camera. The promise resolves to a [`ViewerHandle`] and rejects when three.js or
    /// WebGL is unavailable.
    #[wasm_bindgen(js_name = createViewer, catch)]
    fn create_viewer(canvas: &HtmlCanvasElement, link_group: &str) -> Result<Promise, JsValue>;

    /// Parses a GLB, replaces the shown model, frames it and draws it; the promise resolves to [`MeshStats`].
    #[wasm_bindgen(js_name = showGlb, catch)]
    fn show_glb(
        viewer: &ViewerHandle,
        glb: &ArrayBuffer,
        wireframe: bool,
        albedo_only: bool,
    ) -> Result<Promise, JsValue>;

    /// Switches wireframe and albedo-only (unlit base colour, no normal map) on the shown model.
    #[wasm_bindgen(js_name = setDisplay)]
    fn set_display(viewer: &ViewerHandle, wireframe: bool, albedo_only: bool);

    /// Removes the shown model.
    #[wasm_bindgen(js_name = clearViewer)]
    fn clear_viewer(viewer: &ViewerHandle);

    /// Puts the camera back to the framing view.
    #[wasm_bindgen(js_name = resetView)]
    fn reset_view(viewer: &ViewerHandle);

    /// Frees the WebGL context and everything the viewer holds.
    #[wasm_bindgen(js_name = disposeViewer)]
    fn dispose_viewer(viewer: &ViewerHandle);

    #[wasm_bindgen(method, getter)]
    fn vertices(this: &MeshStats) -> f64;

    #[wasm_bindgen(method, getter)]
    fn faces(this: &MeshStats) -> f64;
}

/// What the viewer is doing.
#[derive(Debug, Clone, PartialEq)]
enum ViewerStatus {
    Empty,
    Loading,
    Ready { vertices: u64, faces: u64 },
    Failed(String),
}

/// Publishes the test hook `window.__sf3dViewer`.
fn publish_hook(ready: bool, stats: Option<(u64, u64)>, mesh_id: &str) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let hook = Object::new();
    let (vertices, faces) = stats.unwrap_or((0, 0));
    let _ = Reflect::set(&hook, &"ready".into(), &ready.into());
    let _ = Reflect::set(&hook, &"vertices".into(), &JsValue::from_f64(vertices as f64));
    let _ = Reflect::set(&hook, &"faces".into(), &JsValue::from_f64(faces as f64));
    let _ = Reflect::set(&hook, &"mesh_id".into(), &mesh_id.into());
    let _ = Reflect::set(&window, &"__sf3dViewer".into(), &hook);
}

/// The file name offered when downloading a mesh: the source image's stem, else the mesh id.
pub fn download_name(entry: &MeshEntry) -> String {
    let stem = entry
        .metadata
        .source_name
        .as_deref()
        .map(|n| n.rsplit_once('.').map_or(n, |(stem, _)| stem))
        .filter(|s| !s.is_empty() && !s.contains(['/', '\\']));
    match stem {
        Some(s) => format!("{s}-{}.glb", entry.id),
        None => format!("{}.glb", entry.id),
    }
}

/// A three.js canvas showing one gallery entry, with its toolbar.
#[component]
pub fn Viewer(
    /// The entry to show; `None` leaves the stage empty.
    #[prop(into)]
    mesh: Signal<Option<MeshEntry>>,
    /// Viewers with the same non-empty group share their camera (the compare view).
    #[prop(optional)]
    link_group: &'static str,
    /// Whether this viewer publishes the `window.__sf3dViewer` test hook (the main viewer only).
    #[prop(optional)]
    test_hook: bool,
    /// Prefix of the `data-testid`s of the canvas and toolbar (`viewer` gives `viewer-canvas`, `viewer-reset`…).
    #[prop(default = "viewer")]
    testid: &'static str,
) -> impl IntoView {
    let canvas_ref = NodeRef::<Canvas>::new();
    let handle = StoredValue::new_local(None::<ViewerHandle>);
    let created = RwSignal::new(false);
    let status = RwSignal::new(ViewerStatus::Empty);
    let wireframe = RwSignal::new(false);
    let albedo_only = RwSignal::new(false);
    let generation = StoredValue::new(0_u64);
    let glb_url = Memo::new(move |_| mesh.with(|m| m.as_ref().map(|m| (m.id.clone(), m.urls.glb.clone()))));

    let creating = StoredValue::new(false);
    Effect::new(move |_| {
        let Some(canvas) = canvas_ref.get() else {
            return;
        };
        if creating.get_value() {
            return;
        }
        creating.set_value(true);
        spawn_local(async move {
            let result = match create_viewer(&canvas, link_group) {
                Ok(promise) => JsFuture::from(promise).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(h) => {
                    // Unmounted while three.js loaded: free the context at once.
                    if let Some(Some(orphan)) = handle.try_set_value(Some(h.unchecked_into())) {
                        dispose_viewer(&orphan);
                        return;
                    }
                    created.try_set(true);
                }
                Err(e) => {
                    let why = format!("the 3D view is not available: {}", js_error_text(&e));
                    status.try_set(ViewerStatus::Failed(why));
                }
            }
        });
    });

    Effect::new(move |_| {
        let target = glb_url.get();
        if !created.get() {
            return;
        }
        let ticket = generation.get_value() + 1;
        generation.set_value(ticket);
        let Some((mesh_id, url)) = target else {
            handle.with_value(|h| {
                if let Some(h) = h {
                    clear_viewer(h);
                }
            });
            status.set(ViewerStatus::Empty);
            if test_hook {
                publish_hook(false, None, "");
            }
            return;
        };
        status.set(ViewerStatus::Loading);
        if test_hook {
            publish_hook(false, None, &mesh_id);
        }
        spawn_local(async move {
            let result =
                load(handle, &url, wireframe.get_untracked(), albedo_only.get_untracked(), ticket, generation).await;
            if generation.try_get_value() != Some(ticket) {
                return; // superseded by a newer mesh (the final asset after a preview)
            }
            match result {
                Ok((vertices, faces)) => {
                    status.try_set(ViewerStatus::Ready { vertices, faces });
                    if test_hook {
                        publish_hook(true, Some((vertices, faces)), &mesh_id);
                    }
                }
                Err(why) => {
                    status.try_set(ViewerStatus::Failed(why));
                }
            }
        });
    });

    Effect::new(move |_| {
        let (w, a) = (wireframe.get(), albedo_only.get());
        handle.with_value(|h| {
            if let Some(h) = h {
                set_display(h, w, a);
            }
        });
    });

    on_cleanup(move || {
        if let Some(Some(h)) = handle.try_update_value(Option::take) {
            dispose_viewer(&h);
        }
    });

    let download = move || mesh.with(|m| m.as_ref().map(|m| (crate::api::authed_url(&m.urls.glb), download_name(m))));
    view! {
        <div class="viewer" data-testid=testid data-status=move || match status.get() {
            ViewerStatus::Empty => "empty",
            ViewerStatus::Loading => "loading",
            ViewerStatus::Ready { .. } => "ready",
            ViewerStatus::Failed(_) => "failed",
        }>
            <div class="canvas-wrap">
                <canvas
                    node_ref=canvas_ref
                    tabindex="0"
                    data-testid=format!("{testid}-canvas")
                    aria-label="3D view: drag to orbit, scroll to zoom, arrow keys to pan"
                ></canvas>
                {move || match status.get() {
                    ViewerStatus::Empty => Some(view! { <p class="overlay">"No mesh yet"</p> }.into_any()),
                    ViewerStatus::Loading => Some(view! { <p class="overlay">"Loading mesh…"</p> }.into_any()),
                    ViewerStatus::Failed(why) => {
                        Some(view! { <p class="overlay error" role="alert" data-testid=format!("{testid}-error")>{why}</p> }.into_any())
                    }
                    ViewerStatus::Ready { .. } => None,
                }}
            </div>
            <div class="toolbar" role="toolbar" aria-label="Viewer controls">
                <button
                    type="button"
                    data-testid=format!("{testid}-reset")
                    on:click=move |_| {
                        handle.with_value(|h| {
                            if let Some(h) = h {
                                reset_view(h);
                            }
                        });
                    }
                >
                    "Reset view"
                </button>
                <button
                    type="button"
                    data-testid=format!("{testid}-wireframe")
                    aria-pressed=move || wireframe.get().to_string()
                    on:click=move |_| wireframe.update(|w| *w = !*w)
                >
                    "Wireframe"
                </button>
                <button
                    type="button"
                    data-testid=format!("{testid}-albedo")
                    aria-pressed=move || albedo_only.get().to_string()
                    on:click=move |_| albedo_only.update(|a| *a = !*a)
                >
                    "Albedo only"
                </button>
                <span class="counts" data-testid=format!("{testid}-counts")>
                    {move || match status.get() {
                        ViewerStatus::Ready { vertices, faces } => format!("{vertices} vertices · {faces} faces"),
                        _ => String::new(),
                    }}
                </span>
                {move || {
                    download()
                        .map(|(url, name)| {
                            view! {
                                <a class="button" href=url download=name data-testid=format!("{testid}-download")>
                                    "Download GLB"
                                </a>
                            }
                        })
                }}
            </div>
        </div>
    }
}

/// Fetches a GLB and shows it; `Err` holds the reason in words.
async fn load(
    handle: StoredValue<Option<ViewerHandle>, LocalStorage>,
    url: &str,
    wireframe: bool,
    albedo_only: bool,
    ticket: u64,
    generation: StoredValue<u64>,
) -> Result<(u64, u64), String> {
    let bytes = api::bytes(url).await.map_err(|e| format!("could not download the mesh: {e}"))?;
    if generation.try_get_value() != Some(ticket) {
        return Err("superseded".into());
    }
    let promise = handle
        .try_with_value(|h| h.as_ref().map(|h| show_glb(h, &bytes, wireframe, albedo_only)))
        .flatten()
        .ok_or_else(|| "the viewer is gone".to_owned())?
        .map_err(|e| js_error_text(&e))?;
    let stats: MeshStats = JsFuture::from(promise).await.map_err(|e| js_error_text(&e))?.unchecked_into();
    Ok((stats.vertices() as u64, stats.faces() as u64))
}

/// The main viewer with what is shown in it: preview badge, source, parameters and timing.
#[component]
pub fn MainViewer() -> impl IntoView {
    let studio = Studio::get();
    let mesh = Signal::derive(move || studio.shown.with(|s| s.as_ref().map(|s| s.entry.clone())));
    let caption = move || {
        studio.shown.get().map(|s| {
            let m = &s.entry.metadata;
            let name = m.source_name.clone().unwrap_or_else(|| s.entry.id.clone());
            view! {
                <p class="viewer-caption" data-testid="viewer-caption">
                    {s.preview.then(|| view! { <span class="badge" data-testid="preview-badge">"Preview: final mesh on its way"</span> })}
                    <span>{name}</span>
                    <span class="muted">
                        {format!(
                            " · {} px · remesh {} · {} · {}",
                            m.params.texture_resolution,
                            m.params.remesh,
                            m.device.name,
                            format_ms(m.total_ms),
                        )}
                    </span>
                </p>
            }
        })
    };
    view! {
        <section class="card viewer-card" id="viewer" aria-labelledby="viewer-title">
            <h2 id="viewer-title">"Result"</h2>
            {caption}
            <Viewer mesh=mesh test_hook=true />
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: Option<&str>) -> MeshEntry {
        let mut metadata: sf3d_shared::MeshMetadata = serde_json::from_str(
            r#"{"created_at": "2026-11-27T10:30:00Z", "params": {},
                "model": {"id": "builtin-test", "test_model": true, "dtype": "f32"},
                "device": {"kind": "cpu", "name": "cpu"}, "timings": [], "total_ms": 1.0,
                "vertex_count": 3, "face_count": 1, "roughness": 0.5, "metallic": 0.0,
                "glb_sha256": "00", "glb_bytes": 10, "generator": "t"}"#,
        )
        .expect("metadata parses");
        metadata.source_name = source.map(str::to_owned);
        MeshEntry { id: "01M".into(), metadata, urls: sf3d_shared::MeshUrls::for_mesh("01M"), cached: false }
    }

    #[test]
    fn download_names_use_the_source_stem() {
        assert_eq!(download_name(&entry(Some("shirt.png"))), "shirt-01M.glb");
        assert_eq!(download_name(&entry(Some("archive.tar.png"))), "archive.tar-01M.glb");
        assert_eq!(download_name(&entry(None)), "01M.glb");
        assert_eq!(download_name(&entry(Some("../x/evil.png"))), "01M.glb", "no paths");
    }
}
