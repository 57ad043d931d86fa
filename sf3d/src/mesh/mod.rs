//! Geometry: the triangle mesh type and the mesh half of the pipeline, one algorithm per file.
//!
//! * [`tets`]: the tetrahedral grid (official `.npz` or generated).
//! * [`isosurface`]: marching tetrahedra.
//! * [`remesh`]: isotropic triangle remeshing, quad-dominant remeshing and decimation.
//! * [`uv_unwrap`]: SF3D's box-projection unwrapper.
//! * [`bake`]: UV rasterisation, interpolation, normal maps, padding, quantisation.
//! * [`glb`]: export transforms, vertex welding and the GLB writer.
//!
//! Buffers are flat (`Vec<[f32; 3]>`, `Vec<[u32; 3]>`) in the style of meshoptimizer.

pub mod bake;
pub mod glb;
pub mod isosurface;
pub mod remesh;
#[doc(hidden)]
pub mod shapes;
pub mod tets;
pub mod uv_unwrap;

use crate::error::{Error, Result};

/// An indexed triangle mesh.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriMesh {
    /// Vertex positions.
    pub positions: Vec<[f32; 3]>,
    /// Triangles as vertex indices.
    pub faces: Vec<[u32; 3]>,
}

impl TriMesh {
    /// A mesh from its buffers, checking that every index is in range.
    pub fn new(positions: Vec<[f32; 3]>, faces: Vec<[u32; 3]>) -> Result<Self> {
        let n = positions.len();
        if let Some((f, t)) = faces.iter().enumerate().find(|(_, t)| t.iter().any(|&i| i as usize >= n)) {
            return Err(Error::InvalidMesh(format!("face {f} {t:?} indexes past {n} vertices")));
        }
        Ok(Self { positions, faces })
    }

    /// Number of vertices.
    pub fn vertex_count(&self) -> usize {
        self.positions.len()
    }

    /// Number of triangles.
    pub fn face_count(&self) -> usize {
        self.faces.len()
    }

    /// Area-weighted vertex normals exactly as the reference `Mesh` computes them (docs/engine.md §5.5): the sum
    /// of the unnormalised face normals `(P1 − P0) × (P2 − P0)` around a vertex, `(0, 0, 1)` when the squared
    /// length is ≤ 1e-20, then normalised with eps 1e-12.
    pub fn vertex_normals(&self) -> Vec<[f32; 3]> {
        vertex_normals(&self.positions, &self.faces)
    }

    /// Signed volume `Σ P0·(P1×P2)/6`: positive for a closed mesh whose triangles face outwards (CCW).
    pub fn signed_volume(&self) -> f64 {
        self.faces
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|i| self.positions[i as usize].map(f64::from));
                dot64(a, cross64(b, c)) / 6.0
            })
            .sum()
    }

    /// Axis-aligned bounding box `(min, max)`; `None` for a mesh without vertices.
    pub fn bounds(&self) -> Option<([f32; 3], [f32; 3])> {
        let first = *self.positions.first()?;
        Some(self.positions.iter().fold((first, first), |(lo, hi), p| {
            (std::array::from_fn(|k| lo[k].min(p[k])), std::array::from_fn(|k| hi[k].max(p[k])))
        }))
    }
}

/// See [`TriMesh::vertex_normals`].
pub fn vertex_normals(positions: &[[f32; 3]], faces: &[[u32; 3]]) -> Vec<[f32; 3]> {
    let mut acc = vec![[0f32; 3]; positions.len()];
    for t in faces {
        let [p0, p1, p2] = t.map(|i| positions[i as usize]);
        let n = cross(sub(p1, p0), sub(p2, p0));
        for &i in t {
            let a = &mut acc[i as usize];
            for k in 0..3 {
                a[k] += n[k];
            }
        }
    }
    acc.into_iter()
        .map(|n| {
            let n = if dot(n, n) <= 1e-20 { [0.0, 0.0, 1.0] } else { n };
            normalize(n, 1e-12)
        })
        .collect()
}

/// Per-vertex tangents as the reference `Mesh` computes them (docs/engine.md §5.5), including the one-sided
/// `max(den, 1e-6)` clamp of the UV determinant and the averaging by incidence count, then normalised and
/// orthogonalised against `normals` (eps 1e-12).
pub fn vertex_tangents(
    positions: &[[f32; 3]],
    uvs: &[[f32; 2]],
    faces: &[[u32; 3]],
    normals: &[[f32; 3]],
) -> Vec<[f32; 3]> {
    let mut acc = vec![[0f32; 3]; positions.len()];
    let mut count = vec![0f32; positions.len()];
    for t in faces {
        let [i0, i1, i2] = t.map(|i| i as usize);
        let (p0, p1, p2) = (positions[i0], positions[i1], positions[i2]);
        let (t0, t1, t2) = (uvs[i0], uvs[i1], uvs[i2]);
        let duv1 = [t1[0] - t0[0], t1[1] - t0[1]];
        let duv2 = [t2[0] - t0[0], t2[1] - t0[1]];
        let dp1 = sub(p1, p0);
        let dp2 = sub(p2, p0);
        let den = (duv1[0] * duv2[1] - duv1[1] * duv2[0]).max(1e-6);
        let tang: [f32; 3] = std::array::from_fn(|k| (dp1[k] * duv2[1] - dp2[k] * duv1[1]) / den);
        for &i in &[i0, i1, i2] {
            for k in 0..3 {
                acc[i][k] += tang[k];
            }
            count[i] += 1.0;
        }
    }
    acc.iter()
        .zip(&count)
        .zip(normals)
        .map(|((t, &c), n)| {
            let t = t.map(|x| x / c.max(1.0));
            let t = normalize(t, 1e-12);
            let d = dot(t, *n);
            normalize(std::array::from_fn(|k| t[k] - d * n[k]), 1e-12)
        })
        .collect()
}

// ---- small vector helpers shared by the geometry modules ------------------------------------------------

/// `a − b`.
#[inline]
pub fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// `a + b`.
#[inline]
pub fn add(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// `a · s`.
#[inline]
pub fn scale(a: [f32; 3], s: f32) -> [f32; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// Dot product.
#[inline]
pub fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cross product.
#[inline]
pub fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// Euclidean length.
#[inline]
pub fn length(a: [f32; 3]) -> f32 {
    dot(a, a).sqrt()
}

/// `a / max(‖a‖, eps)` (PyTorch's `F.normalize`).
#[inline]
pub fn normalize(a: [f32; 3], eps: f32) -> [f32; 3] {
    let l = length(a).max(eps);
    [a[0] / l, a[1] / l, a[2] / l]
}

/// Squared distance.
#[inline]
pub(crate) fn dist_sq(a: [f32; 3], b: [f32; 3]) -> f32 {
    let d = sub(a, b);
    dot(d, d)
}

// ---- float64 vector helpers (the reference computes normals, tangents and the unwrap's frames in float64) ----

pub(crate) fn add64(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

pub(crate) fn sub64(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn dot64(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(crate) fn cross64(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit tetrahedron with outward CCW faces has volume 1/6 and normals pointing away from its centroid.
    #[test]
    fn tetrahedron_volume_and_normals() {
        let m = TriMesh::new(
            vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        )
        .unwrap();
        assert!((m.signed_volume() - 1.0 / 6.0).abs() < 1e-9);
        let c = [0.25f32; 3];
        for (p, n) in m.positions.iter().zip(m.vertex_normals()) {
            assert!(dot(sub(*p, c), n) > 0.0);
            assert!((length(n) - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn out_of_range_index_is_rejected() {
        assert!(TriMesh::new(vec![[0.0; 3]; 2], vec![[0, 1, 2]]).is_err());
    }

    #[test]
    fn isolated_vertex_gets_up_normal() {
        let n = vertex_normals(&[[0.0; 3]], &[]);
        assert_eq!(n, vec![[0.0, 0.0, 1.0]]);
    }
}
