//! AdaLN modulation of the DINOv2 LayerNorms by the camera embedding (`norm{1,2}_modulation`), the
//! single-layer `Modulation` of docs/engine.md §3.2: `e = linear2(SiLU(cond))`, `scale, shift = e.chunk(2)`,
//! `out = h·(1 + scale) + shift`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::linear::{Linear, linear};

/// One `Modulation` module (only `linear2`; SF3D has no `linear1`).
#[derive(Debug, Clone)]
pub struct Modulation {
    linear2: Linear,
}

impl Modulation {
    /// Loads `linear2` mapping `cond_dim → 2·dim`.
    pub fn new(dim: usize, cond_dim: usize, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Self { linear2: linear(cond_dim, 2 * dim, vb.pp("linear2"))? })
    }

    /// `(scale, shift)`, each `[N, 1, dim]`, for a condition `[N, cond_dim]`.
    pub fn scale_shift(&self, cond: &Tensor) -> Result<(Tensor, Tensor)> {
        let e = self.linear2.forward(&cond.silu()?)?; // [N, 2·dim]
        let dim = e.dim(1)? / 2;
        let scale = e.narrow(1, 0, dim)?.unsqueeze(1)?;
        let shift = e.narrow(1, dim, dim)?.unsqueeze(1)?;
        Ok((scale, shift))
    }

    /// `h·(1 + scale) + shift` for `h [N, T, dim]`.
    pub fn forward(&self, h: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let (scale, shift) = self.scale_shift(cond)?;
        h.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(&shift)
    }
}
