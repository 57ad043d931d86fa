//! Benchmarks of `sf3d::mesh::uv_unwrap`: the whole unwrap of a ~100k-face closed surface (target ≤ 150 ms on the
//! 2-core dev box).

use criterion::{Criterion, Throughput};
use sf3d::NoProgress;
use sf3d::mesh::TriMesh;
use sf3d::mesh::uv_unwrap::{ISLAND_PADDING, unwrap_uv};

/// A rippled ellipsoid with `2·segments·(rings − 1)` faces; the ripple folds the cube charts so the overlap layers
/// are exercised, as on real marching-tetrahedra output.
pub fn bumpy_ellipsoid(rings: u32, segments: u32) -> TriMesh {
    let mut positions = vec![[0.0, 0.0, 0.8]];
    for r in 1..rings {
        let theta = std::f32::consts::PI * r as f32 / rings as f32;
        for s in 0..segments {
            let phi = 2.0 * std::f32::consts::PI * s as f32 / segments as f32;
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
    match TriMesh::new(positions, faces) {
        Ok(m) => m,
        Err(e) => panic!("bench mesh: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    // 2 · 320 · (157 − 1) = 99 840 faces.
    let mesh = bumpy_ellipsoid(157, 320);
    let normals = mesh.vertex_normals();
    let mut group = c.benchmark_group("uv_unwrap");
    group.sample_size(10);
    group.throughput(Throughput::Elements(mesh.face_count() as u64));
    group.bench_function("unwrap_100k_faces", |b| {
        b.iter(|| unwrap_uv(&mesh, &normals, ISLAND_PADDING, &mut NoProgress));
    });
    group.finish();
}

criterion::criterion_group!(benches, bench);
