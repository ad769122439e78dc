//! The training loop: epochs x iterations over a caller-supplied batch source, gradient
//! clipping, a learning-rate schedule, validation Dice, a checkpoint per epoch and automatic
//! resume from the newest checkpoint. Progress goes to a caller-supplied callback.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{Module, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_latest, save_checkpoint, CheckpointMeta, EpochRecord};
use crate::classifier::Classifier3d;
use crate::error::{Nn3dError, Result};
use crate::loss::{bce_with_logits, deep_supervision_loss, dice_ce_loss, foreground_confusion};
use crate::optim::{clip_grad_norm, Optimizer, OptimizerConfig};
use crate::schedule::LrSchedule;
use crate::unet::UNet3d;

/// One training or validation batch: images `(N, C, D, H, W)` and targets (label maps
/// `(N, 1, D, H, W)` for segmentation, `(N, 1)` in [0, 1] for classification).
#[derive(Clone, Debug)]
pub struct Batch {
    pub image: Tensor,
    pub target: Tensor,
}

/// Where batches come from (the patch sampler / augmentation pipeline lives elsewhere).
/// For a resumed run to reproduce an uninterrupted one, `start_epoch` should re-seed the
/// source from `(seed, epoch)`.
pub trait BatchSource {
    fn start_epoch(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }
    fn next_batch(&mut self) -> Result<Batch>;
}

/// What is trained: a scalar loss per batch and a validation confusion per class.
pub trait Objective {
    fn loss(&self, batch: &Batch) -> candle_core::Result<Tensor>;
    /// Per foreground class `[tp, fp, fn]`, summed into a global Dice over validation.
    fn confusion(&self, batch: &Batch) -> candle_core::Result<Vec<[f64; 3]>>;
}

/// U-Net segmentation: Dice + CE, over all deep-supervision outputs when the network has them.
pub struct SegmentationObjective<'a> {
    pub net: &'a UNet3d,
}

impl Objective for SegmentationObjective<'_> {
    fn loss(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        if self.net.config().deep_supervision {
            deep_supervision_loss(&self.net.forward_all(&batch.image)?, &batch.target)
        } else {
            dice_ce_loss(&self.net.forward(&batch.image)?, &batch.target)
        }
    }
    fn confusion(&self, batch: &Batch) -> candle_core::Result<Vec<[f64; 3]>> {
        foreground_confusion(&self.net.forward(&batch.image)?, &batch.target)
    }
}

/// Binary classification with BCE; validation counts logit > 0 as positive.
pub struct BinaryClassificationObjective<'a> {
    pub net: &'a Classifier3d,
}

impl Objective for BinaryClassificationObjective<'_> {
    fn loss(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        bce_with_logits(&self.net.forward(&batch.image)?, &batch.target)
    }
    fn confusion(&self, batch: &Batch) -> candle_core::Result<Vec<[f64; 3]>> {
        let logits = self
            .net
            .forward(&batch.image)?
            .flatten_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let target = batch
            .target
            .flatten_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let mut c = [0.0; 3];
        for (l, t) in logits.iter().zip(&target) {
            match (*l > 0.0, *t >= 0.5) {
                (true, true) => c[0] += 1.0,
                (true, false) => c[1] += 1.0,
                (false, true) => c[2] += 1.0,
                (false, false) => {}
            }
        }
        Ok(vec![c])
    }
}

/// Whether the schedule advances per epoch (nnU-Net's poly) or per iteration (cosine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleUnit {
    Epoch,
    Iteration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub iterations_per_epoch: usize,
    pub val_iterations: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: LrSchedule,
    pub schedule_unit: ScheduleUnit,
    pub grad_clip: Option<f64>,
    /// Checkpoints kept on disk (0 = all).
    pub keep_checkpoints: usize,
}

impl TrainConfig {
    /// Stages 1/2: 1000 epochs x 250 iterations, SGD Nesterov 0.99, lr 0.01 poly 0.9, clip 12.
    pub fn nnunet() -> Self {
        Self {
            epochs: 1000,
            iterations_per_epoch: 250,
            val_iterations: 50,
            optimizer: OptimizerConfig::nnunet_sgd(),
            schedule: LrSchedule::Poly {
                lr: 0.01,
                exponent: 0.9,
            },
            schedule_unit: ScheduleUnit::Epoch,
            grad_clip: Some(12.0),
            keep_checkpoints: 2,
        }
    }

    /// Stage 3: 20k iterations of Adam (amsgrad) lr 3e-4, cosine to 1e-8.
    pub fn stage3_classifier() -> Self {
        Self {
            epochs: 80,
            iterations_per_epoch: 250,
            val_iterations: 0,
            optimizer: OptimizerConfig::adam_amsgrad(),
            schedule: LrSchedule::Cosine {
                lr: 3e-4,
                final_lr: 1e-8,
            },
            schedule_unit: ScheduleUnit::Iteration,
            grad_clip: None,
            keep_checkpoints: 2,
        }
    }
}

/// Reported after every iteration.
#[derive(Clone, Debug)]
pub struct IterationProgress {
    pub epoch: usize,
    pub epochs: usize,
    pub iteration: usize,
    pub iterations: usize,
    pub loss: f64,
    pub lr: f64,
    pub eta: Duration,
}

/// Receives progress; `epoch_end` may stop training after the checkpoint of that epoch.
pub trait TrainProgress {
    fn iteration(&mut self, _p: &IterationProgress) {}
    fn epoch_end(&mut self, _record: &EpochRecord, _eta: Duration) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// A progress sink that only logs through `tracing`.
pub struct LogProgress;

impl TrainProgress for LogProgress {
    fn epoch_end(&mut self, r: &EpochRecord, eta: Duration) -> ControlFlow<()> {
        tracing::info!(
            epoch = r.epoch,
            loss = %format_args!("{:.4}", r.train_loss),
            val_dice = %r.val_dice.map_or("-".into(), |d| format!("{d:.3}")),
            lr = %format_args!("{:.3e}", r.lr),
            secs = %format_args!("{:.1}", r.seconds),
            eta_secs = eta.as_secs(),
            "epoch done"
        );
        ControlFlow::Continue(())
    }
}

/// Result of [`train`].
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    pub history: Vec<EpochRecord>,
    pub resumed_from: Option<usize>,
    /// True when the progress callback stopped training early.
    pub stopped: bool,
}

fn mean_dice(conf: &[[f64; 3]]) -> (Option<f64>, Vec<f64>) {
    let per: Vec<f64> = conf
        .iter()
        .map(|[tp, fp, fn_]| {
            let den = 2.0 * tp + fp + fn_;
            if den > 0.0 {
                2.0 * tp / den
            } else {
                f64::NAN
            }
        })
        .collect();
    let valid: Vec<f64> = per.iter().copied().filter(|v| v.is_finite()).collect();
    let mean = if valid.is_empty() {
        None
    } else {
        Some(valid.iter().sum::<f64>() / valid.len() as f64)
    };
    (mean, per)
}

/// Trains `objective`'s parameters (all variables of `varmap`), resuming from the newest
/// checkpoint in `checkpoint_dir` if there is one.
pub fn train(
    objective: &dyn Objective,
    varmap: &VarMap,
    cfg: &TrainConfig,
    train_source: &mut dyn BatchSource,
    mut val_source: Option<&mut dyn BatchSource>,
    checkpoint_dir: &Path,
    progress: &mut dyn TrainProgress,
) -> Result<TrainOutcome> {
    if cfg.epochs == 0 || cfg.iterations_per_epoch == 0 {
        return Err(Nn3dError::Config(
            "epochs and iterations_per_epoch must be positive".into(),
        ));
    }
    let device = varmap
        .all_vars()
        .first()
        .map(|v| v.device().clone())
        .ok_or_else(|| Nn3dError::Config("the VarMap has no variables".into()))?;
    let mut opt = Optimizer::from_varmap(cfg.optimizer.clone(), varmap);
    let mut history = Vec::new();
    let mut start = 0;
    let mut resumed_from = None;
    if let Some(meta) = load_latest(checkpoint_dir, varmap, &mut opt, &device)? {
        tracing::info!(epoch = meta.epochs_done, dir = %checkpoint_dir.display(), "resuming from checkpoint");
        start = meta.epochs_done;
        history = meta.history;
        resumed_from = Some(start);
    }
    let total_iters = cfg.epochs * cfg.iterations_per_epoch;
    let run_start = Instant::now();
    let mut iters_this_run = 0usize;
    for epoch in start..cfg.epochs {
        let epoch_start = Instant::now();
        train_source.start_epoch(epoch)?;
        let mut loss_sum = 0.0;
        let mut lr = 0.0;
        for it in 0..cfg.iterations_per_epoch {
            let global = epoch * cfg.iterations_per_epoch + it;
            lr = match cfg.schedule_unit {
                ScheduleUnit::Epoch => cfg.schedule.lr_at(epoch, cfg.epochs),
                ScheduleUnit::Iteration => cfg.schedule.lr_at(global, total_iters),
            };
            let batch = train_source.next_batch()?;
            let loss = objective.loss(&batch)?;
            let loss_value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            if !loss_value.is_finite() {
                return Err(Nn3dError::Config(format!(
                    "loss became {loss_value} at epoch {epoch}, iteration {it}"
                )));
            }
            let mut grads = loss.backward()?;
            if let Some(max) = cfg.grad_clip {
                clip_grad_norm(&mut grads, opt.params(), max)?;
            }
            opt.step(&grads, lr)?;
            loss_sum += loss_value;
            iters_this_run += 1;
            let per_iter = run_start.elapsed().as_secs_f64() / iters_this_run as f64;
            let remaining = total_iters.saturating_sub(global + 1);
            progress.iteration(&IterationProgress {
                epoch,
                epochs: cfg.epochs,
                iteration: it,
                iterations: cfg.iterations_per_epoch,
                loss: loss_value,
                lr,
                eta: Duration::from_secs_f64(per_iter * remaining as f64),
            });
        }
        let (val_dice, val_class_dice) = match val_source.as_deref_mut() {
            Some(src) if cfg.val_iterations > 0 => {
                src.start_epoch(epoch)?;
                let mut acc: Vec<[f64; 3]> = Vec::new();
                for _ in 0..cfg.val_iterations {
                    let batch = src.next_batch()?;
                    let c = objective.confusion(&batch)?;
                    if acc.is_empty() {
                        acc = vec![[0.0; 3]; c.len()];
                    }
                    for (a, b) in acc.iter_mut().zip(&c) {
                        for k in 0..3 {
                            a[k] += b[k];
                        }
                    }
                }
                mean_dice(&acc)
            }
            _ => (None, Vec::new()),
        };
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / cfg.iterations_per_epoch as f64,
            lr,
            val_dice,
            val_class_dice,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        history.push(record.clone());
        let meta = CheckpointMeta {
            format: 1,
            epochs_done: epoch + 1,
            optimizer_steps: opt.steps(),
            optimizer: cfg.optimizer.clone(),
            history: history.clone(),
        };
        save_checkpoint(checkpoint_dir, varmap, &opt, &meta, cfg.keep_checkpoints)?;
        let per_iter = run_start.elapsed().as_secs_f64() / iters_this_run.max(1) as f64;
        let eta = Duration::from_secs_f64(
            per_iter * ((cfg.epochs - epoch - 1) * cfg.iterations_per_epoch) as f64,
        );
        if progress.epoch_end(&record, eta).is_break() {
            return Ok(TrainOutcome {
                history,
                resumed_from,
                stopped: true,
            });
        }
    }
    Ok(TrainOutcome {
        history,
        resumed_from,
        stopped: false,
    })
}
