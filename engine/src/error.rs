//! The engine's error type.

use std::path::PathBuf;

use crate::spec::SpecError;

/// Errors of the engine as a whole (a node's own failure is reported as an event, not here).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pipeline is invalid; every problem is listed.
    #[error("invalid pipeline:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<SpecError>),
    #[error("state dir {dir} is locked by pid {pid} (another flow run is using it); wait for it, or use --state-dir")]
    Locked { dir: PathBuf, pid: String },
    #[error("failed to {what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error(transparent)]
    Cache(#[from] flow_cache::CacheError),
    #[error("{0}")]
    Usage(String),
}

impl EngineError {
    /// The process exit code this error maps to: 2 for invalid input or usage, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Invalid(_) | EngineError::Locked { .. } | EngineError::Usage(_) => 2,
            _ => 1,
        }
    }
}
