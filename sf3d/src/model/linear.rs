//! `Linear` as in `candle_nn` (same keys, same result) with a CPU fast path: when the weight is CPU f32 it is
//! kept transposed, `[in, out]`, the layout the matrix kernel packs fastest, and the forward goes through
//! [`crate::kernels::linear`] (bias folded into the product). Other devices and dtypes keep candle's layer.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::ops::with_cpu_f32_all;

/// A fully connected layer: `y = x·Wᵀ + b` with PyTorch's `weight [out, in]`, optional `bias [out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    repr: Repr,
}

#[derive(Debug, Clone)]
enum Repr {
    /// CPU f32: the weight transposed, `[in, out]` contiguous.
    Cpu { weight_t: Tensor, bias: Option<Tensor> },
    /// Anything else: candle's layer.
    Candle(candle_nn::Linear),
}

/// A linear layer with a bias (`candle_nn::linear`).
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder<'_>) -> Result<Linear> {
    Linear::from_candle(candle_nn::linear(in_dim, out_dim, vb)?)
}

/// A linear layer with or without a bias (`candle_nn::linear_b`).
pub fn linear_b(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder<'_>) -> Result<Linear> {
    Linear::from_candle(candle_nn::linear_b(in_dim, out_dim, bias, vb)?)
}

impl Linear {
    fn from_candle(layer: candle_nn::Linear) -> Result<Self> {
        let w = layer.weight();
        if !w.device().is_cpu() || w.dtype() != DType::F32 {
            return Ok(Self { repr: Repr::Candle(layer) });
        }
        let (out_dim, in_dim) = w.dims2()?;
        let w = w.contiguous()?;
        let t = with_cpu_f32_all(&[&w], |s| crate::kernels::linear::transpose(s[0], out_dim, in_dim))?;
        let Some(t) = t else { return Ok(Self { repr: Repr::Candle(layer) }) };
        let weight_t = Tensor::from_vec(t, (in_dim, out_dim), &Device::Cpu)?;
        Ok(Self { repr: Repr::Cpu { weight_t, bias: layer.bias().cloned() } })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight_t, bias) = match &self.repr {
            Repr::Candle(layer) => return layer.forward(x),
            Repr::Cpu { weight_t, bias } => (weight_t, bias),
        };
        let (k, n) = weight_t.dims2()?;
        let fast = x.device().is_cpu() && x.dtype() == DType::F32 && x.dim(D::Minus1)? == k;
        if fast {
            let x = x.contiguous()?;
            let mut tensors = vec![&x, weight_t];
            tensors.extend(bias.as_ref());
            let out =
                with_cpu_f32_all(&tensors, |s| crate::kernels::linear::linear(s[0], k, s[1], n, s.get(2).copied()))?;
            if let Some(out) = out {
                let mut dims = x.dims().to_vec();
                if let Some(last) = dims.last_mut() {
                    *last = n;
                }
                return Tensor::from_vec(out, dims, &Device::Cpu);
            }
        }
        // Another dtype or a wrong width: tensor ops (which report a shape error in candle's words).
        let y = x.broadcast_matmul(&weight_t.to_dtype(x.dtype())?)?;
        match bias {
            Some(b) => y.broadcast_add(&b.to_dtype(x.dtype())?),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_path_equals_candle() {
        for bias in [true, false] {
            let vb = crate::weights::WeightSource::random(3).into_var_builder(DType::F32, &Device::Cpu);
            let ours = linear_b(24, 10, bias, vb.pp("l")).unwrap();
            let vb = crate::weights::WeightSource::random(3).into_var_builder(DType::F32, &Device::Cpu);
            let theirs = candle_nn::linear_b(24, 10, bias, vb.pp("l")).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, 5, 24), &Device::Cpu).unwrap();
            let want = theirs.forward(&x).unwrap();
            // The kernel path, a non-contiguous input, and another dtype (tensor path).
            for got in [
                ours.forward(&x).unwrap(),
                ours.forward(&x.transpose(0, 1).unwrap()).unwrap().transpose(0, 1).unwrap(),
                ours.forward(&x.to_dtype(DType::F64).unwrap()).unwrap().to_dtype(DType::F32).unwrap(),
            ] {
                assert_eq!(got.dims(), &[2, 5, 10]);
                let d = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-5, "{d}");
            }
            assert!(ours.forward(&Tensor::zeros((2, 23), DType::F32, &Device::Cpu).unwrap()).is_err());
        }
    }
}
