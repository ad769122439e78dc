//! Sliding-window inference: one window reproduces the direct forward pass (with and without
//! mirroring, several models), and a pointwise model gives the full-volume result on a volume
//! needing many overlapping windows and padding.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::ops::softmax;
use candle_nn::{VarBuilder, VarMap};
use flow_nn3d::layers::Conv3d;
use flow_nn3d::ops::Conv3dParams;
use flow_nn3d::{init_seeded, predict_sliding_window, SlidingWindowConfig, UNet3d, UNetConfig};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn unet(seed: u64) -> (VarMap, UNet3d) {
    let vm = VarMap::new();
    let net = UNet3d::new(
        &UNetConfig::tiny(2, 3, 4, 2),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_seeded(&vm, seed).unwrap();
    (vm, net)
}

#[test]
fn single_window_reproduces_forward_pass() -> Result<()> {
    let (_vm1, net1) = unet(1);
    let (_vm2, net2) = unet(2);
    let x = Tensor::randn(0f32, 1., (2, 8, 6, 10), &Device::Cpu)?;
    let mut cfg = SlidingWindowConfig::new([8, 6, 10]);
    cfg.mirror_axes = vec![];
    let mut calls = 0;
    let p = predict_sliding_window(&[&net1], &x, 3, &cfg, &mut |_, _| calls += 1)?;
    let direct = softmax(&net1.forward(&x.unsqueeze(0)?)?, 1)?.squeeze(0)?;
    assert_eq!(p.dims(), &[3, 8, 6, 10]);
    assert!(max_abs_diff(&p, &direct) < 1e-6);
    assert_eq!(calls, 1);

    // x-mirroring and two models: the mean of the four softmax outputs.
    cfg.mirror_axes = vec![2];
    let p = predict_sliding_window(&[&net1, &net2], &x, 3, &cfg, &mut |_, _| {})?;
    let xb = x.unsqueeze(0)?;
    let mut sum = Tensor::zeros((1, 3, 8, 6, 10), DType::F32, &Device::Cpu)?;
    for net in [&net1, &net2] {
        sum = (sum + softmax(&net.forward(&xb)?, 1)?)?;
        sum = (sum + softmax(&net.forward(&xb.flip(&[4])?)?, 1)?.flip(&[4])?)?;
    }
    let expect = (sum / 4.0)?.squeeze(0)?;
    assert!(max_abs_diff(&p, &expect) < 1e-6);
    let total = p.sum(0)?;
    assert!(max_abs_diff(&total, &Tensor::ones((8, 6, 10), DType::F32, &Device::Cpu)?) < 1e-5);
    Ok(())
}

#[test]
fn pointwise_model_matches_full_volume_with_many_windows() -> Result<()> {
    let vm = VarMap::new();
    let conv = Conv3d::new(
        2,
        4,
        [1, 1, 1],
        Conv3dParams::default(),
        true,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    let x = Tensor::randn(0f32, 1., (2, 13, 5, 21), &Device::Cpu)?;
    let mut cfg = SlidingWindowConfig::new([6, 8, 8]);
    cfg.batch_size = 3;
    let mut seen = Vec::new();
    let p = predict_sliding_window(&[&conv], &x, 4, &cfg, &mut |d, t| seen.push((d, t)))?;
    let direct = softmax(&conv.forward(&x.unsqueeze(0)?)?, 1)?.squeeze(0)?;
    assert_eq!(p.dims(), &[4, 13, 5, 21]);
    assert!(max_abs_diff(&p, &direct) < 1e-5);
    // 4 positions along D (13 vs 6 at step 3), 1 along H (padded), 5 along W (21 vs 8 at step 4).
    assert_eq!(seen.last(), Some(&(20, 20)));
    // One window per batch: the crop is a strided view, mirroring must still work.
    let p1 = predict_sliding_window(
        &[&conv],
        &x,
        4,
        &SlidingWindowConfig {
            batch_size: 1,
            ..cfg.clone()
        },
        &mut |_, _| {},
    )?;
    assert!(max_abs_diff(&p1, &direct) < 1e-5);
    assert!(predict_sliding_window(
        &[&conv],
        &x,
        4,
        &SlidingWindowConfig {
            step_fraction: 0.0,
            ..cfg.clone()
        },
        &mut |_, _| {}
    )
    .is_err());
    assert!(predict_sliding_window(&[&conv], &x, 5, &cfg, &mut |_, _| {}).is_err());
    Ok(())
}

#[test]
fn padding_uses_the_configured_value() -> Result<()> {
    // A 3x3x3 convolution sees the padding next to the border, so the result depends on it.
    let vm = VarMap::new();
    let conv = Conv3d::new(
        1,
        2,
        [3, 3, 3],
        Conv3dParams::new([1; 3], [1; 3]),
        true,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    init_seeded(&vm, 3)?;
    let x = Tensor::randn(0f32, 1., (1, 4, 6, 6), &Device::Cpu)?;
    let mut cfg = SlidingWindowConfig::new([8, 6, 6]);
    cfg.mirror_axes = vec![];
    cfg.pad_value = -3.0;
    let p = predict_sliding_window(&[&conv], &x, 2, &cfg, &mut |_, _| {})?;
    // Reference: pad D by 2 on both sides with -3 explicitly, run once, cut the middle.
    let fill = Tensor::full(-3f32, (1, 2, 6, 6), &Device::Cpu)?;
    let padded = Tensor::cat(&[&fill, &x, &fill], 1)?.unsqueeze(0)?;
    let direct = softmax(&conv.forward(&padded)?, 1)?
        .squeeze(0)?
        .narrow(1, 2, 4)?;
    assert!(max_abs_diff(&p, &direct) < 1e-5);
    // Zero padding gives another answer at the border: the test can tell them apart.
    cfg.pad_value = 0.0;
    let zero = predict_sliding_window(&[&conv], &x, 2, &cfg, &mut |_, _| {})?;
    assert!(max_abs_diff(&zero, &direct) > 1e-3);
    Ok(())
}
