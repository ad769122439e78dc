//! A segmentation model as the pipeline stores it: a U-Net, the grid it works on (spacing,
//! patch), the CT normalisation fitted on its training set, and its training history. Used by
//! stage 1 (vertebrae) and by every fracture round; a model is a directory with `model.json`
//! and `weights.safetensors`.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use flow_imaging::Volume;
use flow_nn3d::checkpoint::{load_weights, load_weights_where_present, save_weights, EpochRecord};
use flow_nn3d::{
    init_seeded, predict_sliding_window, train, Nn3dError, OptimizerConfig, SlidingWindowConfig,
    TrainConfig, TrainProgress, UNet3d, UNetConfig,
};
use flow_patches::{
    AugmentConfig, BatchSource as _, FractureConfig, Grid3, PatchBatchSource, PatchPipeline,
    PatchSampler, TrainingCase,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::error::{read_json, write_json, Result, Rsna7Error};
use crate::normalize::CtNormalizer;

/// How a segmentation model is trained: one section of a profile (see `plans`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegRecipe {
    pub net: UNetConfig,
    /// Working voxel spacing `[x, y, z]` in mm.
    pub spacing_xyz: [f64; 3],
    /// Training patch and sliding window `[z, y, x]` in voxels.
    pub patch_zyx: [usize; 3],
    pub batch: usize,
    pub epochs: usize,
    pub iterations: usize,
    pub lr: f64,
    /// SGD with Nesterov momentum in the method; Adam converges in the few hundred
    /// iterations of the demo profile.
    pub optimizer: OptimizerConfig,
    pub p_foreground: f64,
    /// nnU-Net's augmentation recipe (false: mirroring only).
    pub full_augmentation: bool,
    /// Synthetic-fracture augmentation probability per batch (round 1), 0 = off.
    pub synthetic_fracture_p: f64,
    /// Add a Dice term on the foreground as a whole to the loss (see `objective`).
    pub foreground_dice: bool,
    /// Feed the net each voxel's height in the window as a second input channel (CoordConv):
    /// in a window that holds the whole neck, where a voxel sits is a strong cue to its level,
    /// which a convolutional net otherwise learns slowly from the borders alone. The net's
    /// `in_channels` counts it.
    #[serde(default)]
    pub position_channel: bool,
    /// Fracture rounds: trainings at most, while a model's loss ends near 0 (it collapsed onto
    /// "no crack anywhere"; see `fracture_training`). 1 checks nothing, as in stage-1 sections
    /// (stage 1 has its own training check).
    #[serde(default = "one_attempt", skip_serializing_if = "is_one_attempt")]
    pub collapse_attempts: usize,
    /// A node param, not a plan entry (plan sections leave it out).
    #[serde(default)]
    pub seed: u64,
}

fn one_attempt() -> usize {
    1
}

/// Left out of plan files and model metadata at its default, so sections that never retry
/// (stage 1, the small profile) keep the keys they had.
fn is_one_attempt(n: &usize) -> bool {
    *n == 1
}

/// How a trained segmentation model predicts a volume. Inference settings, kept out of the
/// training recipe (and so out of the training node's key): changing them re-runs the
/// predictions and keeps the trained weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferencePlan {
    /// Mirror axes (of `[z, y, x]`) for test-time augmentation.
    pub tta_axes: Vec<usize>,
    /// Sliding-window step as a fraction of the patch (0.5 in the method).
    pub step_fraction: f64,
}

impl Default for InferencePlan {
    /// nnU-Net's window step (half a patch), no mirroring.
    fn default() -> Self {
        Self {
            tta_axes: Vec::new(),
            step_fraction: 0.5,
        }
    }
}

impl InferencePlan {
    /// A step in (0, 1] and axes among 0, 1, 2.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.step_fraction > 0.0 && self.step_fraction <= 1.0) {
            return Err(format!(
                "step_fraction {} must lie in (0, 1]",
                self.step_fraction
            ));
        }
        if self.tta_axes.iter().any(|&a| a > 2) {
            return Err(format!(
                "tta_axes {:?}: axes are 0, 1, 2 (z, y, x)",
                self.tta_axes
            ));
        }
        Ok(())
    }
}

/// `model.json`: everything needed to run a trained network on a new study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegModelMeta {
    /// What the model segments ("vertebrae" or "fracture").
    pub task: String,
    pub recipe: SegRecipe,
    pub normalizer: CtNormalizer,
    /// The fold this model leaves out (round 3), if any.
    pub fold: Option<usize>,
    pub training_studies: Vec<String>,
    pub history: Vec<EpochRecord>,
}

/// A loaded model, ready for inference.
pub struct SegModel {
    pub meta: SegModelMeta,
    net: SegNet,
    _vars: VarMap,
}

/// A U-Net, optionally given the height in the window as an extra input channel.
pub struct SegNet {
    unet: UNet3d,
    position: bool,
}

impl SegNet {
    pub fn config(&self) -> &UNetConfig {
        self.unet.config()
    }

    /// `x` with the height channel appended: -1 at the first slice of the window, +1 at the last.
    fn input(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !self.position {
            return Ok(x.clone());
        }
        let (n, _, d, h, w) = x.dims5()?;
        let step = if d > 1 { 2.0 / (d - 1) as f64 } else { 0.0 };
        let ramp = Tensor::arange(0u32, d as u32, x.device())?
            .to_dtype(x.dtype())?
            .affine(step, -1.0)?;
        let ramp = ramp
            .reshape((1, 1, d, 1, 1))?
            .broadcast_as((n, 1, d, h, w))?;
        Tensor::cat(&[x, &ramp], 1)
    }

    /// Logits at every deep-supervision resolution (full resolution first).
    pub fn forward_all(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        self.unet.forward_all(&self.input(x)?)
    }
}

impl Module for SegNet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.unet.forward(&self.input(x)?)
    }
}

impl SegModelMeta {
    /// Reads `model.json` of a saved model's folder.
    pub fn read(dir: &Path) -> Result<Self> {
        read_json(&dir.join("model.json"))
    }
}

impl SegModel {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let meta = SegModelMeta::read(dir)?;
        let (vars, net) = build(&meta.recipe, device)?;
        load_weights(&vars, &dir.join("weights.safetensors"))?;
        Ok(Self {
            meta,
            net,
            _vars: vars,
        })
    }

    pub fn classes(&self) -> usize {
        self.meta.recipe.net.num_classes
    }
}

fn build(recipe: &SegRecipe, device: &Device) -> Result<(VarMap, SegNet)> {
    let cfg = &recipe.net;
    cfg.validate()?;
    let wanted = 1 + usize::from(recipe.position_channel);
    if cfg.in_channels != wanted {
        return Err(Rsna7Error::Invalid(format!(
            "the net takes {} input channels, the recipe gives {wanted} (CT{})",
            cfg.in_channels,
            if recipe.position_channel {
                " + height"
            } else {
                ""
            }
        )));
    }
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
    let unet = UNet3d::new(cfg, vb)?;
    Ok((
        vars,
        SegNet {
            unet,
            position: recipe.position_channel,
        },
    ))
}

/// A training case from a volume already on the model's grid: image normalised, labels as is.
pub fn training_case(
    id: &str,
    image: &Volume<f32>,
    label: &Volume<u8>,
    vertebrae: Option<&Volume<u8>>,
) -> Result<TrainingCase> {
    let grid = |v: &Volume<u8>| to_grid(v);
    let s = image.geometry.spacing;
    TrainingCase::new(
        id,
        to_grid(image)?,
        grid(label)?,
        vertebrae.map(grid).transpose()?,
        [s[2], s[1], s[0]],
    )
    .map_err(|e| Rsna7Error::study(id, e))
}

/// A volume's buffer as a `[z, y, x]` grid (both are x-fastest).
pub fn to_grid<T: flow_imaging::Voxel>(v: &Volume<T>) -> Result<Grid3<T>> {
    let [nx, ny, nz] = v.dims();
    Grid3::from_vec([nz, ny, nx], v.data().to_vec()).map_err(|e| Rsna7Error::Invalid(e.to_string()))
}

/// Feeds augmented patch batches to the training loop; batch `i` of epoch `e` is stream
/// `e * iterations + i`, so a resumed run sees the same batches as an uninterrupted one.
struct PatchFeed {
    source: PatchBatchSource,
    seed: u64,
    next: u64,
    iterations: u64,
    device: Device,
}

impl flow_nn3d::BatchSource for PatchFeed {
    fn start_epoch(&mut self, epoch: usize) -> flow_nn3d::Result<()> {
        self.next = epoch as u64 * self.iterations;
        Ok(())
    }
    fn next_batch(&mut self) -> flow_nn3d::Result<flow_nn3d::Batch> {
        let mut rng = flow_patches::stream_rng(self.seed, self.next);
        let b = self
            .source
            .make_batch(self.next, &mut rng)
            .map_err(|e| Nn3dError::BatchSource(e.to_string()))?;
        self.next += 1;
        let [n, d, h, w] = b.shape();
        let image = Tensor::from_vec(b.stacked_images(), (n, 1, d, h, w), &self.device)?;
        let target = Tensor::from_vec(b.stacked_labels(), (n, 1, d, h, w), &self.device)?;
        Ok(flow_nn3d::Batch { image, target })
    }
}

/// Trains a U-Net on `cases` (already on the recipe's grid and normalised), resuming from the
/// newest checkpoint in `checkpoint_dir`, and writes the model to `out_dir`. With `init` (a
/// saved model's folder) training starts from its weights instead of a seeded draw (a warm
/// start: the net must be the same, and the cases normalised with its normaliser); its training
/// studies then count as this model's too, so the out-of-fold check sees them.
///
/// With `label_free` the cases carry no study's labels (empty labels; the model learns from
/// the synthetic cracks alone), so none of them counts as a training study: a fold model may
/// start from such weights whatever its fold.
#[allow(clippy::too_many_arguments)]
pub fn train_segmentation(
    task: &str,
    recipe: &SegRecipe,
    normalizer: CtNormalizer,
    fold: Option<usize>,
    init: Option<&Path>,
    cases: Vec<TrainingCase>,
    label_free: bool,
    device: &Device,
    checkpoint_dir: &Path,
    out_dir: &Path,
    progress: &mut dyn TrainProgress,
) -> Result<SegModelMeta> {
    if cases.is_empty() {
        return Err(Rsna7Error::Invalid(format!(
            "no training cases for the {task} model"
        )));
    }
    if label_free && recipe.synthetic_fracture_p <= 0.0 {
        return Err(Rsna7Error::Invalid(format!(
            "a label-free {task} model learns from synthetic cracks only: its plan's \
             synthetic_fracture_p must be above 0"
        )));
    }
    if let Some(c) = cases
        .iter()
        .find(|c| label_free && c.label.as_slice().iter().any(|&l| l != 0))
    {
        return Err(Rsna7Error::Invalid(format!(
            "a label-free {task} model was given the labels of study {}",
            c.id
        )));
    }
    let mut training_studies: Vec<String> = if label_free {
        Vec::new()
    } else {
        cases.iter().map(|c| c.id.clone()).collect()
    };
    let (vars, net) = build(recipe, device)?;
    init_seeded(&vars, recipe.seed)?;
    if let Some(dir) = init {
        let start = SegModelMeta::read(dir)?;
        // Deep-supervision heads may differ: a head the start lacks keeps its seeded draw.
        let same_net = UNetConfig {
            deep_supervision: recipe.net.deep_supervision,
            ..start.recipe.net.clone()
        } == recipe.net;
        if !same_net || start.recipe.position_channel != recipe.position_channel {
            return Err(Rsna7Error::Invalid(format!(
                "the model to start from ({}) has another net than this {task} model's plan: \
                 a warm start needs the same net",
                dir.display()
            )));
        }
        if start.normalizer != normalizer {
            return Err(Rsna7Error::Invalid(format!(
                "the model to start from ({}) normalises CT differently: normalise the cases \
                 with its normaliser",
                dir.display()
            )));
        }
        let fresh = load_weights_where_present(&vars, &dir.join("weights.safetensors"))?;
        tracing::info!(
            from = %dir.display(),
            fresh = fresh.len(),
            "{task} model starts from an earlier model's weights"
        );
        for s in start.training_studies {
            if !training_studies.contains(&s) {
                training_studies.push(s);
            }
        }
    }
    let augment = if recipe.full_augmentation {
        AugmentConfig::default()
    } else {
        AugmentConfig {
            p_mirror: [0.0, 0.0, 0.5],
            ..AugmentConfig::none()
        }
    };
    let sampler = PatchSampler::new(recipe.patch_zyx, recipe.p_foreground)
        .map_err(|e| Rsna7Error::Invalid(e.to_string()))?;
    // The gap of a synthetic crack: fluid to haematoma, 0-80 HU (as real cracks fill).
    let gap = flow_patches::Range::new(
        f64::from(normalizer.value_of(0.0)),
        f64::from(normalizer.value_of(80.0)),
    );
    let fracture = (recipe.synthetic_fracture_p > 0.0).then(|| FractureConfig {
        p_batch: recipe.synthetic_fracture_p,
        ..FractureConfig::method_default(gap)
    });
    let pipeline = PatchPipeline::new(sampler, augment, normalizer.apply(-1000.0));
    let source = PatchBatchSource::new(Arc::new(cases), pipeline, recipe.batch, fracture)
        .map_err(|e| Rsna7Error::Invalid(e.to_string()))?;
    let mut feed = PatchFeed {
        source,
        seed: recipe.seed,
        next: 0,
        iterations: recipe.iterations as u64,
        device: device.clone(),
    };
    let cfg = TrainConfig {
        epochs: recipe.epochs,
        iterations_per_epoch: recipe.iterations,
        val_iterations: 0,
        optimizer: recipe.optimizer.clone(),
        schedule: flow_nn3d::LrSchedule::Poly {
            lr: recipe.lr,
            exponent: 0.9,
        },
        schedule_unit: flow_nn3d::ScheduleUnit::Epoch,
        grad_clip: Some(12.0),
        keep_checkpoints: 2,
    };
    let objective = crate::objective::SegmentationLoss {
        net: &net,
        foreground_dice: recipe.foreground_dice,
    };
    let outcome = train(
        &objective,
        &vars,
        &cfg,
        &mut feed,
        None,
        checkpoint_dir,
        progress,
    )?;
    std::fs::create_dir_all(out_dir).map_err(|e| Rsna7Error::io(out_dir, e))?;
    save_weights(&vars, &out_dir.join("weights.safetensors"))?;
    let meta = SegModelMeta {
        task: task.into(),
        recipe: recipe.clone(),
        normalizer,
        fold,
        training_studies,
        history: outcome.history,
    };
    write_json(&out_dir.join("model.json"), &meta)?;
    Ok(meta)
}

/// What a training that retries did: every attempt (`A` says what was judged of it) and the
/// index of the one kept, written to `training_check.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempts<A> {
    pub attempts: Vec<A>,
    pub kept: usize,
    #[serde(skip)]
    pub meta: Option<SegModelMeta>,
}

impl<A> Attempts<A> {
    pub fn kept_attempt(&self) -> &A {
        &self.attempts[self.kept]
    }
}

/// Makes attempt `kept` of a training that retries (each attempt saved in
/// `out_dir/attempt<k>`, `attempts` of them) the model in `out_dir`, and removes the attempts.
pub(crate) fn keep_attempt(out_dir: &Path, kept: usize, attempts: usize) -> Result<()> {
    let kept_dir = out_dir.join(format!("attempt{kept}"));
    for file in ["model.json", "weights.safetensors"] {
        std::fs::rename(kept_dir.join(file), out_dir.join(file))
            .map_err(|e| Rsna7Error::io(out_dir, e))?;
    }
    for a in 0..attempts {
        let dir = out_dir.join(format!("attempt{a}"));
        std::fs::remove_dir_all(&dir).map_err(|e| Rsna7Error::io(&dir, e))?;
    }
    Ok(())
}

/// The models (indices into `metas`) that predict study `uid`. A study of fold `k` is
/// predicted out of fold: only by the models that left fold `k` out, and it is an error if any
/// of them trained on the study after all, so an out-of-fold prediction can never come from
/// weights that saw it. Any other study (`fold` is `None`) is predicted by every model.
pub fn models_for_study(
    uid: &str,
    fold: Option<usize>,
    metas: &[&SegModelMeta],
) -> Result<Vec<usize>> {
    let Some(k) = fold else {
        return Ok((0..metas.len()).collect());
    };
    let chosen: Vec<usize> = (0..metas.len())
        .filter(|&j| metas[j].fold == Some(k))
        .collect();
    if chosen.is_empty() {
        return Err(Rsna7Error::study(
            uid,
            format!("no model left fold {k} out, so the study cannot be predicted out of fold"),
        ));
    }
    if let Some(&j) = chosen
        .iter()
        .find(|&&j| metas[j].training_studies.iter().any(|s| s == uid))
    {
        return Err(Rsna7Error::study(uid, format!("the model that left fold {k} out trained on this study (model {j}): its prediction would not be out of fold")));
    }
    Ok(chosen)
}

/// Class probabilities `(classes, z, y, x)` of a normalised image on the models' grid,
/// averaged over `models` (which must share the grid, patch and classes), windows and
/// mirroring as `inference` says.
pub fn predict_probabilities(
    models: &[&SegModel],
    image: &Grid3<f32>,
    inference: &InferencePlan,
    device: &Device,
) -> Result<Vec<f32>> {
    inference.validate().map_err(Rsna7Error::Invalid)?;
    let first = models
        .first()
        .ok_or_else(|| Rsna7Error::Invalid("no models to predict with".into()))?;
    let r = &first.meta.recipe;
    if models
        .iter()
        .any(|m| m.meta.recipe.patch_zyx != r.patch_zyx || m.classes() != first.classes())
    {
        return Err(Rsna7Error::Invalid(
            "the models of an ensemble must share patch size and classes".into(),
        ));
    }
    let [d, h, w] = image.shape();
    let x = Tensor::from_vec(image.as_slice().to_vec(), (1, d, h, w), device)?;
    let nets: Vec<&dyn Module> = models.iter().map(|m| &m.net as &dyn Module).collect();
    // Training pads patches with air, so windows past the volume are padded with air too.
    let pad_value = first.meta.normalizer.apply(-1000.0);
    let cfg = SlidingWindowConfig {
        mirror_axes: inference.tta_axes.clone(),
        step_fraction: inference.step_fraction,
        pad_value,
        ..SlidingWindowConfig::new(r.patch_zyx)
    };
    let probs = predict_sliding_window(&nets, &x, first.classes(), &cfg, &mut |_, _| {})?;
    Ok(probs.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn meta(fold: Option<usize>, studies: &[&str]) -> SegModelMeta {
        SegModelMeta {
            task: "fracture".into(),
            recipe: crate::plans::Plans::builtin("tiny")
                .unwrap()
                .fracture_round3,
            normalizer: CtNormalizer {
                clip_low: 0.0,
                clip_high: 1.0,
                mean: 0.0,
                std: 1.0,
            },
            fold,
            training_studies: studies.iter().map(|s| s.to_string()).collect(),
            history: Vec::new(),
        }
    }

    #[test]
    fn out_of_fold_studies_only_meet_weights_that_never_saw_them() {
        // Folds 0 and 1: {a, b} and {c}; each model trained on the other fold.
        let m0 = meta(Some(0), &["c"]);
        let m1 = meta(Some(1), &["a", "b"]);
        let metas = [&m0, &m1];
        assert_eq!(models_for_study("a", Some(0), &metas).unwrap(), vec![0]);
        assert_eq!(models_for_study("c", Some(1), &metas).unwrap(), vec![1]);
        assert_eq!(
            models_for_study("test", None, &metas).unwrap(),
            vec![0, 1],
            "other studies: the ensemble"
        );
        // A model labelled as leaving fold 0 out that trained on `a` anyway is caught.
        let leaky = meta(Some(0), &["a", "c"]);
        let err = models_for_study("a", Some(0), &[&leaky, &m1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("trained on this study"), "{err}");
        assert!(models_for_study("a", Some(2), &metas)
            .unwrap_err()
            .to_string()
            .contains("no model left fold 2 out"));
    }

    /// A 12-voxel cube study with a bright block labelled 1 (also for other modules' tests).
    pub(crate) fn case(id: &str) -> TrainingCase {
        let n = 12;
        let mut img = vec![0f32; n * n * n];
        let mut lab = vec![0u8; n * n * n];
        for z in 4..8 {
            for y in 4..8 {
                for x in 4..8 {
                    img[(z * n + y) * n + x] = 1.0;
                    lab[(z * n + y) * n + x] = 1;
                }
            }
        }
        let g = flow_imaging::Geometry::identity();
        let image = Volume::from_vec([n, n, n], img, g).unwrap();
        let label = Volume::from_vec([n, n, n], lab, g).unwrap();
        training_case(id, &image, &label, None).unwrap()
    }

    #[test]
    fn a_warm_start_loads_the_weights_and_inherits_the_training_studies() {
        let dir = tempfile::tempdir().unwrap();
        let mut recipe = crate::plans::Plans::builtin("tiny")
            .unwrap()
            .fracture_round1;
        recipe.epochs = 1;
        recipe.iterations = 1;
        recipe.synthetic_fracture_p = 0.0;
        let norm = meta(None, &[]).normalizer;
        let train = |name: &str, cases, init: Option<&Path>, recipe: &SegRecipe| {
            let label_free = false;
            train_segmentation(
                "fracture",
                recipe,
                norm,
                None,
                init,
                cases,
                label_free,
                &Device::Cpu,
                &dir.path().join(format!("{name}-ckpt")),
                &dir.path().join(name),
                &mut flow_nn3d::train::LogProgress,
            )
        };
        let first = train("first", vec![case("a"), case("b")], None, &recipe).unwrap();
        assert_eq!(first.training_studies, ["a", "b"]);
        // With a zero learning rate the warm-started model is the first one.
        let mut idle = recipe.clone();
        idle.lr = 0.0;
        let second = train(
            "second",
            vec![case("c")],
            Some(&dir.path().join("first")),
            &idle,
        )
        .unwrap();
        assert_eq!(
            second.training_studies,
            ["c", "a", "b"],
            "the start's studies count"
        );
        let a = SegModel::load(&dir.path().join("first"), &Device::Cpu).unwrap();
        let b = SegModel::load(&dir.path().join("second"), &Device::Cpu).unwrap();
        let image = case("x").image;
        assert_eq!(
            predict_probabilities(&[&a], &image, &InferencePlan::default(), &Device::Cpu).unwrap(),
            predict_probabilities(&[&b], &image, &InferencePlan::default(), &Device::Cpu).unwrap()
        );
        // So a fold model started from it is caught predicting `a` out of fold.
        let mut leaky = second.clone();
        leaky.fold = Some(0);
        assert!(models_for_study("a", Some(0), &[&leaky]).is_err());
        // Another net is refused.
        let mut wider = recipe.clone();
        wider.net.base_channels += 2;
        let err = train(
            "third",
            vec![case("c")],
            Some(&dir.path().join("first")),
            &wider,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("another net"), "{err}");
    }

    #[test]
    fn a_label_free_model_counts_no_training_study_and_needs_synthetic_cracks() {
        let dir = tempfile::tempdir().unwrap();
        let mut recipe = crate::plans::Plans::builtin("tiny")
            .unwrap()
            .fracture_round0;
        recipe.epochs = 1;
        recipe.iterations = 1;
        let norm = meta(None, &[]).normalizer;
        let blank = |id: &str| {
            // The bright cube is a vertebra (C1) and carries no label.
            let c = case(id);
            let empty = flow_patches::Grid3::filled(c.shape(), 0u8).unwrap();
            TrainingCase::new(id, c.image, empty, Some(c.label), c.spacing_mm).unwrap()
        };
        let train = |name: &str, recipe: &SegRecipe, cases: Vec<TrainingCase>| {
            train_segmentation(
                "fracture",
                recipe,
                norm,
                None,
                None,
                cases,
                true,
                &Device::Cpu,
                &dir.path().join(format!("{name}-ckpt")),
                &dir.path().join(name),
                &mut flow_nn3d::train::LogProgress,
            )
        };
        let start = train("start", &recipe, vec![blank("a"), blank("b")]).unwrap();
        assert!(start.training_studies.is_empty());
        // A fold model started from it may predict any study out of fold.
        let mut fold_model = start.clone();
        fold_model.fold = Some(0);
        assert_eq!(models_for_study("a", Some(0), &[&fold_model]).unwrap(), [0]);
        let mut no_cracks = recipe.clone();
        no_cracks.synthetic_fracture_p = 0.0;
        let err = train("none", &no_cracks, vec![blank("a")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("synthetic_fracture_p"), "{err}");
        let err = train("labelled", &recipe, vec![case("a")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("labels of study a"), "{err}");
    }
}
