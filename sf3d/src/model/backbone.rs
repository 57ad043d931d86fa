//! `backbone.*` — `TwoStreamInterleaveTransformer` (docs/engine.md §3.4): a latent stream (projected image
//! tokens + learned latents) and a triplane stream that exchange information through fuse blocks, with basic
//! transformer blocks on the latents cross-attending to the raw image tokens.
//!
//! Structs mirror the reference classes: [`Attention`], [`FeedForward`] (GEGLU), [`BasicTransformerBlock`],
//! [`FuseBlock`], [`TwoStreamBlock`] (`main_blocks.N`), [`TwoStreamInterleaveTransformer`]. Every attention goes
//! through [`crate::model::attention::multi_head_attention`], which bounds the score matrix.

use candle_core::{Module, Result, Tensor};
use candle_nn::{GroupNorm, LayerNorm, VarBuilder, group_norm, layer_norm};

use crate::config::BackboneConfig;
use crate::model::attention::{AttentionOptions, multi_head_attention};
use crate::model::linear::{Linear, linear, linear_b};

/// LayerNorm eps of every backbone LayerNorm (PyTorch default).
const LN_EPS: f64 = 1e-5;
/// GroupNorm eps on the triplane input.
const GN_EPS: f64 = 1e-6;

/// diffusers-style `Attention`: `wq`, `wk`, `wv` (bias per config) and `proj` (with bias).
#[derive(Debug, Clone)]
pub struct Attention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    proj: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    /// `query_dim`-wide queries attending to `kv_dim`-wide keys, `heads × head_dim` inner width.
    pub fn new(
        query_dim: usize,
        kv_dim: usize,
        heads: usize,
        head_dim: usize,
        bias: bool,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            wq: linear_b(query_dim, inner, bias, vb.pp("wq"))?,
            wk: linear_b(kv_dim, inner, bias, vb.pp("wk"))?,
            wv: linear_b(kv_dim, inner, bias, vb.pp("wv"))?,
            proj: linear(inner, query_dim, vb.pp("proj"))?,
            heads,
            head_dim,
        })
    }

    /// `z [B, Nq, query_dim]` attends to `x [B, Nk, kv_dim]`.
    pub fn forward(&self, z: &Tensor, x: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let (q, k, v) = (self.wq.forward(z)?, self.wk.forward(x)?, self.wv.forward(x)?);
        let o = multi_head_attention(&q, &k, &v, self.heads, (self.head_dim as f64).powf(-0.5), opts)?;
        self.proj.forward(&o)
    }
}

/// `FeedForward` with GEGLU: `net.0.proj` (dim → 2·4·dim; first half value, second half gate), `net.2`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    /// Loads `ff.net.0.proj` and `ff.net.2` (inner width 4·dim).
    pub fn new(dim: usize, vb: VarBuilder<'_>) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj_in: linear(dim, 2 * inner, vb.pp("net").pp(0).pp("proj"))?,
            proj_out: linear(inner, dim, vb.pp("net").pp(2))?,
        })
    }
}

/// Tokens per feed-forward chunk: the GEGLU hidden state is `8·dim` wide, 906 MB for the 27,648 triplane
/// tokens of the release in f32; chunking bounds it (the rows are independent, so the result is identical).
const FF_CHUNK_TOKENS: usize = 4096;

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(candle_core::D::Minus2)?;
        if n > FF_CHUNK_TOKENS {
            let parts = (0..n)
                .step_by(FF_CHUNK_TOKENS)
                .map(|s| self.forward_rows(&x.narrow(candle_core::D::Minus2, s, FF_CHUNK_TOKENS.min(n - s))?))
                .collect::<Result<Vec<_>>>()?;
            return Tensor::cat(&parts, candle_core::D::Minus2);
        }
        self.forward_rows(x)
    }
}

impl FeedForward {
    fn forward_rows(&self, x: &Tensor) -> Result<Tensor> {
        let u = self.proj_in.forward(x)?;
        self.proj_out.forward(&crate::model::ops::geglu(&u)?)
    }
}

/// `BasicTransformerBlock`: self-attention, cross-attention to the (un-normalised) image tokens, GEGLU.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    /// Loads `transformer_block.k`.
    pub fn new(cfg: &BackboneConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let dim = cfg.inner_dim();
        let (h, hd, bias) = (cfg.num_attention_heads, cfg.attention_head_dim, cfg.attention_bias);
        Ok(Self {
            norm1: layer_norm(dim, LN_EPS, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, h, hd, bias, vb.pp("attn1"))?,
            norm2: layer_norm(dim, LN_EPS, vb.pp("norm2"))?,
            attn2: Attention::new(dim, cfg.cross_attention_dim, h, hd, bias, vb.pp("attn2"))?,
            norm3: layer_norm(dim, LN_EPS, vb.pp("norm3"))?,
            ff: FeedForward::new(dim, vb.pp("ff"))?,
        })
    }

    /// `z [B, Nl, dim]`, `x [B, Ni, cross_dim]`.
    pub fn forward(&self, z: &Tensor, x: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let n = self.norm1.forward(z)?;
        let z = (z + self.attn1.forward(&n, &n, opts)?)?;
        let n = self.norm2.forward(&z)?;
        let z = (&z + self.attn2.forward(&n, x, opts)?)?;
        let n = self.norm3.forward(&z)?;
        &z + self.ff.forward(&n)?
    }
}

/// `FuseBlock` (norm_x_input = false): `z += Attn(LN(z), x)`, `z += FF(LN(z))`.
#[derive(Debug, Clone)]
pub struct FuseBlock {
    attn: Attention,
    norm_z1: LayerNorm,
    norm_z2: LayerNorm,
    ff: FeedForward,
}

impl FuseBlock {
    /// A fuse block whose stream is `dim` wide reading a `dim_cross`-wide stream, with `heads` heads of
    /// `dim / heads` (the reference's `dim_head = dim // num_heads`).
    pub fn new(dim: usize, dim_cross: usize, heads: usize, bias: bool, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            attn: Attention::new(dim, dim_cross, heads, dim / heads, bias, vb.pp("attn"))?,
            norm_z1: layer_norm(dim, LN_EPS, vb.pp("norm_z1"))?,
            norm_z2: layer_norm(dim, LN_EPS, vb.pp("norm_z2"))?,
            ff: FeedForward::new(dim, vb.pp("ff"))?,
        })
    }

    /// `z [B, Nz, dim]` reads `x [B, Nx, dim_cross]`.
    pub fn forward(&self, z: &Tensor, x: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let z = (z + self.attn.forward(&self.norm_z1.forward(z)?, x, opts)?)?;
        &z + self.ff.forward(&self.norm_z2.forward(&z)?)?
    }
}

/// `TwoStreamBlock` (`main_blocks.N`).
#[derive(Debug, Clone)]
pub struct TwoStreamBlock {
    fuse_block_in: FuseBlock,
    transformer_block: Vec<BasicTransformerBlock>,
    fuse_block_out: FuseBlock,
}

impl TwoStreamBlock {
    /// Loads one main block.
    pub fn new(cfg: &BackboneConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let (dim, tri, heads, bias) =
            (cfg.inner_dim(), cfg.triplane_channels, cfg.num_attention_heads, cfg.attention_bias);
        let tb = vb.pp("transformer_block");
        Ok(Self {
            fuse_block_in: FuseBlock::new(dim, tri, heads, bias, vb.pp("fuse_block_in"))?,
            transformer_block: (0..cfg.num_basic_blocks)
                .map(|k| BasicTransformerBlock::new(cfg, tb.pp(k)))
                .collect::<Result<_>>()?,
            fuse_block_out: FuseBlock::new(tri, dim, heads, bias, vb.pp("fuse_block_out"))?,
        })
    }

    /// `(latent, triplane)` after one block; `image` are the raw image tokens.
    pub fn forward(
        &self,
        latent: &Tensor,
        tri: &Tensor,
        image: &Tensor,
        opts: &AttentionOptions,
    ) -> Result<(Tensor, Tensor)> {
        let mut latent = self.fuse_block_in.forward(latent, tri, opts)?;
        for block in &self.transformer_block {
            latent = block.forward(&latent, image, opts)?;
        }
        let tri = self.fuse_block_out.forward(tri, &latent, opts)?;
        Ok((latent, tri))
    }
}

/// Intermediate states for parity tests.
#[derive(Debug, Clone, Default)]
pub struct BackboneTrace {
    /// `(latent, triplane)` after each main block.
    pub blocks: Vec<(Tensor, Tensor)>,
}

/// `TwoStreamInterleaveTransformer`.
#[derive(Debug, Clone)]
pub struct TwoStreamInterleaveTransformer {
    norm_triplane: GroupNorm,
    proj_triplane: Linear,
    norm_image: LayerNorm,
    proj_image: Linear,
    norm_latent: LayerNorm,
    proj_latent: Linear,
    latent_init: Tensor,
    main_blocks: Vec<TwoStreamBlock>,
    proj_out: Linear,
}

impl TwoStreamInterleaveTransformer {
    /// Loads `backbone.*`.
    pub fn new(cfg: &BackboneConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let (dim, raw_tri, tri, raw_img) =
            (cfg.inner_dim(), cfg.raw_triplane_channels, cfg.triplane_channels, cfg.raw_image_channels);
        let init = candle_nn::Init::Randn { mean: 0.0, stdev: cfg.latent_init_std };
        let mb = vb.pp("main_blocks");
        Ok(Self {
            norm_triplane: group_norm(cfg.norm_num_groups, raw_tri, GN_EPS, vb.pp("norm_triplane"))?,
            proj_triplane: linear(raw_tri, tri, vb.pp("proj_triplane"))?,
            norm_image: layer_norm(raw_img, LN_EPS, vb.pp("norm_image"))?,
            proj_image: linear(raw_img, dim, vb.pp("proj_image"))?,
            norm_latent: layer_norm(dim, LN_EPS, vb.pp("norm_latent"))?,
            proj_latent: linear(dim, dim, vb.pp("proj_latent"))?,
            latent_init: vb.get_with_hints((1, cfg.num_latents, dim), "latent_init", init)?,
            main_blocks: (0..cfg.num_blocks).map(|b| TwoStreamBlock::new(cfg, mb.pp(b))).collect::<Result<_>>()?,
            proj_out: linear(tri, raw_tri, vb.pp("proj_out"))?,
        })
    }

    /// Number of main blocks (for progress reporting).
    pub fn num_blocks(&self) -> usize {
        self.main_blocks.len()
    }

    /// `hidden [B, raw_tri, Nt]` (triplane tokens) and `image [B, Ni, raw_img]` → `[B, raw_tri, Nt]`.
    /// `on_block(i)` runs after main block `i` (progress / cancellation: an error stops the forward).
    pub fn forward(
        &self,
        hidden: &Tensor,
        image: &Tensor,
        opts: &AttentionOptions,
        mut trace: Option<&mut BackboneTrace>,
        on_block: &mut dyn FnMut(usize) -> crate::Result<()>,
    ) -> crate::Result<Tensor> {
        let b = hidden.dim(0)?;
        let tri = self.norm_triplane.forward(hidden)?.transpose(1, 2)?.contiguous()?; // [B, Nt, raw_tri]
        let mut tri = self.proj_triplane.forward(&tri)?;
        let img = self.proj_image.forward(&self.norm_image.forward(image)?)?;
        let lat0 = self.proj_latent.forward(&self.norm_latent.forward(&self.latent_init.to_dtype(image.dtype())?)?)?;
        let lat0 = lat0.broadcast_as((b, lat0.dim(1)?, lat0.dim(2)?))?;
        let mut latent = Tensor::cat(&[&img, &lat0], 1)?;
        for (i, block) in self.main_blocks.iter().enumerate() {
            (latent, tri) = block.forward(&latent, &tri, image, opts)?;
            if let Some(t) = trace.as_deref_mut() {
                t.blocks.push((latent.clone(), tri.clone()));
            }
            on_block(i)?;
        }
        let out = self.proj_out.forward(&tri)?.transpose(1, 2)?; // [B, raw_tri, Nt]
        Ok((out + hidden)?)
    }
}
