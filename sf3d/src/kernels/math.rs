//! Element-wise functions and the softmax's vector steps, written so that the compiler vectorises them: an `exp`
//! from a rounding trick, a polynomial and an exponent-field add, an `erf` as one rational function (no calls, no
//! branches), loops over slices. Inlined into a [`pulp::WithSimd`] body run by [`pulp::Arch::dispatch`] they
//! become AVX-512 or AVX2 code with fused multiply-adds on the machines that have them; elsewhere they are
//! still correct, slow scalar code (`mul_add` without FMA hardware is a library call).

/// Below this the result is flushed to 0 (the exponent-field add needs `n ≥ −125`).
const EXP_MIN: f32 = -86.0;
/// Above this the result would overflow; inputs are clamped to it.
const EXP_MAX: f32 = 88.0;
/// ln 2 split into a part exact in a few bits and the rest (Cody–Waite), so that `x − n·ln 2` keeps its precision.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Minimax polynomial of `(eʳ − 1 − r)/r²` on `[−ln2/2, ln2/2]` (Cephes expf), highest degree first.
const EXP_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// `eʳ` for `|r| ≤ ln2/2` from [`EXP_POLY`].
#[inline(always)]
fn exp_reduced(r: f32) -> f32 {
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = p.mul_add(r, c);
    }
    (p * r).mul_add(r, r) + 1.0
}

/// `eˣ` with a relative error of a few ulp on `[EXP_MIN, EXP_MAX]`, 0 below, `e^EXP_MAX` above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Round-to-nearest of x·log2(e) by the 1.5·2²³ trick: t's low mantissa bits hold n exactly.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let t = xc.mul_add(std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let y = exp_reduced(n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc)));
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let scaled = f32::from_bits((y.to_bits() as i32).wrapping_add(ni << 23) as u32);
    if x < EXP_MIN { 0.0 } else { scaled }
}

/// The softmax's `exp` on 16 lanes with AVX-512 F: the same reduction and polynomial as [`exp`], with the
/// rounding and the power of two as single instructions (`vrndscaleps`, `vscalefps`).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    #![allow(unsafe_code)]

    use std::arch::x86_64::*;

    use super::{EXP_MIN, EXP_POLY, LN2_HI, LN2_LO};

    /// `eˣ` per lane for the softmax's `x ≤ 0`: a few ulp as [`super::exp`] down to `EXP_MIN`, below it
    /// `e^EXP_MIN` (≈ 4·10⁻³⁸) rather than 0; NaN stays NaN. Positive inputs are not clamped.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn exp_nonpositive(x: __m512) -> __m512 {
        // `max(EXP_MIN, x)` returns its second operand when either is NaN.
        let x = _mm512_max_ps(_mm512_set1_ps(EXP_MIN), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x));
        let mut p = _mm512_set1_ps(EXP_POLY[0]);
        for &c in &EXP_POLY[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(y, n)
    }
}

/// `erf(x)` within 4e-7 of the exact value: a rational minimax approximation `x·P(x²)/Q(x²)` on
/// `[−4, 4]` (beyond it erf is ±1 in f32), as used by Eigen and XLA for f32.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p.mul_add(x2, 2.770_681_4e-8);
    p = p.mul_add(x2, -2.101_024_e-6);
    p = p.mul_add(x2, -5.692_506_4e-5);
    p = p.mul_add(x2, -7.349_906_3e-4);
    p = p.mul_add(x2, -2.954_600_1e-3);
    p = p.mul_add(x2, -1.609_603_3e-2);
    let mut q = -1.456_607_2e-5f32;
    q = q.mul_add(x2, -2.133_740_6e-4);
    q = q.mul_add(x2, -1.682_827e-3);
    q = q.mul_add(x2, -7.373_329_2e-3);
    q = q.mul_add(x2, -1.426_474e-2);
    x * p / q
}

/// Exact-form GELU, `x·(1 + erf(x/√2))/2`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    (erf(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * x
}

/// `acc[i] = max(acc[i], xs[i])`.
#[inline(always)]
pub fn max_into(acc: &mut [f32], xs: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(xs) {
        *a = if x > *a { x } else { *a };
    }
}

/// `xs[i] = exp(xs[i] − shift[i])` and `sum[i] += xs[i]` (the softmax step of one key across a query block).
#[inline(always)]
pub fn exp_shifted_accumulate(xs: &mut [f32], shift: &[f32], sum: &mut [f32]) {
    for ((x, &m), l) in xs.iter_mut().zip(shift).zip(sum.iter_mut()) {
        *x = exp(*x - m);
        *l += *x;
    }
}

/// `xs[i] *= s[i]`.
#[inline(always)]
pub fn mul_into(xs: &mut [f32], s: &[f32]) {
    for (x, &f) in xs.iter_mut().zip(s) {
        *x *= f;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_softmax_range() {
        let mut worst = 0f64;
        let mut x = -86.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(100.0).is_finite());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_exp_matches_the_scalar_one() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512 F on this CPU: nothing to compare");
            return;
        }
        let mut x = -100.0f32;
        let mut worst = 0f64;
        while x <= 0.0 {
            let lanes: [f32; 16] = std::array::from_fn(|i| (x - i as f32 * 0.000_13).max(-100.0));
            let mut got = [0f32; 16];
            // SAFETY: AVX-512 F was detected above; both arrays hold 16 floats.
            #[allow(unsafe_code)]
            unsafe {
                _mm512_storeu_ps(got.as_mut_ptr(), avx512::exp_nonpositive(_mm512_loadu_ps(lanes.as_ptr())))
            };
            for (&l, &g) in lanes.iter().zip(&got) {
                let want = (l as f64).exp();
                if l >= EXP_MIN {
                    worst = worst.max(((g as f64) - want).abs() / want);
                } else {
                    assert!(g > 0.0 && g <= exp(EXP_MIN) * 1.000_001, "{l}: {g}");
                }
            }
            x += 0.001_7;
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        let special =
            [0.0f32, f32::NAN, f32::NEG_INFINITY, -0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut got = [0f32; 16];
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe {
            _mm512_storeu_ps(got.as_mut_ptr(), avx512::exp_nonpositive(_mm512_loadu_ps(special.as_ptr())))
        };
        assert_eq!(got[0], 1.0);
        assert!(got[1].is_nan(), "NaN stays NaN");
        assert!(got[2] >= 0.0 && got[2] < 1e-37);
        assert_eq!(got[3], 1.0);
    }

    #[test]
    fn erf_is_within_5e7_of_libm() {
        let mut worst = 0f32;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf(x) - candle_core::cpu::erf::erf_f32(x)).abs());
            x += 0.000_37;
        }
        assert!(worst < 5e-7, "worst absolute error {worst:e}");
        assert_eq!(erf(0.0), 0.0);
        assert!((erf(10.0) - 1.0).abs() < 5e-7 && (erf(-10.0) + 1.0).abs() < 5e-7);
    }

    #[test]
    fn softmax_steps_match_scalar_ones() {
        let xs: Vec<f32> = (0..53).map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.25).collect();
        let shift: Vec<f32> = (0..53).map(|i| (i % 7) as f32 * 0.5).collect();
        let mut acc = vec![0.5f32; 53];
        max_into(&mut acc, &xs);
        for (a, x) in acc.iter().zip(&xs) {
            assert_eq!(*a, x.max(0.5));
        }
        let mut ys = xs.clone();
        let mut sum = vec![1.0f32; 53];
        exp_shifted_accumulate(&mut ys, &shift, &mut sum);
        for (((&x, &m), &y), &l) in xs.iter().zip(&shift).zip(&ys).zip(&sum) {
            let want = ((x - m) as f64).exp();
            assert!(((y as f64) - want).abs() < 1e-6 * want.max(1.0));
            assert!(((l as f64) - 1.0 - want).abs() < 1e-6 * want.max(1.0));
        }
        mul_into(&mut ys, &shift);
        assert!((ys[3] - ((xs[3] - shift[3]) as f64).exp() as f32 * shift[3]).abs() < 1e-6);
    }
}
