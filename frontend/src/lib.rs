//! SF3D Studio web UI: a Leptos (client-side rendering) app compiled to wasm by Trunk.
//!
//! * [`app`]: the root component and the shared state ([`app::Studio`], provided through the context).
//! * [`components`]: one file per feature (upload, parameters, progress, viewer, gallery, health, compare).
//! * [`ws`]: the job socket with reconnect; [`api`]: the REST calls; [`job`]: the progress state machine.
//!
//! Wire types all come from `sf3d-shared`; nothing of the protocol is redefined here. The only JavaScript is
//! the three.js bridge `js/viewer.js`, bound in [`components::viewer`].

pub mod api;
pub mod app;
pub mod components;
pub mod job;
pub mod ws;
