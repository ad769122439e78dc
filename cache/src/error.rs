use std::path::PathBuf;

/// Everything that can go wrong in the store or the index.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("failed to {action} {path}: {cause}")]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cache index error: {0}")]
    Index(sled::Error),
    #[error("corrupt cache record for {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("blob {0} is missing from the store")]
    MissingBlob(String),
    #[error("invalid digest {0:?}: expected 64 hex characters")]
    BadDigest(String),
    #[error("{path} is neither a regular file nor a directory")]
    Unsupported { path: PathBuf },
}

// Each error shows its cause in its own message and does not also return it from `source()`,
// so a chained rendering (`{:#}`) prints it once.
impl From<sled::Error> for CacheError {
    fn from(e: sled::Error) -> Self {
        CacheError::Index(e)
    }
}

impl CacheError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> CacheError {
        let path = path.into();
        move |source| CacheError::Io {
            action,
            path,
            cause: source,
        }
    }
}
