//! `image_estimator.model.visual.*` — open_clip's `VisionTransformer` (docs/engine.md §3.8): conv1 (no bias)
//! patch embedding, class token, positional embedding, `ln_pre`, pre-LN residual blocks with a fused `in_proj`,
//! `ln_post`, class-token pooling and `@ proj`. The text tower in the checkpoint is not loaded.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, VarBuilder, conv2d_no_bias, layer_norm};

use crate::config::ClipConfig;
use crate::model::attention::{AttentionOptions, multi_head_attention};
use crate::model::linear::{Linear, from_weights, linear};

const LN_EPS: f64 = 1e-5;

/// `nn.MultiheadAttention` with `in_proj_weight [3W, W]` (q, k, v rows) and `out_proj`.
#[derive(Debug, Clone)]
pub struct ClipAttention {
    /// `in_proj_weight`, `in_proj_bias`: the q, k and v projections in one layer.
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl ClipAttention {
    /// Loads `attn.*`.
    pub fn new(width: usize, heads: usize, vb: VarBuilder<'_>) -> Result<Self> {
        let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        Ok(Self {
            in_proj: from_weights(
                vb.get_with_hints((3 * width, width), "in_proj_weight", init)?,
                Some(vb.get((3 * width,), "in_proj_bias")?),
            )?,
            out_proj: linear(width, width, vb.pp("out_proj"))?,
            heads,
        })
    }

    /// Self-attention of `x [N, T, W]`.
    pub fn forward(&self, x: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let w = x.dim(2)?;
        let hd = w / self.heads;
        let qkv = self.in_proj.forward(x)?; // [N, T, 3W]
        let part = |i: usize| qkv.narrow(2, i * w, w);
        let o = multi_head_attention(&part(0)?, &part(1)?, &part(2)?, self.heads, (hd as f64).powf(-0.5), opts)?;
        self.out_proj.forward(&o)
    }
}

/// `ResidualAttentionBlock`.
#[derive(Debug, Clone)]
pub struct ResidualAttentionBlock {
    ln_1: LayerNorm,
    attn: ClipAttention,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
}

impl ResidualAttentionBlock {
    /// Loads `transformer.resblocks.k`.
    pub fn new(cfg: &ClipConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let w = cfg.vision_cfg.width;
        let hidden = (w as f64 * cfg.vision_cfg.mlp_ratio) as usize;
        Ok(Self {
            ln_1: layer_norm(w, LN_EPS, vb.pp("ln_1"))?,
            attn: ClipAttention::new(w, cfg.vision_heads(), vb.pp("attn"))?,
            ln_2: layer_norm(w, LN_EPS, vb.pp("ln_2"))?,
            c_fc: linear(w, hidden, vb.pp("mlp").pp("c_fc"))?,
            c_proj: linear(hidden, w, vb.pp("mlp").pp("c_proj"))?,
        })
    }

    /// `x += attn(ln_1(x)); x += mlp(ln_2(x))` (exact GELU: the laion2b ViT-B-32 is not QuickGELU).
    pub fn forward(&self, x: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, opts)?)?;
        let m = self.c_proj.forward(&crate::model::ops::gelu_erf(&self.c_fc.forward(&self.ln_2.forward(&x)?)?)?)?;
        x + m
    }
}

/// open_clip `VisionTransformer` (`visual.*`).
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    conv1: Conv2d,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    resblocks: Vec<ResidualAttentionBlock>,
    ln_post: LayerNorm,
    proj: Tensor,
}

impl VisionTransformer {
    /// Loads `image_estimator.model.visual`.
    pub fn new(cfg: &ClipConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let v = &cfg.vision_cfg;
        let grid = v.image_size / v.patch_size;
        let init = candle_nn::Init::Randn { mean: 0.0, stdev: (v.width as f64).powf(-0.5) };
        let conv_cfg = Conv2dConfig { stride: v.patch_size, ..Default::default() };
        let rb = vb.pp("transformer").pp("resblocks");
        Ok(Self {
            conv1: conv2d_no_bias(3, v.width, v.patch_size, conv_cfg, vb.pp("conv1"))?,
            class_embedding: vb.get_with_hints(v.width, "class_embedding", init)?,
            positional_embedding: vb.get_with_hints((grid * grid + 1, v.width), "positional_embedding", init)?,
            ln_pre: layer_norm(v.width, LN_EPS, vb.pp("ln_pre"))?,
            resblocks: (0..v.layers).map(|k| ResidualAttentionBlock::new(cfg, rb.pp(k))).collect::<Result<_>>()?,
            ln_post: layer_norm(v.width, LN_EPS, vb.pp("ln_post"))?,
            proj: vb.get_with_hints((v.width, cfg.embed_dim), "proj", init)?,
        })
    }

    /// `images [N, 3, S, S]` (CLIP-normalised) → pooled features `[N, embed_dim]` (not L2-normalised).
    pub fn forward(&self, images: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let x = self.conv1.forward(images)?; // [N, W, g, g]
        let (n, w, _, _) = x.dims4()?;
        let x = x.flatten_from(2)?.transpose(1, 2)?; // [N, g², W]
        let cls = self.class_embedding.reshape((1, 1, w))?.broadcast_as((n, 1, w))?.to_dtype(x.dtype())?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.positional_embedding)?;
        let mut x = self.ln_pre.forward(&x)?;
        for b in &self.resblocks {
            x = b.forward(&x, opts)?;
        }
        let pooled = self.ln_post.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?; // [N, W]
        pooled.matmul(&self.proj)
    }
}
