//! Tests of the background remover on synthetic scenes with a known mask: anti-aliased shapes (rendered with
//! 5×5 supersampling), textured, on plain, coloured and graded backdrops, with seeded sensor noise. The mask of
//! truth is "coverage ≥ 50 %"; the remover's mask is "alpha ≥ 128". Each test prints its IoU.

use image::{Rgba, RgbaImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// Side of the synthetic scenes.
const SIZE: u32 = 256;

/// Supersampling per axis for the coverage of a pixel (odd: no pixel is covered exactly half, where the mask of
/// truth would be a coin flip).
const SUPERSAMPLE: u32 = 5;

/// Uniform per-channel noise amplitude (8-bit units) added to every scene.
const NOISE: i32 = 4;

/// Required intersection-over-union with the mask of truth.
const MIN_IOU: f64 = 0.95;

/// The backdrop colour at normalised `(u, v) ∈ [0, 1]²`.
#[derive(Clone, Copy)]
enum Backdrop {
    Plain([f32; 3]),
    /// Top-to-bottom linear gradient.
    Vertical([f32; 3], [f32; 3]),
    /// Left-to-right linear gradient plus a diagonal tilt.
    Diagonal([f32; 3], [f32; 3]),
    /// Quadratic vignette: `centre` in the middle, `edge` at the corners.
    Vignette([f32; 3], [f32; 3]),
}

impl Backdrop {
    fn at(self, u: f32, v: f32) -> [f32; 3] {
        let mix = |a: [f32; 3], b: [f32; 3], t: f32| [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t);
        match self {
            Backdrop::Plain(c) => c,
            Backdrop::Vertical(a, b) => mix(a, b, v),
            Backdrop::Diagonal(a, b) => mix(a, b, 0.7 * u + 0.3 * v),
            Backdrop::Vignette(centre, edge) => {
                let r2 = ((u - 0.5).powi(2) + (v - 0.5).powi(2)) / 0.5;
                mix(centre, edge, r2)
            }
        }
    }
}

/// A shape: inside test in pixel coordinates.
#[derive(Clone)]
enum Shape {
    Ellipse {
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
    },
    Ring {
        cx: f32,
        cy: f32,
        outer: f32,
        inner: f32,
    },
    /// Rectangle rotated by `angle` radians about its centre.
    Rect {
        cx: f32,
        cy: f32,
        hw: f32,
        hh: f32,
        angle: f32,
    },
    /// Simple polygon (even-odd rule).
    Polygon(Vec<(f32, f32)>),
}

impl Shape {
    fn contains(&self, x: f32, y: f32) -> bool {
        match self {
            Shape::Ellipse { cx, cy, rx, ry } => ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0,
            Shape::Ring { cx, cy, outer, inner } => {
                let r2 = (x - cx).powi(2) + (y - cy).powi(2);
                r2 <= outer * outer && r2 >= inner * inner
            }
            Shape::Rect { cx, cy, hw, hh, angle } => {
                let (s, c) = angle.sin_cos();
                let (dx, dy) = (x - cx, y - cy);
                (dx * c + dy * s).abs() <= *hw && (-dx * s + dy * c).abs() <= *hh
            }
            Shape::Polygon(pts) => {
                let mut inside = false;
                let mut j = pts.len() - 1;
                for i in 0..pts.len() {
                    let ((xi, yi), (xj, yj)) = (pts[i], pts[j]);
                    if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
        }
    }
}

/// An object colour as a function of pixel position.
type Texture = fn(f32, f32) -> [f32; 3];

fn stripes_red_blue(x: f32, _y: f32) -> [f32; 3] {
    if (x / 9.0).floor() as i32 % 2 == 0 { [200.0, 30.0, 40.0] } else { [40.0, 60.0, 190.0] }
}

fn checker_dark(x: f32, y: f32) -> [f32; 3] {
    if ((x / 12.0).floor() + (y / 12.0).floor()) as i32 % 2 == 0 { [20.0, 20.0, 25.0] } else { [90.0, 70.0, 50.0] }
}

fn orange_waves(x: f32, y: f32) -> [f32; 3] {
    let t = 0.5 + 0.5 * (x * 0.21).sin() * (y * 0.17).cos();
    [230.0, 120.0 + 60.0 * t, 20.0]
}

fn brown(_x: f32, _y: f32) -> [f32; 3] {
    [120.0, 75.0, 40.0]
}

/// A garment-like print: dark base with white polka dots (white = the backdrop colour in some scenes).
fn navy_with_dots(x: f32, y: f32) -> [f32; 3] {
    let (fx, fy) = ((x / 16.0).fract() - 0.5, (y / 16.0).fract() - 0.5);
    if fx * fx + fy * fy < 0.04 { [250.0, 250.0, 250.0] } else { [25.0, 35.0, 80.0] }
}

/// Pastel that stays close to a light backdrop (distance ≈ 30–45 in 8-bit RGB).
fn pale_beige(_x: f32, _y: f32) -> [f32; 3] {
    [238.0, 228.0, 212.0]
}

/// A scene: backdrop plus textured shapes painted in order.
struct Scene {
    backdrop: Backdrop,
    objects: Vec<(Shape, Texture)>,
}

impl Scene {
    /// Renders the scene at `w × h` with `ss × ss` supersampling and seeded noise; returns the opaque image and
    /// the mask of truth.
    fn render(&self, w: u32, h: u32, ss: u32, seed: u64) -> (RgbaImage, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut img = RgbaImage::new(w, h);
        let mut truth = vec![false; (w * h) as usize];
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0_f32; 3];
                let mut covered = 0;
                for sy in 0..ss {
                    for sx in 0..ss {
                        let px = x as f32 + (sx as f32 + 0.5) / ss as f32;
                        let py = y as f32 + (sy as f32 + 0.5) / ss as f32;
                        let hit = self.objects.iter().rev().find(|(s, _)| s.contains(px, py));
                        let c = match hit {
                            Some((_, tex)) => {
                                covered += 1;
                                tex(px, py)
                            }
                            None => self.backdrop.at(px / w as f32, py / h as f32),
                        };
                        for k in 0..3 {
                            acc[k] += c[k];
                        }
                    }
                }
                let n = (ss * ss) as f32;
                let px = acc.map(|a| {
                    let noisy = (a / n).round() as i32 + rng.random_range(-NOISE..=NOISE);
                    noisy.clamp(0, 255) as u8
                });
                img.put_pixel(x, y, Rgba([px[0], px[1], px[2], 255]));
                truth[(y * w + x) as usize] = 2 * covered >= ss * ss;
            }
        }
        (img, truth)
    }
}

/// IoU of `alpha ≥ 128` against `truth`.
fn iou(out: &RgbaImage, truth: &[bool]) -> f64 {
    let (mut inter, mut union) = (0_u64, 0_u64);
    for (p, &t) in out.pixels().zip(truth) {
        let m = p.0[ALPHA] >= 128;
        inter += u64::from(m && t);
        union += u64::from(m || t);
    }
    if union == 0 { 1.0 } else { inter as f64 / union as f64 }
}

/// Renders, removes the background, checks the IoU and that the RGB is untouched; returns the IoU.
fn check_scene(name: &str, scene: &Scene, seed: u64) -> f64 {
    let (img, truth) = scene.render(SIZE, SIZE, SUPERSAMPLE, seed);
    let out = remove_background(&img).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(out.dimensions(), img.dimensions());
    assert!(out.pixels().zip(img.pixels()).all(|(a, b)| a.0[..3] == b.0[..3]), "{name}: RGB changed");
    let score = iou(&out, &truth);
    println!("{name}: IoU {score:.4}");
    assert!(score > MIN_IOU, "{name}: IoU {score:.4} ≤ {MIN_IOU}");
    score
}

fn c(v: f32) -> f32 {
    v * SIZE as f32
}

#[test]
fn striped_ellipse_on_white() {
    let scene = Scene {
        backdrop: Backdrop::Plain([255.0; 3]),
        objects: vec![(Shape::Ellipse { cx: c(0.5), cy: c(0.52), rx: c(0.3), ry: c(0.38) }, stripes_red_blue)],
    };
    check_scene("striped ellipse on white", &scene, 1);
}

#[test]
fn two_objects_on_grey_are_both_kept() {
    let scene = Scene {
        backdrop: Backdrop::Plain([200.0; 3]),
        objects: vec![
            (Shape::Rect { cx: c(0.32), cy: c(0.5), hw: c(0.14), hh: c(0.25), angle: 0.3 }, checker_dark),
            (Shape::Ellipse { cx: c(0.72), cy: c(0.6), rx: c(0.13), ry: c(0.13) }, orange_waves),
        ],
    };
    check_scene("two objects on grey", &scene, 2);
}

#[test]
fn star_on_a_coloured_backdrop() {
    let star: Vec<(f32, f32)> = (0..10)
        .map(|i| {
            let a = std::f32::consts::PI * i as f32 / 5.0 - std::f32::consts::FRAC_PI_2;
            let r = if i % 2 == 0 { c(0.42) } else { c(0.2) };
            (c(0.5) + r * a.cos(), c(0.52) + r * a.sin())
        })
        .collect();
    let scene =
        Scene { backdrop: Backdrop::Plain([40.0, 140.0, 150.0]), objects: vec![(Shape::Polygon(star), orange_waves)] };
    check_scene("star on teal", &scene, 3);
}

#[test]
fn ring_on_a_vertical_gradient_keeps_its_hole() {
    let scene = Scene {
        backdrop: Backdrop::Vertical([170.0, 200.0, 235.0], [250.0, 250.0, 250.0]),
        objects: vec![(Shape::Ring { cx: c(0.5), cy: c(0.5), outer: c(0.36), inner: c(0.18) }, brown)],
    };
    let (img, _) = scene.render(SIZE, SIZE, SUPERSAMPLE, 4);
    check_scene("ring on vertical gradient", &scene, 4);
    let out = remove_background(&img).expect("removed");
    assert_eq!(out.get_pixel(SIZE / 2, SIZE / 2).0[ALPHA], 0, "the see-through hole stays transparent");
}

#[test]
fn garment_touching_the_bottom_edge_on_a_vignette() {
    // A T-shirt silhouette cut by the bottom edge, navy with white dots, on a grey studio vignette.
    let shirt = vec![
        (c(0.30), c(0.12)),
        (c(0.42), c(0.10)),
        (c(0.50), c(0.16)),
        (c(0.58), c(0.10)),
        (c(0.70), c(0.12)),
        (c(0.92), c(0.30)),
        (c(0.80), c(0.42)),
        (c(0.72), c(0.34)),
        (c(0.74), c(1.05)),
        (c(0.26), c(1.05)),
        (c(0.28), c(0.34)),
        (c(0.20), c(0.42)),
        (c(0.08), c(0.30)),
    ];
    let scene = Scene {
        backdrop: Backdrop::Vignette([235.0, 235.0, 232.0], [160.0, 160.0, 165.0]),
        objects: vec![(Shape::Polygon(shirt), navy_with_dots)],
    };
    check_scene("garment on vignette", &scene, 5);
}

#[test]
fn pale_object_on_a_diagonal_gradient() {
    let scene = Scene {
        backdrop: Backdrop::Diagonal([255.0, 255.0, 255.0], [205.0, 215.0, 230.0]),
        objects: vec![(Shape::Ellipse { cx: c(0.45), cy: c(0.5), rx: c(0.25), ry: c(0.3) }, pale_beige)],
    };
    check_scene("pale beige on diagonal gradient", &scene, 6);
}

#[test]
fn white_label_on_a_product_on_white_is_filled() {
    // A dark box with a small white label (2 % of the box area, below SMALL_HOLE_FRACTION) on white.
    let scene = Scene {
        backdrop: Backdrop::Plain([255.0; 3]),
        objects: vec![
            (Shape::Rect { cx: c(0.5), cy: c(0.5), hw: c(0.28), hh: c(0.35), angle: 0.0 }, checker_dark),
            (Shape::Rect { cx: c(0.5), cy: c(0.45), hw: c(0.05), hh: c(0.04), angle: 0.0 }, |_, _| [255.0; 3]),
        ],
    };
    check_scene("white label on white", &scene, 7);
}

#[test]
fn survives_jpeg_compression() {
    let scene = Scene {
        backdrop: Backdrop::Vertical([245.0, 245.0, 245.0], [215.0, 215.0, 220.0]),
        objects: vec![(Shape::Ellipse { cx: c(0.5), cy: c(0.5), rx: c(0.33), ry: c(0.25) }, stripes_red_blue)],
    };
    let (img, truth) = scene.render(SIZE, SIZE, SUPERSAMPLE, 8);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&image::DynamicImage::ImageRgba8(img).to_rgb8())
        .expect("encodes");
    let decoded = image::load_from_memory(&jpeg).expect("decodes").to_rgba8();
    let out = remove_background(&decoded).expect("removed");
    let score = iou(&out, &truth);
    println!("JPEG q80 ellipse on gradient: IoU {score:.4}");
    assert!(score > MIN_IOU, "IoU {score:.4}");
}

#[test]
fn large_images_are_analysed_downsampled() {
    // 2101 × 2001 = 4.2 MP > ANALYSIS_MAX_PIXELS: analysed at half resolution (with a partial last block),
    // alpha upsampled.
    let (w, h) = (2101, 2001);
    assert_eq!(analysis_factor(w, h), 2);
    let scene = Scene {
        backdrop: Backdrop::Plain([250.0, 250.0, 250.0]),
        objects: vec![(Shape::Ellipse { cx: 1000.0, cy: 1050.0, rx: 600.0, ry: 700.0 }, checker_dark)],
    };
    let (img, truth) = scene.render(w, h, 1, 9);
    let out = remove_background(&img).expect("removed");
    let score = iou(&out, &truth);
    println!("4.2 MP ellipse, analysed at factor 2: IoU {score:.4}");
    assert!(out.pixels().any(|p| p.0[ALPHA] > 0 && p.0[ALPHA] < 255), "soft edge");
    assert!(score > MIN_IOU, "IoU {score:.4}");
}

#[test]
fn plain_and_graded_images_have_no_foreground() {
    let blank = [
        Backdrop::Plain([255.0; 3]),
        Backdrop::Plain([30.0, 90.0, 160.0]),
        Backdrop::Vertical([170.0, 200.0, 235.0], [250.0, 250.0, 250.0]),
        Backdrop::Vignette([235.0, 235.0, 232.0], [160.0, 160.0, 165.0]),
    ];
    for (i, backdrop) in blank.into_iter().enumerate() {
        let (img, _) = Scene { backdrop, objects: vec![] }.render(128, 96, 1, 100 + i as u64);
        let err = remove_background(&img).expect_err("nothing to find");
        assert!(matches!(err, Error::NoForeground(_)), "backdrop {i}: {err}");
    }
}

#[test]
fn isolated_specks_are_not_an_object() {
    let (mut img, _) = Scene { backdrop: Backdrop::Plain([255.0; 3]), objects: vec![] }.render(128, 128, 1, 11);
    for (x, y) in [(10, 10), (64, 70), (100, 30), (50, 110)] {
        img.put_pixel(x, y, Rgba([0, 0, 0, 255]));
    }
    assert!(matches!(remove_background(&img), Err(Error::NoForeground(_))));
}

#[test]
fn tiny_images_are_refused() {
    let img = RgbaImage::from_pixel(4, 40, Rgba([1, 2, 3, 255]));
    assert!(matches!(remove_background(&img), Err(Error::UnsupportedImage(_))));
}

#[test]
fn input_alpha_is_ignored() {
    let scene = Scene {
        backdrop: Backdrop::Plain([255.0; 3]),
        objects: vec![(Shape::Ellipse { cx: 64.0, cy: 64.0, rx: 30.0, ry: 40.0 }, brown)],
    };
    let (img, truth) = scene.render(128, 128, SUPERSAMPLE, 12);
    let mut holey = img.clone();
    for p in holey.pixels_mut() {
        p.0[ALPHA] = 3;
    }
    let (a, b) = (remove_background(&img).expect("a"), remove_background(&holey).expect("b"));
    assert!(a.pixels().zip(b.pixels()).all(|(p, q)| p.0[ALPHA] == q.0[ALPHA]));
    assert!(iou(&a, &truth) > MIN_IOU);
}

#[test]
fn meaningful_alpha_needs_a_mostly_transparent_pixel() {
    let mut img = RgbaImage::from_pixel(16, 16, Rgba([9, 9, 9, 255]));
    assert!(!has_meaningful_alpha(&img));
    img.put_pixel(3, 3, Rgba([9, 9, 9, 200]));
    assert!(!has_meaningful_alpha(&img), "a near-opaque pixel is editor noise");
    img.put_pixel(4, 4, Rgba([9, 9, 9, TRANSPARENT_ALPHA_MAX]));
    assert!(has_meaningful_alpha(&img));
}

#[test]
fn feather_is_one_pixel_each_side_and_keeps_the_contour() {
    // Vertical edge between columns 3 and 4 of an 8-wide mask.
    let (w, h) = (8, 3);
    let matte: Vec<f32> = (0..w * h).map(|i| if i % w >= 4 { 1.0 } else { 0.0 }).collect();
    let alpha = feather(&matte, w, h);
    assert_eq!(&alpha[w..2 * w], &[0, 0, 0, 64, 191, 255, 255, 255]);
}

#[test]
fn quadratic_background_is_fitted_exactly_despite_an_object_on_the_border() {
    // A noise-free quadratic backdrop with a black block covering a third of the bottom border.
    let (w, h) = (120, 90);
    let truth = |u: f64, v: f64| [100.0 + 40.0 * u - 30.0 * v * v, 150.0 + 20.0 * u * v, 90.0 + 10.0 * u * u];
    let mut px = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (norm_coord(x, w), norm_coord(y, h));
            let col = if x < 40 && y > 60 { [0.0; 3] } else { truth(u, v) };
            px.push(col.map(|c| c as f32));
        }
    }
    let model = BackgroundModel::fit(&RgbF32 { w, h, px });
    let (u, v) = (0.3, -0.2);
    let phi = basis(u, v);
    for (ch, want) in truth(u, v).into_iter().enumerate() {
        let got: f64 = phi.iter().zip(&model.coeffs[ch]).map(|(p, a)| p * a).sum();
        assert!((got - want).abs() < 0.5, "channel {ch}: {got} vs {want}");
    }
    assert!(model.inlier_fraction > 0.7 && model.inlier_fraction < 0.95, "{}", model.inlier_fraction);
}

#[test]
fn block_upsampling_is_aligned_with_the_blocks() {
    // Two 3×3 blocks, 0 and 255: the centre pixels of each block keep their value exactly, and the step is
    // symmetric around the block boundary.
    let up = upsample_bilinear(&[0, 255], 2, 1, 6, 3, 3);
    let row = &up[6..12];
    assert_eq!(row[1], 0);
    assert_eq!(row[4], 255);
    assert_eq!(u16::from(row[2]) + u16::from(row[3]), 255, "{row:?}");
}
