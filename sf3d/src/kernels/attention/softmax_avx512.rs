//! The online-softmax step of a score block on AVX-512 in two passes over the scores (the portable steps in
//! [`super::SubBlock::online_softmax`] and [`crate::kernels::bf16::pair_rows`] take three or four, and one over
//! the running output):
//! the block's maxima, the weights `exp(s − max)` with their running sums, written back as f32 or straight
//! into the bf16 pairs of keys the value product reads, and the running output rescaled only in the query
//! lanes whose maximum moved.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::N;
use crate::kernels::bf16::avx512::pack_pairs;
use crate::kernels::math::avx512::exp_nonpositive;

/// Vectors per query row.
const V: usize = N / 16;

/// The running state of a query block's softmax: per query lane the maximum and the sum of weights so far, and
/// the weighted sum of values `acc [D, N]`.
pub(super) struct Running<'a> {
    pub row_max: &'a mut [f32; N],
    pub row_sum: &'a mut [f32; N],
    pub acc: &'a mut [f32],
}

/// The online-softmax step on a block's scores `s [kb, N]` with the weights written back into `s` (see
/// [`super::SubBlock::online_softmax`]: the same results, with `exp` from [`exp_nonpositive`]). `accumulate` says
/// whether `acc` holds earlier blocks' sums.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn in_place(s: &mut [f32], kb: usize, mut run: Running<'_>, accumulate: bool) {
    // SAFETY (the helpers): the caller's guarantee.
    let (m, mut sum) = unsafe { rescale(s, kb, &mut run, accumulate) };
    for row in s[..kb * N].chunks_exact_mut(N) {
        for t in 0..V {
            let e = unsafe { weights(row, t, m[t]) };
            sum[t] = _mm512_add_ps(sum[t], e);
            // SAFETY: rows are N = 16·V floats and t < V.
            unsafe { _mm512_storeu_ps(row.as_mut_ptr().add(16 * t), e) };
        }
    }
    unsafe { store(run, m, sum) };
}

/// [`in_place`] with the weights rounded to bf16 pairs of keys, `pp [⌈kb / 2⌉, N]` (the odd key count's missing
/// key zero), the layout of the value product; `s` keeps the scores.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn to_pairs(s: &[f32], kb: usize, mut run: Running<'_>, accumulate: bool, pp: &mut [u32]) {
    assert!(pp.len() >= kb.div_ceil(2) * N, "softmax: pair rows too short");
    // SAFETY (the helpers): the caller's guarantee.
    let (m, mut sum) = unsafe { rescale(s, kb, &mut run, accumulate) };
    for (r, dst) in pp.chunks_exact_mut(N).take(kb.div_ceil(2)).enumerate() {
        let (even, odd) = (&s[2 * r * N..][..N], (2 * r + 1 < kb).then(|| &s[(2 * r + 1) * N..][..N]));
        for t in 0..V {
            let lo = unsafe { weights(even, t, m[t]) };
            sum[t] = _mm512_add_ps(sum[t], lo);
            let hi = match odd {
                Some(odd) => {
                    let hi = unsafe { weights(odd, t, m[t]) };
                    sum[t] = _mm512_add_ps(sum[t], hi);
                    hi
                }
                None => _mm512_setzero_ps(),
            };
            // SAFETY: `dst` is N = 16·V pairs and t < V.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(16 * t).cast(), pack_pairs(lo, hi)) };
        }
    }
    unsafe { store(run, m, sum) };
}

/// The block's new maxima (the running ones and the scores' own), the running sums scaled to them, and the
/// running output rescaled in the lanes whose maximum moved (the others would be multiplied by exactly 1).
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rescale(s: &[f32], kb: usize, run: &mut Running<'_>, accumulate: bool) -> ([__m512; V], [__m512; V]) {
    assert!(kb > 0 && s.len() >= kb * N, "softmax: scores too short");
    assert!(run.acc.len().is_multiple_of(N), "softmax: running output is not N lanes wide");
    // SAFETY (every `load`): rows are N = 16·V floats and t < V.
    let mut m_old = [_mm512_setzero_ps(); V];
    for (t, m) in m_old.iter_mut().enumerate() {
        *m = unsafe { load(&run.row_max[..], t) };
    }
    let mut m = m_old;
    for row in s[..kb * N].chunks_exact(N) {
        for (t, m) in m.iter_mut().enumerate() {
            *m = _mm512_max_ps(*m, unsafe { load(row, t) });
        }
    }
    let mut sum = [_mm512_setzero_ps(); V];
    let mut alpha = [_mm512_setzero_ps(); V];
    let mut moved = [0u16; V];
    for t in 0..V {
        alpha[t] = unsafe { exp_nonpositive(_mm512_sub_ps(m_old[t], m[t])) };
        sum[t] = _mm512_mul_ps(unsafe { load(&run.row_sum[..], t) }, alpha[t]);
        moved[t] = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(m_old[t], m[t]);
    }
    if accumulate && moved.iter().any(|&k| k != 0) {
        for row in run.acc.chunks_exact_mut(N) {
            for t in 0..V {
                // SAFETY: rows are N = 16·V floats and t < V.
                unsafe {
                    let p = row.as_mut_ptr().add(16 * t);
                    _mm512_mask_storeu_ps(p, moved[t], _mm512_mul_ps(_mm512_loadu_ps(p), alpha[t]));
                }
            }
        }
    }
    (m, sum)
}

/// Stores the new maxima and sums.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store(run: Running<'_>, m: [__m512; V], sum: [__m512; V]) {
    for t in 0..V {
        // SAFETY: both arrays are N = 16·V floats and t < V.
        unsafe {
            _mm512_storeu_ps(run.row_max.as_mut_ptr().add(16 * t), m[t]);
            _mm512_storeu_ps(run.row_sum.as_mut_ptr().add(16 * t), sum[t]);
        }
    }
}

/// Lanes `16t..16t + 16` of a row of `N` floats.
///
/// # Safety
/// The CPU must have AVX-512 F; `t < V` and `row` at least `N` long.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load(row: &[f32], t: usize) -> __m512 {
    debug_assert!(16 * t + 16 <= row.len());
    // SAFETY: within `row` by the caller's guarantee.
    unsafe { _mm512_loadu_ps(row.as_ptr().add(16 * t)) }
}

/// `exp(row − m)` on lanes `16t..16t + 16` of a row of scores.
///
/// # Safety
/// As for [`load`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn weights(row: &[f32], t: usize, m: __m512) -> __m512 {
    unsafe { exp_nonpositive(_mm512_sub_ps(load(row, t), m)) }
}
