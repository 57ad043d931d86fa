//! UV unwrap and texture bake: golden `tiny-a` parity of every bake stage (§6.8–6.11) and atlas properties of the
//! unwrapper (§6.1–6.7). Each comparison prints a `sf3d::golden::compare` row (max abs / max rel error). Section
//! numbers refer to docs/engine.md.

// Test helpers outside #[test] fns unwrap golden reads: a missing or malformed golden file is a test failure.
#![allow(clippy::unwrap_used)]

use sf3d::NoProgress;
use sf3d::golden::{GoldenSet, Tolerance, compare};
use sf3d::mesh::TriMesh;
use sf3d::mesh::bake::{self, DitherMask, Rasterization};
use sf3d::mesh::uv_unwrap::{ISLAND_PADDING, UnwrapStats, UnwrappedMesh, unwrap_uv};

/// Golden bake resolution (README: run_image bake_resolution 128).
const GOLDEN_RES: u32 = 128;
/// Float-texture parity bound away from triangle edges (the project's per-stage fidelity target).
const TEX_TOL: f32 = 1e-4;

fn golden() -> GoldenSet {
    GoldenSet::open(GoldenSet::default_dir()).unwrap()
}

/// The reference's unwrapped mesh, straight from the golden tensors.
fn golden_unwrapped(set: &GoldenSet) -> UnwrappedMesh {
    let faces = set.i32("unwrap_t_pos_idx").unwrap().rows::<3>().unwrap();
    UnwrappedMesh {
        positions: set.f32("unwrap_v_pos").unwrap().rows::<3>().unwrap(),
        faces: faces.iter().map(|t| t.map(|i| i as u32)).collect(),
        uvs: set.f32("unwrap_v_tex").unwrap().rows::<2>().unwrap(),
        normals: set.f32("unwrap_v_nrm").unwrap().rows::<3>().unwrap(),
        tangents: set.f32("unwrap_v_tng").unwrap().rows::<3>().unwrap(),
        face_layers: vec![0; faces.len()],
        face_directions: vec![0; faces.len()],
        stats: UnwrapStats::default(),
    }
}

/// Texels whose float value differs by more than `tol` in any channel.
fn differing(a: &[[f32; 3]], b: &[f32], tol: f32) -> Vec<usize> {
    a.iter()
        .zip(b.chunks_exact(3))
        .enumerate()
        .filter(|(_, (x, y))| x.iter().zip(*y).any(|(p, q)| (p - q).abs() > tol))
        .map(|(i, _)| i)
        .collect()
}

/// Whether texel `i` lies on an edge of its face (its sample point is within 1e-4 of a barycentric bound):
/// such texels may legitimately pick another face than the reference's BVH walk.
fn on_edge(rast: &Rasterization, i: usize) -> bool {
    rast.face[i] >= 0 && rast.bary[i].iter().any(|&b| b.abs() < 1e-4)
}

#[test]
fn rasterize_matches_golden() {
    let set = golden();
    let mesh = golden_unwrapped(&set);
    let rast = bake::rasterize(&mesh.uvs, &mesh.faces, GOLDEN_RES);
    let g = set.f32("bake_rast").unwrap();
    let gmask = set.f32("bake_mask").unwrap();
    let mask: Vec<f32> = rast.mask().iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    let c = compare("bake_mask", &mask, &gmask.data, Tolerance::Exact);
    println!("{c}");
    assert!(c.pass);

    let (mut face_diff, mut face_diff_off_edge, mut bary_max) = (0, 0, 0f32);
    for i in 0..rast.face.len() {
        let gf = g.data[4 * i + 3] as i32;
        if gf != rast.face[i] {
            face_diff += 1;
            if !on_edge(&rast, i) {
                face_diff_off_edge += 1;
            }
        } else {
            for k in 0..3 {
                bary_max = bary_max.max((rast.bary[i][k] - g.data[4 * i + k]).abs());
            }
        }
    }
    println!(
        "bake_rast: {} covered texels, face id differs at {face_diff} (off-edge {face_diff_off_edge}), \
         max |Δbary| where faces agree {bary_max:.3e}",
        rast.covered()
    );
    assert_eq!(face_diff_off_edge, 0);
    // f32 barycentrics of ~1e-3-sized UV triangles carry ~1e-5 rounding (the positions they produce agree to
    // <1e-6, see bake_pos).
    assert!(bary_max <= 1e-4);

    for (name, attr) in [("bake_pos", &mesh.positions), ("bake_nrm", &mesh.normals), ("bake_tng", &mesh.tangents)] {
        let ours = bake::interpolate(attr, &mesh.faces, &rast);
        let gold = set.f32(name).unwrap();
        let c = compare(name, ours.as_flattened(), &gold.data, Tolerance::Abs(TEX_TOL));
        let bad = differing(&ours, &gold.data, TEX_TOL);
        let bad_off_edge = bad.iter().filter(|&&i| !on_edge(&rast, i)).count();
        println!("{c}  ({} texels > tol, {bad_off_edge} off triangle edges)", bad.len());
        assert_eq!(bad_off_edge, 0, "{name}");
    }
}

/// The golden decoder outputs stand in for the network: they are exactly the reference's values at
/// `bake_pos[bake_mask]`, so the bake must ask for those positions in that order.
#[test]
fn bake_matches_golden_textures() {
    let set = golden();
    let mesh = golden_unwrapped(&set);
    let features = set.f32("bake_decoded_features").unwrap().rows::<3>().unwrap();
    let perturb = set.f32("bake_decoded_perturb_normal").unwrap().rows::<3>().unwrap();
    let gpos = set.f32("bake_pos").unwrap().rows::<3>().unwrap();
    let gmask = set.f32("bake_mask").unwrap();
    let expected_pos: Vec<[f32; 3]> =
        gpos.iter().zip(&gmask.data).filter(|(_, m)| **m > 0.5).map(|(p, _)| *p).collect();
    let mut decoder = |pos: &[[f32; 3]]| -> sf3d::Result<bake::DecodedTexels> {
        let c = compare("bake_pos[bake_mask]", pos.as_flattened(), expected_pos.as_flattened(), Tolerance::Abs(1e-5));
        println!("{c}");
        assert!(c.pass);
        Ok((features.clone(), perturb.clone()))
    };
    let baked = bake::bake(&mesh, GOLDEN_RES, &mut decoder, 7, &mut NoProgress).unwrap();
    let rast = bake::rasterize(&mesh.uvs, &mesh.faces, GOLDEN_RES);
    for (name, ours) in [("tex_albedo", &baked.albedo_float), ("tex_bump", &baked.normal_float)] {
        let gold = set.f32(name).unwrap();
        let c = compare(name, ours.as_flattened(), &gold.data, Tolerance::Abs(TEX_TOL));
        let bad = differing(ours, &gold.data, TEX_TOL);
        let bad_off_edge = bad.iter().filter(|&&i| !on_edge(&rast, i)).count();
        println!("{c}  ({} texels > tol, {bad_off_edge} off triangle edges)", bad.len());
        assert_eq!(bad_off_edge, 0, "{name}");
    }
    assert_eq!(baked.albedo.dimensions(), (GOLDEN_RES, GOLDEN_RES));
    let covered = gmask.data.iter().filter(|&&m| m > 0.5).count() as f32;
    assert!((baked.coverage - covered / (GOLDEN_RES * GOLDEN_RES) as f32).abs() < 1e-7);
    // §5.8: a good reconstruction has a normal map whose blue channel is close to 1 inside the mask; with random
    // weights we only check it is a valid tangent-space map (blue ≥ 0.5 on average: perturbation faces outwards).
    let blue: f32 = baked.normal_float.iter().zip(&baked.mask).filter(|(_, m)| **m).map(|(p, _)| p[2]).sum();
    println!("mean normal-map blue inside mask {:.4}", blue / covered);
}

#[test]
fn dilate_fill_matches_golden() {
    let set = golden();
    let albedo = set.f32("tex_albedo").unwrap().rows::<3>().unwrap();
    let mask: Vec<bool> = set.f32("bake_mask").unwrap().data.iter().map(|&m| m > 0.5).collect();
    let ours = bake::dilate_fill(&albedo, &mask, GOLDEN_RES, 3);
    let gold = set.f32("dilate_test_out").unwrap();
    let c = compare("dilate_test_out", ours.as_flattened(), &gold.data, Tolerance::Abs(1e-5));
    println!("{c}");
    assert!(c.pass);
    assert_eq!(set.i32("bake_dilate_iterations").unwrap().data, vec![(GOLDEN_RES / bake::DILATION_DIVISOR) as i32]);
}

/// A single covered texel in the middle of a 5×5 image spreads to its 8 neighbours in one iteration. Every
/// neighbour p sums mean(q) over the interior window centres q around it; each interior centre whose window holds
/// the valid texel has mean = v (one valid texel of value v), and C[p] counts the 9 grown texels around p that are
/// in range. For the corner neighbour (1, 1): the interior centres around it are (1..3)×(1..3) → 4 of them see the
/// centre texel (2, 2) → S = 4v; C = 4 grown texels in its 3×3 ((1,1),(1,2),(2,1),(2,2)) → fill = v.
#[test]
fn dilate_fill_single_texel() {
    let n = 5u32;
    let mut img = vec![[0f32; 3]; 25];
    let mut mask = vec![false; 25];
    img[12] = [0.8, 0.4, 0.2];
    mask[12] = true;
    let out = bake::dilate_fill(&img, &mask, n, 1);
    assert_eq!(out[12], img[12]);
    for (i, p) in out[6].iter().zip(img[12]) {
        assert!((i - p).abs() < 1e-6, "{:?}", out[6]);
    }
    // Texels two steps away stay empty after one iteration.
    assert_eq!(out[0], [0.0; 3]);
}

/// §6.11 without dither: 0.5 → 128, 1.0 → 255 (clip), 0 → 0; dithered values stay within one step of
/// `floor(256·x)` and the bytes depend only on the seed.
#[test]
fn to_u8_quantises_like_the_reference() {
    let img = vec![[0.0, 0.5, 1.0], [0.25, 0.999, 0.1]];
    assert_eq!(bake::to_u8(&img, DitherMask::Off, 0), vec![[0, 128, 255], [64, 255, 25]]);
    let big: Vec<[f32; 3]> = (0..10_000).map(|i| [(i % 97) as f32 / 97.0, 0.5, 0.3]).collect();
    let a = bake::to_u8(&big, DitherMask::All, 42);
    assert_eq!(a, bake::to_u8(&big, DitherMask::All, 42));
    assert_ne!(a, bake::to_u8(&big, DitherMask::All, 43));
    for (px, src) in a.iter().zip(&big) {
        for (b, x) in px.iter().zip(src) {
            let base = (256.0 * x).floor();
            assert!((f32::from(*b) - base).abs() <= 1.0, "{x} -> {b}");
        }
    }
    // The normal-map quirk: only exactly flat texels are dithered.
    let flat = vec![[0.5, 0.5, 1.0]; 4096];
    let q = bake::to_u8(&flat, DitherMask::FlatOnly, 1);
    assert!(q.iter().any(|p| p[0] == 127) && q.iter().any(|p| p[0] == 128));
    assert!(bake::to_u8(&flat, DitherMask::ExceptFlat, 1).iter().all(|p| *p == [128, 128, 255]));
}

/// The sampling factors `(horizontal << 4) | vertical` of each component in a baseline JPEG's SOF0 frame header.
fn sof0_sampling(jpeg: &[u8]) -> Vec<u8> {
    let Some(at) = jpeg.windows(2).position(|m| m == [0xFF, 0xC0]) else { panic!("no baseline (SOF0) frame header") };
    let components = usize::from(jpeg[at + 9]);
    (0..components).map(|c| jpeg[at + 11 + 3 * c]).collect()
}

#[test]
fn jpeg_round_trips_with_chroma_subsampled_like_pil() {
    // Odd sides: the encoder pads the last MCUs (16×16 under 4:2:0) and the decoder crops them.
    for (w, h) in [(64, 64), (37, 29), (1, 1)] {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
        let bytes = bake::encode_jpeg(&img, bake::JPEG_QUALITY).unwrap();
        assert_eq!(sof0_sampling(&bytes), [0x22, 0x11, 0x11], "Y at 2×2, Cb and Cr at 1×1 (4:2:0)");
        let back = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (w, h));
        let err = img
            .pixels()
            .zip(back.pixels())
            .flat_map(|(a, b)| (0..3).map(move |c| (i32::from(a[c]) - i32::from(b[c])).abs()))
            .max();
        assert!(err.unwrap_or(0) < 16, "{w}×{h}: max error {err:?}");
    }
}

/// Doubled UV area below which the overlap rule calls a triangle degenerate (§6.5, `EPSILON` = 1e-7).
const DEGENERATE_TWICE_AREA: f64 = 1e-7;

/// Checks an atlas: UVs in [0, 1] and no two non-degenerate (|2·area| ≥ 1e-7) triangles claim the same texel centre at `res`
/// (strictly inside both by a relative 1e-4, so shared edges and sub-1e-10 slivers do not count). Returns the number of claimed texels.
fn assert_atlas_without_overlap(uvs: &[[f32; 2]], faces: &[[u32; 3]], res: usize) -> usize {
    assert!(uvs.iter().flatten().all(|x| (0.0..=1.0).contains(x)), "UV outside [0, 1]");
    let mut owner = vec![-1i32; res * res];
    let mut clashes = 0;
    for (f, t) in faces.iter().enumerate() {
        let [a, b, c] = t.map(|i| uvs[i as usize].map(f64::from));
        let det = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
        // The overlap test (reference and ours) treats triangles with |2·area| < 1e-7 in chart units as degenerate
        // and never moves them; charts are at most ~3× larger than their atlas cell, so skip those below 1e-7 here.
        if det.abs() < DEGENERATE_TWICE_AREA {
            continue;
        }
        let lo = [a[0].min(b[0]).min(c[0]), a[1].min(b[1]).min(c[1])];
        let hi = [a[0].max(b[0]).max(c[0]), a[1].max(b[1]).max(c[1])];
        let r = res as f64;
        let (x0, x1) = (((lo[0] * r - 0.5).floor().max(0.0)) as usize, ((hi[0] * r).ceil() as usize).min(res - 1));
        let (y0, y1) = (((lo[1] * r - 0.5).floor().max(0.0)) as usize, ((hi[1] * r).ceil() as usize).min(res - 1));
        for y in y0..=y1 {
            for x in x0..=x1 {
                let p = [(x as f64 + 0.5) / r, (y as f64 + 0.5) / r];
                let w1 = ((p[0] - a[0]) * (c[1] - a[1]) - (p[1] - a[1]) * (c[0] - a[0])) / det;
                let w2 = ((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])) / det;
                let w0 = 1.0 - w1 - w2;
                // Texel centres within a relative 1e-4 of an edge are edge ties: the unwrapper (like the reference)
                // tolerates sliver overlaps below 1e-10 in area, which can be long and ~1e-8 thin.
                const STRICT: f64 = 1e-4;
                if w0 > STRICT && w1 > STRICT && w2 > STRICT {
                    let o = &mut owner[y * res + x];
                    if *o >= 0 {
                        clashes += 1;
                    }
                    *o = f as i32;
                }
            }
        }
    }
    assert_eq!(clashes, 0, "texel centres claimed by two triangles");
    owner.iter().filter(|&&o| o >= 0).count()
}

/// The golden marching-tetrahedra mesh unwraps into a valid atlas (UVs in [0, 1], no overlap at 4096², stats
/// consistent) — and so does the reference's own atlas, which calibrates the checker.
#[test]
fn golden_mesh_unwraps_without_overlap() {
    let set = golden();
    let faces: Vec<[u32; 3]> =
        set.i32("mt_t_pos_idx").unwrap().rows::<3>().unwrap().iter().map(|t| t.map(|i| i as u32)).collect();
    let mesh = TriMesh::new(set.f32("mt_v_pos").unwrap().rows::<3>().unwrap(), faces).unwrap();
    let normals = set.f32("unwrap_in_v_nrm").unwrap().rows::<3>().unwrap();
    let out = unwrap_uv(&mesh, &normals, ISLAND_PADDING, &mut NoProgress).unwrap();
    assert_eq!(out.stats.layer_histogram.iter().sum::<u32>() as usize, mesh.face_count());
    let res = 4096;
    let claimed = assert_atlas_without_overlap(&out.uvs, &out.faces, res);
    println!(
        "ours: utilisation {:.4}, texel-centre coverage at {res}² {:.4}, layers {:?}",
        out.stats.utilisation,
        claimed as f64 / (res * res) as f64,
        out.stats.layer_histogram
    );
    let golden_mesh = golden_unwrapped(&set);
    let claimed = assert_atlas_without_overlap(&golden_mesh.uvs, &golden_mesh.faces, res);
    println!("golden: texel-centre coverage at {res}² {:.4}", claimed as f64 / (res * res) as f64);
    // Per-corner split: 3 vertices per face, flat unit normals.
    assert_eq!(out.positions.len(), 3 * mesh.face_count());
    assert!(out.normals.iter().all(|n| ((n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt() - 1.0).abs() < 1e-5));
}

/// A closed, bumpy sphere (a UV sphere with a radial ripple, so charts fold over themselves) unwraps without
/// overlap, and its layers 6…12 are populated.
#[test]
fn bumpy_sphere_unwraps_without_overlap() {
    let mesh = sf3d::mesh::shapes::bumpy_ellipsoid(48, 96).unwrap();
    let normals = mesh.vertex_normals();
    let out = unwrap_uv(&mesh, &normals, ISLAND_PADDING, &mut NoProgress).unwrap();
    let claimed = assert_atlas_without_overlap(&out.uvs, &out.faces, 4096);
    println!(
        "bumpy sphere {} faces: utilisation {:.4}, coverage {:.4}, layers {:?}",
        mesh.face_count(),
        out.stats.utilisation,
        claimed as f64 / (4096.0 * 4096.0),
        out.stats.layer_histogram
    );
    assert!(out.stats.layer_histogram[6..].iter().sum::<u32>() > 0, "expected some folded faces");
}
