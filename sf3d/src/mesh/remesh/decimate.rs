//! Decimation to a vertex count: meshoptimizer's simplifier for `remesh = none` with a target (our product's
//! choice; the reference ignores the count there, docs/engine.md §5.6), and shortest-edge collapse — what the
//! reference uses before its isotropic remesh (gpytoolbox `decimate`, libigl) — as the remeshers' pre-pass.
//!
//! This work is based on:
//! * A. Kapoulkine, meshoptimizer 0.22 `meshopt_simplify` (quadric-error edge collapse, M. Garland,
//!   P. Heckbert, "Surface Simplification Using Quadric Error Metrics", SIGGRAPH 1997);
//! * libigl's `decimate` with its default shortest-edge cost and midpoint placement.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::{Error, Result};
use crate::mesh::remesh::halfedge::{HalfEdgeMesh, NONE};
use crate::mesh::remesh::passes::{CollapseGuard, Work};
use crate::mesh::remesh::surface::Surface;
use crate::mesh::remesh::triangle::{DEGENERATE_AREA_RATIO, REPAIR_ROUNDS, edge_length_for};
use crate::mesh::remesh::{Steps, check_indices, compact_faces, count_referenced, surface_area};
use crate::mesh::{TriMesh, cross, length, sub};
use crate::progress::Progress;

/// meshoptimizer's error bound, relative to the mesh extent: 1 (the whole extent) means "no bound", so the
/// vertex target alone decides where to stop.
const MESHOPT_UNBOUNDED_ERROR: f32 = 1.0;
/// The fallback decimator (and the repair of meshoptimizer's output) may move the surface by up to this times the
/// target edge length per collapse.
const FALLBACK_MAX_DEVIATION_RATIO: f32 = 0.5;
/// Collapses between two cancellation checks of the shortest-edge decimation.
const COLLAPSES_PER_CHECK: usize = 4096;

/// Decimates `mesh` with meshoptimizer to about `target_vertices` vertices (the faces-per-vertex ratio of the
/// input sets meshoptimizer's index target).
///
/// Preconditions: indices in range (else [`Error::InvalidMesh`]); the mesh need not be manifold. A target of 0
/// is an [`Error::Param`].
///
/// Guarantees: a mesh with no more vertices than the input; vertex order is the input's (unreferenced vertices
/// are dropped); faces keep their winding; faces whose corners coincide in index or position are removed, and so
/// are pairs of opposite faces on the same three vertices (see `remove_pillows`). When
/// the input already has `target_vertices` vertices or fewer it is returned unchanged. meshoptimizer stops early
/// where a collapse would change the topology or flip a triangle, so the count is a soft target.
///
/// When the input is an oriented manifold the output is one too: should meshoptimizer pinch a thin neck into a
/// non-manifold edge (it does on tiny-a below ≈ 1500 vertices), the decimation is redone by shortest-edge collapse
/// under the link condition (the reference's own decimation method, docs/engine.md §5.6), and that is logged. A
/// manifold result then goes through the remeshers' repair of degenerate and folded triangles (against the input).
pub fn decimate(mesh: &TriMesh, target_vertices: u32, progress: &mut dyn Progress) -> Result<TriMesh> {
    if target_vertices == 0 {
        return Err(sf3d_shared::ParamError::new("vertex_count", "must be positive").into());
    }
    check_indices(mesh)?;
    let checked = mesh;
    let used = count_referenced(checked);
    if used <= target_vertices as usize || checked.faces.is_empty() {
        return Ok(checked.clone());
    }
    progress.report(0, 1)?;
    let indices: Vec<u32> = checked.faces.iter().flatten().copied().collect();
    let faces_per_vertex = checked.faces.len() as f64 / used as f64;
    let target_faces = (f64::from(target_vertices) * faces_per_vertex).round() as usize;
    let simplified = meshopt::simplify_decoder(
        &indices,
        &checked.positions,
        3 * target_faces,
        MESHOPT_UNBOUNDED_ERROR,
        meshopt::SimplifyOptions::None,
        None,
    );
    if simplified.len() % 3 != 0 || simplified.iter().any(|&i| i as usize >= checked.positions.len()) {
        return Err(Error::Internal(format!("meshoptimizer returned {} malformed indices", simplified.len())));
    }
    let faces: Vec<[u32; 3]> = simplified
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .filter(|&[a, b, c]| {
            let [pa, pb, pc] = [a, b, c].map(|i| checked.positions[i as usize]);
            a != b && b != c && c != a && length(cross(sub(pb, pa), sub(pc, pa))) > 0.0
        })
        .collect();
    let out = compact_faces(&checked.positions, remove_pillows(faces));
    progress.report(1, 1)?;
    match HalfEdgeMesh::from_trimesh(&out) {
        // A manifold result gets the remeshers' repair against the input: meshoptimizer guards against flips
        // relative to its own intermediate mesh, not against the input surface.
        Ok(he) => {
            let surface = Surface::new(checked);
            let length = edge_length_for(surface_area(checked), f64::from(target_vertices));
            let min_cross = 2.0 * DEGENERATE_AREA_RATIO * length * length;
            let mut work = Work::new(he, &surface, min_cross, FALLBACK_MAX_DEVIATION_RATIO * length);
            work.init_hints();
            work.repair(REPAIR_ROUNDS);
            Ok(work.he.to_trimesh().0)
        }
        // meshoptimizer can pinch a thin neck into an edge shared by four faces. A manifold input deserves a
        // manifold output: redo it with the link-condition decimator, which cannot do that.
        Err(e) if HalfEdgeMesh::from_trimesh(checked).is_ok() => {
            tracing::info!(problem = %e, "meshoptimizer broke the manifold; decimating by edge collapse instead");
            decimate_manifold(checked, target_vertices, progress)
        }
        Err(_) => Ok(out),
    }
}

/// Decimates a manifold mesh by shortest-edge collapse under the link condition (see
/// [`collapse_shortest_edges`]), survivors projected onto the input: the fallback of [`decimate`].
fn decimate_manifold(mesh: &TriMesh, target_vertices: u32, progress: &mut dyn Progress) -> Result<TriMesh> {
    let he = HalfEdgeMesh::from_trimesh(mesh)?;
    let surface = Surface::new(mesh);
    let length = edge_length_for(surface_area(mesh), f64::from(target_vertices));
    let min_cross = 2.0 * DEGENERATE_AREA_RATIO * length * length;
    let mut work = Work::new(he, &surface, min_cross, FALLBACK_MAX_DEVIATION_RATIO * length);
    let mut steps = Steps::new(progress, 2);
    work.init_hints();
    collapse_shortest_edges(&mut work, target_vertices as usize, CollapseGuard::OnSurface, &mut steps)?;
    steps.step()?;
    // Slivers without a short edge are not collapsed by the shortest-edge order; clear them.
    work.repair(REPAIR_ROUNDS);
    steps.step()?;
    Ok(work.he.to_trimesh().0)
}

/// Removes every pair of faces on the same three vertices with opposite windings: the zero-volume "pillow"
/// meshoptimizer leaves where it flattens a fin thinner than its error, whose edges each carry four faces.
/// Removing both faces leaves the surface around the fin closed and manifold.
fn remove_pillows(faces: Vec<[u32; 3]>) -> Vec<[u32; 3]> {
    // Key: the vertex triple rotated to start at its smallest index, plus whether the winding is reversed.
    let canonical = |t: [u32; 3]| {
        let r = (0..3).min_by_key(|&k| t[k]).unwrap_or(0);
        let (a, b, c) = (t[r], t[(r + 1) % 3], t[(r + 2) % 3]);
        if b < c { ([a, b, c], false) } else { ([a, c, b], true) }
    };
    let mut order: Vec<(([u32; 3], bool), usize)> = faces.iter().enumerate().map(|(f, &t)| (canonical(t), f)).collect();
    order.sort_unstable();
    let mut keep = vec![true; faces.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && order[j].0.0 == order[i].0.0 {
            j += 1;
        }
        // Within a group, cancel one reversed face against one forward face at a time.
        let group = &order[i..j];
        let forward: Vec<usize> = group.iter().filter(|e| !e.0.1).map(|e| e.1).collect();
        let reversed: Vec<usize> = group.iter().filter(|e| e.0.1).map(|e| e.1).collect();
        for (&f, &g) in forward.iter().zip(&reversed) {
            keep[f] = false;
            keep[g] = false;
        }
        i = j;
    }
    faces.into_iter().zip(keep).filter_map(|(t, k)| k.then_some(t)).collect()
}

/// Collapses the shortest collapsible edge, again and again, until `work` has at most `target_vertices` live
/// vertices or no edge may collapse (link condition, boundary rule, `guard`, which also decides where survivors
/// go). Returns the number of collapses.
pub(crate) fn collapse_shortest_edges(
    work: &mut Work<'_>,
    target_vertices: usize,
    guard: CollapseGuard,
    steps: &mut Steps<'_>,
) -> Result<usize> {
    // Lazy-deletion heap of (squared length bits, a, b, version of a, version of b); non-negative f32 bits order
    // like the floats.
    let mut version = vec![0u32; work.he.vertex_slots()];
    let mut heap = BinaryHeap::new();
    for h in 0..work.he.half_edge_slots() as u32 {
        if work.he.is_edge_representative(h) && work.he.twin(h) != NONE {
            heap.push(Reverse((work.he.edge_length_sq(h).to_bits(), work.he.origin(h), work.he.dest(h), 0u32, 0u32)));
        }
    }
    let mut collapses = 0;
    let mut buf = Vec::new();
    while work.he.live_vertex_count() > target_vertices {
        let Some(Reverse((_, a, b, va, vb))) = heap.pop() else {
            break;
        };
        if !work.he.vertex_alive(a)
            || !work.he.vertex_alive(b)
            || version[a as usize] != va
            || version[b as usize] != vb
        {
            continue;
        }
        let Some(h) = work.he.find_half_edge(a, b) else {
            continue;
        };
        if !work.try_collapse_edge(h, f32::INFINITY, guard) {
            continue;
        }
        collapses += 1;
        let s = if work.he.vertex_alive(a) { a } else { b };
        version[s as usize] += 1;
        buf.clear();
        work.he.outgoing(s, &mut buf);
        push_edges(&work.he, s, &buf, &version, &mut heap);
        if collapses % COLLAPSES_PER_CHECK == 0 {
            steps.check()?;
        }
    }
    Ok(collapses)
}

type EdgeHeap = BinaryHeap<Reverse<(u32, u32, u32, u32, u32)>>;

/// Pushes the interior edges around `s` (given its outgoing half-edges) with the current versions.
fn push_edges(he: &HalfEdgeMesh, s: u32, outgoing: &[u32], version: &[u32], heap: &mut EdgeHeap) {
    for &h in outgoing {
        if he.twin(h) == NONE {
            continue;
        }
        let o = he.dest(h);
        heap.push(Reverse((he.edge_length_sq(h).to_bits(), s, o, version[s as usize], version[o as usize])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pillow (triangle 0 1 2 in both windings) hanging off edge 1–2 of a closed surface is removed; a face
    /// repeated with the *same* winding is not a pillow and stays.
    #[test]
    fn pillows_are_removed() {
        let faces = vec![[0, 1, 2], [2, 1, 0], [1, 2, 3], [3, 4, 5], [4, 5, 3]];
        assert_eq!(remove_pillows(faces), vec![[1, 2, 3], [3, 4, 5], [4, 5, 3]]);
    }
}
