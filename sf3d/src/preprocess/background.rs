//! Built-in background removal for objects on a plain or smoothly graded background: the engine's replacement for
//! the reference's rembg + u2net step (docs/engine.md §4.2), which needs a 176 MB ONNX model we do not ship.
//!
//! What users send for single-image 3D is mostly product shots and generated images: one object on a backdrop
//! that is a single colour or a smooth gradient (studio sweep, vignette). The algorithm exploits exactly that:
//!
//! 1. **Background model.** Sample a band along the image border and fit, per channel, a quadratic polynomial in
//!    normalised coordinates (`1, u, v, u², uv, v²`) by least trimmed squares (FAST-LTS: seeded random starts
//!    on small subsets, then concentration steps that refit on the better half), so that up to half of the
//!    border may be covered by the object; then refit on the inliers within a few median residuals. A small
//!    ridge on the non-constant coefficients keeps the fit well posed when only part of the border is
//!    background (directions the inliers do not constrain extrapolate as constant).
//! 2. **Classification.** Each pixel's Euclidean RGB distance to the model (8-bit units) is compared with two
//!    thresholds derived from the border's residual noise (hysteresis): pixels above the high threshold seed the
//!    foreground, which grows through 8-connected pixels above the low one.
//! 3. **Clean-up.** A small morphological opening removes specks; connected components smaller than a fraction
//!    of the largest are dropped (keeps multi-part objects such as a pair of shoes, drops dust and watermarks); a
//!    closing bridges hairline gaps. Enclosed holes smaller than 3 % of the object are filled (a white label on
//!    a product shot on white); larger ones stay open when their mean distance to the model is within the
//!    border's noise (the see-through part of a ring or a handle), and are filled otherwise. A large enclosed
//!    region of exactly the backdrop colour is therefore cut out even when it belongs to the object.
//! 4. **Soft edge.** Within 3 pixels of the mask's edge each pixel is unmixed as `I = α·F + (1 − α)·B`, with `B`
//!    the background model and `F` the best-matching colour of the nearby object interior (sampling-based
//!    matting), which gives anti-aliased edges their true coverage and drops JPEG colour bleeding; the matte is
//!    then blurred with a 3×3 binomial kernel (a 1-pixel feather each side).
//!
//! Deliberate differences from rembg: colours are kept as they are (rembg multiplies RGB by the matte, darkening
//! soft edges), and cast shadows darker than the noise-derived threshold count as foreground. Images larger than
//! [`ANALYSIS_MAX_PIXELS`] are analysed on a box-downsampled copy and the alpha is upsampled bilinearly, which
//! bounds time and memory (a 40 MP input costs little more than a 4 MP one) at the price of an edge as soft as
//! the downsampling factor. The remover is deterministic.

use image::RgbaImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// An alpha at or below this is "mostly transparent" for [`has_meaningful_alpha`].
pub const TRANSPARENT_ALPHA_MAX: u8 = 127;

/// Smallest side [`remove_background`] works on.
pub const MIN_REMOVAL_SIDE: u32 = 8;

/// Images with more pixels are analysed on a downsampled copy.
pub const ANALYSIS_MAX_PIXELS: u64 = 4_000_000;

/// Width of the border band the background model is fitted on, as a fraction of the shorter side.
const BORDER_BAND_FRACTION: f64 = 0.02;

/// Narrowest border band, in pixels.
const BORDER_BAND_MIN: u32 = 2;

/// At most this many border pixels are used for the fit (evenly strided).
const MAX_BORDER_SAMPLES: usize = 60_000;

/// Number of polynomial terms of the background model: `1, u, v, u², uv, v²`.
const TERMS: usize = 6;

/// Ridge weight on the non-constant coefficients, per sample. Small enough to leave identified gradients alone
/// (a 0.01 % shrink), large enough to resolve directions the inliers do not constrain toward "constant".
const RIDGE_PER_SAMPLE: f64 = 1e-4;

/// Fraction of the border samples a least-trimmed-squares concentration step keeps (the best half: the fit
/// tolerates up to half of the border being covered by the object).
const TRIM_KEEP: f64 = 0.5;

/// Random starts of the least-trimmed-squares search (FAST-LTS, Rousseeuw & Van Driessen 2006).
const LTS_STARTS: usize = 128;

/// Border samples per random start; each start fits the linear part (`1, u, v`) only, so that a small subset
/// is enough and likely to be free of object pixels (0.6⁶ ≈ 5 % per start with 40 % of the border covered).
const LTS_SUBSET: usize = 6;

/// Polynomial terms fitted by a random start.
const LTS_START_TERMS: usize = 3;

/// Concentration steps applied to each random start (on the evaluation subsample).
const LTS_START_STEPS: usize = 2;

/// Size of the evaluation subsample the random starts are compared on.
const LTS_EVAL_SAMPLES: usize = 4_000;

/// Most concentration steps on all samples from the best start.
const LTS_MAX_STEPS: usize = 20;

/// Seed of the random starts: the remover is deterministic.
const LTS_SEED: u64 = 0x5f3d;

/// Refits on the inliers after the least-trimmed-squares fit.
const INLIER_ROUNDS: usize = 2;

/// The median, as a quantile.
const MEDIAN: f64 = 0.5;

/// Final inliers lie within this many median residuals of the model.
const INLIER_SCALE: f32 = 3.0;

/// ... or within this distance (8-bit RGB units), whichever is larger (a noise-free synthetic border has a
/// median residual of 0).
const INLIER_FLOOR: f32 = 3.0;

/// Quantile of the inlier residuals taken as the background's noise level.
const NOISE_QUANTILE: f64 = 0.99;

/// Low (growth) threshold: this many noise levels above the model …
const LOW_NOISE_FACTOR: f32 = 1.5;

/// … but never below this distance (8-bit RGB units): JPEG ringing and 8-bit gradient steps stay background.
const LOW_THRESHOLD_MIN: f32 = 10.0;

/// High (seed) threshold as a multiple of the low one.
const HIGH_OVER_LOW: f32 = 2.0;

/// Border noise above this (8-bit RGB units) means the backdrop is not plain; removal still runs but is logged.
const BUSY_BACKGROUND_NOISE: f32 = 30.0;

/// Fewer border inliers than this fraction also means the backdrop is not plain (or the object fills the frame).
const BUSY_BACKGROUND_INLIERS: f32 = 0.4;

/// Opening radius per this many pixels of the shorter side (at least 1).
const OPEN_RADIUS_PER_PIXELS: u32 = 1024;

/// The closing radius is this multiple of the opening radius.
const CLOSE_OVER_OPEN: u32 = 2;

/// Components smaller than this fraction of the largest are dropped.
const KEEP_COMPONENT_FRACTION: f64 = 0.05;

/// Components smaller than this fraction of the image are dropped.
const MIN_COMPONENT_FRACTION: f64 = 1e-4;

/// Enclosed holes smaller than this fraction of the foreground are always filled.
const SMALL_HOLE_FRACTION: f64 = 0.03;

/// A larger hole stays open when its mean distance to the model is at most this many times the border's mean
/// residual …
const HOLE_NOISE_FACTOR: f64 = 2.0;

/// … or at most this distance (8-bit RGB units), whichever is larger.
const HOLE_BACKGROUND_MEAN_MIN: f64 = 2.0;

/// Half-width (pixels) of the band along the mask edge where the matte is estimated from colour.
const MATTE_BAND: usize = 3;

/// Radius of the window searched for interior foreground colour around a band pixel.
const MATTE_WINDOW: usize = 8;

/// Matte values within this of 0 or 1 are snapped (noise on the backdrop must not leave faint alpha, which
/// `resize_foreground` would count as foreground).
const MATTE_SNAP: f32 = 0.1;

/// Alpha channel index.
const ALPHA: usize = 3;

/// Whether the alpha channel of `img` already separates an object from its surroundings, so that
/// [`sf3d_shared::BackgroundMode::Auto`] keeps it instead of removing the background.
///
/// The reference's rule is "any alpha < 255". That rule misfires on images from editors that export a
/// nearly-opaque alpha (a 99 % layer opacity, a soft brush touching a few pixels): they would skip removal and
/// the whole photo, backdrop included, would become the object. Here the alpha is meaningful when at least one
/// pixel is mostly transparent (alpha ≤ [`TRANSPARENT_ALPHA_MAX`]); a cut-out always has such pixels (its
/// surroundings), an opaque photo with stray near-opaque alpha does not.
pub fn has_meaningful_alpha(img: &RgbaImage) -> bool {
    img.pixels().any(|p| p.0[ALPHA] <= TRANSPARENT_ALPHA_MAX)
}

/// Removes a plain or smoothly graded background (see the module docs for the algorithm). The input's alpha is
/// ignored, like rembg's `convert("RGB")`.
///
/// Preconditions: both sides ≥ [`MIN_REMOVAL_SIDE`] ([`Error::UnsupportedImage`] otherwise). Errors:
/// [`Error::NoForeground`] when nothing stands out from the background model (a plain or empty image).
/// Guarantees: same size and RGB as `img`; alpha 255 well inside the object and 0 well outside; within 3 pixels
/// of the edge the estimated coverage, blurred by a 3×3 binomial (at least a 1-pixel feather; wider, by the
/// analysis factor, for images over [`ANALYSIS_MAX_PIXELS`]); at least one pixel has alpha > 0; deterministic.
pub fn remove_background(img: &RgbaImage) -> Result<RgbaImage> {
    let (w, h) = img.dimensions();
    if w.min(h) < MIN_REMOVAL_SIDE {
        return Err(Error::UnsupportedImage(format!(
            "the image is {w}×{h}; background removal needs at least {MIN_REMOVAL_SIDE} pixels per side"
        )));
    }
    let factor = analysis_factor(w, h);
    let work = RgbF32::downsampled(img, factor);
    let alpha_small = foreground_alpha(&work)?;
    let alpha = if factor == 1 { alpha_small } else { upsample_bilinear(&alpha_small, work.w, work.h, w, h, factor) };
    let mut out = img.clone();
    for (px, a) in out.pixels_mut().zip(alpha) {
        px.0[ALPHA] = a;
    }
    if !out.pixels().any(|p| p.0[ALPHA] > 0) {
        return Err(no_foreground());
    }
    Ok(out)
}

fn no_foreground() -> Error {
    Error::NoForeground(
        "nothing stands out from the background estimated along the image border; send an image of an object \
         on a plain backdrop, or a PNG whose alpha channel already cuts the object out"
            .into(),
    )
}

/// The integer downsampling factor that brings `w·h` to at most [`ANALYSIS_MAX_PIXELS`].
fn analysis_factor(w: u32, h: u32) -> u32 {
    let pixels = u64::from(w) * u64::from(h);
    let mut f = 1_u32;
    while pixels.div_ceil(u64::from(f) * u64::from(f)) > ANALYSIS_MAX_PIXELS {
        f += 1;
    }
    f
}

/// A floating-point RGB image (8-bit units) the analysis runs on.
struct RgbF32 {
    w: usize,
    h: usize,
    px: Vec<[f32; 3]>,
}

impl RgbF32 {
    /// `img`'s RGB averaged over `factor × factor` blocks (partial blocks at the right/bottom edge average what
    /// they have).
    fn downsampled(img: &RgbaImage, factor: u32) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let f = factor.max(1) as usize;
        let (ws, hs) = (w.div_ceil(f), h.div_ceil(f));
        let mut sum = vec![[0.0_f32; 3]; ws * hs];
        let mut count = vec![0_u32; ws * hs];
        for (x, y, p) in img.enumerate_pixels() {
            let i = (y as usize / f) * ws + x as usize / f;
            for (acc, v) in sum[i].iter_mut().zip(p.0) {
                *acc += f32::from(v);
            }
            count[i] += 1;
        }
        let px = sum
            .into_iter()
            .zip(count)
            .map(|(s, n)| {
                let n = n.max(1) as f32;
                [s[0] / n, s[1] / n, s[2] / n]
            })
            .collect();
        Self { w: ws, h: hs, px }
    }
}

/// The soft foreground alpha of `img` (steps 1–4 of the module docs), one byte per pixel.
fn foreground_alpha(img: &RgbF32) -> Result<Vec<u8>> {
    let model = BackgroundModel::fit(img);
    let dist = model.distance_map(img);
    let low = (LOW_NOISE_FACTOR * model.noise).max(LOW_THRESHOLD_MIN);
    let high = HIGH_OVER_LOW * low;
    if model.noise > BUSY_BACKGROUND_NOISE || model.inlier_fraction < BUSY_BACKGROUND_INLIERS {
        tracing::warn!(
            noise = model.noise,
            inlier_fraction = model.inlier_fraction,
            "the image border is not a plain backdrop; background removal may be poor"
        );
    }
    let (w, h) = (img.w, img.h);
    let mut mask = hysteresis(&dist, w, h, low, high);
    let open_r = (w.min(h) as u32 / OPEN_RADIUS_PER_PIXELS).max(1) as usize;
    morph(&mut mask, w, h, open_r, Morph::Erode);
    morph(&mut mask, w, h, open_r, Morph::Dilate);
    keep_significant_components(&mut mask, w, h);
    let close_r = open_r * CLOSE_OVER_OPEN as usize;
    morph(&mut mask, w, h, close_r, Morph::Dilate);
    morph(&mut mask, w, h, close_r, Morph::Erode);
    fill_holes(&mut mask, &dist, w, h, model.noise_mean);
    let fg = mask.iter().filter(|&&m| m).count();
    tracing::debug!(
        noise = model.noise,
        low,
        high,
        inlier_fraction = model.inlier_fraction,
        foreground_fraction = fg as f64 / mask.len() as f64,
        "background removal"
    );
    if fg == 0 {
        return Err(no_foreground());
    }
    let matte = refine_matte(img, &mask, &model);
    Ok(feather(&matte, w, h))
}

/// Normalised coordinate of pixel `i` of `n`: −1 at the first pixel, +1 at the last.
fn norm_coord(i: usize, n: usize) -> f64 {
    if n <= 1 { 0.0 } else { 2.0 * i as f64 / (n - 1) as f64 - 1.0 }
}

/// The model's polynomial terms at `(u, v)`.
fn basis(u: f64, v: f64) -> [f64; TERMS] {
    [1.0, u, v, u * u, u * v, v * v]
}

/// A per-channel quadratic background colour model with the border's residual statistics.
#[derive(Debug, Clone)]
struct BackgroundModel {
    /// Coefficients per channel, in [`basis`] order.
    coeffs: [[f64; TERMS]; 3],
    /// [`NOISE_QUANTILE`] of the inliers' distance to the model (8-bit RGB units).
    noise: f32,
    /// Mean of the inliers' distance to the model.
    noise_mean: f32,
    /// Fraction of the border samples that are inliers.
    inlier_fraction: f32,
}

/// One border sample: its polynomial terms and colour.
#[derive(Debug, Clone)]
struct Sample {
    phi: [f64; TERMS],
    rgb: [f64; 3],
}

impl BackgroundModel {
    /// Robustly fits the model to a band along the border of `img`.
    fn fit(img: &RgbF32) -> Self {
        let samples = border_samples(img);
        let mut coeffs = lts_fit(&samples);
        let mut keep = vec![true; samples.len()];
        // Refit on the inliers (within a few median residuals), then take the statistics of the last set.
        let mut d = residuals(&samples, &coeffs);
        for _ in 0..INLIER_ROUNDS {
            let scale = quantile(&d, MEDIAN);
            let cutoff = (INLIER_SCALE * scale).max(INLIER_FLOOR);
            for (k, &di) in keep.iter_mut().zip(&d) {
                *k = di <= cutoff;
            }
            coeffs = solve_weighted(&samples, &keep, TERMS);
            d = residuals(&samples, &coeffs);
        }
        let inliers: Vec<f32> = d.iter().zip(&keep).filter(|(_, k)| **k).map(|(di, _)| *di).collect();
        let noise = quantile(&inliers, NOISE_QUANTILE);
        let noise_mean = if inliers.is_empty() { 0.0 } else { inliers.iter().sum::<f32>() / inliers.len() as f32 };
        let inlier_fraction = inliers.len() as f32 / samples.len().max(1) as f32;
        Self { coeffs, noise, noise_mean, inlier_fraction }
    }

    /// The model's colour at normalised `(u, v)`.
    fn colour_at(&self, u: f64, v: f64) -> [f64; 3] {
        let phi = basis(u, v);
        self.coeffs.map(|a| a.iter().zip(&phi).map(|(a, p)| a * p).sum())
    }

    /// Euclidean distance of every pixel's colour to the model (8-bit RGB units), row-major.
    fn distance_map(&self, img: &RgbF32) -> Vec<f32> {
        let mut out = Vec::with_capacity(img.w * img.h);
        let us: Vec<f64> = (0..img.w).map(|x| norm_coord(x, img.w)).collect();
        for (y, row) in img.px.chunks_exact(img.w.max(1)).enumerate() {
            let v = norm_coord(y, img.h);
            // Per row the model is `p0 + p1·u + p2·u²`.
            let rowpoly = self.coeffs.map(|a| [a[0] + a[2] * v + a[5] * v * v, a[1] + a[4] * v, a[3]]);
            for (p, &u) in row.iter().zip(&us) {
                let mut d2 = 0.0_f64;
                for c in 0..3 {
                    let [p0, p1, p2] = rowpoly[c];
                    let e = f64::from(p[c]) - (p0 + u * (p1 + u * p2));
                    d2 += e * e;
                }
                out.push(d2.sqrt() as f32);
            }
        }
        out
    }
}

/// Pixels of the border band, evenly strided to at most [`MAX_BORDER_SAMPLES`].
fn border_samples(img: &RgbF32) -> Vec<Sample> {
    let (w, h) = (img.w, img.h);
    let band = ((w.min(h) as f64 * BORDER_BAND_FRACTION).round() as usize).max(BORDER_BAND_MIN as usize);
    let band = band.min(w.min(h).div_ceil(2));
    let in_band = |x: usize, y: usize| x < band || y < band || x + band >= w || y + band >= h;
    let total = w * h - (w.saturating_sub(2 * band)) * (h.saturating_sub(2 * band));
    let stride = total.div_ceil(MAX_BORDER_SAMPLES).max(1);
    let mut samples = Vec::with_capacity(total / stride + 1);
    let mut k = 0_usize;
    for y in 0..h {
        let v = norm_coord(y, h);
        for x in 0..w {
            if !in_band(x, y) {
                continue;
            }
            if k.is_multiple_of(stride) {
                let p = img.px[y * w + x];
                samples.push(Sample {
                    phi: basis(norm_coord(x, w), v),
                    rgb: [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])],
                });
            }
            k += 1;
        }
    }
    samples
}

/// Distance of every sample to the model.
fn residuals(samples: &[Sample], coeffs: &[[f64; TERMS]; 3]) -> Vec<f32> {
    samples
        .iter()
        .map(|s| {
            let d2: f64 = coeffs
                .iter()
                .zip(s.rgb)
                .map(|(a, v)| (v - s.phi.iter().zip(a).map(|(p, a)| p * a).sum::<f64>()).powi(2))
                .sum();
            d2.sqrt() as f32
        })
        .collect()
}

/// Least-trimmed-squares fit of the model (FAST-LTS): random small subsets give linear starting fits, each
/// improved by concentration steps on a subsample; the best start (smallest sum of the lower half of the
/// squared residuals) is then concentrated on all samples until the objective stops decreasing.
fn lts_fit(samples: &[Sample]) -> [[f64; TERMS]; 3] {
    let stride = samples.len().div_ceil(LTS_EVAL_SAMPLES).max(1);
    let eval: Vec<Sample> = samples.iter().step_by(stride).cloned().collect();
    if eval.is_empty() {
        return [[0.0; TERMS]; 3];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(LTS_SEED);
    let mut best = (f64::INFINITY, [[0.0; TERMS]; 3]);
    let mut subset = vec![false; eval.len()];
    for _ in 0..LTS_STARTS {
        subset.fill(false);
        for _ in 0..LTS_SUBSET {
            subset[rng.random_range(0..eval.len())] = true;
        }
        let mut coeffs = solve_weighted(&eval, &subset, LTS_START_TERMS);
        for _ in 0..LTS_START_STEPS {
            coeffs = concentration_step(&eval, &coeffs);
        }
        let objective = trimmed_objective(&eval, &coeffs);
        if objective < best.0 {
            best = (objective, coeffs);
        }
    }
    let mut coeffs = best.1;
    let mut objective = trimmed_objective(samples, &coeffs);
    for _ in 0..LTS_MAX_STEPS {
        let next = concentration_step(samples, &coeffs);
        let next_objective = trimmed_objective(samples, &next);
        if next_objective >= objective {
            break;
        }
        (coeffs, objective) = (next, next_objective);
    }
    coeffs
}

/// Refits on the [`TRIM_KEEP`] fraction of `samples` closest to `coeffs`.
fn concentration_step(samples: &[Sample], coeffs: &[[f64; TERMS]; 3]) -> [[f64; TERMS]; 3] {
    let d = residuals(samples, coeffs);
    let cutoff = quantile(&d, TRIM_KEEP);
    let keep: Vec<bool> = d.iter().map(|&di| di <= cutoff).collect();
    solve_weighted(samples, &keep, TERMS)
}

/// Sum of the squared residuals of the [`TRIM_KEEP`] fraction of `samples` closest to `coeffs`.
fn trimmed_objective(samples: &[Sample], coeffs: &[[f64; TERMS]; 3]) -> f64 {
    let d = residuals(samples, coeffs);
    let cutoff = quantile(&d, TRIM_KEEP);
    d.iter().filter(|&&di| di <= cutoff).map(|&di| f64::from(di).powi(2)).sum()
}

/// Least squares on the samples with `keep`, using the first `terms` polynomial terms (the others are pinned to
/// 0), plus the ridge on the non-constant terms. With no kept sample the model is black (later stages then see
/// the whole image as foreground-ish, never a panic).
fn solve_weighted(samples: &[Sample], keep: &[bool], terms: usize) -> [[f64; TERMS]; 3] {
    let mut ata = [[0.0_f64; TERMS]; TERMS];
    let mut atb = [[0.0_f64; 3]; TERMS];
    let mut n = 0.0_f64;
    for (s, _) in samples.iter().zip(keep).filter(|(_, k)| **k) {
        n += 1.0;
        for ((row, rhs), &pi) in ata.iter_mut().zip(atb.iter_mut()).zip(&s.phi) {
            for (a, &pj) in row.iter_mut().zip(&s.phi) {
                *a += pi * pj;
            }
            for (b, &v) in rhs.iter_mut().zip(&s.rgb) {
                *b += pi * v;
            }
        }
    }
    for (i, row) in ata.iter_mut().enumerate().skip(1) {
        row[i] += RIDGE_PER_SAMPLE * n.max(1.0);
    }
    // Pin the inactive terms: identity rows and columns, zero right-hand side.
    for i in terms.min(TERMS)..TERMS {
        for row in &mut ata {
            row[i] = 0.0;
        }
        ata[i] = [0.0; TERMS];
        ata[i][i] = 1.0;
        atb[i] = [0.0; 3];
    }
    let mut out = [[0.0; TERMS]; 3];
    if n == 0.0 {
        return out;
    }
    if let Some(x) = solve_linear(ata, atb) {
        for (t, xt) in x.iter().enumerate() {
            for (channel, &v) in out.iter_mut().zip(xt) {
                channel[t] = v;
            }
        }
    }
    out
}

/// Solves `A·X = B` (6×6, three right-hand sides) by Gaussian elimination with partial pivoting; `None` when
/// `A` is numerically singular.
fn solve_linear(mut a: [[f64; TERMS]; TERMS], mut b: [[f64; 3]; TERMS]) -> Option<[[f64; 3]; TERMS]> {
    for col in 0..TERMS {
        let pivot = (col..TERMS).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < f64::EPSILON {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (pivot_a, pivot_b) = (a[col], b[col]);
        for row in col + 1..TERMS {
            let f = a[row][col] / pivot_a[col];
            for (x, p) in a[row][col..].iter_mut().zip(&pivot_a[col..]) {
                *x -= f * p;
            }
            for (x, p) in b[row].iter_mut().zip(&pivot_b) {
                *x -= f * p;
            }
        }
    }
    let mut x = [[0.0; 3]; TERMS];
    for row in (0..TERMS).rev() {
        for c in 0..3 {
            let s: f64 = (row + 1..TERMS).map(|k| a[row][k] * x[k][c]).sum();
            x[row][c] = (b[row][c] - s) / a[row][row];
        }
    }
    Some(x)
}

/// The `q`-quantile (nearest rank) of `values`; 0 for an empty slice.
fn quantile(values: &[f32], q: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    let k = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, kth, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    *kth
}

/// Offsets of the 8-neighbourhood.
const NEIGHBOURS_8: [(isize, isize); 8] = [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)];

/// Offsets of the 4-neighbourhood.
const NEIGHBOURS_4: [(isize, isize); 4] = [(0, -1), (-1, 0), (1, 0), (0, 1)];

/// Calls `f` with the index of each in-bounds neighbour of pixel `i`.
fn for_neighbours(i: usize, w: usize, h: usize, offsets: &[(isize, isize)], mut f: impl FnMut(usize)) {
    let (x, y) = ((i % w) as isize, (i / w) as isize);
    for &(dx, dy) in offsets {
        let (nx, ny) = (x + dx, y + dy);
        if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h {
            f(ny as usize * w + nx as usize);
        }
    }
}

/// Hysteresis thresholding: pixels with `dist > high` and every pixel 8-connected to one through pixels with
/// `dist > low`.
fn hysteresis(dist: &[f32], w: usize, h: usize, low: f32, high: f32) -> Vec<bool> {
    let mut mask = vec![false; dist.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (i, &d) in dist.iter().enumerate() {
        if d > high && !mask[i] {
            mask[i] = true;
            stack.push(i);
            while let Some(j) = stack.pop() {
                for_neighbours(j, w, h, &NEIGHBOURS_8, |n| {
                    if !mask[n] && dist[n] > low {
                        mask[n] = true;
                        stack.push(n);
                    }
                });
            }
        }
    }
    mask
}

/// Binary morphology operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Morph {
    Erode,
    Dilate,
}

/// Erodes or dilates `mask` with a `(2r+1)²` square, separably, with sliding-window counts. The window is
/// clipped to the image, so objects touching the border are neither eaten nor grown there.
fn morph(mask: &mut [bool], w: usize, h: usize, r: usize, op: Morph) {
    if r == 0 || mask.is_empty() {
        return;
    }
    let keep = |count: u32, window: usize| match op {
        Morph::Erode => count as usize == window,
        Morph::Dilate => count > 0,
    };
    // Along rows.
    let mut tmp = vec![false; mask.len()];
    for (src, dst) in mask.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
        let mut count: u32 = src[..=r.min(w - 1)].iter().map(|&m| u32::from(m)).sum();
        for x in 0..w {
            let (lo, hi) = (x.saturating_sub(r), (x + r).min(w - 1));
            dst[x] = keep(count, hi - lo + 1);
            if x + r + 1 < w {
                count += u32::from(src[x + r + 1]);
            }
            if x >= r {
                count -= u32::from(src[x - r]);
            }
        }
    }
    // Along columns, all columns at once.
    let mut counts = vec![0_u32; w];
    for row in tmp.chunks_exact(w).take(r + 1) {
        for (c, &m) in counts.iter_mut().zip(row) {
            *c += u32::from(m);
        }
    }
    for y in 0..h {
        let window = (y + r).min(h - 1) - y.saturating_sub(r) + 1;
        for (d, &c) in mask[y * w..(y + 1) * w].iter_mut().zip(&counts) {
            *d = keep(c, window);
        }
        if y + r + 1 < h {
            for (c, &m) in counts.iter_mut().zip(&tmp[(y + r + 1) * w..(y + r + 2) * w]) {
                *c += u32::from(m);
            }
        }
        if y >= r {
            for (c, &m) in counts.iter_mut().zip(&tmp[(y - r) * w..(y - r + 1) * w]) {
                *c -= u32::from(m);
            }
        }
    }
}

/// Labels the 8-connected components of `mask`; returns the label per pixel (0 = not in the mask) and the area
/// of each label (index 0 unused).
fn label_components(mask: &[bool], w: usize, h: usize, offsets: &[(isize, isize)]) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0_u32; mask.len()];
    let mut areas = vec![0_usize];
    let mut stack = Vec::new();
    for i in 0..mask.len() {
        if !mask[i] || labels[i] != 0 {
            continue;
        }
        let label = areas.len() as u32;
        let mut area = 0;
        labels[i] = label;
        stack.push(i);
        while let Some(j) = stack.pop() {
            area += 1;
            for_neighbours(j, w, h, offsets, |n| {
                if mask[n] && labels[n] == 0 {
                    labels[n] = label;
                    stack.push(n);
                }
            });
        }
        areas.push(area);
    }
    (labels, areas)
}

/// Drops the 8-connected components smaller than [`KEEP_COMPONENT_FRACTION`] of the largest or
/// [`MIN_COMPONENT_FRACTION`] of the image.
fn keep_significant_components(mask: &mut [bool], w: usize, h: usize) {
    let (labels, areas) = label_components(mask, w, h, &NEIGHBOURS_8);
    let largest = areas.iter().copied().max().unwrap_or(0) as f64;
    let min_area = (KEEP_COMPONENT_FRACTION * largest).max(MIN_COMPONENT_FRACTION * mask.len() as f64);
    for (m, &l) in mask.iter_mut().zip(&labels) {
        if l != 0 && (areas[l as usize] as f64) < min_area {
            *m = false;
        }
    }
}

/// Fills the enclosed holes of `mask` (4-connected background regions not touching the border), except large ones
/// that look like the background (mean distance to the model within the border's noise).
fn fill_holes(mask: &mut [bool], dist: &[f32], w: usize, h: usize, border_mean: f32) {
    let background: Vec<bool> = mask.iter().map(|m| !m).collect();
    let (labels, areas) = label_components(&background, w, h, &NEIGHBOURS_4);
    let mut touches_border = vec![false; areas.len()];
    let mut dist_sum = vec![0.0_f64; areas.len()];
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (x, y) = (i % w, i / w);
        if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
            touches_border[l as usize] = true;
        }
        dist_sum[l as usize] += f64::from(dist[i]);
    }
    let fg_area = mask.iter().filter(|&&m| m).count() as f64;
    let see_through_max = (HOLE_NOISE_FACTOR * f64::from(border_mean)).max(HOLE_BACKGROUND_MEAN_MIN);
    let fill: Vec<bool> = (0..areas.len())
        .map(|l| {
            if l == 0 || touches_border[l] {
                return false;
            }
            let area = areas[l] as f64;
            let small = area < SMALL_HOLE_FRACTION * fg_area;
            let looks_like_background = dist_sum[l] / area <= see_through_max;
            small || !looks_like_background
        })
        .collect();
    for (m, &l) in mask.iter_mut().zip(&labels) {
        if l != 0 && fill[l as usize] {
            *m = true;
        }
    }
}

/// Sub-pixel matte along the mask's edge (sampling-based matting). Within [`MATTE_BAND`] pixels of the edge, a
/// pixel's colour `I` is modelled as `α·F + (1 − α)·B`, with `B` the background model and `F` one of the interior
/// pixels (at least [`MATTE_BAND`] + 1 inside the mask) within [`MATTE_WINDOW`]: for each candidate `F`,
/// `α = clamp((I − B)·(F − B) / |F − B|²)`, and the candidate that reconstructs `I` best wins (on a textured
/// object the matching texel, not an average of the texture). `α` is snapped to 0 or 1 within
/// [`MATTE_SNAP`]. Elsewhere (and where no candidate differs enough from `B`) the binary mask stands.
/// Anti-aliased edges thus get their true coverage, and colour bleeding (JPEG chroma subsampling) is not
/// mistaken for the object.
fn refine_matte(img: &RgbF32, mask: &[bool], model: &BackgroundModel) -> Vec<f32> {
    let (w, h) = (img.w, img.h);
    let mut interior = mask.to_vec();
    morph(&mut interior, w, h, MATTE_BAND, Morph::Erode);
    let mut reach = mask.to_vec();
    morph(&mut reach, w, h, MATTE_BAND, Morph::Dilate);
    let mut alpha: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    let min_contrast2 = f64::from(LOW_THRESHOLD_MIN).powi(2);
    for (i, a) in alpha.iter_mut().enumerate() {
        if !reach[i] || interior[i] {
            continue;
        }
        let (x, y) = (i % w, i / w);
        let b = model.colour_at(norm_coord(x, w), norm_coord(y, h));
        let e = [0, 1, 2].map(|c| f64::from(img.px[i][c]) - b[c]);
        // (reconstruction error, α) of the best candidate so far.
        let mut best: Option<(f64, f64)> = None;
        for yy in y.saturating_sub(MATTE_WINDOW)..=(y + MATTE_WINDOW).min(h - 1) {
            for xx in x.saturating_sub(MATTE_WINDOW)..=(x + MATTE_WINDOW).min(w - 1) {
                let j = yy * w + xx;
                if !interior[j] {
                    continue;
                }
                let d = [0, 1, 2].map(|c| f64::from(img.px[j][c]) - b[c]);
                let dd: f64 = d.iter().map(|v| v * v).sum();
                if dd < min_contrast2 {
                    continue;
                }
                let t = ((0..3).map(|c| e[c] * d[c]).sum::<f64>() / dd).clamp(0.0, 1.0);
                let err: f64 = (0..3).map(|c| (e[c] - t * d[c]).powi(2)).sum();
                if best.is_none_or(|(best_err, _)| err < best_err) {
                    best = Some((err, t));
                }
            }
        }
        if let Some((_, t)) = best {
            *a = match t as f32 {
                p if p <= MATTE_SNAP => 0.0,
                p if p >= 1.0 - MATTE_SNAP => 1.0,
                p => p,
            };
        }
    }
    alpha
}

/// A matte as 8-bit alpha, blurred with the 3×3 binomial kernel `[1 2 1]ᵀ[1 2 1] / 16` (edge pixels
/// replicated): a hard edge becomes a 1-pixel feather each side with its 50 % contour unchanged.
fn feather(matte: &[f32], w: usize, h: usize) -> Vec<u8> {
    const KERNEL: [f32; 3] = [0.25, 0.5, 0.25];
    let mut rows = vec![0.0_f32; matte.len()];
    for y in 0..h {
        for x in 0..w {
            let xs = [x.saturating_sub(1), x, (x + 1).min(w - 1)];
            rows[y * w + x] = xs.iter().zip(KERNEL).map(|(&xi, k)| k * matte[y * w + xi]).sum();
        }
    }
    let mut out = vec![0_u8; matte.len()];
    for y in 0..h {
        let ys = [y.saturating_sub(1), y, (y + 1).min(h - 1)];
        for x in 0..w {
            let s: f32 = ys.iter().zip(KERNEL).map(|(&yi, k)| k * rows[yi * w + x]).sum();
            out[y * w + x] = (s * f32::from(u8::MAX)).round().clamp(0.0, f32::from(u8::MAX)) as u8;
        }
    }
    out
}

/// Bilinear upsampling of a `ws × hs` alpha map made of `factor × factor` blocks back to `w × h`: output pixel
/// `i` samples block coordinate `(i + ½)/factor − ½`, edges clamped.
fn upsample_bilinear(src: &[u8], ws: usize, hs: usize, w: u32, h: u32, factor: u32) -> Vec<u8> {
    let (w, h, f) = (w as usize, h as usize, f64::from(factor.max(1)));
    let axis = |n_out: usize, n_in: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|i| {
                let s = ((i as f64 + 0.5) / f - 0.5).clamp(0.0, n_in.saturating_sub(1) as f64);
                let i0 = s.floor() as usize;
                (i0, (i0 + 1).min(n_in.saturating_sub(1)), (s - i0 as f64) as f32)
            })
            .collect()
    };
    let (xs, ys) = (axis(w, ws), axis(h, hs));
    let at = |x: usize, y: usize| f32::from(src[y * ws + x]);
    let mut out = Vec::with_capacity(w * h);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let top = at(x0, y0) + fx * (at(x1, y0) - at(x0, y0));
            let bottom = at(x0, y1) + fx * (at(x1, y1) - at(x0, y1));
            out.push((top + fy * (bottom - top)).round().clamp(0.0, f32::from(u8::MAX)) as u8);
        }
    }
    out
}

#[cfg(test)]
#[path = "background_tests.rs"]
mod tests;
