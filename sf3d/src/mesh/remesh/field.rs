//! Instant Meshes' extrinsic 4-RoSy orientation field and 4-PoSy position field, smoothed on a multi-resolution
//! hierarchy of the mesh's vertex graph.
//!
//! This work is based on:
//! * W. Jakob, M. Tarini, D. Panozzo, O. Sorkine-Hornung, "Instant Field-Aligned Meshes", SIGGRAPH Asia 2015:
//!   §4 (extrinsic smoothing: for each neighbour pick the pair of representatives, of the 4 rotations or of the
//!   4 surrounding lattice points, that agree best, and average), §5 (hierarchy by greedy pairwise merging,
//!   Gauss–Seidel sweeps over a graph colouring, coarse to fine) and the appendix (`middle_point`, lattice floor
//!   and round). The formulas follow the paper's appendix and its reference implementation (`field.cpp`,
//!   `hierarchy.cpp`).
//!
//! What is not ported: the intrinsic variants, 2-/6-RoSy and 3-PoSy, crease and boundary constraints (SF3D
//! calls it with `creaseAngle = -1`, `align_to_boundaries = false`), interactive strokes and the "frozen"
//! integer-variable mode.

use std::borrow::Cow;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::mesh::{add, cross, dot, length, normalize, scale, sub};

/// Gauss–Seidel sweeps per hierarchy level (Instant Meshes: 6).
const SWEEPS_PER_LEVEL: usize = 6;
/// Sweeps on the finest [`FINE_LEVELS`] levels, which start from a prolonged, nearly converged field and hold
/// most of the vertices.
const SWEEPS_FINE_LEVELS: usize = 3;
/// How many of the finest levels get [`SWEEPS_FINE_LEVELS`] sweeps only.
const FINE_LEVELS: usize = 2;
/// At most this many levels.
const MAX_LEVELS: usize = 25;
/// Coarsening stops when a level would keep more than this fraction of the vertices of the one below.
const MIN_SHRINK: f32 = 0.9;
/// Coarsening stops at this many vertices.
const COARSEST_SIZE: usize = 1;
/// Seed of the random initial orientations (the output must be deterministic).
const SEED: u64 = 0x5f3d_0001;
/// Below this length a vector is considered zero.
const TINY: f32 = 1e-12;

/// The vertex graph of one level: positions, normals, dual areas and weighted CSR adjacency.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    /// Vertex positions.
    pub(crate) pos: Vec<[f32; 3]>,
    /// Unit normals.
    pub(crate) nrm: Vec<[f32; 3]>,
    /// Dual areas (a third of the incident triangle areas on the finest level).
    pub(crate) area: Vec<f32>,
    /// CSR offsets, `len = n + 1`.
    pub(crate) start: Vec<u32>,
    /// Neighbour ids.
    pub(crate) adj: Vec<u32>,
    /// Link weights.
    pub(crate) weight: Vec<f32>,
}

impl Graph {
    /// Number of vertices.
    pub(crate) fn len(&self) -> usize {
        self.pos.len()
    }

    fn links(&self, i: usize) -> std::ops::Range<usize> {
        self.start[i] as usize..self.start[i + 1] as usize
    }
}

#[derive(Debug, Clone)]
struct Level<'g> {
    /// The graph (borrowed on the finest level).
    graph: Cow<'g, Graph>,
    /// Independent sets of vertices, swept one after another.
    phases: Vec<Vec<u32>>,
    /// For every vertex of this level, the one or two vertices of the finer level it was merged from (the
    /// second is `u32::MAX` for a vertex copied alone). Empty on the finest level.
    to_finer: Vec<[u32; 2]>,
}

/// Orientation and position fields on the finest level.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    /// Unit tangent representative of the 4-RoSy cross at every vertex.
    pub(crate) q: Vec<[f32; 3]>,
    /// Lattice origin at every vertex: the lattice point `o + scale·(a·q + b·(n × q))` nearest the vertex.
    pub(crate) o: Vec<[f32; 3]>,
}

/// Builds the hierarchy on `fine` and smooths both fields coarse to fine with lattice spacing `spacing`.
/// `progress` is called after each level of each field and may stop the work by returning `false`.
pub(crate) fn solve(fine: &Graph, spacing: f32, mut progress: impl FnMut() -> bool) -> Option<Fields> {
    let levels = build_hierarchy(fine);
    let coarsest = levels.len() - 1;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);

    // Orientation: random tangents on the coarsest level, then sweep and prolong level by level.
    let top = &levels[coarsest].graph;
    let mut q: Vec<[f32; 3]> = (0..top.len())
        .map(|i| {
            let r = [rng.random::<f32>() - 0.5, rng.random::<f32>() - 0.5, rng.random::<f32>() - 0.5];
            tangent_unit(r, top.nrm[i])
        })
        .collect();
    for l in (0..=coarsest).rev() {
        let level = &levels[l];
        for _ in 0..sweeps(l) {
            for phase in &level.phases {
                let upd: Vec<[f32; 3]> = phase.par_iter().map(|&i| smooth_orientation(&level.graph, &q, i)).collect();
                for (&i, v) in phase.iter().zip(upd) {
                    q[i as usize] = v;
                }
            }
        }
        if !progress() {
            return None;
        }
        if l > 0 {
            q = prolong(&levels[l], &levels[l - 1].graph, &q, |v, g, i| tangent_unit(v, g.nrm[i]));
        }
    }
    let q_fine = q;

    // Positions: the vertices themselves on the coarsest level; the orientation of each level is re-derived by
    // restricting the finest field (the orientation solve above only kept the finest).
    let qs = restrict_orientations(&levels, q_fine);
    let inv = 1.0 / spacing;
    let mut o = levels[coarsest].graph.pos.clone();
    for l in (0..=coarsest).rev() {
        let level = &levels[l];
        let ts: Vec<[f32; 3]> = qs[l].iter().zip(&level.graph.nrm).map(|(&q, &n)| cross(n, q)).collect();
        for _ in 0..sweeps(l) {
            for phase in &level.phases {
                let upd: Vec<[f32; 3]> = phase
                    .par_iter()
                    .map(|&i| smooth_position(&level.graph, &qs[l], &ts, &o, i, spacing, inv))
                    .collect();
                for (&i, v) in phase.iter().zip(upd) {
                    o[i as usize] = v;
                }
            }
        }
        if !progress() {
            return None;
        }
        if l > 0 {
            o = prolong(&levels[l], &levels[l - 1].graph, &o, |v, g, i| {
                let n = g.nrm[i];
                sub(v, scale(n, dot(n, sub(v, g.pos[i]))))
            });
        }
    }
    let mut qs = qs;
    Some(Fields { q: std::mem::take(&mut qs[0]), o })
}

/// Gauss–Seidel sweeps on level `l` (0 = finest).
fn sweeps(l: usize) -> usize {
    if l < FINE_LEVELS { SWEEPS_FINE_LEVELS } else { SWEEPS_PER_LEVEL }
}

/// Copies every coarse value to the one or two finer vertices it stands for, adapted by `fit(value, finer
/// graph, finer index)`.
fn prolong(
    coarse: &Level<'_>,
    finer: &Graph,
    values: &[[f32; 3]],
    fit: impl Fn([f32; 3], &Graph, usize) -> [f32; 3],
) -> Vec<[f32; 3]> {
    let mut out = vec![[0f32; 3]; finer.len()];
    for (c, pair) in coarse.to_finer.iter().enumerate() {
        for &f in pair {
            if f != u32::MAX {
                out[f as usize] = fit(values[c], finer, f as usize);
            }
        }
    }
    out
}

/// The orientation of every level, taking each coarse vertex's from the first finer vertex it stands for
/// (projected into its tangent plane).
fn restrict_orientations(levels: &[Level<'_>], fine: Vec<[f32; 3]>) -> Vec<Vec<[f32; 3]>> {
    let mut qs = vec![fine];
    for l in 1..levels.len() {
        let g = &levels[l].graph;
        let below = &qs[l - 1];
        let q = levels[l]
            .to_finer
            .iter()
            .enumerate()
            .map(|(i, pair)| tangent_unit(below[pair[0] as usize], g.nrm[i]))
            .collect();
        qs.push(q);
    }
    qs
}

/// `v` projected into the plane of unit normal `n` and normalised; an arbitrary tangent when that vanishes.
fn tangent_unit(v: [f32; 3], n: [f32; 3]) -> [f32; 3] {
    let t = sub(v, scale(n, dot(n, v)));
    if length(t) > TINY {
        return normalize(t, TINY);
    }
    // Any vector orthogonal to n.
    let a = if n[0].abs() < 0.9 { [1.0, 0.0, 0.0] } else { [0.0, 1.0, 0.0] };
    normalize(cross(n, a), TINY)
}

// ---- hierarchy ---------------------------------------------------------------------------------------------

fn build_hierarchy(fine: &Graph) -> Vec<Level<'_>> {
    let phases = colour(fine);
    let mut levels = vec![Level { graph: Cow::Borrowed(fine), phases, to_finer: Vec::new() }];
    while levels.len() < MAX_LEVELS {
        let Some(last) = levels.last() else { break };
        if last.graph.len() <= COARSEST_SIZE {
            break;
        }
        let (graph, to_finer) = coarsen(&last.graph);
        if graph.len() as f32 > MIN_SHRINK * last.graph.len() as f32 {
            break;
        }
        let phases = colour(&graph);
        levels.push(Level { graph: Cow::Owned(graph), phases, to_finer });
    }
    levels
}

/// One coarsening step: greedily merge neighbour pairs, best first, where "best" is Instant Meshes' score
/// `(n_i · n_j) · max(A_i/A_j, A_j/A_i)`; unmatched vertices are copied.
fn coarsen(g: &Graph) -> (Graph, Vec<[u32; 2]>) {
    let n = g.len();
    let mut entries: Vec<(f32, u32, u32)> = (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            g.links(i).filter(move |&k| (g.adj[k] as usize) > i).map(move |k| {
                let j = g.adj[k] as usize;
                let (ai, aj) = (g.area[i].max(TINY), g.area[j].max(TINY));
                let ratio = if ai > aj { ai / aj } else { aj / ai };
                (dot(g.nrm[i], g.nrm[j]) * ratio, i as u32, j as u32)
            })
        })
        .collect();
    entries.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));

    let mut merged = vec![false; n];
    let mut to_finer: Vec<[u32; 2]> = Vec::with_capacity(n / 2 + 1);
    for &(_, i, j) in &entries {
        if !merged[i as usize] && !merged[j as usize] {
            merged[i as usize] = true;
            merged[j as usize] = true;
            to_finer.push([i, j]);
        }
    }
    for i in 0..n as u32 {
        if !merged[i as usize] {
            to_finer.push([i, u32::MAX]);
        }
    }
    let mut to_coarse = vec![0u32; n];
    for (c, pair) in to_finer.iter().enumerate() {
        for &f in pair {
            if f != u32::MAX {
                to_coarse[f as usize] = c as u32;
            }
        }
    }

    let m = to_finer.len();
    let mut out = Graph {
        pos: Vec::with_capacity(m),
        nrm: Vec::with_capacity(m),
        area: Vec::with_capacity(m),
        ..Default::default()
    };
    for pair in &to_finer {
        let (mut p, mut nn, mut a) = ([0f32; 3], [0f32; 3], 0f32);
        let members = pair.iter().filter(|&&f| f != u32::MAX).map(|&f| f as usize);
        let count = members.clone().count() as f32;
        for f in members.clone() {
            let w = g.area[f];
            p = add(p, scale(g.pos[f], w));
            nn = add(nn, scale(g.nrm[f], w));
            a += w;
        }
        if a > TINY {
            p = scale(p, 1.0 / a);
        } else {
            p = scale(members.clone().fold([0f32; 3], |s, f| add(s, g.pos[f])), 1.0 / count);
            nn = members.fold([0f32; 3], |s, f| add(s, g.nrm[f]));
        }
        out.pos.push(p);
        out.nrm.push(if length(nn) > TINY { normalize(nn, TINY) } else { [1.0, 0.0, 0.0] });
        out.area.push(a);
    }
    // Adjacency: the union of the members' links, mapped down, without self-links, weights summed.
    let lists: Vec<Vec<(u32, f32)>> = to_finer
        .par_iter()
        .enumerate()
        .map(|(c, pair)| {
            let mut l: Vec<(u32, f32)> = pair
                .iter()
                .filter(|&&f| f != u32::MAX)
                .flat_map(|&f| g.links(f as usize).map(|k| (to_coarse[g.adj[k] as usize], g.weight[k])))
                .filter(|&(d, _)| d as usize != c)
                .collect();
            l.sort_unstable_by_key(|&(d, _)| d);
            let mut merged: Vec<(u32, f32)> = Vec::with_capacity(l.len());
            for (d, w) in l {
                match merged.last_mut() {
                    Some(last) if last.0 == d => last.1 += w,
                    _ => merged.push((d, w)),
                }
            }
            merged
        })
        .collect();
    out.start.push(0);
    for l in &lists {
        out.adj.extend(l.iter().map(|&(d, _)| d));
        out.weight.extend(l.iter().map(|&(_, w)| w));
        out.start.push(out.adj.len() as u32);
    }
    (out, to_finer)
}

/// Greedy colouring in index order: each phase is an independent set, so its vertices can be updated in
/// parallel and the sweep is still Gauss–Seidel.
fn colour(g: &Graph) -> Vec<Vec<u32>> {
    let mut colour = vec![u32::MAX; g.len()];
    let mut phases: Vec<Vec<u32>> = Vec::new();
    let mut taken: Vec<bool> = Vec::new();
    for i in 0..g.len() {
        taken.iter_mut().for_each(|t| *t = false);
        for k in g.links(i) {
            let c = colour[g.adj[k] as usize];
            if c != u32::MAX {
                taken[c as usize] = true;
            }
        }
        let c = taken.iter().position(|&t| !t).unwrap_or_else(|| {
            taken.push(false);
            phases.push(Vec::new());
            taken.len() - 1
        });
        colour[i] = c as u32;
        phases[c].push(i as u32);
    }
    phases
}

// ---- smoothing kernels (extrinsic, 4-RoSy / 4-PoSy) ----------------------------------------------------------

/// The representatives of the crosses `(q0, n0)` and `(q1, n1)` that agree best: among `{q, n × q}` of each, the
/// pair with the largest `|dot|`, the second one's sign fixed to agree.
pub(crate) fn compat_orientation(q0: [f32; 3], n0: [f32; 3], q1: [f32; 3], n1: [f32; 3]) -> ([f32; 3], [f32; 3]) {
    let a = [q0, cross(n0, q0)];
    let b = [q1, cross(n1, q1)];
    let mut best = (0, 0, f32::NEG_INFINITY);
    for (i, ai) in a.iter().enumerate() {
        for (j, bj) in b.iter().enumerate() {
            let s = dot(*ai, *bj).abs();
            if s > best.2 {
                best = (i, j, s);
            }
        }
    }
    let (ai, bj) = (a[best.0], b[best.1]);
    (ai, if dot(ai, bj) < 0.0 { scale(bj, -1.0) } else { bj })
}

fn smooth_orientation(g: &Graph, q: &[[f32; 3]], i: u32) -> [f32; 3] {
    let i = i as usize;
    let n_i = g.nrm[i];
    let mut sum = q[i];
    let mut weight_sum = 0f32;
    for k in g.links(i) {
        let (j, w) = (g.adj[k] as usize, g.weight[k]);
        if w == 0.0 {
            continue;
        }
        let (a, b) = compat_orientation(sum, n_i, q[j], g.nrm[j]);
        sum = add(scale(a, weight_sum), scale(b, w));
        sum = sub(sum, scale(n_i, dot(n_i, sum)));
        weight_sum += w;
        let l = length(sum);
        if l > TINY {
            sum = scale(sum, 1.0 / l);
        }
    }
    if weight_sum > 0.0 { sum } else { q[i] }
}

/// The point closest to `p0` and `p1` on both tangent planes (paper appendix; `1e-4` regularises parallel
/// normals).
pub(crate) fn middle_point(p0: [f32; 3], n0: [f32; 3], p1: [f32; 3], n1: [f32; 3]) -> [f32; 3] {
    let (n0p0, n0p1, n1p0, n1p1, n0n1) = (dot(n0, p0), dot(n0, p1), dot(n1, p0), dot(n1, p1), dot(n0, n1));
    let denom = 1.0 / (1.0 - n0n1 * n0n1 + 1e-4);
    let l0 = 2.0 * (n0p1 - n0p0 - n0n1 * (n1p0 - n1p1)) * denom;
    let l1 = 2.0 * (n1p0 - n1p1 - n0n1 * (n0p1 - n0p0)) * denom;
    sub(scale(add(p0, p1), 0.5), scale(add(scale(n0, l0), scale(n1, l1)), 0.25))
}

/// One vertex's lattice: position `p`, unit normal `n`, frame `(q, t = n × q)`, origin `o`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) p: [f32; 3],
    pub(crate) n: [f32; 3],
    pub(crate) q: [f32; 3],
    pub(crate) t: [f32; 3],
    pub(crate) o: [f32; 3],
}

impl Frame {
    /// The frame of a vertex at `p` with normal `n`, cross representative `q` and lattice origin `o`.
    pub(crate) fn new(p: [f32; 3], n: [f32; 3], q: [f32; 3], o: [f32; 3]) -> Self {
        Self { p, n, q, t: cross(n, q), o }
    }

    /// Integer coordinates of `x` in this lattice, rounded down.
    fn floor(&self, x: [f32; 3], inv: f32) -> [i32; 2] {
        let d = sub(x, self.o);
        [(dot(self.q, d) * inv).floor() as i32, (dot(self.t, d) * inv).floor() as i32]
    }

    /// The lattice point with integer coordinates `ab`.
    fn point(&self, ab: [i32; 2], spacing: f32) -> [f32; 3] {
        add(self.o, scale(add(scale(self.q, ab[0] as f32), scale(self.t, ab[1] as f32)), spacing))
    }

    /// The lattice point nearest `x`.
    fn round(&self, x: [f32; 3], spacing: f32, inv: f32) -> [f32; 3] {
        let d = sub(x, self.o);
        self.point([(dot(self.q, d) * inv).round() as i32, (dot(self.t, d) * inv).round() as i32], spacing)
    }
}

/// The pair of lattice points two vertices agree on best; see [`compat_position`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LatticeMatch {
    /// Integer coordinates of the first vertex's point in its own lattice.
    pub(crate) a: [i32; 2],
    /// Integer coordinates of the second vertex's point in its own lattice.
    pub(crate) b: [i32; 2],
    /// The first vertex's point.
    pub(crate) pa: [f32; 3],
    /// The second vertex's point.
    pub(crate) pb: [f32; 3],
    /// Squared distance between them.
    pub(crate) err: f32,
}

/// Of the four lattice points around the middle of two vertices in each of their lattices, the pair that is
/// closest (paper §4, extrinsic 4-PoSy).
pub(crate) fn compat_position(f0: &Frame, f1: &Frame, spacing: f32, inv: f32) -> LatticeMatch {
    let middle = middle_point(f0.p, f0.n, f1.p, f1.n);
    let (a0, b0) = (f0.floor(middle, inv), f1.floor(middle, inv));
    let (base0, base1) = (f0.point(a0, spacing), f1.point(b0, spacing));
    let (q0, t0, q1, t1) = (scale(f0.q, spacing), scale(f0.t, spacing), scale(f1.q, spacing), scale(f1.t, spacing));
    // Candidate k adds (k & 1) steps along q and (k >> 1) along t.
    let c0 = [base0, add(base0, q0), add(base0, t0), add(add(base0, q0), t0)];
    let c1 = [base1, add(base1, q1), add(base1, t1), add(add(base1, q1), t1)];
    let mut best = (0usize, 0usize, f32::INFINITY);
    for (i, x) in c0.iter().enumerate() {
        for (j, y) in c1.iter().enumerate() {
            let d = sub(*x, *y);
            let cost = dot(d, d);
            if cost < best.2 {
                best = (i, j, cost);
            }
        }
    }
    let (i, j, err) = best;
    let step = |k: usize| [(k & 1) as i32, (k >> 1) as i32];
    let (si, sj) = (step(i), step(j));
    LatticeMatch { a: [a0[0] + si[0], a0[1] + si[1]], b: [b0[0] + sj[0], b0[1] + sj[1]], pa: c0[i], pb: c1[j], err }
}

fn smooth_position(
    g: &Graph,
    q: &[[f32; 3]],
    t: &[[f32; 3]],
    o: &[[f32; 3]],
    i: u32,
    spacing: f32,
    inv: f32,
) -> [f32; 3] {
    let i = i as usize;
    let mut me = Frame { p: g.pos[i], n: g.nrm[i], q: q[i], t: t[i], o: o[i] };
    let mut weight_sum = 0f32;
    for k in g.links(i) {
        let (j, w) = (g.adj[k] as usize, g.weight[k]);
        if w == 0.0 {
            continue;
        }
        let other = Frame { p: g.pos[j], n: g.nrm[j], q: q[j], t: t[j], o: o[j] };
        let m = compat_position(&me, &other, spacing, inv);
        let mut sum = add(scale(m.pa, weight_sum), scale(m.pb, w));
        weight_sum += w;
        sum = scale(sum, 1.0 / weight_sum);
        me.o = sub(sum, scale(me.n, dot(me.n, sub(sum, me.p))));
    }
    if weight_sum > 0.0 { me.round(me.p, spacing, inv) } else { o[i] }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat square grid of `k × k` vertices with spacing `h` in the plane z = 0, 4-neighbour links.
    fn grid(k: usize, h: f32) -> Graph {
        let mut g = Graph::default();
        g.start.push(0);
        for y in 0..k {
            for x in 0..k {
                g.pos.push([x as f32 * h, y as f32 * h, 0.0]);
                g.nrm.push([0.0, 0.0, 1.0]);
                g.area.push(h * h);
                for (dx, dy) in [(-1i32, 0i32), (1, 0), (0, -1), (0, 1)] {
                    let (nx, ny) = (x as i32 + dx, y as i32 + dy);
                    if nx >= 0 && ny >= 0 && (nx as usize) < k && (ny as usize) < k {
                        g.adj.push((ny as usize * k + nx as usize) as u32);
                        g.weight.push(1.0);
                    }
                }
                g.start.push(g.adj.len() as u32);
            }
        }
        g
    }

    /// The middle point of two points on one plane (equal normals) is their midpoint.
    #[test]
    fn middle_point_of_coplanar_points_is_midpoint() {
        let m = middle_point([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]);
        assert!(length(sub(m, [1.0, 0.0, 0.0])) < 1e-5, "{m:?}");
    }

    /// Two crosses rotated by 90° against each other are the same cross: the compatible representatives agree.
    #[test]
    fn orientation_compat_absorbs_quarter_turns() {
        let n = [0.0, 0.0, 1.0];
        let (a, b) = compat_orientation([1.0, 0.0, 0.0], n, [0.0, -1.0, 0.0], n);
        assert!(dot(a, b) > 0.999, "{a:?} {b:?}");
    }

    /// On a flat grid the smoothed orientation field is constant (any direction is fine, but one for all), and
    /// the position field puts every vertex on one common lattice of spacing 2h: neighbouring lattice origins
    /// differ by a lattice vector.
    #[test]
    fn flat_grid_gives_constant_fields() {
        let (k, h) = (24, 0.1f32);
        let spacing = 2.0 * h;
        let g = grid(k, h);
        let fields = solve(&g, spacing, || true).unwrap();
        let q0 = fields.q[0];
        for (i, &q) in fields.q.iter().enumerate() {
            let (a, b) = compat_orientation(q0, g.nrm[0], q, g.nrm[i]);
            assert!(dot(a, b) > 0.99, "vertex {i}: {q:?} vs {q0:?}");
        }
        let t0 = cross(g.nrm[0], q0);
        for (i, &o) in fields.o.iter().enumerate() {
            // Nearest lattice point: within half a diagonal of the vertex.
            assert!(length(sub(o, g.pos[i])) <= spacing * 0.75, "vertex {i} origin {o:?} far from {:?}", g.pos[i]);
            // Same lattice as vertex 0's: integer coordinates.
            let d = sub(o, fields.o[0]);
            for c in [dot(d, q0) / spacing, dot(d, t0) / spacing] {
                assert!((c - c.round()).abs() < 0.05, "vertex {i}: lattice coordinate {c}");
            }
        }
    }

    /// Coarsening a 4×4 grid merges pairs: the next level has at most 10 of the 16 vertices, conserves area,
    /// and every fine vertex is represented exactly once.
    #[test]
    fn coarsening_merges_pairs() {
        let g = grid(4, 1.0);
        let (c, to_finer) = coarsen(&g);
        assert!(c.len() <= 10, "{}", c.len());
        assert!((c.area.iter().sum::<f32>() - 16.0).abs() < 1e-4);
        let mut seen: Vec<u32> = to_finer.iter().flatten().copied().filter(|&f| f != u32::MAX).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..16).collect::<Vec<u32>>());
        for phase in colour(&c) {
            for &i in &phase {
                for k in c.links(i as usize) {
                    assert!(!phase.contains(&c.adj[k]), "phase is not independent");
                }
            }
        }
    }
}
