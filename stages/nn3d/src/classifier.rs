//! The stage-3 patient-level classifier: a small 3D CNN (4 stages of two bias-free
//! 3x3x3 conv + instance norm + ReLU, stride 2 at the start of stages 2-4), global average
//! pooling and a linear layer to one logit.

use candle_core::{bail, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::layers::{Conv3d, InstanceNorm3d};
use crate::ops::{global_avg_pool3d, Conv3dParams};

/// Architecture of a [`Classifier3d`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    pub in_channels: usize,
    pub stage_channels: Vec<usize>,
    pub convs_per_stage: usize,
    pub outputs: usize,
    pub norm_eps: f64,
}

impl Default for ClassifierConfig {
    /// The method's stage-3 network: inputs [fracture probability, stage-1 label map], 16-32-64-128
    /// channels, one logit; about 0.88M parameters.
    fn default() -> Self {
        Self {
            in_channels: 2,
            stage_channels: vec![16, 32, 64, 128],
            convs_per_stage: 2,
            outputs: 1,
            norm_eps: 1e-5,
        }
    }
}

/// The classifier; `forward` maps `(N, Cin, D, H, W)` to logits `(N, outputs)`.
#[derive(Clone, Debug)]
pub struct Classifier3d {
    layers: Vec<(Conv3d, InstanceNorm3d)>,
    head: Linear,
}

impl Classifier3d {
    pub fn new(cfg: &ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.stage_channels.is_empty()
            || cfg.convs_per_stage == 0
            || cfg.in_channels == 0
            || cfg.outputs == 0
        {
            bail!("classifier config: need at least one stage, one conv per stage and positive channel counts")
        }
        let mut layers = Vec::new();
        let mut cin = cfg.in_channels;
        for (s, &cout) in cfg.stage_channels.iter().enumerate() {
            for i in 0..cfg.convs_per_stage {
                let stride = if s > 0 && i == 0 { [2; 3] } else { [1; 3] };
                let vbl = vb.pp(format!("stage{s}")).pp(format!("conv{i}"));
                let conv = Conv3d::new(
                    cin,
                    cout,
                    [3; 3],
                    Conv3dParams::same([3; 3], stride),
                    false,
                    vbl.pp("conv"),
                )?;
                let norm = InstanceNorm3d::new(cout, cfg.norm_eps, vbl.pp("norm"))?;
                layers.push((conv, norm));
                cin = cout;
            }
        }
        let head = candle_nn::linear(cin, cfg.outputs, vb.pp("head"))?;
        Ok(Self { layers, head })
    }
}

impl Module for Classifier3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (conv, norm) in &self.layers {
            h = norm.forward_leaky_relu(&conv.forward(&h)?, 0.0)?;
        }
        self.head.forward(&global_avg_pool3d(&h)?)
    }
}
