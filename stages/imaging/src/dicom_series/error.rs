//! Typed errors of the DICOM series reader; each names the file (or folder) and the tag.

use std::path::PathBuf;
use thiserror::Error;

/// Why a folder could not be turned into a volume.
#[derive(Debug, Error)]
pub enum DicomReadError {
    #[error("{path}: cannot read: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: truncated file: {detail}")]
    Truncated { path: PathBuf, detail: String },
    #[error("{path}: not a readable DICOM file: {detail}")]
    NotDicom { path: PathBuf, detail: String },
    #[error("{path}: missing {tag}")]
    MissingTag { path: PathBuf, tag: &'static str },
    #[error("{path}: {tag} value {value:?} is invalid: {reason}")]
    BadTag {
        path: PathBuf,
        tag: &'static str,
        value: String,
        reason: String,
    },
    #[error("{path}: unsupported transfer syntax {uid} ({name})")]
    UnsupportedTransferSyntax {
        path: PathBuf,
        uid: String,
        name: String,
    },
    #[error("{path}: cannot decode PixelData (7FE0,0010): {detail}")]
    Decode { path: PathBuf, detail: String },
    #[error("{path}: mixed series: {tag} is {found} but the first slice ({first}) has {expected}")]
    MixedSeries {
        path: PathBuf,
        tag: &'static str,
        found: String,
        expected: String,
        first: PathBuf,
    },
    #[error("{path}: inconsistent orientation: ImageOrientationPatient (0020,0037) {found:?} differs from {expected:?} of {first}")]
    InconsistentOrientation {
        path: PathBuf,
        found: Box<[f64; 6]>,
        expected: Box<[f64; 6]>,
        first: PathBuf,
    },
    #[error("{path}: absurd dimensions: {detail}")]
    AbsurdDims { path: PathBuf, detail: String },
    #[error("{dir}: series {series_uid} has a single slice ({path}); a volume needs at least two")]
    SingleSlice {
        dir: PathBuf,
        series_uid: String,
        path: PathBuf,
    },
    #[error("{dir}: no DICOM files found")]
    NoFiles { dir: PathBuf },
    #[error("{dir}: series {series_uid} not found (present: {present})")]
    SeriesNotFound {
        dir: PathBuf,
        series_uid: String,
        present: String,
    },
}

impl DicomReadError {
    /// The file (or folder) the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            DicomReadError::Io { path, .. }
            | DicomReadError::Truncated { path, .. }
            | DicomReadError::NotDicom { path, .. }
            | DicomReadError::MissingTag { path, .. }
            | DicomReadError::BadTag { path, .. }
            | DicomReadError::UnsupportedTransferSyntax { path, .. }
            | DicomReadError::Decode { path, .. }
            | DicomReadError::MixedSeries { path, .. }
            | DicomReadError::InconsistentOrientation { path, .. }
            | DicomReadError::AbsurdDims { path, .. } => path,
            DicomReadError::SingleSlice { dir, .. }
            | DicomReadError::NoFiles { dir }
            | DicomReadError::SeriesNotFound { dir, .. } => dir,
        }
    }
}

/// True when an error chain bottoms out in an unexpected end of file.
pub(crate) fn is_eof(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("unexpected end of") || text.contains("failed to fill whole buffer") {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The error chain as one line ("a: b: c"), for messages that wrap a library error.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
