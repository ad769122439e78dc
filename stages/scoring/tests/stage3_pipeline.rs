//! Stage 3 end to end on a synthetic cohort, the way the pipeline uses this crate: ROI voxels ->
//! study summaries -> quantile parameters fitted on out-of-fold studies -> combiner for
//! `patient_overall` -> `submission.csv` in sample order -> `score_files`.

mod common;

use flow_scoring::combiner::{fit_overall_combiner, CombinerConfig, CombinerInput};
use flow_scoring::quantile::{DEFAULT_FLOOR, DEFAULT_MAX_POINTS};
use flow_scoring::{
    fit_quantile_params, score_files, summarise_study, LabelTable, Predictions, QuantileFitConfig,
    SampleOrder, VoxelSummary, N_LABELS, OVERALL,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

struct Study {
    summaries: [VoxelSummary; N_LABELS],
    cnn_logit: f64,
}

/// One study's ROI: background, C1..C7 and T1 voxels with fracture probabilities; fractured
/// vertebrae carry a cluster of raised probabilities of random strength.
fn study(rng: &mut ChaCha8Rng, y: &[u8; N_LABELS]) -> Study {
    let mut probs = Vec::new();
    let mut labels = Vec::new();
    for label in 0u8..=8 {
        let n = if label == 0 { 4000 } else { 1200 };
        for _ in 0..n {
            probs.push(rng.gen::<f32>().powi(8) * 0.05);
            labels.push(label);
        }
        for _ in 0..rng.gen_range(0..30) {
            probs.push(rng.gen_range(0.02..0.4));
            labels.push(label);
        }
        if (1..=7).contains(&label) && y[usize::from(label)] == 1 {
            let strength: f32 = rng.gen_range(0.2..0.95);
            for _ in 0..rng.gen_range(20..250) {
                probs.push((strength + rng.gen_range(-0.15..0.05f32)).clamp(0.0, 1.0));
                labels.push(label);
            }
        }
    }
    let summaries = summarise_study(&probs, &labels, DEFAULT_FLOOR, DEFAULT_MAX_POINTS).unwrap();
    let cnn_logit = if y[OVERALL] == 1 { 1.0 } else { -1.0 } + rng.gen_range(-2.5..2.5);
    Study {
        summaries,
        cnn_logit,
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

#[test]
fn stage3_beats_the_prior_by_the_issue_margin() {
    let mut rng = common::rng(41);
    let (n_oof, n_test) = (240, 160);
    let oof_targets = common::random_targets(&mut rng, n_oof, 0.1);
    let test_targets = common::random_targets(&mut rng, n_test, 0.1);
    let oof: Vec<Study> = oof_targets.iter().map(|y| study(&mut rng, y)).collect();
    let test: Vec<Study> = test_targets.iter().map(|y| study(&mut rng, y)).collect();

    let oof_summaries: Vec<[VoxelSummary; N_LABELS]> =
        oof.iter().map(|s| s.summaries.clone()).collect();
    let fit =
        fit_quantile_params(&oof_summaries, &oof_targets, &QuantileFitConfig::default()).unwrap();
    let combiner_input = |s: &Study| {
        let q = fit.params.score_study(&s.summaries).unwrap();
        CombinerInput {
            cnn_logit: Some(s.cnn_logit),
            vertebra_scores: std::array::from_fn(|k| q[k + 1]),
            extra: vec![logit(q[OVERALL])],
        }
    };
    let config = CombinerConfig {
        extra_names: vec!["logit_overall_quantile".into()],
        ..CombinerConfig::default()
    };
    let oof_inputs: Vec<CombinerInput> = oof.iter().map(combiner_input).collect();
    let combiner = fit_overall_combiner(&oof_inputs, &oof_targets, &config).unwrap();
    assert!(combiner.fitted_contribution < combiner.max_vertebra_contribution);

    let probs: Vec<[f64; N_LABELS]> = test
        .iter()
        .map(|s| {
            let mut p = fit.params.score_study(&s.summaries).unwrap();
            p[OVERALL] = combiner.combiner.predict(&combiner_input(s)).unwrap();
            p
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let uids = common::uids(n_test);
    let labels_path = dir.path().join("labels.csv");
    LabelTable::new(uids.clone(), test_targets)
        .unwrap()
        .write(&labels_path)
        .unwrap();
    let sample_path = dir.path().join("sample_submission.csv");
    let mut sample = String::from("row_id,fractured\n");
    for uid in uids.iter().rev() {
        for label in flow_scoring::LABEL_NAMES {
            sample.push_str(&format!("{uid}_{label},0.5\n"));
        }
    }
    std::fs::write(&sample_path, sample).unwrap();
    let submission = dir.path().join("submission.csv");
    Predictions::new(uids, probs)
        .unwrap()
        .write(&submission, Some(&SampleOrder::read(&sample_path).unwrap()))
        .unwrap();

    let report = score_files(&labels_path, &submission).unwrap();
    println!("{}", flow_scoring::render_table(&report));
    assert!(
        report.ratio_to_prior <= 0.6,
        "metric {} vs prior {}",
        report.metric,
        report.prior_baseline_metric
    );
    let overall_auc = report.labels[OVERALL].auc.unwrap();
    assert!(overall_auc >= 0.9, "patient_overall AUC {overall_auc}");
}
