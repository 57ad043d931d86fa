//! Decoding user images: docs/engine.md §4.1 ("open → convert to RGBA").
//!
//! PNG, JPEG and WebP bytes become straight-alpha RGBA8 with the EXIF orientation applied. That is a deliberate
//! deviation: the reference (Pillow's `Image.open` + `convert("RGBA")`) ignores EXIF orientation, but a phone
//! photo reconstructed lying on its side is never what the user meant. Every colour type the `image` crate
//! decodes (8/16-bit, grey, grey + alpha, palette, CMYK JPEG) is converted to RGBA8.
//!
//! Resource limits are enforced before the pixel data is decoded: the byte size first, then the pixel count read
//! from the header, and the decoder's own allocation limits as a second line of defence. A decompression bomb
//! (a tiny file claiming a huge canvas) is refused after reading a few header bytes.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbaImage};

use crate::error::{Error, Result};

/// Default largest accepted file: 20 MB.
pub const DEFAULT_MAX_BYTES: u64 = 20_000_000;

/// Default largest accepted canvas: 40 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// Allocation budget the decoder gets per accepted pixel: 8 bytes for the decoded buffer at the widest colour
/// type these formats produce (16-bit RGBA) plus as much again for the decoder's working buffers.
const DECODER_ALLOC_BYTES_PER_PIXEL: u64 = 16;

/// Fixed allocation budget on top of the per-pixel one (tables, metadata, small images).
const DECODER_ALLOC_BASE_BYTES: u64 = 64 << 20;

/// What [`decode_image`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest encoded size in bytes.
    pub max_bytes: u64,
    /// Largest `width · height` of the canvas (before orientation, which does not change the count).
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    /// 20 MB and 40 megapixels.
    fn default() -> Self {
        Self { max_bytes: DEFAULT_MAX_BYTES, max_pixels: DEFAULT_MAX_PIXELS }
    }
}

impl DecodeLimits {
    /// The `image` crate limits matching these: no side longer than the pixel budget, and an allocation cap
    /// proportional to it.
    fn decoder_limits(&self) -> Limits {
        let side = u32::try_from(self.max_pixels).unwrap_or(u32::MAX);
        let mut limits = Limits::default();
        limits.max_image_width = Some(side);
        limits.max_image_height = Some(side);
        limits.max_alloc = Some(
            self.max_pixels.saturating_mul(DECODER_ALLOC_BYTES_PER_PIXEL).saturating_add(DECODER_ALLOC_BASE_BYTES),
        );
        limits
    }
}

/// Formats the engine accepts (the `image` features enabled in the workspace).
const ACCEPTED_FORMATS: [ImageFormat; 3] = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP];

/// Decodes a PNG, JPEG or WebP file to RGBA8, applying its EXIF orientation.
///
/// The format is recognised from the content (file names and MIME types are not trusted). Checks, in order:
/// size ≤ `limits.max_bytes` ([`Error::ImageTooLarge`]), a known signature ([`Error::UnsupportedImage`]), a
/// readable header with a non-empty canvas of at most `limits.max_pixels` pixels ([`Error::ImageTooLarge`],
/// decided from the header alone), then the full decode (truncated or corrupt data →
/// [`Error::UnsupportedImage`]). Guarantees: the result is non-empty, upright, straight (non-premultiplied) alpha;
/// images without alpha come back opaque; 16-bit channels are rounded to 8 bits.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbaImage> {
    let len = bytes.len() as u64;
    if len > limits.max_bytes {
        return Err(Error::ImageTooLarge(format!(
            "the file has {len} bytes, more than the limit of {} bytes",
            limits.max_bytes
        )));
    }
    if bytes.is_empty() {
        return Err(Error::UnsupportedImage("the file is empty".into()));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        Error::UnsupportedImage("unrecognised file signature: expected a PNG, JPEG or WebP image".into())
    })?;
    if !ACCEPTED_FORMATS.contains(&format) {
        return Err(Error::UnsupportedImage(format!(
            "{} images are not supported: use PNG, JPEG or WebP",
            format_name(format)
        )));
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.decoder_limits());
    // Reads the header only (JPEG: the markers up to the first scan; PNG: up to the first IDAT).
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(format, limits, e))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(Error::UnsupportedImage(format!(
            "the {} image has an empty canvas ({width}×{height})",
            format_name(format)
        )));
    }
    if pixels > limits.max_pixels {
        return Err(Error::ImageTooLarge(format!(
            "the image is {width}×{height} = {pixels} pixels, more than the limit of {} pixels",
            limits.max_pixels
        )));
    }
    // A malformed EXIF block is not worth refusing the image for: keep it as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(format, limits, e))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgba8())
}

/// Display name of a format for messages.
fn format_name(format: ImageFormat) -> &'static str {
    format.extensions_str().first().map_or("this", |e| *e)
}

/// Maps an `image` error to the engine's: limits to [`Error::ImageTooLarge`], everything else (bad data,
/// truncation, unsupported features) to [`Error::UnsupportedImage`].
fn decode_error(format: ImageFormat, limits: &DecodeLimits, e: ImageError) -> Error {
    let name = format_name(format);
    match e {
        ImageError::Limits(l) => Error::ImageTooLarge(format!(
            "the {name} decoder refused the image ({l}); the limit is {} pixels",
            limits.max_pixels
        )),
        ImageError::IoError(io) => Error::UnsupportedImage(format!("the {name} data is truncated or unreadable: {io}")),
        other => Error::UnsupportedImage(format!("cannot decode the {name} image: {other}")),
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
