//! Which vertebrae of a study are fractured: per-vertebra frequencies shaped like the
//! competition's, 1 to 3 fractured vertebrae per positive study.
//!
//! The fractured set of a positive study is drawn from independent per-vertebra Bernoulli
//! variables conditioned on 1 <= |set| <= 3. The Bernoulli rates are calibrated (by exact
//! enumeration of the 128 subsets) so that the *conditional* marginals equal the targets
//! `weights_j / sum(weights) * mean_fractured_vertebrae`.

use rand::Rng;
use thiserror::Error;

/// Most fractured vertebrae in one study.
pub const MAX_FRACTURED_VERTEBRAE: usize = 3;

/// The target frequencies cannot be produced by the model.
#[derive(Debug, Error, PartialEq)]
pub enum LabelModelError {
    #[error("vertebra C{vertebra} would need a conditional frequency of {frequency:.3} (> 1); lower mean_fractured_vertebrae or flatten the weights")]
    Unreachable { vertebra: usize, frequency: f64 },
    #[error("calibration of the per-vertebra rates did not converge (max error {error:.2e})")]
    NoConvergence { error: f64 },
}

/// Samples `[C1..C7]` fracture labels.
#[derive(Debug, Clone)]
pub struct LabelModel {
    prevalence: f64,
    /// Conditional marginals of each vertebra among positive studies.
    targets: [f64; 7],
    /// Allowed subsets (bit j = C(j+1)) and their cumulative conditional probabilities.
    subsets: Vec<(u8, f64)>,
}

impl LabelModel {
    /// Builds the model; `weights` are relative frequencies (e.g. competition counts).
    pub fn new(
        prevalence: f64,
        weights: [f64; 7],
        mean_fractured: f64,
    ) -> Result<Self, LabelModelError> {
        let total: f64 = weights.iter().sum();
        let targets = weights.map(|w| w / total * mean_fractured);
        for (j, &t) in targets.iter().enumerate() {
            if t >= 1.0 {
                return Err(LabelModelError::Unreachable {
                    vertebra: j + 1,
                    frequency: t,
                });
            }
        }
        let mut rates = targets;
        let mut error = f64::INFINITY;
        for _ in 0..20_000 {
            let (marginals, _) = conditional_marginals(&rates);
            error = (0..7)
                .map(|j| (marginals[j] - targets[j]).abs())
                .fold(0.0, f64::max);
            if error < 1e-10 {
                break;
            }
            for j in 0..7 {
                // Fixed-point step on the odds keeps each rate inside (0, 1).
                let odds = rates[j] / (1.0 - rates[j]) * (targets[j] / marginals[j]).powf(0.7);
                rates[j] = odds / (1.0 + odds);
            }
        }
        if error > 1e-6 {
            return Err(LabelModelError::NoConvergence { error });
        }
        let (_, mass) = conditional_marginals(&rates);
        let mut cumulative = 0.0;
        let mut subsets = Vec::new();
        for set in 1u8..128 {
            if allowed(set) {
                cumulative += subset_probability(set, &rates) / mass;
                subsets.push((set, cumulative));
            }
        }
        Ok(Self {
            prevalence,
            targets,
            subsets,
        })
    }

    /// Conditional per-vertebra frequencies among positive studies (C1..C7).
    pub fn conditional_frequencies(&self) -> [f64; 7] {
        self.targets
    }

    /// Unconditional per-vertebra prevalences (C1..C7).
    pub fn prevalences(&self) -> [f64; 7] {
        self.targets.map(|t| t * self.prevalence)
    }

    /// Draws the fracture labels of one study.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> [bool; 7] {
        let positive = rng.gen::<f64>() < self.prevalence;
        let u: f64 = rng.gen();
        if !positive {
            return [false; 7];
        }
        let set = self
            .subsets
            .iter()
            .find(|(_, c)| u < *c)
            .or(self.subsets.last())
            .map(|(s, _)| *s)
            .unwrap_or(1);
        std::array::from_fn(|j| set & (1 << j) != 0)
    }
}

fn allowed(set: u8) -> bool {
    let n = set.count_ones() as usize;
    (1..=MAX_FRACTURED_VERTEBRAE).contains(&n)
}

fn subset_probability(set: u8, rates: &[f64; 7]) -> f64 {
    (0..7)
        .map(|j| {
            if set & (1 << j) != 0 {
                rates[j]
            } else {
                1.0 - rates[j]
            }
        })
        .product()
}

/// Marginals of each vertebra given an allowed subset, and the allowed probability mass.
fn conditional_marginals(rates: &[f64; 7]) -> ([f64; 7], f64) {
    let mut marginals = [0.0; 7];
    let mut mass = 0.0;
    for set in 1u8..128 {
        if !allowed(set) {
            continue;
        }
        let p = subset_probability(set, rates);
        mass += p;
        for (j, m) in marginals.iter_mut().enumerate() {
            if set & (1 << j) != 0 {
                *m += p;
            }
        }
    }
    (marginals.map(|m| m / mass), mass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{COMPETITION_POSITIVE_STUDIES, COMPETITION_VERTEBRA_COUNTS};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn calibrated_marginals_match_competition_counts() {
        let mean = COMPETITION_VERTEBRA_COUNTS.iter().sum::<f64>() / COMPETITION_POSITIVE_STUDIES;
        let model = LabelModel::new(0.5, COMPETITION_VERTEBRA_COUNTS, mean).unwrap();
        // Exact conditional marginals from the subset table.
        let mut exact = [0.0; 7];
        let mut previous = 0.0;
        for &(set, c) in &model.subsets {
            for (j, e) in exact.iter_mut().enumerate() {
                if set & (1 << j) != 0 {
                    *e += c - previous;
                }
            }
            previous = c;
        }
        for j in 0..7 {
            let want = COMPETITION_VERTEBRA_COUNTS[j] / COMPETITION_POSITIVE_STUDIES;
            assert!(
                (exact[j] - want).abs() < 1e-6,
                "C{}: {} vs {}",
                j + 1,
                exact[j],
                want
            );
        }
        assert!((previous - 1.0).abs() < 1e-9);
    }

    #[test]
    fn samples_have_one_to_three_fractures_when_positive() {
        let model = LabelModel::new(0.6, COMPETITION_VERTEBRA_COUNTS, 1.5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut positives = 0;
        for _ in 0..2000 {
            let labels = model.sample(&mut rng);
            let n = labels.iter().filter(|&&b| b).count();
            assert!(n <= 3);
            if n > 0 {
                positives += 1;
            }
        }
        let rate = positives as f64 / 2000.0;
        assert!((rate - 0.6).abs() < 0.04, "{rate}");
    }

    #[test]
    fn rejects_unreachable_targets() {
        let err = LabelModel::new(
            0.5,
            [1.0, 0.0001, 0.0001, 0.0001, 0.0001, 0.0001, 0.0001],
            1.5,
        );
        assert!(matches!(
            err,
            Err(LabelModelError::Unreachable { vertebra: 1, .. })
        ));
    }
}
