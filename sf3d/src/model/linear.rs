//! `Linear` as in `candle_nn` (same keys, same result) with a CPU fast path: when the weight is CPU f32 it is
//! kept transposed, `[in, out]`, the layout the matrix kernel packs fastest, and the forward goes through
//! [`crate::kernels::linear`] (bias folded into the product). Layers built inside [`with_bf16_products`] keep the
//! weight in bf16 instead and multiply through [`crate::kernels::bf16`]. Other devices and dtypes keep candle's
//! layer.

use std::cell::Cell;
use std::sync::Arc;

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
    /// CPU, bf16 products on f32 activations.
    CpuBf16 { weight: Arc<crate::kernels::bf16::Bf16Weight>, bias: Option<Tensor> },
    /// Anything else: candle's layer.
    Candle(candle_nn::Linear),
}

thread_local! {
    /// Set while [`with_bf16_products`] builds layers on this thread.
    static BF16_PRODUCTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` so that every CPU f32 linear layer it creates on this thread multiplies in bf16 (inputs and
/// weights rounded to bf16, sums in f32).
pub fn with_bf16_products<T>(build: impl FnOnce() -> T) -> T {
    with_products(true, build)
}

/// Runs `build` so that the layers it creates multiply in f32 even inside [`with_bf16_products`]: for a part
/// whose cost is small and whose outputs keep f32 tolerances (the material estimator's CLIP).
pub fn with_f32_products<T>(build: impl FnOnce() -> T) -> T {
    with_products(false, build)
}

fn with_products<T>(bf16: bool, build: impl FnOnce() -> T) -> T {
    let before = BF16_PRODUCTS.with(|f| f.replace(bf16));
    let out = build();
    BF16_PRODUCTS.with(|f| f.set(before));
    out
}

/// Whether layers built now on this thread use bf16 products (inside [`with_bf16_products`]).
pub fn bf16_products() -> bool {
    BF16_PRODUCTS.with(Cell::get)
}

/// A linear layer with a bias (`candle_nn::linear`).
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder<'_>) -> Result<Linear> {
    Linear::from_candle(candle_nn::linear(in_dim, out_dim, vb)?)
}

/// A linear layer with or without a bias (`candle_nn::linear_b`).
pub fn linear_b(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder<'_>) -> Result<Linear> {
    Linear::from_candle(candle_nn::linear_b(in_dim, out_dim, bias, vb)?)
}

/// A linear layer from a weight `[out, in]` and optional bias `[out]` loaded under other names (open_clip's
/// fused `in_proj_weight` / `in_proj_bias`).
pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
    Linear::from_candle(candle_nn::Linear::new(weight, bias))
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
        if bf16_products() {
            let weight = Arc::new(crate::kernels::bf16::Bf16Weight::new(&t, in_dim, out_dim));
            return Ok(Self { repr: Repr::CpuBf16 { weight, bias: layer.bias().cloned() } });
        }
        let weight_t = Tensor::from_vec(t, (in_dim, out_dim), &Device::Cpu)?;
        Ok(Self { repr: Repr::Cpu { weight_t, bias: layer.bias().cloned() } })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight_t, bias) = match &self.repr {
            Repr::Candle(layer) => return layer.forward(x),
            Repr::CpuBf16 { weight, bias } => return forward_bf16(weight, bias.as_ref(), x),
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
                return rows_of(&x, n, out);
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

/// The bf16 layer's forward: the kernel on contiguous CPU f32 input, a clear error otherwise.
fn forward_bf16(weight: &crate::kernels::bf16::Bf16Weight, bias: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
    let (k, n) = (weight.k(), weight.n());
    if !x.device().is_cpu() || x.dtype() != DType::F32 || x.dim(D::Minus1)? != k {
        candle_core::bail!(
            "bf16 linear layer: expected CPU f32 input of width {k}, got {:?} {:?} {:?}",
            x.device().location(),
            x.dtype(),
            x.dims()
        );
    }
    let x = x.contiguous()?;
    let mut tensors = vec![&x];
    tensors.extend(bias);
    let out = with_cpu_f32_all(&tensors, |s| crate::kernels::bf16::linear(s[0], weight, s.get(1).copied()))?;
    let Some(out) = out else { candle_core::bail!("bf16 linear layer: input is not contiguous CPU f32") };
    rows_of(&x, n, out)
}

/// A kernel's output rows as a CPU tensor shaped like `x` with the last dimension `n`.
fn rows_of(x: &Tensor, n: usize, out: Vec<f32>) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Tensor::from_vec(out, dims, &Device::Cpu)
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

    #[test]
    fn bf16_products_equal_candle_on_rounded_operands() {
        let round = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
        let vb = crate::weights::WeightSource::random(5).into_var_builder(DType::F32, &Device::Cpu);
        let ours = with_bf16_products(|| linear(48, 40, vb.pp("l"))).unwrap();
        assert!(matches!(ours.repr, Repr::CpuBf16 { .. }));
        // Outside the scope, layers are f32 again.
        let vb = crate::weights::WeightSource::random(5).into_var_builder(DType::F32, &Device::Cpu);
        assert!(matches!(linear(48, 40, vb.pp("l")).unwrap().repr, Repr::Cpu { .. }));
        let vb = crate::weights::WeightSource::random(5).into_var_builder(DType::F32, &Device::Cpu);
        let theirs = candle_nn::linear(48, 40, vb.pp("l")).unwrap();
        let rounded = candle_nn::Linear::new(round(theirs.weight()), theirs.bias().cloned());
        let x = Tensor::randn(0f32, 1.0, (3, 7, 48), &Device::Cpu).unwrap();
        let want = rounded.forward(&round(&x)).unwrap();
        let got = ours.forward(&x).unwrap();
        let d = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
        assert!(ours.forward(&x.to_dtype(DType::F64).unwrap()).is_err());
    }
}
