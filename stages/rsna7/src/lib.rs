//! The model steps of the RSNA 2022 7th-place method, free of the engine: the seeded split,
//! stage 1 (vertebra U-Net), the stage-2 ROI and fracture labels (box and bone, pseudo labels),
//! segmentation training and sliding-window inference, and the stage-3 `patient_overall`
//! classifier. The stage adapters in `flow-rsna` call these per study.

pub mod error;
pub mod evaluation;
pub mod fracture;
pub mod fracture_training;
pub mod level_watershed;
pub mod normalize;
pub mod objective;
pub mod overall;
pub mod plans;
pub mod roi;
pub mod segnet;
pub mod split;
pub mod stage1;
pub mod stage1_training;

pub use error::{Result, Rsna7Error};
pub use fracture::{box_and_bone, lucent_voxels, pseudo_label, PseudoConfig, PseudoOutcome};
pub use fracture_training::{train_fracture, FractureAttempt, FractureTraining, COLLAPSE_LOSS};
pub use normalize::CtNormalizer;
pub use overall::{overall_input, train_overall, OverallModel, OverallModelMeta, OverallRecipe};
pub use roi::{onto_grid_of, Roi};
pub use segnet::{
    models_for_study, predict_probabilities, train_segmentation, training_case, InferencePlan,
    SegModel, SegModelMeta, SegRecipe,
};
pub use split::Split;
pub use stage1::{
    dice_per_label, keep_cervical_component, prepare_study, segment_vertebrae, Resolution,
    STAGE1_CLASSES,
};
pub use stage1_training::{train_stage1, Stage1Attempt, Stage1Training, LEVEL_DICE_FLOOR};
