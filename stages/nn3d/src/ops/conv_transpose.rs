//! Transposed 3D convolution whose kernel equals its stride (the U-Net's 2x2x2 stride-2
//! upsampling): windows do not overlap, so it is one matmul plus a pixel-shuffle-style scatter.
//! On the CPU one custom op does both and adds the bias in place, so backward keeps only the
//! input and weight alive (the composed path keeps the matmul result, its permuted copy and
//! the biased output: three upsampled activations).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::channel_bias::bias_grad;
use super::conv3d::add_bias;
use super::conv3d_cpu::{gemm_parallelism, storage_slice, with_cpu_slice};

/// `x (N, Ci, D, H, W)`, `w (Ci, Co, kd, kh, kw)` (PyTorch ConvTranspose3d layout), stride =
/// kernel. Output `(N, Co, D*kd, H*kh, W*kw)`.
pub fn conv_transpose3d_nonoverlapping(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (n, ci, d, h, wd) = x.dims5()?;
    let (ci_w, co, kd, kh, kw) = w.dims5()?;
    if ci != ci_w {
        bail!("conv_transpose3d: input has {ci} channels but the weight expects {ci_w}")
    }
    if let Some(b) = bias {
        let fused = super::fused_cpu(x)
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && w.dtype() == x.dtype()
            && b.dtype() == x.dtype()
            && b.dims() == [co];
        if fused {
            return x
                .contiguous()?
                .apply_op3(&w.contiguous()?, &b.contiguous()?, ConvTransposeCpu);
        }
    }
    let xm = x
        .permute((0, 2, 3, 4, 1))?
        .contiguous()?
        .reshape((n * d * h * wd, ci))?;
    let wm = w.contiguous()?.reshape((ci, co * kd * kh * kw))?;
    let y = xm.matmul(&wm)?;
    let y = y
        .reshape(vec![n, d, h, wd, co, kd, kh, kw])?
        .permute(vec![0, 4, 1, 5, 2, 6, 3, 7])?
        .contiguous()?
        .reshape((n, co, d * kd, h * kh, wd * kw))?;
    add_bias(y, bias)
}

/// Sizes of one call: batch, input channels, output channels, input grid, kernel.
#[derive(Clone, Copy)]
struct Shapes {
    n: usize,
    ci: usize,
    co: usize,
    grid: [usize; 3],
    k: [usize; 3],
}

impl Shapes {
    fn new(x: &[usize], w: &[usize]) -> Result<Self> {
        if x.len() != 5 || w.len() != 5 || x[1] != w[0] {
            bail!("conv_transpose3d: input {x:?} and weight {w:?} do not match")
        }
        Ok(Self {
            n: x[0],
            ci: x[1],
            co: w[1],
            grid: [x[2], x[3], x[4]],
            k: [w[2], w[3], w[4]],
        })
    }

    /// Input voxels per channel.
    fn s(&self) -> usize {
        self.grid.iter().product()
    }

    /// Kernel taps.
    fn taps(&self) -> usize {
        self.k.iter().product()
    }

    fn out_dims(&self) -> [usize; 5] {
        let [d, h, w] = self.grid;
        let [a, b, c] = self.k;
        [self.n, self.co, d * a, h * b, w * c]
    }

    /// Calls `f(tap, column, out_offset)` for every kernel tap and input grid row: the row
    /// starts at `column` of the flattened input grid and lands in one output channel plane
    /// from `out_offset` on, every `kw`-th voxel.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [d, h, w] = self.grid;
        let [kd, kh, kw] = self.k;
        let (oh, ow) = (h * kh, w * kw);
        for a in 0..kd {
            for b in 0..kh {
                for c in 0..kw {
                    let tap = (a * kh + b) * kw + c;
                    for z in 0..d {
                        for y in 0..h {
                            let col = (z * h + y) * w;
                            let out = ((z * kd + a) * oh + y * kh + b) * ow + c;
                            f(tap, col, out);
                        }
                    }
                }
            }
        }
    }
}

/// `dst (m, n) = alpha * dst + lhs (m, k) * rhs (k, n)`, each matrix given by its row and
/// column strides.
///
/// # Safety
/// The pointers and strides must describe matrices inside live buffers; `dst` must not alias.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, isize, isize),
    accumulate: bool,
    lhs: (*const T, isize, isize),
    rhs: (*const T, isize, isize),
) {
    let (zero, one) = (T::from_f64(0.0), T::from_f64(1.0));
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2,
        dst.1,
        accumulate,
        lhs.0,
        lhs.2,
        lhs.1,
        rhs.0,
        rhs.2,
        rhs.1,
        if accumulate { one } else { zero },
        one,
        false,
        false,
        false,
        // One gemm at a time: it takes every thread.
        gemm_parallelism(1),
    )
}

/// The CPU op on (input, weight, bias).
struct ConvTransposeCpu;

impl ConvTransposeCpu {
    fn forward<T: WithDType>(sh: &Shapes, x: &[T], w: &[T], b: &[T]) -> Vec<T> {
        let (s, taps, ci, co) = (sh.s(), sh.taps(), sh.ci, sh.co);
        let rows = co * taps;
        let out_plane = s * taps;
        let mut out = vec![T::from_f64(0.0); sh.n * co * out_plane];
        let mut y = vec![T::from_f64(0.0); rows * s];
        let w_ = sh.grid[2];
        let kw = sh.k[2];
        for n in 0..sh.n {
            // y (co*taps, s) = w^T (co*taps, ci) * x_n (ci, s)
            // SAFETY: the shapes and strides lie inside `y`, `w` and `x`.
            unsafe {
                matmul(
                    (rows, s, ci),
                    (y.as_mut_ptr(), s as isize, 1),
                    false,
                    (w.as_ptr(), 1, rows as isize),
                    (x[n * ci * s..].as_ptr(), s as isize, 1),
                );
            }
            let planes = &mut out[n * co * out_plane..(n + 1) * co * out_plane];
            planes
                .par_chunks_mut(out_plane)
                .enumerate()
                .for_each(|(o, plane)| {
                    let bias = b[o];
                    sh.for_each_tap(|tap, col, at| {
                        let src = &y[(o * taps + tap) * s + col..][..w_];
                        for (i, v) in src.iter().enumerate() {
                            plane[at + i * kw] = *v + bias;
                        }
                    });
                });
        }
        out
    }

    /// Gradients of input, weight and (through [`bias_grad`]) bias.
    fn backward<T: WithDType>(sh: &Shapes, x: &[T], w: &[T], gy: &[T]) -> (Vec<T>, Vec<T>) {
        let (s, taps, ci, co) = (sh.s(), sh.taps(), sh.ci, sh.co);
        let rows = co * taps;
        let out_plane = s * taps;
        let mut gx = vec![T::from_f64(0.0); sh.n * ci * s];
        let mut gw = vec![T::from_f64(0.0); ci * rows];
        let mut g = vec![T::from_f64(0.0); rows * s];
        let w_ = sh.grid[2];
        let kw = sh.k[2];
        for n in 0..sh.n {
            // Gather the output gradient into g (co*taps, s), the layout of the forward matmul.
            let planes = &gy[n * co * out_plane..(n + 1) * co * out_plane];
            g.par_chunks_mut(out_plane)
                .zip(planes.par_chunks(out_plane))
                .for_each(|(dst, plane)| {
                    sh.for_each_tap(|tap, col, at| {
                        let row = &mut dst[tap * s + col..][..w_];
                        for (i, v) in row.iter_mut().enumerate() {
                            *v = plane[at + i * kw];
                        }
                    });
                });
            // SAFETY: the shapes and strides lie inside `gx`, `gw`, `w`, `x` and `g`.
            unsafe {
                // gx_n (ci, s) = w (ci, co*taps) * g (co*taps, s)
                matmul(
                    (ci, s, rows),
                    (gx[n * ci * s..].as_mut_ptr(), s as isize, 1),
                    false,
                    (w.as_ptr(), rows as isize, 1),
                    (g.as_ptr(), s as isize, 1),
                );
                // gw (ci, co*taps) += x_n (ci, s) * g^T (s, co*taps)
                matmul(
                    (ci, rows, s),
                    (gw.as_mut_ptr(), rows as isize, 1),
                    n > 0,
                    (x[n * ci * s..].as_ptr(), s as isize, 1),
                    (g.as_ptr(), 1, s as isize),
                );
            }
        }
        (gx, gw)
    }
}

impl CustomOp3 for ConvTransposeCpu {
    fn name(&self) -> &'static str {
        "conv-transpose3d-cpu"
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
        let sh = Shapes::new(l1.dims(), l2.dims())?;
        let out = match (s1.dtype(), s2.dtype(), s3.dtype()) {
            (DType::F32, DType::F32, DType::F32) => CpuStorage::F32(Self::forward::<f32>(
                &sh,
                storage_slice(s1, l1)?,
                storage_slice(s2, l2)?,
                storage_slice(s3, l3)?,
            )),
            (DType::F64, DType::F64, DType::F64) => CpuStorage::F64(Self::forward::<f64>(
                &sh,
                storage_slice(s1, l1)?,
                storage_slice(s2, l2)?,
                storage_slice(s3, l3)?,
            )),
            (a, b, c) => bail!("conv-transpose3d-cpu: unsupported dtypes {a:?}, {b:?}, {c:?}"),
        };
        Ok((out, Shape::from(sh.out_dims().to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let sh = Shapes::new(x.dims(), w.dims())?;
        let gy = gy.contiguous()?;
        fn typed<T: WithDType>(
            sh: &Shapes,
            x: &Tensor,
            w: &Tensor,
            gy: &Tensor,
        ) -> Result<(Tensor, Tensor)> {
            let (gx, gw) = with_cpu_slice::<T, _>(x, |xs| {
                with_cpu_slice::<T, _>(w, |ws| {
                    with_cpu_slice::<T, _>(gy, |gys| {
                        Ok(ConvTransposeCpu::backward(sh, xs, ws, gys))
                    })
                })
            })?;
            Ok((
                Tensor::from_vec(gx, x.dims(), x.device())?,
                Tensor::from_vec(gw, w.dims(), w.device())?,
            ))
        }
        let (gx, gw) = match x.dtype() {
            DType::F32 => typed::<f32>(&sh, x, w, &gy)?,
            DType::F64 => typed::<f64>(&sh, x, w, &gy)?,
            dt => bail!("conv-transpose3d-cpu: unsupported dtype {dt:?}"),
        };
        Ok((Some(gx), Some(gw), Some(bias_grad(&gy, b)?)))
    }
}
