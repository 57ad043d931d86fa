//! `sf3d bench-serve`: throughput and latency of a running server, measured from a client: N jobs over the
//! WebSocket protocol, C at a time, each timed from submission to its GLB downloaded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use sf3d_backend::remote::RemoteServer;

use super::ParamArgs;

/// Options of `sf3d bench-serve`.
#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// Server base URL.
    #[arg(long, env = "SF3D_SERVER", default_value = "http://127.0.0.1:9299")]
    server: String,
    /// API key of the server.
    #[arg(long, env = "SF3D_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Jobs to run.
    #[arg(long, default_value_t = 20)]
    jobs: usize,
    /// Jobs in flight at once (each on its own connection); default: all of them.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Image to send (default: the built-in test picture).
    #[arg(long)]
    image: Option<PathBuf>,
    #[command(flatten)]
    params: ParamArgs,
}

/// The `q`-quantile (0–1) of sorted `v` (nearest rank).
fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn bench_serve(a: BenchServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.jobs > 0, "--jobs must be at least 1");
    let params = a.params.params()?;
    let image = match &a.image {
        Some(p) => std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?,
        None => sf3d::pipeline::png_bytes(&sf3d::test_model::bench_image(512))?,
    };
    let concurrency = a.concurrency.unwrap_or(a.jobs).clamp(1, a.jobs);
    let server = RemoteServer { base: a.server.clone(), api_key: a.api_key.filter(|k| !k.is_empty()) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut workers = String::new();
    let (wall, results) = rt.block_on(async {
        let started = Instant::now();
        let results: Vec<anyhow::Result<(Duration, Option<String>)>> = futures_util::stream::iter(0..a.jobs)
            .map(|i| {
                let (server, image, params) = (&server, &image, &params);
                async move {
                    let t = Instant::now();
                    let r = server.generate(image, Some(format!("bench-{i}.png")), params, |_| {}).await?;
                    let worker = r.metadata.worker.map(|w| match &r.metadata.node {
                        Some(node) => format!("{node}/{w}"),
                        None => w.to_string(),
                    });
                    Ok((t.elapsed(), worker))
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        (started.elapsed(), results)
    });
    if let Ok(h) = rt.block_on(async { reqwest::get(format!("{}/api/health", a.server.trim_end_matches('/'))).await })
        && let Ok(h) = rt.block_on(h.json::<sf3d_shared::HealthResponse>())
    {
        let name = |w: &sf3d_shared::api::WorkerInfo| match &w.node {
            Some(node) => format!("{node}: {}", w.device.name),
            None => w.device.name.clone(),
        };
        workers = h.workers.iter().map(name).collect::<Vec<_>>().join(", ");
    }
    let mut latencies = Vec::new();
    let mut per_worker = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok((d, w)) => {
                latencies.push(d);
                *per_worker.entry(w.unwrap_or_else(|| "?".into())).or_default() += 1;
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    latencies.sort();
    let ok = latencies.len();
    println!("server     {} (workers: {})", a.server, if workers.is_empty() { "?" } else { &workers });
    println!("jobs       {ok} done, {} failed, {concurrency} in flight", failures.len());
    println!("wall       {:.1} s", wall.as_secs_f64());
    println!("throughput {:.2} jobs/min", ok as f64 / wall.as_secs_f64() * 60.0);
    println!(
        "latency    p50 {:.2} s, p95 {:.2} s, max {:.2} s (submission to GLB downloaded)",
        quantile(&latencies, 0.5).as_secs_f64(),
        quantile(&latencies, 0.95).as_secs_f64(),
        latencies.last().copied().unwrap_or_default().as_secs_f64()
    );
    println!("per worker {}", per_worker.iter().map(|(w, n)| format!("#{w}: {n}")).collect::<Vec<_>>().join(", "));
    for f in failures.iter().take(5) {
        eprintln!("failed: {f}");
    }
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=20).map(Duration::from_secs).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_secs(10));
        assert_eq!(quantile(&v, 0.95), Duration::from_secs(19));
        assert_eq!(quantile(&v[..1], 0.95), Duration::from_secs(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
