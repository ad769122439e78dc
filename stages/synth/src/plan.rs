//! The cohort plan: per study its UIDs, split, labels and subsets (cheap, no voxels), and on
//! demand the full study model (anatomy, cracks, scan geometry, image quality).
//!
//! Label-only planning is what prevalence tests and evaluation bookkeeping use; rendering
//! realises one study at a time from its own seed streams.

use crate::anatomy::Anatomy;
use crate::config::{CohortConfig, ConfigError};
use crate::fracture::Crack;
use crate::geometry::{PixelStorage, ScanGeometry, SliceOrder};
use crate::label_model::{LabelModel, LabelModelError};
use crate::phantom::ImageQuality;
use crate::seeds::{self, Purpose};
use crate::vertebra::Level;
use glam::DVec3;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Train studies have public labels; test studies' labels live only in `truth/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// Folder of the DICOM files (`train_images` / `test_images`).
    pub fn images_dir(self) -> &'static str {
        match self {
            Self::Train => "train_images",
            Self::Test => "test_images",
        }
    }
}

/// One study's identity, labels and subset memberships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyPlan {
    pub index: usize,
    pub study_uid: String,
    pub series_uid: String,
    pub frame_of_reference_uid: String,
    pub split: Split,
    /// Fracture labels C1..C7.
    pub fractured: [bool; 7],
    /// Train study listed in `train_bounding_boxes.csv`.
    pub boxed: bool,
    /// Train study with a `segmentations/<UID>.nii`.
    pub segmented: bool,
}

impl StudyPlan {
    /// `patient_overall`.
    pub fn positive(&self) -> bool {
        self.fractured.iter().any(|&f| f)
    }
}

/// The whole cohort's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortPlan {
    pub studies: Vec<StudyPlan>,
}

/// Planning failed.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error("invalid cohort configuration")]
    Config(#[from] ConfigError),
    #[error("invalid fracture label model")]
    Labels(#[from] LabelModelError),
}

/// A DICOM UID under the `2.25` (UUID-derived) root, from 128 random bits.
pub fn random_uid<R: Rng>(rng: &mut R) -> String {
    let v: u128 = rng.gen::<u128>() >> 1;
    format!("2.25.{v}")
}

/// Plans UIDs, labels and subsets of every study (no anatomy, no voxels).
pub fn plan_cohort(cfg: &CohortConfig) -> Result<CohortPlan, PlanError> {
    cfg.validate()?;
    let model = LabelModel::new(
        cfg.fracture_prevalence,
        cfg.vertebra_weights,
        cfg.mean_fractured_vertebrae,
    )?;
    let mut studies: Vec<StudyPlan> = (0..cfg.total_studies())
        .map(|index| {
            let mut rng = ChaCha8Rng::seed_from_u64(seeds::study_seed(
                cfg.seed,
                index as u64,
                Purpose::Labels,
            ));
            let study_uid = random_uid(&mut rng);
            let series_uid = random_uid(&mut rng);
            let frame_of_reference_uid = random_uid(&mut rng);
            let fractured = model.sample(&mut rng);
            let split = if index < cfg.train_studies {
                Split::Train
            } else {
                Split::Test
            };
            StudyPlan {
                index,
                study_uid,
                series_uid,
                frame_of_reference_uid,
                split,
                fractured,
                boxed: false,
                segmented: false,
            }
        })
        .collect();
    let mut rng =
        ChaCha8Rng::seed_from_u64(seeds::study_seed(cfg.seed, u64::MAX, Purpose::Subsets));
    let mut train: Vec<usize> = (0..cfg.train_studies).collect();
    train.shuffle(&mut rng);
    let n_seg = ((cfg.segmented_fraction * cfg.train_studies as f64).round() as usize)
        .max(usize::from(cfg.segmented_fraction > 0.0));
    for &i in train.iter().take(n_seg) {
        studies[i].segmented = true;
    }
    let mut positives: Vec<usize> = (0..cfg.train_studies)
        .filter(|&i| studies[i].positive())
        .collect();
    positives.shuffle(&mut rng);
    let n_box = ((cfg.boxed_fraction * positives.len() as f64).round() as usize).max(usize::from(
        cfg.boxed_fraction > 0.0 && !positives.is_empty(),
    ));
    for &i in positives.iter().take(n_box) {
        studies[i].boxed = true;
    }
    Ok(CohortPlan { studies })
}

/// Everything needed to render one study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyModel {
    pub anatomy: Anatomy,
    pub cracks: Vec<Crack>,
    pub geometry: ScanGeometry,
    pub quality: ImageQuality,
    pub noise_seed: u64,
    pub files_seed: u64,
}

fn uniform<R: Rng>(rng: &mut R, r: crate::config::Range) -> f64 {
    if r.hi > r.lo {
        rng.gen_range(r.lo..r.hi)
    } else {
        r.lo
    }
}

/// Samples the anatomy, cracks and scan of `study`.
pub fn realize(cfg: &CohortConfig, study: &StudyPlan) -> StudyModel {
    let idx = study.index as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seeds::study_seed(cfg.seed, idx, Purpose::Anatomy));
    let c1_z = rng.gen_range(-80.0..40.0);
    let anatomy = Anatomy::sample(&mut rng, c1_z);

    let mut cracks = Vec::new();
    for (j, &f) in study.fractured.iter().enumerate() {
        if !f {
            continue;
        }
        let level = Level::cervical(j).expect("index < 7");
        let n = if rng.gen::<f64>() < 0.15 { 2 } else { 1 };
        for _ in 0..n {
            cracks.push(Crack::sample(&mut rng, anatomy.vertebra(level)));
        }
    }

    let s = &cfg.scan;
    let top = anatomy.vertebra(Level::C1).frame.origin.z
        + 8.0 * anatomy.vertebra(Level::C1).frame.scale
        + rng.gen_range(4.0..14.0);
    let t1 = anatomy.vertebra(Level::T1);
    let bottom = t1.frame.origin.z - t1.shape.body.z * t1.frame.scale - rng.gen_range(2.0..12.0);
    let slice_spacing = uniform(&mut rng, s.slice_spacing_mm);
    let slices = ((top - bottom) / slice_spacing).ceil() as usize + 1;
    let neck = anatomy.tissue.neck_radii;
    let needed = (2.0 * neck.x.max(neck.y) + 16.0) / s.matrix as f64;
    let pixel_spacing = uniform(&mut rng, s.pixel_spacing_mm).max(needed);
    // Round spacings to 1e-4 mm so that the DICOM decimal strings carry them exactly.
    let pixel_spacing = (pixel_spacing * 1e4).round() / 1e4;
    let slice_spacing = (slice_spacing * 1e4).round() / 1e4;
    let thickness = (slice_spacing * uniform(&mut rng, s.thickness_ratio) * 1e3).round() / 1e3;
    let mid = anatomy.axis_at(0.5 * (top + bottom));
    let centre = DVec3::new(
        mid.x + anatomy.tissue.neck_offset.x + rng.gen_range(-5.0..5.0),
        mid.y + anatomy.tissue.neck_offset.y + rng.gen_range(-5.0..5.0),
        bottom,
    );
    let half = 0.5 * (s.matrix as f64 - 1.0) * pixel_spacing;
    let origin = DVec3::new(centre.x - half, centre.y - half, bottom);
    let origin = (origin * 1e3).round() / 1e3;
    let order = if rng.gen::<f64>() < cfg.inferior_to_superior_fraction {
        SliceOrder::InferiorToSuperior
    } else {
        SliceOrder::SuperiorToInferior
    };
    let storage = if rng.gen::<f64>() < cfg.unsigned_fraction {
        PixelStorage::Uint16 { intercept: -1024 }
    } else if rng.gen::<bool>() {
        PixelStorage::Int16 { intercept: -1024 }
    } else {
        PixelStorage::Int16 { intercept: 0 }
    };
    let geometry = ScanGeometry {
        rows: s.matrix,
        cols: s.matrix,
        slices,
        pixel_spacing,
        slice_spacing,
        slice_thickness: thickness,
        origin,
        order,
        storage,
    };
    let quality = ImageQuality {
        noise_hu: uniform(&mut rng, s.noise_hu),
        psf_fwhm_mm: uniform(&mut rng, s.psf_fwhm_mm),
    };
    StudyModel {
        anatomy,
        cracks,
        geometry,
        quality,
        noise_seed: seeds::study_seed(cfg.seed, idx, Purpose::Noise),
        files_seed: seeds::study_seed(cfg.seed, idx, Purpose::Files),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_deterministic_and_prefix_stable() {
        let cfg = CohortConfig::tiny();
        let a = plan_cohort(&cfg).unwrap();
        assert_eq!(a, plan_cohort(&cfg).unwrap());
        let mut bigger = cfg.clone();
        bigger.test_studies += 3;
        let b = plan_cohort(&bigger).unwrap();
        for (x, y) in a.studies.iter().zip(&b.studies) {
            assert_eq!(x.study_uid, y.study_uid);
            assert_eq!(x.fractured, y.fractured);
        }
    }

    #[test]
    fn subsets_follow_the_rules() {
        let mut cfg = CohortConfig::demo();
        cfg.train_studies = 200;
        let plan = plan_cohort(&cfg).unwrap();
        let mut uids = std::collections::HashSet::new();
        for s in &plan.studies {
            assert!(uids.insert(s.study_uid.clone()));
            assert!(s.study_uid.len() <= 64 && s.study_uid.starts_with("2.25."));
            if s.boxed {
                assert!(s.positive() && s.split == Split::Train);
            }
            if s.segmented {
                assert_eq!(s.split, Split::Train);
            }
        }
        let seg = plan.studies.iter().filter(|s| s.segmented).count();
        assert_eq!(seg, 100);
    }

    #[test]
    fn geometry_covers_c1_to_t1() {
        let cfg = CohortConfig::tiny();
        let plan = plan_cohort(&cfg).unwrap();
        for s in &plan.studies {
            let m = realize(&cfg, s);
            let g = &m.geometry;
            assert!((40..=70).contains(&g.slices), "{} slices", g.slices);
            let top = g.slice_z(g.slices - 1);
            let c1 = m.anatomy.vertebra(Level::C1).frame.origin.z;
            let t1 = m.anatomy.vertebra(Level::T1).frame.origin.z;
            assert!(top > c1 + 8.0 && g.origin.z < t1 - 6.0);
            assert_eq!(m.cracks.is_empty(), !s.positive());
        }
    }
}
