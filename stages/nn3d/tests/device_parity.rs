//! The same numbers on another path: every op, a U-Net training step and a sliding-window
//! prediction run on the CPU with its fused kernels and again on each target, from the same
//! inputs and weights, and must agree within a stated tolerance. The targets:
//! - always, the CPU with the fused kernels turned off (`ops::with_generic_ops`): candle's
//!   generic ops, the path a GPU takes, so CI checks that both paths compute the same function;
//! - `FLOW_NN3D_TEST_DEVICE` when set (e.g. `cuda`, in a build with `--features cuda`):
//!   `scripts/gpu-check.sh` runs this on a GPU machine.
//!
//! Tolerances (f32): single ops 1e-4 and a whole training step or prediction 2e-3, relative to
//! the larger magnitude (`common::assert_close`); cuBLAS and the generic ops sum in another
//! order than the fused kernels, and a U-Net compounds that over a dozen layers.

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::{assert_close, to_vec, Rng};
use flow_nn3d::ops::{
    avg_pool3d, conv3d, conv_transpose3d_nonoverlapping, instance_norm_leaky_relu, max_pool3d,
    resize_trilinear3d, with_generic_ops, Conv3dParams, Pool3dParams,
};
use flow_nn3d::train::{Batch, Objective, SegmentationObjective};
use flow_nn3d::{
    init_seeded, parse_device, predict_sliding_window, Optimizer, OptimizerConfig,
    SlidingWindowConfig, UNet3d, UNetConfig,
};

const OP_TOL: f64 = 1e-4;
const NET_TOL: f64 = 2e-3;

/// Where the numbers are compared with the fused CPU kernels' numbers.
struct Target {
    name: String,
    device: Device,
    generic: bool,
}

impl Target {
    fn reference() -> Self {
        Target {
            name: "cpu, fused kernels".into(),
            device: Device::Cpu,
            generic: false,
        }
    }

    fn run<R>(&self, f: impl FnOnce(&Device) -> R) -> R {
        if self.generic {
            with_generic_ops(|| f(&self.device))
        } else {
            f(&self.device)
        }
    }
}

/// The CPU's generic path, and `FLOW_NN3D_TEST_DEVICE` where set.
fn targets() -> Vec<Target> {
    let mut out = vec![Target {
        name: "cpu, generic ops".into(),
        device: Device::Cpu,
        generic: true,
    }];
    match std::env::var("FLOW_NN3D_TEST_DEVICE") {
        Ok(spec) if !spec.is_empty() => out.push(Target {
            device: parse_device(&spec)
                .unwrap_or_else(|e| panic!("FLOW_NN3D_TEST_DEVICE={spec}: {e}")),
            name: spec,
            generic: false,
        }),
        _ => println!("FLOW_NN3D_TEST_DEVICE unset: the CPU's generic path only (a GPU: scripts/gpu-check.sh)"),
    }
    out
}

fn f32_tensor(rng: &mut Rng, dims: &[usize], dev: &Device) -> Tensor {
    let n = dims.iter().product();
    let v: Vec<f32> = rng.vec(n).into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(v, dims, dev).unwrap()
}

/// `f` on copies of `inputs` for the reference and for `target`: its outputs and the gradients
/// of `sum(output * fixed weights)` with respect to every input, compared.
fn compare(
    target: &Target,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    tol: f64,
    what: &str,
) {
    let run = |t: &Target| -> (Vec<f64>, Vec<Vec<f64>>) {
        t.run(|d| {
            let vars: Vec<Var> = inputs
                .iter()
                .map(|x| Var::from_tensor(&x.to_device(d).unwrap()).unwrap())
                .collect();
            let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let y = f(&ts).unwrap();
            let mut rng = Rng::new(99);
            let weights = f32_tensor(&mut rng, y.dims(), &Device::Cpu)
                .to_device(d)
                .unwrap();
            let grads = (&y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g = vars
                .iter()
                .map(|v| {
                    to_vec(
                        grads
                            .get(v.as_tensor())
                            .expect("every input has a gradient"),
                    )
                })
                .collect();
            (to_vec(&y), g)
        })
    };
    let (y_ref, g_ref) = run(&Target::reference());
    let (y, g) = run(target);
    let what = format!("{what} on {}", target.name);
    assert_close(&y, &y_ref, tol, &format!("{what}: output"));
    for (i, (a, b)) in g.iter().zip(&g_ref).enumerate() {
        assert_close(a, b, tol, &format!("{what}: gradient of input {i}"));
    }
}

#[test]
fn ops_match_the_fused_cpu_kernels_forward_and_backward() {
    for target in targets() {
        ops_match_on(&target);
    }
}

fn ops_match_on(dev: &Target) {
    let mut rng = Rng::new(1);
    let x = f32_tensor(&mut rng, &[2, 4, 9, 8, 7], &Device::Cpu);
    let w = f32_tensor(&mut rng, &[5, 4, 3, 3, 3], &Device::Cpu);
    let b = f32_tensor(&mut rng, &[5], &Device::Cpu);
    for (name, p) in [
        ("conv3d same", Conv3dParams::same([3; 3], [1; 3])),
        ("conv3d stride 2", Conv3dParams::same([3; 3], [2; 3])),
        (
            "conv3d stride (1,2,2)",
            Conv3dParams::same([3; 3], [1, 2, 2]),
        ),
    ] {
        compare(
            dev,
            &[x.clone(), w.clone(), b.clone()],
            |t| conv3d(&t[0], &t[1], Some(&t[2]), &p),
            OP_TOL,
            name,
        );
    }
    let gamma = f32_tensor(&mut rng, &[4], &Device::Cpu);
    let beta = f32_tensor(&mut rng, &[4], &Device::Cpu);
    compare(
        dev,
        &[x.clone(), gamma, beta],
        |t| instance_norm_leaky_relu(&t[0], &t[1], &t[2], 1e-5, 0.01),
        OP_TOL,
        "instance norm + LeakyReLU",
    );
    let wt = f32_tensor(&mut rng, &[4, 3, 2, 2, 2], &Device::Cpu);
    let bt = f32_tensor(&mut rng, &[3], &Device::Cpu);
    compare(
        dev,
        &[x.clone(), wt, bt],
        |t| conv_transpose3d_nonoverlapping(&t[0], &t[1], Some(&t[2])),
        OP_TOL,
        "transposed convolution",
    );
    let even = f32_tensor(&mut rng, &[2, 3, 8, 6, 4], &Device::Cpu);
    let pool = Pool3dParams::non_overlapping([2, 2, 2]);
    compare(
        dev,
        std::slice::from_ref(&even),
        |t| max_pool3d(&t[0], &pool),
        OP_TOL,
        "max pool",
    );
    compare(
        dev,
        std::slice::from_ref(&even),
        |t| avg_pool3d(&t[0], &pool),
        OP_TOL,
        "average pool",
    );
    compare(
        dev,
        &[even],
        |t| resize_trilinear3d(&t[0], [11, 9, 5]),
        OP_TOL,
        "trilinear resize",
    );
}

/// A small U-Net with deep supervision, seeded weights.
fn unet(dev: &Device) -> (VarMap, UNet3d) {
    let vm = VarMap::new();
    let mut cfg = UNetConfig::tiny(1, 3, 4, 3);
    cfg.deep_supervision = true;
    let net = UNet3d::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, dev)).unwrap();
    init_seeded(&vm, 7).unwrap();
    (vm, net)
}

/// Values by parameter name.
type Named = Vec<(String, Vec<f64>)>;

/// Every parameter's gradient by name, as f64 values (a head the loss does not use has none).
fn gradients(vm: &VarMap, grads: &candle_core::backprop::GradStore) -> Named {
    let data = vm.data().lock().unwrap();
    let mut out: Vec<(String, Vec<f64>)> = data
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), to_vec(grads.get(v.as_tensor())?))))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn a_unet_training_step_and_a_sliding_window_prediction_match_the_fused_cpu_kernels() {
    let mut rng = Rng::new(2);
    let image = f32_tensor(&mut rng, &[2, 1, 16, 16, 16], &Device::Cpu);
    let target = ((f32_tensor(&mut rng, &[2, 1, 16, 16, 16], &Device::Cpu) + 1.0).unwrap() * 1.5)
        .unwrap()
        .floor()
        .unwrap()
        .clamp(0f32, 2f32)
        .unwrap();
    let volume = f32_tensor(&mut rng, &[1, 24, 20, 18], &Device::Cpu);
    let step = |t: &Target| -> (f64, Named, Vec<f64>) {
        t.run(|d| {
            let (vm, net) = unet(d);
            let batch = Batch {
                image: image.to_device(d).unwrap(),
                target: target.to_device(d).unwrap(),
            };
            let obj = SegmentationObjective { net: &net };
            let loss = obj.loss(&batch).unwrap();
            let grads = loss.backward().unwrap();
            let g = gradients(&vm, &grads);
            // The step after it, so the prediction also sees updated weights.
            let mut opt = Optimizer::from_varmap(OptimizerConfig::nnunet_sgd(), &vm);
            opt.step(&grads, 0.01).unwrap();
            let mut cfg = SlidingWindowConfig::new([16, 16, 16]);
            cfg.mirror_axes = vec![0, 2];
            let probs = predict_sliding_window(
                &[&net as &dyn candle_core::Module],
                &volume.to_device(d).unwrap(),
                3,
                &cfg,
                &mut |_, _| {},
            )
            .unwrap();
            let loss = to_vec(&loss.to_dtype(DType::F64).unwrap().reshape(1).unwrap())[0];
            (loss, g, to_vec(&probs))
        })
    };
    let (loss_ref, grads_ref, probs_ref) = step(&Target::reference());
    for t in targets() {
        let (loss, grads, probs) = step(&t);
        let on = &t.name;
        assert_close(
            &[loss],
            &[loss_ref],
            NET_TOL,
            &format!("training loss on {on}"),
        );
        let names = |g: &[(String, Vec<f64>)]| g.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&grads),
            names(&grads_ref),
            "the same parameters get gradients on {on}"
        );
        assert!(grads_ref.len() > 10, "{} gradients", grads_ref.len());
        for ((name, a), (_, b)) in grads.iter().zip(&grads_ref) {
            assert_close(a, b, NET_TOL, &format!("gradient of {name} on {on}"));
        }
        assert_close(
            &probs,
            &probs_ref,
            NET_TOL,
            &format!("sliding-window probabilities on {on}"),
        );
    }
}
