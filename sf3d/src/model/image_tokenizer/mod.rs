//! `image_tokenizer.*` — `DINOV2SingleImageTokenizer` (docs/engine.md §3.2): ImageNet normalisation, the
//! camera-modulated DINOv2 ([`dinov2`]), and the token layout the backbone expects.

pub mod dinov2;
pub mod modulation;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::model::attention::AttentionOptions;
use dinov2::{Dinov2Model, Dinov2Trace};

/// ImageNet mean (a non-persistent buffer of the reference tokenizer).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet std.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `DINOV2SingleImageTokenizer`.
#[derive(Debug, Clone)]
pub struct Dinov2SingleImageTokenizer {
    model: Dinov2Model,
}

impl Dinov2SingleImageTokenizer {
    /// Loads `image_tokenizer.model.*`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let it = &cfg.sf3d.image_tokenizer;
        let model = Dinov2Model::new(&cfg.dinov2, it.height, it.width, it.modulation_cond_dim, vb.pp("model"))?;
        Ok(Self { model })
    }

    /// The DINOv2 model.
    pub fn model(&self) -> &Dinov2Model {
        &self.model
    }

    /// `images [N, 3, H, W]` in [0, 1] (grey-blended) and `cond [N, cond_dim]` → `tokens [N, T, C]`
    /// (CLS first, then the patches row-major: the reference's `[B, Nv, C, T]` output rearranged to
    /// `[B, Nv·T, C]` with Nv = 1).
    pub fn forward(
        &self,
        images: &Tensor,
        cond: &Tensor,
        opts: &AttentionOptions,
        trace: Option<&mut Dinov2Trace>,
    ) -> Result<Tensor> {
        let dev = images.device();
        let mean = Tensor::new(&IMAGENET_MEAN, dev)?.to_dtype(images.dtype())?.reshape((1, 3, 1, 1))?;
        let std = Tensor::new(&IMAGENET_STD, dev)?.to_dtype(images.dtype())?.reshape((1, 3, 1, 1))?;
        let x = images.broadcast_sub(&mean)?.broadcast_div(&std)?;
        self.model.forward(&x, cond, opts, trace)
    }
}
