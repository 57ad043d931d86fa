//! `decoder.*` — `MaterialMLP` (docs/engine.md §3.7): independent MLP heads over the 3·C' triplane feature of a point.
//!
//! `density` (trunc_exp with out_bias −1), `features` (albedo, sigmoid), `perturb_normal` (L2-normalised),
//! `vertex_offset` (raw). The system evaluates `{density, vertex_offset}` on the tet grid and
//! `{features, perturb_normal}` on the baked texels, in batches of points.

use std::collections::BTreeMap;

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use crate::config::{Activation, DecoderConfig, DecoderHeadConfig};

/// eps of `normalize_channel_last` in f32 (1e-4 would be used for f16/bf16).
const NORMALIZE_EPS: f64 = 1e-7;

/// Applies a config activation.
pub fn activate(x: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    match act {
        None | Some(Activation::Linear) => Ok(x.clone()),
        Some(Activation::Silu) => x.silu(),
        Some(Activation::Relu) => x.relu(),
        Some(Activation::TruncExp) => x.exp(),
        Some(Activation::Sigmoid) => candle_nn::ops::sigmoid(x),
        Some(Activation::Softplus) => softplus(x),
        Some(Activation::NormalizeChannelLast) => {
            let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(NORMALIZE_EPS, f64::MAX)?;
            x.broadcast_div(&norm)
        }
    }
}

/// PyTorch `F.softplus` (β = 1, threshold 20): `x` above 20, `ln(1 + eˣ)` below.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let soft = (x.clamp(f64::MIN, 20.0)?.exp()? + 1.0)?.log()?;
    x.gt(20.0)?.where_cond(x, &soft)
}

/// One head: `n_hidden × (Linear → act)` then a Linear, `act_out(mlp(x) + out_bias)`.
#[derive(Debug, Clone)]
pub struct MlpHead {
    layers: Vec<Linear>,
    hidden_act: Activation,
    output_activation: Option<Activation>,
    out_bias: f32,
}

impl MlpHead {
    /// Loads `heads.NAME.{0,2,…}`.
    pub fn new(
        cfg: &DecoderHeadConfig,
        in_channels: usize,
        n_neurons: usize,
        hidden_act: Activation,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.n_hidden_layers + 1);
        let mut dim = in_channels;
        for i in 0..cfg.n_hidden_layers {
            layers.push(linear(dim, n_neurons, vb.pp(2 * i))?);
            dim = n_neurons;
        }
        layers.push(linear(dim, cfg.out_channels, vb.pp(2 * cfg.n_hidden_layers))?);
        Ok(Self { layers, hidden_act, output_activation: cfg.output_activation, out_bias: cfg.out_bias })
    }

    /// The pre-activation `mlp(x)` (before `out_bias` and the output activation).
    pub fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i < last {
                h = activate(&h, Some(self.hidden_act))?;
            }
        }
        Ok(h)
    }
}

impl Module for MlpHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.mlp(x)?;
        let h = if self.out_bias != 0.0 { (h + self.out_bias as f64)? } else { h };
        activate(&h, self.output_activation)
    }
}

/// `MaterialMLP`.
#[derive(Debug, Clone)]
pub struct MaterialMlp {
    heads: BTreeMap<String, MlpHead>,
}

impl MaterialMlp {
    /// Loads `decoder.heads.*`.
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let vb = vb.pp("heads");
        let heads = cfg
            .heads
            .iter()
            .map(|h| {
                Ok((h.name.clone(), MlpHead::new(h, cfg.in_channels, cfg.n_neurons, cfg.activation, vb.pp(&h.name))?))
            })
            .collect::<Result<_>>()?;
        Ok(Self { heads })
    }

    /// A head by name.
    pub fn head(&self, name: &str) -> Result<&MlpHead> {
        self.heads.get(name).ok_or_else(|| candle_core::Error::Msg(format!("decoder has no head {name:?}")))
    }

    /// Replaces the last layer of head `name` by `(W·scale, (b − mean)·scale + shift)`, i.e. maps its
    /// pre-activation `x` to `(x − mean)·scale + shift` (random-weight calibration of the test model).
    pub fn recalibrate_head(&mut self, name: &str, mean: f64, scale: f64, shift: f64) -> Result<()> {
        let head =
            self.heads.get_mut(name).ok_or_else(|| candle_core::Error::Msg(format!("decoder has no head {name:?}")))?;
        let last = head.layers.pop().ok_or_else(|| candle_core::Error::Msg("empty head".into()))?;
        let w = (last.weight() * scale)?;
        let b = match last.bias() {
            Some(b) => (((b - mean)? * scale)? + shift)?,
            None => candle_core::Tensor::full((shift - mean * scale) as f32, w.dim(0)?, w.device())?,
        };
        head.layers.push(Linear::new(w, Some(b)));
        Ok(())
    }

    /// Evaluates the `include`d heads on `features [N, in]` → one `[N, out]` tensor per head.
    pub fn forward(&self, features: &Tensor, include: &[&str]) -> Result<Vec<Tensor>> {
        include.iter().map(|name| self.head(name)?.forward(features)).collect()
    }
}
