//! Training a stage-1 model with a check that it learned every level.
//!
//! The low-resolution model sometimes settles in a minimum where one level swallows its
//! neighbours (on the demo cohort of seed 7, C2 took C3-C5 on the training studies as on the
//! test studies). That shows on the training studies themselves, so after training the model
//! segments them; a model whose Dice for any of C1-C7 stays under [`LEVEL_DICE_FLOOR`] is
//! trained again from another seed, up to `attempts` times, and the best attempt (highest
//! lowest-level Dice) is kept. Every attempt's Dice is written to `training_check.json`.

use std::path::Path;

use candle_core::Device;
use flow_nn3d::train::TrainProgress;
use serde::{Deserialize, Serialize};

use crate::error::{Result, Rsna7Error};
use crate::segnet::{
    keep_attempt, train_segmentation, Attempts, InferencePlan, SegModel, SegRecipe,
};
use crate::stage1::{
    argmax, class_probabilities, dice_per_label, training_cases, Resolution, Stage1Study,
};

/// A model whose training-study Dice for some level C1-C7 is below this has not learned it.
pub const LEVEL_DICE_FLOOR: f64 = 0.3;

/// One training attempt: its seed and its mean Dice per class (1..C) on the training studies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stage1Attempt {
    pub seed: u64,
    pub class_dice: Vec<Option<f64>>,
}

impl Stage1Attempt {
    /// The lowest Dice over the checked classes (C1-C7; class 1 for a 2-class spine model);
    /// a class never present in prediction nor truth does not count.
    pub fn lowest_level_dice(&self) -> f64 {
        self.class_dice
            .iter()
            .take(7)
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(1.0)
    }

    pub fn learned_every_level(&self) -> bool {
        self.lowest_level_dice() >= LEVEL_DICE_FLOOR
    }
}

/// What [`train_stage1`] did: every attempt and the index of the one kept.
pub type Stage1Training = Attempts<Stage1Attempt>;

/// Mean Dice per class 1..C of `model`'s argmax over `studies` (on the model's grid),
/// averaged over the studies where the class is predicted or present. A check of the
/// training, so it predicts with fixed settings (half-patch steps, no mirroring), not the
/// plans' inference entries.
pub fn training_class_dice(
    model: &SegModel,
    studies: &[Stage1Study],
    device: &Device,
) -> Result<Vec<Option<f64>>> {
    let classes = model.classes();
    let mut sums = vec![(0.0f64, 0usize); classes - 1];
    for s in studies {
        let probs = class_probabilities(&[model], &s.hu, &InferencePlan::default(), device)?;
        let pred = s.labels.map(|_| 0u8);
        let pred = flow_imaging::Volume::from_vec(pred.dims(), argmax(&probs, 0), pred.geometry)
            .map_err(|e| Rsna7Error::Invalid(e.to_string()))?;
        for (c, d) in dice_per_label(&pred, &s.labels, (classes - 1) as u8)?
            .into_iter()
            .enumerate()
        {
            if let Some(d) = d {
                sums[c].0 += d;
                sums[c].1 += 1;
            }
        }
    }
    Ok(sums
        .into_iter()
        .map(|(s, n)| (n > 0).then(|| s / n as f64))
        .collect())
}

/// Trains the `resolution` model of `recipe` on `studies` into `out_dir` (model.json,
/// weights.safetensors, training_check.json), retrying from seeds `recipe.seed + 1, ...` while
/// a level is missing, at most `attempts` trainings in all. Each attempt resumes from its own
/// checkpoints under `checkpoint_dir`.
#[allow(clippy::too_many_arguments)]
pub fn train_stage1(
    resolution: Resolution,
    recipe: &SegRecipe,
    studies: &[Stage1Study],
    attempts: usize,
    device: &Device,
    checkpoint_dir: &Path,
    out_dir: &Path,
    progress: &mut dyn TrainProgress,
) -> Result<Stage1Training> {
    // The normaliser and the normalised cases are the same for every attempt.
    let (norm, cases) = training_cases(studies)?;
    let mut done: Vec<Stage1Attempt> = Vec::new();
    for a in 0..attempts.max(1) {
        let r = SegRecipe {
            seed: recipe.seed + a as u64,
            ..recipe.clone()
        };
        let dir = out_dir.join(format!("attempt{a}"));
        train_segmentation(
            resolution.task(),
            &r,
            norm,
            None,
            None,
            cases.clone(),
            false,
            device,
            &checkpoint_dir.join(format!("attempt{a}")),
            &dir,
            progress,
        )?;
        let model = SegModel::load(&dir, device)?;
        let attempt = Stage1Attempt {
            seed: r.seed,
            class_dice: training_class_dice(&model, studies, device)?,
        };
        let ok = attempt.learned_every_level();
        tracing::info!(
            attempt = a,
            seed = r.seed,
            lowest_level_dice = %format_args!("{:.3}", attempt.lowest_level_dice()),
            ok,
            "stage-1 training check"
        );
        done.push(attempt);
        if ok {
            break;
        }
    }
    let kept = (0..done.len())
        .max_by(|&i, &j| {
            done[i]
                .lowest_level_dice()
                .total_cmp(&done[j].lowest_level_dice())
        })
        .unwrap_or(0);
    keep_attempt(out_dir, kept, done.len())?;
    let meta = SegModel::load(out_dir, device)?.meta;
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

    #[test]
    fn a_missing_level_fails_the_check_and_absent_classes_do_not_count() {
        let good = Stage1Attempt {
            seed: 1,
            class_dice: vec![
                Some(0.5),
                Some(0.8),
                Some(0.7),
                Some(0.6),
                Some(0.7),
                Some(0.8),
                Some(0.8),
                Some(0.05),
            ],
        };
        assert!(
            good.learned_every_level(),
            "T1 (the 8th class) is not checked"
        );
        let merged = Stage1Attempt {
            seed: 2,
            class_dice: vec![
                Some(0.5),
                Some(0.3),
                Some(0.0),
                Some(0.0),
                Some(0.1),
                Some(0.8),
                Some(0.8),
                Some(0.1),
            ],
        };
        assert!(!merged.learned_every_level());
        assert_eq!(merged.lowest_level_dice(), 0.0);
        let spine = Stage1Attempt {
            seed: 3,
            class_dice: vec![Some(0.9)],
        };
        assert!(spine.learned_every_level());
        let absent = Stage1Attempt {
            seed: 4,
            class_dice: vec![None, Some(0.9)],
        };
        assert!(absent.learned_every_level());
    }
}
