//! Image in, GLB out: the one pipeline every front (CLI, server) drives, with every stage reported as it
//! happens (docs/engine.md §1, §4, §5.7).
//!
//! It is split in two so that a later request can re-extract with new parameters without running the
//! network again:
//! * [`Pipeline::encode`]: decode → remove background → prepare → DINOv2 → backbone → triplane → material,
//!   giving [`Encoded`] (scene codes and estimates; cacheable, see [`Encoded::to_bytes`]);
//! * [`Pipeline::extract`]: grid decoder + marching tetrahedra → remesh → UV unwrap → bake → GLB.
//!
//! Stage names come from [`sf3d_shared::Stage`]. Each stage emits one `started` and one terminal event
//! (`finished`, `skipped`, or `cached` when [`Pipeline::report_cached`] replays a cached encode), with
//! `progress` events inside the long ones; cancellation is checked between stages and inside the long loops.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use image::RgbaImage;
use sf3d_shared::{
    BackgroundMode, DeviceInfo, GenerateParams, MeshMetadata, ModelInfo, RemeshOption, Stage, StageState, StageTiming,
};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::mesh::TriMesh;
use crate::mesh::bake::{BakedTextures, DecodedTexels, bake, encode_jpeg};
use crate::mesh::glb::{GlbInfo, GlbMaterial, prepare_export, write_glb};
use crate::mesh::isosurface::marching_tetrahedra;
use crate::mesh::remesh::remesh;
use crate::mesh::tets::TetGrid;
use crate::mesh::uv_unwrap::{UnwrapStats, unwrap_uv};
use crate::model::Sf3dNetwork;
use crate::preprocess::{
    BackgroundRemover, DecodeLimits, decode_image, has_meaningful_alpha, prepare_conditioning, resize_foreground,
};
use crate::progress::Progress;

pub use crate::mesh::bake::JPEG_QUALITY;
pub use crate::mesh::uv_unwrap::ISLAND_PADDING;
/// Shortest interval between two `progress` events of one stage.
const PROGRESS_INTERVAL_MS: u128 = 100;

/// One stage event.
#[derive(Debug, Clone, PartialEq)]
pub struct StageEvent {
    /// The stage.
    pub stage: Stage,
    /// What happened.
    pub state: StageState,
    /// Progress value.
    pub value: Option<u64>,
    /// Progress maximum.
    pub max: Option<u64>,
    /// Milliseconds since the stage started.
    pub elapsed_ms: u64,
    /// Extra words.
    pub label: Option<String>,
}

/// Receives stage events and says whether the job was cancelled.
pub trait Events {
    /// Called the moment something happens.
    fn emit(&mut self, event: StageEvent);
    /// Whether the job should stop at the next check.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Discards events.
#[derive(Debug, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn emit(&mut self, _event: StageEvent) {}
}

impl<F: FnMut(StageEvent)> Events for F {
    fn emit(&mut self, event: StageEvent) {
        self(event)
    }
}

/// Runs stages, timing them and turning progress into events.
struct StageRunner<'a> {
    events: &'a mut dyn Events,
    timings: Vec<StageTiming>,
}

struct StageProgress<'b, 'a> {
    runner: &'b mut StageRunner<'a>,
    stage: Stage,
    started: Instant,
    last: Option<Instant>,
}

impl Progress for StageProgress<'_, '_> {
    fn report(&mut self, value: u64, max: u64) -> Result<()> {
        if self.runner.events.cancelled() {
            return Err(Error::Cancelled);
        }
        let due = self.last.is_none_or(|t| t.elapsed().as_millis() >= PROGRESS_INTERVAL_MS) || value >= max;
        if due {
            self.last = Some(Instant::now());
            self.runner.events.emit(StageEvent {
                stage: self.stage,
                state: StageState::Progress,
                value: Some(value),
                max: Some(max),
                elapsed_ms: self.started.elapsed().as_millis() as u64,
                label: None,
            });
        }
        Ok(())
    }
}

impl<'a> StageRunner<'a> {
    fn new(events: &'a mut dyn Events) -> Self {
        Self { events, timings: Vec::new() }
    }

    fn check(&self) -> Result<()> {
        if self.events.cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }

    fn emit(&mut self, stage: Stage, state: StageState, elapsed_ms: u64, label: Option<String>) {
        self.events.emit(StageEvent { stage, state, value: None, max: None, elapsed_ms, label });
    }

    /// Runs `f` as `stage`.
    fn run<T>(&mut self, stage: Stage, f: impl FnOnce(&mut dyn Progress) -> Result<T>) -> Result<T> {
        self.run_with(stage, None, f)
    }

    /// Runs `f` as `stage`, its start and finish events carrying `label` (what ran, for the stage list).
    fn run_labelled<T>(
        &mut self,
        stage: Stage,
        label: String,
        f: impl FnOnce(&mut dyn Progress) -> Result<T>,
    ) -> Result<T> {
        self.run_with(stage, Some(label), f)
    }

    fn run_with<T>(
        &mut self,
        stage: Stage,
        label: Option<String>,
        f: impl FnOnce(&mut dyn Progress) -> Result<T>,
    ) -> Result<T> {
        self.check()?;
        let started = Instant::now();
        self.emit(stage, StageState::Started, 0, label.clone());
        let out = {
            let mut p = StageProgress { runner: self, stage, started, last: None };
            f(&mut p)?
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        self.emit(stage, StageState::Finished, ms as u64, label);
        self.timings.push(StageTiming { stage, ms, state: StageState::Finished });
        Ok(out)
    }

    /// Reports `stage` as not applying.
    fn skip(&mut self, stage: Stage, why: &str) {
        self.emit(stage, StageState::Skipped, 0, Some(why.to_string()));
        self.timings.push(StageTiming { stage, ms: 0.0, state: StageState::Skipped });
    }
}

/// What identifies an encode for caching: the same image content, background policy, foreground ratio, model
/// and background remover give the same scene codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncodeKey {
    /// SHA-256 of the uploaded bytes (hex).
    pub image_sha256: String,
    /// Background policy.
    pub background: BackgroundMode,
    /// Foreground ratio as its bit pattern (exact equality).
    pub foreground_ratio_bits: u32,
    /// Model identity.
    pub model_id: String,
    /// The background remover the pipeline runs ([`BackgroundRemover::name`]).
    pub remover: String,
}

impl EncodeKey {
    /// The key of `bytes` encoded with `params` by `model_id`, with `remover` removing backgrounds.
    pub fn new(bytes: &[u8], params: &GenerateParams, model_id: &str, remover: &str) -> Self {
        Self {
            image_sha256: hex(&Sha256::digest(bytes)),
            background: params.background,
            foreground_ratio_bits: params.foreground_ratio.to_bits(),
            model_id: model_id.to_string(),
            remover: remover.to_string(),
        }
    }

    /// A stable string form (hash of the fields). The built-in remover adds nothing, so keys made before the
    /// remover was a choice keep their digest.
    pub fn digest(&self) -> String {
        let mut text =
            format!("{}|{}|{}|{}", self.image_sha256, self.background, self.foreground_ratio_bits, self.model_id);
        if self.remover != BackgroundRemover::Builtin.name() {
            text = format!("{text}|{}", self.remover);
        }
        hex(&Sha256::digest(text.as_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The image half: everything extraction needs, independent of the mesh/texture parameters.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Cache key.
    pub key: EncodeKey,
    /// The decoded upload (RGBA, upright).
    pub input: RgbaImage,
    /// After background removal and foreground crop (what the network saw, before the resize).
    pub preprocessed: RgbaImage,
    /// Scene codes of the item, `[3, C', R, R]` f32 on the CPU.
    pub scene_codes: Tensor,
    /// Roughness estimate.
    pub roughness: f32,
    /// Metallic estimate.
    pub metallic: f32,
    /// Illumination amplitudes, when estimated.
    pub sg_amplitudes: Option<Vec<f32>>,
    /// The remover that cut the background out ([`BackgroundRemover::name`]); `None` when the input was kept.
    pub background_removed_by: Option<String>,
    /// Wall times of the encode stages.
    pub timings: Vec<StageTiming>,
}

const CACHE_FORMAT: &str = "sf3d-studio scene codes v1";

impl Encoded {
    /// Bytes held in memory (for the cache budget).
    pub fn size_bytes(&self) -> usize {
        self.scene_codes.elem_count() * 4 + self.input.as_raw().len() + self.preprocessed.as_raw().len()
    }

    /// Serialises the scene codes, estimates and key as safetensors (the images are stored beside it as
    /// PNG by the caller and passed back to [`Encoded::from_bytes`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let data: Vec<f32> = self.scene_codes.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, self.scene_codes.dims().to_vec(), &bytes)
                .map_err(|e| Error::Internal(format!("cache tensor: {e}")))?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), CACHE_FORMAT.to_string());
        meta.insert("image_sha256".to_string(), self.key.image_sha256.clone());
        meta.insert("background".to_string(), self.key.background.to_string());
        meta.insert("foreground_ratio_bits".to_string(), self.key.foreground_ratio_bits.to_string());
        meta.insert("model_id".to_string(), self.key.model_id.clone());
        meta.insert("remover".to_string(), self.key.remover.clone());
        if let Some(r) = &self.background_removed_by {
            meta.insert("background_removed_by".to_string(), r.clone());
        }
        meta.insert("roughness".to_string(), self.roughness.to_string());
        meta.insert("metallic".to_string(), self.metallic.to_string());
        if let Some(sg) = &self.sg_amplitudes {
            meta.insert("sg_amplitudes".to_string(), sg.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","));
        }
        safetensors::serialize([("scene_codes", view)], Some(meta)).map_err(|e| Error::Internal(format!("cache: {e}")))
    }

    /// Reads what [`Encoded::to_bytes`] wrote; `input`/`preprocessed` are the images stored beside it.
    /// Any inconsistency is an [`Error::BadFile`] (callers recompute with a warning).
    pub fn from_bytes(bytes: &[u8], input: RgbaImage, preprocessed: RgbaImage) -> Result<Self> {
        let bad = |m: String| Error::bad_file("scene-code cache", m);
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let m = meta.metadata().clone().unwrap_or_default();
        let get = |k: &str| m.get(k).cloned().ok_or_else(|| bad(format!("no {k}")));
        if get("format")? != CACHE_FORMAT {
            return Err(bad("unknown format".into()));
        }
        let t = st.tensor("scene_codes").map_err(|e| bad(e.to_string()))?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 4 || t.shape()[0] != 3 {
            return Err(bad(format!("scene_codes is {:?} {:?}", t.dtype(), t.shape())));
        }
        let data: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let scene_codes = Tensor::from_vec(data, t.shape().to_vec(), &Device::Cpu)?;
        let parse_f = |k: &str| -> Result<f32> { get(k)?.parse().map_err(|_| bad(format!("bad {k}"))) };
        let background: BackgroundMode = get("background")?.parse().map_err(|_| bad("bad background".into()))?;
        let sg_amplitudes = match m.get("sg_amplitudes") {
            Some(s) => Some(
                s.split(',').map(|x| x.parse().map_err(|_| bad("bad sg_amplitudes".into()))).collect::<Result<_>>()?,
            ),
            None => None,
        };
        Ok(Self {
            key: EncodeKey {
                image_sha256: get("image_sha256")?,
                background,
                foreground_ratio_bits: get("foreground_ratio_bits")?.parse().map_err(|_| bad("bad ratio".into()))?,
                model_id: get("model_id")?,
                // Caches written before the remover was a choice were made by the built-in one.
                remover: m.get("remover").cloned().unwrap_or_else(|| BackgroundRemover::Builtin.name().to_string()),
            },
            input,
            preprocessed,
            scene_codes,
            roughness: parse_f("roughness")?,
            metallic: parse_f("metallic")?,
            sg_amplitudes,
            background_removed_by: m.get("background_removed_by").cloned(),
            timings: Vec::new(),
        })
    }
}

/// The mesh half's product.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The GLB file.
    pub glb: Vec<u8>,
    /// Vertices in the GLB.
    pub vertex_count: usize,
    /// Triangles in the GLB.
    pub face_count: usize,
    /// Unwrap statistics.
    pub unwrap: UnwrapStats,
    /// Fraction of texels covered by the bake.
    pub texture_coverage: f32,
    /// Wall times of the extract stages.
    pub timings: Vec<StageTiming>,
}

/// A full run.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The image half.
    pub encoded: Encoded,
    /// The mesh half.
    pub extracted: Extracted,
}

/// Settings of a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Limits on uploaded images.
    pub decode_limits: DecodeLimits,
    /// Seed of the texture dithering (reproducible bytes).
    pub texture_seed: u64,
    /// Whether to run the illumination head (the reference's `estimate_illumination`, default off).
    pub estimate_illumination: bool,
    /// Crop and pad the image around its foreground (`resize_foreground` with the request's ratio), as the
    /// reference CLI and app do. Off: use the image's framing as is, like the reference's `run_image` API (the
    /// golden sets were made that way).
    pub crop_foreground: bool,
    /// rembg's U²-Net ONNX file to remove backgrounds with, loaded onto the pipeline's device by whoever builds
    /// the pipeline ([`Pipeline::set_background_remover`]); `None`: the built-in remover.
    pub background_model: Option<std::path::PathBuf>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            decode_limits: DecodeLimits::default(),
            texture_seed: 0,
            estimate_illumination: false,
            crop_foreground: true,
            background_model: None,
        }
    }
}

/// The network, its tet grid and its identity.
#[derive(Debug)]
pub struct Pipeline {
    net: Sf3dNetwork,
    grid: TetGrid,
    model: ModelInfo,
    device: DeviceInfo,
    remover: BackgroundRemover,
    /// Settings.
    pub options: PipelineOptions,
}

impl Pipeline {
    /// A pipeline around a loaded network.
    pub fn new(
        net: Sf3dNetwork,
        grid: TetGrid,
        model: ModelInfo,
        device: DeviceInfo,
        options: PipelineOptions,
    ) -> Self {
        Self { net, grid, model, device, remover: BackgroundRemover::Builtin, options }
    }

    /// The background remover encodes run ([`BackgroundRemover::Builtin`] unless set).
    pub fn background_remover(&self) -> &BackgroundRemover {
        &self.remover
    }

    /// Sets the background remover.
    pub fn set_background_remover(&mut self, remover: BackgroundRemover) {
        self.remover = remover;
    }

    /// The network.
    pub fn network(&self) -> &Sf3dNetwork {
        &self.net
    }

    /// Mutable network (attention chunk and point batch tuning).
    pub fn network_mut(&mut self) -> &mut Sf3dNetwork {
        &mut self.net
    }

    /// The tet grid.
    pub fn grid(&self) -> &TetGrid {
        &self.grid
    }

    /// Model identity.
    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    /// Device description.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    /// Encodes an uploaded image.
    pub fn encode(&self, bytes: &[u8], params: &GenerateParams, events: &mut dyn Events) -> Result<Encoded> {
        params.validate()?;
        let mut r = StageRunner::new(events);
        let key = EncodeKey::new(bytes, params, &self.model.id, self.remover.name());
        let input = r.run(Stage::Decode, |_| decode_image(bytes, &self.options.decode_limits))?;
        self.encode_image(key, input, params, &mut r)
    }

    fn encode_image(
        &self,
        key: EncodeKey,
        input: RgbaImage,
        params: &GenerateParams,
        r: &mut StageRunner<'_>,
    ) -> Result<Encoded> {
        let cfg = &self.net.config.sf3d;
        let remove = match params.background {
            BackgroundMode::Auto => !has_meaningful_alpha(&input),
            BackgroundMode::Always => true,
            BackgroundMode::Never => false,
        };
        let removed_by = remove.then(|| self.remover.name().to_string());
        let cut = if remove {
            r.run_labelled(Stage::RemoveBackground, self.remover.label(), |_| self.remover.remove(&input))?
        } else {
            let why = if params.background == BackgroundMode::Never {
                "background removal is off"
            } else {
                "image has alpha"
            };
            r.skip(Stage::RemoveBackground, why);
            input.clone()
        };
        let (preprocessed, rgb, mask) = r.run(Stage::Prepare, |_| {
            let fg = if self.options.crop_foreground {
                resize_foreground(&cut, params.foreground_ratio)?
            } else {
                cut.clone()
            };
            let cond = prepare_conditioning(&fg, cfg.cond_image_size as u32, cfg.background_color);
            let s = cond.size as usize;
            let rgb = Tensor::from_vec(cond.rgb, (1, s, s, 3), &Device::Cpu)?;
            let mask = Tensor::from_vec(cond.mask, (1, s, s, 1), &Device::Cpu)?;
            Ok((fg, rgb, mask))
        })?;
        let tokens = r.run(Stage::EncodeImage, |_| self.net.encode_image(&rgb, None))?;
        let blocks = self.net.backbone().num_blocks() as u64;
        let out = r.run(Stage::Backbone, |p| {
            p.report(0, blocks)?;
            self.net.run_backbone(&tokens, None, &mut |i| p.report(i as u64 + 1, blocks))
        })?;
        drop(tokens);
        let (direct, scene) = r.run(Stage::Triplane, |_| self.net.triplanes(&out))?;
        drop(out);
        let (roughness, metallic, sg_amplitudes) = r.run(Stage::EstimateMaterial, |_| {
            let m = self.net.estimate_material(&rgb, &mask)?;
            let roughness = m.value("roughness", 0).ok_or_else(|| Error::Internal("no roughness head".into()))?;
            let metallic = m.value("metallic", 0).ok_or_else(|| Error::Internal("no metallic head".into()))?;
            let sg = if self.options.estimate_illumination {
                let heads = self.net.estimate_illumination(&direct)?;
                heads
                    .into_iter()
                    .find(|(n, _)| n == "sg_amplitudes")
                    .map(|(_, t)| t.flatten_all()?.to_vec1::<f32>())
                    .transpose()?
            } else {
                None
            };
            Ok((roughness, metallic, sg))
        })?;
        let scene_codes = scene.get(0)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        Ok(Encoded {
            key,
            input,
            preprocessed,
            scene_codes,
            roughness,
            metallic,
            sg_amplitudes,
            background_removed_by: removed_by,
            timings: std::mem::take(&mut r.timings),
        })
    }

    /// Reports the encode stages of a cached [`Encoded`] as `cached` (nothing is computed).
    pub fn report_cached(&self, events: &mut dyn Events) -> Vec<StageTiming> {
        Stage::ALL
            .iter()
            .filter(|s| s.is_encode())
            .map(|&stage| {
                events.emit(StageEvent {
                    stage,
                    state: StageState::Cached,
                    value: None,
                    max: None,
                    elapsed_ms: 0,
                    label: None,
                });
                StageTiming { stage, ms: 0.0, state: StageState::Cached }
            })
            .collect()
    }

    /// Extracts, remeshes, unwraps, bakes and exports the mesh of `enc` with `params`.
    pub fn extract(&self, enc: &Encoded, params: &GenerateParams, events: &mut dyn Events) -> Result<Extracted> {
        params.validate()?;
        let cfg = &self.net.config.sf3d;
        let mut r = StageRunner::new(events);
        let (mesh, sampler) = r.run(Stage::ExtractMesh, |p| {
            // The planes laid out for queries are part of this stage's time (and reused by the bake).
            let sampler = self.net.sampler(&enc.scene_codes.to_device(self.net.device())?)?;
            let rad = cfg.radius;
            let world: Vec<f32> = self.grid.vertices.iter().flat_map(|v| v.map(|x| x * 2.0 * rad - rad)).collect();
            let n = self.grid.vertices.len();
            let world = Tensor::from_vec(world, (n, 3), &Device::Cpu)?;
            let out = self.net.query(&sampler, &world, &["density", "vertex_offset"], p)?;
            let sdf: Vec<f32> =
                (&out[0] - cfg.isosurface_threshold as f64)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
            let def: Vec<f32> = out[1].flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
            let def: Vec<[f32; 3]> = def.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
            Ok((marching_tetrahedra(&self.grid, &sdf, &def, cfg.isosurface_resolution, cfg.radius)?.mesh, sampler))
        })?;
        let mesh: TriMesh = if params.remesh == RemeshOption::None && params.vertex_count < 0 {
            r.skip(Stage::Remesh, "remesh is none");
            mesh
        } else {
            r.run(Stage::Remesh, |p| remesh(&mesh, params.remesh, params.target_vertex_count(), p))?
        };
        let unwrapped = r.run(Stage::UnwrapUv, |p| {
            let normals = mesh.vertex_normals();
            unwrap_uv(&mesh, &normals, ISLAND_PADDING, p)
        })?;
        drop(mesh);
        let res = params.texture_resolution;
        let baked: BakedTextures = r.run(Stage::BakeTexture, |p| {
            let mut decoder = |pts: &[[f32; 3]]| -> Result<DecodedTexels> {
                let flat: Vec<f32> = pts.iter().flatten().copied().collect();
                let t = Tensor::from_vec(flat, (pts.len(), 3), &Device::Cpu)?;
                let out =
                    self.net.query(&sampler, &t, &["features", "perturb_normal"], &mut crate::progress::NoProgress)?;
                let rows = |t: &Tensor| -> Result<Vec<[f32; 3]>> {
                    let v: Vec<f32> = t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
                    Ok(v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
                };
                Ok((rows(&out[0])?, rows(&out[1])?))
            };
            bake(&unwrapped, res, &mut decoder, self.options.texture_seed, p)
        })?;
        let unwrap_stats = unwrapped.stats;
        let (glb, vertex_count, face_count) = r.run(Stage::Export, |_| {
            // Each JPEG encoder is single-threaded: the two textures are encoded side by side, and the mesh is
            // laid out meanwhile.
            let ((albedo, normal), export) = rayon::join(
                || {
                    rayon::join(
                        || encode_jpeg(&baked.albedo, JPEG_QUALITY),
                        || encode_jpeg(&baked.normal, JPEG_QUALITY),
                    )
                },
                || prepare_export(&unwrapped.positions, &unwrapped.faces, &unwrapped.uvs),
            );
            let export = export?;
            let material = GlbMaterial {
                albedo_jpeg: albedo?,
                normal_jpeg: normal?,
                roughness: enc.roughness,
                metallic: enc.metallic,
            };
            let info = GlbInfo {
                generator: format!("sf3d-studio {}", sf3d_shared::SOFTWARE_VERSION),
                attribution: self.model.attribution.clone(),
                extras: self.glb_extras(params),
            };
            let glb = write_glb(&export, &material, &info)?;
            Ok((glb, export.positions.len(), export.faces.len()))
        })?;
        Ok(Extracted {
            glb,
            vertex_count,
            face_count,
            unwrap: unwrap_stats,
            texture_coverage: baked.coverage,
            timings: std::mem::take(&mut r.timings),
        })
    }

    fn glb_extras(&self, params: &GenerateParams) -> serde_json::Value {
        let mut sf3d = serde_json::json!({
            "model": self.model.id,
            "test_model": self.model.test_model,
            "params": params,
        });
        if self.model.test_model {
            sf3d["note"] = serde_json::Value::from(sf3d_shared::TEST_MODEL_LABEL);
        }
        serde_json::json!({ "sf3d": sf3d })
    }

    /// Encode + extract.
    pub fn run(&self, bytes: &[u8], params: &GenerateParams, events: &mut dyn Events) -> Result<Generation> {
        let encoded = self.encode(bytes, params, events)?;
        let extracted = self.extract(&encoded, params, events)?;
        Ok(Generation { encoded, extracted })
    }

    /// The metadata of a result. `timings` are the stage timings in pipeline order (encode + extract, or the
    /// `cached` encode stages + extract); `created_at` is RFC 3339.
    pub fn metadata(
        &self,
        enc: &Encoded,
        ext: &Extracted,
        params: &GenerateParams,
        timings: Vec<StageTiming>,
        created_at: String,
    ) -> MeshMetadata {
        let total_ms = timings.iter().map(|t| t.ms).sum();
        MeshMetadata {
            mesh_id: String::new(),
            parent_id: None,
            created_at,
            source_name: None,
            params: params.clone(),
            model: self.model.clone(),
            device: self.device.clone(),
            worker: None,
            node: None,
            job_id: None,
            timings,
            total_ms,
            vertex_count: ext.vertex_count as u64,
            face_count: ext.face_count as u64,
            roughness: enc.roughness,
            metallic: enc.metallic,
            sg_amplitudes: enc.sg_amplitudes.clone(),
            background_remover: enc.background_removed_by.clone(),
            glb_sha256: hex(&Sha256::digest(&ext.glb)),
            glb_bytes: ext.glb.len() as u64,
            preview: false,
            generator: format!("sf3d-studio {}", sf3d_shared::SOFTWARE_VERSION),
            attribution: self.model.attribution.clone(),
            client: None,
        }
    }
}

/// Encodes an RGBA image as PNG bytes.
pub fn png_bytes(img: &RgbaImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| Error::Internal(format!("png encoding: {e}")))?;
    Ok(out)
}
