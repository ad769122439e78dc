use std::path::PathBuf;

/// Everything that can go wrong in the store or the index.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache index error: {0}")]
    Index(#[from] sled::Error),
    #[error("corrupt cache record for {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("blob {0} is missing from the store")]
    MissingBlob(String),
    #[error("invalid digest {0:?}: expected 64 hex characters")]
    BadDigest(String),
    #[error("{path} is neither a regular file nor a directory")]
    Unsupported { path: PathBuf },
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
            source,
        }
    }
}
