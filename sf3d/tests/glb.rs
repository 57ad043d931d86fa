//! GLB export against the reference (docs/engine.md §7): golden parity of
//! [`sf3d::mesh::glb::prepare_export`], comparison with the reference's own `mesh.glb`, and the Khronos
//! glTF-Validator via `scripts/validate-glb.mjs`.
//!
//! The validator tests need `node` and the npm package `gltf-validator` (`npm ci`). They skip with a printed
//! reason when either is missing, unless `SF3D_REQUIRE_VALIDATOR=1`, in which case they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result};

use sf3d::golden::{GoldenSet, Tolerance, compare};
use sf3d::mesh::glb::{self, ExportMesh, GlbInfo, GlbMaterial};

/// Positions: the reference rotates in float64 and stores float32; ours is the exact signed permutation, so
/// anything beyond float32 rounding is a real difference.
const POSITION_TOL: f32 = 1e-5;
/// UVs are copied and flipped (`1 − v`), float32 rounding at most.
const UV_TOL: f32 = 1e-5;
/// Normals go through float64 angle and cross-product arithmetic in both implementations; 1e-4 leaves room for
/// a different summation order, far below any real change (a wrong weighting moves normals by ~1e-2).
const NORMAL_TOL: f32 = 1e-4;
/// Side of the solid-colour test textures (a power of two, so the validator has nothing to say about it).
const TEXTURE_SIZE: u32 = 64;
/// Environment variable that turns a missing validator into a failure.
const REQUIRE_VALIDATOR_ENV: &str = "SF3D_REQUIRE_VALIDATOR";
/// Exit status of `validate-glb.mjs` for a usage error or a missing `gltf-validator` package.
const VALIDATOR_UNAVAILABLE: i32 = 2;

fn golden() -> Result<GoldenSet> {
    Ok(GoldenSet::open(GoldenSet::default_dir())?)
}

/// `prepare_export` on the golden unwrapped mesh (`unwrap_v_pos`, `unwrap_t_pos_idx`, `unwrap_v_tex`).
fn golden_export(set: &GoldenSet) -> Result<ExportMesh> {
    let positions = set.f32("unwrap_v_pos")?.rows::<3>()?;
    let faces = set
        .i32("unwrap_t_pos_idx")?
        .rows::<3>()?
        .into_iter()
        .map(|[a, b, c]| Ok([u32::try_from(a)?, u32::try_from(b)?, u32::try_from(c)?]))
        .collect::<Result<Vec<[u32; 3]>>>()?;
    let uvs = set.f32("unwrap_v_tex")?.rows::<2>()?;
    Ok(glb::prepare_export(&positions, &faces, &uvs)?)
}

fn flat<const N: usize>(rows: &[[f32; N]]) -> Vec<f32> {
    rows.iter().flatten().copied().collect()
}

/// A `size`×`size` JPEG of one colour.
fn solid_jpeg(rgb: [u8; 3], size: u32) -> Result<Vec<u8>> {
    let pixels: Vec<u8> = (0..size * size).flat_map(|_| rgb).collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut out).encode(&pixels, size, size, image::ExtendedColorType::Rgb8)?;
    Ok(out)
}

/// The golden unwrapped mesh written by our exporter, with the golden material factors and solid textures.
fn golden_glb(set: &GoldenSet) -> Result<Vec<u8>> {
    let material = GlbMaterial {
        albedo_jpeg: solid_jpeg([180, 140, 100], TEXTURE_SIZE)?,
        normal_jpeg: solid_jpeg([128, 128, 255], TEXTURE_SIZE)?, // flat (0, 0, 1)
        roughness: set.f32("final_roughness_factor")?.data[0],
        metallic: set.f32("final_metallic_factor")?.data[0],
    };
    let info = GlbInfo {
        attribution: Some(sf3d_shared::STABILITY_ATTRIBUTION.into()),
        extras: serde_json::json!({ "source": "golden tiny-a" }),
        ..GlbInfo::default()
    };
    Ok(glb::write_glb(&golden_export(set)?, &material, &info)?)
}

/// Accessor data of the first primitive of a GLB, read with the `gltf` crate.
struct Primitive {
    positions: Vec<[f32; 3]>,
    normals: Vec<[f32; 3]>,
    uvs: Vec<[f32; 2]>,
    indices: Vec<u32>,
    has_tangents: bool,
}

fn read_primitive(bytes: &[u8]) -> Result<Primitive> {
    let gltf = gltf::Gltf::from_slice(bytes)?;
    let blob = gltf.blob.as_deref();
    let prim = gltf.document.meshes().next().and_then(|m| m.primitives().next()).context("no primitive")?;
    let reader = prim.reader(|_| blob);
    Ok(Primitive {
        positions: reader.read_positions().context("no POSITION")?.collect(),
        normals: reader.read_normals().context("no NORMAL")?.collect(),
        uvs: reader.read_tex_coords(0).context("no TEXCOORD_0")?.into_f32().collect(),
        indices: reader.read_indices().context("no indices")?.into_u32().collect(),
        has_tangents: reader.read_tangents().is_some(),
    })
}

/// `prepare_export` reproduces trimesh's welded, rotated, inverted mesh: counts, faces exactly, positions, normals,
/// and UVs — the golden `final_uv` is trimesh's value *before* its glTF export flips v, so ours (glTF convention)
/// must equal `(u, 1 − v)` of it and must not equal it unflipped.
#[test]
fn golden_prepare_export_matches_reference() -> Result<()> {
    let set = golden()?;
    let m = golden_export(&set)?;
    // The welded counts of the set's own mesh (`SF3D_GOLDEN` may name any set).
    let counts = (set.f32("final_vertices")?.rows::<3>()?.len(), set.i32("final_faces")?.rows::<3>()?.len());
    assert_eq!((m.positions.len(), m.faces.len()), counts);

    // indices < 2^24 are exact in f32
    let faces: Vec<f32> = m.faces.iter().flatten().map(|&i| i as f32).collect();
    let golden_faces: Vec<f32> = set.i32("final_faces")?.data.iter().map(|&i| i as f32).collect();
    let golden_uv = set.f32("final_uv")?.rows::<2>()?;
    let golden_uv_gltf: Vec<[f32; 2]> = golden_uv.iter().map(|&[u, v]| [u, 1.0 - v]).collect();
    let checks = [
        compare("final_faces", &faces, &golden_faces, Tolerance::Exact),
        compare("final_vertices", &flat(&m.positions), &set.f32("final_vertices")?.data, Tolerance::Abs(POSITION_TOL)),
        compare("final_uv (u, 1 - v)", &flat(&m.uvs), &flat(&golden_uv_gltf), Tolerance::Abs(UV_TOL)),
        compare(
            "final_vertex_normals",
            &flat(&m.normals),
            &set.f32("final_vertex_normals")?.data,
            Tolerance::Abs(NORMAL_TOL),
        ),
    ];
    for c in &checks {
        println!("{c}");
    }
    assert!(checks.iter().all(|c| c.pass), "parity failed");
    let unflipped = compare("final_uv as stored", &flat(&m.uvs), &flat(&golden_uv), Tolerance::Abs(UV_TOL));
    println!("{unflipped}");
    assert!(!unflipped.pass, "the golden final_uv is expected to be the pre-flip (v up) value");
    Ok(())
}

/// Our GLB read back with the `gltf` crate carries the same accessor data as the reference's `mesh.glb`
/// (positions, normals, UVs, indices), plus the TANGENT the reference lacks.
#[test]
fn golden_glb_matches_reference_mesh_glb() -> Result<()> {
    let set = golden()?;
    let ours = read_primitive(&golden_glb(&set)?)?;
    let reference = read_primitive(&std::fs::read(set.file("mesh.glb"))?)?;
    assert_eq!(ours.indices, reference.indices, "indices");
    let checks = [
        compare("mesh.glb POSITION", &flat(&ours.positions), &flat(&reference.positions), Tolerance::Abs(POSITION_TOL)),
        compare("mesh.glb NORMAL", &flat(&ours.normals), &flat(&reference.normals), Tolerance::Abs(NORMAL_TOL)),
        compare("mesh.glb TEXCOORD_0", &flat(&ours.uvs), &flat(&reference.uvs), Tolerance::Abs(UV_TOL)),
    ];
    for c in &checks {
        println!("{c}");
    }
    assert!(checks.iter().all(|c| c.pass), "mesh.glb parity failed");
    assert!(ours.has_tangents && !reference.has_tangents);
    Ok(())
}

fn workspace_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("..")
}

/// Runs `node scripts/validate-glb.mjs PATHS…`. `Ok(None)` (after printing why) when node or the validator
/// package is unavailable and `SF3D_REQUIRE_VALIDATOR` is not `1`; an error when it is.
fn run_validator(paths: &[&Path]) -> Result<Option<Output>> {
    let root = workspace_root();
    let result =
        Command::new("node").arg(root.join("scripts").join("validate-glb.mjs")).args(paths).current_dir(&root).output();
    let unavailable = match result {
        Err(e) => format!("cannot run node: {e}"),
        Ok(out) if out.status.code() == Some(VALIDATOR_UNAVAILABLE) => {
            format!("validator unavailable: {}", String::from_utf8_lossy(&out.stderr).trim())
        }
        Ok(out) => return Ok(Some(out)),
    };
    if std::env::var(REQUIRE_VALIDATOR_ENV).is_ok_and(|v| v == "1") {
        anyhow::bail!("{REQUIRE_VALIDATOR_ENV}=1 but {unavailable}");
    }
    println!("skipping the Khronos validator check: {unavailable} (set {REQUIRE_VALIDATOR_ENV}=1 to make this fail)");
    Ok(None)
}

/// A fresh directory under the system temp dir, unique to this test process.
fn scratch_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sf3d-glb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The GLB we write for the golden mesh passes the Khronos glTF-Validator with 0 errors and 0 warnings (the
/// script's exit status says so; the printed line is checked too).
#[test]
fn golden_glb_passes_khronos_validator() -> Result<()> {
    let bytes = golden_glb(&golden()?)?;
    glb::dump_for_validation("golden_tiny_a", &bytes);
    let dir = scratch_dir("validator")?;
    let path = glb::dump_to_dir(&dir, "golden_tiny_a", &bytes)?;
    let Some(out) = run_validator(&[&path])? else {
        return Ok(());
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "validator rejected our GLB");
    assert!(stdout.contains("errors=0 warnings=0"), "{stdout}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Informational, pinned: the validator on the reference's own `mesh.glb` finds no error and exactly one
/// warning, `MESH_PRIMITIVE_GENERATED_TANGENT_SPACE` (normal map without TANGENT), which is why `write_glb`
/// writes TANGENT. The script must therefore fail on it.
#[test]
fn reference_mesh_glb_validator_findings() -> Result<()> {
    let path = golden()?.file("mesh.glb");
    let Some(out) = run_validator(&[&path])? else {
        return Ok(());
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(!out.status.success(), "a warning must make validate-glb.mjs fail");
    assert!(stdout.contains("errors=0 warnings=1 "), "{stdout}");
    assert!(stdout.contains("MESH_PRIMITIVE_GENERATED_TANGENT_SPACE"), "{stdout}");
    Ok(())
}

/// The script fails when it finds no .glb at all (an empty dump directory must not pass silently).
#[test]
fn validator_script_fails_without_glb_files() -> Result<()> {
    let dir = scratch_dir("empty")?;
    let Some(out) = run_validator(&[&dir])? else {
        return Ok(());
    };
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
