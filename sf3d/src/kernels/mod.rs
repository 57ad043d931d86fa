//! CPU kernels for the network's hot spots, used by `model` when tensors are contiguous f32 on the CPU (other
//! devices and dtypes take candle's tensor ops). Each has a test against a direct computation.
//!
//! | kernel | what |
//! |---|---|
//! | [`amx`] | Intel AMX tiles: 32 × 32 blocks of bf16 products summed in f32, for [`bf16`] where the CPU has them |
//! | [`bf16`] | `x·W + b` with bf16 operands and f32 sums (AVX-512 BF16 where the CPU has it), for `--dtype bf16` |
//! | [`attention`] | fused multi-head attention on token-major `[B, N, heads·D]` data, blocked online softmax |
//! | [`conv`] | same-padded `k×k` convolution as `k` products (one per kernel row) on a bordered channel-last image |
//! | [`linear`] | `x·W + b` on a pre-transposed weight, the bias as the product's starting value |
//! | [`gemm`] | a bounds-checked single-threaded entry to the `gemm` crate, strided operands |
//! | [`winograd`] | 3×3 convolution by Winograd's F(2×2, 3×3): 16 products per 2×2 outputs and channel pair, not 36 |
//! | [`math`] | vectorisable `exp`, `erf`, GELU and the vector steps of a softmax |

pub mod amx;
pub mod attention;
pub mod bf16;
pub mod conv;
pub mod gemm;
pub mod linear;
pub mod math;
pub mod winograd;

/// The instruction set a vectorised kernel runs with: [`Isa::Best`] everywhere in the engine; the others let the
/// tests check the AVX2 and plain paths on a machine that has more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// The widest the CPU has (AVX-512, else AVX2 + FMA, else scalar), detected at run time.
    Best,
    /// AVX2 + FMA where the CPU has them, else scalar.
    Avx2,
    /// No SIMD.
    Scalar,
}

impl Isa {
    /// The levels a test should cover.
    pub const ALL: [Isa; 3] = [Isa::Best, Isa::Avx2, Isa::Scalar];
}

/// Runs `op` compiled for `isa` (its `#[inline(always)]` body and everything it inlines).
pub(crate) fn run<Op: pulp::WithSimd>(isa: Isa, op: Op) -> Op::Output {
    use pulp::Simd;
    match isa {
        Isa::Best => pulp::Arch::new().dispatch(op),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => match pulp::x86::V3::try_new() {
            Some(simd) => <pulp::x86::V3 as Simd>::vectorize(simd, op),
            None => <pulp::Scalar as Simd>::vectorize(pulp::Scalar::new(), op),
        },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 => <pulp::Scalar as Simd>::vectorize(pulp::Scalar::new(), op),
        Isa::Scalar => <pulp::Scalar as Simd>::vectorize(pulp::Scalar::new(), op),
    }
}
