//! Adapters for the model steps of the method (flow-rsna7): split, stage 1, ROI, fracture
//! labels / training / prediction per round, the stage-3 classifier and fit, and the report.

mod fracture;
mod fracture_labels;
mod overall;
mod plan;
mod report;
mod roi;
mod runtime;
mod split;
mod stage1;
mod stage3;

pub use fracture::{FracturePredict, FractureTrain};
pub use fracture_labels::FractureLabels;
pub use overall::OverallTrain;
pub use plan::PlanStage;
pub use report::Report;
pub use roi::RoiExtract;
pub use split::SplitStudies;
pub use stage1::{Stage1Predict, Stage1Train};
pub use stage3::Stage3;
