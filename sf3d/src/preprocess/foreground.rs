//! Re-framing the object: docs/engine.md §4.3, `resize_foreground(image, ratio)` of the reference `sf3d/utils.py`
//! (the torchvision-crop version), without the optional output size. Section numbers refer to docs/engine.md.
//!
//! Quirks kept on purpose (§4.3, §9.1): any alpha > 0 is foreground; the bounding box is inclusive but
//! its extent is `last − first` (no +1); the crop origin is truncated toward zero (Python `int()`), not floored,
//! which shifts the crop by one pixel when it starts left of or above the image; the part of the crop outside the
//! image is transparent black.

use image::{Rgba, RgbaImage};

use crate::error::{Error, Result};

/// Alpha channel index.
const ALPHA: usize = 3;

/// Largest side [`resize_foreground`] produces; a larger crop means a ratio far outside the useful range.
pub const MAX_FOREGROUND_SIDE: u32 = 16_384;

/// Inclusive bounding box of the pixels with alpha > 0: `(x1, y1, x2, y2)`, or `None` when there are none.
pub fn alpha_bbox(img: &RgbaImage) -> Option<(u32, u32, u32, u32)> {
    let mut bbox: Option<(u32, u32, u32, u32)> = None;
    for (x, y, px) in img.enumerate_pixels() {
        if px.0[ALPHA] > 0 {
            bbox = Some(match bbox {
                None => (x, y, x, y),
                Some((x1, y1, x2, y2)) => (x1.min(x), y1.min(y), x2.max(x), y2.max(y)),
            });
        }
    }
    bbox
}

/// The ratio as the user wrote it, in `f64`: the reference receives a Python float (`0.85`), and widening the
/// `f32` directly (`0.8500000238…`) could move `int(S)` across an integer.
fn ratio_as_python_float(ratio: f32) -> f64 {
    ratio.to_string().parse().unwrap_or(f64::from(ratio))
}

/// Crops a square around the foreground so that the object's longer bounding-box extent is `ratio` of the side
/// (§4.3): `S = max(y2 − y1, x2 − x1) / ratio`, origin `(int(xc − S/2), int(yc − S/2))` with `xc, yc` the box
/// centre, side `int(S)`; pixels outside `img` are `(0, 0, 0, 0)`.
///
/// Preconditions: `0 < ratio ≤ 1` ([`Error::Param`] otherwise; the UI range is 0.5–1.0). Errors:
/// [`Error::NoForeground`] when no pixel has alpha > 0 or the box is a single pixel (side 0);
/// [`Error::ImageTooLarge`] when the side would exceed [`MAX_FOREGROUND_SIDE`]. Guarantees: a square image
/// whose pixels are exact copies of `img`'s or transparent black.
pub fn resize_foreground(img: &RgbaImage, ratio: f32) -> Result<RgbaImage> {
    if !(ratio.is_finite() && ratio > 0.0 && ratio <= 1.0) {
        return Err(Error::Param(sf3d_shared::ParamError::new(
            "foreground_ratio",
            format!("{ratio} is outside (0, 1]"),
        )));
    }
    let (x1, y1, x2, y2) = alpha_bbox(img).ok_or_else(|| {
        Error::NoForeground("every pixel is fully transparent (alpha 0), so there is no object to frame".into())
    })?;
    let (h, w) = (f64::from(y2 - y1), f64::from(x2 - x1));
    let (yc, xc) = ((f64::from(y1) + f64::from(y2)) / 2.0, (f64::from(x1) + f64::from(x2)) / 2.0);
    let scale = h.max(w) / ratio_as_python_float(ratio);
    // Python `int()` on a float truncates toward zero, as does `as`.
    let top = (yc - scale / 2.0) as i64;
    let left = (xc - scale / 2.0) as i64;
    let side = scale as i64;
    if side <= 0 {
        return Err(Error::NoForeground(format!(
            "the foreground is a single pixel at ({x1}, {y1}); nothing to reconstruct"
        )));
    }
    let side = u32::try_from(side).ok().filter(|&s| s <= MAX_FOREGROUND_SIDE).ok_or_else(|| {
        Error::ImageTooLarge(format!(
            "framing the object at ratio {ratio} needs a {side}×{side} image, more than {MAX_FOREGROUND_SIDE} per side"
        ))
    })?;

    let (w_in, h_in) = (i64::from(img.width()), i64::from(img.height()));
    let mut out = RgbaImage::from_pixel(side, side, Rgba([0, 0, 0, 0]));
    for (x, y, px) in out.enumerate_pixels_mut() {
        let (sx, sy) = (left + i64::from(x), top + i64::from(y));
        if (0..w_in).contains(&sx) && (0..h_in).contains(&sy) {
            *px = *img.get_pixel(sx as u32, sy as u32);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAR: Rgba<u8> = Rgba([0, 0, 0, 0]);

    /// A `w × h` transparent canvas with opaque red pixels at `points`.
    fn canvas(w: u32, h: u32, points: &[(u32, u32)]) -> RgbaImage {
        let mut img = RgbaImage::from_pixel(w, h, Rgba([7, 7, 7, 0]));
        for &(x, y) in points {
            img.put_pixel(x, y, Rgba([255, 0, 0, 255]));
        }
        img
    }

    /// Independent Python-semantics model of the reference, on integers and floats.
    fn expected_origin_and_side(bbox: (i64, i64, i64, i64), ratio: f64) -> (i64, i64, i64) {
        let (x1, y1, x2, y2) = bbox;
        let s = ((y2 - y1).max(x2 - x1)) as f64 / ratio;
        let trunc = |v: f64| v.trunc() as i64;
        (trunc((x1 + x2) as f64 / 2.0 - s / 2.0), trunc((y1 + y2) as f64 / 2.0 - s / 2.0), trunc(s))
    }

    #[test]
    fn centred_object_ratio_one_keeps_the_inclusive_box_minus_one() {
        // Box x 10..=29, y 20..=59: h = 39, w = 19 (no +1), S = 39; yc = 39.5 → top = int(20.0) = 20,
        // xc = 19.5 → left = int(0.0) = 0.
        let img = canvas(64, 80, &[(10, 20), (29, 59)]);
        let out = resize_foreground(&img, 1.0).expect("frames");
        assert_eq!(out.dimensions(), (39, 39));
        assert_eq!(out.get_pixel(10, 0).0, [255, 0, 0, 255], "top-left marker at (10-left, 20-top)");
        // The bottom-right marker (29, 59) falls just outside the 39-pixel crop: the reference drops it too.
        assert!(out.pixels().filter(|p| p.0[3] > 0).count() == 1);
    }

    #[test]
    fn ratio_half_doubles_the_side_and_pads_with_transparent_black() {
        let img = canvas(100, 100, &[(40, 40), (60, 60)]);
        let out = resize_foreground(&img, 0.5).expect("frames");
        // S = 20 / 0.5 = 40, origin int(50 − 20) = 30.
        assert_eq!(out.dimensions(), (40, 40));
        assert_eq!(out.get_pixel(10, 10).0, [255, 0, 0, 255]);
        assert_eq!(out.get_pixel(0, 0).0, [7, 7, 7, 0], "inside the image: copied as is");
        let (ox, oy, n) = expected_origin_and_side((40, 40, 60, 60), 0.5);
        assert_eq!((ox, oy, n), (30, 30, 40));
    }

    #[test]
    fn crop_past_the_top_left_truncates_toward_zero_and_fills_transparent_black() {
        // Box (0, 0)..(9, 4) in a 10×5 image: h = 4, w = 9, S = 9/0.85 = 10.588…, n = 10,
        // left = int(4.5 − 5.294) = int(−0.794) = 0 (floor would give −1), top = int(2 − 5.294) = int(−3.294) = −3.
        let img = canvas(10, 5, &[(0, 0), (9, 4)]);
        let out = resize_foreground(&img, 0.85).expect("frames");
        let (ox, oy, n) = expected_origin_and_side((0, 0, 9, 4), 0.85);
        assert_eq!((ox, oy, n), (0, -3, 10));
        assert_eq!(out.dimensions(), (10, 10));
        // Rows 0..3 lie above the image: transparent black, not the canvas colour.
        for x in 0..10 {
            for y in 0..3 {
                assert_eq!(*out.get_pixel(x, y), CLEAR, "({x}, {y})");
            }
        }
        assert_eq!(out.get_pixel(0, 3).0, [255, 0, 0, 255], "source (0, 0)");
        assert_eq!(out.get_pixel(9, 7).0, [255, 0, 0, 255], "source (9, 4)");
        assert_eq!(*out.get_pixel(5, 8), CLEAR, "below the image");
    }

    #[test]
    fn crop_past_the_bottom_right_edge() {
        // Object touching the bottom-right corner of a 50×40 image.
        let img = canvas(50, 40, &[(30, 25), (49, 39)]);
        let out = resize_foreground(&img, 0.5).expect("frames");
        let (ox, oy, n) = expected_origin_and_side((30, 25, 49, 39), 0.5);
        assert_eq!(out.dimensions(), (n as u32, n as u32));
        assert_eq!(out.get_pixel((30 - ox) as u32, (25 - oy) as u32).0, [255, 0, 0, 255]);
        assert_eq!(out.get_pixel((49 - ox) as u32, (39 - oy) as u32).0, [255, 0, 0, 255]);
        assert_eq!(*out.get_pixel(n as u32 - 1, n as u32 - 1), CLEAR);
    }

    #[test]
    fn faint_alpha_counts_as_foreground() {
        let mut img = canvas(20, 20, &[(5, 5)]);
        img.put_pixel(15, 12, Rgba([1, 2, 3, 1]));
        assert_eq!(alpha_bbox(&img), Some((5, 5, 15, 12)));
    }

    #[test]
    fn refusals_are_typed() {
        let clear = canvas(8, 8, &[]);
        assert!(matches!(resize_foreground(&clear, 0.85), Err(Error::NoForeground(_))));
        let dot = canvas(8, 8, &[(3, 3)]);
        assert!(matches!(resize_foreground(&dot, 0.85), Err(Error::NoForeground(_))));
        let ok = canvas(8, 8, &[(1, 1), (6, 6)]);
        for bad in [0.0, -0.5, 1.5, f32::NAN] {
            assert!(matches!(resize_foreground(&ok, bad), Err(Error::Param(_))), "ratio {bad}");
        }
    }

    #[test]
    fn python_float_ratio_is_used() {
        assert_eq!(ratio_as_python_float(0.85), 0.85_f64);
        assert_eq!(ratio_as_python_float(1.0), 1.0_f64);
    }
}
