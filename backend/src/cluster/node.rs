//! A worker process of a cluster (`sf3d worker`): one inference worker per `--device` entry, as in `sf3d serve`,
//! fed from the cluster's queue instead of a local one. It takes a job when one of its workers is free, runs it
//! through the same [`crate::worker`] code, and reports every stage event and the end on the job's subject and
//! board ([`JobBoard`]); the result goes to the shared gallery. While a job runs the queue hears progress, so it
//! is not handed to another worker; if this process dies, the queue hands the job to another worker after the
//! ack wait, and that run finds a result already stored instead of storing a second one. A heartbeat tells the
//! web tiers which devices this process has and what they do. It needs no inbound port and no shared disk.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures_util::StreamExt;
use sf3d_shared::{ErrorCode, ServerMessage, StageState};
use tokio::sync::{Semaphore, broadcast};

use super::ClusterName;
use super::board::{JobBoard, cancelled_job};
use super::queue::{Delivery, JobQueue, QueueError};
use super::wire::{Heartbeat, QueuedInput, QueuedJob};
use crate::jobs::{Job, JobInput, JobManager, JobRequest};
use crate::worker::{self, Engine, WorkerOptions, WorkerSlot};

/// Capacity of the queue when a worker creates it (a web tier sets its own `--max-queue` when it starts).
pub const DEFAULT_CAPACITY: u32 = 16;
/// Longest one pull waits for a job before it looks again.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// How often each worker process announces itself.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Longest wait for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often running jobs are checked against their deadline.
const DEADLINE_CHECK: Duration = Duration::from_millis(200);

/// Settings of a worker process.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This process's name in the cluster (heartbeats, logs).
    pub name: String,
    /// Ack wait of the queue, if this process creates it.
    pub ack_wait: Duration,
    /// The workers' settings (deadline, test hooks).
    pub workers: WorkerOptions,
    /// How long running jobs may take to finish when the process stops, before they are handed back.
    pub shutdown_grace: Duration,
}

/// The name a worker process takes without `--name`: host name and process id.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Runs a worker process on `engine` in `cluster` (NATS at `url`) until `shutdown` resolves; then it takes no
/// new job, lets running ones finish for the grace period and hands the rest back to the queue.
pub async fn run(
    url: &str,
    cluster: &ClusterName,
    engine: Engine,
    options: NodeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let client = super::connect(url, CONNECT_TIMEOUT).await?;
    let queue =
        JobQueue::open(client.clone(), cluster, DEFAULT_CAPACITY, options.ack_wait).await.map_err(|e| e.to_string())?;
    let board = JobBoard::open(client, cluster).await.map_err(|e| e.to_string())?;
    let engine = Arc::new(engine);
    let slots: Vec<Arc<WorkerSlot>> =
        engine.pipelines().iter().enumerate().map(|(i, p)| Arc::new(WorkerSlot::new(i as u32, p.clone()))).collect();
    let n = slots.len();
    let manager = Arc::new(JobManager::new(n as u32).with_metrics(engine.metrics.clone()));
    manager.set_workers(n as u32);
    let threads = slots
        .iter()
        .map(|s| worker::spawn_worker(manager.clone(), engine.clone(), s.clone(), options.workers.clone()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("cannot start the workers: {e}"))?;
    let stop_watchdog = Arc::new(AtomicBool::new(false));
    let watchdog = worker::watch_deadlines(
        manager.clone(),
        slots.clone(),
        options.workers.job_timeout,
        DEADLINE_CHECK,
        stop_watchdog.clone(),
    )
    .map_err(|e| format!("cannot start the deadline watch: {e}"))?;

    let mut cancels = board.subscribe_cancels().await.map_err(|e| e.to_string())?;
    let cancel_manager = manager.clone();
    let listener = tokio::spawn(async move {
        while let Some(msg) = cancels.next().await {
            // Only a job of this process is cancelled; other ids are other workers'.
            cancel_manager.cancel(cancelled_job(msg.subject.as_str()));
        }
    });
    let beat = tokio::spawn(heartbeats(board.clone(), engine.clone(), slots.clone(), options.name.clone()));
    tracing::info!(node = %options.name, workers = n, ack_wait = ?queue.ack_wait(), "worker process ready");

    let free = Arc::new(Semaphore::new(n));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_error: Option<String> = None;
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = free.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let next = tokio::select! {
            () = &mut shutdown => break,
            n = queue.next::<QueuedJob>(PULL_WAIT) => n,
        };
        match next {
            Ok(Some(delivery)) => {
                last_error = None;
                let (manager, board, ack_wait) = (manager.clone(), board.clone(), queue.ack_wait());
                tokio::spawn(async move {
                    take(delivery, &manager, &board, ack_wait).await;
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(QueueError::BadMessage(why)) => tracing::warn!(%why, "dropped a queued message that is no job"),
            Err(e) => {
                // NATS is away (a restart): the client reconnects by itself; say so once per outage.
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "cannot pull jobs; retrying");
                    last_error = Some(text);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    tracing::info!("stopping: no new jobs; running ones get the grace period");
    manager.close(false);
    let deadline = tokio::time::Instant::now() + options.shutdown_grace;
    while manager.occupancy().1 > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if manager.occupancy().1 > 0 {
        tracing::warn!("handing running jobs back to the queue after the grace period");
        manager.close(true);
    }
    // Every job's forwarder ends with its job: wait for them to report (or hand back) before leaving.
    let _ = tokio::time::timeout(options.shutdown_grace, free.acquire_many(n as u32)).await;
    listener.abort();
    beat.abort();
    stop_watchdog.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
        let _ = watchdog.join();
    })
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!("worker process stopped");
    Ok(())
}

/// Announces this process every [`HEARTBEAT`].
async fn heartbeats(board: JobBoard, engine: Arc<Engine>, slots: Vec<Arc<WorkerSlot>>, node: String) {
    let Some(first) = engine.pipeline() else { return };
    let (model, background_remover) = (first.model().clone(), first.background_remover().name().to_string());
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let beat = Heartbeat {
            node: node.clone(),
            model: model.clone(),
            background_remover: background_remover.clone(),
            workers: slots.iter().map(|s| s.info()).collect(),
            interval_ms: HEARTBEAT.as_millis() as u64,
        };
        if let Err(e) = board.publish_heartbeat(&beat).await {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
    }
}

/// Errors no other run can fix: the job leaves the queue for good.
fn permanent(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::BadRequest
            | ErrorCode::InvalidParams
            | ErrorCode::UnsupportedImage
            | ErrorCode::ImageTooLarge
            | ErrorCode::PayloadTooLarge
            | ErrorCode::NoForeground
            | ErrorCode::NoSurface
            | ErrorCode::NotFound
    )
}

/// Runs one delivered job on this process's workers and reports it until it ends.
async fn take(delivery: Delivery<QueuedJob>, manager: &Arc<JobManager>, board: &JobBoard, ack_wait: Duration) {
    let id = delivery.job_id.clone();
    match board.state(&id).await {
        Ok(Some(s)) if s.terminal.is_some() => {
            // Ended while it waited (a client cancelled it): nothing to run.
            let _ = delivery.finished().await;
            return;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(job = %id, error = %e, "cannot read the job's state; running it"),
    }
    let QueuedJob { params, input } = delivery.job.clone();
    let input = match input {
        QueuedInput::Upload { filename } => match board.upload(&id).await {
            Ok(Some(bytes)) => JobInput::Image { bytes, filename },
            Ok(None) => {
                let end = ServerMessage::Error {
                    job_id: Some(id.clone()),
                    code: ErrorCode::Internal,
                    message: "the job's image is no longer stored in the cluster".into(),
                    field: None,
                    retry_after: None,
                };
                report_end(board, &id, &end, None).await;
                let _ = delivery.failed_for_good().await;
                return;
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot read the job's image; handing it back");
                let _ = delivery.hand_back().await;
                return;
            }
        },
        QueuedInput::FromMesh { mesh_id } => JobInput::FromMesh { mesh_id },
        QueuedInput::Regenerate { parent_id } => JobInput::Regenerate { parent_id },
    };
    let attempts_before = delivery.attempt.saturating_sub(1);
    let (job, mut rx) = match manager.submit_delivered(&id, JobRequest { input, params }, attempts_before) {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "cannot run the job here; handing it back");
            let _ = delivery.hand_back().await;
            return;
        }
    };
    tracing::info!(job = %id, attempt = delivery.attempt, "job taken");
    let mut progress = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(100)));
    let end = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(m) => {
                    if let Some(end) = forward(board, &job, m).await {
                        break Some(end);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break job.terminal(),
            },
            _ = progress.tick() => {
                if let Err(e) = delivery.in_progress().await {
                    tracing::debug!(job = %id, error = %e, "progress not sent");
                }
            }
        }
    };
    let outcome = match &end {
        // This process stops: another worker runs the job (it was not reported as ended).
        Some(ServerMessage::Error { code: ErrorCode::ShuttingDown, .. }) | None => delivery.hand_back().await,
        Some(ServerMessage::Error { code, .. }) if permanent(*code) => delivery.failed_for_good().await,
        Some(_) => delivery.finished().await,
    };
    if let Err(e) = outcome {
        tracing::warn!(job = %id, error = %e, "cannot acknowledge the job");
    }
    if !matches!(&end, Some(ServerMessage::Error { code: ErrorCode::ShuttingDown, .. }) | None)
        && let Err(e) = board.remove_upload(&id).await
    {
        tracing::warn!(job = %id, error = %e, "cannot remove the job's image");
    }
}

/// Reports one message of a running job to the cluster; returns it when it ended the job. The messages of the
/// local queue (`accepted`, positions) mean nothing to the cluster's clients and stay here, and so does the end
/// a stop of this process gives a job (the job runs again elsewhere).
async fn forward(board: &JobBoard, job: &Job, msg: ServerMessage) -> Option<ServerMessage> {
    let id = job.id.as_str();
    match &msg {
        ServerMessage::Accepted { .. }
        | ServerMessage::Queue { .. }
        | ServerMessage::Hello { .. }
        | ServerMessage::Status { .. } => None,
        ServerMessage::Error { code: ErrorCode::ShuttingDown, .. } => Some(msg),
        ServerMessage::Done { .. } | ServerMessage::Error { .. } | ServerMessage::Cancelled { .. } => {
            report_end(board, id, &msg, Some(job.status())).await;
            Some(msg)
        }
        ServerMessage::Stage { state, .. } => {
            // Progress ticks are live only; a stage's start and end are recorded for tiers that look it up.
            if *state != StageState::Progress
                && let Err(e) = board.put_state(&job.status()).await
            {
                tracing::debug!(job = %id, error = %e, "job state not recorded");
            }
            publish(board, id, job.attempts(), &msg).await;
            None
        }
        ServerMessage::Preview { .. } => {
            publish(board, id, job.attempts(), &msg).await;
            None
        }
    }
}

async fn publish(board: &JobBoard, id: &str, attempts: u32, msg: &ServerMessage) {
    if let Err(e) = board.publish_event(id, attempts, msg).await {
        tracing::debug!(job = %id, error = %e, "event not published");
    }
}

/// Records and publishes the end of a job (the state first, so a tier that looks it up after missing the event
/// finds it).
async fn report_end(board: &JobBoard, id: &str, end: &ServerMessage, status: Option<sf3d_shared::api::JobStatus>) {
    let mut state = status.unwrap_or_else(|| sf3d_shared::api::JobStatus {
        job_id: id.to_string(),
        state: sf3d_shared::JobState::Failed,
        position: None,
        attempts: 0,
        stages: vec![],
        terminal: None,
    });
    if state.terminal.is_none() {
        state.terminal = Some(end.clone());
    }
    for attempt in 0..3 {
        match board.put_state(&state).await {
            Ok(()) => break,
            Err(e) if attempt == 2 => tracing::warn!(job = %id, error = %e, "cannot record the end of a job"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    publish(board, id, state.attempts, end).await;
}
