//! Element-wise kernels the transformer stacks spend real time in, with a parallel CPU path.
//!
//! candle's CPU element-wise ops run on one thread, and its `erf` is a scalar library call; GELU over the
//! backbone's `27,648 × 4,096` GEGLU hidden state is ~10⁸ `erf`s per feed-forward. On a contiguous f32 CPU
//! tensor these kernels run on the rayon pool with the vectorised [`crate::kernels::math::gelu`] (the same
//! formula, `(erf(x/√2) + 1)·x/2`, with an `erf` within 4e-7 of candle's); other devices and dtypes take candle's
//! tensor ops.

use candle_core::{D, DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

use crate::kernels::math::gelu;
use crate::kernels::{Isa, run};

/// Elements per parallel task.
const PAR_CHUNK: usize = 1 << 14;

/// Runs `f` on the contiguous f32 data of `t` when it lives on the CPU.
pub(crate) fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<Option<R>> {
    with_cpu_f32_all(&[t], |s| f(s[0]))
}

/// Runs `f` on the contiguous f32 data of every tensor of `ts` (in order) when all of them live on the CPU.
pub(crate) fn with_cpu_f32_all<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> Result<Option<R>> {
    if ts.iter().any(|t| !t.device().is_cpu() || t.dtype() != DType::F32 || !t.is_contiguous()) {
        return Ok(None);
    }
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for ((storage, layout), t) in guards.iter().zip(ts) {
        let Storage::Cpu(cpu) = &**storage else { return Ok(None) };
        let data = cpu.as_slice::<f32>()?;
        let start = layout.start_offset();
        slices.push(&data[start..start + t.elem_count()]);
    }
    Ok(Some(f(&slices)))
}

/// `out = GELU(x)`, or `value · GELU(x)` when `gate` holds the values, compiled for the CPU's widest vectors.
struct Gelu<'a> {
    out: &'a mut [f32],
    x: &'a [f32],
    gate: Option<&'a [f32]>,
}

impl pulp::WithSimd for Gelu<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        match self.gate {
            None => {
                for (o, &v) in self.out.iter_mut().zip(self.x) {
                    *o = gelu(v);
                }
            }
            Some(values) => {
                for ((o, &v), &g) in self.out.iter_mut().zip(values).zip(self.x) {
                    *o = v * gelu(g);
                }
            }
        }
    }
}

/// Exact (erf) GELU.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    let out = with_cpu_f32(x, |src| {
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(PAR_CHUNK)
            .zip(src.par_chunks(PAR_CHUNK))
            .for_each(|(out, x)| run(Isa::Best, Gelu { out, x, gate: None }));
        out
    })?;
    match out {
        Some(v) => Tensor::from_vec(v, x.shape(), &Device::Cpu),
        None => x.gelu_erf(),
    }
}

/// GEGLU: the last axis holds `[value | gate]`; returns `value · GELU(gate)` (half the width).
pub fn geglu(u: &Tensor) -> Result<Tensor> {
    let width = u.dim(D::Minus1)?;
    let inner = width / 2;
    let out = with_cpu_f32(u, |src| {
        let mut out = vec![0f32; src.len() / 2];
        out.par_chunks_mut(inner).zip(src.par_chunks(width)).for_each(|(out, row)| {
            let (value, gate) = row.split_at(inner);
            run(Isa::Best, Gelu { out, x: gate, gate: Some(value) })
        });
        out
    })?;
    match out {
        Some(v) => {
            let mut dims = u.dims().to_vec();
            if let Some(last) = dims.last_mut() {
                *last = inner;
            }
            Tensor::from_vec(v, dims, &Device::Cpu)
        }
        None => u.narrow(D::Minus1, 0, inner)? * u.narrow(D::Minus1, inner, inner)?.gelu_erf()?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// The parallel CPU kernels agree with candle's own ops (same formula, erf within 4e-7).
    #[test]
    fn kernels_match_candle() {
        let x = Tensor::randn(0f32, 2.0, (37, 20), &Device::Cpu).unwrap();
        assert!(max_abs_diff(&gelu_erf(&x).unwrap(), &x.gelu_erf().unwrap()) < 2e-6);
        let want = (x.narrow(1, 0, 10).unwrap() * x.narrow(1, 10, 10).unwrap().gelu_erf().unwrap()).unwrap();
        assert!(max_abs_diff(&geglu(&x).unwrap(), &want) < 2e-5);
        // A non-contiguous view takes the tensor path and still agrees.
        let t = x.t().unwrap();
        assert_eq!(gelu_erf(&t).unwrap().dims(), &[20, 37]);
    }
}
