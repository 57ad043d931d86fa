//! Image input and preprocessing: spec §4 (all of it) and Appendix B items 18–19.
//!
//! The reference CLI runs: open → RGBA → background removal (§4.2) → `resize_foreground(ratio)` (§4.3) →
//! `prepare_image` (§4.4: Pillow bicubic resize to `cond_image_size`, gray blend) → `ImageProcessor` (§4.5, an
//! identity at that size). This module provides each step:
//!
//! | step | function | file |
//! |---|---|---|
//! | decode PNG/JPEG/WebP, EXIF orientation, limits | [`decode_image`] | `decode.rs` |
//! | frame the object | [`resize_foreground`] | `foreground.rs` |
//! | Pillow-exact bicubic RGBA resize | [`pil_resize_bicubic_rgba`] | `resize.rs` |
//! | `rgb_cond` / `mask_cond` | [`prepare_conditioning`] | `conditioning.rs` |
//!
//! Deviations from the reference, all deliberate: EXIF orientation is applied. From the `resize_foreground`
//! output on, the port is bit-exact (golden `rgb_cond`/`mask_cond`: max abs error 0). Background removal
//! follows in `background.rs`.

mod conditioning;
mod decode;
mod foreground;
mod resize;

pub use conditioning::{Conditioning, prepare_conditioning};
pub use decode::{DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DecodeLimits, decode_image};
pub use foreground::{MAX_FOREGROUND_SIDE, alpha_bbox, resize_foreground};
pub use resize::{PRECISION_BITS, pil_resize_bicubic_rgba};
