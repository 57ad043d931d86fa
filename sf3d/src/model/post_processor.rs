//! `post_processor.*` — `PixelShuffleUpsampleNetwork` (spec §3.5): a 3×3 conv stack with ReLUs on each plane,
//! then PixelShuffle, turning `direct_codes [B, 3, C, P, P]` into `scene_codes [B, 3, C', rP, rP]`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder, conv2d};

use crate::config::PostProcessorConfig;

/// `PixelShuffleUpsampleNetwork`; convolutions are `upsample.{0,2,4,…}` (odd indices are ReLUs).
#[derive(Debug, Clone)]
pub struct PixelShuffleUpsampleNetwork {
    convs: Vec<Conv2d>,
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
        Ok(Self { convs, scale: cfg.scale_factor })
    }

    /// `[B, 3, C, P, P]` → `[B, 3, C', rP, rP]`. Planes are processed one at a time (the convolution's
    /// im2col buffer of one plane is already 340 MB at the release size).
    pub fn forward(&self, planes: &Tensor) -> Result<Tensor> {
        let (b, np, c, h, w) = planes.dims5()?;
        let dtype = self.convs.first().map(|c| c.weight().dtype()).unwrap_or(planes.dtype());
        let flat = planes.to_dtype(dtype)?.reshape((b * np, c, h, w))?;
        let outs = (0..b * np)
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
        let x = Tensor::cat(&outs, 0)?;
        let (_, c2, h2, w2) = x.dims4()?;
        x.reshape((b, np, c2, h2, w2))
    }
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
