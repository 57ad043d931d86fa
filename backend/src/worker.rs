//! The inference workers: one OS thread per `--device` entry, each with the engine of its device, taking jobs
//! from the shared queue and running the pipeline, pushing every stage event to the job's subscribers the
//! moment it happens, storing results in the gallery and the scene-code cache.
//!
//! A panic inside a job fails that job only. A worker that dies outside a job (a panic in its own loop, a lost
//! device) is reported `dead`, its job goes back to the head of the queue (once: see
//! [`crate::journal::MAX_ATTEMPTS`]) and the other workers carry on. [`watch_deadlines`] ends a job that runs
//! past `--job-timeout` at once and tells the pipeline to stop at its next check.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sf3d::pipeline::{EncodeKey, Encoded, Events, Extracted, Pipeline, StageEvent, png_bytes};
use sf3d_shared::api::{WorkerInfo, WorkerState};
use sf3d_shared::{ErrorCode, GenerateParams, MeshMetadata, MeshUrls, ServerMessage, StageState, StageTiming};

use crate::cache::EncodeCache;
use crate::error::{ApiError, engine_error};
use crate::gallery::{CACHE_FILE, Gallery, NewMesh, Stored};
use crate::jobs::{Job, JobInput, JobManager, JobRequest, lock};
use crate::metrics::Metrics;

/// The models and the stores the workers share.
#[derive(Debug)]
pub struct Engine {
    /// One pipeline per worker, in `--device` order; workers on the same device share one (the weights are
    /// loaded once per device).
    pipelines: Vec<Arc<Pipeline>>,
    /// Where results go.
    pub gallery: Arc<Gallery>,
    /// Recent encodes (scene codes live on the CPU, so any worker can extract from them).
    pub cache: EncodeCache,
    /// This server's Prometheus registry (`GET /metrics`).
    pub metrics: Metrics,
    /// The name of this worker process in its cluster (`sf3d worker`), written into each result's metadata.
    pub node: Option<String>,
}

impl Engine {
    /// One worker on `pipeline`.
    pub fn new(pipeline: Pipeline, gallery: Arc<Gallery>, cache: EncodeCache) -> Self {
        Self { pipelines: vec![Arc::new(pipeline)], gallery, cache, metrics: Metrics::new(), node: None }
    }

    /// One worker per pipeline (`more` after `first`, in `--device` order).
    pub fn with_workers(
        first: Arc<Pipeline>,
        more: Vec<Arc<Pipeline>>,
        gallery: Arc<Gallery>,
        cache: EncodeCache,
    ) -> Self {
        let mut pipelines = vec![first];
        pipelines.extend(more);
        Self { pipelines, gallery, cache, metrics: Metrics::new(), node: None }
    }

    /// The same engine as worker process `name` of a cluster.
    pub fn with_node(self, name: &str) -> Self {
        Self { node: Some(name.to_string()), ..self }
    }

    /// No model at all: a web tier of a cluster, whose jobs run in worker processes.
    pub fn without_workers(gallery: Arc<Gallery>, cache: EncodeCache) -> Self {
        Self { pipelines: Vec::new(), gallery, cache, metrics: Metrics::new(), node: None }
    }

    /// The first worker's pipeline: the model and device health and `hello` name first (`None` on a web tier).
    pub fn pipeline(&self) -> Option<&Pipeline> {
        self.pipelines.first().map(|p| p.as_ref())
    }

    /// Every worker's pipeline.
    pub fn pipelines(&self) -> &[Arc<Pipeline>] {
        &self.pipelines
    }
}

/// Failure injection for the worker pool's own tests (`sf3d serve --test-hook`, hidden from `--help`).
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// The first worker to take a job panics right after taking it, outside the job's own panic guard.
    panic_on_first_take: bool,
    /// The first stage of the first job stalls this long without looking at cancellation (a stuck stage).
    stall_first_job: Option<Duration>,
    /// The first job stalls this long after its result is stored, before the job ends (a crash there must
    /// not make a second entry when the job runs again).
    stall_after_store: Option<Duration>,
    /// Set once the panic hook fired (shared by the clones a server's workers hold).
    panic_fired: Arc<AtomicBool>,
    /// Set once the stall hook fired.
    stall_fired: Arc<AtomicBool>,
    /// Set once the after-store hook fired.
    store_stall_fired: Arc<AtomicBool>,
}

impl TestHooks {
    /// The first worker to take a job panics right after taking it.
    pub fn panic_on_first_take() -> Self {
        Self { panic_on_first_take: true, ..Self::default() }
    }

    /// The first stage of the first job stalls for `d`.
    pub fn stall_first_job(d: Duration) -> Self {
        Self { stall_first_job: Some(d), ..Self::default() }
    }

    /// Parses one `--test-hook` value: `panic-on-first-take`, `stall-first-job=MILLISECONDS` or
    /// `stall-after-store=MILLISECONDS`.
    pub fn add(&mut self, hook: &str) -> Result<(), String> {
        let ms = |name: &str, v: &str| -> Result<Option<Duration>, String> {
            let ms: u64 = v.parse().map_err(|_| format!("--test-hook {name}={v}: not milliseconds"))?;
            Ok(Some(Duration::from_millis(ms)))
        };
        match hook.split_once('=') {
            None if hook == "panic-on-first-take" => self.panic_on_first_take = true,
            Some((name @ "stall-first-job", v)) => self.stall_first_job = ms(name, v)?,
            Some((name @ "stall-after-store", v)) => self.stall_after_store = ms(name, v)?,
            _ => {
                return Err(format!(
                    "unknown --test-hook {hook:?}: panic-on-first-take, stall-first-job=MS, stall-after-store=MS"
                ));
            }
        }
        Ok(())
    }
}

/// Settings of the workers.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// A job running longer than this fails with `deadline_exceeded`.
    pub job_timeout: Duration,
    /// Failure injection (tests only).
    pub hooks: TestHooks,
}

/// The default `--job-timeout`: generous for the device (a full-size CPU run takes a minute or two).
pub fn default_job_timeout(on_gpu: bool) -> Duration {
    Duration::from_secs(if on_gpu { 60 } else { 600 })
}

/// One worker as health sees it.
#[derive(Debug)]
pub struct WorkerSlot {
    /// Index in `--device` order.
    pub id: u32,
    /// Its engine.
    pub pipeline: Arc<Pipeline>,
    state: Mutex<WorkerState>,
    jobs_done: AtomicU64,
    current: Mutex<Option<Arc<Job>>>,
}

impl WorkerSlot {
    /// A worker of `pipeline`.
    pub fn new(id: u32, pipeline: Arc<Pipeline>) -> Self {
        Self {
            id,
            pipeline,
            state: Mutex::new(WorkerState::Idle),
            jobs_done: AtomicU64::new(0),
            current: Mutex::new(None),
        }
    }

    /// What health reports.
    pub fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id,
            device: self.pipeline.device().clone(),
            state: *lock(&self.state),
            jobs_done: self.jobs_done.load(Ordering::SeqCst),
            node: None,
        }
    }

    /// The job it runs, if any.
    pub fn current(&self) -> Option<Arc<Job>> {
        lock(&self.current).clone()
    }

    fn begin(&self, job: Arc<Job>) {
        *lock(&self.current) = Some(job);
        *lock(&self.state) = WorkerState::Busy;
    }

    fn end(&self) {
        *lock(&self.current) = None;
        *lock(&self.state) = WorkerState::Idle;
        self.jobs_done.fetch_add(1, Ordering::SeqCst);
    }
}

/// Reports its worker dead when the worker's thread unwinds, and hands the job it held back to the queue.
struct DeathWatch {
    slot: Arc<WorkerSlot>,
    manager: Arc<JobManager>,
}

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        *lock(&self.slot.state) = WorkerState::Dead;
        let job = lock(&self.slot.current).take();
        let alive = self.manager.worker_died();
        tracing::error!(worker = self.slot.id, alive, "a worker died outside a job");
        if let Some(job) = job {
            self.manager.done();
            tracing::warn!(job = %job.id, "returning the dead worker's job to the queue");
            self.manager.requeue(job);
        }
    }
}

/// Starts the worker of `slot`.
pub fn spawn_worker(
    manager: Arc<JobManager>,
    engine: Arc<Engine>,
    slot: Arc<WorkerSlot>,
    options: WorkerOptions,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(format!("sf3d-worker-{}", slot.id)).spawn(move || {
        let _watch = DeathWatch { slot: slot.clone(), manager: manager.clone() };
        while let Some(job) = manager.next() {
            slot.begin(job.clone());
            if options.hooks.panic_on_first_take && !options.hooks.panic_fired.swap(true, Ordering::SeqCst) {
                panic!("test hook: worker {} fails outside a job", slot.id);
            }
            let span = tracing::info_span!("job", id = %job.id, worker = slot.id);
            let _guard = span.enter();
            let started = Instant::now();
            let stall =
                options.hooks.stall_first_job.filter(|_| !options.hooks.stall_fired.swap(true, Ordering::SeqCst));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let result = run_job(&engine, &slot, &job, stall);
                if let Some(d) = options.hooks.stall_after_store
                    && !options.hooks.store_stall_fired.swap(true, Ordering::SeqCst)
                {
                    std::thread::sleep(d);
                }
                result
            }));
            let msg = match outcome {
                Ok(Ok(msg)) => Some(msg),
                Ok(Err(e)) if e.code == ErrorCode::Cancelled => {
                    if job.cancelled_by_client() || job.terminal().is_some() {
                        Some(ServerMessage::Cancelled { job_id: job.id.clone() })
                    } else {
                        // Neither a client nor the deadline: the server stops.
                        manager.stopped_by_shutdown(&job);
                        None
                    }
                }
                Ok(Err(e)) => Some(e.to_message(Some(job.id.clone()))),
                Err(_) => Some(ApiError::internal("worker", "the pipeline panicked").to_message(Some(job.id.clone()))),
            };
            if let Some(msg) = msg {
                let ended_here = manager.finish(&job, msg.clone());
                if !ended_here && let ServerMessage::Done { mesh_id, .. } = &msg {
                    // The deadline ended the job while its result was being stored: nobody is told about that
                    // entry, so it goes.
                    tracing::warn!(%mesh_id, "removing the result of a job that ended before it could report it");
                    if let Err(e) = engine.gallery.delete(mesh_id) {
                        tracing::warn!(%mesh_id, error = %e, "cannot remove it");
                    }
                }
                match &msg {
                    _ if !ended_here => tracing::info!("job had already ended (deadline); its run stopped"),
                    ServerMessage::Done { mesh_id, .. } => {
                        tracing::info!(%mesh_id, elapsed = ?started.elapsed(), "job done")
                    }
                    ServerMessage::Cancelled { .. } => tracing::info!("job cancelled"),
                    other => tracing::warn!(?other, "job failed"),
                }
            }
            slot.end();
            manager.done();
            // Nothing runs or waits: the allocator's cached pages of this run go back to the system.
            if let (0, 0, _) = manager.occupancy()
                && let Err(rc) = crate::memory::release_cached_pages()
            {
                tracing::debug!(rc, "the allocator did not release its cached pages");
            }
        }
        tracing::info!(worker = slot.id, "worker stopped");
    })
}

/// Ends jobs that run past `timeout` (checked every `every` until `stop` is set), and prunes the journal
/// hourly.
pub fn watch_deadlines(
    manager: Arc<JobManager>,
    slots: Vec<Arc<WorkerSlot>>,
    timeout: Duration,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("sf3d-deadlines".into()).spawn(move || {
        let mut last_prune = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(every);
            for slot in &slots {
                let Some(job) = slot.current() else { continue };
                let overdue = job.started_at().is_some_and(|t| t.elapsed() > timeout);
                if overdue && job.terminal().is_none() {
                    let msg = ServerMessage::Error {
                        job_id: Some(job.id.clone()),
                        code: ErrorCode::DeadlineExceeded,
                        message: format!(
                            "the job ran longer than this server's deadline of {} s (--job-timeout) and was stopped",
                            timeout.as_secs_f64()
                        ),
                        field: None,
                        retry_after: None,
                    };
                    if manager.finish(&job, msg) {
                        tracing::warn!(job = %job.id, worker = slot.id, ?timeout, "job past its deadline");
                    }
                    job.cancel.cancel();
                }
            }
            if last_prune.elapsed() > Duration::from_secs(3600) {
                last_prune = Instant::now();
                if let Some(j) = manager.journal()
                    && let Err(e) = j.prune()
                {
                    tracing::warn!(error = %e, "pruning the job journal failed");
                }
            }
        }
    })
}

/// Forwards pipeline events to the job (and finished stages' durations to the metrics); `label` marks the
/// preview pass.
struct JobEvents<'a> {
    job: &'a Job,
    metrics: &'a Metrics,
    label: Option<&'static str>,
    /// A test hook: the next stage to start stalls this long.
    stall: Option<Duration>,
}

impl Events for JobEvents<'_> {
    fn emit(&mut self, e: StageEvent) {
        let starts = e.state == StageState::Started;
        if e.state == StageState::Finished {
            self.metrics.stage_finished(e.stage, e.elapsed_ms);
        }
        self.job.publish(ServerMessage::Stage {
            job_id: self.job.id.clone(),
            stage: e.stage,
            state: e.state,
            value: e.value,
            max: e.max,
            elapsed_ms: e.elapsed_ms,
            label: match (e.label, self.label) {
                (Some(l), Some(p)) => Some(format!("{p}: {l}")),
                (l, p) => l.or(p.map(String::from)),
            },
        });
        if starts && let Some(d) = self.stall.take() {
            std::thread::sleep(d);
        }
    }

    fn cancelled(&self) -> bool {
        self.job.cancel.is_cancelled()
    }
}

/// RFC 3339 UTC timestamp of now.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

struct Source {
    encoded: Arc<Encoded>,
    encode_timings: Vec<StageTiming>,
    input_png: Vec<u8>,
    source_name: Option<String>,
    parent_id: Option<String>,
}

/// The `done` message of a gallery entry.
fn done_message(job: &Job, mesh_id: String, metadata: MeshMetadata) -> ServerMessage {
    ServerMessage::Done {
        job_id: job.id.clone(),
        urls: MeshUrls::for_mesh(&mesh_id),
        mesh_id,
        metadata: Box::new(metadata),
    }
}

fn run_job(engine: &Engine, slot: &WorkerSlot, job: &Job, stall: Option<Duration>) -> Result<ServerMessage, ApiError> {
    // A job that ran before (its process or worker died) may have stored its result already.
    if job.attempts() > 1
        && let Some(entry) = engine.gallery.find_by_job(&job.id, false)?
    {
        tracing::info!(mesh_id = %entry.id, "the job's result was stored by an earlier run");
        return Ok(done_message(job, entry.id, entry.metadata));
    }
    let JobRequest { input, params } =
        job.request().ok_or_else(|| ApiError::internal("worker", "job without request"))?;
    let pipeline = &slot.pipeline;
    let mut events = JobEvents { job, metrics: &engine.metrics, label: None, stall };
    let src = obtain_encoding(engine, pipeline, input, &params, &mut events)?;
    let save = |ext: &Extracted, params: &GenerateParams, preview: bool| {
        if job.terminal().is_some() || job.cancel.is_cancelled() {
            return Err(ApiError::new(ErrorCode::Cancelled, "the job ended while it ran"));
        }
        store(engine, pipeline, slot.id, job, &src, ext, params, preview)
    };

    if params.preview {
        let preview_params = params.preview_params();
        let mut ev = JobEvents { job, metrics: &engine.metrics, label: Some("preview"), stall: None };
        let ext = pipeline.extract(&src.encoded, &preview_params, &mut ev).map_err(|e| engine_error(&e))?;
        let (mesh_id, metadata) = save(&ext, &preview_params, true)?;
        job.publish(ServerMessage::Preview {
            job_id: job.id.clone(),
            urls: MeshUrls::for_mesh(&mesh_id),
            mesh_id,
            metadata: Box::new(metadata),
        });
    }
    let ext = pipeline.extract(&src.encoded, &params, &mut events).map_err(|e| engine_error(&e))?;
    let (mesh_id, metadata) = save(&ext, &params, false)?;
    Ok(done_message(job, mesh_id, metadata))
}

/// The encoded image of a request: from the memory cache, the disk cache, or the network.
fn obtain_encoding(
    engine: &Engine,
    p: &Pipeline,
    input: JobInput,
    params: &GenerateParams,
    events: &mut JobEvents<'_>,
) -> Result<Source, ApiError> {
    match input {
        JobInput::Image { bytes, filename } => encode_bytes(engine, p, bytes, params, events, filename, None),
        JobInput::Upload { path, filename } => {
            let bytes = std::fs::read(&path).map_err(|e| ApiError::internal("journaled upload", e))?;
            encode_bytes(engine, p, bytes, params, events, filename, None)
        }
        JobInput::FromMesh { mesh_id } => {
            let entry = engine.gallery.get(&mesh_id)?;
            let bytes = engine.gallery.read_file(&mesh_id, "input.png")?;
            encode_bytes(engine, p, bytes, params, events, entry.metadata.source_name, None)
        }
        JobInput::Regenerate { parent_id } => {
            let parent = engine.gallery.get(&parent_id)?;
            let input_png = engine.gallery.read_file(&parent_id, "input.png")?;
            let same_encode = parent.metadata.params.foreground_ratio.to_bits() == params.foreground_ratio.to_bits()
                && parent.metadata.params.background == params.background
                && parent.metadata.model.id == p.model().id;
            if same_encode && let Some(encoded) = cached_encoding(engine, p, &parent_id) {
                engine.metrics.cache_lookup(true);
                let encode_timings = p.report_cached(events);
                return Ok(Source {
                    encoded,
                    encode_timings,
                    input_png,
                    source_name: parent.metadata.source_name,
                    parent_id: Some(parent_id),
                });
            }
            encode_bytes(engine, p, input_png, params, events, parent.metadata.source_name, Some(parent_id))
        }
    }
}

fn encode_bytes(
    engine: &Engine,
    p: &Pipeline,
    bytes: Vec<u8>,
    params: &GenerateParams,
    events: &mut JobEvents<'_>,
    source_name: Option<String>,
    parent_id: Option<String>,
) -> Result<Source, ApiError> {
    let key = EncodeKey::new(&bytes, params, &p.model().id, p.background_remover().name());
    let digest = key.digest();
    let cached = engine.cache.get(&digest);
    engine.metrics.cache_lookup(cached.is_some());
    if let Some(encoded) = cached {
        let encode_timings = p.report_cached(events);
        let input_png = png_bytes(&encoded.input).map_err(|e| engine_error(&e))?;
        return Ok(Source { encoded, encode_timings, input_png, source_name, parent_id });
    }
    let encoded = p.encode(&bytes, params, events).map_err(|e| engine_error(&e))?;
    let encode_timings = encoded.timings.clone();
    let input_png = png_bytes(&encoded.input).map_err(|e| engine_error(&e))?;
    let encoded = Arc::new(encoded);
    engine.cache.insert(&digest, encoded.clone());
    Ok(Source { encoded, encode_timings, input_png, source_name, parent_id })
}

/// The parent's encode from memory, else from its cache file; a damaged file is reported and ignored.
fn cached_encoding(engine: &Engine, p: &Pipeline, mesh_id: &str) -> Option<Arc<Encoded>> {
    if let Some(e) = engine.cache.get_for_mesh(mesh_id) {
        return Some(e);
    }
    let g = &engine.gallery;
    let load = || -> Result<Encoded, String> {
        let bytes = g.read_file(mesh_id, CACHE_FILE).map_err(|e| e.to_string())?;
        let img = |f: &str| -> Result<image::RgbaImage, String> {
            let png = g.read_file(mesh_id, f).map_err(|e| e.to_string())?;
            Ok(image::load_from_memory(&png).map_err(|e| format!("{f} of {mesh_id}: {e}"))?.to_rgba8())
        };
        Encoded::from_bytes(&bytes, img("input.png")?, img("preprocessed.png")?).map_err(|e| e.to_string())
    };
    match load() {
        Ok(e) if e.key.model_id == p.model().id => {
            let e = Arc::new(e);
            let digest = e.key.digest();
            engine.cache.insert(&digest, e.clone());
            engine.cache.link_mesh(mesh_id, &digest);
            Some(e)
        }
        Ok(_) => {
            tracing::warn!(%mesh_id, "cached scene codes come from another model; recomputing");
            None
        }
        Err(e) => {
            tracing::warn!(%mesh_id, error = %e, "scene-code cache unusable; recomputing");
            None
        }
    }
}

/// Stores a result in the gallery, once per job: an entry this job already wrote (an earlier run that died
/// before it could report) is returned instead of a second one.
#[allow(clippy::too_many_arguments)]
fn store(
    engine: &Engine,
    pipeline: &Pipeline,
    worker: u32,
    job: &Job,
    src: &Source,
    ext: &Extracted,
    params: &GenerateParams,
    preview: bool,
) -> Result<(String, MeshMetadata), ApiError> {
    if let Some(entry) = engine.gallery.find_by_job(&job.id, preview)? {
        return Ok((entry.id, entry.metadata));
    }
    let mesh_id = crate::gallery::new_id();
    let mut timings = src.encode_timings.clone();
    timings.extend(ext.timings.iter().copied());
    let mut metadata = pipeline.metadata(&src.encoded, ext, params, timings, now_rfc3339());
    metadata.mesh_id = mesh_id.clone();
    metadata.worker = Some(worker);
    metadata.node = engine.node.clone();
    metadata.job_id = Some(job.id.clone());
    metadata.parent_id = src.parent_id.clone();
    metadata.source_name = src.source_name.clone();
    metadata.preview = preview;
    let cache = if preview { None } else { Some(src.encoded.to_bytes().map_err(|e| engine_error(&e))?) };
    let mesh = NewMesh {
        metadata: metadata.clone(),
        glb: ext.glb.clone(),
        input_png: src.input_png.clone(),
        preprocessed_png: png_bytes(&src.encoded.preprocessed).map_err(|e| engine_error(&e))?,
        cache,
    };
    if let Stored::Existing(entry) = engine.gallery.insert(&mesh)? {
        // Another run of this job (redelivered, or two workers racing) stored its result first.
        return Ok((entry.id, entry.metadata));
    }
    engine.cache.link_mesh(&mesh_id, &src.encoded.key.digest());
    Ok((mesh_id, metadata))
}
