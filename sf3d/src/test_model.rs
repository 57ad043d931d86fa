//! The built-in test model: a tiny SF3D (same modules and key names as the release) with seeded random weights,
//! generated in-process, so that every stage of the product runs on a machine without the release weights.
//!
//! **Its shapes are meaningless.** Random weights give a random field; a few weights are shaped (as the tiny-a
//! golden set's generator does) so that the field is smooth and crosses the iso-level, i.e. marching tetrahedra
//! finds a compact surface instead of noise or nothing:
//! * the triplane embeddings are sums of two low-frequency cosines per channel and plane (+ 5 % noise);
//! * `backbone.proj_out` is scaled by 0.05 and the triplane stream's residual branches by 0.02, so the image
//!   changes the result, but only a little;
//! * the 16 sub-pixel filters of every output channel of the last post-processor conv are made equal;
//! * the density head's first layer reads only the first channel of each plane;
//! * the density head's last Linear is scaled and shifted so that its pre-activation has a standard deviation of
//!   1.5 on the grid and 12 % of the grid lies inside, calibrated on a fixed synthetic image.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;

use crate::config::{ClipConfig, ClipTextConfig, ClipVisionConfig, Dinov2Config, ModelConfig, Sf3dConfig};
use crate::error::Result;
use crate::mesh::tets::TetGrid;
use crate::model::Sf3dNetwork;
use crate::preprocess::prepare_conditioning;
use crate::weights::WeightSource;

/// Model id reported for the test model.
pub const TEST_MODEL_ID: &str = "builtin-test";
/// Seed of the test model's weights.
pub const TEST_MODEL_SEED: u64 = 20_261_127;
/// Fraction of the tet grid inside the surface for the calibration image.
const INSIDE_FRACTION: f64 = 0.12;
/// Standard deviation of the density pre-activation on the grid.
const DENSITY_PREACT_STD: f64 = 1.5;
/// Scale of `backbone.proj_out`.
const PROJ_OUT_SCALE: f64 = 0.05;
/// Scale of the triplane stream's residual branches (`fuse_block_out` attention and feed-forward outputs): random
/// residuals grow the stream block after block, which would drown the smooth embeddings in noise.
const TRIPLANE_RESIDUAL_SCALE: f64 = 0.02;
/// Weight of the random init kept in the shaped triplane embeddings.
const EMBEDDING_NOISE: f32 = 0.05;
/// Amplitude of the smooth triplane field.
const EMBEDDING_AMPLITUDE: f32 = 3.0;

/// The test model's `config.yaml` (the release's keys, tiny values).
pub const TEST_CONFIG_YAML: &str = include_str!("test_model_config.yaml");

/// Architecture of the test model.
pub fn test_model_config() -> Result<ModelConfig> {
    let sf3d = Sf3dConfig::from_yaml_str(TEST_CONFIG_YAML, "<built-in test model>")?;
    let dinov2 = Dinov2Config {
        hidden_size: 96,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        mlp_ratio: 4.0,
        hidden_act: crate::config::HiddenAct::Gelu,
        layer_norm_eps: 1e-6,
        image_size: 126,
        patch_size: 14,
        num_channels: 3,
        qkv_bias: true,
        layerscale_value: 1.0,
        use_swiglu_ffn: false,
        num_register_tokens: 0,
    };
    let clip = ClipConfig {
        embed_dim: 32,
        vision_cfg: ClipVisionConfig {
            image_size: 224,
            layers: 2,
            width: 64,
            patch_size: 32,
            head_width: 32,
            mlp_ratio: 4.0,
        },
        text_cfg: ClipTextConfig { context_length: 16, vocab_size: 512, width: 32, heads: 2, layers: 1 },
        name: Some("sf3d-test-clip".into()),
    };
    let cfg = ModelConfig { sf3d, dinov2, clip };
    cfg.check("<built-in test model>")?;
    Ok(cfg)
}

/// A fixed calibration image: a soft-edged disc with a colour gradient on a transparent background.
fn calibration_image(size: u32) -> image::RgbaImage {
    let c = size as f32 / 2.0;
    image::RgbaImage::from_fn(size, size, |x, y| {
        let (dx, dy) = (x as f32 - c, y as f32 - c);
        let r = (dx * dx + dy * dy).sqrt() / c;
        let a = ((0.8 - r) * 20.0).clamp(0.0, 1.0);
        image::Rgba([
            (255.0 * x as f32 / size as f32) as u8,
            120,
            (255.0 * y as f32 / size as f32) as u8,
            (a * 255.0) as u8,
        ])
    })
}

fn smooth_embeddings(shape: &[usize], noise: &Tensor, seed: u64) -> Result<Tensor> {
    use rand::{Rng, SeedableRng};
    let (np, ch, p) = (shape[0], shape[1], shape[2]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut data = vec![0f32; np * ch * p * p];
    for plane in 0..np {
        for c in 0..ch {
            let waves: Vec<(f32, f32, f32)> = (0..2)
                .map(|_| {
                    (
                        rng.random_range(0..2) as f32,
                        rng.random_range(0..2) as f32,
                        rng.random_range(0.0..std::f32::consts::TAU),
                    )
                })
                .collect();
            for i in 0..p {
                for j in 0..p {
                    let (u, v) = (2.0 * i as f32 / (p - 1) as f32 - 1.0, 2.0 * j as f32 / (p - 1) as f32 - 1.0);
                    let s: f32 =
                        waves.iter().map(|(fu, fv, ph)| (std::f32::consts::PI * (fu * u + fv * v) + ph).cos()).sum();
                    // A window that vanishes at the plane borders keeps the surface away from the grid boundary.
                    let window = (1.0 - u * u) * (1.0 - v * v);
                    data[((plane * ch + c) * p + i) * p + j] =
                        EMBEDDING_AMPLITUDE * window * s / std::f32::consts::SQRT_2;
                }
            }
        }
    }
    let smooth = Tensor::from_vec(data, shape.to_vec(), noise.device())?;
    Ok((smooth + (noise * EMBEDDING_NOISE as f64)?)?)
}

/// Random weights for any config, shaped so that the density field is smooth and compact (see the module docs;
/// everything but the density calibration, which needs scene codes: [`calibrate_density`]). Each tensor is
/// generated and shaped when the network asks for it, so no second copy of the weights ever exists.
pub fn shaped_random_model(cfg: ModelConfig, seed: u64, device: &Device, dtype: DType) -> Result<Sf3dNetwork> {
    let source = ShapedRandom { inner: WeightSource::random(seed), cfg: cfg.sf3d.clone(), seed };
    Sf3dNetwork::new(cfg, VarBuilder::from_backend(Box::new(source), dtype, device.clone()))
}

/// [`WeightSource::random`] with the shaping edits of the module docs applied per tensor.
struct ShapedRandom {
    inner: WeightSource,
    cfg: Sf3dConfig,
    seed: u64,
}

impl ShapedRandom {
    /// The edit of the tensor `name` (generated in f32 on the CPU), if it has one.
    fn shape(&self, name: &str, t: Tensor) -> Result<Tensor> {
        let triplane_residual = (0..self.cfg.backbone.num_blocks).any(|b| {
            let block = format!("backbone.main_blocks.{b}.fuse_block_out");
            name.strip_prefix(block.as_str())
                .is_some_and(|rest| rest == ".attn.proj.weight" || rest == ".ff.net.2.weight")
        });
        let pp = &self.cfg.post_processor;
        let last = format!("post_processor.upsample.{}", 2 * (pp.conv_layers - 1));
        let (last_weight, last_bias) = (format!("{last}.weight"), format!("{last}.bias"));
        let r2 = pp.scale_factor.pow(2);
        Ok(match name {
            "tokenizer.embeddings" => smooth_embeddings(t.dims(), &t, self.seed)?,
            "backbone.proj_out.weight" => (t * PROJ_OUT_SCALE)?,
            _ if triplane_residual => (t * TRIPLANE_RESIDUAL_SCALE)?,
            n if n == last_weight => {
                let (out, cin, k1, k2) = t.dims4()?;
                let w = t.reshape((out / r2, r2, cin, k1, k2))?.narrow(1, 0, 1)?;
                w.broadcast_as((out / r2, r2, cin, k1, k2))?.reshape((out, cin, k1, k2))?.contiguous()?
            }
            n if n == last_bias => {
                let out = t.dim(0)?;
                let b = t.reshape((out / r2, r2))?.narrow(1, 0, 1)?.broadcast_as((out / r2, r2))?;
                b.reshape(out)?.contiguous()?
            }
            // The density head reads only the first channel of each plane: a sum over all 3·C' random-signed
            // channels is a rough field (a sponge with 10⁶ triangles at the release size); three smooth channels
            // give compact blobs.
            "decoder.heads.density.0.weight" => {
                let (hidden, inputs) = t.dims2()?;
                let keep: Vec<f32> = (0..inputs).map(|i| if i % pp.out_channels == 0 { 1.0 } else { 0.0 }).collect();
                let keep = Tensor::from_vec(keep, (1, inputs), t.device())?;
                t.broadcast_mul(&keep)?.reshape((hidden, inputs))?
            }
            _ => t,
        })
    }
}

impl SimpleBackend for ShapedRandom {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.inner.get(s, name, h, DType::F32, &Device::Cpu)?;
        let t = self.shape(name, t).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.inner.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

/// Rescales the density head so that on `grid`, for these scene codes (`[3, C', R, R]`), its pre-activation has
/// a standard deviation of 1.5 and 12 % of the vertices are inside, oriented so that the grid boundary tends to be
/// outside: random weights then give a surface (mostly closed; not a guarantee).
pub fn calibrate_density(net: &mut Sf3dNetwork, scene_codes: &Tensor, grid: &TetGrid) -> Result<()> {
    let cfg = net.config.sf3d.clone();
    let sampler = net.sampler(scene_codes)?;
    let rad = cfg.radius;
    let world: Vec<f32> = grid.vertices.iter().flat_map(|v| v.map(|x| x * 2.0 * rad - rad)).collect();
    let points = Tensor::from_vec(world, (grid.vertices.len(), 3), &Device::Cpu)?.to_device(net.device())?;
    let head = net.decoder().head("density")?;
    let mut pre: Vec<f32> = Vec::with_capacity(grid.vertices.len());
    let mut start = 0;
    while start < grid.vertices.len() {
        let len = net.point_batch.min(grid.vertices.len() - start);
        let feats = sampler.query(&points.narrow(0, start, len)?)?;
        pre.extend(head.mlp(&feats)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?);
        start += len;
    }
    let n = pre.len() as f64;
    let mean = pre.iter().map(|&x| x as f64).sum::<f64>() / n;
    let std = (pre.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt().max(1e-12);
    // Orient the field so that the grid boundary (where the windowed embeddings fade) lies on the outside.
    let on_boundary = |v: &[f32; 3]| v.iter().any(|&x| x <= 0.0 || x >= 1.0);
    let (bsum, bn) = grid
        .vertices
        .iter()
        .zip(&pre)
        .filter(|(v, _)| on_boundary(v))
        .fold((0.0, 0usize), |(s, k), (_, &p)| (s + p as f64, k + 1));
    let sign = if bn > 0 && bsum / bn as f64 > mean { -1.0 } else { 1.0 };
    let scale = sign * DENSITY_PREACT_STD / std;
    let mut scaled: Vec<f64> = pre.iter().map(|&x| (x as f64 - mean) * scale).collect();
    scaled.sort_by(|a, b| a.total_cmp(b));
    let q = scaled[(((1.0 - INSIDE_FRACTION) * n) as usize).min(scaled.len() - 1)];
    // Inside ⇔ pre' − 1 > ln(threshold) with pre' = (pre − mean)·scale + shift: put the (1 − f) quantile there.
    let inside_level = 1.0 + (cfg.isosurface_threshold as f64).ln();
    Ok(net.decoder_mut().recalibrate_head("density", mean, scale, inside_level - q)?)
}

/// The test model's network on `device` (f32), calibrated on a fixed image: deterministic, about a second.
pub fn build_test_model(device: &Device) -> Result<(Sf3dNetwork, TetGrid)> {
    let cfg = test_model_config()?;
    let grid = TetGrid::freudenthal(cfg.sf3d.isosurface_resolution)?;
    let mut net = shaped_random_model(cfg.clone(), TEST_MODEL_SEED, device, DType::F32)?;
    let size = cfg.sf3d.cond_image_size as u32;
    let cond = prepare_conditioning(&calibration_image(size), size, cfg.sf3d.background_color);
    let s = size as usize;
    let rgb = Tensor::from_vec(cond.rgb, (1, s, s, 3), &Device::Cpu)?;
    let tokens = net.encode_image(&rgb, None)?;
    let (_, scene) = net.triplanes(&net.run_backbone(&tokens, None, &mut |_| Ok(()))?)?;
    calibrate_density(&mut net, &scene.get(0)?, &grid)?;
    Ok((net, grid))
}

/// A synthetic product-like RGBA image for benchmarks (a soft disc with a gradient, transparent background).
pub fn bench_image(size: u32) -> image::RgbaImage {
    calibration_image(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::isosurface::marching_tetrahedra;

    /// The test model is deterministic and its calibration image gives a surface with a few thousand vertices.
    #[test]
    fn test_model_finds_a_surface() {
        let (net, grid) = build_test_model(&Device::Cpu).unwrap();
        let cfg = &net.config.sf3d;
        let size = cfg.cond_image_size as u32;
        let cond = prepare_conditioning(&calibration_image(size), size, cfg.background_color);
        let s = size as usize;
        let rgb = Tensor::from_vec(cond.rgb, (1, s, s, 3), &Device::Cpu).unwrap();
        let tokens = net.encode_image(&rgb, None).unwrap();
        let (_, scene) = net.triplanes(&net.run_backbone(&tokens, None, &mut |_| Ok(())).unwrap()).unwrap();
        let sampler = net.sampler(&scene.get(0).unwrap()).unwrap();
        let rad = cfg.radius;
        let world: Vec<f32> = grid.vertices.iter().flat_map(|v| v.map(|x| x * 2.0 * rad - rad)).collect();
        let pts = Tensor::from_vec(world, (grid.vertices.len(), 3), &Device::Cpu).unwrap();
        let out = net.query(&sampler, &pts, &["density", "vertex_offset"], &mut crate::NoProgress).unwrap();
        let sdf: Vec<f32> = (&out[0] - 10.0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let inside = sdf.iter().filter(|&&x| x > 0.0).count() as f64 / sdf.len() as f64;
        assert!((inside - INSIDE_FRACTION).abs() < 0.01, "inside fraction {inside}");
        let def: Vec<f32> = out[1].flatten_all().unwrap().to_vec1().unwrap();
        let def: Vec<[f32; 3]> = def.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
        let iso = marching_tetrahedra(&grid, &sdf, &def, cfg.isosurface_resolution, cfg.radius).unwrap();
        println!("test model: {} vertices, {} faces", iso.mesh.vertex_count(), iso.mesh.face_count());
        assert!(iso.mesh.vertex_count() > 500, "{}", iso.mesh.vertex_count());
        let boundary_inside = grid
            .vertices
            .iter()
            .zip(&sdf)
            .filter(|(v, s)| v.iter().any(|&x| x <= 0.0 || x >= 1.0) && **s > 0.0)
            .count();
        println!("boundary vertices inside: {boundary_inside}; signed volume {}", iso.mesh.signed_volume());
        // Mostly closed: few boundary vertices inside (the windowed embeddings fade there).
        assert!(boundary_inside < grid.vertices.len() / 50, "{boundary_inside} boundary vertices inside");
        assert!(iso.mesh.signed_volume() < 0.0);
        let (net2, _) = build_test_model(&Device::Cpu).unwrap();
        let a: Vec<f32> = net.tokenizer().forward(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = net2.tokenizer().forward(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
    }
}
