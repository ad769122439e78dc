//! `flow score`: the metric, per-label AUC and the prior-only baseline for a labels file and a
//! submission, as a serialisable report and a plain-text table.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::auc::roc_auc;
use crate::labels::{LabelTable, LABEL_NAMES, N_LABELS};
use crate::metric::{clipped_bce, metric_breakdown, prior_baseline};
use crate::submission::Predictions;

use crate::ScoringError;

/// Scores of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    /// `patient_overall` or `C1`..`C7`.
    pub label: String,
    pub positives: usize,
    pub negatives: usize,
    /// Fraction of positives (the prior-only baseline's prediction for this target).
    pub prevalence: f64,
    /// ROC AUC; `None` when only one class is present.
    pub auc: Option<f64>,
    /// Plain (unweighted) mean clipped BCE of this target.
    pub log_loss: f64,
    /// This target's share of the competition metric (shares sum to `metric`).
    pub metric_contribution: f64,
    /// The prior-only baseline's share of its metric.
    pub prior_contribution: f64,
}

/// What `flow score` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// Studies scored (those of the submission).
    pub n_studies: usize,
    /// Labelled studies the submission does not predict (not scored).
    pub labelled_not_predicted: usize,
    /// Competition metric of the predictions (lower is better; constant 0.5 gives ln 2).
    pub metric: f64,
    /// Metric of predicting a constant prevalence per target: the scored studies' own
    /// ([`score_files`], an oracle) or a given one ([`score_files_against_prior`], e.g. the
    /// training set's, the baseline a submission can actually know).
    pub prior_baseline_metric: f64,
    /// `metric / prior_baseline_metric`.
    pub ratio_to_prior: f64,
    /// Mean AUC over `C1`..`C7` targets that have both classes.
    pub mean_vertebra_auc: Option<f64>,
    /// One AUC over every study's seven vertebra rows together (does a fractured vertebra score
    /// above an intact one, whatever their levels): steadier than the per-level mean when a
    /// level has one or two fractures.
    #[serde(default)]
    pub pooled_vertebra_auc: Option<f64>,
    /// One entry per target, `patient_overall` first.
    pub labels: Vec<LabelScore>,
}

/// Reads a `train.csv`-layout labels file and a Kaggle submission and scores the submission's
/// studies (so a hold-out submission can be scored against the full `train.csv`). The
/// submission must be valid and every study in it labelled; labelled studies it lacks are
/// counted in [`ScoreReport::labelled_not_predicted`].
pub fn score_files(labels: &Path, pred: &Path) -> Result<ScoreReport, ScoringError> {
    let table = LabelTable::read(labels)?;
    let predictions = Predictions::read_known(pred, table.uids())?;
    let (targets, probs): (Vec<[u8; N_LABELS]>, Vec<[f64; N_LABELS]>) = table
        .uids()
        .iter()
        .zip(table.targets())
        .filter_map(|(uid, y)| predictions.get(uid).map(|p| (*y, *p)))
        .unzip();
    let mut report = score_aligned(&targets, &probs)?;
    report.labelled_not_predicted = table.len() - targets.len();
    if report.labelled_not_predicted > 0 {
        tracing::info!(
            labels = %labels.display(),
            pred = %pred.display(),
            scored = targets.len(),
            unscored = report.labelled_not_predicted,
            "scoring only the submission's studies"
        );
    }
    Ok(report)
}

/// Like [`score_files`], with the baseline predicting `prior` (e.g. the training studies'
/// prevalence) instead of the scored studies' own prevalence, which no submission can know.
pub fn score_files_against_prior(
    labels: &Path,
    pred: &Path,
    prior: &[f64; N_LABELS],
) -> Result<ScoreReport, ScoringError> {
    let table = LabelTable::read(labels)?;
    let predictions = Predictions::read_known(pred, table.uids())?;
    let targets: Vec<[u8; N_LABELS]> = table
        .uids()
        .iter()
        .zip(table.targets())
        .filter(|(uid, _)| predictions.get(uid).is_some())
        .map(|(_, y)| *y)
        .collect();
    let mut report = score_files(labels, pred)?;
    rebase_prior(&mut report, &targets, prior)?;
    Ok(report)
}

/// Replaces the report's baseline by the constant prediction `prior`.
fn rebase_prior(
    report: &mut ScoreReport,
    targets: &[[u8; N_LABELS]],
    prior: &[f64; N_LABELS],
) -> Result<(), ScoringError> {
    let baseline = metric_breakdown(targets, &vec![*prior; targets.len()])?;
    report.prior_baseline_metric = baseline.score;
    report.ratio_to_prior = report.metric / baseline.score;
    for (l, c) in report.labels.iter_mut().zip(baseline.label_contribution) {
        l.prior_contribution = c;
    }
    Ok(())
}

/// Scores aligned targets and probabilities (one `[patient_overall, C1..C7]` row per study).
pub fn score_aligned(
    targets: &[[u8; N_LABELS]],
    probs: &[[f64; N_LABELS]],
) -> Result<ScoreReport, ScoringError> {
    let breakdown = metric_breakdown(targets, probs)?;
    let prior = prior_baseline(targets)?;
    let prevalence = crate::labels::prevalence(targets);
    let n = targets.len();
    let mut labels = Vec::with_capacity(N_LABELS);
    for j in 0..N_LABELS {
        let y: Vec<u8> = targets.iter().map(|r| r[j]).collect();
        let p: Vec<f64> = probs.iter().map(|r| r[j]).collect();
        let positives = y.iter().filter(|&&v| v == 1).count();
        let log_loss = y
            .iter()
            .zip(&p)
            .map(|(&y, &p)| clipped_bce(y, p))
            .sum::<f64>()
            / n as f64;
        labels.push(LabelScore {
            label: LABEL_NAMES[j].to_string(),
            positives,
            negatives: n - positives,
            prevalence: prevalence[j],
            auc: roc_auc(&y, &p)?,
            log_loss,
            metric_contribution: breakdown.label_contribution[j],
            prior_contribution: prior.label_contribution[j],
        });
    }
    let vertebra_aucs: Vec<f64> = labels[1..].iter().filter_map(|l| l.auc).collect();
    let mean_vertebra_auc = (!vertebra_aucs.is_empty())
        .then(|| vertebra_aucs.iter().sum::<f64>() / vertebra_aucs.len() as f64);
    let (pooled_y, pooled_p): (Vec<u8>, Vec<f64>) = targets
        .iter()
        .zip(probs)
        .flat_map(|(t, p)| (1..N_LABELS).map(move |j| (t[j], p[j])))
        .unzip();
    let pooled_vertebra_auc = roc_auc(&pooled_y, &pooled_p)?;
    Ok(ScoreReport {
        n_studies: n,
        labelled_not_predicted: 0,
        metric: breakdown.score,
        prior_baseline_metric: prior.score,
        ratio_to_prior: breakdown.score / prior.score,
        mean_vertebra_auc,
        pooled_vertebra_auc,
        labels,
    })
}

/// A plain-text table of a report, for terminals and logs.
pub fn render_table(report: &ScoreReport) -> String {
    let fmt_auc = |a: Option<f64>| a.map_or_else(|| "n/a".to_string(), |a| format!("{a:.4}"));
    let mut out = String::new();
    out.push_str(&format!("studies scored: {}", report.n_studies));
    if report.labelled_not_predicted > 0 {
        out.push_str(&format!(
            " (labelled but not predicted, not scored: {})",
            report.labelled_not_predicted
        ));
    }
    out.push_str(&format!(
        "\nmetric (weighted log loss): {:.4}   prior-only baseline: {:.4}   ratio: {:.3}\n",
        report.metric, report.prior_baseline_metric, report.ratio_to_prior
    ));
    out.push_str(&format!(
        "vertebra AUC: mean over levels {}, pooled {}\n\n",
        fmt_auc(report.mean_vertebra_auc),
        fmt_auc(report.pooled_vertebra_auc)
    ));
    out.push_str(&format!(
        "{:<16} {:>5} {:>5} {:>10} {:>7} {:>9} {:>12} {:>12}\n",
        "label", "pos", "neg", "prevalence", "AUC", "log loss", "contribution", "prior contr."
    ));
    for l in &report.labels {
        out.push_str(&format!(
            "{:<16} {:>5} {:>5} {:>10.4} {:>7} {:>9.4} {:>12.4} {:>12.4}\n",
            l.label,
            l.positives,
            l.negatives,
            l.prevalence,
            fmt_auc(l.auc),
            l.log_loss,
            l.metric_contribution,
            l.prior_contribution
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_prior_replaces_the_in_sample_baseline() {
        let targets = vec![
            [1, 1, 0, 0, 0, 0, 0, 0],
            [0; N_LABELS],
            [0; N_LABELS],
            [1, 0, 0, 1, 0, 0, 0, 0],
        ];
        let probs = vec![[0.6; N_LABELS]; 4];
        let in_sample = score_aligned(&targets, &probs).unwrap();
        let mut same = in_sample.clone();
        rebase_prior(&mut same, &targets, &crate::labels::prevalence(&targets)).unwrap();
        assert!((same.prior_baseline_metric - in_sample.prior_baseline_metric).abs() < 1e-12);
        // Any other constant scores worse than the in-sample prevalence (the oracle).
        let mut rebased = in_sample.clone();
        rebase_prior(&mut rebased, &targets, &[0.3; N_LABELS]).unwrap();
        assert!(rebased.prior_baseline_metric > in_sample.prior_baseline_metric);
        assert_eq!(rebased.metric, in_sample.metric);
        assert!(
            (rebased.ratio_to_prior - rebased.metric / rebased.prior_baseline_metric).abs() < 1e-12
        );
        let shares: f64 = rebased.labels.iter().map(|l| l.prior_contribution).sum();
        assert!((shares - rebased.prior_baseline_metric).abs() < 1e-9);
    }
}
