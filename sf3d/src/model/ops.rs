//! Element-wise kernels the transformer stacks spend real time in, with a parallel CPU path.
//!
//! candle's CPU element-wise ops run on one thread; GELU over the backbone's `27,648 × 4,096` GEGLU hidden state
//! is ~10⁸ `erf` calls per feed-forward. On a contiguous f32 CPU tensor these kernels run on the rayon pool, with
//! exactly candle's formula (`(erf(x/√2) + 1)·x/2` through `candle_core::cpu::erf::erf_f32`), so results are
//! bit-identical to the tensor ops used on every other device or dtype.

use candle_core::{D, DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

/// Elements per parallel task.
const PAR_CHUNK: usize = 1 << 14;

#[inline]
fn gelu(v: f32) -> f32 {
    (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * v
}

/// Runs `f` on the contiguous f32 data of `t` when it lives on the CPU.
fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<Option<R>> {
    if !t.device().is_cpu() || t.dtype() != DType::F32 || !t.is_contiguous() {
        return Ok(None);
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return Ok(None) };
    let data = cpu.as_slice::<f32>()?;
    let start = layout.start_offset();
    Ok(Some(f(&data[start..start + t.elem_count()])))
}

/// Exact (erf) GELU.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    let out = with_cpu_f32(x, |src| {
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(PAR_CHUNK).zip(src.par_chunks(PAR_CHUNK)).for_each(|(o, s)| {
            for (o, &v) in o.iter_mut().zip(s) {
                *o = gelu(v);
            }
        });
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
        out.par_chunks_mut(inner).zip(src.par_chunks(width)).for_each(|(o, row)| {
            let (value, gate) = row.split_at(inner);
            for ((o, &v), &g) in o.iter_mut().zip(value).zip(gate) {
                *o = v * gelu(g);
            }
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

    /// The parallel CPU kernels equal candle's own ops bit for bit.
    #[test]
    fn kernels_match_candle_exactly() {
        let x = Tensor::randn(0f32, 2.0, (37, 20), &Device::Cpu).unwrap();
        let a: Vec<f32> = gelu_erf(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = x.gelu_erf().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        let g: Vec<f32> = geglu(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want = (x.narrow(1, 0, 10).unwrap() * x.narrow(1, 10, 10).unwrap().gelu_erf().unwrap()).unwrap();
        assert_eq!(g, want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        // A non-contiguous view takes the tensor path and still agrees.
        let t = x.t().unwrap();
        assert_eq!(gelu_erf(&t).unwrap().dims(), &[20, 37]);
    }
}
