//! Learning-rate schedules, evaluated at step `t` of `total` (epochs or iterations; the
//! training config says which).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LrSchedule {
    Constant {
        lr: f64,
    },
    /// `lr * (1 - t/total)^exponent` (nnU-Net: exponent 0.9, per epoch).
    Poly {
        lr: f64,
        exponent: f64,
    },
    /// Cosine annealing from `lr` to `final_lr` over `total` steps.
    Cosine {
        lr: f64,
        final_lr: f64,
    },
}

impl LrSchedule {
    pub fn lr_at(&self, t: usize, total: usize) -> f64 {
        let frac = if total == 0 {
            0.0
        } else {
            (t as f64 / total as f64).clamp(0.0, 1.0)
        };
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::Poly { lr, exponent } => lr * (1.0 - frac).powf(exponent),
            LrSchedule::Cosine { lr, final_lr } => {
                final_lr + 0.5 * (lr - final_lr) * (1.0 + (std::f64::consts::PI * frac).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_and_cosine_end_points() {
        let p = LrSchedule::Poly {
            lr: 0.01,
            exponent: 0.9,
        };
        assert_eq!(p.lr_at(0, 1000), 0.01);
        assert!((p.lr_at(500, 1000) - 0.01 * 0.5f64.powf(0.9)).abs() < 1e-15);
        assert_eq!(p.lr_at(1000, 1000), 0.0);
        let c = LrSchedule::Cosine {
            lr: 3e-4,
            final_lr: 1e-8,
        };
        assert!((c.lr_at(0, 100) - 3e-4).abs() < 1e-18);
        assert!((c.lr_at(100, 100) - 1e-8).abs() < 1e-18);
        assert!((c.lr_at(50, 100) - (1e-8 + 0.5 * (3e-4 - 1e-8))).abs() < 1e-15);
    }
}
