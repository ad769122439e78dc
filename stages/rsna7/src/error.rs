//! Errors of the method's model steps; each names the study or file it concerns.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Rsna7Error {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Nifti {
        path: PathBuf,
        cause: flow_imaging::NiftiIoError,
    },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("study {study}: {message}")]
    Study { study: String, message: String },
    #[error(transparent)]
    Nn(#[from] flow_nn3d::Nn3dError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Scoring(#[from] flow_scoring::ScoringError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Rsna7Error>;

impl Rsna7Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause: source,
        }
    }
    pub fn study(study: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Study {
            study: study.into(),
            message: message.to_string(),
        }
    }
}

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Rsna7Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Rsna7Error::BadFile {
        path: path.into(),
        message: format!("invalid JSON: {e}"),
    })
}

/// Writes `value` as pretty JSON (with a trailing newline).
pub fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Rsna7Error::Invalid(format!("cannot serialise {}: {e}", path.display())))?;
    std::fs::write(path, text + "\n").map_err(|e| Rsna7Error::io(path, e))
}
