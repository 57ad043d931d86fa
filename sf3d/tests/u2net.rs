//! U²-Net background removal against ONNX Runtime and rembg's steps in Pillow.
//!
//! `u2net/make_reference.py` builds U²-Net and U²-NetP with random weights as ONNX files laid out like
//! PyTorch's export (rembg's files are such exports), a photo-like image with a textured background, and runs
//! rembg's preprocessing, ONNX Runtime and rembg's cut-out on it. Here the same files and image go through
//! `sf3d::u2net`; every stage's error is printed. Tolerances: network input 1e-6, prediction (mask) 1e-4,
//! cut-out RGBA 1/255 (on at
//! most 1 % of the bytes: the 8-bit mask's truncation can turn a 1e-6 difference into a step).
//!
//! The script needs python3 with numpy, Pillow, onnx and onnxruntime (`cargo xtask test` installs them, pinned).
//! Without them these tests print why and pass, unless `SF3D_REQUIRE_ONNXRUNTIME=1` (set by `cargo xtask test`),
//! in which case they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use prost::Message;
use sf3d::preprocess::{BackgroundRemover, BgModel, U2NET_FILE, remove_background};
use sf3d::u2net::reference::make_reference;
use sf3d::u2net::{self, U2Net, Variant, onnx};

/// Largest difference allowed between our prediction and ONNX Runtime's.
const PRED_TOL: f32 = 1e-4;

/// Largest difference allowed in the normalised network input (both sides compute in f64, store f32).
const INPUT_TOL: f32 = 1e-6;

/// The reference directory, made once per test process; `None` (after printing why) when python3 or one of its
/// packages is missing and the reference is not required.
fn reference() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        // Overwritten by every run (the U²-Net file is 176 MB: one copy, in the build's scratch folder).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("u2net-reference");
        make_reference(&dir, &[])
    })
    .as_deref()
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn photo(dir: &Path) -> image::RgbaImage {
    image::open(dir.join("photo.png")).expect("photo.png").to_rgba8()
}

/// Max absolute and max relative (to the larger magnitude, floored at 1e-3) difference.
fn errors(ours: &[f32], theirs: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(theirs).fold((0f32, 0f32), |(a, r), (&x, &y)| {
        let d = (x - y).abs();
        (a.max(d), r.max(d / x.abs().max(y.abs()).max(1e-3)))
    })
}

/// Largest byte difference between two images of the same size, and how many bytes differ.
fn byte_diff(ours: &image::RgbaImage, theirs: &image::RgbaImage) -> (u8, usize) {
    assert_eq!(ours.dimensions(), theirs.dimensions());
    let d: Vec<u8> = ours.as_raw().iter().zip(theirs.as_raw()).map(|(&a, &b)| a.abs_diff(b)).collect();
    (d.iter().copied().max().unwrap_or(0), d.iter().filter(|&&x| x > 0).count())
}

#[test]
fn u2net_and_u2netp_match_onnx_runtime_and_rembg() {
    let Some(dir) = reference() else { return };
    let img = photo(dir);
    for (variant, file) in [(Variant::U2Net, "u2net"), (Variant::U2NetP, "u2netp")] {
        let net = U2Net::load(&dir.join(format!("{file}.onnx")), &Device::Cpu).expect("load");
        assert_eq!(net.variant(), variant);

        let want_input = read_f32(&dir.join(format!("{file}.input.f32")));
        let input = u2net::normalize(&img);
        let (in_abs, in_rel) = errors(&input, &want_input);

        let side = u2net::INPUT_SIDE as usize;
        let want_pred = read_f32(&dir.join(format!("{file}.pred.f32")));
        let pred = net.predict(&want_input, side, side).expect("predict");
        let (pred_abs, pred_rel) = errors(&pred, &want_pred);

        let want_cut = image::open(dir.join(format!("{file}.cutout.png"))).expect("cutout.png").to_rgba8();
        // rembg's steps after the network, fed ONNX Runtime's prediction: byte for byte.
        let mask = u2net::mask_from_prediction(&want_pred, u2net::INPUT_SIDE).expect("mask");
        let mask = sf3d::preprocess::pil_resize_lanczos_gray(&mask, img.width(), img.height());
        let (post_max, post_off) = byte_diff(&u2net::cutout(&img, &mask), &want_cut);
        // End to end with our prediction: the 8-bit truncation of the mask turns a 1e-6 difference into a whole
        // step where a value sits on a step's edge.
        let (cut_max, cut_off) = byte_diff(&net.remove_background(&img).expect("remove"), &want_cut);

        println!("{file}: input max abs {in_abs:.2e} rel {in_rel:.2e}");
        println!("{file}: prediction max abs {pred_abs:.2e} rel {pred_rel:.2e} (sampling {:?})", net.sampling());
        println!("{file}: cut-out from the reference prediction: max abs {post_max}/255, {post_off} bytes differ");
        println!("{file}: cut-out end to end: max abs {cut_max}/255, {cut_off} of {} bytes differ", want_cut.len());
        assert!(in_abs <= INPUT_TOL, "{file}: input differs by {in_abs}");
        assert!(pred_abs <= PRED_TOL, "{file}: prediction differs by {pred_abs}");
        assert!(post_max <= 1, "{file}: cut-out from the same prediction differs by {post_max}/255");
        assert!(
            cut_max <= 1 && cut_off * 100 <= want_cut.len(),
            "{file}: cut-out differs by {cut_max}/255 in {cut_off} bytes"
        );
    }
}

#[test]
fn auto_picks_the_learned_remover_when_the_file_is_there() {
    let Some(dir) = reference() else { return };
    // $U2NET_HOME holds rembg's file name; a home directory without ~/.u2net has none.
    let home = dir.join("home-without-u2net");
    std::fs::create_dir_all(&home).expect("mkdir");
    assert_eq!(BgModel::Auto.file(Some(dir), Some(&home)), Some(dir.join(U2NET_FILE)));
    assert_eq!(BgModel::Auto.file(None, Some(&home)), None, "no file: the built-in remover");

    let img = photo(dir);
    let learned =
        BackgroundRemover::U2Net(std::sync::Arc::new(U2Net::load(&dir.join(U2NET_FILE), &Device::Cpu).expect("load")));
    assert_eq!(learned.name(), "u2net");
    let cut = learned.remove(&img).expect("learned remover");
    let coverage = |im: &image::RgbaImage| im.pixels().filter(|p| p.0[3] > 127).count() as f64 / im.len() as f64 * 4.0;
    // The built-in remover assumes a plain backdrop; on this textured one it may find nothing or too much, but it
    // runs and answers (an image or NoForeground), never panics.
    let builtin = remove_background(&img);
    println!(
        "opaque coverage: learned {:.3}, built-in {}",
        coverage(&cut),
        builtin.as_ref().map_or_else(|e| format!("error: {e}"), |b| format!("{:.3}", coverage(b)))
    );
    assert!(cut.pixels().any(|p| p.0[3] > 0));
}

#[test]
fn broken_and_foreign_files_are_clear_errors_naming_the_file() {
    let Some(dir) = reference() else { return };
    let good = std::fs::read(dir.join("u2netp.onnx")).expect("u2netp.onnx");
    let bad_dir = dir.join("bad");
    std::fs::create_dir_all(&bad_dir).expect("mkdir");

    // A file cut short, a file of garbage.
    let mut cases = vec![
        ("truncated.onnx", good[..good.len() / 2].to_vec(), "not an ONNX model"),
        ("garbage.onnx", b"\x08\x96\x01 definitely not a model \xff\xff\xff".to_vec(), "not an ONNX model"),
    ];
    // A graph of the wrong shape: one convolution with other output channels.
    let mut model = onnx::ModelProto::decode(good.as_slice()).expect("decode");
    let graph = model.graph.as_mut().expect("graph");
    let conv = graph.node.iter().filter(|n| n.op_type == "Conv").nth(3).expect("4th conv").clone();
    let w = graph.initializer.iter_mut().find(|t| t.name == conv.input[1]).expect("weight");
    w.dims[0] += 1;
    w.raw_data.extend(vec![0u8; w.raw_data.len() / (w.dims[0] as usize - 1)]);
    cases.push(("wrong-shape.onnx", model.encode_to_vec(), "is not U²-Net or U²-NetP"));
    // A graph that is something else entirely (no convolutions).
    let mut other = onnx::ModelProto::decode(good.as_slice()).expect("decode");
    if let Some(g) = other.graph.as_mut() {
        g.node.retain(|n| n.op_type != "Conv");
    }
    cases.push(("not-u2net.onnx", other.encode_to_vec(), "sigmoid of its last convolution"));

    for (name, bytes, expect) in cases {
        let path = bad_dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = U2Net::load(&path, &Device::Cpu).expect_err(name).to_string();
        println!("{name}: {err}");
        assert!(err.contains(&path.display().to_string()), "{name}: the error names the file: {err}");
        assert!(err.contains(expect), "{name}: {err}");
    }
    let missing = U2Net::load(&bad_dir.join("absent.onnx"), &Device::Cpu).expect_err("absent").to_string();
    assert!(missing.contains("absent.onnx"), "{missing}");
}
