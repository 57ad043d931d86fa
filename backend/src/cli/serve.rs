//! `sf3d serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sf3d::pipeline::PipelineOptions;
use sf3d::preprocess::DecodeLimits;
use sf3d_backend::cache::EncodeCache;
use sf3d_backend::gallery::Gallery;
use sf3d_backend::model_source::load_pipeline;
use sf3d_backend::worker::Engine;
use sf3d_backend::{Server, ServerConfig, check_bind, serve as serve_http, shutdown_signal};

use super::ModelArgs;

/// Options of `sf3d serve` (each also from an environment variable).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind. Anything but loopback requires --api-key.
    #[arg(long, env = "SF3D_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (9299: the seed's).
    #[arg(long, env = "SF3D_PORT", default_value_t = 9299)]
    port: u16,
    /// Data folder: gallery.sqlite3 and meshes/.
    #[arg(long, env = "SF3D_DATA", default_value = "sf3d-data")]
    data: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// API key required from clients (Authorization: Bearer KEY; ?token=KEY on the WebSocket).
    #[arg(long, env = "SF3D_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Waiting jobs before new requests get queue_full / 429.
    #[arg(long, env = "SF3D_MAX_QUEUE", default_value_t = 16)]
    max_queue: u32,
    /// Largest upload in megabytes.
    #[arg(long, env = "SF3D_MAX_UPLOAD_MB", default_value_t = 20)]
    max_upload_mb: u64,
    /// Largest image in megapixels.
    #[arg(long, env = "SF3D_MAX_MEGAPIXELS", default_value_t = 40)]
    max_megapixels: u64,
    /// Origins allowed to call the API from browsers (repeatable; default: same origin only).
    #[arg(long, env = "SF3D_CORS_ORIGIN", value_delimiter = ',')]
    cors_origin: Vec<String>,
    /// The built web UI (Trunk's dist/).
    #[arg(long, env = "SF3D_DIST")]
    dist: Option<PathBuf>,
    /// Memory budget of the scene-code cache in megabytes.
    #[arg(long, env = "SF3D_CACHE_MB", default_value_t = 2048)]
    cache_mb: u64,
    /// Seconds a running job may take to finish at shutdown before it is cancelled.
    #[arg(long, env = "SF3D_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
}

pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let api_key = a.api_key.filter(|k| !k.is_empty());
    if let Err(msg) = check_bind(a.host, api_key.as_deref()) {
        anyhow::bail!(msg);
    }
    let limits = DecodeLimits { max_bytes: a.max_upload_mb * 1_000_000, max_pixels: a.max_megapixels * 1_000_000 };
    let options = PipelineOptions { decode_limits: limits, ..Default::default() };
    let pipeline = load_pipeline(&a.model.source()?, a.model.device()?, a.model.dtype()?, options)?;
    tracing::info!(model = %pipeline.model().id, device = %pipeline.device().name, "model ready");
    if pipeline.model().test_model {
        tracing::warn!("{}", sf3d_shared::TEST_MODEL_LABEL);
    }
    let gallery =
        Arc::new(Gallery::open(&a.data).with_context(|| format!("opening the gallery in {}", a.data.display()))?);
    let engine = Engine { pipeline, gallery, cache: EncodeCache::new((a.cache_mb * 1_000_000) as usize) };
    let config = ServerConfig {
        api_key,
        max_upload_bytes: limits.max_bytes,
        cors_origins: a.cors_origin,
        dist: a.dist,
        shutdown_grace: Duration::from_secs(a.shutdown_grace),
        ..ServerConfig::default()
    };
    let server = Server::start(engine, config, a.max_queue)?;
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
