//! WebSocket messages on `/ws`. Every frame is a JSON text frame with a `type` tag, except the image bytes of a
//! `generate` request, which follow it as one binary frame. Results are fetched by URL (see [`crate::MeshUrls`]).
//!
//! Life of a job: `accepted` (with the queue position) → `queue` updates → `stage` events (`started`,
//! `progress`, `finished` / `cached` / `skipped`, in pipeline order) → `done`, `error` or `cancelled`.

use serde::{Deserialize, Serialize};

use crate::api::{DeviceInfo, ErrorCode, MeshMetadata, MeshUrls, ModelInfo};
use crate::params::GenerateParams;
use crate::stage::{Stage, StageState};

/// Version of this protocol. The server announces it in `hello`; clients refuse a different major number.
pub const PROTOCOL_VERSION: u32 = 1;

/// Where the image of a `generate` request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageRef {
    /// The next frame on the socket is a binary frame of exactly `size` bytes.
    Binary {
        /// Length of the binary frame.
        size: u64,
        /// Original file name, kept in the gallery.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    /// Re-use the input image of a stored gallery entry.
    Mesh {
        /// Gallery id.
        mesh_id: String,
    },
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Authenticate the connection (alternative to the `token` query parameter). Must come first when the
    /// server requires a key.
    Auth {
        /// The API key.
        token: String,
    },
    /// Start a job.
    Generate {
        /// Echoed in `accepted` so a client can match its requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// Generation options (missing fields take defaults).
        #[serde(default)]
        params: GenerateParams,
        /// The image.
        image: ImageRef,
    },
    /// Re-extract a stored mesh with new parameters from its cached scene codes.
    Regenerate {
        /// Echoed in `accepted`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// The gallery entry to start from.
        mesh_id: String,
        /// New parameters.
        #[serde(default)]
        params: GenerateParams,
    },
    /// Cancel a job: a queued one at once, a running one at its next check.
    Cancel {
        /// The job.
        job_id: String,
    },
    /// Receive the events of a job started on another connection (re-attach after a reconnect).
    Subscribe {
        /// The job.
        job_id: String,
    },
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting in the queue.
    Queued,
    /// On the worker.
    Running,
    /// Finished with a mesh.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

/// The last known state of one stage, replayed by `status` to a client that subscribes late.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageSnapshot {
    /// The stage.
    pub stage: Stage,
    /// Its latest state.
    pub state: StageState,
    /// Progress value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// Progress maximum, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// Milliseconds since the stage started (its duration once terminal).
    pub elapsed_ms: u64,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First frame on every connection.
    Hello {
        /// [`PROTOCOL_VERSION`] of the server.
        protocol: u32,
        /// Software version of the server.
        server_version: String,
        /// Compute device.
        device: DeviceInfo,
        /// Loaded model.
        model: ModelInfo,
        /// Whether an `auth` message (or `token` query parameter) is needed before anything else.
        auth_required: bool,
        /// Largest accepted image, in bytes.
        max_upload_bytes: u64,
        /// Every inference worker (device, state, jobs done).
        #[serde(default)]
        workers: Vec<crate::api::WorkerInfo>,
    },
    /// A `generate`/`regenerate` was queued.
    Accepted {
        /// The new job.
        job_id: String,
        /// The client's `request_id`, echoed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// Jobs ahead of this one (0 = next to run).
        position: u32,
    },
    /// The queue position of a waiting job changed.
    Queue {
        /// The job.
        job_id: String,
        /// Jobs ahead of it.
        position: u32,
    },
    /// Snapshot sent in answer to `subscribe`, before the live events.
    Status {
        /// The job.
        job_id: String,
        /// Its state.
        state: JobState,
        /// Queue position while queued.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<u32>,
        /// Stages seen so far, in order.
        stages: Vec<StageSnapshot>,
    },
    /// A stage event, pushed the moment it happens.
    Stage {
        /// The job.
        job_id: String,
        /// The stage.
        stage: Stage,
        /// What happened.
        state: StageState,
        /// Progress value (with `max`), for `progress` events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<u64>,
        /// Progress maximum.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
        /// Milliseconds since the stage started (its duration when finished).
        elapsed_ms: u64,
        /// Extra words (`"skipped: image has alpha"`, `"texels 120000/400000"`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// The quick preview asset of a `preview: true` request; the final asset follows.
    Preview {
        /// The job.
        job_id: String,
        /// Gallery id of the preview.
        mesh_id: String,
        /// Its files.
        urls: MeshUrls,
        /// Its metadata.
        metadata: Box<MeshMetadata>,
    },
    /// The job succeeded.
    Done {
        /// The job.
        job_id: String,
        /// Gallery id of the result.
        mesh_id: String,
        /// Its files.
        urls: MeshUrls,
        /// Its metadata.
        metadata: Box<MeshMetadata>,
    },
    /// The job was cancelled.
    Cancelled {
        /// The job.
        job_id: String,
    },
    /// A job failed, or a message could not be handled (then `job_id` is absent and the connection stays open).
    Error {
        /// The job concerned, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
        /// Machine-readable kind.
        code: ErrorCode,
        /// Human-readable message.
        message: String,
        /// The offending parameter, for `invalid_params`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// Seconds to wait before trying again, for `queue_full` (what HTTP says with `Retry-After`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
}

impl ServerMessage {
    /// The job a message is about, if any.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            ServerMessage::Hello { .. } => None,
            ServerMessage::Accepted { job_id, .. }
            | ServerMessage::Queue { job_id, .. }
            | ServerMessage::Status { job_id, .. }
            | ServerMessage::Stage { job_id, .. }
            | ServerMessage::Preview { job_id, .. }
            | ServerMessage::Done { job_id, .. }
            | ServerMessage::Cancelled { job_id } => Some(job_id),
            ServerMessage::Error { job_id, .. } => job_id.as_deref(),
        }
    }

    /// An error frame not tied to a job.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error { job_id: None, code, message: message.into(), field: None, retry_after: None }
    }
}
