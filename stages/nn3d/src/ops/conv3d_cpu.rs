//! Fast CPU conv3d kernels (the candle ops are in `conv3d_op`). f32 on AVX-512 or AVX2 goes to
//! the direct kernels of `conv3d_direct`; everything else (f64, other CPUs) to im2col over a
//! block of output depth slices, one gemm per block (the `gemm` crate, single-threaded per task), rayon across (batch, block)
//! tasks. Backward recomputes the im2col block, accumulates the weight gradient per task
//! and scatters the column gradient back (col2im) into a task-local input-gradient slab; slabs
//! and weight partials are reduced in task order, so results are deterministic.

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor, WithDType};
use gemm::Parallelism;
use rayon::prelude::*;

use super::conv3d::Conv3dParams;

/// Sizes of one conv3d call (input, kernel, stride, padding, output).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub n: usize,
    pub ci: usize,
    pub d: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub kd: usize,
    pub kh: usize,
    pub kw: usize,
    pub sd: usize,
    pub sh: usize,
    pub sw: usize,
    pub pd: usize,
    pub ph: usize,
    pub pw: usize,
    pub od: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Upper bound on the elements of one im2col block (64 MiB of f32).
const MAX_COL_ELEMS: usize = 16 << 20;
/// Below this many output channels the gemms put the spatial axis on the kernel's rows.
const NARROW_CO: usize = 32;
/// Preferred number of gemm columns per task.
const TARGET_COLS: usize = 4096;

impl Geometry {
    pub fn new(x: &[usize], wt: &[usize], p: &Conv3dParams) -> Result<Self> {
        let (&[n, ci, d, h, w], &[co, ci_w, kd, kh, kw]) = (x, wt) else {
            bail!("conv3d expects 5D input and weight, got {x:?} and {wt:?}")
        };
        if ci != ci_w {
            bail!("conv3d: input has {ci} channels but the weight expects {ci_w}")
        }
        let [sd, sh, sw] = p.stride;
        let [pd, ph, pw] = p.padding;
        let [od, oh, ow] = p.output_dims([d, h, w], [kd, kh, kw])?;
        Ok(Self {
            n,
            ci,
            d,
            h,
            w,
            co,
            kd,
            kh,
            kw,
            sd,
            sh,
            sw,
            pd,
            ph,
            pw,
            od,
            oh,
            ow,
        })
    }

    pub fn k(&self) -> usize {
        self.ci * self.kd * self.kh * self.kw
    }

    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }

    /// Whether the direct (AVX-512 or AVX2) kernels take this f32 conv (every size non-zero).
    pub fn direct(&self) -> bool {
        let sizes = [
            self.n, self.ci, self.co, self.d, self.h, self.w, self.od, self.oh, self.ow,
        ];
        #[cfg(target_arch = "x86_64")]
        {
            sizes.iter().all(|&s| s > 0) && super::conv3d_direct::available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = sizes;
            false
        }
    }

    /// (batch index, first output depth, end output depth) for every task.
    fn tasks(&self) -> Vec<(usize, usize, usize)> {
        let threads = rayon::current_num_threads().max(1);
        let ohw = self.ohw().max(1);
        let mut nb = (TARGET_COLS / ohw).max(1);
        nb = nb.min((MAX_COL_ELEMS / (self.k() * ohw).max(1)).max(1));
        let blocks_per_item = threads.div_ceil(self.n.max(1));
        nb = nb
            .min(self.od.div_ceil(blocks_per_item).max(1))
            .min(self.od.max(1));
        let mut tasks = Vec::new();
        for n in 0..self.n {
            let mut o0 = 0;
            while o0 < self.od {
                let o1 = (o0 + nb).min(self.od);
                tasks.push((n, o0, o1));
                o0 = o1;
            }
        }
        tasks
    }

    /// Input depth range touched by output depths [o0, o1).
    fn depth_span(&self, o0: usize, o1: usize) -> (usize, usize) {
        let lo = (o0 * self.sd).saturating_sub(self.pd);
        let hi = ((o1 - 1) * self.sd + self.kd)
            .saturating_sub(self.pd)
            .min(self.d);
        (lo, hi.max(lo))
    }
}

/// Output positions `o` in `0..out_len` for which `o*stride + k - pad` lies in `0..in_len`.
fn valid_range(
    out_len: usize,
    stride: usize,
    pad: usize,
    k: usize,
    in_len: usize,
) -> (usize, usize) {
    let lo = if pad > k {
        (pad - k).div_ceil(stride)
    } else {
        0
    };
    let hi = if in_len + pad > k {
        (in_len + pad - k).div_ceil(stride).min(out_len)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Fills `col` (rows = (c, a, b, e), columns = (o - o0, y, x)) from batch item `n`.
fn im2col<T: WithDType>(g: &Geometry, x: &[T], n: usize, o0: usize, o1: usize, col: &mut [T]) {
    let zero = T::from_f64(0.0);
    let ohw = g.ohw();
    let cols = (o1 - o0) * ohw;
    let plane = g.h * g.w;
    let vol = g.d * plane;
    for c in 0..g.ci {
        let xc = &x[(n * g.ci + c) * vol..][..vol];
        for a in 0..g.kd {
            for b in 0..g.kh {
                let (y0, y1) = valid_range(g.oh, g.sh, g.ph, b, g.h);
                for e in 0..g.kw {
                    let (x0, x1) = valid_range(g.ow, g.sw, g.pw, e, g.w);
                    let r = ((c * g.kd + a) * g.kh + b) * g.kw + e;
                    let row = &mut col[r * cols..(r + 1) * cols];
                    for o in o0..o1 {
                        let seg = &mut row[(o - o0) * ohw..(o - o0 + 1) * ohw];
                        let id = (o * g.sd + a) as isize - g.pd as isize;
                        if id < 0 || id as usize >= g.d {
                            seg.fill(zero);
                            continue;
                        }
                        let xp = &xc[id as usize * plane..][..plane];
                        seg[..y0 * g.ow].fill(zero);
                        seg[y1 * g.ow..].fill(zero);
                        for y in y0..y1 {
                            let iy = y * g.sh + b - g.ph;
                            let xr = &xp[iy * g.w..][..g.w];
                            let out = &mut seg[y * g.ow..(y + 1) * g.ow];
                            out[..x0].fill(zero);
                            out[x1..].fill(zero);
                            if g.sw == 1 {
                                let s = x0 + e - g.pw;
                                out[x0..x1].copy_from_slice(&xr[s..s + (x1 - x0)]);
                            } else {
                                for (xo, v) in out[x0..x1].iter_mut().enumerate() {
                                    *v = xr[(xo + x0) * g.sw + e - g.pw];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column gradient back into `slab`, laid out `(ci, depth dlo..dlo+span, h, w)`.
fn col2im<T: WithDType>(
    g: &Geometry,
    col: &[T],
    o0: usize,
    o1: usize,
    dlo: usize,
    span: usize,
    slab: &mut [T],
) {
    let ohw = g.ohw();
    let cols = (o1 - o0) * ohw;
    let plane = g.h * g.w;
    for c in 0..g.ci {
        let sc = &mut slab[c * span * plane..(c + 1) * span * plane];
        for a in 0..g.kd {
            for b in 0..g.kh {
                let (y0, y1) = valid_range(g.oh, g.sh, g.ph, b, g.h);
                for e in 0..g.kw {
                    let (x0, x1) = valid_range(g.ow, g.sw, g.pw, e, g.w);
                    let r = ((c * g.kd + a) * g.kh + b) * g.kw + e;
                    let row = &col[r * cols..(r + 1) * cols];
                    for o in o0..o1 {
                        let id = (o * g.sd + a) as isize - g.pd as isize;
                        if id < 0 || id as usize >= g.d {
                            continue;
                        }
                        let seg = &row[(o - o0) * ohw..(o - o0 + 1) * ohw];
                        let sp = &mut sc[(id as usize - dlo) * plane..][..plane];
                        for y in y0..y1 {
                            let iy = y * g.sh + b - g.ph;
                            let xr = &mut sp[iy * g.w..][..g.w];
                            let src = &seg[y * g.ow..(y + 1) * g.ow];
                            if g.sw == 1 {
                                let s = x0 + e - g.pw;
                                for (dst, v) in xr[s..s + (x1 - x0)].iter_mut().zip(&src[x0..x1]) {
                                    *dst += *v;
                                }
                            } else {
                                for (xo, v) in src[x0..x1].iter().enumerate() {
                                    xr[(xo + x0) * g.sw + e - g.pw] += *v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// gemm's own threading when fewer tasks than threads run at once.
pub(crate) fn gemm_parallelism(tasks: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if tasks >= threads || threads <= 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads.div_ceil(tasks.max(1)))
    }
}

/// y = conv3d(x, w); x `(n, ci, d, h, w)`, w `(co, ci, kd, kh, kw)`, both contiguous.
pub(crate) fn forward<T: WithDType>(g: &Geometry, x: &[T], w: &[T]) -> Vec<T> {
    let zero = T::from_f64(0.0);
    let one = T::from_f64(1.0);
    let (k, ohw) = (g.k(), g.ohw());
    let mut out = vec![zero; g.n * g.co * g.od * ohw];
    let tasks = g.tasks();
    let par = gemm_parallelism(tasks.len());
    let out_ptr = SendPtr(out.as_mut_ptr());
    tasks
        .par_iter()
        .for_each_init(Vec::new, |col: &mut Vec<T>, &(n, o0, o1)| {
            let cols = (o1 - o0) * ohw;
            col.resize(k * cols, zero);
            im2col(g, x, n, o0, o1, col);
            // SAFETY: tasks write disjoint output columns (n, :, o0..o1, :, :); the strides
            // describe matrices that lie inside `out`, `w` and `col`.
            unsafe {
                let dst = out_ptr.get().add((n * g.co * g.od + o0) * ohw);
                let (rows_co, cs_co) = ((g.od * ohw) as isize, 1);
                if g.co >= NARROW_CO {
                    // y (co, cols) = w (co, k) * col (k, cols); gemm takes (column, row) strides.
                    gemm::gemm(
                        g.co,
                        cols,
                        k,
                        dst,
                        cs_co,
                        rows_co,
                        false,
                        w.as_ptr(),
                        1,
                        k as isize,
                        col.as_ptr(),
                        1,
                        cols as isize,
                        zero,
                        one,
                        false,
                        false,
                        false,
                        par,
                    );
                } else {
                    // Few output channels: y^T (cols, co) = col^T (cols, k) * w^T (k, co), so
                    // the long axis fills the rows of gemm's micro-kernel.
                    gemm::gemm(
                        cols,
                        g.co,
                        k,
                        dst,
                        rows_co,
                        cs_co,
                        false,
                        col.as_ptr(),
                        cols as isize,
                        1,
                        w.as_ptr(),
                        k as isize,
                        1,
                        zero,
                        one,
                        false,
                        false,
                        false,
                        par,
                    );
                }
            }
        });
    out
}

/// One backward task's share: (batch item, first input depth, depth span, the input-gradient
/// slab over that span, the weight-gradient partial).
type TaskPartial<T> = (usize, usize, usize, Vec<T>, Vec<T>);

/// Gradients of conv3d with respect to the input and the weight.
pub(crate) fn backward<T: WithDType>(g: &Geometry, x: &[T], w: &[T], gy: &[T]) -> (Vec<T>, Vec<T>) {
    let zero = T::from_f64(0.0);
    let one = T::from_f64(1.0);
    let (k, ohw) = (g.k(), g.ohw());
    let plane = g.h * g.w;
    let tasks = g.tasks();
    let par = gemm_parallelism(tasks.len());
    let partials: Vec<TaskPartial<T>> = tasks
        .par_iter()
        .map_init(Vec::new, |col: &mut Vec<T>, &(n, o0, o1)| {
            let cols = (o1 - o0) * ohw;
            col.resize(k * cols, zero);
            im2col(g, x, n, o0, o1, col);
            let gy_block = &gy[(n * g.co * g.od + o0) * ohw..];
            let mut gw = vec![zero; g.co * k];
            // SAFETY: all matrices lie inside their slices (row stride od*ohw over co rows).
            unsafe {
                let gy_rows = (g.od * ohw) as isize;
                if g.co >= NARROW_CO {
                    // gw (co, k) = gy_block (co, cols) * col^T (cols, k)
                    gemm::gemm(
                        g.co,
                        k,
                        cols,
                        gw.as_mut_ptr(),
                        1,
                        k as isize,
                        false,
                        gy_block.as_ptr(),
                        1,
                        gy_rows,
                        col.as_ptr(),
                        cols as isize,
                        1,
                        zero,
                        one,
                        false,
                        false,
                        false,
                        par,
                    );
                } else {
                    // gw^T (k, co) = col (k, cols) * gy_block^T (cols, co)
                    gemm::gemm(
                        k,
                        g.co,
                        cols,
                        gw.as_mut_ptr(),
                        k as isize,
                        1,
                        false,
                        col.as_ptr(),
                        1,
                        cols as isize,
                        gy_block.as_ptr(),
                        gy_rows,
                        1,
                        zero,
                        one,
                        false,
                        false,
                        false,
                        par,
                    );
                }
                // col (k, cols) = w^T (k, co) * gy_block (co, cols)
                gemm::gemm(
                    k,
                    cols,
                    g.co,
                    col.as_mut_ptr(),
                    1,
                    cols as isize,
                    false,
                    w.as_ptr(),
                    k as isize,
                    1,
                    gy_block.as_ptr(),
                    1,
                    (g.od * ohw) as isize,
                    zero,
                    one,
                    false,
                    false,
                    false,
                    par,
                );
            }
            let (dlo, dhi) = g.depth_span(o0, o1);
            let span = dhi - dlo;
            let mut slab = vec![zero; g.ci * span * plane];
            if span > 0 {
                col2im(g, col, o0, o1, dlo, span, &mut slab);
            }
            (n, dlo, span, slab, gw)
        })
        .collect();

    let vol = g.d * plane;
    let mut gx = vec![zero; g.n * g.ci * vol];
    gx.par_chunks_mut(vol).enumerate().for_each(|(nc, dst)| {
        let (n, c) = (nc / g.ci, nc % g.ci);
        for (pn, dlo, span, slab, _) in &partials {
            if *pn != n || *span == 0 {
                continue;
            }
            let src = &slab[c * span * plane..(c + 1) * span * plane];
            for (d, s) in dst[dlo * plane..(dlo + span) * plane].iter_mut().zip(src) {
                *d += *s;
            }
        }
    });
    let mut gw = vec![zero; g.co * k];
    for (_, _, _, _, part) in &partials {
        for (d, s) in gw.iter_mut().zip(part) {
            *d += *s;
        }
    }
    (gx, gw)
}

/// Runs `f` on the contiguous CPU data of `t`.
pub(crate) fn with_cpu_slice<T: WithDType, R>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> Result<R>,
) -> Result<R> {
    let (guard, layout) = t.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("conv3d-cpu: tensor is not contiguous")
    };
    match &*guard {
        Storage::Cpu(cs) => f(&T::cpu_storage_as_slice(cs)?[start..end]),
        _ => bail!("conv3d-cpu: tensor is not on the CPU"),
    }
}

pub(crate) fn storage_slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("conv3d-cpu: operand is not contiguous")
    };
    Ok(&T::cpu_storage_as_slice(s)?[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_matches_brute_force() {
        for out_len in 1..6 {
            for stride in 1..4 {
                for pad in 0..3 {
                    for k in 0..4 {
                        for in_len in 1..8 {
                            let (lo, hi) = valid_range(out_len, stride, pad, k, in_len);
                            for o in 0..out_len {
                                let i = (o * stride + k) as isize - pad as isize;
                                let ok = i >= 0 && (i as usize) < in_len;
                                assert_eq!(
                                    ok,
                                    o >= lo && o < hi,
                                    "o={o} s={stride} p={pad} k={k} in={in_len}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
