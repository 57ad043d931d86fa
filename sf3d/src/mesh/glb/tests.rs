//! Tests of the export: the geometry on hand-built meshes (a triangle, welds and seams, an inward-wound cube), the
//! tangent frame against the bake, input checks, and the writer's output read back with the independent `gltf`
//! crate.

use super::geometry::{DEGENERATE_NORMAL, angle_weighted_normals, weld};
use super::writer::{GLB_ALIGNMENT, JPEG_MIME, bounds};
use super::*;
use crate::mesh::{cross, dot, length, normalize, vertex_normals, vertex_tangents};
use std::collections::HashMap;

const EPS: f32 = 1e-6;

fn close3(a: [f32; 3], b: [f32; 3], tol: f32) -> bool {
    (0..3).all(|k| (a[k] - b[k]).abs() <= tol)
}

/// A `size`×`size` JPEG of one colour.
fn solid_jpeg(rgb: [u8; 3], size: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..size * size).flat_map(|_| rgb).collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut out)
        .encode(&pixels, size, size, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn test_material() -> GlbMaterial {
    GlbMaterial {
        albedo_jpeg: solid_jpeg([200, 120, 80], 16),
        normal_jpeg: solid_jpeg([128, 128, 255], 16),
        roughness: 0.57,
        metallic: 0.37,
    }
}

/// A split mesh plus the outward normal of each of its triangles.
struct Cube {
    positions: Vec<[f32; 3]>,
    faces: Vec<[u32; 3]>,
    uvs: Vec<[f32; 2]>,
    side_normals: Vec<[f32; 3]>,
}

/// A cube `[-1, 1]³` as the pipeline delivers it: split per corner, wound *inwards* like the marching-tets
/// mesh (§5.2, §7.1), box-projected so that each cube face is its own chart in a 3×2 UV grid.
fn inward_cube() -> Cube {
    // (outward normal n, tangent axes a, b with a × b = n)
    let sides: [([f32; 3], [f32; 3], [f32; 3]); 6] = [
        ([1., 0., 0.], [0., 1., 0.], [0., 0., 1.]),
        ([-1., 0., 0.], [0., 0., 1.], [0., 1., 0.]),
        ([0., 1., 0.], [0., 0., 1.], [1., 0., 0.]),
        ([0., -1., 0.], [1., 0., 0.], [0., 0., 1.]),
        ([0., 0., 1.], [1., 0., 0.], [0., 1., 0.]),
        ([0., 0., -1.], [0., 1., 0.], [1., 0., 0.]),
    ];
    let (mut pos, mut uvs, mut normals) = (Vec::new(), Vec::new(), Vec::new());
    for (side, (n, a, b)) in sides.iter().enumerate() {
        let corner = |s: f32, t: f32| -> ([f32; 3], [f32; 2]) {
            let p = std::array::from_fn(|k| n[k] + s * a[k] + t * b[k]);
            let (col, row) = ((side % 3) as f32, (side / 3) as f32);
            let uv = [(col + 0.1 + 0.4 * (s + 1.0)) / 3.0, (row + 0.1 + 0.4 * (t + 1.0)) / 2.0];
            (p, uv)
        };
        let [c00, c10, c11, c01] = [corner(-1., -1.), corner(1., -1.), corner(1., 1.), corner(-1., 1.)];
        // outward CCW triangles (c00, c10, c11) and (c00, c11, c01), reversed to face inwards
        for tri in [[c11, c10, c00], [c01, c11, c00]] {
            for (p, uv) in tri {
                pos.push(p);
                uvs.push(uv);
            }
            normals.push(*n);
        }
    }
    let faces = (0..12u32).map(|f| [3 * f, 3 * f + 1, 3 * f + 2]).collect();
    Cube { positions: pos, faces, uvs, side_normals: normals }
}

fn signed_volume(m: &ExportMesh) -> f64 {
    crate::mesh::TriMesh::new(m.positions.clone(), m.faces.clone()).unwrap().signed_volume()
}

/// One triangle in SF3D's z = 0 plane, CCW seen from +z (internal normal +z). The export maps
/// (x, y, z) → (−y, z, −x), reverses the face to (2, 1, 0), so the normal becomes the rotation of −z, i.e.
/// (0, −1, 0), and flips v.
#[test]
fn single_triangle_is_rotated_inverted_and_uv_flipped() {
    let pos = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let uvs = [[0.25, 0.0], [1.0, 0.25], [0.0, 0.75]];
    let m = prepare_export(&pos, &[[0, 1, 2]], &uvs).unwrap();
    assert_eq!(m.positions, vec![[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]);
    assert_eq!(m.faces, vec![[2, 1, 0]]);
    assert_eq!(m.uvs, vec![[0.25, 1.0], [1.0, 0.75], [0.0, 0.25]]);
    for n in &m.normals {
        assert!(close3(*n, [0.0, -1.0, 0.0], EPS), "{n:?}");
    }
    // the exported face's own winding gives the same normal
    let [a, b, c] = m.faces[0].map(|i| m.positions[i as usize]);
    assert!(close3(normalize(cross(crate::mesh::sub(b, a), crate::mesh::sub(c, a)), 0.0), m.normals[0], EPS));
}

/// Two per-corner triangles A B C | C' B' D sharing the edge B C. Identical corners weld, the first
/// occurrence is kept, order is first occurrence: A B C D.
#[test]
fn shared_edge_welds_in_first_occurrence_order() {
    let [a, b, c, d] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]];
    let uv = |p: [f32; 3]| [p[0] * 0.5, p[1] * 0.5];
    let pos = [a, b, c, c, b, d];
    let uvs = pos.map(uv);
    let m = prepare_export(&pos, &[[0, 1, 2], [3, 4, 5]], &uvs).unwrap();
    assert_eq!(m.positions, [a, b, c, d].map(sf3d_to_gltf).to_vec());
    // welded faces [[0,1,2],[2,1,3]], then inverted
    assert_eq!(m.faces, vec![[2, 1, 0], [3, 1, 2]]);
    // coplanar: every normal is the rotated −z
    assert!(m.normals.iter().all(|n| close3(*n, sf3d_to_gltf([0.0, 0.0, -1.0]), EPS)));
}

/// Same position but a different UV (a chart seam) keeps two vertices.
#[test]
fn seam_with_different_uvs_stays_split() {
    let [a, b, c, d] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]];
    let pos = [a, b, c, c, b, d];
    let mut uvs = pos.map(|p| [p[0] * 0.25, p[1] * 0.25]);
    for t in &mut uvs[3..] {
        t[0] += 0.5; // second triangle lives in another chart
    }
    let m = prepare_export(&pos, &[[0, 1, 2], [3, 4, 5]], &uvs).unwrap();
    assert_eq!(m.positions.len(), 6);
    assert_eq!(m.faces, vec![[2, 1, 0], [5, 4, 3]]);
}

/// The weld key is round(p·1e8) ++ round(uv·1e4): 1e-9 in position and 1e-5 in uv round away, 2e-8 and 2e-4
/// do not. The kept vertex is the first occurrence (position exactly 0, not 1e-9).
#[test]
fn weld_key_resolution_is_1e8_for_positions_and_1e4_for_uvs() {
    let tri = |dp: f32, du: f32| {
        let pos =
            [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [dp, 0.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]];
        let uvs = [[0.5, 0.5], [0.75, 0.5], [0.5, 0.75], [0.5 + du, 0.5], [0.5, 0.25], [0.75, 0.5]];
        prepare_export(&pos, &[[0, 1, 2], [3, 4, 5]], &uvs).unwrap()
    };
    let m = tri(1e-9, 1e-5);
    assert_eq!(m.positions.len(), 4, "vertex 3 welds onto vertex 0");
    assert_eq!(m.positions[0], [0.0, 0.0, 0.0]);
    assert_eq!(tri(2e-8, 0.0).positions.len(), 5, "2e-8 is two position quanta");
    assert_eq!(tri(0.0, 2e-4).positions.len(), 5, "2e-4 is two uv quanta");
}

/// trimesh's `merge_vertices` as it reads, one referenced vertex at a time through a map from key to id: what
/// [`weld`] must return.
fn weld_one_by_one(positions: &[[f32; 3]], uvs: &[[f32; 2]], faces: &[[u32; 3]]) -> (Vec<usize>, Vec<[u32; 3]>) {
    let q = |x: f32, scale: f64| (f64::from(x) * scale).round_ties_even() as i64;
    let mut referenced = vec![false; positions.len()];
    faces.iter().flatten().for_each(|&i| referenced[i as usize] = true);
    let (mut kept, mut remap, mut ids) = (Vec::new(), vec![u32::MAX; positions.len()], HashMap::new());
    for i in (0..positions.len()).filter(|&i| referenced[i]) {
        let (p, t) = (positions[i], uvs[i]);
        let key = [q(p[0], 1e8), q(p[1], 1e8), q(p[2], 1e8), q(t[0], 1e4), q(t[1], 1e4)];
        remap[i] = *ids.entry(key).or_insert_with(|| {
            kept.push(i);
            kept.len() as u32 - 1
        });
    }
    (kept, faces.iter().map(|t| t.map(|i| remap[i as usize])).collect())
}

/// A per-corner mesh of many small charts in scrambled corner order, with unreferenced vertices, corners that
/// weld across faces, seams (same position, other uv) and positions one quantum apart: the parallel weld numbers
/// the vertices exactly as the one-by-one weld does.
#[test]
fn weld_matches_the_one_by_one_weld() {
    let (grid, mut state) = (12u32, 0x2545_f491_4f6c_dd1du64);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut positions, mut uvs, mut faces) = (Vec::new(), Vec::new(), Vec::new());
    for f in 0..4000u32 {
        let corner = |k: u32, r: u64| {
            let (x, y) = ((f + k) % grid, (f / grid + k * (r as u32 % 3)) % grid);
            // One chart per 40 faces; a few corners land one position quantum (1e-8) off.
            let jitter = if r.is_multiple_of(17) { 1e-8 } else { 0.0 };
            let chart = (f / 40) as f32;
            ([x as f32 * 0.25 + jitter, y as f32 * 0.25, 0.5], [(x as f32 + chart) / 256.0, y as f32 / 64.0])
        };
        let mut t = [0u32; 3];
        for (k, slot) in t.iter_mut().enumerate() {
            let (p, uv) = corner(k as u32, next());
            if next().is_multiple_of(5) {
                positions.push([9.0, 9.0, 9.0]); // never referenced
                uvs.push([0.0, 0.0]);
            }
            *slot = positions.len() as u32;
            positions.push(p);
            uvs.push(uv);
        }
        faces.push(t);
    }
    // Scramble which face comes first, so first occurrences are not in face order.
    for i in (1..faces.len()).rev() {
        faces.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let want = weld_one_by_one(&positions, &uvs, &faces);
    let got = weld(&positions, &uvs, &faces).unwrap();
    assert!(want.0.len() < positions.len() / 2, "the mesh welds ({} of {})", want.0.len(), positions.len());
    assert_eq!(got, want);
}

/// Vertex O is shared by triangle A (in z = 0, angle 90° at O, normal +z) and triangle B (in x = 0, angle 45°
/// at O, normal +x); both have area 1/2. Angle weighting gives (π/4·x + π/2·z)/‖·‖ = (1, 0, 2)/√5, where area
/// weighting would give (1, 0, 1)/√2.
#[test]
fn normals_are_angle_weighted() {
    let pos = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]];
    let n = angle_weighted_normals(&pos, &[[0, 1, 2], [0, 3, 4]]);
    let expected = normalize([1.0, 0.0, 2.0], 0.0);
    assert!(close3(n[0], expected, EPS), "{:?} vs {expected:?}", n[0]);
}

/// A sliver with a 2e-9 rad angle counts as degenerate for angle weights (trimesh rule) but still has area,
/// so its vertices take the area-weighted normal; a collinear triangle has neither and takes (0, 0, 1).
#[test]
fn degenerate_triangles_still_get_unit_normals() {
    // in the y = 0 plane: (1,0,0) × (0.5,0,1e-9) = (0, −1e-9, 0)
    let sliver = angle_weighted_normals(&[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 1e-9]], &[[0, 1, 2]]);
    assert!(sliver.iter().all(|n| close3(*n, [0.0, -1.0, 0.0], EPS)), "{sliver:?}");
    let line = angle_weighted_normals(&[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], &[[0, 1, 2]]);
    assert!(line.iter().all(|n| *n == DEGENERATE_NORMAL), "{line:?}");
}

/// The inward-wound, box-unwrapped cube: 36 corners weld to 24 vertices (4 per side: the two triangles of a
/// side share two corners; sides are separate charts). Each side is planar, so the angle-weighted normals are
/// exactly the (rotated) outward side normals, and the exported mesh has the cube's volume 8 with positive sign.
#[test]
fn cube_welds_per_chart_and_faces_outwards() {
    let Cube { positions: pos, faces, uvs, side_normals } = inward_cube();
    let m = prepare_export(&pos, &faces, &uvs).unwrap();
    assert_eq!(m.positions.len(), 24);
    assert_eq!(m.faces.len(), 12);
    assert!((signed_volume(&m) - 8.0).abs() < 1e-9, "volume {}", signed_volume(&m));
    for (f, t) in m.faces.iter().enumerate() {
        let expected = sf3d_to_gltf(side_normals[f]);
        for &i in t {
            assert!(close3(m.normals[i as usize], expected, EPS), "face {f}: {:?}", m.normals[i as usize]);
        }
    }
    for t in tangents(&m).iter().zip(&m.normals) {
        let ([x, y, z, w], n) = t;
        assert!((length([*x, *y, *z]) - 1.0).abs() < EPS && dot([*x, *y, *z], *n).abs() < EPS && *w == -1.0);
    }
}

/// The tangent frame reproduces the bake (module docs): bake a normal `pn` into one texel of an internal
/// triangle with §6.9's frame (T_b, B_b = N_b × T_b, N_b from §5.5), export, and decode it the way a glTF
/// viewer does (`x·T + y·w·(N × T) + z·N`): the result is the rotated `−pn`. Checked for a normally oriented UV
/// triangle (den > 0) and a mirrored one (den < 0), where T_b flips. With the opposite handedness the decode
/// is wrong, so the test is sensitive to the choice.
#[test]
fn tangent_frame_decodes_the_baked_normal_inverted_like_the_geometry() {
    let pos = [[0.1, 0.2, 0.3], [0.9, 0.1, 0.4], [0.3, 0.8, 0.2]];
    for uvs in [[[0.1, 0.1], [0.6, 0.2], [0.2, 0.7]], [[0.6, 0.2], [0.1, 0.1], [0.2, 0.7]]] {
        let faces = [[0u32, 1, 2]];
        let n_b = vertex_normals(&pos, &faces)[0];
        let t_b = vertex_tangents(&pos, &uvs, &faces, &[n_b; 3])[0];
        let b_b = normalize(cross(n_b, t_b), 1e-12);
        let pn = normalize(std::array::from_fn(|k| 0.3 * t_b[k] - 0.2 * b_b[k] + 0.9 * n_b[k]), 0.0);
        let texel = [dot(t_b, pn), dot(b_b, pn), dot(n_b, pn)];

        let m = prepare_export(&pos, &faces, &uvs).unwrap();
        let expected = sf3d_to_gltf(pn.map(|x| -x));
        for (i, [tx, ty, tz, w]) in tangents(&m).into_iter().enumerate() {
            let (n, t) = (m.normals[i], [tx, ty, tz]);
            let decode = |w: f32| -> [f32; 3] {
                let b = cross(n, t).map(|x| w * x);
                std::array::from_fn(|k| texel[0] * t[k] + texel[1] * b[k] + texel[2] * n[k])
            };
            assert!(close3(decode(w), expected, 1e-5), "uvs {uvs:?}: {:?} vs {expected:?}", decode(w));
            assert!(!close3(decode(-w), expected, 1e-2), "the handedness must matter");
        }
    }
}

#[test]
fn unreferenced_vertices_are_dropped() {
    let pos = [[5.0, 5.0, 5.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let uvs = [[0.0, 0.0], [0.1, 0.1], [0.2, 0.1], [0.1, 0.2]];
    let m = prepare_export(&pos, &[[1, 2, 3]], &uvs).unwrap();
    assert_eq!(m.positions.len(), 3);
    assert_eq!(m.faces, vec![[2, 1, 0]]);
}

#[test]
fn prepare_export_rejects_invalid_input() {
    let pos = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let uvs = [[0.0, 0.0]; 3];
    assert!(matches!(prepare_export(&pos, &[[0, 1, 3]], &uvs), Err(Error::InvalidMesh(_))));
    assert!(matches!(prepare_export(&pos, &[[0, 1, 2]], &uvs[..2]), Err(Error::InvalidMesh(_))));
    let nan = [[f32::NAN, 0.0, 0.0], pos[1], pos[2]];
    assert!(matches!(prepare_export(&nan, &[[0, 1, 2]], &uvs), Err(Error::InvalidMesh(_))));
    assert_eq!(prepare_export(&pos, &[], &uvs).unwrap(), ExportMesh::default());
}

/// The cube written as GLB and read back with the independent `gltf` reader: container alignment, every
/// accessor's data, bounds, material, embedded JPEGs, provenance.
#[test]
fn cube_glb_round_trips_through_the_gltf_crate() {
    let Cube { positions: pos, faces, uvs, .. } = inward_cube();
    let mesh = prepare_export(&pos, &faces, &uvs).unwrap();
    let material = test_material();
    let info = GlbInfo {
        attribution: Some(sf3d_shared::STABILITY_ATTRIBUTION.into()),
        extras: serde_json::json!({ "job": "01TEST" }),
        ..GlbInfo::default()
    };
    let bytes = write_glb(&mesh, &material, &info).unwrap();
    dump_for_validation("unit_cube", &bytes);

    let glb = gltf::binary::Glb::from_slice(&bytes).unwrap();
    assert_eq!(glb.header.length as usize, bytes.len());
    assert_eq!(glb.json.len() % GLB_ALIGNMENT, 0);
    let bin = glb.bin.as_deref().unwrap();
    assert_eq!(bin.len() % GLB_ALIGNMENT, 0);

    let gltf = gltf::Gltf::from_slice(&bytes).unwrap();
    let doc = &gltf.document;
    let root = doc.as_json();
    assert_eq!(root.buffers[0].byte_length.0 as usize, bin.len());
    assert_eq!(root.asset.generator.as_deref(), Some(format!("sf3d-studio {}", env!("CARGO_PKG_VERSION")).as_str()));
    let asset_extras: serde_json::Value = serde_json::from_str(root.asset.extras.as_ref().unwrap().get()).unwrap();
    assert_eq!(asset_extras, serde_json::json!({ "job": "01TEST", "attribution": "Powered by Stability AI" }));

    let prim = doc.meshes().next().unwrap().primitives().next().unwrap();
    assert_eq!(prim.mode(), gltf::mesh::Mode::Triangles);
    assert_eq!(prim.indices().unwrap().data_type(), gltf::accessor::DataType::U32);
    let pos_acc = prim.get(&gltf::Semantic::Positions).unwrap();
    let (lo, hi) = bounds(&mesh.positions);
    assert_eq!(pos_acc.min().unwrap(), serde_json::json!(lo));
    assert_eq!(pos_acc.max().unwrap(), serde_json::json!(hi));
    let reader = prim.reader(|_| Some(bin));
    let indices: Vec<u32> = reader.read_indices().unwrap().into_u32().collect();
    assert_eq!(indices, mesh.faces.iter().flatten().copied().collect::<Vec<_>>());
    assert_eq!(reader.read_positions().unwrap().collect::<Vec<_>>(), mesh.positions);
    assert_eq!(reader.read_normals().unwrap().collect::<Vec<_>>(), mesh.normals);
    assert_eq!(reader.read_tex_coords(0).unwrap().into_f32().collect::<Vec<_>>(), mesh.uvs);
    assert_eq!(reader.read_tangents().unwrap().collect::<Vec<_>>(), tangents(&mesh));

    let mat = prim.material();
    assert_eq!(mat.pbr_metallic_roughness().roughness_factor(), material.roughness);
    assert_eq!(mat.pbr_metallic_roughness().metallic_factor(), material.metallic);
    assert!(!mat.double_sided());
    let mat_extras = root.materials[0].extras.as_ref().unwrap().get();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(mat_extras).unwrap(),
        serde_json::json!({ "attribution": "Powered by Stability AI" })
    );
    let embedded = |tex: gltf::Texture<'_>| -> (Option<String>, Vec<u8>) {
        match tex.source().source() {
            gltf::image::Source::View { view, mime_type } => {
                assert_eq!(view.offset() % GLB_ALIGNMENT, 0);
                (Some(mime_type.to_string()), bin[view.offset()..view.offset() + view.length()].to_vec())
            }
            gltf::image::Source::Uri { .. } => (None, Vec::new()),
        }
    };
    let albedo = mat.pbr_metallic_roughness().base_color_texture().unwrap().texture();
    assert_eq!(embedded(albedo), (Some(JPEG_MIME.into()), material.albedo_jpeg.clone()));
    let normal = mat.normal_texture().unwrap();
    assert_eq!(normal.scale(), 1.0);
    assert_eq!(embedded(normal.texture()), (Some(JPEG_MIME.into()), material.normal_jpeg.clone()));
}

/// Without attribution and extras nothing is written into `asset.extras` or the material's extras.
#[test]
fn no_attribution_means_no_extras() {
    let Cube { positions: pos, faces, uvs, .. } = inward_cube();
    let mesh = prepare_export(&pos, &faces, &uvs).unwrap();
    let bytes = write_glb(&mesh, &test_material(), &GlbInfo::default()).unwrap();
    let gltf = gltf::Gltf::from_slice(&bytes).unwrap();
    assert!(gltf.document.as_json().asset.extras.is_none());
    assert!(gltf.document.as_json().materials[0].extras.is_none());
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(ATTRIBUTION_KEY));
}

#[test]
fn write_glb_rejects_invalid_input() {
    let Cube { positions: pos, faces, uvs, .. } = inward_cube();
    let mesh = prepare_export(&pos, &faces, &uvs).unwrap();
    let info = GlbInfo::default();
    let ok = test_material();
    assert!(write_glb(&mesh, &ok, &info).is_ok());

    let png = GlbMaterial { albedo_jpeg: b"\x89PNG\r\n\x1a\n".to_vec(), ..ok.clone() };
    assert!(matches!(write_glb(&mesh, &png, &info), Err(Error::UnsupportedImage(_))));
    for (roughness, metallic) in [(f32::NAN, 0.5), (0.5, 1.5), (-0.1, 0.5)] {
        let bad = GlbMaterial { roughness, metallic, ..ok.clone() };
        assert!(matches!(write_glb(&mesh, &bad, &info), Err(Error::Internal(_))), "{roughness} {metallic}");
    }
    let extras = GlbInfo { extras: serde_json::json!("not an object"), ..GlbInfo::default() };
    assert!(matches!(write_glb(&mesh, &ok, &extras), Err(Error::Internal(_))));

    let mut bad = mesh.clone();
    bad.faces[0][0] = bad.positions.len() as u32;
    assert!(matches!(write_glb(&bad, &ok, &info), Err(Error::InvalidMesh(_))));
    let mut bad = mesh.clone();
    bad.normals[0] = [0.0, 0.0, 2.0];
    assert!(matches!(write_glb(&bad, &ok, &info), Err(Error::InvalidMesh(_))));
    let mut bad = mesh.clone();
    bad.uvs.pop();
    assert!(matches!(write_glb(&bad, &ok, &info), Err(Error::InvalidMesh(_))));
    assert!(matches!(write_glb(&ExportMesh::default(), &ok, &info), Err(Error::InvalidMesh(_))));
}

#[test]
fn dump_to_dir_writes_a_plain_glb_file_name() {
    let dir = std::env::temp_dir().join(format!("sf3d-glb-dump-{}", std::process::id()));
    let path = dump_to_dir(&dir, "../a b/c", b"glTF").unwrap();
    assert_eq!(path, dir.join(".._a_b_c.glb"));
    assert_eq!(std::fs::read(&path).unwrap(), b"glTF");
    assert_eq!(dump_to_dir(&dir, "x.GLB", b"").unwrap(), dir.join("x.GLB"));
    std::fs::remove_dir_all(&dir).unwrap();
}
