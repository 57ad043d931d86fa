//! Tests of [`decode_image`]: every format and colour type we can produce (with the `image` encoders or a tiny
//! hand-written PNG chunk writer), EXIF orientation, truncated and garbage input, and the resource limits
//! including decompression bombs (headers claiming huge canvases over a few bytes of data).

use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, Rgba, RgbaImage};

use super::*;

/// A bomb must be refused from its header: far faster than decoding even one real megapixel.
const BOMB_DEADLINE: Duration = Duration::from_millis(500);

// ---- helpers -------------------------------------------------------------------------------------------------

fn crc32(bytes: &[u8]) -> u32 {
    const POLY: u32 = 0xEDB8_8320;
    let mut crc = !0_u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1_u32, 0_u32);
    for &x in bytes {
        a = (a + u32::from(x)) % MOD;
        b = (b + a) % MOD;
    }
    (b << 16) | a
}

/// A zlib stream made of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(65_535).collect() };
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend(adler32(data).to_be_bytes());
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend(crc32(&body).to_be_bytes());
}

/// A PNG from raw chunks: IHDR fields, extra chunks before the data, and the unfiltered scanlines.
fn raw_png(
    width: u32,
    height: u32,
    bit_depth: u8,
    colour_type: u8,
    extra: &[(&[u8; 4], Vec<u8>)],
    rows: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([bit_depth, colour_type, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    for (kind, data) in extra {
        png_chunk(&mut out, kind, data);
    }
    let mut scanlines = Vec::new();
    for row in rows {
        scanlines.push(0); // filter: none
        scanlines.extend_from_slice(row);
    }
    png_chunk(&mut out, b"IDAT", &zlib_stored(&scanlines));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn encode_png(data: &[u8], w: u32, h: u32, colour: ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(data, w, h, colour).expect("png encodes");
    out
}

fn encode_jpeg(img: &RgbaImage, quality: u8) -> Vec<u8> {
    let rgb = image::DynamicImage::ImageRgba8(img.clone()).to_rgb8();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality).encode_image(&rgb).expect("jpeg encodes");
    out
}

/// An APP1 segment with a big-endian EXIF block holding only the orientation tag.
fn exif_app1(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a".to_vec();
    tiff.extend(8_u32.to_be_bytes()); // offset of IFD0
    tiff.extend(1_u16.to_be_bytes()); // one entry
    tiff.extend(0x0112_u16.to_be_bytes()); // Orientation
    tiff.extend(3_u16.to_be_bytes()); // SHORT
    tiff.extend(1_u32.to_be_bytes()); // count
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0]); // value padding
    tiff.extend(0_u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend(tiff);
    let mut seg = vec![0xFF, 0xE1];
    seg.extend(((payload.len() + 2) as u16).to_be_bytes());
    seg.extend(payload);
    seg
}

/// `jpeg` with an EXIF orientation segment inserted right after SOI.
fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "starts with SOI");
    let mut out = jpeg[..2].to_vec();
    out.extend(exif_app1(orientation));
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn close(a: [u8; 4], b: [u8; 4], tol: u8) -> bool {
    a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= tol)
}

fn decode(bytes: &[u8]) -> Result<RgbaImage> {
    decode_image(bytes, &DecodeLimits::default())
}

/// A small test picture with distinct quadrants and a gradient alpha.
fn quadrants(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        let a = (255 * (x + y) / (w + h - 2)) as u8;
        match (x < w / 2, y < h / 2) {
            (true, true) => Rgba([250, 10, 10, a]),
            (false, true) => Rgba([10, 250, 10, a]),
            (true, false) => Rgba([10, 10, 250, a]),
            (false, false) => Rgba([240, 240, 20, a]),
        }
    })
}

// ---- formats and colour types -------------------------------------------------------------------------------

#[test]
fn png_rgba8_round_trips_exactly() {
    let img = quadrants(13, 7);
    let out = decode(&encode_png(img.as_raw(), 13, 7, ExtendedColorType::Rgba8)).expect("decodes");
    assert_eq!(out, img);
}

#[test]
fn png_16_bit_is_rounded_to_8_bit() {
    // Samples 0xFFFF, 0x0000, 0x8080 (= 128·257) and an alpha of 0x7F7F (= 127·257), in native byte order.
    let px: [u16; 4] = [0xFFFF, 0x0000, 0x8080, 0x7F7F];
    let mut data = Vec::new();
    for _ in 0..6 {
        for v in px {
            data.extend(v.to_ne_bytes());
        }
    }
    let out = decode(&encode_png(&data, 3, 2, ExtendedColorType::Rgba16)).expect("decodes");
    assert!(out.pixels().all(|p| p.0 == [255, 0, 128, 127]), "{:?}", out.get_pixel(0, 0));
}

#[test]
fn png_grey_and_grey_alpha_expand_to_rgba() {
    let grey = decode(&encode_png(&[0, 100, 200, 255], 2, 2, ExtendedColorType::L8)).expect("L8");
    assert_eq!(grey.as_raw(), &[0, 0, 0, 255, 100, 100, 100, 255, 200, 200, 200, 255, 255, 255, 255, 255]);
    let grey_alpha = decode(&encode_png(&[50, 0, 150, 128], 2, 1, ExtendedColorType::La8)).expect("La8");
    assert_eq!(grey_alpha.as_raw(), &[50, 50, 50, 0, 150, 150, 150, 128]);
    let grey16 = decode(&encode_png(&0x4040_u16.to_ne_bytes(), 1, 1, ExtendedColorType::L16)).expect("L16");
    assert_eq!(grey16.as_raw(), &[64, 64, 64, 255]);
}

#[test]
fn png_palette_with_transparency_expands_to_rgba() {
    // 2-bit palette: red, green, transparent blue; tRNS gives alpha 255, 128, 0.
    let plte = vec![255, 0, 0, 0, 255, 0, 0, 0, 255];
    let trns = vec![255, 128, 0];
    // Row of 3 pixels, indices 0, 1, 2 packed MSB first: 00 01 10 00 = 0b0001_1000.
    let png = raw_png(3, 1, 2, 3, &[(b"PLTE", plte), (b"tRNS", trns)], &[vec![0b0001_1000]]);
    let out = decode(&png).expect("palette decodes");
    assert_eq!(out.as_raw(), &[255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 0]);
}

#[test]
fn jpeg_decodes_opaque() {
    let img =
        RgbaImage::from_fn(32, 16, |x, _| if x < 16 { Rgba([220, 30, 30, 255]) } else { Rgba([30, 30, 220, 255]) });
    let out = decode(&encode_jpeg(&img, 95)).expect("decodes");
    assert_eq!(out.dimensions(), (32, 16));
    assert!(out.pixels().all(|p| p.0[3] == 255));
    assert!(close(out.get_pixel(4, 8).0, [220, 30, 30, 255], 12), "{:?}", out.get_pixel(4, 8));
    assert!(close(out.get_pixel(28, 8).0, [30, 30, 220, 255], 12), "{:?}", out.get_pixel(28, 8));
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    // testdata/cmyk.jpg: Pillow-written Adobe CMYK JPEG, left half cyan, right half yellow (make_cmyk_jpeg.py).
    let out = decode(include_bytes!("testdata/cmyk.jpg")).expect("decodes");
    assert_eq!(out.dimensions(), (16, 16));
    assert!(close(out.get_pixel(3, 8).0, [0, 255, 255, 255], 16), "cyan: {:?}", out.get_pixel(3, 8));
    assert!(close(out.get_pixel(12, 8).0, [255, 255, 0, 255], 16), "yellow: {:?}", out.get_pixel(12, 8));
}

#[test]
fn webp_lossless_round_trips_exactly() {
    let img = quadrants(9, 6);
    let mut webp = Vec::new();
    WebPEncoder::new_lossless(&mut webp).encode(img.as_raw(), 9, 6, ExtendedColorType::Rgba8).expect("encodes");
    assert_eq!(decode(&webp).expect("decodes"), img);
}

#[test]
fn exif_orientation_is_applied() {
    // Stored 32×16: left half red, right half blue.
    let img =
        RgbaImage::from_fn(32, 16, |x, _| if x < 16 { Rgba([230, 20, 20, 255]) } else { Rgba([20, 20, 230, 255]) });
    let jpeg = encode_jpeg(&img, 95);
    let red = [230, 20, 20, 255];
    let blue = [20, 20, 230, 255];

    // 6 = "rotate 90° clockwise to display": the stored left edge becomes the top.
    let rotated = decode(&with_exif(&jpeg, 6)).expect("decodes");
    assert_eq!(rotated.dimensions(), (16, 32));
    assert!(close(rotated.get_pixel(8, 4).0, red, 16), "top: {:?}", rotated.get_pixel(8, 4));
    assert!(close(rotated.get_pixel(8, 28).0, blue, 16), "bottom: {:?}", rotated.get_pixel(8, 28));

    // 8 = "rotate 90° counter-clockwise": the stored left edge becomes the bottom.
    let rotated = decode(&with_exif(&jpeg, 8)).expect("decodes");
    assert_eq!(rotated.dimensions(), (16, 32));
    assert!(close(rotated.get_pixel(8, 28).0, red, 16), "bottom: {:?}", rotated.get_pixel(8, 28));

    // 3 = 180°: left and right swap, size kept.
    let turned = decode(&with_exif(&jpeg, 3)).expect("decodes");
    assert_eq!(turned.dimensions(), (32, 16));
    assert!(close(turned.get_pixel(28, 8).0, red, 16), "right: {:?}", turned.get_pixel(28, 8));

    // 1 = as stored.
    let upright = decode(&with_exif(&jpeg, 1)).expect("decodes");
    assert!(close(upright.get_pixel(4, 8).0, red, 16));
}

// ---- bad input ----------------------------------------------------------------------------------------------

#[test]
fn garbage_empty_and_foreign_formats_are_unsupported() {
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("garbage", b"this is not an image at all, just text".to_vec()),
        ("gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec()),
        ("bmp", b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00".to_vec()),
        ("png signature only", b"\x89PNG\r\n\x1a\n".to_vec()),
        ("jpeg soi only", vec![0xFF, 0xD8, 0xFF]),
    ] {
        let err = decode(&bytes).expect_err(name);
        assert!(matches!(err, Error::UnsupportedImage(_)), "{name}: {err}");
        assert!(err.is_bad_input());
    }
}

#[test]
fn truncated_files_are_unsupported() {
    let img = quadrants(40, 30);
    let png = encode_png(img.as_raw(), 40, 30, ExtendedColorType::Rgba8);
    let mut webp = Vec::new();
    WebPEncoder::new_lossless(&mut webp).encode(img.as_raw(), 40, 30, ExtendedColorType::Rgba8).expect("encodes");
    for (name, bytes) in [("png", &png), ("webp", &webp)] {
        for cut in [bytes.len() / 2, bytes.len() - 13, 40] {
            let err = decode(&bytes[..cut]).expect_err(name);
            assert!(matches!(err, Error::UnsupportedImage(_)), "{name} cut at {cut}: {err}");
        }
    }
    // JPEG cut inside its header (before the scan data).
    let jpeg = encode_jpeg(&img, 90);
    let err = decode(&jpeg[..100]).expect_err("jpeg header cut");
    assert!(matches!(err, Error::UnsupportedImage(_)), "{err}");
}

#[test]
fn corrupt_png_checksum_is_unsupported() {
    let mut png = encode_png(quadrants(8, 8).as_raw(), 8, 8, ExtendedColorType::Rgba8);
    let idat = png.windows(4).position(|w| w == b"IDAT").expect("has IDAT");
    png[idat + 6] ^= 0xFF; // flip bits in the compressed data: CRC mismatch
    assert!(matches!(decode(&png), Err(Error::UnsupportedImage(_))));
}

// ---- limits ------------------------------------------------------------------------------------------------

fn assert_too_large_quickly(name: &str, bytes: &[u8], numbers: &[&str]) {
    let start = Instant::now();
    let err = decode(bytes).expect_err(name);
    let took = start.elapsed();
    let message = err.to_string();
    assert!(matches!(err, Error::ImageTooLarge(_)), "{name}: {message}");
    for n in numbers {
        assert!(message.contains(n), "{name}: {message:?} does not mention {n}");
    }
    assert!(took < BOMB_DEADLINE, "{name}: refusal took {took:?}");
}

#[test]
fn png_bomb_is_refused_from_its_header() {
    // A 100 000 × 100 000 RGBA canvas (40 GB decoded) in about 100 bytes: one row of data, then IEND.
    let png = raw_png(100_000, 100_000, 8, 6, &[], &[vec![0; 16]]);
    assert!(png.len() < 200, "{} bytes", png.len());
    assert_too_large_quickly("png bomb", &png, &["100000×100000", "10000000000", "40000000"]);
}

#[test]
fn jpeg_bomb_is_refused_from_its_header() {
    // A real 16×16 JPEG whose SOF0 claims 65 000 × 65 000.
    let mut jpeg = encode_jpeg(&quadrants(16, 16), 80);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0");
    jpeg[sof + 5..sof + 7].copy_from_slice(&65_000_u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&65_000_u16.to_be_bytes());
    assert_too_large_quickly("jpeg bomb", &jpeg, &["65000×65000", "4225000000"]);
}

#[test]
fn webp_bomb_is_refused_from_its_header() {
    // A lossless WebP whose VP8L header claims 16 383 × 16 383: 268 MP. (16 384, the format's maximum, reads
    // as 0 in image-webp 0.2.4, which adds the 1 before masking to 14 bits; we refuse that as an empty canvas.)
    let mut webp = Vec::new();
    WebPEncoder::new_lossless(&mut webp)
        .encode(quadrants(8, 8).as_raw(), 8, 8, ExtendedColorType::Rgba8)
        .expect("encodes");
    assert_eq!(&webp[12..16], b"VP8L");
    assert_eq!(webp[20], 0x2F, "VP8L signature");
    // 14 bits width − 1, 14 bits height − 1, then alpha_is_used (1 bit) and version (3 bits), little-endian.
    let mut bits = u32::from_le_bytes([webp[21], webp[22], webp[23], webp[24]]);
    bits = (bits & !0x0FFF_FFFF) | 0x3FFE | (0x3FFE << 14);
    webp[21..25].copy_from_slice(&bits.to_le_bytes());
    assert_too_large_quickly("webp bomb", &webp, &["16383×16383", "268402689"]);
}

#[test]
fn byte_limit_is_checked_first() {
    let png = encode_png(quadrants(20, 20).as_raw(), 20, 20, ExtendedColorType::Rgba8);
    let limits = DecodeLimits { max_bytes: 100, ..DecodeLimits::default() };
    let err = decode_image(&png, &limits).expect_err("too many bytes");
    let message = err.to_string();
    assert!(matches!(err, Error::ImageTooLarge(_)), "{message}");
    assert!(message.contains(&png.len().to_string()) && message.contains("100 bytes"), "{message}");
    // Garbage over the byte limit is still refused for its size, before anything is parsed.
    let err = decode_image(&[0_u8; 101], &limits).expect_err("size first");
    assert!(matches!(err, Error::ImageTooLarge(_)));
}

#[test]
fn pixel_limit_is_inclusive() {
    let limits = DecodeLimits { max_pixels: 64, ..DecodeLimits::default() };
    let ok = encode_png(quadrants(8, 8).as_raw(), 8, 8, ExtendedColorType::Rgba8);
    assert_eq!(decode_image(&ok, &limits).expect("64 pixels pass").dimensions(), (8, 8));
    let over = encode_png(quadrants(9, 8).as_raw(), 9, 8, ExtendedColorType::Rgba8);
    let err = decode_image(&over, &limits).expect_err("72 pixels");
    assert!(matches!(err, Error::ImageTooLarge(_)) && err.to_string().contains("72 pixels"), "{err}");
}

#[test]
fn defaults_are_20_mb_and_40_mp() {
    assert_eq!(DecodeLimits::default(), DecodeLimits { max_bytes: 20_000_000, max_pixels: 40_000_000 });
}
