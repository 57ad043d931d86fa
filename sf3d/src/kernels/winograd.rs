//! 3×3 convolution, stride 1, zero padding 1, by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks"): each 2×2 block of output pixels is computed from the 4×4 input
//! patch around it with 16 products per channel pair instead of 36, so the matrix products — nearly all of the
//! work — shrink by 2.25×.
//!
//! For one output tile and one pair of channels, `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` with `g` the 3×3 kernel, `d` the
//! 4×4 input patch and the constant matrices below. Summed over the input channels the element-wise product
//! becomes, for each of the 16 positions `ξ` of the 4×4 transformed patch, one matrix product
//! `M_ξ [tiles, C_out] = V_ξ [tiles, C_in] · U_ξ [C_in, C_out]`, where `U = G g Gᵀ` is computed once when the
//! weights load and `V = Bᵀ d B` per input patch. The transforms only add and subtract (and halve, in `G`), so the
//! result differs from a direct convolution by a few f32 roundings.
//!
//! Input and output are the bordered channel-last images of [`super::conv`]. Any height and width work: patches
//! that reach past the input's border read zeros, outputs past the image are not written.
//!
//! [`WinogradWeights::with_bf16_products`] runs the 16 products on bf16 pairs ([`super::bf16`]) for `--dtype bf16`:
//! the transforms stay f32, their results are rounded to bf16 for the products.

use rayon::prelude::*;

use super::bf16::{self, Bf16Weight};
use super::conv::PaddedImage;
use super::gemm::{MatRef, sgemm};

/// Positions of a transformed 4×4 patch: one matrix product each.
const XI: usize = 16;
/// Channels transformed together: the lane loops over them vectorise.
const LANES: usize = 16;
/// Tiles per matrix product: enough rows that the products run near the matrix kernel's peak, few enough that a
/// block's transformed input and products (`2 · 16 · BLOCK_TILES · C` floats) stay a few tens of MB per thread.
const BLOCK_TILES: usize = 384;

/// A 3×3 convolution's weights in the transformed form: `U_ξ [C_in, C_out]` for the 16 positions, and the bias.
#[derive(Debug, Clone)]
pub struct WinogradWeights {
    u: Products,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

/// The 16 matrices `U_ξ` in the form the products take.
#[derive(Debug, Clone)]
enum Products {
    /// `[16][C_in][C_out]`, f32.
    F32(Vec<f32>),
    /// One bf16 weight per position, for products on bf16 pairs ([`bf16::product_on_pairs`]).
    Bf16(Vec<Bf16Weight>),
}

impl WinogradWeights {
    /// From PyTorch's `[C_out, C_in, 3, 3]` weight and `[C_out]` bias.
    /// Panics if a length disagrees with the dimensions (the caller takes them from the tensors' shapes).
    pub fn new(weight: &[f32], bias: &[f32], c_out: usize, c_in: usize) -> Self {
        assert_eq!(weight.len(), c_out * c_in * 9, "winograd: weight does not match its dimensions");
        Self::from_fn(bias, c_out, c_in, |co, ci, tap| weight[(co * c_in + ci) * 9 + tap])
    }

    /// From `weight(co, ci, tap)`, `tap = 3·dy + dx`.
    pub(crate) fn from_fn(
        bias: &[f32],
        c_out: usize,
        c_in: usize,
        weight: impl Fn(usize, usize, usize) -> f32 + Sync,
    ) -> Self {
        assert_eq!(bias.len(), c_out, "winograd: bias does not match its dimensions");
        // Each kernel transformed once (`[C_in][C_out]` of 16 values), then spread over the 16 matrices.
        let transformed: Vec<[f32; XI]> = (0..c_in * c_out)
            .into_par_iter()
            .map(|i| {
                let (ci, co) = (i / c_out, i % c_out);
                kernel_transform(&std::array::from_fn::<f32, 9, _>(|tap| weight(co, ci, tap)))
            })
            .collect();
        let mut u = vec![0f32; XI * c_in * c_out];
        u.par_chunks_mut((c_in * c_out).max(1)).enumerate().for_each(|(xi, dst)| {
            for (d, t) in dst.iter_mut().zip(&transformed) {
                *d = t[xi];
            }
        });
        Self { u: Products::F32(u), bias: bias.to_vec(), c_in, c_out }
    }

    /// The same convolution with the 16 products on bf16 operands (the transformed input and weights rounded to
    /// bf16, sums in f32) where the CPU multiplies bf16 pairs natively and `C_in` is even; unchanged otherwise.
    pub fn with_bf16_products(mut self) -> Self {
        if let Products::F32(u) = &self.u
            && bf16::native()
            && self.c_in.is_multiple_of(2)
        {
            let per = self.c_in * self.c_out;
            self.u =
                Products::Bf16(u.chunks_exact(per.max(1)).map(|u| Bf16Weight::new(u, self.c_in, self.c_out)).collect());
        }
        self
    }
}

/// `G g Gᵀ` for a row-major 3×3 kernel, row-major 4×4, with `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
fn kernel_transform(g: &[f32]) -> [f32; XI] {
    let rows = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    // G g: 4 rows of 3, one column of g at a time.
    let mut gg = [[0f32; 3]; 4];
    for col in 0..3 {
        let t = rows(g[col], g[3 + col], g[6 + col]);
        for r in 0..4 {
            gg[r][col] = t[r];
        }
    }
    // (G g) Gᵀ: the same combination along each row.
    let mut out = [0f32; XI];
    for r in 0..4 {
        let t = rows(gg[r][0], gg[r][1], gg[r][2]);
        out[4 * r..4 * r + 4].copy_from_slice(&t);
    }
    out
}

/// One convolution of `input` (border 1), bias added, optionally ReLU'd; the result padded by `pad_out`.
/// Panics if the input's border is not 1 or its channels differ from the weights'.
pub fn conv3x3(input: &PaddedImage, w: &WinogradWeights, relu: bool, pad_out: usize) -> PaddedImage {
    assert_eq!(input.pad, 1, "winograd: the input border must be 1");
    assert_eq!(input.channels, w.c_in, "winograd: input channels differ from the weights'");
    let (h, wd, c_out) = (input.height, input.width, w.c_out);
    let wpo = wd + 2 * pad_out;
    let mut out = PaddedImage::zeros(h, wd, c_out, pad_out);
    if h == 0 || wd == 0 {
        return out;
    }
    let (tiles_y, tiles_x) = (h.div_ceil(2), wd.div_ceil(2));
    // Whole rows of tiles per block (each block owns its output rows): each thread's share of rows cut into equal
    // blocks of about `BLOCK_TILES` tiles.
    let per_thread = tiles_y.div_ceil(rayon::current_num_threads());
    let blocks_per_thread = per_thread.div_ceil((BLOCK_TILES / tiles_x).max(1));
    let block_rows = per_thread.div_ceil(blocks_per_thread).max(1);
    let row_len = wpo * c_out;
    let body = &mut out.data[pad_out * row_len..(pad_out + h) * row_len];
    body.par_chunks_mut(2 * block_rows * row_len).enumerate().for_each(|(b, rows)| {
        let ty0 = b * block_rows;
        let tiles = (rows.len() / row_len).div_ceil(2) * tiles_x;
        let c_in = w.c_in;
        let mut v = vec![0f32; tiles * XI * c_in];
        transform_input(input, ty0, tiles_x, &mut v);
        // `v` is `[tiles][16][C_in]` (position ξ of every tile is the matrix `V_ξ`, rows `16·C_in` apart) and `m`
        // `[16][tiles][C_out]`. `m` is written (zeros) before any product reads it: a fresh page read first would
        // map the shared zero page and be copied on the first write.
        let mut m = Vec::with_capacity(XI * tiles * c_out);
        m.resize(XI * tiles * c_out, 0f32);
        let per = tiles * c_out;
        match &w.u {
            Products::F32(u) => {
                for (xi, (m, u)) in m.chunks_exact_mut(per).zip(u.chunks_exact(c_in * c_out)).enumerate() {
                    let lhs = MatRef::rows(&v[xi * c_in..], tiles, c_in, XI * c_in);
                    sgemm(m, c_out, false, lhs, MatRef::rows(u, c_in, c_out, c_out), 1.0);
                }
            }
            Products::Bf16(us) => {
                // Consecutive channels pair up (`C_in` is even, so no pair straddles two positions).
                let mut vp = vec![0u32; v.len() / 2];
                bf16::to_pairs_into(&v, &mut vp);
                for (xi, (m, u)) in m.chunks_exact_mut(per).zip(us).enumerate() {
                    bf16::product_on_pairs(m, &vp[xi * c_in / 2..], XI * c_in / 2, u);
                }
            }
        }
        transform_output(&m, w, relu, [tiles, tiles_x], [wd, pad_out], rows);
    });
    out
}

/// `Bᵀ d B` of every input patch of the tile rows from `ty0` on, into `v [tiles][16][C_in]`.
fn transform_input(input: &PaddedImage, ty0: usize, tiles_x: usize, v: &mut [f32]) {
    let c = input.channels;
    let (hp, wp) = (input.height + 2, input.width + 2);
    let zeros = vec![0f32; c];
    for (t, out) in v.chunks_exact_mut(XI * c).enumerate() {
        let (ty, tx) = (ty0 + t / tiles_x, t % tiles_x);
        // The patch's 16 pixels in the bordered image (rows 2ty.., columns 2tx..); zeros past its edge.
        let px: [&[f32]; XI] = std::array::from_fn(|i| {
            let (y, x) = (2 * ty + i / 4, 2 * tx + i % 4);
            if y < hp && x < wp { &input.data[(y * wp + x) * c..][..c] } else { &zeros[..] }
        });
        for c0 in (0..c).step_by(LANES) {
            let n = LANES.min(c - c0);
            let mut d = [[0f32; LANES]; XI];
            for (row, p) in d.iter_mut().zip(&px) {
                load(row, &p[c0..], n);
            }
            let r = input_patch(&d);
            for (xi, row) in r.iter().enumerate() {
                store(&mut out[xi * c + c0..], row, n);
            }
        }
    }
}

/// `dst[..n] = src[..n]` (the rest of `dst` unchanged), `n ≤ LANES`; a whole vector without a library call
/// when `n == LANES`.
#[inline(always)]
fn load(dst: &mut [f32; LANES], src: &[f32], n: usize) {
    match src.get(..LANES).filter(|_| n == LANES) {
        Some(v) => dst.copy_from_slice(v),
        None => dst[..n].copy_from_slice(&src[..n]),
    }
}

/// `dst[..n] = src[..n]`, `n ≤ LANES`, as [`load`].
#[inline(always)]
fn store(dst: &mut [f32], src: &[f32; LANES], n: usize) {
    match dst.get_mut(..LANES).filter(|_| n == LANES) {
        Some(d) => d.copy_from_slice(src),
        None => dst[..n].copy_from_slice(&src[..n]),
    }
}

/// `Bᵀ d B` lane by lane, with `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`.
#[inline(always)]
fn input_patch(d: &[[f32; LANES]; XI]) -> [[f32; LANES]; XI] {
    let comb = |a: &[f32; LANES], b: &[f32; LANES], c: &[f32; LANES], e: &[f32; LANES]| {
        let mut o = [[0f32; LANES]; 4];
        for l in 0..LANES {
            o[0][l] = a[l] - c[l];
            o[1][l] = b[l] + c[l];
            o[2][l] = c[l] - b[l];
            o[3][l] = b[l] - e[l];
        }
        o
    };
    // Bᵀ d: along the patch's columns (rows 0..4 of each column).
    let mut t = [[0f32; LANES]; XI];
    for col in 0..4 {
        let o = comb(&d[col], &d[4 + col], &d[8 + col], &d[12 + col]);
        for r in 0..4 {
            t[4 * r + col] = o[r];
        }
    }
    // (Bᵀ d) B: along each row.
    let mut out = [[0f32; LANES]; XI];
    for r in 0..4 {
        let o = comb(&t[4 * r], &t[4 * r + 1], &t[4 * r + 2], &t[4 * r + 3]);
        out[4 * r..4 * r + 4].copy_from_slice(&o);
    }
    out
}

/// `Aᵀ M A` of every tile's products in `m [16][tiles][C_out]`, plus the bias, ReLU'd if asked, into the output
/// rows `rows` (bordered by `pad_out` columns on each side, `width` pixels between).
fn transform_output(
    m: &[f32],
    w: &WinogradWeights,
    relu: bool,
    [tiles, tiles_x]: [usize; 2],
    [width, pad_out]: [usize; 2],
    rows: &mut [f32],
) {
    let c = w.c_out;
    let row_len = (width + 2 * pad_out) * c;
    let out_rows = rows.len() / row_len;
    for t in 0..tiles {
        let (ty, tx) = (t / tiles_x, t % tiles_x);
        for c0 in (0..c).step_by(LANES) {
            let n = LANES.min(c - c0);
            let mut d = [[0f32; LANES]; XI];
            for (xi, row) in d.iter_mut().enumerate() {
                load(row, &m[(xi * tiles + t) * c + c0..], n);
            }
            let mut bias = [0f32; LANES];
            load(&mut bias, &w.bias[c0..], n);
            let y = output_patch(&d, &bias, relu);
            for (i, px) in y.iter().enumerate() {
                let (oy, ox) = (2 * ty + i / 2, 2 * tx + i % 2);
                if oy < out_rows && ox < width {
                    store(&mut rows[oy * row_len + (ox + pad_out) * c + c0..], px, n);
                }
            }
        }
    }
}

/// `Aᵀ M A + bias` lane by lane (ReLU'd if asked), with `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`; the 2×2 outputs
/// row-major.
#[inline(always)]
fn output_patch(m: &[[f32; LANES]; XI], bias: &[f32; LANES], relu: bool) -> [[f32; LANES]; 4] {
    // Aᵀ M: 2 rows of 4.
    let mut t = [[0f32; LANES]; 8];
    for col in 0..4 {
        for l in 0..LANES {
            let (a, b, c, e) = (m[col][l], m[4 + col][l], m[8 + col][l], m[12 + col][l]);
            t[col][l] = a + b + c;
            t[4 + col][l] = b - c - e;
        }
    }
    // (Aᵀ M) A: 2 outputs per row.
    let mut out = [[0f32; LANES]; 4];
    for r in 0..2 {
        for l in 0..LANES {
            let (a, b, c, e) = (t[4 * r][l], t[4 * r + 1][l], t[4 * r + 2][l], t[4 * r + 3][l]);
            let (y0, y1) = (a + b + c + bias[l], b - c - e + bias[l]);
            out[2 * r][l] = if relu { y0.max(0.0) } else { y0 };
            out[2 * r + 1][l] = if relu { y1.max(0.0) } else { y1 };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::bf16::tests::on_threads;
    use crate::kernels::conv::{ConvWeights, conv};

    /// A deterministic input `[C_in, H, W]`, weight `[C_out, C_in, 3, 3]` (entries up to `w_scale`) and bias.
    fn case(c_in: usize, c_out: usize, h: usize, wd: usize, w_scale: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let val = |i: usize, s: usize| (((i * 7919 + s * 104_729) % 997) as f32 / 997.0 - 0.5) * 2.0;
        let x = (0..c_in * h * wd).map(|i| val(i, 1)).collect();
        let wt = (0..c_out * c_in * 9).map(|i| val(i, 2) * w_scale).collect();
        let b = (0..c_out).map(|i| val(i, 3)).collect();
        (x, wt, b)
    }

    fn max_diff(a: &PaddedImage, b: &PaddedImage) -> f32 {
        assert_eq!(a.data.len(), b.data.len());
        a.data.iter().zip(&b.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
    }

    /// Equals the shifted-product convolution (itself tested against a direct sum) on even and odd sizes, with
    /// and without ReLU and output border, on one thread (a tall image then takes two blocks) and on the pool.
    #[test]
    fn equals_the_shifted_product_convolution() {
        for (c_in, c_out, h, wd) in [(5, 7, 6, 8), (17, 19, 7, 9), (3, 33, 1, 1), (16, 16, 2, 13), (2, 3, 201, 8)] {
            let (x, wt, b) = case(c_in, c_out, h, wd, 0.3);
            let img = PaddedImage::from_chw(&x, c_in, h, wd, 1);
            let weights = WinogradWeights::new(&wt, &b, c_out, c_in);
            for (relu, pad_out) in [(true, 1), (false, 0)] {
                let want = conv(&img, &ConvWeights::new(&wt, &b, c_out, c_in, 3), relu, pad_out);
                for threads in [1, 0] {
                    let got = on_threads(threads, || conv3x3(&img, &weights, relu, pad_out));
                    let max = max_diff(&got, &want);
                    assert!(max < 1e-5, "{c_in}→{c_out} {h}×{wd} on {threads} threads: max abs diff {max}");
                }
            }
        }
    }

    /// With bf16 products: within bf16 rounding of the f32 convolution, and of the order of the shifted bf16
    /// convolution's own error.
    #[test]
    fn bf16_products_stay_within_bf16_rounding() {
        let (c_in, c_out, h, wd) = (64, 40, 7, 10);
        let (x, wt, b) = case(c_in, c_out, h, wd, 0.05);
        let weights = WinogradWeights::new(&wt, &b, c_out, c_in).with_bf16_products();
        if !matches!(weights.u, Products::Bf16(_)) {
            println!("SKIPPED: this CPU has no AVX-512 BF16; the f32 products run instead");
            return;
        }
        let img = PaddedImage::from_chw(&x, c_in, h, wd, 1);
        let want = conv(&img, &ConvWeights::new(&wt, &b, c_out, c_in, 3), true, 1);
        let got = conv3x3(&img, &weights, true, 1);
        let shifted = conv(&img, &ConvWeights::new(&wt, &b, c_out, c_in, 3).with_bf16_products(), true, 1);
        let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (max, max_shifted) = (max_diff(&got, &want), max_diff(&shifted, &want));
        println!(
            "max |output| {scale:.3}; max abs diff from f32: winograd bf16 {max:.2e}, shifted bf16 {max_shifted:.2e}"
        );
        assert!(max > 0.0 && max < 4.0 * max_shifted && max < 2e-2 * scale, "{max} vs {max_shifted}, scale {scale}");
    }

    /// With many input channels (the post-processor has 1024) the transforms' extra roundings stay of the order
    /// of the shifted products' own: both against a sum in f64.
    #[test]
    fn rounding_error_is_of_the_order_of_the_direct_products() {
        let (c_in, c_out, h, wd) = (384, 8, 6, 6);
        // Kernel scale as a trained layer's (fan-in 9·C_in), outputs of order 1.
        let (x, wt, _) = case(c_in, c_out, h, wd, 0.03);
        let b = vec![0f32; c_out];
        let img = PaddedImage::from_chw(&x, c_in, h, wd, 1);
        let shifted = conv(&img, &ConvWeights::new(&wt, &b, c_out, c_in, 3), false, 0);
        let wino = conv3x3(&img, &WinogradWeights::new(&wt, &b, c_out, c_in), false, 0);
        let (mut e_shifted, mut e_wino, mut scale) = (0f64, 0f64, 0f64);
        for y in 0..h {
            for xo in 0..wd {
                for co in 0..c_out {
                    let mut want = 0f64;
                    for ci in 0..c_in {
                        for tap in 0..9 {
                            let (yy, xx) = (y + tap / 3, xo + tap % 3);
                            if (1..=h).contains(&yy) && (1..=wd).contains(&xx) {
                                let xv = x[(ci * h + yy - 1) * wd + xx - 1] as f64;
                                want += xv * wt[(co * c_in + ci) * 9 + tap] as f64;
                            }
                        }
                    }
                    scale = scale.max(want.abs());
                    e_shifted = e_shifted.max((shifted.pixel(y, xo)[co] as f64 - want).abs());
                    e_wino = e_wino.max((wino.pixel(y, xo)[co] as f64 - want).abs());
                }
            }
        }
        println!("max |output| {scale:.3}; max abs error: shifted products {e_shifted:.2e}, winograd {e_wino:.2e}");
        assert!(e_wino <= 4.0 * e_shifted.max(1e-7) && e_wino < 1e-5 * scale.max(1.0), "{e_wino} vs {e_shifted}");
    }
}
