//! Stage-by-stage parity with a golden set (`sf3d check-golden DIR` and `tests/parity.rs`).
//!
//! Every stage is fed the golden input of that stage, so a failure points at one module; where the stage also
//! follows from our own previous stage, a second row (note `chained`) compares the chained output. Rows are
//! named exactly as the golden tensors. Nothing here depends on tiny-a's sizes: any golden set produced by the
//! same generator is checked the same way.

use std::fmt;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::golden::{Comparison, GoldenSet, Tolerance, compare, compare_bounded, compare_tensor};
use crate::mesh::isosurface::marching_tetrahedra;
use crate::mesh::tets::TetGrid;
use crate::mesh::uv_unwrap::{atlas_layer_of, reference_agreement};
use crate::model::Sf3dNetwork;
use crate::model::backbone::BackboneTrace;
use crate::model::image_tokenizer::dinov2::Dinov2Trace;
use crate::progress::NoProgress;

/// Network stages in f32: abs 1e-4 (the golden README's suggestion; the f64 re-run agrees to ≤ 2.3e-6).
pub const TOL_NETWORK: Tolerance = Tolerance::Abs(1e-4);
/// Exponential outputs (density, grid sdf): 1e-4 absolute below 1, relative above.
pub const TOL_DENSITY: Tolerance = Tolerance::AbsOrRel(1e-4);
/// The conditioning image from `input.png`: 2/255 covers an off-by-one rounding of 8-bit channels (we are
/// bit-exact).
pub const TOL_PREPARE: Tolerance = Tolerance::Abs(2.0 / 255.0);
/// Geometry that only moves values around (split, bake interpolation, export transforms).
pub const TOL_GEOMETRY: Tolerance = Tolerance::Abs(1e-5);
/// UV agreement per face corner for the "same chart" statistic of the unwrapper, before the axis-noise term.
const UV_AGREEMENT: f32 = 1e-3;
/// Tangent agreement per face corner, before the axis-noise term.
const TANGENT_AGREEMENT: f32 = 1e-2;
/// Size of the principal-axis perturbation that stands for the reference's float32 PCA (see
/// `axis_noise_spread`).
const AXIS_NOISE_RAD: f64 = 1e-6;
/// Atlas layers 0–5: one per cube direction, in the lower two thirds of the atlas.
const PRIMARY_LAYERS: usize = 6;
/// Fraction of faces that must be projected along the reference's cube direction: with the reference's axes
/// only float ties at 45° may differ.
const MIN_DIRECTION_AGREEMENT: f64 = 0.999;
/// Fraction of faces that must land in the reference's atlas layer: the reference's own layering agrees with
/// itself on ≈ 96.5 % of faces under ±1e-6 input noise (its overlap test sits at its area threshold).
const MIN_LAYER_AGREEMENT: f64 = 0.95;
/// Rounding of a marching-tets vertex interpolated from the same inputs.
const MT_ROUNDING: f32 = 1e-5;
/// Marching-tets vertex positions fed with the golden sdf / deformation.
pub const TOL_MT: Tolerance = Tolerance::Abs(MT_ROUNDING);
/// Marching-tets vertex positions chained from our own grid sdf, for a set that records no float64 re-run: an sdf
/// error δ near a crossing moves the vertex by about δ/|∇sdf| along the edge. Sets with a recorded re-run get a
/// bound per vertex instead (`mt_chained_bounds`).
pub const TOL_MT_CHAINED: Tolerance = Tolerance::Abs(1e-4);

/// A group of rows.
#[derive(Debug, Clone)]
pub struct Section {
    /// Title (`image side`, `backbone`, …).
    pub title: String,
    /// The comparisons.
    pub rows: Vec<Comparison>,
}

/// Everything checked.
#[derive(Debug, Clone, Default)]
pub struct ParityReport {
    /// The golden folder.
    pub dir: String,
    /// Sections in pipeline order.
    pub sections: Vec<Section>,
}

impl ParityReport {
    /// Whether every row passed.
    pub fn passed(&self) -> bool {
        self.sections.iter().all(|s| s.rows.iter().all(|r| r.pass))
    }

    /// The failing rows.
    pub fn failures(&self) -> Vec<&Comparison> {
        self.sections.iter().flat_map(|s| s.rows.iter()).filter(|r| !r.pass).collect()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.sections.iter().map(|s| s.rows.len()).sum()
    }

    /// Whether nothing was checked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, title: &str, rows: Vec<Comparison>) {
        self.sections.push(Section { title: title.into(), rows });
    }
}

impl fmt::Display for ParityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "golden set {}", self.dir)?;
        writeln!(f, "{:<40} {:>11} {:>11} {:>12} result", "tensor", "max abs", "max rel", "tolerance")?;
        for s in &self.sections {
            writeln!(f, "-- {}", s.title)?;
            for r in &s.rows {
                writeln!(f, "{r}")?;
            }
        }
        let failed = self.failures().len();
        write!(f, "{} tensors checked, {} passed, {} failed", self.len(), self.len() - failed, failed)
    }
}

/// A row for an agreement fraction: the value columns show the fraction that disagrees, the tolerance the most
/// that may.
fn fraction_row(name: &str, agree: f64, min_agree: f64, what: String) -> Comparison {
    let disagree = 1.0 - agree;
    Comparison {
        name: name.into(),
        max_abs: disagree,
        max_rel: disagree,
        tolerance: Tolerance::Abs((1.0 - min_agree) as f32),
        pass: agree >= min_agree,
        note: format!("{:.2} % {what} (≥ {:.1} %)", 100.0 * agree, 100.0 * min_agree),
    }
}

fn chained(mut c: Comparison) -> Comparison {
    c.note = if c.note.is_empty() { "chained".into() } else { format!("chained; {}", c.note) };
    c
}

/// Runs a stage, turning an error into a failed row instead of aborting the whole check.
fn row(name: &str, tol: Tolerance, f: impl FnOnce() -> Result<Comparison>) -> Comparison {
    f().unwrap_or_else(|e| Comparison::failed(name, tol, format!("stage error: {e}")))
}

/// Checks every implemented stage against the golden set in `dir` with the network in f32.
pub fn check_golden(dir: &Path, device: &Device) -> Result<ParityReport> {
    check_golden_with(dir, device, DType::F32)
}

/// Tolerances of the stages that run in a 16-bit compute dtype (bf16 where the reference autocasts: DINOv2,
/// backbone, post-processor, and everything fed from them when chained). bf16 keeps 8 significant bits, so a
/// value of magnitude m moves by about m·2⁻⁸ per operation; these bounds were measured on tiny-a (CPU bf16) with
/// a ×2 margin. The camera, CLIP, decoder, marching tetrahedra and everything after stay f32 and keep their
/// f32 tolerances when fed golden inputs.
pub fn reduced_precision_tolerance(name: &str, chained: bool) -> Option<Tolerance> {
    let t = match name {
        "dino_embeddings" | "dino_pos_embed_interp" => Tolerance::AbsOrRel(2e-2),
        "dino_layer0_out" | "dino_layer1_out" | "image_tokens" => Tolerance::AbsOrRel(1e-1),
        "triplane_tokens" => Tolerance::AbsOrRel(2e-2),
        "backbone_block0_latent" | "backbone_block0_triplane" | "backbone_out" | "direct_codes" => {
            Tolerance::AbsOrRel(1e-1)
        }
        "scene_codes" => Tolerance::AbsOrRel(2e-2),
        "global_estimator_sg_amplitudes" => Tolerance::AbsOrRel(5e-2),
        // Downstream of the 16-bit stack the field moves by more than the sign margin of a few grid points, so
        // topology-exact comparisons are reported, not judged.
        _ if chained && (name.starts_with("mt_") || name.starts_with("grid_")) => Tolerance::AbsOrRel(f32::INFINITY),
        "mesh.glb faces" | "mesh.glb face corners" => Tolerance::AbsOrRel(f32::INFINITY),
        _ => return None,
    };
    Some(t)
}

/// Checks every implemented stage with the transformer stack in `dtype` (f32, or bf16/f16 as on CUDA); 16-bit
/// runs are judged with [`reduced_precision_tolerance`] where it applies.
pub fn check_golden_with(dir: &Path, device: &Device, dtype: DType) -> Result<ParityReport> {
    let mut report = check_golden_inner(dir, device, dtype)?;
    if dtype != DType::F32 {
        for row in report.sections.iter_mut().flat_map(|s| s.rows.iter_mut()) {
            let chained = row.note.contains("chained");
            if let Some(t) = reduced_precision_tolerance(&row.name, chained) {
                row.tolerance = t;
                row.pass = match t {
                    Tolerance::AbsOrRel(x) if x.is_infinite() => !row.note.contains("stage error"),
                    // Judge by the larger of absolute and relative error against the stated bound.
                    Tolerance::AbsOrRel(x) | Tolerance::Abs(x) | Tolerance::Derived(x) => {
                        row.max_abs <= x as f64 || row.max_rel <= x as f64
                    }
                    Tolerance::Exact => row.max_abs == 0.0,
                };
                if row.note.is_empty() {
                    row.note = format!("{dtype:?} compute");
                }
            }
        }
    }
    Ok(report)
}

fn check_golden_inner(dir: &Path, device: &Device, dtype: DType) -> Result<ParityReport> {
    let set = GoldenSet::open(dir)?;
    let (net, _report) = Sf3dNetwork::load(dir, device, dtype)?;
    let mut report = ParityReport { dir: dir.display().to_string(), sections: Vec::new() };
    prepare_side(&set, &net, &mut report);
    image_side(&set, &net, &mut report)?;
    network_side(&set, &net, &mut report)?;
    decoder_side(&set, &net, &mut report)?;
    let face_bounds = mesh_side(&set, &net, &mut report)?;
    unwrap_side(&set, &mut report);
    bake_side(&set, &mut report);
    export_side(&set, &mut report);
    pipeline_side(&set, &net, face_bounds.as_deref(), &mut report);
    Ok(report)
}

fn image_side(set: &GoldenSet, net: &Sf3dNetwork, report: &mut ParityReport) -> Result<()> {
    let dev = net.device().clone();
    let mut rows = Vec::new();
    rows.push(row("camera_embeds", TOL_NETWORK, || {
        Ok(compare_tensor(set, "camera_embeds", &net.camera_embedding()?, TOL_NETWORK))
    }));
    let pos = net.image_tokenizer().model().embeddings().pos_embed().clone();
    rows.push(compare_tensor(set, "dino_pos_embed_interp", &pos, TOL_NETWORK));

    // DINOv2 from the golden conditioning image: [B, Nv, H, W, 3] → [B·Nv, H, W, 3].
    let rgb = squeeze_view(&set.tensor("rgb_cond", &dev)?)?;
    let mask = squeeze_view(&set.tensor("mask_cond", &dev)?)?;
    let mut trace = Dinov2Trace::default();
    match net.encode_image(&rgb, Some(&mut trace)) {
        Ok(tokens) => {
            if let Some(e) = &trace.embeddings {
                rows.push(compare_tensor(set, "dino_embeddings", e, TOL_NETWORK));
            }
            for (i, l) in trace.layers.iter().enumerate() {
                let name = format!("dino_layer{i}_out");
                if set.has(&name) {
                    rows.push(compare_tensor(set, &name, l, TOL_NETWORK));
                }
            }
            // The reference lays the tokens out as [B, Nv, C, T].
            rows.push(row("image_tokens", TOL_NETWORK, || {
                Ok(compare_tensor(set, "image_tokens", &tokens.transpose(1, 2)?, TOL_NETWORK))
            }));
        }
        Err(e) => rows.push(Comparison::failed("image_tokens", TOL_NETWORK, format!("stage error: {e}"))),
    }

    // CLIP estimator from the golden conditioning image.
    match net.estimate_material(&rgb, &mask) {
        Ok(m) => {
            rows.push(compare_tensor(set, "clip_input_224", &m.clip_input, TOL_NETWORK));
            rows.push(compare_tensor(set, "clip_image_features", &m.features, TOL_NETWORK));
            for (head, values) in &m.heads {
                let a: Vec<f32> = values.iter().map(|v| v.0).collect();
                let b: Vec<f32> = values.iter().map(|v| v.1).collect();
                let v: Vec<f32> = values.iter().map(|v| v.2).collect();
                for (name, data) in [
                    (format!("image_estimator_{head}_dist_alpha"), a),
                    (format!("image_estimator_{head}_dist_beta"), b),
                    (format!("image_estimator_decoder_{head}"), v),
                ] {
                    rows.push(row(&name, TOL_NETWORK, || {
                        Ok(compare(&name, &data, &set.f32(&name)?.data, TOL_NETWORK))
                    }));
                }
            }
        }
        Err(e) => rows.push(Comparison::failed("clip_image_features", TOL_NETWORK, format!("stage error: {e}"))),
    }
    report.push("image side: camera, DINOv2 tokenizer, CLIP material estimator", rows);
    Ok(())
}

fn squeeze_view(t: &Tensor) -> Result<Tensor> {
    // [B, Nv, H, W, C] → [B·Nv, H, W, C]
    let d = t.dims().to_vec();
    Ok(t.reshape((d[0] * d[1], d[2], d[3], d[4]))?)
}

fn network_side(set: &GoldenSet, net: &Sf3dNetwork, report: &mut ParityReport) -> Result<()> {
    let dev = net.device().clone();
    let mut rows = Vec::new();
    rows.push(row("triplane_tokens", TOL_NETWORK, || {
        Ok(compare_tensor(set, "triplane_tokens", &net.tokenizer().forward(1)?, TOL_NETWORK))
    }));

    let golden_tokens = set.tensor("image_tokens", &dev)?; // [B, Nv, C, T]
    let d = golden_tokens.dims().to_vec();
    let golden_tokens = golden_tokens.reshape((d[0], d[1] * d[2], d[3]))?.transpose(1, 2)?.contiguous()?; // [B, T, C]

    let run_backbone = |tokens: &Tensor, is_chained: bool, rows: &mut Vec<Comparison>| -> Option<Tensor> {
        let mut trace = BackboneTrace::default();
        match net.run_backbone(tokens, Some(&mut trace), &mut |_| Ok(())) {
            Ok(out) => {
                let wrap = |c: Comparison| if is_chained { chained(c) } else { c };
                if let Some((lat, tri)) = trace.blocks.first() {
                    rows.push(wrap(compare_tensor(set, "backbone_block0_latent", lat, TOL_NETWORK)));
                    rows.push(wrap(compare_tensor(set, "backbone_block0_triplane", tri, TOL_NETWORK)));
                }
                rows.push(wrap(compare_tensor(set, "backbone_out", &out, TOL_NETWORK)));
                Some(out)
            }
            Err(e) => {
                rows.push(Comparison::failed("backbone_out", TOL_NETWORK, format!("stage error: {e}")));
                None
            }
        }
    };
    run_backbone(&golden_tokens, false, &mut rows);
    let ours = net.encode_image(&squeeze_view(&set.tensor("rgb_cond", &dev)?)?, None)?;
    let chained_out = run_backbone(&ours, true, &mut rows);

    // Detokenize + post-processor from the golden backbone output, then chained.
    let golden_out = set.tensor("backbone_out", &dev)?;
    for (out, is_chained) in [(Some(golden_out), false), (chained_out, true)] {
        let Some(out) = out else { continue };
        let wrap = |c: Comparison| if is_chained { chained(c) } else { c };
        match net.triplanes(&out) {
            Ok((direct, scene)) => {
                rows.push(wrap(compare_tensor(set, "direct_codes", &direct, TOL_NETWORK)));
                rows.push(wrap(compare_tensor(set, "scene_codes", &scene, TOL_NETWORK)));
            }
            Err(e) => rows.push(Comparison::failed("scene_codes", TOL_NETWORK, format!("stage error: {e}"))),
        }
    }
    // Post-processor alone from the golden direct codes.
    rows.push(row("scene_codes", TOL_NETWORK, || {
        let scene = net.post_processor().forward(&set.tensor("direct_codes", &dev)?)?;
        let mut c = compare_tensor(set, "scene_codes", &scene, TOL_NETWORK);
        c.note = "from golden direct_codes".into();
        Ok(c)
    }));
    rows.push(row("global_estimator_sg_amplitudes", TOL_NETWORK, || {
        let heads = net.estimate_illumination(&set.tensor("direct_codes", &dev)?)?;
        let (_, sg) = heads
            .into_iter()
            .find(|(n, _)| n == "sg_amplitudes")
            .ok_or_else(|| Error::Internal("no sg_amplitudes head".into()))?;
        Ok(compare_tensor(set, "global_estimator_sg_amplitudes", &sg, TOL_NETWORK))
    }));
    report.push("triplane tokenizer, backbone, post-processor, illumination head", rows);
    Ok(())
}

/// The scene codes of item 0 of the golden set, `[3, C', R, R]`.
fn golden_scene_codes(set: &GoldenSet, dev: &Device) -> Result<Tensor> {
    Ok(set.tensor("scene_codes", dev)?.squeeze(0)?)
}

fn decoder_side(set: &GoldenSet, net: &Sf3dNetwork, report: &mut ParityReport) -> Result<()> {
    let dev = net.device().clone();
    let sampler = net.sampler(&golden_scene_codes(set, &dev)?)?;
    let mut rows = Vec::new();
    let points = set.tensor("query_points", &dev)?;
    rows.push(row("query_triplane_features", TOL_NETWORK, || {
        Ok(compare_tensor(set, "query_triplane_features", &sampler.query(&points)?, TOL_NETWORK))
    }));
    let heads = ["density", "features", "perturb_normal", "vertex_offset"];
    match net.query(&sampler, &points, &heads, &mut NoProgress) {
        Ok(outs) => {
            for (h, t) in heads.iter().zip(outs) {
                let name = format!("query_decoder_{h}");
                let tol = if *h == "density" { TOL_DENSITY } else { TOL_NETWORK };
                rows.push(compare_tensor(set, &name, &t, tol));
            }
        }
        Err(e) => rows.push(Comparison::failed("query_decoder_density", TOL_DENSITY, format!("stage error: {e}"))),
    }
    // Bake-side decoder at the golden masked texel positions (row-major texel order).
    rows.extend(bake_decoder_rows(set, net, &sampler));
    report.push("triplane query and decoder", rows);
    Ok(())
}

fn bake_decoder_rows(
    set: &GoldenSet,
    net: &Sf3dNetwork,
    sampler: &crate::model::triplane::TriplaneSampler,
) -> Vec<Comparison> {
    let run = || -> Result<Vec<Comparison>> {
        let pos = set.f32("bake_pos")?;
        let mask = set.f32("bake_mask")?;
        let pts: Vec<f32> = pos
            .data
            .chunks_exact(3)
            .zip(&mask.data)
            .filter(|(_, m)| **m > 0.5)
            .flat_map(|(p, _)| p.iter().copied())
            .collect();
        let n = pts.len() / 3;
        let pts = Tensor::from_vec(pts, (n, 3), net.device())?;
        let mut rows = vec![compare_tensor(set, "bake_query_features", &sampler.query(&pts)?, TOL_NETWORK)];
        let outs = net.query(sampler, &pts, &["features", "perturb_normal"], &mut NoProgress)?;
        rows.push(compare_tensor(set, "bake_decoded_features", &outs[0], TOL_NETWORK));
        rows.push(compare_tensor(set, "bake_decoded_perturb_normal", &outs[1], TOL_NETWORK));
        Ok(rows)
    };
    run().unwrap_or_else(|e| vec![Comparison::failed("bake_query_features", TOL_NETWORK, format!("stage error: {e}"))])
}

/// The tet grid of a golden set: `{res}_tets.npz` in the folder.
pub fn golden_tet_grid(set: &GoldenSet, resolution: usize) -> Result<TetGrid> {
    TetGrid::load_npz(&set.file(&format!("{resolution}_tets.npz")))
}

/// The marching-tets rows; returns the chained bounds per golden face in world units (the largest of its three
/// vertices', see [`mt_chained_bounds`]) for the whole-pipeline row, `None` when the set records no gap.
fn mesh_side(set: &GoldenSet, net: &Sf3dNetwork, report: &mut ParityReport) -> Result<Option<Vec<f32>>> {
    let dev = net.device().clone();
    let cfg = &net.config.sf3d;
    let grid = golden_tet_grid(set, cfg.isosurface_resolution)?;
    let mut rows = Vec::new();

    // Decoder on the grid (golden scene codes): grid_sdf, grid_deformation.
    let sampler = net.sampler(&golden_scene_codes(set, &dev)?)?;
    let r = cfg.radius;
    let world: Vec<f32> = grid.vertices.iter().flat_map(|v| v.map(|x| x * 2.0 * r - r)).collect();
    let world = Tensor::from_vec(world, (grid.vertices.len(), 3), &dev)?;
    let ours = net.query(&sampler, &world, &["density", "vertex_offset"], &mut NoProgress).and_then(|o| {
        let sdf: Vec<f32> = (&o[0] - cfg.isosurface_threshold as f64)?.flatten_all()?.to_vec1()?;
        let def: Vec<f32> = o[1].flatten_all()?.to_vec1()?;
        Ok((sdf, def))
    });
    match &ours {
        Ok((sdf, def)) => {
            // sdf = density − threshold: the error is relative to the density (an exponential), not to the
            // difference, so compare with the threshold added back.
            let t = cfg.isosurface_threshold;
            rows.push(row("grid_sdf", TOL_DENSITY, || {
                let dens: Vec<f32> = sdf.iter().map(|x| x + t).collect();
                let want: Vec<f32> = set.f32("grid_sdf")?.data.iter().map(|x| x + t).collect();
                let mut c = compare("grid_sdf", &dens, &want, TOL_DENSITY);
                c.note = "compared as density = sdf + threshold".into();
                Ok(c)
            }));
            rows.push(row("grid_deformation", TOL_NETWORK, || {
                Ok(compare("grid_deformation", def, &set.f32("grid_deformation")?.data, TOL_NETWORK))
            }));
        }
        Err(e) => rows.push(Comparison::failed("grid_sdf", TOL_DENSITY, format!("stage error: {e}"))),
    }

    // Marching tets from the golden sdf / deformation, then chained from ours.
    let golden_sdf = set.f32("grid_sdf")?.data;
    let golden_def = set.f32("grid_deformation")?.rows::<3>()?;
    let golden_iso = marching_tetrahedra(&grid, &golden_sdf, &golden_def, cfg.isosurface_resolution, cfg.radius);
    let bounds = golden_iso
        .as_ref()
        .ok()
        .and_then(|iso| mt_chained_bounds(set, &grid, iso, &golden_sdf, &golden_def, cfg.isosurface_resolution));
    let mut inputs = vec![(golden_iso, false)];
    if let Ok((sdf, def)) = ours {
        let def: Vec<[f32; 3]> = def.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
        inputs.push((marching_tetrahedra(&grid, &sdf, &def, cfg.isosurface_resolution, cfg.radius), true));
    }
    let world_scale = 2.0 * cfg.radius;
    let face_bounds = match (&inputs[0].0, &bounds) {
        (Ok(iso), Some(b)) => Some(
            iso.mesh
                .faces
                .iter()
                .map(|f| f.iter().map(|&v| b[v as usize] * world_scale).fold(0f32, f32::max))
                .collect(),
        ),
        _ => None,
    };
    for (iso, is_chained) in inputs {
        let wrap = |c: Comparison| if is_chained { chained(c) } else { c };
        match iso {
            Ok(iso) => {
                let faces: Vec<f32> = iso.mesh.faces.iter().flatten().map(|&i| i as f32).collect();
                let golden_faces = set.i32("mt_t_pos_idx")?.data.iter().map(|&i| i as f32).collect::<Vec<_>>();
                rows.push(wrap(compare("mt_t_pos_idx", &faces, &golden_faces, Tolerance::Exact)));
                let unit: Vec<f32> = iso.vertices_unit.iter().flatten().copied().collect();
                let pos: Vec<f32> = iso.mesh.positions.iter().flatten().copied().collect();
                let (want_unit, want_pos) = (set.f32("mt_v_pos_unit")?.data, set.f32("mt_v_pos")?.data);
                match (&bounds, is_chained) {
                    (Some(b), true) => {
                        let world: Vec<f32> = b.iter().map(|x| x * world_scale).collect();
                        rows.push(wrap(compare_bounded("mt_v_pos_unit", &unit, &want_unit, b, 3)));
                        rows.push(wrap(compare_bounded("mt_v_pos", &pos, &want_pos, &world, 3)));
                    }
                    _ => {
                        let tol = if is_chained { TOL_MT_CHAINED } else { TOL_MT };
                        rows.push(wrap(compare("mt_v_pos_unit", &unit, &want_unit, tol)));
                        rows.push(wrap(compare("mt_v_pos", &pos, &want_pos, tol)));
                    }
                }
                if !is_chained {
                    let nrm: Vec<f32> = iso.mesh.vertex_normals().into_iter().flatten().collect();
                    rows.push(compare("unwrap_in_v_nrm", &nrm, &set.f32("unwrap_in_v_nrm")?.data, TOL_NETWORK));
                }
            }
            Err(e) => {
                rows.push(wrap(Comparison::failed("mt_t_pos_idx", Tolerance::Exact, format!("stage error: {e}"))))
            }
        }
    }
    report.push("tet grid decoder, marching tetrahedra, normals", rows);
    Ok(face_bounds)
}

/// How far each marching-tets vertex (grid units) may sit from the reference's when the grid comes from our own
/// network rather than the golden one, derived from the reference's own float32 noise: the set's float64 re-run
/// moves `grid_sdf` by up to `g` (`run_info.json`), and two float32 implementations that are each within `g` of the
/// exact values differ by up to `2g`. A vertex on edge `(a, b)` sits at `t = s_a / (s_a − s_b)`, so an sdf error
/// `δ` at both ends moves it by at most `δ · |p_b − p_a| / |s_a − s_b|`; the deformation's gap adds `2 g_def / R`
/// (`tanh′ ≤ 1`), and [`MT_ROUNDING`] covers the interpolation's own rounding. `None` when the set records no gap.
fn mt_chained_bounds(
    set: &GoldenSet,
    grid: &TetGrid,
    iso: &crate::mesh::isosurface::Isosurface,
    sdf: &[f32],
    deformation: &[[f32; 3]],
    resolution: usize,
) -> Option<Vec<f32>> {
    let gap = set.f64_gap("grid_sdf")?;
    let gap_def = set.f64_gap("grid_deformation").unwrap_or(0.0);
    let inv_res = 1.0 / resolution as f64;
    let deformed = |v: usize| -> [f64; 3] {
        std::array::from_fn(|k| f64::from(grid.vertices[v][k]) + f64::from(deformation[v][k]).tanh() * inv_res)
    };
    Some(
        iso.edges
            .iter()
            .map(|&[a, b]| {
                let (a, b) = (a as usize, b as usize);
                let (pa, pb) = (deformed(a), deformed(b));
                let len = (0..3).map(|k| (pb[k] - pa[k]).powi(2)).sum::<f64>().sqrt();
                let ds = (f64::from(sdf[a]) - f64::from(sdf[b])).abs().max(f64::MIN_POSITIVE);
                (2.0 * gap * len / ds + 2.0 * gap_def * inv_res + f64::from(MT_ROUNDING)) as f32
            })
            .collect(),
    )
}

fn prepare_side(set: &GoldenSet, net: &Sf3dNetwork, report: &mut ParityReport) {
    let cfg = &net.config.sf3d;
    let run = || -> Result<Vec<Comparison>> {
        let path = set.file("input.png");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        // The golden run called `run_image` on input.png directly: no foreground crop.
        let img = crate::preprocess::decode_image(&bytes, &crate::preprocess::DecodeLimits::default())?;
        let cond = crate::preprocess::prepare_conditioning(&img, cfg.cond_image_size as u32, cfg.background_color);
        Ok(vec![
            compare("rgb_cond", &cond.rgb, &set.f32("rgb_cond")?.data, TOL_PREPARE),
            compare("mask_cond", &cond.mask, &set.f32("mask_cond")?.data, TOL_PREPARE),
        ])
    };
    let rows = run().unwrap_or_else(|e| vec![Comparison::failed("rgb_cond", TOL_PREPARE, format!("stage error: {e}"))]);
    report.push("preprocessing: input.png → conditioning image", rows);
}

fn golden_unwrapped(set: &GoldenSet) -> Result<crate::mesh::uv_unwrap::UnwrappedMesh> {
    let positions = set.f32("unwrap_v_pos")?.rows::<3>()?;
    let faces: Vec<[u32; 3]> =
        set.i32("unwrap_t_pos_idx")?.rows::<3>()?.into_iter().map(|f| f.map(|i| i as u32)).collect();
    let uvs = set.f32("unwrap_v_tex")?.rows::<2>()?;
    let normals = set.f32("unwrap_v_nrm")?.rows::<3>()?;
    let tangents = set.f32("unwrap_v_tng")?.rows::<3>()?;
    Ok(crate::mesh::uv_unwrap::UnwrappedMesh { positions, faces, uvs, normals, tangents, ..Default::default() })
}

/// The unwrapper from the golden marching-tets mesh. Positions, faces and normals must match. Two agreement rows
/// judge the atlas: the projection axis of every face (≥ 99.9 %: the axes are the reference's) and its layer
/// (≥ 95 %: the reference's overlap layering is not stable under its own rounding; see `mesh::uv_unwrap`). UVs
/// and tangents are compared over the faces in the same primary layer.
fn unwrap_side(set: &GoldenSet, report: &mut ParityReport) {
    let run = || -> Result<Vec<Comparison>> {
        let positions = set.f32("mt_v_pos")?.rows::<3>()?;
        let faces: Vec<[u32; 3]> =
            set.i32("mt_t_pos_idx")?.rows::<3>()?.into_iter().map(|f| f.map(|i| i as u32)).collect();
        let normals = set.f32("unwrap_in_v_nrm")?.rows::<3>()?;
        let mesh = crate::mesh::TriMesh::new(positions, faces)?;
        let un = crate::mesh::uv_unwrap::unwrap_uv(&mesh, &normals, crate::pipeline::ISLAND_PADDING, &mut NoProgress)?;
        let flat3 = |v: &[[f32; 3]]| v.iter().flatten().copied().collect::<Vec<f32>>();
        let mut rows = vec![
            compare("unwrap_v_pos", &flat3(&un.positions), &set.f32("unwrap_v_pos")?.data, TOL_GEOMETRY),
            compare(
                "unwrap_t_pos_idx",
                &un.faces.iter().flatten().map(|&i| i as f32).collect::<Vec<_>>(),
                &set.i32("unwrap_t_pos_idx")?.data.iter().map(|&i| i as f32).collect::<Vec<_>>(),
                Tolerance::Exact,
            ),
            compare("unwrap_v_nrm", &flat3(&un.normals), &set.f32("unwrap_v_nrm")?.data, TOL_NETWORK),
        ];
        let gt = set.f32("unwrap_v_tex")?.rows::<2>()?;
        let agreement = reference_agreement(&un, &gt);
        rows.push(fraction_row(
            "unwrap face direction",
            agreement.direction_fraction(),
            MIN_DIRECTION_AGREEMENT,
            format!(
                "of the {} faces in the reference's layers 0–11 projected along its axis",
                agreement.directed_faces
            ),
        ));
        rows.push(fraction_row(
            "unwrap face layer",
            agreement.layer_fraction(),
            MIN_LAYER_AGREEMENT,
            format!("of the {} faces in the reference's atlas layer", agreement.faces),
        ));
        // Faces of the primary layers (0–5) in the same layer must have the same UVs. (Layers 6–12 are
        // renormalised over their members, so one face more or less shifts the whole layer: only their
        // membership is compared, above.)
        let primary: Vec<bool> = un
            .face_layers
            .iter()
            .zip(gt.chunks_exact(3))
            .map(|(&l, c)| usize::from(l) < PRIMARY_LAYERS && atlas_layer_of(&[c[0], c[1], c[2]]) == l)
            .collect();
        // Per-corner bounds from the atlas's own sensitivity to the reference's float32 axes.
        let probe = axis_noise_spread(&mesh, &normals, &un)?;
        let corners: Vec<usize> =
            (0..un.face_layers.len()).filter(|&i| primary[i]).flat_map(|i| 3 * i..3 * i + 3).collect();
        let gather2 = |v: &[[f32; 2]]| corners.iter().flat_map(|&c| v[c]).collect::<Vec<f32>>();
        let gather3 = |v: &[[f32; 3]]| corners.iter().flat_map(|&c| v[c]).collect::<Vec<f32>>();
        let uv_bounds: Vec<f32> = corners.iter().map(|&c| UV_AGREEMENT + 2.0 * probe.uv[c]).collect();
        let mut uv = compare_bounded("unwrap_v_tex", &gather2(&un.uvs), &gather2(&gt), &uv_bounds, 2);
        uv.note = format!(
            "over the {} faces in the same primary layer; bound {UV_AGREEMENT:.0e} + 2 × the move under {AXIS_NOISE_RAD:.0e} rad of axis noise",
            corners.len() / 3
        );
        rows.push(uv);
        let gtng = set.f32("unwrap_v_tng")?.rows::<3>()?;
        let (ta, tb) = (gather3(&un.tangents), gather3(&gtng));
        let within = corners
            .iter()
            .enumerate()
            .filter(|&(i, &c)| {
                let bound = TANGENT_AGREEMENT + 2.0 * probe.tangent[c];
                (0..3).all(|k| (ta[3 * i + k] - tb[3 * i + k]).abs() <= bound)
            })
            .count() as f64
            / corners.len().max(1) as f64;
        let mut tng = compare("unwrap_v_tng", &ta, &tb, Tolerance::Abs(0.1));
        tng.pass = within >= MIN_LAYER_AGREEMENT;
        tng.note = format!(
            "{:.2} % of those corners within {TANGENT_AGREEMENT:.0e} + 2 × their move under axis noise (≥ {:.0} %; tangents of tiny triangles follow tiny UV differences)",
            100.0 * within,
            100.0 * MIN_LAYER_AGREEMENT
        );
        rows.push(tng);
        Ok(rows)
    };
    let rows =
        run().unwrap_or_else(|e| vec![Comparison::failed("unwrap_v_tex", TOL_GEOMETRY, format!("stage error: {e}"))]);
    report.push("UV unwrap (from the golden marching-tets mesh)", rows);
}

/// How far each corner's UV and tangent move when the principal axes move by [`AXIS_NOISE_RAD`].
struct AxisNoiseSpread {
    uv: Vec<f32>,
    tangent: Vec<f32>,
}

/// Rotates our principal axes by ±[`AXIS_NOISE_RAD`] about each coordinate axis, unwraps again and records, per
/// corner of a face that keeps its primary layer, the largest move of its UV and tangent. The reference computes
/// its axes in float32 (torch's f32 `pca_lowrank` on golden `tiny-c` differs from the exact f64 computation by
/// ≈ 1e-6 rad), and the chart angles (the p = −1 weighting of the expected tangents, see `mesh::uv_unwrap`) amplify
/// such differences, so this is the noise floor of the reference's own atlas.
fn axis_noise_spread(
    mesh: &crate::mesh::TriMesh,
    normals: &[[f32; 3]],
    base: &crate::mesh::uv_unwrap::UnwrappedMesh,
) -> Result<AxisNoiseSpread> {
    use crate::mesh::uv_unwrap::{PcaAxes, UnwrapOptions, torch_pca_lowrank_axes, unwrap_uv_with};
    let axes = torch_pca_lowrank_axes(&mesh.positions);
    let mut spread = AxisNoiseSpread { uv: vec![0.0; base.uvs.len()], tangent: vec![0.0; base.tangents.len()] };
    for k in 0..3 {
        for sign in [-1.0, 1.0] {
            // v + ω e_k × v: a rotation by AXIS_NOISE_RAD about coordinate axis k, to first order.
            let turn = |v: [f64; 3]| -> [f64; 3] {
                let w = sign * AXIS_NOISE_RAD;
                let c = match k {
                    0 => [0.0, -v[2], v[1]],
                    1 => [v[2], 0.0, -v[0]],
                    _ => [-v[1], v[0], 0.0],
                };
                std::array::from_fn(|i| v[i] + w * c[i])
            };
            let options =
                UnwrapOptions { island_padding: crate::pipeline::ISLAND_PADDING, axes: PcaAxes::Given(axes.map(turn)) };
            let moved = unwrap_uv_with(mesh, normals, &options, &mut NoProgress)?;
            for (f, (&a, &b)) in base.face_layers.iter().zip(&moved.face_layers).enumerate() {
                if a != b || usize::from(a) >= PRIMARY_LAYERS {
                    continue;
                }
                for c in 3 * f..3 * f + 3 {
                    let duv = (0..2).map(|i| (base.uvs[c][i] - moved.uvs[c][i]).abs()).fold(0f32, f32::max);
                    let dt = (0..3).map(|i| (base.tangents[c][i] - moved.tangents[c][i]).abs()).fold(0f32, f32::max);
                    spread.uv[c] = spread.uv[c].max(duv);
                    spread.tangent[c] = spread.tangent[c].max(dt);
                }
            }
        }
    }
    Ok(spread)
}

/// The bake from the golden unwrapped mesh, with the golden decoder outputs standing in for the network.
fn bake_side(set: &GoldenSet, report: &mut ParityReport) {
    let run = || -> Result<Vec<Comparison>> {
        use crate::mesh::bake::{bake, dilate_fill, interpolate, rasterize};
        let mesh = golden_unwrapped(set)?;
        let res = set.shape("bake_mask")?[0] as u32;
        let rast = rasterize(&mesh.uvs, &mesh.faces, res);
        let mask: Vec<f32> = rast.face.iter().map(|&f| if f >= 0 { 1.0 } else { 0.0 }).collect();
        let mut rows = vec![compare("bake_mask", &mask, &set.f32("bake_mask")?.data, Tolerance::Exact)];
        let golden_rast = set.f32("bake_rast")?;
        let ids: Vec<f32> = rast.face.iter().map(|&f| f as f32).collect();
        let gids: Vec<f32> = golden_rast.data.chunks_exact(4).map(|c| c[3]).collect();
        let id_diff = ids.iter().zip(&gids).filter(|(a, b)| a != b).count();
        let bary: Vec<f32> = rast
            .bary
            .iter()
            .zip(&ids)
            .zip(&gids)
            .filter(|((_, a), b)| a == b)
            .flat_map(|((b, _), _)| b.iter().copied())
            .collect();
        let gbary: Vec<f32> = golden_rast
            .data
            .chunks_exact(4)
            .zip(&ids)
            .filter(|(c, a)| **a == c[3])
            .flat_map(|(c, _)| c[..3].iter().copied())
            .collect();
        let mut r = compare("bake_rast", &bary, &gbary, TOL_NETWORK);
        r.note = format!("{id_diff} texels with another face id (edge ties), barycentrics compared elsewhere");
        rows.push(r);
        let flat3 = |v: &[[f32; 3]]| v.iter().flatten().copied().collect::<Vec<f32>>();
        rows.push(compare(
            "bake_pos",
            &flat3(&interpolate(&mesh.positions, &mesh.faces, &rast)),
            &set.f32("bake_pos")?.data,
            TOL_GEOMETRY,
        ));
        rows.push(compare(
            "bake_nrm",
            &flat3(&interpolate(&mesh.normals, &mesh.faces, &rast)),
            &set.f32("bake_nrm")?.data,
            TOL_NETWORK,
        ));
        rows.push(compare(
            "bake_tng",
            &flat3(&interpolate(&mesh.tangents, &mesh.faces, &rast)),
            &set.f32("bake_tng")?.data,
            TOL_NETWORK,
        ));
        let albedo = set.f32("bake_decoded_features")?.rows::<3>()?;
        let perturb = set.f32("bake_decoded_perturb_normal")?.rows::<3>()?;
        let mut decoder = |pts: &[[f32; 3]]| -> Result<crate::mesh::bake::DecodedTexels> {
            if pts.len() != albedo.len() {
                return Err(Error::Internal(format!("{} covered texels, golden has {}", pts.len(), albedo.len())));
            }
            Ok((albedo.clone(), perturb.clone()))
        };
        let baked = bake(&mesh, res, &mut decoder, 0, &mut NoProgress)?;
        rows.push(compare("tex_albedo", &flat3(&baked.albedo_float), &set.f32("tex_albedo")?.data, TOL_NETWORK));
        rows.push(compare("tex_bump", &flat3(&baked.normal_float), &set.f32("tex_bump")?.data, TOL_NETWORK));
        let gmask: Vec<bool> = set.f32("bake_mask")?.data.iter().map(|&m| m > 0.5).collect();
        let tex = set.f32("tex_albedo")?.rows::<3>()?;
        let iters = set.i32("dilate_test_out").map(|_| 3).unwrap_or(3);
        rows.push(compare(
            "dilate_test_out",
            &flat3(&dilate_fill(&tex, &gmask, res, iters)),
            &set.f32("dilate_test_out")?.data,
            TOL_GEOMETRY,
        ));
        Ok(rows)
    };
    let rows =
        run().unwrap_or_else(|e| vec![Comparison::failed("bake_rast", TOL_NETWORK, format!("stage error: {e}"))]);
    report.push("texture bake (from the golden unwrapped mesh and decoder outputs)", rows);
}

/// Export transforms, welding and normals from the golden unwrapped mesh.
fn export_side(set: &GoldenSet, report: &mut ParityReport) {
    let run = || -> Result<Vec<Comparison>> {
        let mesh = golden_unwrapped(set)?;
        let ex = crate::mesh::glb::prepare_export(&mesh.positions, &mesh.faces, &mesh.uvs)?;
        let flat3 = |v: &[[f32; 3]]| v.iter().flatten().copied().collect::<Vec<f32>>();
        // Golden final_uv is trimesh's value before its glTF export flips v.
        let uv: Vec<f32> = ex.uvs.iter().flat_map(|t| [t[0], 1.0 - t[1]]).collect();
        Ok(vec![
            compare("final_vertices", &flat3(&ex.positions), &set.f32("final_vertices")?.data, TOL_GEOMETRY),
            compare(
                "final_faces",
                &ex.faces.iter().flatten().map(|&i| i as f32).collect::<Vec<_>>(),
                &set.i32("final_faces")?.data.iter().map(|&i| i as f32).collect::<Vec<_>>(),
                Tolerance::Exact,
            ),
            compare("final_uv", &uv, &set.f32("final_uv")?.data, TOL_GEOMETRY),
            compare("final_vertex_normals", &flat3(&ex.normals), &set.f32("final_vertex_normals")?.data, TOL_NETWORK),
        ])
    };
    let rows =
        run().unwrap_or_else(|e| vec![Comparison::failed("final_vertices", TOL_GEOMETRY, format!("stage error: {e}"))]);
    report.push("GLB export: transforms, welding, normals (from the golden unwrapped mesh)", rows);
}

/// The whole pipeline from `input.png` (no foreground crop, like the golden run) against the reference's
/// `mesh.glb`: face count, every face corner in order (welding differs where the unwrap layering does), and the
/// PBR factors.
fn pipeline_side(set: &GoldenSet, net: &Sf3dNetwork, face_bounds: Option<&[f32]>, report: &mut ParityReport) {
    let run = || -> Result<Vec<Comparison>> {
        let res = set.shape("bake_mask")?[0] as u32;
        let grid = golden_tet_grid(set, net.config.sf3d.isosurface_resolution)?;
        let model =
            sf3d_shared::ModelInfo { id: "golden".into(), test_model: false, attribution: None, dtype: "f32".into() };
        let device = sf3d_shared::DeviceInfo {
            kind: sf3d_shared::DeviceKind::Cpu,
            name: "cpu".into(),
            memory_total_bytes: None,
        };
        let options = crate::pipeline::PipelineOptions { crop_foreground: false, ..Default::default() };
        let pipeline = crate::pipeline::Pipeline::new(net.clone(), grid, model, device, options);
        let bytes = std::fs::read(set.file("input.png")).map_err(|e| Error::io(set.file("input.png"), e))?;
        // Parameters must pass validation; the bake size does not change the geometry.
        let params = sf3d_shared::GenerateParams { texture_resolution: res.max(512), ..Default::default() };
        let generation = pipeline.run(&bytes, &params, &mut crate::pipeline::NoEvents)?;
        let ours = read_glb_geometry(&generation.extracted.glb)?;
        let reference =
            read_glb_geometry(&std::fs::read(set.file("mesh.glb")).map_err(|e| Error::io(set.file("mesh.glb"), e))?)?;
        let corners = |g: &GlbGeometry| {
            g.faces.iter().flat_map(|f| f.iter().flat_map(|&i| g.positions[i as usize])).collect::<Vec<f32>>()
        };
        let mut faces =
            compare("mesh.glb faces", &[ours.faces.len() as f32], &[reference.faces.len() as f32], Tolerance::Exact);
        faces.note = format!(
            "{} faces; {} vertices after welding, reference {}",
            ours.faces.len(),
            ours.positions.len(),
            reference.positions.len()
        );
        // Our geometry comes from our own network here: the same derived bounds as the chained marching-tets rows.
        let corner = match face_bounds {
            Some(b) => compare_bounded("mesh.glb face corners", &corners(&ours), &corners(&reference), b, 9),
            None => compare("mesh.glb face corners", &corners(&ours), &corners(&reference), TOL_MT_CHAINED),
        };
        let enc = &generation.encoded;
        Ok(vec![
            faces,
            corner,
            compare("final_roughness_factor", &[enc.roughness], &set.f32("final_roughness_factor")?.data, TOL_NETWORK),
            compare("final_metallic_factor", &[enc.metallic], &set.f32("final_metallic_factor")?.data, TOL_NETWORK),
        ])
    };
    let rows = run().unwrap_or_else(|e| {
        vec![Comparison::failed("mesh.glb face corners", TOL_NETWORK, format!("stage error: {e}"))]
    });
    report.push("whole pipeline: input.png → GLB, against the reference's mesh.glb", rows);
}

struct GlbGeometry {
    positions: Vec<[f32; 3]>,
    faces: Vec<[u32; 3]>,
}

fn read_glb_geometry(bytes: &[u8]) -> Result<GlbGeometry> {
    let bad = |m: String| Error::bad_file("mesh.glb", m);
    let g = gltf::Gltf::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let blob = g.blob.clone().ok_or_else(|| bad("no BIN chunk".into()))?;
    let prim = g.meshes().next().and_then(|m| m.primitives().next()).ok_or_else(|| bad("no primitive".into()))?;
    let reader = prim.reader(|_| Some(&blob[..]));
    let positions: Vec<[f32; 3]> = reader.read_positions().ok_or_else(|| bad("no POSITION".into()))?.collect();
    let idx: Vec<u32> = reader.read_indices().ok_or_else(|| bad("no indices".into()))?.into_u32().collect();
    Ok(GlbGeometry { positions, faces: idx.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect() })
}
