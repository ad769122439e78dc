//! Reliability (calibration) bins of predicted probabilities against binary targets: among the
//! predictions that fall in a probability bin, how often was the target positive?
//!
//! The competition metric is a weighted log loss, so a submission is scored on its probabilities,
//! not only on its ranking (AUC): a model whose 0.8 means "positive half of the time" loses
//! even with a perfect AUC. The report draws these bins against the diagonal.

use serde::{Deserialize, Serialize};

use crate::error::ScoringError;
use crate::labels::N_LABELS;

/// One probability bin `[lo, hi)` (the last bin includes 1): the number of predictions in it,
/// their mean, and the fraction of them with a positive target (`None` for an empty bin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_predicted: Option<f64>,
    pub observed: Option<f64>,
}

/// `n_bins` equal-width bins over [0, 1] of `probs` against `targets` (0 or 1, non-zero counts
/// as positive). Errors on different lengths, zero bins, or a probability that is not a finite
/// number in [0, 1].
pub fn reliability_bins(
    targets: &[u8],
    probs: &[f64],
    n_bins: usize,
) -> Result<Vec<ReliabilityBin>, ScoringError> {
    if targets.len() != probs.len() {
        return Err(ScoringError::LengthMismatch {
            what: "reliability targets vs probabilities",
            left: targets.len(),
            right: probs.len(),
        });
    }
    if n_bins == 0 {
        return Err(ScoringError::InvalidParameter(
            "reliability bins: at least one bin".into(),
        ));
    }
    // Per bin: count, sum of probabilities, positives.
    let mut acc = vec![(0usize, 0.0f64, 0usize); n_bins];
    for (index, (&y, &p)) in targets.iter().zip(probs).enumerate() {
        if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
            return Err(ScoringError::BadProbability {
                what: "reliability bins",
                index,
                value: p,
            });
        }
        let bin = ((p * n_bins as f64) as usize).min(n_bins - 1);
        let a = &mut acc[bin];
        a.0 += 1;
        a.1 += p;
        a.2 += (y != 0) as usize;
    }
    Ok(acc
        .iter()
        .enumerate()
        .map(|(i, &(count, sum, positives))| ReliabilityBin {
            lo: i as f64 / n_bins as f64,
            hi: (i + 1) as f64 / n_bins as f64,
            count,
            mean_predicted: (count > 0).then(|| sum / count as f64),
            observed: (count > 0).then(|| positives as f64 / count as f64),
        })
        .collect())
}

/// [`reliability_bins`] of the predictions of `labels` (indices into `[patient_overall,
/// C1..C7]`) pooled over studies, e.g. `&[1, 2, 3, 4, 5, 6, 7]` for all vertebrae together.
pub fn reliability_of_labels(
    targets: &[[u8; N_LABELS]],
    probs: &[[f64; N_LABELS]],
    labels: &[usize],
    n_bins: usize,
) -> Result<Vec<ReliabilityBin>, ScoringError> {
    if targets.len() != probs.len() {
        return Err(ScoringError::LengthMismatch {
            what: "reliability targets vs probabilities",
            left: targets.len(),
            right: probs.len(),
        });
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= N_LABELS) {
        return Err(ScoringError::InvalidParameter(format!(
            "reliability bins: label index {bad} (there are {N_LABELS} targets)"
        )));
    }
    let (y, p): (Vec<u8>, Vec<f64>) = targets
        .iter()
        .zip(probs)
        .flat_map(|(y, p)| labels.iter().map(move |&l| (y[l], p[l])))
        .unzip();
    reliability_bins(&y, &p, n_bins)
}

/// Expected calibration error: the count-weighted mean of `|observed − mean predicted|` over
/// the bins; `None` when every bin is empty.
pub fn expected_calibration_error(bins: &[ReliabilityBin]) -> Option<f64> {
    let total: usize = bins.iter().map(|b| b.count).sum();
    (total > 0).then(|| {
        bins.iter()
            .filter_map(|b| Some(b.count as f64 * (b.observed? - b.mean_predicted?).abs()))
            .sum::<f64>()
            / total as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_count_average_and_include_one_in_the_last_bin() {
        let y = [0, 1, 1, 0, 1, 1];
        let p = [0.05, 0.15, 0.95, 0.9, 1.0, 0.5];
        let bins = reliability_bins(&y, &p, 10).unwrap();
        assert_eq!(bins.len(), 10);
        assert_eq!((bins[0].lo, bins[0].hi), (0.0, 0.1));
        assert_eq!(bins[0].count, 1);
        assert_eq!(bins[0].observed, Some(0.0));
        assert_eq!(bins[1].observed, Some(1.0));
        assert_eq!(bins[2].count, 0);
        assert_eq!((bins[2].mean_predicted, bins[2].observed), (None, None));
        assert_eq!(bins[5].count, 1, "0.5 opens the bin [0.5, 0.6)");
        let last = &bins[9];
        assert_eq!(last.count, 3, "0.9, 0.95 and 1.0");
        assert!((last.mean_predicted.unwrap() - 2.85 / 3.0).abs() < 1e-12);
        assert!((last.observed.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 6);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            reliability_bins(&[0, 1], &[0.5], 10),
            Err(ScoringError::LengthMismatch { .. })
        ));
        assert!(matches!(
            reliability_bins(&[0], &[f64::NAN], 10),
            Err(ScoringError::BadProbability { index: 0, .. })
        ));
        assert!(matches!(
            reliability_bins(&[0, 0], &[0.5, 1.5], 10),
            Err(ScoringError::BadProbability { index: 1, .. })
        ));
        assert!(reliability_bins(&[], &[], 0).is_err());
        assert!(reliability_of_labels(&[[0; N_LABELS]], &[[0.5; N_LABELS]], &[8], 4).is_err());
    }

    #[test]
    fn labels_pool_over_studies_and_the_ece_weights_by_count() {
        let mut y = [[0u8; N_LABELS]; 2];
        y[0][1] = 1;
        y[1][2] = 1;
        let p = [[0.25; N_LABELS]; 2];
        let overall = reliability_of_labels(&y, &p, &[0], 4).unwrap();
        assert_eq!(overall[1].count, 2);
        assert_eq!(overall[1].observed, Some(0.0));
        let vertebrae = reliability_of_labels(&y, &p, &[1, 2, 3, 4, 5, 6, 7], 4).unwrap();
        assert_eq!(vertebrae[1].count, 14);
        assert_eq!(vertebrae[1].observed, Some(2.0 / 14.0));
        let ece = expected_calibration_error(&vertebrae).unwrap();
        assert!((ece - (0.25 - 2.0 / 14.0)).abs() < 1e-12, "{ece}");
        assert_eq!(expected_calibration_error(&overall), Some(0.25));
        assert_eq!(
            expected_calibration_error(&reliability_bins(&[], &[], 3).unwrap()),
            None
        );
    }
}
