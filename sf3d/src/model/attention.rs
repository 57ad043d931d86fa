//! The one attention every block calls: `softmax(q·kᵀ·scale)·v`, never with the full score matrix.
//!
//! SF3D's backbone attends between 27,648 triplane tokens and 3,089 latents with 16 heads: a full score matrix
//! would be 16 × 27,648 × 3,089 floats ≈ 5.5 GB. The blocks call [`multi_head_attention`] on token-major
//! `[B, N, heads·D]` tensors. Contiguous f32 on the CPU goes to the fused kernel
//! [`crate::kernels::attention`] (query × key blocks with an online softmax, no head split copies). Every other
//! device and dtype splits the heads and runs [`attention`], which chunks the query axis: exact (each query
//! row's softmax only needs its own scores), with peak memory `batch · heads · chunk · keys` elements. That is
//! the place a fused kernel for CUDA would go.

use candle_core::{DType, Device, Result, Tensor};

use crate::kernels::attention::AttentionDims;
use crate::model::ops::with_cpu_f32_all;

/// Default budget of score-matrix elements per chunk (64 Mi elements = 256 MiB in f32).
pub const DEFAULT_MAX_SCORE_ELEMENTS: usize = 1 << 26;

/// Tunables of [`attention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionOptions {
    /// Largest number of score elements (`batch · heads · queries · keys`) materialised at once.
    pub max_score_elements: usize,
    /// On the CPU, both products in bf16 with f32 sums ([`crate::kernels::attention::attention_bf16`]);
    /// `--dtype bf16` sets it for the transformer stack.
    pub bf16_products: bool,
}

impl Default for AttentionOptions {
    fn default() -> Self {
        Self { max_score_elements: DEFAULT_MAX_SCORE_ELEMENTS, bf16_products: false }
    }
}

impl AttentionOptions {
    /// Queries per chunk for `batch_heads` (batch · heads) and `keys` keys (at least 1).
    pub fn query_chunk(&self, batch_heads: usize, keys: usize) -> usize {
        (self.max_score_elements / (batch_heads * keys).max(1)).max(1)
    }
}

/// Multi-head attention on token-major tensors: `q [B, Nq, H·D]`, `k`/`v [B, Nk, H·D]` → `[B, Nq, H·D]`,
/// `heads` heads of width `D`.
pub fn multi_head_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
    opts: &AttentionOptions,
) -> Result<Tensor> {
    let (b, nq, width) = q.dims3()?;
    let nk = k.dim(1)?;
    if width % heads != 0 || k.dims3()? != (b, nk, width) || v.dims3()? != (b, nk, width) {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} do not split into {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let dims = AttentionDims { batch: b, queries: nq, keys: nk, heads, head_dim: width / heads };
    if q.device().is_cpu() && q.dtype() == DType::F32 {
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        let out = with_cpu_f32_all(&[&q, &k, &v], |s| {
            if opts.bf16_products {
                crate::kernels::attention::attention_bf16(s[0], s[1], s[2], dims, scale as f32)
            } else {
                crate::kernels::attention::attention(s[0], s[1], s[2], dims, scale as f32)
            }
        })?;
        if let Some(out) = out {
            return Tensor::from_vec(out, (b, nq, width), &Device::Cpu);
        }
    }
    // [B, N, H·D] → [B, H, N, D] and back.
    let split = |t: &Tensor, n: usize| t.reshape((b, n, heads, dims.head_dim))?.transpose(1, 2)?.contiguous();
    let o = attention(&split(q, nq)?, &split(k, nk)?, &split(v, nk)?, scale, opts)?;
    o.transpose(1, 2)?.reshape((b, nq, width))
}

/// `softmax(q·kᵀ·scale)·v` for `q [B, H, Nq, D]`, `k`/`v [B, H, Nk, D]` → `[B, H, Nq, D]`, in query chunks
/// bounded by `opts`. The softmax is computed in the input dtype on contiguous rows (candle's fused kernel).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, opts: &AttentionOptions) -> Result<Tensor> {
    let (b, h, nq, _d) = q.dims4()?;
    let nk = k.dim(2)?;
    // Scale the queries, not the scores: `Nq·D` multiplications instead of `Nq·Nk`.
    let q = (q * scale)?;
    let kt = k.transpose(2, 3)?.contiguous()?; // [B, H, D, Nk]
    let v = v.contiguous()?;
    let chunk = opts.query_chunk(b * h, nk);
    if chunk >= nq {
        return attend(&q, &kt, &v);
    }
    let mut outs = Vec::with_capacity(nq.div_ceil(chunk));
    let mut start = 0;
    while start < nq {
        let len = chunk.min(nq - start);
        let qc = q.narrow(2, start, len)?.contiguous()?;
        outs.push(attend(&qc, &kt, &v)?);
        start += len;
    }
    Tensor::cat(&outs, 2)
}

fn attend(q: &Tensor, kt: &Tensor, v: &Tensor) -> Result<Tensor> {
    let scores = q.matmul(kt)?; // [B, H, n, Nk], queries already scaled
    let p = candle_nn::ops::softmax_last_dim(&scores)?;
    p.matmul(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn naive(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let s = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let p = candle_nn::ops::softmax(&s, 3).unwrap();
        p.matmul(v).unwrap()
    }

    /// Chunking the queries must not change the result: every row's softmax only sees its own scores.
    #[test]
    fn chunked_equals_unchunked() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (2, 3, 37, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (2, 3, 23, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (2, 3, 23, 8), &dev).unwrap();
        let want = naive(&q, &k, &v, 0.3);
        for budget in [1, 2 * 3 * 23 * 5, 1 << 20] {
            let got =
                attention(&q, &k, &v, 0.3, &AttentionOptions { max_score_elements: budget, ..Default::default() })
                    .unwrap();
            let diff = (got - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "budget {budget}: {diff}");
        }
    }

    /// The fused CPU kernel and the chunked tensor path agree on token-major input.
    #[test]
    fn fused_cpu_kernel_equals_the_tensor_path() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (2, 37, 24), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (2, 600, 24), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (2, 600, 24), &dev).unwrap();
        let opts = AttentionOptions::default();
        let fused = multi_head_attention(&q, &k, &v, 3, 0.35, &opts).unwrap();
        // The same computation through the tensor path (f64 forces it off the fused kernel).
        let as64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let tensor = multi_head_attention(&as64(&q), &as64(&k), &as64(&v), 3, 0.35, &opts).unwrap();
        let diff = (fused.to_dtype(DType::F64).unwrap() - tensor)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
        assert!(multi_head_attention(&q, &k, &v, 5, 0.35, &opts).is_err());
    }

    #[test]
    fn chunk_size_follows_the_budget() {
        let o = AttentionOptions { max_score_elements: 16 * 27_648 * 100, ..Default::default() };
        assert_eq!(o.query_chunk(16, 27_648), 100);
        assert_eq!(AttentionOptions { max_score_elements: 1, ..Default::default() }.query_chunk(16, 27_648), 1);
    }
}
