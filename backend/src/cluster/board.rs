//! Everything a cluster's web tiers and workers say about jobs besides the queue itself, on NATS:
//!
//! * **uploads** — object store bucket `sf3d-NAME-uploads`, one object per queued job (its id), removed when the
//!   job ended;
//! * **events** — subject `sf3d.NAME.events.JOBID`: every stage event and the end of a job, as the protocol's
//!   `ServerMessage` JSON, from the worker running it to every web tier following it (core NATS: live only);
//! * **states** — stream `sf3d-NAME-jobstate`, subject `sf3d.NAME.jobstate.JOBID`, the last `JobStatus` of each
//!   job (one message per subject, kept [`STATE_TTL`]): what a tier that did not start a job answers for it
//!   (`subscribe`, `GET /api/jobs/{id}`), e.g. after the client reconnected to another tier;
//! * **cancels** — subject `sf3d.NAME.cancel.JOBID`, heard by every worker;
//! * **heartbeats** — subject `sf3d.NAME.workers`: each worker process's [`Heartbeat`], which is how web tiers
//!   know the workers (health) without any inbound port on them.

use std::time::Duration;

use async_nats::jetstream::object_store::{self, DeleteErrorKind, GetErrorKind, ObjectStore};
use async_nats::jetstream::stream::{self, DiscardPolicy, LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, Subscriber};
use sf3d_shared::ServerMessage;
use sf3d_shared::api::JobStatus;
use tokio::io::AsyncReadExt;

use super::ClusterName;
use super::wire::{Heartbeat, JobEvent};

/// How long the last state of a job stays readable (and an upload whose job never ended is kept).
pub const STATE_TTL: Duration = Duration::from_secs(86_400);
/// The job states kept at most, in bytes (the oldest go first).
const STATES_MAX_BYTES: i64 = 256 << 20;

/// Failures of the board (always NATS's).
#[derive(Debug, thiserror::Error)]
#[error("the cluster's job board: {0}")]
pub struct BoardError(String);

fn err(what: &str, e: impl std::fmt::Display) -> BoardError {
    BoardError(format!("{what}: {e}"))
}

/// One cluster's job board.
#[derive(Clone)]
pub struct JobBoard {
    client: Client,
    cluster: ClusterName,
    states: Stream,
    uploads: ObjectStore,
}

impl std::fmt::Debug for JobBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobBoard({})", self.cluster)
    }
}

impl JobBoard {
    /// Opens (creating if needed) the board of `cluster`.
    pub async fn open(client: Client, cluster: &ClusterName) -> Result<Self, BoardError> {
        let js = jetstream::new(client.clone());
        let states = js
            .get_or_create_stream(stream::Config {
                name: cluster.bucket("jobstate"),
                subjects: vec![cluster.subject("jobstate.*")],
                max_messages_per_subject: 1,
                max_age: STATE_TTL,
                max_bytes: STATES_MAX_BYTES,
                discard: DiscardPolicy::Old,
                ..Default::default()
            })
            .await
            .map_err(|e| err("creating the job state stream", e))?;
        let uploads = open_store(&js, &cluster.bucket("uploads")).await?;
        Ok(Self { client, cluster: cluster.clone(), states, uploads })
    }

    /// Removes the board of `cluster` (a deployment taken down; the tests' clean-up).
    pub async fn remove(client: Client, cluster: &ClusterName) -> Result<(), BoardError> {
        let js = jetstream::new(client);
        let states = js.delete_stream(cluster.bucket("jobstate")).await.map(drop);
        let uploads = js.delete_object_store(cluster.bucket("uploads")).await.map(drop);
        states.map_err(|e| err("removing the states", e))?;
        uploads.map_err(|e| err("removing the uploads", e))
    }

    /// The NATS connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The cluster.
    pub fn cluster(&self) -> &ClusterName {
        &self.cluster
    }

    fn state_subject(&self, job_id: &str) -> String {
        self.cluster.subject(&format!("jobstate.{job_id}"))
    }

    /// Records the latest state of a job.
    pub async fn put_state(&self, status: &JobStatus) -> Result<(), BoardError> {
        let body = serde_json::to_vec(status).map_err(|e| err("encoding a job state", e))?;
        let js = jetstream::new(self.client.clone());
        let ack = js.publish(self.state_subject(&status.job_id), body.into()).await.map_err(|e| err("job state", e))?;
        ack.await.map(drop).map_err(|e| err("job state", e))
    }

    /// The latest recorded state of a job (`None`: no such job, or it ended more than [`STATE_TTL`] ago).
    pub async fn state(&self, job_id: &str) -> Result<Option<JobStatus>, BoardError> {
        match self.states.get_last_raw_message_by_subject(&self.state_subject(job_id)).await {
            Ok(m) => serde_json::from_slice(&m.payload).map(Some).map_err(|e| err("decoding a job state", e)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(err("reading a job state", e)),
        }
    }

    fn events_subject(&self, job_id: &str) -> String {
        self.cluster.subject(&format!("events.{job_id}"))
    }

    /// Publishes one message of a job's run `attempts` to everyone following it.
    pub async fn publish_event(&self, job_id: &str, attempts: u32, msg: &ServerMessage) -> Result<(), BoardError> {
        let event = JobEvent { attempts, message: msg.clone() };
        let body = serde_json::to_vec(&event).map_err(|e| err("encoding an event", e))?;
        self.client.publish(self.events_subject(job_id), body.into()).await.map_err(|e| err("publishing an event", e))
    }

    /// Follows the events of a job from now on (each a [`JobEvent`]).
    pub async fn subscribe_events(&self, job_id: &str) -> Result<Subscriber, BoardError> {
        self.client.subscribe(self.events_subject(job_id)).await.map_err(|e| err("following a job", e))
    }

    /// Stores the uploaded image of a job.
    pub async fn put_upload(&self, job_id: &str, bytes: &[u8]) -> Result<(), BoardError> {
        let mut reader = bytes;
        self.uploads.put(job_id, &mut reader).await.map(drop).map_err(|e| err("storing the upload", e))
    }

    /// The uploaded image of a job (`None` once the job ended and it was removed).
    pub async fn upload(&self, job_id: &str) -> Result<Option<Vec<u8>>, BoardError> {
        match self.uploads.get(job_id).await {
            Ok(mut obj) => {
                let mut buf = Vec::new();
                obj.read_to_end(&mut buf).await.map_err(|e| err("reading the upload", e))?;
                Ok(Some(buf))
            }
            Err(e) if e.kind() == GetErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("reading the upload", e)),
        }
    }

    /// Removes the uploaded image of a job that ended.
    pub async fn remove_upload(&self, job_id: &str) -> Result<(), BoardError> {
        match self.uploads.delete(job_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("removing the upload", e)),
        }
    }

    /// Asks whichever worker runs the job to cancel it.
    pub async fn request_cancel(&self, job_id: &str) -> Result<(), BoardError> {
        let subject = self.cluster.subject(&format!("cancel.{job_id}"));
        self.client.publish(subject, Vec::new().into()).await.map_err(|e| err("cancelling", e))
    }

    /// Every cancel request of the cluster; the job id is the subject's last token ([`cancelled_job`]).
    pub async fn subscribe_cancels(&self) -> Result<Subscriber, BoardError> {
        self.client.subscribe(self.cluster.subject("cancel.*")).await.map_err(|e| err("listening for cancels", e))
    }

    /// Announces a worker process.
    pub async fn publish_heartbeat(&self, beat: &Heartbeat) -> Result<(), BoardError> {
        let body = serde_json::to_vec(beat).map_err(|e| err("encoding a heartbeat", e))?;
        self.client.publish(self.cluster.subject("workers"), body.into()).await.map_err(|e| err("heartbeat", e))
    }

    /// Every worker process's heartbeats.
    pub async fn subscribe_heartbeats(&self) -> Result<Subscriber, BoardError> {
        self.client.subscribe(self.cluster.subject("workers")).await.map_err(|e| err("listening for workers", e))
    }
}

/// The job id of a cancel request's subject.
pub fn cancelled_job(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or("")
}

/// Opens (creating if needed) an object store bucket.
async fn open_store(js: &Context, bucket: &str) -> Result<ObjectStore, BoardError> {
    // An upload whose job never ended (its web tier died between storing it and queueing the job) expires.
    let config = object_store::Config { bucket: bucket.to_string(), max_age: STATE_TTL, ..Default::default() };
    match js.create_object_store(config).await {
        Ok(s) => Ok(s),
        // Created by another process meanwhile: use it.
        Err(create) => js.get_object_store(bucket).await.map_err(|e| err(&format!("bucket {bucket}: {create}"), e)),
    }
}
