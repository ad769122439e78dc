//! Losses against naive formulas and finite differences; optimisers against PyTorch results
//! (tests/oracle/torch_optim_oracle.py); gradient clipping.

mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use common::{assert_close, check_grad, tensor, to_vec, Rng};
use flow_nn3d::loss::{
    bce_with_logits, deep_supervision_loss, deep_supervision_weights, dice_ce_loss, one_hot,
};
use flow_nn3d::optim::{clip_grad_norm, Optimizer, OptimizerConfig};

fn labels(rng: &mut Rng, dims: &[usize], classes: usize) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| (rng.next_u64() % classes as u64) as f64)
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// Naive Dice + CE: softmax per voxel, batch dice over foreground classes, mean CE.
fn naive_dice_ce(logits: &[f64], lab: &[f64], n: usize, c: usize, v: usize) -> f64 {
    let mut tp = vec![0.0; c];
    let mut sp = vec![0.0; c];
    let mut sg = vec![0.0; c];
    let mut ce = 0.0;
    for b in 0..n {
        for i in 0..v {
            let z: Vec<f64> = (0..c).map(|k| logits[(b * c + k) * v + i]).collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = z.iter().map(|x| (x - m).exp()).sum();
            let y = lab[b * v + i] as usize;
            ce -= z[y] - m - s.ln();
            for k in 0..c {
                let p = (z[k] - m).exp() / s;
                sp[k] += p;
                if k == y {
                    tp[k] += p;
                    sg[k] += 1.0;
                }
            }
        }
    }
    let dice: f64 = (1..c)
        .map(|k| (2.0 * tp[k] + 1e-5) / (sp[k] + sg[k] + 1e-5))
        .sum::<f64>()
        / (c - 1) as f64;
    ce / (n * v) as f64 - dice
}

#[test]
fn dice_ce_matches_naive_and_finite_differences() -> Result<()> {
    let mut rng = Rng::new(11);
    let dims = [2, 3, 2, 3, 2];
    let logits = tensor(&mut rng, &dims);
    let lab = labels(&mut rng, &[2, 1, 2, 3, 2], 3);
    let l = dice_ce_loss(&logits, &lab)?.to_scalar::<f64>()?;
    let expect = naive_dice_ce(&to_vec(&logits), &to_vec(&lab), 2, 3, 12);
    assert!((l - expect).abs() < 1e-12, "{l} vs {expect}");
    check_grad(&logits, |x| dice_ce_loss(x, &lab), 1e-6, "dice+ce grad");
    Ok(())
}

/// Value and logit gradient of Dice + CE, through the fused CPU op or (`generic`) the
/// composed candle ops a GPU runs.
fn dice_ce_and_grad(logits: &Tensor, lab: &Tensor, generic: bool) -> (f64, Vec<f64>) {
    let run = || {
        let var = Var::from_tensor(logits).unwrap();
        let l = (dice_ce_loss(var.as_tensor(), lab).unwrap() * 0.7).unwrap();
        let g = l.backward().unwrap();
        let value = l.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        (value, to_vec(g.get(var.as_tensor()).unwrap()))
    };
    if generic {
        flow_nn3d::ops::with_generic_ops(run)
    } else {
        run()
    }
}

#[test]
fn fused_dice_ce_matches_the_composed_loss() -> Result<()> {
    let mut rng = Rng::new(12);
    // 2 x 20^3 voxels span several of the op's tasks; 4 classes, one of them absent.
    let dims = [2, 4, 20, 20, 20];
    for dtype in [DType::F64, DType::F32] {
        let logits = (tensor(&mut rng, &dims) * 3.0)?.to_dtype(dtype)?;
        let mut lab = to_vec(&labels(&mut rng, &[2, 1, 20, 20, 20], 3));
        // Labels that are no class (out of range, fractional) count for no class in both.
        lab[5] = 7.0;
        lab[9] = 1.5;
        let lab = Tensor::from_vec(lab, (2, 1, 20, 20, 20), &Device::Cpu)?;
        let (fused, g_fused) = dice_ce_and_grad(&logits, &lab, false);
        let (composed, g_composed) = dice_ce_and_grad(&logits, &lab, true);
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        assert!(
            (fused - composed).abs() < tol,
            "{dtype:?}: {fused} vs {composed}"
        );
        assert_close(
            &g_fused,
            &g_composed,
            tol,
            &format!("{dtype:?} dice+ce grad"),
        );
    }
    Ok(())
}

#[test]
fn one_hot_encodes_labels() -> Result<()> {
    let lab = Tensor::new(&[0f32, 2., 1., 2.], &Device::Cpu)?.reshape((1, 1, 1, 2, 2))?;
    let oh = one_hot(&lab, 3, DType::F32)?;
    assert_eq!(
        oh.flatten_all()?.to_vec1::<f32>()?,
        vec![1., 0., 0., 0., 0., 0., 1., 0., 0., 1., 0., 1.]
    );
    Ok(())
}

#[test]
fn deep_supervision_weights_and_loss() -> Result<()> {
    let w = deep_supervision_weights(5);
    let s = 1.0 + 0.5 + 0.25 + 0.125;
    assert_close(
        &w,
        &[1.0 / s, 0.5 / s, 0.25 / s, 0.125 / s, 0.0],
        1e-15,
        "ds weights",
    );
    assert_eq!(deep_supervision_weights(1), vec![1.0]);
    let mut rng = Rng::new(12);
    let lab = labels(&mut rng, &[1, 1, 4, 4, 4], 2);
    let full = tensor(&mut rng, &[1, 2, 4, 4, 4]);
    let half = tensor(&mut rng, &[1, 2, 2, 2, 2]);
    let quarter = tensor(&mut rng, &[1, 2, 1, 1, 1]);
    let l =
        deep_supervision_loss(&[full.clone(), half.clone(), quarter], &lab)?.to_scalar::<f64>()?;
    // Nearest downsampling by 2 takes the even-indexed voxels.
    let lv = to_vec(&lab);
    let mut small = Vec::new();
    for z in 0..2 {
        for y in 0..2 {
            for x in 0..2 {
                small.push(lv[(z * 2 * 4 + y * 2) * 4 + x * 2]);
            }
        }
    }
    let lab_half = Tensor::from_vec(small, (1, 1, 2, 2, 2), &Device::Cpu)?;
    let expect = (2.0 / 3.0) * dice_ce_loss(&full, &lab)?.to_scalar::<f64>()?
        + (1.0 / 3.0) * dice_ce_loss(&half, &lab_half)?.to_scalar::<f64>()?;
    assert!((l - expect).abs() < 1e-12, "{l} vs {expect}");
    Ok(())
}

#[test]
fn bce_with_logits_matches_naive_and_is_stable() -> Result<()> {
    let x = Tensor::new(&[-3.0f64, -0.5, 0.0, 0.7, 4.0, 200.0, -200.0], &Device::Cpu)?;
    let t = Tensor::new(&[0.0f64, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0], &Device::Cpu)?;
    let l = bce_with_logits(&x, &t)?.to_scalar::<f64>()?;
    let xv = to_vec(&x);
    let tv = to_vec(&t);
    let naive: f64 = xv
        .iter()
        .zip(&tv)
        .map(|(x, t)| {
            let p: f64 = 1.0 / (1.0 + (-x).exp());
            -(t * p.max(1e-300).ln() + (1.0 - t) * (1.0 - p).max(1e-300).ln())
        })
        .sum::<f64>()
        / 7.0;
    assert!(l.is_finite());
    // The two saturated entries contribute ~0 in both.
    assert!((l - naive).abs() < 1e-9, "{l} vs {naive}");
    check_grad(
        &Tensor::new(&[-1.5f64, 0.2, 2.5], &Device::Cpu)?,
        |x| bce_with_logits(x, &Tensor::new(&[1.0f64, 0.0, 0.3], &Device::Cpu)?),
        1e-6,
        "bce grad",
    );
    Ok(())
}

/// Runs five steps of `loss = sum(p*c) + 0.5*sum(p^2 * [1,2,3])` with lrs 0.01..0.006.
fn run_optimizer(cfg: OptimizerConfig) -> Vec<f64> {
    let p = Var::new(&[0.5f64, -1.25, 2.0], &Device::Cpu).unwrap();
    let c = Tensor::new(&[0.3f64, -0.7, 1.1], &Device::Cpu).unwrap();
    let k = Tensor::new(&[1.0f64, 2.0, 3.0], &Device::Cpu).unwrap();
    let mut opt = Optimizer::new(cfg, vec![("p".into(), p.clone())]);
    for lr in [0.01, 0.009, 0.008, 0.007, 0.006] {
        let loss = ((p.as_tensor() * &c).unwrap().sum_all().unwrap()
            + (p.as_tensor().sqr().unwrap() * &k)
                .unwrap()
                .sum_all()
                .unwrap()
                * 0.5)
            .unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, lr).unwrap();
    }
    to_vec(p.as_tensor())
}

#[test]
fn optimizers_match_pytorch() {
    let sgd = run_optimizer(OptimizerConfig::nnunet_sgd());
    assert_close(
        &sgd,
        &[0.3858748608883018, -0.8088136444082048, 1.054155158931814],
        1e-13,
        "sgd nesterov",
    );
    let adam = run_optimizer(OptimizerConfig::adam_amsgrad());
    assert_close(
        &adam,
        &[0.4600353419746198, -1.210017057674385, 1.9600114001679703],
        1e-13,
        "adam amsgrad",
    );
    let adamw = run_optimizer(OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
        decoupled: true,
        amsgrad: false,
    });
    assert_close(
        &adamw,
        &[0.45810380285826635, -1.2050906262262266, 1.9520898647524798],
        1e-13,
        "adamw",
    );
}

#[test]
fn optimizer_state_round_trips() {
    let p = Var::new(&[1.0f64, 2.0], &Device::Cpu).unwrap();
    let mut opt = Optimizer::new(
        OptimizerConfig::adam_amsgrad(),
        vec![("p".into(), p.clone())],
    );
    let grads = p
        .as_tensor()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    opt.step(&grads, 0.1).unwrap();
    let state = opt.state_tensors();
    assert_eq!(state.len(), 3);
    let mut fresh = Optimizer::new(
        OptimizerConfig::adam_amsgrad(),
        vec![("p".into(), p.clone())],
    );
    fresh.load_state(&state, opt.steps()).unwrap();
    assert_eq!(fresh.steps(), 1);
    let mut bad = state.clone();
    bad.insert(
        "q/exp_avg".into(),
        Tensor::zeros(2, DType::F64, &Device::Cpu).unwrap(),
    );
    assert!(fresh.load_state(&bad, 1).is_err());
    let mut missing = state;
    missing.remove("p/exp_avg_sq");
    assert!(fresh.load_state(&missing, 1).is_err());
}

#[test]
fn clip_grad_norm_scales_to_max() -> Result<()> {
    let a = Var::new(&[3.0f64, 0.0], &Device::Cpu)?;
    let b = Var::new(&[0.0f64, 4.0], &Device::Cpu)?;
    let loss = (((a.as_tensor() * a.as_tensor())?.sum_all()? * 0.5)?
        + ((b.as_tensor() * b.as_tensor())?.sum_all()? * 0.5)?)?;
    let mut grads = loss.backward()?;
    let params = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
    let norm = clip_grad_norm(&mut grads, &params, 1.0)?;
    assert!((norm - 5.0).abs() < 1e-12);
    let ga = to_vec(grads.get(a.as_tensor()).unwrap());
    let gb = to_vec(grads.get(b.as_tensor()).unwrap());
    let scale = 1.0 / (5.0 + 1e-6);
    assert_close(&ga, &[3.0 * scale, 0.0], 1e-12, "clipped a");
    assert_close(&gb, &[0.0, 4.0 * scale], 1e-12, "clipped b");
    let norm2 = clip_grad_norm(&mut grads, &params, 10.0)?;
    assert!((norm2 - 5.0 * scale).abs() < 1e-12, "{norm2}");
    assert_close(
        &to_vec(grads.get(a.as_tensor()).unwrap()),
        &ga,
        0.0,
        "unclipped a",
    );
    Ok(())
}
