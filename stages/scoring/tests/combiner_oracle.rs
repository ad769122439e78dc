//! The combiner's weighted ridge logistic regression against scikit-learn's
//! `LogisticRegression(C = 1 / lambda)` with the metric's sample weights.

mod common;

use flow_scoring::combiner::{max_vertebra, noisy_or};
use flow_scoring::metric::normalised_weights;
use flow_scoring::{fit_overall_combiner, CombinerConfig, CombinerInput, N_LABELS, OVERALL};
use rand::Rng;

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

#[test]
fn combiner_matches_sklearn_logistic_regression() {
    let Some(python) = common::python() else {
        return;
    };
    let mut rng = common::rng(21);
    let n = 300;
    let targets = common::random_targets(&mut rng, n, 0.08);
    let inputs: Vec<CombinerInput> = targets
        .iter()
        .map(|y| {
            let scores: [f64; 7] = std::array::from_fn(|k| {
                if y[k + 1] == 1 {
                    rng.gen_range(0.1..0.95)
                } else {
                    rng.gen_range(0.0..0.5f64).powi(2)
                }
            });
            let cnn = if y[OVERALL] == 1 { 0.8 } else { -0.8 } + rng.gen_range(-2.0..2.0);
            CombinerInput {
                cnn_logit: Some(cnn),
                vertebra_scores: scores,
                extra: vec![],
            }
        })
        .collect();
    let config = CombinerConfig {
        l2: 5e-3,
        ..CombinerConfig::default()
    };
    let fit = fit_overall_combiner(&inputs, &targets, &config).unwrap();
    let c = &fit.combiner;

    let x: Vec<Vec<f64>> = inputs
        .iter()
        .map(|i| {
            let raw = [
                i.cnn_logit.unwrap(),
                logit(max_vertebra(&i.vertebra_scores)),
                logit(noisy_or(&i.vertebra_scores)),
            ];
            (0..3)
                .map(|k| (raw[k] - c.model.mean[k]) / c.model.scale[k])
                .collect()
        })
        .collect();
    let weight: Vec<f64> = targets
        .iter()
        .map(|y: &[u8; N_LABELS]| normalised_weights(y)[OVERALL])
        .collect();
    let lambda = config.l2 * weight.iter().sum::<f64>();
    let data = serde_json::json!({
        "x": x,
        "y": targets.iter().map(|t| t[OVERALL]).collect::<Vec<_>>(),
        "weight": weight,
        "lambda": lambda,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.json");
    std::fs::write(&path, data.to_string()).unwrap();
    let oracle = common::run_oracle(&python, "logistic_oracle.py", &[&path]);

    let intercept = oracle["intercept"].as_f64().unwrap();
    assert!(
        (c.model.intercept - intercept).abs() < 1e-5,
        "intercept {} vs sklearn {intercept}",
        c.model.intercept
    );
    for (k, theirs) in oracle["coef"].as_array().unwrap().iter().enumerate() {
        let theirs = theirs.as_f64().unwrap();
        assert!(
            (c.model.coef[k] - theirs).abs() < 1e-5,
            "coef {k}: {} vs sklearn {theirs}",
            c.model.coef[k]
        );
    }
}
