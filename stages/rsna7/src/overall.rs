//! The stage-3 CNN for `patient_overall`: the ROI shrunk to a cube with two channels
//! (fracture probability max-pooled, stage-1 label map / 8), a small 3D classifier trained with BCE
//! (Adam with amsgrad, cosine schedule), random flips as augmentation.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use flow_imaging::ops::{max_pool_to_size, resample_to_size, Interpolation};
use flow_imaging::Volume;
use flow_nn3d::checkpoint::{load_weights, save_weights, EpochRecord};
use flow_nn3d::train::BinaryClassificationObjective;
use flow_nn3d::{
    init_seeded, train, Classifier3d, ClassifierConfig, LrSchedule, OptimizerConfig, ScheduleUnit,
    TrainConfig, TrainProgress,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{read_json, write_json, Result, Rsna7Error};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverallRecipe {
    /// Edge of the input cube in voxels (96 in the method).
    pub size: usize,
    pub net: ClassifierConfig,
    pub batch: usize,
    pub epochs: usize,
    pub iterations: usize,
    pub lr: f64,
    /// A node param, not a plan entry (plan sections leave it out).
    #[serde(default)]
    pub seed: u64,
}

/// `overall.json` of a trained classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverallModelMeta {
    pub recipe: OverallRecipe,
    pub fold: Option<usize>,
    pub training_studies: Vec<String>,
    pub history: Vec<EpochRecord>,
}

/// One study's classifier input, `(2, size, size, size)` flattened: the fracture map
/// max-pooled to `size^3` (a crack one or two voxels thin survives the shrink; point sampling
/// dropped most of it between samples), and the vertebra labels sampled at the cell centres.
pub fn overall_input(prob: &Volume<f32>, vertebrae: &Volume<u8>, size: usize) -> Result<Vec<f32>> {
    if prob.dims() != vertebrae.dims() {
        return Err(Rsna7Error::Invalid(format!(
            "probability {:?} and vertebra map {:?} differ in size",
            prob.dims(),
            vertebrae.dims()
        )));
    }
    let p = max_pool_to_size(prob, [size; 3]);
    let v = resample_to_size(vertebrae, [size; 3], Interpolation::Nearest);
    let mut out = p.into_data();
    out.extend(v.data().iter().map(|&l| f32::from(l) / 8.0));
    Ok(out)
}

struct FlipFeed<'a> {
    inputs: &'a [(Vec<f32>, f32)],
    size: usize,
    batch: usize,
    seed: u64,
    next: u64,
    iterations: u64,
    device: Device,
}

impl flow_nn3d::BatchSource for FlipFeed<'_> {
    fn start_epoch(&mut self, epoch: usize) -> flow_nn3d::Result<()> {
        self.next = epoch as u64 * self.iterations;
        Ok(())
    }
    fn next_batch(&mut self) -> flow_nn3d::Result<flow_nn3d::Batch> {
        let mut rng = flow_patches::stream_rng(self.seed, self.next);
        self.next += 1;
        let s = self.size;
        let mut images = Vec::with_capacity(self.batch);
        let mut targets = Vec::with_capacity(self.batch);
        for _ in 0..self.batch {
            let (x, y) = &self.inputs[rng.gen_range(0..self.inputs.len())];
            let mut t = Tensor::from_vec(x.clone(), (1, 2, s, s, s), &self.device)?;
            let flips: Vec<usize> = (2..5).filter(|_| rng.gen_bool(0.5)).collect();
            if !flips.is_empty() {
                t = t.flip(&flips)?;
            }
            images.push(t);
            targets.push(*y);
        }
        let n = targets.len();
        Ok(flow_nn3d::Batch {
            image: Tensor::cat(&images, 0)?,
            target: Tensor::from_vec(targets, (n, 1), &self.device)?,
        })
    }
}

fn build(cfg: &ClassifierConfig, device: &Device) -> Result<(VarMap, Classifier3d)> {
    let vars = VarMap::new();
    let net = Classifier3d::new(cfg, VarBuilder::from_varmap(&vars, DType::F32, device))?;
    Ok((vars, net))
}

/// Trains the classifier on `(study, input, target)` triples and writes it to `out_dir`.
pub fn train_overall(
    recipe: &OverallRecipe,
    fold: Option<usize>,
    studies: &[(String, Vec<f32>, f32)],
    device: &Device,
    checkpoint_dir: &Path,
    out_dir: &Path,
    progress: &mut dyn TrainProgress,
) -> Result<OverallModelMeta> {
    if studies.is_empty() {
        return Err(Rsna7Error::Invalid(
            "no studies to train the patient_overall classifier on".into(),
        ));
    }
    let (vars, net) = build(&recipe.net, device)?;
    init_seeded(&vars, recipe.seed)?;
    let inputs: Vec<(Vec<f32>, f32)> = studies.iter().map(|(_, x, y)| (x.clone(), *y)).collect();
    let mut feed = FlipFeed {
        inputs: &inputs,
        size: recipe.size,
        batch: recipe.batch,
        seed: recipe.seed,
        next: 0,
        iterations: recipe.iterations as u64,
        device: device.clone(),
    };
    let cfg = TrainConfig {
        epochs: recipe.epochs,
        iterations_per_epoch: recipe.iterations,
        val_iterations: 0,
        optimizer: OptimizerConfig::adam_amsgrad(),
        schedule: LrSchedule::Cosine {
            lr: recipe.lr,
            final_lr: 1e-8,
        },
        schedule_unit: ScheduleUnit::Iteration,
        grad_clip: None,
        keep_checkpoints: 2,
    };
    let outcome = train(
        &BinaryClassificationObjective { net: &net },
        &vars,
        &cfg,
        &mut feed,
        None,
        checkpoint_dir,
        progress,
    )?;
    std::fs::create_dir_all(out_dir).map_err(|e| Rsna7Error::io(out_dir, e))?;
    save_weights(&vars, &out_dir.join("weights.safetensors"))?;
    let meta = OverallModelMeta {
        recipe: recipe.clone(),
        fold,
        training_studies: studies.iter().map(|s| s.0.clone()).collect(),
        history: outcome.history,
    };
    write_json(&out_dir.join("overall.json"), &meta)?;
    Ok(meta)
}

/// A trained classifier, loaded for inference.
pub struct OverallModel {
    pub meta: OverallModelMeta,
    net: Classifier3d,
    _vars: VarMap,
}

impl OverallModel {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let meta: OverallModelMeta = read_json(&dir.join("overall.json"))?;
        let (vars, net) = build(&meta.recipe.net, device)?;
        load_weights(&vars, &dir.join("weights.safetensors"))?;
        Ok(Self {
            meta,
            net,
            _vars: vars,
        })
    }

    /// The `patient_overall` logit of one input (mean over the eight flips, as TTA).
    pub fn logit(&self, input: &[f32], device: &Device) -> Result<f64> {
        let s = self.meta.recipe.size;
        let x = Tensor::from_vec(input.to_vec(), (1, 2, s, s, s), device)?;
        let mut sum = 0.0;
        for mask in 0..8usize {
            let flips: Vec<usize> = (0..3)
                .filter(|a| mask & (1 << a) != 0)
                .map(|a| a + 2)
                .collect();
            let xin = if flips.is_empty() {
                x.clone()
            } else {
                x.flip(&flips)?
            };
            sum += self.net.forward(&xin)?.flatten_all()?.to_vec1::<f32>()?[0] as f64;
        }
        Ok(sum / 8.0)
    }
}
