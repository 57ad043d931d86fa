//! Image input and preprocessing: docs/engine.md §4 (all of it), including the reference quirks kept in §4.3 and
//! §4.4. Section numbers refer to docs/engine.md.
//!
//! The reference CLI runs: open → RGBA → background removal (§4.2) → `resize_foreground(ratio)` (§4.3) →
//! `prepare_image` (§4.4: Pillow bicubic resize to `cond_image_size`, gray blend) → `ImageProcessor` (§4.5, an
//! identity at that size). This module provides each step:
//!
//! | step | function | file |
//! |---|---|---|
//! | decode PNG/JPEG/WebP, EXIF orientation, limits | [`decode_image`] | `decode.rs` |
//! | keep or remove the background ([`BackgroundMode`]) | [`apply_background`], [`has_meaningful_alpha`], [`remove_background`] | `background.rs` |
//! | which remover runs: built-in or U²-Net ([`BgModel`]) | [`BackgroundRemover`] | `remover.rs` |
//! | frame the object | [`resize_foreground`] | `foreground.rs` |
//! | Pillow-exact bicubic RGBA and Lanczos RGB / L resize | [`pil_resize_bicubic_rgba`], [`pil_resize_lanczos_rgb`] | `resize.rs` |
//! | `rgb_cond` / `mask_cond` | [`prepare_conditioning`] | `conditioning.rs` |
//!
//! Deviations from the reference, all deliberate: EXIF orientation is applied; background removal runs rembg's
//! U²-Net ([`crate::u2net`]) when its file is there and the built-in plain-backdrop remover otherwise (no model
//! download), and `Auto` keeps an alpha channel only when it has mostly transparent pixels (see
//! [`has_meaningful_alpha`]). From the
//! `resize_foreground` output on, the port is bit-exact (golden `rgb_cond`/`mask_cond`: max abs error 0).

mod background;
mod conditioning;
mod decode;
mod foreground;
mod remover;
mod resize;

use image::RgbaImage;
use sf3d_shared::BackgroundMode;

use crate::error::{Error, Result};

pub use background::{
    ANALYSIS_MAX_PIXELS, MIN_REMOVAL_SIDE, TRANSPARENT_ALPHA_MAX, has_meaningful_alpha, remove_background,
};
pub use conditioning::{Conditioning, prepare_conditioning};
pub use decode::{DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DecodeLimits, decode_image};
pub use foreground::{MAX_FOREGROUND_SIDE, alpha_bbox, resize_foreground};
pub use remover::{BackgroundRemover, BgModel, U2NET_FILE};
pub(crate) use resize::muldiv255;
pub use resize::{PRECISION_BITS, pil_resize_bicubic_rgba, pil_resize_lanczos_gray, pil_resize_lanczos_rgb};

/// Applies the user's background policy to a decoded image (the §4.2 decision, with our rule for `Auto`).
///
/// - [`BackgroundMode::Auto`]: keep `img` when [`has_meaningful_alpha`], otherwise [`remove_background`].
/// - [`BackgroundMode::Always`]: [`remove_background`] (the input alpha is ignored).
/// - [`BackgroundMode::Never`]: keep `img` as is (an opaque photo then frames as a whole).
///
/// Errors: [`Error::NoForeground`] when the kept image is fully transparent or removal finds nothing; the
/// errors of [`remove_background`]. Guarantees: at least one pixel of the result has alpha > 0, so
/// [`resize_foreground`] has a bounding box.
pub fn apply_background(img: RgbaImage, mode: BackgroundMode) -> Result<RgbaImage> {
    let remove = match mode {
        BackgroundMode::Auto => !has_meaningful_alpha(&img),
        BackgroundMode::Always => true,
        BackgroundMode::Never => false,
    };
    if remove {
        return remove_background(&img);
    }
    if alpha_bbox(&img).is_none() {
        return Err(Error::NoForeground(
            "the image is fully transparent (every alpha is 0); there is no object to reconstruct".into(),
        ));
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgba};

    /// An opaque grey image with a dark square in the middle.
    fn opaque_square(alpha_everywhere: u8) -> RgbaImage {
        RgbaImage::from_fn(64, 64, |x, y| {
            if (20..44).contains(&x) && (20..44).contains(&y) {
                Rgba([30, 60, 90, alpha_everywhere])
            } else {
                Rgba([200, 200, 200, alpha_everywhere])
            }
        })
    }

    #[test]
    fn auto_keeps_a_cut_out_and_removes_an_opaque_backdrop() {
        let mut cutout = opaque_square(255);
        for (x, y, p) in cutout.enumerate_pixels_mut() {
            if !((20..44).contains(&x) && (20..44).contains(&y)) {
                p.0[3] = 0;
            }
        }
        let kept = apply_background(cutout.clone(), BackgroundMode::Auto).expect("kept");
        assert_eq!(kept, cutout);

        let removed = apply_background(opaque_square(255), BackgroundMode::Auto).expect("removed");
        assert_eq!(removed.get_pixel(32, 32).0[3], 255);
        assert_eq!(removed.get_pixel(2, 2).0[3], 0);
    }

    #[test]
    fn auto_treats_nearly_opaque_editor_alpha_as_opaque() {
        // A layer exported at 99 % opacity: every alpha is 252. The reference would skip removal.
        let img = opaque_square(252);
        assert!(!has_meaningful_alpha(&img));
        let out = apply_background(img, BackgroundMode::Auto).expect("removed");
        assert_eq!(out.get_pixel(2, 2).0[3], 0, "backdrop removed");
    }

    #[test]
    fn never_and_always_force_the_choice() {
        let opaque = opaque_square(255);
        assert_eq!(apply_background(opaque.clone(), BackgroundMode::Never).expect("kept"), opaque);
        let mut cutout = opaque_square(255);
        cutout.put_pixel(0, 0, Rgba([200, 200, 200, 0]));
        let out = apply_background(cutout, BackgroundMode::Always).expect("removed");
        assert_eq!(out.get_pixel(2, 2).0[3], 0, "alpha recomputed although the input had transparency");
    }

    #[test]
    fn fully_transparent_input_has_no_foreground() {
        let clear = RgbaImage::from_pixel(32, 32, Rgba([10, 20, 30, 0]));
        for mode in [BackgroundMode::Auto, BackgroundMode::Never] {
            let err = apply_background(clear.clone(), mode).expect_err("refused");
            assert!(matches!(err, Error::NoForeground(_)), "{mode:?}: {err}");
        }
    }

    #[test]
    fn png_bytes_to_conditioning_end_to_end() {
        // An opaque photo-like PNG: a dark disc on white, off-centre. Auto removes the backdrop, the disc is
        // framed at ratio 0.85 and the conditioning has gray corners and an opaque centre.
        let img = RgbaImage::from_fn(200, 150, |x, y| {
            let (dx, dy) = (x as f32 - 70.0, y as f32 - 80.0);
            if dx * dx + dy * dy < 40.0 * 40.0 { Rgba([40, 30, 120, 255]) } else { Rgba([255, 255, 255, 255]) }
        });
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(img.as_raw(), 200, 150, image::ExtendedColorType::Rgba8)
            .expect("encodes");
        let decoded = decode_image(&png, &DecodeLimits::default()).expect("decodes");
        let cut = apply_background(decoded, BackgroundMode::Auto).expect("cut out");
        let framed = resize_foreground(&cut, 0.85).expect("framed");
        // The disc spans x 31..=109; the 1-pixel feather makes alpha > 0 on x 30..=110, which the reference's
        // rule (any alpha > 0) counts: S = 80 / 0.85 = 94.1 → 94.
        assert_eq!(alpha_bbox(&cut), Some((30, 40, 110, 120)));
        assert_eq!(framed.dimensions(), (94, 94));
        let cond = prepare_conditioning(&framed, 112, [0.5; 3]);
        assert_eq!((cond.rgb.len(), cond.mask.len()), (112 * 112 * 3, 112 * 112));
        assert_eq!(cond.mask[0], 0.0);
        assert_eq!(&cond.rgb[..3], &[0.5, 0.5, 0.5]);
        let centre = 56 * 112 + 56;
        assert_eq!(cond.mask[centre], 1.0);
        assert!((cond.rgb[centre * 3 + 2] - 120.0 / 255.0).abs() < 1e-6);
    }
}
