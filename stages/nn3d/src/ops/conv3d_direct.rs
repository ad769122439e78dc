//! Direct f32 conv3d on AVX-512 or AVX2 ([`Isa`]), forward and backward, without im2col.
//!
//! The input is zero-padded and split into its stride phases (one phase for stride 1, eight
//! for stride 2) on a grid of `(Dq, Hq, Wq)` voxels: `phase[pz,py,px][z,y,x] = xpad[s*z+pz, ..]`.
//! On that grid every kernel tap is one flat offset, so an output voxel at flat position `q`
//! (`z*Hq*Wq + y*Wq + x`) is `sum over channels and taps of w * x[q + offset]`: a correlation of
//! long contiguous rows. Positions with `y >= oh` or `x >= ow` are computed and dropped (about
//! 6 % extra work at 64^3, 36 % at 4^3). The same correlation with flipped taps gives the input
//! gradient (per phase); the weight gradient is a dot product of the output gradient with
//! shifted input rows.
//!
//! The kernels keep a block of output channels times a few vectors of positions in registers
//! and stream over channels and taps, so every loaded input vector feeds several FMAs. The
//! tile shapes fit the register file: 24 accumulators of AVX-512's 32 registers, 12 of AVX2's
//! 16. Results do not depend on the thread count.

use rayon::prelude::*;

use super::conv3d_cpu::Geometry;
use super::conv3d_op::ChannelGroups;
use super::simd::{Avx2, Avx512, Isa, Lanes};

/// Positions per parallel task of the correlation (a multiple of every tile width).
const CHUNK: usize = 1536;
/// Grids and position ranges are whole multiples of this many floats: the widest vector
/// (AVX-512's sixteen lanes), so of AVX2's eight too.
const LANES: usize = 16;
/// Output-channel block and tap group of the weight-gradient kernel.
const GW_CO: usize = 8;
const GW_TAPS: usize = 3;
/// Positions per pass of the weight-gradient kernel.
const GW_SUB: usize = 8192;

/// Which direct kernels run: an instruction set, and whether deep correlations take the
/// channel-vector tiles (AVX2 only: AVX-512's FMAs broadcast a weight from memory for free, so
/// its position-vector tiles load one vector per FMA row already).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kernels {
    isa: Isa,
    channel_tiles: bool,
}

impl Kernels {
    fn new(isa: Isa) -> Self {
        Self {
            isa,
            channel_tiles: isa == Isa::Avx2,
        }
    }

    /// Every variant this CPU runs (the tests compare them all with a naive conv).
    #[cfg(test)]
    fn every_supported() -> Vec<Kernels> {
        Isa::supported()
            .into_iter()
            .flat_map(|isa| {
                let k = Kernels::new(isa);
                let positions = Kernels {
                    channel_tiles: false,
                    ..k
                };
                if k.channel_tiles {
                    vec![k, positions]
                } else {
                    vec![k]
                }
            })
            .collect()
    }
}

/// The kernels that run here, if any ([`Isa::detected`]). For comparisons,
/// `FLOW_NN3D_CONV=im2col` asks for the im2col path and `FLOW_NN3D_CONV=position-tiles` for
/// the position-vector tiles only.
fn kernels() -> Option<Kernels> {
    use std::sync::OnceLock;
    static KERNELS: OnceLock<Option<Kernels>> = OnceLock::new();
    *KERNELS.get_or_init(|| {
        let conv = std::env::var("FLOW_NN3D_CONV").unwrap_or_default();
        let k = Kernels::new(Isa::detected().filter(|_| conv != "im2col")?);
        Some(Kernels {
            channel_tiles: k.channel_tiles && conv != "position-tiles",
            ..k
        })
    })
}

/// Whether this CPU runs the direct kernels (AVX-512F or AVX2 with FMA).
pub(crate) fn available() -> bool {
    kernels().is_some()
}

/// Per-thread buffers reused across forward calls: the padded grids are as large as the
/// activations, and zeroing a fresh one costs 5-10 % of a forward pass (sliding-window
/// inference). Backward passes allocate their own and empty the pool first, so a training
/// step's peak holds no idle grids. A taken buffer holds stale values: callers overwrite or
/// zero what they read.
mod scratch {
    use std::cell::RefCell;

    /// Buffers kept per thread (a forward pass uses two), and at most this many floats in all
    /// (256 MiB): a thread that ran a large net does not hold its grids forever.
    pub const KEEP: usize = 4;
    pub const MAX_FLOATS: usize = 64 << 20;

    thread_local! {
        static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `len` floats, stale contents.
    pub fn take(len: usize) -> Vec<f32> {
        let mut v = POOL
            .with(|p| {
                let mut p = p.borrow_mut();
                // The smallest that fits; growing a smaller one would copy stale values.
                let best = (0..p.len())
                    .filter(|&i| p[i].capacity() >= len)
                    .min_by_key(|&i| p[i].capacity());
                best.map(|i| p.swap_remove(i))
            })
            .unwrap_or_default();
        v.resize(len, 0.0);
        v
    }

    /// (buffers, floats) held by this thread's pool.
    #[cfg(test)]
    pub fn held() -> (usize, usize) {
        POOL.with(|p| {
            let p = p.borrow();
            (p.len(), p.iter().map(Vec::capacity).sum())
        })
    }

    /// Drops every buffer of this thread's pool (a backward pass starts: its peak should not
    /// hold the forward pass's grids).
    pub fn clear() {
        POOL.with(|p| p.borrow_mut().clear());
    }

    /// Returns a buffer to this thread's pool.
    pub fn give(v: Vec<f32>) {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            p.push(v);
            while p.len() > KEEP || p.iter().map(Vec::capacity).sum::<usize>() > MAX_FLOATS {
                // Too many: drop the smallest; too large: drop the largest.
                let i = if p.len() > KEEP {
                    (0..p.len()).min_by_key(|&i| p[i].capacity()).unwrap_or(0)
                } else {
                    (0..p.len()).max_by_key(|&i| p[i].capacity()).unwrap_or(0)
                };
                p.swap_remove(i);
            }
        });
    }
}

fn round_up(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

/// The padded, phase-split input grid of one conv geometry.
struct PhaseGrid {
    stride: [usize; 3],
    /// (Dq, Hq, Wq)
    dims: [usize; 3],
    /// Voxels of one phase, rounded up to whole vectors.
    phase_len: usize,
    phases: usize,
}

impl PhaseGrid {
    fn new(g: &Geometry) -> Self {
        let stride = [g.sd, g.sh, g.sw];
        let padded = [g.d + 2 * g.pd, g.h + 2 * g.ph, g.w + 2 * g.pw];
        let out = [g.od, g.oh, g.ow];
        let kernel = [g.kd, g.kh, g.kw];
        // Hq, Wq leave room for the taps' reach beyond the last output, so that flat offsets
        // wrap into dropped positions only; Dq covers every tap of every output plane.
        let dims: [usize; 3] = std::array::from_fn(|i| {
            padded[i]
                .div_ceil(stride[i])
                .max(out[i] + (kernel[i] - 1) / stride[i])
        });
        Self {
            stride,
            dims,
            phase_len: round_up(dims[0] * dims[1] * dims[2], LANES),
            phases: stride.iter().product(),
        }
    }

    fn plane(&self) -> usize {
        self.dims[1] * self.dims[2]
    }

    /// Floats per input channel (all phases).
    fn channel_len(&self) -> usize {
        self.phases * self.phase_len
    }

    fn phase_of(&self, [a, b, e]: [usize; 3]) -> usize {
        let [sd, sh, sw] = self.stride;
        ((a % sd) * sh + b % sh) * sw + e % sw
    }

    /// Offset of a tap inside its phase.
    fn inner(&self, [a, b, e]: [usize; 3]) -> usize {
        let [sd, sh, sw] = self.stride;
        (a / sd) * self.plane() + (b / sh) * self.dims[2] + e / sw
    }

    /// Flat offsets of every tap `(a, b, e)` in weight order, from the start of a channel.
    fn tap_offsets(&self, g: &Geometry) -> Vec<usize> {
        taps(g)
            .map(|t| self.phase_of(t) * self.phase_len + self.inner(t))
            .collect()
    }

    /// Writes batch item `x` (its `ci` channel planes `(d, h, w)`) into
    /// `out (ci, phase, Dq, Hq, Wq)` with zeros around it, each grid value once (no separate
    /// zeroing pass).
    fn pack(&self, g: &Geometry, x: &[&[f32]], out: &mut [f32]) {
        let cl = self.channel_len();
        let [sd, sh, sw] = self.stride;
        let [dq, hq, wq] = self.dims;
        out[..g.ci * cl]
            .par_chunks_mut(cl)
            .zip(x.par_iter())
            .for_each(|(dst, src)| {
                for (ph, dph) in dst.chunks_mut(self.phase_len).enumerate() {
                    let (pz, py, px) = (ph / (sh * sw), ph / sw % sh, ph % sw);
                    // Grid columns holding real voxels: pw <= sw * x' + px < pw + w.
                    let x_lo = g.pw.saturating_sub(px).div_ceil(sw).min(wq);
                    let x_hi = (g.pw + g.w).saturating_sub(px).div_ceil(sw).clamp(x_lo, wq);
                    let (body, tail) = dph.split_at_mut(dq * hq * wq);
                    tail.fill(0.0);
                    for (r, row) in body.chunks_exact_mut(wq).enumerate() {
                        let (zp, yp) = (sd * (r / hq) + pz, sh * (r % hq) + py);
                        let real =
                            (g.pd..g.pd + g.d).contains(&zp) && (g.ph..g.ph + g.h).contains(&yp);
                        if !real {
                            row.fill(0.0);
                            continue;
                        }
                        let src_row = &src[((zp - g.pd) * g.h + yp - g.ph) * g.w..][..g.w];
                        row[..x_lo].fill(0.0);
                        row[x_hi..].fill(0.0);
                        let first = sw * x_lo + px - g.pw;
                        if sw == 1 {
                            row[x_lo..x_hi].copy_from_slice(&src_row[first..first + x_hi - x_lo]);
                        } else {
                            for (v, s) in row[x_lo..x_hi]
                                .iter_mut()
                                .zip(src_row[first..].iter().step_by(sw))
                            {
                                *v = *s;
                            }
                        }
                    }
                }
            });
    }

    /// Appends the real voxels of `grid (ci, phase, Dq, Hq, Wq)` as `(ci, d, h, w)` to
    /// `outs`, the first `outs[0].1` channels to `outs[0].0` and so on (appending, not writing
    /// into a zeroed buffer, saves a pass over the gradient).
    fn unpack(&self, g: &Geometry, grid: &[f32], outs: &mut [(Vec<f32>, usize)]) {
        let mut channels = grid.chunks(self.channel_len()).take(g.ci);
        for (out, c) in outs.iter_mut() {
            for src in channels.by_ref().take(*c) {
                self.unpack_channel(g, src, out);
            }
        }
    }

    fn unpack_channel(&self, g: &Geometry, src: &[f32], out: &mut Vec<f32>) {
        let mut row_start = out.len();
        let mut last_row = usize::MAX;
        self.for_each_row(g, |row, base, sw, x0| {
            if sw == 1 {
                out.extend_from_slice(&src[base..base + g.w]);
                return;
            }
            if row != last_row {
                // First phase of a new row: the row's voxels come phase by phase.
                last_row = row;
                row_start = out.len();
                out.resize(row_start + g.w, 0.0);
            }
            let dst_row = &mut out[row_start..row_start + g.w];
            for (v, s) in dst_row[x0..].iter_mut().step_by(sw).zip(&src[base..]) {
                *v = *s;
            }
        });
    }

    /// Calls `f(row, base, sw, x0)` for every input row `row = z * h + y` and every x-phase:
    /// the row's voxels `x0, x0 + sw, ..` sit at `base, base + 1, ..` of a channel's grid.
    fn for_each_row(&self, g: &Geometry, mut f: impl FnMut(usize, usize, usize, usize)) {
        let [sd, sh, sw] = self.stride;
        for z in 0..g.d {
            let zp = z + g.pd;
            for y in 0..g.h {
                let yp = y + g.ph;
                let phase_zy = ((zp % sd) * sh + yp % sh) * sw;
                let at = (zp / sd) * self.plane() + (yp / sh) * self.dims[2];
                for px in 0..sw {
                    // First x whose padded position x + pw has phase px.
                    let x0 = (px + sw - g.pw % sw) % sw;
                    if x0 >= g.w {
                        continue;
                    }
                    let base = (phase_zy + px) * self.phase_len + at + (x0 + g.pw) / sw;
                    f(z * g.h + y, base, sw, x0);
                }
            }
        }
    }
}

/// Every tap `(a, b, e)` of the kernel, in weight order.
fn taps(g: &Geometry) -> impl Iterator<Item = [usize; 3]> + '_ {
    (0..g.kd).flat_map(move |a| (0..g.kh).flat_map(move |b| (0..g.kw).map(move |e| [a, b, e])))
}

/// Output channels in blocks of `size` (a kernel width: 1, 2, 3, 4, 6, 8, 12, or
/// [`CHANNEL_BLOCK`] for the channel-vector tile) starting at `start`, of which `valid` exist.
#[derive(Clone, Copy, Debug)]
struct Block {
    start: usize,
    size: usize,
    valid: usize,
}

/// Output channels per block of the AVX2 channel-vector tile ([`channel_tile`]).
const CHANNEL_BLOCK: usize = 16;

/// The blocks of `n_out` output channels for a correlation over `depth` = inputs x taps.
/// With channel-vector tiles, deep enough correlations take whole blocks of
/// [`CHANNEL_BLOCK`] channels; what remains takes position-vector tiles.
fn blocks(n_out: usize, kernels: Kernels, depth: usize) -> Vec<Block> {
    let mut out = Vec::new();
    let mut start = 0;
    if kernels.channel_tiles && depth >= CHANNEL_MIN_DEPTH {
        while n_out - start >= CHANNEL_BLOCK {
            out.push(Block {
                start,
                size: CHANNEL_BLOCK,
                valid: CHANNEL_BLOCK,
            });
            start += CHANNEL_BLOCK;
        }
    }
    while start < n_out {
        let rem = n_out - start;
        let size = if rem.is_multiple_of(12) || (rem > 12 && !rem.is_multiple_of(8)) {
            12
        } else if rem >= 8 {
            8
        } else {
            *[6, 4, 3, 2, 1].iter().find(|&&s| s <= rem).unwrap_or(&1)
        };
        let valid = size.min(rem);
        out.push(Block { start, size, valid });
        start += valid;
    }
    out
}

/// Weights of one correlation, packed per output block as `[in][tap][block lane]`.
struct PackedWeights {
    blocks: Vec<(Block, Vec<f32>)>,
}

impl PackedWeights {
    /// `weight(o, i, t)` for output `o < n_out`, input `i < n_in`, tap `t < taps`. Blocks
    /// are packed in parallel, each written in order (a deep layer's millions of weights are
    /// packed on every call).
    fn new(
        kernels: Kernels,
        n_out: usize,
        n_in: usize,
        taps: usize,
        weight: impl Fn(usize, usize, usize) -> f32 + Sync,
    ) -> Self {
        let blocks = blocks(n_out, kernels, n_in * taps)
            .into_par_iter()
            .map(|b| {
                let mut p = Vec::with_capacity(n_in * taps * b.size);
                for i in 0..n_in {
                    for t in 0..taps {
                        p.extend((0..b.size).map(|c| {
                            if c < b.valid {
                                weight(b.start + c, i, t)
                            } else {
                                0.0
                            }
                        }));
                    }
                }
                (b, p)
            })
            .collect();
        Self { blocks }
    }
}

/// One correlation: `out[o][q] = sum_i sum_t w[o][i][t] * src[i * src_stride + offs[t] + q]` for
/// `q` in `0..len` (a multiple of 16), rows of `out` `out_stride` apart.
struct Correlation<'a> {
    isa: Isa,
    src: &'a [f32],
    src_stride: usize,
    n_in: usize,
    offs: &'a [usize],
    weights: &'a PackedWeights,
    len: usize,
    /// Input channels per pass of the channel-vector tiles ([`CHANNEL_GROUP`] where the
    /// input is one grid; all of them for a stride's phase grids, where passes measured
    /// slower).
    group: usize,
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
    fn run(&self, out: &mut [f32], out_stride: usize) {
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
                // tasks write disjoint (rows, positions) ranges; `isa` is one this CPU runs.
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
    /// channel-vector tiles, [`CHANNEL_GROUP`] input channels per pass; `partial` holds the
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

/// Least inputs x taps for the channel-vector tile: below it, writing the transposed tile
/// costs more than the loads it saves.
const CHANNEL_MIN_DEPTH: usize = 32;
/// Positions per channel-vector tile: 2 x 6 accumulators, two weight vectors and one
/// broadcast input fill 15 of AVX2's 16 registers.
const CHANNEL_POSITIONS: usize = 6;

/// Input channels per pass of the channel-vector tiles: a pass's weights (4 x 27 taps x 16
/// channels, 7 KB) and input rows stay in L1 while it walks the task's positions.
const CHANNEL_GROUP: usize = 4;

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
struct WeightGradBlock<'a> {
    gy: *const f32,
    gy_stride: usize,
    x: &'a [f32],
    x_stride: usize,
    n_in: usize,
    offs: &'a [usize],
    taps: usize,
}

impl WeightGradBlock<'_> {
    /// Adds the block's sums over `q0..q1` (whole multiples of [`LANES`]) to `gw`.
    ///
    /// # Safety
    /// `isa` runs on this CPU; `gy` holds `GW_CO` rows and `x` every channel plus the largest
    /// offset past `q1`.
    unsafe fn add_to(&self, isa: Isa, range: (usize, usize), gw: &mut [f32]) {
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

/// y = conv3d(x, w) for f32; x `(n, ci, d, h, w)` in channel groups, w `(co, ci, kd, kh, kw)`.
/// Callers check [`available`].
pub(crate) fn forward(g: &Geometry, x: ChannelGroups<f32>, w: &[f32]) -> Vec<f32> {
    forward_on(kernels().expect("direct conv kernels on this CPU"), g, x, w)
}

/// [`forward`] with `kernels` (ones this CPU runs).
fn forward_on(kernels: Kernels, g: &Geometry, x: ChannelGroups<f32>, w: &[f32]) -> Vec<f32> {
    let isa = kernels.isa;
    let grid = PhaseGrid::new(g);
    let offs = grid.tap_offsets(g);
    let taps = offs.len();
    let k = g.ci * taps;
    let weights = PackedWeights::new(kernels, g.co, g.ci, taps, |o, i, t| w[o * k + i * taps + t]);
    let plane = grid.plane();
    let len = round_up(g.od * plane, LANES);
    let max_off = offs.iter().copied().max().unwrap_or(0);
    let mut xq = input_grid(g, &grid, max_off + len);
    let mut yq = scratch::take(g.co * len); // every position is written
    let ovol = g.od * g.oh * g.ow;
    let mut out = Vec::with_capacity(g.n * g.co * ovol);
    for n in 0..g.n {
        grid.pack(g, &x.item(n), &mut xq);
        Correlation {
            isa,
            src: &xq,
            src_stride: grid.channel_len(),
            n_in: g.ci,
            offs: &offs,
            weights: &weights,
            len,
            group: if grid.phases == 1 {
                CHANNEL_GROUP
            } else {
                g.ci
            },
        }
        .run(&mut yq, len);
        // Appended row by row: no zeroed output buffer to write over.
        for src in yq.chunks(len).take(g.co) {
            for z in 0..g.od {
                for y in 0..g.oh {
                    out.extend_from_slice(&src[z * plane + y * grid.dims[2]..][..g.ow]);
                }
            }
        }
    }
    scratch::give(xq);
    scratch::give(yq);
    out
}

/// A buffer for the packed input with `slack` floats after the last channel, zeroed
/// (positions that only dropped outputs read must still be finite: the weight gradient
/// multiplies them by zero).
fn input_grid(g: &Geometry, grid: &PhaseGrid, slack: usize) -> Vec<f32> {
    let body = g.ci * grid.channel_len();
    let mut v = scratch::take(body + slack);
    v[body..].fill(0.0);
    v
}

/// Gradients of conv3d (f32) with respect to the input (one buffer per channel group of `x`)
/// and the weight. Callers check [`available`].
pub(crate) fn backward(
    g: &Geometry,
    x: ChannelGroups<f32>,
    w: &[f32],
    gy: &[f32],
) -> (Vec<Vec<f32>>, Vec<f32>) {
    backward_on(
        kernels().expect("direct conv kernels on this CPU"),
        g,
        x,
        w,
        gy,
    )
}

/// [`backward`] with `kernels` (ones this CPU runs).
fn backward_on(
    kernels: Kernels,
    g: &Geometry,
    x: ChannelGroups<f32>,
    w: &[f32],
    gy: &[f32],
) -> (Vec<Vec<f32>>, Vec<f32>) {
    let isa = kernels.isa;
    scratch::clear();
    let grid = PhaseGrid::new(g);
    let tap_list: Vec<[usize; 3]> = taps(g).collect();
    let offs = grid.tap_offsets(g);
    let taps = offs.len();
    let k = g.ci * taps;
    let plane = grid.plane();
    let len = round_up(g.od * plane, LANES);
    let max_off = offs.iter().copied().max().unwrap_or(0);
    // The output gradient on the grid, shifted by the largest inner tap offset `m` so that
    // the flipped taps of the input gradient read at non-negative offsets.
    let inner: Vec<usize> = tap_list.iter().map(|&t| grid.inner(t)).collect();
    // `m` and the row stride are whole vectors, so the weight gradient's loads of it align.
    let m = round_up(inner.iter().copied().max().unwrap_or(0), LANES);
    let gy_stride = m + round_up(grid.phase_len.max(len), LANES);
    let co_pad = round_up(g.co, GW_CO);
    let mut gq = vec![0.0f32; co_pad * gy_stride]; // written whole per batch item
    let mut xq = vec![0.0f32; g.ci * grid.channel_len() + max_off + len];
    let mut gxq = vec![0.0f32; g.ci * grid.channel_len()]; // written whole per batch item
    let ovol = g.od * g.oh * g.ow;
    let plane_vol = g.d * g.h * g.w;
    let mut gx: Vec<(Vec<f32>, usize)> = x
        .channels()
        .map(|c| (Vec::with_capacity(g.n * c * plane_vol), c))
        .collect();
    let mut gw = vec![0.0f32; g.co * k];

    // Input-gradient weights per phase: out = input channel, in = output channel.
    let per_phase: Vec<(Vec<usize>, PackedWeights)> = (0..grid.phases)
        .map(|ph| {
            let sel: Vec<usize> = (0..taps)
                .filter(|&t| grid.phase_of(tap_list[t]) == ph)
                .collect();
            let offs: Vec<usize> = sel.iter().map(|&t| m - inner[t]).collect();
            let weights = PackedWeights::new(kernels, g.ci, g.co, sel.len(), |c, o, j| {
                w[o * k + c * taps + sel[j]]
            });
            (offs, weights)
        })
        .collect();
    let mut gw_offs = offs.clone();
    gw_offs.resize(round_up(taps, GW_TAPS), 0);
    // Position ranges of the weight gradient: fixed by the shape, so sums do not depend on
    // the thread count.
    let ranges = (len / 8192).clamp(1, 8);
    let step = round_up(len.div_ceil(ranges), LANES);

    for n in 0..g.n {
        // Each row written once: zeros before `m`, the gradient rows padded with zeros to the
        // grid's width, zeros after (and whole zero rows up to `co_pad`).
        let src = &gy[n * g.co * ovol..(n + 1) * g.co * ovol];
        let [_, hq, wq] = grid.dims;
        gq.par_chunks_mut(gy_stride)
            .enumerate()
            .for_each(|(o, dst)| {
                if o >= g.co {
                    dst.fill(0.0);
                    return;
                }
                let s = &src[o * ovol..(o + 1) * ovol];
                let (head, rest) = dst.split_at_mut(m);
                head.fill(0.0);
                let (body, tail) = rest.split_at_mut(g.od * plane);
                tail.fill(0.0);
                for (r, row) in body.chunks_exact_mut(wq).enumerate() {
                    let (z, y) = (r / hq, r % hq);
                    if y < g.oh {
                        row[..g.ow].copy_from_slice(&s[(z * g.oh + y) * g.ow..][..g.ow]);
                        row[g.ow..].fill(0.0);
                    } else {
                        row.fill(0.0);
                    }
                }
            });
        // Input gradient, phase by phase; every position of a phase with taps is written.
        if per_phase.iter().any(|(offs, _)| offs.is_empty()) {
            gxq.fill(0.0);
        }
        let cl = grid.channel_len();
        for (ph, (offs, weights)) in per_phase.iter().enumerate() {
            if offs.is_empty() {
                continue;
            }
            let corr = Correlation {
                isa,
                src: &gq,
                src_stride: gy_stride,
                n_in: g.co,
                offs,
                weights,
                len: grid.phase_len,
                group: CHANNEL_GROUP,
            };
            corr.run(&mut gxq[ph * grid.phase_len..], cl);
        }
        grid.unpack(g, &gxq, &mut gx);

        // Weight gradient.
        grid.pack(g, &x.item(n), &mut xq);
        let partials: Vec<Vec<f32>> = (0..len.div_ceil(step))
            .into_par_iter()
            .map(|r| {
                let range = (r * step, ((r + 1) * step).min(len));
                let mut part = vec![0.0f32; g.co * k];
                part.par_chunks_mut(GW_CO * k)
                    .enumerate()
                    .for_each(|(blk, rows)| {
                        let block = WeightGradBlock {
                            // SAFETY: gq holds co_pad rows of gy_stride >= m + len.
                            gy: unsafe { gq.as_ptr().add(m + blk * GW_CO * gy_stride) },
                            gy_stride,
                            x: &xq,
                            x_stride: cl,
                            n_in: g.ci,
                            offs: &gw_offs,
                            taps,
                        };
                        // SAFETY: as above, and xq holds every channel plus max_off + len;
                        // `isa` is one this CPU runs.
                        unsafe { block.add_to(isa, range, rows) }
                    });
                part
            })
            .collect();
        for part in &partials {
            for (d, s) in gw.iter_mut().zip(part) {
                *d += *s;
            }
        }
    }
    (gx.into_iter().map(|(v, _)| v).collect(), gw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_buffers_are_reused_and_bounded() {
        let a = scratch::take(1000);
        let ptr = a.as_ptr();
        scratch::give(a);
        let b = scratch::take(600);
        assert_eq!(
            (b.as_ptr(), b.len()),
            (ptr, 600),
            "the fitting buffer is reused"
        );
        scratch::give(b);
        for _ in 0..10 {
            scratch::give(vec![0.0; 10]);
        }
        let (n, floats) = scratch::held();
        assert!(n <= scratch::KEEP);
        assert!(floats >= 1000, "the largest buffers stay");
        scratch::give(Vec::with_capacity(scratch::MAX_FLOATS));
        assert!(scratch::held().1 <= scratch::MAX_FLOATS);
        scratch::clear();
        assert_eq!(scratch::held(), (0, 0));
    }

    /// Naive conv3d in f64: the output, the input gradient and the weight gradient of
    /// `sum(y * gy)`.
    fn naive(g: &Geometry, x: &[f32], w: &[f32], gy: &[f32]) -> [Vec<f64>; 3] {
        let (ovol, ivol, nt) = (g.od * g.oh * g.ow, g.d * g.h * g.w, g.kd * g.kh * g.kw);
        let mut y = vec![0.0f64; g.n * g.co * ovol];
        let mut gx = vec![0.0f64; g.n * g.ci * ivol];
        let mut gw = vec![0.0f64; g.co * g.ci * nt];
        for n in 0..g.n {
            for o in 0..g.co {
                for (q, [z, yy, xx]) in (0..g.od)
                    .flat_map(|z| {
                        (0..g.oh).flat_map(move |yy| (0..g.ow).map(move |xx| [z, yy, xx]))
                    })
                    .enumerate()
                {
                    let at = (n * g.co + o) * ovol + q;
                    for i in 0..g.ci {
                        for (t, [a, b, e]) in taps(g).enumerate() {
                            let zi = (z * g.sd + a) as isize - g.pd as isize;
                            let yi = (yy * g.sh + b) as isize - g.ph as isize;
                            let xi = (xx * g.sw + e) as isize - g.pw as isize;
                            if zi < 0 || yi < 0 || xi < 0 {
                                continue;
                            }
                            let (zi, yi, xi) = (zi as usize, yi as usize, xi as usize);
                            if zi >= g.d || yi >= g.h || xi >= g.w {
                                continue;
                            }
                            let xa = (n * g.ci + i) * ivol + (zi * g.h + yi) * g.w + xi;
                            let wa = (o * g.ci + i) * nt + t;
                            y[at] += f64::from(w[wa]) * f64::from(x[xa]);
                            gx[xa] += f64::from(w[wa]) * f64::from(gy[at]);
                            gw[wa] += f64::from(gy[at]) * f64::from(x[xa]);
                        }
                    }
                }
            }
        }
        [y, gx, gw]
    }

    fn geometry(
        n: usize,
        ci: usize,
        co: usize,
        dims: [usize; 3],
        k: usize,
        s: [usize; 3],
    ) -> Geometry {
        let p = k / 2;
        let out = |i: usize| (dims[i] + 2 * p - k) / s[i] + 1;
        Geometry {
            n,
            ci,
            d: dims[0],
            h: dims[1],
            w: dims[2],
            co,
            kd: k,
            kh: k,
            kw: k,
            sd: s[0],
            sh: s[1],
            sw: s[2],
            pd: p,
            ph: p,
            pw: p,
            od: out(0),
            oh: out(1),
            ow: out(2),
        }
    }

    /// Forward and both gradients on every instruction set this CPU runs, against the naive
    /// loops, over channel counts that take every block size and odd grids (dropped
    /// positions, partial vectors), stride 1 and 2, two input groups.
    #[test]
    fn kernels_match_naive_conv_on_every_instruction_set() {
        let mut state = 0x2545_f491_u64;
        let mut rand = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect()
        };
        let cases = [
            geometry(2, 3, 5, [5, 6, 7], 3, [1, 1, 1]),
            geometry(1, 4, 12, [4, 5, 9], 3, [2, 2, 2]),
            geometry(1, 2, 8, [7, 3, 5], 3, [1, 2, 1]),
            geometry(1, 5, 26, [3, 4, 4], 1, [1, 1, 1]),
            geometry(2, 1, 3, [9, 9, 9], 3, [2, 1, 2]),
            // Blocks of 16 channels (AVX2's channel-vector tile), forward and input gradient.
            geometry(1, 20, 35, [4, 5, 6], 3, [1, 1, 1]),
            geometry(2, 33, 17, [5, 4, 7], 3, [2, 1, 2]),
        ];
        for kernels in Kernels::every_supported() {
            for g in &cases {
                let (ivol, ovol) = (g.d * g.h * g.w, g.od * g.oh * g.ow);
                let x = rand(g.n * g.ci * ivol);
                let w = rand(g.co * g.ci * g.kd * g.kh * g.kw);
                let gy = rand(g.n * g.co * ovol);
                let [y_ref, gx_ref, gw_ref] = naive(g, &x, &w, &gy);
                // The input as two channel groups (the first channel, then the rest).
                let first: Vec<f32> = (0..g.n)
                    .flat_map(|n| x[n * g.ci * ivol..][..ivol].to_vec())
                    .collect();
                let rest: Vec<f32> = (0..g.n)
                    .flat_map(|n| x[(n * g.ci + 1) * ivol..(n + 1) * g.ci * ivol].to_vec())
                    .collect();
                let parts: Vec<&[f32]> = if g.ci > 1 {
                    vec![&first, &rest]
                } else {
                    vec![&x]
                };
                let groups = ChannelGroups::new(&parts, g.n, ivol);
                let y = forward_on(kernels, g, groups, &w);
                let (gx_groups, gw) = backward_on(kernels, g, groups, &w, &gy);
                let gx: Vec<f32> = if g.ci > 1 {
                    (0..g.n)
                        .flat_map(|n| {
                            let mut item = gx_groups[0][n * ivol..][..ivol].to_vec();
                            item.extend_from_slice(
                                &gx_groups[1][n * (g.ci - 1) * ivol..][..(g.ci - 1) * ivol],
                            );
                            item
                        })
                        .collect()
                } else {
                    gx_groups[0].clone()
                };
                for (what, got, want) in [
                    ("y", &y, &y_ref),
                    ("gx", &gx, &gx_ref),
                    ("gw", &gw, &gw_ref),
                ] {
                    assert_eq!(got.len(), want.len(), "{what} {kernels:?} {g:?}");
                    for (k, (&a, &b)) in got.iter().zip(want.iter()).enumerate() {
                        assert!(
                            (f64::from(a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                            "{what}[{k}] {a} vs {b} on {kernels:?}, {g:?}"
                        );
                    }
                }
            }
        }
    }

    /// Both AVX2 tilings sum every output in the same order (inputs, then taps, one FMA
    /// each), so switching tiles changes no bit of a trained model.
    #[test]
    fn channel_tiles_give_the_position_tiles_bits() {
        if !Isa::supported().contains(&Isa::Avx2) {
            return;
        }
        let channels = Kernels::new(Isa::Avx2);
        let positions = Kernels {
            channel_tiles: false,
            ..channels
        };
        let mut state = 7u64;
        let mut rand = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect()
        };
        for g in [
            geometry(2, 24, 40, [6, 7, 9], 3, [1, 1, 1]),
            geometry(1, 40, 32, [8, 6, 7], 3, [2, 2, 2]),
        ] {
            let (ivol, ovol) = (g.d * g.h * g.w, g.od * g.oh * g.ow);
            let x = rand(g.n * g.ci * ivol);
            let w = rand(g.co * g.ci * g.kd * g.kh * g.kw);
            let gy = rand(g.n * g.co * ovol);
            let parts: Vec<&[f32]> = vec![&x];
            let groups = ChannelGroups::new(&parts, g.n, ivol);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let run = |k: Kernels| {
                let y = forward_on(k, &g, groups, &w);
                let (gx, gw) = backward_on(k, &g, groups, &w, &gy);
                (bits(&y), bits(&gx[0]), bits(&gw))
            };
            assert!(run(channels) == run(positions), "{g:?}");
        }
    }

    #[test]
    fn blocks_cover_every_channel_once() {
        let positions = Kernels::new(Isa::Avx512);
        let channels = Kernels::new(Isa::Avx2);
        for (kernels, depth) in [(positions, 500), (channels, 27), (channels, 500)] {
            let channel_tiles = kernels.channel_tiles && depth >= CHANNEL_MIN_DEPTH;
            for n in 1..70 {
                let bs = blocks(n, kernels, depth);
                let mut next = 0;
                for b in &bs {
                    assert_eq!(b.start, next);
                    assert!(b.valid >= 1 && b.valid <= b.size);
                    if b.size == CHANNEL_BLOCK {
                        assert!(
                            channel_tiles && b.valid == b.size,
                            "{kernels:?} {depth} {n}"
                        );
                    } else {
                        assert!([1, 2, 3, 4, 6, 8, 12].contains(&b.size));
                    }
                    next += b.valid;
                }
                assert_eq!(next, n);
                let whole = bs.iter().filter(|b| b.size == CHANNEL_BLOCK).count();
                assert_eq!(whole, if channel_tiles { n / CHANNEL_BLOCK } else { 0 });
            }
        }
    }
}
