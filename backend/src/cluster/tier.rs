//! The web tier of a cluster (`sf3d serve --nats`): it runs no model. A job a client submits is stored and queued
//! on NATS ([`JobQueue`], [`JobBoard`]), and its events come back from the worker that runs it into the job of
//! this process's [`JobManager`] — so every WebSocket and REST path (`subscribe`, `GET /api/jobs/{id}`, the
//! seed's `/generate`, cancel) works as it does for a local job. A job this tier did not start (the client
//! reconnected here from another tier) is looked up on the board and followed from its last state. Health lists
//! the workers whose heartbeats arrive.
//!
//! The NATS client is asynchronous and the job manager is not: the client runs on a small runtime of its own,
//! and each call of the manager waits for its answer, bounded by [`CALL_TIMEOUT`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_nats::Subscriber;
use futures_util::StreamExt;
use sf3d_shared::api::JobStatus;
use sf3d_shared::{JobState, ServerMessage};

use super::ClusterName;
use super::board::JobBoard;
use super::bridge::Bridge;
use super::queue::{JobQueue, QueueError};
use super::wire::{Heartbeat, JobEvent, QueuedInput, QueuedJob};
use crate::jobs::{Dispatch, Job, JobInput, JobManager, JobRequest, SubmitError, lock};

/// Longest a request waits for NATS.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A followed job silent this long is looked up on the board (its end may have been published while this
/// tier's connection was down).
const QUIET_CHECK: Duration = Duration::from_secs(10);

/// Failures of the web tier's start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TierError(String);

/// One web tier's link to its cluster.
pub struct WebTier {
    bridge: Bridge,
    board: JobBoard,
    queue: JobQueue,
    manager: OnceLock<Weak<JobManager>>,
    /// Event subscriptions made before a job was queued, until [`Dispatch::follow`] takes them.
    pending: Mutex<HashMap<String, Subscriber>>,
    /// The latest heartbeat of each worker process, with when it came.
    workers: Arc<Mutex<HashMap<String, (Instant, Heartbeat)>>>,
    /// The last occupancy read (answered when NATS does not answer in time).
    occupancy: Mutex<(u32, u32)>,
    target: String,
}

impl std::fmt::Debug for WebTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.target)
    }
}

impl WebTier {
    /// Connects to the NATS server at `url`, opens the cluster's queue (`capacity` jobs; `ack_wait` if this
    /// tier creates it) and board, and starts listening for worker heartbeats.
    pub fn connect(
        url: &str,
        cluster: &ClusterName,
        capacity: u32,
        ack_wait: Duration,
    ) -> Result<Arc<Self>, TierError> {
        let bridge = Bridge::new("sf3d-cluster").map_err(TierError)?;
        let target = format!("NATS {}, cluster {cluster}", super::redacted_url(url));
        let (url, name) = (url.to_string(), cluster.clone());
        let opened = bridge.run(CALL_TIMEOUT, async move {
            let client = super::connect(&url, CONNECT_TIMEOUT).await?;
            let mut queue =
                JobQueue::open(client.clone(), &name, capacity, ack_wait).await.map_err(|e| e.to_string())?;
            queue.fit_capacity(capacity).await.map_err(|e| e.to_string())?;
            let board = JobBoard::open(client, &name).await.map_err(|e| e.to_string())?;
            let beats = board.subscribe_heartbeats().await.map_err(|e| e.to_string())?;
            let exhausted = queue.watch_exhausted(board.client()).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((queue, board, beats, exhausted))
        });
        let (queue, board, beats, exhausted) =
            opened.and_then(|r| r).map_err(|e| TierError(format!("{target}: {e}")))?;
        let workers = Arc::new(Mutex::new(HashMap::new()));
        bridge.spawn(listen_for_workers(beats, workers.clone()));
        bridge.spawn(end_exhausted(exhausted, queue.clone(), board.clone()));
        Ok(Arc::new(Self {
            bridge,
            board,
            queue,
            manager: OnceLock::new(),
            pending: Mutex::new(HashMap::new()),
            workers,
            occupancy: Mutex::new((0, 0)),
            target,
        }))
    }

    /// Ties the tier to the job manager it feeds (once, right after both exist).
    pub fn attach(&self, manager: &Arc<JobManager>) {
        let _ = self.manager.set(Arc::downgrade(manager));
    }

    /// The worker processes heard from recently, by name.
    pub fn workers(&self) -> Vec<Heartbeat> {
        let mut alive: Vec<Heartbeat> = lock(&self.workers)
            .values()
            .filter(|(at, beat)| at.elapsed() < beat.expires_after())
            .map(|(_, beat)| beat.clone())
            .collect();
        alive.sort_by(|a, b| a.node.cmp(&b.node));
        alive
    }

    /// What this tier is connected to (for logs).
    pub fn describe(&self) -> &str {
        &self.target
    }

    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T, String> {
        self.bridge.run(CALL_TIMEOUT, fut)
    }

    /// Starts feeding the events of `sub` into `job`.
    fn spawn_relay(&self, job: Arc<Job>, sub: Subscriber) {
        let Some(manager) = self.manager.get().cloned() else { return };
        self.bridge.spawn(relay(manager, self.board.clone(), job, sub));
    }
}

/// Keeps the latest heartbeat of each worker process.
async fn listen_for_workers(mut beats: Subscriber, workers: Arc<Mutex<HashMap<String, (Instant, Heartbeat)>>>) {
    while let Some(msg) = beats.next().await {
        match serde_json::from_slice::<Heartbeat>(&msg.payload) {
            Ok(beat) => {
                let mut w = lock(&workers);
                w.retain(|_, (at, b)| at.elapsed() < b.expires_after() * 10);
                w.insert(beat.node.clone(), (Instant::now(), beat));
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a heartbeat that is none"),
        }
    }
}

/// Ends the jobs whose every run was cut short (each worker died with it): `interrupted`, as in one server.
async fn end_exhausted(mut advisories: Subscriber, queue: JobQueue, board: JobBoard) {
    while let Some(advisory) = advisories.next().await {
        let id = match queue.remove_exhausted(&advisory.payload).await {
            Ok(Some(id)) => id,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove an exhausted job from the queue");
                continue;
            }
        };
        tracing::warn!(job = %id, "a job was interrupted on every attempt; ending it");
        let previous = board.state(&id).await.ok().flatten();
        let end = crate::jobs::interrupted_message(&id, crate::journal::MAX_ATTEMPTS);
        let state = JobStatus {
            state: JobState::Failed,
            terminal: Some(end.clone()),
            attempts: crate::journal::MAX_ATTEMPTS,
            ..previous.unwrap_or_else(|| queued_state(&id))
        };
        let reported = async {
            board.put_state(&state).await?;
            board.publish_event(&id, state.attempts, &end).await?;
            board.remove_upload(&id).await
        };
        if let Err(e) = reported.await {
            tracing::warn!(job = %id, error = %e, "cannot report the end of an exhausted job");
        }
    }
}

/// Feeds the events of one job into it until it ends (here: a client cancelled it, or its end arrived).
async fn relay(manager: Weak<JobManager>, board: JobBoard, job: Arc<Job>, mut sub: Subscriber) {
    while job.terminal().is_none() {
        let next = tokio::time::timeout(QUIET_CHECK, sub.next()).await;
        let Some(manager) = manager.upgrade() else { return };
        match next {
            Ok(Some(msg)) => match serde_json::from_slice::<JobEvent>(&msg.payload) {
                Ok(e) => manager.relay(&job, e.attempts, e.message),
                Err(e) => tracing::warn!(job = %job.id, error = %e, "ignoring an event that is none"),
            },
            Ok(None) => return,
            Err(_) => {
                // Quiet: the end may have been published while this tier's connection was down.
                if let Ok(Some(JobStatus { terminal: Some(end), attempts, .. })) = board.state(&job.id).await {
                    manager.relay(&job, attempts, end);
                }
            }
        }
    }
}

/// The queued form of a request (an upload's bytes go to the board).
fn queued(request: &JobRequest) -> Result<(QueuedJob, Option<Vec<u8>>), SubmitError> {
    let (input, bytes) = match &request.input {
        JobInput::Image { bytes, filename } => {
            (QueuedInput::Upload { filename: filename.clone() }, Some(bytes.clone()))
        }
        JobInput::Upload { path, filename } => {
            let bytes = std::fs::read(path).map_err(|e| SubmitError::Journal(e.to_string()))?;
            (QueuedInput::Upload { filename: filename.clone() }, Some(bytes))
        }
        JobInput::FromMesh { mesh_id } => (QueuedInput::FromMesh { mesh_id: mesh_id.clone() }, None),
        JobInput::Regenerate { parent_id } => (QueuedInput::Regenerate { parent_id: parent_id.clone() }, None),
    };
    Ok((QueuedJob { params: request.params.clone(), input }, bytes))
}

/// A job's state before any worker took it.
fn queued_state(job_id: &str) -> JobStatus {
    JobStatus {
        job_id: job_id.to_string(),
        state: JobState::Queued,
        position: None,
        attempts: 0,
        stages: vec![],
        terminal: None,
    }
}

impl Dispatch for WebTier {
    fn dispatch(&self, job: &Arc<Job>, request: JobRequest) -> Result<u32, SubmitError> {
        let (queued, upload) = queued(&request)?;
        let (board, queue, id) = (self.board.clone(), self.queue.clone(), job.id.clone());
        let outcome = self.run(async move {
            if let Some(bytes) = &upload {
                board.put_upload(&id, bytes).await.map_err(|e| QueueError::Nats(e.to_string()))?;
            }
            let queue_it = async {
                board.put_state(&queued_state(&id)).await.map_err(|e| QueueError::Nats(e.to_string()))?;
                // Subscribed before the job is queued: no event of it can be missed.
                let sub = board.subscribe_events(&id).await.map_err(|e| QueueError::Nats(e.to_string()))?;
                queue.publish(&id, &queued).await?;
                let waiting = queue.occupancy().await.map(|(w, _)| w.saturating_sub(1)).unwrap_or(0);
                Ok::<_, QueueError>((sub, waiting))
            };
            let result = queue_it.await;
            if result.is_err() && upload.is_some() {
                let _ = board.remove_upload(&id).await;
            }
            result
        });
        match outcome {
            Ok(Ok((sub, position))) => {
                lock(&self.pending).insert(job.id.clone(), sub);
                Ok(position)
            }
            Ok(Err(QueueError::Full(n))) => Err(SubmitError::QueueFull(n)),
            Ok(Err(e)) => {
                tracing::warn!(job = %job.id, error = %e, cluster = %self.target, "cannot queue a job");
                Err(SubmitError::Cluster(e.to_string()))
            }
            Err(e) => Err(SubmitError::Cluster(e)),
        }
    }

    fn follow(&self, job: &Arc<Job>) {
        if let Some(sub) = lock(&self.pending).remove(&job.id) {
            self.spawn_relay(job.clone(), sub);
        }
    }

    fn lookup(&self, id: &str) -> Option<Arc<Job>> {
        let manager = self.manager.get()?.upgrade()?;
        let (board, job_id) = (self.board.clone(), id.to_string());
        let found = self.run(async move {
            // Subscribed before the state is read: an event between the two is not lost.
            let sub = board.subscribe_events(&job_id).await?;
            Ok::<_, super::board::BoardError>((board.state(&job_id).await?, sub))
        });
        let (status, sub) = match found {
            Ok(Ok((Some(status), sub))) => (status, sub),
            Ok(Ok((None, _))) => return None,
            Ok(Err(e)) => {
                tracing::warn!(job = %id, error = %e, "cannot look a job up in the cluster");
                return None;
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot look a job up in the cluster");
                return None;
            }
        };
        let (job, new) = manager.adopt(status);
        if new && job.terminal().is_none() {
            self.spawn_relay(job.clone(), sub);
        }
        Some(job)
    }

    fn cancel(&self, job: &Job) {
        let (board, id, waiting) = (self.board.clone(), job.id.clone(), job.state() == JobState::Queued);
        let sent = self.run(async move {
            board.request_cancel(&id).await?;
            if waiting {
                // No worker holds it yet: it ends now, for every tier following it; the worker that takes it
                // later finds it ended and drops it.
                let end = ServerMessage::Cancelled { job_id: id.clone() };
                let state = JobStatus { state: JobState::Cancelled, terminal: Some(end.clone()), ..queued_state(&id) };
                board.put_state(&state).await?;
                board.publish_event(&id, 0, &end).await?;
                board.remove_upload(&id).await?;
            }
            Ok::<_, super::board::BoardError>(())
        });
        if let Err(e) = sent.and_then(|r| r.map_err(|e| e.to_string())) {
            tracing::warn!(job = %job.id, error = %e, "cannot cancel a job in the cluster");
        }
    }

    fn occupancy(&self) -> (u32, u32) {
        let queue = self.queue.clone();
        match self.run(async move { tokio::time::timeout(Duration::from_secs(2), queue.occupancy()).await }) {
            Ok(Ok(Ok(o))) => {
                *lock(&self.occupancy) = o;
                o
            }
            _ => *lock(&self.occupancy),
        }
    }

    fn available(&self) -> bool {
        !self.workers().is_empty()
    }
}
