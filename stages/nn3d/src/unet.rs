//! Configurable nnU-Net-style 3D U-Net ("PlainConvUNet"): per level two conv-IN-LeakyReLU
//! blocks (strided first conv for downsampling), transposed-conv upsampling, skip
//! concatenation, and a 1x1x1 segmentation head per decoder level for deep supervision.

use candle_core::{bail, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{Conv3d, ConvTranspose3d, InstanceNorm3d};
use crate::ops::Conv3dParams;

/// Architecture of a [`UNet3d`]; `kernel_sizes` and `strides` have one entry per level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    pub base_channels: usize,
    pub max_channels: usize,
    pub kernel_sizes: Vec<[usize; 3]>,
    /// Stride of the first conv of each level (level 0 is normally `[1, 1, 1]`).
    pub strides: Vec<[usize; 3]>,
    pub convs_per_level: usize,
    pub deep_supervision: bool,
    pub negative_slope: f64,
    pub norm_eps: f64,
}

impl UNetConfig {
    /// Stage 1 (C1-C7 + T1 segmentation): 6 levels, 32..320 channels, 3^3 kernels, stride 2,
    /// 1 input channel, 9 classes, deep supervision. About 31M parameters.
    pub fn stage1() -> Self {
        Self {
            in_channels: 1,
            num_classes: 9,
            base_channels: 32,
            max_channels: 320,
            kernel_sizes: vec![[3, 3, 3]; 6],
            strides: vec![
                [1, 1, 1],
                [2, 2, 2],
                [2, 2, 2],
                [2, 2, 2],
                [2, 2, 2],
                [2, 2, 2],
            ],
            convs_per_level: 2,
            deep_supervision: true,
            negative_slope: 0.01,
            norm_eps: 1e-5,
        }
    }

    /// Stage 2 (fracture segmentation on 0.8 x 0.4 x 0.4 mm ROIs, patch 96x192x192): the same
    /// network with 2 classes; the first level is in-plane only (kernel 1x3x3, then the first
    /// downsampling 1x2x2) because z spacing is twice the in-plane spacing (nnU-Net's rule).
    pub fn stage2() -> Self {
        Self {
            num_classes: 2,
            kernel_sizes: vec![
                [1, 3, 3],
                [3, 3, 3],
                [3, 3, 3],
                [3, 3, 3],
                [3, 3, 3],
                [3, 3, 3],
            ],
            strides: vec![
                [1, 1, 1],
                [1, 2, 2],
                [2, 2, 2],
                [2, 2, 2],
                [2, 2, 2],
                [2, 2, 2],
            ],
            ..Self::stage1()
        }
    }

    /// A small configuration for demos and tests.
    pub fn tiny(
        in_channels: usize,
        num_classes: usize,
        base_channels: usize,
        levels: usize,
    ) -> Self {
        let mut strides = vec![[2, 2, 2]; levels];
        if let Some(s) = strides.first_mut() {
            *s = [1, 1, 1];
        }
        Self {
            in_channels,
            num_classes,
            base_channels,
            max_channels: base_channels * 8,
            kernel_sizes: vec![[3, 3, 3]; levels],
            strides,
            ..Self::stage1()
        }
    }

    pub fn levels(&self) -> usize {
        self.strides.len()
    }

    /// Feature channels per level: base * 2^level, capped.
    pub fn channels(&self) -> Vec<usize> {
        (0..self.levels())
            .map(|l| (self.base_channels << l).min(self.max_channels))
            .collect()
    }

    /// Cumulative downsampling factor of each level.
    pub fn cumulative_strides(&self) -> Vec<[usize; 3]> {
        let mut acc = [1; 3];
        self.strides
            .iter()
            .map(|s| {
                for i in 0..3 {
                    acc[i] *= s[i];
                }
                acc
            })
            .collect()
    }

    /// Every spatial size must be a multiple of this (the forward pass pads to it).
    pub fn size_divisor(&self) -> [usize; 3] {
        self.cumulative_strides().last().copied().unwrap_or([1; 3])
    }

    pub fn validate(&self) -> Result<()> {
        let l = self.levels();
        if l == 0 || self.kernel_sizes.len() != l {
            bail!(
                "U-Net config: {} strides but {} kernel sizes (need one per level, at least one)",
                l,
                self.kernel_sizes.len()
            )
        }
        if self.in_channels == 0
            || self.num_classes == 0
            || self.base_channels == 0
            || self.convs_per_level == 0
        {
            bail!("U-Net config: channel counts and convs_per_level must be positive")
        }
        if self.kernel_sizes.iter().flatten().any(|k| k % 2 == 0)
            || self.strides.iter().flatten().any(|&s| s == 0)
        {
            bail!("U-Net config: kernels must be odd and strides positive")
        }
        Ok(())
    }
}

/// `convs_per_level` x (conv -> instance norm -> LeakyReLU); the first conv may be strided.
#[derive(Clone, Debug)]
struct ConvBlock {
    layers: Vec<(Conv3d, InstanceNorm3d)>,
    slope: f64,
}

impl ConvBlock {
    fn new(
        cin: usize,
        cout: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        cfg: &UNetConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.convs_per_level);
        for i in 0..cfg.convs_per_level {
            let (ci, s) = if i == 0 {
                (cin, stride)
            } else {
                (cout, [1; 3])
            };
            let conv = Conv3d::new(
                ci,
                cout,
                kernel,
                Conv3dParams::same(kernel, s),
                true,
                vb.pp(format!("conv{i}")),
            )?;
            let norm = InstanceNorm3d::new(cout, cfg.norm_eps, vb.pp(format!("norm{i}")))?;
            layers.push((conv, norm));
        }
        Ok(Self {
            layers,
            slope: cfg.negative_slope,
        })
    }
}

impl ConvBlock {
    /// The block on the channel concatenation of `a` and `b` (a decoder's upsampled and skip
    /// activations); the first convolution reads both without the concatenation being built.
    fn forward_concat(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let Some(((conv, norm), rest)) = self.layers.split_first() else {
            return Tensor::cat(&[a, b], 1);
        };
        let h = norm.forward_leaky_relu(&conv.forward_concat(a, b)?, self.slope)?;
        self.rest(h, rest)
    }

    fn rest(&self, mut h: Tensor, layers: &[(Conv3d, InstanceNorm3d)]) -> Result<Tensor> {
        for (conv, norm) in layers {
            h = norm.forward_leaky_relu(&conv.forward(&h)?, self.slope)?;
        }
        Ok(h)
    }
}

impl Module for ConvBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.rest(x.clone(), &self.layers)
    }
}

#[derive(Clone, Debug)]
struct DecoderStage {
    up: ConvTranspose3d,
    block: ConvBlock,
    head: Conv3d,
}

/// The U-Net. `forward` returns full-resolution logits; [`UNet3d::forward_all`] returns the
/// deep-supervision outputs too (full resolution first).
#[derive(Clone, Debug)]
pub struct UNet3d {
    cfg: UNetConfig,
    encoder: Vec<ConvBlock>,
    decoder: Vec<DecoderStage>,
}

impl UNet3d {
    pub fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let ch = cfg.channels();
        let mut encoder = Vec::with_capacity(cfg.levels());
        for l in 0..cfg.levels() {
            let cin = if l == 0 { cfg.in_channels } else { ch[l - 1] };
            encoder.push(ConvBlock::new(
                cin,
                ch[l],
                cfg.kernel_sizes[l],
                cfg.strides[l],
                cfg,
                vb.pp(format!("encoder{l}")),
            )?);
        }
        // decoder[i] upsamples from level i+1 to level i.
        let mut decoder = Vec::with_capacity(cfg.levels().saturating_sub(1));
        for l in 0..cfg.levels() - 1 {
            let vbd = vb.pp(format!("decoder{l}"));
            let up = ConvTranspose3d::new(ch[l + 1], ch[l], cfg.strides[l + 1], vbd.pp("up"))?;
            let block = ConvBlock::new(
                2 * ch[l],
                ch[l],
                cfg.kernel_sizes[l],
                [1; 3],
                cfg,
                vbd.pp("block"),
            )?;
            let head = Conv3d::new(
                ch[l],
                cfg.num_classes,
                [1; 3],
                Conv3dParams::default(),
                true,
                vbd.pp("head"),
            )?;
            decoder.push(DecoderStage { up, block, head });
        }
        if decoder.is_empty() {
            bail!("U-Net config: at least two levels are needed")
        }
        Ok(Self {
            cfg: cfg.clone(),
            encoder,
            decoder,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Logits of every decoder level, full resolution first (`levels - 1` tensors), or only
    /// the full-resolution logits when `all` is false. Inputs whose size is not a multiple of
    /// [`UNetConfig::size_divisor`] are zero-padded and the outputs cropped back.
    fn run(&self, x: &Tensor, all: bool) -> Result<Vec<Tensor>> {
        let (_, _, d, h, w) = x.dims5()?;
        let div = self.cfg.size_divisor();
        let size = [d, h, w];
        let padded: Vec<usize> = (0..3).map(|i| size[i].div_ceil(div[i]) * div[i]).collect();
        let mut xin = x.clone();
        for i in 0..3 {
            if padded[i] != size[i] {
                xin = xin.pad_with_zeros(i + 2, 0, padded[i] - size[i])?;
            }
        }
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut hcur = xin;
        for block in &self.encoder {
            hcur = block.forward(&hcur)?;
            skips.push(hcur.clone());
        }
        let cum = self.cfg.cumulative_strides();
        let mut outputs = Vec::new();
        for l in (0..self.decoder.len()).rev() {
            let stage = &self.decoder[l];
            let up = stage.up.forward(&hcur)?;
            hcur = stage.block.forward_concat(&up, &skips[l])?;
            if all || l == 0 {
                let logits = stage.head.forward(&hcur)?;
                let mut crop = logits;
                for i in 0..3 {
                    let want = size[i].div_ceil(cum[l][i]);
                    if crop.dim(i + 2)? != want {
                        crop = crop.narrow(i + 2, 0, want)?;
                    }
                }
                outputs.push(crop);
            }
        }
        outputs.reverse();
        Ok(outputs)
    }

    /// Deep-supervision outputs, full resolution first.
    pub fn forward_all(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        self.run(x, true)
    }
}

impl Module for UNet3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = self.run(x, false)?;
        Ok(out.swap_remove(0))
    }
}
