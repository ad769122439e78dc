//! Weighted logistic regression with a ridge on standardised coefficients: the model behind
//! stage 3's `patient_overall` combiner and its pooled vertebra scorer.
//!
//! Features are standardised (`(x - mean) / scale`) before the fit so one ridge strength means
//! the same for every feature; the intercept is not penalised. The fit is Newton's method with
//! backtracking: deterministic and quadratically convergent on this convex problem.

use serde::{Deserialize, Serialize};

use crate::ScoringError;

/// A fitted model; serialise with serde (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    /// Names of the features, in order.
    pub feature_names: Vec<String>,
    /// Standardisation: `(x - mean) / scale`.
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Coefficients on standardised features.
    pub coef: Vec<f64>,
    pub intercept: f64,
}

/// A fitted model with how the fit went.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticFit {
    pub model: LogisticModel,
    pub newton_iterations: usize,
    /// Weighted log-loss plus the ridge term at the optimum.
    pub objective: f64,
}

impl LogisticModel {
    /// The linear predictor (logit) of raw feature vector `x`.
    pub fn linear(&self, x: &[f64]) -> f64 {
        self.intercept
            + x.iter()
                .zip(&self.mean)
                .zip(&self.scale)
                .zip(&self.coef)
                .map(|(((x, m), s), c)| c * (x - m) / s)
                .sum::<f64>()
    }

    /// Probability for raw feature vector `x`.
    pub fn predict(&self, x: &[f64]) -> f64 {
        sigmoid(self.linear(x))
    }
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Fits `P(y = 1 | x)` on raw feature rows with sample weights. `l2` is the ridge strength
/// relative to the total sample weight (scale-free: doubling every weight changes nothing).
/// Every row must have `names.len()` finite values; `y` is 0 or 1 per row; weights are >= 0
/// with a positive sum.
pub fn fit_logistic(
    names: &[String],
    raw: &[Vec<f64>],
    y: &[f64],
    weight: &[f64],
    l2: f64,
) -> Result<LogisticFit, ScoringError> {
    let d = names.len();
    if raw.len() != y.len() || raw.len() != weight.len() {
        return Err(ScoringError::LengthMismatch {
            what: "logistic rows vs targets vs weights",
            left: raw.len(),
            right: y.len().min(weight.len()),
        });
    }
    if raw.is_empty() {
        return Err(ScoringError::NoStudies {
            what: "logistic fit",
        });
    }
    if !(l2.is_finite() && l2 > 0.0) {
        return Err(ScoringError::InvalidParameter(format!(
            "ridge strength {l2} must be > 0"
        )));
    }
    if let Some((i, row)) = raw
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != d || r.iter().any(|v| !v.is_finite()))
    {
        return Err(ScoringError::InvalidParameter(format!(
            "logistic row {i}: {} values, expected {d} finite ones",
            row.len()
        )));
    }
    if let Some(t) = y.iter().find(|&&t| t != 0.0 && t != 1.0) {
        return Err(ScoringError::InvalidParameter(format!(
            "logistic target {t} is not 0/1"
        )));
    }
    let total_weight: f64 = weight.iter().sum();
    if weight.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || total_weight <= 0.0 {
        return Err(ScoringError::InvalidParameter(
            "logistic sample weights must be finite, >= 0 and not all 0".into(),
        ));
    }
    let n = raw.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|k| raw.iter().map(|x| x[k]).sum::<f64>() / n)
        .collect();
    let scale: Vec<f64> = (0..d)
        .map(|k| {
            let var = raw.iter().map(|x| (x[k] - mean[k]).powi(2)).sum::<f64>() / n;
            if var > 1e-24 {
                var.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    let problem = Problem {
        rows: design_rows(raw, &mean, &scale),
        y: y.to_vec(),
        weight: weight.to_vec(),
        lambda: l2 * total_weight,
    };
    let (theta, newton_iterations, objective) = problem.minimise();
    tracing::debug!(newton_iterations, objective, "logistic model fitted");
    Ok(LogisticFit {
        model: LogisticModel {
            feature_names: names.to_vec(),
            mean,
            scale,
            coef: theta[1..].to_vec(),
            intercept: theta[0],
        },
        newton_iterations,
        objective,
    })
}

/// Rows of `[1, (x - mean) / scale ..]`.
fn design_rows(raw: &[Vec<f64>], mean: &[f64], scale: &[f64]) -> Vec<Vec<f64>> {
    raw.iter()
        .map(|x| {
            std::iter::once(1.0)
                .chain(x.iter().zip(mean).zip(scale).map(|((x, m), s)| (x - m) / s))
                .collect()
        })
        .collect()
}

/// The weighted logistic objective on standardised features; `theta = [intercept, coef..]`.
pub(crate) struct Problem {
    /// Rows of `[1, standardised features..]`.
    pub rows: Vec<Vec<f64>>,
    pub y: Vec<f64>,
    pub weight: Vec<f64>,
    pub lambda: f64,
}

impl Problem {
    pub fn objective(&self, theta: &[f64]) -> f64 {
        let data: f64 = self
            .rows
            .iter()
            .zip(&self.y)
            .zip(&self.weight)
            .map(|((x, &y), &w)| {
                let z: f64 = x.iter().zip(theta).map(|(a, b)| a * b).sum();
                // log(1 + e^z) - y z, computed stably.
                w * (z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z)
            })
            .sum();
        data + 0.5 * self.lambda * theta[1..].iter().map(|t| t * t).sum::<f64>()
    }

    #[allow(clippy::needless_range_loop)] // matrix index arithmetic reads clearer than iterators
    pub fn gradient_hessian(&self, theta: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
        let d = theta.len();
        let mut g = vec![0.0; d];
        let mut h = vec![vec![0.0; d]; d];
        for ((x, &y), &w) in self.rows.iter().zip(&self.y).zip(&self.weight) {
            let p = sigmoid(x.iter().zip(theta).map(|(a, b)| a * b).sum());
            let r = w * (p - y);
            let c = w * p * (1.0 - p);
            for a in 0..d {
                g[a] += r * x[a];
                for b in 0..=a {
                    h[a][b] += c * x[a] * x[b];
                }
            }
        }
        for a in 0..d {
            if a > 0 {
                g[a] += self.lambda * theta[a];
                h[a][a] += self.lambda;
            }
            for b in 0..a {
                h[b][a] = h[a][b];
            }
        }
        (g, h)
    }

    /// Newton's method with backtracking from zero: `(theta, iterations, objective)`.
    fn minimise(&self) -> (Vec<f64>, usize, f64) {
        let d = self.rows.first().map_or(1, Vec::len);
        let total_weight: f64 = self.weight.iter().sum();
        let mut theta = vec![0.0; d];
        let mut value = self.objective(&theta);
        let mut iterations = 0;
        for _ in 0..100 {
            iterations += 1;
            let (g, h) = self.gradient_hessian(&theta);
            let Some(step) = solve_spd(h, &g) else { break };
            let decrement: f64 = step.iter().zip(&g).map(|(s, g)| s * g).sum();
            if decrement < 1e-20 * total_weight {
                break;
            }
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..50 {
                let candidate: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect();
                let v = self.objective(&candidate);
                if v <= value - 1e-4 * t * decrement {
                    theta = candidate;
                    value = v;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                break;
            }
        }
        (theta, iterations, value)
    }
}

/// Solves `h x = g` for symmetric positive definite `h` (Cholesky); a tiny diagonal jitter
/// keeps the unpenalised intercept solvable when every prediction saturates.
fn solve_spd(mut h: Vec<Vec<f64>>, g: &[f64]) -> Option<Vec<f64>> {
    let d = g.len();
    let trace: f64 = (0..d).map(|i| h[i][i]).sum();
    for (i, row) in h.iter_mut().enumerate() {
        row[i] += 1e-12 * trace.max(1e-300);
    }
    let mut l = vec![vec![0.0; d]; d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = h[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut z = vec![0.0; d];
    for i in 0..d {
        z[i] = (g[i] - (0..i).map(|k| l[i][k] * z[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        x[i] = (z[i] - (i + 1..d).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

/// The gradient of the fitted objective at `model`'s parameters (zero at the optimum), for
/// tests of callers that build their own rows.
#[cfg(test)]
pub(crate) fn gradient_at(
    model: &LogisticModel,
    raw: &[Vec<f64>],
    y: &[f64],
    weight: &[f64],
    l2: f64,
) -> Vec<f64> {
    let problem = Problem {
        rows: design_rows(raw, &model.mean, &model.scale),
        y: y.to_vec(),
        weight: weight.to_vec(),
        lambda: l2 * weight.iter().sum::<f64>(),
    };
    let theta: Vec<f64> = std::iter::once(model.intercept)
        .chain(model.coef.iter().copied())
        .collect();
    problem.gradient_hessian(&theta).0
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_stream::stream;

    #[test]
    fn gradient_matches_finite_differences_and_vanishes_at_the_fit() {
        let mut next = stream(0x9E37_79B9_7F4A_7C15);
        let raw: Vec<Vec<f64>> = (0..200)
            .map(|_| vec![next() * 4.0 - 2.0, 100.0 * next()])
            .collect();
        let y: Vec<f64> = raw
            .iter()
            .map(|x| f64::from(u8::from(next() < sigmoid(1.5 * x[0] - 0.5))))
            .collect();
        let weight: Vec<f64> = (0..200).map(|i| 1.0 + (i % 3) as f64).collect();
        let names = vec!["signal".to_string(), "noise".to_string()];
        let fit = fit_logistic(&names, &raw, &y, &weight, 1e-3).unwrap();
        assert!(fit.model.coef[0] > 0.5, "{:?}", fit.model);
        let g = gradient_at(&fit.model, &raw, &y, &weight, 1e-3);
        assert!(g.iter().all(|g| g.abs() < 1e-7), "{g:?}");

        // Analytic gradient against central differences away from the optimum.
        let rows = raw.iter().map(|x| vec![1.0, x[0], x[1] / 100.0]).collect();
        let problem = Problem {
            rows,
            y: y.clone(),
            weight,
            lambda: 0.3,
        };
        let theta = [0.2, -0.7, 1.1];
        let (g, _) = problem.gradient_hessian(&theta);
        for k in 0..3 {
            let h = 1e-6;
            let mut plus = theta;
            plus[k] += h;
            let mut minus = theta;
            minus[k] -= h;
            let fd = (problem.objective(&plus) - problem.objective(&minus)) / (2.0 * h);
            assert!(
                (fd - g[k]).abs() < 1e-5 * g[k].abs().max(1.0),
                "{k}: {fd} vs {}",
                g[k]
            );
        }
    }

    #[test]
    fn inputs_are_checked() {
        let names = vec!["a".to_string()];
        let rows = vec![vec![0.0], vec![1.0]];
        assert!(fit_logistic(&names, &rows, &[0.0, 1.0], &[1.0, 1.0], 0.0).is_err());
        assert!(fit_logistic(&names, &rows, &[0.0, 2.0], &[1.0, 1.0], 1e-2).is_err());
        assert!(fit_logistic(&names, &rows, &[0.0], &[1.0, 1.0], 1e-2).is_err());
        assert!(fit_logistic(
            &names,
            &[vec![f64::NAN], vec![1.0]],
            &[0.0, 1.0],
            &[1.0, 1.0],
            1e-2
        )
        .is_err());
        assert!(fit_logistic(&names, &rows, &[0.0, 1.0], &[0.0, 0.0], 1e-2).is_err());
        let fit = fit_logistic(&names, &rows, &[0.0, 1.0], &[1.0, 1.0], 1e-2).unwrap();
        assert!(fit.model.predict(&[1.0]) > fit.model.predict(&[0.0]));
    }
}
