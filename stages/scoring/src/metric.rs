//! The competition metric: per study, the weighted binary cross-entropy over its eight targets
//! normalised by the study's own weight sum, averaged over studies.
//!
//! Weights: `patient_overall` 7 (negative) / 14 (positive), `C1`..`C7` 1 / 2; probabilities are
//! clipped to `[1e-15, 1 - 1e-15]`.

use serde::{Deserialize, Serialize};

use crate::labels::N_LABELS;
use crate::ScoringError;

/// Clipping applied to every probability before the logarithm.
pub const CLIP_EPS: f64 = 1e-15;
/// Weight of a negative target, `[patient_overall, C1..C7]`.
pub const NEGATIVE_WEIGHTS: [f64; N_LABELS] = [7.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Weight of a positive target, `[patient_overall, C1..C7]`.
pub const POSITIVE_WEIGHTS: [f64; N_LABELS] = [14.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0];

/// Raw weight of one target of a study.
pub fn label_weight(label: usize, y: u8) -> f64 {
    if y == 1 {
        POSITIVE_WEIGHTS[label]
    } else {
        NEGATIVE_WEIGHTS[label]
    }
}

/// The weight a target carries in the metric once its study is normalised: `w_ij / sum_j w_ij`.
/// Summing these times the BCE over targets gives the study's loss.
pub fn normalised_weights(y: &[u8; N_LABELS]) -> [f64; N_LABELS] {
    let raw: [f64; N_LABELS] = std::array::from_fn(|j| label_weight(j, y[j]));
    let total: f64 = raw.iter().sum();
    raw.map(|w| w / total)
}

/// Binary cross-entropy of one clipped probability.
pub fn clipped_bce(y: u8, p: f64) -> f64 {
    let p = p.clamp(CLIP_EPS, 1.0 - CLIP_EPS);
    if y == 1 {
        -p.ln()
    } else {
        -(1.0 - p).ln()
    }
}

/// One study's normalised weighted loss.
pub fn study_loss(y: &[u8; N_LABELS], p: &[f64; N_LABELS]) -> f64 {
    let w = normalised_weights(y);
    (0..N_LABELS).map(|j| w[j] * clipped_bce(y[j], p[j])).sum()
}

/// The metric and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricBreakdown {
    /// The competition score (lower is better).
    pub score: f64,
    /// Each target's share of `score`; the eight shares sum to `score`.
    pub label_contribution: [f64; N_LABELS],
    /// Each study's normalised loss, in input order.
    pub per_study: Vec<f64>,
}

/// The competition score of aligned targets and probabilities.
pub fn competition_metric(
    targets: &[[u8; N_LABELS]],
    probs: &[[f64; N_LABELS]],
) -> Result<f64, ScoringError> {
    metric_breakdown(targets, probs).map(|b| b.score)
}

/// The competition score with per-target contributions and per-study losses.
pub fn metric_breakdown(
    targets: &[[u8; N_LABELS]],
    probs: &[[f64; N_LABELS]],
) -> Result<MetricBreakdown, ScoringError> {
    check_inputs(targets, probs)?;
    let n = targets.len() as f64;
    let mut label_contribution = [0.0; N_LABELS];
    let mut per_study = Vec::with_capacity(targets.len());
    for (y, p) in targets.iter().zip(probs) {
        let w = normalised_weights(y);
        let mut loss = 0.0;
        for j in 0..N_LABELS {
            let term = w[j] * clipped_bce(y[j], p[j]);
            label_contribution[j] += term / n;
            loss += term;
        }
        per_study.push(loss);
    }
    let score = per_study.iter().sum::<f64>() / n;
    Ok(MetricBreakdown {
        score,
        label_contribution,
        per_study,
    })
}

/// Score of predicting each target's prevalence in `targets` for every study (the prior-only
/// baseline, fitted in-sample).
pub fn prior_baseline(targets: &[[u8; N_LABELS]]) -> Result<MetricBreakdown, ScoringError> {
    let prior = crate::labels::prevalence(targets);
    metric_breakdown(targets, &vec![prior; targets.len()])
}

fn check_inputs(targets: &[[u8; N_LABELS]], probs: &[[f64; N_LABELS]]) -> Result<(), ScoringError> {
    if targets.len() != probs.len() {
        return Err(ScoringError::LengthMismatch {
            what: "metric targets vs probabilities",
            left: targets.len(),
            right: probs.len(),
        });
    }
    if targets.is_empty() {
        return Err(ScoringError::NoStudies { what: "metric" });
    }
    for (i, (y, p)) in targets.iter().zip(probs).enumerate() {
        for j in 0..N_LABELS {
            if y[j] > 1 {
                return Err(ScoringError::InvalidParameter(format!(
                    "metric: target {} of study {i} is {}, not 0/1",
                    crate::LABEL_NAMES[j],
                    y[j]
                )));
            }
            if !(p[j].is_finite() && (0.0..=1.0).contains(&p[j])) {
                return Err(ScoringError::BadProbability {
                    what: "metric",
                    index: i * N_LABELS + j,
                    value: p[j],
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::OVERALL;

    #[test]
    fn constant_half_is_ln2_for_any_labels() {
        let targets = vec![
            [0, 0, 0, 0, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0, 0, 1],
            [1; N_LABELS],
        ];
        let probs = vec![[0.5; N_LABELS]; 3];
        let score = competition_metric(&targets, &probs).unwrap();
        assert!((score - std::f64::consts::LN_2).abs() < 1e-15, "{score}");
    }

    #[test]
    fn truth_scores_about_clip_level() {
        let targets = vec![[0, 0, 0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0, 1]];
        let probs: Vec<[f64; N_LABELS]> = targets.iter().map(|y| y.map(f64::from)).collect();
        let score = competition_metric(&targets, &probs).unwrap();
        // -ln(1 - 1e-15) ~ 1.1e-15 per target.
        assert!((0.0..2e-15).contains(&score), "{score}");
    }

    #[test]
    fn fully_wrong_hits_the_clip() {
        let targets = vec![[1; N_LABELS]];
        let probs = vec![[0.0; N_LABELS]];
        let score = competition_metric(&targets, &probs).unwrap();
        assert!((score - (-(CLIP_EPS.ln()))).abs() < 1e-9, "{score}");
    }

    #[test]
    fn contributions_sum_to_score_and_weights_normalise() {
        let targets = vec![[1, 0, 1, 0, 0, 0, 0, 1], [0; N_LABELS]];
        let probs = vec![[0.3, 0.1, 0.7, 0.2, 0.05, 0.5, 0.4, 0.9], [0.2; N_LABELS]];
        let b = metric_breakdown(&targets, &probs).unwrap();
        let sum: f64 = b.label_contribution.iter().sum();
        assert!((sum - b.score).abs() < 1e-12);
        let w = normalised_weights(&targets[0]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        // 14 + 2 + 2 + 5 * 1 = 23
        assert!((w[OVERALL] - 14.0 / 23.0).abs() < 1e-15);
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(matches!(
            competition_metric(&[], &[]),
            Err(ScoringError::NoStudies { .. })
        ));
        assert!(matches!(
            competition_metric(&[[0; N_LABELS]], &[[0.5; N_LABELS], [0.5; N_LABELS]]),
            Err(ScoringError::LengthMismatch { .. })
        ));
        let mut p = [0.5; N_LABELS];
        p[3] = f64::NAN;
        assert!(matches!(
            competition_metric(&[[0; N_LABELS]], &[p]),
            Err(ScoringError::BadProbability { index: 3, .. })
        ));
        p[3] = 1.5;
        assert!(competition_metric(&[[0; N_LABELS]], &[p]).is_err());
    }
}
