//! Fused multi-head attention on the CPU: `softmax(q·kᵀ·scale)·v` per head, in query blocks × key blocks with a
//! running row maximum and sum (the "online softmax" of flash attention), so a score block of
//! [`QUERY_BLOCK`] × [`KEY_BLOCK`] floats is the most that ever exists and it stays in the core's cache.
//!
//! Tensors are token-major, `[B, N, heads·D]`, exactly as the q/k/v projections produce them; the work is split
//! over query blocks (each task owns its output rows for all heads). Both products of a block are register tiles
//! (6 keys or 6 output columns × 64 queries of accumulators with 16-lane vectors, × 16 queries with 8-lane ones so
//! that the tile stays in the 16 AVX2 registers) that read only contiguous rows: keys and values are
//! laid out per head and block once per call, a block's queries per head as `[D, 64]`, and scores and the running
//! output are kept query-minor (`[keys, 64]`, `[D, 64]`), which also makes every softmax step a vector operation
//! across the block's queries.
//!
//! [`attention_bf16`] runs the same blocks with both products on bf16 pairs (`vdpbf16ps`, two multiply-adds per
//! f32 lane): keys and values are converted once per call, the scaled queries once per head, and each block's
//! softmax weights once per block; the online softmax itself stays f32.

use rayon::prelude::*;

use super::{Isa, amx, bf16, math, run};

#[cfg(target_arch = "x86_64")]
mod softmax_avx512;

/// Queries per score block (the vector lanes of every query-minor row).
pub const QUERY_BLOCK: usize = 64;
/// Query blocks per task when the keys outgrow the core's cache: each key/value block fetched from memory is
/// then used by this many query blocks.
const BLOCKS_PER_TASK_LONG: usize = 2;
/// Keys above which a head's keys and values (`keys · D · 8` bytes) no longer fit a core's L2 cache.
const LONG_KEYS: usize = 4096;
/// Keys per score block. A block's transposed keys, its values and its scores (each `64 × 64` floats at the
/// release's 64-wide heads) then share the core's L1 cache with the queries and the running output instead of
/// evicting them between the two products.
pub const KEY_BLOCK: usize = 64;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    /// Batch items.
    pub batch: usize,
    /// Query tokens per item.
    pub queries: usize,
    /// Key/value tokens per item.
    pub keys: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl AttentionDims {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// `q [B, Nq, H·D]`, `k`, `v [B, Nk, H·D]` (row-major, contiguous) → `[B, Nq, H·D]`.
/// Panics if a slice's length disagrees with `dims` (the callers take both from one tensor shape).
///
pub fn attention(q: &[f32], k: &[f32], v: &[f32], dims: AttentionDims, scale: f32) -> Vec<f32> {
    attention_with(q, k, v, dims, scale, Isa::Best)
}

/// [`attention`] with both products in bf16 (queries, keys, values and the softmax weights rounded to bf16, sums
/// and the softmax in f32) on CPUs with AVX-512 BF16 and heads of even width; elsewhere [`attention`] on
/// bf16-rounded scaled queries, keys and values (the queries rounded after scaling, as the pair products do).
/// With AMX tiles and heads a multiple of 32 wide, both products run on the tiles.
pub fn attention_bf16(q: &[f32], k: &[f32], v: &[f32], dims: AttentionDims, scale: f32) -> Vec<f32> {
    attention_bf16_with(q, k, v, dims, scale, amx::available())
}

/// [`attention_bf16`], on AMX tiles only where `tiles` and the CPU and head width allow.
fn attention_bf16_with(q: &[f32], k: &[f32], v: &[f32], dims: AttentionDims, scale: f32, tiles: bool) -> Vec<f32> {
    if !bf16::native() || !dims.head_dim.is_multiple_of(2) {
        let round = |x: &[f32], s: f32| x.iter().map(|&a| bf16::round(a * s)).collect::<Vec<_>>();
        return attention(&round(q, scale), &round(k, 1.0), &round(v, 1.0), dims, 1.0);
    }
    // `native()` holds here; AMX tiles take heads that are whole tile steps of pairs.
    let tiles = tiles && amx::available() && dims.head_dim.is_multiple_of(2 * amx::STEP);
    let how = if tiles { Products::Tiles } else { Products::Pairs };
    blocked(q, k, v, dims, scale, Isa::Best, how)
}

/// How a block's two products run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Products {
    /// f32 register tiles.
    F32,
    /// bf16 pairs on AVX-512 BF16 register tiles.
    Pairs,
    /// bf16 pairs on AMX tiles.
    Tiles,
}

/// [`attention`] with the block kernel compiled for `isa`.
pub fn attention_with(q: &[f32], k: &[f32], v: &[f32], dims: AttentionDims, scale: f32, isa: Isa) -> Vec<f32> {
    blocked(q, k, v, dims, scale, isa, Products::F32)
}

fn blocked(q: &[f32], k: &[f32], v: &[f32], dims: AttentionDims, scale: f32, isa: Isa, how: Products) -> Vec<f32> {
    let AttentionDims { batch, queries, keys, .. } = dims;
    let w = dims.width();
    assert_eq!(q.len(), batch * queries * w, "attention: q does not match its dimensions");
    assert_eq!(k.len(), batch * keys * w, "attention: k does not match its dimensions");
    assert_eq!(v.len(), batch * keys * w, "attention: v does not match its dimensions");
    let mut out = vec![0f32; q.len()];
    if out.is_empty() || keys == 0 {
        return out;
    }
    let keys_of = match how {
        Products::F32 => {
            let (kt, vh) = head_major(k, v, dims);
            Keys::F32 { kt, vh }
        }
        Products::Pairs => {
            let (kt, vh) = head_major(k, v, dims);
            Keys::pairs(kt, vh, dims)
        }
        Products::Tiles => Keys::tiles(k, v, dims),
    };
    out.par_chunks_mut(queries * w).zip(q.par_chunks(queries * w)).enumerate().for_each(|(b, (out_b, q_b))| {
        let keys_b = keys_of.item(b, batch);
        let rows = QUERY_BLOCK * if keys > LONG_KEYS { BLOCKS_PER_TASK_LONG } else { 1 };
        out_b.par_chunks_mut(rows * w).zip(q_b.par_chunks(rows * w)).for_each(|(out, q)| {
            run(isa, QueryBlock { out, q, keys: keys_b, dims, scale });
        });
    });
    out
}

/// Every item's keys and values in the layout the block products read.
enum Keys {
    /// f32: `kt [B, H, Nk / KEY_BLOCK, D, KEY_BLOCK]`, `vh [B, H, Nk, D]` (see [`head_major`]).
    F32 { kt: Vec<f32>, vh: Vec<f32> },
    /// bf16 pairs along the sums' axes: `ktp [B, H, Nk / KEY_BLOCK, D / 2, KEY_BLOCK]` (pairs of head columns),
    /// `vhp [B, H, ⌈Nk / 2⌉, D]` (pairs of keys, the missing key of an odd count zero).
    Bf16 { ktp: Vec<u32>, vhp: Vec<u32> },
    /// bf16 pairs for AMX tiles, keys padded with zeros to `Nkp = Nk` rounded up to [`amx::BLOCK`]: `kp [B, H, Nkp,
    /// D / 2]` (each key's head columns in pairs), `vtp [B, H, D, Nkp / 2]` (each head column's values in pairs of
    /// keys).
    Tiles { kp: Vec<u32>, vtp: Vec<u32> },
}

/// One item's slice of [`Keys`].
#[derive(Clone, Copy)]
enum KeysRef<'a> {
    F32 { kt: &'a [f32], vh: &'a [f32] },
    Bf16 { ktp: &'a [u32], vhp: &'a [u32] },
    Tiles { kp: &'a [u32], vtp: &'a [u32] },
}

impl Keys {
    /// The pair layouts of `kt` and `vh` (from [`head_major`]), which are freed before the products run; `D` must
    /// be even.
    fn pairs(kt: Vec<f32>, vh: Vec<f32>, dims: AttentionDims) -> Self {
        let (nk, d) = (dims.keys, dims.head_dim);
        let nkp = nk.div_ceil(2);
        let heads = kt.len() / (nk * d);
        let mut ktp = vec![0u32; kt.len() / 2];
        let mut vhp = vec![0u32; heads * nkp * d];
        ktp.par_chunks_mut(nk * d / 2).zip(vhp.par_chunks_mut(nkp * d)).enumerate().for_each(|(bh, (ktp, vhp))| {
            let kt = &kt[bh * nk * d..(bh + 1) * nk * d];
            for k0 in (0..nk).step_by(KEY_BLOCK) {
                let kb = KEY_BLOCK.min(nk - k0);
                bf16::pair_rows(&kt[k0 * d..(k0 + kb) * d], kb, &mut ktp[k0 * d / 2..(k0 + kb) * d / 2]);
            }
            bf16::pair_rows(&vh[bh * nk * d..(bh + 1) * nk * d], d, vhp);
        });
        Keys::Bf16 { ktp, vhp }
    }

    /// The [`Keys::Tiles`] layouts of token-major `k` and `v`; `D` must be even.
    fn tiles(k: &[f32], v: &[f32], dims: AttentionDims) -> Self {
        let (nk, d, w, heads) = (dims.keys, dims.head_dim, dims.width(), dims.heads);
        let (nkp, dp) = (nk.next_multiple_of(amx::BLOCK), d / 2);
        let mut kp = vec![0u32; dims.batch * heads * nkp * dp];
        let mut vtp = vec![0u32; dims.batch * heads * d * nkp / 2];
        kp.par_chunks_mut(nkp * dp).zip(vtp.par_chunks_mut(d * nkp / 2)).enumerate().for_each(|(bh, (kp, vtp))| {
            let (b, h) = (bh / heads, bh % heads);
            let at = |j: usize| (b * nk + j) * w + h * d;
            for (j, dst) in kp.chunks_exact_mut(dp).take(nk).enumerate() {
                bf16::to_pairs_into(&k[at(j)..][..d], dst);
            }
            // The values a block of keys at a time: copied contiguous, paired by keys (`[keys / 2, D]`), then
            // transposed into each head column's row.
            let mut block = vec![0f32; KEY_BLOCK * d];
            let mut paired = vec![0u32; KEY_BLOCK / 2 * d];
            for k0 in (0..nk).step_by(KEY_BLOCK) {
                let kb = KEY_BLOCK.min(nk - k0);
                for (j, dst) in block.chunks_exact_mut(d).take(kb).enumerate() {
                    dst.copy_from_slice(&v[at(k0 + j)..][..d]);
                }
                bf16::pair_rows(&block[..kb * d], d, &mut paired[..kb.div_ceil(2) * d]);
                for (jp, pairs) in paired.chunks_exact(d).take(kb.div_ceil(2)).enumerate() {
                    for (c, &x) in pairs.iter().enumerate() {
                        vtp[c * (nkp / 2) + k0 / 2 + jp] = x;
                    }
                }
            }
        });
        Keys::Tiles { kp, vtp }
    }

    fn item(&self, b: usize, batch: usize) -> KeysRef<'_> {
        let part = |len: usize| (len / batch) * b..(len / batch) * (b + 1);
        match self {
            Keys::F32 { kt, vh } => KeysRef::F32 { kt: &kt[part(kt.len())], vh: &vh[part(vh.len())] },
            Keys::Bf16 { ktp, vhp } => KeysRef::Bf16 { ktp: &ktp[part(ktp.len())], vhp: &vhp[part(vhp.len())] },
            Keys::Tiles { kp, vtp } => KeysRef::Tiles { kp: &kp[part(kp.len())], vtp: &vtp[part(vtp.len())] },
        }
    }
}

/// Keys transposed per head and key block, `kt [B, H, Nk / KEY_BLOCK, D, KEY_BLOCK]` (the last block narrower),
/// and values per head, `vh [B, H, Nk, D]`: every block a product reads is one compact piece of memory.
fn head_major(k: &[f32], v: &[f32], dims: AttentionDims) -> (Vec<f32>, Vec<f32>) {
    let (nk, d, w) = (dims.keys, dims.head_dim, dims.width());
    let mut kt = vec![0f32; k.len()];
    let mut vh = vec![0f32; v.len()];
    kt.par_chunks_mut(d * nk).zip(vh.par_chunks_mut(nk * d)).enumerate().for_each(|(bh, (kt, vh))| {
        let (b, h) = (bh / dims.heads, bh % dims.heads);
        let row = |j: usize| (b * nk + j) * w + h * d;
        for k0 in (0..nk).step_by(KEY_BLOCK) {
            let kb = KEY_BLOCK.min(nk - k0);
            let blk = &mut kt[k0 * d..(k0 + kb) * d];
            for j in 0..kb {
                for (c, &x) in k[row(k0 + j)..row(k0 + j) + d].iter().enumerate() {
                    blk[c * kb + j] = x;
                }
            }
        }
        for (j, dst) in vh.chunks_exact_mut(d).enumerate() {
            dst.copy_from_slice(&v[row(j)..row(j) + d]);
        }
    });
    (kt, vh)
}

/// One task: a few query blocks against every key, all heads; run through [`run`] so that its
/// inlined loops are compiled for the CPU's widest vectors.
struct QueryBlock<'a> {
    out: &'a mut [f32],
    q: &'a [f32],
    keys: KeysRef<'a>,
    dims: AttentionDims,
    scale: f32,
}

impl pulp::WithSimd for QueryBlock<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        // The register tile's query width follows the vector width (a constant per instruction set, so only one
        // branch is compiled into each variant).
        // 16-lane f32 vectors are pulp's AVX-512 level (F, BW, CD, DQ, VL).
        if S::F32_LANES >= 16 {
            self.heads::<WIDE_TILE_QUERIES>(true)
        } else {
            self.heads::<NARROW_TILE_QUERIES>(false)
        }
    }
}

impl QueryBlock<'_> {
    /// Every head of the task's query blocks, with register tiles `Q` queries wide; `avx512` when the CPU has
    /// AVX-512 F and BW (the softmax step then runs as [`softmax_avx512`]).
    #[inline(always)]
    fn heads<const Q: usize>(self, avx512: bool) {
        let Self { out, q, keys, dims, scale } = self;
        let (w, d, nk) = (dims.width(), dims.head_dim, dims.keys);
        let kb_max = KEY_BLOCK.min(nk);
        let pairs = !matches!(keys, KeysRef::F32 { .. });
        let tiles = if matches!(keys, KeysRef::Tiles { .. }) { amx::Tiles::load() } else { None };
        let mut subs: Vec<SubBlock> =
            q.chunks(N * w).map(|rows| SubBlock::new(rows.len() / w, d, pairs, avx512)).collect();
        // [keys, N]; the tiles compute whole blocks of 32 keys.
        let mut scores = vec![0f32; kb_max.next_multiple_of(amx::BLOCK) * N];
        for h in 0..dims.heads {
            for (sb, rows) in subs.iter_mut().zip(q.chunks(N * w)) {
                sb.start_head(rows, h, w, d, scale);
            }
            let mut k0 = 0;
            while k0 < nk {
                let kb = kb_max.min(nk - k0);
                if let KeysRef::F32 { kt, vh } = keys {
                    // The blocks lie one after the other (heads too), so the next block's keys and values start
                    // where this block's end; requested now, they arrive while this block's products run.
                    let (at, end) = ((h * nk + k0 + kb) * d, ((h * nk + k0 + kb + kb_max) * d).min(kt.len()));
                    if at < end {
                        prefetch(&kt[at..end]);
                        prefetch(&vh[at..end]);
                    }
                }
                for sb in subs.iter_mut() {
                    match (keys, &tiles) {
                        (KeysRef::F32 { kt, vh }, _) => {
                            let (kt, vh) = (&kt[(h * nk + k0) * d..], &vh[(h * nk + k0) * d..]);
                            sb.key_block::<Q>(&mut scores[..kb * N], kt, vh, kb, d, k0 > 0);
                        }
                        (KeysRef::Bf16 { ktp, vhp }, _) => {
                            let ktp = &ktp[(h * nk + k0) * d / 2..];
                            let vhp = &vhp[(h * nk.div_ceil(2) + k0 / 2) * d..];
                            sb.key_block_pairs(&mut scores[..kb * N], ktp, vhp, kb, d, k0 > 0);
                        }
                        (KeysRef::Tiles { kp, vtp }, Some(tiles)) => {
                            let nkp = nk.next_multiple_of(amx::BLOCK);
                            let (kp, vtp) = (&kp[(h * nkp + k0) * d / 2..], &vtp[h * d * nkp / 2 + k0 / 2..]);
                            let keys = TileKeys { kp, vtp, vtp_stride: nkp / 2 };
                            sb.key_block_tiles(tiles, &mut scores, keys, kb, d, k0 > 0);
                        }
                        (KeysRef::Tiles { .. }, None) => {
                            unreachable!("tile layouts are built only where AMX is available")
                        }
                    }
                }
                k0 += kb;
            }
            for (sb, rows) in subs.iter().zip(out.chunks_mut(N * w)) {
                sb.finish_head(rows, h, w, d);
            }
        }
    }
}

/// Asks the core to bring `data` into its L1 cache (one request per 64-byte line); a hint, never a fault.
#[inline(always)]
fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch reads nothing architecturally and cannot fault; the address lies inside `data`.
        #[allow(unsafe_code)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// One head's key block in the [`Keys::Tiles`] layouts: `kp` its keys (`[kb, D / 2]`, rows past `kb` zero up to a
/// multiple of 32), `vtp` its values by head column (`D` rows of pairs of keys, `vtp_stride` pairs apart).
#[derive(Clone, Copy)]
struct TileKeys<'a> {
    kp: &'a [u32],
    vtp: &'a [u32],
    vtp_stride: usize,
}

/// The state of `n ≤ N` queries of one head: query-minor buffers with all `N` lanes (lanes ≥ n hold zero
/// queries and are never written out).
struct SubBlock {
    n: usize,
    /// `[D, N]`, the queries pre-scaled.
    qt: Vec<f32>,
    /// bf16 products only: `qt` as pairs of head columns, `[D / 2, N]`.
    qtp: Vec<u32>,
    /// bf16 products only: a key block's softmax weights as pairs of keys, `[KEY_BLOCK / 2, N]`.
    pp: Vec<u32>,
    /// `[D, N]`, the running weighted sum of values.
    acc: Vec<f32>,
    row_max: [f32; N],
    row_sum: [f32; N],
    /// The CPU has AVX-512 F and BW: [`softmax_avx512`] runs the softmax step.
    avx512: bool,
}

impl SubBlock {
    fn new(n: usize, d: usize, pairs: bool, avx512: bool) -> Self {
        let (qtp, pp) = if pairs { (vec![0u32; d / 2 * N], vec![0u32; KEY_BLOCK / 2 * N]) } else { (vec![], vec![]) };
        let (qt, acc) = (vec![0f32; d * N], vec![0f32; d * N]);
        Self { n, qt, qtp, pp, acc, row_max: [0.0; N], row_sum: [0.0; N], avx512 }
    }

    #[inline(always)]
    fn start_head(&mut self, q: &[f32], h: usize, w: usize, d: usize, scale: f32) {
        // Row by row of the token-major input: its rows are `w` floats apart (a multiple of 4 KB at the release
        // size), so walking a column down them would map every access to the same cache set.
        for (i, row) in q.chunks(w).take(self.n).enumerate() {
            for (c, &x) in row[h * d..(h + 1) * d].iter().enumerate() {
                self.qt[c * N + i] = x * scale;
            }
        }
        if !self.qtp.is_empty() {
            bf16::pair_rows(&self.qt, N, &mut self.qtp);
        }
        self.row_max.fill(f32::NEG_INFINITY);
        self.row_sum.fill(0.0);
    }

    /// Scores against `kb` keys, the online-softmax update, and the values they weight.
    #[inline(always)]
    fn key_block<const Q: usize>(
        &mut self,
        s: &mut [f32],
        kt: &[f32],
        vh: &[f32],
        kb: usize,
        d: usize,
        accumulate: bool,
    ) {
        scores_tile::<Q>(s, &self.qt, kt, kb, kb, d);
        self.online_softmax(s, accumulate);
        pv_tile::<Q>(&mut self.acc, s, vh, kb, d, accumulate);
    }

    /// [`Self::key_block`] with bf16 products: `ktp` and `vhp` are the block's keys and values as pairs (see
    /// [`Keys::Bf16`]); the weights are rounded to bf16 pairs between the softmax and the second product.
    #[inline(always)]
    fn key_block_pairs(&mut self, s: &mut [f32], ktp: &[u32], vhp: &[u32], kb: usize, d: usize, accumulate: bool) {
        let kbp = kb.div_ceil(2);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: pair layouts exist only where `bf16::native()` found AVX-512 F, BW and BF16.
        #[allow(unsafe_code)]
        unsafe {
            pair_tiles::scores(s, &self.qtp, ktp, kb, d / 2)
        };
        self.softmax_to_pairs(s, kb, accumulate);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe {
            pair_tiles::pv(&mut self.acc, &self.pp[..kbp * N], vhp, kbp, d, accumulate)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("bf16 pair layouts are built only on x86_64 ({ktp:p}, {vhp:p})");
    }

    /// [`Self::key_block`] on AMX tiles (see [`TileKeys`]); `scores` has room for the block padded to a multiple
    /// of 32 keys. The products run key-major (`s = K·Qᵀ`, `accᵀ += Vᵀ·P`) so that scores, weights and output
    /// keep the query-minor layouts of the softmax steps.
    #[inline(always)]
    fn key_block_tiles(
        &mut self,
        tiles: &amx::Tiles,
        scores: &mut [f32],
        keys: TileKeys<'_>,
        kb: usize,
        d: usize,
        accumulate: bool,
    ) {
        const B: usize = amx::BLOCK;
        let TileKeys { kp, vtp, vtp_stride } = keys;
        let (kb_pad, dp) = (kb.next_multiple_of(B), d / 2);
        for j0 in (0..kb_pad).step_by(B) {
            for q0 in (0..N).step_by(B) {
                tiles.product(&mut scores[j0 * N + q0..], N, &kp[j0 * dp..], dp, &self.qtp[q0..], N, dp, false);
            }
        }
        self.softmax_to_pairs(&mut scores[..kb * N], kb, accumulate);
        let (kbp, pad) = (kb.div_ceil(2), kb_pad / 2);
        // The padding keys weigh nothing (their values are zero too, but stale weights could be NaN).
        self.pp[kbp * N..pad * N].fill(0);
        for c0 in (0..d).step_by(B) {
            for q0 in (0..N).step_by(B) {
                let (acc, vt) = (&mut self.acc[c0 * N + q0..], &vtp[c0 * vtp_stride..]);
                tiles.product(acc, N, vt, vtp_stride, &self.pp[q0..], N, pad, accumulate);
            }
        }
    }

    /// The online-softmax step on a block's scores `s [kb, N]`: the new running maxima, `s` turned into
    /// weights, the running sums and (when `accumulate`) the running output rescaled to the new maxima.
    #[inline(always)]
    fn online_softmax(&mut self, s: &mut [f32], accumulate: bool) {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            let run =
                softmax_avx512::Running { row_max: &mut self.row_max, row_sum: &mut self.row_sum, acc: &mut self.acc };
            // SAFETY: `avx512` is set only where pulp's AVX-512 level (F, BW, …) was detected.
            #[allow(unsafe_code)]
            unsafe {
                softmax_avx512::in_place(s, s.len() / N, run, accumulate)
            };
            return;
        }
        let mut block_max = self.row_max;
        for row in s.chunks_exact(N) {
            math::max_into(&mut block_max, row);
        }
        let mut alpha = [0f32; N];
        for ((a, &m_new), &m_old) in alpha.iter_mut().zip(&block_max).zip(&self.row_max) {
            *a = math::exp(m_old - m_new);
        }
        math::mul_into(&mut self.row_sum, &alpha);
        for row in s.chunks_exact_mut(N) {
            math::exp_shifted_accumulate(row, &block_max, &mut self.row_sum);
        }
        self.row_max = block_max;
        if accumulate {
            for row in self.acc.chunks_exact_mut(N) {
                math::mul_into(row, &alpha);
            }
        }
    }

    /// [`Self::online_softmax`] with the weights rounded to bf16 pairs of keys in `pp` (`[⌈kb / 2⌉, N]`); `s` may
    /// be left as scores. Only for the pair layouts, which exist only where AVX-512 F, BW and BF16 do.
    #[inline(always)]
    fn softmax_to_pairs(&mut self, s: &mut [f32], kb: usize, accumulate: bool) {
        let kbp = kb.div_ceil(2);
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            let run =
                softmax_avx512::Running { row_max: &mut self.row_max, row_sum: &mut self.row_sum, acc: &mut self.acc };
            // SAFETY: pair layouts exist only where `bf16::native()` found AVX-512 F, BW and BF16.
            #[allow(unsafe_code)]
            unsafe {
                softmax_avx512::to_pairs(s, kb, run, accumulate, &mut self.pp[..kbp * N])
            };
            return;
        }
        self.online_softmax(s, accumulate);
        bf16::pair_rows(s, N, &mut self.pp[..kbp * N]);
    }

    #[inline(always)]
    fn finish_head(&self, out: &mut [f32], h: usize, w: usize, d: usize) {
        // Row by row of the token-major output, for the reason given in `start_head`.
        for (i, (row, &l)) in out.chunks_mut(w).zip(&self.row_sum).take(self.n).enumerate() {
            for (c, x) in row[h * d..(h + 1) * d].iter_mut().enumerate() {
                *x = self.acc[c * N + i] / l;
            }
        }
    }
}

/// Lanes of every query-minor row.
const N: usize = QUERY_BLOCK;
/// Keys (scores) or output columns (values) per register tile.
const TILE: usize = 6;
/// Queries per register tile with 16-lane vectors: `TILE × 64` accumulators are 24 of the 32 AVX-512 registers.
const WIDE_TILE_QUERIES: usize = N;
/// Queries per register tile with 8-lane (AVX2) or scalar lanes: `TILE × 16` accumulators are 12 of the 16 AVX2
/// registers, leaving room for two query vectors and a broadcast key; a 64-wide tile would spill every
/// accumulator on every step.
const NARROW_TILE_QUERIES: usize = 16;

/// `s[j][i] = Σ_c kt[c·stride + j] · qt[c][i]` for `j < kb`: the scores of a key block, query-minor, in register
/// tiles of `Q` queries.
#[inline(always)]
fn scores_tile<const Q: usize>(s: &mut [f32], qt: &[f32], kt: &[f32], stride: usize, kb: usize, d: usize) {
    for q0 in (0..N).step_by(Q) {
        let mut j = 0;
        while j + TILE <= kb {
            scores_group::<TILE, Q>(s, qt, kt, stride, j, q0, d);
            j += TILE;
        }
        // The remainder in tiles of 4, 2, 1 (a tile's cost is mostly its loads of the query rows).
        if j + 4 <= kb {
            scores_group::<4, Q>(s, qt, kt, stride, j, q0, d);
            j += 4;
        }
        if j + 2 <= kb {
            scores_group::<2, Q>(s, qt, kt, stride, j, q0, d);
            j += 2;
        }
        if j < kb {
            scores_group::<1, Q>(s, qt, kt, stride, j, q0, d);
        }
    }
}

#[inline(always)]
fn scores_group<const J: usize, const Q: usize>(
    s: &mut [f32],
    qt: &[f32],
    kt: &[f32],
    stride: usize,
    j: usize,
    q0: usize,
    d: usize,
) {
    let mut acc = [[0f32; Q]; J];
    for c in 0..d {
        let (Some((q, _)), Some((k, _))) =
            (qt[c * N + q0..].split_first_chunk::<Q>(), kt[c * stride + j..].split_first_chunk::<J>())
        else {
            return;
        };
        for (a, &kv) in acc.iter_mut().zip(k) {
            for (x, &qv) in a.iter_mut().zip(q) {
                *x = kv.mul_add(qv, *x);
            }
        }
    }
    for (jj, a) in acc.iter().enumerate() {
        s[(j + jj) * N + q0..(j + jj) * N + q0 + Q].copy_from_slice(a);
    }
}

/// `acc[c][i] (+)= Σ_j vh[j·d + c] · p[j][i]` for `j < kb`: the values weighted by a key block's
/// probabilities, added to (or replacing) the running output, in register tiles of `Q` queries.
#[inline(always)]
fn pv_tile<const Q: usize>(acc: &mut [f32], p: &[f32], vh: &[f32], kb: usize, d: usize, accumulate: bool) {
    for q0 in (0..N).step_by(Q) {
        let mut c = 0;
        while c + TILE <= d {
            pv_group::<TILE, Q>(acc, p, vh, kb, d, c, q0, accumulate);
            c += TILE;
        }
        if c + 4 <= d {
            pv_group::<4, Q>(acc, p, vh, kb, d, c, q0, accumulate);
            c += 4;
        }
        if c + 2 <= d {
            pv_group::<2, Q>(acc, p, vh, kb, d, c, q0, accumulate);
            c += 2;
        }
        if c < d {
            pv_group::<1, Q>(acc, p, vh, kb, d, c, q0, accumulate);
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)] // the tile's position (c0, q0) beside the block's dimensions
fn pv_group<const C: usize, const Q: usize>(
    acc: &mut [f32],
    p: &[f32],
    vh: &[f32],
    kb: usize,
    d: usize,
    c0: usize,
    q0: usize,
    accumulate: bool,
) {
    let mut a = [[0f32; Q]; C];
    if accumulate {
        for (cc, row) in a.iter_mut().enumerate() {
            row.copy_from_slice(&acc[(c0 + cc) * N + q0..(c0 + cc) * N + q0 + Q]);
        }
    }
    for j in 0..kb {
        let (Some((pr, _)), Some((v, _))) =
            (p[j * N + q0..].split_first_chunk::<Q>(), vh[j * d + c0..].split_first_chunk::<C>())
        else {
            return;
        };
        for (row, &vv) in a.iter_mut().zip(v) {
            for (x, &pv) in row.iter_mut().zip(pr) {
                *x = vv.mul_add(pv, *x);
            }
        }
    }
    for (cc, row) in a.iter().enumerate() {
        acc[(c0 + cc) * N + q0..(c0 + cc) * N + q0 + Q].copy_from_slice(row);
    }
}

/// The two products on bf16 pairs with `vdpbf16ps`: register tiles of [`TILE`] keys (or output columns) × all
/// `N` queries, as in the f32 tiles, but each step consumes two head columns (scores) or two keys (values).
#[cfg(target_arch = "x86_64")]
mod pair_tiles {
    #![allow(unsafe_code)]

    use std::arch::x86_64::*;

    use super::{N, TILE};

    /// Vectors per query row.
    const V: usize = N / 16;

    /// `s[j][i] = Σ_c dot(ktp[c·kb + j], qtp[c][i])` for `j < kb`, `c < dp`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn scores(s: &mut [f32], qtp: &[u32], ktp: &[u32], kb: usize, dp: usize) {
        assert!(s.len() >= kb * N && qtp.len() >= dp * N && ktp.len() >= dp * kb, "pair scores: operands too short");
        let mut j = 0;
        // SAFETY (every call below): the extents were asserted above and `j + J ≤ kb`.
        while j + TILE <= kb {
            unsafe { scores_group::<TILE>(s, qtp, ktp, kb, j, dp) };
            j += TILE;
        }
        if j + 4 <= kb {
            unsafe { scores_group::<4>(s, qtp, ktp, kb, j, dp) };
            j += 4;
        }
        if j + 2 <= kb {
            unsafe { scores_group::<2>(s, qtp, ktp, kb, j, dp) };
            j += 2;
        }
        if j < kb {
            unsafe { scores_group::<1>(s, qtp, ktp, kb, j, dp) };
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn scores_group<const J: usize>(s: &mut [f32], qtp: &[u32], ktp: &[u32], kb: usize, j: usize, dp: usize) {
        let mut acc = [[_mm512_setzero_ps(); V]; J];
        for c in 0..dp {
            let mut q = [bh(_mm512_setzero_si512()); V];
            for (t, q) in q.iter_mut().enumerate() {
                // SAFETY: `c·N + 16t + 16 ≤ dp·N ≤ qtp.len()`.
                *q = bh(unsafe { _mm512_loadu_si512(qtp.as_ptr().add(c * N + 16 * t).cast()) });
            }
            for (jj, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `c·kb + j + jj < dp·kb ≤ ktp.len()`.
                let k = bh(_mm512_set1_epi32(unsafe { *ktp.get_unchecked(c * kb + j + jj) } as i32));
                for (a, q) in acc.iter_mut().zip(&q) {
                    *a = _mm512_dpbf16_ps(*a, k, *q);
                }
            }
        }
        for (jj, acc) in acc.iter().enumerate() {
            for (t, a) in acc.iter().enumerate() {
                // SAFETY: `(j + jj)·N + 16t + 16 ≤ kb·N ≤ s.len()`.
                unsafe { _mm512_storeu_ps(s.as_mut_ptr().add((j + jj) * N + 16 * t), *a) };
            }
        }
    }

    /// `acc[c][i] (+)= Σ_j dot(vhp[j·d + c], pp[j][i])` for `c < d`, `j < kbp`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pv(acc: &mut [f32], pp: &[u32], vhp: &[u32], kbp: usize, d: usize, accumulate: bool) {
        assert!(acc.len() >= d * N && pp.len() >= kbp * N && vhp.len() >= kbp * d, "pair values: operands too short");
        let mut c = 0;
        // SAFETY (every call below): the extents were asserted above and `c + C ≤ d`.
        while c + TILE <= d {
            unsafe { pv_group::<TILE>(acc, pp, vhp, kbp, d, c, accumulate) };
            c += TILE;
        }
        if c + 4 <= d {
            unsafe { pv_group::<4>(acc, pp, vhp, kbp, d, c, accumulate) };
            c += 4;
        }
        if c + 2 <= d {
            unsafe { pv_group::<2>(acc, pp, vhp, kbp, d, c, accumulate) };
            c += 2;
        }
        if c < d {
            unsafe { pv_group::<1>(acc, pp, vhp, kbp, d, c, accumulate) };
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    #[allow(clippy::too_many_arguments)] // the tile's column beside the block's extents
    unsafe fn pv_group<const C: usize>(
        acc: &mut [f32],
        pp: &[u32],
        vhp: &[u32],
        kbp: usize,
        d: usize,
        c0: usize,
        accumulate: bool,
    ) {
        let mut a = [[_mm512_setzero_ps(); V]; C];
        if accumulate {
            for (cc, a) in a.iter_mut().enumerate() {
                for (t, a) in a.iter_mut().enumerate() {
                    // SAFETY: `(c0 + cc)·N + 16t + 16 ≤ d·N ≤ acc.len()`.
                    *a = unsafe { _mm512_loadu_ps(acc.as_ptr().add((c0 + cc) * N + 16 * t)) };
                }
            }
        }
        for j in 0..kbp {
            let mut p = [bh(_mm512_setzero_si512()); V];
            for (t, p) in p.iter_mut().enumerate() {
                // SAFETY: `j·N + 16t + 16 ≤ kbp·N ≤ pp.len()`.
                *p = bh(unsafe { _mm512_loadu_si512(pp.as_ptr().add(j * N + 16 * t).cast()) });
            }
            for (cc, a) in a.iter_mut().enumerate() {
                // SAFETY: `j·d + c0 + cc < kbp·d ≤ vhp.len()`.
                let v = bh(_mm512_set1_epi32(unsafe { *vhp.get_unchecked(j * d + c0 + cc) } as i32));
                for (a, p) in a.iter_mut().zip(&p) {
                    *a = _mm512_dpbf16_ps(*a, v, *p);
                }
            }
        }
        for (cc, a) in a.iter().enumerate() {
            for (t, a) in a.iter().enumerate() {
                // SAFETY: as for the loads.
                unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add((c0 + cc) * N + 16 * t), *a) };
            }
        }
    }

    /// The same 512 bits read as 32 bf16 values.
    #[inline(always)]
    fn bh(v: __m512i) -> __m512bh {
        // SAFETY: both are plain 512-bit vectors; every bit pattern is a valid value of either.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward f64 attention on the same layout.
    fn reference(q: &[f32], k: &[f32], v: &[f32], d: AttentionDims, scale: f32) -> Vec<f32> {
        let w = d.width();
        let mut out = vec![0f32; q.len()];
        for b in 0..d.batch {
            for h in 0..d.heads {
                for i in 0..d.queries {
                    let qi = &q[(b * d.queries + i) * w + h * d.head_dim..][..d.head_dim];
                    let s: Vec<f64> = (0..d.keys)
                        .map(|j| {
                            let kj = &k[(b * d.keys + j) * w + h * d.head_dim..][..d.head_dim];
                            qi.iter().zip(kj).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>() * scale as f64
                        })
                        .collect();
                    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..d.head_dim {
                        let o: f64 =
                            (0..d.keys).map(|j| e[j] * v[(b * d.keys + j) * w + h * d.head_dim + c] as f64).sum();
                        out[(b * d.queries + i) * w + h * d.head_dim + c] = (o / z) as f32;
                    }
                }
            }
        }
        out
    }

    fn noise(n: usize, seed: u32, amp: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 2.0 * amp
            })
            .collect()
    }

    /// Several key blocks (running max/sum across them), a partial last block, a partial query block, two
    /// batch items, head widths that exercise every register tile (6, 4, 2, 1), and scores large enough that a
    /// missing max subtraction would overflow; on every instruction set.
    #[test]
    fn blocked_kernel_matches_direct_attention() {
        let cases = [
            (QUERY_BLOCK * 2 + 5, KEY_BLOCK * 2 + 37, 3, 8),
            (3, 7, 2, 13),
            (1, 1, 1, 64),
            (70, 140, 1, 7),
            (QUERY_BLOCK * 3 + 1, LONG_KEYS + 1, 1, 4),
            (QUERY_BLOCK * 2 + 3, KEY_BLOCK + 45, 3, 64),
            (5, 33, 2, 32),
        ];
        for (queries, keys, heads, head_dim) in cases {
            let d = AttentionDims { batch: 2, queries, keys, heads, head_dim };
            let w = heads * head_dim;
            // Scores of the same spread for every head width.
            let amp = 6.0 / (head_dim as f32 / 8.0).sqrt().max(1.0);
            let q = noise(2 * queries * w, 1, amp);
            let k = noise(2 * keys * w, 2, amp);
            let v = noise(2 * keys * w, 3, 1.0);
            let want = reference(&q, &k, &v, d, 0.9);
            for isa in Isa::ALL {
                let got = attention_with(&q, &k, &v, d, 0.9, isa);
                let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(err < 2e-5, "{queries}×{keys} ({isa:?}): max abs error {err:e}");
            }
        }
    }

    /// The AVX-512 softmax step gives the portable steps' maxima, sums, weights, bf16 pairs and rescaled output,
    /// over blocks where the maxima move in some query lanes and stay in others, and a ragged last block.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_softmax_step_matches_the_portable_one() {
        if pulp::x86::V4::try_new().is_none() {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        let d = 8;
        let pairs = bf16::native();
        let (mut fast, mut slow) = (SubBlock::new(N, d, pairs, true), SubBlock::new(N, d, pairs, false));
        for (block, kb) in [KEY_BLOCK, KEY_BLOCK, 37].into_iter().enumerate() {
            // Lanes ≥ 32 get their largest scores in the first block only, so their maxima stay afterwards.
            let mut s: Vec<f32> = noise(kb * N, 10 + block as u32, 4.0);
            for (i, x) in s.iter_mut().enumerate() {
                if i % N >= 32 {
                    *x += if block == 0 { 8.0 } else { -8.0 };
                } else {
                    *x += block as f32 * 3.0;
                }
            }
            let acc_before = noise(d * N, 20 + block as u32, 1.0);
            for sb in [&mut fast, &mut slow] {
                sb.acc.copy_from_slice(&acc_before);
            }
            let (mut s_fast, mut s_slow) = (s.clone(), s.clone());
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1e-30) || a == b;
            if pairs {
                fast.softmax_to_pairs(&mut s_fast, kb, block > 0);
                slow.softmax_to_pairs(&mut s_slow, kb, block > 0);
                for (i, (a, b)) in fast.pp[..kb.div_ceil(2) * N].iter().zip(&slow.pp).enumerate() {
                    // Weights within an f32 ulp or two may round to neighbouring bf16 values.
                    let (a, b) = (f32::from_bits(a << 16), f32::from_bits(b << 16));
                    assert!((a - b).abs() <= 2f32.powi(-8) * b.abs(), "block {block} pair {i}: {a} vs {b}");
                }
            } else {
                fast.online_softmax(&mut s_fast, block > 0);
                slow.online_softmax(&mut s_slow, block > 0);
                for (i, (&a, &b)) in s_fast.iter().zip(&s_slow).enumerate() {
                    assert!(close(a, b), "block {block} weight {i}: {a} vs {b}");
                }
            }
            assert_eq!(fast.row_max, slow.row_max, "block {block}");
            for (i, (&a, &b)) in fast.row_sum.iter().zip(&slow.row_sum).enumerate() {
                assert!(close(a, b), "block {block} sum {i}: {a} vs {b}");
            }
            for (i, (&a, &b)) in fast.acc.iter().zip(&slow.acc).enumerate() {
                assert!(close(a, b), "block {block} output {i}: {a} vs {b}");
                if block > 0 && i % N >= 32 {
                    assert_eq!(a, acc_before[i], "lane {} kept its maximum: output untouched", i % N);
                }
            }
        }
    }

    /// bf16 products: the exact attention of the bf16-rounded keys, values and scaled queries (the kernel scales
    /// the queries before rounding them), moved only by the rounding of the softmax weights to bf16 (relative
    /// 2⁻⁹ of a weighted mean of values of magnitude ≤ 1); even and odd key counts, several key blocks and query
    /// blocks, every tile width, and the fallback for odd head widths.
    #[test]
    fn bf16_products_stay_near_the_rounded_attention() {
        let cases = [
            (QUERY_BLOCK * 2 + 5, KEY_BLOCK * 2 + 37, 3, 8),
            (3, 7, 2, 14),
            (1, 1, 1, 64),
            (70, 141, 2, 13),
            (QUERY_BLOCK + 1, LONG_KEYS + 1, 1, 64),
            (QUERY_BLOCK * 2 + 3, KEY_BLOCK + 45, 3, 64),
            (5, 33, 2, 32),
        ];
        for (queries, keys, heads, head_dim) in cases {
            let d = AttentionDims { batch: 2, queries, keys, heads, head_dim };
            let w = heads * head_dim;
            let round = |x: Vec<f32>| x.into_iter().map(bf16::round).collect::<Vec<_>>();
            let q = round(noise(2 * queries * w, 1, 2.0));
            let k = round(noise(2 * keys * w, 2, 2.0));
            let v = round(noise(2 * keys * w, 3, 1.0));
            let scaled = round(q.iter().map(|x| x * 0.9).collect());
            let want = reference(&scaled, &k, &v, d, 1.0);
            for tiles in [false, true] {
                let got = attention_bf16_with(&q, &k, &v, d, 0.9, tiles);
                let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                let bound = if head_dim % 2 == 1 || !bf16::native() { 1e-2 } else { 2.5e-3 };
                assert!(err < bound, "{queries}×{keys}×{head_dim} (AMX {tiles}): max abs error {err:e}");
            }
        }
    }
}
