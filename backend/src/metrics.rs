//! Prometheus metrics of one server, scraped at `GET /metrics` (text format 0.0.4).
//!
//! Why the `prometheus` crate rather than `metrics` + `metrics-exporter-prometheus`: the `metrics` facade
//! records through one process-wide recorder, and the tests run several servers in one process (so would a
//! program embedding two), whose figures would then mix. A [`prometheus::Registry`] is a plain value: each
//! server owns one ([`Metrics`], held by its [`crate::worker::Engine`]), and nothing is global. Its protobuf
//! format is left out (`default-features = false`); Prometheus reads the text format.
//!
//! What is counted, and where:
//!
//! * `sf3d_jobs_ended_total{state, code}` — jobs that ended for good ([`crate::jobs::JobManager::finish`]):
//!   `state` is `succeeded`, `failed` or `cancelled`; `code` is the error code of a failed job, `none`
//!   otherwise. A job cut short by a server stop is not counted: it runs again at the next start.
//! * `sf3d_stage_duration_seconds{stage}` — a histogram of every stage that ran to its end (`finished` stage
//!   events of the worker, preview passes included; `cached` and `skipped` stages took no time).
//! * `sf3d_scene_code_cache_total{result}` — one lookup per job: `hit` when its scene codes came from the cache
//!   (memory, or a gallery entry's file for a regenerate) so the network was skipped, `miss` when they had to be
//!   computed (the encode stages run; a job whose image then fails to decode counts as a miss too).
//! * Gauges read at scrape time: `sf3d_queue_waiting_jobs`, `sf3d_running_jobs`, `sf3d_queue_capacity`,
//!   `sf3d_workers{state}` (`idle`, `busy`, `dead`), `sf3d_websocket_connections`, `sf3d_gallery_meshes`,
//!   `sf3d_scene_code_cache_entries` and `sf3d_scene_code_cache_bytes`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use sf3d_shared::api::WorkerState;
use sf3d_shared::{ErrorCode, JobState, ServerMessage, Stage};

/// Upper bounds of the stage-duration buckets, in seconds: milliseconds (decode on a GPU box) to ten minutes
/// (the backbone of the full-size model on a CPU).
const STAGE_BUCKETS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The metrics of one server.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    jobs_ended: IntCounterVec,
    stage_seconds: HistogramVec,
    cache: IntCounterVec,
    queue_waiting: IntGauge,
    running: IntGauge,
    queue_capacity: IntGauge,
    workers: IntGaugeVec,
    websockets: IntGauge,
    gallery_meshes: IntGauge,
    cache_entries: IntGauge,
    cache_bytes: IntGauge,
}

/// What [`Metrics::render`] reads from the server at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Jobs waiting.
    pub waiting: u32,
    /// Jobs running.
    pub running: u32,
    /// Queue capacity.
    pub capacity: u32,
    /// Each worker's state.
    pub workers: Vec<WorkerState>,
    /// Listed meshes (`None`: the gallery could not be read; the gauge keeps its last value).
    pub gallery_meshes: Option<u64>,
    /// Scene-code cache `(entries, bytes)`.
    pub cache: (usize, usize),
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (job counters of the usual outcomes start at 0, so a
    /// `rate()` over them is defined from the first scrape).
    pub fn new() -> Self {
        // The names and label sets below are constants: registration can only fail on a programming error,
        // which the unit test below catches.
        #[allow(clippy::expect_used)]
        fn ok<T>(r: prometheus::Result<T>) -> T {
            r.expect("metric definition")
        }
        let registry = Registry::new();
        let jobs_ended = ok(IntCounterVec::new(
            Opts::new("sf3d_jobs_ended_total", "Jobs that ended, by final state and error code (none unless failed)"),
            &["state", "code"],
        ));
        let stage_seconds = ok(HistogramVec::new(
            HistogramOpts::new("sf3d_stage_duration_seconds", "Wall time of pipeline stages that ran to their end")
                .buckets(STAGE_BUCKETS.to_vec()),
            &["stage"],
        ));
        let cache = ok(IntCounterVec::new(
            Opts::new(
                "sf3d_scene_code_cache_total",
                "Scene-code lookups of jobs: hit (the network was skipped) or miss (the network ran)",
            ),
            &["result"],
        ));
        let gauge = |name: &str, help: &str| ok(IntGauge::new(name, help));
        let queue_waiting = gauge("sf3d_queue_waiting_jobs", "Jobs waiting in the queue");
        let running = gauge("sf3d_running_jobs", "Jobs running on a worker");
        let queue_capacity = gauge("sf3d_queue_capacity", "Waiting jobs the queue takes before queue_full");
        let workers = ok(IntGaugeVec::new(Opts::new("sf3d_workers", "Inference workers by state"), &["state"]));
        let websockets = gauge("sf3d_websocket_connections", "Open WebSocket connections on /ws");
        let gallery_meshes = gauge("sf3d_gallery_meshes", "Meshes in the gallery");
        let cache_entries = gauge("sf3d_scene_code_cache_entries", "Scene codes held in the memory cache");
        let cache_bytes = gauge("sf3d_scene_code_cache_bytes", "Bytes held by the scene-code memory cache");
        for c in [&jobs_ended, &cache] {
            ok(registry.register(Box::new(c.clone())));
        }
        ok(registry.register(Box::new(stage_seconds.clone())));
        ok(registry.register(Box::new(workers.clone())));
        for g in [&queue_waiting, &running, &queue_capacity, &websockets, &gallery_meshes, &cache_entries, &cache_bytes]
        {
            ok(registry.register(Box::new(g.clone())));
        }
        for (state, code) in [("succeeded", "none"), ("cancelled", "none")] {
            jobs_ended.with_label_values(&[state, code]);
        }
        for result in ["hit", "miss"] {
            cache.with_label_values(&[result]);
        }
        for state in ["idle", "busy", "dead"] {
            workers.with_label_values(&[state]);
        }
        Self {
            registry,
            jobs_ended,
            stage_seconds,
            cache,
            queue_waiting,
            running,
            queue_capacity,
            workers,
            websockets,
            gallery_meshes,
            cache_entries,
            cache_bytes,
        }
    }

    /// A job ended for good with `msg` (`done`, `error` or `cancelled`).
    pub fn job_ended(&self, msg: &ServerMessage) {
        let (state, code) = match msg {
            ServerMessage::Done { .. } => (JobState::Succeeded, None),
            ServerMessage::Cancelled { .. } => (JobState::Cancelled, None),
            ServerMessage::Error { code, .. } => (JobState::Failed, Some(*code)),
            _ => return,
        };
        self.jobs_ended.with_label_values(&[state_name(state), code.map_or("none", ErrorCode::as_str)]).inc();
    }

    /// A stage ran to its end in `elapsed_ms`.
    pub fn stage_finished(&self, stage: Stage, elapsed_ms: u64) {
        self.stage_seconds.with_label_values(&[stage.as_str()]).observe(elapsed_ms as f64 / 1000.0);
    }

    /// A job's scene codes came from the cache (`true`) or the network ran (`false`).
    pub fn cache_lookup(&self, hit: bool) {
        self.cache.with_label_values(&[if hit { "hit" } else { "miss" }]).inc();
    }

    /// A WebSocket connection opened; it counts until the returned guard is dropped.
    pub fn websocket_opened(&self) -> WebSocketGuard {
        self.websockets.inc();
        WebSocketGuard(self.websockets.clone())
    }

    /// Sets the gauges from `s` and renders every metric in the Prometheus text format.
    pub fn render(&self, s: &Snapshot) -> String {
        self.queue_waiting.set(i64::from(s.waiting));
        self.running.set(i64::from(s.running));
        self.queue_capacity.set(i64::from(s.capacity));
        for (state, name) in [(WorkerState::Idle, "idle"), (WorkerState::Busy, "busy"), (WorkerState::Dead, "dead")] {
            let n = s.workers.iter().filter(|w| **w == state).count();
            self.workers.with_label_values(&[name]).set(n as i64);
        }
        if let Some(n) = s.gallery_meshes {
            self.gallery_meshes.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.cache_entries.set(i64::try_from(s.cache.0).unwrap_or(i64::MAX));
        self.cache_bytes.set(i64::try_from(s.cache.1).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Counts one open WebSocket connection while it lives.
#[derive(Debug)]
pub struct WebSocketGuard(IntGauge);

impl Drop for WebSocketGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders_per_instance() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.job_ended(&ServerMessage::Cancelled { job_id: "j".into() });
        a.job_ended(&ServerMessage::error(ErrorCode::UnsupportedImage, "x"));
        a.stage_finished(Stage::Backbone, 1500);
        a.cache_lookup(true);
        let guard = a.websocket_opened();
        let text = a.render(&Snapshot {
            waiting: 2,
            running: 1,
            capacity: 16,
            workers: vec![WorkerState::Busy, WorkerState::Idle],
            gallery_meshes: Some(7),
            cache: (1, 4096),
        });
        for line in [
            "sf3d_jobs_ended_total{code=\"none\",state=\"cancelled\"} 1",
            "sf3d_jobs_ended_total{code=\"unsupported_image\",state=\"failed\"} 1",
            "sf3d_jobs_ended_total{code=\"none\",state=\"succeeded\"} 0",
            "sf3d_stage_duration_seconds_count{stage=\"backbone\"} 1",
            "sf3d_stage_duration_seconds_bucket{stage=\"backbone\",le=\"2.5\"} 1",
            "sf3d_stage_duration_seconds_bucket{stage=\"backbone\",le=\"1\"} 0",
            "sf3d_scene_code_cache_total{result=\"hit\"} 1",
            "sf3d_scene_code_cache_total{result=\"miss\"} 0",
            "sf3d_queue_waiting_jobs 2",
            "sf3d_workers{state=\"busy\"} 1",
            "sf3d_workers{state=\"dead\"} 0",
            "sf3d_websocket_connections 1",
            "sf3d_gallery_meshes 7",
            "sf3d_scene_code_cache_bytes 4096",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        drop(guard);
        assert!(a.render(&Snapshot::default()).contains("sf3d_websocket_connections 0"));
        // Another server's registry saw none of it.
        let other = b.render(&Snapshot::default());
        assert!(other.contains("sf3d_jobs_ended_total{code=\"none\",state=\"cancelled\"} 0"), "{other}");
    }
}
