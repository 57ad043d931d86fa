//! Benchmarks of `sf3d::mesh::remesh`: every mode on a ≈100k-face torus (the size of a marching-tetrahedra mesh
//! at SF3D's default grid), faces reversed to the marching-tets convention (inward).
//!
//! Run with `cargo bench -p sf3d -- remesh`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use sf3d::NoProgress;
use sf3d::mesh::TriMesh;
use sf3d::mesh::remesh::remesh;
use sf3d::mesh::shapes;
use sf3d_shared::RemeshOption;

/// Segments around the torus' axis and around its tube: 2 · 320 · 160 = 102 400 faces, 51 200 vertices.
const AROUND: u32 = 320;
const TUBE: u32 = 160;
/// A few wobbles so the surface is not a surface of revolution (the quad field has something to align to).
const WOBBLE: f32 = 0.05;
/// Samples per benchmark and seconds to collect them in: each run takes up to a second on 2 cores.
const SAMPLES: usize = 10;
const MEASUREMENT_SECS: u64 = 10;

/// The benchmark mesh: a wobbly torus with radii 1 and 0.35, faces reversed to face inward like the
/// marching-tetrahedra mesh.
fn torus() -> TriMesh {
    let mut mesh = shapes::torus(1.0, 0.35, AROUND, TUBE, WOBBLE);
    for [_, b, c] in &mut mesh.faces {
        std::mem::swap(b, c);
    }
    mesh
}

fn bench(c: &mut Criterion) {
    let mesh = torus();
    let mut group = c.benchmark_group("remesh_100k_faces");
    group.sample_size(SAMPLES).measurement_time(Duration::from_secs(MEASUREMENT_SECS));
    let cases: [(&str, RemeshOption, Option<u32>); 6] = [
        ("none_5000", RemeshOption::None, Some(5000)),
        ("triangle_mean_edge", RemeshOption::Triangle, None),
        ("triangle_5000", RemeshOption::Triangle, Some(5000)),
        ("triangle_20000", RemeshOption::Triangle, Some(20000)),
        ("quad_v_over_4", RemeshOption::Quad, None),
        ("quad_20000", RemeshOption::Quad, Some(20000)),
    ];
    for (name, option, count) in cases {
        group.bench_with_input(BenchmarkId::from_parameter(name), &mesh, |b, m| {
            b.iter(|| remesh(black_box(m), option, count, &mut NoProgress).map(|out| out.face_count()))
        });
    }
    group.finish();
}

criterion::criterion_group!(benches, bench);
