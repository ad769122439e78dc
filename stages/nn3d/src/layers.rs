//! Parameterised layers (weights from a `VarBuilder`) wrapping the 3D ops as candle modules.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::ops::{
    conv3d, conv3d_concat, conv_transpose3d_nonoverlapping, instance_norm,
    instance_norm_leaky_relu, Conv3dParams,
};

/// He-normal initialisation as nnU-Net's `InitWeights_He(1e-2)`: std = sqrt(2 / ((1 + a^2) fan_in)).
fn he_normal(fan_in: usize) -> Init {
    let a: f64 = 1e-2;
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / ((1.0 + a * a) * fan_in as f64)).sqrt(),
    }
}

/// 3D convolution layer with weight `(Co, Ci, kd, kh, kw)` and optional bias.
#[derive(Clone, Debug)]
pub struct Conv3d {
    weight: Tensor,
    bias: Option<Tensor>,
    params: Conv3dParams,
}

impl Conv3d {
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: [usize; 3],
        params: Conv3dParams,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let fan_in = cin * kernel.iter().product::<usize>();
        let weight = vb.get_with_hints(
            (cout, cin, kernel[0], kernel[1], kernel[2]),
            "weight",
            he_normal(fan_in),
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(cout, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            params,
        })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The layer applied to the channel concatenation of `a` and `b`, without building it.
    pub fn forward_concat(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        conv3d_concat(a, b, &self.weight, self.bias.as_ref(), &self.params)
    }
}

impl Module for Conv3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv3d(x, &self.weight, self.bias.as_ref(), &self.params)
    }
}

/// Transposed 3D convolution with kernel = stride, weight `(Ci, Co, kd, kh, kw)`, with bias.
#[derive(Clone, Debug)]
pub struct ConvTranspose3d {
    weight: Tensor,
    bias: Tensor,
}

impl ConvTranspose3d {
    pub fn new(cin: usize, cout: usize, kernel: [usize; 3], vb: VarBuilder) -> Result<Self> {
        let fan_in = cout * kernel.iter().product::<usize>();
        let weight = vb.get_with_hints(
            (cin, cout, kernel[0], kernel[1], kernel[2]),
            "weight",
            he_normal(fan_in),
        )?;
        let bias = vb.get_with_hints(cout, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }
}

impl Module for ConvTranspose3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv_transpose3d_nonoverlapping(x, &self.weight, Some(&self.bias))
    }
}

/// Affine instance normalisation.
#[derive(Clone, Debug)]
pub struct InstanceNorm3d {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl InstanceNorm3d {
    pub fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }
}

impl InstanceNorm3d {
    /// Normalisation followed by LeakyReLU with `slope` (0 is ReLU), as one fused op on the CPU.
    pub fn forward_leaky_relu(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        instance_norm_leaky_relu(x, &self.weight, &self.bias, self.eps, slope)
    }
}

impl Module for InstanceNorm3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        instance_norm(x, Some(&self.weight), Some(&self.bias), self.eps)
    }
}
