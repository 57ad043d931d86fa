//! Key coverage and checkpoint robustness: every tensor the network needs is in the golden checkpoint, the
//! unused ones are only CLIP's text tower, and damaged or re-encoded checkpoints fail (or load) as documented.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sf3d::Error;
use sf3d::golden::GoldenSet;
use sf3d::model::Sf3dNetwork;

fn golden_dir() -> PathBuf {
    GoldenSet::default_dir()
}

/// A scratch copy of the golden model folder whose `model.safetensors` is `tensors`.
fn scratch_model(name: &str, tensors: &HashMap<String, Tensor>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sf3d-keys-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("dinov2")).unwrap();
    for f in ["config.yaml", "open_clip_config.json", "dinov2/config.json"] {
        std::fs::copy(golden_dir().join(f), dir.join(f)).unwrap();
    }
    candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
    dir
}

fn golden_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(golden_dir().join("model.safetensors"), &Device::Cpu).unwrap()
}

fn image_tokens(dir: &Path) -> Vec<f32> {
    let (net, _) = Sf3dNetwork::load(dir, &Device::Cpu, DType::F32).unwrap();
    let set = GoldenSet::open(golden_dir()).unwrap();
    let rgb = set.tensor("rgb_cond", &Device::Cpu).unwrap();
    let d = rgb.dims().to_vec();
    let rgb = rgb.reshape((d[0] * d[1], d[2], d[3], d[4])).unwrap();
    net.encode_image(&rgb, None).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn every_needed_tensor_is_present_and_only_the_text_tower_is_unused() {
    let (_, report) = Sf3dNetwork::load(&golden_dir(), &Device::Cpu, DType::F32).unwrap();
    println!(
        "checkpoint: {} tensors ({:?}), network reads {}, unused {}:",
        report.checkpoint_tensors,
        report.checkpoint_dtypes,
        report.used.len(),
        report.unused.len()
    );
    for k in &report.unused {
        println!("  unused: {k}");
    }
    assert!(report.used.len() > 100);
    let text_tower =
        |k: &str| k.starts_with("image_estimator.model.") && !k.starts_with("image_estimator.model.visual.");
    let unexpected: Vec<&String> = report.unused.iter().filter(|k| !text_tower(k)).collect();
    assert!(unexpected.is_empty(), "checkpoint tensors nobody reads: {unexpected:?}");
    assert!(report.unused.iter().any(|k| k == "image_estimator.model.logit_scale"));
}

#[test]
fn missing_tensor_fails_at_load_time_naming_the_key() {
    let mut t = golden_tensors();
    t.remove("backbone.main_blocks.0.fuse_block_out.attn.wk.weight");
    let dir = scratch_model("missing", &t);
    let err = Sf3dNetwork::load(&dir, &Device::Cpu, DType::F32).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { key } if key == "backbone.main_blocks.0.fuse_block_out.attn.wk.weight"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn wrong_shape_fails_naming_the_key_and_both_shapes() {
    const KEY: &str = "decoder.heads.density.0.weight";
    let mut t = golden_tensors();
    // The set's own shape, one input column short (tiny-a: [16, 48] → [16, 47]).
    let expected = t[KEY].dims().to_vec();
    let actual = vec![expected[0], expected[1] - 1];
    t.insert(KEY.into(), Tensor::zeros(actual.as_slice(), DType::F32, &Device::Cpu).unwrap());
    let dir = scratch_model("shape", &t);
    let err = Sf3dNetwork::load(&dir, &Device::Cpu, DType::F32).unwrap_err();
    match &err {
        Error::ShapeMismatch { key, expected: e, actual: a } => {
            assert_eq!(key, KEY);
            assert_eq!((e, a), (&expected, &actual));
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("{expected:?}")) && msg.contains(&format!("{actual:?}")), "{msg}");
    std::fs::remove_dir_all(dir).ok();
}

/// The AdaLN modulation weights may be stored under the flat `image_tokenizer.modulations.{2l + slot}` names
/// (docs/engine.md §3.0); the network must load them there and compute the same tokens.
#[test]
fn modulation_weights_load_from_their_alias() {
    let renamed: HashMap<String, Tensor> =
        golden_tensors().into_iter().map(|(k, v)| (sf3d::weights::modulation_alias(&k).unwrap_or(k), v)).collect();
    assert!(renamed.keys().any(|k| k.starts_with("image_tokenizer.modulations.")));
    let dir = scratch_model("alias", &renamed);
    let (_, report) = Sf3dNetwork::load(&dir, &Device::Cpu, DType::F32).unwrap();
    assert!(report.unused.iter().all(|k| !k.starts_with("image_tokenizer.")), "{:?}", report.unused);
    assert_eq!(image_tokens(&dir), image_tokens(&golden_dir()));
    std::fs::remove_dir_all(dir).ok();
}

/// f16 and bf16 checkpoints load into an f32 network; the tokens move by the storage rounding only.
#[test]
fn half_precision_checkpoints_load() {
    let reference = image_tokens(&golden_dir());
    for (dtype, tol) in [(DType::F16, 0.05f32), (DType::BF16, 0.3)] {
        let t: HashMap<String, Tensor> =
            golden_tensors().into_iter().map(|(k, v)| (k, v.to_dtype(dtype).unwrap())).collect();
        let dir = scratch_model(&format!("{dtype:?}"), &t);
        let (_, report) = Sf3dNetwork::load(&dir, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(report.checkpoint_dtypes.len(), 1);
        let got = image_tokens(&dir);
        let max = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{dtype:?} checkpoint: image tokens max abs diff {max:.3e}");
        assert!(max > 0.0 && max < tol, "{dtype:?}: {max}");
        std::fs::remove_dir_all(dir).ok();
    }
}

/// `--dtype bf16` on the CPU: bf16 products in the linear layers, f32 activations; the image tokens move by bf16
/// rounding only.
#[test]
fn bf16_products_on_the_cpu_stay_near_f32() {
    let (net, _) = Sf3dNetwork::load(&golden_dir(), &Device::Cpu, DType::BF16).unwrap();
    assert_eq!(net.dtype(), DType::F32, "activations stay f32");
    let set = GoldenSet::open(golden_dir()).unwrap();
    let rgb = set.tensor("rgb_cond", &Device::Cpu).unwrap();
    let d = rgb.dims().to_vec();
    let rgb = rgb.reshape((d[0] * d[1], d[2], d[3], d[4])).unwrap();
    let got: Vec<f32> = net.encode_image(&rgb, None).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let reference = image_tokens(&golden_dir());
    let max = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = reference.iter().map(|v| v.abs()).fold(0f32, f32::max);
    println!("bf16 products: image tokens max abs diff {max:.3e} (largest token {scale:.3})");
    assert!(max > 0.0 && max < 0.02 * scale, "{max} of {scale}");
}

#[test]
fn bbox_buffer_must_match_the_radius() {
    let mut t = golden_tensors();
    t.insert("bbox".into(), Tensor::new(&[[-1f32, -1., -1.], [1., 1., 1.]], &Device::Cpu).unwrap());
    let dir = scratch_model("bbox", &t);
    let err = Sf3dNetwork::load(&dir, &Device::Cpu, DType::F32).unwrap_err();
    assert!(err.to_string().contains("bbox"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn random_weights_build_any_config_deterministically() {
    let cfg = sf3d::config::ModelConfig::from_dir(golden_dir()).unwrap();
    let a = Sf3dNetwork::random(cfg.clone(), 42, &Device::Cpu, DType::F32).unwrap();
    let b = Sf3dNetwork::random(cfg, 42, &Device::Cpu, DType::F32).unwrap();
    let ta = a.tokenizer().forward(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let tb = b.tokenizer().forward(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(ta, tb);
    assert!(ta.iter().any(|&x| x != 0.0));
}
