//! The metric and AUC against scikit-learn (per-study weighted `log_loss`, `roc_auc_score`), on
//! random data with edge probabilities 0 and 1 and many ties, going through the CSV files.

mod common;

use flow_scoring::{score_files, LabelTable, Predictions, LABEL_NAMES};
use rand::Rng;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn metric_and_auc_match_sklearn() {
    let Some(python) = common::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for (seed, n, tie_levels) in [(1u64, 40usize, 0u32), (2, 200, 10), (3, 25, 3)] {
        let mut rng = common::rng(seed);
        let targets = common::random_targets(&mut rng, n, 0.25);
        let probs: Vec<[f64; 8]> = (0..n)
            .map(|_| {
                std::array::from_fn(|_| {
                    let u: f64 = rng.gen();
                    match rng.gen_range(0..10) {
                        0 => 0.0,
                        1 => 1.0,
                        _ if tie_levels > 0 => (u * tie_levels as f64).round() / tie_levels as f64,
                        _ => u,
                    }
                })
            })
            .collect();
        let uids = common::uids(n);
        let labels_path = dir.path().join(format!("labels{seed}.csv"));
        let pred_path = dir.path().join(format!("pred{seed}.csv"));
        LabelTable::new(uids.clone(), targets)
            .unwrap()
            .write(&labels_path)
            .unwrap();
        Predictions::new(uids, probs)
            .unwrap()
            .write(&pred_path, None)
            .unwrap();

        let report = score_files(&labels_path, &pred_path).unwrap();
        cases.push((seed, report, labels_path, pred_path));
    }
    let paths: Vec<&std::path::Path> = cases
        .iter()
        .flat_map(|c| [c.2.as_path(), c.3.as_path()])
        .collect();
    let oracles = common::run_oracle(&python, "metric_oracle.py", &paths);
    for (k, (seed, report, _, _)) in cases.iter().enumerate() {
        let oracle = &oracles[k];
        let per_study = oracle["per_study"].as_array().unwrap();
        assert_eq!(per_study.len(), report.n_studies);
        let expected = oracle["metric"].as_f64().unwrap();
        assert!(
            close(report.metric, expected, 1e-12),
            "seed {seed}: metric {} vs sklearn {expected}",
            report.metric
        );
        let expected_prior = oracle["prior_metric"].as_f64().unwrap();
        assert!(
            close(report.prior_baseline_metric, expected_prior, 1e-12),
            "seed {seed}: prior {} vs sklearn {expected_prior}",
            report.prior_baseline_metric
        );
        for (j, name) in LABEL_NAMES.iter().enumerate() {
            let ours = report.labels[j].auc;
            let theirs = oracle["auc"][name].as_f64();
            match (ours, theirs) {
                (Some(a), Some(b)) => {
                    assert!(close(a, b, 1e-12), "seed {seed} {name}: AUC {a} vs {b}")
                }
                (None, None) => {}
                other => panic!("seed {seed} {name}: AUC presence differs {other:?}"),
            }
        }
        let pooled = report
            .pooled_vertebra_auc
            .expect("random targets have both classes");
        let theirs = oracle["pooled_vertebra_auc"].as_f64().unwrap();
        assert!(
            close(pooled, theirs, 1e-12),
            "seed {seed}: pooled vertebra AUC {pooled} vs {theirs}"
        );
    }
}

#[test]
fn constant_half_scores_ln2_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::rng(9);
    let n = 30;
    let uids = common::uids(n);
    let labels_path = dir.path().join("labels.csv");
    let pred_path = dir.path().join("pred.csv");
    LabelTable::new(uids.clone(), common::random_targets(&mut rng, n, 0.3))
        .unwrap()
        .write(&labels_path)
        .unwrap();
    Predictions::new(uids, vec![[0.5; 8]; n])
        .unwrap()
        .write(&pred_path, None)
        .unwrap();
    let report = score_files(&labels_path, &pred_path).unwrap();
    assert!((report.metric - std::f64::consts::LN_2).abs() < 1e-15);
    // The design's reference value on the real labels.
    #[allow(clippy::approx_constant)]
    let reference = 0.6931;
    assert!((report.metric - reference).abs() < 5e-5);
    // Constant scores tie everywhere: AUC 0.5.
    for l in &report.labels {
        if let Some(auc) = l.auc {
            assert_eq!(auc, 0.5, "{}", l.label);
        }
    }
}

#[test]
fn truth_scores_near_zero_and_beats_prior() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::rng(10);
    let n = 50;
    let uids = common::uids(n);
    let targets = common::random_targets(&mut rng, n, 0.2);
    let probs: Vec<[f64; 8]> = targets.iter().map(|y| y.map(f64::from)).collect();
    let labels_path = dir.path().join("labels.csv");
    let pred_path = dir.path().join("pred.csv");
    LabelTable::new(uids.clone(), targets)
        .unwrap()
        .write(&labels_path)
        .unwrap();
    Predictions::new(uids, probs)
        .unwrap()
        .write(&pred_path, None)
        .unwrap();
    let report = score_files(&labels_path, &pred_path).unwrap();
    assert!(report.metric < 1e-14, "{}", report.metric);
    assert!(report.prior_baseline_metric > 0.1);
    for l in &report.labels {
        if let Some(auc) = l.auc {
            assert_eq!(auc, 1.0, "{}", l.label);
        }
    }
    let table = flow_scoring::render_table(&report);
    assert!(
        table.contains("patient_overall") && table.contains("C7"),
        "{table}"
    );
}
