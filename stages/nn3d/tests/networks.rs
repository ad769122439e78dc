//! Network construction: parameter counts of the method's configurations, output shapes for
//! odd input sizes, deep-supervision outputs, and a safetensors weight round trip.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use flow_nn3d::checkpoint::{load_weights, save_weights};
use flow_nn3d::{Classifier3d, ClassifierConfig, UNet3d, UNetConfig};

fn param_count(vm: &VarMap) -> usize {
    vm.all_vars().iter().map(|v| v.elem_count()).sum()
}

#[test]
fn stage1_unet_has_about_31m_parameters() -> Result<()> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let net = UNet3d::new(&UNetConfig::stage1(), vb)?;
    // Hand count (python, same formula as nnU-Net's PlainConvUNet with conv bias): 31,201,229.
    assert_eq!(param_count(&vm), 31_201_229);
    assert_eq!(net.config().channels(), vec![32, 64, 128, 256, 320, 320]);
    let vm2 = VarMap::new();
    UNet3d::new(
        &UNetConfig::stage2(),
        VarBuilder::from_varmap(&vm2, DType::F32, &Device::Cpu),
    )?;
    let n2 = param_count(&vm2);
    assert!(
        (30_500_000..31_500_000).contains(&n2),
        "stage-2 U-Net has {n2} parameters"
    );
    Ok(())
}

#[test]
fn stage3_classifier_has_about_0_9m_parameters() -> Result<()> {
    let vm = VarMap::new();
    let net = Classifier3d::new(
        &ClassifierConfig::default(),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    // convs 878,688 + instance-norm affine 960 + linear 129.
    assert_eq!(param_count(&vm), 879_777);
    let x = Tensor::randn(0f32, 1., (2, 2, 9, 8, 7), &Device::Cpu)?;
    assert_eq!(net.forward(&x)?.dims(), &[2, 1]);
    Ok(())
}

#[test]
fn unet_output_shapes_for_odd_sizes() -> Result<()> {
    let vm = VarMap::new();
    let mut cfg = UNetConfig::tiny(2, 3, 4, 3);
    cfg.strides[1] = [1, 2, 2];
    cfg.kernel_sizes[0] = [1, 3, 3];
    let net = UNet3d::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    for dims in [
        (1usize, 2usize, 5usize, 9usize, 7usize),
        (2, 2, 4, 8, 8),
        (1, 2, 3, 13, 6),
    ] {
        let x = Tensor::randn(0f32, 1., dims, &Device::Cpu)?;
        let y = net.forward(&x)?;
        assert_eq!(y.dims(), &[dims.0, 3, dims.2, dims.3, dims.4]);
        let all = net.forward_all(&x)?;
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].dims(), y.dims());
        // Level 1 downsamples by (1, 2, 2).
        assert_eq!(
            all[1].dims(),
            &[dims.0, 3, dims.2, dims.3.div_ceil(2), dims.4.div_ceil(2)]
        );
        let diff = (&all[0] - &y)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
    }
    Ok(())
}

#[test]
fn unet_rejects_inconsistent_config() {
    let vm = VarMap::new();
    let mut cfg = UNetConfig::tiny(1, 2, 4, 3);
    cfg.kernel_sizes.pop();
    assert!(UNet3d::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).is_err());
    let mut cfg = UNetConfig::tiny(1, 2, 4, 3);
    cfg.kernel_sizes[1] = [2, 3, 3];
    assert!(UNet3d::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).is_err());
}

#[test]
fn weights_round_trip_through_safetensors() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let cfg = UNetConfig::tiny(1, 2, 4, 2);
    let vm = VarMap::new();
    let net = UNet3d::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let x = Tensor::randn(0f32, 1., (1, 1, 4, 6, 4), &Device::Cpu)?;
    let y = net.forward(&x)?;
    save_weights(&vm, &path).unwrap();
    let vm2 = VarMap::new();
    let net2 = UNet3d::new(
        &cfg,
        VarBuilder::from_varmap(&vm2, DType::F32, &Device::Cpu),
    )?;
    assert!(
        (net2.forward(&x)? - &y)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?
            > 0.0
    );
    load_weights(&vm2, &path).unwrap();
    assert_eq!(
        (net2.forward(&x)? - &y)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?,
        0.0
    );
    // A different architecture does not load.
    let vm3 = VarMap::new();
    UNet3d::new(
        &UNetConfig::tiny(1, 3, 4, 2),
        VarBuilder::from_varmap(&vm3, DType::F32, &Device::Cpu),
    )?;
    assert!(load_weights(&vm3, &path).is_err());
    assert!(load_weights(&vm3, &dir.path().join("missing.safetensors")).is_err());
    Ok(())
}
