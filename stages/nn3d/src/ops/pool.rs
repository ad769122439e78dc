//! 3D max and average pooling, built as an elementwise max/sum over the kernel offsets of
//! strided views, so autograd works on every device.

use candle_core::{bail, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::strided::strided_narrow;

/// Kernel, stride and padding of a 3D pooling window, per axis (depth, height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool3dParams {
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl Pool3dParams {
    /// Non-overlapping windows: stride = kernel, no padding.
    pub fn non_overlapping(kernel: [usize; 3]) -> Self {
        Self {
            kernel,
            stride: kernel,
            padding: [0; 3],
        }
    }

    fn output_dims(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        let mut out = [0; 3];
        for i in 0..3 {
            let padded = input[i] + 2 * self.padding[i];
            if self.kernel[i] == 0
                || self.stride[i] == 0
                || padded < self.kernel[i]
                || 2 * self.padding[i] > self.kernel[i]
            {
                bail!("pool3d: window {self:?} does not fit input {input:?}")
            }
            out[i] = (padded - self.kernel[i]) / self.stride[i] + 1;
        }
        Ok(out)
    }
}

fn pad_value(x: &Tensor, pad: [usize; 3], value: f64) -> Result<Tensor> {
    let mut t = x.clone();
    for (axis, &p) in pad.iter().enumerate() {
        if p == 0 {
            continue;
        }
        let dim = axis + 2;
        let mut shape = t.dims().to_vec();
        shape[dim] = p;
        let fill = (Tensor::zeros(shape, t.dtype(), t.device())? + value)?;
        t = Tensor::cat(&[&fill, &t, &fill], dim)?;
    }
    Ok(t)
}

/// Applies `combine` over all kernel offsets of the (padded) input.
fn pool_offsets(
    x: &Tensor,
    p: &Pool3dParams,
    pad_with: f64,
    combine: impl Fn(Tensor, Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (_, _, d, h, w) = x.dims5()?;
    let [od, oh, ow] = p.output_dims([d, h, w])?;
    let xp = pad_value(x, p.padding, pad_with)?;
    let mut acc: Option<Tensor> = None;
    for a in 0..p.kernel[0] {
        let xa = strided_narrow(&xp, 2, a, od, p.stride[0])?;
        for b in 0..p.kernel[1] {
            let xb = strided_narrow(&xa, 3, b, oh, p.stride[1])?;
            for c in 0..p.kernel[2] {
                let xc = strided_narrow(&xb, 4, c, ow, p.stride[2])?;
                acc = Some(match acc {
                    None => xc,
                    Some(s) => combine(s, xc)?,
                });
            }
        }
    }
    acc.ok_or_else(|| candle_core::Error::Msg("pool3d: empty kernel".into()))
}

/// Max pooling over `x (N, C, D, H, W)`; padded positions never win.
pub fn max_pool3d(x: &Tensor, p: &Pool3dParams) -> Result<Tensor> {
    pool_offsets(x, p, f64::NEG_INFINITY, |a, b| a.maximum(&b))
}

/// Average pooling over `x (N, C, D, H, W)`; padding counts as zeros in the average
/// (PyTorch's default `count_include_pad=True`).
pub fn avg_pool3d(x: &Tensor, p: &Pool3dParams) -> Result<Tensor> {
    let count = (p.kernel[0] * p.kernel[1] * p.kernel[2]) as f64;
    pool_offsets(x, p, 0.0, |a, b| a + b)? / count
}

/// Mean over the spatial axes: `(N, C, D, H, W) -> (N, C)`.
pub fn global_avg_pool3d(x: &Tensor) -> Result<Tensor> {
    let (n, c, _, _, _) = x.dims5()?;
    x.reshape((n, c, ()))?.mean(2)
}
