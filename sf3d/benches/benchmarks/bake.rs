//! Benchmarks of `sf3d::mesh::bake`: rasterise + interpolate + dilate at 1024² for a ~20k-face unwrapped mesh
//! (the bake must not be the slow stage), and the dithered quantisation.

use criterion::{Criterion, Throughput};
use sf3d::NoProgress;
use sf3d::mesh::bake::{self, DILATION_DIVISOR, DitherMask};

use super::uv_unwrap::unwrapped_ellipsoid;

/// The UI's default texture resolution.
pub const RES: u32 = 1024;

fn bench(c: &mut Criterion) {
    // 2 · 144 · (70 − 1) = 19 872 faces.
    let unwrapped = unwrapped_ellipsoid(70, 144);
    let mut group = c.benchmark_group("bake");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(RES * RES)));
    group.bench_function("rasterize_interpolate_dilate_1024_20k_faces", |b| {
        b.iter(|| {
            let rast = bake::rasterize(&unwrapped.uvs, &unwrapped.faces, RES);
            let pos = bake::interpolate(&unwrapped.positions, &unwrapped.faces, &rast);
            bake::dilate_fill(&pos, &rast.mask(), RES, RES / DILATION_DIVISOR)
        });
    });
    let rast = bake::rasterize(&unwrapped.uvs, &unwrapped.faces, RES);
    group.bench_function("rasterize_1024", |b| b.iter(|| bake::rasterize(&unwrapped.uvs, &unwrapped.faces, RES)));
    let pos = bake::interpolate(&unwrapped.positions, &unwrapped.faces, &rast);
    let mask = rast.mask();
    group.bench_function("dilate_fill_1024_6_iterations", |b| {
        b.iter(|| bake::dilate_fill(&pos, &mask, RES, RES / DILATION_DIVISOR));
    });
    group.bench_function("to_u8_dither_1024", |b| b.iter(|| bake::to_u8(&pos, DitherMask::All, 1)));
    // The full bake with a trivial decoder (albedo = position, flat perturbation): everything but the network.
    let mut decoder = |p: &[[f32; 3]]| -> sf3d::Result<bake::DecodedTexels> {
        Ok((p.to_vec(), p.iter().map(|_| [0.0, 0.0, 1.0]).collect()))
    };
    group.bench_function("bake_1024_20k_faces", |b| {
        b.iter(|| bake::bake(&unwrapped, RES, &mut decoder, 1, &mut NoProgress));
    });
    group.finish();
}

criterion::criterion_group!(benches, bench);
