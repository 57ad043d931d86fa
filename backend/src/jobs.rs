//! The job queue in front of the model: a bounded FIFO, a registry of recent jobs for `subscribe`, and the
//! per-job event stream.
//!
//! Every state change of a job goes through [`Job::publish`], which updates the job's snapshot and broadcasts
//! the message under one lock; [`Job::subscribe`] takes the snapshot and a receiver under the same lock, so a
//! late subscriber neither misses nor duplicates an event. Inference itself runs on the worker thread(s) of
//! [`crate::worker`], never on the async runtime.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sf3d::CancelToken;
use sf3d_shared::{ErrorCode, GenerateParams, JobState, ServerMessage, StageSnapshot};
use tokio::sync::broadcast;

/// Events buffered per subscriber before it starts lagging (stage events are small and few).
const EVENT_BUFFER: usize = 1024;
/// How long finished jobs stay available to `subscribe`.
const RETAIN_FINISHED: Duration = Duration::from_secs(3600);
/// At most this many finished jobs are retained.
const RETAIN_MAX: usize = 512;

/// Where a job's image comes from.
#[derive(Debug, Clone)]
pub enum JobInput {
    /// Uploaded bytes.
    Image {
        /// The file.
        bytes: Vec<u8>,
        /// Its name, if given.
        filename: Option<String>,
    },
    /// The stored input of a gallery entry, encoded again.
    FromMesh {
        /// Gallery id.
        mesh_id: String,
    },
    /// Re-extract a gallery entry from its cached scene codes.
    Regenerate {
        /// Gallery id of the parent.
        parent_id: String,
    },
}

/// What a client asked for.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// The image.
    pub input: JobInput,
    /// The parameters (validated before submission).
    pub params: GenerateParams,
}

#[derive(Debug)]
struct JobInner {
    state: JobState,
    position: Option<u32>,
    stages: Vec<StageSnapshot>,
    terminal: Option<ServerMessage>,
    preview: Option<ServerMessage>,
    finished_at: Option<Instant>,
}

/// One job.
#[derive(Debug)]
pub struct Job {
    /// Its id (ULID).
    pub id: String,
    request: Mutex<Option<JobRequest>>,
    inner: Mutex<JobInner>,
    tx: broadcast::Sender<ServerMessage>,
    /// Cancellation flag checked by the pipeline.
    pub cancel: CancelToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a job lock leaves consistent data (every update is a single assignment), so a
    // poisoned lock is recovered rather than taking the server down.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Job {
    fn new(request: JobRequest) -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            // Random (not the gallery's monotonic ids): a job id is what lets a client follow or cancel a job.
            id: ulid::Ulid::new().to_string(),
            request: Mutex::new(Some(request)),
            inner: Mutex::new(JobInner {
                state: JobState::Queued,
                position: None,
                stages: Vec::new(),
                terminal: None,
                preview: None,
                finished_at: None,
            }),
            tx,
            cancel: CancelToken::new(),
        }
    }

    /// Takes the request (once, by the worker).
    pub fn take_request(&self) -> Option<JobRequest> {
        lock(&self.request).take()
    }

    /// Current state.
    pub fn state(&self) -> JobState {
        lock(&self.inner).state
    }

    /// Updates the snapshot with `msg` and broadcasts it.
    pub fn publish(&self, msg: ServerMessage) {
        let mut inner = lock(&self.inner);
        match &msg {
            ServerMessage::Queue { position, .. } | ServerMessage::Accepted { position, .. } => {
                inner.position = Some(*position)
            }
            ServerMessage::Stage { stage, state, value, max, elapsed_ms, .. } => {
                inner.state = JobState::Running;
                inner.position = None;
                let snap =
                    StageSnapshot { stage: *stage, state: *state, value: *value, max: *max, elapsed_ms: *elapsed_ms };
                match inner.stages.iter_mut().find(|s| s.stage == *stage) {
                    Some(s) => *s = snap,
                    None => inner.stages.push(snap),
                }
            }
            ServerMessage::Preview { .. } => inner.preview = Some(msg.clone()),
            ServerMessage::Done { .. } => {
                inner.state = JobState::Succeeded;
                inner.terminal = Some(msg.clone());
                inner.finished_at = Some(Instant::now());
            }
            ServerMessage::Cancelled { .. } => {
                inner.state = JobState::Cancelled;
                inner.terminal = Some(msg.clone());
                inner.finished_at = Some(Instant::now());
            }
            ServerMessage::Error { .. } => {
                inner.state = JobState::Failed;
                inner.terminal = Some(msg.clone());
                inner.finished_at = Some(Instant::now());
            }
            ServerMessage::Hello { .. } | ServerMessage::Status { .. } => {}
        }
        // No receivers is fine: nobody is watching this job right now.
        let _ = self.tx.send(msg);
    }

    /// Marks the job running (before its first stage event).
    pub fn set_running(&self) {
        let mut inner = lock(&self.inner);
        inner.state = JobState::Running;
        inner.position = None;
    }

    /// A `status` snapshot, the messages that already ended the job (preview, terminal) and a receiver for
    /// everything after — taken atomically.
    pub fn subscribe(&self) -> (ServerMessage, Vec<ServerMessage>, broadcast::Receiver<ServerMessage>) {
        let inner = lock(&self.inner);
        let rx = self.tx.subscribe();
        let status = ServerMessage::Status {
            job_id: self.id.clone(),
            state: inner.state,
            position: inner.position,
            stages: inner.stages.clone(),
        };
        let replay = inner.preview.iter().chain(inner.terminal.iter()).cloned().collect();
        (status, replay, rx)
    }

    /// The message that ended the job, once it ended.
    pub fn terminal(&self) -> Option<ServerMessage> {
        lock(&self.inner).terminal.clone()
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds `capacity` waiting jobs.
    #[error("the queue is full ({0} jobs waiting); retry later")]
    QueueFull(u32),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl SubmitError {
    /// The wire error code.
    pub fn code(self) -> ErrorCode {
        match self {
            SubmitError::QueueFull(_) => ErrorCode::QueueFull,
            SubmitError::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }
}

/// The queue and the registry.
#[derive(Debug)]
pub struct JobManager {
    queue: Mutex<VecDeque<Arc<Job>>>,
    ready: Condvar,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    capacity: u32,
    running: AtomicU32,
    closed: AtomicBool,
}

impl JobManager {
    /// A queue holding at most `capacity` waiting jobs.
    pub fn new(capacity: u32) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            jobs: Mutex::new(HashMap::new()),
            capacity,
            running: AtomicU32::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues a request; the job's `accepted` message is already published when this returns.
    pub fn submit(&self, request: JobRequest, request_id: Option<String>) -> Result<Arc<Job>, SubmitError> {
        self.submit_subscribed(request, request_id).map(|(job, _)| job)
    }

    /// Like [`Self::submit`], with a receiver subscribed before the job is queued: it sees every message of the
    /// job from `accepted` on, whenever the worker picks it up.
    pub fn submit_subscribed(
        &self,
        request: JobRequest,
        request_id: Option<String>,
    ) -> Result<(Arc<Job>, broadcast::Receiver<ServerMessage>), SubmitError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        let job = Arc::new(Job::new(request));
        let rx = job.tx.subscribe();
        let position = {
            let mut q = lock(&self.queue);
            if q.len() as u32 >= self.capacity {
                return Err(SubmitError::QueueFull(q.len() as u32));
            }
            q.push_back(job.clone());
            q.len() as u32 - 1
        };
        self.gc();
        lock(&self.jobs).insert(job.id.clone(), job.clone());
        job.publish(ServerMessage::Accepted { job_id: job.id.clone(), request_id, position });
        self.ready.notify_one();
        Ok((job, rx))
    }

    /// A job by id (queued, running, or finished within the retention window).
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        lock(&self.jobs).get(id).cloned()
    }

    /// Cancels a job: a queued one leaves the queue at once, a running one stops at its next check. Returns
    /// false for an unknown id.
    pub fn cancel(&self, id: &str) -> bool {
        let Some(job) = self.get(id) else { return false };
        let removed = {
            let mut q = lock(&self.queue);
            let before = q.len();
            q.retain(|j| j.id != id);
            before != q.len()
        };
        job.cancel.cancel();
        if removed {
            // The uploaded image goes now, not when the job leaves the registry.
            drop(job.take_request());
            job.publish(ServerMessage::Cancelled { job_id: job.id.clone() });
            self.publish_positions();
        }
        true
    }

    /// Blocks until a job is available (or the queue closes: `None`).
    pub fn next(&self) -> Option<Arc<Job>> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(job) = q.pop_front() {
                drop(q);
                self.running.fetch_add(1, Ordering::SeqCst);
                job.set_running();
                self.publish_positions();
                return Some(job);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The worker finished a job.
    pub fn done(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn publish_positions(&self) {
        let q = lock(&self.queue);
        for (i, job) in q.iter().enumerate() {
            job.publish(ServerMessage::Queue { job_id: job.id.clone(), position: i as u32 });
        }
    }

    /// `(waiting, running, capacity)`.
    pub fn occupancy(&self) -> (u32, u32, u32) {
        (lock(&self.queue).len() as u32, self.running.load(Ordering::SeqCst), self.capacity)
    }

    /// Refuses new jobs, cancels the queued ones and wakes the workers so they can exit; running jobs are
    /// cancelled when `cancel_running` is set (otherwise they finish).
    pub fn close(&self, cancel_running: bool) {
        self.closed.store(true, Ordering::SeqCst);
        let drained: Vec<Arc<Job>> = lock(&self.queue).drain(..).collect();
        for job in drained {
            job.cancel.cancel();
            drop(job.take_request());
            job.publish(ServerMessage::Error {
                job_id: Some(job.id.clone()),
                code: ErrorCode::ShuttingDown,
                message: "the server is shutting down; the job was not started".into(),
                field: None,
            });
        }
        if cancel_running {
            for job in lock(&self.jobs).values() {
                if job.state() == JobState::Running {
                    job.cancel.cancel();
                }
            }
        }
        self.ready.notify_all();
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Forgets finished jobs older than the retention window (or beyond the retention count).
    fn gc(&self) {
        let mut jobs = lock(&self.jobs);
        let mut finished: Vec<(Instant, String)> =
            jobs.values().filter_map(|j| lock(&j.inner).finished_at.map(|t| (t, j.id.clone()))).collect();
        finished.sort();
        let excess = finished.len().saturating_sub(RETAIN_MAX);
        for (i, (t, id)) in finished.iter().enumerate() {
            if i < excess || t.elapsed() > RETAIN_FINISHED {
                jobs.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sf3d_shared::{Stage, StageState};

    fn req() -> JobRequest {
        JobRequest { input: JobInput::Image { bytes: vec![], filename: None }, params: GenerateParams::default() }
    }

    #[test]
    fn queue_is_bounded_and_positions_follow() {
        let m = JobManager::new(2);
        let a = m.submit(req(), None).unwrap();
        let b = m.submit(req(), Some("r".into())).unwrap();
        assert_eq!(m.submit(req(), None).unwrap_err(), SubmitError::QueueFull(2));
        let (_, _, mut rx) = b.subscribe();
        let got = m.next().unwrap();
        assert_eq!(got.id, a.id);
        assert_eq!(rx.try_recv().unwrap(), ServerMessage::Queue { job_id: b.id.clone(), position: 0 });
        assert_eq!(m.occupancy(), (1, 1, 2));
    }

    #[test]
    fn cancel_removes_a_queued_job_at_once() {
        let m = JobManager::new(4);
        let a = m.submit(req(), None).unwrap();
        let b = m.submit(req(), None).unwrap();
        assert!(m.cancel(&a.id));
        assert_eq!(a.state(), JobState::Cancelled);
        assert!(a.take_request().is_none(), "a cancelled job keeps no image");
        assert_eq!(m.next().unwrap().id, b.id);
        assert!(!m.cancel("nope"));
    }

    #[test]
    fn late_subscriber_gets_a_snapshot_then_live_events() {
        let m = JobManager::new(4);
        let job = m.submit(req(), None).unwrap();
        let job = {
            let j = m.next().unwrap();
            assert_eq!(j.id, job.id);
            j
        };
        let stage = |state| ServerMessage::Stage {
            job_id: job.id.clone(),
            stage: Stage::Decode,
            state,
            value: None,
            max: None,
            elapsed_ms: 1,
            label: None,
        };
        job.publish(stage(StageState::Started));
        job.publish(stage(StageState::Finished));
        let (status, replay, mut rx) = job.subscribe();
        match status {
            ServerMessage::Status { state, stages, .. } => {
                assert_eq!(state, JobState::Running);
                assert_eq!(stages.len(), 1);
                assert_eq!(stages[0].state, StageState::Finished);
            }
            other => panic!("{other:?}"),
        }
        assert!(replay.is_empty());
        job.publish(ServerMessage::Cancelled { job_id: job.id.clone() });
        assert!(matches!(rx.try_recv().unwrap(), ServerMessage::Cancelled { .. }));
        let (_, replay, _) = job.subscribe();
        assert_eq!(replay.len(), 1);
    }

    #[test]
    fn close_refuses_and_drains() {
        let m = JobManager::new(4);
        let a = m.submit(req(), None).unwrap();
        m.close(true);
        assert_eq!(a.state(), JobState::Failed);
        assert_eq!(m.submit(req(), None).unwrap_err(), SubmitError::ShuttingDown);
        assert!(m.next().is_none());
    }
}
