//! Step 5 of the unwrap (docs/engine.md §6.6): placing the layers in the fixed atlas, and reading a face's layer
//! back out of an atlas.
//!
//! The atlas is a fixed layout: layers 0–5 (the primary charts) in the lower two thirds as 3×2 cells of ⅓,
//! layers 6–11 (second layers, renormalised) in the upper-left block as 3×2 cells of ⅙, and layer 12 (the
//! catch-all) in the upper-right block, one grid cell per triangle. Island padding is applied inside every cell.

use super::{DIRECTIONS, LAST_LAYER, UnwrappedMesh, tri_bounds};

/// Layers 6…11 are magnified at most 2× (range floor 0.5) when renormalised (§6.6).
const SECOND_LAYER_MIN_RANGE: f64 = 0.5;
/// Cell of direction `i` in its 3×2 grid (`xi`, `yi`).
const CELL_X: [f64; DIRECTIONS] = [0.0, 1.0, 2.0, 0.0, 1.0, 2.0];
const CELL_Y: [f64; DIRECTIONS] = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0];

/// Moves chart UVs into the atlas (§6.6).
pub(super) fn place_in_atlas(uv: &mut [[[f64; 2]; 3]], layers: &[u8], pad: f64) {
    // Layers 6…11: per layer, per axis renormalisation with a floor of 0.5 on the range.
    for layer in DIRECTIONS as u8..LAST_LAYER {
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for (t, &l) in uv.iter().zip(layers) {
            if l == layer {
                for p in t {
                    for k in 0..2 {
                        lo[k] = lo[k].min(p[k]);
                        hi[k] = hi[k].max(p[k]);
                    }
                }
            }
        }
        if lo[0] > hi[0] {
            continue;
        }
        let range: [f64; 2] = std::array::from_fn(|k| (hi[k] - lo[k]).max(SECOND_LAYER_MIN_RANGE));
        for (t, &l) in uv.iter_mut().zip(layers) {
            if l == layer {
                for p in t.iter_mut() {
                    *p = std::array::from_fn(|k| (p[k] - lo[k]) / range[k]);
                }
            }
        }
    }
    // Every face: island padding.
    for t in uv.iter_mut() {
        for p in t.iter_mut() {
            *p = p.map(|x| (x * (1.0 - 2.0 * pad) + pad).clamp(0.0, 1.0));
        }
    }
    // Layer 12: one cell per triangle in a W×H grid.
    let n = layers.iter().filter(|&&l| l == LAST_LAYER).count();
    if n > 0 {
        // torch computes `n / (1/6)` as a float32 tensor before math.sqrt.
        let ratio = 0.5 * (1.0 / 3.0);
        let mult = f64::from(n as f32 / ratio as f32).sqrt();
        let w = (0.5 * mult).ceil().max(1.0) as usize;
        let h = (n as f32 / w as f32).ceil() as usize;
        let (cw, ch) = (1.0 / w as f64, 1.0 / h as f64);
        let floor = cw.min(ch) * 1.5;
        let (wf, hf) = (w as f64, h as f64);
        let mut j = 0usize;
        for (t, &l) in uv.iter_mut().zip(layers) {
            if l != LAST_LAYER {
                continue;
            }
            let (lo, hi) = tri_bounds(t);
            let offset = [(j % w) as f64 * cw, (j / w) as f64 * ch];
            for p in t.iter_mut() {
                let mut u = (p[0] - lo[0]) / (hi[0] - lo[0]).max(floor);
                let mut v = (p[1] - lo[1]) / (hi[1] - lo[1]).max(floor);
                u = (u * (1.0 - pad * wf * 0.5) + pad * wf * 0.25).clamp(0.0, 1.0);
                v = (v * (1.0 - pad * hf * 0.5) + pad * hf * 0.25).clamp(0.0, 1.0);
                u = u * cw + offset[0];
                v = v * ch + offset[1];
                u = (u * (1.0 - 2.0 * pad * 0.5) + pad * 0.5).clamp(0.0, 1.0);
                v = (v * (1.0 - 2.0 * pad * 0.5) + pad * 0.5).clamp(0.0, 1.0);
                *p = [u, v];
            }
            j += 1;
        }
    }
    // Final affine map into the layer's region.
    for (t, &l) in uv.iter_mut().zip(layers) {
        let i = usize::from(l) % DIRECTIONS;
        let (off, div) = match l {
            0..=5 => ([CELL_X[i] / 3.0, CELL_Y[i] / 3.0], [3.0, 3.0]),
            6..=11 => ([CELL_X[i] / 6.0, 2.0 / 3.0 + CELL_Y[i] / 6.0], [6.0, 6.0]),
            _ => ([0.5, 2.0 / 3.0], [2.0, 3.0]),
        };
        for p in t.iter_mut() {
            *p = [p[0] / div[0] + off[0], p[1] / div[1] + off[1]];
        }
    }
}

/// The atlas layer (0…12) a triangle's UVs lie in, read back from the layout `place_in_atlas` makes: layers
/// 0–5 in the lower two thirds (3×2 cells of ⅓), 6–11 in the upper-left block (3×2 cells of ⅙), 12 the
/// upper-right block. Used to read the reference's layering out of its UVs.
pub fn atlas_layer_of(corners: &[[f32; 2]; 3]) -> u8 {
    let u = corners.iter().map(|c| f64::from(c[0])).sum::<f64>() / 3.0;
    let v = corners.iter().map(|c| f64::from(c[1])).sum::<f64>() / 3.0;
    let cell = |x: f64, n: f64, max: u8| ((x * n).floor().max(0.0) as u8).min(max);
    if v < 2.0 / 3.0 {
        cell(u, 3.0, 2) + 3 * cell(v, 3.0, 1)
    } else if u < 0.5 {
        DIRECTIONS as u8 + cell(u, 6.0, 2) + 3 * cell(v - 2.0 / 3.0, 6.0, 1)
    } else {
        LAST_LAYER
    }
}

/// How an unwrap agrees with a reference atlas of the same faces (the reference's UVs, three per face).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReferenceAgreement {
    /// Faces the reference put in layers 0–11, whose layer names their cube direction (`layer mod 6`).
    pub directed_faces: usize,
    /// Of those, faces we projected along the same direction.
    pub same_direction: usize,
    /// All faces.
    pub faces: usize,
    /// Faces in the same atlas layer as the reference's.
    pub same_layer: usize,
}

impl ReferenceAgreement {
    /// `same_direction / directed_faces` (1 when there is nothing to compare).
    pub fn direction_fraction(&self) -> f64 {
        if self.directed_faces == 0 { 1.0 } else { self.same_direction as f64 / self.directed_faces as f64 }
    }

    /// `same_layer / faces` (1 when there is nothing to compare).
    pub fn layer_fraction(&self) -> f64 {
        if self.faces == 0 { 1.0 } else { self.same_layer as f64 / self.faces as f64 }
    }
}

/// Compares `ours` with the reference's per-corner UVs `reference_uvs` (`3F`, same face order). Faces beyond the
/// shorter of the two are ignored.
pub fn reference_agreement(ours: &UnwrappedMesh, reference_uvs: &[[f32; 2]]) -> ReferenceAgreement {
    let mut a = ReferenceAgreement::default();
    for ((corners, &layer), &direction) in
        reference_uvs.chunks_exact(3).zip(&ours.face_layers).zip(&ours.face_directions)
    {
        let reference = atlas_layer_of(&[corners[0], corners[1], corners[2]]);
        a.faces += 1;
        a.same_layer += usize::from(reference == layer);
        if reference < LAST_LAYER {
            a.directed_faces += 1;
            a.same_direction += usize::from(reference % DIRECTIONS as u8 == direction);
        }
    }
    a
}
