//! Stage adapters: the engine's [`Stage`](flow_engine::Stage) trait over the imaging,
//! synthetic-cohort, scoring and method (flow-rsna7) crates. Each adapter is a thin layer: typed params in, a
//! library call per study, outputs written where the context says, per-study failures
//! collected into a summary instead of aborting the whole node.

mod boxes;
mod convert;
mod method;
mod public_vertebrae;
mod score;
mod segmentations;
mod study_set;
mod synthetic;

pub use boxes::BoxesToMasks;
pub use convert::DicomToNifti;
pub use method::{
    FractureLabels, FracturePredict, FractureTrain, OverallTrain, PlanStage, Report, RoiExtract,
    SplitStudies, Stage1Predict, Stage1Train, Stage3,
};
pub use public_vertebrae::PublicVertebrae;
pub use score::ScoreSubmission;
pub use segmentations::Segmentations;
pub use study_set::StudyFailure;
pub use synthetic::{cohort_config, SyntheticCohort};

use flow_engine::Registry;

/// A registry with the engine's built-ins and every stage of this crate.
pub fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.register(SyntheticCohort);
    r.register(DicomToNifti);
    r.register(Segmentations);
    r.register(BoxesToMasks);
    r.register(PublicVertebrae);
    r.register(ScoreSubmission);
    r.register(SplitStudies);
    r.register(PlanStage);
    r.register(Stage1Train);
    r.register(Stage1Predict);
    r.register(RoiExtract);
    r.register(FractureLabels);
    r.register(FractureTrain);
    r.register(FracturePredict);
    r.register(OverallTrain);
    r.register(Stage3);
    r.register(Report);
    r
}
