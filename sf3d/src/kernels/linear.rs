//! `y = x·W + b` for row-major `x [M, K]` and a weight stored transposed from PyTorch's layout, `W [K, N]`
//! (the layout the matrix kernel packs fastest): the output starts as the bias rows and the product accumulates
//! into it, so the bias costs no extra pass over the output.

use rayon::prelude::*;

use super::gemm::{MatRef, sgemm};

/// `x [rows, k] · weight_t [k, n] + bias [n]` → `[rows, n]`.
/// Panics if a slice disagrees with the dimensions (the caller takes them from the tensors' shapes).
pub fn linear(x: &[f32], k: usize, weight_t: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    assert!(k > 0 && x.len().is_multiple_of(k), "linear: input rows are not {k} wide");
    assert_eq!(weight_t.len(), n * k, "linear: weight does not match its dimensions");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "linear: bias does not match its dimensions");
    }
    let rows = x.len() / k;
    let threads = rayon::current_num_threads();
    if (1..FEW_ROWS).contains(&rows) && threads > 1 && n >= threads * MIN_BAND_COLS {
        return by_column_bands(x, rows, k, weight_t, n, bias, threads);
    }
    let mut out = vec![0f32; rows * n];
    // One contiguous band of rows per thread, each a single-threaded product: as fast as the gemm crate's own
    // parallel product on tens of thousands of rows, and faster on the few thousand of DINOv2 and the latents,
    // where its splitting leaves the cores less busy.
    let band = rows.div_ceil(threads).max(1);
    let w = MatRef::rows(weight_t, k, n, n);
    out.par_chunks_mut(band * n).zip(x.par_chunks(band * k)).for_each(|(dst, src)| {
        start_with_bias(dst, n, bias);
        sgemm(dst, n, bias.is_some(), MatRef::rows(src, src.len() / k, k, k), w, 1.0);
    });
    out
}

/// Rows below which [`linear`] splits the output's columns between the threads instead of its rows: with a few
/// rows (CLIP's 50 tokens, a single condition vector) the product is bound by reading the weight, and a band of
/// rows per thread would make every thread pack the whole weight.
const FEW_ROWS: usize = 256;
/// Fewest output columns per thread when the columns are split (a few of the matrix kernel's register tiles).
const MIN_BAND_COLS: usize = 64;

/// [`linear`] with one band of output columns per thread: each thread reads only its columns of the weight and
/// writes them to its own `[rows, band]` block, which is then copied into the output rows.
fn by_column_bands(
    x: &[f32],
    rows: usize,
    k: usize,
    weight_t: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    threads: usize,
) -> Vec<f32> {
    // Bands a multiple of 16 columns wide (whole vectors), the last one narrower.
    let band = n.div_ceil(threads).next_multiple_of(16);
    let lhs = MatRef::rows(x, rows, k, k);
    let blocks: Vec<(usize, Vec<f32>)> = (0..n)
        .step_by(band)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|c0| {
            let width = band.min(n - c0);
            let mut dst = vec![0f32; rows * width];
            start_with_bias(&mut dst, width, bias.map(|b| &b[c0..c0 + width]));
            let w = MatRef::rows(&weight_t[c0..], k, width, n);
            sgemm(&mut dst, width, bias.is_some(), lhs, w, 1.0);
            (c0, dst)
        })
        .collect();
    let mut out = vec![0f32; rows * n];
    for (c0, block) in blocks {
        let width = block.len() / rows;
        for (dst, src) in out.chunks_exact_mut(n).zip(block.chunks_exact(width)) {
            dst[c0..c0 + width].copy_from_slice(src);
        }
    }
    out
}

/// Fills every `n`-wide row of `dst` with `bias` (the product then accumulates onto it); nothing without a bias.
fn start_with_bias(dst: &mut [f32], n: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in dst.chunks_exact_mut(n) {
            row.copy_from_slice(b);
        }
    }
}

/// The transpose of a row-major `[rows, cols]` matrix, `[cols, rows]`, in cache-sized tiles on every thread.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut dst = vec![0f32; src.len()];
    transpose_into(src, rows, cols, &mut dst);
    dst
}

/// [`transpose`] into `dst` (`rows · cols` long).
pub fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert_eq!(src.len(), rows * cols, "transpose: length does not match the dimensions");
    assert_eq!(dst.len(), src.len(), "transpose: destination does not match the dimensions");
    /// Most rows of the destination per task; a task reads a strip of at most `TILE` columns of the source.
    const TILE: usize = 64;
    /// Fewest columns per strip: one cache line of the source per row.
    const MIN_STRIP: usize = 16;
    if dst.is_empty() {
        return;
    }
    // Narrower strips when `cols` is small, so that a tall, narrow matrix (an image's pixels × channels) still
    // keeps every thread busy.
    let strip_cols = cols.div_ceil(rayon::current_num_threads()).clamp(MIN_STRIP, TILE);
    dst.par_chunks_mut(strip_cols * rows).enumerate().for_each(|(t, strip)| {
        let c0 = t * strip_cols;
        let width = strip.len() / rows;
        for r0 in (0..rows).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in 0..width {
                    strip[c * rows + r] = src[r * cols + c0 + c];
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_the_direct_sum() {
        // Few narrow rows (split by rows), and few wide rows on three threads (split by columns: bands of 336,
        // 336 and 328 columns).
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("a thread pool");
        for (rows, k, n) in [(5, 7, 3), (3, 9, 1000), (300, 9, 1000), (0, 9, 1000)] {
            pool.install(|| equals_the_direct_sum_at(rows, k, n));
        }
    }

    fn equals_the_direct_sum_at(rows: usize, k: usize, n: usize) {
        let x: Vec<f32> = (0..rows * k).map(|i| (i % 11) as f32 * 0.3 - 1.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.2 - 0.4).collect(); // [n, k]
        let wt = transpose(&w, n, k);
        let b: Vec<f32> = (0..n).map(|j| [0.5f32, -1.0, 2.0][j % 3] + j as f32 * 1e-3).collect();
        for bias in [Some(&b[..]), None] {
            let y = linear(&x, k, &wt, n, bias);
            for r in 0..rows {
                for j in 0..n {
                    let want: f32 =
                        (0..k).map(|c| x[r * k + c] * w[j * k + c]).sum::<f32>() + bias.map_or(0.0, |b| b[j]);
                    assert!((y[r * n + j] - want).abs() < 1e-5, "{rows}×{k}·{k}×{n} at ({r}, {j})");
                }
            }
        }
    }

    #[test]
    fn transpose_of_ragged_tiles() {
        // Wide, and tall-and-narrow (pixels × channels: strips narrower than a tile).
        for (rows, cols) in [(70, 131), (700, 5), (300, 40)] {
            let m: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let t = transpose(&m, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], m[r * cols + c]);
                }
            }
        }
        assert!(transpose(&[], 0, 5).is_empty());
    }
}
