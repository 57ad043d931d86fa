//! Wire protocol of SF3D Studio, shared by the server (`sf3d-backend`), the engine (`sf3d`) and the
//! browser frontend (`sf3d-frontend`, compiled to wasm32).
//!
//! The protocol is documented with an example of every message in `docs/protocol.md`; the tests in
//! `tests/wire.rs` check those examples against these types, so the document and the code cannot drift.
//!
//! * [`params`]: [`GenerateParams`], SF3D's user-facing options with defaults and validated ranges.
//! * [`stage`]: the pipeline's [`Stage`] list, in order, in one place.
//! * [`protocol`]: WebSocket messages ([`ClientMessage`], [`ServerMessage`]) and [`PROTOCOL_VERSION`].
//! * [`api`]: REST bodies (health, gallery entries, metadata, errors) and header names.
//!
//! This crate depends on serde only, so it builds for `wasm32-unknown-unknown` and the host alike. The `openapi`
//! feature (enabled by the server only) derives `utoipa::ToSchema` for every wire type, for `/api/openapi.json`.

pub mod api;
pub mod params;
pub mod protocol;
pub mod stage;

pub use api::{
    ClientInfo, DeviceInfo, DeviceKind, ErrorBody, ErrorCode, ErrorDetail, HealthResponse, MeshEntry, MeshList,
    MeshMetadata, MeshUrls, ModelInfo, QueueInfo, RegenerateRequest, SeedHealth, StageTiming,
};
pub use params::{BackgroundMode, GenerateParams, ParamError, RemeshOption};
pub use protocol::{ClientMessage, ImageRef, JobState, PROTOCOL_VERSION, ServerMessage, StageSnapshot};
pub use stage::{Stage, StageState};

/// Version of this software (all crates of the workspace share it).
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The attribution the Stability AI Community License asks for when the release weights are used.
pub const STABILITY_ATTRIBUTION: &str = "Powered by Stability AI";

/// Label carried by every output and log line produced with the built-in random-weight test model.
pub const TEST_MODEL_LABEL: &str = "test model: shapes are meaningless";
