//! SF3D's box-projection UV unwrapper (docs/engine.md §6.1–6.7; reference `uv_unwrapper/unwrap.py` and
//! `uv_unwrapper/csrc/{unwrapper,bvh,intersect}.cpp` of Stability-AI/stable-fast-3d). Section numbers refer to
//! docs/engine.md.
//!
//! Every face is projected onto one of the six faces of a cube aligned with the mesh's principal axes, the six
//! charts are rotated into a consistent orientation, faces that overlap another face of their chart are moved to
//! a second (and third) layer, and the layers are packed into a fixed atlas. [`unwrap_uv_with`] runs the steps in
//! this order, one file each:
//!
//! | step | what | file |
//! |---|---|---|
//! | 1 | principal axes and the alignment rotation, [`alignment_rotation`] (§6.2) | `pca.rs` |
//! | 2 | cube-direction assignment and planar projection (§6.3) | `project.rs` |
//! | 3 | per-chart rotation from mean tangents (§6.4) | `rotate.rs` |
//! | 4 | overlap detection and layering (§6.5) | `overlap.rs` |
//! | 5 | atlas placement (§6.6); [`atlas_layer_of`] reads a layer back out of an atlas | `atlas.rs` |
//! | 6 | the per-corner split and the statistics (§6.7) | this file |
//!
//! `tests.rs` holds the tests of the steps and of the whole unwrap; `pca.rs` keeps its own.
//!
//! Deliberate deviations and reproduced quirks:
//! * **Principal axes** (`pca.rs`). The reference calls `torch.pca_lowrank(P, q = 2)` (seed 0, `niter = 2`): a
//!   randomized subspace iteration that does *not* converge to the eigenvectors when the 2nd and 3rd singular
//!   values are close (on golden `tiny-a` the reference's second axis is ~30° away from the true one).
//!   [`PcaAxes::ReferenceLowRank`] (the default) runs that computation in f64 as torch and LAPACK do it, signs
//!   included; [`PcaAxes::Exact`] uses the true eigenvectors of the covariance.
//! * **Expected tangent normalisation.** The reference normalises the "expected" tangent with
//!   `F.normalize(x, -1)`, where `-1` lands in the *norm order* parameter: vectors are divided by their
//!   p = −1 "norm" `1/Σ 1/|xᵢ|` (eps 1e-12), which weights the chart's mean tangent heavily towards vertices with a
//!   near-zero component. We reproduce it ([`expected_tangent_weighting`]); it makes the chart angle sensitive to
//!   float rounding, the main reason UVs of faces in the same layer differ from the reference's by up to 5e-4
//!   (median over all corners 2e-5) rather than 1e-5.
//! * **Overlap layering differs from the reference in ~3 % of faces.** On golden `tiny-a` the reference moves
//!   2190 faces in pass 1 (478 on to layer 12), we move 1909 (276); 97.2 % of faces get the reference's layer. Our
//!   layering is unchanged when we substitute the chart angles the golden atlas implies, so the cause is the
//!   overlap predicate, not the UVs: the reference flags some pairs whose exact intersection area is ~0 (e.g.
//!   neighbours sharing an edge), presumably through its float32 Guigue–Devillers test + clip; not reproduced.
//! * Degenerate inputs the reference turns into NaN (a flat bounding-box axis, a chart of zero extent) are guarded
//!   with [`MIN_EXTENT`] instead.

mod atlas;
mod overlap;
mod pca;
mod project;
mod rotate;

#[cfg(test)]
mod tests;

pub use atlas::{ReferenceAgreement, atlas_layer_of, reference_agreement};
pub use overlap::triangles_overlap;
pub use pca::{PcaAxes, alignment_rotation, torch_pca_lowrank_axes};
use rayon::prelude::*;
pub use rotate::expected_tangent_weighting;

use super::{TriMesh, dot64, vertex_normals, vertex_tangents};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Island padding the reference passes to the unwrapper (`island_padding = 0.02`).
pub const ISLAND_PADDING: f32 = 0.02;
/// Number of atlas layers: 6 primary cube charts, 6 half-size second layers, 1 catch-all block.
pub const LAYER_COUNT: usize = 13;
/// The catch-all layer index.
const LAST_LAYER: u8 = 12;
/// Number of cube directions (`+x, −x, +y, −y, +z, −z`).
const DIRECTIONS: usize = 6;
/// `eps` of the reference's `F.normalize` calls on axes and face normals.
const NORMALIZE_EPS_AXIS: f64 = 1e-6;
/// One-sided clamp of the UV determinant in the reference's tangent formula (§5.5); the export's tangents use it
/// too.
pub(crate) const TANGENT_DEN_MIN: f64 = 1e-6;
/// Guard for extents the reference divides by (zero there gives NaN).
pub const MIN_EXTENT: f64 = 1e-12;

/// Options of [`unwrap_uv_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnwrapOptions {
    /// Island padding in chart units (reference 0.02); must lie in `[0, 0.25)`.
    pub island_padding: f32,
    /// Principal-axis method.
    pub axes: PcaAxes,
}

impl Default for UnwrapOptions {
    fn default() -> Self {
        Self { island_padding: ISLAND_PADDING, axes: PcaAxes::default() }
    }
}

/// Summary of an unwrap.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UnwrapStats {
    /// Number of faces per atlas layer (0…5 primary charts, 6…11 second layers, 12 catch-all).
    pub layer_histogram: [u32; LAYER_COUNT],
    /// Covered UV area (sum of the UV triangle areas; the triangles do not overlap) over the unit square.
    pub utilisation: f32,
}

/// The split, unwrapped mesh (§6.7): three vertices per face, in face order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnwrappedMesh {
    /// Original (un-rotated) positions, one per face corner (`3F`).
    pub positions: Vec<[f32; 3]>,
    /// `[[0, 1, 2], [3, 4, 5], …]`.
    pub faces: Vec<[u32; 3]>,
    /// Atlas UVs in `[0, 1]²`, one per face corner.
    pub uvs: Vec<[f32; 2]>,
    /// §5.5 normals of the split mesh (= flat face normals; `(0, 0, 1)` for degenerate faces).
    pub normals: Vec<[f32; 3]>,
    /// §5.5 tangents of the split mesh (= per-face tangent orthogonalised against the face normal).
    pub tangents: Vec<[f32; 3]>,
    /// Atlas layer (0…12) of every face.
    pub face_layers: Vec<u8>,
    /// Cube direction (0…5: `+x, −x, +y, −y, +z, −z` in the aligned frame) every face was projected along.
    pub face_directions: Vec<u8>,
    /// Layer histogram and utilisation.
    pub stats: UnwrapStats,
}

/// Unwraps `mesh` with the reference's settings and the given island padding. See [`unwrap_uv_with`].
pub fn unwrap_uv(
    mesh: &TriMesh,
    vertex_normals: &[[f32; 3]],
    island_padding: f32,
    progress: &mut dyn Progress,
) -> Result<UnwrappedMesh> {
    unwrap_uv_with(mesh, vertex_normals, &UnwrapOptions { island_padding, ..UnwrapOptions::default() }, progress)
}

/// Unwraps `mesh` into SF3D's box-projection atlas.
///
/// Preconditions: `vertex_normals` has one (unit) normal per vertex — the §5.5 area-weighted normals in the
/// pipeline; indices are in range (guaranteed by [`TriMesh::new`]); `options.island_padding ∈ [0, 0.25)`.
/// Guarantees: every UV lies in `[0, 1]`; triangles of one layer do not overlap by an area ≥ 1e-10 in their chart
/// (the catch-all layer gives every triangle its own cell), so the atlas has no overlaps; the output has `3F`
/// vertices. A mesh without faces gives an empty result. Reports 6 progress steps and stops with
/// [`Error::Cancelled`] when `progress` says so.
pub fn unwrap_uv_with(
    mesh: &TriMesh,
    vertex_normals_in: &[[f32; 3]],
    options: &UnwrapOptions,
    progress: &mut dyn Progress,
) -> Result<UnwrappedMesh> {
    const STEPS: u64 = 6;
    if vertex_normals_in.len() != mesh.positions.len() {
        return Err(Error::InvalidMesh(format!(
            "{} vertex normals for {} vertices",
            vertex_normals_in.len(),
            mesh.positions.len()
        )));
    }
    if !(0.0..0.25).contains(&options.island_padding) {
        return Err(Error::InvalidMesh(format!("island padding {} outside [0, 0.25)", options.island_padding)));
    }
    if let Some(i) = mesh.faces.iter().flatten().find(|&&i| i as usize >= mesh.positions.len()) {
        return Err(Error::InvalidMesh(format!("face index {i} past {} vertices", mesh.positions.len())));
    }
    if mesh.faces.is_empty() {
        return Ok(UnwrappedMesh::default());
    }
    if mesh.positions.iter().flatten().any(|x| !x.is_finite()) {
        return Err(Error::InvalidMesh("non-finite vertex position".into()));
    }
    progress.report(0, STEPS)?;

    // 1. PCA alignment (UV computation only).
    let rot = alignment_rotation(&mesh.positions, options.axes)?;
    let positions: Vec<[f64; 3]> = mesh.positions.par_iter().map(|p| mat_vec(&rot, p.map(f64::from))).collect();
    let normals: Vec<[f64; 3]> = vertex_normals_in.par_iter().map(|n| mat_vec(&rot, n.map(f64::from))).collect();
    progress.report(1, STEPS)?;

    // 2. Cube-direction assignment and projection.
    let (mut uv, direction) = project::box_project(&positions, &normals, &mesh.faces);
    progress.report(2, STEPS)?;

    // 3. Consistent rotation of each direction's chart.
    rotate::rotate_charts(&positions, &normals, &mesh.faces, &mut uv, &direction);
    progress.report(3, STEPS)?;

    // 4. Overlap detection and layering.
    let layers = overlap::assign_layers(&positions, &mesh.faces, &uv, &direction);
    progress.report(4, STEPS)?;

    // 5. Atlas placement.
    atlas::place_in_atlas(&mut uv, &layers, f64::from(options.island_padding));
    progress.report(5, STEPS)?;

    // 6. Split every face into its own three vertices.
    let out = split(mesh, &uv, layers, direction);
    progress.report(STEPS, STEPS)?;
    Ok(out)
}

// ---- step 6: split ---------------------------------------------------------------------------------------------

/// The output of the unwrap (§6.7): every face gets its own three vertices (positions, UVs), with the normals and
/// tangents of that split mesh, the per-face layers and directions, and the statistics.
fn split(mesh: &TriMesh, uv: &[[[f64; 2]; 3]], face_layers: Vec<u8>, face_directions: Vec<u8>) -> UnwrappedMesh {
    let positions: Vec<[f32; 3]> = mesh.faces.iter().flat_map(|t| t.map(|i| mesh.positions[i as usize])).collect();
    let faces: Vec<[u32; 3]> = (0..mesh.faces.len() as u32).map(|f| [3 * f, 3 * f + 1, 3 * f + 2]).collect();
    let uvs: Vec<[f32; 2]> = uv.iter().flat_map(|t| t.map(|p| p.map(|x| x as f32))).collect();
    let normals = vertex_normals(&positions, &faces);
    let tangents = vertex_tangents(&positions, &uvs, &faces, &normals);

    let mut layer_histogram = [0u32; LAYER_COUNT];
    for &l in &face_layers {
        layer_histogram[usize::from(l)] += 1;
    }
    let utilisation = uv.iter().map(|t| orient(t[0], t[1], t[2]).abs() / 2.0).sum::<f64>() as f32;
    UnwrappedMesh {
        positions,
        faces,
        uvs,
        normals,
        tangents,
        face_layers,
        face_directions,
        stats: UnwrapStats { layer_histogram, utilisation },
    }
}

// ---- f64 helpers (the reference computes the unwrap in float64) ---------------------------------------------

/// `m · v`.
fn mat_vec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
}

/// `a / max(‖a‖, eps)` (PyTorch's `F.normalize`).
fn normalize64(a: [f64; 3], eps: f64) -> [f64; 3] {
    let l = dot64(a, a).sqrt().max(eps);
    a.map(|x| x / l)
}

/// Component-wise `(min, max)` of a UV triangle's corners.
fn tri_bounds(t: &[[f64; 2]; 3]) -> ([f64; 2], [f64; 2]) {
    (
        [t[0][0].min(t[1][0]).min(t[2][0]), t[0][1].min(t[1][1]).min(t[2][1])],
        [t[0][0].max(t[1][0]).max(t[2][0]), t[0][1].max(t[1][1]).max(t[2][1])],
    )
}

/// `(b − a) × (c − a)`: positive when `a, b, c` turn counter-clockwise.
fn orient(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1])
}
