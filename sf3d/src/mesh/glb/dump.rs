//! Test support: writing the GLBs a test run produces where the Khronos glTF-Validator will check them
//! (`node scripts/validate-glb.mjs $SF3D_GLB_DIR`, which `cargo xtask test` runs). The integration tests of
//! `sf3d`, `sf3d-backend` and `sf3d-e2e` call it, so it is public (hidden from the docs); no production code does.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming the directory where [`dump_for_validation`] writes GLBs.
const GLB_DIR_ENV: &str = "SF3D_GLB_DIR";

/// Writes `bytes` as `name` (made a plain file name ending in `.glb`) into the directory named by
/// `SF3D_GLB_DIR` when that variable is set and not empty, so that the Khronos validator can check every GLB the
/// test suite produced (`node scripts/validate-glb.mjs $SF3D_GLB_DIR`). Does nothing otherwise.
///
/// # Panics
///
/// When the variable is set but the file cannot be written: a validation run that silently misses files would
/// pass without checking them. Use [`dump_to_dir`] to handle the error instead.
pub fn dump_for_validation(name: &str, bytes: &[u8]) {
    let Some(dir) = std::env::var_os(GLB_DIR_ENV).filter(|d| !d.is_empty()) else {
        return;
    };
    if let Err(e) = dump_to_dir(Path::new(&dir), name, bytes) {
        panic!("{GLB_DIR_ENV} is set but the GLB cannot be dumped: {e}");
    }
}

/// Writes `bytes` to `dir/name` (creating `dir`), where `name` is reduced to a plain file name — characters other
/// than ASCII letters, digits, `-`, `_` and `.` become `_` — with `.glb` appended unless present. Returns the path.
pub fn dump_to_dir(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let mut file: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if !file.to_ascii_lowercase().ends_with(".glb") {
        file.push_str(".glb");
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(file);
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
