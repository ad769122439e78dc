//! Label statistics of large label-only cohorts: prevalences follow the parameters, and the
//! competition metric behaves as on the real labels (prior-only near the prevalence baseline,
//! truth scores 0).

use flow_scoring::metric::competition_metric;
use flow_synth::config::{COMPETITION_POSITIVE_STUDIES, COMPETITION_VERTEBRA_COUNTS};
use flow_synth::{plan_cohort, CohortConfig, StudyPlan};

fn large_plan(prevalence: f64, studies: usize) -> Vec<StudyPlan> {
    let mut cfg = CohortConfig::tiny();
    cfg.train_studies = studies;
    cfg.test_studies = 0;
    cfg.fracture_prevalence = prevalence;
    plan_cohort(&cfg).unwrap().studies
}

/// Targets in the metric's order: `[patient_overall, C1..C7]`.
fn targets(plan: &[StudyPlan]) -> Vec<[u8; 8]> {
    plan.iter()
        .map(|s| {
            let mut t = [u8::from(s.positive()); 8];
            for j in 0..7 {
                t[j + 1] = u8::from(s.fractured[j]);
            }
            t
        })
        .collect()
}

#[test]
fn prevalences_match_parameters() {
    let n = 20_000;
    for prevalence in [COMPETITION_POSITIVE_STUDIES / 2019.0, 0.25] {
        let plan = large_plan(prevalence, n);
        let positives = plan.iter().filter(|s| s.positive()).count() as f64;
        let sd = (prevalence * (1.0 - prevalence) / n as f64).sqrt();
        assert!(
            (positives / n as f64 - prevalence).abs() < 4.0 * sd,
            "overall {}",
            positives / n as f64
        );
        let mean_k = COMPETITION_VERTEBRA_COUNTS.iter().sum::<f64>() / COMPETITION_POSITIVE_STUDIES;
        for (j, count) in COMPETITION_VERTEBRA_COUNTS.iter().enumerate() {
            let want = prevalence * count / COMPETITION_POSITIVE_STUDIES;
            let got = plan.iter().filter(|s| s.fractured[j]).count() as f64 / n as f64;
            let sd = (want * (1.0 - want) / n as f64).sqrt();
            assert!((got - want).abs() < 4.0 * sd, "C{}: {got} vs {want}", j + 1);
        }
        let per_positive: Vec<usize> = plan
            .iter()
            .filter(|s| s.positive())
            .map(|s| s.fractured.iter().filter(|&&f| f).count())
            .collect();
        assert!(per_positive.iter().all(|&k| (1..=3).contains(&k)));
        let mean = per_positive.iter().sum::<usize>() as f64 / per_positive.len() as f64;
        assert!(
            (mean - mean_k).abs() < 0.03,
            "mean fractured vertebrae {mean}"
        );
    }
    // Ordering like the competition: C7 most common, C3 rarest.
    let plan = large_plan(0.5, n);
    let count = |j: usize| plan.iter().filter(|s| s.fractured[j]).count();
    assert!(count(6) > count(1) && count(1) > count(4) && count(2) < count(3));
}

#[test]
fn metric_sanity_prior_only_and_truth() {
    let plan = large_plan(COMPETITION_POSITIVE_STUDIES / 2019.0, 20_000);
    let t = targets(&plan);
    // Prior-only predictor from the parameters (not fitted on these labels).
    let mut prior = [COMPETITION_POSITIVE_STUDIES / 2019.0; 8];
    for j in 0..7 {
        prior[j + 1] = COMPETITION_VERTEBRA_COUNTS[j] / 2019.0;
    }
    let prior_score = competition_metric(&t, &vec![prior; t.len()]).unwrap();
    // The competition's own per-column prevalence baseline on the real labels is 0.5638.
    assert!(
        (prior_score - 0.5638).abs() < 0.01,
        "prior-only {prior_score}"
    );
    let half = competition_metric(&t, &vec![[0.5; 8]; t.len()]).unwrap();
    assert!((half - std::f64::consts::LN_2).abs() < 1e-9);
    assert!(prior_score < half);
    let truth: Vec<[f64; 8]> = t.iter().map(|r| r.map(f64::from)).collect();
    let perfect = competition_metric(&t, &truth).unwrap();
    assert!(perfect < 1e-12, "truth {perfect}");
}
