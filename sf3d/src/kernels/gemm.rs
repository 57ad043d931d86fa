//! A bounds-checked, single-threaded entry to the `gemm` crate (the matrix kernels candle's CPU matmul uses), for
//! kernels that split their work over rayon tasks themselves (bands of rows, blocks of queries).
//!
//! Matrices are described by a slice, a row stride and a column stride (in elements), so a head's columns inside
//! a token-major `[N, heads·D]` tensor, or a transposed view, are passed without copying.

use gemm::Parallelism;

/// A read-only strided matrix: element `(r, c)` is `data[r·row_stride + c·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    /// The elements (the matrix's first element is `data[0]`).
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix whose rows are `row_stride` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self { data, rows, cols, row_stride, col_stride: 1 }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || last_index(self.rows, self.cols, self.row_stride, self.col_stride) < self.data.len()
    }
}

fn last_index(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

/// `dst = beta · lhs · rhs` (or `dst += beta · lhs · rhs` when `accumulate`), `dst` row-major `m × n` with rows
/// `dst_row_stride` apart, on the calling thread. Panics if a shape or extent does not fit its slice; the
/// callers size everything from the same dimensions, so a panic here is a bug, not bad input.
pub fn sgemm(dst: &mut [f32], dst_row_stride: usize, accumulate: bool, lhs: MatRef<'_>, rhs: MatRef<'_>, beta: f32) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "sgemm: inner dimensions differ");
    assert!(lhs.fits() && rhs.fits(), "sgemm: operand extent exceeds its slice");
    if m == 0 || n == 0 {
        return;
    }
    assert!(last_index(m, n, dst_row_stride, 1) < dst.len(), "sgemm: destination extent exceeds its slice");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_row_stride..r * dst_row_stride + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: every element `gemm` reads or writes lies inside the slices: the extents were checked above
    // (`last_index < len` for lhs, rhs and dst with these strides), strides are non-negative, and `dst` is a
    // unique borrow that aliases neither operand.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            beta,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_product_and_accumulation() {
        // lhs 2×3 inside rows of width 5, rhs = transpose of a 4×3 row-major matrix.
        let lhs: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..12).map(|i| (i as f32) * 0.5 - 2.0).collect();
        let l = MatRef::rows(&lhs, 2, 3, 5);
        let r = MatRef::rows(&b, 4, 3, 3).t();
        let mut dst = vec![1.0f32; 8];
        sgemm(&mut dst, 4, false, l, r, 2.0);
        for i in 0..2 {
            for j in 0..4 {
                let want: f32 = (0..3).map(|c| lhs[i * 5 + c] * b[j * 3 + c]).sum::<f32>() * 2.0;
                assert!((dst[i * 4 + j] - want).abs() < 1e-5, "{i},{j}");
            }
        }
        let before = dst.clone();
        sgemm(&mut dst, 4, true, l, r, 1.0);
        for (a, b) in dst.iter().zip(&before) {
            assert!((a - 1.5 * b).abs() < 1e-4);
        }
    }

    #[test]
    #[should_panic(expected = "extent")]
    fn rejects_an_operand_that_does_not_fit() {
        let a = vec![0f32; 5];
        let mut d = vec![0f32; 4];
        sgemm(&mut d, 2, false, MatRef::rows(&a, 2, 3, 3), MatRef::rows(&a, 3, 2, 2), 1.0);
    }
}
