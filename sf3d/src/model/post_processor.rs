//! `post_processor.*` — `PixelShuffleUpsampleNetwork` (docs/engine.md §3.5): a 3×3 conv stack with ReLUs on each
//! plane, then PixelShuffle, turning `direct_codes [B, 3, C, P, P]` into `scene_codes [B, 3, C', rP, rP]`.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder, conv2d};
use rayon::prelude::*;

use crate::config::PostProcessorConfig;
use crate::kernels::conv::{ConvWeights, PaddedImage, conv};
use crate::model::ops::with_cpu_f32;

/// `PixelShuffleUpsampleNetwork`; convolutions are `upsample.{0,2,4,…}` (odd indices are ReLUs).
#[derive(Debug, Clone)]
pub struct PixelShuffleUpsampleNetwork {
    convs: Vec<Conv2d>,
    /// The convolutions in the layout of [`crate::kernels::conv`] (CPU f32 weights only; empty otherwise).
    cpu_weights: Vec<ConvWeights>,
    scale: usize,
}

impl PixelShuffleUpsampleNetwork {
    /// Loads the convolutions.
    pub fn new(cfg: &PostProcessorConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let conv_cfg = Conv2dConfig { padding: cfg.conv_kernel_size / 2, ..Default::default() };
        let vb = vb.pp("upsample");
        let r2 = cfg.scale_factor * cfg.scale_factor;
        let convs = (0..cfg.conv_layers)
            .map(|i| {
                let out = if i + 1 == cfg.conv_layers { cfg.out_channels * r2 } else { cfg.in_channels };
                conv2d(cfg.in_channels, out, cfg.conv_kernel_size, conv_cfg, vb.pp(2 * i))
            })
            .collect::<Result<Vec<_>>>()?;
        // On the CPU in f32 the kernel's layout of every layer is made once here, not on every forward: 3×3 kernels
        // transformed for Winograd's F(2×2, 3×3), or packed for bf16 products under `--dtype bf16`.
        let on_cpu_f32 = convs.iter().all(|c| c.weight().device().is_cpu() && c.weight().dtype() == DType::F32);
        let bf16 = crate::model::linear::bf16_products();
        let cpu_weights = if on_cpu_f32 {
            convs
                .iter()
                .map(|c| {
                    let w = cpu_conv_weights(c)?.with_winograd();
                    Ok(if bf16 { w.with_bf16_products() } else { w })
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![]
        };
        Ok(Self { convs, cpu_weights, scale: cfg.scale_factor })
    }

    /// `[B, 3, C, P, P]` → `[B, 3, C', rP, rP]`. On the CPU in f32 the convolutions run on channel-last planes
    /// ([`crate::kernels::conv`]: Winograd products for 3×3 kernels, else shifted ones); elsewhere through
    /// candle's `conv2d`, one
    /// plane at a time (its im2col buffer of one plane is already 340 MB at the release size).
    pub fn forward(&self, planes: &Tensor) -> Result<Tensor> {
        let (b, np, c, h, w) = planes.dims5()?;
        let dtype = self.convs.first().map(|c| c.weight().dtype()).unwrap_or(planes.dtype());
        let flat = planes.to_dtype(dtype)?.reshape((b * np, c, h, w))?;
        let x = if flat.device().is_cpu() && dtype == DType::F32 && !self.cpu_weights.is_empty() {
            self.forward_cpu(&flat.contiguous()?)?
        } else {
            self.forward_tensor(&flat)?
        };
        let (_, c2, h2, w2) = x.dims4()?;
        x.reshape((b, np, c2, h2, w2))
    }
}

impl PixelShuffleUpsampleNetwork {
    /// `[N, C, P, P]` → `[N, C', rP, rP]` through candle's `conv2d`, one plane at a time.
    fn forward_tensor(&self, flat: &Tensor) -> Result<Tensor> {
        let outs = (0..flat.dim(0)?)
            .map(|i| {
                let mut x = flat.narrow(0, i, 1)?;
                for (k, conv) in self.convs.iter().enumerate() {
                    x = conv.forward(&x)?;
                    if k + 1 < self.convs.len() {
                        x = x.relu()?;
                    }
                }
                pixel_shuffle(&x, self.scale)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&outs, 0)
    }

    /// The CPU path of [`Self::forward`] on `[N, C, P, P]` (contiguous f32): layer by layer over all planes.
    fn forward_cpu(&self, flat: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = flat.dims4()?;
        let Some(first) = self.convs.first() else { return Ok(flat.clone()) };
        let pad = first.weight().dim(3)? / 2;
        let planes = with_cpu_f32(flat, |data| {
            data.chunks_exact(c * h * w).map(|chw| PaddedImage::from_chw(chw, c, h, w, pad)).collect::<Vec<_>>()
        })?;
        let Some(mut planes) = planes else { candle_core::bail!("post-processor: planes are not CPU f32") };
        for (k, weights) in self.cpu_weights.iter().enumerate() {
            let last = k + 1 == self.cpu_weights.len();
            planes = planes.iter().map(|p| conv(p, weights, !last, if last { 0 } else { pad })).collect();
        }
        let outs = planes
            .iter()
            .map(|p| {
                let (co, data) = pixel_shuffle_channel_last(p, self.scale);
                Tensor::from_vec(data, (1, co, h * self.scale, w * self.scale), &Device::Cpu)
            })
            .collect::<Result<Vec<_>>>()?;
        debug_assert_eq!(outs.len(), n);
        Tensor::cat(&outs, 0)
    }
}

/// A conv layer's weight and bias (CPU f32) in the layout of [`crate::kernels::conv`].
fn cpu_conv_weights(layer: &Conv2d) -> Result<ConvWeights> {
    let (c_out, c_in, k, _) = layer.weight().dims4()?;
    let weight = layer.weight().flatten_all()?.to_vec1::<f32>()?;
    let bias = match layer.bias() {
        Some(b) => b.to_vec1::<f32>()?,
        None => vec![0f32; c_out],
    };
    Ok(ConvWeights::new(&weight, &bias, c_out, c_in, k))
}

/// `PixelShuffle(r)` from an unpadded channel-last `[H·W, r²·C']` image to channel-first `[C', rH, rW]`.
fn pixel_shuffle_channel_last(img: &PaddedImage, r: usize) -> (usize, Vec<f32>) {
    let (h, w, c) = (img.height, img.width, img.channels);
    let co = c / (r * r);
    let (h2, w2) = (h * r, w * r);
    let mut out = vec![0f32; co * h2 * w2];
    // Output row `oy` of channel `ch` reads input row `oy / r`, sub-row `oy % r`.
    out.par_chunks_mut(w2).enumerate().for_each(|(row, dst)| {
        let (ch, oy) = (row / h2, row % h2);
        let (y, i) = (oy / r, oy % r);
        for (ox, d) in dst.iter_mut().enumerate() {
            let (x, j) = (ox / r, ox % r);
            *d = img.pixel(y, x)[r * r * ch + r * i + j];
        }
    });
    (co, out)
}

/// PyTorch `PixelShuffle(r)`: `out[c, r·h + i, r·w + j] = in[r²·c + r·i + j, h, w]`.
pub fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let co = c / (r * r);
    // [N, C', r, r, H, W] → [N, C', H, r, W, r]
    x.reshape((n, co, r, r, h, w))?.permute((0, 1, 4, 2, 5, 3))?.reshape((n, co, h * r, w * r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The CPU kernel path equals candle's conv2d path on a small stack.
    #[test]
    fn cpu_conv_path_equals_candle_conv2d() {
        let cfg = PostProcessorConfig {
            in_channels: 6,
            out_channels: 2,
            scale_factor: 2,
            conv_layers: 3,
            conv_kernel_size: 3,
        };
        let vb = crate::weights::WeightSource::random(11).into_var_builder(DType::F32, &Device::Cpu);
        let net = PixelShuffleUpsampleNetwork::new(&cfg, vb.pp("post_processor")).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 6, 5, 7), &Device::Cpu).unwrap();
        let fast = net.forward_cpu(&x).unwrap();
        assert_eq!(fast.dims(), &[3, 2, 10, 14]);
        let slow = net.forward_tensor(&x).unwrap();
        let diff = (fast - slow).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn pixel_shuffle_matches_pytorch_indexing() {
        // 1 output channel, r = 2: input channel 2i + j lands at (2h + i, 2w + j).
        let x = Tensor::arange(0f32, 16., &Device::Cpu).unwrap().reshape((1, 4, 2, 2)).unwrap();
        let y = pixel_shuffle(&x, 2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // in[ch, h, w] = 4·ch + 2·h + w
        let expect: Vec<f32> = (0..4)
            .flat_map(|row| {
                (0..4).map(move |col| {
                    let (h, i, w, j) = (row / 2, row % 2, col / 2, col % 2);
                    (4 * (2 * i + j) + 2 * h + w) as f32
                })
            })
            .collect();
        assert_eq!(y, expect);
    }
}
