//! Benchmarks of the network's CPU hot spots at the release size (random weights): one backbone main block
//! (`TwoStreamBlock`: fuse-in, three basic blocks, fuse-out on 27,648 triplane tokens and 3,089 latents), the
//! post-processor's convolution stack, and the fused attention at the two fuse-block shapes, each in f32 and with
//! the bf16 products of `--dtype bf16` (`…_bf16`; on a CPU without AVX-512 BF16 those round their operands and
//! multiply in f32). Throughput is reported in FLOP (multiply-adds count two), so the figures read as GFLOP/s.

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput};
use sf3d::config::ModelConfig;
use sf3d::kernels::attention::{AttentionDims, attention, attention_bf16};
use sf3d::model::attention::AttentionOptions;
use sf3d::model::backbone::TwoStreamBlock;
use sf3d::model::linear::with_bf16_products;
use sf3d::model::post_processor::PixelShuffleUpsampleNetwork;
use sf3d::weights::WeightSource;

fn randn(shape: &[usize]) -> Tensor {
    match Tensor::randn(0f32, 1.0, shape, &Device::Cpu) {
        Ok(t) => t,
        Err(e) => panic!("randn: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let release = ModelConfig::release();
    let cfg = &release.sf3d;
    let vb = WeightSource::random(7).into_var_builder(DType::F32, &Device::Cpu);
    let mut group = c.benchmark_group("network");
    group.sample_size(10);

    // Fused attention: latents reading the triplane (fuse-in) and the triplane reading the latents (fuse-out).
    let (bb, plane) = (&cfg.backbone, cfg.tokenizer.plane_size);
    let grid = cfg.cond_image_size / release.dinov2.patch_size;
    let img = 1 + grid * grid; // DINOv2 tokens: class token + patches
    let (tri, lat) = (3 * plane * plane, bb.num_latents + img);
    let width = bb.inner_dim();
    for (name, nq, nk) in [("attention_fuse_in", lat, tri), ("attention_fuse_out", tri, lat)] {
        let dims = AttentionDims {
            batch: 1,
            queries: nq,
            keys: nk,
            heads: bb.num_attention_heads,
            head_dim: bb.attention_head_dim,
        };
        let q: Vec<f32> = (0..nq * width).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
        let k: Vec<f32> = (0..nk * width).map(|i| ((i * 104_729) % 1000) as f32 * 1e-3 - 0.5).collect();
        group.throughput(Throughput::Elements((4 * nq * nk * width) as u64));
        group.bench_function(name, |b| b.iter(|| attention(&q, &k, &k, dims, 0.125)));
        group.bench_function(format!("{name}_bf16"), |b| b.iter(|| attention_bf16(&q, &k, &k, dims, 0.125)));
    }

    // One main block of the backbone.
    let build_block = || match TwoStreamBlock::new(bb, vb.pp("backbone").pp("main_blocks").pp(0)) {
        Ok(b) => b,
        Err(e) => panic!("block: {e}"),
    };
    let (latent, triplane, image) =
        (randn(&[1, lat, width]), randn(&[1, tri, bb.triplane_channels]), randn(&[1, img, bb.raw_image_channels]));
    let opts = AttentionOptions::default();
    let opts_bf16 = AttentionOptions { bf16_products: true, ..opts };
    let ff = |n: usize, d: usize| 2 * n * d * 12 * d; // GEGLU feed-forward: d → 8d, 4d → d
    let attn = |nq: usize, nk: usize, dq: usize, dk: usize| {
        2 * (2 * nq * dq * width + 2 * nk * dk * width) + 4 * nq * nk * width
    };
    let flop = attn(lat, tri, width, bb.triplane_channels)
        + ff(lat, width)
        + bb.num_basic_blocks
            * (attn(lat, lat, width, width) + attn(lat, img, width, bb.cross_attention_dim) + ff(lat, width))
        + attn(tri, lat, bb.triplane_channels, width)
        + ff(tri, bb.triplane_channels);
    group.throughput(Throughput::Elements(flop as u64));
    for (name, block, opts) in [
        ("backbone_main_block", build_block(), opts),
        ("backbone_main_block_bf16", with_bf16_products(build_block), opts_bf16),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| match block.forward(&latent, &triplane, &image, &opts) {
                Ok(out) => out,
                Err(e) => panic!("forward: {e}"),
            })
        });
    }

    // The post-processor's 3×3 convolutions + PixelShuffle on the three planes.
    let pp = &cfg.post_processor;
    let build_net = || match PixelShuffleUpsampleNetwork::new(pp, vb.pp("post_processor")) {
        Ok(n) => n,
        Err(e) => panic!("post-processor: {e}"),
    };
    let planes = randn(&[1, 3, pp.in_channels, plane, plane]);
    let k2 = pp.conv_kernel_size * pp.conv_kernel_size;
    let r2 = pp.scale_factor * pp.scale_factor;
    let per_plane =
        2 * plane * plane * k2 * pp.in_channels * ((pp.conv_layers - 1) * pp.in_channels + pp.out_channels * r2);
    group.throughput(Throughput::Elements((3 * per_plane) as u64));
    for (name, net) in
        [("post_processor_convs", build_net()), ("post_processor_convs_bf16", with_bf16_products(build_net))]
    {
        group.bench_function(name, |b| {
            b.iter(|| match net.forward(&planes) {
                Ok(out) => out,
                Err(e) => panic!("forward: {e}"),
            })
        });
    }
    group.finish();
}

criterion::criterion_group!(benches, bench);
