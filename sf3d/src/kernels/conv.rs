//! `k×k` convolution, stride 1, zero padding `k/2` (PyTorch `Conv2d(padding = k // 2)`), as `k²` shifted matrix
//! products on a channel-last image that carries its own zero border — no im2col buffer.
//!
//! With the image stored as rows of `C` channels over a padded width `Wp = W + 2p`, the input pixel under tap
//! `(dy, dx)` of output pixel `o = y·Wp + x` is pixel `o + dy·Wp + dx`. Pixels are consecutive in memory, so the
//! `k` taps of one kernel row read `k·C_in` consecutive floats starting at pixel `o + dy·Wp`: for every kernel
//! row the whole output is one product `[H·Wp, k·C_in] · [k·C_in, C_out]` on a view of the same buffer whose rows
//! overlap. The `2p` columns per row that fall in the border are computed and dropped (`2p / W` extra work).
//!
//! Weights prepared with [`ConvWeights::with_winograd`] (3×3 kernels) run through [`super::winograd`] instead,
//! on the same images.

use rayon::prelude::*;

use super::gemm::{MatRef, sgemm};
use super::winograd::{WinogradWeights, conv3x3};

/// A channel-last image with a zero border of `pad` pixels on each side and `2·pad` spare zero pixels at the
/// end (so every tap's shifted view stays inside the buffer).
#[derive(Debug, Clone)]
pub struct PaddedImage {
    /// `[(H + 2p)·(W + 2p) + 2p, C]`, row-major.
    pub data: Vec<f32>,
    /// Height without the border.
    pub height: usize,
    /// Width without the border.
    pub width: usize,
    /// Channels.
    pub channels: usize,
    /// Border width.
    pub pad: usize,
}

impl PaddedImage {
    fn len(height: usize, width: usize, channels: usize, pad: usize) -> usize {
        ((height + 2 * pad) * (width + 2 * pad) + 2 * pad) * channels
    }

    /// From a channel-first `[C, H, W]` image.
    pub fn from_chw(chw: &[f32], channels: usize, height: usize, width: usize, pad: usize) -> Self {
        assert_eq!(chw.len(), channels * height * width, "from_chw: length does not match the dimensions");
        let wp = width + 2 * pad;
        let mut data = vec![0f32; Self::len(height, width, channels, pad)];
        data.par_chunks_mut(wp * channels).skip(pad).take(height).enumerate().for_each(|(y, row)| {
            for x in 0..width {
                let px = &mut row[(x + pad) * channels..(x + pad + 1) * channels];
                for (c, v) in px.iter_mut().enumerate() {
                    *v = chw[(c * height + y) * width + x];
                }
            }
        });
        Self { data, height, width, channels, pad }
    }

    /// An all-zero image (border included).
    pub fn zeros(height: usize, width: usize, channels: usize, pad: usize) -> Self {
        Self { data: vec![0f32; Self::len(height, width, channels, pad)], height, width, channels, pad }
    }

    /// The pixel `(y, x)` (border excluded) as a channel slice.
    pub fn pixel(&self, y: usize, x: usize) -> &[f32] {
        let wp = self.width + 2 * self.pad;
        let i = ((y + self.pad) * wp + x + self.pad) * self.channels;
        &self.data[i..i + self.channels]
    }
}

/// Weights of one convolution rearranged for [`conv`]: `[k², C_in, C_out]` (a contiguous right-hand matrix per
/// tap), and the bias.
#[derive(Debug, Clone)]
pub struct ConvWeights {
    taps: Vec<f32>,
    bias: Vec<f32>,
    kernel: usize,
    c_in: usize,
    c_out: usize,
    /// With bf16 products: one weight per kernel row, `[k·C_in, C_out]` in bf16 pairs.
    rows_bf16: Option<Vec<super::bf16::Bf16Weight>>,
    /// After [`Self::with_winograd`]: the transformed weights of [`super::winograd`], used instead of `taps`.
    winograd: Option<WinogradWeights>,
}

impl ConvWeights {
    /// From PyTorch's `[C_out, C_in, k, k]` weight and `[C_out]` bias.
    pub fn new(weight: &[f32], bias: &[f32], c_out: usize, c_in: usize, kernel: usize) -> Self {
        assert_eq!(weight.len(), c_out * c_in * kernel * kernel, "conv weight does not match its dimensions");
        assert_eq!(bias.len(), c_out, "conv bias does not match its dimensions");
        let kk = kernel * kernel;
        let mut taps = vec![0f32; kk * c_in * c_out];
        taps.par_chunks_mut(c_in * c_out).enumerate().for_each(|(tap, t)| {
            for ci in 0..c_in {
                for co in 0..c_out {
                    t[ci * c_out + co] = weight[(co * c_in + ci) * kk + tap];
                }
            }
        });
        Self { taps, bias: bias.to_vec(), kernel, c_in, c_out, rows_bf16: None, winograd: None }
    }

    /// The same convolution with bf16 products (input and weights rounded to bf16, sums in f32) where the CPU
    /// multiplies bf16 pairs natively and `C_in` is even (so no pair straddles two pixels); unchanged otherwise.
    /// After [`Self::with_winograd`], the Winograd products (transformed input and weights rounded to bf16).
    pub fn with_bf16_products(mut self) -> Self {
        if let Some(w) = self.winograd.take() {
            self.winograd = Some(w.with_bf16_products());
            return self;
        }
        if super::bf16::native() && self.c_in.is_multiple_of(2) {
            let row_k = self.kernel * self.c_in;
            let rows = self
                .taps
                .chunks_exact(row_k * self.c_out)
                .map(|t| super::bf16::Bf16Weight::new(t, row_k, self.c_out))
                .collect();
            self.rows_bf16 = Some(rows);
            self.taps = Vec::new();
        }
        self
    }

    /// The same convolution by Winograd's F(2×2, 3×3) ([`super::winograd`]: 2.25× fewer multiply-adds) where the
    /// kernel is 3×3 and no bf16 products were chosen yet; unchanged otherwise.
    pub fn with_winograd(mut self) -> Self {
        if self.kernel == 3 && self.rows_bf16.is_none() {
            let (c_in, c_out) = (self.c_in, self.c_out);
            let taps = std::mem::take(&mut self.taps);
            let tap = |co: usize, ci: usize, t: usize| taps[(t * c_in + ci) * c_out + co];
            self.winograd = Some(WinogradWeights::from_fn(&self.bias, c_out, c_in, tap));
        }
        self
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.c_out
    }
}

/// One convolution of `input` (whose border is `kernel / 2`), bias added, optionally ReLU'd. The result is
/// padded by `pad_out` (the next layer's border; 0 for a plain `[H·W, C_out]` image).
pub fn conv(input: &PaddedImage, w: &ConvWeights, relu: bool, pad_out: usize) -> PaddedImage {
    let p = w.kernel / 2;
    assert_eq!(input.pad, p, "conv: the input border must be kernel / 2");
    assert_eq!(input.channels, w.c_in, "conv: input channels differ from the weights'");
    if let Some(wg) = &w.winograd {
        return conv3x3(input, wg, relu, pad_out);
    }
    let (h, wd, c_in, c_out) = (input.height, input.width, w.c_in, w.c_out);
    let wp = wd + 2 * p;
    let m = h * wp;
    // One band of output rows per thread: every output pixel (border columns included) starts at the bias, then
    // one single-threaded product per kernel row accumulates into it. Taps (dy, 0..k) are consecutive in
    // `w.taps`, matching the k·C_in floats a view's row reads.
    let row_k = w.kernel * c_in;
    let band = m.div_ceil(rayon::current_num_threads()).max(1);
    let mut wide = vec![0f32; m * c_out];
    // bf16 products: the input as bf16 pairs of channels, once; a kernel row's view is then `k·C_in / 2`
    // consecutive pairs per output pixel, `C_in / 2` pairs apart.
    let pairs = w.rows_bf16.as_ref().map(|rows| (rows, super::bf16::to_pairs(&input.data)));
    wide.par_chunks_mut(band * c_out).enumerate().for_each(|(b, dst)| {
        let (r0, rows) = (b * band, dst.len() / c_out);
        for px in dst.chunks_exact_mut(c_out) {
            px.copy_from_slice(&w.bias);
        }
        if let Some((weights, a)) = &pairs {
            for (dy, wr) in weights.iter().enumerate() {
                super::bf16::product_on_pairs(dst, &a[(dy * wp + r0) * c_in / 2..], c_in / 2, wr);
            }
            return;
        }
        for dy in 0..w.kernel {
            let lhs = MatRef::rows(&input.data[(dy * wp + r0) * c_in..], rows, row_k, c_in);
            let rhs = MatRef::rows(&w.taps[dy * row_k * c_out..(dy + 1) * row_k * c_out], row_k, c_out, c_out);
            sgemm(dst, c_out, true, lhs, rhs, 1.0);
        }
    });
    let wpo = wd + 2 * pad_out;
    let mut out = PaddedImage::zeros(h, wd, c_out, pad_out);
    out.data.par_chunks_mut(wpo * c_out).skip(pad_out).take(h).enumerate().for_each(|(y, row)| {
        let src = &wide[y * wp * c_out..(y * wp + wd) * c_out];
        let dst = &mut row[pad_out * c_out..(pad_out + wd) * c_out];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = if relu { s.max(0.0) } else { s };
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct zero-padded convolution of `x [c_in, h, wd]` with `wt [c_out, c_in, k, k]` and bias `b`.
    fn direct(x: &[f32], (c_in, h, wd): (usize, usize, usize), wt: &[f32], b: &[f32], k: usize) -> Vec<f32> {
        let c_out = b.len();
        let p = (k / 2) as isize;
        let mut out = vec![0f32; c_out * h * wd];
        for co in 0..c_out {
            for y in 0..h {
                for xo in 0..wd {
                    let mut s = b[co] as f64;
                    for ci in 0..c_in {
                        for dy in 0..k {
                            for dx in 0..k {
                                let (yy, xx) = (y as isize + dy as isize - p, xo as isize + dx as isize - p);
                                if yy < 0 || xx < 0 || yy >= h as isize || xx >= wd as isize {
                                    continue;
                                }
                                s += (wt[((co * c_in + ci) * k + dy) * k + dx] as f64)
                                    * (x_at(x, ci, h, wd, yy as usize, xx as usize) as f64);
                            }
                        }
                    }
                    out[(co * h + y) * wd + xo] = s as f32;
                }
            }
        }
        out
    }

    fn x_at(x: &[f32], c: usize, h: usize, w: usize, y: usize, xx: usize) -> f32 {
        x[(c * h + y) * w + xx]
    }

    /// Two chained layers (ReLU between, as in the post-processor) equal direct convolution with zero padding.
    #[test]
    fn shifted_products_equal_direct_convolution() {
        let (c0, c1, c2, h, wd, k) = (5, 7, 3, 6, 9, 3);
        let val = |i: usize, s: usize| (((i * 7919 + s * 104_729) % 997) as f32 / 997.0 - 0.5) * 2.0;
        let x: Vec<f32> = (0..c0 * h * wd).map(|i| val(i, 1)).collect();
        let w1: Vec<f32> = (0..c1 * c0 * k * k).map(|i| val(i, 2) * 0.3).collect();
        let b1: Vec<f32> = (0..c1).map(|i| val(i, 3)).collect();
        let w2: Vec<f32> = (0..c2 * c1 * k * k).map(|i| val(i, 4) * 0.3).collect();
        let b2: Vec<f32> = (0..c2).map(|i| val(i, 5)).collect();

        let img = PaddedImage::from_chw(&x, c0, h, wd, 1);
        let l1 = conv(&img, &ConvWeights::new(&w1, &b1, c1, c0, k), true, 1);
        let l2 = conv(&l1, &ConvWeights::new(&w2, &b2, c2, c1, k), false, 0);

        let r1: Vec<f32> = direct(&x, (c0, h, wd), &w1, &b1, k).into_iter().map(|v| v.max(0.0)).collect();
        let r2 = direct(&r1, (c1, h, wd), &w2, &b2, k);
        for y in 0..h {
            for xx in 0..wd {
                for (c, &got) in l2.pixel(y, xx).iter().enumerate() {
                    let want = r2[(c * h + y) * wd + xx];
                    assert!((got - want).abs() < 1e-5, "({c}, {y}, {xx}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn bf16_products_equal_the_direct_convolution_of_rounded_operands() {
        // Fewer pairs per kernel row than one tile step, and more (AMX tiles where present, with a remainder).
        for c0 in [6, 34] {
            let (c1, h, wd, k) = (37, 7, 11, 3);
            let val = |i: usize, s: usize| (((i * 7919 + s * 104_729) % 997) as f32 / 997.0 - 0.5) * 2.0;
            let x: Vec<f32> = (0..c0 * h * wd).map(|i| val(i, 1)).collect();
            let w: Vec<f32> = (0..c1 * c0 * k * k).map(|i| val(i, 2) * 0.3).collect();
            let b: Vec<f32> = (0..c1).map(|i| val(i, 3)).collect();
            let weights = ConvWeights::new(&w, &b, c1, c0, k).with_bf16_products();
            if weights.rows_bf16.is_none() {
                println!("SKIPPED: this CPU has no AVX-512 BF16; the f32 convolution runs instead");
                return;
            }
            let round = |v: &[f32]| v.iter().map(|&a| crate::kernels::bf16::round(a)).collect::<Vec<_>>();
            let img = PaddedImage::from_chw(&x, c0, h, wd, 1);
            let out = crate::kernels::bf16::tests::on_threads(1, || conv(&img, &weights, false, 0));
            let want = direct(&round(&x), (c0, h, wd), &round(&w), &b, k);
            for y in 0..h {
                for xx in 0..wd {
                    for (c, &got) in out.pixel(y, xx).iter().enumerate() {
                        let want = want[(c * h + y) * wd + xx];
                        assert!((got - want).abs() < 1e-5, "({c}, {y}, {xx}): {got} vs {want}");
                    }
                }
            }
        }
    }
}
