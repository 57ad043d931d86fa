//! A small seeded mutation fuzzer for the tests that feed client input (WebSocket frames, uploaded images) to
//! the server's parsers: bit flips, byte overwrites with boundary values, insertions of dictionary tokens,
//! deletions, duplications and truncations of a valid seed. Deterministic for a seed, so a failure reproduces.

/// The mutation engine (SplitMix64 for the choices).
pub(crate) struct Mutator {
    state: u64,
}

impl Mutator {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `seed` with one to eight mutations applied; `dictionary` holds tokens worth inserting.
    pub(crate) fn mutate(&mut self, seed: &[u8], dictionary: &[&[u8]]) -> Vec<u8> {
        let mut b = seed.to_vec();
        let rounds = 1 + self.below(8);
        for _ in 0..rounds {
            let at = self.below(b.len() + 1);
            match self.below(7) {
                0 if !b.is_empty() => {
                    let i = at.min(b.len() - 1);
                    b[i] ^= 1 << self.below(8);
                }
                1 if !b.is_empty() => {
                    let i = at.min(b.len() - 1);
                    b[i] = [0x00, 0xff, 0x7f, 0x80, b'0', b'9'][self.below(6)];
                }
                2 if !dictionary.is_empty() => {
                    let t = dictionary[self.below(dictionary.len())];
                    b.splice(at..at, t.iter().copied());
                }
                3 if !b.is_empty() => {
                    let end = (at + 1 + self.below(16)).min(b.len());
                    b.drain(at.min(end)..end);
                }
                4 if !b.is_empty() => {
                    let start = self.below(b.len());
                    let end = (start + 1 + self.below(64)).min(b.len());
                    let chunk = b[start..end].to_vec();
                    b.splice(at..at, chunk);
                }
                5 => b.truncate(at),
                _ => {
                    let n = self.below(4) + 1;
                    let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                    b.splice(at..at, bytes);
                }
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::Mutator;
    use sf3d::preprocess::{DecodeLimits, decode_image};

    fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), format).unwrap_or_else(|e| panic!("{e}"));
        out
    }

    /// Mutated PNG, JPEG and WebP uploads never panic and never decode beyond the pixel budget.
    /// `SF3D_FUZZ_CASES` sets the number of inputs (a long campaign); the suite runs a short one.
    #[test]
    fn fuzz_the_image_decoder() {
        let cases: u64 = std::env::var("SF3D_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let img = image::RgbaImage::from_fn(48, 40, |x, y| image::Rgba([x as u8 * 5, y as u8 * 6, 90, (x * y) as u8]));
        let rgba = image::DynamicImage::ImageRgba8(img);
        let seeds = [
            encode(rgba.clone(), image::ImageFormat::Png),
            encode(image::DynamicImage::ImageRgb8(rgba.to_rgb8()), image::ImageFormat::Jpeg),
            encode(rgba, image::ImageFormat::WebP),
        ];
        let limits = DecodeLimits { max_bytes: 1 << 20, max_pixels: 1 << 20 };
        let mut fuzz = Mutator::new(0x1a6e);
        let (mut decoded, mut refused) = (0u64, 0u64);
        for _ in 0..cases {
            let seed = &seeds[fuzz.below(seeds.len())];
            let bytes = fuzz.mutate(seed, &[b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"IHDR", b"IDAT", b"\xff\xd8"]);
            match decode_image(&bytes, &limits) {
                Ok(img) => {
                    assert!(u64::from(img.width()) * u64::from(img.height()) <= limits.max_pixels);
                    decoded += 1;
                }
                Err(_) => refused += 1,
            }
        }
        eprintln!("image decoder: {cases} inputs, {decoded} decoded, {refused} refused, no panic");
    }
}
