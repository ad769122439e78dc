//! One training sample end to end: place a patch, draw the augmentation plan, resample image
//! and labels with one combined rotation + scaling, optionally cut a synthetic fracture, apply
//! the gray-value augmentations and mirror.

use thiserror::Error;

use crate::augment::{AugmentConfig, AugmentPlan};
use crate::fracture::{add_synthetic_fracture, FractureConfig, FractureCut, FractureError};
use crate::grid::Grid3;
use crate::sampler::{ForegroundIndex, PatchRegion, PatchSampler, Placement};
use crate::seeding::{child_rng, PatchRng};
use crate::spatial::{resample_image_and_labels, resample_labels};

/// How many voxels per class the foreground index keeps (nnU-Net's value).
pub const FOREGROUND_VOXELS_PER_CLASS: usize = 10_000;

/// Errors from building a case or drawing a sample.
#[derive(Debug, Error, PartialEq)]
pub enum PipelineError {
    #[error("case {case}: {what} has shape {actual:?} but the image has shape {expected:?}")]
    ShapeMismatch {
        case: String,
        what: &'static str,
        expected: [usize; 3],
        actual: [usize; 3],
    },
    #[error("case {case}: voxel spacing {spacing:?} mm must be finite and positive")]
    Spacing { case: String, spacing: [f64; 3] },
    #[error("case {case}: the synthetic fracture needs a vertebra map and the case has none")]
    NoVertebrae { case: String },
    #[error("case {case}: synthetic fracture failed")]
    Fracture {
        case: String,
        #[source]
        source: FractureError,
    },
}

/// One training volume with its labels, already resampled and normalised.
#[derive(Clone, Debug)]
pub struct TrainingCase {
    /// Identifier used in error messages (e.g. the StudyInstanceUID).
    pub id: String,
    pub image: Grid3<f32>,
    /// Target labels (0 = background).
    pub label: Grid3<u8>,
    /// Optional vertebra map (0 = none, 1..7 = C1..C7), needed by the synthetic fracture.
    pub vertebrae: Option<Grid3<u8>>,
    /// Voxel spacing `[z, y, x]` in mm.
    pub spacing_mm: [f64; 3],
    /// Where forced-foreground patches are centred: the foreground voxels of `label` or, for a
    /// case with an empty label and a vertebra map, the vertebrae (a fracture-free study's
    /// informative patches show bone, with its joints and canals, not the air around it).
    pub foreground: ForegroundIndex,
}

impl TrainingCase {
    /// Checks that all grids share one shape and the spacing is sane, then indexes the
    /// foreground (at most [`FOREGROUND_VOXELS_PER_CLASS`] voxels per class; the vertebrae
    /// when the label is empty).
    pub fn new(
        id: impl Into<String>,
        image: Grid3<f32>,
        label: Grid3<u8>,
        vertebrae: Option<Grid3<u8>>,
        spacing_mm: [f64; 3],
    ) -> Result<Self, PipelineError> {
        let id = id.into();
        let shape = image.shape();
        let mismatch = |what, actual| PipelineError::ShapeMismatch {
            case: id.clone(),
            what,
            expected: shape,
            actual,
        };
        if label.shape() != shape {
            return Err(mismatch("label", label.shape()));
        }
        if let Some(v) = &vertebrae {
            if v.shape() != shape {
                return Err(mismatch("vertebra map", v.shape()));
            }
        }
        if spacing_mm.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(PipelineError::Spacing {
                case: id,
                spacing: spacing_mm,
            });
        }
        let mut foreground = ForegroundIndex::build(&label, Some(FOREGROUND_VOXELS_PER_CLASS));
        if foreground.is_empty() {
            if let Some(v) = &vertebrae {
                foreground = ForegroundIndex::build(v, Some(FOREGROUND_VOXELS_PER_CLASS));
            }
        }
        Ok(Self {
            id,
            image,
            label,
            vertebrae,
            spacing_mm,
            foreground,
        })
    }

    pub fn shape(&self) -> [usize; 3] {
        self.image.shape()
    }
}

/// One augmented training patch and how it was made.
#[derive(Clone, Debug)]
pub struct Patch {
    pub image: Grid3<f32>,
    pub label: Grid3<u8>,
    /// The region of the source volume the patch is centred on (before rotation/scaling).
    pub region: PatchRegion,
    pub placement: Placement,
    pub plan: AugmentPlan,
    /// The synthetic fracture cut into this patch, if any.
    pub fracture: Option<FractureCut>,
}

/// Sampler + augmentation recipe + image padding value.
#[derive(Clone, Debug)]
pub struct PatchPipeline {
    pub sampler: PatchSampler,
    pub augment: AugmentConfig,
    /// Image value outside the volume (e.g. the normalised value of air); labels pad with 0.
    pub image_pad: f32,
}

impl PatchPipeline {
    pub fn new(sampler: PatchSampler, augment: AugmentConfig, image_pad: f32) -> Self {
        Self {
            sampler,
            augment,
            image_pad,
        }
    }

    /// Draws one augmented patch from `case`. With `fracture`, a synthetic fracture is cut
    /// after the spatial transform (spacing scaled by the drawn scale) and before the gray-value
    /// augmentations, so noise and blur also act on the gap.
    pub fn sample(
        &self,
        case: &TrainingCase,
        fracture: Option<&FractureConfig>,
        rng: &mut PatchRng,
    ) -> Result<Patch, PipelineError> {
        let (region, placement) = self.sampler.sample(case.shape(), &case.foreground, rng);
        let plan = self.augment.draw(rng);
        let mut fracture_rng = child_rng(rng);
        let mut noise_rng = child_rng(rng);
        let centre = region.centre();
        let size = region.size;
        let (mut image, mut label) = resample_image_and_labels(
            &case.image,
            &case.label,
            centre,
            size,
            &plan.spatial,
            self.image_pad,
        );
        let mut cut = None;
        if let Some(cfg) = fracture {
            let vertebrae = case
                .vertebrae
                .as_ref()
                .ok_or_else(|| PipelineError::NoVertebrae {
                    case: case.id.clone(),
                })?;
            let vert = resample_labels(vertebrae, centre, size, &plan.spatial);
            let spacing = case.spacing_mm.map(|s| s * plan.spatial.scale);
            cut = add_synthetic_fracture(
                &mut image,
                &mut label,
                &vert,
                spacing,
                cfg,
                &mut fracture_rng,
            )
            .map_err(|source| PipelineError::Fracture {
                case: case.id.clone(),
                source,
            })?;
        }
        plan.apply_intensity(&mut image, &mut noise_rng);
        plan.apply_mirror(&mut image);
        plan.apply_mirror(&mut label);
        Ok(Patch {
            image,
            label,
            region,
            placement,
            plan,
            fracture: cut,
        })
    }
}
