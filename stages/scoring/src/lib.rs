//! The RSNA 2022 metric, AUC, reliability (calibration) bins, stage-3 scorers (quantile scores,
//! the pooled vertebra model, the overall combiner) and their fitting, submission files.
//!
//! Every per-study array in this crate is `[patient_overall, C1, .., C7]` ([`LABEL_NAMES`]).

mod csv_io;
mod error;
#[cfg(test)]
mod test_stream;

pub mod auc;
pub mod calibration;
pub mod combiner;
pub mod labels;
pub mod logistic;
pub mod metric;
pub mod quantile;
pub mod quantile_fit;
pub mod report;
pub mod submission;
pub mod vertebra_model;

pub use auc::roc_auc;
pub use calibration::{
    expected_calibration_error, reliability_bins, reliability_of_labels, ReliabilityBin,
};
pub use combiner::{
    fit_overall_combiner, CombinerConfig, CombinerFit, CombinerInput, OverallCombiner,
};
pub use error::ScoringError;
pub use labels::{label_index, LabelTable, LABEL_NAMES, N_LABELS, OVERALL};
pub use logistic::{fit_logistic, LogisticFit, LogisticModel};
pub use metric::{competition_metric, metric_breakdown, prior_baseline, MetricBreakdown};
pub use quantile::{summarise_study, QuantileParamSet, QuantileParams, VoxelSummary};
pub use quantile_fit::{fit_quantile_params, LabelFit, QuantileFit, QuantileFitConfig};
pub use report::{
    render_table, score_aligned, score_files, score_files_against_prior, LabelScore, ScoreReport,
};
pub use submission::{validate_submission, Predictions, RowId, SampleOrder, SubmissionProblem};
pub use vertebra_model::{fit_vertebra_scorer, VertebraFeatures, VertebraFit, VertebraScorer};
