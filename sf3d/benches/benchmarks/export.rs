//! Benchmarks of the export stage at the size of a full-size run's mesh (~132k faces, ~400k split corners): the
//! weld, rotation and normals of `prepare_export`, one 1024² JPEG texture, and writing the GLB.

use criterion::{Criterion, Throughput};
use sf3d::mesh::bake::{JPEG_QUALITY, encode_jpeg};
use sf3d::mesh::glb::{GlbInfo, GlbMaterial, prepare_export, write_glb};

use super::bake::RES;
use super::uv_unwrap::unwrapped_ellipsoid;

fn bench(c: &mut Criterion) {
    // 2 · 288 · (231 − 1) = 132 480 faces.
    let unwrapped = unwrapped_ellipsoid(231, 288);
    let mut group = c.benchmark_group("export");
    group.sample_size(20);
    group.throughput(Throughput::Elements(unwrapped.faces.len() as u64));
    group.bench_function("prepare_export_132k_faces", |b| {
        b.iter(|| prepare_export(&unwrapped.positions, &unwrapped.faces, &unwrapped.uvs));
    });
    // A texture with the structure of a baked one: smooth charts, sharp seams, a little noise.
    let texture = image::RgbImage::from_fn(RES, RES, |x, y| {
        let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 29;
        image::Rgb([(x / 4) as u8 ^ ((y / 64) as u8 * 40), (y / 4) as u8 + noise as u8, ((x + y) / 8) as u8])
    });
    group.throughput(Throughput::Elements(u64::from(RES * RES)));
    group.bench_function("encode_jpeg_1024", |b| b.iter(|| encode_jpeg(&texture, JPEG_QUALITY)));
    let export = match prepare_export(&unwrapped.positions, &unwrapped.faces, &unwrapped.uvs) {
        Ok(e) => e,
        Err(e) => panic!("prepare_export: {e}"),
    };
    let jpeg = match encode_jpeg(&texture, JPEG_QUALITY) {
        Ok(j) => j,
        Err(e) => panic!("encode_jpeg: {e}"),
    };
    let material = GlbMaterial { albedo_jpeg: jpeg.clone(), normal_jpeg: jpeg, roughness: 0.5, metallic: 0.0 };
    group.throughput(Throughput::Elements(export.faces.len() as u64));
    group.bench_function("write_glb_132k_faces", |b| b.iter(|| write_glb(&export, &material, &GlbInfo::default())));
    group.finish();
}

criterion::criterion_group!(benches, bench);
