//! Instance normalisation with affine scale and shift followed by LeakyReLU, fused into one CPU
//! custom op (forward and backward), the layer pair of every U-Net block.
//!
//! Built from candle's generic ops the pair costs about twenty passes over the activation in
//! forward and backward, several of them strided reductions over broadcast axes; the fused op
//! makes two passes forward and three backward per (sample, channel) plane. A slope of 1 is
//! plain instance norm and a slope of 0 is ReLU. Other devices and dtypes use the generic ops.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::activation::leaky_relu_generic;
use super::conv3d_cpu::{storage_slice, with_cpu_slice};
use super::instance_norm::instance_norm_generic;

/// `leaky_relu(instance_norm(x) * weight + bias, slope)` for `x (N, C, D, H, W)` and
/// `weight`/`bias (C)`; biased variance as PyTorch's InstanceNorm3d.
pub fn instance_norm_leaky_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    slope: f64,
) -> Result<Tensor> {
    let c = x.dims().get(1).copied().unwrap_or(0);
    if x.rank() < 3 || weight.dims() != [c] || bias.dims() != [c] {
        bail!(
            "instance norm: input {:?} needs (N, C, ...) with weight and bias of shape ({c})",
            x.dims()
        )
    }
    let fused = super::fused_cpu(x)
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == x.dtype()
        && bias.dtype() == x.dtype();
    if fused {
        x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            NormActCpu { eps, slope },
        )
    } else {
        let y = instance_norm_generic(x, Some(weight), Some(bias), eps)?;
        if slope == 1.0 {
            Ok(y)
        } else {
            leaky_relu_generic(&y, slope)
        }
    }
}

struct NormActCpu {
    eps: f64,
    slope: f64,
}

/// Planes of `len` voxels processed per rayon task (small planes are batched together).
fn planes_per_task(len: usize) -> usize {
    (32_768 / len.max(1)).max(1)
}

/// A vector of `n` unwritten elements: outputs as large as an activation are written once
/// instead of zeroed first and written again.
fn uninit_vec<T>(n: usize) -> Vec<MaybeUninit<T>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: MaybeUninit needs no initialisation.
    unsafe { v.set_len(n) };
    v
}

/// # Safety
/// Every element of `v` must have been written.
unsafe fn assume_init_vec<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: MaybeUninit<T> has T's layout; the caller guarantees initialisation.
    Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity())
}

/// Independent f64 accumulators per sum: eight lanes let the plane loops vectorise, and the
/// fixed order keeps results deterministic.
const SUM_LANES: usize = 8;

/// `(Σ f(x_i, g_i).0, Σ f(x_i, g_i).1)` over a plane, accumulated in f64 lanes.
fn lane_sums<T: WithDType>(x: &[T], g: &[T], f: impl Fn(f64, f64) -> (f64, f64)) -> (f64, f64) {
    let (mut a, mut b) = ([0.0f64; SUM_LANES], [0.0f64; SUM_LANES]);
    let (xc, gc) = (x.chunks_exact(SUM_LANES), g.chunks_exact(SUM_LANES));
    let (xr, gr) = (xc.remainder(), gc.remainder());
    for (xs, gs) in xc.zip(gc) {
        for l in 0..SUM_LANES {
            let (u, v) = f(xs[l].to_f64(), gs[l].to_f64());
            a[l] += u;
            b[l] += v;
        }
    }
    let (mut sa, mut sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    for (&xv, &gv) in xr.iter().zip(gr) {
        let (u, v) = f(xv.to_f64(), gv.to_f64());
        sa += u;
        sb += v;
    }
    (sa, sb)
}

/// `x` as f32 when `T` is f32 and the f32 lane loops (`norm_act_f32`) run on this CPU.
fn fast_f32<T: WithDType>(x: &[T]) -> Option<&[f32]> {
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == DType::F32 && super::norm_act_f32::available() {
        // SAFETY: T is f32 (its DTYPE says so), so the slice is a slice of f32.
        return Some(unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) });
    }
    None
}

/// Mean and 1/sqrt(var + eps) of one plane, accumulated in f64 (f32 lanes per block on
/// AVX-512 and AVX2).
fn plane_stats<T: WithDType>(x: &[T], eps: f64) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = fast_f32(x) {
        // SAFETY: fast_f32 checked that these loops run here.
        return unsafe { super::norm_act_f32::plane_stats(x, eps) };
    }
    let n = x.len().max(1) as f64;
    let mean = lane_sums(x, x, |v, _| (v, 0.0)).0 / n;
    let var = lane_sums(x, x, |v, _| ((v - mean) * (v - mean), 0.0)).0 / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl NormActCpu {
    fn fwd_typed<T: WithDType>(
        &self,
        x: &[T],
        w: &[T],
        b: &[T],
        shape: &Shape,
    ) -> Result<CpuStorage> {
        let dims = shape.dims();
        let c = dims[1];
        let len: usize = dims[2..].iter().product();
        if len == 0 {
            return Ok(T::to_cpu_storage_owned(vec![T::zero(); x.len()]));
        }
        // Written once, without zeroing first: the output is as large as the activation.
        let mut out = uninit_vec::<T>(x.len());
        let per = planes_per_task(len);
        let slope = self.slope;
        out.par_chunks_mut(per * len)
            .zip(x.par_chunks(per * len))
            .enumerate()
            .for_each(|(t, (o, xs))| {
                for (p, (o, xs)) in o.chunks_mut(len).zip(xs.chunks(len)).enumerate() {
                    let ch = (t * per + p) % c;
                    let (mean, rstd) = plane_stats(xs, self.eps);
                    let scale = rstd * w[ch].to_f64();
                    let shift = b[ch].to_f64() - mean * scale;
                    let (scale, shift, slope) =
                        (T::from_f64(scale), T::from_f64(shift), T::from_f64(slope));
                    for (o, &v) in o.iter_mut().zip(xs) {
                        let pre = v * scale + shift;
                        o.write(if pre >= T::zero() { pre } else { pre * slope });
                    }
                }
            });
        // SAFETY: `out` and `x` have the same length and the chunks above pair every element
        // of `out` with one of `x`, so each was written.
        let out = unsafe { assume_init_vec(out) };
        Ok(T::to_cpu_storage_owned(out))
    }

    /// Gradients for x, weight and bias. With `g'` the gradient before the activation and
    /// `x̂` the normalised input of a plane of `M` voxels:
    /// `dx = w rstd / M (M g' - Σg' - x̂ Σ(g' x̂))`, `dw = Σ g' x̂`, `db = Σ g'`.
    fn bwd_typed<T: WithDType>(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        gy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let dims = x.dims().to_vec();
        let c = dims[1];
        let len: usize = dims[2..].iter().product();
        let (eps, slope) = (self.eps, self.slope);
        let (gx, sums) = with_cpu_slice::<T, _>(x, |xs| {
            with_cpu_slice::<T, _>(w, |ws| {
                with_cpu_slice::<T, _>(b, |bs| {
                    with_cpu_slice::<T, _>(gy, |gs| {
                        if len == 0 {
                            return Ok((vec![T::zero(); xs.len()], Vec::new()));
                        }
                        let mut gx = uninit_vec::<T>(xs.len());
                        let per = planes_per_task(len);
                        let sums: Vec<(f64, f64)> = gx
                            .par_chunks_mut(per * len)
                            .zip(xs.par_chunks(per * len).zip(gs.par_chunks(per * len)))
                            .enumerate()
                            .flat_map_iter(|(t, (gxo, (xs, gs)))| {
                                let mut out = Vec::with_capacity(per);
                                for (p, (gxo, (xp, gp))) in gxo
                                    .chunks_mut(len)
                                    .zip(xs.chunks(len).zip(gs.chunks(len)))
                                    .enumerate()
                                {
                                    let ch = (t * per + p) % c;
                                    let (mean, rstd) = plane_stats(xp, eps);
                                    let (wc, bc) = (ws[ch].to_f64(), bs[ch].to_f64());
                                    #[cfg(target_arch = "x86_64")]
                                    if let (Some(x32), Some(g32)) = (fast_f32(xp), fast_f32(gp)) {
                                        // SAFETY: T is f32 (fast_f32), so MaybeUninit<T> is
                                        // MaybeUninit<f32>; fast_f32 checked the loops run here.
                                        let gx32 = unsafe {
                                            std::slice::from_raw_parts_mut(
                                                gxo.as_mut_ptr().cast::<MaybeUninit<f32>>(),
                                                gxo.len(),
                                            )
                                        };
                                        out.push(unsafe {
                                            super::norm_act_f32::plane_backward(
                                                x32, g32, gx32, mean, rstd, wc, bc, slope,
                                            )
                                        });
                                        continue;
                                    }
                                    // Pass 1: the sums over the plane.
                                    let (s1, s2) = lane_sums(xp, gp, |v, g| {
                                        let xh = (v - mean) * rstd;
                                        let gpre = if xh * wc + bc >= 0.0 { g } else { g * slope };
                                        (gpre, gpre * xh)
                                    });
                                    // Pass 2: the input gradient.
                                    let m = len as f64;
                                    let k = wc * rstd;
                                    let (a1, a2) = (s1 / m, s2 / m);
                                    for ((o, &v), &g) in gxo.iter_mut().zip(xp).zip(gp) {
                                        let xh = (v.to_f64() - mean) * rstd;
                                        let gpre = if xh * wc + bc >= 0.0 {
                                            g.to_f64()
                                        } else {
                                            g.to_f64() * slope
                                        };
                                        o.write(T::from_f64(k * (gpre - a1 - xh * a2)));
                                    }
                                    out.push((s1, s2));
                                }
                                out
                            })
                            .collect();
                        // SAFETY: the chunks pair every element of `gx` with one of `xs` and
                        // the loop above writes each.
                        Ok((unsafe { assume_init_vec(gx) }, sums))
                    })
                })
            })
        })?;
        let (mut gw, mut gb) = (vec![0.0f64; c], vec![0.0f64; c]);
        for (i, (s1, s2)) in sums.iter().enumerate() {
            gb[i % c] += s1;
            gw[i % c] += s2;
        }
        let dev = x.device();
        let gx = Tensor::from_vec(gx, dims, dev)?;
        let gw = Tensor::from_vec(gw, c, dev)?.to_dtype(x.dtype())?;
        let gb = Tensor::from_vec(gb, c, dev)?.to_dtype(x.dtype())?;
        Ok((gx, gw, gb))
    }
}

impl CustomOp3 for NormActCpu {
    fn name(&self) -> &'static str {
        "instance-norm-leaky-relu-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match s1.dtype() {
            DType::F32 => self.fwd_typed::<f32>(
                storage_slice(s1, l1)?,
                storage_slice(s2, l2)?,
                storage_slice(s3, l3)?,
                l1.shape(),
            )?,
            DType::F64 => self.fwd_typed::<f64>(
                storage_slice(s1, l1)?,
                storage_slice(s2, l2)?,
                storage_slice(s3, l3)?,
                l1.shape(),
            )?,
            dt => bail!("instance-norm-leaky-relu-cpu: unsupported dtype {dt:?}"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gy = gy.contiguous()?;
        let (gx, gw, gb) = match x.dtype() {
            DType::F32 => self.bwd_typed::<f32>(x, w, b, &gy)?,
            DType::F64 => self.bwd_typed::<f64>(x, w, b, &gy)?,
            dt => bail!("instance-norm-leaky-relu-cpu: unsupported dtype {dt:?}"),
        };
        Ok((Some(gx), Some(gw), Some(gb)))
    }
}
