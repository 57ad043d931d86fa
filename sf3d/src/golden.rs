//! Golden parity sets: a folder holding a (tiny) SF3D in the official format plus the reference
//! implementation's output for every stage (`golden.safetensors`, described by the folder's README).
//!
//! [`GoldenSet`] reads the tensors; [`compare`] measures one stage against them. The stage runner that uses
//! both lives in [`crate::parity`] and backs `sf3d check-golden DIR` and the parity tests.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Environment variable naming the golden folder.
pub const GOLDEN_ENV: &str = "SF3D_GOLDEN";

/// A dense array read from a golden file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<T>,
}

impl<T: Copy> Array<T> {
    /// Rows of a 2-D array `[n, K]` as fixed-size arrays.
    pub fn rows<const K: usize>(&self) -> Result<Vec<[T; K]>> {
        if self.shape.last() != Some(&K) {
            return Err(Error::Internal(format!("array of shape {:?} is not [n, {K}]", self.shape)));
        }
        Ok(self.data.chunks_exact(K).map(|c| std::array::from_fn(|i| c[i])).collect())
    }
}

#[derive(Debug, Clone)]
struct Entry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// One golden folder.
#[derive(Debug)]
pub struct GoldenSet {
    dir: PathBuf,
    bytes: Vec<u8>,
    entries: HashMap<String, Entry>,
}

/// This crate's folder in the workspace the running test or command belongs to. Read at run time first (cargo
/// sets `CARGO_MANIFEST_DIR` to the package being tested or run, this crate or a sibling of it): builds are shared
/// between checkouts through one target dir, so a path baked in at compile time may name another checkout.
pub fn crate_dir() -> PathBuf {
    let baked = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let name = baked.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|package| package.parent().map(|workspace| workspace.join(&name)))
        .filter(|dir| dir.is_dir())
        .unwrap_or(baked)
}

impl GoldenSet {
    /// The folder named by `SF3D_GOLDEN`, else `../shared/golden/tiny-a` next to the workspace.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os(GOLDEN_ENV) {
            return PathBuf::from(dir);
        }
        Self::shared_dir("tiny-a")
    }

    /// The set `name` (`tiny-a`, `tiny-c`) in `../shared/golden` next to the workspace, whatever `SF3D_GOLDEN`
    /// says: for tests whose expectations are one set's own sizes and shapes.
    pub fn shared_dir(name: &str) -> PathBuf {
        // `<workspace>/sf3d` → the shared folder beside the workspace.
        crate_dir().join("..").join("..").join("shared").join("golden").join(name)
    }

    /// Opens `dir/golden.safetensors`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join("golden.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::bad_file(&path, format!("not a safetensors file: {e}")))?;
        let base = 8 + header_len;
        let mut entries = HashMap::new();
        for (name, info) in meta.tensors() {
            let (start, end) = info.data_offsets;
            entries.insert(
                name.clone(),
                Entry { dtype: info.dtype, shape: info.shape.clone(), start: base + start, end: base + end },
            );
        }
        Ok(Self { dir, bytes, entries })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the folder (`config.yaml`, `model.safetensors`, `input.png`, …).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `max |f64 − f32|` of tensor `name` in the reference's float64 re-run of the set (`run_info.json`,
    /// `f64_check.NAME.max_abs`), when the set records it.
    pub fn f64_gap(&self, name: &str) -> Option<f64> {
        let text = std::fs::read_to_string(self.file("run_info.json")).ok()?;
        let info: serde_json::Value = serde_json::from_str(&text).ok()?;
        info.get("f64_check")?.get(name)?.get("max_abs")?.as_f64().filter(|g| g.is_finite() && *g >= 0.0)
    }

    /// Whether the set has tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.keys().cloned().collect();
        v.sort();
        v
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| Error::bad_file(self.dir.join("golden.safetensors"), format!("no tensor {name:?}")))
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.entry(name)?.shape.clone())
    }

    /// A float32 tensor.
    pub fn f32(&self, name: &str) -> Result<Array<f32>> {
        let e = self.entry(name)?;
        if e.dtype != safetensors::Dtype::F32 {
            return Err(Error::bad_file(self.file("golden.safetensors"), format!("{name} is {:?}, not F32", e.dtype)));
        }
        let data =
            self.bytes[e.start..e.end].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(Array { shape: e.shape.clone(), data })
    }

    /// An int32 tensor.
    pub fn i32(&self, name: &str) -> Result<Array<i32>> {
        let e = self.entry(name)?;
        if e.dtype != safetensors::Dtype::I32 {
            return Err(Error::bad_file(self.file("golden.safetensors"), format!("{name} is {:?}, not I32", e.dtype)));
        }
        let data =
            self.bytes[e.start..e.end].chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(Array { shape: e.shape.clone(), data })
    }

    /// A float32 tensor as a candle tensor.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let a = self.f32(name)?;
        Ok(Tensor::from_vec(a.data, a.shape, device)?)
    }
}

/// How close a stage must be to the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// `|a − e| ≤ tol` everywhere.
    Abs(f32),
    /// `|a − e| ≤ tol · max(1, |e|)`: absolute below 1, relative above (exponential outputs such as density).
    AbsOrRel(f32),
    /// Integer data that must be identical.
    Exact,
    /// A bound per element derived from the reference's own float32-vs-float64 spread (see
    /// [`compare_bounded`]); the value is the largest of them.
    Derived(f32),
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::Abs(t) => write!(f, "abs {t:.0e}"),
            Tolerance::AbsOrRel(t) => write!(f, "abs/rel {t:.0e}"),
            Tolerance::Exact => f.write_str("exact"),
            Tolerance::Derived(t) => write!(f, "derived {t:.1e}"),
        }
    }
}

/// The outcome of comparing one tensor with the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Golden tensor name.
    pub name: String,
    /// Largest `|a − e|`.
    pub max_abs: f64,
    /// Largest `|a − e| / |e|` over elements with `|e| > 1e-6`.
    pub max_rel: f64,
    /// The tolerance applied.
    pub tolerance: Tolerance,
    /// Whether every element is within tolerance (and shapes agree).
    pub pass: bool,
    /// Extra information (shape mismatch, mismatching element count, …).
    pub note: String,
}

impl Comparison {
    /// A failed comparison that could not be measured (missing tensor, wrong shape, stage error).
    pub fn failed(name: &str, tolerance: Tolerance, note: impl Into<String>) -> Self {
        Self { name: name.into(), max_abs: f64::NAN, max_rel: f64::NAN, tolerance, pass: false, note: note.into() }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<40} {:>11.3e} {:>11.3e} {:>12} {}",
            self.name,
            self.max_abs,
            self.max_rel,
            self.tolerance.to_string(),
            if self.pass { "pass" } else { "FAIL" }
        )?;
        if !self.note.is_empty() {
            write!(f, "  {}", self.note)?;
        }
        Ok(())
    }
}

/// Compares `actual` with `expected` (same length, row-major).
pub fn compare(name: &str, actual: &[f32], expected: &[f32], tolerance: Tolerance) -> Comparison {
    if actual.len() != expected.len() {
        return Comparison::failed(
            name,
            tolerance,
            format!("{} elements, reference has {}", actual.len(), expected.len()),
        );
    }
    let (mut max_abs, mut max_rel, mut pass) = (0f64, 0f64, true);
    for (&a, &e) in actual.iter().zip(expected) {
        let (a, e) = (a as f64, e as f64);
        let d = (a - e).abs();
        if !d.is_finite() {
            if !(a.is_nan() && e.is_nan()) && a != e {
                max_abs = f64::INFINITY;
                pass = false;
            }
            continue;
        }
        max_abs = max_abs.max(d);
        if e.abs() > 1e-6 {
            max_rel = max_rel.max(d / e.abs());
        }
        let ok = match tolerance {
            Tolerance::Abs(t) => d <= t as f64,
            Tolerance::AbsOrRel(t) => d <= t as f64 * e.abs().max(1.0),
            Tolerance::Exact => d == 0.0,
            Tolerance::Derived(t) => d <= t as f64,
        };
        pass &= ok;
    }
    Comparison { name: name.into(), max_abs, max_rel, tolerance, pass, note: String::new() }
}

/// Compares `actual` with `expected` in groups of `stride` elements (one vertex), each group against its own bound
/// `bounds[i]`; the row shows the largest bound as a [`Tolerance::Derived`].
pub fn compare_bounded(name: &str, actual: &[f32], expected: &[f32], bounds: &[f32], stride: usize) -> Comparison {
    let largest = bounds.iter().copied().fold(0f32, f32::max);
    let mut c = compare(name, actual, expected, Tolerance::Derived(largest));
    if actual.len() != expected.len() || bounds.len() * stride != expected.len() {
        c.pass = false;
        c.note =
            format!("{} elements, reference {}, {} bounds of {stride}", actual.len(), expected.len(), bounds.len());
        return c;
    }
    c.pass &= actual
        .chunks_exact(stride)
        .zip(expected.chunks_exact(stride))
        .zip(bounds)
        .all(|((a, e), &b)| a.iter().zip(e).all(|(x, y)| f64::from((x - y).abs()) <= f64::from(b)));
    c
}

/// Compares a candle tensor with golden tensor `name` (shapes must match up to leading singleton axes).
pub fn compare_tensor(set: &GoldenSet, name: &str, actual: &Tensor, tolerance: Tolerance) -> Comparison {
    let expected = match set.f32(name) {
        Ok(e) => e,
        Err(e) => return Comparison::failed(name, tolerance, e.to_string()),
    };
    let squeeze = |s: &[usize]| s.iter().copied().skip_while(|&d| d == 1).collect::<Vec<_>>();
    if squeeze(actual.dims()) != squeeze(&expected.shape) {
        return Comparison::failed(
            name,
            tolerance,
            format!("shape {:?}, reference {:?}", actual.dims(), expected.shape),
        );
    }
    let data =
        match actual.to_dtype(candle_core::DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()) {
            Ok(d) => d,
            Err(e) => return Comparison::failed(name, tolerance, e.to_string()),
        };
    compare(name, &data, &expected.data, tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_abs_and_rel() {
        let c = compare("x", &[1.0, 2.0, 100.5], &[1.0, 2.0, 100.0], Tolerance::AbsOrRel(1e-2));
        assert!(c.pass, "{c}");
        assert!((c.max_abs - 0.5).abs() < 1e-9);
        let c = compare("x", &[1.0, 2.0, 100.5], &[1.0, 2.0, 100.0], Tolerance::Abs(1e-2));
        assert!(!c.pass);
        let c = compare("x", &[1.0], &[1.0, 2.0], Tolerance::Abs(1.0));
        assert!(!c.pass && c.note.contains("elements"));
        let c = compare("x", &[f32::NAN], &[1.0], Tolerance::Abs(1.0));
        assert!(!c.pass);
    }

    #[test]
    fn golden_set_reads_tensors() {
        let dir = GoldenSet::default_dir();
        let set = GoldenSet::open(&dir).unwrap();
        let faces = set.i32("mt_t_pos_idx").unwrap();
        assert_eq!(faces.shape.len(), 2);
        assert_eq!(faces.shape[1], 3);
        let rgb = set.f32("rgb_cond").unwrap();
        assert_eq!(rgb.data.len(), rgb.shape.iter().product::<usize>());
        assert!(set.i32("rgb_cond").is_err());
        assert!(set.f32("nope").is_err());
    }
}
