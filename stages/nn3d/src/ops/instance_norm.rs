//! Instance normalisation over the spatial axes of each (sample, channel), with optional
//! affine scale and shift (built from candle ops, so autograd works on every device).

use candle_core::{Result, Tensor};

/// `x (N, C, D, H, W)`; `weight`/`bias` `(C)`. Biased variance, as PyTorch's InstanceNorm3d.
pub fn instance_norm(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
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
