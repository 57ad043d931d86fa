//! Remeshing and vertex-count targets: SF3D's `remesh ∈ {none, triangle, quad}` with an optional
//! `vertex_count` (docs/engine.md §5.6), applied to the marching-tetrahedra mesh before UV unwrapping.
//!
//! | option | with a target `n` | without |
//! |---|---|---|
//! | [`RemeshOption::None`] | [`decimate`]: meshoptimizer to ≈ `n` vertices | unchanged |
//! | [`RemeshOption::Triangle`] | [`isotropic_remesh`] to ≈ `n` vertices | at the input's mean edge length |
//! | [`RemeshOption::Quad`] | [`pure_quad_remesh`] to ≈ `n` vertices | to ≈ `V` vertices |
//!
//! Files, one algorithm each: `halfedge` (directed-edge mesh, split / collapse / flip), `bvh` and `surface`
//! (closest points on the input), `passes` (Botsch–Kobbelt passes and the repair), `triangle` (isotropic
//! remeshing), `decimate` (meshoptimizer; shortest-edge collapse), `field` (Instant Meshes orientation and
//! position fields), `quad` (field-aligned quad-dominant extraction), `subdivide` (pure quads at the requested
//! count), `tests` (the stage's tests).
//!
//! Differences from the reference, deliberate:
//! * `none` with a target decimates (the reference ignores the count with a warning); this is the product's
//!   behaviour for the vertex-count slider.
//! * `quad` does what the reference's pipeline does as a whole: it asks Instant Meshes for `vertex_count / 4`
//!   vertices and Instant Meshes' final regular subdivision into pure quads brings the count back to about
//!   `vertex_count`. We extract at about a quarter of the count, correct that target until the subdivision will
//!   land within a few per cent of the request, and subdivide ([`pure_quad_remesh`]). Without a count the target
//!   is the input's vertex count (the reference's `V / 4` before subdivision).
//! * Remeshers never fall back to one another: a failure is an error. The one fallback is inside [`decimate`]:
//!   when meshoptimizer pinches a manifold input into a non-manifold edge, the decimation is redone by
//!   link-condition edge collapse (logged).
//! * Components too small to remesh (fewer than a dozen vertices at the target density; marching tetrahedra
//!   leaves such specks) keep their triangles, minus degenerate ones.
//!
//! Every remesher keeps the input's winding. The marching-tetrahedra mesh faces inward (docs/engine.md §5.2,
//! §5.8: negative signed volume) and so does the output; the flip to outward faces happens at export.

mod bvh;
mod decimate;
mod field;
mod halfedge;
mod passes;
mod quad;
mod subdivide;
mod surface;
mod triangle;

#[cfg(test)]
mod tests;

pub use decimate::decimate;
pub use quad::{DEFAULT_QUAD_TARGET, DEFAULT_SMOOTH_ITERATIONS, QuadMesh, QuadOptions, quad_remesh};
pub use subdivide::{pure_quad_remesh, subdivide_to_quads, subdivided_vertex_count};
pub use triangle::{DEFAULT_ITERATIONS, IsotropicOptions, isotropic_remesh};

use sf3d_shared::RemeshOption;

use crate::error::Result;
use crate::mesh::{TriMesh, cross, length, sub};
use crate::progress::Progress;

/// What the reference divides the vertex target by before handing it to Instant Meshes (docs/engine.md §5.6);
/// Instant Meshes' pure-quad subdivision multiplies the count by about as much again.
pub const QUAD_TARGET_DIVISOR: u32 = 4;

/// Applies SF3D's remesh option with an optional target vertex count (see the module docs for what each
/// combination does).
///
/// Preconditions: for `Triangle` and `Quad`, `mesh` must be an oriented 2-manifold (closed or with boundary,
/// any number of components), else [`crate::Error::InvalidMesh`]; `None` accepts any mesh with indices in range.
/// `vertex_count == Some(0)` is an [`crate::Error::Param`].
///
/// Guarantees: the output keeps the input's winding (sign of the signed volume). `Triangle` and `Quad` give a
/// manifold with the input's Euler characteristic; see [`isotropic_remesh`], [`quad_remesh`] and [`decimate`]
/// for the rest. Progress is reported on `progress`, which may cancel.
pub fn remesh(
    mesh: &TriMesh,
    option: RemeshOption,
    vertex_count: Option<u32>,
    progress: &mut dyn Progress,
) -> Result<TriMesh> {
    if vertex_count == Some(0) {
        return Err(sf3d_shared::ParamError::new("vertex_count", "must be positive").into());
    }
    match option {
        RemeshOption::None => match vertex_count {
            Some(n) => decimate(mesh, n, progress),
            None => Ok(mesh.clone()),
        },
        RemeshOption::Triangle => {
            isotropic_remesh(mesh, &IsotropicOptions { target_vertices: vertex_count, ..Default::default() }, progress)
        }
        RemeshOption::Quad => {
            check_indices(mesh)?;
            let target = vertex_count.unwrap_or(u32::try_from(count_referenced(mesh)).unwrap_or(u32::MAX));
            Ok(pure_quad_remesh(mesh, target, progress)?.triangulate())
        }
    }
}

/// Number of vertices of `mesh` some face references (out-of-range indices are ignored).
pub(crate) fn count_referenced(mesh: &TriMesh) -> usize {
    let mut used = vec![false; mesh.positions.len()];
    for t in &mesh.faces {
        for &i in t {
            if let Some(u) = used.get_mut(i as usize) {
                *u = true;
            }
        }
    }
    used.iter().filter(|&&u| u).count()
}

/// [`crate::Error::InvalidMesh`] unless every index of `mesh` is in range.
pub(crate) fn check_indices(mesh: &TriMesh) -> Result<()> {
    let n = mesh.positions.len();
    match mesh.faces.iter().enumerate().find(|(_, t)| t.iter().any(|&i| i as usize >= n)) {
        Some((f, t)) => Err(crate::Error::InvalidMesh(format!("face {f} {t:?} indexes past {n} vertices"))),
        None => Ok(()),
    }
}

/// Total area of `mesh` (indices must be in range), accumulated in f64.
pub(crate) fn surface_area(mesh: &TriMesh) -> f64 {
    mesh.faces
        .iter()
        .map(|t| {
            let [a, b, c] = t.map(|i| mesh.positions[i as usize]);
            f64::from(length(cross(sub(b, a), sub(c, a)))) * 0.5
        })
        .sum()
}

/// A mesh split into the components worth remeshing and the small ones that are kept as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Parts {
    /// Components with at least the threshold area.
    pub(crate) big: TriMesh,
    /// The others, unchanged (vertex order kept).
    pub(crate) small: TriMesh,
}

/// Splits `mesh` (indices must be in range) by connected component: those with less area than `min_area` go to
/// [`Parts::small`]. Unreferenced vertices are dropped; both parts keep the input's vertex and face order.
pub(crate) fn split_small_components(mesh: &TriMesh, min_area: f64) -> Parts {
    let n = mesh.positions.len();
    let mut parent: Vec<u32> = (0..n as u32).collect();
    fn find(parent: &mut [u32], mut v: u32) -> u32 {
        while parent[v as usize] != v {
            let p = parent[v as usize];
            parent[v as usize] = parent[p as usize];
            v = p;
        }
        v
    }
    for t in &mesh.faces {
        let r0 = find(&mut parent, t[0]);
        for &v in &t[1..] {
            let r = find(&mut parent, v);
            if r != r0 {
                parent[r as usize] = r0;
            }
        }
    }
    let mut area = vec![0f64; n];
    for t in &mesh.faces {
        let [a, b, c] = t.map(|i| mesh.positions[i as usize]);
        area[find(&mut parent, t[0]) as usize] += 0.5 * f64::from(length(cross(sub(b, a), sub(c, a))));
    }
    let (mut big, mut small) = (Vec::new(), Vec::new());
    for t in &mesh.faces {
        if area[find(&mut parent, t[0]) as usize] >= min_area {
            big.push(*t);
        } else {
            small.push(*t);
        }
    }
    Parts { big: compact_faces(&mesh.positions, big), small: compact_faces(&mesh.positions, small) }
}

/// The mesh made of `faces` over `positions`, without unreferenced vertices (order kept).
pub(crate) fn compact_faces(positions: &[[f32; 3]], mut faces: Vec<[u32; 3]>) -> TriMesh {
    const UNUSED: u32 = u32::MAX;
    let mut map = vec![UNUSED; positions.len()];
    for &i in faces.iter().flatten() {
        map[i as usize] = 0;
    }
    let mut kept = Vec::new();
    for (i, m) in map.iter_mut().enumerate() {
        if *m != UNUSED {
            *m = kept.len() as u32;
            kept.push(positions[i]);
        }
    }
    for t in &mut faces {
        *t = t.map(|i| map[i as usize]);
    }
    TriMesh { positions: kept, faces }
}

/// `a` followed by `b` (indices of `b` shifted).
pub(crate) fn concat(mut a: TriMesh, b: &TriMesh) -> TriMesh {
    let base = a.positions.len() as u32;
    a.positions.extend_from_slice(&b.positions);
    a.faces.extend(b.faces.iter().map(|t| t.map(|i| i + base)));
    a
}

/// A stage's progress as a fixed number of steps, forwarded to a [`Progress`].
pub(crate) struct Steps<'p> {
    progress: &'p mut dyn Progress,
    done: u64,
    total: u64,
}

impl<'p> Steps<'p> {
    /// `total` steps, none done yet.
    pub(crate) fn new(progress: &'p mut dyn Progress, total: u64) -> Self {
        Self { progress, done: 0, total: total.max(1) }
    }

    /// One more step done; errors when cancelled.
    pub(crate) fn step(&mut self) -> Result<()> {
        self.done = (self.done + 1).min(self.total);
        self.progress.report(self.done, self.total)
    }

    /// Reports the current value again, so a long step can be cancelled from inside.
    pub(crate) fn check(&mut self) -> Result<()> {
        self.progress.report(self.done, self.total)
    }
}
