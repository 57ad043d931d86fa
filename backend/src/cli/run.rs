//! `sf3d run`: generate locally, batch over files and folders, continue past bad images.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sf3d::pipeline::{EncodeKey, Encoded, Events, Pipeline, PipelineOptions, png_bytes};
use sf3d_backend::gallery::write_atomic;
use sf3d_backend::model_source::load_pipeline;
use sf3d_backend::worker::now_rfc3339;
use sf3d_shared::GenerateParams;

use super::progress::CliProgress;
use super::{ModelArgs, ParamArgs};

/// Image extensions picked up from folders.
const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// Options of `sf3d run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Images or folders of images (png, jpg, jpeg, webp; folders in name order).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder: one sub-folder per image.
    #[arg(long, short)]
    out: PathBuf,
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Scene-code cache folder: a second run of the same image (same background mode, foreground ratio and
    /// model) skips the network.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Use each image's framing as is (skip the foreground crop), like the reference's `run_image` API — the
    /// golden sets were generated this way.
    #[arg(long)]
    no_crop: bool,
}

/// Expands folders into their images.
pub fn expand_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Output sub-folder names: the file stem, made unique with a counter.
fn unique_names(files: &[PathBuf]) -> Vec<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    files
        .iter()
        .map(|f| {
            let stem = f.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "image".into());
            let n = seen.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { stem } else { format!("{stem}-{n}") }
        })
        .collect()
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let params = a.params.params()?;
    let files = expand_inputs(&a.inputs)?;
    if files.is_empty() {
        anyhow::bail!("no images found in {:?}", a.inputs);
    }
    let options = PipelineOptions {
        crop_foreground: !a.no_crop,
        background_model: a.model.background_model()?,
        ..Default::default()
    };
    let pipeline = load_pipeline(&a.model.source()?, a.model.device()?, a.model.dtype()?, options)?;
    if pipeline.model().test_model {
        eprintln!("warning: no --model given: using the built-in test model ({})", sf3d_shared::TEST_MODEL_LABEL);
    }
    let mut failures = 0;
    for (file, name) in files.iter().zip(unique_names(&files)) {
        let dir = a.out.join(&name);
        match generate_one(&pipeline, file, &dir, &params, a.cache.as_deref()) {
            Ok(summary) => eprintln!("{}: {summary} → {}", file.display(), dir.display()),
            Err(e) => {
                failures += 1;
                eprintln!("{}: error: {e:#}", file.display());
            }
        }
    }
    if failures > 0 {
        eprintln!("{failures} of {} images failed", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn cache_paths(cache: &Path, digest: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = cache.join(digest);
    (d.join("scene_codes.safetensors"), d.join("input.png"), d.join("preprocessed.png"))
}

fn load_cached(cache: &Path, key: &EncodeKey) -> Option<Encoded> {
    let (codes, input, pre) = cache_paths(cache, &key.digest());
    let bytes = std::fs::read(&codes).ok()?;
    let load = |p: &Path| image::open(p).ok().map(|i| i.to_rgba8());
    match Encoded::from_bytes(&bytes, load(&input)?, load(&pre)?) {
        Ok(e) if &e.key == key => Some(e),
        Ok(_) => None,
        Err(e) => {
            eprintln!("warning: cache entry {} is unusable ({e}); recomputing", codes.display());
            None
        }
    }
}

fn store_cached(cache: &Path, enc: &Encoded) -> anyhow::Result<()> {
    let (codes, input, pre) = cache_paths(cache, &enc.key.digest());
    if let Some(parent) = codes.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_atomic(&input, &png_bytes(&enc.input)?)?;
    write_atomic(&pre, &png_bytes(&enc.preprocessed)?)?;
    write_atomic(&codes, &enc.to_bytes()?)?;
    Ok(())
}

fn generate_one(
    p: &Pipeline,
    file: &Path,
    dir: &Path,
    params: &GenerateParams,
    cache: Option<&Path>,
) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut events = CliProgress::new(&file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
    let key = EncodeKey::new(&bytes, params, &p.model().id, p.background_remover().name());
    let cached = cache.and_then(|c| load_cached(c, &key));
    let (encoded, mut timings) = match cached {
        Some(enc) => {
            let t = p.report_cached(&mut events as &mut dyn Events);
            (enc, t)
        }
        None => {
            let enc = p.encode(&bytes, params, &mut events)?;
            if let Some(c) = cache {
                store_cached(c, &enc).with_context(|| format!("writing the cache in {}", c.display()))?;
            }
            let t = enc.timings.clone();
            (enc, t)
        }
    };
    let ext = p.extract(&encoded, params, &mut events)?;
    drop(events);
    timings.extend(ext.timings.iter().copied());
    let mut meta = p.metadata(&encoded, &ext, params, timings, now_rfc3339());
    meta.source_name = file.file_name().map(|n| n.to_string_lossy().to_string());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join("input.png"), &png_bytes(&encoded.input)?)?;
    write_atomic(&dir.join("preprocessed.png"), &png_bytes(&encoded.preprocessed)?)?;
    write_atomic(&dir.join("mesh.glb"), &ext.glb)?;
    write_atomic(&dir.join("metadata.json"), &serde_json::to_vec_pretty(&meta)?)?;
    Ok(format!("{} vertices, {} faces, {:.0} ms", meta.vertex_count, meta.face_count, meta.total_ms))
}
