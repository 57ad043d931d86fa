//! Step 3 of the unwrap (docs/engine.md §6.4): the six charts are rotated into a consistent orientation.
//!
//! Each chart is rotated by the angle, in the aligned xy plane, between its mean actual tangent (the §5.5 tangents
//! of the shared-vertex mesh with the step-2 UVs) and its mean expected tangent (the direction of rotation about
//! the aligned z axis, projected into the tangent plane and weighted by [`expected_tangent_weighting`]), then
//! rescaled to `[0, 1]`.

use rayon::prelude::*;

use super::{DIRECTIONS, MIN_EXTENT, TANGENT_DEN_MIN, normalize64};
use crate::mesh::{add64, cross64, dot64, sub64};

/// Default `F.normalize` eps.
const NORMALIZE_EPS: f64 = 1e-12;

/// Rotates every direction's chart by the angle between its mean actual and mean expected tangents, then rescales
/// it to `[0, 1]` with one min/max over both coordinates (§6.4).
pub(super) fn rotate_charts(
    positions: &[[f64; 3]],
    normals: &[[f64; 3]],
    faces: &[[u32; 3]],
    uv: &mut [[[f64; 2]; 3]],
    direction: &[u8],
) {
    let actual = shared_vertex_tangents(positions, normals, faces, uv);
    let expected: Vec<[f64; 3]> = positions
        .par_iter()
        .zip(normals)
        .map(|(p, n)| {
            let w = [-p[1], p[0], 0.0];
            expected_tangent_weighting(cross64(*n, cross64(w, *n)))
        })
        .collect();

    let mut sum_actual = [[0.0f64; 3]; DIRECTIONS];
    let mut sum_expected = [[0.0f64; 3]; DIRECTIONS];
    let mut present = [false; DIRECTIONS];
    for (t, &d) in faces.iter().zip(direction) {
        let d = usize::from(d);
        present[d] = true;
        for &i in t {
            sum_actual[d] = add64(sum_actual[d], actual[i as usize]);
            sum_expected[d] = add64(sum_expected[d], expected[i as usize]);
        }
    }
    let mut rotation = [(1.0f64, 0.0f64); DIRECTIONS];
    for d in 0..DIRECTIONS {
        // Means and sums share their direction; atan2 is scale-invariant, so the sums serve.
        let (a, e) = (sum_actual[d], sum_expected[d]);
        let theta = (a[0] * e[1] - a[1] * e[0]).atan2(dot64(a, e));
        rotation[d] = (theta.cos(), theta.sin());
    }

    for (face_uv, &d) in uv.iter_mut().zip(direction) {
        let (c, s) = rotation[usize::from(d)];
        for p in face_uv.iter_mut() {
            let (x, y) = (2.0 * p[0] - 1.0, 2.0 * p[1] - 1.0);
            *p = [c * x - s * y, s * x + c * y];
        }
    }
    let mut lo = [f64::INFINITY; DIRECTIONS];
    let mut hi = [f64::NEG_INFINITY; DIRECTIONS];
    for (face_uv, &d) in uv.iter().zip(direction) {
        let d = usize::from(d);
        for p in face_uv {
            lo[d] = lo[d].min(p[0]).min(p[1]);
            hi[d] = hi[d].max(p[0]).max(p[1]);
        }
    }
    for (face_uv, &d) in uv.iter_mut().zip(direction) {
        let d = usize::from(d);
        if !present[d] {
            continue;
        }
        let range = (hi[d] - lo[d]).max(MIN_EXTENT);
        for p in face_uv.iter_mut() {
            *p = p.map(|x| (x - lo[d]) / range);
        }
    }
}

/// The reference's scaling of the expected tangent: `F.normalize(x, -1)` divides by the p = −1 "norm"
/// `1 / Σ 1/|xᵢ|` (clamped below at 1e-12), so the result is `x · min(Σ 1/|xᵢ|, 1e12)`.
///
/// A zero component makes the sum infinite and the factor 1e12.
pub fn expected_tangent_weighting(x: [f64; 3]) -> [f64; 3] {
    let inv_sum: f64 = x.iter().map(|c| 1.0 / c.abs()).sum();
    let norm = 1.0 / inv_sum; // 0 when a component is 0 (1/0 = ∞)
    let norm = if norm.is_nan() { 0.0 } else { norm };
    let factor = 1.0 / norm.max(NORMALIZE_EPS);
    x.map(|c| c * factor)
}

/// §5.5 tangents of the shared-vertex mesh with per-corner UVs (step 3 of the unwrapper), in f64.
fn shared_vertex_tangents(
    positions: &[[f64; 3]],
    normals: &[[f64; 3]],
    faces: &[[u32; 3]],
    uv: &[[[f64; 2]; 3]],
) -> Vec<[f64; 3]> {
    let mut acc = vec![[0.0f64; 3]; positions.len()];
    let mut count = vec![0u32; positions.len()];
    for (t, tex) in faces.iter().zip(uv) {
        let [p0, p1, p2] = t.map(|i| positions[i as usize]);
        let duv1 = [tex[1][0] - tex[0][0], tex[1][1] - tex[0][1]];
        let duv2 = [tex[2][0] - tex[0][0], tex[2][1] - tex[0][1]];
        let dp1 = sub64(p1, p0);
        let dp2 = sub64(p2, p0);
        let den = (duv1[0] * duv2[1] - duv1[1] * duv2[0]).max(TANGENT_DEN_MIN);
        let tang: [f64; 3] = std::array::from_fn(|k| (dp1[k] * duv2[1] - dp2[k] * duv1[1]) / den);
        for &i in t {
            acc[i as usize] = add64(acc[i as usize], tang);
            count[i as usize] += 1;
        }
    }
    acc.par_iter()
        .zip(&count)
        .zip(normals)
        .map(|((t, &c), n)| {
            let t = normalize64(t.map(|x| x / f64::from(c.max(1))), NORMALIZE_EPS);
            let d = dot64(t, *n);
            normalize64(std::array::from_fn(|k| t[k] - d * n[k]), NORMALIZE_EPS)
        })
        .collect()
}
