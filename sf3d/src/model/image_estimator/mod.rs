//! `image_estimator.*` — `ClipBasedHeadEstimator` (docs/engine.md §3.8): OpenCLIP vision features of the masked
//! conditioning image, then per-material Beta heads whose mode is the estimate (roughness, metallic).

pub mod clip;

use std::collections::BTreeMap;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use crate::config::{
    Activation, ClipConfig, Distribution, DistributionEval, EstimatorHeadConfig, ImageEstimatorConfig,
};
use crate::model::attention::AttentionOptions;
use crate::model::decoder::{activate, softplus};
use crate::model::interpolate::{bilinear_matrix, resize_separable};
use crate::model::linear::with_f32_products;
use clip::VisionTransformer;

/// OpenAI CLIP normalisation mean.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP normalisation std.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// A sequence of Linear layers with an activation after each (optionally not after the last).
#[derive(Debug, Clone)]
struct Mlp {
    layers: Vec<Linear>,
    act: Activation,
    act_last: bool,
}

impl Mlp {
    fn new(dims: &[usize], act: Activation, act_last: bool, vb: VarBuilder<'_>) -> Result<Self> {
        let layers =
            dims.windows(2).enumerate().map(|(i, d)| linear(d[0], d[1], vb.pp(2 * i))).collect::<Result<_>>()?;
        Ok(Self { layers, act, act_last })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let n = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i + 1 < n || self.act_last {
                h = activate(&h, Some(self.act))?;
            }
        }
        Ok(h)
    }
}

/// One Beta head: shared trunk (`H.0`) and the two concentration branches (`H.1`, `H.2`).
#[derive(Debug, Clone)]
struct BetaHead {
    trunk: Mlp,
    branch_alpha: Mlp,
    branch_beta: Mlp,
    output_bias: f32,
    output_activation: Option<Activation>,
}

impl BetaHead {
    fn new(
        cfg: &EstimatorHeadConfig,
        in_dim: usize,
        hidden: usize,
        act: Activation,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let mut trunk_dims = vec![in_dim];
        trunk_dims.extend(std::iter::repeat_n(hidden, cfg.n_hidden_layers));
        Ok(Self {
            trunk: Mlp::new(&trunk_dims, act, true, vb.pp(0))?,
            branch_alpha: Mlp::new(&[hidden, hidden, 1], act, false, vb.pp(1))?,
            branch_beta: Mlp::new(&[hidden, hidden, 1], act, false, vb.pp(2))?,
            output_bias: cfg.output_bias,
            output_activation: cfg.output_activation,
        })
    }
}

/// Mode of Beta(α, β) as PyTorch computes it (docs/engine.md §3.8): `(α−1)₊ / ((α−1)₊ + (β−1)₊)`, 1 when both
/// concentrations are below 1. The reference yields NaN for α = β = 1 exactly; we return 0.5 there (a GLB
/// cannot carry NaN), which is the limit along α = β.
pub fn beta_mode(alpha: f32, beta: f32) -> f32 {
    if alpha < 1.0 && beta < 1.0 {
        return 1.0;
    }
    let (a, b) = ((alpha - 1.0).max(0.0), (beta - 1.0).max(0.0));
    if a + b == 0.0 { 0.5 } else { a / (a + b) }
}

/// Everything the estimator computes (the intermediate values are kept for parity checks and metadata).
#[derive(Debug, Clone)]
pub struct MaterialEstimate {
    /// CLIP input after resize and normalisation, `[N, 3, S, S]`.
    pub clip_input: Tensor,
    /// Pooled CLIP features `[N, embed]`.
    pub features: Tensor,
    /// Per head: `(α, β, value)` for each item.
    pub heads: BTreeMap<String, Vec<(f32, f32, f32)>>,
}

impl MaterialEstimate {
    /// The estimated value of head `name` for item `i` (e.g. `"roughness"`).
    pub fn value(&self, name: &str, i: usize) -> Option<f32> {
        self.heads.get(name).and_then(|v| v.get(i)).map(|t| t.2)
    }
}

/// `ClipBasedHeadEstimator`.
#[derive(Debug, Clone)]
pub struct ClipBasedHeadEstimator {
    visual: VisionTransformer,
    heads: Vec<(String, BetaHead)>,
    image_size: usize,
}

impl ClipBasedHeadEstimator {
    /// Loads `image_estimator.model.visual.*` and `image_estimator.heads.*`.
    pub fn new(cfg: &ImageEstimatorConfig, clip: &ClipConfig, vb: VarBuilder<'_>) -> Result<Self> {
        // The heads are Beta distributions read at their mode; a new variant of either enum needs its own head.
        match (cfg.distribution, cfg.distribution_eval) {
            (Distribution::Beta, DistributionEval::Mode) => {}
        }
        // CLIP is a few GFLOP and its features keep f32 tolerances, so it multiplies in f32 under `--dtype bf16`.
        let visual = with_f32_products(|| VisionTransformer::new(clip, vb.pp("model").pp("visual")))?;
        let hv = vb.pp("heads");
        let heads = cfg
            .heads
            .iter()
            .map(|h| {
                Ok((
                    h.name.clone(),
                    BetaHead::new(h, clip.embed_dim, cfg.hidden_features, cfg.activation, hv.pp(&h.name))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self { visual, heads, image_size: clip.vision_cfg.image_size })
    }

    /// The CLIP input: `rgb [N, H, W, 3] · mask [N, H, W, 1]`, bilinear (no antialias) to the CLIP size, then
    /// OpenAI normalisation → `[N, 3, S, S]`.
    pub fn prepare_input(&self, rgb: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let dev = rgb.device();
        let x = rgb.broadcast_mul(mask)?.permute((0, 3, 1, 2))?.contiguous()?; // [N, 3, H, W]
        let (_, _, h, w) = x.dims4()?;
        let s = self.image_size;
        let x = resize_separable(&x, &bilinear_matrix(h, s), &bilinear_matrix(w, s), s, s, dev)?;
        let mean = Tensor::new(&CLIP_MEAN, dev)?.to_dtype(x.dtype())?.reshape((1, 3, 1, 1))?;
        let std = Tensor::new(&CLIP_STD, dev)?.to_dtype(x.dtype())?.reshape((1, 3, 1, 1))?;
        x.broadcast_sub(&mean)?.broadcast_div(&std)
    }

    /// Estimates every head for `rgb_cond [N, H, W, 3]`, `mask_cond [N, H, W, 1]`.
    pub fn forward(&self, rgb: &Tensor, mask: &Tensor, opts: &AttentionOptions) -> Result<MaterialEstimate> {
        let clip_input = self.prepare_input(rgb, mask)?;
        let features = self.visual.forward(&clip_input, opts)?;
        let mut heads = BTreeMap::new();
        for (name, head) in &self.heads {
            let s = head.trunk.forward(&features)?;
            let conc = |branch: &Mlp| -> Result<Vec<f32>> {
                let d = (branch.forward(&s)? + head.output_bias as f64)?;
                softplus(&d)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()
            };
            let (alpha, beta) = (conc(&head.branch_alpha)?, conc(&head.branch_beta)?);
            let values = alpha
                .iter()
                .zip(&beta)
                .map(|(&a, &b)| {
                    let v = beta_mode(a, b);
                    // "linear" output activation: identity; anything else is applied to the mode.
                    let v = match head.output_activation {
                        None | Some(Activation::Linear) => v,
                        Some(act) => {
                            activate(&Tensor::new(&[v], &candle_core::Device::Cpu)?, Some(act))?.to_vec1::<f32>()?[0]
                        }
                    };
                    Ok((a, b, v))
                })
                .collect::<Result<Vec<_>>>()?;
            heads.insert(name.clone(), values);
        }
        Ok(MaterialEstimate { clip_input, features, heads })
    }
}

#[cfg(test)]
mod tests {
    use super::beta_mode;

    #[test]
    fn beta_mode_matches_pytorch_cases() {
        assert_eq!(beta_mode(3.0, 2.0), 2.0 / 3.0);
        assert_eq!(beta_mode(0.5, 0.5), 1.0);
        assert_eq!(beta_mode(0.5, 3.0), 0.0);
        assert_eq!(beta_mode(3.0, 0.5), 1.0);
        assert_eq!(beta_mode(1.0, 1.0), 0.5);
    }
}
