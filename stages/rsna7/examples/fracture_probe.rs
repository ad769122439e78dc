//! Fracture-model experiment: trains one stage-2 U-Net on the training ROIs of a finished run
//! and measures it on the test ROIs against the synthetic cohort's truth: fracture Dice at
//! p >= 0.5 (pooled), and the AUC of each vertebra's maximum probability for "this vertebra is
//! fractured". It isolates the fracture model from the rounds around it.
//!
//!     cargo run --release -p flow-rsna7 --example fracture_probe -- TRAIN_ROIS TEST_ROIS ROOT [LABELS]
//!
//! TRAIN_ROIS / TEST_ROIS are `rsna.roi` outputs (<uid>.ct.nii.gz, <uid>.vertebrae.nii.gz),
//! ROOT the cohort (truth/fractures). LABELS is a `rsna.fracture_labels` output; without it the
//! net trains on the truth masks of every training study (an upper bound no real run has).
//! Environment: ITERS (default 400), PROFILE (demo), SYN_P (synthetic-fracture probability,
//! the round-1 recipe's by default), PFG (forced-foreground probability), LR, BASE and LEVELS
//! (net width and depth), PATCH=z,y,x, BATCH, SEED, SPACING (mm; with RESULTS=results/rsna7 of
//! the run, the ROIs are cut again at that spacing; only without LABELS); NEGATIVES_ONLY=1 trains on the studies
//! whose label is empty only (what synthetic fractures alone teach); SAVE=dir writes each test
//! ROI's CT, vertebrae, truth and probabilities there.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use flow_imaging::ops::Interpolation;
use flow_imaging::{read_nifti, Volume};
use flow_nn3d::train::LogProgress;
use flow_nn3d::UNetConfig;
use flow_rsna7::normalize::sample_where;
use flow_rsna7::segnet::to_grid;
use flow_rsna7::{
    onto_grid_of, plans::Plans, predict_probabilities, train_segmentation, training_case,
    CtNormalizer, SegModel, SegRecipe,
};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn studies(dir: &Path, suffix: &str) -> HashMap<String, PathBuf> {
    std::fs::read_dir(dir)
        .expect("folder")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.to_string();
            let uid = name.strip_suffix(&format!("{suffix}.nii.gz"))?;
            Some((uid.to_string(), p.clone()))
        })
        .collect()
}

struct Roi {
    uid: String,
    ct: Volume<f32>,
    vert: Volume<u8>,
    truth: Volume<u8>,
}

/// The ROIs of `dir`; with `SPACING` set, cut again from the run's CT volumes and stage-1
/// labels (`results/rsna7/convert_<split>/volumes`, `stage1_predict_<split>/labels` next to
/// `RESULTS`) at that spacing, as `rsna.roi` does with a 5 mm margin.
fn load(dir: &Path, root: &Path, split: &str) -> Vec<Roi> {
    let cts = studies(dir, ".ct");
    let verts = studies(dir, ".vertebrae");
    let mut uids: Vec<_> = cts.keys().cloned().collect();
    uids.sort();
    let respaced = env::<f64>("SPACING").map(|s| {
        let results = PathBuf::from(std::env::var("RESULTS").expect("RESULTS with SPACING"));
        (s, results)
    });
    uids.into_iter()
        .map(|uid| {
            let (ct, vert) = match &respaced {
                None => (
                    read_nifti(&cts[&uid]).unwrap().to_f32(),
                    read_nifti(&verts[&uid]).unwrap().to_labels().unwrap(),
                ),
                Some((s, results)) => {
                    let file = format!("{uid}.nii.gz");
                    let ct =
                        read_nifti(&results.join(format!("convert_{split}/volumes")).join(&file))
                            .unwrap()
                            .to_f32();
                    let labels = read_nifti(
                        &results
                            .join(format!("stage1_predict_{split}/labels"))
                            .join(&file),
                    )
                    .unwrap()
                    .to_labels()
                    .unwrap();
                    let roi =
                        flow_rsna7::Roi::around_cervical(&uid, &labels, 5.0, [*s; 3]).unwrap();
                    (
                        roi.extract(&ct, Interpolation::Linear),
                        roi.extract(&labels, Interpolation::Nearest),
                    )
                }
            };
            let t = read_nifti(&root.join("truth/fractures").join(format!("{uid}.nii.gz")))
                .unwrap()
                .to_labels()
                .unwrap();
            let truth = onto_grid_of(&t, &vert, Interpolation::Nearest);
            Roi {
                uid,
                ct,
                vert,
                truth,
            }
        })
        .collect()
}

fn auc(pairs: &[(f64, bool)]) -> f64 {
    let (mut num, mut pos, mut neg) = (0.0, 0.0, 0.0);
    for &(a, ya) in pairs {
        if !ya {
            neg += 1.0;
            continue;
        }
        pos += 1.0;
        for &(b, yb) in pairs {
            if !yb {
                num += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    num / (pos * neg)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fracture_probe TRAIN_ROIS TEST_ROIS ROOT [LABELS]");
        std::process::exit(2);
    }
    let (train_dir, test_dir, root) = (
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
        PathBuf::from(&args[3]),
    );
    let labels = args.get(4).map(PathBuf::from);
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "demo".into());
    let seed = env("SEED").unwrap_or(1);
    let plans = Plans::builtin(&profile).unwrap();
    let inference = plans.inference.fracture_round1.clone();
    let mut recipe = SegRecipe {
        seed,
        ..plans.fracture_round1
    };
    let iters: usize = env("ITERS").unwrap_or(400);
    recipe.epochs = iters.div_ceil(recipe.iterations);
    if let Some(p) = env("SYN_P") {
        recipe.synthetic_fracture_p = p;
    }
    if let Some(p) = env("PFG") {
        recipe.p_foreground = p;
    }
    if let Some(lr) = env("LR") {
        recipe.lr = lr;
    }
    if let Some(b) = env("BATCH") {
        recipe.batch = b;
    }
    if let (Some(base), Some(levels)) = (env("BASE"), env("LEVELS")) {
        recipe.net = UNetConfig {
            deep_supervision: false,
            ..UNetConfig::tiny(1, 2, base, levels)
        };
    }
    if let Some(s) = env("SPACING") {
        recipe.spacing_xyz = [s; 3];
    }
    if let Ok(p) = std::env::var("PATCH") {
        let v: Vec<usize> = p.split(',').map(|s| s.parse().unwrap()).collect();
        recipe.patch_zyx = [v[0], v[1], v[2]];
    }
    println!("recipe: {recipe:?}");
    let t = Instant::now();
    let train = load(&train_dir, &root, "train");
    let test = load(&test_dir, &root, "test");
    println!(
        "loaded {} train + {} test ROIs in {:.1}s",
        train.len(),
        test.len(),
        t.elapsed().as_secs_f64()
    );
    let label_of: HashMap<String, Volume<u8>> = match &labels {
        Some(dir) => studies(dir, "")
            .into_iter()
            .map(|(u, p)| (u, read_nifti(&p).unwrap().to_labels().unwrap()))
            .collect(),
        None => train
            .iter()
            .map(|r| (r.uid.clone(), r.truth.map(|v| u8::from(v != 0))))
            .collect(),
    };
    let negatives_only = std::env::var("NEGATIVES_ONLY").is_ok_and(|v| v == "1");
    let used: Vec<&Roi> = train
        .iter()
        .filter(|r| label_of.contains_key(&r.uid))
        .filter(|r| !negatives_only || label_of[&r.uid].data().iter().all(|&v| v == 0))
        .collect();
    let mut samples = Vec::new();
    for r in &used {
        let v = r.vert.data();
        samples.extend(sample_where(r.ct.data(), |i| (1..=7).contains(&v[i]), 5));
    }
    let norm = CtNormalizer::fit(&mut samples).unwrap();
    let cases = used
        .iter()
        .map(|r| {
            training_case(
                &r.uid,
                &r.ct.map(|x| norm.apply(x)),
                &label_of[&r.uid],
                Some(&r.vert),
            )
            .unwrap()
        })
        .collect();
    let out = std::env::temp_dir().join(format!("fracture_probe_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let t = Instant::now();
    let meta = train_segmentation(
        "fracture",
        &recipe,
        norm,
        None,
        None,
        cases,
        false,
        &Device::Cpu,
        &out.join("ckpt"),
        &out.join("model"),
        &mut LogProgress,
    )
    .unwrap();
    let losses: Vec<String> = meta
        .history
        .iter()
        .map(|r| format!("{:.3}", r.train_loss))
        .collect();
    println!("loss per epoch: {}", losses.join(" "));
    println!(
        "trained {iters} iterations on {} studies in {:.1}s",
        used.len(),
        t.elapsed().as_secs_f64()
    );
    let model = SegModel::load(&out.join("model"), &Device::Cpu).unwrap();
    let t = Instant::now();
    let (mut tp, mut pred, mut truth) = (0u64, 0u64, 0u64);
    let mut vert_scores = Vec::new();
    let mut study_scores = Vec::new();
    for r in &test {
        let image = to_grid(&r.ct.map(|x| norm.apply(x))).unwrap();
        let probs = predict_probabilities(&[&model], &image, &inference, &Device::Cpu).unwrap();
        let n = r.ct.len();
        let p = &probs[n..2 * n];
        if let Ok(dir) = std::env::var("SAVE") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap();
            let prob = Volume::from_vec(r.ct.dims(), p.to_vec(), r.ct.geometry).unwrap();
            let w = |name: &str| dir.join(format!("{}.{name}.nii.gz", r.uid));
            flow_imaging::write_nifti(&prob, &w("prob")).unwrap();
            flow_imaging::write_nifti(&r.ct, &w("ct")).unwrap();
            flow_imaging::write_nifti(&r.truth, &w("truth")).unwrap();
            flow_imaging::write_nifti(&r.vert, &w("vertebrae")).unwrap();
        }
        let mut vmax = [0f64; 7];
        let mut vpos = [false; 7];
        for ((&pv, &t), &v) in p.iter().zip(r.truth.data()).zip(r.vert.data()) {
            let (pi, ti) = (pv >= 0.5, t != 0);
            tp += u64::from(pi && ti);
            pred += u64::from(pi);
            truth += u64::from(ti);
            if (1..=7).contains(&v) {
                let k = v as usize - 1;
                vmax[k] = vmax[k].max(f64::from(pv));
                vpos[k] |= ti;
            }
        }
        println!(
            "  {}: max p per vertebra {:?}, fractured {:?}",
            &r.uid[r.uid.len().saturating_sub(6)..],
            vmax.map(|m| (m * 100.0).round() / 100.0),
            vpos.map(u8::from)
        );
        study_scores.push((
            vmax.iter().cloned().fold(0.0, f64::max),
            vpos.iter().any(|&x| x),
        ));
        vert_scores.extend(vmax.iter().zip(vpos).map(|(&m, y)| (m, y)));
    }
    println!(
        "test: Dice {:.3} (tp {tp}, predicted {pred}, truth {truth}); vertebra AUC {:.3}; study AUC {:.3}; predicted in {:.1}s",
        2.0 * tp as f64 / (pred + truth).max(1) as f64,
        auc(&vert_scores),
        auc(&study_scores),
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&out);
}
