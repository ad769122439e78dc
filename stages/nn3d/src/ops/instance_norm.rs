//! Instance normalisation over the spatial axes of each (sample, channel), with optional
//! affine scale and shift. With both on a CPU tensor it runs the fused op of
//! [`super::norm_act`]; otherwise it is built from candle ops (autograd on every device).

use candle_core::{Result, Tensor};

use super::norm_act::instance_norm_leaky_relu;

/// `x (N, C, D, H, W)`; `weight`/`bias` `(C)`. Biased variance, as PyTorch's InstanceNorm3d.
pub fn instance_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    match (weight, bias) {
        (Some(w), Some(b)) => instance_norm_leaky_relu(x, w, b, eps, 1.0),
        _ => instance_norm_generic(x, weight, bias, eps),
    }
}

/// [`instance_norm`] from candle's generic ops: the reference for the fused CPU op.
pub fn instance_norm_generic(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (n, c) = (dims[0], dims[1]);
    let xr = x.reshape((n, c, ()))?;
    let mean = xr.mean_keepdim(2)?;
    let centred = xr.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(2)?;
    let mut y = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    if let Some(w) = weight {
        y = y.broadcast_mul(&w.reshape((1, c, 1))?)?;
    }
    if let Some(b) = bias {
        y = y.broadcast_add(&b.reshape((1, c, 1))?)?;
    }
    y.reshape(dims)
}
