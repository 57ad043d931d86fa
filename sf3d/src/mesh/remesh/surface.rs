//! The input surface a remesher must stay on: closest-point projection (through [`TriangleBvh`]) and a smooth
//! reference normal at any surface point, used to tell a folded output triangle from a merely tilted one.
//!
//! The reference normal interpolates the input's area-weighted vertex normals (docs/engine.md §5.5)
//! barycentrically over the closest input triangle. Marching-tetrahedra meshes are full of slivers whose own face
//! normals are noisy; the vertex normals average them out, so "flipped relative to the input" means flipped
//! relative to the surface as a whole, not to one sliver.

use crate::mesh::remesh::bvh::{Hit, TriangleBvh};
use crate::mesh::{TriMesh, cross, dot, length, normalize, scale, sub, vertex_normals};

/// The input surface of a remesh.
#[derive(Debug, Clone)]
pub(crate) struct Surface {
    bvh: TriangleBvh,
    positions: Vec<[f32; 3]>,
    faces: Vec<[u32; 3]>,
    normals: Vec<[f32; 3]>,
}

impl Surface {
    /// Indexes `mesh` (indices must be in range).
    pub(crate) fn new(mesh: &TriMesh) -> Self {
        Self {
            bvh: TriangleBvh::new(&mesh.positions, &mesh.faces),
            positions: mesh.positions.clone(),
            faces: mesh.faces.clone(),
            normals: vertex_normals(&mesh.positions, &mesh.faces),
        }
    }

    /// The closest surface point to `p`; see [`TriangleBvh::closest`].
    #[inline]
    pub(crate) fn project(&self, p: [f32; 3], hint: u32) -> Hit {
        self.bvh.closest(p, hint)
    }

    /// [`Surface::project`] for many points in parallel.
    pub(crate) fn project_many(&self, points: &[[f32; 3]], hints: &[u32]) -> Vec<Hit> {
        self.bvh.closest_many(points, hints)
    }

    /// The smooth unit normal of the surface at `hit` (interpolated vertex normals; the face normal where those
    /// cancel out).
    pub(crate) fn normal_at(&self, hit: &Hit) -> [f32; 3] {
        let f = self.faces[self.bvh.face_of(hit.slot) as usize];
        let [a, b, c] = f.map(|i| self.positions[i as usize]);
        let w = barycentric(hit.point, a, b, c);
        let n: [f32; 3] = std::array::from_fn(|k| {
            w[0] * self.normals[f[0] as usize][k]
                + w[1] * self.normals[f[1] as usize][k]
                + w[2] * self.normals[f[2] as usize][k]
        });
        if length(n) > NORMAL_CANCEL_EPS { normalize(n, NORMAL_CANCEL_EPS) } else { self.bvh.normal(hit.slot) }
    }
}

/// Below this length an interpolated normal is considered cancelled out.
const NORMAL_CANCEL_EPS: f32 = 1e-3;

/// Barycentric coordinates of `p` (assumed in the plane of `a, b, c`), clamped to the triangle; `(⅓, ⅓, ⅓)` for a
/// degenerate triangle.
fn barycentric(p: [f32; 3], a: [f32; 3], b: [f32; 3], c: [f32; 3]) -> [f32; 3] {
    let n = cross(sub(b, a), sub(c, a));
    let nn = dot(n, n);
    if nn <= 0.0 || !nn.is_finite() {
        return [1.0 / 3.0; 3];
    }
    let wa = dot(n, cross(sub(b, p), sub(c, p))) / nn;
    let wb = dot(n, cross(sub(c, p), sub(a, p))) / nn;
    let w = [wa.max(0.0), wb.max(0.0), (1.0 - wa - wb).max(0.0)];
    let s = w[0] + w[1] + w[2];
    if s > 0.0 { scale(w, 1.0 / s) } else { [1.0 / 3.0; 3] }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the unit right triangle, the centroid has weights ⅓ each, and corner b has weight 1 for b.
    #[test]
    fn barycentric_weights() {
        let (a, b, c) = ([0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]);
        let w = barycentric([1.0 / 3.0, 1.0 / 3.0, 0.0], a, b, c);
        assert!(w.iter().all(|x| (x - 1.0 / 3.0).abs() < 1e-6));
        let w = barycentric(b, a, b, c);
        assert!((w[1] - 1.0).abs() < 1e-6 && w[0].abs() < 1e-6 && w[2].abs() < 1e-6);
    }
}
