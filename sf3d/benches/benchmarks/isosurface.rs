//! Benchmarks of `sf3d::mesh::tets` and `sf3d::mesh::isosurface` at the release's size: generating the
//! Freudenthal grid for isosurface resolution 160 (80³ cells: 531k vertices, 3.07M tets) and marching tetrahedra
//! on it over a synthetic field (a rippled blob, so the surface has the release's typical ~10⁵ triangles).

use criterion::{Criterion, Throughput};
use sf3d::mesh::isosurface::marching_tetrahedra;
use sf3d::mesh::tets::TetGrid;

/// Cells per axis of the generated grid for the release's resolution 160.
const CELLS: usize = 80;
/// The release's isosurface resolution (deformation scale 1/160).
const RESOLUTION: usize = 160;

/// A rippled blob: sdf > 0 inside, in density units around the iso-level.
fn field(grid: &TetGrid) -> (Vec<f32>, Vec<[f32; 3]>) {
    let sdf = grid
        .vertices
        .iter()
        .map(|v| {
            let (x, y, z) = (v[0] - 0.5, v[1] - 0.5, v[2] - 0.5);
            let r = (x * x + 1.4 * y * y + z * z).sqrt();
            let ripple = 0.03 * (9.0 * x).sin() * (7.0 * y).cos() * (8.0 * z).sin();
            40.0 * (0.32 + ripple - r)
        })
        .collect();
    let def = grid.vertices.iter().map(|v| [0.3 * (v[1] * 10.0).sin(), 0.0, -0.2]).collect();
    (sdf, def)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("isosurface");
    g.sample_size(10);
    g.bench_function("freudenthal_grid_160", |b| b.iter(|| TetGrid::freudenthal(CELLS)));
    let grid = match TetGrid::freudenthal(CELLS) {
        Ok(g) => g,
        Err(e) => panic!("grid: {e}"),
    };
    let (sdf, def) = field(&grid);
    g.throughput(Throughput::Elements(grid.tets.len() as u64));
    g.bench_function("marching_tetrahedra_160", |b| {
        b.iter(|| marching_tetrahedra(&grid, &sdf, &def, RESOLUTION, 0.87))
    });
    g.finish();
}

criterion::criterion_group!(benches, bench);
