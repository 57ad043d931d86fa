//! Criterion benchmarks of the engine, one module per stage (`cargo bench -p sf3d`).
//! Speed and memory targets live here (and in `sf3d bench`), never in timed tests.

mod benchmarks;

criterion::criterion_main! {
    benchmarks::isosurface::benches,
    benchmarks::network::benches,
    benchmarks::remesh::benches,
    benchmarks::uv_unwrap::benches,
    benchmarks::bake::benches,
    benchmarks::export::benches,
}
