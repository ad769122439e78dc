//! Activations used by the networks.

use candle_core::{Result, Tensor};

/// LeakyReLU: `x` for `x >= 0`, `slope * x` otherwise (slope in [0, 1)).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?
}
