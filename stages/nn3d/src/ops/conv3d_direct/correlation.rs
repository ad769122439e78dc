//! The correlation kernels of the direct conv: the tiles that keep sums in registers while
//! streaming over input channels and taps, and the weight-gradient kernel.
//!
//! Two tilings of a block of output channels: position-vector tiles (a vector of positions
//! per accumulator, each weight broadcast: AVX-512, and small blocks on AVX2) and AVX2's
//! channel-vector tiles (a vector of output channels per accumulator, each input broadcast),
//! which load fewer values per FMA where AVX2 cannot broadcast from memory inside an FMA.
//! Both add every output's terms in the same order, so they give the same bits.

use rayon::prelude::*;

use super::{Block, PackedWeights, CHANNEL_BLOCK, CHUNK, GW_CO, GW_SUB, GW_TAPS, LANES};
use crate::ops::simd::{Avx2, Avx512, Isa, Lanes};

/// One correlation: `out[o][q] = sum_i sum_t w[o][i][t] * src[i * src_stride + offs[t] + q]` for
/// `q` in `0..len` (a multiple of 16), rows of `out` `out_stride` apart.
pub(super) struct Correlation<'a> {
    pub isa: Isa,
    pub src: &'a [f32],
    pub src_stride: usize,
    pub n_in: usize,
    pub offs: &'a [usize],
    pub weights: &'a PackedWeights,
    pub len: usize,
    /// Input channels per pass of the channel-vector tiles ([`CHANNEL_GROUP`] where the
    /// input is one grid; all of them for a stride's phase grids, where passes measured
    /// slower).
    pub group: usize,
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    /// By value, so closures capture the whole (Send) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

impl Correlation<'_> {
    /// Runs the correlation into `out` (rows of `out_stride`, `len` positions used), in
    /// parallel over chunks of positions.
    pub fn run(&self, out: &mut [f32], out_stride: usize) {
        assert!(self.len.is_multiple_of(LANES) && self.len <= out_stride);
        let n_out = self
            .weights
            .blocks
            .iter()
            .map(|(b, _)| b.start + b.valid)
            .max()
            .unwrap_or(0);
        assert!(out.len() >= n_out.saturating_sub(1) * out_stride + self.len);
        let max_off = self.offs.iter().copied().max().unwrap_or(0);
        if self.n_in > 0 {
            assert!(self.src.len() >= (self.n_in - 1) * self.src_stride + max_off + self.len);
        }
        let dst = SendPtr(out.as_mut_ptr());
        let blocks = &self.weights.blocks;
        // Tasks are (chunk of positions, output block) pairs, so that small grids with many
        // channels still use every thread; one thread's consecutive tasks share a chunk.
        let tasks = self.len.div_ceil(CHUNK) * blocks.len();
        (0..tasks)
            .into_par_iter()
            .for_each_init(Vec::new, |partial, t| {
                let (c, (b, w)) = (t / blocks.len(), &blocks[t % blocks.len()]);
                let q0 = c * CHUNK;
                let q1 = (q0 + CHUNK).min(self.len);
                // SAFETY: the asserts above bound every read of `src` and write of `out`;
                // tasks write disjoint (rows, positions) ranges; `isa` is one this CPU runs,
                // and blocks of CHANNEL_BLOCK exist only with channel tiles, chosen on AVX2.
                unsafe {
                    let out = dst.get().add(b.start * out_stride);
                    if b.size == CHANNEL_BLOCK {
                        self.channel_block_avx2(w, out, out_stride, b.valid, (q0, q1), partial)
                    } else {
                        self.block(b, w, out, out_stride, q0, q1)
                    }
                }
            });
    }

    /// A block of [`CHANNEL_BLOCK`] output channels over positions `q0..q1` with the
    /// channel-vector tiles, `self.group` input channels per pass; `partial` holds the
    /// transposed sums between passes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn channel_block_avx2(
        &self,
        w: &[f32],
        out: *mut f32,
        os: usize,
        valid: usize,
        (q0, q1): (usize, usize),
        partial: &mut Vec<f32>,
    ) {
        const CV: usize = CHANNEL_BLOCK / 8;
        const P: usize = CHANNEL_POSITIONS;
        partial.resize((q1 - q0) * CHANNEL_BLOCK, 0.0);
        let part = partial.as_mut_ptr();
        let per_input = self.offs.len() * CHANNEL_BLOCK;
        let group = self.group.max(1);
        let groups = self.n_in.div_ceil(group);
        for g in 0..groups {
            let inputs = g * group..((g + 1) * group).min(self.n_in);
            let pass = ChannelPass {
                weights: w.as_ptr().add(inputs.start * per_input),
                inputs,
                first: g == 0,
                last: g + 1 == groups,
            };
            let mut q = q0;
            while q + P <= q1 {
                let part = part.add((q - q0) * CHANNEL_BLOCK);
                channel_tile::<Avx2, CV, P>(self, &pass, part, out, os, valid, q);
                q += P;
            }
            while q < q1 {
                let part = part.add((q - q0) * CHANNEL_BLOCK);
                channel_tile::<Avx2, CV, 1>(self, &pass, part, out, os, valid, q);
                q += 1;
            }
        }
    }

    unsafe fn block(&self, b: &Block, w: &[f32], out: *mut f32, os: usize, q0: usize, q1: usize) {
        // Per block size, the vectors of positions per tile: C x V accumulators, V loaded
        // inputs and one broadcast weight stay within the registers.
        macro_rules! run {
            ($tile:ident, $lanes:expr, $c:literal, $v:literal) => {{
                let mut q = q0;
                while q + $v * $lanes <= q1 {
                    $tile::<$c, $v>(self, w, out, os, b.valid, q);
                    q += $v * $lanes;
                }
                while q < q1 {
                    $tile::<$c, 1>(self, w, out, os, b.valid, q);
                    q += $lanes;
                }
            }};
        }
        match (self.isa, b.size) {
            (Isa::Avx512, 12) => run!(tile_avx512, 16, 12, 2),
            (Isa::Avx512, 8) => run!(tile_avx512, 16, 8, 3),
            (Isa::Avx512, 6) => run!(tile_avx512, 16, 6, 4),
            (Isa::Avx512, 4) => run!(tile_avx512, 16, 4, 6),
            (Isa::Avx512, 3) => run!(tile_avx512, 16, 3, 8),
            (Isa::Avx512, 2) => run!(tile_avx512, 16, 2, 8),
            (Isa::Avx512, _) => run!(tile_avx512, 16, 1, 8),
            (Isa::Avx2, 12) => run!(tile_avx2, 8, 12, 1),
            (Isa::Avx2, 8) => run!(tile_avx2, 8, 8, 1),
            (Isa::Avx2, 6) => run!(tile_avx2, 8, 6, 2),
            (Isa::Avx2, 4) => run!(tile_avx2, 8, 4, 3),
            (Isa::Avx2, 3) => run!(tile_avx2, 8, 3, 4),
            (Isa::Avx2, 2) => run!(tile_avx2, 8, 2, 4),
            (Isa::Avx2, _) => run!(tile_avx2, 8, 1, 8),
        }
    }
}

/// [`tile`] compiled for AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const C: usize, const V: usize>(
    k: &Correlation,
    w: &[f32],
    out: *mut f32,
    os: usize,
    valid: usize,
    q: usize,
) {
    tile::<Avx512, C, V>(k, w, out, os, valid, q)
}

/// [`tile`] compiled for AVX2 with FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const C: usize, const V: usize>(
    k: &Correlation,
    w: &[f32],
    out: *mut f32,
    os: usize,
    valid: usize,
    q: usize,
) {
    tile::<Avx2, C, V>(k, w, out, os, valid, q)
}

/// `C` output channels times `V` vectors of positions starting at `q`.
#[inline(always)]
unsafe fn tile<L: Lanes, const C: usize, const V: usize>(
    k: &Correlation,
    w: &[f32],
    out: *mut f32,
    os: usize,
    valid: usize,
    q: usize,
) {
    let mut acc = [[L::zero(); V]; C];
    let taps = k.offs.len();
    let mut wp = w.as_ptr();
    for i in 0..k.n_in {
        let base = k.src.as_ptr().add(i * k.src_stride + q);
        for &off in k.offs {
            let p = base.add(off);
            let mut xv = [L::zero(); V];
            for (v, x) in xv.iter_mut().enumerate() {
                *x = L::load(p.add(v * L::N));
            }
            for (c, row) in acc.iter_mut().enumerate() {
                let wc = L::splat(*wp.add(c));
                for (a, x) in row.iter_mut().zip(&xv) {
                    *a = L::fma(wc, *x, *a);
                }
            }
            wp = wp.add(C);
        }
    }
    debug_assert_eq!(wp, w.as_ptr().add(k.n_in * taps * C));
    for (c, row) in acc.iter().enumerate().take(valid) {
        for (v, a) in row.iter().enumerate() {
            L::store(out.add(c * os + q + v * L::N), *a);
        }
    }
}

/// Positions per channel-vector tile: 2 x 6 accumulators, two weight vectors and one
/// broadcast input fill 15 of AVX2's 16 registers.
const CHANNEL_POSITIONS: usize = 6;

/// Input channels per pass of the channel-vector tiles: a pass's weights (4 x 27 taps x 16
/// channels, 7 KB) and input rows stay in L1 while it walks the task's positions.
pub(super) const CHANNEL_GROUP: usize = 4;

/// One pass of [`channel_tile`]s over a task's positions: the input channels `inputs`, whose
/// packed weights start at `weights`; the first pass starts from zero, the last one writes
/// the output.
struct ChannelPass {
    weights: *const f32,
    inputs: std::ops::Range<usize>,
    first: bool,
    last: bool,
}

/// `CV` vectors of output channels times `P` positions starting at `q`, over the inputs of
/// `pass`: the weights are the vectors and every input value is broadcast, so each tap loads
/// `CV + P` values for `CV * P` FMAs (the position-vector [`tile`] of AVX2 loads `C + 1` for
/// `C`). Between passes the sums wait in `part` as `[position][channel]`; the last pass
/// transposes them into `out`.
#[inline(always)]
unsafe fn channel_tile<L: Lanes, const CV: usize, const P: usize>(
    k: &Correlation,
    pass: &ChannelPass,
    part: *mut f32,
    out: *mut f32,
    os: usize,
    valid: usize,
    q: usize,
) {
    let width = CV * L::N;
    debug_assert!(width == CHANNEL_BLOCK && valid <= width);
    let mut acc = [[L::zero(); P]; CV];
    if !pass.first {
        for (c, row) in acc.iter_mut().enumerate() {
            for (j, a) in row.iter_mut().enumerate() {
                *a = L::load(part.add(j * width + c * L::N));
            }
        }
    }
    let mut wp = pass.weights;
    for i in pass.inputs.clone() {
        let base = k.src.as_ptr().add(i * k.src_stride + q);
        for &off in k.offs {
            let p = base.add(off);
            let mut wv = [L::zero(); CV];
            for (c, v) in wv.iter_mut().enumerate() {
                *v = L::load(wp.add(c * L::N));
            }
            for j in 0..P {
                let x = L::splat(*p.add(j));
                for (row, wc) in acc.iter_mut().zip(&wv) {
                    row[j] = L::fma(*wc, x, row[j]);
                }
            }
            wp = wp.add(width);
        }
    }
    for (c, row) in acc.iter().enumerate() {
        for (j, a) in row.iter().enumerate() {
            L::store(part.add(j * width + c * L::N), *a);
        }
    }
    if pass.last {
        for c in 0..valid {
            let dst = out.add(c * os + q);
            for j in 0..P {
                *dst.add(j) = *part.add(j * width + c);
            }
        }
    }
}

/// Weight gradient of the output channels `o0..o0 + GW_CO` over positions `q0..q1`:
/// `gw[o - o0][i][t] += sum_q gy[o][q] * x[i][q + offs[t]]`. `gy` has rows `gy_stride` apart
/// (zero rows past the last channel), `offs` is padded to a multiple of `GW_TAPS` and the extra
/// taps' sums are dropped; `gw` holds the block's `valid` rows of `n_in * taps`.
pub(super) struct WeightGradBlock<'a> {
    pub gy: *const f32,
    pub gy_stride: usize,
    pub x: &'a [f32],
    pub x_stride: usize,
    pub n_in: usize,
    pub offs: &'a [usize],
    pub taps: usize,
}

impl WeightGradBlock<'_> {
    /// Adds the block's sums over `q0..q1` (whole multiples of [`LANES`]) to `gw`.
    ///
    /// # Safety
    /// `isa` runs on this CPU; `gy` holds `GW_CO` rows and `x` every channel plus the largest
    /// offset past `q1`.
    pub unsafe fn add_to(&self, isa: Isa, range: (usize, usize), gw: &mut [f32]) {
        match isa {
            Isa::Avx512 => self.add_avx512(range, gw),
            Isa::Avx2 => self.add_avx2(range, gw),
        }
    }

    /// All `GW_CO` channels in one pass: 24 accumulators of 32 registers.
    #[target_feature(enable = "avx512f")]
    unsafe fn add_avx512(&self, range: (usize, usize), gw: &mut [f32]) {
        self.add::<Avx512, GW_CO>(range, gw)
    }

    /// Half the channels per pass: 12 accumulators of 16 registers.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn add_avx2(&self, range: (usize, usize), gw: &mut [f32]) {
        self.add::<Avx2, { GW_CO / 2 }>(range, gw)
    }

    /// `CO` output channels per pass over the positions.
    #[inline(always)]
    unsafe fn add<L: Lanes, const CO: usize>(&self, (q0, q1): (usize, usize), gw: &mut [f32]) {
        let (n_in, taps) = (self.n_in, self.taps);
        let valid = gw.len() / (n_in * taps);
        let mut s0 = q0;
        while s0 < q1 {
            // Sub-ranges of GW_SUB positions keep the gradient rows in cache across channels
            // and taps.
            let s1 = (s0 + GW_SUB).min(q1);
            for c0 in (0..valid).step_by(CO) {
                let gy = self.gy.add(c0 * self.gy_stride);
                for i in 0..n_in {
                    let xp = self.x.as_ptr().add(i * self.x_stride);
                    for (tg, group) in self.offs.chunks_exact(GW_TAPS).enumerate() {
                        // A fixed-size group keeps the loaded vectors in registers.
                        let group: [usize; GW_TAPS] = std::array::from_fn(|j| group[j]);
                        let mut acc = [[L::zero(); GW_TAPS]; CO];
                        let mut q = s0;
                        while q < s1 {
                            let xv: [L::V; GW_TAPS] =
                                std::array::from_fn(|j| L::load(xp.add(group[j] + q)));
                            for (c, row) in acc.iter_mut().enumerate() {
                                let g = L::load(gy.add(c * self.gy_stride + q));
                                for (a, xv) in row.iter_mut().zip(&xv) {
                                    *a = L::fma(g, *xv, *a);
                                }
                            }
                            q += L::N;
                        }
                        for (c, row) in acc.iter().enumerate().take(valid - c0) {
                            for (j, a) in row.iter().enumerate() {
                                let t = tg * GW_TAPS + j;
                                if t < taps {
                                    gw[((c0 + c) * n_in + i) * taps + t] += L::sum(*a);
                                }
                            }
                        }
                    }
                }
            }
            s0 = s1;
        }
    }
}
