//! Stage-1 learning-speed experiment behind the demo profile's loss choice (docs/rsna7.md):
//! trains one variant on converted studies and prints, every 25 iterations, the Dice of the
//! argmax (correct class) on fresh training patches.
//!
//!     cargo run -p flow-rsna7 --example stage1_learning -- VOLUMES_DIR LABELS_DIR ITERATIONS VARIANT
//!
//! VARIANT words: `bin` (C1-C7 as one class), `aux` (+ foreground Dice), `sm1` (Dice smooth 1),
//! `diceonly`, `ce`, `fg1` (always foreground patches), `s50`/`s45` (5 / 4.5 mm), `b4`/`b16`
//! (base channels), `l3` (3 levels); e.g. `base`, `aux`, `bin`.
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use flow_nn3d::{init_seeded, Optimizer, OptimizerConfig, UNet3d, UNetConfig};
use flow_patches::BatchSource as _;
use std::sync::Arc;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (vol_dir, lab_dir, iters): (&str, &str, usize) = (&a[1], &a[2], a[3].parse().unwrap());
    let variant = a[4].clone();
    let dev = Device::Cpu;
    let mut recipe = flow_rsna7::recipes::stage1("demo", 1).unwrap();
    if variant.contains("s30") { recipe.spacing_xyz = [3.0; 3]; }
    if variant.contains("s50") { recipe.spacing_xyz = [5.0; 3]; }
    if variant.contains("s45") { recipe.spacing_xyz = [4.5; 3]; }
    let mut studies = Vec::new();
    for e in std::fs::read_dir(lab_dir).unwrap() {
        let p = e.unwrap().path();
        let uid = p.file_name().unwrap().to_str().unwrap().trim_end_matches(".nii.gz").to_string();
        let ct = match flow_imaging::read_nifti(&std::path::Path::new(vol_dir).join(format!("{uid}.nii.gz"))).unwrap() { flow_imaging::AnyVolume::I16(v) => v, _ => panic!() };
        let mut lab = flow_imaging::read_nifti(&p).unwrap().to_labels().unwrap();
        if variant.contains("bin") { lab = lab.map(|l| u8::from((1..=7).contains(&l))); }
        studies.push(flow_rsna7::stage1::resample_study(&uid, &ct, &lab, &recipe).unwrap());
    }
    let (_, cases) = flow_rsna7::stage1::training_cases(&studies).unwrap();
    let classes = if variant.contains("bin") { 2 } else { 9 };
    let pfg = if variant.contains("fg1") { 1.0 } else { 0.5 };
    let pipe = flow_patches::PatchPipeline::new(flow_patches::PatchSampler::new([32, 32, 32], pfg).unwrap(), flow_patches::AugmentConfig::none(), -3.0);
    let src = flow_patches::PatchBatchSource::new(Arc::new(cases), pipe, 2, None).unwrap();
    let base = if variant.contains("b16") { 16 } else if variant.contains("b4") { 4 } else { 8 };
    let levels = if variant.contains("l3") { 3 } else { 4 };
    let cfg = UNetConfig { deep_supervision: false, ..UNetConfig::tiny(1, classes, base, levels) };
    let vars = VarMap::new();
    let net = UNet3d::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &dev)).unwrap();
    init_seeded(&vars, 1).unwrap();
    let lr = if variant.contains("lr3") { 3e-3 } else { 1e-2 };
    let mut opt = Optimizer::from_varmap(OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 3e-5, decoupled: false, amsgrad: false }, &vars);
    let t0 = std::time::Instant::now();
    for it in 0..iters {
        let b = src.make_batch(it as u64, &mut flow_patches::stream_rng(3, it as u64)).unwrap();
        let x = Tensor::from_vec(b.stacked_images(), (2, 1, 32, 32, 32), &dev).unwrap();
        let y = Tensor::from_vec(b.stacked_labels(), (2, 1, 32, 32, 32), &dev).unwrap();
        let logits = net.forward(&x).unwrap();
        let onehot = flow_nn3d::loss::one_hot(&y, classes, DType::F32).unwrap();
        let loss = if variant.contains("aux") {
            let pb = candle_nn::ops::softmax(&logits, 1).unwrap().narrow(1, 0, 1).unwrap();
            let fgp = pb.affine(-1.0, 1.0).unwrap();
            let fgt = onehot.narrow(1, 0, 1).unwrap().affine(-1.0, 1.0).unwrap();
            let tp = (&fgp * &fgt).unwrap().sum_all().unwrap();
            let d = ((tp * 2.0).unwrap() + 1.0).unwrap().div(&((fgp.sum_all().unwrap() + fgt.sum_all().unwrap()).unwrap() + 1.0).unwrap()).unwrap();
            (flow_nn3d::loss::dice_ce_loss(&logits, &y).unwrap() - d).unwrap()
        } else if variant.contains("sm1") { (flow_nn3d::loss::soft_dice_loss(&logits, &onehot, 1.0).unwrap() + flow_nn3d::loss::cross_entropy(&logits, &onehot).unwrap()).unwrap() } else if variant.contains("diceonly") { flow_nn3d::loss::soft_dice_loss(&logits, &onehot, 1e-5).unwrap() } else if variant.contains("dice3") { (flow_nn3d::loss::soft_dice_loss(&logits, &onehot, 1e-5).unwrap() * 3.0).unwrap().add(&flow_nn3d::loss::cross_entropy(&logits, &onehot).unwrap()).unwrap() } else if variant.contains("ce") { flow_nn3d::loss::cross_entropy(&logits, &onehot).unwrap() } else { flow_nn3d::loss::dice_ce_loss(&logits, &y).unwrap() };
        let g = loss.backward().unwrap();
        opt.step(&g, lr).unwrap();
        if (it + 1) % 25 == 0 {
            // Dice of argmax on 4 fresh batches
            let (mut tp, mut np, mut nt) = (0f64, 0f64, 0f64);
            for k in 0..4u64 {
                let b = src.make_batch(100000 + k, &mut flow_patches::stream_rng(9, k)).unwrap();
                let x = Tensor::from_vec(b.stacked_images(), (2, 1, 32, 32, 32), &dev).unwrap();
                let am = net.forward(&x).unwrap().argmax(1).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap();
                for (p, t) in am.iter().zip(b.stacked_labels()) {
                    let (p, t) = (*p as u8, t);
                    if p != 0 { np += 1.0 } if t != 0 { nt += 1.0 } if p != 0 && p == t { tp += 1.0 }
                }
            }
            println!("{variant} it {} loss {:.4} fg-dice {:.3} ({:.0}s)", it + 1, loss.to_scalar::<f32>().unwrap(), 2.0 * tp / (np + nt).max(1.0), t0.elapsed().as_secs_f64());
        }
    }
}
