//! The published U²-Net and U²-NetP architectures (Qin et al. 2020, `model/u2net.py` of the U-2-Net
//! repository): the order and shape of their convolutions, and the forward pass over loaded weights.
//!
//! Both networks are an encoder of six residual U-blocks (RSU-7, 6, 5, 4, 4F, 4F) joined by 2×2 max pools
//! (`ceil_mode`), a decoder of five (4F, 4, 5, 6, 7) that each take the upsampled deeper map concatenated with the
//! encoder's map of the same size, six 3×3 side convolutions upsampled to the input size, and a 1×1 convolution
//! fusing them. Every RSU convolution is `REBNCONV`: 3×3 convolution (padding = dilation), batch norm, ReLU.
//! Upsampling is bilinear to the size of the map it is concatenated with.
//!
//! [`conv_specs`] lists every convolution in forward order, which is the order an exporter traces them in; the
//! loader maps the file's `Conv` nodes onto it one by one and checks every shape, so a file of another network
//! is refused instead of producing a wrong mask.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::conv::{ConvWeights, PaddedImage, conv};
use crate::kernels::linear::transpose;
use crate::model::interpolate::resize_separable;
use crate::model::ops::with_cpu_f32;

/// Which published network a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// U²-Net (rembg's `u2net.onnx`, 176 MB; also `u2net_human_seg`).
    U2Net,
    /// U²-NetP, the small one (rembg's `u2netp.onnx`, 4.6 MB).
    U2NetP,
}

impl Variant {
    /// Both, the large one first.
    pub const ALL: [Variant; 2] = [Variant::U2Net, Variant::U2NetP];

    /// rembg's model name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::U2Net => "u2net",
            Variant::U2NetP => "u2netp",
        }
    }

    /// The eleven residual U-blocks in forward order: six encoder stages, then five decoder stages.
    fn blocks(self) -> [Block; 11] {
        use Block::{Rsu, RsuF};
        match self {
            Variant::U2Net => [
                Rsu { height: 7, c_in: 3, mid: 32, c_out: 64 },
                Rsu { height: 6, c_in: 64, mid: 32, c_out: 128 },
                Rsu { height: 5, c_in: 128, mid: 64, c_out: 256 },
                Rsu { height: 4, c_in: 256, mid: 128, c_out: 512 },
                RsuF { c_in: 512, mid: 256, c_out: 512 },
                RsuF { c_in: 512, mid: 256, c_out: 512 },
                RsuF { c_in: 1024, mid: 256, c_out: 512 },
                Rsu { height: 4, c_in: 1024, mid: 128, c_out: 256 },
                Rsu { height: 5, c_in: 512, mid: 64, c_out: 128 },
                Rsu { height: 6, c_in: 256, mid: 32, c_out: 64 },
                Rsu { height: 7, c_in: 128, mid: 16, c_out: 64 },
            ],
            Variant::U2NetP => [
                Rsu { height: 7, c_in: 3, mid: 16, c_out: 64 },
                Rsu { height: 6, c_in: 64, mid: 16, c_out: 64 },
                Rsu { height: 5, c_in: 64, mid: 16, c_out: 64 },
                Rsu { height: 4, c_in: 64, mid: 16, c_out: 64 },
                RsuF { c_in: 64, mid: 16, c_out: 64 },
                RsuF { c_in: 64, mid: 16, c_out: 64 },
                RsuF { c_in: 128, mid: 16, c_out: 64 },
                Rsu { height: 4, c_in: 128, mid: 16, c_out: 64 },
                Rsu { height: 5, c_in: 128, mid: 16, c_out: 64 },
                Rsu { height: 6, c_in: 128, mid: 16, c_out: 64 },
                Rsu { height: 7, c_in: 128, mid: 16, c_out: 64 },
            ],
        }
    }

    /// Input channels of the six side convolutions (decoder stages 1–5, then encoder stage 6).
    fn side_channels(self) -> [usize; 6] {
        match self {
            Variant::U2Net => [64, 64, 128, 256, 512, 512],
            Variant::U2NetP => [64; 6],
        }
    }
}

/// A residual U-block.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// RSU-`height`: `height − 1` levels joined by pools and upsampling, a dilated bottom convolution.
    Rsu { height: usize, c_in: usize, mid: usize, c_out: usize },
    /// RSU-4F: four levels at full resolution, dilations 1, 2, 4, 8 instead of pooling.
    RsuF { c_in: usize, mid: usize, c_out: usize },
}

/// One convolution: `c_out × c_in × kernel × kernel`, stride 1, padding `dilation · (kernel / 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Dilation.
    pub dilation: usize,
    /// Followed by batch norm and ReLU (`REBNCONV`); the side and fusing convolutions are plain.
    pub rebn: bool,
}

impl ConvSpec {
    fn rebn(c_in: usize, c_out: usize, dilation: usize) -> Self {
        Self { c_in, c_out, kernel: 3, dilation, rebn: true }
    }

    /// Zero padding on each side.
    pub fn padding(&self) -> usize {
        self.dilation * (self.kernel / 2)
    }
}

/// Dilations of RSU-4F's encoder convolutions after `rebnconvin` (levels 1–4).
const RSU_F_DILATIONS: [usize; 4] = [1, 2, 4, 8];

impl Block {
    /// The block's convolutions in forward order: `rebnconvin`, the encoder levels, the decoder levels.
    fn convs(self, out: &mut Vec<ConvSpec>) {
        match self {
            Block::Rsu { height, c_in, mid, c_out } => {
                out.push(ConvSpec::rebn(c_in, c_out, 1));
                out.push(ConvSpec::rebn(c_out, mid, 1));
                for _ in 2..height {
                    out.push(ConvSpec::rebn(mid, mid, 1));
                }
                out.push(ConvSpec::rebn(mid, mid, 2));
                for _ in 2..height {
                    out.push(ConvSpec::rebn(2 * mid, mid, 1));
                }
                out.push(ConvSpec::rebn(2 * mid, c_out, 1));
            }
            Block::RsuF { c_in, mid, c_out } => {
                out.push(ConvSpec::rebn(c_in, c_out, 1));
                out.push(ConvSpec::rebn(c_out, mid, RSU_F_DILATIONS[0]));
                for d in &RSU_F_DILATIONS[1..] {
                    out.push(ConvSpec::rebn(mid, mid, *d));
                }
                for d in RSU_F_DILATIONS[1..3].iter().rev() {
                    out.push(ConvSpec::rebn(2 * mid, mid, *d));
                }
                out.push(ConvSpec::rebn(2 * mid, c_out, RSU_F_DILATIONS[0]));
            }
        }
    }
}

/// Every convolution of `variant` in forward order: the eleven blocks, the six side convolutions, the fusing
/// 1×1 convolution.
pub fn conv_specs(variant: Variant) -> Vec<ConvSpec> {
    let mut out = Vec::new();
    for b in variant.blocks() {
        b.convs(&mut out);
    }
    for c in variant.side_channels() {
        out.push(ConvSpec { c_in: c, c_out: 1, kernel: 3, dilation: 1, rebn: false });
    }
    out.push(ConvSpec { c_in: 6, c_out: 1, kernel: 1, dilation: 1, rebn: false });
    out
}

/// How bilinear upsampling maps an output coordinate to the input (ONNX `coordinate_transformation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// `(x + 0.5) / scale − 0.5` (PyTorch's `align_corners=False`; `half_pixel`, `pytorch_half_pixel`).
    HalfPixel,
    /// `x / scale` (`asymmetric`, and the old `Upsample` operator).
    Asymmetric,
    /// `x · (in − 1) / (out − 1)` (`align_corners`).
    AlignCorners,
}

impl Sampling {
    /// Source position of output sample `x` along an axis of `n_in → n_out` samples, clamped to the input as
    /// ONNX Runtime's linear resize does.
    fn source(self, x: usize, n_in: usize, n_out: usize) -> f32 {
        let scale = n_out as f32 / n_in as f32;
        let s = match self {
            Sampling::HalfPixel if n_out > 1 => (x as f32 + 0.5) / scale - 0.5,
            Sampling::HalfPixel => 0.0,
            Sampling::Asymmetric => x as f32 / scale,
            Sampling::AlignCorners if n_out > 1 => x as f32 * (n_in - 1) as f32 / (n_out - 1) as f32,
            Sampling::AlignCorners => 0.0,
        };
        s.clamp(0.0, (n_in - 1) as f32)
    }
}

/// A convolution with its batch norm folded in.
#[derive(Debug, Clone)]
pub struct Conv {
    /// Shape and kind.
    pub spec: ConvSpec,
    /// The weights, in the form the convolution runs in.
    weights: ConvForm,
}

/// Where a convolution runs.
#[derive(Debug, Clone)]
enum ConvForm {
    /// [`crate::kernels::conv`] (no im2col buffer): on the CPU, undilated convolutions, nearly all of the work.
    Kernel(ConvWeights),
    /// candle's `conv2d`.
    Candle {
        /// `[c_out, c_in, k, k]`.
        weight: Tensor,
        /// `[1, c_out, 1, 1]`, broadcast over `[N, c_out, H, W]`.
        bias: Tensor,
    },
}

impl Conv {
    /// A convolution from folded weights `[c_out, c_in, k, k]` and bias `[c_out]`, on `device`.
    pub fn new(spec: ConvSpec, weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Result<Self> {
        let k = spec.kernel;
        let weights = if device.is_cpu() && spec.dilation == 1 {
            ConvForm::Kernel(ConvWeights::new(&weight, &bias, spec.c_out, spec.c_in, k))
        } else {
            ConvForm::Candle {
                weight: Tensor::from_vec(weight, (spec.c_out, spec.c_in, k, k), device)?,
                bias: Tensor::from_vec(bias, (1, spec.c_out, 1, 1), device)?,
            }
        };
        Ok(Self { spec, weights })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.spec.padding();
        let y = match &self.weights {
            ConvForm::Kernel(w) => {
                let (n, c, h, wd) = x.dims4()?;
                let c_out = self.spec.c_out;
                let out = with_cpu_f32(x, |data| {
                    let mut chw_out = Vec::with_capacity(n * h * wd * c_out);
                    for chw in data.chunks_exact(c * h * wd) {
                        let hwc = conv(&PaddedImage::from_chw(chw, c, h, wd, p), w, self.spec.rebn, 0).data;
                        chw_out.extend(transpose(&hwc, h * wd, c_out));
                    }
                    chw_out
                })?;
                let Some(chw) = out else { return Err(Error::Internal("U²-Net on the CPU takes f32 inputs".into())) };
                return Ok(Tensor::from_vec(chw, (n, c_out, h, wd), x.device())?);
            }
            ConvForm::Candle { weight, bias } => x.conv2d(weight, p, 1, self.spec.dilation, 1)?.broadcast_add(bias)?,
        };
        Ok(if self.spec.rebn { y.relu()? } else { y })
    }
}

/// The loaded network: its convolutions in [`conv_specs`] order and its upsampling rule.
#[derive(Debug, Clone)]
pub struct Network {
    /// Which architecture.
    pub variant: Variant,
    /// Convolutions in forward order.
    pub convs: Vec<Conv>,
    /// Bilinear sampling rule of the file's resize nodes.
    pub sampling: Sampling,
}

/// Walks the convolutions in forward order.
struct Cursor<'a> {
    net: &'a Network,
    next: usize,
}

impl Cursor<'_> {
    fn conv(&mut self, x: &Tensor) -> Result<Tensor> {
        let c = &self.net.convs[self.next];
        self.next += 1;
        c.forward(x)
    }

    fn rsu(&mut self, x: &Tensor, block: Block) -> Result<Tensor> {
        match block {
            Block::Rsu { height, .. } => {
                let hxin = self.conv(x)?;
                let mut levels = vec![self.conv(&hxin)?];
                for _ in 2..height {
                    let prev = levels.last().unwrap_or(&hxin);
                    let pooled = max_pool_ceil(prev)?;
                    levels.push(self.conv(&pooled)?);
                }
                let last = levels.last().unwrap_or(&hxin).clone();
                let bottom = self.conv(&last)?;
                let mut d = self.conv(&Tensor::cat(&[&bottom, &last], 1)?)?;
                for skip in levels.iter().rev().skip(1) {
                    let up = self.net.upsample_like(&d, skip)?;
                    d = self.conv(&Tensor::cat(&[&up, skip], 1)?)?;
                }
                Ok((d + hxin)?)
            }
            Block::RsuF { .. } => {
                let hxin = self.conv(x)?;
                let h1 = self.conv(&hxin)?;
                let h2 = self.conv(&h1)?;
                let h3 = self.conv(&h2)?;
                let h4 = self.conv(&h3)?;
                let d3 = self.conv(&Tensor::cat(&[&h4, &h3], 1)?)?;
                let d2 = self.conv(&Tensor::cat(&[&d3, &h2], 1)?)?;
                let d1 = self.conv(&Tensor::cat(&[&d2, &h1], 1)?)?;
                Ok((d1 + hxin)?)
            }
        }
    }
}

/// `MaxPool2d(2, stride=2, ceil_mode=True)`: a window cut by an odd side takes the maximum of what it covers.
/// On the CPU one parallel pass per plane; elsewhere the last row or column is repeated (which leaves a partial
/// window's maximum unchanged) and candle pools.
fn max_pool_ceil(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let out = with_cpu_f32(x, |data| {
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow).zip(data.par_chunks(h * w)).for_each(|(dst, plane)| {
            for (oy, dst_row) in dst.chunks_exact_mut(ow).enumerate() {
                let r0 = &plane[2 * oy * w..(2 * oy + 1) * w];
                let r1 = if 2 * oy + 1 < h { &plane[(2 * oy + 1) * w..(2 * oy + 2) * w] } else { r0 };
                for (ox, d) in dst_row.iter_mut().enumerate() {
                    let x1 = (2 * ox + 1).min(w - 1);
                    *d = r0[2 * ox].max(r0[x1]).max(r1[2 * ox]).max(r1[x1]);
                }
            }
        });
        out
    })?;
    if let Some(out) = out {
        return Ok(Tensor::from_vec(out, (n, c, oh, ow), x.device())?);
    }
    let x = if h % 2 == 1 { x.pad_with_same(2, 0, 1)? } else { x.clone() };
    let x = if w % 2 == 1 { x.pad_with_same(3, 0, 1)? } else { x };
    Ok(x.max_pool2d(2)?)
}

impl Network {
    /// Bilinear taps along an axis of `n_in → n_out` samples: `(lower, upper, weight of upper)` per output.
    fn taps(&self, n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|i| {
                let s = self.sampling.source(i, n_in, n_out);
                let i0 = (s.floor() as usize).min(n_in - 1);
                (i0, (i0 + 1).min(n_in - 1), s - i0 as f32)
            })
            .collect()
    }

    /// The taps as a row-major `[n_out, n_in]` interpolation matrix (for [`resize_separable`]).
    fn matrix(&self, n_in: usize, n_out: usize) -> Vec<f32> {
        let mut m = vec![0f32; n_out * n_in];
        for (row, (i0, i1, f)) in m.chunks_exact_mut(n_in).zip(self.taps(n_in, n_out)) {
            row[i0] += 1.0 - f;
            row[i1] += f;
        }
        m
    }

    /// `F.upsample(src, size=tar.shape[2:], mode='bilinear')`. On the CPU one pass per output plane (rows mixed
    /// first, then columns); elsewhere the shared separable interpolation matrices ([`resize_separable`]).
    fn upsample_like(&self, src: &Tensor, tar: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = tar.dims4()?;
        let (n, c, h_in, w_in) = src.dims4()?;
        if (h_in, w_in) == (h, w) {
            return Ok(src.clone());
        }
        let (rows, cols) = (self.taps(h_in, h), self.taps(w_in, w));
        let out = with_cpu_f32(src, |data| {
            let mut out = vec![0f32; n * c * h * w];
            out.par_chunks_mut(h * w).zip(data.par_chunks(h_in * w_in)).for_each(|(dst, plane)| {
                let mut mixed = vec![0f32; w_in];
                for (dst_row, &(y0, y1, fy)) in dst.chunks_exact_mut(w).zip(&rows) {
                    let (r0, r1) = (&plane[y0 * w_in..(y0 + 1) * w_in], &plane[y1 * w_in..(y1 + 1) * w_in]);
                    for ((m, &a), &b) in mixed.iter_mut().zip(r0).zip(r1) {
                        *m = a * (1.0 - fy) + b * fy;
                    }
                    for (d, &(x0, x1, fx)) in dst_row.iter_mut().zip(&cols) {
                        *d = mixed[x0] * (1.0 - fx) + mixed[x1] * fx;
                    }
                }
            });
            out
        })?;
        match out {
            Some(out) => Ok(Tensor::from_vec(out, (n, c, h, w), src.device())?),
            None => self.upsample_tensor(src, h, w),
        }
    }

    /// The device-independent path of [`Network::upsample_like`].
    fn upsample_tensor(&self, src: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (_, _, h_in, w_in) = src.dims4()?;
        let (wy, wx) = (self.matrix(h_in, h), self.matrix(w_in, w));
        Ok(resize_separable(src, &wy, &wx, h, w, src.device())?)
    }

    /// The fused saliency map `sigmoid(d0)`, `[N, 1, H, W]`, of a normalised `[N, 3, H, W]` input.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let blocks = self.variant.blocks();
        let mut cur = Cursor { net: self, next: 0 };
        // Encoder: stage i+1 runs on the pooled output of stage i.
        let mut enc: Vec<Tensor> = Vec::with_capacity(6);
        for b in &blocks[..6] {
            let input = if let Some(prev) = enc.last() { max_pool_ceil(prev)? } else { x.clone() };
            enc.push(cur.rsu(&input, *b)?);
        }
        // Decoder: each stage takes the upsampled deeper map and the encoder map of its size.
        let mut deeper = enc[5].clone();
        let mut dec: Vec<Tensor> = Vec::with_capacity(5);
        for (b, skip) in blocks[6..].iter().zip(enc[..5].iter().rev()) {
            let up = self.upsample_like(&deeper, skip)?;
            deeper = cur.rsu(&Tensor::cat(&[&up, skip], 1)?, *b)?;
            dec.push(deeper.clone());
        }
        // Side outputs from decoder stages 1..5 (dec is 5d..1d) and encoder stage 6, at the input's size.
        let mut sides: Vec<Tensor> = Vec::with_capacity(6);
        let d1 = cur.conv(&dec[4])?;
        for src in [&dec[3], &dec[2], &dec[1], &dec[0], &enc[5]] {
            let d = cur.conv(src)?;
            sides.push(self.upsample_like(&d, &d1)?);
        }
        sides.insert(0, d1);
        let d0 = cur.conv(&Tensor::cat(&sides, 1)?)?;
        Ok(candle_nn::ops::sigmoid(&d0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_counts_and_shapes_follow_the_published_blocks() {
        for v in Variant::ALL {
            let specs = conv_specs(v);
            // RSU-L has 2L convolutions, RSU-4F eight: 14+12+10+8+8+8 encoder, 8+8+10+12+14 decoder, 6 sides, 1.
            assert_eq!(specs.len(), 60 + 52 + 7, "{v:?}");
            assert_eq!(specs[0], ConvSpec::rebn(3, 64, 1));
            // RSU-7's dilated bottom convolution is its eighth.
            assert_eq!(specs[7].dilation, 2);
            assert_eq!(specs.last().map(|s| (s.c_in, s.kernel)), Some((6, 1)));
        }
        assert_eq!(conv_specs(Variant::U2Net)[1].c_out, 32);
        assert_eq!(conv_specs(Variant::U2NetP)[1].c_out, 16);
        // RSU-4F of stage 5: in, 1 (d1), 2 (d2), 3 (d4), 4 (d8), 3d (d4), 2d (d2), 1d (d1).
        let start = 14 + 12 + 10 + 8;
        let d: Vec<usize> = conv_specs(Variant::U2Net)[start..start + 8].iter().map(|s| s.dilation).collect();
        assert_eq!(d, [1, 1, 2, 4, 8, 4, 2, 1]);
    }

    #[test]
    fn half_pixel_sampling_matches_pytorch_bilinear() {
        // 2x upsampling with align_corners=False: 0 → -0.25 (clamped to 0), 1 → 0.25, 2 → 0.75, ..., 7 → 3.25 (3).
        let s: Vec<f32> = (0..8).map(|x| Sampling::HalfPixel.source(x, 4, 8)).collect();
        assert_eq!(s, [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
        let a: Vec<f32> = (0..3).map(|x| Sampling::AlignCorners.source(x, 5, 3)).collect();
        assert_eq!(a, [0.0, 2.0, 4.0]);
        assert_eq!(Sampling::Asymmetric.source(3, 4, 8), 1.5);
    }

    #[test]
    fn cpu_upsampling_equals_the_tensor_path() -> Result<()> {
        for sampling in [Sampling::HalfPixel, Sampling::Asymmetric, Sampling::AlignCorners] {
            let net = Network { variant: Variant::U2NetP, convs: Vec::new(), sampling };
            let src = Tensor::arange(0f32, 2.0 * 3.0 * 5.0 * 7.0, &Device::Cpu)?.sin()?.reshape((2, 3, 5, 7))?;
            let tar = Tensor::zeros((1, 1, 11, 13), candle_core::DType::F32, &Device::Cpu)?;
            let fast = net.upsample_like(&src, &tar)?;
            let slow = net.upsample_tensor(&src, 11, 13)?;
            let diff = (fast - slow)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "{sampling:?}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn max_pool_with_ceil_mode_keeps_the_partial_window() -> Result<()> {
        let x = Tensor::arange(0f32, 15.0, &Device::Cpu)?.reshape((1, 1, 3, 5))?;
        let y = max_pool_ceil(&x)?;
        assert_eq!(y.dims4()?, (1, 1, 2, 3));
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [6.0, 8.0, 9.0, 11.0, 13.0, 14.0]);
        // The same through candle's pool (the path of other devices): a non-contiguous view skips the CPU pass.
        let view = x.reshape((3, 5))?.t()?.contiguous()?.t()?.unsqueeze(0)?.unsqueeze(0)?;
        assert!(!view.is_contiguous());
        let y = max_pool_ceil(&view)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [6.0, 8.0, 9.0, 11.0, 13.0, 14.0]);
        Ok(())
    }
}
