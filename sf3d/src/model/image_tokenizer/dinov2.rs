//! `image_tokenizer.model.*` — Hugging Face `Dinov2Model` with per-layer AdaLN modulation (docs/engine.md §3.2).
//!
//! Key names follow transformers' Dinov2 (`embeddings.*`, `encoder.layer.N.attention.attention.query`, …), one
//! struct per reference class. The position-embedding table is interpolated once at construction with the exact
//! bicubic "+0.1" semantics (docs/engine.md §3.2; the candle zoo's nearest-neighbour resize is not used).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, VarBuilder, conv2d, layer_norm};

use super::modulation::Modulation;
use crate::config::{Dinov2Config, HiddenAct};
use crate::model::attention::{AttentionOptions, multi_head_attention};
use crate::model::interpolate::{bicubic_matrix, resize_separable};
use crate::model::linear::{Linear, linear, linear_b};

/// `Dinov2Embeddings`: patch projection, CLS token and the interpolated position table.
#[derive(Debug, Clone)]
pub struct Dinov2Embeddings {
    cls_token: Tensor,
    projection: Conv2d,
    /// Position embeddings for the configured input size, `[1, 1 + h·w, hidden]` (CLS row first).
    pos_embed: Tensor,
}

impl Dinov2Embeddings {
    /// Loads the embeddings and interpolates the position table for an `height × width` input.
    pub fn new(cfg: &Dinov2Config, height: usize, width: usize, vb: VarBuilder<'_>) -> Result<Self> {
        let hidden = cfg.hidden_size;
        let init = candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let cls_token = vb.get_with_hints((1, 1, hidden), "cls_token", init)?;
        // Present in the checkpoint (a persistent buffer), unused at inference.
        let _mask_token = vb.get((1, hidden), "mask_token")?;
        let grid = cfg.pos_grid();
        let table = vb.get_with_hints((1, grid * grid + 1, hidden), "position_embeddings", init)?;
        let conv_cfg = Conv2dConfig { stride: cfg.patch_size, ..Default::default() };
        let projection =
            conv2d(cfg.num_channels, hidden, cfg.patch_size, conv_cfg, vb.pp("patch_embeddings").pp("projection"))?;
        let pos_embed = interpolate_pos_embed(&table, grid, height / cfg.patch_size, width / cfg.patch_size)?;
        Ok(Self { cls_token, projection, pos_embed })
    }

    /// The interpolated position table `[1, 1 + h·w, hidden]`.
    pub fn pos_embed(&self) -> &Tensor {
        &self.pos_embed
    }

    /// `pixel_values [N, 3, H, W]` (already normalised) → `[N, 1 + h·w, hidden]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let n = pixel_values.dim(0)?;
        let x = self.projection.forward(pixel_values)?; // [N, hidden, h, w]
        let x = x.flatten_from(2)?.transpose(1, 2)?; // [N, h·w, hidden]
        let cls = self.cls_token.broadcast_as((n, 1, x.dim(2)?))?.to_dtype(x.dtype())?;
        let x = Tensor::cat(&[&cls, &x], 1)?;
        x.broadcast_add(&self.pos_embed.to_dtype(x.dtype())?)
    }
}

/// transformers' `interpolate_pos_encoding`: the patch rows of the table viewed as a `grid × grid` image,
/// resized bicubically with scale factors `(h + 0.1)/grid`, `(w + 0.1)/grid` (docs/engine.md §3.2), computed in f32.
pub fn interpolate_pos_embed(table: &Tensor, grid: usize, h: usize, w: usize) -> Result<Tensor> {
    let dev = table.device().clone();
    let hidden = table.dim(2)?;
    let table = table.to_dtype(candle_core::DType::F32)?;
    let cls = table.narrow(1, 0, 1)?;
    if grid == h && grid == w {
        return Ok(table);
    }
    let patches = table.narrow(1, 1, grid * grid)?.reshape((grid, grid, hidden))?.permute((2, 0, 1))?; // [C, g, g]
    let (out_h, wy) = bicubic_matrix(grid, (h as f64 + 0.1) / grid as f64);
    let (out_w, wx) = bicubic_matrix(grid, (w as f64 + 0.1) / grid as f64);
    if (out_h, out_w) != (h, w) {
        candle_core::bail!("position embedding interpolation gave {out_h}×{out_w}, expected {h}×{w}");
    }
    let resized = resize_separable(&patches.contiguous()?, &wy, &wx, out_h, out_w, &dev)?; // [C, h, w]
    let resized = resized.permute((1, 2, 0))?.reshape((1, h * w, hidden))?;
    Tensor::cat(&[&cls, &resized], 1)
}

/// `Dinov2SelfAttention` + `Dinov2SelfOutput` (`attention.attention.{query,key,value}`, `attention.output.dense`).
#[derive(Debug, Clone)]
pub struct Dinov2Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    num_heads: usize,
}

impl Dinov2Attention {
    /// Loads the attention of one layer.
    pub fn new(cfg: &Dinov2Config, vb: VarBuilder<'_>) -> Result<Self> {
        let h = cfg.hidden_size;
        let a = vb.pp("attention");
        Ok(Self {
            query: linear_b(h, h, cfg.qkv_bias, a.pp("query"))?,
            key: linear_b(h, h, cfg.qkv_bias, a.pp("key"))?,
            value: linear_b(h, h, cfg.qkv_bias, a.pp("value"))?,
            dense: linear(h, h, vb.pp("output").pp("dense"))?,
            num_heads: cfg.num_attention_heads,
        })
    }

    /// Multi-head self-attention of `x [N, T, C]`.
    pub fn forward(&self, x: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let hd = x.dim(2)? / self.num_heads;
        let (q, k, v) = (self.query.forward(x)?, self.key.forward(x)?, self.value.forward(x)?);
        let o = multi_head_attention(&q, &k, &v, self.num_heads, (hd as f64).powf(-0.5), opts)?;
        self.dense.forward(&o)
    }
}

/// `Dinov2MLP`: `fc2(act(fc1(x)))`.
#[derive(Debug, Clone)]
pub struct Dinov2Mlp {
    fc1: Linear,
    fc2: Linear,
    act: HiddenAct,
}

impl Dinov2Mlp {
    /// Loads `mlp.fc1`, `mlp.fc2`.
    pub fn new(cfg: &Dinov2Config, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            fc1: linear(cfg.hidden_size, cfg.mlp_hidden(), vb.pp("fc1"))?,
            fc2: linear(cfg.mlp_hidden(), cfg.hidden_size, vb.pp("fc2"))?,
            act: cfg.hidden_act,
        })
    }
}

impl Module for Dinov2Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = match self.act {
            HiddenAct::Gelu => crate::model::ops::gelu_erf(&h)?,
        };
        self.fc2.forward(&h)
    }
}

/// `Dinov2Layer` with AdaLN modulation after each norm.
#[derive(Debug, Clone)]
pub struct Dinov2Layer {
    norm1: LayerNorm,
    norm1_modulation: Modulation,
    attention: Dinov2Attention,
    layer_scale1: Tensor,
    norm2: LayerNorm,
    norm2_modulation: Modulation,
    mlp: Dinov2Mlp,
    layer_scale2: Tensor,
}

impl Dinov2Layer {
    /// Loads `encoder.layer.L`.
    pub fn new(cfg: &Dinov2Config, cond_dim: usize, vb: VarBuilder<'_>) -> Result<Self> {
        let h = cfg.hidden_size;
        let ls = candle_nn::Init::Const(cfg.layerscale_value);
        Ok(Self {
            norm1: layer_norm(h, cfg.layer_norm_eps, vb.pp("norm1"))?,
            norm1_modulation: Modulation::new(h, cond_dim, vb.pp("norm1_modulation"))?,
            attention: Dinov2Attention::new(cfg, vb.pp("attention"))?,
            layer_scale1: vb.pp("layer_scale1").get_with_hints(h, "lambda1", ls)?,
            norm2: layer_norm(h, cfg.layer_norm_eps, vb.pp("norm2"))?,
            norm2_modulation: Modulation::new(h, cond_dim, vb.pp("norm2_modulation"))?,
            mlp: Dinov2Mlp::new(cfg, vb.pp("mlp"))?,
            layer_scale2: vb.pp("layer_scale2").get_with_hints(h, "lambda1", ls)?,
        })
    }

    /// One pre-norm layer on `x [N, T, C]` conditioned on `cond [N, cond_dim]`.
    pub fn forward(&self, x: &Tensor, cond: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let h = self.norm1_modulation.forward(&self.norm1.forward(x)?, cond)?;
        let a = self.attention.forward(&h, opts)?.broadcast_mul(&self.layer_scale1)?;
        let x = (x + a)?;
        let h = self.norm2_modulation.forward(&self.norm2.forward(&x)?, cond)?;
        let m = self.mlp.forward(&h)?.broadcast_mul(&self.layer_scale2)?;
        x + m
    }
}

/// `Dinov2Model` (embeddings, encoder, final layernorm; no pooler).
#[derive(Debug, Clone)]
pub struct Dinov2Model {
    embeddings: Dinov2Embeddings,
    layers: Vec<Dinov2Layer>,
    layernorm: LayerNorm,
}

/// Hidden states a forward pass can hand back for inspection (parity tests).
#[derive(Debug, Clone, Default)]
pub struct Dinov2Trace {
    /// Embeddings output (CLS + patches + positions).
    pub embeddings: Option<Tensor>,
    /// Output of each layer (before the final LayerNorm).
    pub layers: Vec<Tensor>,
}

impl Dinov2Model {
    /// Loads `image_tokenizer.model`.
    pub fn new(cfg: &Dinov2Config, height: usize, width: usize, cond_dim: usize, vb: VarBuilder<'_>) -> Result<Self> {
        let embeddings = Dinov2Embeddings::new(cfg, height, width, vb.pp("embeddings"))?;
        let vl = vb.pp("encoder").pp("layer");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Dinov2Layer::new(cfg, cond_dim, vl.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let layernorm = layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("layernorm"))?;
        Ok(Self { embeddings, layers, layernorm })
    }

    /// The embeddings module.
    pub fn embeddings(&self) -> &Dinov2Embeddings {
        &self.embeddings
    }

    /// `last_hidden_state [N, T, C]` for normalised `pixel_values [N, 3, H, W]`; intermediate states go to
    /// `trace` when given.
    pub fn forward(
        &self,
        pixel_values: &Tensor,
        cond: &Tensor,
        opts: &AttentionOptions,
        mut trace: Option<&mut Dinov2Trace>,
    ) -> Result<Tensor> {
        let mut x = self.embeddings.forward(pixel_values)?;
        if let Some(t) = trace.as_deref_mut() {
            t.embeddings = Some(x.clone());
        }
        for layer in &self.layers {
            x = layer.forward(&x, cond, opts)?;
            if let Some(t) = trace.as_deref_mut() {
                t.layers.push(x.clone());
            }
        }
        self.layernorm.forward(&x)
    }
}
