//! `sf3d remote`: generate on a server (the seed pipeline's client).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use sf3d_backend::remote::{RemoteEvent, RemoteServer, write_into, write_outputs};
use sf3d_shared::{ServerMessage, StageState};

use super::ParamArgs;

/// Options of `sf3d remote`.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// Images to send.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Server base URL.
    #[arg(long, env = "SF3D_SERVER", default_value = "http://127.0.0.1:9299")]
    server: String,
    /// API key of the server.
    #[arg(long, env = "SF3D_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Output folder: one sub-folder per image with mesh.glb and metadata.json.
    #[arg(long, conflicts_with = "into")]
    out: Option<PathBuf>,
    /// An existing pipeline output folder: write mesh.glb there and merge a `mesh` section into its
    /// metadata.json (one image only).
    #[arg(long)]
    into: Option<PathBuf>,
    #[command(flatten)]
    params: ParamArgs,
    /// Ask for a quick preview first (the final asset is still what gets saved).
    #[arg(long)]
    preview: bool,
}

pub fn remote(a: RemoteArgs) -> anyhow::Result<ExitCode> {
    let mut params = a.params.params()?;
    params.preview = a.preview;
    if a.into.is_some() && a.images.len() != 1 {
        anyhow::bail!("--into takes exactly one image");
    }
    if a.into.is_none() && a.out.is_none() {
        anyhow::bail!("give --out DIR (or --into DIR for the seed pipeline's output folder)");
    }
    let server = RemoteServer { base: a.server.clone(), api_key: a.api_key.filter(|k| !k.is_empty()) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut failures = 0;
    for image in &a.images {
        let name = image.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let result = rt.block_on(async {
            let bytes =
                tokio::fs::read(image).await.map_err(|e| anyhow::anyhow!("reading {}: {e}", image.display()))?;
            server
                .generate(&bytes, Some(name.clone()), &params, |ev| match ev {
                    RemoteEvent::Connected(ServerMessage::Hello { device, model, .. }) => {
                        eprintln!(
                            "{name}: connected to {} ({}, model {}{})",
                            a.server,
                            device.name,
                            model.id,
                            if model.test_model { ", TEST MODEL" } else { "" }
                        )
                    }
                    RemoteEvent::Queued(p) => eprintln!("{name}: queued, {p} ahead"),
                    RemoteEvent::Stage(ServerMessage::Stage {
                        stage, state, value, max, elapsed_ms, label, ..
                    }) => match state {
                        StageState::Started => eprintln!("{name}: {} …", stage.label()),
                        StageState::Progress => {
                            eprintln!("{name}:   {} {}/{}", stage.label(), value.unwrap_or(0), max.unwrap_or(0))
                        }
                        StageState::Finished => eprintln!("{name}: ✓ {} ({elapsed_ms} ms)", stage.label()),
                        StageState::Skipped | StageState::Cached => {
                            eprintln!(
                                "{name}: · {} ({state:?}{})",
                                stage.label(),
                                label.map(|l| format!(": {l}")).unwrap_or_default()
                            )
                        }
                    },
                    _ => {}
                })
                .await
        });
        match result {
            Ok(r) => {
                let written = match (&a.into, &a.out) {
                    (Some(dir), _) => {
                        write_into(dir, &r).map(|p| format!("{} and {}", dir.join("mesh.glb").display(), p.display()))
                    }
                    (None, Some(out)) => {
                        let dir = out.join(
                            image
                                .file_stem()
                                .map(|s| s.to_string_lossy().to_string())
                                .unwrap_or_else(|| "image".into()),
                        );
                        write_outputs(&dir, &r).map(|()| dir.display().to_string())
                    }
                    (None, None) => unreachable!("checked above"),
                };
                match written {
                    Ok(w) => {
                        let c = r.metadata.client.as_ref().map(|c| c.round_trip_ms).unwrap_or(0.0);
                        eprintln!(
                            "{name}: {} vertices, {} faces; server {:.0} ms, round trip {c:.0} ms → {w}",
                            r.metadata.vertex_count, r.metadata.face_count, r.metadata.total_ms
                        );
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("{name}: error: {e:#}");
                    }
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("{name}: error: {e:#}");
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
