//! Writes a whole cohort in the competition layout, plus the hidden `truth/` folder.
//!
//! ```text
//! OUT/train.csv  train_bounding_boxes.csv  test.csv  sample_submission.csv
//! OUT/train_images/<UID>/<n>.dcm   OUT/test_images/<UID>/<n>.dcm
//! OUT/segmentations/<UID>.nii                  (subset of train; competition quirk)
//! OUT/truth/vertebrae/<UID>.nii.gz             (labels 1..7 = C1..C7, 8 = T1, 9 = T2)
//! OUT/truth/fractures/<UID>.nii.gz             (fractured voxels, value = vertebra label)
//! OUT/truth/test_labels.csv  studies.csv  fractures.csv  cohort.json
//! ```
//!
//! Studies are generated one after another (each one's voxels in parallel); the output depends
//! only on the config, never on thread count or timing.

use crate::boxes::{fracture_boxes, FractureBox};
use crate::config::CohortConfig;
use crate::geometry::{PixelStorage, ScanGeometry, SliceOrder};
use crate::phantom::{render, Phantom, Scene};
use crate::plan::{plan_cohort, random_uid, realize, PlanError, Split, StudyModel, StudyPlan};
use crate::tables::{self, StudyFacts, TableError};
use flow_imaging::competition::{write_competition_segmentation, SegmentationError};
use flow_imaging::dicom_frame::DicomFrame;
use flow_imaging::ops::{clean_label_map, Connectivity};
use flow_imaging::{
    write_ct_series, write_nifti, CtSeriesSpec, DicomWriteError, FileOrder, Geometry, NiftiIoError,
    Volume, VolumeError,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Generating a cohort failed.
#[derive(Debug, Error)]
pub enum SynthError {
    #[error("cannot plan the cohort")]
    Plan(#[from] PlanError),
    #[error("output folder {path} is not empty; choose a new folder so no stale files remain")]
    OutputNotEmpty { path: PathBuf },
    #[error("cannot create {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("study {study}: cannot write its DICOM series")]
    Dicom {
        study: String,
        source: DicomWriteError,
    },
    #[error("study {study}: cannot write {what}")]
    Nifti {
        study: String,
        what: &'static str,
        source: NiftiIoError,
    },
    #[error("study {study}: cannot write its segmentation")]
    Segmentation {
        study: String,
        source: SegmentationError,
    },
    #[error("study {study}: invalid volume")]
    Volume { study: String, source: VolumeError },
    #[error("cannot write a table")]
    Table(#[from] TableError),
    #[error("cannot write {path}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What was generated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortSummary {
    pub train_studies: usize,
    pub test_studies: usize,
    /// Studies with `patient_overall` = 1 (train and test).
    pub positive_studies: usize,
    /// Positive studies per vertebra C1..C7 (train and test).
    pub vertebra_positives: [usize; 7],
    pub boxed_studies: usize,
    pub box_rows: usize,
    pub segmented_studies: usize,
    pub cracks: usize,
    pub dicom_files: usize,
    pub voxels: usize,
}

/// One rendered study with its truth.
pub struct RenderedStudy {
    pub model: StudyModel,
    pub phantom: Phantom,
    /// Vertebra labels after the competition's clean-up (what `truth/vertebrae` holds).
    pub labels: Volume<u8>,
    /// Fractured voxels (value = vertebra label).
    pub fractures: Volume<u8>,
    /// Boxes of every crack on every slice (public only for boxed studies).
    pub boxes: Vec<FractureBox>,
    /// Truth mask voxels per crack.
    pub crack_voxels: Vec<usize>,
}

/// The NIfTI (RAS) geometry of a study's voxel grid, as flow-imaging's reader produces it from
/// the DICOM files: voxel (column, row, ascending-z slice).
pub fn volume_geometry(g: &ScanGeometry) -> Geometry {
    DicomFrame {
        row_cosine: [1.0, 0.0, 0.0],
        column_cosine: [0.0, 1.0, 0.0],
        pixel_spacing: [g.pixel_spacing, g.pixel_spacing],
        first_position: g.origin.to_array(),
        slice_step: [0.0, 0.0, g.slice_spacing],
    }
    .to_geometry()
}

/// Realises and renders one study (no files written).
pub fn render_study(cfg: &CohortConfig, plan: &StudyPlan) -> Result<RenderedStudy, SynthError> {
    let model = realize(cfg, plan);
    let scene = Scene {
        anatomy: &model.anatomy,
        cracks: &model.cracks,
    };
    let phantom = render(&scene, &model.geometry, model.quality, model.noise_seed);
    let g = &model.geometry;
    let dims = [g.cols, g.rows, g.slices];
    let geometry = volume_geometry(g);
    let vol_err = |source| SynthError::Volume {
        study: plan.study_uid.clone(),
        source,
    };
    let raw_labels = Volume::from_vec(dims, phantom.labels.clone(), geometry).map_err(vol_err)?;
    let labels = clean_label_map(&raw_labels, Connectivity::TwentySix);
    let level_of: Vec<u8> = model.cracks.iter().map(|c| c.level.label()).collect();
    let fracture_data: Vec<u8> = phantom
        .crack_ids
        .iter()
        .map(|&id| {
            if id == 0 {
                0
            } else {
                level_of[id as usize - 1]
            }
        })
        .collect();
    let fractures = Volume::from_vec(dims, fracture_data, geometry).map_err(vol_err)?;
    let mut crack_voxels = vec![0usize; model.cracks.len()];
    for &id in &phantom.crack_ids {
        if id > 0 {
            crack_voxels[id as usize - 1] += 1;
        }
    }
    let boxes = fracture_boxes(&phantom.crack_ids, g, model.cracks.len());
    Ok(RenderedStudy {
        model,
        phantom,
        labels,
        fractures,
        boxes,
        crack_voxels,
    })
}

fn create_dir(path: &Path) -> Result<(), SynthError> {
    std::fs::create_dir_all(path).map_err(|source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn check_empty(out: &Path) -> Result<(), SynthError> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SynthError::OutputNotEmpty {
                    path: out.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SynthError::Io {
            path: out.to_path_buf(),
            source,
        }),
    }
}

/// PatientBirthDate of a PHI-canary cohort (see `CohortConfig::phi_canary`).
pub const PHI_CANARY_BIRTH_DATE: &str = "19230405";

/// Writes one study's DICOM series, segmentation (if planned) and truth volumes.
fn write_study(
    out: &Path,
    plan: &StudyPlan,
    study: RenderedStudy,
    phi_canary: Option<&str>,
) -> Result<usize, SynthError> {
    let uid = &plan.study_uid;
    let g = study.model.geometry.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(study.model.files_seed);
    let (storage, intercept) = match g.storage {
        PixelStorage::Int16 { intercept } => (flow_imaging::PixelStorage::Signed, intercept),
        PixelStorage::Uint16 { intercept } => (flow_imaging::PixelStorage::Unsigned, intercept),
    };
    let spec = CtSeriesSpec {
        frame_of_reference_uid: plan.frame_of_reference_uid.clone(),
        sop_uid_root: random_uid(&mut rng),
        order: match g.order {
            SliceOrder::SuperiorToInferior => FileOrder::SuperiorFirst,
            SliceOrder::InferiorToSuperior => FileOrder::InferiorFirst,
        },
        first_number: 1,
        storage,
        rescale_slope: 1.0,
        rescale_intercept: intercept as f64,
        identity: phi_canary.map(|m| flow_imaging::PatientIdentity {
            name: format!("{m}^PATIENT"),
            id: format!("{m}-ID"),
            birth_date: PHI_CANARY_BIRTH_DATE.into(),
            institution: format!("{m} HOSPITAL"),
        }),
        ..CtSeriesSpec::new(uid, &plan.series_uid)
    };
    // Clamp HU into what the storage can hold (uint16 with intercept -1024 cannot go below it).
    let floor = if storage == flow_imaging::PixelStorage::Unsigned {
        intercept.max(-1024)
    } else {
        -1024
    } as i16;
    let hu: Vec<i16> = study.phantom.hu.iter().map(|&v| v.max(floor)).collect();
    let dims = [g.cols, g.rows, g.slices];
    let geometry = volume_geometry(&g);
    let ct = Volume::from_vec(dims, hu, geometry).map_err(|source| SynthError::Volume {
        study: uid.clone(),
        source,
    })?;
    let dir = out.join(plan.split.images_dir()).join(uid);
    let files = write_ct_series(&ct, &dir, &spec).map_err(|source| SynthError::Dicom {
        study: uid.clone(),
        source,
    })?;
    drop(ct);
    if plan.segmented {
        let path = out.join("segmentations").join(format!("{uid}.nii"));
        write_competition_segmentation(&study.labels, &path).map_err(|source| {
            SynthError::Segmentation {
                study: uid.clone(),
                source,
            }
        })?;
    }
    let nifti = |what, vol: &Volume<u8>, path: PathBuf| {
        write_nifti(vol, &path).map_err(|source| SynthError::Nifti {
            study: uid.clone(),
            what,
            source,
        })
    };
    nifti(
        "truth vertebra labels",
        &study.labels,
        out.join("truth/vertebrae").join(format!("{uid}.nii.gz")),
    )?;
    nifti(
        "truth fracture mask",
        &study.fractures,
        out.join("truth/fractures").join(format!("{uid}.nii.gz")),
    )?;
    Ok(files.len())
}

#[derive(Serialize)]
struct Manifest<'a> {
    generator: &'static str,
    generator_version: u32,
    config: &'a CohortConfig,
    summary: &'a CohortSummary,
}

/// Generates the cohort of `cfg` into `out` (created if missing; must be empty).
/// `progress(done, total)` is called after each study.
pub fn generate_cohort(
    cfg: &CohortConfig,
    out: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<CohortSummary, SynthError> {
    let plan = plan_cohort(cfg)?;
    check_empty(out)?;
    for sub in [
        "train_images",
        "test_images",
        "segmentations",
        "truth/vertebrae",
        "truth/fractures",
    ] {
        create_dir(&out.join(sub))?;
    }
    let total = plan.studies.len();
    let mut summary = CohortSummary {
        train_studies: cfg.train_studies,
        test_studies: cfg.test_studies,
        positive_studies: 0,
        vertebra_positives: [0; 7],
        boxed_studies: 0,
        box_rows: 0,
        segmented_studies: 0,
        cracks: 0,
        dicom_files: 0,
        voxels: 0,
    };
    let mut public_boxes: Vec<(String, FractureBox)> = Vec::new();
    let mut crack_rows = Vec::new();
    let mut geometries = Vec::with_capacity(total);
    for (done, study_plan) in plan.studies.iter().enumerate() {
        let study = render_study(cfg, study_plan)?;
        let uid = &study_plan.study_uid;
        tracing::info!(study = %uid, index = done, slices = study.model.geometry.slices, cracks = study.model.cracks.len(), "rendered study");
        if study_plan.boxed {
            public_boxes.extend(study.boxes.iter().map(|b| (uid.clone(), *b)));
            summary.boxed_studies += 1;
        }
        for (i, c) in study.model.cracks.iter().enumerate() {
            crack_rows.push((uid.clone(), i, c.clone(), study.crack_voxels[i]));
        }
        summary.cracks += study.model.cracks.len();
        summary.voxels += study.model.geometry.voxel_count();
        summary.positive_studies += usize::from(study_plan.positive());
        for (j, &f) in study_plan.fractured.iter().enumerate() {
            summary.vertebra_positives[j] += usize::from(f);
        }
        summary.segmented_studies += usize::from(study_plan.segmented);
        geometries.push(study.model.geometry.clone());
        summary.dicom_files += write_study(out, study_plan, study, cfg.phi_canary.as_deref())?;
        progress(done + 1, total);
    }
    summary.box_rows = public_boxes.len();

    let train: Vec<&StudyPlan> = plan
        .studies
        .iter()
        .filter(|s| s.split == Split::Train)
        .collect();
    let test: Vec<&StudyPlan> = plan
        .studies
        .iter()
        .filter(|s| s.split == Split::Test)
        .collect();
    tables::write_labels(&out.join("train.csv"), train.iter().copied())?;
    tables::write_boxes(
        &out.join("train_bounding_boxes.csv"),
        public_boxes.iter().map(|(u, b)| (u.as_str(), b)),
    )?;
    tables::write_test_rows(&out.join("test.csv"), test.iter().copied())?;
    tables::write_sample_submission(&out.join("sample_submission.csv"), test.iter().copied())?;
    tables::write_labels(&out.join("truth/test_labels.csv"), test.iter().copied())?;
    tables::write_study_facts(
        &out.join("truth/studies.csv"),
        plan.studies
            .iter()
            .zip(&geometries)
            .map(|(p, g)| StudyFacts {
                plan: p,
                geometry: g,
            }),
    )?;
    tables::write_fractures(
        &out.join("truth/fractures.csv"),
        crack_rows
            .iter()
            .map(|(u, i, c, n)| (u.as_str(), *i, c, *n)),
    )?;
    let manifest = Manifest {
        generator: "flow-synth",
        generator_version: crate::GENERATOR_VERSION,
        config: cfg,
        summary: &summary,
    };
    let path = out.join("truth/cohort.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|source| SynthError::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, text + "\n").map_err(|source| SynthError::Io { path, source })?;
    tracing::info!(
        studies = total,
        files = summary.dicom_files,
        "cohort written"
    );
    Ok(summary)
}
