//! Element-wise functions and the softmax's vector steps, written so that the compiler vectorises them: an `exp`
//! from a rounding trick, a polynomial and an exponent-field add, an `erf` as one rational function (no calls, no
//! branches), loops over slices. Inlined into a [`pulp::WithSimd`] body run by [`pulp::Arch::dispatch`] they
//! become AVX-512 or AVX2 code with fused multiply-adds on the machines that have them; elsewhere they are
//! still correct, slow scalar code (`mul_add` without FMA hardware is a library call).

/// Below this the result is flushed to 0 (the exponent-field add needs `n ≥ −125`).
const EXP_MIN: f32 = -86.0;
/// Above this the result would overflow; inputs are clamped to it.
const EXP_MAX: f32 = 88.0;

/// `eˣ` with a relative error of a few ulp on `[EXP_MIN, EXP_MAX]`, 0 below, `e^EXP_MAX` above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Round-to-nearest of x·log2(e) by the 1.5·2²³ trick: t's low mantissa bits hold n exactly.
    const MAGIC: f32 = 12_582_912.0;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split into a part exact in a few bits and the rest (Cody–Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let t = xc.mul_add(LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    // Minimax polynomial of (eʳ − 1 − r)/r² on [−ln2/2, ln2/2] (Cephes expf).
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let scaled = f32::from_bits((y.to_bits() as i32).wrapping_add(ni << 23) as u32);
    if x < EXP_MIN { 0.0 } else { scaled }
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
