//! Benchmarks of `sf3d::mesh::uv_unwrap`: the whole unwrap of a ~100k-face closed surface (target ≤ 150 ms on the
//! 2-core dev box).

use criterion::{Criterion, Throughput};
use sf3d::NoProgress;
use sf3d::mesh::uv_unwrap::{ISLAND_PADDING, UnwrappedMesh, unwrap_uv};
use sf3d::mesh::{TriMesh, shapes};

/// The rippled ellipsoid of `sf3d::mesh::shapes` (`2·segments·(rings − 1)` faces).
pub fn bumpy_ellipsoid(rings: u32, segments: u32) -> TriMesh {
    match shapes::bumpy_ellipsoid(rings, segments) {
        Ok(m) => m,
        Err(e) => panic!("bench mesh: {e}"),
    }
}

/// [`bumpy_ellipsoid`] unwrapped: the input of the bake and export benches.
pub fn unwrapped_ellipsoid(rings: u32, segments: u32) -> UnwrappedMesh {
    let mesh = bumpy_ellipsoid(rings, segments);
    match unwrap_uv(&mesh, &mesh.vertex_normals(), ISLAND_PADDING, &mut NoProgress) {
        Ok(u) => u,
        Err(e) => panic!("unwrap: {e}"),
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
