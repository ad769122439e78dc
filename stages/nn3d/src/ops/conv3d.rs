//! conv3d with autograd: a fast CPU custom op for f32/f64 on the CPU, and a device-generic
//! decomposition into candle conv2d calls (one per kernel depth offset) everywhere else.

use candle_core::{bail, DType, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::channel_bias::add_channel_bias;
use super::conv3d_op::{ConcatConv3dCpu, Conv3dCpu};
use super::strided::strided_narrow;

/// Stride and zero padding of a 3D convolution, per axis (depth, height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv3dParams {
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl Default for Conv3dParams {
    fn default() -> Self {
        Self {
            stride: [1; 3],
            padding: [0; 3],
        }
    }
}

impl Conv3dParams {
    pub fn new(stride: [usize; 3], padding: [usize; 3]) -> Self {
        Self { stride, padding }
    }

    /// "Same" padding (`k / 2`) for odd kernels, with the given stride.
    pub fn same(kernel: [usize; 3], stride: [usize; 3]) -> Self {
        Self {
            stride,
            padding: kernel.map(|k| k / 2),
        }
    }

    /// Output spatial size for an input of `input` voxels and a kernel of `kernel`.
    pub fn output_dims(&self, input: [usize; 3], kernel: [usize; 3]) -> Result<[usize; 3]> {
        let mut out = [0; 3];
        for i in 0..3 {
            let padded = input[i] + 2 * self.padding[i];
            if self.stride[i] == 0 || kernel[i] == 0 || padded < kernel[i] {
                bail!(
                    "conv3d: kernel {kernel:?} with stride {:?} and padding {:?} does not fit input {input:?}",
                    self.stride,
                    self.padding
                )
            }
            out[i] = (padded - kernel[i]) / self.stride[i] + 1;
        }
        Ok(out)
    }
}

fn check_shapes(x: &Tensor, w: &Tensor, p: &Conv3dParams) -> Result<()> {
    let (_, ci, d, h, wd) = x.dims5()?;
    let (_, ci_w, kd, kh, kw) = w.dims5()?;
    if ci != ci_w {
        bail!("conv3d: input has {ci} channels but the weight expects {ci_w}")
    }
    p.output_dims([d, h, wd], [kd, kh, kw])?;
    Ok(())
}

/// 3D convolution of `x (N, Ci, D, H, W)` with `w (Co, Ci, kd, kh, kw)` plus an optional bias
/// `(Co)`. Uses the CPU custom op for f32/f64 CPU tensors, the generic path otherwise.
pub fn conv3d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv3dParams) -> Result<Tensor> {
    check_shapes(x, w, p)?;
    let cpu_ok = super::fused_cpu(x)
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && x.dtype() == w.dtype();
    if !cpu_ok {
        return add_bias(conv3d_generic(x, w, p)?, bias);
    }
    let (x, w, op) = (x.contiguous()?, w.contiguous()?, Conv3dCpu { params: *p });
    match bias {
        // The bias goes into the op, so backward keeps the biased output only.
        Some(b) if b.dtype() == x.dtype() && b.dims() == [w.dims()[0]] => {
            x.apply_op3(&w, &b.contiguous()?, op)
        }
        _ => add_bias(x.apply_op2(&w, op)?, bias),
    }
}

/// conv3d of the channel concatenation `cat([a, b], 1)` (as a U-Net decoder's first
/// convolution reads its upsampled and skip inputs). On the CPU the concatenation is never
/// built, so backward does not keep it; elsewhere it is `conv3d(cat)`.
pub fn conv3d_concat(
    a: &Tensor,
    b: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv3dParams,
) -> Result<Tensor> {
    let dtype = a.dtype();
    let fused = super::fused_cpu(a)
        && matches!(dtype, DType::F32 | DType::F64)
        && [b.dtype(), w.dtype()] == [dtype; 2]
        && bias.is_none_or(|t| t.dtype() == dtype && t.dims() == [w.dims()[0]]);
    if !fused {
        return conv3d(&Tensor::cat(&[a, b], 1)?, w, bias, p);
    }
    let x_dims = [a.dims(), b.dims()];
    let (n, ca, d, h, wd) = a.dims5()?;
    let cb = b.dims5()?.1;
    if b.dims() != [n, cb, d, h, wd] {
        bail!("conv3d: concatenated inputs {x_dims:?} differ in batch or spatial size")
    }
    let w_dims: [usize; 5] = w.dims().try_into().map_err(|_| {
        candle_core::Error::Msg(format!("conv3d: 5D weight expected, got {:?}", w.dims()))
    })?;
    if w_dims[1] != ca + cb {
        bail!(
            "conv3d: inputs {x_dims:?} have {} channels but the weight expects {}",
            ca + cb,
            w_dims[1]
        )
    }
    p.output_dims([d, h, wd], [w_dims[2], w_dims[3], w_dims[4]])?;
    let params = match bias {
        Some(t) => Tensor::cat(&[&w.flatten_all()?, t], 0)?,
        None => w.flatten_all()?,
    };
    let op = ConcatConv3dCpu {
        params: *p,
        w_dims,
        bias: bias.is_some(),
    };
    a.contiguous()?
        .apply_op3(&b.contiguous()?, &params.contiguous()?, op)
}

pub(crate) fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => add_channel_bias(&y, b),
        None => Ok(y),
    }
}

/// Device-generic conv3d without bias: for each kernel depth offset, gathers the matching input
/// depth slices into the batch axis and runs candle's conv2d, then sums over offsets.
pub fn conv3d_generic(x: &Tensor, w: &Tensor, p: &Conv3dParams) -> Result<Tensor> {
    check_shapes(x, w, p)?;
    let (n, ci, d, h, wd) = x.dims5()?;
    let (co, _, kd, kh, kw) = w.dims5()?;
    let [od, oh, ow] = p.output_dims([d, h, wd], [kd, kh, kw])?;
    let [sd, sh, sw] = p.stride;
    let [pd, ph, pw] = p.padding;
    let xp = x
        .pad_with_zeros(2, pd, pd)?
        .pad_with_zeros(3, ph, ph)?
        .pad_with_zeros(4, pw, pw)?;
    // Keep exactly the rows/columns the kernel reaches: candle's conv2d backward assumes
    // (size - k) divisible by the stride.
    let (hp, wp) = ((oh - 1) * sh + kh, (ow - 1) * sw + kw);
    let xp = xp.narrow(3, 0, hp)?.narrow(4, 0, wp)?;
    let mut acc: Option<Tensor> = None;
    for a in 0..kd {
        let xs = strided_narrow(&xp, 2, a, od, sd)?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?
            .reshape((n * od, ci, hp, wp))?;
        let wa = w.narrow(2, a, 1)?.squeeze(2)?.contiguous()?;
        let y = if sh == sw {
            xs.conv2d(&wa, 0, sh, 1, 1)?
        } else {
            let full = xs.conv2d(&wa, 0, 1, 1, 1)?;
            let t = strided_narrow(&full, 2, 0, oh, sh)?;
            strided_narrow(&t, 3, 0, ow, sw)?
        };
        acc = Some(match acc {
            None => y,
            Some(s) => (s + y)?,
        });
    }
    let Some(acc) = acc else {
        bail!("conv3d: empty kernel")
    };
    acc.reshape((n, od, co, oh, ow))?
        .permute((0, 2, 1, 3, 4))?
        .contiguous()
}
