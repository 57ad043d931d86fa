//! Step 4 of the unwrap (docs/engine.md §6.5): overlap detection and layering.
//!
//! Within each chart, every pair of faces whose UV triangles overlap is found; of the two, the face farther along
//! the chart's direction moves 6 layers up. Two passes (primary charts, then second layers) leave the faces that
//! still overlap in the catch-all layer 12.
//!
//! * Candidate pairs come from a uniform grid per chart ([`ChartGrid`]) where the reference uses a BVH: any
//!   conservative index gives the same pairs.
//! * The overlap test ([`triangles_overlap`]) is a Sutherland–Hodgman clip with the reference's orientation
//!   epsilon and its `area ≥ 1e-10` rule.

use rayon::prelude::*;

use super::{DIRECTIONS, LAST_LAYER, MIN_EXTENT, orient, tri_bounds};
use crate::mesh::add64;

/// Orientation epsilon of the reference's 2-D predicates (`EPSILON` in `common.h`).
const ORIENT_EPS: f64 = 1e-7;
/// Intersection polygons smaller than this do not count as overlap (§6.5).
const MIN_OVERLAP_AREA: f64 = 1e-10;
/// Clip vertices closer than this are merged (the reference's duplicate-point rule).
const DUPLICATE_POINT_DIST: f64 = 1e-6;
/// Largest uniform-grid side used by the overlap search.
const MAX_GRID: usize = 1024;

/// Atlas layer (0…12) of every face (§6.5): faces overlapping another face of their chart move 6 layers up, twice.
pub(super) fn assign_layers(
    positions: &[[f64; 3]],
    faces: &[[u32; 3]],
    uv: &[[[f64; 2]; 3]],
    direction: &[u8],
) -> Vec<u8> {
    let centroids: Vec<[f64; 3]> = faces
        .par_iter()
        .map(|t| {
            let s = t.iter().fold([0.0; 3], |acc, &i| add64(acc, positions[i as usize]));
            s.map(|x| x / 3.0)
        })
        .collect();
    let mut layers = direction.to_vec();
    for first_layer in [0u8, DIRECTIONS as u8] {
        let occluded = occluded_faces(&centroids, uv, &layers, first_layer);
        for (layer, occ) in layers.iter_mut().zip(occluded) {
            if occ {
                *layer = (*layer + DIRECTIONS as u8).min(LAST_LAYER);
            }
        }
    }
    layers
}

/// One pass of §6.5 over the charts `first_layer .. first_layer + 6`: which faces are occluded.
fn occluded_faces(centroids: &[[f64; 3]], uv: &[[[f64; 2]; 3]], layers: &[u8], first_layer: u8) -> Vec<bool> {
    let in_pass = |l: u8| (first_layer..first_layer + DIRECTIONS as u8).contains(&l);
    let grids: Vec<ChartGrid> = (0..DIRECTIONS as u8)
        .into_par_iter()
        .map(|d| {
            let members: Vec<u32> =
                (0..layers.len() as u32).filter(|&f| layers[f as usize] == first_layer + d).collect();
            ChartGrid::new(uv, members)
        })
        .collect();

    // Every overlapping pair (a, b), a < b, found once.
    let pairs: Vec<(u32, u32)> = (0..layers.len() as u32)
        .into_par_iter()
        .filter(|&f| in_pass(layers[f as usize]))
        .flat_map_iter(|f| {
            let grid = &grids[usize::from(layers[f as usize] - first_layer)];
            grid.overlapping_after(uv, f).into_iter().map(move |g| (f, g))
        })
        .collect();

    let mut occluded = vec![false; layers.len()];
    for (a, b) in pairs {
        let chart = layers[a as usize] % DIRECTIONS as u8;
        let axis = usize::from(chart / 2);
        let negative = chart % 2 == 1;
        let (za, zb) = (centroids[a as usize][axis], centroids[b as usize][axis]);
        // The face farther along the chart's own direction is the occluded one.
        let second = if (negative && za < zb) || (!negative && za > zb) { a } else { b };
        occluded[second as usize] = true;
    }
    occluded
}

/// A uniform grid over one chart's UV triangles (the chart lives in `[0, 1]²` after step 3).
struct ChartGrid {
    side: usize,
    lo: [f64; 2],
    cell: [f64; 2],
    offsets: Vec<u32>,
    items: Vec<u32>,
}

impl ChartGrid {
    fn new(uv: &[[[f64; 2]; 3]], members: Vec<u32>) -> Self {
        let side = ((members.len() as f64).sqrt().ceil() as usize).clamp(1, MAX_GRID);
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for &f in &members {
            for p in &uv[f as usize] {
                for k in 0..2 {
                    lo[k] = lo[k].min(p[k]);
                    hi[k] = hi[k].max(p[k]);
                }
            }
        }
        let cell = std::array::from_fn(|k| ((hi[k] - lo[k]) / side as f64).max(MIN_EXTENT));
        let mut grid = Self { side, lo, cell, offsets: vec![0; side * side + 1], items: Vec::new() };
        // Count, prefix-sum, fill (CSR).
        for &f in &members {
            let (c0, c1) = grid.cell_range(&uv[f as usize]);
            for y in c0[1]..=c1[1] {
                for x in c0[0]..=c1[0] {
                    grid.offsets[y * side + x + 1] += 1;
                }
            }
        }
        for i in 1..grid.offsets.len() {
            grid.offsets[i] += grid.offsets[i - 1];
        }
        let mut cursor = grid.offsets.clone();
        grid.items = vec![0; grid.offsets[side * side] as usize];
        for &f in &members {
            let (c0, c1) = grid.cell_range(&uv[f as usize]);
            for y in c0[1]..=c1[1] {
                for x in c0[0]..=c1[0] {
                    let slot = &mut cursor[y * side + x];
                    grid.items[*slot as usize] = f;
                    *slot += 1;
                }
            }
        }
        grid
    }

    /// Inclusive cell range `(min, max)` covered by a triangle's bounding box.
    fn cell_range(&self, tri: &[[f64; 2]; 3]) -> ([usize; 2], [usize; 2]) {
        let (lo, hi) = tri_bounds(tri);
        let cell = |v: f64, k: usize| (((v - self.lo[k]) / self.cell[k]).floor().max(0.0) as usize).min(self.side - 1);
        ([cell(lo[0], 0), cell(lo[1], 1)], [cell(hi[0], 0), cell(hi[1], 1)])
    }

    /// Faces `g > f` of this chart that overlap face `f` (which must be in the chart), each reported once.
    fn overlapping_after(&self, uv: &[[[f64; 2]; 3]], f: u32) -> Vec<u32> {
        let tf = &uv[f as usize];
        let (c0, c1) = self.cell_range(tf);
        let (flo, fhi) = tri_bounds(tf);
        let mut out = Vec::new();
        for y in c0[1]..=c1[1] {
            for x in c0[0]..=c1[0] {
                let cell = y * self.side + x;
                for &g in &self.items[self.offsets[cell] as usize..self.offsets[cell + 1] as usize] {
                    if g <= f {
                        continue;
                    }
                    let tg = &uv[g as usize];
                    let (glo, ghi) = tri_bounds(tg);
                    if glo[0] > fhi[0] || glo[1] > fhi[1] || ghi[0] < flo[0] || ghi[1] < flo[1] {
                        continue;
                    }
                    // Test the pair only in the first cell both boxes share, so it is reported once.
                    let (d0, _) = self.cell_range(tg);
                    if x != c0[0].max(d0[0]) || y != c0[1].max(d0[1]) {
                        continue;
                    }
                    // The reference skips triangles bit-identical to the query (same corners in the same order).
                    if tf == tg {
                        continue;
                    }
                    if triangles_overlap(tf, tg) || triangles_overlap(tg, tf) {
                        out.push(g);
                    }
                }
            }
        }
        out
    }
}

/// Whether two UV triangles overlap by an area of at least 1e-10 (§6.5): both must be non-degenerate
/// (`|2·area| ≥ 1e-7`); `t2` is clipped by `t1`'s edges (Sutherland–Hodgman, both counter-clockwise, a point within
/// the orientation epsilon of an edge counts as inside) and the shoelace area of the result decides. Triangles
/// that share only an edge or a vertex do not overlap.
pub fn triangles_overlap(t1: &[[f64; 2]; 3], t2: &[[f64; 2]; 3]) -> bool {
    let ccw = |t: &[[f64; 2]; 3]| -> Option<[[f64; 2]; 3]> {
        let o = orient(t[0], t[1], t[2]);
        if o.abs() < ORIENT_EPS || !o.is_finite() {
            None
        } else if o < 0.0 {
            Some([t[0], t[2], t[1]])
        } else {
            Some(*t)
        }
    };
    let (Some(clip), Some(subject)) = (ccw(t1), ccw(t2)) else {
        return false;
    };
    let mut poly: Vec<[f64; 2]> = subject.to_vec();
    for i in 0..3 {
        let (a, b) = (clip[(i + 2) % 3], clip[i]);
        let input = std::mem::take(&mut poly);
        let n = input.len();
        for j in 0..n {
            let (prev, cur) = (input[(j + n - 1) % n], input[j]);
            let cur_in = orient(a, b, cur) >= -ORIENT_EPS;
            let prev_in = orient(a, b, prev) >= -ORIENT_EPS;
            if cur_in {
                if !prev_in {
                    poly.push(line_intersection(a, b, prev, cur));
                }
                poly.push(cur);
            } else if prev_in {
                poly.push(line_intersection(a, b, prev, cur));
            }
        }
        if poly.is_empty() {
            return false;
        }
    }
    let mut unique: Vec<[f64; 2]> = Vec::with_capacity(poly.len());
    for p in poly {
        if !unique.iter().any(|q| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt() <= DUPLICATE_POINT_DIST) {
            unique.push(p);
        }
    }
    if unique.len() < 3 {
        return false;
    }
    let twice: f64 = (0..unique.len())
        .map(|i| {
            let (p, q) = (unique[i], unique[(i + 1) % unique.len()]);
            p[0] * q[1] - p[1] * q[0]
        })
        .sum();
    let area = twice.abs() / 2.0;
    area.is_finite() && area >= MIN_OVERLAP_AREA
}

/// Intersection of the infinite lines `a1 b1` and `a2 b2`.
fn line_intersection(a1: [f64; 2], b1: [f64; 2], a2: [f64; 2], b2: [f64; 2]) -> [f64; 2] {
    let (dx1, dy1) = (a1[0] - b1[0], a1[1] - b1[1]);
    let (dx2, dy2) = (a2[0] - b2[0], a2[1] - b2[1]);
    let d = dx1 * dy2 - dx2 * dy1;
    let n1 = a1[0] * b1[1] - a1[1] * b1[0];
    let n2 = a2[0] * b2[1] - a2[1] * b2[0];
    if d == 0.0 {
        return b2; // parallel: the subject point already lies on the clip line within epsilon
    }
    [(n1 * dx2 - n2 * dx1) / d, (n1 * dy2 - n2 * dy1) / d]
}
