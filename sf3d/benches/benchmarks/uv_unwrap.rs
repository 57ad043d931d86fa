//! Benchmarks of `sf3d::mesh::uv_unwrap`.

use criterion::Criterion;

fn bench(_c: &mut Criterion) {}

criterion::criterion_group!(benches, bench);
