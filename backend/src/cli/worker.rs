//! `sf3d worker`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sf3d::pipeline::PipelineOptions;
use sf3d_backend::cluster::node::{self, NodeOptions};
use sf3d_backend::cluster::{ClusterName, DEFAULT_CLUSTER};
use sf3d_backend::model_source::{load_pipelines, parse_device_list};
use sf3d_backend::shutdown_signal;
use sf3d_backend::worker::{Engine, WorkerOptions, default_job_timeout};

use super::{JobArgs, ModelArgs, ack_wait, log_models, open_gallery};

/// Options of `sf3d worker` (each also from an environment variable).
#[derive(Args)]
pub struct WorkerArgs {
    /// The cluster's NATS JetStream server (nats://[USER:PASSWORD@]HOST:4222): jobs come from its queue, results
    /// go to its object store. Prefer SF3D_NATS for a URL with a password.
    #[arg(long, env = "SF3D_NATS", hide_env_values = true)]
    nats: String,
    /// The cluster's PostgreSQL (postgres://USER[:PASSWORD]@HOST[:PORT]/DB): the gallery's index. Prefer SF3D_DB
    /// for a URL with a password.
    #[arg(long, env = "SF3D_DB", hide_env_values = true)]
    db: String,
    /// Name of the deployment (as given to its web tiers).
    #[arg(long, env = "SF3D_CLUSTER", default_value = DEFAULT_CLUSTER)]
    cluster: ClusterName,
    /// This process's name in the cluster's health (default: host name and process id).
    #[arg(long, env = "SF3D_WORKER_NAME")]
    name: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    jobs: JobArgs,
    /// Folder for this process's local files (nothing shared lives here).
    #[arg(long, env = "SF3D_DATA", default_value = "sf3d-worker-data")]
    data: PathBuf,
    /// Seconds this process may hold a job without a word before it goes to another worker (progress is sent
    /// every third of it). The first process of a cluster to start sets it; give all the same.
    #[arg(long, env = "SF3D_ACK_WAIT", default_value_t = 30.0)]
    ack_wait: f64,
}

impl std::fmt::Debug for WorkerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerArgs")
            .field("nats", &"<redacted>")
            .field("db", &"<redacted>")
            .field("cluster", &self.cluster)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

pub fn worker(a: WorkerArgs) -> anyhow::Result<ExitCode> {
    // Every setting is checked before the model loads.
    let devices = parse_device_list(&a.model.device)?;
    let job_timeout = a.jobs.job_timeout()?;
    let hooks = a.jobs.test_hooks()?;
    let ack_wait = ack_wait(a.ack_wait)?;
    let name = a.name.clone().unwrap_or_else(node::default_node_name);
    anyhow::ensure!(
        !name.is_empty() && name.len() <= 64 && !name.chars().any(char::is_control),
        "--name {name:?}: give 1 to 64 printable characters"
    );
    let source = a.model.source()?;
    let dtype = a.model.dtype()?;
    let limits = a.jobs.decode_limits();
    std::fs::create_dir_all(&a.data).with_context(|| format!("creating {}", a.data.display()))?;
    let gallery = open_gallery(&a.data, Some(&a.db), Some(&a.nats), &a.cluster)?;
    let background_model = a.model.background_model()?;
    let options = PipelineOptions { decode_limits: limits, background_model, ..Default::default() };
    let pipelines = load_pipelines(&source, &devices, dtype, options)?;
    let Some((first, more)) = pipelines.split_first() else { anyhow::bail!("--device names no device") };
    log_models(&pipelines);
    let on_gpu = first.device().kind == sf3d_shared::DeviceKind::Cuda;
    let cache = a.jobs.cache();
    let engine = Engine::with_workers(first.clone(), more.to_vec(), gallery, cache).with_node(&name);
    let options = NodeOptions {
        name,
        ack_wait,
        workers: WorkerOptions { job_timeout: job_timeout.unwrap_or_else(|| default_job_timeout(on_gpu)), hooks },
        shutdown_grace: a.jobs.shutdown_grace(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async {
        eprintln!("SF3D Studio worker {} is taking jobs of cluster {}  (Ctrl-C to stop)", options.name, a.cluster);
        node::run(&a.nats, &a.cluster, engine, options, shutdown_signal()).await
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    result.map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}
