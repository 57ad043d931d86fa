//! Argument parsing and the subcommands of the `sf3d` binary (anyhow at this edge; exit codes here).

mod bench;
mod bench_serve;
mod progress;
mod remote;
mod run;
mod serve;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use clap::{Args, Parser, Subcommand};
use sf3d::preprocess::{BgModel, U2NET_FILE};
use sf3d_backend::cluster::ClusterName;
use sf3d_backend::gallery::{FilesConfig, Gallery, GalleryConfig, IndexConfig};
use sf3d_backend::model_source::{DeviceChoice, ModelSource};
use sf3d_shared::{BackgroundMode, GenerateParams, RemeshOption};

/// SF3D Studio: single image → textured, UV-unwrapped PBR GLB (Stable Fast 3D in Rust).
#[derive(Debug, Parser)]
#[command(name = "sf3d", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the web UI, the WebSocket job protocol and the REST API (with --nats: a web tier of a cluster).
    Serve(serve::ServeArgs),
    /// Run jobs of a cluster: take them from its NATS queue, store results in its gallery.
    Worker(worker::WorkerArgs),
    /// Generate meshes locally: writes <out>/<name>/{input.png, preprocessed.png, mesh.glb, metadata.json}.
    Run(run::RunArgs),
    /// Generate meshes on a running `sf3d serve` and save them here.
    Remote(remote::RemoteArgs),
    /// Per-stage timings (min/median) and peak memory.
    Bench(bench::BenchArgs),
    /// Throughput (jobs/min) and latency (p50/p95) of a running `sf3d serve`, measured as a client.
    BenchServe(bench_serve::BenchServeArgs),
    /// Compare every stage with a golden set of the reference implementation.
    CheckGolden(CheckGoldenArgs),
    /// What this binary was built for, what the host's NVIDIA driver and GPUs are, and whether they fit.
    Doctor,
}

/// Where the model comes from and where it runs.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model: a folder with config.yaml + model.safetensors, `hf:ORG/NAME[@REV]` (e.g.
    /// hf:stabilityai/stable-fast-3d), or nothing for the built-in test model.
    #[arg(long, env = "SF3D_MODEL", default_value = "")]
    pub model: String,
    /// Device: auto, cpu, cuda or cuda:N. `serve` takes a comma-separated list, one worker each
    /// (`cuda:0,cuda:1`; `auto` = every usable GPU, else one CPU worker).
    #[arg(long, env = "SF3D_DEVICE", default_value = "auto")]
    pub device: String,
    /// Compute dtype of the transformer stack: f32 (default on CPU) or bf16 (default on CUDA).
    #[arg(long, env = "SF3D_DTYPE")]
    pub dtype: Option<String>,
    /// Background remover: `auto` (rembg's U²-Net from $U2NET_HOME/u2net.onnx or ~/.u2net/u2net.onnx when
    /// there, else the built-in remover), `builtin`, or the path of a u2net/u2netp ONNX file.
    #[arg(long, env = "SF3D_BG_MODEL", default_value = "auto")]
    pub bg_model: String,
}

impl ModelArgs {
    pub fn source(&self) -> anyhow::Result<ModelSource> {
        self.model.parse()
    }

    pub fn device(&self) -> anyhow::Result<DeviceChoice> {
        self.device.parse()
    }

    pub fn dtype(&self) -> anyhow::Result<Option<candle_core::DType>> {
        match self.dtype.as_deref() {
            None => Ok(None),
            Some("f32") => Ok(Some(candle_core::DType::F32)),
            Some("bf16") => Ok(Some(candle_core::DType::BF16)),
            Some("f16") => Ok(Some(candle_core::DType::F16)),
            Some(other) => anyhow::bail!("unknown dtype {other:?}: use f32, bf16 or f16"),
        }
    }

    /// The U²-Net file `--bg-model` names or `auto` finds; `None` for the built-in remover (logged once when
    /// `auto` found no file).
    pub fn background_model(&self) -> anyhow::Result<Option<PathBuf>> {
        let choice: BgModel = self.bg_model.parse().map_err(|e| anyhow::anyhow!("--bg-model: {e}"))?;
        let file = choice.file_from_env();
        if choice == BgModel::Auto && file.is_none() {
            tracing::warn!(
                "background removal: no {U2NET_FILE} in $U2NET_HOME or ~/.u2net; using the built-in remover \
                 (plain backdrops; rembg's U²-Net handles photos: see README)"
            );
        }
        Ok(file)
    }
}

/// How a server's or worker process's jobs run (`serve` and `worker` share these).
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Largest upload in megabytes.
    #[arg(long, env = "SF3D_MAX_UPLOAD_MB", default_value_t = 20)]
    pub max_upload_mb: u64,
    /// Largest image in megapixels.
    #[arg(long, env = "SF3D_MAX_MEGAPIXELS", default_value_t = 40)]
    pub max_megapixels: u64,
    /// Memory budget of the scene-code cache in megabytes.
    #[arg(long, env = "SF3D_CACHE_MB", default_value_t = 2048)]
    pub cache_mb: u64,
    /// Seconds running jobs may take to finish when the process stops; then they are cancelled (a server runs
    /// them again at its next start, a worker process hands them to another worker).
    #[arg(long, env = "SF3D_SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Seconds a job may run before it fails with deadline_exceeded (default: 600 on the CPU, 60 on a GPU).
    #[arg(long, env = "SF3D_JOB_TIMEOUT")]
    pub job_timeout: Option<f64>,
    /// Failure injection for the own tests (panic-on-first-take, stall-first-job=MS, stall-after-store=MS).
    #[arg(long, hide = true)]
    pub test_hook: Vec<String>,
}

impl JobArgs {
    /// The image limits.
    pub fn decode_limits(&self) -> sf3d::preprocess::DecodeLimits {
        sf3d::preprocess::DecodeLimits {
            max_bytes: self.max_upload_mb * 1_000_000,
            max_pixels: self.max_megapixels * 1_000_000,
        }
    }

    /// The scene-code cache.
    pub fn cache(&self) -> sf3d_backend::cache::EncodeCache {
        sf3d_backend::cache::EncodeCache::new((self.cache_mb * 1_000_000) as usize)
    }

    /// `--shutdown-grace`.
    pub fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_grace)
    }

    /// `--job-timeout`: seconds between 0 and a week (`None`: the device's default).
    pub fn job_timeout(&self) -> anyhow::Result<Option<std::time::Duration>> {
        match self.job_timeout {
            None => Ok(None),
            Some(s) if s.is_finite() && s > 0.0 && s <= 7.0 * 86_400.0 => {
                Ok(Some(std::time::Duration::from_secs_f64(s)))
            }
            Some(s) => anyhow::bail!("--job-timeout {s}: give seconds between 0 and a week"),
        }
    }

    /// `--test-hook` values.
    pub fn test_hooks(&self) -> anyhow::Result<sf3d_backend::worker::TestHooks> {
        let mut hooks = sf3d_backend::worker::TestHooks::default();
        for h in &self.test_hook {
            hooks.add(h).map_err(anyhow::Error::msg)?;
        }
        Ok(hooks)
    }
}

/// `--ack-wait`: seconds between 1 and an hour.
pub fn ack_wait(seconds: f64) -> anyhow::Result<Duration> {
    if seconds.is_finite() && (1.0..=3600.0).contains(&seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        anyhow::bail!("--ack-wait {seconds}: give seconds between 1 and 3600")
    }
}

/// Opens the gallery: the index in `db` (PostgreSQL) or DATA/gallery.sqlite3, the files in NATS or DATA/meshes.
pub fn open_gallery(
    data: &std::path::Path,
    db: Option<&str>,
    nats: Option<&str>,
    cluster: &ClusterName,
) -> anyhow::Result<Arc<Gallery>> {
    let storage = GalleryConfig {
        index: match db {
            Some(url) => IndexConfig::Postgres { url: url.to_string(), cluster: cluster.clone() },
            None => IndexConfig::Sqlite,
        },
        files: match nats {
            Some(url) => FilesConfig::Nats { url: url.to_string(), cluster: cluster.clone() },
            None => FilesConfig::Folder,
        },
    };
    let gallery = Gallery::open_with(data, &storage)
        .with_context(|| format!("opening the gallery ({storage:?}, data folder {})", data.display()))?;
    tracing::info!(gallery = %gallery.describe(), "gallery ready");
    Ok(Arc::new(gallery))
}

/// Logs each worker's model and device (and the test model's warning).
pub fn log_models(pipelines: &[Arc<sf3d::pipeline::Pipeline>]) {
    for (i, p) in pipelines.iter().enumerate() {
        tracing::info!(worker = i, model = %p.model().id, device = %p.device().name, "model ready");
    }
    if pipelines.first().is_some_and(|p| p.model().test_model) {
        tracing::warn!("{}", sf3d_shared::TEST_MODEL_LABEL);
    }
}

/// SF3D's generation options.
#[derive(Debug, Clone, Args)]
pub struct ParamArgs {
    /// Texture side in texels (512–2048).
    #[arg(long, default_value_t = GenerateParams::TEXTURE_RESOLUTION_DEFAULT)]
    pub texture_resolution: u32,
    /// Fraction of the image the object spans (0.5–1.0).
    #[arg(long, default_value_t = GenerateParams::FOREGROUND_RATIO_DEFAULT)]
    pub foreground_ratio: f32,
    /// Remeshing: none, triangle or quad.
    #[arg(long, default_value = "none")]
    pub remesh: String,
    /// Target vertex count: -1 (keep) or 100–20000.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub vertex_count: i32,
    /// Background removal: auto, always or never.
    #[arg(long, default_value = "auto")]
    pub background: String,
}

impl ParamArgs {
    pub fn params(&self) -> anyhow::Result<GenerateParams> {
        let p = GenerateParams {
            texture_resolution: self.texture_resolution,
            foreground_ratio: self.foreground_ratio,
            remesh: self.remesh.parse::<RemeshOption>()?,
            vertex_count: self.vertex_count,
            background: self.background.parse::<BackgroundMode>()?,
            preview: false,
        };
        p.validate()?;
        Ok(p)
    }
}

#[derive(Debug, Args)]
struct CheckGoldenArgs {
    /// The golden folder (config.yaml, model.safetensors, golden.safetensors, …).
    #[arg(env = "SF3D_GOLDEN", default_value = "../shared/golden/tiny-a")]
    dir: PathBuf,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute dtype of the transformer stack: f32 (tolerance 1e-4) or bf16 (the CUDA default; stated
    /// per-tensor tolerances).
    #[arg(long, default_value = "f32")]
    dtype: String,
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info,tower_http=warn,hf_hub=warn",
        1 => "debug,hyper=info,h2=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => serve::serve(a),
        Command::Worker(a) => worker::worker(a),
        Command::Run(a) => run::run(a),
        Command::Remote(a) => remote::remote(a),
        Command::Bench(a) => bench::bench(a),
        Command::BenchServe(a) => bench_serve::bench_serve(a),
        Command::CheckGolden(a) => check_golden(a),
        Command::Doctor => {
            use sf3d_backend::doctor::{Build, probe_host, report};
            println!("{}", report(&Build::current(), &probe_host()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check_golden(a: CheckGoldenArgs) -> anyhow::Result<ExitCode> {
    let (device, info) = sf3d_backend::model_source::open_device(a.device.parse()?)?;
    eprintln!("checking {} on {}", a.dir.display(), info.name);
    let dtype = match a.dtype.as_str() {
        "f32" => candle_core::DType::F32,
        "bf16" => candle_core::DType::BF16,
        "f16" => candle_core::DType::F16,
        other => anyhow::bail!("unknown dtype {other:?}: use f32, bf16 or f16"),
    };
    let report = sf3d::parity::check_golden_with(&a.dir, &device, dtype)?;
    println!("{report}");
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
