//! One-shot DICOM folder -> NIfTI conversion (what `flow convert` and the `dicom.to_nifti`
//! stage call).

use crate::dicom_series::{read_series, DicomReadError, ReadOptions, SeriesReport};
use crate::nifti_io::{write_nifti, NiftiIoError};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a conversion failed.
#[derive(Debug, Error)]
pub enum ConvertError {
    /// The folder holds no usable series (the CLI exits 2 on this).
    #[error(transparent)]
    Read(#[from] DicomReadError),
    #[error(transparent)]
    Write(#[from] NiftiIoError),
    #[error("{path}: cannot write report: {cause}")]
    Report {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Convert the series of `dir` (the largest, or `series_uid`) to `out` (`.nii` or `.nii.gz`,
/// int16 HU) and return its report.
pub fn convert_series(
    dir: &Path,
    out: &Path,
    series_uid: Option<&str>,
) -> Result<SeriesReport, ConvertError> {
    convert_series_with(
        dir,
        out,
        ReadOptions {
            series_uid,
            progress: None,
        },
    )
}

/// [`convert_series`] with a progress callback.
pub fn convert_series_with(
    dir: &Path,
    out: &Path,
    options: ReadOptions,
) -> Result<SeriesReport, ConvertError> {
    let (volume, report) = read_series(dir, options)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| NiftiIoError::Io {
            path: parent.to_path_buf(),
            cause: source,
        })?;
    }
    write_nifti(&volume, out)?;
    Ok(report)
}

/// Write a report as pretty JSON.
pub fn write_report_json(report: &SeriesReport, path: &Path) -> Result<(), ConvertError> {
    let text = serde_json::to_string_pretty(report).expect("report serialises");
    std::fs::write(path, text + "\n").map_err(|source| ConvertError::Report {
        path: path.to_path_buf(),
        cause: source,
    })
}
