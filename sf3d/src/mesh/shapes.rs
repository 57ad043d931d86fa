//! Closed test surfaces shared by the crate's tests, its integration tests and its benchmarks (one definition,
//! so a benchmark measures the mesh the tests check). Not part of the engine's API.

use std::f32::consts::PI;

use super::TriMesh;
use crate::error::Result;

/// A rippled ellipsoid (semi-axes 1.3, 1, 0.8) with `2·segments·(rings − 1)` outward faces; the ripple folds the
/// cube charts of the UV unwrapper so its overlap layers are exercised, as on real marching-tetrahedra output.
pub fn bumpy_ellipsoid(rings: u32, segments: u32) -> Result<TriMesh> {
    let mut positions = vec![[0.0, 0.0, 0.8]];
    for r in 1..rings {
        let theta = PI * r as f32 / rings as f32;
        for s in 0..segments {
            let phi = 2.0 * PI * s as f32 / segments as f32;
            let rad = 1.0 + 0.15 * (5.0 * phi).sin() * (4.0 * theta).sin();
            positions.push([
                1.3 * rad * theta.sin() * phi.cos(),
                rad * theta.sin() * phi.sin(),
                0.8 * rad * theta.cos(),
            ]);
        }
    }
    positions.push([0.0, 0.0, -0.8]);
    let south = positions.len() as u32 - 1;
    let ring = |r: u32, s: u32| 1 + (r - 1) * segments + s % segments;
    let mut faces = Vec::new();
    for s in 0..segments {
        faces.push([0, ring(1, s), ring(1, s + 1)]);
        faces.push([south, ring(rings - 1, s + 1), ring(rings - 1, s)]);
        for r in 1..rings - 1 {
            faces.push([ring(r, s), ring(r + 1, s), ring(r + 1, s + 1)]);
            faces.push([ring(r, s), ring(r + 1, s + 1), ring(r, s + 1)]);
        }
    }
    TriMesh::new(positions, faces)
}

/// A torus around z with radii `big` and `small`, `nu × nv` quads split in two, outward faces (χ = 0). `wobble`
/// modulates the tube radius (`small · (1 + wobble · sin 5u · cos 3v)`) so the surface is not one of revolution.
pub fn torus(big: f32, small: f32, nu: u32, nv: u32, wobble: f32) -> TriMesh {
    let mut positions = Vec::with_capacity((nu * nv) as usize);
    for i in 0..nu {
        for j in 0..nv {
            let (u, v) = (2.0 * PI * i as f32 / nu as f32, 2.0 * PI * j as f32 / nv as f32);
            let r = small * (1.0 + wobble * (5.0 * u).sin() * (3.0 * v).cos());
            positions.push([(big + r * v.cos()) * u.cos(), (big + r * v.cos()) * u.sin(), r * v.sin()]);
        }
    }
    let id = |i: u32, j: u32| (i % nu) * nv + (j % nv);
    let mut faces = Vec::with_capacity((2 * nu * nv) as usize);
    for i in 0..nu {
        for j in 0..nv {
            let (a, b, c, d) = (id(i, j), id(i + 1, j), id(i + 1, j + 1), id(i, j + 1));
            faces.push([a, b, c]);
            faces.push([a, c, d]);
        }
    }
    TriMesh { positions, faces }
}
