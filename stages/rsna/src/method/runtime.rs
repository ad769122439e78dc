//! What every model stage needs from its context: the candle device, a thread pool sized to
//! the node's cpu slots, training progress reported to the engine, and the per-study files of
//! an input folder.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flow_engine::{StageContext, StageError};
use flow_imaging::{read_nifti, AnyVolume, Volume};
use flow_nn3d::checkpoint::EpochRecord;
use flow_nn3d::train::IterationProgress;
use flow_nn3d::TrainProgress;

/// Candle device of the node (cpu, or the GPU the engine assigned).
pub fn candle_device(ctx: &StageContext) -> Result<candle_core::Device, StageError> {
    flow_nn3d::parse_device(&ctx.device.to_string())
        .map_err(|e| StageError::wrap("cannot open the compute device", e))
}

/// Wraps a library error with what was being done.
pub fn fail(what: impl Into<String>) -> impl FnOnce(flow_rsna7::Rsna7Error) -> StageError {
    let what = what.into();
    move |e| StageError::wrap(what, e)
}

/// Reports training to the engine: a progress bar over all iterations and one log line per
/// epoch; a cancelled run stops after the epoch's checkpoint.
pub struct TrainReporter<'a> {
    pub ctx: &'a StageContext,
    pub what: String,
    pub cancelled: bool,
    injected: Option<usize>,
}

impl<'a> TrainReporter<'a> {
    /// Also logs whether training resumes from a checkpoint of an interrupted attempt (in the
    /// node's checkpoint folder or, for trainings that retry, its `attempt<k>` folders).
    pub fn new(ctx: &'a StageContext, what: impl Into<String>) -> Self {
        let what = what.into();
        let mut dirs = vec![(String::new(), ctx.checkpoint_dir.clone())];
        for k in 0.. {
            let dir = ctx.checkpoint_dir.join(format!("attempt{k}"));
            if !dir.is_dir() {
                break;
            }
            dirs.push((format!(" of attempt {k}"), dir));
        }
        for (which, dir) in dirs {
            if let Some(last) = flow_nn3d::checkpoint::list_checkpoints(&dir)
                .ok()
                .and_then(|done| done.last().copied())
            {
                ctx.log(&format!(
                    "{what}: resuming from the checkpoint after epoch {last}{which}"
                ));
            }
        }
        Self {
            ctx,
            what,
            cancelled: false,
            injected: None,
        }
    }

    /// The failure injected by `FLOW_INJECT_FAILURE=<node>@<epoch>` (tests of resumption), if
    /// it fired: training stopped right after that epoch's checkpoint.
    pub fn finish(&self) -> Result<(), StageError> {
        if self.cancelled {
            return Err(StageError::Cancelled);
        }
        match self.injected {
            Some(epoch) => Err(StageError::msg(format!(
                "injected failure after epoch {epoch} (FLOW_INJECT_FAILURE)"
            ))),
            None => Ok(()),
        }
    }
}

fn injected_failure_epoch(node: &str) -> Option<usize> {
    let spec = std::env::var("FLOW_INJECT_FAILURE").ok()?;
    let (n, epoch) = spec.split_once('@')?;
    (n == node).then(|| epoch.parse().ok()).flatten()
}

impl TrainProgress for TrainReporter<'_> {
    fn iteration(&mut self, p: &IterationProgress) {
        let done = (p.epoch * p.iterations + p.iteration + 1) as u64;
        let total = (p.epochs * p.iterations) as u64;
        self.ctx.progress(
            done,
            total,
            &format!(
                "{} epoch {}/{} loss {:.4}",
                self.what,
                p.epoch + 1,
                p.epochs,
                p.loss
            ),
        );
    }
    fn epoch_end(&mut self, r: &EpochRecord, eta: Duration) -> ControlFlow<()> {
        self.ctx.log(&format!(
            "{}: epoch {} loss {:.5} lr {:.5} ({:.1} s, about {} s left)",
            self.what,
            r.epoch + 1,
            r.train_loss,
            r.lr,
            r.seconds,
            eta.as_secs()
        ));
        if self.ctx.is_cancelled() {
            self.cancelled = true;
            return ControlFlow::Break(());
        }
        if injected_failure_epoch(&self.ctx.node) == Some(r.epoch + 1) {
            self.injected = Some(r.epoch + 1);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// `<UID><suffix>.nii.gz` files of a folder by UID (UIDs contain dots, so a folder mixing
/// kinds must be read with each kind's suffix, e.g. `.ct`).
pub fn studies_in(dir: &Path, suffix: &str) -> Result<BTreeMap<String, PathBuf>, StageError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| StageError::wrap(format!("cannot list {}", dir.display()), e))?;
    let mut out = BTreeMap::new();
    for e in rd {
        let p = e
            .map_err(|e| StageError::wrap(format!("cannot list {}", dir.display()), e))?
            .path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(uid) = name
            .strip_suffix(&format!("{suffix}.nii.gz"))
            .filter(|u| !u.is_empty())
        {
            out.insert(uid.to_string(), p.clone());
        }
    }
    Ok(out)
}

pub fn read_ct(path: &Path) -> Result<Volume<i16>, StageError> {
    match read_nifti(path).map_err(|e| StageError::wrap("cannot read the CT", e))? {
        AnyVolume::I16(v) => Ok(v),
        other => Ok(other
            .to_f32()
            .map(|x| x.round().clamp(-32768.0, 32767.0) as i16)),
    }
}

pub fn read_labels(path: &Path) -> Result<Volume<u8>, StageError> {
    read_nifti(path)
        .map_err(|e| StageError::wrap("cannot read the label map", e))?
        .to_labels()
        .map_err(|v| {
            StageError::msg(format!(
                "{}: value {v} is not a label (0..255 integers)",
                path.display()
            ))
        })
}

pub fn read_probs(path: &Path) -> Result<Volume<f32>, StageError> {
    Ok(read_nifti(path)
        .map_err(|e| StageError::wrap("cannot read the probability map", e))?
        .to_f32())
}

/// A rayon pool with the node's cpu slots; candle's CPU kernels run inside it.
pub fn pool(ctx: &StageContext) -> Result<rayon::ThreadPool, StageError> {
    crate::study_set::pool(ctx)
}

/// The `plan` input of a model stage: its section of the plans (`rsna.plan`'s
/// `<section>.json`), so the numbers it trains with are in its key and in `flow explain`.
pub fn plan_input(section: &'static str) -> flow_engine::InputDecl {
    flow_engine::InputDecl {
        name: "plan",
        many: false,
        required: true,
        doc: section,
    }
}

/// The segmentation recipe of the node's `plan` input, with the node's seed.
pub fn seg_plan(ctx: &StageContext, seed: u64) -> Result<flow_rsna7::SegRecipe, StageError> {
    flow_rsna7::plans::read_seg_section(ctx.input("plan")?, seed).map_err(fail("the plan input"))
}

/// The inference entry of the node's optional input `name` (`rsna.plan`'s
/// `inference_<model>.json`); without it, half-patch steps and no mirroring.
pub fn inference_plan(
    ctx: &StageContext,
    name: &str,
) -> Result<flow_rsna7::InferencePlan, StageError> {
    match ctx.input_opt(name) {
        Some(path) => {
            let plan = flow_rsna7::plans::read_inference_section(path)
                .map_err(fail(format!("the {name} input")))?;
            plan.validate().map_err(|m| {
                StageError::msg(format!("the {name} input {}: {m}", path.display()))
            })?;
            Ok(plan)
        }
        None => Ok(flow_rsna7::InferencePlan::default()),
    }
}
