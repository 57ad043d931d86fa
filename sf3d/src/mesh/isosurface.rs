//! Marching tetrahedra, exactly as the reference's `MarchingTetrahedraHelper` (docs/engine.md §5.3–5.4; the
//! DMTet / nvdiffrec family), reproducing its vertex and face order.
//!
//! Steps: occupancy `sdf > 0`; valid tets have 1–3 occupied corners; their 6 edges (local order e0…e5,
//! endpoints sorted) are deduplicated and ordered lexicographically (torch.unique); edges with exactly one
//! occupied endpoint become output vertices in that order, placed at the zero crossing between the deformed
//! endpoints; faces are all one-triangle tets first, then the two-triangle tets, in tet order, through the
//! reference's triangle table. With positively oriented tets the triangles face *into* the object; the export
//! step flips them (docs/engine.md §5.2, §7.1).

use rayon::prelude::*;

use super::TriMesh;
use super::tets::TetGrid;
use crate::error::{Error, Result};

/// Local tet edges as vertex pairs (e0…e5).
const TET_EDGES: [[usize; 2]; 6] = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]];

/// Triangles per case (case = Σ occ_k·2^k).
const NUM_TRIANGLES: [usize; 16] = [0, 1, 1, 2, 1, 2, 2, 1, 1, 2, 2, 1, 2, 1, 1, 0];

/// Triangle table in local edge ids (−1 = unused), from the reference.
const TRIANGLE_TABLE: [[i8; 6]; 16] = [
    [-1, -1, -1, -1, -1, -1],
    [1, 0, 2, -1, -1, -1],
    [4, 0, 3, -1, -1, -1],
    [1, 4, 2, 1, 3, 4],
    [3, 1, 5, -1, -1, -1],
    [2, 3, 0, 2, 5, 3],
    [1, 4, 0, 1, 5, 4],
    [4, 2, 5, -1, -1, -1],
    [4, 5, 2, -1, -1, -1],
    [4, 1, 0, 4, 5, 1],
    [3, 2, 0, 3, 5, 2],
    [1, 3, 5, -1, -1, -1],
    [4, 1, 2, 4, 3, 1],
    [3, 0, 4, -1, -1, -1],
    [2, 0, 1, -1, -1, -1],
    [-1, -1, -1, -1, -1, -1],
];

/// The marching-tetrahedra result in both spaces (grid units and world), plus counts for reporting.
#[derive(Debug, Clone, PartialEq)]
pub struct Isosurface {
    /// Vertices in the unit cube (deformed grid units).
    pub vertices_unit: Vec<[f32; 3]>,
    /// The mesh in world space `[-r, r]³` (faces point into the object).
    pub mesh: TriMesh,
    /// The grid edge `[a, b]` (`a < b`) each vertex lies on.
    pub edges: Vec<[u32; 2]>,
}

/// Extracts the `sdf = 0` surface.
///
/// * `sdf[v] > 0` is inside; `deformation[v]` is the raw `vertex_offset` head output (the grid moves by
///   `tanh(deformation)/resolution`);
/// * `resolution` is the config's `isosurface_resolution`, `radius` its `radius`.
///
/// Errors with [`Error::NoSurface`] when no tet crosses the surface (all inside or all outside).
pub fn marching_tetrahedra(
    grid: &TetGrid,
    sdf: &[f32],
    deformation: &[[f32; 3]],
    resolution: usize,
    radius: f32,
) -> Result<Isosurface> {
    let n = grid.vertices.len();
    if sdf.len() != n || deformation.len() != n {
        return Err(Error::Internal(format!(
            "{} sdf / {} deformation values for {n} grid vertices",
            sdf.len(),
            deformation.len()
        )));
    }
    let inv_res = 1.0 / resolution as f32;
    let occ: Vec<bool> = sdf.iter().map(|&s| s > 0.0).collect();

    // 1. valid tets and their case index, in tet order.
    let cases: Vec<u8> =
        grid.tets.par_iter().map(|t| t.iter().enumerate().map(|(k, &v)| (occ[v as usize] as u8) << k).sum()).collect();
    let valid: Vec<u32> =
        (0..grid.tets.len() as u32).filter(|&t| NUM_TRIANGLES[cases[t as usize] as usize] > 0).collect();
    if valid.is_empty() {
        let inside = occ.iter().filter(|&&o| o).count();
        let what = if inside == 0 {
            "every grid point is outside the object"
        } else {
            "every grid point is inside the object"
        };
        return Err(Error::NoSurface(format!("{what} ({inside} of {n} inside)")));
    }

    // 2–4. unique crossing edges in lexicographic order → output vertex ids. Only crossing edges ever get
    // referenced by the triangle table, so the non-crossing ones are skipped without changing the order.
    let key = |a: u32, b: u32| -> u64 { ((a.min(b) as u64) << 32) | a.max(b) as u64 };
    let occ = &occ;
    let mut crossing: Vec<u64> = valid
        .par_iter()
        .flat_map_iter(|&t| {
            let tet = grid.tets[t as usize];
            TET_EDGES.iter().filter_map(move |[i, j]| {
                let (a, b) = (tet[*i], tet[*j]);
                (occ[a as usize] != occ[b as usize]).then(|| key(a, b))
            })
        })
        .collect();
    crossing.par_sort_unstable();
    crossing.dedup();

    // 5. vertex positions at the zero crossing between the deformed endpoints.
    let deformed = |v: usize| -> [f32; 3] {
        let g = grid.vertices[v];
        let d = deformation[v];
        [g[0] + d[0].tanh() * inv_res, g[1] + d[1].tanh() * inv_res, g[2] + d[2].tanh() * inv_res]
    };
    let vertices_unit: Vec<[f32; 3]> = crossing
        .par_iter()
        .map(|&k| {
            let (a, b) = ((k >> 32) as usize, (k & 0xffff_ffff) as usize);
            let (sa, sb) = (sdf[a], sdf[b]);
            let den = sa - sb;
            let (wa, wb) = (-sb / den, sa / den);
            let (pa, pb) = (deformed(a), deformed(b));
            [pa[0] * wa + pb[0] * wb, pa[1] * wa + pb[1] * wb, pa[2] * wa + pb[2] * wb]
        })
        .collect();

    // 6. faces: one-triangle tets first, then two-triangle tets, each in tet order.
    let vid = |a: u32, b: u32| -> Result<u32> {
        crossing
            .binary_search(&key(a, b))
            .map(|i| i as u32)
            .map_err(|_| Error::Internal("triangle references a non-crossing edge".into()))
    };
    let emit = |t: u32| -> Result<([[u32; 3]; 2], usize)> {
        let tet = grid.tets[t as usize];
        let case = cases[t as usize] as usize;
        let row = TRIANGLE_TABLE[case];
        let mut out = [[0u32; 3]; 2];
        for (tri, f) in out.iter_mut().enumerate().take(NUM_TRIANGLES[case]) {
            for (c, slot) in f.iter_mut().enumerate() {
                let [i, j] = TET_EDGES[row[3 * tri + c] as usize];
                *slot = vid(tet[i], tet[j])?;
            }
        }
        Ok((out, NUM_TRIANGLES[case]))
    };
    let ones: Vec<u32> = valid.iter().copied().filter(|&t| NUM_TRIANGLES[cases[t as usize] as usize] == 1).collect();
    let twos: Vec<u32> = valid.iter().copied().filter(|&t| NUM_TRIANGLES[cases[t as usize] as usize] == 2).collect();
    let mut faces = Vec::with_capacity(ones.len() + 2 * twos.len());
    for part in [ones, twos] {
        let tris: Vec<([[u32; 3]; 2], usize)> = part.par_iter().map(|&t| emit(t)).collect::<Result<_>>()?;
        faces.extend(tris.iter().flat_map(|(f, k)| f[..*k].iter().copied()));
    }

    // 7. unit cube → world.
    let positions = vertices_unit.iter().map(|v| v.map(|x| x * (2.0 * radius) - radius)).collect();
    let edges = crossing.iter().map(|&k| [(k >> 32) as u32, (k & 0xffff_ffff) as u32]).collect();
    Ok(Isosurface { vertices_unit, mesh: TriMesh { positions, faces }, edges })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tet with only corner 0 inside (case 1): one triangle over edges e1, e0, e2 with the crossing at the
    /// midpoint of each edge when the sdf is symmetric (+1 / −1).
    #[test]
    fn single_tet_case_1_yields_one_inward_triangle() {
        let grid = TetGrid {
            vertices: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            tets: vec![[0, 1, 2, 3]],
        };
        let iso = marching_tetrahedra(&grid, &[1.0, -1.0, -1.0, -1.0], &[[0.0; 3]; 4], 1, 0.5).unwrap();
        // Unique crossing edges sorted: (0,1), (0,2), (0,3) → ids 0, 1, 2; table row (1,0,2) → (e1, e0, e2).
        assert_eq!(iso.mesh.faces, vec![[1, 0, 2]]);
        assert_eq!(iso.vertices_unit, vec![[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]]);
        // Normal (b−a)×(c−a) points toward the inside corner (the origin).
        let [a, b, c] = iso.mesh.faces[0].map(|i| iso.vertices_unit[i as usize]);
        let n = crate::mesh::cross(crate::mesh::sub(b, a), crate::mesh::sub(c, a));
        assert!(crate::mesh::dot(n, crate::mesh::sub([0.0; 3], a)) > 0.0);
        // World: [0, 1] → [-r, r].
        assert_eq!(iso.mesh.positions[0], [0.0, -0.5, -0.5]);
    }

    #[test]
    fn two_triangle_case_and_empty_surface() {
        let grid = TetGrid {
            vertices: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            tets: vec![[0, 1, 2, 3]],
        };
        let iso = marching_tetrahedra(&grid, &[1.0, 1.0, -1.0, -1.0], &[[0.0; 3]; 4], 1, 1.0).unwrap();
        assert_eq!(iso.mesh.faces.len(), 2);
        assert_eq!(iso.vertices_unit.len(), 4);
        for sdf in [[1.0f32; 4], [-1.0; 4]] {
            let e = marching_tetrahedra(&grid, &sdf, &[[0.0; 3]; 4], 1, 1.0).unwrap_err();
            assert!(matches!(e, Error::NoSurface(_)), "{e}");
        }
    }

    /// A sphere sdf on a generated grid gives a closed surface whose signed volume is negative (inward faces)
    /// and close to the sphere's volume.
    #[test]
    fn sphere_is_closed_and_inward() {
        let grid = TetGrid::freudenthal(24).unwrap();
        let sdf: Vec<f32> =
            grid.vertices.iter().map(|v| 0.3 - crate::mesh::length(crate::mesh::sub(*v, [0.5; 3]))).collect();
        let iso = marching_tetrahedra(&grid, &sdf, &vec![[0.0; 3]; sdf.len()], 24, 0.5).unwrap();
        let vol = iso.mesh.signed_volume();
        let sphere = 4.0 / 3.0 * std::f64::consts::PI * 0.3f64.powi(3);
        assert!(vol < 0.0 && (-vol - sphere).abs() / sphere < 0.05, "volume {vol} vs {sphere}");
        // Closed: every edge is shared by exactly two faces.
        let mut edges = std::collections::HashMap::new();
        for f in &iso.mesh.faces {
            for k in 0..3 {
                let (a, b) = (f[k], f[(k + 1) % 3]);
                *edges.entry((a.min(b), a.max(b))).or_insert(0) += 1;
            }
        }
        assert!(edges.values().all(|&c| c == 2));
    }
}
