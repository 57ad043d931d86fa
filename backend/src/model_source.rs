//! Where the model comes from, and loading it into a [`Pipeline`].
//!
//! * `--model DIR`: a folder with `config.yaml` + `model.safetensors` (+ `{res}_tets.npz`, + the DINOv2 /
//!   OpenCLIP config files a non-release architecture needs).
//! * `--model hf:ORG/NAME[@REVISION]`: the Hugging Face hub through the `hf-hub` crate, honouring `HF_TOKEN`,
//!   `HF_ENDPOINT` and the usual cache (`HF_HOME`, default `~/.cache/huggingface`). The release is
//!   `hf:stabilityai/stable-fast-3d` (gated: accept the licence on the hub and set `HF_TOKEN`).
//! * nothing: the built-in test model ([`sf3d::test_model`]) — labelled as such everywhere.
//!
//! The tet grid is `{res}_tets.npz` next to the config when present (a user with the release has
//! `160_tets.npz`), otherwise a generated Freudenthal grid (see [`grid_cells_for`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use candle_core::{DType, Device};
use sf3d::config::ModelConfig;
use sf3d::mesh::tets::TetGrid;
use sf3d::model::Sf3dNetwork;
use sf3d::pipeline::{Pipeline, PipelineOptions};
use sf3d::preprocess::BackgroundRemover;
use sf3d::u2net::U2Net;
use sf3d_shared::{DeviceInfo, DeviceKind, ModelInfo, STABILITY_ATTRIBUTION};

/// The hub repository of the release.
pub const RELEASE_REPO: &str = "stabilityai/stable-fast-3d";
/// Files a hub model folder may have besides `config.yaml` and `model.safetensors`.
const OPTIONAL_FILES: [&str; 1] = ["open_clip_config.json"];

/// A model source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The built-in random-weight test model.
    Builtin,
    /// The release architecture with seeded random weights, its density head calibrated at load on the
    /// built-in picture: what the full-size benchmarks serve where the release weights are not at hand (shapes
    /// are as meaningless as the test model's; the time and memory are the release's).
    BuiltinFullSize,
    /// A local folder.
    Dir(PathBuf),
    /// A hub repository.
    Hub {
        /// `org/name`.
        repo: String,
        /// Branch, tag or commit (default `main`).
        revision: Option<String>,
    },
}

impl FromStr for ModelSource {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if s.is_empty() || s == "builtin" || s == "builtin-test" {
            return Ok(ModelSource::Builtin);
        }
        if s == FULL_SIZE_ID {
            return Ok(ModelSource::BuiltinFullSize);
        }
        if let Some(rest) = s.strip_prefix("hf:") {
            let (repo, revision) = match rest.split_once('@') {
                Some((r, v)) => (r, Some(v.to_string())),
                None => (rest, None),
            };
            if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
                bail!("hub model {s:?} must look like hf:ORG/NAME[@REVISION]");
            }
            return Ok(ModelSource::Hub { repo: repo.to_string(), revision });
        }
        Ok(ModelSource::Dir(PathBuf::from(s)))
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Builtin => f.write_str(sf3d::test_model::TEST_MODEL_ID),
            ModelSource::BuiltinFullSize => f.write_str(FULL_SIZE_ID),
            ModelSource::Dir(p) => write!(f, "{}", p.display()),
            ModelSource::Hub { repo, revision: Some(r) } => write!(f, "hf:{repo}@{r}"),
            ModelSource::Hub { repo, revision: None } => write!(f, "hf:{repo}"),
        }
    }
}

/// The id of [`ModelSource::BuiltinFullSize`].
pub const FULL_SIZE_ID: &str = "builtin-full-size";

/// The release architecture with seeded random weights on `device` (uncalibrated: see
/// [`sf3d::test_model::calibrate_density`]).
pub fn full_size_random_pipeline(
    device: Device,
    device_info: DeviceInfo,
    dtype: DType,
    options: PipelineOptions,
) -> anyhow::Result<Pipeline> {
    let cfg = ModelConfig::release();
    let res = cfg.sf3d.isosurface_resolution;
    let net = sf3d::test_model::shaped_random_model(cfg, 7, &device, dtype)?;
    let grid = TetGrid::freudenthal(grid_cells_for(res))?;
    let model = ModelInfo {
        id: FULL_SIZE_ID.into(),
        test_model: true,
        attribution: None,
        dtype: format!("{dtype:?}").to_lowercase(),
    };
    Ok(Pipeline::new(net, grid, model, device_info, options))
}

/// Device selection: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when the binary has it and a GPU is present and opens, else CPU (with a warning when a GPU failed).
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// GPU `N`.
    Cuda(usize),
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => Ok(Self::Cuda(n)),
                None => bail!("unknown device {other:?}: use auto, cpu, cuda or cuda:N"),
            },
        }
    }
}

/// `--device` of `sf3d serve`: one entry per worker, comma-separated (`cuda:0,cuda:1`, `cpu,cpu`). `auto` alone
/// means every visible GPU that this binary can use, else one CPU worker.
pub fn parse_device_list(s: &str) -> anyhow::Result<Vec<DeviceChoice>> {
    let list = s.split(',').map(str::parse).collect::<anyhow::Result<Vec<DeviceChoice>>>()?;
    if list.len() > 1 && list.contains(&DeviceChoice::Auto) {
        bail!("--device {s:?}: `auto` stands alone (it already means every GPU)");
    }
    if list.len() > MAX_WORKERS {
        bail!("--device {s:?}: at most {MAX_WORKERS} workers");
    }
    Ok(match list.as_slice() {
        [DeviceChoice::Auto] => {
            visible_gpus().map_or(vec![DeviceChoice::Auto], |n| (0..n).map(DeviceChoice::Cuda).collect())
        }
        _ => list,
    })
}

/// Most workers one process runs.
pub const MAX_WORKERS: usize = 16;

/// How many GPUs `auto` would use: `None` when none is usable by this binary.
fn visible_gpus() -> Option<usize> {
    #[cfg(feature = "cuda")]
    {
        use crate::doctor::{Build, Driver, gpu_usable, probe_host};
        let (build, host) = (Build::current(), probe_host());
        if gpu_usable(&build, &host)
            && let Driver::Ready { gpus, .. } = &host.driver
            && !gpus.is_empty()
        {
            return Some(gpus.len());
        }
    }
    None
}

/// One pipeline per entry of `devices` (from [`parse_device_list`]): each distinct device loads the weights
/// once, all devices in parallel; entries naming the same device share its pipeline.
pub fn load_pipelines(
    source: &ModelSource,
    devices: &[DeviceChoice],
    dtype: Option<DType>,
    options: PipelineOptions,
) -> anyhow::Result<Vec<std::sync::Arc<Pipeline>>> {
    if let ModelSource::Hub { repo, revision } = source {
        // Download once, before the loaders (each finds it in the cache then).
        download_hub(repo, revision.as_deref())?;
    }
    let mut distinct: Vec<DeviceChoice> = Vec::new();
    for d in devices {
        if !distinct.contains(d) {
            distinct.push(*d);
        }
    }
    let loaded: Vec<anyhow::Result<Pipeline>> = std::thread::scope(|scope| {
        let handles: Vec<_> = distinct
            .iter()
            .map(|&d| {
                let options = options.clone();
                scope.spawn(move || load_pipeline(source, d, dtype, options))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("loading the model panicked"))))
            .collect()
    });
    let mut by_device = Vec::new();
    for (d, p) in distinct.iter().zip(loaded) {
        by_device.push((*d, std::sync::Arc::new(p.with_context(|| format!("device {d}"))?)));
    }
    Ok(devices.iter().filter_map(|d| by_device.iter().find(|(b, _)| b == d).map(|(_, p)| p.clone())).collect())
}

/// The candle device and its description.
pub fn open_device(choice: DeviceChoice) -> anyhow::Result<(Device, DeviceInfo)> {
    let cpu = || {
        let threads = rayon_threads();
        (
            Device::Cpu,
            DeviceInfo { kind: DeviceKind::Cpu, name: format!("cpu ({threads} threads)"), memory_total_bytes: None },
        )
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Auto => {
            // A GPU that is present but cannot be opened (driver/library mismatch, a busy or broken device) is
            // worth a warning, not a dead server: `auto` means "the best that works". `--device cuda` stays strict.
            #[cfg(feature = "cuda")]
            {
                use crate::doctor::{Build, gpu_usable, probe_host, verdict};
                let (build, host) = (Build::current(), probe_host());
                if !gpu_usable(&build, &host) {
                    tracing::warn!("--device auto: {}", verdict(&build, &host));
                    return Ok(cpu());
                }
            }
            #[cfg(feature = "cuda")]
            if candle_core::utils::cuda_is_available() {
                match cuda_device(0) {
                    Ok(opened) => return Ok(opened),
                    Err(e) => tracing::warn!(
                        "--device auto: found a CUDA device but could not use it ({e:#}); running on the CPU"
                    ),
                }
            }
            Ok(cpu())
        }
        DeviceChoice::Cuda(n) => cuda_device(n),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(n: usize) -> anyhow::Result<(Device, DeviceInfo)> {
    let dev = Device::new_cuda(n).with_context(|| format!("cannot open CUDA device {n}"))?;
    let (name, memory) = match &dev {
        Device::Cuda(c) => {
            let ctx = c.cuda_stream().context().clone();
            (ctx.name().unwrap_or_else(|_| "NVIDIA GPU".into()), ctx.total_mem().ok().map(|m| m as u64))
        }
        _ => ("NVIDIA GPU".into(), None),
    };
    Ok((dev, DeviceInfo { kind: DeviceKind::Cuda, name: format!("cuda:{n} {name}"), memory_total_bytes: memory }))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(n: usize) -> anyhow::Result<(Device, DeviceInfo)> {
    bail!(
        "device cuda:{n} requested, but this binary was built without CUDA (rebuild with --features cuda, see scripts/build-cuda.sh)"
    )
}

/// Device memory in use right now (all processes), for peak tracking in benchmarks; `None` off CUDA.
pub fn gpu_used_bytes(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(c) = device {
        let ctx = c.cuda_stream().context().clone();
        return ctx.mem_get_info().ok().map(|(free, total)| (total - free) as u64);
    }
    let _ = device;
    None
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// Cells per axis of a generated tet grid for `isosurface_resolution` `res`: `res / 2` for the release-sized
/// grids (res ≥ 64), which gives the release grid's budget (res 160 → 80³ cells, 531k vertices, 3.07M tets,
/// against Quartet's ≈540k / 3.0M); `res` itself for small test resolutions. The deformation scale stays `1/res`.
pub fn grid_cells_for(res: usize) -> usize {
    if res >= 64 { res / 2 } else { res }
}

/// The tet grid for a model folder.
pub fn tet_grid(dir: Option<&Path>, res: usize) -> anyhow::Result<TetGrid> {
    if let Some(dir) = dir {
        let npz = dir.join(format!("{res}_tets.npz"));
        if npz.is_file() {
            return TetGrid::load_npz(&npz).with_context(|| format!("loading {}", npz.display()));
        }
    }
    let cells = grid_cells_for(res);
    tracing::info!(res, cells, "no {res}_tets.npz next to the config: generating a Freudenthal grid");
    Ok(TetGrid::freudenthal(cells)?)
}

/// Downloads (or finds in the cache) a hub model and returns the local folder holding its files.
pub fn download_hub(repo: &str, revision: Option<&str>) -> anyhow::Result<PathBuf> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let mut builder = ApiBuilder::from_env().with_progress(true);
    if let Ok(token) = std::env::var("HF_TOKEN")
        && !token.is_empty()
    {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().context("cannot set up the Hugging Face client")?;
    let repo = match revision {
        Some(r) => Repo::with_revision(repo.to_string(), RepoType::Model, r.to_string()),
        None => Repo::new(repo.to_string(), RepoType::Model),
    };
    let api = api.repo(repo.clone());
    let get = |f: &str| api.get(f).with_context(|| format!("downloading {f} from hf:{}", repo.url()));
    let config = get("config.yaml")?;
    get("model.safetensors")?;
    let dir = config.parent().map(Path::to_path_buf).context("hub cache path without parent")?;
    let cfg = sf3d::config::Sf3dConfig::from_yaml_str(&std::fs::read_to_string(&config)?, "config.yaml")?;
    // Optional companions: architecture files of non-release sub-backbones, and the tet grid.
    let dino = cfg.image_tokenizer.pretrained_model_name_or_path.clone();
    let mut optional: Vec<String> = OPTIONAL_FILES.iter().map(|s| s.to_string()).collect();
    if dino != "facebook/dinov2-large" {
        optional.push(format!("{dino}/config.json"));
    }
    optional.push(format!("{}_tets.npz", cfg.isosurface_resolution));
    for f in optional {
        match api.get(&f) {
            Ok(_) => tracing::info!(file = %f, "downloaded"),
            Err(e) => tracing::debug!(file = %f, error = %e, "optional model file not on the hub"),
        }
    }
    Ok(dir)
}

/// Whether a config is the release architecture (so the weights are Stability AI's and need attribution).
fn is_release_architecture(cfg: &ModelConfig) -> bool {
    cfg.sf3d.image_tokenizer.pretrained_model_name_or_path == "facebook/dinov2-large"
        && cfg.sf3d.image_estimator.model == "ViT-B-32"
}

/// Loads the model named by `source` onto `device`, and the U²-Net of `options.background_model` (if any) onto
/// the same device.
pub fn load_pipeline(
    source: &ModelSource,
    choice: DeviceChoice,
    dtype: Option<DType>,
    options: PipelineOptions,
) -> anyhow::Result<Pipeline> {
    let background_model = options.background_model.clone();
    let mut p = load_network(source, choice, dtype, options)?;
    if let Some(path) = background_model {
        attach_background_model(&mut p, &path)?;
    }
    Ok(p)
}

/// Loads the U²-Net ONNX file at `path` onto `p`'s device and makes it `p`'s background remover.
pub fn attach_background_model(p: &mut Pipeline, path: &Path) -> anyhow::Result<()> {
    let device = p.network().device().clone();
    let net = U2Net::load(path, &device)
        .with_context(|| format!("loading the background removal model {}", path.display()))?;
    tracing::info!(
        variant = net.variant().name(),
        device = %p.device().name,
        "background removal: U²-Net from {}",
        path.display()
    );
    p.set_background_remover(BackgroundRemover::U2Net(std::sync::Arc::new(net)));
    Ok(())
}

/// The network part of [`load_pipeline`].
fn load_network(
    source: &ModelSource,
    choice: DeviceChoice,
    dtype: Option<DType>,
    options: PipelineOptions,
) -> anyhow::Result<Pipeline> {
    let (device, device_info) = open_device(choice)?;
    let dtype = dtype.unwrap_or(if device.is_cuda() { DType::BF16 } else { DType::F32 });
    let dtype_name = format!("{dtype:?}").to_lowercase();
    match source {
        ModelSource::BuiltinFullSize => {
            tracing::warn!("building the release architecture with random weights on {}", device_info.name);
            let mut p = full_size_random_pipeline(device, device_info, dtype, options)?;
            let image = sf3d::pipeline::png_bytes(&sf3d::test_model::bench_image(512))?;
            let enc = p.encode(&image, &sf3d_shared::GenerateParams::default(), &mut sf3d::pipeline::NoEvents)?;
            let grid = p.grid().clone();
            sf3d::test_model::calibrate_density(p.network_mut(), &enc.scene_codes, &grid)?;
            Ok(p)
        }
        ModelSource::Builtin => {
            tracing::warn!("no model configured: using the built-in test model ({})", sf3d_shared::TEST_MODEL_LABEL);
            let (net, grid) = sf3d::test_model::build_test_model(&device)?;
            let info = ModelInfo { id: source.to_string(), test_model: true, attribution: None, dtype: "f32".into() };
            Ok(Pipeline::new(net, grid, info, device_info, options))
        }
        ModelSource::Dir(_) | ModelSource::Hub { .. } => {
            let dir = match source {
                ModelSource::Dir(d) => d.clone(),
                ModelSource::Hub { repo, revision } => download_hub(repo, revision.as_deref())?,
                ModelSource::Builtin | ModelSource::BuiltinFullSize => unreachable!("handled above"),
            };
            let cfg = ModelConfig::from_dir(&dir)
                .with_context(|| format!("reading the model config in {}", dir.display()))?;
            let release = is_release_architecture(&cfg);
            let res = cfg.sf3d.isosurface_resolution;
            let (net, report) = Sf3dNetwork::load_with_config(cfg, &dir.join("model.safetensors"), &device, dtype)
                .with_context(|| format!("loading the weights in {}", dir.display()))?;
            tracing::info!(
                tensors = report.checkpoint_tensors,
                dtypes = ?report.checkpoint_dtypes,
                unused = report.unused.len(),
                "model loaded from {}",
                dir.display()
            );
            let grid = tet_grid(Some(&dir), res)?;
            let id = match source {
                ModelSource::Dir(d) => {
                    d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| d.display().to_string())
                }
                other => other.to_string(),
            };
            let info = ModelInfo {
                id,
                test_model: false,
                attribution: release.then(|| STABILITY_ATTRIBUTION.to_string()),
                dtype: dtype_name,
            };
            Ok(Pipeline::new(net, grid, info, device_info, options))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!("".parse::<ModelSource>().unwrap(), ModelSource::Builtin);
        assert_eq!(
            "hf:stabilityai/stable-fast-3d@v1".parse::<ModelSource>().unwrap(),
            ModelSource::Hub { repo: RELEASE_REPO.into(), revision: Some("v1".into()) }
        );
        assert!("hf:nope".parse::<ModelSource>().is_err());
        assert_eq!("./m".parse::<ModelSource>().unwrap(), ModelSource::Dir("./m".into()));
        assert_eq!(FULL_SIZE_ID.parse::<ModelSource>().unwrap(), ModelSource::BuiltinFullSize);
        assert_eq!(ModelSource::BuiltinFullSize.to_string(), FULL_SIZE_ID);
        assert_eq!("cuda:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert_eq!(parse_device_list("cpu,cpu").unwrap(), [DeviceChoice::Cpu, DeviceChoice::Cpu]);
        assert_eq!(parse_device_list("cuda:0, cuda:1").unwrap(), [DeviceChoice::Cuda(0), DeviceChoice::Cuda(1)]);
        assert!(parse_device_list("auto,cpu").is_err());
        assert!(parse_device_list("cpu,").is_err());
        assert!(parse_device_list(&vec!["cpu"; MAX_WORKERS + 1].join(",")).is_err());
    }

    #[test]
    fn grid_budget() {
        assert_eq!(grid_cells_for(160), 80);
        assert_eq!(grid_cells_for(32), 32);
    }
}
