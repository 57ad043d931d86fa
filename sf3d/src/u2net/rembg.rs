//! rembg's steps around the network, with its defaults (`U2netSession.predict`, `BaseSession.normalize`,
//! `naive_cutout`; no alpha matting, no mask post-processing):
//!
//! 1. the image as RGB (alpha dropped), Pillow LANCZOS-resized to 320×320;
//! 2. divided by its largest byte (over all pixels and channels, at least 1e-6), then per channel
//!    `(v − mean) / std` with ImageNet's mean and std, in `f64`, stored as `f32`;
//! 3. the network's first output, min-max normalised over the image in `f32`, clipped to `[0, 1]`, times 255,
//!    truncated to 8 bits;
//! 4. that mask LANCZOS-resized to the image's size, and `Image.composite(img, transparent, mask)`: every byte of
//!    the RGBA image, alpha included, times the mask with Pillow's rounding.

use image::{GrayImage, RgbImage, RgbaImage};

use crate::error::{Error, Result};
use crate::preprocess::{muldiv255, pil_resize_lanczos_rgb};

/// Side of the square the network sees.
pub const INPUT_SIDE: u32 = 320;

/// ImageNet channel means rembg normalises with.
const MEAN: [f64; 3] = [0.485, 0.456, 0.406];

/// ImageNet channel standard deviations rembg normalises with.
const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Smallest divisor of the max-normalisation (an all-black image).
const MIN_MAX: f64 = 1e-6;

/// Steps 1–2: the network input for `img`, `[3, 320, 320]` channel-major.
pub fn normalize(img: &RgbaImage) -> Vec<f32> {
    let rgb = RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        image::Rgb([p[0], p[1], p[2]])
    });
    let small = pil_resize_lanczos_rgb(&rgb, INPUT_SIDE, INPUT_SIDE);
    let max = f64::from(small.as_raw().iter().copied().max().unwrap_or(0)).max(MIN_MAX);
    let plane = (INPUT_SIDE * INPUT_SIDE) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in small.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = ((f64::from(p.0[c]) / max - MEAN[c]) / STD[c]) as f32;
        }
    }
    out
}

/// Step 3: the 8-bit mask of a `side × side` prediction.
///
/// Errors: [`Error::NoForeground`] when the prediction is constant or not finite (rembg would divide by zero).
pub fn mask_from_prediction(pred: &[f32], side: u32) -> Result<GrayImage> {
    let (mi, ma) = pred.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = ma - mi;
    if !(range.is_finite() && range > 0.0) || pred.iter().any(|v| !v.is_finite()) {
        return Err(Error::NoForeground(format!(
            "the background model's prediction is constant or not finite (min {mi}, max {ma}); no mask can be made"
        )));
    }
    let bytes = pred.iter().map(|&v| (((v - mi) / range).clamp(0.0, 1.0) * 255.0) as u8).collect();
    GrayImage::from_raw(side, side, bytes)
        .ok_or_else(|| Error::Internal(format!("a {side}×{side} mask needs {} values", side * side)))
}

/// Step 4's composite: `img` with every channel multiplied by `mask` (which has the image's size).
pub fn cutout(img: &RgbaImage, mask: &GrayImage) -> RgbaImage {
    let mut out = img.clone();
    for (px, m) in out.pixels_mut().zip(mask.pixels()) {
        for c in &mut px.0 {
            *c = muldiv255(*c, m.0[0]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_divides_by_the_brightest_byte() {
        // A flat image of (100, 50, 200) stays flat through the resize; the largest byte is 200.
        let img = RgbaImage::from_pixel(40, 30, image::Rgba([100, 50, 200, 7]));
        let x = normalize(&img);
        let plane = (INPUT_SIDE * INPUT_SIDE) as usize;
        assert_eq!(x.len(), 3 * plane);
        let want = [(0.5 - MEAN[0]) / STD[0], (0.25 - MEAN[1]) / STD[1], (1.0 - MEAN[2]) / STD[2]];
        for c in 0..3 {
            assert!(x[c * plane..(c + 1) * plane].iter().all(|&v| v == want[c] as f32), "channel {c}");
        }
    }

    #[test]
    fn mask_is_min_max_normalised_and_truncated() {
        let pred = [0.2_f32, 0.6, 1.0, 0.4];
        let m = mask_from_prediction(&pred, 2).unwrap();
        // (0.6 − 0.2)/0.8·255 = 127.5 → 127; (0.4 − 0.2)/0.8·255 = 63.75 → 63.
        assert_eq!(m.as_raw(), &[0, 127, 255, 63]);
        assert!(mask_from_prediction(&[0.5; 4], 2).is_err());
        assert!(mask_from_prediction(&[0.5, f32::NAN, 0.1, 0.2], 2).is_err());
    }

    #[test]
    fn cutout_scales_every_channel_with_pillow_rounding() {
        let img = RgbaImage::from_pixel(2, 1, image::Rgba([200, 10, 255, 255]));
        let mask = GrayImage::from_raw(2, 1, vec![128, 0]).unwrap();
        let out = cutout(&img, &mask);
        assert_eq!(out.get_pixel(0, 0).0, [100, 5, 128, 128]);
        assert_eq!(out.get_pixel(1, 0).0, [0, 0, 0, 0]);
    }
}
