//! Fitting the quantile-score parameters of each target on out-of-fold predictions by
//! minimising the competition metric.
//!
//! The metric normalises each study by a weight sum that depends only on its targets, so it is a
//! sum of independent per-target terms and each target is fitted alone. For a fixed
//! `(alpha, beta)` the best `(min, max)` is found exactly (the loss is convex in each clamp on
//! every interval between sorted raw quantiles); `(alpha, beta)` are searched on a grid, then
//! on finer grids around the best point. Everything is deterministic.

use serde::{Deserialize, Serialize};

use crate::labels::{LABEL_NAMES, N_LABELS};
use crate::metric::normalised_weights;
use crate::quantile::{QuantileParamSet, QuantileParams, VoxelSummary, DEFAULT_FLOOR};
use crate::ScoringError;

/// Search settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileFitConfig {
    /// Coarse `alpha` candidates (each at least every summary's floor).
    pub alpha_grid: Vec<f64>,
    /// Coarse `beta` candidates in [0, 1].
    pub beta_grid: Vec<f64>,
    /// Rounds of local refinement around the best coarse point.
    pub refine_rounds: usize,
    /// Candidates per axis in each refinement round.
    pub refine_points: usize,
    /// Range `min` and `max` must lie in; keeps fitted scores away from 0 and 1 so one confident
    /// miss on new data cannot cost the clipped maximum.
    pub prob_bounds: (f64, f64),
}

impl Default for QuantileFitConfig {
    /// 24 geometric `alpha` steps from [`DEFAULT_FLOOR`] to 0.5, `beta` in steps of 0.05, two
    /// refinement rounds of 7x7, clamps within [0.001, 0.999].
    fn default() -> Self {
        let lo = f64::from(DEFAULT_FLOOR);
        let hi: f64 = 0.5;
        let n = 24;
        let alpha_grid = (0..n)
            .map(|i| lo * (hi / lo).powf(i as f64 / (n - 1) as f64))
            .collect();
        let beta_grid = (0..=20).map(|i| f64::from(i) / 20.0).collect();
        Self {
            alpha_grid,
            beta_grid,
            refine_rounds: 2,
            refine_points: 7,
            prob_bounds: (0.001, 0.999),
        }
    }
}

/// How one target's fit went, in metric units (this target's share of the competition metric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelFit {
    pub label: String,
    pub params: QuantileParams,
    /// Share of the metric with the fitted parameters.
    pub fitted_contribution: f64,
    /// Share of the metric with the original hand-tuned parameters on the same studies (their
    /// `alpha` raised to the summaries' floor where lower).
    pub original_contribution: f64,
    /// Share of the metric of the constant (in-sample prevalence) prediction.
    pub prior_contribution: f64,
    /// Parameter points evaluated.
    pub evaluations: usize,
}

/// Fitted parameters and their diagnostics; serialise with serde (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileFit {
    pub params: QuantileParamSet,
    pub n_studies: usize,
    pub labels: Vec<LabelFit>,
}

/// Fits all eight targets. `summaries[i][j]` summarises study `i`'s voxels for target `j`
/// (`[overall, C1..C7]`), `targets[i]` are its labels.
pub fn fit_quantile_params(
    summaries: &[[VoxelSummary; N_LABELS]],
    targets: &[[u8; N_LABELS]],
    config: &QuantileFitConfig,
) -> Result<QuantileFit, ScoringError> {
    if summaries.len() != targets.len() {
        return Err(ScoringError::LengthMismatch {
            what: "quantile fit summaries vs targets",
            left: summaries.len(),
            right: targets.len(),
        });
    }
    if summaries.is_empty() {
        return Err(ScoringError::NoStudies {
            what: "quantile fit",
        });
    }
    check_config(config, summaries)?;
    if let Some(y) = targets.iter().flatten().find(|&&y| y > 1) {
        return Err(ScoringError::InvalidParameter(format!(
            "quantile fit: target {y} is not 0/1"
        )));
    }
    let original = QuantileParamSet::original();
    let mut params = original;
    let mut labels = Vec::with_capacity(N_LABELS);
    for j in 0..N_LABELS {
        let studies: Vec<WeightedSummary<'_>> = summaries
            .iter()
            .zip(targets)
            .map(|(s, y)| {
                let w = normalised_weights(y)[j];
                WeightedSummary {
                    summary: &s[j],
                    positive: if y[j] == 1 { w } else { 0.0 },
                    negative: if y[j] == 1 { 0.0 } else { w },
                }
            })
            .collect();
        let fit = fit_label(&studies, config);
        let n = studies.len() as f64;
        let original_loss = evaluate(&studies, &original.0[j]) / n;
        let prior_loss = constant_loss(&studies, config.prob_bounds) / n;
        tracing::info!(
            label = LABEL_NAMES[j],
            fitted = %format_args!("{:.4}", fit.loss / n),
            original = %format_args!("{original_loss:.4}"),
            prior = %format_args!("{prior_loss:.4}"),
            "quantile parameters fitted"
        );
        params.0[j] = fit.params;
        labels.push(LabelFit {
            label: LABEL_NAMES[j].to_string(),
            params: fit.params,
            fitted_contribution: fit.loss / n,
            original_contribution: original_loss,
            prior_contribution: prior_loss,
            evaluations: fit.evaluations,
        });
    }
    Ok(QuantileFit {
        params,
        n_studies: summaries.len(),
        labels,
    })
}

fn check_config(
    config: &QuantileFitConfig,
    summaries: &[[VoxelSummary; N_LABELS]],
) -> Result<(), ScoringError> {
    let floor = summaries
        .iter()
        .flatten()
        .map(|s| f64::from(s.floor()))
        .fold(0.0f64, f64::max);
    let bad = |why: String| {
        Err(ScoringError::InvalidParameter(format!(
            "quantile fit config: {why}"
        )))
    };
    if config.alpha_grid.is_empty() || config.beta_grid.is_empty() {
        return bad("alpha and beta grids must not be empty".into());
    }
    if let Some(a) = config
        .alpha_grid
        .iter()
        .find(|&&a| !(a >= floor && a <= 1.0))
    {
        return bad(format!(
            "alpha {a} is outside [highest summary floor {floor}, 1]"
        ));
    }
    if let Some(b) = config
        .beta_grid
        .iter()
        .find(|&&b| !(0.0..=1.0).contains(&b))
    {
        return bad(format!("beta {b} is outside [0, 1]"));
    }
    let (lo, hi) = config.prob_bounds;
    if !(lo > 0.0 && lo <= hi && hi < 1.0) {
        return bad(format!(
            "prob_bounds ({lo}, {hi}) must satisfy 0 < lo <= hi < 1"
        ));
    }
    if config.refine_rounds > 0 && config.refine_points < 3 {
        return bad("refine_points must be at least 3".into());
    }
    Ok(())
}

/// One study's summary for the target being fitted, with its metric weight split by class.
struct WeightedSummary<'a> {
    summary: &'a VoxelSummary,
    positive: f64,
    negative: f64,
}

struct Fit {
    params: QuantileParams,
    loss: f64,
    evaluations: usize,
}

fn weighted_loss(positive: f64, negative: f64, p: f64) -> f64 {
    let mut loss = 0.0;
    if positive > 0.0 {
        loss -= positive * p.ln();
    }
    if negative > 0.0 {
        loss -= negative * (1.0 - p).ln();
    }
    loss
}

/// Summed weighted loss of fixed parameters, with the metric's clipping. An `alpha` below a
/// summary's floor is raised to the floor (the summary cannot see lower voxels).
fn evaluate(studies: &[WeightedSummary<'_>], params: &QuantileParams) -> f64 {
    studies
        .iter()
        .map(|s| {
            let p = params
                .clamp(s.summary.quantile_unchecked(
                    params.alpha.max(f64::from(s.summary.floor())),
                    params.beta,
                ))
                .clamp(crate::metric::CLIP_EPS, 1.0 - crate::metric::CLIP_EPS);
            weighted_loss(s.positive, s.negative, p)
        })
        .sum()
}

/// Loss of the best single constant for every study.
fn constant_loss(studies: &[WeightedSummary<'_>], (lo, hi): (f64, f64)) -> f64 {
    let pos: f64 = studies.iter().map(|s| s.positive).sum();
    let neg: f64 = studies.iter().map(|s| s.negative).sum();
    let c = if pos + neg > 0.0 {
        (pos / (pos + neg)).clamp(lo, hi)
    } else {
        lo
    };
    weighted_loss(pos, neg, c)
}

fn fit_label(studies: &[WeightedSummary<'_>], config: &QuantileFitConfig) -> Fit {
    let mut search = Search {
        studies,
        bounds: config.prob_bounds,
        evaluations: 0,
        best: None,
        quantiles: Vec::new(),
        raw: Vec::with_capacity(studies.len()),
    };
    for &alpha in &config.alpha_grid {
        search.consider(alpha, &config.beta_grid);
    }
    let floor = config
        .alpha_grid
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let mut alpha_step = max_ratio(&config.alpha_grid);
    let mut beta_step = max_gap(&config.beta_grid);
    let k = config.refine_points;
    for _ in 0..config.refine_rounds {
        let (_, centre) = search.best.expect("the coarse grid is not empty");
        // Alpha moves multiplicatively (its grid is geometric), beta additively.
        let offsets: Vec<f64> = (0..k)
            .map(|i| i as f64 / (k - 1) as f64 * 2.0 - 1.0)
            .collect();
        let betas: Vec<f64> = offsets
            .iter()
            .map(|u| (centre.beta + u * beta_step).clamp(0.0, 1.0))
            .collect();
        for t in &offsets {
            let alpha = (centre.alpha * alpha_step.powf(*t)).clamp(floor, 1.0);
            search.consider(alpha, &betas);
        }
        alpha_step = alpha_step.powf(2.0 / (k - 1) as f64);
        beta_step *= 2.0 / (k - 1) as f64;
    }
    let (loss, params) = search.best.expect("the coarse grid is not empty");
    Fit {
        params,
        loss,
        evaluations: search.evaluations,
    }
}

/// State of one target's search: the best point so far and reusable buffers.
struct Search<'s, 'a> {
    studies: &'s [WeightedSummary<'a>],
    bounds: (f64, f64),
    evaluations: usize,
    best: Option<(f64, QuantileParams)>,
    /// `quantiles[i * n_betas + b]`: study `i`'s raw quantile at the `b`-th beta.
    quantiles: Vec<Option<f64>>,
    raw: Vec<(Option<f64>, f64, f64)>,
}

impl Search<'_, '_> {
    /// Evaluates `(alpha, beta)` for every beta; keeps the first strictly best point.
    fn consider(&mut self, alpha: f64, betas: &[f64]) {
        let nb = betas.len();
        self.quantiles.clear();
        self.quantiles.resize(self.studies.len() * nb, None);
        for (s, out) in self.studies.iter().zip(self.quantiles.chunks_mut(nb)) {
            s.summary.quantiles_unchecked(alpha, betas, out);
        }
        for (b, &beta) in betas.iter().enumerate() {
            self.evaluations += 1;
            self.raw.clear();
            self.raw.extend(
                self.studies
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (self.quantiles[i * nb + b], s.positive, s.negative)),
            );
            let clamp = best_clamp(&self.raw, self.bounds);
            if self
                .best
                .as_ref()
                .is_none_or(|(loss, _)| clamp.loss < *loss)
            {
                self.best = Some((
                    clamp.loss,
                    QuantileParams {
                        alpha,
                        beta,
                        min: clamp.min,
                        max: clamp.max,
                    },
                ));
            }
        }
    }
}

/// Largest ratio between neighbouring positive grid values: the radius (as a factor) of the
/// first `alpha` refinement round.
fn max_ratio(grid: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = grid.iter().copied().filter(|&v| v > 0.0).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.windows(2).map(|w| w[1] / w[0]).fold(1.0, f64::max)
}

/// Largest gap between neighbouring grid values: the radius of the first `beta` refinement round.
fn max_gap(grid: &[f64]) -> f64 {
    let mut sorted = grid.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

/// The loss-minimising `[min, max]` for fixed raw quantiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClampFit {
    pub min: f64,
    pub max: f64,
    pub loss: f64,
}

/// Exact minimisation over `lo <= min <= max <= hi` of
/// `sum_i L_i(clamp(q_i, min, max))` (`min` where `q_i` is `None`), with
/// `L_i(p) = -(pos_i ln p + neg_i ln(1 - p))`.
///
/// With the raw quantiles sorted and clamped into `[lo, hi]`, the loss splits as
/// `F(min) + G(max)` where on each interval between consecutive quantiles `F` and `G` are
/// convex with a closed-form minimiser (the class-weighted mean of the studies they clamp).
pub(crate) fn best_clamp(raw: &[(Option<f64>, f64, f64)], (lo, hi): (f64, f64)) -> ClampFit {
    let (mut pos_none, mut neg_none) = (0.0, 0.0);
    let mut sorted: Vec<(f64, f64, f64)> = Vec::with_capacity(raw.len());
    for &(q, pos, neg) in raw {
        match q {
            Some(q) => sorted.push((q.clamp(lo, hi), pos, neg)),
            None => {
                pos_none += pos;
                neg_none += neg;
            }
        }
    }
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = sorted.len();
    // prefix[k] = (sum pos, sum neg, sum L(q)) over the first k sorted studies.
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push((0.0, 0.0, 0.0));
    for &(q, pos, neg) in &sorted {
        let last: (f64, f64, f64) = prefix[prefix.len() - 1];
        prefix.push((
            last.0 + pos,
            last.1 + neg,
            last.2 + weighted_loss(pos, neg, q),
        ));
    }
    let (total_pos, total_neg, _) = prefix[n];
    let interval = |k: usize| -> (f64, f64) {
        let a = if k == 0 { lo } else { sorted[k - 1].0 };
        let b = if k == n { hi } else { sorted[k].0 };
        (a, b)
    };
    let argmin = |pos: f64, neg: f64, (a, b): (f64, f64), empty: f64| -> f64 {
        if pos + neg > 0.0 {
            (pos / (pos + neg)).clamp(a, b)
        } else {
            empty
        }
    };
    // F candidates: `min` in interval k clamps up the first k sorted studies and the `None`s.
    let lower: Vec<(f64, f64)> = (0..=n)
        .map(|k| {
            let (pos, neg, sum_l) = prefix[k];
            let (pos, neg) = (pos + pos_none, neg + neg_none);
            let range = interval(k);
            let m = argmin(pos, neg, range, range.0);
            (m, weighted_loss(pos, neg, m) - sum_l)
        })
        .collect();
    // G candidates: `max` in interval k clamps down the studies from k on.
    let upper: Vec<(f64, f64)> = (0..=n)
        .map(|k| {
            let (pos_below, neg_below, sum_l) = prefix[k];
            let (pos, neg) = (total_pos - pos_below, total_neg - neg_below);
            let range = interval(k);
            let big = argmin(pos, neg, range, range.1);
            (big, weighted_loss(pos, neg, big) + sum_l)
        })
        .collect();
    // Best pair with min <= max: sweep `upper` ascending, keep the best `lower` so far.
    let all_pos = total_pos + pos_none;
    let all_neg = total_neg + neg_none;
    let c = argmin(all_pos, all_neg, (lo, hi), lo);
    let mut best = ClampFit {
        min: c,
        max: c,
        loss: weighted_loss(all_pos, all_neg, c),
    };
    let mut li = 0;
    let mut best_lower: Option<(f64, f64)> = None;
    for &(big, g) in &upper {
        while li < lower.len() && lower[li].0 <= big {
            if best_lower.is_none_or(|(_, f)| lower[li].1 < f) {
                best_lower = Some(lower[li]);
            }
            li += 1;
        }
        if let Some((m, f)) = best_lower {
            if f + g < best.loss {
                best = ClampFit {
                    min: m,
                    max: big,
                    loss: f + g,
                };
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn direct(raw: &[(Option<f64>, f64, f64)], min: f64, max: f64) -> f64 {
        raw.iter()
            .map(|&(q, pos, neg)| weighted_loss(pos, neg, q.map_or(min, |q| q.clamp(min, max))))
            .sum()
    }

    proptest! {
        #[test]
        fn best_clamp_beats_a_dense_grid(
            rows in proptest::collection::vec((0u16..=100, any::<bool>(), 1u8..4), 1..25),
        ) {
            let raw: Vec<(Option<f64>, f64, f64)> = rows
                .iter()
                .map(|&(q, y, w)| {
                    let q = (q < 100).then(|| f64::from(q) / 100.0);
                    let w = f64::from(w);
                    if y { (q, w, 0.0) } else { (q, 0.0, w) }
                })
                .collect();
            let bounds = (0.001, 0.999);
            let fit = best_clamp(&raw, bounds);
            prop_assert!(fit.min <= fit.max && fit.min >= bounds.0 && fit.max <= bounds.1);
            let recomputed = direct(&raw, fit.min, fit.max);
            prop_assert!((recomputed - fit.loss).abs() < 1e-9, "{} vs {}", recomputed, fit.loss);
            let steps = 80;
            for a in 0..=steps {
                for b in a..=steps {
                    let m = bounds.0 + (bounds.1 - bounds.0) * f64::from(a) / f64::from(steps);
                    let big = bounds.0 + (bounds.1 - bounds.0) * f64::from(b) / f64::from(steps);
                    prop_assert!(fit.loss <= direct(&raw, m, big) + 1e-9,
                        "grid ({}, {}) beats fit {:?}", m, big, fit);
                }
            }
        }
    }
}
