//! What a cluster's processes send each other, as JSON: the queued job and a worker process's heartbeat.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sf3d_shared::api::WorkerInfo;
use sf3d_shared::{GenerateParams, ModelInfo, ServerMessage};

/// A job in the cluster's queue. An uploaded image is not in the message (queue messages stay small): it waits
/// in the uploads bucket under the job's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedJob {
    /// The parameters, validated by the web tier.
    pub params: GenerateParams,
    /// Where the image comes from.
    pub input: QueuedInput,
}

/// The image of a [`QueuedJob`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueuedInput {
    /// Uploaded: in the uploads bucket under the job's id.
    Upload {
        /// The file's name, if given.
        filename: Option<String>,
    },
    /// The stored input of a gallery entry, encoded again.
    FromMesh {
        /// Gallery id.
        mesh_id: String,
    },
    /// Re-extract a gallery entry from its stored scene codes.
    Regenerate {
        /// Gallery id of the parent.
        parent_id: String,
    },
}

/// One message of a job on its events subject, with the run it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Runs of the job started so far, this one included (0: it never ran — cancelled while it waited).
    pub attempts: u32,
    /// The message its clients get.
    pub message: ServerMessage,
}

/// What a worker process says about itself every [`Heartbeat::interval_ms`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The process (`--name`, by default host name and process id): unique in the cluster.
    pub node: String,
    /// Its model (every worker of a process runs the same one).
    pub model: ModelInfo,
    /// Its background remover (`builtin`, `u2net`, `u2netp`).
    pub background_remover: String,
    /// One entry per device worker, ids in its `--device` order.
    pub workers: Vec<WorkerInfo>,
    /// Time to the next heartbeat, so listeners know when a silent process is gone.
    pub interval_ms: u64,
}

impl Heartbeat {
    /// How long after this heartbeat its process counts as gone: three missed beats.
    pub fn expires_after(&self) -> Duration {
        Duration::from_millis(self.interval_ms.saturating_mul(3).max(1000))
    }
}
