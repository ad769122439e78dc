//! Error type for the parts of the crate that touch files, configuration and devices.
//! Tensor-level code returns `candle_core::Result` so it composes with candle modules.

use std::path::PathBuf;

/// Everything that can go wrong outside pure tensor math.
#[derive(Debug, thiserror::Error)]
pub enum Nn3dError {
    #[error("tensor operation failed: {0}")]
    Candle(candle_core::Error),
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: invalid JSON: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid device specification {spec:?}: {reason}")]
    Device { spec: String, reason: String },
    #[error("batch source failed: {0}")]
    BatchSource(String),
}

pub type Result<T> = std::result::Result<T, Nn3dError>;

// Each error shows its cause in its own message and does not also return it from `source()`,
// so a chained rendering (`{:#}`) prints it once.
impl From<candle_core::Error> for Nn3dError {
    fn from(e: candle_core::Error) -> Self {
        Nn3dError::Candle(e)
    }
}

impl Nn3dError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Nn3dError::Io {
            path: path.into(),
            cause: source,
        }
    }
}
