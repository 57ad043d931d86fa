//! The root component and the state the components share.
//!
//! All shared state is one [`Studio`] (a bundle of signals, `Copy`) provided through the Leptos context. Its
//! methods are the app's actions (pick an image, start, cancel, open, tweak, delete, compare); components only
//! read signals and call actions. Server data is never cached beyond what is on screen: the gallery is re-read
//! from the server, and only the running job's id is kept in `sessionStorage` so a reload re-attaches to it.
//!
//! Which file holds what:
//!
//! * `mod.rs` (here): [`App`], the page layout, and the wiring done once at start-up (context, first loads,
//!   the socket, the page-wide paste listener).
//! * `store.rs`: [`Studio`] and the types its signals hold ([`ConnState`], [`ServerInfo`], [`Upload`],
//!   [`GalleryState`], [`Shown`]), and the followed job's id in `sessionStorage` ([`session_job`]).
//! * `dispatch.rs`: what each socket event and server message does to the state.
//! * `actions.rs`: the user actions, [`Studio`]'s public methods that the components call.

mod actions;
mod dispatch;
mod store;

pub use actions::GALLERY_PAGE;
pub use store::{ConnState, GalleryState, SESSION_JOB_KEY, ServerInfo, Shown, Studio, Upload, session_job};

use leptos::prelude::*;

use crate::components::compare::CompareView;
use crate::components::gallery::Gallery;
use crate::components::health::HealthBanner;
use crate::components::params::ParamsPanel;
use crate::components::progress::ProgressPanel;
use crate::components::upload::UploadPanel;
use crate::components::viewer::MainViewer;
use crate::ws;

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
