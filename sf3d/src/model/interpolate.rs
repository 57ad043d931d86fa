//! Resampling with PyTorch's exact semantics, written as separable interpolation matrices so that a resize is
//! two matmuls on any device: `out = Wy · img · Wxᵀ`.
//!
//! * [`bicubic_matrix`]: `F.interpolate(mode="bicubic", align_corners=False)` called with a *scale factor*
//!   (docs/engine.md §3.2, DINOv2 position embeddings: the source coordinate uses `1/scale`, not `in/out`; cubic
//!   convolution with A = −0.75, taps clamped to the edge, no clamping of negative source coordinates).
//! * [`bilinear_matrix`]: `F.interpolate(mode="bilinear", align_corners=False, antialias=False)` with an output
//!   size (docs/engine.md §3.8, CLIP input): source `(dst + 0.5)·in/out − 0.5` clamped below at 0, upper tap clamped.

use candle_core::{Device, Result, Tensor};

const CUBIC_A: f64 = -0.75;

fn cubic_weights(t: f64) -> [f64; 4] {
    let a = CUBIC_A;
    let w0 = ((a * (t + 1.0) - 5.0 * a) * (t + 1.0) + 8.0 * a) * (t + 1.0) - 4.0 * a;
    let w1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    let s = 1.0 - t;
    let w2 = ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0;
    let s2 = 2.0 - t;
    let w3 = ((a * s2 - 5.0 * a) * s2 + 8.0 * a) * s2 - 4.0 * a;
    [w0, w1, w2, w3]
}

/// Row-major `[out, in]` matrix of PyTorch bicubic interpolation driven by `scale` (output = floor(in·scale)).
pub fn bicubic_matrix(input: usize, scale: f64) -> (usize, Vec<f32>) {
    let output = (input as f64 * scale).floor() as usize;
    let inv = 1.0 / scale;
    let mut m = vec![0f64; output * input];
    for o in 0..output {
        let src = (o as f64 + 0.5) * inv - 0.5;
        let i0 = src.floor();
        let t = src - i0;
        let w = cubic_weights(t);
        for (k, wk) in w.iter().enumerate() {
            let idx = (i0 as i64 - 1 + k as i64).clamp(0, input as i64 - 1) as usize;
            m[o * input + idx] += wk;
        }
    }
    (output, m.into_iter().map(|x| x as f32).collect())
}

/// Row-major `[out, in]` matrix of PyTorch bilinear interpolation (align_corners = false, no antialias).
pub fn bilinear_matrix(input: usize, output: usize) -> Vec<f32> {
    let scale = input as f64 / output as f64;
    let mut m = vec![0f64; output * input];
    for o in 0..output {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(input - 1);
        let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
        let l1 = src - i0 as f64;
        m[o * input + i0] += 1.0 - l1;
        m[o * input + i1] += l1;
    }
    m.into_iter().map(|x| x as f32).collect()
}

/// Applies separable matrices to `x` of shape `[…, H, W]`: `Wy [H', H] · x · Wxᵀ [W, W']`.
pub fn resize_separable(
    x: &Tensor,
    wy: &[f32],
    wx: &[f32],
    out_h: usize,
    out_w: usize,
    device: &Device,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = dims.len();
    let (h, w) = (dims[n - 2], dims[n - 1]);
    let lead: usize = dims[..n - 2].iter().product();
    let wy = Tensor::from_slice(wy, (out_h, h), device)?.to_dtype(x.dtype())?;
    let wx = Tensor::from_slice(wx, (out_w, w), device)?.to_dtype(x.dtype())?;
    let x = x.reshape((lead, h, w))?;
    // [lead, H, W] · [W, W'] → [lead, H, W']
    let x = x.broadcast_matmul(&wx.t()?)?;
    // [H', H] · [lead, H, W'] → [lead, H', W']
    let x = wy.broadcast_left(lead)?.matmul(&x)?;
    let mut out = dims[..n - 2].to_vec();
    out.extend([out_h, out_w]);
    x.reshape(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_rows_sum_to_one_and_follow_the_scale_factor() {
        // DINOv2-L: 37 → 36 with scale 36.1/37 (the "+0.1" trick).
        let (out, m) = bicubic_matrix(37, 36.1 / 37.0);
        assert_eq!(out, 36);
        for r in m.chunks(37) {
            let s: f32 = r.iter().sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        // The first output samples src = 0.5·37/36.1 − 0.5 ≈ 0.0125, so it is dominated by input 0.
        assert!(m[0] > 0.95);
    }

    #[test]
    fn bilinear_identity_at_scale_one_and_halving() {
        let m = bilinear_matrix(4, 4);
        for i in 0..4 {
            assert_eq!(m[i * 4 + i], 1.0);
        }
        // 4 → 2: src = (o + 0.5)·2 − 0.5 = 0.5, 2.5 → averages of neighbours.
        let m = bilinear_matrix(4, 2);
        assert_eq!(&m[..4], &[0.5, 0.5, 0.0, 0.0]);
        assert_eq!(&m[4..], &[0.0, 0.0, 0.5, 0.5]);
    }
}
