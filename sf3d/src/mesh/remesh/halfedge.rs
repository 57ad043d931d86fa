//! Half-edge triangle mesh with the local operators every remesher here is built from: edge split, edge
//! collapse and edge flip.
//!
//! This work is based on:
//! * S. Campagna, L. Kobbelt, H.-P. Seidel, "Directed Edges — A Scalable Representation for Triangle Meshes",
//!   Journal of Graphics Tools 3(4), 1998: half-edge `h` is corner `h % 3` of face `h / 3` and runs from that
//!   corner's vertex to the next corner's, so `next`/`prev`/`face` are arithmetic and only the twin is stored.
//! * T. K. Dey, H. Edelsbrunner, S. Guha, D. V. Nekhayev, "Topology Preserving Edge Contraction", 1999: the
//!   link condition that makes a collapse keep the surface a 2-manifold of the same topology.
//!
//! Buffers are flat (`Vec<u32>` per attribute, meshoptimizer style). Deleted faces keep their slot (their corners
//! hold [`NONE`]) and deleted vertices have no outgoing half-edge; [`HalfEdgeMesh::to_trimesh`] compacts.
//! Boundary vertices (on an edge with one face) are never moved, and removed only along the boundary by
//! [`HalfEdgeMesh::collapse_boundary`] (which the quad remesher uses to thin the boundary to its lattice spacing):
//! the isotropic remesher treats them as features, as gpytoolbox's `remesh_botsch` does (docs/engine.md §5.6).

use crate::error::{Error, Result};
use crate::mesh::remesh::bvh::{closest_on_segment, closest_on_triangle};
use crate::mesh::{TriMesh, cross, dist_sq, dot, length, sub};

/// "No half-edge / no vertex": the twin of a boundary half-edge, the corners of a deleted face, the outgoing
/// half-edge of a deleted vertex.
pub(crate) const NONE: u32 = u32::MAX;

/// Limits on what a collapse may do to the triangles that survive it; see
/// [`HalfEdgeMesh::collapse_keeps_shape`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShapeGuard {
    /// Twice the smallest area a triangle may have.
    pub(crate) min_cross: f32,
    /// Cosine of the largest normal turn.
    pub(crate) min_cos: f32,
    /// Squared length of the longest edge allowed at the survivor.
    pub(crate) max_len_sq: f32,
    /// Largest distance of an old end from the new fan.
    pub(crate) max_dev: f32,
}

/// The half-edge after `h` in its face.
#[inline]
pub(crate) fn next(h: u32) -> u32 {
    if h % 3 == 2 { h - 2 } else { h + 1 }
}

/// The half-edge before `h` in its face.
#[inline]
pub(crate) fn prev(h: u32) -> u32 {
    if h.is_multiple_of(3) { h + 2 } else { h - 1 }
}

/// A triangle mesh as directed edges; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct HalfEdgeMesh {
    /// Vertex positions (deleted vertices keep a stale value).
    pub(crate) pos: Vec<[f32; 3]>,
    /// Origin vertex of each half-edge, i.e. the vertex at each face corner; [`NONE`] for deleted faces.
    corner: Vec<u32>,
    /// Opposite half-edge, [`NONE`] on the boundary.
    twin: Vec<u32>,
    /// One outgoing half-edge per vertex; for a boundary vertex the one whose twin is [`NONE`], so that rotating
    /// with [`HalfEdgeMesh::rotate`] from it visits the whole fan. [`NONE`] for deleted or unreferenced vertices.
    out: Vec<u32>,
    /// Number of neighbouring vertices.
    valence: Vec<u32>,
    /// Whether the vertex lies on the boundary.
    boundary: Vec<bool>,
    /// Scratch marks for neighbourhood tests (`mark[v] == epoch` means marked).
    mark: Vec<u32>,
    epoch: u32,
    /// Scratch neighbour list.
    scratch: Vec<u32>,
    live_faces: usize,
    live_vertices: usize,
}

impl HalfEdgeMesh {
    /// Builds the structure and checks that `mesh` is an oriented 2-manifold (possibly with boundary).
    ///
    /// Errors with [`Error::InvalidMesh`] naming the culprit when an index is out of range, a face repeats a
    /// vertex, an edge has more than two faces, two faces use an edge in the same direction (inconsistent
    /// orientation) or a vertex's faces form more than one fan (a "bow-tie" vertex). Unreferenced vertices are
    /// allowed; they are dropped by [`HalfEdgeMesh::to_trimesh`].
    pub(crate) fn from_trimesh(mesh: &TriMesh) -> Result<Self> {
        let nv = mesh.positions.len();
        if nv >= NONE as usize || mesh.faces.len() >= (NONE as usize) / 3 {
            return Err(Error::InvalidMesh(format!(
                "{nv} vertices / {} faces exceed the 32-bit index range",
                mesh.faces.len()
            )));
        }
        let mut corner = Vec::with_capacity(3 * mesh.faces.len());
        for (f, t) in mesh.faces.iter().enumerate() {
            if let Some(&i) = t.iter().find(|&&i| i as usize >= nv) {
                return Err(Error::InvalidMesh(format!("face {f} {t:?} indexes vertex {i} past {nv} vertices")));
            }
            if t[0] == t[1] || t[1] == t[2] || t[2] == t[0] {
                return Err(Error::InvalidMesh(format!(
                    "face {f} {t:?} repeats a vertex; remove degenerate faces first"
                )));
            }
            corner.extend_from_slice(t);
        }
        let twin = match_twins(&corner)?;

        // Outgoing half-edges, preferring the boundary one; a vertex with two boundary half-edges leaving it
        // has two fans.
        let mut out = vec![NONE; nv];
        let mut incidence = vec![0u32; nv];
        for (h, &v) in corner.iter().enumerate() {
            let v = v as usize;
            incidence[v] += 1;
            if twin[h] == NONE {
                if out[v] != NONE && twin[out[v] as usize] == NONE {
                    return Err(Error::InvalidMesh(format!(
                        "vertex {v} is non-manifold: its faces form several fans that touch only at the vertex"
                    )));
                }
                out[v] = h as u32;
            } else if out[v] == NONE {
                out[v] = h as u32;
            }
        }

        let mut me = Self {
            pos: mesh.positions.clone(),
            corner,
            twin,
            out,
            valence: vec![0; nv],
            boundary: vec![false; nv],
            mark: vec![0; nv],
            epoch: 0,
            scratch: Vec::new(),
            live_faces: mesh.faces.len(),
            live_vertices: 0,
        };
        // Every fan must cover all faces of its vertex, else the vertex joins several fans.
        for (v, &incident) in incidence.iter().enumerate() {
            let start = me.out[v];
            if start == NONE {
                continue;
            }
            let is_boundary = me.twin[start as usize] == NONE;
            let mut faces = 0u32;
            let mut h = start;
            loop {
                faces += 1;
                if faces > incident {
                    break;
                }
                h = me.rotate(h);
                if h == NONE || h == start {
                    break;
                }
            }
            if faces != incident {
                return Err(Error::InvalidMesh(format!(
                    "vertex {v} is non-manifold: its {incident} faces form several fans that touch only at the vertex"
                )));
            }
            me.boundary[v] = is_boundary;
            me.valence[v] = faces + u32::from(is_boundary);
            me.live_vertices += 1;
        }
        Ok(me)
    }

    /// The live part as an indexed mesh, and for every vertex slot its new index ([`NONE`] when dropped).
    /// Faces keep their order and orientation.
    pub(crate) fn to_trimesh(&self) -> (TriMesh, Vec<u32>) {
        let mut map = vec![NONE; self.pos.len()];
        let mut positions = Vec::with_capacity(self.live_vertices);
        for ((m, &o), &p) in map.iter_mut().zip(&self.out).zip(&self.pos) {
            if o != NONE {
                *m = positions.len() as u32;
                positions.push(p);
            }
        }
        let faces = self
            .corner
            .chunks_exact(3)
            .filter(|c| c[0] != NONE)
            .map(|c| [map[c[0] as usize], map[c[1] as usize], map[c[2] as usize]])
            .collect();
        (TriMesh { positions, faces }, map)
    }

    // ---- queries -------------------------------------------------------------------------------------

    /// Number of vertex slots (live or not).
    pub(crate) fn vertex_slots(&self) -> usize {
        self.pos.len()
    }

    /// Number of half-edge slots (three per face slot).
    pub(crate) fn half_edge_slots(&self) -> usize {
        self.corner.len()
    }

    /// Number of face slots (live or not).
    pub(crate) fn face_slots(&self) -> usize {
        self.corner.len() / 3
    }

    /// Number of live vertices.
    pub(crate) fn live_vertex_count(&self) -> usize {
        self.live_vertices
    }

    /// Number of live faces.
    pub(crate) fn live_face_count(&self) -> usize {
        self.live_faces
    }

    /// Whether vertex `v` exists.
    #[inline]
    pub(crate) fn vertex_alive(&self, v: u32) -> bool {
        self.out[v as usize] != NONE
    }

    /// Whether face `f` exists.
    #[inline]
    pub(crate) fn face_alive(&self, f: u32) -> bool {
        self.corner[3 * f as usize] != NONE
    }

    /// Whether half-edge `h` belongs to a live face.
    #[inline]
    pub(crate) fn half_edge_alive(&self, h: u32) -> bool {
        self.corner[h as usize] != NONE
    }

    /// The vertices of live face `f`.
    #[inline]
    pub(crate) fn face(&self, f: u32) -> [u32; 3] {
        let b = 3 * f as usize;
        [self.corner[b], self.corner[b + 1], self.corner[b + 2]]
    }

    /// Origin vertex of half-edge `h`.
    #[inline]
    pub(crate) fn origin(&self, h: u32) -> u32 {
        self.corner[h as usize]
    }

    /// Destination vertex of half-edge `h`.
    #[inline]
    pub(crate) fn dest(&self, h: u32) -> u32 {
        self.corner[next(h) as usize]
    }

    /// Opposite half-edge of `h` ([`NONE`] on the boundary).
    #[inline]
    pub(crate) fn twin(&self, h: u32) -> u32 {
        self.twin[h as usize]
    }

    /// Whether `h` is the representative of its edge: live, and either on the boundary or the smaller of the
    /// two half-edges. Iterating over representatives visits every edge once.
    #[inline]
    pub(crate) fn is_edge_representative(&self, h: u32) -> bool {
        let t = self.twin[h as usize];
        self.corner[h as usize] != NONE && (t == NONE || t > h)
    }

    /// Number of neighbours of `v`.
    #[inline]
    pub(crate) fn valence(&self, v: u32) -> u32 {
        self.valence[v as usize]
    }

    /// Whether `v` lies on the boundary.
    #[inline]
    pub(crate) fn is_boundary(&self, v: u32) -> bool {
        self.boundary[v as usize]
    }

    /// The next outgoing half-edge around the origin of `h` (counter-clockwise for counter-clockwise faces), or
    /// [`NONE`] when `h`'s face is the last of a boundary fan.
    #[inline]
    pub(crate) fn rotate(&self, h: u32) -> u32 {
        self.twin[prev(h) as usize]
    }

    /// Appends the outgoing half-edges of live vertex `v` (one per incident face) to `buf`, in fan order.
    pub(crate) fn outgoing(&self, v: u32, buf: &mut Vec<u32>) {
        let start = self.out[v as usize];
        if start == NONE {
            return;
        }
        let mut h = start;
        loop {
            buf.push(h);
            h = self.rotate(h);
            if h == NONE || h == start {
                break;
            }
        }
    }

    /// Appends the neighbours of live vertex `v` to `buf`, in fan order.
    pub(crate) fn neighbors(&self, v: u32, buf: &mut Vec<u32>) {
        let start = self.out[v as usize];
        if start == NONE {
            return;
        }
        let mut h = start;
        loop {
            buf.push(self.dest(h));
            let t = self.rotate(h);
            if t == NONE {
                // Last face of a boundary fan: its incoming half-edge is the other boundary edge.
                buf.push(self.origin(prev(h)));
                break;
            }
            if t == start {
                break;
            }
            h = t;
        }
    }

    /// The half-edge from `a` to `b`, if there is one (on the boundary only one direction exists).
    pub(crate) fn find_half_edge(&self, a: u32, b: u32) -> Option<u32> {
        let start = self.out[a as usize];
        if start == NONE {
            return None;
        }
        let mut h = start;
        loop {
            if self.dest(h) == b {
                return Some(h);
            }
            h = self.rotate(h);
            if h == NONE || h == start {
                return None;
            }
        }
    }

    /// Whether `a` and `b` share an edge.
    pub(crate) fn adjacent(&self, a: u32, b: u32) -> bool {
        self.find_half_edge(a, b).is_some() || self.find_half_edge(b, a).is_some()
    }

    /// `(P1 − P0) × (P2 − P0)` of live face `f`: twice the area times the unit normal.
    #[inline]
    pub(crate) fn face_cross(&self, f: u32) -> [f32; 3] {
        let [a, b, c] = self.face(f).map(|v| self.pos[v as usize]);
        cross(sub(b, a), sub(c, a))
    }

    /// Squared length of the edge of half-edge `h`.
    #[inline]
    pub(crate) fn edge_length_sq(&self, h: u32) -> f32 {
        let d = sub(self.pos[self.dest(h) as usize], self.pos[self.origin(h) as usize]);
        dot(d, d)
    }

    /// Area-weighted unit normal of live vertex `v` (`[0, 0, 0]` when its faces have no area).
    pub(crate) fn vertex_normal(&self, v: u32) -> [f32; 3] {
        let start = self.out[v as usize];
        let mut n = [0f32; 3];
        if start == NONE {
            return n;
        }
        let mut h = start;
        loop {
            let c = self.face_cross(h / 3);
            n = [n[0] + c[0], n[1] + c[1], n[2] + c[2]];
            h = self.rotate(h);
            if h == NONE || h == start {
                break;
            }
        }
        let l = length(n);
        if l > 0.0 { [n[0] / l, n[1] / l, n[2] / l] } else { n }
    }

    fn next_epoch(&mut self) -> u32 {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
        self.epoch
    }

    // ---- split ---------------------------------------------------------------------------------------

    /// Splits the interior edge of `h` at `p`, adding a vertex and two faces; returns the new vertex.
    ///
    /// Precondition: `h` is live and not on the boundary. Orientation is kept: both halves of each old face keep
    /// its winding.
    pub(crate) fn split(&mut self, h: u32, p: [f32; 3]) -> u32 {
        let t = self.twin(h);
        debug_assert!(t != NONE && self.half_edge_alive(h), "split needs a live interior edge");
        let (n0, p0, n1, p1) = (next(h), prev(h), next(t), prev(t));
        let (a, b, c, d) = (self.origin(h), self.origin(t), self.origin(p0), self.origin(p1));
        let (tw_n0, tw_n1) = (self.twin(n0), self.twin(n1));

        let m = self.pos.len() as u32;
        self.pos.push(p);
        self.out.push(n0);
        self.valence.push(4);
        self.boundary.push(false);
        self.mark.push(0);

        // Old faces become (a, m, c) and (b, m, d); new faces (m, b, c) and (m, a, d).
        let f2 = self.face_slots() as u32;
        let (e0, e1, e2) = (3 * f2, 3 * f2 + 1, 3 * f2 + 2);
        let (g0, g1, g2) = (3 * f2 + 3, 3 * f2 + 4, 3 * f2 + 5);
        self.corner[n0 as usize] = m;
        self.corner[n1 as usize] = m;
        self.corner.extend_from_slice(&[m, b, c, m, a, d]);
        self.twin.extend_from_slice(&[t, tw_n0, n0, h, tw_n1, n1]);
        self.link(h, g0);
        self.link(t, e0);
        self.link(n0, e2);
        self.link(n1, g2);
        if tw_n0 != NONE {
            self.twin[tw_n0 as usize] = e1;
        }
        if tw_n1 != NONE {
            self.twin[tw_n1 as usize] = g1;
        }
        // `b`'s old outgoing half-edge n0 (b -> c) is now m -> c; `a`'s old n1 (a -> d) is now m -> d.
        if self.out[b as usize] == n0 {
            self.out[b as usize] = e1;
        }
        if self.out[a as usize] == n1 {
            self.out[a as usize] = g1;
        }
        self.valence[c as usize] += 1;
        self.valence[d as usize] += 1;
        self.live_faces += 2;
        self.live_vertices += 1;
        m
    }

    #[inline]
    fn link(&mut self, h: u32, g: u32) {
        self.twin[h as usize] = g;
        self.twin[g as usize] = h;
    }

    // ---- collapse ------------------------------------------------------------------------------------

    /// Whether collapsing `h` (moving its origin `a` onto its destination `b`, removing `a` and the two faces of
    /// the edge) keeps the mesh a manifold of the same topology.
    ///
    /// True when the edge is interior, `a` is not a boundary vertex, and the link condition holds: `a` and `b`
    /// share exactly the two neighbours opposite the edge, each of which keeps at least three neighbours (this
    /// also refuses to collapse a tetrahedron, the smallest closed surface).
    pub(crate) fn can_collapse(&mut self, h: u32) -> bool {
        let t = self.twin(h);
        if t == NONE || !self.half_edge_alive(h) {
            return false;
        }
        let (a, b) = (self.origin(h), self.origin(t));
        let (c, d) = (self.origin(prev(h)), self.origin(prev(t)));
        if self.is_boundary(a) || c == d || self.valence(c) <= 3 || self.valence(d) <= 3 {
            return false;
        }
        self.shared_neighbors(a, b) == 2
    }

    /// How many neighbours `a` and `b` have in common (the link condition's count).
    fn shared_neighbors(&mut self, a: u32, b: u32) -> usize {
        let epoch = self.next_epoch();
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        self.neighbors(a, &mut buf);
        for &x in &buf {
            self.mark[x as usize] = epoch;
        }
        buf.clear();
        self.neighbors(b, &mut buf);
        let shared = buf.iter().filter(|&&x| self.mark[x as usize] == epoch).count();
        self.scratch = buf;
        shared
    }

    /// Collapses `h` as described in [`HalfEdgeMesh::can_collapse`] (which must hold) and puts the surviving
    /// vertex `b` at `p`. Returns `b`.
    pub(crate) fn collapse(&mut self, h: u32, p: [f32; 3]) -> u32 {
        let t = self.twin(h);
        debug_assert!(t != NONE, "collapse needs an interior edge");
        let (n0, p0, n1, p1) = (next(h), prev(h), next(t), prev(t));
        let (a, b, c, d) = (self.origin(h), self.origin(t), self.origin(p0), self.origin(p1));
        let (x, y) = (self.twin(n0), self.twin(p0)); // c -> b, a -> c
        let (u, w) = (self.twin(n1), self.twin(p1)); // d -> a, b -> d
        debug_assert!(y != NONE && u != NONE, "edges at an interior vertex have twins");

        // Rename `a` to `b` in every face around `a` (the two dying faces included; they are cleared below).
        let mut hh = self.out[a as usize];
        let start = hh;
        loop {
            self.corner[hh as usize] = b;
            hh = self.rotate(hh);
            if hh == NONE || hh == start {
                break;
            }
        }
        // Stitch the neighbours of the two dying faces together.
        if x != NONE {
            self.twin[x as usize] = y;
        }
        self.twin[y as usize] = x;
        self.twin[u as usize] = w;
        if w != NONE {
            self.twin[w as usize] = u;
        }
        // Outgoing half-edges that die: b's n0/t, c's p0, d's p1. `y` (now b -> c) and `u` (d -> b) take over;
        // each inherits the boundary status of the half-edge it replaces (see the module docs).
        if self.out[b as usize] == n0 || self.out[b as usize] == t {
            self.out[b as usize] = y;
        }
        if self.out[c as usize] == p0 {
            self.out[c as usize] = next(y);
        }
        if self.out[d as usize] == p1 {
            self.out[d as usize] = u;
        }
        for hh in [h, n0, p0, t, n1, p1] {
            self.corner[hh as usize] = NONE;
            self.twin[hh as usize] = NONE;
        }
        self.valence[b as usize] = self.valence[a as usize] + self.valence[b as usize] - 4;
        self.valence[c as usize] -= 1;
        self.valence[d as usize] -= 1;
        self.out[a as usize] = NONE;
        self.valence[a as usize] = 0;
        self.pos[b as usize] = p;
        self.live_faces -= 2;
        self.live_vertices -= 1;
        b
    }

    /// Whether the boundary half-edge `h` (from `a` to `b`, no twin) may be collapsed by
    /// [`HalfEdgeMesh::collapse_boundary`]: its face is not alone (at most one of its other two edges is on the
    /// boundary), `a` and `b` share exactly one neighbour (the face's third vertex `c`; the link condition of a
    /// boundary edge, which also refuses to close a boundary loop of three edges), and `c` keeps a valid valence.
    pub(crate) fn can_collapse_boundary(&mut self, h: u32) -> bool {
        if !self.half_edge_alive(h) || self.twin(h) != NONE {
            return false;
        }
        let (a, b, c) = (self.origin(h), self.dest(h), self.origin(prev(h)));
        if self.twin(next(h)) == NONE && self.twin(prev(h)) == NONE {
            return false;
        }
        // An interior `c` needs three neighbours left, a boundary one two.
        let min_after = if self.is_boundary(c) { 2 } else { 3 };
        if self.valence(c) <= min_after {
            return false;
        }
        self.shared_neighbors(a, b) == 1
    }

    /// The other boundary neighbour of boundary vertex `a`: the origin of the boundary edge that ends at `a`.
    pub(crate) fn boundary_predecessor(&self, a: u32) -> u32 {
        let start = self.out[a as usize];
        let mut h = start;
        loop {
            let r = self.rotate(h);
            if r == NONE || r == start {
                return self.origin(prev(h));
            }
            h = r;
        }
    }

    /// Collapses the boundary half-edge `h` (from `a` to `b`; [`HalfEdgeMesh::can_collapse_boundary`] must hold):
    /// `a` is removed along the boundary into `b`, which keeps its position, and the face of `h` disappears.
    /// Returns `b`.
    pub(crate) fn collapse_boundary(&mut self, h: u32) -> u32 {
        debug_assert!(self.twin(h) == NONE, "collapse_boundary needs a boundary half-edge");
        let (n0, p0) = (next(h), prev(h));
        let (a, b, c) = (self.origin(h), self.dest(h), self.origin(p0));
        let (x, y) = (self.twin(n0), self.twin(p0)); // c -> b, a -> c
        // Rename `a` to `b` in every face around `a` (the dying face included; it is cleared below).
        let start = self.out[a as usize];
        let mut hh = start;
        loop {
            self.corner[hh as usize] = b;
            hh = self.rotate(hh);
            if hh == NONE || hh == start {
                break;
            }
        }
        // The face's other two edges become one: `y` (now b -> c) and `x` (c -> b); a missing one leaves the
        // other on the boundary.
        if x != NONE {
            self.twin[x as usize] = y;
        }
        if y != NONE {
            self.twin[y as usize] = x;
        }
        // b's boundary edge `n0` dies when b–c was on the boundary: `y` takes over. c's `p0` dies: `x` takes over
        // (it is the boundary one when c–a was on the boundary, and exists whenever `p0` was c's choice).
        if self.out[b as usize] == n0 {
            self.out[b as usize] = y;
        }
        if self.out[c as usize] == p0 {
            self.out[c as usize] = x;
        }
        for hh in [h, n0, p0] {
            self.corner[hh as usize] = NONE;
            self.twin[hh as usize] = NONE;
        }
        self.valence[b as usize] = self.valence[a as usize] + self.valence[b as usize] - 3;
        self.valence[c as usize] -= 1;
        self.out[a as usize] = NONE;
        self.valence[a as usize] = 0;
        self.boundary[a as usize] = false;
        self.live_faces -= 1;
        self.live_vertices -= 1;
        b
    }

    /// Whether [`HalfEdgeMesh::collapse_boundary`] of `h` (from `a` to `b`) keeps the shape: every surviving
    /// triangle around `a`, with `a` moved onto `b`, stays non-degenerate, turns by at most `acos(min_cos)` and
    /// has edges from `b` at most `max_len_sq.sqrt()` long; and `a` lies within `max_dev` of the new boundary
    /// segment from its other boundary neighbour to `b`.
    pub(crate) fn boundary_collapse_keeps_shape(&self, h: u32, guard: &ShapeGuard) -> bool {
        let (a, b) = (self.origin(h), self.dest(h));
        let (pa, pb) = (self.pos[a as usize], self.pos[b as usize]);
        let z = self.boundary_predecessor(a);
        if z == b {
            return false;
        }
        let pz = self.pos[z as usize];
        if dist_sq(pa, closest_on_segment(pa, pz, pb)) > guard.max_dev * guard.max_dev {
            return false;
        }
        let e = sub(pz, pb);
        if dot(e, e) > guard.max_len_sq {
            return false;
        }
        let dying = h / 3;
        let start = self.out[a as usize];
        let mut hh = start;
        loop {
            let f = hh / 3;
            if f != dying {
                let q = |x: u32| if x == a { pb } else { self.pos[x as usize] };
                let [i, j, k] = self.face(f);
                if !self.moved_face_keeps_shape(f, &[q(i), q(j), q(k)], guard) {
                    return false;
                }
                let other = sub(self.pos[self.dest(hh) as usize], pb);
                if dot(other, other) > guard.max_len_sq {
                    return false;
                }
            }
            hh = self.rotate(hh);
            if hh == NONE || hh == start {
                break;
            }
        }
        true
    }

    /// Whether live face `f`, with its corners moved to `tri`, stays non-degenerate and turns by at most
    /// `acos(min_cos)` (the turn is not judged for a face that was already degenerate).
    fn moved_face_keeps_shape(&self, f: u32, tri: &[[f32; 3]; 3], guard: &ShapeGuard) -> bool {
        let n_new = cross(sub(tri[1], tri[0]), sub(tri[2], tri[0]));
        let l_new = length(n_new);
        if l_new < guard.min_cross {
            return false;
        }
        let n_old = self.face_cross(f);
        let l_old = length(n_old);
        l_old < guard.min_cross || dot(n_new, n_old) >= guard.min_cos * l_new * l_old
    }

    /// Whether moving both ends of `h` to `p` (a collapse of `h`) keeps the shape, i.e. for every triangle that
    /// survives around them:
    /// * it stays non-degenerate (`|cross| ≥ min_cross`);
    /// * its normal turns by at most `acos(min_cos)` (not judged for triangles that were already degenerate);
    /// * its edges from `p` are at most `max_len_sq.sqrt()` long;
    ///
    /// and the old positions of both ends lie within `max_dev` of the new fan around `p`, so the collapse cannot
    /// shave off a feature thinner than an edge.
    pub(crate) fn collapse_keeps_shape(&self, h: u32, p: [f32; 3], guard: &ShapeGuard) -> bool {
        let t = self.twin(h);
        let (a, b) = (self.origin(h), self.origin(t));
        let (pa, pb) = (self.pos[a as usize], self.pos[b as usize]);
        let dying = [h / 3, t / 3];
        let (mut dev_a, mut dev_b) = (f32::INFINITY, f32::INFINITY);
        for v in [a, b] {
            let start = self.out[v as usize];
            let mut hh = start;
            loop {
                let f = hh / 3;
                if !dying.contains(&f) {
                    let [i, j, k] = self.face(f);
                    let q = |x: u32| {
                        if x == a || x == b { p } else { self.pos[x as usize] }
                    };
                    let tri = [q(i), q(j), q(k)];
                    if !self.moved_face_keeps_shape(f, &tri, guard) {
                        return false;
                    }
                    let other = self.dest(hh);
                    let e = sub(self.pos[other as usize], p);
                    if other != a && other != b && dot(e, e) > guard.max_len_sq {
                        return false;
                    }
                    dev_a = dev_a.min(dist_sq(pa, closest_on_triangle(pa, &tri)));
                    dev_b = dev_b.min(dist_sq(pb, closest_on_triangle(pb, &tri)));
                }
                hh = self.rotate(hh);
                if hh == NONE || hh == start {
                    break;
                }
            }
        }
        let max_dev_sq = guard.max_dev * guard.max_dev;
        dev_a <= max_dev_sq && dev_b <= max_dev_sq
    }

    // ---- flip ----------------------------------------------------------------------------------------

    /// Whether flipping the interior edge of `h` (replacing edge `a–b` by `c–d`, the vertices opposite it)
    /// keeps the mesh manifold: `c ≠ d`, `c` and `d` not already adjacent, and `a`, `b` keep at least three
    /// neighbours.
    pub(crate) fn can_flip(&mut self, h: u32) -> bool {
        let t = self.twin(h);
        if t == NONE || !self.half_edge_alive(h) {
            return false;
        }
        let (a, b) = (self.origin(h), self.origin(t));
        let (c, d) = (self.origin(prev(h)), self.origin(prev(t)));
        if c == d || self.valence(a) <= 3 || self.valence(b) <= 3 {
            return false;
        }
        !self.adjacent(c, d)
    }

    /// The two faces `(a, d, c)` and `(d, b, c)` a flip of `h` would create, as unnormalised normals.
    pub(crate) fn flipped_crosses(&self, h: u32) -> ([f32; 3], [f32; 3]) {
        let t = self.twin(h);
        let [a, b, c, d] =
            [self.origin(h), self.origin(t), self.origin(prev(h)), self.origin(prev(t))].map(|v| self.pos[v as usize]);
        (cross(sub(d, a), sub(c, a)), cross(sub(b, d), sub(c, d)))
    }

    /// Flips the edge of `h` ([`HalfEdgeMesh::can_flip`] must hold): faces `(a, b, c)`, `(b, a, d)` become
    /// `(a, d, c)`, `(d, b, c)`, with the same winding.
    pub(crate) fn flip(&mut self, h: u32) {
        let t = self.twin(h);
        let (n0, p0, n1, p1) = (next(h), prev(h), next(t), prev(t));
        let (a, b, c, d) = (self.origin(h), self.origin(t), self.origin(p0), self.origin(p1));
        let (tw_n0, tw_n1, tw_p1) = (self.twin(n0), self.twin(n1), self.twin(p1));
        // Slots of face 0: h = a -> d, n0 = d -> c, p0 = c -> a (unchanged).
        // Slots of face 1: t = d -> b, n1 = b -> c, p1 = c -> d.
        self.corner[n0 as usize] = d;
        self.corner[t as usize] = d;
        self.corner[n1 as usize] = b;
        self.corner[p1 as usize] = c;
        self.set_twin(h, tw_n1);
        self.link(n0, p1);
        self.set_twin(t, tw_p1);
        self.set_twin(n1, tw_n0);
        if self.out[a as usize] == n1 {
            self.out[a as usize] = h;
        }
        if self.out[b as usize] == t || self.out[b as usize] == n0 {
            self.out[b as usize] = n1;
        }
        if self.out[d as usize] == p1 {
            self.out[d as usize] = t;
        }
        self.valence[a as usize] -= 1;
        self.valence[b as usize] -= 1;
        self.valence[c as usize] += 1;
        self.valence[d as usize] += 1;
    }

    #[inline]
    fn set_twin(&mut self, h: u32, g: u32) {
        self.twin[h as usize] = g;
        if g != NONE {
            self.twin[g as usize] = h;
        }
    }

    /// Checks every structural invariant; for tests and debugging. Returns the first violation found.
    #[cfg(test)]
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let mut live_faces = 0;
        for h in 0..self.half_edge_slots() as u32 {
            if !self.half_edge_alive(h) {
                continue;
            }
            if h % 3 == 0 {
                live_faces += 1;
            }
            let t = self.twin(h);
            if t != NONE {
                if self.twin(t) != h {
                    return Err(format!("twin of {h} is {t} whose twin is {}", self.twin(t)));
                }
                if self.origin(t) != self.dest(h) || self.dest(t) != self.origin(h) {
                    return Err(format!("half-edges {h} and {t} are not opposite"));
                }
            }
            if !self.vertex_alive(self.origin(h)) {
                return Err(format!("half-edge {h} starts at deleted vertex {}", self.origin(h)));
            }
        }
        if live_faces != self.live_faces {
            return Err(format!("{live_faces} live faces, counter says {}", self.live_faces));
        }
        let mut live_vertices = 0;
        let mut buf = Vec::new();
        for v in 0..self.vertex_slots() as u32 {
            if !self.vertex_alive(v) {
                continue;
            }
            live_vertices += 1;
            let o = self.out[v as usize];
            if self.origin(o) != v {
                return Err(format!("outgoing half-edge {o} of vertex {v} starts at {}", self.origin(o)));
            }
            if self.boundary[v as usize] != (self.twin(o) == NONE) {
                return Err(format!("vertex {v}: boundary flag disagrees with its outgoing half-edge"));
            }
            buf.clear();
            self.neighbors(v, &mut buf);
            if buf.len() as u32 != self.valence(v) {
                return Err(format!("vertex {v} has {} neighbours, valence says {}", buf.len(), self.valence(v)));
            }
            let mut sorted = buf.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != buf.len() {
                return Err(format!("vertex {v} sees a neighbour twice: {buf:?}"));
            }
        }
        if live_vertices != self.live_vertices {
            return Err(format!("{live_vertices} live vertices, counter says {}", self.live_vertices));
        }
        Ok(())
    }
}

/// Pairs every half-edge with the opposite one, or fails on a non-manifold or inconsistently oriented edge.
fn match_twins(corner: &[u32]) -> Result<Vec<u32>> {
    use rayon::slice::ParallelSliceMut;

    // Sort (undirected key, half-edge) so the half-edges of one edge are adjacent.
    let mut keys: Vec<(u64, u32)> = (0..corner.len() as u32)
        .map(|h| {
            let (a, b) = (corner[h as usize], corner[next(h) as usize]);
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            ((u64::from(lo) << 32) | u64::from(hi), h)
        })
        .collect();
    keys.par_sort_unstable();
    let mut twin = vec![NONE; corner.len()];
    let mut i = 0;
    while i < keys.len() {
        let mut j = i + 1;
        while j < keys.len() && keys[j].0 == keys[i].0 {
            j += 1;
        }
        let (lo, hi) = ((keys[i].0 >> 32) as u32, keys[i].0 as u32);
        match j - i {
            1 => {}
            2 => {
                let (h, g) = (keys[i].1, keys[i + 1].1);
                if corner[h as usize] == corner[g as usize] {
                    return Err(Error::InvalidMesh(format!(
                        "faces {} and {} both use edge ({lo}, {hi}) in the same direction: orientation is \
                         inconsistent",
                        h / 3,
                        g / 3
                    )));
                }
                twin[h as usize] = g;
                twin[g as usize] = h;
            }
            n => {
                return Err(Error::InvalidMesh(format!(
                    "edge ({lo}, {hi}) is non-manifold: {n} faces share it (at most 2 allowed)"
                )));
            }
        }
        i = j;
    }
    Ok(twin)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regular octahedron: 6 vertices of valence 4, 8 outward faces, closed (χ = 2).
    pub(crate) fn octahedron() -> TriMesh {
        let positions = vec![
            [1.0, 0.0, 0.0],
            [-1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, -1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, -1.0],
        ];
        let faces = vec![[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]];
        TriMesh { positions, faces }
    }

    #[test]
    fn octahedron_builds_with_valence_four() {
        let he = HalfEdgeMesh::from_trimesh(&octahedron()).unwrap();
        he.check().unwrap();
        for v in 0..6 {
            assert_eq!(he.valence(v), 4);
            assert!(!he.is_boundary(v));
        }
        assert!(he.find_half_edge(0, 2).is_some());
        // 0 and 1 are antipodal: no edge.
        assert!(he.find_half_edge(0, 1).is_none());
    }

    /// Splitting an edge of the octahedron adds one vertex of valence 4 and two faces; the two vertices opposite
    /// the edge gain a neighbour. The surface stays closed: V − E + F = 7 − 15 + 10 = 2.
    #[test]
    fn split_adds_vertex_and_two_faces() {
        let mut he = HalfEdgeMesh::from_trimesh(&octahedron()).unwrap();
        let h = he.find_half_edge(0, 2).unwrap();
        let m = he.split(h, [0.5, 0.5, 0.0]);
        he.check().unwrap();
        assert_eq!(he.valence(m), 4);
        assert_eq!(he.valence(4), 5);
        assert_eq!(he.valence(5), 5);
        assert_eq!(he.live_face_count(), 10);
        let (m2, _) = he.to_trimesh();
        assert_eq!(m2.vertex_count() as i64 - (3 * m2.face_count() / 2) as i64 + m2.face_count() as i64, 2);
        assert!(m2.signed_volume() > 0.0);
    }

    /// On the octahedron every vertex pair sharing an edge has exactly the two opposite vertices in common, but
    /// those have valence 4 and would drop to 3: the collapse is legal and yields a closed 5-vertex surface.
    /// Collapsing again from there is refused wherever it would produce a valence-2 vertex.
    #[test]
    fn collapse_respects_link_condition() {
        let mut he = HalfEdgeMesh::from_trimesh(&octahedron()).unwrap();
        let h = he.find_half_edge(0, 2).unwrap();
        assert!(he.can_collapse(h));
        he.collapse(h, [0.5, 0.5, 0.0]);
        he.check().unwrap();
        assert_eq!(he.live_vertex_count(), 5);
        assert_eq!(he.live_face_count(), 6);
        // Vertex 4 (a pole) now has valence 3: any collapse whose opposite vertex is 4 must be refused.
        assert_eq!(he.valence(4), 3);
        let h = he.find_half_edge(2, 1).unwrap();
        assert!(!he.can_collapse(h), "opposite vertex 4 would reach valence 2");
    }

    /// A tetrahedron is the smallest closed surface: no edge of it may collapse.
    #[test]
    fn tetrahedron_never_collapses() {
        let m = TriMesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            faces: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        };
        let mut he = HalfEdgeMesh::from_trimesh(&m).unwrap();
        for h in 0..12 {
            assert!(!he.can_collapse(h));
            assert!(!he.can_flip(h), "flipping a tetrahedron edge would duplicate an edge");
        }
    }

    /// Flipping the equator edge 0–2 of the octahedron replaces it by the pole-to-pole edge 4–5.
    #[test]
    fn flip_swaps_diagonal() {
        let mut he = HalfEdgeMesh::from_trimesh(&octahedron()).unwrap();
        let h = he.find_half_edge(0, 2).unwrap();
        assert!(he.can_flip(h));
        let before = TriMesh::signed_volume(&he.to_trimesh().0);
        he.flip(h);
        he.check().unwrap();
        assert!(he.find_half_edge(0, 2).is_none());
        assert!(he.find_half_edge(4, 5).is_some());
        assert_eq!((he.valence(0), he.valence(2), he.valence(4), he.valence(5)), (3, 3, 5, 5));
        // Winding kept: the volume keeps its sign (it shrinks, the new edge cuts through the inside).
        let after = he.to_trimesh().0.signed_volume();
        assert!(before > 0.0 && after > 0.0);
    }

    /// A single triangle: every vertex is a boundary vertex with two neighbours, nothing may collapse or flip.
    #[test]
    fn open_triangle_is_all_boundary() {
        let m = TriMesh { positions: vec![[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], faces: vec![[0, 1, 2]] };
        let mut he = HalfEdgeMesh::from_trimesh(&m).unwrap();
        he.check().unwrap();
        for v in 0..3 {
            assert!(he.is_boundary(v));
            assert_eq!(he.valence(v), 2);
        }
        for h in 0..3 {
            assert!(!he.can_collapse(h));
            assert!(!he.can_flip(h));
        }
    }

    #[test]
    fn rejects_edge_with_three_faces() {
        let m = TriMesh {
            positions: vec![[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
            faces: vec![[0, 1, 2], [1, 0, 3], [0, 1, 4]],
        };
        let e = HalfEdgeMesh::from_trimesh(&m).unwrap_err().to_string();
        assert!(e.contains("non-manifold") && e.contains("3 faces"), "{e}");
    }

    #[test]
    fn rejects_inconsistent_orientation() {
        let m = TriMesh {
            positions: vec![[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]],
            faces: vec![[0, 1, 2], [0, 1, 3]],
        };
        let e = HalfEdgeMesh::from_trimesh(&m).unwrap_err().to_string();
        assert!(e.contains("same direction"), "{e}");
    }

    /// Two triangles touching only at vertex 0 (a bow-tie) make vertex 0 non-manifold.
    #[test]
    fn rejects_bowtie_vertex() {
        let m = TriMesh {
            positions: vec![[0.0; 3], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [-1.0, -1.0, 0.0]],
            faces: vec![[0, 1, 2], [0, 3, 4]],
        };
        let e = HalfEdgeMesh::from_trimesh(&m).unwrap_err().to_string();
        assert!(e.contains("vertex 0 is non-manifold"), "{e}");
    }

    /// Two closed fans glued at one vertex (two octahedra sharing a vertex) have no boundary half-edge to give
    /// the problem away; the fan walk must catch it.
    #[test]
    fn rejects_closed_bowtie_vertex() {
        let a = octahedron();
        let mut positions = a.positions.clone();
        positions.extend(a.positions.iter().map(|p| [p[0] + 2.0, p[1], p[2]]));
        let mut faces = a.faces.clone();
        // Second octahedron: its vertex 1 (at x = -1 + 2 = 1) is welded onto vertex 0 of the first.
        faces.extend(a.faces.iter().map(|t| t.map(|i| if i == 1 { 0 } else { i + 6 })));
        let e = HalfEdgeMesh::from_trimesh(&TriMesh { positions, faces }).unwrap_err().to_string();
        assert!(e.contains("vertex 0 is non-manifold"), "{e}");
    }

    #[test]
    fn rejects_repeated_vertex() {
        let m = TriMesh { positions: vec![[0.0; 3], [1.0, 0.0, 0.0]], faces: vec![[0, 1, 1]] };
        assert!(HalfEdgeMesh::from_trimesh(&m).is_err());
    }
}
