//! Stage-1 cascade experiment: trains the low- and full-resolution models of a profile on the
//! studies that have a label map, segments the test studies and prints Dice per vertebra on
//! the CT grid against the synthetic cohort's truth, with the time each step took.
//!
//!     cargo run -p flow-rsna7 --example stage1_cascade -- ROOT TRAIN_VOLUMES TEST_VOLUMES LABELS [PROFILE] [LOW_ITERS] [FINE_ITERS]
//!
//! ROOT is a synthetic cohort (truth/vertebrae), the volumes and labels folders are the
//! outputs of `dicom.to_nifti` and `rsna.segmentations` (e.g. under results/rsna7/). The
//! iteration counts override the profile's epochs (10 iterations per epoch); 0 skips the
//! full-resolution model. LOW_SPACING=x,y,z, LOW_PATCH=z,y,x and LOW_BATCH=n change the
//! low-resolution recipe for an experiment, FINE_SPACING and FINE_PATCH the full-resolution
//! one; SEED=n the seed of both models (default 1); LOW_MODEL=dir and FINE_MODEL=dir use
//! trained models (a run's stage-1 outputs) instead of training; LEVEL_MARKERS=c sets the
//! level watershed's marker confidence (0: plain argmax).
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use flow_imaging::{read_nifti, AnyVolume, Volume};
use flow_nn3d::train::LogProgress;
use flow_rsna7::stage1::{prepare_study, training_cases, Resolution};
use flow_rsna7::{
    dice_per_label, plans::Plans, segment_vertebrae, train_segmentation, SegModel, SegRecipe,
};

fn ct(path: &Path) -> Volume<i16> {
    match read_nifti(path).expect("CT") {
        AnyVolume::I16(v) => v,
        other => panic!("{}: expected int16, got {}", path.display(), other.dtype()),
    }
}

fn uids(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("folder")
        .map(|e| e.expect("entry").path())
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .strip_suffix(".nii.gz")
                .map(|u| (u.to_string(), p.clone()))
        })
        .collect();
    v.sort();
    v
}

fn train(
    resolution: Resolution,
    mut recipe: SegRecipe,
    iters: usize,
    volumes: &Path,
    labels: &Path,
    out: &Path,
) -> SegModel {
    recipe.epochs = iters.div_ceil(recipe.iterations);
    let t = Instant::now();
    let studies: Vec<_> = uids(labels)
        .iter()
        .map(|(uid, l)| {
            prepare_study(
                uid,
                &ct(&volumes.join(format!("{uid}.nii.gz"))),
                &read_nifti(l).unwrap().to_labels().unwrap(),
                &recipe,
                resolution,
            )
            .unwrap()
        })
        .collect();
    let dims: Vec<_> = studies.iter().map(|s| s.hu.dims()).collect();
    println!(
        "{resolution:?}: {} studies, grids {:?}..{:?}",
        studies.len(),
        dims.iter().min(),
        dims.iter().max()
    );
    let (norm, cases) = training_cases(&studies).unwrap();
    let ckpt = out.join("ckpt");
    let _ = std::fs::remove_dir_all(&ckpt);
    train_segmentation(
        resolution.task(),
        &recipe,
        norm,
        None,
        None,
        cases,
        false,
        &Device::Cpu,
        &ckpt,
        out,
        &mut LogProgress,
    )
    .unwrap();
    println!(
        "{resolution:?}: {} iterations in {:.0} s",
        recipe.epochs * recipe.iterations,
        t.elapsed().as_secs_f64()
    );
    SegModel::load(out, &Device::Cpu).unwrap()
}

fn main() {
    tracing_subscriber_init();
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: stage1_cascade ROOT TRAIN_VOLUMES TEST_VOLUMES LABELS [PROFILE] [LOW_ITERS] [FINE_ITERS]");
        std::process::exit(2);
    }
    let (root, train_vols, test_vols, labels) = (
        Path::new(&a[1]),
        Path::new(&a[2]),
        Path::new(&a[3]),
        Path::new(&a[4]),
    );
    let profile = a.get(5).map_or("demo", String::as_str);
    let low_iters: usize = a.get(6).map_or(240, |s| s.parse().expect("LOW_ITERS"));
    let fine_iters: usize = a.get(7).map_or(100, |s| s.parse().expect("FINE_ITERS"));
    let work = std::env::temp_dir().join(format!("stage1_cascade_{}", std::process::id()));
    let seed: u64 = std::env::var("SEED").map_or(1, |s| s.parse().expect("SEED"));
    let plans = Plans::builtin(profile).unwrap();
    let inference = plans.inference.clone();
    let mut low_recipe = SegRecipe {
        seed,
        ..plans.stage1_lowres.clone()
    };
    // Variants for experiments: LOW_SPACING=x,y,z (mm), LOW_PATCH=z,y,x, LOW_BATCH=n.
    let list = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.split(',')
                .map(|x| x.parse::<f64>().expect(name))
                .collect::<Vec<_>>()
        })
    };
    if let Some(v) = list("LOW_SPACING") {
        low_recipe.spacing_xyz = [v[0], v[1], v[2]];
    }
    if let Some(v) = list("LOW_PATCH") {
        low_recipe.patch_zyx = [v[0] as usize, v[1] as usize, v[2] as usize];
    }
    if let Some(v) = list("LOW_BATCH") {
        low_recipe.batch = v[0] as usize;
    }
    // FINE_SPACING=x,y,z and FINE_PATCH=z,y,x change the full-resolution recipe.
    let mut fine_recipe = SegRecipe {
        seed,
        ..plans.stage1_fullres
    };
    if let Some(v) = list("FINE_SPACING") {
        fine_recipe.spacing_xyz = [v[0], v[1], v[2]];
    }
    if let Some(v) = list("FINE_PATCH") {
        fine_recipe.patch_zyx = [v[0] as usize, v[1] as usize, v[2] as usize];
    }
    // LOW_MODEL=dir / FINE_MODEL=dir: use trained models (e.g. a run's stage1_* outputs).
    let saved = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|d| SegModel::load(Path::new(&d), &Device::Cpu).expect(name))
    };
    let low = saved("LOW_MODEL").unwrap_or_else(|| {
        train(
            Resolution::Lowres,
            low_recipe,
            low_iters,
            train_vols,
            labels,
            &work.join("low"),
        )
    });
    let fine = saved("FINE_MODEL").or_else(|| {
        (fine_iters > 0).then(|| {
            train(
                Resolution::Fullres,
                fine_recipe.clone(),
                fine_iters,
                train_vols,
                labels,
                &work.join("fine"),
            )
        })
    });
    // LEVEL_MARKERS=c: the level watershed's marker confidence (0: plain argmax).
    let level_markers: f32 =
        std::env::var("LEVEL_MARKERS").map_or(0.8, |s| s.parse().expect("LEVEL_MARKERS"));
    let t = Instant::now();
    let mut sums = [(0.0, 0usize); 8];
    for (uid, path) in uids(test_vols) {
        let v = ct(&path);
        let pred = segment_vertebrae(
            &[&low],
            &fine.iter().collect::<Vec<_>>(),
            [&inference.stage1_lowres, &inference.stage1_fullres],
            &v,
            &Device::Cpu,
            2.0,
            level_markers,
        )
        .unwrap();
        let truth = read_nifti(&root.join("truth/vertebrae").join(format!("{uid}.nii.gz")))
            .unwrap()
            .to_labels()
            .unwrap();
        let truth = truth.map(|l| if l <= 8 { l } else { 0 });
        let d = dice_per_label(&pred, &truth, 8).unwrap();
        // Where the error is: the spine as one class, and how often the level is right where
        // prediction and truth are both spine.

        let spine = dice_per_label(
            &pred.map(|l| u8::from(l > 0)),
            &truth.map(|l| u8::from(l > 0)),
            1,
        )
        .unwrap()[0];
        let (mut agree, mut both) = (0usize, 0usize);
        for (&p, &t) in pred.data().iter().zip(truth.data()) {
            if p > 0 && t > 0 {
                both += 1;
                agree += usize::from(p == t);
            }
        }
        let count = |v: &Volume<u8>| v.data().iter().filter(|&&l| (1..=7).contains(&l)).count();
        println!(
            "   spine Dice {:.3}, level right on {:.3} of the overlap, C1-C7 voxels predicted/true {:.3}",
            spine.unwrap_or(0.0),
            agree as f64 / both.max(1) as f64,
            count(&pred) as f64 / count(&truth).max(1) as f64
        );
        let row: Vec<String> = d
            .iter()
            .map(|x| x.map_or("-".into(), |x| format!("{x:.2}")))
            .collect();
        println!("{}: {}", &uid[uid.len().saturating_sub(6)..], row.join(" "));
        for (s, x) in sums.iter_mut().zip(&d) {
            if let Some(x) = x {
                s.0 += x;
                s.1 += 1;
            }
        }
    }
    let means: Vec<f64> = sums.iter().map(|(s, n)| s / (*n).max(1) as f64).collect();
    println!(
        "mean Dice C1..C7, T1: {:?}",
        means.iter().map(|m| format!("{m:.3}")).collect::<Vec<_>>()
    );
    println!(
        "mean Dice C1-C7: {:.3}  (inference {:.1} s)",
        means[..7].iter().sum::<f64>() / 7.0,
        t.elapsed().as_secs_f64()
    );
}

fn tracing_subscriber_init() {
    // Epoch lines from the training loop go through `tracing`; print them when RUST_LOG is set.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .try_init();
    }
}
