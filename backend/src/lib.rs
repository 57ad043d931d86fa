//! SF3D Studio's server: axum routes (WebSocket jobs, REST, gallery) around one engine instance, plus the
//! client and CLI pieces of the `sf3d` binary.
//!
//! [`app`] builds the router from an [`AppState`] (`routes/tests.rs` drives it in-process with `oneshot`); [`Server::start`] loads nothing itself: it takes a loaded
//! [`worker::Engine`] (one pipeline per worker), opens the job journal beside the gallery, queues the jobs an
//! earlier process left open, starts one inference worker per pipeline and returns the state; [`serve`] runs the
//! router on a listener until a shutdown future resolves, then stops the queue, closes WebSockets, lets running
//! jobs finish (or cancels them after a grace period) and flushes the gallery. [`Server::start_web_tier`] is the
//! same server as a web tier of a cluster ([`cluster`]): no engine, its jobs queued on NATS for worker processes.

pub mod auth;
pub mod cache;
pub mod cluster;
pub mod doctor;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod gallery;
pub mod http;
pub mod jobs;
pub mod journal;
pub mod memory;
pub mod metrics;
pub mod model_source;
pub mod remote;
pub mod routes;
#[doc(hidden)]
pub mod test_services;
pub mod worker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sf3d_shared::{HealthResponse, PROTOCOL_VERSION, QueueInfo, SOFTWARE_VERSION};
use tokio::sync::watch;

use crate::auth::ApiKey;
use crate::jobs::JobManager;
use crate::routes::guard::SitePolicy;
use crate::worker::{Engine, TestHooks, WorkerOptions, WorkerSlot};

/// `Retry-After` seconds sent with `queue_full`.
pub const RETRY_AFTER_SECS: u64 = 5;
/// Default server → client WebSocket ping interval.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Default silence after which a WebSocket is closed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
/// Default time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time an upload may take in all (a REST body or the WebSocket frame after `generate`).
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Default connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Default connections one client address may hold (a browser keeps a few; loopback clients share one address).
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Required bearer token, if any.
    pub api_key: Option<ApiKey>,
    /// Largest accepted upload.
    pub max_upload_bytes: u64,
    /// Host names and page origins allowed to use the server.
    pub site: SitePolicy,
    /// The built frontend (`dist/`), served at `/`.
    pub dist: Option<PathBuf>,
    /// How long a running job may take to finish at shutdown before it is cancelled.
    pub shutdown_grace: Duration,
    /// WebSocket ping interval.
    pub ping_interval: Duration,
    /// A WebSocket silent this long (no message, no pong) is closed.
    pub client_timeout: Duration,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time an upload may take in all; a body that stalls for this long also ends.
    pub upload_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one client address may hold.
    pub max_connections_per_client: usize,
    /// Queued or running jobs one WebSocket connection may have.
    pub max_jobs_per_connection: usize,
    /// Jobs one WebSocket connection may follow at once (its own and `subscribe`d ones).
    pub max_subscriptions_per_connection: usize,
    /// A job running longer fails with `deadline_exceeded` (`None`: [`worker::default_job_timeout`] of the
    /// first worker's device).
    pub job_timeout: Option<Duration>,
    /// Failure injection for the worker pool's tests.
    pub test_hooks: TestHooks,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            max_upload_bytes: sf3d::preprocess::DEFAULT_MAX_BYTES,
            site: SitePolicy::default(),
            dist: None,
            shutdown_grace: Duration::from_secs(30),
            ping_interval: PING_INTERVAL,
            client_timeout: CLIENT_TIMEOUT,
            header_read_timeout: HEADER_READ_TIMEOUT,
            upload_timeout: UPLOAD_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_client: MAX_CONNECTIONS_PER_CLIENT,
            max_jobs_per_connection: 8,
            max_subscriptions_per_connection: 32,
            job_timeout: None,
            test_hooks: TestHooks::default(),
        }
    }
}

/// Refuses to expose the server to the network without a key.
pub fn check_bind(host: IpAddr, api_key: Option<&ApiKey>) -> Result<(), String> {
    if host.is_loopback() || api_key.is_some() {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on {host} without --api-key: anyone on the network could use the GPU and read the \
             gallery. Pass --api-key-file FILE (or --api-key KEY, SF3D_API_KEY), or bind to 127.0.0.1"
        ))
    }
}

/// Shared state of every handler.
#[derive(Debug)]
pub struct AppInner {
    /// The queue.
    pub jobs: Arc<JobManager>,
    /// The model, gallery and cache.
    pub engine: Arc<Engine>,
    /// HTTP settings.
    pub config: ServerConfig,
    /// The inference workers.
    pub workers: Vec<Arc<WorkerSlot>>,
    /// The cluster this server is a web tier of (`--nats`): its jobs run in worker processes.
    pub cluster: Option<Arc<cluster::tier::WebTier>>,
    /// Flips to true when the server shuts down (WebSocket connections close).
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
}

/// Cheap-to-clone handle on [`AppInner`].
pub type AppState = Arc<AppInner>;

impl AppInner {
    /// The health response.
    pub fn health(&self) -> HealthResponse {
        let (waiting, running, capacity) = self.jobs.occupancy();
        let status = if self.jobs.is_closed() {
            "shutting_down"
        } else if self.jobs.all_workers_dead() {
            "degraded"
        } else {
            "ok"
        };
        let (device, model, workers, background_remover) = match (&self.cluster, self.engine.pipeline()) {
            (Some(tier), _) => cluster_health(&tier.workers()),
            (None, Some(p)) => (
                p.device().clone(),
                p.model().clone(),
                self.workers.iter().map(|w| w.info()).collect(),
                p.background_remover().name().into(),
            ),
            (None, None) => cluster_health(&[]),
        };
        HealthResponse {
            status: status.into(),
            version: SOFTWARE_VERSION.into(),
            protocol: PROTOCOL_VERSION,
            device,
            model,
            queue: QueueInfo { waiting, running, capacity },
            auth_required: self.config.api_key.is_some(),
            workers,
            background_remover,
        }
    }

    /// Whether `token` is the API key (see [`ApiKey::matches`]); always true without a key.
    pub fn authorized(&self, token: Option<&str>) -> bool {
        match (&self.config.api_key, token) {
            (None, _) => true,
            (Some(k), Some(t)) => k.matches(t),
            (Some(_), None) => false,
        }
    }
}

/// Health's device, model, workers and background remover from the heartbeats of a cluster's worker processes:
/// the first process's device and model, every process's workers (each named by its process).
fn cluster_health(
    beats: &[cluster::wire::Heartbeat],
) -> (sf3d_shared::DeviceInfo, sf3d_shared::ModelInfo, Vec<sf3d_shared::api::WorkerInfo>, String) {
    let workers: Vec<_> = beats
        .iter()
        .flat_map(|b| {
            b.workers.iter().map(|w| sf3d_shared::api::WorkerInfo { node: Some(b.node.clone()), ..w.clone() })
        })
        .collect();
    let device = workers.first().map(|w| w.device.clone()).unwrap_or_else(|| sf3d_shared::DeviceInfo {
        kind: sf3d_shared::DeviceKind::Cpu,
        name: "none: no worker of this cluster is running".into(),
        memory_total_bytes: None,
    });
    let model = beats.first().map(|b| b.model.clone()).unwrap_or_else(|| sf3d_shared::ModelInfo {
        id: "none".into(),
        test_model: false,
        attribution: None,
        dtype: String::new(),
    });
    let remover = beats.first().map(|b| b.background_remover.clone()).unwrap_or_default();
    (device, model, workers, remover)
}

/// A started server: state plus its worker threads.
#[derive(Debug)]
pub struct Server {
    /// The state handlers share.
    pub state: AppState,
    workers: Vec<std::thread::JoinHandle<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
    stop_watchdog: Arc<std::sync::atomic::AtomicBool>,
}

/// How often running jobs are checked against their deadline.
const DEADLINE_CHECK: Duration = Duration::from_millis(200);

impl Server {
    /// Opens the job journal beside the gallery, queues the jobs a previous process left open, and starts one
    /// inference worker per pipeline of `engine` behind a queue of `max_queue` waiting jobs.
    pub fn start(engine: Engine, config: ServerConfig, max_queue: u32) -> std::io::Result<Self> {
        let engine = Arc::new(engine);
        let g = &engine.gallery;
        let journal = journal::Journal::open(&g.db_path(), g.root()).map_err(std::io::Error::other)?;
        let jobs =
            Arc::new(JobManager::with_journal(max_queue, Arc::new(journal)).with_metrics(engine.metrics.clone()));
        let slots: Vec<Arc<WorkerSlot>> = engine
            .pipelines()
            .iter()
            .enumerate()
            .map(|(i, p)| Arc::new(WorkerSlot::new(i as u32, p.clone())))
            .collect();
        jobs.set_workers(slots.len() as u32);
        jobs.recover();
        let on_gpu = engine.pipeline().is_some_and(|p| p.device().kind == sf3d_shared::DeviceKind::Cuda);
        let timeout = config.job_timeout.unwrap_or_else(|| worker::default_job_timeout(on_gpu));
        let options = WorkerOptions { job_timeout: timeout, hooks: config.test_hooks.clone() };
        let workers = slots
            .iter()
            .map(|slot| worker::spawn_worker(jobs.clone(), engine.clone(), slot.clone(), options.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;
        let stop_watchdog = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog =
            worker::watch_deadlines(jobs.clone(), slots.clone(), timeout, DEADLINE_CHECK, stop_watchdog.clone())?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        Ok(Self {
            state: Arc::new(AppInner { jobs, engine, config, workers: slots, cluster: None, shutdown, shutdown_tx }),
            workers,
            watchdog: Some(watchdog),
            stop_watchdog,
        })
    }

    /// Starts a web tier of the cluster `tier` connects to: no model and no worker of its own; jobs go to the
    /// cluster's queue (at most `max_queue` waiting or running), and their events come back from the workers.
    pub fn start_web_tier(
        engine: Engine,
        config: ServerConfig,
        tier: Arc<cluster::tier::WebTier>,
        max_queue: u32,
    ) -> std::io::Result<Self> {
        let engine = Arc::new(engine);
        let jobs = Arc::new(JobManager::with_remote(max_queue, tier.clone()).with_metrics(engine.metrics.clone()));
        tier.attach(&jobs);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let state = AppInner { jobs, engine, config, workers: vec![], cluster: Some(tier), shutdown, shutdown_tx };
        Ok(Self {
            state: Arc::new(state),
            workers: vec![],
            watchdog: None,
            stop_watchdog: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Stops the queue, tells WebSockets to close, waits for running jobs up to the grace period, cancels them
    /// if needed, joins the workers (for at most the grace period again: a worker stuck in a stage is left
    /// behind) and flushes the gallery.
    pub fn stop(mut self) {
        let s = &self.state;
        let _ = s.shutdown_tx.send(true);
        s.jobs.close(false);
        // A web tier's jobs run (and go on running) in the cluster's worker processes.
        let local = s.cluster.is_none();
        let deadline = std::time::Instant::now() + s.config.shutdown_grace;
        while local && s.jobs.occupancy().1 > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if local && s.jobs.occupancy().1 > 0 {
            tracing::warn!("cancelling running jobs after the shutdown grace period");
            s.jobs.close(true);
        }
        let join_by = std::time::Instant::now() + s.config.shutdown_grace;
        for w in self.workers.drain(..) {
            while !w.is_finished() && std::time::Instant::now() < join_by {
                std::thread::sleep(Duration::from_millis(20));
            }
            if w.is_finished() {
                let _ = w.join();
            } else {
                tracing::warn!("a worker did not stop in time; leaving it");
            }
        }
        self.stop_watchdog.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
        if let Err(e) = s.engine.gallery.checkpoint() {
            tracing::warn!(error = %e, "gallery checkpoint at shutdown failed");
        }
        tracing::info!("server stopped");
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Runs `app(state)` on `listener` until `shutdown` resolves; then tells WebSockets to close. Call
/// [`Server::stop`] afterwards to drain the worker.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let notify = state.shutdown_tx.clone();
    let jobs = state.jobs.clone();
    let grace = state.config.shutdown_grace;
    let c = &state.config;
    let limits = http::ListenerLimits {
        max_connections: c.max_connections,
        max_connections_per_client: c.max_connections_per_client,
        header_read_timeout: c.header_read_timeout,
        write_timeout: c.client_timeout,
        // The running job may take the grace period to finish; its REST waiter answers right after.
        drain_timeout: c.shutdown_grace + Duration::from_secs(10),
    };
    let router = app(state);
    http::serve_router(listener, router, limits, async move {
        shutdown.await;
        // WebSockets close; queued jobs fail at once (their REST waiters answer 503); the running job may
        // finish within the grace period, then it is cancelled so no request holds the shutdown forever.
        let _ = notify.send(true);
        jobs.close(false);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            jobs.close(true);
        });
    })
    .await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
