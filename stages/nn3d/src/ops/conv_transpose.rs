//! Transposed 3D convolution whose kernel equals its stride (the U-Net's 2x2x2 stride-2
//! upsampling): windows do not overlap, so it is one matmul plus a pixel-shuffle-style permute.

use candle_core::{bail, Result, Tensor};

use super::conv3d::add_bias;

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
