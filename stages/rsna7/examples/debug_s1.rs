use candle_core::Device;
use flow_imaging::ops::{resample_to_spacing, Interpolation};
use flow_rsna7::segnet::to_grid;
use flow_rsna7::{predict_probabilities, SegModel};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dev = Device::Cpu;
    let m = SegModel::load(std::path::Path::new(&a[1]), &dev).unwrap();
    let ct = match flow_imaging::read_nifti(std::path::Path::new(&a[2])).unwrap() { flow_imaging::AnyVolume::I16(v) => v, _ => panic!() };
    let hu = resample_to_spacing(&ct.map(f32::from), m.meta.recipe.spacing_xyz, Interpolation::Linear);
    let norm = m.meta.normalizer;
    println!("norm {norm:?} dims {:?}", hu.dims());
    let g = to_grid(&hu.map(|x| norm.apply(x))).unwrap();
    let p = predict_probabilities(&[&m], &g, &dev).unwrap();
    let n = hu.len();
    let mut counts = vec![0usize; 9];
    let mut sums = vec![0f64; 9];
    for i in 0..n {
        let mut best = 0;
        for c in 0..9 { sums[c] += p[c*n+i] as f64; if p[c*n+i] > p[best*n+i] { best = c; } }
        counts[best] += 1;
    }
    let sub = flow_patches::Grid3::from_fn([32, 32, 32], |z, y, x| g.get(z + 11, y + 4, x + 5)).unwrap();
    let ps = predict_probabilities(&[&m], &sub, &dev).unwrap();
    let ns = 32 * 32 * 32;
    let mut cs = vec![0usize; 9];
    for i in 0..ns { let mut b = 0; for c in 0..9 { if ps[c*ns+i] > ps[b*ns+i] { b = c; } } cs[b] += 1; }
    println!("single window argmax {cs:?}");
    if a.len() > 3 {
        use flow_patches::BatchSource as _;
        let lab = flow_imaging::read_nifti(std::path::Path::new(&a[3])).unwrap().to_labels().unwrap();
        let st = flow_rsna7::stage1::resample_study("x", &ct, &lab, &m.meta.recipe).unwrap();
        println!("resampled label nonzero {}", st.labels.data().iter().filter(|&&v| v != 0).count());
        let (_, cases) = flow_rsna7::stage1::training_cases(&[st]).unwrap();
        let pipe = flow_patches::PatchPipeline::new(flow_patches::PatchSampler::new([32, 32, 32], 0.5).unwrap(), flow_patches::AugmentConfig::none(), -3.0);
        let src = flow_patches::PatchBatchSource::new(std::sync::Arc::new(cases), pipe, 2, None).unwrap();
        for i in 0..3 {
            let b = src.make_batch(i, &mut flow_patches::stream_rng(1, i)).unwrap();
            let l = b.stacked_labels();
            println!("batch {i}: label nonzero {} of {}", l.iter().filter(|&&v| v != 0).count(), l.len());
            {
                let im = b.stacked_images();
                let (mut f, mut nf, mut g2, mut ng) = (0f64, 0f64, 0f64, 0f64);
                for (v, &lab) in im.iter().zip(&l) { if lab != 0 { f += *v as f64; nf += 1.0 } else { g2 += *v as f64; ng += 1.0 } }
                println!("   image mean on label {:.3}, off label {:.3}", f / nf, g2 / ng);
            }
            let img = b.stacked_images();
            let sub = flow_patches::Grid3::from_vec([32, 32, 32], img[..32768].to_vec()).unwrap();
            let ps = predict_probabilities(&[&m], &sub, &dev).unwrap();
            let mut cs = vec![0usize; 9];
            for i in 0..32768 { let mut bb = 0; for c in 0..9 { if ps[c*32768+i] > ps[bb*32768+i] { bb = c; } } cs[bb] += 1; }
            println!("   pred on it {cs:?}");
            use candle_core::Module;
            let x = candle_core::Tensor::from_vec(img.clone(), (2, 1, 32, 32, 32), &dev).unwrap();
            let y = candle_core::Tensor::from_vec(l.clone(), (2, 1, 32, 32, 32), &dev).unwrap();
            let out2 = m.net().forward(&x).unwrap();
            let loss2 = flow_nn3d::loss::dice_ce_loss(&out2, &y).unwrap().to_scalar::<f32>().unwrap();
            let x1 = x.narrow(0, 0, 1).unwrap();
            let out1 = m.net().forward(&x1).unwrap();
            let loss1 = flow_nn3d::loss::dice_ce_loss(&out1, &y.narrow(0, 0, 1).unwrap()).unwrap().to_scalar::<f32>().unwrap();
            let diff = (out2.narrow(0, 0, 1).unwrap() - &out1).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            println!("   loss batch2 {loss2} batch1 {loss1} max logit diff {diff}");
        }
    }
    println!("argmax counts {counts:?}\nmean probs {:?}", sums.iter().map(|s| s / n as f64).collect::<Vec<_>>());
}

#[allow(dead_code)]
fn unused() {}
