//! Intel AMX (Advanced Matrix Extensions) for the bf16 products: eight tile registers of 16 rows × 64 bytes and
//! `tdpbf16ps`, which adds a 16 × 32 bf16 tile times a 32 × 16 bf16 tile (stored as 16 rows of 16 bf16 pairs)
//! into a 16 × 16 f32 tile in one instruction — several times the multiply-adds per cycle of `vdpbf16ps`, with
//! the same arithmetic: products of bf16 pairs summed in f32.
//!
//! The operands are rows of bf16 pairs: the left-hand rows hold pairs along the sum's axis (an AMX "A" tile is
//! 16 such rows, 16 pairs each) and the right-hand rows are pairs of consecutive rows of the right-hand matrix,
//! interleaved column by column (a "B" tile is 16 such rows of 16 columns) — the layouts [`super::bf16`] and
//! [`super::attention`] already build for `vdpbf16ps`. [`Tiles::product`] runs a 32 × 32 block as a 2 × 2 grid of
//! f32 tiles: two A and two B tiles per step of 16 pairs, four `tdpbf16ps`.
//!
//! Tiles are usable once Linux has granted the process the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`,
//! asked once) and a thread has loaded a tile configuration ([`Tiles::load`], released on drop). The
//! instructions are written as inline assembly because Rust's AMX intrinsics are not stable.
//! `SF3D_CPU_AMX=off` (or `0`, `false`) keeps the engine on the AVX-512 BF16 kernels (to compare the two).
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// Rows and columns of a product block (two tiles each way).
pub const BLOCK: usize = 32;
/// bf16 pairs of `k` per tile step (one 64-byte tile row).
pub const STEP: usize = 16;

/// Whether AMX tiles with bf16 products can run here: the CPU has AMX-TILE and AMX-BF16, Linux granted the
/// tile state to this process, and `SF3D_CPU_AMX` is not `off`. Decided once per process.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let off = std::env::var("SF3D_CPU_AMX")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "off" | "0" | "false"));
        !off && detect()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    /// `arch_prctl` request for permission to use an extended state component.
    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    /// The XSAVE state component of the tile registers' data.
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;
    let amx = (1 << 22) | (1 << 24); // AMX-BF16, AMX-TILE
    // Leaf 7 is read only when leaf 0 reports it.
    let bits = __cpuid_count(0, 0).eax >= 7 && __cpuid_count(7, 0).edx & amx == amx;
    // SAFETY: `arch_prctl` with this request only changes the process's permitted XSAVE state; it returns 0 on
    // success and -1 (kernels without AMX support, a denied request) otherwise.
    bits && unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// The calling thread's tile configuration, loaded by [`Tiles::load`] and released when the last `Tiles` of the
/// thread is dropped (so a nested user cannot release an outer one's tiles). Not `Send`: tile registers belong
/// to the thread that configured them.
pub(crate) struct Tiles {
    _thread: std::marker::PhantomData<*const ()>,
}

/// `ldtilecfg`'s 64-byte operand: palette 1, tiles 0–7 each 16 rows of 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn full() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = 16;
        }
        Self(c)
    }
}

impl Tiles {
    /// Configures this thread's tiles, or `None` where [`available`] is false.
    pub(crate) fn load() -> Option<Self> {
        if !available() {
            return None;
        }
        if HOLDERS.with(|h| h.replace(h.get() + 1)) == 0 {
            let config = Config::full();
            // SAFETY: AMX-TILE is present and the process holds the tile state (`available`); the operand is a
            // valid palette-1 configuration in 64 readable bytes.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                std::arch::asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
            }
        }
        Some(Self { _thread: std::marker::PhantomData })
    }

    /// `c[i][j] (+)= Σ_p dot(a[i][p], b[p][j])` for a 32 × 32 block, `p < pairs`: row `i` of `a` starts at
    /// `a[i · a_stride]`, row `p` of `b` at `b[p · b_stride]`, row `i` of `c` at `c[i · c_stride]`, and `dot` is the
    /// two bf16 products of a pair summed in f32. `accumulate` adds to `c`; otherwise `c` is overwritten.
    /// Panics if `pairs` is not a multiple of [`STEP`] or a slice is shorter than the block needs.
    #[allow(clippy::too_many_arguments)] // three strided operands
    pub(crate) fn product(
        &self,
        c: &mut [f32],
        c_stride: usize,
        a: &[u32],
        a_stride: usize,
        b: &[u32],
        b_stride: usize,
        pairs: usize,
        accumulate: bool,
    ) {
        assert!(pairs.is_multiple_of(STEP), "amx product: {pairs} pairs is not a whole number of steps");
        // The last element each operand's block reaches, counted in its own elements (overflow fails the check).
        let reach = |rows: usize, stride: usize, width: usize| rows.checked_mul(stride)?.checked_add(width);
        let fits = |len: usize, end: Option<usize>| end.is_some_and(|end| end <= len);
        let strides_ok = [c_stride, a_stride, b_stride].iter().all(|&s| s < usize::MAX / 64);
        assert!(strides_ok && c_stride >= BLOCK, "amx product: stride out of range");
        assert!(fits(c.len(), reach(BLOCK - 1, c_stride, BLOCK)), "amx product: output too short");
        if pairs > 0 {
            assert!(fits(a.len(), reach(BLOCK - 1, a_stride, pairs)), "amx product: input rows too short");
            assert!(fits(b.len(), reach(pairs - 1, b_stride, BLOCK)), "amx product: right-hand rows too short");
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: tiles are configured on this thread (`self` exists); every tile load and store stays inside the
        // slices by the assertions above: c rows 0..32 × 32 floats, a rows 0..32 × `pairs` pairs, b `pairs` rows ×
        // 32 pairs.
        unsafe {
            let strides = [c_stride * 4, a_stride * 4, b_stride * 4];
            block(c.as_mut_ptr(), a.as_ptr(), b.as_ptr(), strides, pairs, accumulate)
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        if HOLDERS.with(|h| h.replace(h.get() - 1)) == 1 {
            // SAFETY: tiles were configured by `load` on this thread and no other `Tiles` of it is left; releasing
            // them returns the thread to the initial tile state.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                std::arch::asm!("tilerelease", options(nostack, nomem));
            }
        }
    }
}

thread_local! {
    /// Live [`Tiles`] on this thread: the configuration is loaded by the first and released by the last.
    static HOLDERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The 2 × 2 tile grid of [`Tiles::product`] on raw pointers and byte strides `[c, a, b]`. tmm0–3 hold the f32
/// block (rows 0–15 | 16–31 × columns 0–15 | 16–31), tmm4–5 the two row halves of `a`, tmm6–7 the two column
/// halves of `b`.
///
/// # Safety
/// Tiles configured by [`Tiles::load`] on this thread, and every address the block touches readable (`c` also
/// writable): see [`Tiles::product`].
#[cfg(target_arch = "x86_64")]
unsafe fn block(c: *mut f32, a: *const u32, b: *const u32, [cs, as_, bs]: [usize; 3], pairs: usize, accumulate: bool) {
    use std::arch::asm;
    // SAFETY (all statements below): the caller's contract; each touches only tile registers and the memory its
    // operands address.
    unsafe {
        let (c0, c1) = (c, c.byte_add(16 * cs));
        if accumulate {
            asm!("tileloadd tmm0, [{p} + {s} * 1]", p = in(reg) c0, s = in(reg) cs, options(nostack, readonly));
            asm!("tileloadd tmm1, [{p} + {s} * 1]", p = in(reg) c0.add(16), s = in(reg) cs, options(nostack, readonly));
            asm!("tileloadd tmm2, [{p} + {s} * 1]", p = in(reg) c1, s = in(reg) cs, options(nostack, readonly));
            asm!("tileloadd tmm3, [{p} + {s} * 1]", p = in(reg) c1.add(16), s = in(reg) cs, options(nostack, readonly));
        } else {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        }
        for p in (0..pairs).step_by(STEP) {
            let (a0, a1) = (a.add(p), a.add(p).byte_add(16 * as_));
            let (b0, b1) = (b.byte_add(p * bs), b.byte_add(p * bs).add(16));
            asm!(
                "tileloadd tmm4, [{a0} + {as_} * 1]",
                "tileloadd tmm6, [{b0} + {bs} * 1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {bs} * 1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {as_} * 1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a0, a1 = in(reg) a1, as_ = in(reg) as_,
                b0 = in(reg) b0, b1 = in(reg) b1, bs = in(reg) bs,
                options(nostack, readonly),
            );
        }
        asm!("tilestored [{p} + {s} * 1], tmm0", p = in(reg) c0, s = in(reg) cs, options(nostack));
        asm!("tilestored [{p} + {s} * 1], tmm1", p = in(reg) c0.add(16), s = in(reg) cs, options(nostack));
        asm!("tilestored [{p} + {s} * 1], tmm2", p = in(reg) c1, s = in(reg) cs, options(nostack));
        asm!("tilestored [{p} + {s} * 1], tmm3", p = in(reg) c1.add(16), s = in(reg) cs, options(nostack));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_load_keeps_the_outer_tiles() {
        let Some(outer) = Tiles::load() else {
            eprintln!("SKIPPED: no AMX tiles on this machine");
            return;
        };
        drop(Tiles::load());
        // Still configured: a product runs (a released configuration would fault here).
        let (a, b) = (vec![0x3f80_3f80u32; BLOCK * STEP], vec![0x3f80_3f80u32; STEP * BLOCK]);
        let mut c = vec![0f32; BLOCK * BLOCK];
        outer.product(&mut c, BLOCK, &a, STEP, &b, BLOCK, STEP, false);
        assert!(c.iter().all(|&x| x == 32.0), "16 pairs of 1·1 + 1·1");
    }

    #[test]
    #[should_panic(expected = "input rows too short")]
    fn a_stride_that_overflows_is_refused() {
        let Some(tiles) = Tiles::load() else { panic!("input rows too short (SKIPPED: no AMX tiles)") };
        let (a, b) = (vec![0u32; 64], vec![0u32; STEP * BLOCK]);
        let mut c = vec![0f32; BLOCK * BLOCK];
        tiles.product(&mut c, BLOCK, &a, usize::MAX / 64 - 1, &b, BLOCK, STEP, false);
    }

    #[test]
    fn a_block_equals_the_sum_of_pair_products() {
        let Some(tiles) = Tiles::load() else {
            eprintln!("SKIPPED: no AMX tiles on this machine (AMX-TILE + AMX-BF16 and Linux's permission)");
            return;
        };
        let bf = |x: f32| x.to_bits() >> 16;
        let val = |i: usize, m: usize| ((i * 37 % m) as f32 - (m / 2) as f32) * 0.125;
        for pairs in [0usize, 16, 48] {
            let (a_stride, c_stride) = (pairs + 5, BLOCK + 7);
            let a: Vec<u32> = (0..BLOCK * a_stride).map(|i| bf(val(i, 29)) | bf(val(i + 3, 23)) << 16).collect();
            let b: Vec<u32> = (0..pairs * BLOCK).map(|i| bf(val(i, 31)) | bf(val(i + 7, 19)) << 16).collect();
            let start: Vec<f32> = (0..BLOCK * c_stride).map(|i| i as f32).collect();
            let mut c = start.clone();
            tiles.product(&mut c, c_stride, &a, a_stride, &b, BLOCK, pairs, true);
            let mut fresh = start.clone();
            tiles.product(&mut fresh, c_stride, &a, a_stride, &b, BLOCK, pairs, false);
            let half = |x: u32, hi: bool| f32::from_bits(if hi { x & 0xffff_0000 } else { x << 16 });
            for i in 0..BLOCK {
                for j in 0..c_stride {
                    let mut sum = 0f32;
                    for p in 0..pairs {
                        let (x, y) = (a[i * a_stride + p], b[p * BLOCK + j.min(BLOCK - 1)]);
                        sum += half(x, false) * half(y, false) + half(x, true) * half(y, true);
                    }
                    // Every product and partial sum is exact in f32 with these small multiples of 1/64; columns
                    // past the block are untouched.
                    let (start, inside) = (start[i * c_stride + j], j < BLOCK);
                    assert_eq!(
                        c[i * c_stride + j],
                        if inside { start + sum } else { start },
                        "pairs {pairs}, c[{i}][{j}]"
                    );
                    assert_eq!(fresh[i * c_stride + j], if inside { sum } else { start }, "overwrite, c[{i}][{j}]");
                }
            }
        }
    }
}
