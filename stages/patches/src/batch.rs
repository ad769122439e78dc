//! Batches of augmented patches from in-memory cases: the [`BatchSource`] the background
//! loader runs for training.

use std::sync::Arc;

use rand::Rng;
use rayon::prelude::*;
use thiserror::Error;

use crate::fracture::FractureConfig;
use crate::loader::BatchSource;
use crate::pipeline::{Patch, PatchPipeline, PipelineError, TrainingCase};
use crate::seeding::{child_rng, PatchRng};

/// Errors from configuring a batch source.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchConfigError {
    #[error("a batch source needs at least one training case")]
    NoCases,
    #[error("batch size must be positive")]
    ZeroBatchSize,
}

/// A batch of equally sized patches.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Global batch index (the loader's stream id).
    pub index: u64,
    /// Index into the source's cases of each sample.
    pub cases: Vec<usize>,
    pub patches: Vec<Patch>,
    /// Whether this batch drew the synthetic fracture.
    pub fracture_drawn: bool,
}

impl Batch {
    /// `[batch, z, y, x]` of the stacked buffers.
    pub fn shape(&self) -> [usize; 4] {
        let [z, y, x] = self
            .patches
            .first()
            .map(|p| p.image.shape())
            .unwrap_or([0; 3]);
        [self.patches.len(), z, y, x]
    }

    /// Images stacked into one `[batch, 1, z, y, x]` buffer (for a one-channel input tensor).
    pub fn stacked_images(&self) -> Vec<f32> {
        self.patches
            .iter()
            .flat_map(|p| p.image.as_slice().iter().copied())
            .collect()
    }

    /// Labels stacked into one `[batch, z, y, x]` buffer.
    pub fn stacked_labels(&self) -> Vec<u8> {
        self.patches
            .iter()
            .flat_map(|p| p.label.as_slice().iter().copied())
            .collect()
    }
}

/// Random cases (uniform, with replacement) through one [`PatchPipeline`]; with a
/// [`FractureConfig`], each batch draws the synthetic fracture with probability `p_batch`
/// and then every sample of that batch gets one.
#[derive(Clone, Debug)]
pub struct PatchBatchSource {
    cases: Arc<Vec<TrainingCase>>,
    pipeline: PatchPipeline,
    batch_size: usize,
    fracture: Option<FractureConfig>,
}

impl PatchBatchSource {
    pub fn new(
        cases: Arc<Vec<TrainingCase>>,
        pipeline: PatchPipeline,
        batch_size: usize,
        fracture: Option<FractureConfig>,
    ) -> Result<Self, BatchConfigError> {
        if cases.is_empty() {
            return Err(BatchConfigError::NoCases);
        }
        if batch_size == 0 {
            return Err(BatchConfigError::ZeroBatchSize);
        }
        Ok(Self {
            cases,
            pipeline,
            batch_size,
            fracture,
        })
    }

    pub fn cases(&self) -> &[TrainingCase] {
        &self.cases
    }
}

impl BatchSource for PatchBatchSource {
    type Batch = Batch;
    type Error = PipelineError;

    fn make_batch(&self, index: u64, rng: &mut PatchRng) -> Result<Batch, PipelineError> {
        let fracture_drawn = self
            .fracture
            .as_ref()
            .is_some_and(|f| rng.gen::<f64>() < f.p_batch);
        let fracture = if fracture_drawn {
            self.fracture.as_ref()
        } else {
            None
        };
        // Draw every sample's case and generator up front: the parallel part below is then
        // independent of scheduling.
        let plans: Vec<(usize, PatchRng)> = (0..self.batch_size)
            .map(|_| (rng.gen_range(0..self.cases.len()), child_rng(rng)))
            .collect();
        let cases = plans.iter().map(|(c, _)| *c).collect();
        let patches = plans
            .into_par_iter()
            .map(|(c, mut r)| self.pipeline.sample(&self.cases[c], fracture, &mut r))
            .collect::<Result<Vec<_>, _>>()?;
        tracing::debug!(index, fracture_drawn, "batch ready");
        Ok(Batch {
            index,
            cases,
            patches,
            fracture_drawn,
        })
    }
}
