//! The inference worker: a dedicated OS thread that takes jobs from the queue and runs the pipeline, pushing
//! every stage event to the job's subscribers the moment it happens, storing results in the gallery and the
//! scene-code cache.

use std::sync::Arc;
use std::time::SystemTime;

use sf3d::pipeline::{EncodeKey, Encoded, Events, Extracted, Pipeline, StageEvent, png_bytes};
use sf3d_shared::{ErrorCode, GenerateParams, MeshMetadata, MeshUrls, ServerMessage, StageTiming};

use crate::cache::EncodeCache;
use crate::error::{ApiError, engine_error};
use crate::gallery::{CACHE_FILE, Gallery, NewMesh};
use crate::jobs::{Job, JobInput, JobManager, JobRequest};

/// Everything a worker needs.
#[derive(Debug)]
pub struct Engine {
    /// The loaded model.
    pub pipeline: Pipeline,
    /// Where results go.
    pub gallery: Arc<Gallery>,
    /// Recent encodes.
    pub cache: EncodeCache,
}

/// Starts a worker thread.
pub fn spawn_worker(manager: Arc<JobManager>, engine: Arc<Engine>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("sf3d-worker".into()).spawn(move || {
        while let Some(job) = manager.next() {
            let span = tracing::info_span!("job", id = %job.id);
            let _guard = span.enter();
            let started = std::time::Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(&engine, &job)));
            let msg = match outcome {
                Ok(Ok(msg)) => msg,
                Ok(Err(e)) if e.code == ErrorCode::Cancelled => ServerMessage::Cancelled { job_id: job.id.clone() },
                Ok(Err(e)) => e.to_message(Some(job.id.clone())),
                Err(_) => ApiError::internal("worker", "the pipeline panicked").to_message(Some(job.id.clone())),
            };
            match &msg {
                ServerMessage::Done { mesh_id, .. } => {
                    tracing::info!(%mesh_id, elapsed = ?started.elapsed(), "job done")
                }
                ServerMessage::Cancelled { .. } => tracing::info!("job cancelled"),
                other => tracing::warn!(?other, "job failed"),
            }
            job.publish(msg);
            manager.done();
        }
        tracing::info!("worker stopped");
    })
}

/// Forwards pipeline events to the job; `label` marks the preview pass.
struct JobEvents<'a> {
    job: &'a Job,
    label: Option<&'static str>,
}

impl Events for JobEvents<'_> {
    fn emit(&mut self, e: StageEvent) {
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

fn run_job(engine: &Engine, job: &Job) -> Result<ServerMessage, ApiError> {
    let JobRequest { input, params } =
        job.take_request().ok_or_else(|| ApiError::internal("worker", "job without request"))?;
    let mut events = JobEvents { job, label: None };
    let src = obtain_encoding(engine, input, &params, &mut events)?;

    if params.preview {
        let preview_params = params.preview_params();
        let mut ev = JobEvents { job, label: Some("preview") };
        let ext = engine.pipeline.extract(&src.encoded, &preview_params, &mut ev).map_err(|e| engine_error(&e))?;
        let (mesh_id, metadata) = store(engine, &src, &ext, &preview_params, true)?;
        job.publish(ServerMessage::Preview {
            job_id: job.id.clone(),
            urls: MeshUrls::for_mesh(&mesh_id),
            mesh_id,
            metadata: Box::new(metadata),
        });
    }
    let ext = engine.pipeline.extract(&src.encoded, &params, &mut events).map_err(|e| engine_error(&e))?;
    let (mesh_id, metadata) = store(engine, &src, &ext, &params, false)?;
    Ok(ServerMessage::Done {
        job_id: job.id.clone(),
        urls: MeshUrls::for_mesh(&mesh_id),
        mesh_id,
        metadata: Box::new(metadata),
    })
}

/// The encoded image of a request: from the memory cache, the disk cache, or the network.
fn obtain_encoding(
    engine: &Engine,
    input: JobInput,
    params: &GenerateParams,
    events: &mut JobEvents<'_>,
) -> Result<Source, ApiError> {
    let p = &engine.pipeline;
    match input {
        JobInput::Image { bytes, filename } => encode_bytes(engine, bytes, params, events, filename, None),
        JobInput::FromMesh { mesh_id } => {
            let entry = engine.gallery.get(&mesh_id)?;
            let path = engine.gallery.file_path(&mesh_id, "input.png")?;
            let bytes = std::fs::read(&path).map_err(|e| ApiError::internal("gallery input", e))?;
            encode_bytes(engine, bytes, params, events, entry.metadata.source_name, None)
        }
        JobInput::Regenerate { parent_id } => {
            let parent = engine.gallery.get(&parent_id)?;
            let input_path = engine.gallery.file_path(&parent_id, "input.png")?;
            let input_png = std::fs::read(&input_path).map_err(|e| ApiError::internal("gallery input", e))?;
            let same_encode = parent.metadata.params.foreground_ratio.to_bits() == params.foreground_ratio.to_bits()
                && parent.metadata.params.background == params.background
                && parent.metadata.model.id == p.model().id;
            if same_encode && let Some(encoded) = cached_encoding(engine, &parent_id) {
                let encode_timings = p.report_cached(events);
                return Ok(Source {
                    encoded,
                    encode_timings,
                    input_png,
                    source_name: parent.metadata.source_name,
                    parent_id: Some(parent_id),
                });
            }
            encode_bytes(engine, input_png, params, events, parent.metadata.source_name, Some(parent_id))
        }
    }
}

fn encode_bytes(
    engine: &Engine,
    bytes: Vec<u8>,
    params: &GenerateParams,
    events: &mut JobEvents<'_>,
    source_name: Option<String>,
    parent_id: Option<String>,
) -> Result<Source, ApiError> {
    let p = &engine.pipeline;
    let key = EncodeKey::new(&bytes, params, &p.model().id);
    let digest = key.digest();
    if let Some(encoded) = engine.cache.get(&digest) {
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
fn cached_encoding(engine: &Engine, mesh_id: &str) -> Option<Arc<Encoded>> {
    if let Some(e) = engine.cache.get_for_mesh(mesh_id) {
        return Some(e);
    }
    let g = &engine.gallery;
    let load = || -> Result<Encoded, String> {
        let path = g.file_path(mesh_id, CACHE_FILE).map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let img = |f: &str| -> Result<image::RgbaImage, String> {
            let p = g.file_path(mesh_id, f).map_err(|e| e.to_string())?;
            Ok(image::open(&p).map_err(|e| format!("{}: {e}", p.display()))?.to_rgba8())
        };
        Encoded::from_bytes(&bytes, img("input.png")?, img("preprocessed.png")?).map_err(|e| e.to_string())
    };
    match load() {
        Ok(e) if e.key.model_id == engine.pipeline.model().id => {
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

fn store(
    engine: &Engine,
    src: &Source,
    ext: &Extracted,
    params: &GenerateParams,
    preview: bool,
) -> Result<(String, MeshMetadata), ApiError> {
    let mesh_id = crate::gallery::new_id();
    let mut timings = src.encode_timings.clone();
    timings.extend(ext.timings.iter().copied());
    let mut metadata = engine.pipeline.metadata(&src.encoded, ext, params, timings, now_rfc3339());
    metadata.mesh_id = mesh_id.clone();
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
    engine.gallery.insert(&mesh)?;
    engine.cache.link_mesh(&mesh_id, &src.encoded.key.digest());
    Ok((mesh_id, metadata))
}
