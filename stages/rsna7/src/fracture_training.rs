//! Training a fracture model with a check that it did not collapse.
//!
//! With a few hundred iterations a fracture net sometimes settles on "no crack anywhere" from
//! its first epochs: the soft Dice of the crack class never leaves 0, so nnU-Net's Dice + CE
//! loss ends near 0 instead of well below it. On the demo cohort round 0 (the label-free start
//! that round 1 and every round-3 fold begin from) did this with one training seed out of
//! three: final loss -0.002 against -0.25 to -0.35, and the run's test ratio went from about
//! 0.5 to 0.97 (docs/benchmarks.md). Such a model is trained again from another seed, as stage 1
//! is ([`crate::stage1_training`]); every attempt is written to `training_check.json`.

use std::path::Path;

use candle_core::Device;
use flow_nn3d::checkpoint::EpochRecord;
use flow_nn3d::train::TrainProgress;
use flow_patches::TrainingCase;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::normalize::CtNormalizer;
use crate::segnet::{keep_attempt, train_segmentation, Attempts, SegRecipe};

/// A model whose mean training loss over its last epochs ([`tail_loss`]) is above this has
/// collapsed onto the background (Dice + CE is below 0 once the crack Dice exceeds the CE).
pub const COLLAPSE_LOSS: f64 = -0.05;

/// An attempt after the first trains from the seed this much higher per attempt: clear of the
/// fold offsets (+0..4) and round offsets (+1000 per round) that separate the other models.
pub const RETRY_SEED_STEP: u64 = 100;

/// One training attempt: its seed and the mean loss of its last epochs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FractureAttempt {
    pub seed: u64,
    pub tail_loss: f64,
}

impl FractureAttempt {
    /// Whether the model learned something beyond "background everywhere".
    pub fn learned(&self) -> bool {
        self.tail_loss < COLLAPSE_LOSS
    }
}

/// What [`train_fracture`] did: every attempt and the index of the one kept.
pub type FractureTraining = Attempts<FractureAttempt>;

/// Mean training loss over the last quarter of `history` (at least its last epoch); `NaN`
/// for an empty history, which counts as not learned.
pub fn tail_loss(history: &[EpochRecord]) -> f64 {
    let n = history.len().div_ceil(4).max(1).min(history.len());
    if n == 0 {
        return f64::NAN;
    }
    history[history.len() - n..]
        .iter()
        .map(|r| r.train_loss)
        .sum::<f64>()
        / n as f64
}

/// The attempt to keep: the lowest [`tail_loss`] (a `NaN` loss never wins over a number).
pub fn lowest_tail_loss(attempts: &[FractureAttempt]) -> usize {
    let loss = |a: &FractureAttempt| {
        if a.tail_loss.is_nan() {
            f64::INFINITY
        } else {
            a.tail_loss
        }
    };
    (0..attempts.len())
        .min_by(|&i, &j| loss(&attempts[i]).total_cmp(&loss(&attempts[j])))
        .unwrap_or(0)
}

/// Trains a fracture model as [`train_segmentation`] does into `out_dir` (model.json,
/// weights.safetensors, training_check.json), training again from seeds `recipe.seed +
/// RETRY_SEED_STEP * a` while the model collapsed, at most `recipe.collapse_attempts`
/// trainings in all, and keeping the attempt with the lowest [`tail_loss`]. Each attempt
/// resumes from its own checkpoints under `checkpoint_dir`.
#[allow(clippy::too_many_arguments)]
pub fn train_fracture(
    recipe: &SegRecipe,
    normalizer: CtNormalizer,
    fold: Option<usize>,
    init: Option<&Path>,
    mut cases: Vec<TrainingCase>,
    label_free: bool,
    device: &Device,
    checkpoint_dir: &Path,
    out_dir: &Path,
    progress: &mut dyn TrainProgress,
) -> Result<FractureTraining> {
    let attempts = recipe.collapse_attempts.max(1);
    let mut done: Vec<FractureAttempt> = Vec::new();
    for a in 0..attempts {
        let r = SegRecipe {
            seed: recipe.seed + RETRY_SEED_STEP * a as u64,
            ..recipe.clone()
        };
        // The cases are cloned only while another attempt may still need them.
        let these = if a + 1 < attempts {
            cases.clone()
        } else {
            std::mem::take(&mut cases)
        };
        let meta = train_segmentation(
            "fracture",
            &r,
            normalizer,
            fold,
            init,
            these,
            label_free,
            device,
            &checkpoint_dir.join(format!("attempt{a}")),
            &out_dir.join(format!("attempt{a}")),
            progress,
        )?;
        let attempt = FractureAttempt {
            seed: r.seed,
            tail_loss: tail_loss(&meta.history),
        };
        // Stopped early (cancelled, or an injected failure): no verdict and no next attempt;
        // the caller reports the stop, and a rerun resumes this attempt from its checkpoint.
        if meta.history.len() < r.epochs {
            done.push(attempt);
            break;
        }
        let ok = attempt.learned();
        tracing::info!(
            attempt = a,
            seed = r.seed,
            tail_loss = %format_args!("{:.4}", attempt.tail_loss),
            ok,
            "fracture training check"
        );
        done.push(attempt);
        if ok {
            break;
        }
    }
    let kept = lowest_tail_loss(&done);
    keep_attempt(out_dir, kept, done.len())?;
    let meta = crate::segnet::SegModelMeta::read(out_dir)?;
    let training = Attempts {
        attempts: done,
        kept,
        meta: Some(meta),
    };
    crate::error::write_json(&out_dir.join("training_check.json"), &training)?;
    Ok(training)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segnet::tests::case;
    use std::ops::ControlFlow;
    use std::time::Duration;

    fn norm() -> CtNormalizer {
        CtNormalizer {
            clip_low: 0.0,
            clip_high: 1.0,
            mean: 0.0,
            std: 1.0,
        }
    }

    /// Stops training after its first epoch, as a cancel or an injected failure does.
    struct StopAfterOne;
    impl TrainProgress for StopAfterOne {
        fn epoch_end(&mut self, _: &EpochRecord, _: Duration) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }

    #[test]
    fn a_model_that_learns_nothing_is_trained_again_and_a_stopped_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut recipe = crate::plans::Plans::builtin("tiny")
            .unwrap()
            .fracture_round1;
        recipe.epochs = 2;
        recipe.iterations = 1;
        recipe.synthetic_fracture_p = 0.0;
        // No step is taken, so the loss cannot fall below 0: every attempt "collapsed".
        recipe.lr = 0.0;
        recipe.collapse_attempts = 2;
        recipe.seed = 7;
        let out = dir.path().join("model");
        let t = train_fracture(
            &recipe,
            norm(),
            None,
            None,
            vec![case("a"), case("b")],
            false,
            &Device::Cpu,
            &dir.path().join("ckpt"),
            &out,
            &mut flow_nn3d::train::LogProgress,
        )
        .unwrap();
        assert_eq!(
            t.attempts.iter().map(|a| a.seed).collect::<Vec<_>>(),
            [7, 7 + RETRY_SEED_STEP]
        );
        assert!(t.attempts.iter().all(|a| !a.learned()), "{:?}", t.attempts);
        assert_eq!(t.kept, lowest_tail_loss(&t.attempts));
        assert_eq!(t.meta.as_ref().unwrap().recipe.seed, t.kept_attempt().seed);
        let check: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("training_check.json")).unwrap())
                .unwrap();
        assert_eq!(check["attempts"].as_array().unwrap().len(), 2);
        assert!(out.join("weights.safetensors").is_file() && out.join("model.json").is_file());
        assert!(!out.join("attempt0").exists() && !out.join("attempt1").exists());

        // Stopped after one of two epochs: no verdict, no second attempt.
        let out = dir.path().join("stopped");
        let t = train_fracture(
            &recipe,
            norm(),
            None,
            None,
            vec![case("a")],
            false,
            &Device::Cpu,
            &dir.path().join("ckpt-stopped"),
            &out,
            &mut StopAfterOne,
        )
        .unwrap();
        assert_eq!(t.attempts.len(), 1);
    }

    fn history(losses: &[f64]) -> Vec<EpochRecord> {
        losses
            .iter()
            .enumerate()
            .map(|(epoch, &train_loss)| EpochRecord {
                epoch,
                train_loss,
                lr: 0.01,
                val_dice: None,
                val_class_dice: Vec::new(),
                seconds: 0.0,
            })
            .collect()
    }

    #[test]
    fn the_tail_is_the_last_quarter_and_a_flat_loss_is_a_collapse() {
        // 8 epochs: the last 2 count.
        let h = history(&[0.6, 0.3, 0.1, 0.0, -0.1, -0.2, -0.3, -0.5]);
        assert!((tail_loss(&h) - -0.4).abs() < 1e-12);
        assert_eq!(tail_loss(&history(&[0.2])), 0.2);
        assert!(tail_loss(&[]).is_nan());
        let collapsed = FractureAttempt {
            seed: 1001,
            tail_loss: tail_loss(&history(&[0.5, 0.05, -0.001, -0.004])),
        };
        assert!(!collapsed.learned());
        let learned = FractureAttempt {
            seed: 1002,
            tail_loss: -0.27,
        };
        assert!(learned.learned());
        assert!(!FractureAttempt {
            seed: 0,
            tail_loss: f64::NAN
        }
        .learned());
        let tries = [
            collapsed.clone(),
            FractureAttempt {
                seed: 1101,
                tail_loss: f64::NAN,
            },
            FractureAttempt {
                seed: 1201,
                tail_loss: -0.01,
            },
        ];
        assert_eq!(
            lowest_tail_loss(&tries),
            2,
            "all collapsed: the one that got furthest"
        );
        assert_eq!(lowest_tail_loss(&tries[..2]), 0, "NaN never wins");
        assert_eq!(lowest_tail_loss(&[]), 0);
    }
}
