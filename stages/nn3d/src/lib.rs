//! 3D deep learning on candle: conv3d and friends with autograd (a fast CPU kernel plus a
//! device-generic path), an nnU-Net-style U-Net and the stage-3 classifier, losses,
//! optimisers and schedules, a resumable training loop and sliding-window inference.

pub mod checkpoint;
pub mod classifier;
pub mod device;
pub mod error;
pub mod inference;
pub mod init;
pub mod layers;
pub mod loss;
pub mod ops;
pub mod optim;
pub mod schedule;
pub mod train;
pub mod unet;

pub use classifier::{Classifier3d, ClassifierConfig};
pub use device::parse_device;
pub use error::{Nn3dError, Result};
pub use inference::{predict_sliding_window, SlidingWindowConfig};
pub use init::init_seeded;
pub use optim::{clip_grad_norm, Optimizer, OptimizerConfig};
pub use schedule::LrSchedule;
pub use train::{
    train, Batch, BatchSource, Objective, ScheduleUnit, TrainConfig, TrainOutcome, TrainProgress,
};
pub use unet::{UNet3d, UNetConfig};
