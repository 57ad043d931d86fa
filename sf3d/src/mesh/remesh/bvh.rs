//! Bounding-volume hierarchy over a triangle soup for closest-point queries: the "project back onto the original
//! surface" step of every remesher here, the reference normals of the flip checks, and the Hausdorff estimates of
//! the tests.
//!
//! This work is based on:
//! * C. Ericson, "Real-Time Collision Detection", 2005: §5.1.5 (closest point on a triangle) and §6 (BVH built
//!   top-down by median split on the longest axis, traversed nearest child first).
//!
//! Queries take a *hint* (a triangle the answer is probably near, e.g. the previous answer for the same vertex):
//! its distance bounds the search from the start, which prunes almost the whole tree when the hint is good.

use rayon::prelude::*;

use crate::mesh::{add, cross, dist_sq, dot, length, scale, sub};

/// Triangles per leaf.
const LEAF_SIZE: usize = 4;

/// Below this many triangles a subtree is built on one thread.
const PARALLEL_BUILD_MIN: usize = 16 * 1024;

/// Returned by queries as "no hint".
pub(crate) const NO_HINT: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    lo: [f32; 3],
    hi: [f32; 3],
    /// Leaf: first slot; interior: index of the right child (the left child follows the node).
    first_or_right: u32,
    /// Leaf: number of triangles; interior: 0.
    count: u32,
}

/// A closest-point answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Hit {
    /// The closest surface point.
    pub point: [f32; 3],
    /// Squared distance from the query to `point`.
    pub dist_sq: f32,
    /// Slot of the triangle (pass it back as a hint; map with [`TriangleBvh::face_of`]).
    pub slot: u32,
}

/// A static BVH over the triangles of a mesh.
#[derive(Debug, Clone)]
pub(crate) struct TriangleBvh {
    nodes: Vec<Node>,
    /// Triangle corners in slot order.
    tris: Vec<[[f32; 3]; 3]>,
    /// Input face index of each slot.
    faces: Vec<u32>,
    /// Unit normal of each slot (`[0, 0, 0]` for a degenerate triangle).
    normals: Vec<[f32; 3]>,
}

impl TriangleBvh {
    /// Builds the tree over `faces` of `positions` (indices must be in range).
    pub(crate) fn new(positions: &[[f32; 3]], faces: &[[u32; 3]]) -> Self {
        let tris_in: Vec<[[f32; 3]; 3]> = faces.iter().map(|t| t.map(|i| positions[i as usize])).collect();
        let centroids: Vec<[f32; 3]> =
            tris_in.iter().map(|[a, b, c]| std::array::from_fn(|k| (a[k] + b[k] + c[k]) / 3.0)).collect();
        let mut order: Vec<u32> = (0..faces.len() as u32).collect();
        let mut nodes = Vec::with_capacity(2 * faces.len() / LEAF_SIZE + 1);
        if !faces.is_empty() {
            build(&mut nodes, &mut order, 0, &tris_in, &centroids);
        }
        let tris: Vec<[[f32; 3]; 3]> = order.iter().map(|&f| tris_in[f as usize]).collect();
        let normals = tris
            .iter()
            .map(|[a, b, c]| {
                let n = cross(sub(*b, *a), sub(*c, *a));
                let l = length(n);
                if l > 0.0 { scale(n, 1.0 / l) } else { [0.0; 3] }
            })
            .collect();
        Self { nodes, tris, faces: order, normals }
    }

    /// Input face index of slot `slot`.
    pub(crate) fn face_of(&self, slot: u32) -> u32 {
        self.faces[slot as usize]
    }

    /// Unit normal of the triangle in `slot` (zero when degenerate).
    pub(crate) fn normal(&self, slot: u32) -> [f32; 3] {
        self.normals[slot as usize]
    }

    /// The closest point of the surface to `p`. `hint` is a slot to start from, or [`NO_HINT`].
    ///
    /// Precondition: the tree is not empty.
    pub(crate) fn closest(&self, p: [f32; 3], hint: u32) -> Hit {
        let mut best = Hit { point: p, dist_sq: f32::INFINITY, slot: 0 };
        if (hint as usize) < self.tris.len() {
            let q = closest_on_triangle(p, &self.tris[hint as usize]);
            best = Hit { point: q, dist_sq: dist_sq(p, q), slot: hint };
        }
        // (node, squared distance to its box); children farther than the best hit are never pushed, and a popped
        // node is skipped if the best hit improved past it meanwhile.
        let mut stack = [(0u32, 0f32); 64];
        let mut top = 0usize;
        let root_dist = box_dist_sq(p, &self.nodes[0]);
        if root_dist < best.dist_sq {
            stack[0] = (0, root_dist);
            top = 1;
        }
        while top > 0 {
            top -= 1;
            let (ni, dist) = stack[top];
            if dist >= best.dist_sq {
                continue;
            }
            let node = &self.nodes[ni as usize];
            if node.count > 0 {
                let first = node.first_or_right as usize;
                for s in first..first + node.count as usize {
                    let q = closest_on_triangle(p, &self.tris[s]);
                    let d = dist_sq(p, q);
                    if d < best.dist_sq {
                        best = Hit { point: q, dist_sq: d, slot: s as u32 };
                    }
                }
                continue;
            }
            let (l, r) = (ni + 1, node.first_or_right);
            let (dl, dr) = (box_dist_sq(p, &self.nodes[l as usize]), box_dist_sq(p, &self.nodes[r as usize]));
            // Push the farther child first so the nearer one is searched first.
            let (near, far) = if dl <= dr { ((l, dl), (r, dr)) } else { ((r, dr), (l, dl)) };
            for child in [far, near] {
                if child.1 < best.dist_sq && top < stack.len() {
                    stack[top] = child;
                    top += 1;
                }
            }
        }
        best
    }

    /// [`TriangleBvh::closest`] for many points in parallel.
    pub(crate) fn closest_many(&self, points: &[[f32; 3]], hints: &[u32]) -> Vec<Hit> {
        points.par_iter().zip(hints.par_iter()).map(|(&p, &h)| self.closest(p, h)).collect()
    }
}

/// Builds the subtree over `order` (whose first element has global position `offset`), appending nodes in
/// depth-first order, and reorders `order` so every leaf's triangles are contiguous.
fn build(nodes: &mut Vec<Node>, order: &mut [u32], offset: usize, tris: &[[[f32; 3]; 3]], centroids: &[[f32; 3]]) {
    let (lo, hi) = bounds(order.iter().flat_map(|&f| tris[f as usize]));
    let me = nodes.len();
    nodes.push(Node { lo, hi, first_or_right: offset as u32, count: order.len() as u32 });
    if order.len() <= LEAF_SIZE {
        return;
    }
    // Median split of the centroids along their widest axis.
    let (clo, chi) = bounds(order.iter().map(|&f| centroids[f as usize]));
    let ext = sub(chi, clo);
    let axis = if ext[0] >= ext[1] && ext[0] >= ext[2] {
        0
    } else if ext[1] >= ext[2] {
        1
    } else {
        2
    };
    let mid = order.len() / 2;
    order.select_nth_unstable_by(mid, |&a, &b| centroids[a as usize][axis].total_cmp(&centroids[b as usize][axis]));
    nodes[me].count = 0;
    let (left, right) = order.split_at_mut(mid);
    if left.len() + right.len() >= PARALLEL_BUILD_MIN {
        // Build the two halves on two threads into separate buffers, then splice with re-based indices.
        let (mut ln, mut rn) = (Vec::new(), Vec::new());
        rayon::join(
            || build(&mut ln, left, offset, tris, centroids),
            || build(&mut rn, right, offset + mid, tris, centroids),
        );
        let base_l = nodes.len() as u32;
        let base_r = base_l + ln.len() as u32;
        nodes.extend(ln.into_iter().map(|n| rebase(n, base_l)));
        nodes[me].first_or_right = base_r;
        nodes.extend(rn.into_iter().map(|n| rebase(n, base_r)));
    } else {
        build(nodes, left, offset, tris, centroids);
        nodes[me].first_or_right = nodes.len() as u32;
        build(nodes, right, offset + mid, tris, centroids);
    }
}

/// Shifts the child index of an interior node built in a separate buffer.
fn rebase(mut n: Node, base: u32) -> Node {
    if n.count == 0 {
        n.first_or_right += base;
    }
    n
}

fn bounds(points: impl Iterator<Item = [f32; 3]>) -> ([f32; 3], [f32; 3]) {
    points.fold(([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]), |(lo, hi), p| {
        (std::array::from_fn(|k| lo[k].min(p[k])), std::array::from_fn(|k| hi[k].max(p[k])))
    })
}

#[inline]
fn box_dist_sq(p: [f32; 3], n: &Node) -> f32 {
    p.iter().zip(n.lo.iter().zip(&n.hi)).fold(0.0, |d, (&x, (&lo, &hi))| {
        let e = (lo - x).max(0.0).max(x - hi);
        d + e * e
    })
}

/// The point of triangle `t` closest to `p` (Ericson §5.1.5, by Voronoi regions). Degenerate triangles fall
/// back to the closest point on their three edges.
pub(crate) fn closest_on_triangle(p: [f32; 3], t: &[[f32; 3]; 3]) -> [f32; 3] {
    let [a, b, c] = *t;
    let (ab, ac, ap) = (sub(b, a), sub(c, a), sub(p, a));
    let (d1, d2) = (dot(ab, ap), dot(ac, ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return a;
    }
    let bp = sub(p, b);
    let (d3, d4) = (dot(ab, bp), dot(ac, bp));
    if d3 >= 0.0 && d4 <= d3 {
        return b;
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        return add(a, scale(ab, d1 / (d1 - d3)));
    }
    let cp = sub(p, c);
    let (d5, d6) = (dot(ab, cp), dot(ac, cp));
    if d6 >= 0.0 && d5 <= d6 {
        return c;
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        return add(a, scale(ac, d2 / (d2 - d6)));
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        return add(b, scale(sub(c, b), (d4 - d3) / ((d4 - d3) + (d5 - d6))));
    }
    let denom = va + vb + vc;
    if denom > 0.0 && denom.is_finite() {
        let (v, w) = (vb / denom, vc / denom);
        return add(a, add(scale(ab, v), scale(ac, w)));
    }
    // Degenerate (collinear) triangle: the best of the three edges.
    [closest_on_segment(p, a, b), closest_on_segment(p, b, c), closest_on_segment(p, c, a)]
        .into_iter()
        .min_by(|x, y| dist_sq(p, *x).total_cmp(&dist_sq(p, *y)))
        .unwrap_or(a)
}

pub(crate) fn closest_on_segment(p: [f32; 3], a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    let ab = sub(b, a);
    let l = dot(ab, ab);
    if l <= 0.0 {
        return a;
    }
    add(a, scale(ab, (dot(sub(p, a), ab) / l).clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over all triangles.
    fn brute(positions: &[[f32; 3]], faces: &[[u32; 3]], p: [f32; 3]) -> f32 {
        faces
            .iter()
            .map(|t| dist_sq(p, closest_on_triangle(p, &t.map(|i| positions[i as usize]))))
            .fold(f32::INFINITY, f32::min)
    }

    /// The closest point of the unit right triangle in z = 0 to a point above its interior is straight below;
    /// to a point beyond the hypotenuse it is on the hypotenuse; beyond a corner, the corner itself.
    #[test]
    fn closest_point_regions() {
        let t = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert_eq!(closest_on_triangle([0.25, 0.25, 3.0], &t), [0.25, 0.25, 0.0]);
        let q = closest_on_triangle([1.0, 1.0, 0.0], &t);
        assert!((q[0] - 0.5).abs() < 1e-6 && (q[1] - 0.5).abs() < 1e-6);
        assert_eq!(closest_on_triangle([-1.0, -1.0, 0.5], &t), [0.0, 0.0, 0.0]);
        assert_eq!(closest_on_triangle([2.0, -0.5, 0.0], &t), [1.0, 0.0, 0.0]);
        // Collinear corners: the answer lies on the segment.
        let d = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]];
        let q = closest_on_triangle([1.5, 1.0, 0.0], &d);
        assert!(q.iter().all(|x| x.is_finite()) && (q[0] - 1.5).abs() < 1e-6 && q[1] == 0.0);
    }

    /// On a 40×40 grid of triangles with a bump, the tree agrees with brute force for points everywhere, with
    /// and without a (deliberately bad) hint. 3200 triangles also exercise the multi-level build.
    #[test]
    fn matches_brute_force() {
        let n = 41;
        let positions: Vec<[f32; 3]> = (0..n * n)
            .map(|i| {
                let (x, y) = ((i % n) as f32 / 40.0, (i / n) as f32 / 40.0);
                [x, y, 0.2 * (6.0 * x).sin() * (5.0 * y).cos()]
            })
            .collect();
        let mut faces = Vec::new();
        for y in 0..n - 1 {
            for x in 0..n - 1 {
                let i = (y * n + x) as u32;
                faces.push([i, i + 1, i + n as u32 + 1]);
                faces.push([i, i + n as u32 + 1, i + n as u32]);
            }
        }
        let bvh = TriangleBvh::new(&positions, &faces);
        for k in 0..200 {
            let f = k as f32;
            let p = [(f * 0.37).fract() * 1.6 - 0.3, (f * 0.61).fract() * 1.6 - 0.3, (f * 0.23).fract() - 0.5];
            let expect = brute(&positions, &faces, p);
            for hint in [NO_HINT, 0, (k * 13 % faces.len()) as u32] {
                let hit = bvh.closest(p, hint);
                assert!((hit.dist_sq - expect).abs() <= 1e-6 * (1.0 + expect), "{p:?}: {} vs {expect}", hit.dist_sq);
                let f = bvh.face_of(hit.slot) as usize;
                let on = closest_on_triangle(p, &faces[f].map(|i| positions[i as usize]));
                assert!(dist_sq(on, hit.point) < 1e-10);
            }
        }
    }
}
