//! The passes of Botsch–Kobbelt isotropic remeshing on a [`HalfEdgeMesh`] that is kept on a reference
//! [`Surface`]: split long edges, collapse short ones, flip to equalise valences, relax tangentially and project
//! back; plus the final repair of degenerate or folded triangles. The quad remesher reuses the last two.
//!
//! This work is based on:
//! * M. Botsch, L. Kobbelt, "A Remeshing Approach to Multiresolution Modeling", SGP 2004 (the four passes, the
//!   4/3 and 4/5 thresholds, valence targets 6 inside and 4 on the boundary);
//! * M. Botsch, L. Kobbelt, M. Pauly, P. Alliez, B. Lévy, "Polygon Mesh Processing", 2010, §6.5.3.
//!
//! Every operation is guarded twice: topologically (see [`HalfEdgeMesh::can_collapse`] and
//! [`HalfEdgeMesh::can_flip`]), so the surface stays a manifold with the same Euler characteristic and winding,
//! and geometrically, so no triangle becomes degenerate or turns over. Vertex moves are computed in parallel and
//! accepted one by one against the current neighbourhood, which keeps the guards exact.

use rayon::prelude::*;

use crate::error::Result;
use crate::mesh::TriMesh;
use crate::mesh::remesh::bvh::{Hit, NO_HINT};
use crate::mesh::remesh::halfedge::{HalfEdgeMesh, NONE, ShapeGuard, prev};
use crate::mesh::remesh::surface::Surface;
use crate::mesh::remesh::triangle::mean_edge_length;
use crate::mesh::{add, cross, dot, length, scale, sub};

/// Valence an interior vertex of a regular triangle mesh has.
const INTERIOR_VALENCE: i32 = 6;
/// Valence a boundary vertex of a regular triangle mesh has.
const BOUNDARY_VALENCE: i32 = 4;
/// A collapse may turn a surviving triangle's normal by at most acos(this) (≈ 78°).
pub(crate) const COLLAPSE_MIN_COS: f32 = 0.2;
/// A valence flip needs the two old triangles, and the two new ones, to meet at a dihedral angle of at most
/// acos(this) (60°): flipping across a sharper crease would cut it off.
const FLIP_MIN_COS: f32 = 0.5;
/// A triangle is *folded* when its normal is turned more than acos(this) = 120° away from the input's smooth
/// normal at its centroid. Not 90°: at the creases of a coarse marching-tetrahedra surface the input's own
/// triangles reach 97° from that smooth normal (tiny-a), yet are not folded; a flipped triangle is near 180°.
pub(crate) const FOLD_COS: f32 = -0.5;
/// Repeats of the split pass (each splits every edge still too long; halves of a split edge may still be).
const MAX_SPLIT_PASSES: usize = 8;

/// A mesh being remeshed, the surface it must stay on, and the closest input triangle of every vertex.
#[derive(Debug)]
pub(crate) struct Work<'s> {
    /// The mesh being edited.
    pub(crate) he: HalfEdgeMesh,
    /// The input surface.
    pub(crate) surface: &'s Surface,
    /// Per vertex slot: the surface slot of its last projection ([`NO_HINT`] before the first).
    pub(crate) hint: Vec<u32>,
    /// Twice the smallest area a triangle may have (`|(P1 − P0) × (P2 − P0)|`).
    pub(crate) min_cross: f32,
    /// How far a collapse may move the surface away from an old vertex (see [`ShapeGuard::max_dev`]).
    pub(crate) max_dev: f32,
}

impl<'s> Work<'s> {
    /// Starts from `he` on `surface`; triangles with `|cross| < min_cross` count as degenerate.
    pub(crate) fn new(he: HalfEdgeMesh, surface: &'s Surface, min_cross: f32, max_dev: f32) -> Self {
        let hint = vec![NO_HINT; he.vertex_slots()];
        Self { he, surface, hint, min_cross, max_dev }
    }

    /// Records the projection hint of every vertex (positions are not changed).
    pub(crate) fn init_hints(&mut self) {
        let hits = self.surface.project_many(&self.he.pos, &self.hint);
        self.hint = hits.iter().map(|h| h.slot).collect();
    }

    // ---- split ---------------------------------------------------------------------------------------

    /// Splits every interior edge longer than `max_len` at its midpoint, longest first, in passes until none is
    /// left (or [`MAX_SPLIT_PASSES`] passes). Returns the number of splits. Boundary edges are features and stay
    /// whole.
    ///
    /// Each pass splits only the edges that exist when it starts, longest first: splitting a shorter edge of a
    /// triangle before its longest one can create long edges again and again around the untouched longest edge.
    pub(crate) fn split_long_edges(&mut self, max_len: f32) -> usize {
        let max_sq = max_len * max_len;
        let mut total = 0;
        for _ in 0..MAX_SPLIT_PASSES {
            let he = &self.he;
            let mut long: Vec<(f32, u32)> = (0..he.half_edge_slots() as u32)
                .into_par_iter()
                .filter(|&h| he.is_edge_representative(h) && he.twin(h) != NONE)
                .map(|h| (he.edge_length_sq(h), h))
                .filter(|&(l, _)| l > max_sq)
                .collect();
            if long.is_empty() {
                break;
            }
            long.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, h) in &long {
                // Earlier splits of this pass may have given the slot of `h` to another (interior) edge; splits
                // never make an interior slot a boundary one, but re-check both before splitting.
                if self.he.twin(h) == NONE || self.he.edge_length_sq(h) <= max_sq {
                    continue;
                }
                let a = self.he.origin(h);
                let mid = scale(add(self.he.pos[a as usize], self.he.pos[self.he.dest(h) as usize]), 0.5);
                self.he.split(h, mid);
                self.hint.push(self.hint[a as usize]);
                total += 1;
            }
        }
        total
    }

    // ---- collapse ------------------------------------------------------------------------------------

    /// Collapses every interior edge shorter than `min_len` whose collapse creates no edge longer than
    /// `max_len` and passes the guards. Two interior ends meet at the midpoint; an interior end moves onto a
    /// boundary end. Returns the number of collapses.
    pub(crate) fn collapse_short_edges(&mut self, min_len: f32, max_len: f32) -> usize {
        let (min_sq, max_sq) = (min_len * min_len, max_len * max_len);
        let mut collapses = 0;
        for h in 0..self.he.half_edge_slots() as u32 {
            if !self.he.is_edge_representative(h) || self.he.twin(h) == NONE || self.he.edge_length_sq(h) >= min_sq {
                continue;
            }
            if self.try_collapse_edge(h, max_sq, CollapseGuard::Turn(COLLAPSE_MIN_COS)) {
                collapses += 1;
            }
        }
        collapses
    }

    /// Thins the boundary: removes boundary vertices along the boundary (each into its successor, which stays
    /// in place), shortest boundary edge first, while that edge is shorter than `min_len`, the new boundary edge
    /// is at most `max_len` long and the shape guards pass (the removed vertex stays within `max_dev` of the new
    /// boundary edge, so the outline keeps its corners). Runs passes until none collapses. Returns the number of
    /// removed vertices.
    pub(crate) fn thin_boundary(&mut self, min_len: f32, max_len: f32) -> usize {
        let min_sq = min_len * min_len;
        let guard = ShapeGuard {
            min_cross: self.min_cross,
            min_cos: COLLAPSE_MIN_COS,
            max_len_sq: max_len * max_len,
            max_dev: self.max_dev,
        };
        let mut total = 0;
        loop {
            let mut edges: Vec<(f32, u32)> = (0..self.he.half_edge_slots() as u32)
                .filter(|&h| self.he.half_edge_alive(h) && self.he.twin(h) == NONE)
                .map(|h| (self.he.edge_length_sq(h), h))
                .filter(|&(l, _)| l < min_sq)
                .collect();
            edges.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let mut collapses = 0;
            for (_, h) in edges {
                // Earlier collapses in this pass may have changed or removed the edge.
                if self.he.half_edge_alive(h)
                    && self.he.twin(h) == NONE
                    && self.he.edge_length_sq(h) < min_sq
                    && self.he.can_collapse_boundary(h)
                    && self.he.boundary_collapse_keeps_shape(h, &guard)
                {
                    self.he.collapse_boundary(h);
                    collapses += 1;
                }
            }
            total += collapses;
            if collapses == 0 {
                return total;
            }
        }
    }

    /// Tries to collapse the edge of `h` in whichever direction is allowed (see
    /// [`Work::collapse_short_edges`]); `guard` decides where the survivor goes and what a surviving triangle may
    /// become.
    pub(crate) fn try_collapse_edge(&mut self, h: u32, max_sq: f32, guard: CollapseGuard) -> bool {
        let t = self.he.twin(h);
        if t == NONE {
            return false;
        }
        let (a, b) = (self.he.origin(h), self.he.origin(t));
        let (pa, pb) = (self.he.pos[a as usize], self.he.pos[b as usize]);
        let mid = scale(add(pa, pb), 0.5);
        let mut projected = None;
        // (half-edge to collapse, position of the survivor): an interior end moves onto a boundary end; two
        // interior ends meet at the midpoint (projected onto the surface under `OnSurface`), or, under the
        // `Surface` guard, at either end.
        let candidates: &[(u32, [f32; 3])] = match (self.he.is_boundary(a), self.he.is_boundary(b)) {
            (true, true) => return false,
            (true, false) => &[(t, pa)],
            (false, true) => &[(h, pb)],
            (false, false) => match guard {
                CollapseGuard::Turn(_) => &[(h, mid)],
                CollapseGuard::Surface => &[(h, mid), (h, pb), (t, pa)],
                CollapseGuard::OnSurface => {
                    let hit = self.surface.project(mid, self.hint[a as usize]);
                    projected = Some(hit.slot);
                    &[(h, hit.point)]
                }
            },
        };
        // The link condition does not depend on the direction once the boundary rule is met.
        if !self.he.can_collapse(candidates[0].0) {
            return false;
        }
        for &(hh, p) in candidates {
            let shape =
                |min_cos| ShapeGuard { min_cross: self.min_cross, min_cos, max_len_sq: max_sq, max_dev: self.max_dev };
            let ok = match guard {
                CollapseGuard::Turn(min_cos) => self.he.collapse_keeps_shape(hh, p, &shape(min_cos)),
                CollapseGuard::Surface => self.collapse_fits_surface(hh, p, max_sq),
                CollapseGuard::OnSurface => {
                    self.he.collapse_keeps_shape(hh, p, &shape(-1.0)) && self.collapse_fits_surface(hh, p, max_sq)
                }
            };
            if ok {
                // The survivor keeps its projection hint (it moved by half an edge at most) unless it was just
                // projected.
                let survivor = self.he.collapse(hh, p);
                if let Some(slot) = projected {
                    self.hint[survivor as usize] = slot;
                }
                return true;
            }
        }
        false
    }

    // ---- flip ----------------------------------------------------------------------------------------

    /// Flips interior edges wherever that brings the four vertices involved closer to the regular valences
    /// (6 inside, 4 on the boundary) and passes the guards. Returns the number of flips.
    pub(crate) fn equalize_valences(&mut self) -> usize {
        let mut flips = 0;
        for h in 0..self.he.half_edge_slots() as u32 {
            if !self.he.is_edge_representative(h) {
                continue;
            }
            let t = self.he.twin(h);
            if t == NONE {
                continue;
            }
            let quad = [self.he.origin(h), self.he.origin(t), self.he.origin(prev(h)), self.he.origin(prev(t))];
            let dev = |v: u32, delta: i32| {
                let target = if self.he.is_boundary(v) { BOUNDARY_VALENCE } else { INTERIOR_VALENCE };
                (self.he.valence(v) as i32 + delta - target).abs()
            };
            let before: i32 = quad.iter().map(|&v| dev(v, 0)).sum();
            let after = dev(quad[0], -1) + dev(quad[1], -1) + dev(quad[2], 1) + dev(quad[3], 1);
            if after < before && self.he.can_flip(h) && self.flip_keeps_shape(h) {
                self.he.flip(h);
                flips += 1;
            }
        }
        flips
    }

    /// Whether the flip of `h` leaves two non-degenerate triangles that agree with the old pair's normal and
    /// meet at a moderate angle, and the old pair was not a crease.
    fn flip_keeps_shape(&self, h: u32) -> bool {
        let (m0, m1) = (self.he.face_cross(h / 3), self.he.face_cross(self.he.twin(h) / 3));
        let (n0, n1) = self.he.flipped_crosses(h);
        let (l0, l1) = (length(n0), length(n1));
        if l0 < self.min_cross || l1 < self.min_cross {
            return false;
        }
        let m = add(m0, m1);
        dot(n0, m) > 0.0
            && dot(n1, m) > 0.0
            && dot(n0, n1) >= FLIP_MIN_COS * l0 * l1
            && dot(m0, m1) >= FLIP_MIN_COS * length(m0) * length(m1)
    }

    // ---- relax and project ---------------------------------------------------------------------------

    /// Moves every interior vertex towards the mean of its neighbours within its tangent plane (if `relax`),
    /// then onto the closest point of the surface. A move is kept only if no triangle around the vertex becomes
    /// degenerate or turns over. Returns the number of vertices moved.
    pub(crate) fn relax_and_project(&mut self, relax: bool) -> usize {
        let he = &self.he;
        let movable: Vec<u32> =
            (0..he.vertex_slots() as u32).filter(|&v| he.vertex_alive(v) && !he.is_boundary(v)).collect();
        let (targets, hints): (Vec<[f32; 3]>, Vec<u32>) = movable
            .par_iter()
            .map_init(Vec::new, |buf, &v| {
                let p = he.pos[v as usize];
                let hint = self.hint[v as usize];
                if !relax {
                    return (p, hint);
                }
                buf.clear();
                he.neighbors(v, buf);
                let c = buf.iter().fold([0f32; 3], |c, &u| add(c, he.pos[u as usize]));
                let d = sub(scale(c, 1.0 / buf.len().max(1) as f32), p);
                let n = he.vertex_normal(v);
                (sub(add(p, d), scale(n, dot(n, d))), hint)
            })
            .unzip();
        let hits = self.surface.project_many(&targets, &hints);
        let mut moved = 0;
        let mut buf = Vec::new();
        for (&v, hit) in movable.iter().zip(&hits) {
            if self.move_keeps_shape(v, hit.point, &mut buf) {
                self.he.pos[v as usize] = hit.point;
                self.hint[v as usize] = hit.slot;
                moved += 1;
            }
        }
        moved
    }

    /// Whether putting `v` at `p` keeps every triangle around it non-degenerate and turned by less than 90°; a
    /// triangle that already was degenerate (its orientation is noise) only must not shrink further.
    fn move_keeps_shape(&self, v: u32, p: [f32; 3], buf: &mut Vec<u32>) -> bool {
        buf.clear();
        self.he.outgoing(v, buf);
        buf.iter().all(|&h| {
            let (b, c) = (self.he.pos[self.he.dest(h) as usize], self.he.pos[self.he.origin(prev(h)) as usize]);
            let n_new = cross(sub(b, p), sub(c, p));
            let n_old = self.he.face_cross(h / 3);
            let (l_old, l_new) = (length(n_old), length(n_new));
            if l_old < self.min_cross { l_new >= l_old } else { l_new >= self.min_cross && dot(n_new, n_old) > 0.0 }
        })
    }

    // ---- repair ----------------------------------------------------------------------------------------

    /// Faces that are degenerate (`|cross| < min_cross`) or folded (see [`FOLD_COS`]).
    pub(crate) fn bad_faces(&self) -> Vec<u32> {
        (0..self.he.face_slots() as u32)
            .into_par_iter()
            .filter(|&f| self.he.face_alive(f) && self.face_is_bad(f))
            .collect()
    }

    /// See [`Work::bad_faces`].
    fn face_is_bad(&self, f: u32) -> bool {
        let [a, b, c] = self.he.face(f).map(|v| self.he.pos[v as usize]);
        let n = cross(sub(b, a), sub(c, a));
        let l = length(n);
        if l < self.min_cross {
            return true;
        }
        let centroid = scale(add(add(a, b), c), 1.0 / 3.0);
        let hint = self.hint[self.he.face(f)[0] as usize];
        let hit = self.surface.project(centroid, hint);
        dot(n, self.surface.normal_at(&hit)) <= FOLD_COS * l
    }

    /// Removes degenerate and folded triangles by collapsing their edges (shortest first), flipping their longest
    /// edge, or moving one of their corners to the projected mean of its neighbours; every fix must leave the
    /// triangles it touches good. Runs up to `rounds` rounds; returns how many bad faces are left.
    pub(crate) fn repair(&mut self, rounds: usize) -> usize {
        for _ in 0..rounds {
            let bad = self.bad_faces();
            if bad.is_empty() {
                return 0;
            }
            let mut fixed = 0;
            for f in bad {
                if self.he.face_alive(f) && self.face_is_bad(f) && self.fix_face(f) {
                    fixed += 1;
                }
            }
            if fixed == 0 {
                break;
            }
        }
        self.bad_faces().len()
    }

    fn fix_face(&mut self, f: u32) -> bool {
        let mut edges = [3 * f, 3 * f + 1, 3 * f + 2];
        edges.sort_by(|&x, &y| self.he.edge_length_sq(x).total_cmp(&self.he.edge_length_sq(y)));
        for &h in &edges {
            if self.try_collapse_edge(h, f32::INFINITY, CollapseGuard::Surface) {
                return true;
            }
        }
        let longest = edges[2];
        if self.he.can_flip(longest) && self.flip_fits_surface(longest) {
            self.he.flip(longest);
            return true;
        }
        let mut buf = Vec::new();
        for v in self.he.face(f) {
            if self.he.is_boundary(v) {
                continue;
            }
            buf.clear();
            self.he.neighbors(v, &mut buf);
            let c = scale(buf.iter().fold([0f32; 3], |c, &u| add(c, self.he.pos[u as usize])), 1.0 / buf.len() as f32);
            let hit = self.surface.project(c, self.hint[v as usize]);
            if self.move_fits_surface(v, &hit) {
                self.he.pos[v as usize] = hit.point;
                self.hint[v as usize] = hit.slot;
                return true;
            }
        }
        false
    }

    /// Whether a triangle with corners `a, b, c` is neither degenerate nor folded.
    fn triangle_fits_surface(&self, a: [f32; 3], b: [f32; 3], c: [f32; 3], hint: u32) -> bool {
        let n = cross(sub(b, a), sub(c, a));
        let l = length(n);
        if l < self.min_cross {
            return false;
        }
        let hit = self.surface.project(scale(add(add(a, b), c), 1.0 / 3.0), hint);
        dot(n, self.surface.normal_at(&hit)) > FOLD_COS * l
    }

    fn collapse_fits_surface(&self, h: u32, p: [f32; 3], max_sq: f32) -> bool {
        let t = self.he.twin(h);
        let (a, b) = (self.he.origin(h), self.he.origin(t));
        let dying = [h / 3, t / 3];
        let mut buf = Vec::new();
        for v in [a, b] {
            buf.clear();
            self.he.outgoing(v, &mut buf);
            for &hh in &buf {
                if dying.contains(&(hh / 3)) {
                    continue;
                }
                let q = |x: u32| {
                    if x == a || x == b { p } else { self.he.pos[x as usize] }
                };
                let [i, j, k] = self.he.face(hh / 3);
                if !self.triangle_fits_surface(q(i), q(j), q(k), self.hint[v as usize]) {
                    return false;
                }
                let e = sub(self.he.pos[self.he.dest(hh) as usize], p);
                if dot(e, e) > max_sq {
                    return false;
                }
            }
        }
        true
    }

    fn flip_fits_surface(&self, h: u32) -> bool {
        let t = self.he.twin(h);
        if t == NONE {
            return false;
        }
        let [a, b, c, d] = [self.he.origin(h), self.he.origin(t), self.he.origin(prev(h)), self.he.origin(prev(t))];
        let p = |v: u32| self.he.pos[v as usize];
        let hint = self.hint[a as usize];
        self.triangle_fits_surface(p(a), p(d), p(c), hint) && self.triangle_fits_surface(p(d), p(b), p(c), hint)
    }

    fn move_fits_surface(&self, v: u32, hit: &Hit) -> bool {
        let mut buf = Vec::new();
        self.he.outgoing(v, &mut buf);
        buf.iter().all(|&h| {
            let (b, c) = (self.he.pos[self.he.dest(h) as usize], self.he.pos[self.he.origin(prev(h)) as usize]);
            self.triangle_fits_surface(hit.point, b, c, hit.slot)
        })
    }
}

/// `mesh` (an oriented manifold) with its degenerate and folded triangles repaired (see [`Work::repair`]) and
/// nothing else changed: what the remeshers do to components too small to remesh. Degenerate means less area
/// than `degenerate_ratio` times the squared mean edge length of `mesh` itself.
pub(crate) fn repair_only(mesh: &TriMesh, degenerate_ratio: f32, rounds: usize) -> Result<TriMesh> {
    if mesh.faces.is_empty() {
        return Ok(mesh.clone());
    }
    let he = HalfEdgeMesh::from_trimesh(mesh)?;
    let l = mean_edge_length(&he);
    let min_cross = 2.0 * degenerate_ratio * l * l;
    let surface = Surface::new(mesh);
    let mut work = Work::new(he, &surface, min_cross, f32::INFINITY);
    work.init_hints();
    work.repair(rounds);
    Ok(work.he.to_trimesh().0)
}

/// What a collapse may do to the triangles that survive it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CollapseGuard {
    /// Stay non-degenerate and turn by at most acos of the value (faces already degenerate are exempt).
    Turn(f32),
    /// Stay non-degenerate and not folded against the input surface's normal (used by the repair, where the old
    /// normals are not to be trusted); the survivor may also go to either end.
    Surface,
    /// The survivor goes to the input surface point closest to the edge midpoint; the surviving triangles must
    /// stay non-degenerate, unfolded against the input and within the deviation bound of the removed vertices
    /// (used by the decimation fallback, which has no relaxation pass to bring vertices back).
    OnSurface,
}
