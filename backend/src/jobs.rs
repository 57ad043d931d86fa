//! The job queue in front of the workers: a bounded FIFO, a registry of recent jobs for `subscribe`, the
//! per-job event stream, and (in a server) the [`Journal`] that makes accepted jobs outlive the process.
//!
//! Every state change of a job goes through [`Job::publish`], which updates the job's snapshot and broadcasts
//! the message under one lock; [`Job::subscribe`] takes the snapshot and a receiver under the same lock, so a
//! late subscriber neither misses nor duplicates an event. The first terminal message (`done`, `error`,
//! `cancelled`) ends a job for good: whatever a late or stuck worker publishes after it is dropped. Inference
//! runs on the worker threads of [`crate::worker`], never on the async runtime.
//!
//! With a journal, a job is journaled (its image written to disk) before `accepted` is published, its image is
//! read from disk when it runs and removed when it ends, and [`JobManager::recover`] queues the jobs a previous
//! process left open again at start-up.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sf3d::CancelToken;
use sf3d_shared::api::JobStatus;
use sf3d_shared::{ErrorCode, GenerateParams, JobState, ServerMessage, StageSnapshot};
use tokio::sync::broadcast;

use crate::journal::{JobRecord, Journal, MAX_ATTEMPTS};
use crate::metrics::Metrics;

/// Events buffered per subscriber before it starts lagging (stage events are small and few).
const EVENT_BUFFER: usize = 1024;
/// How long finished jobs stay in memory (the journal answers for older ones).
const RETAIN_FINISHED: Duration = Duration::from_secs(3600);
/// At most this many finished jobs stay in memory.
const RETAIN_MAX: usize = 512;

/// Where a job's image comes from.
#[derive(Debug, Clone)]
pub enum JobInput {
    /// Uploaded bytes, in memory (until the journal stores them).
    Image {
        /// The file.
        bytes: Vec<u8>,
        /// Its name, if given.
        filename: Option<String>,
    },
    /// An upload stored by the journal.
    Upload {
        /// `DATA/jobs/{id}/input`.
        path: PathBuf,
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
    attempts: u32,
    started_at: Option<Instant>,
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
    /// Set when a client (not a deadline or the shutdown) cancelled it.
    cancelled_by_client: AtomicBool,
}

/// Locks `m`, recovering a poisoned lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a job lock leaves consistent data (every update is a single assignment), so a
    // poisoned lock is recovered rather than taking the server down.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state a terminal message puts a job in.
fn terminal_state(msg: &ServerMessage) -> Option<JobState> {
    match msg {
        ServerMessage::Done { .. } => Some(JobState::Succeeded),
        ServerMessage::Cancelled { .. } => Some(JobState::Cancelled),
        ServerMessage::Error { .. } => Some(JobState::Failed),
        _ => None,
    }
}

impl Job {
    fn new(id: String, request: Option<JobRequest>, attempts: u32) -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            id,
            request: Mutex::new(request),
            inner: Mutex::new(JobInner {
                state: JobState::Queued,
                position: None,
                stages: Vec::new(),
                terminal: None,
                preview: None,
                finished_at: None,
                attempts,
                started_at: None,
            }),
            tx,
            cancel: CancelToken::new(),
            cancelled_by_client: AtomicBool::new(false),
        }
    }

    /// A job known only from the journal (it ended, or its process did).
    fn from_record(id: &str, rec: JobRecord) -> Self {
        let job = Self::new(id.to_string(), None, rec.attempts);
        {
            let mut inner = lock(&job.inner);
            inner.state = rec.state;
            inner.stages = rec.stages;
            inner.finished_at = rec.terminal.as_ref().map(|_| Instant::now());
            inner.terminal = rec.terminal;
        }
        job
    }

    /// The request (a copy: an upload is a path once journaled). `None` once the job ended.
    pub fn request(&self) -> Option<JobRequest> {
        lock(&self.request).clone()
    }

    /// Current state.
    pub fn state(&self) -> JobState {
        lock(&self.inner).state
    }

    /// Runs started (this process's and, for a resumed job, the previous ones').
    pub fn attempts(&self) -> u32 {
        lock(&self.inner).attempts
    }

    /// When the current run started.
    pub fn started_at(&self) -> Option<Instant> {
        lock(&self.inner).started_at
    }

    /// Whether a client cancelled it.
    pub fn cancelled_by_client(&self) -> bool {
        self.cancelled_by_client.load(Ordering::SeqCst)
    }

    /// Updates the snapshot with `msg` and broadcasts it; returns false (and sends nothing) once the job has
    /// ended.
    pub fn publish(&self, msg: ServerMessage) -> bool {
        self.publish_and(msg, || {})
    }

    /// [`Self::publish`], running `before_send` once the snapshot holds `msg` and before anyone can see it (the
    /// snapshot's lock is held), and only when `msg` is published.
    fn publish_and(&self, msg: ServerMessage, before_send: impl FnOnce()) -> bool {
        let mut inner = lock(&self.inner);
        if inner.terminal.is_some() {
            return false;
        }
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
            ServerMessage::Done { .. } | ServerMessage::Cancelled { .. } | ServerMessage::Error { .. } => {
                inner.state = terminal_state(&msg).unwrap_or(JobState::Failed);
                inner.terminal = Some(msg.clone());
                inner.finished_at = Some(Instant::now());
            }
            ServerMessage::Hello { .. } | ServerMessage::Status { .. } => {}
        }
        before_send();
        // No receivers is fine: nobody is watching this job right now.
        let _ = self.tx.send(msg);
        true
    }

    /// Marks the job running (before its first stage event).
    fn set_running(&self, attempts: u32) {
        let mut inner = lock(&self.inner);
        if inner.terminal.is_some() {
            return;
        }
        inner.state = JobState::Running;
        inner.position = None;
        inner.attempts = attempts;
        inner.started_at = Some(Instant::now());
    }

    /// Puts a job whose run was cut short back to waiting (its stages start over).
    fn set_queued(&self) {
        let mut inner = lock(&self.inner);
        inner.state = JobState::Queued;
        inner.stages.clear();
        inner.started_at = None;
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

    /// The job's state for `GET /api/jobs/{id}`.
    pub fn status(&self) -> JobStatus {
        let inner = lock(&self.inner);
        JobStatus {
            job_id: self.id.clone(),
            state: inner.state,
            position: inner.position,
            attempts: inner.attempts,
            stages: inner.stages.clone(),
            terminal: inner.terminal.clone(),
        }
    }

    /// The message that ended the job, once it ended.
    pub fn terminal(&self) -> Option<ServerMessage> {
        lock(&self.inner).terminal.clone()
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds `capacity` waiting jobs.
    #[error("the queue is full ({0} jobs waiting); retry later")]
    QueueFull(u32),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Every worker is dead (in a cluster: no worker process was heard from).
    #[error(
        "no inference worker is available: every worker of this server has failed, or no worker of its cluster is running"
    )]
    Unavailable,
    /// The journal could not record the job (the detail goes to the log only).
    #[error("the job could not be recorded: {0}")]
    Journal(String),
    /// The cluster's queue (NATS) did not take the job.
    #[error("the cluster's job queue cannot take the job now ({0}); retry later")]
    Cluster(String),
}

impl SubmitError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SubmitError::QueueFull(_) => ErrorCode::QueueFull,
            SubmitError::ShuttingDown => ErrorCode::ShuttingDown,
            SubmitError::Unavailable | SubmitError::Cluster(_) => ErrorCode::Unavailable,
            SubmitError::Journal(_) => ErrorCode::Internal,
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
    journal: Option<Arc<Journal>>,
    /// Workers started and still alive (`None` before [`Self::set_workers`]: the queue alone, in unit tests).
    workers: Mutex<Option<(u32, u32)>>,
    /// Where ended jobs are counted (the server's registry; a private one without [`Self::with_metrics`]).
    metrics: Metrics,
    /// Where jobs go when this process runs none itself (a web tier of a cluster); `None`: the local queue.
    remote: Option<Arc<dyn Dispatch>>,
}

/// Where a web tier hands its jobs: the cluster's queue ([`crate::cluster::tier::WebTier`]). The job stays in
/// this process's registry, so every WebSocket and REST path follows it as it follows a local job; the dispatcher
/// feeds the events the cluster reports into it ([`JobManager::relay`]).
pub trait Dispatch: Send + Sync + std::fmt::Debug {
    /// Stores the job's input and queues it; returns its position in the queue. Events that arrive before
    /// [`Self::follow`] wait for it.
    fn dispatch(&self, job: &Arc<Job>, request: JobRequest) -> Result<u32, SubmitError>;
    /// Starts feeding the events of a dispatched job into it (called once `accepted` is out).
    fn follow(&self, job: &Arc<Job>);
    /// A job this process does not know: its state as the cluster last reported it, followed from now on.
    fn lookup(&self, id: &str) -> Option<Arc<Job>>;
    /// Asks the cluster to cancel the job (a worker running it stops; a waiting one never starts).
    fn cancel(&self, job: &Job);
    /// `(waiting, running)` across the cluster.
    fn occupancy(&self) -> (u32, u32);
    /// Whether any worker was heard from recently (jobs are refused with `unavailable` otherwise).
    fn available(&self) -> bool;
}

impl JobManager {
    /// A queue holding at most `capacity` waiting jobs, in memory only.
    pub fn new(capacity: u32) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            jobs: Mutex::new(HashMap::new()),
            capacity,
            running: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            journal: None,
            workers: Mutex::new(None),
            metrics: Metrics::new(),
            remote: None,
        }
    }

    /// A queue whose jobs run elsewhere: `remote` queues them and reports their events.
    pub fn with_remote(capacity: u32, remote: Arc<dyn Dispatch>) -> Self {
        Self { remote: Some(remote), ..Self::new(capacity) }
    }

    /// The same queue, counting ended jobs in `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// A queue whose jobs are journaled.
    pub fn with_journal(capacity: u32, journal: Arc<Journal>) -> Self {
        Self { journal: Some(journal), ..Self::new(capacity) }
    }

    /// The journal, if jobs are durable.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// `n` workers take jobs from now on.
    pub fn set_workers(&self, n: u32) {
        *lock(&self.workers) = Some((n, n));
    }

    /// A worker died; returns how many are still alive.
    pub fn worker_died(&self) -> u32 {
        // The queue lock first (the order `submit` and `requeue` use), so no job is pushed between the count
        // reaching zero and the drain.
        let mut q = lock(&self.queue);
        let alive = {
            let mut w = lock(&self.workers);
            let (total, alive) = w.unwrap_or((1, 1));
            *w = Some((total, alive.saturating_sub(1)));
            alive.saturating_sub(1)
        };
        if alive == 0 {
            // Nobody will take the waiting jobs: end them now rather than let them wait forever.
            let drained: Vec<Arc<Job>> = q.drain(..).collect();
            drop(q);
            for job in drained {
                self.finish(&job, unavailable_message(&job.id));
            }
        }
        alive
    }

    /// Whether every started worker is dead.
    pub fn all_workers_dead(&self) -> bool {
        match &self.remote {
            Some(r) => !r.available(),
            None => matches!(*lock(&self.workers), Some((_, 0))),
        }
    }

    /// Queues a request; the job's `accepted` message is already published when this returns.
    pub fn submit(&self, request: JobRequest, request_id: Option<String>) -> Result<Arc<Job>, SubmitError> {
        self.submit_subscribed(request, request_id).map(|(job, _)| job)
    }

    /// Like [`Self::submit`], with a receiver subscribed before the job is queued: it sees every message of the
    /// job from `accepted` on, whenever a worker picks it up. With a journal, the job (and its image) is on
    /// disk before `accepted` is published.
    pub fn submit_subscribed(
        &self,
        request: JobRequest,
        request_id: Option<String>,
    ) -> Result<(Arc<Job>, broadcast::Receiver<ServerMessage>), SubmitError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        if self.all_workers_dead() {
            return Err(SubmitError::Unavailable);
        }
        if let Some(remote) = &self.remote {
            return self.submit_remote(remote.as_ref(), request, request_id);
        }
        let full = |n: usize| n as u32 >= self.capacity;
        if full(lock(&self.queue).len()) {
            return Err(SubmitError::QueueFull(self.capacity));
        }
        // Random (not the gallery's monotonic ids): a job id is what lets a client follow or cancel a job.
        let id = ulid::Ulid::new().to_string();
        let journal_error = |e: crate::journal::JournalError| {
            tracing::error!(job = %id, error = %e, "cannot journal a new job");
            SubmitError::Journal("the server could not store it; see its log".into())
        };
        // The image is written outside the queue lock (it may be megabytes); the row is inserted under it, so
        // the journal's order is the queue's.
        let request = match &self.journal {
            Some(j) => JobRequest { input: j.store_input(&id, request.input).map_err(journal_error)?, ..request },
            None => request,
        };
        let job = Arc::new(Job::new(id.clone(), Some(request), 0));
        let rx = job.tx.subscribe();
        self.gc();
        {
            // Everything from here to the push happens under the queue lock: a worker cannot take the job before
            // `accepted` is out, and a close or the last worker's death (which drain the queue under this lock)
            // cannot slip between the checks and the push.
            let mut q = lock(&self.queue);
            let refused = if self.closed.load(Ordering::SeqCst) {
                Some(SubmitError::ShuttingDown)
            } else if self.all_workers_dead() {
                Some(SubmitError::Unavailable)
            } else if full(q.len()) {
                Some(SubmitError::QueueFull(q.len() as u32))
            } else if let Some(j) = &self.journal {
                let req = job.request().ok_or_else(|| SubmitError::Journal("request vanished".into()))?;
                j.insert(&id, &req, request_id.as_deref()).err().map(journal_error)
            } else {
                None
            };
            if let Some(e) = refused {
                drop(q);
                if let Some(JobRequest { input: JobInput::Upload { path, .. }, .. }) = job.request()
                    && let Some(dir) = path.parent()
                {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(e);
            }
            lock(&self.jobs).insert(job.id.clone(), job.clone());
            let position = q.len() as u32;
            job.publish(ServerMessage::Accepted { job_id: job.id.clone(), request_id, position });
            q.push_back(job.clone());
        }
        self.ready.notify_one();
        Ok((job, rx))
    }

    /// [`Self::submit_subscribed`] of a web tier: the cluster's queue takes the job (and answers when it is full).
    fn submit_remote(
        &self,
        remote: &dyn Dispatch,
        request: JobRequest,
        request_id: Option<String>,
    ) -> Result<(Arc<Job>, broadcast::Receiver<ServerMessage>), SubmitError> {
        let job = Arc::new(Job::new(ulid::Ulid::new().to_string(), None, 0));
        let rx = job.tx.subscribe();
        self.gc();
        let position = remote.dispatch(&job, request)?;
        lock(&self.jobs).insert(job.id.clone(), job.clone());
        job.publish(ServerMessage::Accepted { job_id: job.id.clone(), request_id, position });
        remote.follow(&job);
        Ok((job, rx))
    }

    /// Queues a job a worker process took from the cluster's queue under its cluster id; `attempts` runs of it
    /// started before (on workers that died). The receiver sees every message of the job from then on.
    pub fn submit_delivered(
        &self,
        id: &str,
        request: JobRequest,
        attempts: u32,
    ) -> Result<(Arc<Job>, broadcast::Receiver<ServerMessage>), SubmitError> {
        let job = Arc::new(Job::new(id.to_string(), Some(request), attempts));
        let rx = job.tx.subscribe();
        self.gc();
        {
            let mut q = lock(&self.queue);
            if self.closed.load(Ordering::SeqCst) {
                return Err(SubmitError::ShuttingDown);
            }
            if self.all_workers_dead() {
                return Err(SubmitError::Unavailable);
            }
            lock(&self.jobs).insert(job.id.clone(), job.clone());
            q.push_back(job.clone());
        }
        self.ready.notify_one();
        Ok((job, rx))
    }

    /// A job known from the cluster's report of it (`state`, stages, end), registered here so that clients of
    /// this process can follow it; an id registered already keeps its job. The flag says whether the job is new
    /// here (and so needs its events fed in).
    pub fn adopt(&self, status: JobStatus) -> (Arc<Job>, bool) {
        let job = Job::new(status.job_id.clone(), None, status.attempts);
        {
            let mut inner = lock(&job.inner);
            inner.state = status.state;
            inner.position = status.position;
            inner.stages = status.stages;
            inner.finished_at = status.terminal.as_ref().map(|_| Instant::now());
            inner.terminal = status.terminal;
        }
        self.gc();
        let mut jobs = lock(&self.jobs);
        match jobs.get(&job.id) {
            Some(known) => (known.clone(), false),
            None => {
                let job = Arc::new(job);
                jobs.insert(job.id.clone(), job.clone());
                (job, true)
            }
        }
    }

    /// Feeds one event of run `attempts` the cluster reported into a job of this process: an end goes through
    /// [`Self::finish`].
    pub fn relay(&self, job: &Job, attempts: u32, msg: ServerMessage) {
        {
            let mut inner = lock(&job.inner);
            inner.attempts = inner.attempts.max(attempts);
        }
        if terminal_state(&msg).is_some() {
            self.finish(job, msg);
        } else {
            job.publish(msg);
        }
    }

    /// Queues again the jobs a previous process left open, in their old order (called once, before the
    /// workers start). A job that was running has been cut short: it runs again unless it already started
    /// [`MAX_ATTEMPTS`] times, in which case it ends with `interrupted`. Returns how many were queued.
    pub fn recover(&self) -> usize {
        let Some(journal) = &self.journal else { return 0 };
        let open = match journal.open_jobs() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the job journal; earlier jobs are not resumed");
                return 0;
            }
        };
        let mut queued = 0;
        for o in open {
            let job = Arc::new(Job::new(o.id.clone(), Some(o.request), o.attempts));
            lock(&self.jobs).insert(job.id.clone(), job.clone());
            if o.was_running && o.attempts >= MAX_ATTEMPTS {
                tracing::warn!(job = %o.id, attempts = o.attempts, "a job was interrupted on every attempt; ending it");
                self.finish(&job, interrupted_message(&job.id, o.attempts));
                continue;
            }
            if o.was_running {
                tracing::warn!(job = %o.id, attempt = o.attempts + 1, "resuming a job the previous process was running");
            }
            let mut q = lock(&self.queue);
            job.publish(ServerMessage::Queue { job_id: job.id.clone(), position: q.len() as u32 });
            q.push_back(job);
            queued += 1;
        }
        if queued > 0 {
            tracing::info!(jobs = queued, "resumed jobs from the journal");
            self.ready.notify_all();
        }
        queued
    }

    /// A job by id: queued, running, finished within the memory window, or — with a journal — any job of the
    /// journal's retention window, across restarts.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        if let Some(job) = lock(&self.jobs).get(id).cloned() {
            return Some(job);
        }
        if !crate::gallery::is_valid_id(id) {
            return None;
        }
        if let Some(remote) = &self.remote {
            return remote.lookup(id);
        }
        let record = match self.journal.as_ref()?.lookup(id) {
            Ok(r) => r?,
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot read a job from the journal");
                return None;
            }
        };
        // An open row this process does not hold was not resumable (recover ended or skipped it): nothing to
        // follow.
        record.terminal.as_ref()?;
        self.gc();
        let job = Arc::new(Job::from_record(id, record));
        Some(lock(&self.jobs).entry(id.to_string()).or_insert(job).clone())
    }

    /// Cancels a job: a queued one leaves the queue at once, a running one stops at its next check. Returns
    /// false for an unknown id.
    pub fn cancel(&self, id: &str) -> bool {
        let Some(job) = self.get(id) else { return false };
        if let Some(remote) = &self.remote {
            if job.terminal().is_none() {
                job.cancelled_by_client.store(true, Ordering::SeqCst);
                remote.cancel(&job);
            }
            return true;
        }
        let removed = {
            let mut q = lock(&self.queue);
            let before = q.len();
            q.retain(|j| j.id != id);
            before != q.len()
        };
        if job.terminal().is_none() {
            job.cancelled_by_client.store(true, Ordering::SeqCst);
        }
        job.cancel.cancel();
        if removed {
            self.finish(&job, ServerMessage::Cancelled { job_id: job.id.clone() });
            self.publish_positions();
        } else if self.is_closed()
            && let Some(j) = &self.journal
            && matches!(job.terminal(), Some(ServerMessage::Error { code: ErrorCode::ShuttingDown, .. }))
        {
            // Ended for this process by the shutdown but still open in the journal: the next start must not run
            // what the client has just cancelled.
            let msg = ServerMessage::Cancelled { job_id: job.id.clone() };
            if let Err(e) = j.finished(&job.id, JobState::Cancelled, &[], &msg) {
                tracing::warn!(job = %job.id, error = %e, "cannot journal a cancel during the shutdown");
            }
        }
        true
    }

    /// Blocks until a job is available (or the queue closes: `None`).
    pub fn next(&self) -> Option<Arc<Job>> {
        let mut q = lock(&self.queue);
        loop {
            if let Some(job) = q.pop_front() {
                if job.terminal().is_some() {
                    // Ended while it waited (a deadline or a shutdown raced its return to the queue).
                    continue;
                }
                drop(q);
                self.running.fetch_add(1, Ordering::SeqCst);
                let attempts = match &self.journal {
                    Some(j) => j.started(&job.id).unwrap_or_else(|e| {
                        tracing::warn!(job = %job.id, error = %e, "cannot journal a job's start");
                        job.attempts() + 1
                    }),
                    None => job.attempts() + 1,
                };
                job.set_running(attempts);
                self.publish_positions();
                return Some(job);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Ends a job with `msg` (`done`, `error` or `cancelled`) for good: published, journaled, its image
    /// released. Returns false when it had already ended (the first end wins).
    pub fn finish(&self, job: &Job, msg: ServerMessage) -> bool {
        let Some(state) = terminal_state(&msg) else { return false };
        // Counted before the end is visible: a client that has its answer finds it in /metrics.
        if !job.publish_and(msg.clone(), || self.metrics.job_ended(&msg)) {
            return false;
        }
        drop(lock(&job.request).take());
        if let Some(j) = &self.journal {
            let stages = lock(&job.inner).stages.clone();
            if let Err(e) = j.finished(&job.id, state, &stages, &msg) {
                tracing::error!(job = %job.id, error = %e, "cannot journal the end of a job");
            }
        }
        true
    }

    /// A running job was cancelled because the server stops: its clients hear so, and with a journal it stays
    /// open for the next start.
    pub fn stopped_by_shutdown(&self, job: &Job) {
        self.end_for_now(job, shutdown_message(&job.id, self.journal.is_some()));
    }

    /// Ends a job for the clients of this process only, leaving it open in the journal (the server stops; the
    /// next start runs it). Without a journal this is [`Self::finish`].
    fn end_for_now(&self, job: &Job, msg: ServerMessage) {
        if self.journal.is_some() {
            job.publish(msg);
        } else {
            self.finish(job, msg);
        }
    }

    /// The run of `job` was cut short by its worker's death: the job waits again at the head of the queue, or
    /// ends with `interrupted` once it has started [`MAX_ATTEMPTS`] times.
    pub fn requeue(&self, job: Arc<Job>) {
        let attempts = job.attempts();
        if job.terminal().is_some() {
            return;
        }
        if attempts >= MAX_ATTEMPTS {
            self.finish(&job, interrupted_message(&job.id, attempts));
            return;
        }
        let mut q = lock(&self.queue);
        if self.closed.load(Ordering::SeqCst) {
            drop(q);
            self.end_for_now(&job, shutdown_message(&job.id, self.journal.is_some()));
            return;
        }
        if self.all_workers_dead() {
            drop(q);
            self.finish(&job, unavailable_message(&job.id));
            return;
        }
        job.set_queued();
        if let Some(j) = &self.journal
            && let Err(e) = j.requeued(&job.id)
        {
            tracing::warn!(job = %job.id, error = %e, "cannot journal a job's return to the queue");
        }
        q.push_front(job);
        drop(q);
        self.publish_positions();
        self.ready.notify_one();
    }

    /// A worker is done with the job it took from [`Self::next`].
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
        match &self.remote {
            Some(r) => {
                let (waiting, running) = r.occupancy();
                (waiting, running, self.capacity)
            }
            None => (lock(&self.queue).len() as u32, self.running.load(Ordering::SeqCst), self.capacity),
        }
    }

    /// Refuses new jobs, ends the queued ones for this process's clients (with a journal they stay queued for
    /// the next start) and wakes the workers so they can exit; running jobs are cancelled when
    /// `cancel_running` is set (otherwise they finish).
    pub fn close(&self, cancel_running: bool) {
        self.closed.store(true, Ordering::SeqCst);
        let drained: Vec<Arc<Job>> = lock(&self.queue).drain(..).collect();
        for job in drained {
            self.end_for_now(&job, shutdown_message(&job.id, self.journal.is_some()));
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

    /// Forgets finished jobs older than the memory window (or beyond the count); the journal keeps them.
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

/// The end of a job whose runs were all cut short.
pub(crate) fn interrupted_message(job_id: &str, attempts: u32) -> ServerMessage {
    ServerMessage::Error {
        job_id: Some(job_id.to_string()),
        code: ErrorCode::Interrupted,
        message: format!(
            "the job was interrupted {attempts} times (the server or its worker stopped while it ran) and is not \
             retried again"
        ),
        field: None,
        retry_after: None,
    }
}

/// What the clients of a queued or cut-short job hear when the server stops.
fn shutdown_message(job_id: &str, durable: bool) -> ServerMessage {
    ServerMessage::Error {
        job_id: Some(job_id.to_string()),
        code: ErrorCode::ShuttingDown,
        message: if durable {
            "the server is shutting down; the job stays queued and runs when the server starts again (subscribe to \
             it then)"
                .into()
        } else {
            "the server is shutting down; the job was not started".into()
        },
        field: None,
        retry_after: None,
    }
}

/// The end of a job nobody can run.
fn unavailable_message(job_id: &str) -> ServerMessage {
    ServerMessage::Error {
        job_id: Some(job_id.to_string()),
        code: ErrorCode::Unavailable,
        message: "every inference worker of this server has failed; restart the server".into(),
        field: None,
        retry_after: None,
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
        assert!(a.request().is_none(), "a cancelled job keeps no image");
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

    fn journaled(name: &str) -> (std::path::PathBuf, Arc<Journal>) {
        let data = std::env::temp_dir().join(format!("sf3d-jobs-{name}-{}", crate::gallery::new_id()));
        std::fs::create_dir_all(&data).unwrap();
        let j = Arc::new(Journal::open(&data.join("gallery.sqlite3"), &data).unwrap());
        (data, j)
    }

    fn image_req(bytes: &[u8]) -> JobRequest {
        JobRequest {
            input: JobInput::Image { bytes: bytes.to_vec(), filename: None },
            params: GenerateParams::default(),
        }
    }

    #[test]
    fn journaled_jobs_keep_their_image_on_disk_and_resume_in_order() {
        let (data, j) = journaled("resume");
        let (a, b, c);
        {
            let m = JobManager::with_journal(8, j.clone());
            a = m.submit(image_req(b"a"), None).unwrap().id.clone();
            b = m.submit(image_req(b"b"), None).unwrap().id.clone();
            c = m.submit(image_req(b"c"), None).unwrap().id.clone();
            let running = m.next().unwrap();
            assert_eq!((running.id.clone(), running.attempts()), (a.clone(), 1));
            match running.request().unwrap().input {
                JobInput::Upload { path, .. } => assert_eq!(std::fs::read(path).unwrap(), b"a"),
                other => panic!("{other:?}"),
            }
            assert!(m.cancel(&c));
            assert!(!data.join("jobs").join(&c).exists());
        } // the process "dies" with a running and b waiting
        let m = JobManager::with_journal(8, j.clone());
        assert_eq!(m.recover(), 2);
        assert_eq!(m.get(&a).unwrap().state(), JobState::Queued);
        let again = m.next().unwrap();
        assert_eq!((again.id.clone(), again.attempts()), (a.clone(), 2));
        assert_eq!(m.next().unwrap().id, b);
        assert!(m.finish(&again, ServerMessage::Cancelled { job_id: a.clone() }));
        assert!(!m.finish(&again, ServerMessage::Cancelled { job_id: a.clone() }), "the first end wins");
        // A fresh manager answers for ended jobs from the journal.
        let fresh = JobManager::with_journal(8, j);
        let ended = fresh.get(&c).unwrap();
        assert_eq!(ended.state(), JobState::Cancelled);
        assert_eq!(ended.terminal(), Some(ServerMessage::Cancelled { job_id: c.clone() }));
        std::fs::remove_dir_all(data).ok();
    }

    #[test]
    fn a_job_cancelled_while_the_server_stops_does_not_run_at_the_next_start() {
        let (data, j) = journaled("cancel-at-stop");
        let (kept, cancelled);
        {
            let m = JobManager::with_journal(8, j.clone());
            kept = m.submit(image_req(b"a"), None).unwrap().id.clone();
            cancelled = m.submit(image_req(b"b"), None).unwrap().id.clone();
            m.close(false);
            assert!(matches!(
                m.get(&cancelled).unwrap().terminal(),
                Some(ServerMessage::Error { code: ErrorCode::ShuttingDown, .. })
            ));
            assert!(m.cancel(&cancelled));
        }
        let m = JobManager::with_journal(8, j);
        assert_eq!(m.recover(), 1);
        assert_eq!(m.next().unwrap().id, kept);
        assert_eq!(m.get(&cancelled).unwrap().state(), JobState::Cancelled);
        std::fs::remove_dir_all(data).ok();
    }

    #[test]
    fn a_job_cut_short_twice_ends_interrupted() {
        let (data, j) = journaled("interrupted");
        let a;
        {
            let m = JobManager::with_journal(8, j.clone());
            a = m.submit(image_req(b"a"), None).unwrap().id.clone();
            m.next().unwrap();
        }
        {
            let m = JobManager::with_journal(8, j.clone());
            assert_eq!(m.recover(), 1);
            assert_eq!(m.next().unwrap().attempts(), 2);
        }
        let m = JobManager::with_journal(8, j);
        assert_eq!(m.recover(), 0);
        let job = m.get(&a).unwrap();
        assert_eq!(job.state(), JobState::Failed);
        assert!(matches!(job.terminal(), Some(ServerMessage::Error { code: ErrorCode::Interrupted, .. })));
        assert!(!data.join("jobs").join(&a).exists());
        std::fs::remove_dir_all(data).ok();
    }

    #[test]
    fn a_dead_workers_job_runs_again_once_then_ends_interrupted() {
        let m = JobManager::new(4);
        m.set_workers(2);
        let a = m.submit(req(), None).unwrap();
        let taken = m.next().unwrap();
        m.done();
        assert_eq!(m.worker_died(), 1);
        m.requeue(taken);
        assert_eq!(a.state(), JobState::Queued);
        let again = m.next().unwrap();
        assert_eq!(again.attempts(), 2);
        m.done();
        assert_eq!(m.worker_died(), 0);
        m.requeue(again);
        assert!(matches!(a.terminal(), Some(ServerMessage::Error { code: ErrorCode::Interrupted, .. })));
        assert!(m.all_workers_dead());
        assert_eq!(m.submit(req(), None).unwrap_err(), SubmitError::Unavailable);
    }

    #[test]
    fn a_job_reported_by_the_cluster_is_adopted_once_and_fed_its_events() {
        let m = JobManager::new(4);
        let id = ulid::Ulid::new().to_string();
        let reported = JobStatus {
            job_id: id.clone(),
            state: JobState::Running,
            position: None,
            attempts: 1,
            stages: vec![],
            terminal: None,
        };
        let (job, new) = m.adopt(reported.clone());
        assert!(new);
        let (again, new) = m.adopt(reported);
        assert!(!new && Arc::ptr_eq(&job, &again), "a second lookup follows the same job");
        assert!(Arc::ptr_eq(&m.get(&id).unwrap(), &job));
        let (_, _, mut rx) = job.subscribe();
        let stage = ServerMessage::Stage {
            job_id: id.clone(),
            stage: Stage::Decode,
            state: StageState::Started,
            value: None,
            max: None,
            elapsed_ms: 0,
            label: None,
        };
        m.relay(&job, 2, stage.clone());
        assert_eq!(rx.try_recv().unwrap(), stage);
        assert_eq!(job.attempts(), 2, "the run the event came from");
        m.relay(&job, 2, ServerMessage::Cancelled { job_id: id.clone() });
        assert_eq!(job.state(), JobState::Cancelled);
        m.relay(&job, 2, stage);
        assert!(matches!(rx.try_recv().unwrap(), ServerMessage::Cancelled { .. }));
        assert!(rx.try_recv().is_err(), "nothing after the end");
    }
}
