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
//! The kernels ([`correlation`]) keep a block of output channels times a few positions in
//! registers and stream over channels and taps, so every loaded value feeds several FMAs. The
//! tile shapes fit the register file: 24 accumulators of AVX-512's 32 registers, 12 of AVX2's
//! 16. Results do not depend on the thread count, nor on which tiles ran.

use rayon::prelude::*;

use super::conv3d_cpu::Geometry;
use super::conv3d_op::ChannelGroups;
use super::simd::Isa;
use correlation::{Correlation, WeightGradBlock, CHANNEL_GROUP};

mod correlation;

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
/// [`CHANNEL_BLOCK`] for the channel-vector tiles) starting at `start`, of which `valid` exist.
#[derive(Clone, Copy, Debug)]
struct Block {
    start: usize,
    size: usize,
    valid: usize,
}

/// Output channels per block of the AVX2 channel-vector tiles ([`correlation`]).
const CHANNEL_BLOCK: usize = 16;
/// Least inputs x taps for the channel-vector tiles: below it, writing the transposed tile
/// costs more than the loads it saves.
const CHANNEL_MIN_DEPTH: usize = 32;

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
mod tests;
