//! Area under the ROC curve, with tied scores counted as half (the value scikit-learn's
//! `roc_auc_score` gives: its trapezoidal ROC equals the Mann-Whitney statistic).

use crate::ScoringError;

/// ROC AUC of binary targets against scores; `Ok(None)` when only one class is present (AUC is
/// undefined there; scikit-learn raises).
pub fn roc_auc(targets: &[u8], scores: &[f64]) -> Result<Option<f64>, ScoringError> {
    if targets.len() != scores.len() {
        return Err(ScoringError::LengthMismatch {
            what: "AUC targets vs scores",
            left: targets.len(),
            right: scores.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| s.is_nan()) {
        return Err(ScoringError::BadProbability {
            what: "AUC scores",
            index,
            value: scores[index],
        });
    }
    if let Some(&y) = targets.iter().find(|&&y| y > 1) {
        return Err(ScoringError::InvalidParameter(format!(
            "AUC: target {y} is not 0/1"
        )));
    }
    let positives = targets.iter().filter(|&&y| y == 1).count();
    let negatives = targets.len() - positives;
    if positives == 0 || negatives == 0 {
        return Ok(None);
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Walk groups of equal score from the lowest; each positive beats every negative below its
    // group and ties with the negatives inside it.
    let mut wins = 0.0f64;
    let mut negatives_below = 0.0f64;
    let mut start = 0;
    while start < order.len() {
        let score = scores[order[start]];
        let mut end = start;
        let (mut pos, mut neg) = (0.0f64, 0.0f64);
        while end < order.len() && scores[order[end]] == score {
            if targets[order[end]] == 1 {
                pos += 1.0;
            } else {
                neg += 1.0;
            }
            end += 1;
        }
        wins += pos * (negatives_below + 0.5 * neg);
        negatives_below += neg;
        start = end;
    }
    Ok(Some(wins / (positives as f64 * negatives as f64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(targets: &[u8], scores: &[f64]) -> f64 {
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..targets.len() {
            for k in 0..targets.len() {
                if targets[i] == 1 && targets[k] == 0 {
                    pairs += 1.0;
                    if scores[i] > scores[k] {
                        wins += 1.0;
                    } else if scores[i] == scores[k] {
                        wins += 0.5;
                    }
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn known_values() {
        assert_eq!(
            roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap(),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0, 1], &[0.5, 0.5]).unwrap(), Some(0.5));
        assert_eq!(roc_auc(&[1, 1], &[0.5, 0.2]).unwrap(), None);
        assert!(roc_auc(&[0, 1], &[f64::NAN, 0.2]).is_err());
        assert!(roc_auc(&[0, 1], &[0.2]).is_err());
    }

    proptest! {
        #[test]
        fn matches_pairwise_definition(
            rows in proptest::collection::vec((0u8..2, 0u8..6), 2..60)
        ) {
            let targets: Vec<u8> = rows.iter().map(|r| r.0).collect();
            let scores: Vec<f64> = rows.iter().map(|r| f64::from(r.1) / 5.0).collect();
            let got = roc_auc(&targets, &scores).unwrap();
            let has_both = targets.contains(&0) && targets.contains(&1);
            prop_assert_eq!(got.is_some(), has_both);
            if let Some(auc) = got {
                prop_assert!((auc - naive(&targets, &scores)).abs() < 1e-12);
            }
        }
    }
}
