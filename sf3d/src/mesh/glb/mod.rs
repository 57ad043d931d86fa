//! GLB export (docs/engine.md §7, and §6.7): the split, unwrapped mesh becomes a binary glTF 2.0 file in two calls.
//!
//! 1. [`prepare_export`] reproduces the reference's export geometry as trimesh 4.4.1 computes it: vertex welding,
//!    the SF3D → glTF rotation, face inversion, angle-weighted normals and glTF UVs, giving an [`ExportMesh`].
//! 2. [`write_glb`] writes that mesh, its [`tangents`] and a [`GlbMaterial`] as GLB, with the provenance in
//!    [`GlbInfo`].
//!
//! Files: `geometry.rs` (step 1 and [`tangents`], with the derivation of the tangent frame), `writer.rs` (step 2,
//! with what the file contains and how it differs from the reference's), `dump.rs` (test support: writing GLBs for
//! the Khronos glTF-Validator), `tests.rs`.

mod dump;
mod geometry;
mod writer;

#[cfg(test)]
mod tests;

#[doc(hidden)]
pub use dump::{dump_for_validation, dump_to_dir};
pub use geometry::{
    TANGENT_DIRECTION, TANGENT_HANDEDNESS, WELD_POSITION_SCALE, WELD_UV_SCALE, prepare_export, sf3d_to_gltf, tangents,
};
pub use writer::{ATTRIBUTION_KEY, write_glb};

use crate::error::{Error, Result};

/// Name of this project in `asset.generator`.
pub const GENERATOR_NAME: &str = "sf3d-studio";

/// The welded, transformed mesh ready for glTF.
///
/// Guarantees when built by [`prepare_export`]: the four buffers describe the same vertices
/// (`positions.len() == normals.len() == uvs.len()`), every face index is in range, positions are in the glTF
/// frame (+Y up), faces are counter-clockwise seen from outside, normals have unit length, and UVs use the glTF
/// convention (origin at the top-left of the image, `v_gltf = 1 − v`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportMesh {
    /// Vertex positions, glTF frame.
    pub positions: Vec<[f32; 3]>,
    /// Unit vertex normals (angle-weighted, of the inverted mesh).
    pub normals: Vec<[f32; 3]>,
    /// Texture coordinates, glTF convention (v down).
    pub uvs: Vec<[f32; 2]>,
    /// Triangles (counter-clockwise from outside).
    pub faces: Vec<[u32; 3]>,
}

/// The material of the exported object.
#[derive(Debug, Clone, PartialEq)]
pub struct GlbMaterial {
    /// Base-colour texture, an encoded JPEG (RGB).
    pub albedo_jpeg: Vec<u8>,
    /// Tangent-space normal map, an encoded JPEG (RGB), baked as in §6.9.
    pub normal_jpeg: Vec<u8>,
    /// `roughnessFactor`, in `[0, 1]`.
    pub roughness: f32,
    /// `metallicFactor`, in `[0, 1]`.
    pub metallic: f32,
}

/// Provenance written into the file.
#[derive(Debug, Clone, PartialEq)]
pub struct GlbInfo {
    /// `asset.generator`, e.g. `"sf3d-studio 0.1.0"` (see [`GlbInfo::default`]).
    pub generator: String,
    /// Attribution text (e.g. [`sf3d_shared::STABILITY_ATTRIBUTION`]); written to `asset.extras.attribution` and
    /// the material's `extras.attribution` when present.
    pub attribution: Option<String>,
    /// Further application data for `asset.extras`: a JSON object (or `null` for none). Its keys are written as
    /// given; an `attribution` key is overwritten by [`GlbInfo::attribution`] when that is set.
    pub extras: serde_json::Value,
}

impl Default for GlbInfo {
    /// Generator `"sf3d-studio <version>"`, no attribution, no extras.
    fn default() -> Self {
        Self {
            generator: format!("{GENERATOR_NAME} {}", sf3d_shared::SOFTWARE_VERSION),
            attribution: None,
            extras: serde_json::Value::Null,
        }
    }
}

/// Checks that every index of `faces` is below `vertex_count` and that the count fits glTF's u32 indices.
fn check_indexed(vertex_count: usize, faces: &[[u32; 3]]) -> Result<()> {
    if u32::try_from(vertex_count).is_err() {
        return Err(Error::InvalidMesh(format!("{vertex_count} vertices do not fit u32 indices")));
    }
    if let Some((f, t)) = faces.iter().enumerate().find(|(_, t)| t.iter().any(|&i| i as usize >= vertex_count)) {
        return Err(Error::InvalidMesh(format!("face {f} {t:?} indexes past {vertex_count} vertices")));
    }
    Ok(())
}
