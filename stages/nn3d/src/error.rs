//! Error type for the parts of the crate that touch files, configuration and devices.
//! Tensor-level code returns `candle_core::Result` so it composes with candle modules.

use std::path::PathBuf;

/// Everything that can go wrong outside pure tensor math.
#[derive(Debug, thiserror::Error)]
pub enum Nn3dError {
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
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

impl Nn3dError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Nn3dError::Io {
            path: path.into(),
            source,
        }
    }
}
