//! `y = x·W + b` with both operands rounded to bfloat16 and the sums kept in f32: the precision of the
//! reference's bf16 autocast regions, at twice the f32 rate on CPUs with AVX-512 BF16 (`vdpbf16ps` does two
//! multiply-adds per f32 lane where an FMA does one), and several times that on CPUs with AMX tiles
//! ([`super::amx`]).
//!
//! With AVX-512 BF16 the weight is packed once, at load, into column panels of [`NR`] columns whose rows are
//! bf16 pairs (`[panels][k/2][NR]` of `u32`, each `u32` the entries of rows `2p` and `2p+1`), and each thread
//! converts its input rows to bf16 one block of [`MC`] rows at a time (row-major bf16 rows are already pairs along
//! `k`). The product is blocked like a classic GEMM: the block's rows reused from the L2 cache across every panel,
//! [`KC`] pairs of `k` at a time, register tiles of [`MR`] rows × [`NR`] columns (24 of the 32 zmm registers), or
//! 32 × 32 AMX blocks.
//!
//! [`product_on_pairs`] runs the same blocks on input rows that are already bf16 pairs and may overlap (the
//! shifted views of a convolution, [`super::conv`]).
//!
//! Elsewhere the same arithmetic runs on the f32 matrix kernel: the weight is stored rounded to bf16 and the
//! input rounded per call, so results agree with the native path to f32 rounding of the sums.

use rayon::prelude::*;

use super::amx;
use super::gemm::{MatRef, sgemm};

/// Rows of a register tile.
const MR: usize = 12;
/// Columns of a register tile and of a weight panel: two 16-lane vectors.
const NR: usize = 32;
// The AMX path reads one panel as one block.
const _: () = assert!(NR == amx::BLOCK);
/// `k` pairs per block: a panel's block (`KC · NR · 4` bytes) stays in L1/L2 while [`MC`] rows use it.
const KC: usize = 256;
/// Rows per block: their `KC` pairs (`MC · KC · 4` bytes) stay in L2 while every panel passes.
const MC: usize = 16 * MR;

/// `x` rounded to the nearest bfloat16 (ties to even), as an f32. NaN stays NaN.
pub fn round(x: f32) -> f32 {
    f32::from_bits(u32::from(to_bits(x)) << 16)
}

/// The bfloat16 nearest to `x` (ties to even), as its 16 bits.
fn to_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let bias = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(bias) >> 16) as u16
}

/// `lo` and `hi` (zero when absent) as one bf16 pair: `lo` in the low half, the operand layout of `vdpbf16ps`.
pub(crate) fn pair(lo: f32, hi: Option<f32>) -> u32 {
    u32::from(to_bits(lo)) | (u32::from(hi.map_or(0, to_bits)) << 16)
}

/// Whether this CPU multiplies bf16 pairs natively (AVX-512 F, BW and BF16).
pub fn native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows `2r` and `2r + 1` of `src` (rows of `width` floats) interleaved as bf16 pairs, `dst [rows.div_ceil(2),
/// width]`: `dst[r][i]` holds `src[2r][i]` in its low half and `src[2r + 1][i]` (zero past the last row) in its
/// high half, the operand layout of `vdpbf16ps` when the sum runs over rows.
/// Panics if `dst` is not that long.
pub(crate) fn pair_rows(src: &[f32], width: usize, dst: &mut [u32]) {
    let rows = src.len().checked_div(width).unwrap_or(0);
    assert_eq!(dst.len(), rows.div_ceil(2) * width, "pair_rows: destination length");
    for (r, out) in dst.chunks_exact_mut(width.max(1)).enumerate().take(rows.div_ceil(2)) {
        let lo = &src[2 * r * width..(2 * r + 1) * width];
        let hi = (2 * r + 1 < rows).then(|| &src[(2 * r + 1) * width..(2 * r + 2) * width]);
        pair_two_rows(lo, hi, out);
    }
}

/// `out[i]` = `lo[i]` and `hi[i]` (zero when absent) as one bf16 pair, for `i < lo.len()` (`out` at least as
/// long).
fn pair_two_rows(lo: &[f32], hi: Option<&[f32]>, out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    let done = if native() {
        // SAFETY: `native()` found AVX-512 F, BW and BF16.
        #[allow(unsafe_code)]
        unsafe {
            avx512::interleave(lo, hi, out)
        }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for i in done..lo.len() {
        out[i] = pair(lo[i], hi.map(|h| h[i]));
    }
}

/// Which kernel a [`Bf16Weight`] is packed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// The f32 matrix kernel on bf16-rounded operands.
    Portable,
    /// AVX-512 BF16 register tiles.
    Avx512,
    /// AMX tiles, with the AVX-512 tiles for ragged edges.
    Amx,
}

/// A weight `[k, n]` (the transpose of PyTorch's `[out, in]`) held in bf16 for [`linear`].
#[derive(Debug, Clone)]
pub struct Bf16Weight {
    k: usize,
    n: usize,
    /// Rows of pairs per panel: `k / 2` rounded up, and for AMX tiles to whole tile steps (zero pairs).
    panel_pairs: usize,
    repr: Repr,
}

#[derive(Debug, Clone)]
enum Repr {
    /// `[n.div_ceil(NR)][panel_pairs][NR]` bf16 pairs, zero-padded; `amx`: the products run on AMX tiles.
    Pairs { packed: Vec<u32>, amx: bool },
    /// The weight rounded to bf16, kept as f32 `[k, n]`.
    Rounded(Vec<f32>),
}

impl Bf16Weight {
    /// Rounds (and, on a CPU with AVX-512 BF16, packs) `weight_t [k, n]`.
    /// Panics if its length is not `k · n` (the caller takes both from the tensor's shape).
    pub fn new(weight_t: &[f32], k: usize, n: usize) -> Self {
        let kernel = if !native() {
            Kernel::Portable
        } else if amx::available() {
            Kernel::Amx
        } else {
            Kernel::Avx512
        };
        Self::with(weight_t, k, n, kernel)
    }

    fn with(weight_t: &[f32], k: usize, n: usize, kernel: Kernel) -> Self {
        assert_eq!(weight_t.len(), k * n, "bf16 weight: length does not match its dimensions");
        if kernel == Kernel::Portable {
            let repr = Repr::Rounded(weight_t.iter().map(|&w| round(w)).collect());
            return Self { k, n, panel_pairs: k.div_ceil(2), repr };
        }
        let kp = k.div_ceil(2);
        let panel_pairs = if kernel == Kernel::Amx { kp.next_multiple_of(amx::STEP) } else { kp };
        let mut packed = vec![0u32; n.div_ceil(NR) * panel_pairs * NR];
        packed.par_chunks_mut(panel_pairs * NR).enumerate().for_each(|(panel, dst)| {
            let j0 = panel * NR;
            let nc = NR.min(n - j0);
            for p in 0..kp {
                let lo = &weight_t[2 * p * n + j0..][..nc];
                let hi = (2 * p + 1 < k).then(|| &weight_t[(2 * p + 1) * n + j0..][..nc]);
                pair_two_rows(lo, hi, &mut dst[p * NR..p * NR + nc]);
            }
        });
        Self { k, n, panel_pairs, repr: Repr::Pairs { packed, amx: kernel == Kernel::Amx } }
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `x [rows, k] · w + bias [n]` → `[rows, n]`, products of bf16-rounded operands summed in f32.
/// Panics if a slice disagrees with the dimensions (the caller takes them from the tensors' shapes).
pub fn linear(x: &[f32], w: &Bf16Weight, bias: Option<&[f32]>) -> Vec<f32> {
    let (k, n) = (w.k, w.n);
    assert!(k > 0 && x.len().is_multiple_of(k), "bf16 linear: input rows are not {k} wide");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "bf16 linear: bias does not match its dimensions");
    }
    let rows = x.len() / k;
    let mut out = vec![0f32; rows * n];
    if out.is_empty() {
        return out;
    }
    let band = rows.div_ceil(rayon::current_num_threads()).max(1);
    out.par_chunks_mut(band * n).zip(x.par_chunks(band * k)).for_each(|(dst, src)| {
        // The output is written before the tiles read it: their first read of a fresh zeroed page would map the
        // shared zero page, and the write after it would copy it and flush the other cores' TLBs, page by page.
        match bias {
            Some(b) => {
                for row in dst.chunks_exact_mut(n) {
                    row.copy_from_slice(b);
                }
            }
            None => dst.fill(0.0),
        }
        match &w.repr {
            Repr::Rounded(wt) => {
                let xr: Vec<f32> = src.iter().map(|&v| round(v)).collect();
                let m = src.len() / k;
                sgemm(dst, n, bias.is_some(), MatRef::rows(&xr, m, k, k), MatRef::rows(wt, k, n, n), 1.0);
            }
            Repr::Pairs { packed, amx } => band_pairs(dst, src, w, packed, *amx),
        }
    });
    out
}

/// One thread's rows on the packed weight: `dst [m, n] += src [m, k] · w`.
fn band_pairs(dst: &mut [f32], src: &[f32], w: &Bf16Weight, packed: &[u32], amx: bool) {
    let (k, n) = (w.k, w.n);
    let m = src.len() / k;
    let (kp, stride) = (k.div_ceil(2), w.panel_pairs);
    // One block of rows at a time as bf16 pairs, `[MC][panel_pairs]` (zero past `k`, as the panels are), converted
    // right before use so that it is still in the L2 cache when the tiles read it.
    let mut a = vec![0u32; MC.min(m) * stride];
    for i0 in (0..m).step_by(MC) {
        let mc = MC.min(m - i0);
        for (row, pairs) in src[i0 * k..(i0 + mc) * k].chunks_exact(k).zip(a.chunks_exact_mut(stride)) {
            to_pairs_into(row, &mut pairs[..kp]);
        }
        block_pairs(&mut dst[i0 * n..(i0 + mc) * n], n, &a, stride, [stride, stride], packed, amx);
    }
}

/// `dst [m, n] += A · w` on rows of bf16 pairs already converted: row `r` of `A` is `a[r·stride..][..kp]` (rows
/// may overlap, as in a convolution's shifted views), `packed` the weight's panels, `panel_pairs` rows each
/// (`[kp, panel_pairs]`); `m = dst.len() / n`.
///
/// With AMX tiles every 32-row group runs on them (a last, shorter group staged through a zero-padded copy), over
/// whole 16-pair steps; the AVX-512 register tiles take the pairs of a `kp` that is not a whole number of steps
/// (never for the linear layers, whose rows and panels are padded).
#[allow(clippy::too_many_arguments)] // the operands and their layout
fn block_pairs(
    dst: &mut [f32],
    n: usize,
    a: &[u32],
    stride: usize,
    [kp, panel_pairs]: [usize; 2],
    packed: &[u32],
    amx: bool,
) {
    const B: usize = amx::BLOCK;
    let m = dst.len() / n;
    let tiles = if amx { amx::Tiles::load() } else { None };
    // A block that is not 32 × 32 inside `dst`, staged for the tiles, and the input rows of a short row group.
    let mut edge = [0f32; B * B];
    let mut short: Vec<u32> = Vec::new();
    for i0 in (0..m).step_by(MC) {
        let mc = MC.min(m - i0);
        for p0 in (0..kp).step_by(KC) {
            let pc = KC.min(kp - p0);
            let steps = pc / amx::STEP * amx::STEP;
            if tiles.is_some() && steps > 0 && !mc.is_multiple_of(B) {
                // The block's last, short row group, zero below its rows, as a compact `[32, steps]` block (the
                // same for every panel).
                let (r0, mr) = (i0 + mc / B * B, mc % B);
                short.clear();
                short.resize(B * steps, 0);
                for (i, row) in short.chunks_exact_mut(steps).take(mr).enumerate() {
                    row.copy_from_slice(&a[(r0 + i) * stride + p0..][..steps]);
                }
            }
            for (panel, j0) in (0..n).step_by(NR).enumerate() {
                let nc = NR.min(n - j0);
                let w = &packed[(panel * panel_pairs + p0) * NR..(panel * panel_pairs + p0 + pc) * NR];
                let mut r0 = i0;
                if let Some(tiles) = tiles.as_ref().filter(|_| steps > 0) {
                    while r0 < i0 + mc {
                        let mr = B.min(i0 + mc - r0);
                        let (rows, a_stride) =
                            if mr < B { (&short[..], steps) } else { (&a[r0 * stride + p0..], stride) };
                        if mr == B && nc == NR {
                            tiles.product(&mut dst[r0 * n + j0..], n, rows, a_stride, w, NR, steps, true);
                        } else {
                            for (i, row) in edge.chunks_exact_mut(B).take(mr).enumerate() {
                                row[..nc].copy_from_slice(&dst[(r0 + i) * n + j0..][..nc]);
                            }
                            tiles.product(&mut edge, B, rows, a_stride, w, NR, steps, true);
                            for (i, row) in edge.chunks_exact(B).take(mr).enumerate() {
                                dst[(r0 + i) * n + j0..][..nc].copy_from_slice(&row[..nc]);
                            }
                        }
                        let (p, rest) = (p0 + steps, pc - steps);
                        for r in (r0..r0 + mr).step_by(MR).filter(|_| rest > 0) {
                            let rows = MR.min(r0 + mr - r);
                            tile(dst, n, r, rows, j0, nc, &a[r * stride..], stride, p, rest, &w[steps * NR..]);
                        }
                        r0 += mr;
                    }
                }
                for r in (r0..i0 + mc).step_by(MR) {
                    let mr = MR.min(i0 + mc - r);
                    tile(dst, n, r, mr, j0, nc, &a[r * stride..], stride, p0, pc, w);
                }
            }
        }
    }
}

/// `src` as consecutive bf16 pairs (`dst[p]` = `src[2p]`, `src[2p + 1]`, zero past the end).
pub(crate) fn to_pairs_into(src: &[f32], dst: &mut [u32]) {
    // SAFETY: the AVX-512 conversion runs only where `native()` found AVX-512 F and BF16.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    let done = if native() { unsafe { avx512::pairs(src, dst) } } else { 0 };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for (p, d) in dst.iter_mut().enumerate().skip(done) {
        *d = src.get(2 * p).map_or(0, |&lo| pair(lo, src.get(2 * p + 1).copied()));
    }
}

/// `dst [m, n] += A · w` where row `r` of `A` is the bf16 pairs `a[r·stride..][..k/2]` (see [`to_pairs`]).
/// Panics if `w` is not packed in pairs (a CPU without AVX-512 BF16), or if `a` is too short for `m` rows.
pub fn product_on_pairs(dst: &mut [f32], a: &[u32], stride: usize, w: &Bf16Weight) {
    let Repr::Pairs { packed, amx } = &w.repr else {
        panic!("product_on_pairs: the weight is not packed in bf16 pairs")
    };
    let (kp, n) = (w.k.div_ceil(2), w.n);
    let m = dst.len() / n;
    assert!(m == 0 || a.len() >= (m - 1) * stride + kp, "product_on_pairs: input rows exceed their slice");
    block_pairs(dst, n, a, stride, [kp, w.panel_pairs], packed, *amx);
}

/// `src` (of even length) as consecutive bf16 pairs, on every thread.
pub fn to_pairs(src: &[f32]) -> Vec<u32> {
    let mut dst = vec![0u32; src.len().div_ceil(2)];
    dst.par_chunks_mut(1 << 14).zip(src.par_chunks(1 << 15)).for_each(|(d, s)| to_pairs_into(s, d));
    dst
}

/// `dst[r0.., j0..] += a[.., p0..p0+pc] · w` for an `mr × nc` tile (`mr ≤ MR`, `nc ≤ NR`) whose input rows are the
/// first `mr` rows of `a` (`kp` pairs apart).
#[allow(clippy::too_many_arguments)] // the tile's position and extent beside its operands
fn tile(
    dst: &mut [f32],
    n: usize,
    r0: usize,
    mr: usize,
    j0: usize,
    nc: usize,
    a: &[u32],
    kp: usize,
    p0: usize,
    pc: usize,
    w: &[u32],
) {
    // Rows past the band's end repeat its last row (computed, never stored), so the tile is always full.
    let rows: [&[u32]; MR] = std::array::from_fn(|i| &a[i.min(mr - 1) * kp + p0..i.min(mr - 1) * kp + p0 + pc]);
    // The tile's first row and everything up to its last element.
    let out = &mut dst[r0 * n + j0..(r0 + mr - 1) * n + j0 + nc];
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `tile` is reached only through a packed weight, which is built only where `native()` found
        // AVX-512 F and BF16 on this CPU.
        #[allow(unsafe_code)]
        unsafe {
            avx512::tile(out, n, mr, nc, &rows, w, pc)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (out, n, nc, &rows, w, pc);
        unreachable!("bf16 pairs are packed only on x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    #![allow(unsafe_code)]

    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// `out[i·n + j] += Σ_p dot(rows[i][p], w[p·NR + j])` for `i < mr`, `j < nc`, over `pc` pairs, each `dot` two
    /// bf16 products summed in f32. The tile is loaded from and stored to `out` with lane masks, so ragged edges
    /// cost nothing extra.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile(
        out: &mut [f32],
        n: usize,
        mr: usize,
        nc: usize,
        rows: &[&[u32]; MR],
        w: &[u32],
        pc: usize,
    ) {
        assert!(w.len() >= pc * NR && rows.iter().all(|r| r.len() >= pc), "bf16 tile: operands too short");
        assert!((1..=MR).contains(&mr) && (1..=NR).contains(&nc), "bf16 tile: extent out of range");
        assert!(out.len() > (mr - 1) * n + nc - 1, "bf16 tile: destination too short");
        let mask = |from: usize| -> __mmask16 {
            let lanes = nc.saturating_sub(from).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        };
        let (m0, m1) = (mask(0), mask(16));
        let mut c = [[_mm512_setzero_ps(); 2]; MR];
        for (i, c) in c.iter_mut().enumerate().take(mr) {
            // SAFETY: row `i < mr` starts at `i·n`; the masks keep the loads to its first `nc ≤ NR` elements, all
            // inside `out` (asserted above).
            unsafe {
                let ptr = out.as_ptr().add(i * n);
                c[0] = _mm512_maskz_loadu_ps(m0, ptr);
                c[1] = _mm512_maskz_loadu_ps(m1, ptr.add(16));
            }
        }
        for p in 0..pc {
            // SAFETY: `p · NR + NR ≤ pc · NR ≤ w.len()` (asserted above); unaligned loads.
            let (b0, b1) = unsafe {
                let ptr = w.as_ptr().add(p * NR);
                (bh(_mm512_loadu_si512(ptr.cast())), bh(_mm512_loadu_si512(ptr.add(16).cast())))
            };
            for (c, row) in c.iter_mut().zip(rows) {
                // SAFETY: `p < pc ≤ row.len()` (asserted above).
                let pair = unsafe { *row.get_unchecked(p) };
                let a = bh(_mm512_set1_epi32(pair as i32));
                c[0] = _mm512_dpbf16_ps(c[0], a, b0);
                c[1] = _mm512_dpbf16_ps(c[1], a, b1);
            }
        }
        for (i, c) in c.iter().enumerate().take(mr) {
            // SAFETY: as for the loads.
            unsafe {
                let ptr = out.as_mut_ptr().add(i * n);
                _mm512_mask_storeu_ps(ptr, m0, c[0]);
                _mm512_mask_storeu_ps(ptr.add(16), m1, c[1]);
            }
        }
    }

    /// Converts the leading 32-float chunks of `row` to bf16 pairs (round to nearest even; subnormal inputs count as
    /// zero), returning how many pairs it wrote; the caller converts the rest.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pairs(row: &[f32], pairs: &mut [u32]) -> usize {
        let chunks = (row.len() / 32).min(pairs.len() / 16);
        for i in 0..chunks {
            // SAFETY: `32·i + 32 ≤ row.len()` and `16·i + 16 ≤ pairs.len()` by the choice of `chunks`.
            unsafe {
                let lo = _mm512_loadu_ps(row.as_ptr().add(32 * i));
                let hi = _mm512_loadu_ps(row.as_ptr().add(32 * i + 16));
                _mm512_storeu_si512(pairs.as_mut_ptr().add(16 * i).cast(), bits(_mm512_cvtne2ps_pbh(hi, lo)));
            }
        }
        16 * chunks
    }

    /// `out[i] = (lo[i], hi[i])` as bf16 pairs for the leading multiple of 16 lanes (`hi` absent: zero high
    /// halves); returns how many it wrote.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn interleave(lo: &[f32], hi: Option<&[f32]>, out: &mut [u32]) -> usize {
        let n = lo.len().min(out.len()) / 16 * 16;
        let n = hi.map_or(n, |h| n.min(h.len() / 16 * 16));
        for i in (0..n).step_by(16) {
            // SAFETY: `i + 16 ≤ n ≤` the length of every slice read or written.
            unsafe {
                let l = _mm512_loadu_ps(lo.as_ptr().add(i));
                let h = match hi {
                    Some(h) => _mm512_loadu_ps(h.as_ptr().add(i)),
                    None => _mm512_setzero_ps(),
                };
                _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), pack_pairs(l, h));
            }
        }
        n
    }

    /// Lane `i` of `lo` and of `hi` rounded to bf16 and packed as one pair (`lo` in the low half), 16 pairs.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    pub(crate) unsafe fn pack_pairs(lo: __m512, hi: __m512) -> __m512i {
        // bf16 lanes 0..16 come from `lo`, 16..32 from `hi`; the permutation alternates them.
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        );
        _mm512_permutexvar_epi16(idx, bits(_mm512_cvtne2ps_pbh(hi, lo)))
    }

    /// The 512 bits of 32 bf16 values as integers.
    #[inline(always)]
    fn bits(v: __m512bh) -> __m512i {
        // SAFETY: both are plain 512-bit vectors; every bit pattern is a valid value of either.
        unsafe { std::mem::transmute::<__m512bh, __m512i>(v) }
    }

    /// The same 512 bits read as 32 bf16 values.
    #[inline(always)]
    fn bh(v: __m512i) -> __m512bh {
        // SAFETY: both are plain 512-bit vectors; every bit pattern is a valid value of either.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `f` on a pool of `threads` threads (0: the global pool): the products cut their rows into one band per
    /// thread, so one thread gives bands long enough for every path of the kernels.
    pub(crate) fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        if threads == 0 {
            return f();
        }
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool").install(f)
    }

    /// `x [rows, k] · wt [k, n] + b` in f64 on the bf16-rounded operands.
    fn direct(x: &[f32], wt: &[f32], k: usize, n: usize, b: Option<&[f32]>) -> Vec<f64> {
        let rows = x.len() / k;
        let mut y = vec![0f64; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let s: f64 = (0..k).map(|c| f64::from(round(x[r * k + c])) * f64::from(round(wt[c * n + j]))).sum();
                y[r * n + j] = s + b.map_or(0.0, |b| f64::from(b[j]));
            }
        }
        y
    }

    #[test]
    fn pair_rows_interleaves_rounded_rows() {
        for (rows, width) in [(5usize, 37usize), (4, 32), (1, 3), (0, 8)] {
            let src: Vec<f32> = (0..rows * width).map(|i| i as f32 * 1.37 - 20.0).collect();
            let mut dst = vec![0u32; rows.div_ceil(2) * width];
            pair_rows(&src, width, &mut dst);
            for r in 0..rows {
                for i in 0..width {
                    let half = (dst[r / 2 * width + i] >> (16 * (r % 2))) as u16;
                    assert_eq!(f32::from_bits(u32::from(half) << 16), round(src[r * width + i]), "{r} {i}");
                }
            }
            if rows % 2 == 1 {
                assert!(dst[rows / 2 * width..].iter().all(|p| p >> 16 == 0), "the missing row is zero");
            }
        }
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(round(1.0), 1.0);
        // 1 + 2⁻⁸ lies halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round(-2.5e-3).to_bits() & 0xffff, 0);
        assert!(round(f32::NAN).is_nan());
        assert_eq!(round(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn both_paths_equal_the_direct_sum_of_rounded_products() {
        // Ragged everywhere: odd k, n not a multiple of the panel, rows not a multiple of the tile, more than one
        // k block and one row block.
        for (rows, k, n) in [(5, 7, 3), (MC + 13, 2 * KC * 2 + 3, NR * 2 + 5), (1, 64, NR), (70, 106, 40)] {
            let x: Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.0173).collect();
            let wt: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.0219).collect();
            let b: Vec<f32> = (0..n).map(|j| j as f32 * 0.1 - 1.0).collect();
            for bias in [Some(&b[..]), None] {
                let want = direct(&x, &wt, k, n, bias);
                let mut kernels = vec![Kernel::Portable];
                if native() {
                    kernels.push(Kernel::Avx512);
                }
                if native() && amx::available() {
                    kernels.push(Kernel::Amx);
                }
                for (kernel, threads) in kernels.into_iter().flat_map(|k| [(k, 0), (k, 1)]) {
                    let w = Bf16Weight::with(&wt, k, n, kernel);
                    let y = on_threads(threads, || linear(&x, &w, bias));
                    let err = y.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
                    let scale = want.iter().map(|v| v.abs()).fold(1.0, f64::max);
                    assert!(err / scale < 1e-5, "{kernel:?} on {threads} threads, {rows}×{k}×{n}: {err} of {scale}");
                }
            }
        }
    }
}
