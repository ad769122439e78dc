//! The `patient_overall` combiner: a weighted logistic regression, fitted on out-of-fold data,
//! over the stage-3 CNN's overall logit, the logit of the highest vertebra score, the logit of
//! the noisy-or of the vertebra scores, and any extra features a pipeline supplies.
//!
//! Sample weights are the metric's own (`7` or `14` over the study's weight sum), so the fit
//! ([`crate::logistic`]) minimises exactly the `patient_overall` share of the competition
//! metric, plus a small ridge on standardised features that keeps separable data finite.

use serde::{Deserialize, Serialize};

use crate::labels::{N_LABELS, OVERALL};
use crate::logistic::{fit_logistic, LogisticModel};
use crate::metric::{clipped_bce, normalised_weights};
use crate::ScoringError;

/// Scores are clamped to `[PROB_EPS, 1 - PROB_EPS]` before taking logits.
const PROB_EPS: f64 = 1e-6;

/// One study's inputs to the combiner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CombinerInput {
    /// Logit of the stage-3 CNN's `patient_overall` output, when the pipeline has that CNN.
    pub cnn_logit: Option<f64>,
    /// Quantile scores of `C1`..`C7`, each in [0, 1].
    pub vertebra_scores: [f64; 7],
    /// Extra features, in the order of [`CombinerConfig::extra_names`].
    pub extra: Vec<f64>,
}

/// Which features to use and how strongly to regularise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CombinerConfig {
    /// Use [`CombinerInput::cnn_logit`] (then every input must have one).
    pub use_cnn: bool,
    /// Names of the extra features (every input must have this many).
    pub extra_names: Vec<String>,
    /// Ridge strength relative to the total sample weight, on standardised coefficients.
    pub l2: f64,
}

impl Default for CombinerConfig {
    fn default() -> Self {
        Self {
            use_cnn: true,
            extra_names: Vec::new(),
            l2: 1e-3,
        }
    }
}

/// A fitted combiner; serialise with serde (JSON: `use_cnn` next to the model's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverallCombiner {
    pub use_cnn: bool,
    /// The logistic model over [`OverallCombiner::n_features`] features.
    #[serde(flatten)]
    pub model: LogisticModel,
}

/// A fitted combiner with its in-sample diagnostics (metric units: the `patient_overall`
/// share of the competition metric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CombinerFit {
    pub combiner: OverallCombiner,
    pub n_studies: usize,
    pub newton_iterations: usize,
    /// With the combiner's predictions.
    pub fitted_contribution: f64,
    /// With the highest vertebra score as the overall prediction.
    pub max_vertebra_contribution: f64,
    /// With the noisy-or of the vertebra scores as the overall prediction.
    pub noisy_or_contribution: f64,
    /// With the in-sample prevalence.
    pub prior_contribution: f64,
}

/// Highest vertebra score.
pub fn max_vertebra(scores: &[f64; 7]) -> f64 {
    scores.iter().copied().fold(0.0, f64::max)
}

/// Probability that at least one vertebra is fractured if they were independent.
pub fn noisy_or(scores: &[f64; 7]) -> f64 {
    1.0 - scores.iter().map(|s| 1.0 - s).product::<f64>()
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(PROB_EPS, 1.0 - PROB_EPS);
    (p / (1.0 - p)).ln()
}

/// Feature names for a configuration.
fn feature_names(use_cnn: bool, extra_names: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    if use_cnn {
        names.push("cnn_logit".to_string());
    }
    names.push("logit_max_vertebra".to_string());
    names.push("logit_noisy_or".to_string());
    names.extend(extra_names.iter().cloned());
    names
}

/// Raw feature vector of one input; `index` only names the study in errors.
fn features(
    input: &CombinerInput,
    use_cnn: bool,
    n_extra: usize,
    index: usize,
) -> Result<Vec<f64>, ScoringError> {
    let bad = |why: String| {
        Err(ScoringError::InvalidParameter(format!(
            "combiner input {index}: {why}"
        )))
    };
    if let Some(s) = input
        .vertebra_scores
        .iter()
        .find(|s| !(s.is_finite() && (0.0..=1.0).contains(*s)))
    {
        return bad(format!("vertebra score {s} is not in [0, 1]"));
    }
    if input.extra.len() != n_extra {
        return bad(format!(
            "{} extra features, expected {n_extra}",
            input.extra.len()
        ));
    }
    if let Some(v) = input.extra.iter().find(|v| !v.is_finite()) {
        return bad(format!("extra feature {v} is not finite"));
    }
    let mut x = Vec::with_capacity(3 + n_extra);
    match (use_cnn, input.cnn_logit) {
        (true, Some(z)) if z.is_finite() => x.push(z),
        (true, Some(z)) => return bad(format!("CNN logit {z} is not finite")),
        (true, None) => return bad("CNN logit missing but the combiner uses it".into()),
        (false, _) => {}
    }
    x.push(logit(max_vertebra(&input.vertebra_scores)));
    x.push(logit(noisy_or(&input.vertebra_scores)));
    x.extend_from_slice(&input.extra);
    Ok(x)
}

impl OverallCombiner {
    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.model.feature_names.len()
    }

    /// `patient_overall` probability for one study.
    pub fn predict(&self, input: &CombinerInput) -> Result<f64, ScoringError> {
        let n_extra = self.n_features() - 2 - usize::from(self.use_cnn);
        let x = features(input, self.use_cnn, n_extra, 0)?;
        Ok(self.model.predict(&x))
    }
}

/// Fits the combiner on out-of-fold inputs and the studies' targets (only `patient_overall`
/// is the response; all eight targets set the metric weight).
pub fn fit_overall_combiner(
    inputs: &[CombinerInput],
    targets: &[[u8; N_LABELS]],
    config: &CombinerConfig,
) -> Result<CombinerFit, ScoringError> {
    if inputs.len() != targets.len() {
        return Err(ScoringError::LengthMismatch {
            what: "combiner inputs vs targets",
            left: inputs.len(),
            right: targets.len(),
        });
    }
    if inputs.is_empty() {
        return Err(ScoringError::NoStudies {
            what: "combiner fit",
        });
    }
    if !(config.l2.is_finite() && config.l2 > 0.0) {
        return Err(ScoringError::InvalidParameter(format!(
            "combiner l2 {} must be > 0",
            config.l2
        )));
    }
    if let Some(y) = targets.iter().flatten().find(|&&y| y > 1) {
        return Err(ScoringError::InvalidParameter(format!(
            "combiner: target {y} is not 0/1"
        )));
    }
    let n_extra = config.extra_names.len();
    let raw: Vec<Vec<f64>> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| features(input, config.use_cnn, n_extra, i))
        .collect::<Result<_, _>>()?;
    let n = raw.len() as f64;
    let weight: Vec<f64> = targets
        .iter()
        .map(|y| normalised_weights(y)[OVERALL])
        .collect();
    let y: Vec<f64> = targets.iter().map(|t| f64::from(t[OVERALL])).collect();
    let names = feature_names(config.use_cnn, &config.extra_names);
    let fit = fit_logistic(&names, &raw, &y, &weight, config.l2)?;
    let iterations = fit.newton_iterations;
    let combiner = OverallCombiner {
        use_cnn: config.use_cnn,
        model: fit.model,
    };

    let contribution = |pred: &dyn Fn(usize) -> f64| -> f64 {
        (0..inputs.len())
            .map(|i| weight[i] * clipped_bce(targets[i][OVERALL], pred(i)))
            .sum::<f64>()
            / n
    };
    let fitted: Vec<f64> = raw.iter().map(|x| combiner.model.predict(x)).collect();
    let prior = targets.iter().map(|t| f64::from(t[OVERALL])).sum::<f64>() / n;
    Ok(CombinerFit {
        n_studies: inputs.len(),
        newton_iterations: iterations,
        fitted_contribution: contribution(&|i| fitted[i]),
        max_vertebra_contribution: contribution(&|i| max_vertebra(&inputs[i].vertebra_scores)),
        noisy_or_contribution: contribution(&|i| noisy_or(&inputs[i].vertebra_scores)),
        prior_contribution: contribution(&|_| prior),
        combiner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(n: usize) -> (Vec<CombinerInput>, Vec<[u8; N_LABELS]>) {
        let mut next = crate::test_stream::stream(0x9E37_79B9_7F4A_7C15);
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        for _ in 0..n {
            let mut y = [0u8; N_LABELS];
            let mut scores = [0.0; 7];
            for k in 0..7 {
                y[k + 1] = u8::from(next() < 0.1);
                scores[k] = if y[k + 1] == 1 {
                    0.3 + 0.6 * next()
                } else {
                    0.4 * next() * next()
                };
            }
            y[OVERALL] = u8::from(y[1..].contains(&1));
            let cnn = if y[OVERALL] == 1 { 1.0 } else { -1.0 } + 2.0 * (next() - 0.5) * 1.5;
            inputs.push(CombinerInput {
                cnn_logit: Some(cnn),
                vertebra_scores: scores,
                extra: vec![next()],
            });
            targets.push(y);
        }
        (inputs, targets)
    }

    #[test]
    fn fit_is_a_stationary_point_and_beats_simple_rules() {
        let (inputs, targets) = synthetic(400);
        let config = CombinerConfig {
            extra_names: vec!["noise".into()],
            ..CombinerConfig::default()
        };
        let fit = fit_overall_combiner(&inputs, &targets, &config).unwrap();
        assert!(
            fit.fitted_contribution < fit.max_vertebra_contribution,
            "{fit:?}"
        );
        assert!(
            fit.fitted_contribution < fit.noisy_or_contribution,
            "{fit:?}"
        );
        assert!(fit.fitted_contribution < fit.prior_contribution, "{fit:?}");
        assert_eq!(
            fit.combiner.model.feature_names,
            ["cnn_logit", "logit_max_vertebra", "logit_noisy_or", "noise"]
        );

        // The gradient of the fitted objective vanishes at the optimum.
        let c = &fit.combiner;
        let raw: Vec<Vec<f64>> = inputs
            .iter()
            .enumerate()
            .map(|(i, x)| features(x, true, 1, i).unwrap())
            .collect();
        let weight: Vec<f64> = targets
            .iter()
            .map(|y| normalised_weights(y)[OVERALL])
            .collect();
        let y: Vec<f64> = targets.iter().map(|t| f64::from(t[OVERALL])).collect();
        let g = crate::logistic::gradient_at(&c.model, &raw, &y, &weight, config.l2);
        assert!(
            g.iter().all(|g| g.abs() < 1e-7),
            "gradient at the optimum: {g:?}"
        );
        // Predictions are probabilities; the combiner round-trips through JSON.
        let p = c.predict(&inputs[0]).unwrap();
        assert!((0.0..=1.0).contains(&p));
        let json = serde_json::to_string(c).unwrap();
        assert_eq!(&serde_json::from_str::<OverallCombiner>(&json).unwrap(), c);
    }

    #[test]
    fn separable_data_stays_finite_and_inputs_are_checked() {
        let inputs: Vec<CombinerInput> = (0..20)
            .map(|i| CombinerInput {
                cnn_logit: None,
                vertebra_scores: [if i % 2 == 0 { 0.9 } else { 0.01 }; 7],
                extra: vec![],
            })
            .collect();
        let targets: Vec<[u8; N_LABELS]> =
            (0..20).map(|i| [u8::from(i % 2 == 0); N_LABELS]).collect();
        let config = CombinerConfig {
            use_cnn: false,
            ..CombinerConfig::default()
        };
        let fit = fit_overall_combiner(&inputs, &targets, &config).unwrap();
        assert!(
            fit.combiner.model.coef.iter().all(|c| c.is_finite())
                && fit.combiner.model.intercept.is_finite()
        );
        assert!(fit.fitted_contribution < 0.05, "{fit:?}");
        // A CNN-using config needs CNN logits.
        assert!(fit_overall_combiner(&inputs, &targets, &CombinerConfig::default()).is_err());
        let mut bad = inputs.clone();
        bad[3].vertebra_scores[0] = 1.5;
        assert!(fit_overall_combiner(&bad, &targets, &config).is_err());
        assert!(fit_overall_combiner(&inputs[..3], &targets, &config).is_err());
    }
}
