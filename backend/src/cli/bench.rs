//! `sf3d bench`: per-stage wall times (min / median over runs after a warm-up), peak memory, and the cost of a
//! re-extract from cached scene codes against a full run. Speed targets live here, never in tests.
//!
//! `--full-size` builds the release architecture with seeded random weights (shaped like the test model's, and
//! the density head calibrated on the bench image's scene codes during the warm-up, so that the mesh stages have
//! a surface to work on; the calibration is not timed).
//!
//! Beside each stage's wall time the bench prints the CPU time the whole process spent in it (all threads),
//! and their ratio: how many cores the stage kept busy.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use sf3d::pipeline::{Encoded, NoEvents, Pipeline, PipelineOptions, png_bytes};
use sf3d::pipeline::{Events, StageEvent};
use sf3d_backend::model_source::{
    attach_background_model, full_size_random_pipeline, gpu_used_bytes, load_pipeline, open_device,
};
use sf3d_shared::{ModelInfo, RemeshOption, Stage, StageState};

use super::{ModelArgs, ParamArgs};

/// Options of `sf3d bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark the release architecture with random weights instead of --model.
    #[arg(long)]
    full_size: bool,
    /// Timed runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Untimed warm-up runs before them.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Input image (default: a synthetic 512² product-like image).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Score-matrix budget of the chunked attention, in elements (default 64 Mi).
    #[arg(long)]
    attention_budget: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    params: ParamArgs,
}

#[derive(Debug, Serialize)]
struct StageStat {
    stage: Stage,
    min_ms: f64,
    median_ms: f64,
    /// Process CPU time (user + system, all threads) during the stage, median over the timed runs.
    cpu_median_ms: f64,
    state: StageState,
}

#[derive(Debug, Serialize)]
struct Tweak {
    full_run_ms: f64,
    reextract_ms: f64,
    ratio: f64,
    changed: String,
}

#[derive(Debug, Serialize)]
struct Report {
    model: ModelInfo,
    device: String,
    runs: usize,
    texture_resolution: u32,
    attention_budget: usize,
    stages: Vec<StageStat>,
    total_min_ms: f64,
    total_median_ms: f64,
    network_median_ms: f64,
    non_network_median_ms: f64,
    vertices: usize,
    faces: usize,
    peak_rss_bytes: Option<u64>,
    /// Peak device memory in use, sampled at every stage event (CUDA only).
    gpu_peak_bytes: Option<u64>,
    tweak: Option<Tweak>,
}

/// Samples device memory at every stage event (GPU peak) and the process CPU time at each stage's start and
/// end; discards the events otherwise.
struct StageSampler<'a> {
    device: &'a candle_core::Device,
    peak: Option<u64>,
    started_cpu_ms: Option<f64>,
    cpu_ms: Vec<(Stage, f64)>,
}

impl Events for StageSampler<'_> {
    fn emit(&mut self, event: StageEvent) {
        if let Some(used) = gpu_used_bytes(self.device) {
            self.peak = Some(self.peak.map_or(used, |p| p.max(used)));
        }
        match event.state {
            StageState::Started => self.started_cpu_ms = process_cpu_ms(),
            StageState::Finished => {
                if let (Some(start), Some(now)) = (self.started_cpu_ms.take(), process_cpu_ms()) {
                    self.cpu_ms.push((event.stage, now - start));
                }
            }
            _ => {}
        }
    }
}

/// CPU time of this process so far (user + system, every thread), from `/proc/self/stat` (Linux; clock ticks
/// of 1/100 s, the fixed `USER_HZ` of the proc interface).
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// Peak resident set size of this process (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn network_stage(s: Stage) -> bool {
    matches!(
        s,
        Stage::EncodeImage
            | Stage::Backbone
            | Stage::Triplane
            | Stage::EstimateMaterial
            | Stage::ExtractMesh
            | Stage::BakeTexture
    )
}

fn full_size_pipeline(a: &BenchArgs) -> anyhow::Result<Pipeline> {
    let (device, info) = open_device(a.model.device()?)?;
    let dtype =
        a.model.dtype()?.unwrap_or(if device.is_cuda() { candle_core::DType::BF16 } else { candle_core::DType::F32 });
    eprintln!("building the full-size network with random weights ({dtype:?}, {})…", info.name);
    let t = Instant::now();
    let p = full_size_random_pipeline(device, info, dtype, PipelineOptions::default())?;
    eprintln!("  built in {:.1?}", t.elapsed());
    Ok(p)
}

pub fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let params = a.params.params()?;
    let mut pipeline = if a.full_size {
        full_size_pipeline(&a)?
    } else {
        load_pipeline(&a.model.source()?, a.model.device()?, a.model.dtype()?, PipelineOptions::default())?
    };
    if let Some(path) = a.model.background_model()? {
        attach_background_model(&mut pipeline, &path)?;
    }
    if let Some(b) = a.attention_budget {
        pipeline.network_mut().attention.max_score_elements = b;
    }
    let bytes = match &a.image {
        Some(p) => std::fs::read(p)?,
        None => png_bytes(&sf3d::test_model::bench_image(512))?,
    };

    // Random full-size weights need their density head calibrated on this image's scene codes before the
    // mesh stages have a surface; that happens once, between the first encode and extract, untimed.
    let mut calibrated = !a.full_size;
    let mut gpu_peak: Option<u64> = None;
    let mut per_stage: Vec<(Stage, Vec<f64>, StageState)> = Vec::new();
    let mut cpu_per_stage: Vec<(Stage, Vec<f64>)> = Vec::new();
    let mut totals = Vec::new();
    let mut last: Option<(Encoded, usize, usize)> = None;
    for run in 0..a.warmup + a.runs.max(1) {
        let timed = run >= a.warmup;
        let t = Instant::now();
        let device = pipeline.network().device().clone();
        let mut sampler = StageSampler { device: &device, peak: gpu_peak, started_cpu_ms: None, cpu_ms: Vec::new() };
        let enc = pipeline.encode(&bytes, &params, &mut sampler)?;
        let encode_ms = t.elapsed().as_secs_f64() * 1e3;
        if !calibrated {
            let grid = pipeline.grid().clone();
            sf3d::test_model::calibrate_density(pipeline.network_mut(), &enc.scene_codes, &grid)?;
            calibrated = true;
        }
        let t = Instant::now();
        let ext = pipeline.extract(&enc, &params, &mut sampler)?;
        let total = encode_ms + t.elapsed().as_secs_f64() * 1e3;
        gpu_peak = sampler.peak;
        eprintln!(
            "{} {}: {total:.0} ms (peak RSS so far {:.2} GB)",
            if timed { "run" } else { "warm-up" },
            run + 1,
            peak_rss_bytes().unwrap_or(0) as f64 / 1e9
        );
        if timed {
            totals.push(total);
            for timing in enc.timings.iter().chain(&ext.timings) {
                match per_stage.iter_mut().find(|(s, _, _)| *s == timing.stage) {
                    Some((_, v, _)) => v.push(timing.ms),
                    None => per_stage.push((timing.stage, vec![timing.ms], timing.state)),
                }
            }
            for &(stage, ms) in &sampler.cpu_ms {
                match cpu_per_stage.iter_mut().find(|(s, _)| *s == stage) {
                    Some((_, v)) => v.push(ms),
                    None => cpu_per_stage.push((stage, vec![ms])),
                }
            }
        }
        last = Some((enc, ext.vertex_count, ext.face_count));
    }
    let Some((enc, vertices, faces)) = last else { anyhow::bail!("no run") };

    // Re-extract from the cached scene codes with another remesh option, same texture resolution.
    let mut tweaked = params.clone();
    tweaked.remesh = if params.remesh == RemeshOption::Triangle { RemeshOption::None } else { RemeshOption::Triangle };
    let t = Instant::now();
    let tweak = match pipeline.extract(&enc, &tweaked, &mut NoEvents) {
        Ok(_) => Some(t.elapsed().as_secs_f64() * 1e3),
        Err(e) => {
            eprintln!("re-extract with remesh {} failed: {e}", tweaked.remesh);
            None
        }
    };

    let stages: Vec<StageStat> = per_stage
        .into_iter()
        .map(|(stage, mut v, state)| {
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let cpu = cpu_per_stage.iter_mut().find(|(s, _)| *s == stage).map_or(0.0, |(_, c)| median(c));
            StageStat { stage, min_ms: min, median_ms: median(&mut v), cpu_median_ms: cpu, state }
        })
        .collect();
    let network: f64 = stages.iter().filter(|s| network_stage(s.stage)).map(|s| s.median_ms).sum();
    let other: f64 = stages.iter().filter(|s| !network_stage(s.stage)).map(|s| s.median_ms).sum();
    let total_median = median(&mut totals.clone());
    let report = Report {
        model: pipeline.model().clone(),
        device: pipeline.device().name.clone(),
        runs: totals.len(),
        texture_resolution: params.texture_resolution,
        attention_budget: pipeline.network().attention.max_score_elements,
        stages,
        total_min_ms: totals.iter().copied().fold(f64::INFINITY, f64::min),
        total_median_ms: total_median,
        network_median_ms: network,
        non_network_median_ms: other,
        vertices,
        faces,
        peak_rss_bytes: peak_rss_bytes(),
        gpu_peak_bytes: gpu_peak,
        tweak: tweak.map(|ms| Tweak {
            full_run_ms: total_median,
            reextract_ms: ms,
            ratio: ms / total_median,
            changed: format!("remesh {} → {}", params.remesh, tweaked.remesh),
        }),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(r: &Report) {
    println!(
        "model {} ({}{}) on {}; {} runs; texture {}²; attention budget {} elements",
        r.model.id,
        r.model.dtype,
        if r.model.test_model { ", test/random weights" } else { "" },
        r.device,
        r.runs,
        r.texture_resolution,
        r.attention_budget
    );
    println!("{:<20} {:>12} {:>12} {:>12} {:>6}", "stage", "min ms", "median ms", "CPU ms", "cores");
    for s in &r.stages {
        let note = match s.state {
            StageState::Skipped => " (skipped)",
            StageState::Cached => " (cached)",
            _ => "",
        };
        let cores = if s.median_ms > 0.0 { s.cpu_median_ms / s.median_ms } else { 0.0 };
        println!(
            "{:<20} {:>12.1} {:>12.1} {:>12.0} {:>6.2}{note}",
            s.stage.as_str(),
            s.min_ms,
            s.median_ms,
            s.cpu_median_ms,
            cores
        );
    }
    println!("{:<20} {:>12.1} {:>12.1}", "total", r.total_min_ms, r.total_median_ms);
    println!(
        "network stages (median) {:.1} ms; everything else {:.1} ms",
        r.network_median_ms, r.non_network_median_ms
    );
    println!("mesh: {} vertices, {} faces", r.vertices, r.faces);
    if let Some(p) = r.peak_rss_bytes {
        println!("peak RSS {:.2} GB", p as f64 / 1e9);
    }
    if let Some(p) = r.gpu_peak_bytes {
        println!("peak GPU memory in use {:.2} GB", p as f64 / 1e9);
    }
    if let Some(t) = &r.tweak {
        println!(
            "re-extract ({}): {:.1} ms = {:.1} % of a full run ({:.1} ms)",
            t.changed,
            t.reextract_ms,
            100.0 * t.ratio,
            t.full_run_ms
        );
    }
}
