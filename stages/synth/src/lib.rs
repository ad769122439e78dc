//! Synthetic cervical-spine CT cohort generator: the RSNA 2022 competition layout with hidden
//! ground truth. See README.md for the architecture and COHORT.md for what is modelled.

pub mod anatomy;
pub mod boxes;
pub mod cohort;
pub mod config;
pub mod fracture;
pub mod geometry;
pub mod label_model;
pub mod phantom;
pub mod plan;
pub mod sdf;
pub mod seeds;
pub mod tables;
pub mod vertebra;

/// Version of the generated content: bumped whenever the same config would produce different
/// files, so a stage adapter can fold it into its own VERSION (and cache keys).
pub const GENERATOR_VERSION: u32 = 1;

pub use cohort::{generate_cohort, render_study, CohortSummary, RenderedStudy, SynthError};
pub use config::{CohortConfig, ConfigError, Profile};
pub use plan::{plan_cohort, realize, CohortPlan, Split, StudyModel, StudyPlan};
