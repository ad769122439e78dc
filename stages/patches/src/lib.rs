//! Patch sampling and 3D augmentations for segmentation training (no candle, no engine).
//!
//! Volumes are [`Grid3`] buffers `[z, y, x]`. A [`PatchPipeline`] turns one [`TrainingCase`]
//! into an augmented [`Patch`]: place a region ([`PatchSampler`], foreground oversampling),
//! resample it with one combined rotation + scaling ([`spatial`]), optionally cut a synthetic
//! fracture ([`fracture`]), apply the gray-value augmentations ([`intensity`]) and mirror.
//! [`PatchBatchSource`] assembles batches and [`BackgroundLoader`] produces them on worker
//! threads, identical for a given `(seed, batch index)` whatever the thread count.

pub mod augment;
pub mod batch;
pub mod fracture;
pub mod grid;
pub mod intensity;
pub mod interpolate;
pub mod loader;
pub mod pipeline;
pub mod sampler;
pub mod seeding;
pub mod spatial;

pub use augment::{AugmentConfig, AugmentPlan, Range};
pub use batch::{Batch, BatchConfigError, PatchBatchSource};
pub use fracture::{add_synthetic_fracture, FractureConfig, FractureCut, FractureError};
pub use grid::{Grid3, GridError};
pub use loader::{BackgroundLoader, BatchSource, LoaderConfig, LoaderError};
pub use pipeline::{Patch, PatchPipeline, PipelineError, TrainingCase};
pub use sampler::{ForegroundIndex, PatchRegion, PatchSampler, Placement, SamplerError};
pub use seeding::{stream_rng, PatchRng};
pub use spatial::SpatialParams;
