//! REST bodies and shared records: health, gallery entries, the `metadata.json` written next to every mesh,
//! and the one error body every endpoint uses.

use serde::{Deserialize, Serialize};

use crate::params::GenerateParams;
use crate::protocol::{JobState, ServerMessage, StageSnapshot};
use crate::stage::{Stage, StageState};

/// Response header carrying the gallery id of a mesh returned by `POST /api/generate`.
pub const HEADER_MESH_ID: &str = "x-mesh-id";
/// Response header with the stage timings as JSON (`[{"stage":"decode","ms":1.2,"state":"finished"},…]`).
pub const HEADER_STAGE_TIMINGS: &str = "x-stage-timings";
/// Standard `Server-Timing` header (`decode;dur=1.2, backbone;dur=…`), readable by browser dev tools.
pub const HEADER_SERVER_TIMING: &str = "server-timing";
/// Response header with the job id of a REST generation.
pub const HEADER_JOB_ID: &str = "x-job-id";

/// Files stored for every gallery entry (`GET /api/meshes/{id}/{file}` serves exactly these).
pub const MESH_FILES: [&str; 4] = ["mesh.glb", "input.png", "preprocessed.png", "metadata.json"];

/// Kind of compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// The host CPU.
    Cpu,
    /// An NVIDIA GPU through CUDA.
    Cuda,
}

impl DeviceKind {
    /// `"cpu"` or `"cuda"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// The device the model runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    /// CPU or CUDA.
    pub kind: DeviceKind,
    /// Human name (`"cpu (2 threads)"`, `"cuda:0 NVIDIA H100 80GB HBM3"`).
    pub name: String,
    /// Total device memory in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
}

/// Identity of the loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    /// Where the weights came from: a hub id (`hf:stabilityai/stable-fast-3d`), a folder name, or `builtin-test`.
    pub id: String,
    /// True for the built-in random-weight model: shapes are meaningless.
    pub test_model: bool,
    /// Attribution required by the weights' licence (`"Powered by Stability AI"` for the release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
    /// Compute dtype of the network (`"f32"`, `"bf16"`).
    pub dtype: String,
}

/// Queue occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueInfo {
    /// Jobs waiting to start.
    pub waiting: u32,
    /// Jobs running now.
    pub running: u32,
    /// Maximum number of waiting jobs before `queue_full`.
    pub capacity: u32,
}

/// What an inference worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Waiting for a job.
    Idle,
    /// Running a job.
    Busy,
    /// Stopped by a failure outside a job (a panic, a lost device); it takes no more jobs.
    Dead,
}

/// One inference worker: a thread with the engine of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    /// Index in `--device` order, from 0.
    pub id: u32,
    /// Its device.
    pub device: DeviceInfo,
    /// What it is doing.
    pub state: WorkerState,
    /// Jobs it has ended (done, failed or cancelled) since the server started.
    pub jobs_done: u64,
    /// The worker process it belongs to, on a web tier of a cluster (`sf3d worker --name`); absent for a
    /// server's own workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// `"ok"` while at least one worker is alive, `"degraded"` when every worker is dead (new jobs get 503
    /// `unavailable`), `"shutting_down"` once the server stops accepting work.
    pub status: String,
    /// Software version.
    pub version: String,
    /// WebSocket protocol version.
    pub protocol: u32,
    /// Compute device.
    pub device: DeviceInfo,
    /// Loaded model.
    pub model: ModelInfo,
    /// Queue occupancy.
    pub queue: QueueInfo,
    /// Whether requests need `Authorization: Bearer <key>`.
    pub auth_required: bool,
    /// Every inference worker (one per `--device` entry); `device` above is the first one's.
    #[serde(default)]
    pub workers: Vec<WorkerInfo>,
    /// The background remover jobs run when an image needs its background removed: `builtin` (plain
    /// backdrops), `u2net` or `u2netp` (rembg's learned model, `--bg-model`).
    #[serde(default)]
    pub background_remover: String,
}

/// `GET /api/jobs/{id}`: a job's state, live or from the journal (finished jobs are kept for a day, across
/// restarts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobStatus {
    /// The job.
    pub job_id: String,
    /// Its state.
    pub state: JobState,
    /// Jobs ahead of it while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// Times it was started (a run interrupted by a crash or restart counts; the limit is 2).
    pub attempts: u32,
    /// The stages seen so far (of the current attempt).
    #[serde(default)]
    pub stages: Vec<StageSnapshot>,
    /// The message that ended it (`done`, `error` or `cancelled`), once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<ServerMessage>,
}

/// `GET /health`: the seed client's shape (extra fields are harmless to it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedHealth {
    /// `"ok"`.
    pub status: String,
    /// `"cuda"` or `"cpu"`.
    pub gpu: String,
    /// Always true once the server answers (the model loads before the socket opens).
    pub model_loaded: bool,
    /// Model id.
    pub model: String,
    /// Whether this is the built-in test model.
    pub test_model: bool,
    /// Every inference worker.
    #[serde(default)]
    pub workers: Vec<WorkerInfo>,
}

/// Wall time of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageTiming {
    /// The stage.
    pub stage: Stage,
    /// Milliseconds spent (0 for cached and skipped stages).
    pub ms: f64,
    /// How it ended: `finished`, `cached` or `skipped`.
    pub state: StageState,
}

/// Client-side figures added by `sf3d remote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientInfo {
    /// Server the mesh came from.
    pub server: String,
    /// Upload → GLB saved, as seen by the client.
    pub round_trip_ms: f64,
    /// Time spent waiting in the server queue.
    #[serde(default)]
    pub queue_ms: f64,
}

/// Everything known about one generated mesh: `metadata.json`, and the body of gallery entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshMetadata {
    /// Gallery id (ULID), empty for meshes written by `sf3d run` without a gallery.
    #[serde(default)]
    pub mesh_id: String,
    /// The mesh this one was regenerated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Name of the input file as uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// Parameters used.
    pub params: GenerateParams,
    /// Model used.
    pub model: ModelInfo,
    /// Device used.
    pub device: DeviceInfo,
    /// The worker that ran the job (index in `--device` order), when a server made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// The worker process that ran the job, in a cluster (`sf3d worker --name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The job that made it (a job writes its result once, even when it ran twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Per-stage wall times, in pipeline order.
    pub timings: Vec<StageTiming>,
    /// Sum of `timings`.
    pub total_ms: f64,
    /// Vertices in the GLB.
    pub vertex_count: u64,
    /// Triangles in the GLB.
    pub face_count: u64,
    /// Estimated roughness (PBR `roughnessFactor`).
    pub roughness: f32,
    /// Estimated metallic (PBR `metallicFactor`).
    pub metallic: f32,
    /// Spherical-Gaussian illumination amplitudes, when estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sg_amplitudes: Option<Vec<f32>>,
    /// Which remover cut the background out (`builtin`, `u2net`, `u2netp`); absent when the image was kept as
    /// it came (it had an alpha channel, or removal was off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_remover: Option<String>,
    /// Hex SHA-256 of `mesh.glb`.
    pub glb_sha256: String,
    /// Size of `mesh.glb`.
    pub glb_bytes: u64,
    /// Whether this asset is the quick preview of a request.
    #[serde(default)]
    pub preview: bool,
    /// `"sf3d-studio <version>"`.
    pub generator: String,
    /// Licence attribution (`"Powered by Stability AI"` with the release weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
    /// Client-side figures (only in files written by `sf3d remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
}

/// Relative URLs of a gallery entry's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshUrls {
    /// `mesh.glb`.
    pub glb: String,
    /// The uploaded image as received (converted to PNG).
    pub input: String,
    /// The conditioning image after background removal and foreground crop.
    pub preprocessed: String,
    /// `metadata.json`.
    pub metadata: String,
}

impl MeshUrls {
    /// The URLs of gallery entry `id` on this server.
    pub fn for_mesh(id: &str) -> Self {
        Self {
            glb: format!("/api/meshes/{id}/mesh.glb"),
            input: format!("/api/meshes/{id}/input.png"),
            preprocessed: format!("/api/meshes/{id}/preprocessed.png"),
            metadata: format!("/api/meshes/{id}/metadata.json"),
        }
    }
}

/// One gallery entry (`GET /api/meshes/{id}` and the items of `GET /api/meshes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshEntry {
    /// Gallery id.
    pub id: String,
    /// The metadata.
    pub metadata: MeshMetadata,
    /// Where its files are.
    pub urls: MeshUrls,
    /// Whether the cached scene codes are available, so a regenerate skips the network.
    #[serde(default)]
    pub cached: bool,
}

/// `GET /api/meshes?limit&cursor`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshList {
    /// Entries of this page.
    pub items: Vec<MeshEntry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Entries whose files were missing on disk and were skipped.
    #[serde(default)]
    pub skipped: u32,
}

/// Longest piece of client text an error message repeats, in characters.
pub const ECHO_MAX: usize = 64;

/// `text` as an error message may repeat it: at most [`ECHO_MAX`] characters (then `…`), without control
/// characters. A message never carries unbounded client text.
pub fn clip(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(ECHO_MAX).collect();
    if text.chars().count() > ECHO_MAX {
        out.push('…');
    }
    out
}

/// Machine-readable error kinds, shared by REST and WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request (bad JSON, missing multipart field, wrong frame order).
    BadRequest,
    /// A parameter is out of range; `field` names it.
    InvalidParams,
    /// The upload is not a decodable PNG, JPEG or WebP image.
    UnsupportedImage,
    /// The image has more pixels than allowed.
    ImageTooLarge,
    /// The upload has more bytes than allowed.
    PayloadTooLarge,
    /// Nothing left after background removal (empty or fully transparent mask).
    NoForeground,
    /// The network produced no surface (all grid points inside or all outside).
    NoSurface,
    /// The queue is full; retry later.
    QueueFull,
    /// Unknown mesh or job id.
    NotFound,
    /// Missing or wrong API key.
    Unauthorized,
    /// Refused by the cross-site policy: a foreign `Origin` or `Host`, or a per-connection limit.
    Forbidden,
    /// The request body did not arrive in time (stalled or too slow an upload).
    RequestTimeout,
    /// A body in a format the endpoint does not take (JSON endpoints need `Content-Type: application/json`).
    UnsupportedMediaType,
    /// The client speaks another protocol version.
    ProtocolMismatch,
    /// A WebSocket message of an unknown type.
    UnknownMessage,
    /// The job was cancelled.
    Cancelled,
    /// The server is shutting down.
    ShuttingDown,
    /// Every inference worker is dead: the server takes no jobs until it is restarted.
    Unavailable,
    /// The job ran past its deadline (`--job-timeout`).
    DeadlineExceeded,
    /// The job was started twice and both runs were cut short by a crash or restart of the server.
    Interrupted,
    /// A bug or an unexpected failure on the server (details are in its log).
    Internal,
}

impl ErrorCode {
    /// The HTTP status REST endpoints answer with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownMessage | ErrorCode::ProtocolMismatch => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::NotFound => 404,
            ErrorCode::Cancelled => 409,
            ErrorCode::PayloadTooLarge | ErrorCode::ImageTooLarge => 413,
            ErrorCode::UnsupportedImage | ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidParams | ErrorCode::NoForeground | ErrorCode::NoSurface => 422,
            ErrorCode::QueueFull => 429,
            ErrorCode::ShuttingDown | ErrorCode::Unavailable => 503,
            ErrorCode::DeadlineExceeded => 504,
            ErrorCode::Interrupted => 500,
            ErrorCode::Internal => 500,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::UnsupportedImage => "unsupported_image",
            ErrorCode::ImageTooLarge => "image_too_large",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NoForeground => "no_foreground",
            ErrorCode::NoSurface => "no_surface",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::ProtocolMismatch => "protocol_mismatch",
            ErrorCode::UnknownMessage => "unknown_message",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::Internal => "internal",
        }
    }

    /// What a user can do about it, in words (shown by the UI under the message).
    pub fn hint(self) -> &'static str {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownMessage => {
                "The client sent something the server does not understand; update the client."
            }
            ErrorCode::InvalidParams => "Fix the highlighted parameter and try again.",
            ErrorCode::UnsupportedImage => "Upload a PNG, JPEG or WebP image.",
            ErrorCode::ImageTooLarge | ErrorCode::PayloadTooLarge => "Use a smaller image (fewer pixels or bytes).",
            ErrorCode::NoForeground => {
                "No object was found: use an image with a clear subject, or a transparent background."
            }
            ErrorCode::NoSurface => {
                "The model found no surface in this image; try another picture or foreground ratio."
            }
            ErrorCode::QueueFull => "The server is busy; try again in a few seconds.",
            ErrorCode::NotFound => "It may have been deleted; refresh the gallery.",
            ErrorCode::Unauthorized => "Provide the server's API key.",
            ErrorCode::Forbidden => {
                "The server refused this page or host: open the UI at the server's own address, or ask its operator \
                 to allow this origin (--cors-origin) or host name (--allowed-host)."
            }
            ErrorCode::RequestTimeout => "The upload was too slow; check the network and try again.",
            ErrorCode::UnsupportedMediaType => "The client sent the wrong Content-Type; update the client.",
            ErrorCode::ProtocolMismatch => "Client and server versions differ; reload the page or update the client.",
            ErrorCode::Cancelled => "The job was cancelled.",
            ErrorCode::ShuttingDown => "The server is restarting; try again shortly.",
            ErrorCode::Unavailable => "Every worker of the server has failed; its operator needs to restart it.",
            ErrorCode::DeadlineExceeded => {
                "The job took longer than the server allows (--job-timeout); try smaller settings or ask its operator."
            }
            ErrorCode::Interrupted => "The server restarted twice while running this job; submit it again.",
            ErrorCode::Internal => "Something went wrong on the server; its log has the details.",
        }
    }
}

/// The details of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Machine-readable kind.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// The offending parameter, for `invalid_params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The body of every REST error response: `{"error":{"code":…,"message":…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// A body with no field.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: ErrorDetail { code, message: message.into(), field: None } }
    }
}

/// Body of `POST /api/meshes/{id}/regenerate` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegenerateRequest {
    /// New parameters; the encode-side ones (`foreground_ratio`, `background`) must equal the parent's to hit
    /// the cache, otherwise the network runs again.
    #[serde(default)]
    pub params: GenerateParams,
}
