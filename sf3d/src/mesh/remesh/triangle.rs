//! Isotropic triangle remeshing: SF3D's `remesh = triangle` (docs/engine.md §5.6), which the reference runs
//! through gpytoolbox 0.2.0 (`remesh_botsch`, 10 iterations, re-projection onto the input).
//!
//! This work is based on:
//! * M. Botsch, L. Kobbelt, "A Remeshing Approach to Multiresolution Modeling", SGP 2004;
//! * the reference's use of gpytoolbox (docs/engine.md §5.6): with a target count it first subdivides (`ρ > 1`) or
//!   decimates by shortest-edge collapse to `ρ = vertex_count / V`, then remeshes with the mean edge length.
//!
//! Deliberate deviations from the reference, each for a reason:
//! * The target edge length comes from the target count directly (`L = √(2A / (√3·n))`, the edge of an
//!   equilateral mesh of `n` vertices on area `A`) and is corrected twice during the iterations by `√(V/n)`;
//!   subdividing first is unnecessary because the split pass refines by itself. The result lands within a few
//!   per cent of `n` (the reference's count is only "roughly" the target).
//! * Shortest-edge decimation runs only when the input has more than [`PREDECIMATE_FACTOR`] times the target
//!   vertices (it saves split/collapse rounds, it does not change the result much).
//! * Vertices are projected onto the *input* surface, not onto the decimated one.
//! * A final repair pass removes any degenerate or folded triangle (the reference has none).
//! * Components that would get fewer than [`SMALL_COMPONENT_VERTICES`] vertices are not remeshed, only cleared
//!   of degenerate triangles (marching tetrahedra leaves specks of a few dozen vertices; remeshed they would
//!   become tetrahedra).
//! * A collapse may not move the surface more than a quarter edge away from the vertices it removes
//!   ([`COLLAPSE_MAX_DEVIATION_RATIO`]). This slows the erosion of spikes thinner than an edge but does not stop
//!   it: over ten rounds of collapses and relaxation they still shorten (by ≈ 2 edges on tiny-a), as in any
//!   Botsch–Kobbelt remesher.

use crate::error::{Error, Result};
use crate::mesh::TriMesh;
use crate::mesh::remesh::decimate::collapse_shortest_edges;
use crate::mesh::remesh::halfedge::HalfEdgeMesh;
use crate::mesh::remesh::passes::{COLLAPSE_MIN_COS, CollapseGuard, Work, repair_only};
use crate::mesh::remesh::surface::Surface;
use crate::mesh::remesh::{Steps, concat, split_small_components, surface_area};
use crate::progress::Progress;

/// Iterations of the reference (`remesh_botsch(..., iterations = 10)`).
pub const DEFAULT_ITERATIONS: u32 = 10;
/// Edges longer than this times the target length are split (Botsch–Kobbelt).
const SPLIT_RATIO: f32 = 4.0 / 3.0;
/// Edges shorter than this times the target length are collapsed (Botsch–Kobbelt).
const COLLAPSE_RATIO: f32 = 4.0 / 5.0;
/// Triangles with less area than this times `L²` count as degenerate (a height of 0.2 % of `L`).
pub(crate) const DEGENERATE_AREA_RATIO: f32 = 1e-3;
/// Pre-decimate by shortest-edge collapse when the input has more than this many times the target vertices.
const PREDECIMATE_FACTOR: f32 = 2.0;
/// After these iterations (0-based) the edge length is rescaled by `√(V / target)`.
const ADAPT_AFTER: [u32; 2] = [2, 5];
/// No rescaling when the vertex count is already this close to the target (relative).
const ADAPT_TOLERANCE: f32 = 0.02;
/// One rescaling changes the edge length by at most this factor (or its inverse).
const ADAPT_MAX_STEP: f32 = 2.0;
/// A collapse may move the surface at most this times the target length away from a vertex it removes (a
/// quarter edge: the sagitta of a circle of radius ½·L through an edge), so features thinner than an edge are
/// not shaved off.
pub(crate) const COLLAPSE_MAX_DEVIATION_RATIO: f32 = 0.25;
/// Components that would get fewer vertices than this at the target length are not remeshed (an icosahedron:
/// anything coarser no longer resembles a closed shape).
pub(crate) const SMALL_COMPONENT_VERTICES: f64 = 12.0;
/// The smallest vertex target of the remeshed part (a tetrahedron).
const MIN_TARGET: u32 = 4;
/// Rounds of the final repair.
pub(crate) const REPAIR_ROUNDS: usize = 8;
/// `√3`, for the area of an equilateral triangle.
const SQRT_3: f32 = 1.732_050_8;

/// Options of [`isotropic_remesh`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IsotropicOptions {
    /// Target vertex count; `None` remeshes at the input's mean edge length (the reference's `h = None`).
    pub target_vertices: Option<u32>,
    /// Rounds of split / collapse / flip / relax-and-project.
    pub iterations: u32,
}

impl Default for IsotropicOptions {
    /// No target (the input's mean edge length), [`DEFAULT_ITERATIONS`] rounds.
    fn default() -> Self {
        Self { target_vertices: None, iterations: DEFAULT_ITERATIONS }
    }
}

/// Area an equilateral closed mesh with edge `length` covers with `vertices` vertices (inverse of
/// [`edge_length_for`]).
pub(crate) fn area_for(length: f32, vertices: f64) -> f64 {
    vertices * f64::from(SQRT_3) * f64::from(length) * f64::from(length) / 2.0
}

/// Edge length of an equilateral closed mesh with `vertices` vertices covering `area` (`F ≈ 2V`).
pub(crate) fn edge_length_for(area: f64, vertices: f64) -> f32 {
    (2.0 * area / (f64::from(SQRT_3) * vertices.max(1.0))).sqrt() as f32
}

/// Remeshes `mesh` into a mesh of near-equilateral triangles of (almost) equal size.
///
/// Preconditions: `mesh` is an oriented 2-manifold (closed or with boundary; several components are fine);
/// otherwise [`Error::InvalidMesh`]. A target of 0 is an [`Error::Param`].
///
/// Guarantees: the output is a manifold with the input's Euler characteristic per component and winding (the
/// signed volume keeps its sign), its vertices lie on the input surface (up to the final midpoint collapses of the
/// repair), boundary vertices are kept in place, and with a target the vertex count ends within ±10 % of it on
/// meshes that can reach it (a component never shrinks below a tetrahedron). Degenerate and folded triangles are
/// removed by a repair pass; any that survive it are logged.
pub fn isotropic_remesh(mesh: &TriMesh, options: &IsotropicOptions, progress: &mut dyn Progress) -> Result<TriMesh> {
    if options.target_vertices == Some(0) {
        return Err(sf3d_shared::ParamError::new("vertex_count", "must be positive").into());
    }
    let whole = HalfEdgeMesh::from_trimesh(mesh)?;
    if whole.live_face_count() == 0 {
        return Ok(whole.to_trimesh().0);
    }
    let first_length = match options.target_vertices {
        Some(n) => edge_length_for(surface_area(mesh), f64::from(n)),
        None => mean_edge_length(&whole),
    };
    if !(first_length.is_finite() && first_length > 0.0) {
        return Err(Error::InvalidMesh(format!("surface has no extent (edge length {first_length})")));
    }
    drop(whole);
    let parts = split_small_components(mesh, area_for(first_length, SMALL_COMPONENT_VERTICES));
    if parts.big.faces.is_empty() {
        return repair_only(&parts.small, DEGENERATE_AREA_RATIO, REPAIR_ROUNDS);
    }
    let target = options.target_vertices.map(|n| n.saturating_sub(parts.small.vertex_count() as u32).max(MIN_TARGET));
    let he = HalfEdgeMesh::from_trimesh(&parts.big)?;
    let surface = Surface::new(&parts.big);
    let mut length = match target {
        Some(n) => edge_length_for(surface_area(&parts.big), f64::from(n)),
        None => first_length,
    };
    let min_cross = 2.0 * DEGENERATE_AREA_RATIO * length * length;
    let small = repair_only(&parts.small, DEGENERATE_AREA_RATIO, REPAIR_ROUNDS)?;
    let mut work = Work::new(he, &surface, min_cross, COLLAPSE_MAX_DEVIATION_RATIO * length);

    let predecimate = target.filter(|&n| work.he.live_vertex_count() as f32 > PREDECIMATE_FACTOR * n as f32);
    let total = 2 + u64::from(predecimate.is_some()) + 4 * u64::from(options.iterations);
    let mut steps = Steps::new(progress, total);
    work.init_hints();
    steps.step()?;
    if let Some(n) = predecimate {
        collapse_shortest_edges(&mut work, n as usize, CollapseGuard::Turn(COLLAPSE_MIN_COS), &mut steps)?;
        steps.step()?;
    }

    for it in 0..options.iterations {
        work.split_long_edges(SPLIT_RATIO * length);
        steps.step()?;
        work.collapse_short_edges(COLLAPSE_RATIO * length, SPLIT_RATIO * length);
        steps.step()?;
        work.equalize_valences();
        steps.step()?;
        work.relax_and_project(true);
        steps.step()?;
        if let Some(n) = target
            && ADAPT_AFTER.contains(&it)
        {
            let ratio = work.he.live_vertex_count() as f32 / n as f32;
            if (ratio - 1.0).abs() > ADAPT_TOLERANCE {
                length *= ratio.sqrt().clamp(1.0 / ADAPT_MAX_STEP, ADAPT_MAX_STEP);
            }
        }
    }
    let left = work.repair(REPAIR_ROUNDS);
    if left > 0 {
        tracing::warn!(faces = left, "isotropic remesh: degenerate or folded triangles survived the repair");
    }
    steps.step()?;
    Ok(concat(work.he.to_trimesh().0, &small))
}

/// Mean length of the live edges of `he`.
pub(crate) fn mean_edge_length(he: &HalfEdgeMesh) -> f32 {
    let (sum, n) = (0..he.half_edge_slots() as u32)
        .filter(|&h| he.is_edge_representative(h))
        .fold((0f64, 0usize), |(s, n), h| (s + f64::from(he.edge_length_sq(h).sqrt()), n + 1));
    if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
}
