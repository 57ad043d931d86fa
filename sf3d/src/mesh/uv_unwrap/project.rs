//! Step 2 of the unwrap (docs/engine.md §6.3): the cube-direction assignment and the planar projection.
//!
//! Positions (already in the aligned frame of step 1) are mapped to `[−1, 1]³` by their bounding box. Each face
//! takes the cube direction (`+x, −x, +y, −y, +z, −z`) its summed vertex normal points along most, and each of its
//! corners is projected onto the two axes spanning that cube face. The projected coordinates are divided by the
//! largest absolute coordinate along the projection axis over all faces (one divisor per corner slot, as the
//! reference does) and mapped to `[0, 1]`.

use rayon::prelude::*;

use super::{MIN_EXTENT, NORMALIZE_EPS_AXIS, normalize64};
use crate::mesh::add64;

/// Per-face corner UVs in `[0, 1]` and the cube direction (0…5) of every face (§6.3).
pub(super) fn box_project(
    positions: &[[f64; 3]],
    normals: &[[f64; 3]],
    faces: &[[u32; 3]],
) -> (Vec<[[f64; 2]; 3]>, Vec<u8>) {
    let (lo, hi) = positions.iter().fold(([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]), |(lo, hi), p| {
        (std::array::from_fn(|k| lo[k].min(p[k])), std::array::from_fn(|k| hi[k].max(p[k])))
    });
    let extent: [f64; 3] = std::array::from_fn(|k| (hi[k] - lo[k]).max(MIN_EXTENT));
    let q = |p: [f64; 3]| -> [f64; 3] { std::array::from_fn(|k| 2.0 * ((p[k] - lo[k]) / extent[k]) - 1.0) };

    // (u_c, v_c, m_c) per corner and the direction per face.
    let raw: Vec<([[f64; 3]; 3], u8)> = faces
        .par_iter()
        .map(|t| {
            let n = t.iter().fold([0.0; 3], |acc, &i| add64(acc, normals[i as usize]));
            let n = normalize64(n, NORMALIZE_EPS_AXIS);
            let scores = [n[0], -n[0], n[1], -n[1], n[2], -n[2]];
            let mut d = 0;
            for (k, &s) in scores.iter().enumerate() {
                if s > scores[d] {
                    d = k;
                }
            }
            let corners = t.map(|i| {
                let q = q(positions[i as usize]);
                match d {
                    0 | 1 => [q[1], -q[2], q[0].abs()],
                    2 | 3 => [q[0], -q[2], q[1].abs()],
                    4 => [q[0], q[1], q[2].abs()],
                    _ => [q[0], -q[1], q[2].abs()],
                }
            });
            (corners, d as u8)
        })
        .collect();
    // Divisor per corner slot: the largest axis value over all faces.
    let mut div = [0.0f64; 3];
    for (corners, _) in &raw {
        for k in 0..3 {
            div[k] = div[k].max(corners[k][2]);
        }
    }
    let div = div.map(|d| d.max(MIN_EXTENT));
    raw.into_par_iter()
        .map(|(corners, d)| {
            let uv = std::array::from_fn(|k| {
                let [u, v, _] = corners[k];
                [((u / div[k] + 1.0) * 0.5).clamp(0.0, 1.0), ((v / div[k] + 1.0) * 0.5).clamp(0.0, 1.0)]
            });
            (uv, d)
        })
        .unzip()
}
