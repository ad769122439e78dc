//! Stage 3's vertebra rows (`C1`..`C7`) from one logistic model pooled over the seven
//! vertebrae, with a term per level.
//!
//! The quantile score fits four parameters per target on the training studies alone: with 48
//! studies and a handful of fractures per level that is 28 parameters on a few dozen positives,
//! and nothing makes the result a probability. Pooling the 7 x n vertebra rows into one model
//! of a few features of the fracture map (its maximum, a top-k value, the volume above two
//! thresholds, the vertebra's size) plus a level intercept learns what a fracture looks like
//! from every level at once, and the logistic loss with the metric's own weights calibrates
//! the output for the competition metric. Fit it on out-of-fold probabilities.

use serde::{Deserialize, Serialize};

use crate::labels::N_LABELS;
use crate::logistic::{fit_logistic, LogisticModel};
use crate::metric::{clipped_bce, normalised_weights};
use crate::quantile::VoxelSummary;
use crate::ScoringError;

/// Names of the level features, in order (C1 is the reference level).
const LEVEL_FEATURES: [&str; 6] = [
    "level_C2", "level_C3", "level_C4", "level_C5", "level_C6", "level_C7",
];

/// What the pooled model reads of a vertebra: one map feature, the log-odds of the vertebra's
/// `top_k`-th highest probability, then (with `level_terms`) one indicator per level C2..C7.
/// One map feature, not several: the maximum, top-k values and volumes above thresholds of
/// one map are nearly collinear, and with a few dozen fractured vertebrae a fit over several of
/// them splits their weight into large coefficients of opposite signs (seen on the demo's
/// out-of-fold maps); the vertebra's own size was a confound (it sets the level and the
/// patient's build, not a fracture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VertebraFeatures {
    /// Which highest value of the map in the vertebra: 1 is the maximum; 10 is robust to a
    /// single hot voxel but dilutes a crack of a few voxels.
    pub top_k: u64,
    /// An intercept per level: the levels' fracture rates differ, but with a handful of
    /// fractures per level these six terms are fitted on noise.
    pub level_terms: bool,
}

impl Default for VertebraFeatures {
    fn default() -> Self {
        Self {
            top_k: 10,
            level_terms: true,
        }
    }
}

impl VertebraFeatures {
    /// Feature names, in order.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![format!("logit_top{}", self.top_k)];
        if self.level_terms {
            names.extend(LEVEL_FEATURES.iter().map(|s| s.to_string()));
        }
        names
    }

    /// The feature vector of vertebra `level` (1..=7 for C1..C7) from its voxel summary: the
    /// log-odds of its `top_k`-th highest probability (half the summary's floor when fewer
    /// voxels reach the floor), then the level indicators.
    pub fn of(&self, summary: &VoxelSummary, level: usize) -> Vec<f64> {
        let below = f64::from(summary.floor()) / 2.0;
        let mut x = vec![logit(summary.top_value(self.top_k).unwrap_or(below))];
        if self.level_terms {
            x.extend((2..=7).map(|l| f64::from(u8::from(l == level))));
        }
        x
    }
}

/// Probabilities are clamped to `[PROB_EPS, 1 - PROB_EPS]` before taking logits.
const PROB_EPS: f64 = 1e-6;

fn logit(p: f64) -> f64 {
    let p = p.clamp(PROB_EPS, 1.0 - PROB_EPS);
    (p / (1.0 - p)).ln()
}

/// The fitted pooled model; serialise with serde (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VertebraScorer {
    pub model: LogisticModel,
    /// Scorers saved before this field read the 10th highest value with level terms.
    #[serde(default)]
    pub features: VertebraFeatures,
}

/// A fitted scorer with in-sample diagnostics in metric units (the vertebra rows' share of the
/// competition metric, as `CombinerFit` reports the `patient_overall` share).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VertebraFit {
    pub scorer: VertebraScorer,
    /// Vertebra rows the model was fitted on (studies x 7).
    pub n_rows: usize,
    pub newton_iterations: usize,
    /// With the fitted probabilities.
    pub fitted_contribution: f64,
    /// With each level's in-sample prevalence.
    pub prior_contribution: f64,
}

impl VertebraScorer {
    /// Fracture probabilities of C1..C7 for one study's summaries (`[overall, C1, .., C7]`;
    /// the overall summary is not used).
    pub fn score_study(&self, summaries: &[VoxelSummary; N_LABELS]) -> [f64; 7] {
        std::array::from_fn(|j| {
            self.model
                .predict(&self.features.of(&summaries[j + 1], j + 1))
        })
    }
}

/// Fits the pooled model on out-of-fold summaries and the studies' targets
/// (`[overall, C1, .., C7]`), with the metric's sample weights and ridge strength `l2`.
pub fn fit_vertebra_scorer(
    summaries: &[[VoxelSummary; N_LABELS]],
    targets: &[[u8; N_LABELS]],
    features: VertebraFeatures,
    l2: f64,
) -> Result<VertebraFit, ScoringError> {
    if features.top_k == 0 {
        return Err(ScoringError::InvalidParameter(
            "vertebra scorer: top_k must be at least 1".into(),
        ));
    }
    if summaries.len() != targets.len() {
        return Err(ScoringError::LengthMismatch {
            what: "vertebra summaries vs targets",
            left: summaries.len(),
            right: targets.len(),
        });
    }
    if let Some(y) = targets.iter().flatten().find(|&&y| y > 1) {
        return Err(ScoringError::InvalidParameter(format!(
            "vertebra scorer: target {y} is not 0/1"
        )));
    }
    let mut raw = Vec::with_capacity(7 * summaries.len());
    let mut y = Vec::with_capacity(raw.capacity());
    let mut weight = Vec::with_capacity(raw.capacity());
    for (s, t) in summaries.iter().zip(targets) {
        let w = normalised_weights(t);
        for level in 1..=7 {
            raw.push(features.of(&s[level], level));
            y.push(f64::from(t[level]));
            weight.push(w[level]);
        }
    }
    let fit = fit_logistic(&features.names(), &raw, &y, &weight, l2)?;
    let scorer = VertebraScorer {
        model: fit.model,
        features,
    };
    let n = summaries.len() as f64;
    let mut prevalence = [0.0; 7];
    for t in targets {
        for (p, &v) in prevalence.iter_mut().zip(&t[1..]) {
            *p += f64::from(v) / n;
        }
    }
    let mut fitted = 0.0;
    let mut prior = 0.0;
    for (i, (s, t)) in summaries.iter().zip(targets).enumerate() {
        let p = scorer.score_study(s);
        for j in 0..7 {
            let w = weight[7 * i + j];
            fitted += w * clipped_bce(t[j + 1], p[j]);
            prior += w * clipped_bce(t[j + 1], prevalence[j]);
        }
    }
    Ok(VertebraFit {
        scorer,
        n_rows: raw.len(),
        newton_iterations: fit.newton_iterations,
        fitted_contribution: fitted / n,
        prior_contribution: prior / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_stream::stream;

    /// Studies whose fractured vertebrae hold a small bright blob in a dim map.
    fn cohort(n: usize, seed: u64) -> (Vec<[VoxelSummary; N_LABELS]>, Vec<[u8; N_LABELS]>) {
        let mut next = stream(seed);
        let mut summaries = Vec::new();
        let mut targets = Vec::new();
        for _ in 0..n {
            let mut t = [0u8; N_LABELS];
            let mut s: Vec<VoxelSummary> = vec![VoxelSummary::new(&[]).unwrap()];
            for y in t.iter_mut().skip(1) {
                *y = u8::from(next() < 0.12);
                let mut probs: Vec<f32> = (0..400).map(|_| (0.3 * next().powi(4)) as f32).collect();
                if *y == 1 {
                    let blob = 5 + (next() * 40.0) as usize;
                    let strength = 0.3 + 0.7 * next();
                    for p in probs.iter_mut().take(blob) {
                        *p = (strength * (0.5 + 0.5 * next())) as f32;
                    }
                }
                s.push(VoxelSummary::new(&probs).unwrap());
            }
            t[0] = u8::from(t[1..].contains(&1));
            summaries.push(s.try_into().unwrap());
            targets.push(t);
        }
        (summaries, targets)
    }

    #[test]
    fn the_pooled_model_learns_the_blob_and_beats_the_prior_out_of_sample() {
        let (train_s, train_t) = cohort(200, 7);
        let fit =
            fit_vertebra_scorer(&train_s, &train_t, VertebraFeatures::default(), 1e-2).unwrap();
        assert_eq!(fit.n_rows, 1400);
        assert!(
            fit.fitted_contribution < 0.5 * fit.prior_contribution,
            "{fit:?}"
        );
        let (test_s, test_t) = cohort(100, 11);
        let (mut model_loss, mut prior_loss) = (0.0, 0.0);
        for (s, t) in test_s.iter().zip(&test_t) {
            let p = fit.scorer.score_study(s);
            let w = normalised_weights(t);
            for j in 0..7 {
                model_loss += w[j + 1] * clipped_bce(t[j + 1], p[j]);
                prior_loss += w[j + 1] * clipped_bce(t[j + 1], 0.12);
            }
        }
        assert!(
            model_loss < 0.6 * prior_loss,
            "{model_loss} vs {prior_loss}"
        );
        let json = serde_json::to_string(&fit.scorer).unwrap();
        assert_eq!(
            serde_json::from_str::<VertebraScorer>(&json).unwrap(),
            fit.scorer
        );
    }

    #[test]
    fn features_of_an_empty_map_and_level_indicators() {
        let f = VertebraFeatures::default();
        let s = VoxelSummary::new(&[0.0; 50]).unwrap();
        let x = f.of(&s, 3);
        assert_eq!(x.len(), f.names().len());
        let half_floor = f64::from(crate::quantile::DEFAULT_FLOOR) / 2.0;
        assert!(
            (x[0] - logit(half_floor)).abs() < 1e-12,
            "no voxel above the floor: half the floor"
        );
        assert_eq!(&x[1..], &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&f.of(&s, 1)[1..], &[0.0; 6]);
        let mut probs = vec![0.0f32; 40];
        for (i, p) in probs.iter_mut().take(12).enumerate() {
            *p = 0.9 - 0.05 * i as f32;
        }
        let s = VoxelSummary::new(&probs).unwrap();
        let tenth = f64::from(0.9f32 - 0.05 * 9.0);
        assert!((f.of(&s, 2)[0] - logit(tenth)).abs() < 1e-6);
        let third = VertebraFeatures {
            top_k: 3,
            level_terms: false,
        };
        assert_eq!(third.names(), vec!["logit_top3"]);
        let x = third.of(&s, 2);
        assert_eq!(x.len(), 1, "no level terms");
        assert!((x[0] - logit(f64::from(0.9f32 - 0.05 * 2.0))).abs() < 1e-6);
    }

    #[test]
    fn a_scorer_saved_without_its_features_reads_them_as_the_old_default() {
        let (s, t) = cohort(60, 5);
        let fit = fit_vertebra_scorer(&s, &t, VertebraFeatures::default(), 1e-2).unwrap();
        let mut json = serde_json::to_value(&fit.scorer).unwrap();
        json.as_object_mut().unwrap().remove("features");
        let old: VertebraScorer = serde_json::from_value(json).unwrap();
        assert_eq!(old, fit.scorer);
        let no_levels = VertebraFeatures {
            top_k: 10,
            level_terms: false,
        };
        let fit = fit_vertebra_scorer(&s, &t, no_levels, 1e-2).unwrap();
        assert_eq!(fit.scorer.model.feature_names, vec!["logit_top10"]);
        assert!(fit_vertebra_scorer(
            &s,
            &t,
            VertebraFeatures {
                top_k: 0,
                level_terms: true
            },
            1e-2
        )
        .is_err());
    }

    #[test]
    fn inputs_are_checked() {
        let (s, mut t) = cohort(10, 3);
        assert!(fit_vertebra_scorer(&s[..9], &t, VertebraFeatures::default(), 1e-2).is_err());
        t[0][2] = 3;
        assert!(fit_vertebra_scorer(&s, &t, VertebraFeatures::default(), 1e-2).is_err());
    }
}
