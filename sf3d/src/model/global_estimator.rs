//! `global_estimator.*` — `MultiHeadEstimator` (docs/engine.md §3.9): strided convolutions over all planes of
//! `direct_codes`, global max pooling and MLP heads (the spherical-Gaussian illumination amplitudes).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder, conv2d, linear};

use crate::config::{Activation, EstimatorHeadConfig, GlobalEstimatorConfig, Pool};
use crate::model::decoder::activate;

/// Stride of every convolution (no padding).
const CONV_STRIDE: usize = 2;
/// Kernel side of every convolution.
const CONV_KERNEL: usize = 3;

#[derive(Debug, Clone)]
struct Head {
    name: String,
    layers: Vec<Linear>,
    output_bias: f32,
    output_activation: Option<Activation>,
    shape: Option<Vec<i64>>,
}

/// `MultiHeadEstimator`.
#[derive(Debug, Clone)]
pub struct MultiHeadEstimator {
    convs: Vec<Conv2d>,
    act: Activation,
    pool: Pool,
    heads: Vec<Head>,
}

impl MultiHeadEstimator {
    /// Loads `global_estimator.layers.{0,2,…}` and `global_estimator.heads.*`.
    pub fn new(cfg: &GlobalEstimatorConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let conv_cfg = Conv2dConfig { stride: CONV_STRIDE, ..Default::default() };
        let lv = vb.pp("layers");
        let convs = (0..cfg.n_layers)
            .map(|i| {
                let cin = if i == 0 { 3 * cfg.triplane_features } else { cfg.hidden_features };
                conv2d(cin, cfg.hidden_features, CONV_KERNEL, conv_cfg, lv.pp(2 * i))
            })
            .collect::<Result<_>>()?;
        let hv = vb.pp("heads");
        let heads = cfg.heads.iter().map(|h| Self::head(cfg, h, hv.pp(&h.name))).collect::<Result<_>>()?;
        Ok(Self { convs, act: cfg.activation, pool: cfg.pool, heads })
    }

    fn head(cfg: &GlobalEstimatorConfig, h: &EstimatorHeadConfig, vb: VarBuilder<'_>) -> Result<Head> {
        let mut layers = Vec::new();
        for i in 0..h.n_hidden_layers {
            layers.push(linear(cfg.hidden_features, cfg.hidden_features, vb.pp(2 * i))?);
        }
        layers.push(linear(cfg.hidden_features, h.out_channels, vb.pp(2 * h.n_hidden_layers))?);
        Ok(Head {
            name: h.name.clone(),
            layers,
            output_bias: h.output_bias,
            output_activation: h.output_activation,
            shape: h.shape.clone(),
        })
    }

    /// `direct_codes [B, 3, C, P, P]` → one tensor per head (reshaped to the head's configured `shape`, e.g.
    /// `[B, 24, 1]`), with the head names.
    pub fn forward(&self, direct_codes: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let (b, np, c, h, w) = direct_codes.dims5()?;
        let mut x = direct_codes.reshape((b, np * c, h, w))?;
        for conv in &self.convs {
            x = activate(&conv.forward(&x)?, Some(self.act))?;
        }
        let pooled = match self.pool {
            Pool::Max => x.flatten_from(2)?.max(2)?, // [B, hidden]
        };
        self.heads
            .iter()
            .map(|head| {
                let mut y = pooled.clone();
                let n = head.layers.len();
                for (i, l) in head.layers.iter().enumerate() {
                    y = l.forward(&y)?;
                    if i + 1 < n {
                        y = activate(&y, Some(self.act))?;
                    }
                }
                let y = activate(&(y + head.output_bias as f64)?, head.output_activation)?;
                let y = match &head.shape {
                    Some(shape) => {
                        let known: usize = shape.iter().filter(|&&d| d > 0).map(|&d| d as usize).product();
                        let dims: Vec<usize> = shape
                            .iter()
                            .map(|&d| if d < 0 { y.elem_count() / known.max(1) } else { d as usize })
                            .collect();
                        y.reshape(dims)?
                    }
                    None => y,
                };
                Ok((head.name.clone(), y))
            })
            .collect()
    }
}
