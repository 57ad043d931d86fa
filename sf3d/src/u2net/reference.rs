//! Test support: rembg-layout U²-Net files with random weights and ONNX Runtime's outputs, made by
//! `sf3d/tests/u2net/make_reference.py` (python3 with numpy, Pillow, onnx and onnxruntime).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1` (as `cargo xtask test` does) to make a missing python3 or package a test failure, not a skip.
pub const REQUIRE_ENV: &str = "SF3D_REQUIRE_ONNXRUNTIME";

/// Writes the reference files of `variants` (`u2net`, `u2netp`; both when empty) into `dir`. Returns `None`,
/// after printing why, when python3 or one of its packages is missing and [`REQUIRE_ENV`] is not `1`.
///
/// # Panics
/// When the script fails and [`REQUIRE_ENV`] is `1`.
pub fn make_reference(dir: &Path, variants: &[&str]) -> Option<PathBuf> {
    let script = crate::golden::crate_dir().join("tests/u2net/make_reference.py");
    let out = Command::new("python3").arg(&script).arg(dir).args(variants).output();
    let why = match out {
        Ok(o) if o.status.success() => {
            println!("{}", String::from_utf8_lossy(&o.stdout).trim());
            return Some(dir.to_path_buf());
        }
        Ok(o) => format!("{} failed: {}", script.display(), String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("python3 cannot be started: {e}"),
    };
    assert!(std::env::var(REQUIRE_ENV).as_deref() != Ok("1"), "{why} ({REQUIRE_ENV}=1)");
    println!("SKIPPED: {why} (python3 with numpy, Pillow, onnx and onnxruntime makes the reference)");
    None
}
