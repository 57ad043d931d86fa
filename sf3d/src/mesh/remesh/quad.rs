//! Field-aligned quad-dominant remeshing: SF3D's `remesh = quad` (docs/engine.md §5.6), which the reference runs
//! through Instant Meshes (`pynanoinstantmeshes` 0.0.3: 4-RoSy, 4-PoSy, no creases, no boundary alignment, 2
//! smoothing iterations) and then triangulates each quad `(a, b, c, d)` as `(a, b, c)`, `(a, c, d)`.
//!
//! This work is based on:
//! * W. Jakob, M. Tarini, D. Panozzo, O. Sorkine-Hornung, "Instant Field-Aligned Meshes", SIGGRAPH Asia 2015,
//!   for the pipeline and the fields (see [`super::field`]); the lattice spacing from a vertex target is
//!   `√(A / n)` as in its batch mode.
//!
//! This is the extraction step only: SF3D asks Instant Meshes for `vertex_count / 4` vertices and Instant Meshes
//! subdivides its extraction into pure quads, about four times as many vertices; [`super::pure_quad_remesh`]
//! composes the two for [`super::remesh`].
//!
//! Pipeline:
//! 1. a fine working mesh: thinning of the boundary to about one vertex per lattice spacing (the extraction
//!    below never merges boundary vertices), shortest-edge decimation down to [`FINE_VERTICES_PER_TARGET`]
//!    vertices per target vertex when the input is much denser, then splitting of every edge longer than
//!    [`FINE_MAX_EDGE_RATIO`] lattice spacings. Instant Meshes splits down to half a spacing; with SF3D's `V / 4` target the
//!    marching-tets mesh sits right at that density, and ¾ keeps every lattice cell populated (no empty circle
//!    wider than a cell in a mesh of such edges) at about half the working-mesh size, i.e. half the field cost;
//! 2. orientation and position fields on its vertex graph ([`super::field::solve`]);
//! 3. **extraction** — where this port differs from Instant Meshes. Instant Meshes classifies every edge by the
//!    lattice offset between its ends, merges the ends of zero-offset edges with a union-find, builds a graph of
//!    the unit-offset links and traces faces in it (plus heuristics that fill holes and drop spurious vertices).
//!    We classify the same way and merge in the same order (lowest lattice mismatch first, never merging two
//!    clusters already linked by a unit offset), but each merge is a half-edge collapse of the working mesh
//!    under the link condition. So the extracted surface is a manifold triangle mesh with the input's topology
//!    and winding by construction, with one vertex per lattice point (where the collapses were allowed), placed
//!    at the weighted mean of its cluster's lattice positions (Instant Meshes' weights) and projected onto the
//!    input. Faces are then formed by pairing adjacent triangles whose union is a convex, near-rectangular quad
//!    aligned with the cross field (greedy, best first), not by graph tracing; unpaired triangles stay triangles.
//!    A merge that the link condition refuses leaves an extra vertex (a triangle fan) where Instant Meshes would
//!    make a pentagon or a hole;
//! 4. snapping of near-coincident vertices, repair of degenerate or folded triangles, 2 rounds of tangential
//!    smoothing with re-projection (`smooth_iter = 2`).
//!
//! Components that would get fewer than a dozen vertices are kept as triangles, only cleared of degenerate ones, as the
//! isotropic remesher does (see [`super::triangle`]).
//!
//! Not ported: crease handling, boundary alignment, random (non-deterministic) orderings. Pure-quad output is
//! [`super::subdivide_to_quads`].

use crate::error::{Error, Result};
use crate::mesh::remesh::decimate::collapse_shortest_edges;
use crate::mesh::remesh::field::{self, Fields, Frame, Graph, compat_orientation, compat_position};
use crate::mesh::remesh::halfedge::{HalfEdgeMesh, NONE, prev};
use crate::mesh::remesh::passes::{COLLAPSE_MIN_COS, CollapseGuard, Work, repair_only};
use crate::mesh::remesh::surface::Surface;
use crate::mesh::remesh::triangle::{
    COLLAPSE_MAX_DEVIATION_RATIO, DEGENERATE_AREA_RATIO, REPAIR_ROUNDS, SMALL_COMPONENT_VERTICES,
};
use crate::mesh::remesh::{Steps, split_small_components, surface_area};
use crate::mesh::{TriMesh, add, cross, dot, length, normalize, scale, sub};
use crate::progress::Progress;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

/// Instant Meshes' `smooth_iter` as SF3D calls it.
pub const DEFAULT_SMOOTH_ITERATIONS: u32 = 2;
/// The working mesh keeps about this many vertices per target vertex (lattice spacing ≈ 2.3 edges).
const FINE_VERTICES_PER_TARGET: usize = 6;
/// Decimate the input only when it has more than this many times the vertices the working mesh needs (the
/// field solve costs far more per vertex than a collapse).
const FINE_DECIMATE_FACTOR: f32 = 1.25;
/// Working-mesh edges longer than this times the lattice spacing are split (Instant Meshes: ½; see the module
/// docs).
const FINE_MAX_EDGE_RATIO: f32 = 0.75;
/// Boundary edges shorter than this times the lattice spacing are removed along the boundary before the fields are
/// solved (open meshes: the extraction keeps every boundary vertex).
const BOUNDARY_MIN_EDGE_RATIO: f32 = 0.75;
/// ... as long as the boundary edge that replaces them is at most this long (times the spacing).
const BOUNDARY_MAX_EDGE_RATIO: f32 = 1.5;
/// After extraction, vertices closer than this times the spacing are merged (Instant Meshes snaps at 0.3).
const SNAP_RATIO: f32 = 0.3;
/// A snap may not create an edge longer than this times the spacing.
const SNAP_MAX_EDGE_RATIO: f32 = 2.0;
/// Weight of a fine vertex in its cluster's position: `exp(−CLUSTER_WEIGHT_FALLOFF · |o − v|² / spacing²)`
/// (Instant Meshes: 9).
const CLUSTER_WEIGHT_FALLOFF: f32 = 9.0;
/// Two triangles the lattice does not pair form a quad only when every corner angle is between 50° and 130°
/// (|cos| below this).
const QUAD_MAX_ABS_COS: f32 = 0.643;
/// Two triangles across a lattice diagonal form a quad when convex with every corner angle between 25° and 155°
/// (|cos| below this): the lattice already says they are a quad, the check only refuses slivers.
const LATTICE_QUAD_MAX_ABS_COS: f32 = 0.906;
/// The smallest vertex target of the remeshed part.
const MIN_TARGET: u32 = 4;
/// Score added to a pairing across an edge the lattice marks as a quad diagonal (more than any geometric score,
/// so those are matched first).
const LATTICE_DIAGONAL_BONUS: f32 = 4.0;
/// Below this length a vector is considered zero.
const TINY: f32 = 1e-12;

/// Options of [`quad_remesh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuadOptions {
    /// Vertices the result should have (what Instant Meshes is asked for).
    pub target_vertices: u32,
    /// Rounds of tangential smoothing after extraction.
    pub smooth_iterations: u32,
}

/// Target of [`QuadOptions::default`]; callers normally set their own (see [`super::quad_target_vertices`]).
pub const DEFAULT_QUAD_TARGET: u32 = 1000;

impl Default for QuadOptions {
    /// [`DEFAULT_QUAD_TARGET`] vertices, [`DEFAULT_SMOOTH_ITERATIONS`] rounds of smoothing.
    fn default() -> Self {
        Self { target_vertices: DEFAULT_QUAD_TARGET, smooth_iterations: DEFAULT_SMOOTH_ITERATIONS }
    }
}

/// A quad-dominant mesh: quads and the triangles that could not be paired.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuadMesh {
    /// Vertex positions.
    pub positions: Vec<[f32; 3]>,
    /// Quads `(a, b, c, d)` with the winding of the input; `a–c` is the diagonal of the two triangles they came
    /// from, so [`QuadMesh::triangulate`] gives those triangles back.
    pub quads: Vec<[u32; 4]>,
    /// Faces left as triangles.
    pub triangles: Vec<[u32; 3]>,
}

impl QuadMesh {
    /// Fraction of the faces that are quads (`quads / (quads + triangles)`; 0 for an empty mesh).
    pub fn quad_ratio(&self) -> f32 {
        let n = self.quads.len() + self.triangles.len();
        if n == 0 { 0.0 } else { self.quads.len() as f32 / n as f32 }
    }

    /// Triangles for export, as the reference's trimesh load does: quad `(a, b, c, d)` → `(a, b, c)`, `(a, c, d)`,
    /// then the unpaired triangles. Vertices are shared (nothing to merge).
    pub fn triangulate(&self) -> TriMesh {
        let mut faces = Vec::with_capacity(2 * self.quads.len() + self.triangles.len());
        for &[a, b, c, d] in &self.quads {
            faces.push([a, b, c]);
            faces.push([a, c, d]);
        }
        faces.extend_from_slice(&self.triangles);
        TriMesh { positions: self.positions.clone(), faces }
    }
}

/// Remeshes `mesh` into a field-aligned quad-dominant mesh of about `options.target_vertices` vertices.
///
/// Preconditions: `mesh` is an oriented 2-manifold (closed or with boundary, any number of components), else
/// [`Error::InvalidMesh`]; `target_vertices > 0`, else [`Error::Param`].
///
/// Guarantees: the triangulation ([`QuadMesh::triangulate`]) is a manifold with the input's Euler characteristic
/// and winding, vertices lie on the input surface; an open mesh's boundary is thinned to about one vertex per
/// lattice spacing, its remaining vertices kept in place, within the collapse deviation bound of the input
/// outline. Degenerate and folded triangles are repaired; any
/// that survive are logged. Deterministic.
pub fn quad_remesh(mesh: &TriMesh, options: &QuadOptions, progress: &mut dyn Progress) -> Result<QuadMesh> {
    if options.target_vertices == 0 {
        return Err(sf3d_shared::ParamError::new("vertex_count", "must be positive").into());
    }
    let whole = HalfEdgeMesh::from_trimesh(mesh)?;
    if whole.live_face_count() == 0 {
        return Ok(QuadMesh::default());
    }
    drop(whole);
    let first_spacing = (surface_area(mesh) / f64::from(options.target_vertices)).sqrt() as f32;
    if !(first_spacing.is_finite() && first_spacing > 0.0) {
        return Err(Error::InvalidMesh(format!("surface has no extent (lattice spacing {first_spacing})")));
    }
    // A quad lattice of spacing s has one vertex per s² of area.
    let parts = split_small_components(mesh, SMALL_COMPONENT_VERTICES * f64::from(first_spacing).powi(2));
    if parts.big.faces.is_empty() {
        let small = repair_only(&parts.small, DEGENERATE_AREA_RATIO, REPAIR_ROUNDS)?;
        return Ok(QuadMesh { positions: small.positions, quads: Vec::new(), triangles: small.faces });
    }
    let target = options.target_vertices.saturating_sub(parts.small.vertex_count() as u32).max(MIN_TARGET);
    let he = HalfEdgeMesh::from_trimesh(&parts.big)?;
    let surface = Surface::new(&parts.big);
    let spacing = (surface_area(&parts.big) / f64::from(target)).sqrt() as f32;
    let min_cross = 2.0 * DEGENERATE_AREA_RATIO * spacing * spacing;
    let max_dev = COLLAPSE_MAX_DEVIATION_RATIO * spacing;
    let small = repair_only(&parts.small, DEGENERATE_AREA_RATIO, REPAIR_ROUNDS)?;
    let mut steps = Steps::new(progress, 8 + u64::from(options.smooth_iterations));

    // 1. The working mesh.
    let mut work = Work::new(he, &surface, min_cross, max_dev);
    work.init_hints();
    // Extraction keeps boundary vertices where they are, so an open mesh's outline is thinned to about one
    // vertex per lattice spacing first (else a long boundary alone would exceed the vertex budget). Before the
    // interior is decimated: there the neighbours of a boundary vertex are still close, so moving it along the
    // boundary makes no long edges.
    work.thin_boundary(BOUNDARY_MIN_EDGE_RATIO * spacing, BOUNDARY_MAX_EDGE_RATIO * spacing);
    let fine_target = FINE_VERTICES_PER_TARGET * target as usize;
    if work.he.live_vertex_count() as f32 > FINE_DECIMATE_FACTOR * fine_target as f32 {
        collapse_shortest_edges(&mut work, fine_target, CollapseGuard::Turn(COLLAPSE_MIN_COS), &mut steps)?;
    }
    work.split_long_edges(FINE_MAX_EDGE_RATIO * spacing);
    steps.step()?;
    let (fine, map) = work.he.to_trimesh();
    let mut hints = vec![0u32; fine.vertex_count()];
    for (old, &new) in map.iter().enumerate() {
        if new != NONE {
            hints[new as usize] = work.hint[old];
        }
    }
    let he = HalfEdgeMesh::from_trimesh(&fine)
        .map_err(|e| Error::Internal(format!("working mesh of the quad remesher is broken: {e}")))?;
    let mut work = Work::new(he, &surface, min_cross, max_dev);
    work.hint = hints;
    steps.step()?;

    // 2. Fields.
    let graph = vertex_graph(&work.he);
    let mut cancelled = None;
    let fields = field::solve(&graph, spacing, || match steps.check() {
        Ok(()) => true,
        Err(e) => {
            cancelled = Some(e);
            false
        }
    });
    let Some(fields) = fields else {
        return Err(cancelled.unwrap_or(Error::Cancelled));
    };
    steps.step()?;

    // 3. Extraction.
    let classes = classify_edges(&work.he, &graph, &fields, spacing);
    steps.step()?;
    let mut clusters = merge_clusters(&mut work.he, &classes);
    steps.step()?;
    place_vertices(&mut work, &graph, &fields, &clusters, spacing);
    steps.step()?;

    // 4. Clean-up and smoothing.
    work.collapse_short_edges(SNAP_RATIO * spacing, SNAP_MAX_EDGE_RATIO * spacing);
    work.repair(REPAIR_ROUNDS);
    steps.step()?;
    for _ in 0..options.smooth_iterations {
        work.relax_and_project(true);
        steps.step()?;
    }
    let left = work.repair(REPAIR_ROUNDS);
    if left > 0 {
        tracing::warn!(faces = left, "quad remesh: degenerate or folded triangles survived the repair");
    }
    let diagonals = lattice_diagonals(&classes, &mut clusters);
    let mut quads = pair_triangles(&work.he, &fields.q, &diagonals);
    steps.step()?;
    let base = quads.positions.len() as u32;
    quads.positions.extend_from_slice(&small.positions);
    quads.triangles.extend(small.faces.iter().map(|t| t.map(|i| i + base)));
    Ok(quads)
}

/// The working mesh's vertex graph with uniform link weights, area-weighted normals and dual areas.
fn vertex_graph(he: &HalfEdgeMesh) -> Graph {
    let n = he.vertex_slots();
    let mut g = Graph { pos: he.pos.clone(), ..Default::default() };
    g.nrm = (0..n as u32).into_par_iter().map(|v| he.vertex_normal(v)).collect();
    g.area = vec![0.0; n];
    for f in 0..he.face_slots() as u32 {
        if he.face_alive(f) {
            let a = length(he.face_cross(f)) / 6.0;
            for v in he.face(f) {
                g.area[v as usize] += a;
            }
        }
    }
    g.start.push(0);
    let mut buf = Vec::new();
    for v in 0..n as u32 {
        buf.clear();
        he.neighbors(v, &mut buf);
        g.adj.extend_from_slice(&buf);
        g.weight.extend(std::iter::repeat_n(1.0, buf.len()));
        g.start.push(g.adj.len() as u32);
    }
    g
}

/// Edge classification of the extraction.
struct EdgeClasses {
    /// Edges whose ends sit on the same lattice point: `(mismatch², i, j)`, sorted best first.
    merge: Vec<(f32, u32, u32)>,
    /// For every vertex, the vertices one lattice step away along an edge.
    links: Vec<Vec<u32>>,
    /// Edges whose ends are one step apart along both lattice axes: quad diagonals once clusters are merged.
    diagonal: Vec<(u32, u32)>,
}

/// Integer lattice offset between the two ends of an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offset {
    /// The same lattice point.
    Same,
    /// One step along one axis: a quad side.
    Unit,
    /// One step along each axis: a quad diagonal.
    Diagonal,
    /// Farther.
    Far,
}

/// Classifies every edge by the integer lattice offset between its ends (after aligning their frames).
fn classify_edges(he: &HalfEdgeMesh, g: &Graph, f: &Fields, spacing: f32) -> EdgeClasses {
    let inv = 1.0 / spacing;
    let reps: Vec<u32> = (0..he.half_edge_slots() as u32).filter(|&h| he.is_edge_representative(h)).collect();
    let classified: Vec<(u32, u32, Offset, f32)> = reps
        .par_iter()
        .map(|&h| {
            let (i, j) = (he.origin(h) as usize, he.dest(h) as usize);
            let (qi, qj) = compat_orientation(f.q[i], g.nrm[i], f.q[j], g.nrm[j]);
            let m = compat_position(
                &Frame::new(g.pos[i], g.nrm[i], qi, f.o[i]),
                &Frame::new(g.pos[j], g.nrm[j], qj, f.o[j]),
                spacing,
                inv,
            );
            let (a, b, err) = (m.a, m.b, m.err);
            let offset = match ((a[0] - b[0]).abs(), (a[1] - b[1]).abs()) {
                (0, 0) => Offset::Same,
                (0, 1) | (1, 0) => Offset::Unit,
                (1, 1) => Offset::Diagonal,
                _ => Offset::Far,
            };
            (i as u32, j as u32, offset, err)
        })
        .collect();
    let mut merge = Vec::new();
    let mut diagonal = Vec::new();
    let mut links = vec![Vec::new(); he.vertex_slots()];
    for &(i, j, offset, err) in &classified {
        match offset {
            Offset::Same => merge.push((err, i, j)),
            Offset::Unit => {
                links[i as usize].push(j);
                links[j as usize].push(i);
            }
            Offset::Diagonal => diagonal.push((i, j)),
            Offset::Far => {}
        }
    }
    merge.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    EdgeClasses { merge, links, diagonal }
}

/// The cluster pairs joined by more diagonal than unit-offset edges, as sorted `(min, max)` surviving vertices.
fn lattice_diagonals(classes: &EdgeClasses, clusters: &mut Clusters) -> HashSet<(u32, u32)> {
    let key = |a: u32, b: u32| (a.min(b), a.max(b));
    let mut votes: HashMap<(u32, u32), i32> = HashMap::new();
    for &(i, j) in &classes.diagonal {
        let (a, b) = (clusters.find(i), clusters.find(j));
        if a != b {
            *votes.entry(key(a, b)).or_default() += 1;
        }
    }
    for (i, list) in classes.links.iter().enumerate() {
        for &j in list {
            let (a, b) = (clusters.find(i as u32), clusters.find(j));
            if a != b
                && let Some(v) = votes.get_mut(&key(a, b))
            {
                *v -= 1;
            }
        }
    }
    votes.into_iter().filter(|&(_, v)| v > 0).map(|(k, _)| k).collect()
}

/// Union-find over the working mesh's vertices; the root of a cluster is its surviving vertex.
struct Clusters {
    parent: Vec<u32>,
}

impl Clusters {
    fn find(&mut self, mut v: u32) -> u32 {
        while self.parent[v as usize] != v {
            let p = self.parent[v as usize];
            self.parent[v as usize] = self.parent[p as usize];
            v = p;
        }
        v
    }
}

/// Collapses every zero-offset edge whose collapse is allowed, best first, and never two clusters that share
/// a unit-offset link. Returns the clusters.
fn merge_clusters(he: &mut HalfEdgeMesh, classes: &EdgeClasses) -> Clusters {
    let n = he.vertex_slots();
    let mut c = Clusters { parent: (0..n as u32).collect() };
    let mut size = vec![1u32; n];
    let mut links = classes.links.clone();
    for &(_, i, j) in &classes.merge {
        let (ri, rj) = (c.find(i), c.find(j));
        if ri == rj {
            continue;
        }
        let linked =
            links[ri as usize].iter().any(|&k| c.find(k) == rj) || links[rj as usize].iter().any(|&k| c.find(k) == ri);
        if linked {
            continue;
        }
        // Remove the smaller cluster's vertex (never a boundary vertex).
        let (keep, gone) = match (he.is_boundary(ri), he.is_boundary(rj)) {
            (true, true) => continue,
            (true, false) => (ri, rj),
            (false, true) => (rj, ri),
            (false, false) => {
                if size[ri as usize] >= size[rj as usize] {
                    (ri, rj)
                } else {
                    (rj, ri)
                }
            }
        };
        let Some(h) = he.find_half_edge(gone, keep) else {
            continue;
        };
        if !he.can_collapse(h) {
            continue;
        }
        let p = he.pos[keep as usize];
        he.collapse(h, p);
        c.parent[gone as usize] = keep;
        size[keep as usize] += size[gone as usize];
        let moved = std::mem::take(&mut links[gone as usize]);
        links[keep as usize].extend(moved);
    }
    c
}

/// Puts every surviving vertex at the weighted mean of its cluster's lattice positions, projected onto the
/// input surface.
fn place_vertices(work: &mut Work<'_>, g: &Graph, f: &Fields, clusters: &Clusters, spacing: f32) {
    let n = g.len();
    let mut clusters = Clusters { parent: clusters.parent.clone() };
    let mut sum = vec![[0f32; 3]; n];
    let mut wsum = vec![0f32; n];
    let inv_sq = 1.0 / (spacing * spacing);
    for i in 0..n {
        let r = clusters.find(i as u32) as usize;
        let d = sub(f.o[i], g.pos[i]);
        let w = (-CLUSTER_WEIGHT_FALLOFF * dot(d, d) * inv_sq).exp();
        sum[r] = add(sum[r], scale(f.o[i], w));
        wsum[r] += w;
    }
    let targets: Vec<[f32; 3]> = (0..n)
        .map(|r| {
            if work.he.vertex_alive(r as u32) && !work.he.is_boundary(r as u32) && wsum[r] > TINY {
                scale(sum[r], 1.0 / wsum[r])
            } else {
                work.he.pos[r]
            }
        })
        .collect();
    let hits = work.surface.project_many(&targets, &work.hint);
    for (r, hit) in hits.into_iter().enumerate() {
        if work.he.vertex_alive(r as u32) && !work.he.is_boundary(r as u32) {
            work.he.pos[r] = hit.point;
            work.hint[r] = hit.slot;
        }
    }
}

/// Pairs adjacent triangles into quads, best first. Edges the lattice marks as diagonals go first and need a
/// convex union without slivers ([`LATTICE_QUAD_MAX_ABS_COS`]); any other edge can pair its triangles when their
/// union is convex with every corner angle within 40° of a right angle. The score adds squareness and alignment
/// of the sides with the cross field `q`.
fn pair_triangles(he: &HalfEdgeMesh, q: &[[f32; 3]], diagonals: &HashSet<(u32, u32)>) -> QuadMesh {
    let mut candidates: Vec<(f32, u32)> = (0..he.half_edge_slots() as u32)
        .into_par_iter()
        .filter(|&h| he.is_edge_representative(h) && he.twin(h) != NONE)
        .filter_map(|h| {
            let (a, b) = (he.origin(h), he.dest(h));
            if diagonals.contains(&(a.min(b), a.max(b))) {
                quad_score(he, q, h, LATTICE_QUAD_MAX_ABS_COS).map(|s| (s + LATTICE_DIAGONAL_BONUS, h))
            } else {
                quad_score(he, q, h, QUAD_MAX_ABS_COS).map(|s| (s, h))
            }
        })
        .collect();
    candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut paired = vec![false; he.face_slots()];
    let (mesh, map) = he.to_trimesh();
    let mut quads = Vec::new();
    for &(_, h) in &candidates {
        let (f, g) = ((h / 3) as usize, (he.twin(h) / 3) as usize);
        if paired[f] || paired[g] {
            continue;
        }
        paired[f] = true;
        paired[g] = true;
        let t = he.twin(h);
        let quad = [he.origin(h), he.origin(prev(t)), he.dest(h), he.origin(prev(h))];
        quads.push(quad.map(|v| map[v as usize]));
    }
    let triangles = (0..he.face_slots() as u32)
        .filter(|&f| he.face_alive(f) && !paired[f as usize])
        .map(|f| he.face(f).map(|v| map[v as usize]))
        .collect();
    QuadMesh { positions: mesh.positions, quads, triangles }
}

/// Score of the quad `(a, d, b, c)` formed by removing the edge of `h` (`a → b`), or `None` if it is not
/// convex or has a corner whose angle's cosine exceeds `max_abs_cos` in magnitude.
fn quad_score(he: &HalfEdgeMesh, q: &[[f32; 3]], h: u32, max_abs_cos: f32) -> Option<f32> {
    let t = he.twin(h);
    let ids = [he.origin(h), he.origin(prev(t)), he.dest(h), he.origin(prev(h))];
    let n = add(he.face_cross(h / 3), he.face_cross(t / 3));
    if length(n) <= TINY {
        return None;
    }
    let n = normalize(n, TINY);
    let p = ids.map(|v| he.pos[v as usize]);
    let tangent = |v: [f32; 3]| sub(v, scale(n, dot(n, v)));
    let mut max_cos = 0f32;
    let mut align = 0f32;
    for k in 0..4 {
        let e_next = tangent(sub(p[(k + 1) % 4], p[k]));
        let e_prev = tangent(sub(p[(k + 3) % 4], p[k]));
        let (ln, lp) = (length(e_next), length(e_prev));
        if ln <= TINY || lp <= TINY || dot(cross(e_next, e_prev), n) <= 0.0 {
            return None;
        }
        max_cos = max_cos.max((dot(e_next, e_prev) / (ln * lp)).abs());
        let u = scale(e_next, 1.0 / ln);
        let qk = tangent(q[ids[k] as usize]);
        if length(qk) > TINY {
            let qk = normalize(qk, TINY);
            align += dot(u, qk).abs().max(dot(u, cross(n, qk)).abs());
        }
    }
    (max_cos < max_abs_cos).then_some((1.0 - max_cos) + align / 4.0)
}
