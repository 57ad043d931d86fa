//! Texture baking (docs/engine.md §6.8–6.11; reference `texture_baker` and the bake section of
//! `sf3d/system.py` `generate_mesh`, plus `dilate_fill` / `float32_to_uint8_np` of `sf3d/utils.py`). Section
//! numbers refer to docs/engine.md.
//!
//! * [`rasterize`]: UV-space rasterisation at texel **corners** (`u = x/R`, `v = 1 − y/R`), inclusive edges,
//!   barycentrics exactly as §6.8 writes them (in f32). Where several faces contain a sample point (shared edges)
//!   the lowest face index wins; the reference takes the first hit of its BVH walk, so face ids (not positions)
//!   can differ there.
//! * [`interpolate`]: barycentric interpolation of a per-vertex attribute.
//! * [`tangent_space_normals`]: the decoder's perturbed normal in the (T, B, N) frame of each texel (§6.9).
//! * [`dilate_fill`]: the reference's UV padding, replicated literally including its fill weights (§6.10).
//! * [`to_u8`]: `floor(256·x + δ)` quantisation with the reference's dither (§6.11), from a seeded ChaCha8 stream
//!   so bytes are reproducible (the reference uses unseeded numpy).
//! * [`bake`]: the whole procedure for one object, parallel over texels with rayon.
//!
//! Normal-map dither: the reference multiplies the dither by a mask that is 1 exactly on flat texels
//! `(0.5, 0.5, 1.0)` — the opposite of its comment. We keep that behaviour ([`DitherMask::FlatOnly`]) so the bytes
//! follow the reference; in practice no baked texel is bit-exactly flat, so the normal map is effectively
//! undithered. [`DitherMask::ExceptFlat`] implements the stated intent.

use image::RgbImage;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::uv_unwrap::UnwrappedMesh;
use super::{cross, dot, normalize};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Texture resolutions the engine accepts (the UI offers 512…2048).
pub const MIN_RESOLUTION: u32 = 1;
/// Largest accepted texture side (bounds memory: 8192² texels × ~40 bytes).
pub const MAX_RESOLUTION: u32 = 8192;
/// `dilate_fill` runs `R / DILATION_DIVISOR` iterations in the bake (`R // 150`).
pub const DILATION_DIVISOR: u32 = 150;
/// JPEG quality of the exported textures (PIL's default, which trimesh uses).
pub const JPEG_QUALITY: u8 = 75;
/// `F.normalize`'s default eps.
const NORMALIZE_EPS: f32 = 1e-12;
/// Texels per independently seeded dither chunk (keeps [`to_u8`] deterministic under any thread count).
const DITHER_CHUNK: usize = 4096;
/// Quantisation scale of `float32_to_uint8_np` (256, not 255: 1.0 clips to 255, 0.5 maps to 128).
const U8_SCALE: f64 = 256.0;
/// The flat tangent-space normal `(0.5, 0.5, 1.0)` the normal-map dither mask tests for.
const FLAT_NORMAL: [f32; 3] = [0.5, 0.5, 1.0];

/// The result of [`rasterize`]: per texel (row-major, row 0 = `v = 1`) the barycentrics and face, `-1` if empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Rasterization {
    /// Texture side `R`.
    pub resolution: u32,
    /// `(b0, b1, b2)` per texel; `(0, 0, 0)` for empty texels.
    pub bary: Vec<[f32; 3]>,
    /// Face index per texel, `-1` for empty texels.
    pub face: Vec<i32>,
}

impl Rasterization {
    /// The bake mask: texels covered by a face.
    pub fn mask(&self) -> Vec<bool> {
        self.face.iter().map(|&f| f >= 0).collect()
    }

    /// Number of covered texels.
    pub fn covered(&self) -> usize {
        self.face.iter().filter(|&&f| f >= 0).count()
    }
}

/// A triangle prepared for the §6.8 barycentric test (all in f32, as the reference kernel).
struct RasterTri {
    t0: [f32; 2],
    e1: [f32; 2],
    e2: [f32; 2],
    d00: f32,
    d01: f32,
    d11: f32,
    den: f32,
    cols: (usize, usize),
    rows: (usize, usize),
}

impl RasterTri {
    fn new(t: [[f32; 2]; 3], r: u32) -> Option<Self> {
        let [t0, t1, t2] = t;
        let e1 = [t1[0] - t0[0], t1[1] - t0[1]];
        let e2 = [t2[0] - t0[0], t2[1] - t0[1]];
        let d00 = e1[0] * e1[0] + e1[1] * e1[1];
        let d01 = e1[0] * e2[0] + e1[1] * e2[1];
        let d11 = e2[0] * e2[0] + e2[1] * e2[1];
        let den = d00 * d11 - d01 * d01;
        if den == 0.0 || !den.is_finite() {
            return None; // never passes the inside test (non-finite barycentrics)
        }
        let rf = r as f32;
        let (umin, umax) = (t0[0].min(t1[0]).min(t2[0]), t0[0].max(t1[0]).max(t2[0]));
        let (vmin, vmax) = (t0[1].min(t1[1]).min(t2[1]), t0[1].max(t1[1]).max(t2[1]));
        // Sample columns x with u = x/R in [umin, umax], rows y with v = 1 − y/R in [vmin, vmax]; one texel of
        // margin for rounding, the barycentric test decides.
        let clamp =
            |v: f32| -> Option<usize> { if v.is_nan() { None } else { Some(v.clamp(0.0, (r - 1) as f32) as usize) } };
        let x0 = (umin * rf).floor() - 1.0;
        let x1 = (umax * rf).ceil() + 1.0;
        let y0 = ((1.0 - vmax) * rf).floor() - 1.0;
        let y1 = ((1.0 - vmin) * rf).ceil() + 1.0;
        if x1 < 0.0 || y1 < 0.0 || x0 > (r - 1) as f32 || y0 > (r - 1) as f32 {
            return None;
        }
        Some(Self { t0, e1, e2, d00, d01, d11, den, cols: (clamp(x0)?, clamp(x1)?), rows: (clamp(y0)?, clamp(y1)?) })
    }

    /// §6.8 barycentrics of `p`, if `p` is inside (inclusive edges).
    #[inline]
    fn barycentric(&self, p: [f32; 2]) -> Option<[f32; 3]> {
        let d = [p[0] - self.t0[0], p[1] - self.t0[1]];
        let d20 = d[0] * self.e1[0] + d[1] * self.e1[1];
        let d21 = d[0] * self.e2[0] + d[1] * self.e2[1];
        let b1 = (self.d11 * d20 - self.d01 * d21) / self.den;
        let b2 = (self.d00 * d21 - self.d01 * d20) / self.den;
        let b0 = 1.0 - b1 - b2;
        (b1 >= 0.0 && b2 >= 0.0 && b1 + b2 <= 1.0).then_some([b0, b1, b2])
    }
}

/// Rasterises UV triangles into an `R × R` grid of texel-corner samples (§6.8).
///
/// Preconditions: every index of `faces` is `< uvs.len()`, `resolution ≥ 1`. UVs outside `[0, 1]` are allowed
/// (they just cover nothing). Guarantees: `bary.len() == face.len() == R²`; a texel is covered iff some face
/// contains its sample point `(x/R, 1 − y/R)` with the §6.8 inclusive test, and then holds the lowest such face and
/// that face's barycentrics; degenerate UV triangles cover nothing.
pub fn rasterize(uvs: &[[f32; 2]], faces: &[[u32; 3]], resolution: u32) -> Rasterization {
    let r = resolution.max(MIN_RESOLUTION);
    let n = r as usize;
    let tris: Vec<Option<RasterTri>> =
        faces.par_iter().map(|t| RasterTri::new(t.map(|i| uvs[i as usize]), r)).collect();

    // CSR lists of triangles per row, in face order.
    let mut offsets = vec![0u32; n + 1];
    for t in tris.iter().flatten() {
        for y in t.rows.0..=t.rows.1 {
            offsets[y + 1] += 1;
        }
    }
    for y in 0..n {
        offsets[y + 1] += offsets[y];
    }
    let mut cursor = offsets.clone();
    let mut items = vec![0u32; offsets[n] as usize];
    for (f, t) in tris.iter().enumerate() {
        if let Some(t) = t {
            for y in t.rows.0..=t.rows.1 {
                items[cursor[y] as usize] = f as u32;
                cursor[y] += 1;
            }
        }
    }

    let mut bary = vec![[0f32; 3]; n * n];
    let mut face = vec![-1i32; n * n];
    let rf = r as f32;
    bary.par_chunks_mut(n).zip(face.par_chunks_mut(n)).enumerate().for_each(|(y, (bary_row, face_row))| {
        let v = 1.0 - y as f32 / rf;
        for &f in &items[offsets[y] as usize..offsets[y + 1] as usize] {
            let Some(t) = &tris[f as usize] else { continue };
            for x in t.cols.0..=t.cols.1 {
                if face_row[x] >= 0 {
                    continue;
                }
                if let Some(b) = t.barycentric([x as f32 / rf, v]) {
                    bary_row[x] = b;
                    face_row[x] = f as i32;
                }
            }
        }
    });
    Rasterization { resolution: r, bary, face }
}

/// Interpolates a per-vertex attribute at every texel: `b0·a[i0] + b1·a[i1] + b2·a[i2]` of the texel's face, zero
/// for empty texels. Preconditions: `rast` came from faces `faces` whose indices are `< attr.len()`.
pub fn interpolate(attr: &[[f32; 3]], faces: &[[u32; 3]], rast: &Rasterization) -> Vec<[f32; 3]> {
    rast.bary.par_iter().zip(&rast.face).map(|(b, &f)| interpolate_one(attr, faces, b, f)).collect()
}

#[inline]
fn interpolate_one(attr: &[[f32; 3]], faces: &[[u32; 3]], b: &[f32; 3], f: i32) -> [f32; 3] {
    if f < 0 {
        return [0.0; 3];
    }
    let [a0, a1, a2] = faces[f as usize].map(|i| attr[i as usize]);
    std::array::from_fn(|k| b[0] * a0[k] + b[1] * a1[k] + b[2] * a2[k])
}

/// Interpolates at the covered texels only, in row-major order (`interpolate(..)[mask]`).
fn interpolate_covered(attr: &[[f32; 3]], faces: &[[u32; 3]], rast: &Rasterization, texels: &[u32]) -> Vec<[f32; 3]> {
    texels.par_iter().map(|&i| interpolate_one(attr, faces, &rast.bary[i as usize], rast.face[i as usize])).collect()
}

/// The tangent-space normal-map colour of one texel (§6.9): `clamp(0.5·(T·n, B·n, N·n) + 0.5, 0, 1)` with
/// `N = normalize(nrm)`, `T = normalize(tng)`, `B = normalize(N × T)` and `n = normalize(perturb)`.
pub fn tangent_space_normals(nrm: [f32; 3], tng: [f32; 3], perturb: [f32; 3]) -> [f32; 3] {
    let n = normalize(nrm, NORMALIZE_EPS);
    let t = normalize(tng, NORMALIZE_EPS);
    let b = normalize(cross(n, t), NORMALIZE_EPS);
    let p = normalize(perturb, NORMALIZE_EPS);
    [dot(t, p), dot(b, p), dot(n, p)].map(|c| (c * 0.5 + 0.5).clamp(0.0, 1.0))
}

/// The reference's UV padding `dilate_fill(image, mask, iterations)` (§6.10), replicated literally.
///
/// Per iteration: `M1 = maxpool3×3(M0)`; for every interior window centre `q` (rows/columns `1…R−2`) the mean of
/// the valid texels of its 3×3 window; `S[p] = M1[p]·Σ_{interior q ∋ p} mean(q)`; `C[p]` = number of `M1` texels
/// in the 3×3 around `p`; texels that just became valid get `S / max(C, 1)`, all others keep their value.
/// Preconditions: `image.len() == mask.len() == R²`; texels outside `mask` should be 0 (as the bake leaves them).
/// Guarantees: texels inside `mask` are unchanged; texels farther than `iterations` (Chebyshev) from the mask keep
/// their value.
pub fn dilate_fill(image: &[[f32; 3]], mask: &[bool], resolution: u32, iterations: u32) -> Vec<[f32; 3]> {
    let n = resolution as usize;
    let mut img = image.to_vec();
    if n == 0 || image.len() != n * n || mask.len() != n * n {
        return img;
    }
    let mut m0: Vec<u8> = mask.iter().map(|&b| u8::from(b)).collect();
    let around = |i: usize| i.saturating_sub(1)..(i + 2).min(n);
    for _ in 0..iterations {
        // M1 = maxpool3×3(M0), separably: along rows, then along columns.
        let mut horizontal = vec![0u8; n * n];
        horizontal.par_chunks_mut(n).enumerate().for_each(|(y, row)| {
            let src = &m0[y * n..(y + 1) * n];
            for (x, h) in row.iter_mut().enumerate() {
                *h = src[around(x)].iter().copied().max().unwrap_or(0);
            }
        });
        let mut m1 = vec![0u8; n * n];
        m1.par_chunks_mut(n).enumerate().for_each(|(y, row)| {
            for (x, m) in row.iter_mut().enumerate() {
                *m = around(y).map(|yy| horizontal[yy * n + x]).max().unwrap_or(0);
            }
        });
        // Only texels that just became valid change; their fill needs the window means of the 9 centres around
        // them, computed on the fly (the frontier is a small fraction of the texture).
        let mean = |q: usize| -> [f32; 3] {
            let (y, x) = (q / n, q % n);
            if y == 0 || x == 0 || y + 1 >= n || x + 1 >= n {
                return [0.0; 3]; // not an interior window centre
            }
            let mut s = [0f32; 3];
            let mut c = 0f32;
            for yy in y - 1..=y + 1 {
                for xx in x - 1..=x + 1 {
                    let j = yy * n + xx;
                    for k in 0..3 {
                        s[k] += img[j][k];
                    }
                    c += f32::from(m0[j]);
                }
            }
            s.map(|v| v / c.max(1.0))
        };
        let updates: Vec<(usize, [f32; 3])> = (0..n)
            .into_par_iter()
            .flat_map_iter(|y| {
                let (m0, m1, img) = (&m0, &m1, &img);
                (0..n).filter(move |&x| m1[y * n + x] > m0[y * n + x]).map(move |x| {
                    let i = y * n + x;
                    let mut s = [0f32; 3];
                    let mut c = 0f32;
                    for yy in around(y) {
                        for xx in around(x) {
                            let j = yy * n + xx;
                            let mq = mean(j);
                            for k in 0..3 {
                                s[k] += mq[k];
                            }
                            c += f32::from(m1[j]);
                        }
                    }
                    let grown = f32::from(m1[i]) - f32::from(m0[i]);
                    let fill = s.map(|v| v * f32::from(m1[i]) / c.max(1.0));
                    (i, std::array::from_fn(|k| img[i][k] + grown * (fill[k] - img[i][k])))
                })
            })
            .collect();
        for (i, v) in updates {
            img[i] = v;
        }
        m0 = m1;
    }
    img
}

/// Which texels [`to_u8`] dithers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DitherMask {
    /// No dither: `floor(256·x)`.
    Off,
    /// Every texel (the reference's albedo).
    All,
    /// Only texels exactly `(0.5, 0.5, 1.0)` (the reference's normal map, a quirk; see the module doc).
    FlatOnly,
    /// Every texel except exact `(0.5, 0.5, 1.0)` (what the reference's comment intends).
    ExceptFlat,
}

/// Quantises a float image to bytes as `float32_to_uint8_np` does (§6.11): `clip(floor(256·x + δ), 0, 255)` with
/// `δ = r − 0.5` for dithered texels, `r ~ U[0, 1)` drawn once per texel and shared by its 3 channels.
///
/// The dither comes from ChaCha8 seeded with `seed`; texel `i` uses the stream position of chunk `i / 4096`, so the
/// bytes depend only on `(image, dither, seed)`, not on the thread count. NaN maps to 0.
pub fn to_u8(image: &[[f32; 3]], dither: DitherMask, seed: u64) -> Vec<[u8; 3]> {
    let base = ChaCha8Rng::seed_from_u64(seed);
    let mut out = vec![[0u8; 3]; image.len()];
    out.par_chunks_mut(DITHER_CHUNK).zip(image.par_chunks(DITHER_CHUNK)).enumerate().for_each(|(chunk, (dst, src))| {
        let mut rng = base.clone();
        // Each u64 draw consumes two 32-bit words of the stream.
        rng.set_word_pos((chunk * DITHER_CHUNK * 2) as u128);
        for (d, px) in dst.iter_mut().zip(src) {
            let r = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            let flat = *px == FLAT_NORMAL;
            let on = match dither {
                DitherMask::Off => false,
                DitherMask::All => true,
                DitherMask::FlatOnly => flat,
                DitherMask::ExceptFlat => !flat,
            };
            let delta = if on { r - 0.5 } else { 0.0 };
            *d = px.map(|x| {
                let v = (U8_SCALE * f64::from(x) + delta).floor();
                if v.is_nan() { 0 } else { v.clamp(0.0, 255.0) as u8 }
            });
        }
    });
    out
}

/// Encodes an RGB texture as baseline JPEG at `quality` (1–100) with 4:2:0 chroma subsampling, PIL's default that
/// the reference's textures get.
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let side =
        |n: u32| u16::try_from(n).map_err(|_| Error::Internal(format!("a {n}-texel side is beyond JPEG's 65535")));
    let (width, height) = (side(img.width())?, side(img.height())?);
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder
        .encode(img.as_raw(), width, height, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| Error::Internal(format!("jpeg encoding failed: {e}")))?;
    Ok(out)
}

/// What the decoder returns for the covered texels: `(albedo in [0, 1], perturbed normal)`, one of each per texel.
pub type DecodedTexels = (Vec<[f32; 3]>, Vec<[f32; 3]>);

/// The decoder the bake calls: world positions of the covered texels (row-major texel order) → [`DecodedTexels`].
pub type TexelDecoder<'a> = dyn FnMut(&[[f32; 3]]) -> Result<DecodedTexels> + 'a;

/// Baked textures of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct BakedTextures {
    /// Texture side `R`.
    pub resolution: u32,
    /// Albedo after UV padding and dithered quantisation.
    pub albedo: RgbImage,
    /// Tangent-space normal map after UV padding and quantisation.
    pub normal: RgbImage,
    /// Covered texels over `R²`.
    pub coverage: f32,
    /// Bake mask, row-major.
    pub mask: Vec<bool>,
    /// Albedo before padding (0 outside the mask): the reference's `tex_albedo`.
    pub albedo_float: Vec<[f32; 3]>,
    /// Normal map before padding (0 outside the mask): the reference's `tex_bump`.
    pub normal_float: Vec<[f32; 3]>,
}

/// Seeds of the two dither streams derived from the bake's seed.
const ALBEDO_SEED_SALT: u64 = 0;
const NORMAL_SEED_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bakes albedo and tangent-space normal textures for an unwrapped mesh (§6.9–6.11).
///
/// Preconditions: `mesh` comes from [`crate::mesh::uv_unwrap::unwrap_uv`] (per-corner vertices, normals and
/// tangents); `resolution` in `1…8192`. `decoder` receives the covered texels' interpolated world positions in
/// row-major order and must return one albedo and one perturbed normal per position. Guarantees: images are
/// `R × R`; uncovered texels are 0 before padding; padding runs `R / 150` iterations; bytes are a function of the
/// inputs and `seed`. Reports progress in 5 steps and honours cancellation.
pub fn bake(
    mesh: &UnwrappedMesh,
    resolution: u32,
    decoder: &mut TexelDecoder<'_>,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<BakedTextures> {
    const STEPS: u64 = 5;
    if !(MIN_RESOLUTION..=MAX_RESOLUTION).contains(&resolution) {
        return Err(Error::Param(sf3d_shared::ParamError::new(
            "texture_resolution",
            format!("{resolution} outside {MIN_RESOLUTION}…{MAX_RESOLUTION}"),
        )));
    }
    let nv = mesh.positions.len();
    if mesh.uvs.len() != nv || mesh.normals.len() != nv || mesh.tangents.len() != nv {
        return Err(Error::InvalidMesh(format!(
            "unwrapped mesh has {nv} positions but {} uvs, {} normals, {} tangents",
            mesh.uvs.len(),
            mesh.normals.len(),
            mesh.tangents.len()
        )));
    }
    if let Some(i) = mesh.faces.iter().flatten().find(|&&i| i as usize >= nv) {
        return Err(Error::InvalidMesh(format!("face index {i} past {nv} vertices")));
    }
    progress.report(0, STEPS)?;

    let rast = rasterize(&mesh.uvs, &mesh.faces, resolution);
    let mask = rast.mask();
    let texels: Vec<u32> = (0..mask.len() as u32).filter(|&i| mask[i as usize]).collect();
    let pos = interpolate_covered(&mesh.positions, &mesh.faces, &rast, &texels);
    progress.report(1, STEPS)?;

    let (albedo, perturb) = decoder(&pos)?;
    if albedo.len() != texels.len() || perturb.len() != texels.len() {
        return Err(Error::Internal(format!(
            "decoder returned {} albedo and {} normal values for {} texels",
            albedo.len(),
            perturb.len(),
            texels.len()
        )));
    }
    progress.report(2, STEPS)?;

    let nrm = interpolate_covered(&mesh.normals, &mesh.faces, &rast, &texels);
    let tng = interpolate_covered(&mesh.tangents, &mesh.faces, &rast, &texels);
    let n = resolution as usize;
    let mut albedo_float = vec![[0f32; 3]; n * n];
    let mut normal_float = vec![[0f32; 3]; n * n];
    for (k, &i) in texels.iter().enumerate() {
        albedo_float[i as usize] = albedo[k];
        normal_float[i as usize] = tangent_space_normals(nrm[k], tng[k], perturb[k]);
    }
    progress.report(3, STEPS)?;

    let iterations = resolution / DILATION_DIVISOR;
    let albedo_padded = dilate_fill(&albedo_float, &mask, resolution, iterations);
    let normal_padded = dilate_fill(&normal_float, &mask, resolution, iterations);
    progress.report(4, STEPS)?;

    let to_image = |px: Vec<[u8; 3]>| -> Result<RgbImage> {
        RgbImage::from_raw(resolution, resolution, px.into_iter().flatten().collect())
            .ok_or_else(|| Error::Internal("texture buffer size mismatch".into()))
    };
    let albedo_img = to_image(to_u8(&albedo_padded, DitherMask::All, seed ^ ALBEDO_SEED_SALT))?;
    let normal_img = to_image(to_u8(&normal_padded, DitherMask::FlatOnly, seed ^ NORMAL_SEED_SALT))?;
    progress.report(STEPS, STEPS)?;

    Ok(BakedTextures {
        resolution,
        albedo: albedo_img,
        normal: normal_img,
        coverage: texels.len() as f32 / (n * n) as f32,
        mask,
        albedo_float,
        normal_float,
    })
}
