//! `sf3d serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sf3d::pipeline::PipelineOptions;
use sf3d_backend::auth::ApiKey;
use sf3d_backend::cluster::tier::WebTier;
use sf3d_backend::cluster::{ClusterName, DEFAULT_CLUSTER};
use sf3d_backend::model_source::{load_pipelines, parse_device_list};
use sf3d_backend::routes::guard::SitePolicy;
use sf3d_backend::worker::Engine;
use sf3d_backend::{Server, ServerConfig, check_bind, serve as serve_http, shutdown_signal};

use super::{JobArgs, ModelArgs, ack_wait, log_models, open_gallery};

/// Options of `sf3d serve` (each also from an environment variable).
#[derive(Args)]
pub struct ServeArgs {
    /// Address to bind. Anything but loopback requires --api-key.
    #[arg(long, env = "SF3D_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (9299: the seed's).
    #[arg(long, env = "SF3D_PORT", default_value_t = 9299)]
    port: u16,
    /// Data folder: gallery.sqlite3 (the gallery's index, unless --db) and meshes/.
    #[arg(long, env = "SF3D_DATA", default_value = "sf3d-data")]
    data: PathBuf,
    /// Keep the gallery's index in PostgreSQL (postgres://USER[:PASSWORD]@HOST[:PORT]/DB) instead of
    /// DATA/gallery.sqlite3; the mesh files stay in the data folder. Prefer SF3D_DB for a URL with a password:
    /// the command line is visible to other users in `ps`.
    #[arg(long, env = "SF3D_DB", hide_env_values = true)]
    db: Option<String>,
    /// Run as a web tier of a cluster on the NATS JetStream server at this URL (nats://[USER:PASSWORD@]HOST:4222):
    /// no model here; jobs are queued on NATS for `sf3d worker` processes, and the gallery's files live in its
    /// object store (bucket sf3d-NAME-meshes). Needs --db.
    #[arg(long, env = "SF3D_NATS", hide_env_values = true)]
    nats: Option<String>,
    /// Cluster mode: seconds a worker may hold a job without a word (it sends progress every third of it) before
    /// the job goes to another worker. The first process of a cluster to start sets it; give all the same.
    #[arg(long, env = "SF3D_ACK_WAIT", default_value_t = 30.0)]
    ack_wait: f64,
    /// Name of this deployment in shared services: its PostgreSQL tables live in schema sf3d_NAME (NAME with
    /// '-' as '_') and its NATS names start with sf3d-NAME-, so several deployments can share one database and
    /// one NATS server.
    #[arg(long, env = "SF3D_CLUSTER", default_value = DEFAULT_CLUSTER)]
    cluster: ClusterName,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    jobs: JobArgs,
    /// API key required from clients (Authorization: Bearer KEY; ?token=KEY on the WebSocket); at least 16
    /// characters. Prefer --api-key-file: a key on the command line is visible to other users in `ps`.
    #[arg(long, env = "SF3D_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// File holding the API key (its first line).
    #[arg(long, env = "SF3D_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// Waiting jobs before new requests get queue_full / 429.
    #[arg(long, env = "SF3D_MAX_QUEUE", default_value_t = 16)]
    max_queue: u32,
    /// Page origins (scheme://host[:port]) allowed to use the API from browsers, besides the server's own
    /// (repeatable or comma-separated; `*`, any page, needs an API key).
    #[arg(long, env = "SF3D_CORS_ORIGIN", value_delimiter = ',')]
    cors_origin: Vec<String>,
    /// Host names the server answers to, besides loopback and its IP addresses (repeatable or comma-separated;
    /// e.g. the name a reverse proxy or the LAN uses; `*` answers any).
    #[arg(long, env = "SF3D_ALLOWED_HOST", value_delimiter = ',')]
    allowed_host: Vec<String>,
    /// Connections served at once.
    #[arg(long, env = "SF3D_MAX_CONNECTIONS", default_value_t = sf3d_backend::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Connections one client address may hold at once.
    #[arg(long, env = "SF3D_MAX_CONNECTIONS_PER_CLIENT", default_value_t = sf3d_backend::MAX_CONNECTIONS_PER_CLIENT)]
    max_connections_per_client: usize,
    /// The built web UI (Trunk's dist/).
    #[arg(long, env = "SF3D_DIST")]
    dist: Option<PathBuf>,
}

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_file", &self.api_key_file)
            .field("db", &self.db.as_ref().map(|_| "<redacted>"))
            .field("nats", &self.nats.as_ref().map(|_| "<redacted>"))
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    // Every setting is checked before the model loads (which can take minutes).
    let api_key = match (a.api_key.as_deref().filter(|k| !k.is_empty()), &a.api_key_file) {
        (Some(_), Some(_)) => anyhow::bail!("give the key once: --api-key (SF3D_API_KEY) or --api-key-file"),
        (Some(k), None) => Some(ApiKey::new(k)?),
        (None, Some(path)) => Some(ApiKey::from_file(path)?),
        (None, None) => None,
    };
    if let Err(msg) = check_bind(a.host, api_key.as_ref()) {
        anyhow::bail!(msg);
    }
    let site = SitePolicy::new(&a.allowed_host, &a.cors_origin, api_key.is_some()).map_err(anyhow::Error::msg)?;
    let limits = a.jobs.decode_limits();
    let devices = parse_device_list(&a.model.device)?;
    let job_timeout = a.jobs.job_timeout()?;
    let test_hooks = a.jobs.test_hooks()?;
    let ack_wait = ack_wait(a.ack_wait)?;
    let source = a.model.source()?;
    let dtype = a.model.dtype()?;
    let gallery = open_gallery(&a.data, a.db.as_deref(), a.nats.as_deref(), &a.cluster)?;
    let cache = a.jobs.cache();
    let config = ServerConfig {
        api_key,
        max_upload_bytes: limits.max_bytes,
        site,
        max_connections: a.max_connections,
        max_connections_per_client: a.max_connections_per_client,
        dist: a.dist,
        shutdown_grace: a.jobs.shutdown_grace(),
        job_timeout,
        test_hooks,
        ..ServerConfig::default()
    };
    let server = match &a.nats {
        Some(url) => {
            tracing::info!(
                "web tier: jobs run on the cluster's `sf3d worker` processes (--model and --device apply there)"
            );
            let tier = WebTier::connect(url, &a.cluster, a.max_queue, ack_wait)?;
            tracing::info!(cluster = %tier.describe(), "web tier connected");
            Server::start_web_tier(Engine::without_workers(gallery, cache), config, tier, a.max_queue)?
        }
        None => {
            let background_model = a.model.background_model()?;
            let options = PipelineOptions { decode_limits: limits, background_model, ..Default::default() };
            let pipelines = load_pipelines(&source, &devices, dtype, options)?;
            let Some((first, more)) = pipelines.split_first() else { anyhow::bail!("--device names no device") };
            log_models(&pipelines);
            Server::start(Engine::with_workers(first.clone(), more.to_vec(), gallery, cache), config, a.max_queue)?
        }
    };
    let addr = SocketAddr::new(a.host, a.port);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let state = server.state.clone();
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() { "127.0.0.1".to_string() } else { local.ip().to_string() };
        eprintln!("SF3D Studio is serving http://{host}:{}/  (Ctrl-C to stop)", local.port());
        serve_http(listener, state, shutdown_signal()).await.context("server error")
    });
    // Drain the worker outside the runtime (it blocks).
    rt.shutdown_timeout(Duration::from_secs(5));
    server.stop();
    result.map(|()| ExitCode::SUCCESS)
}
