//! Reading a folder of DICOM slices into one HU volume with its geometry.
//!
//! Pass 1 reads headers only (stopping before PixelData), groups files by SeriesInstanceUID
//! and picks one series; the stack is ordered by ImagePositionPatient projected on the slice
//! normal and its spacing measured. Pass 2 decodes the slices in parallel (rayon) straight
//! into their planes of the output volume, reporting progress through a caller callback.

mod decode;
mod error;
mod header;
mod jpeg_lossless;
mod prescan;
mod stack;

pub use decode::{read_slice, SliceImage};
pub use error::DicomReadError;
pub use header::{read_slice_header, SliceHeader, SUPPORTED_SYNTAXES};
pub use stack::{Gap, SpacingReport};

use crate::dicom_frame::DicomFrame;
use crate::geometry::dot;
use crate::volume::{check_dims, Volume};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Options of [`read_series`].
#[derive(Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// Read this series; by default the series with the most files.
    pub series_uid: Option<&'a str>,
    /// Called as `(slices_done, slices_total)` after each decoded slice (from worker threads).
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

/// Another series found in the same folder (not converted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherSeries {
    pub series_uid: String,
    pub files: usize,
}

/// Which way file numbers run relative to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileNumbering {
    /// The lowest file number is the most superior slice.
    SuperiorFirst,
    /// The lowest file number is the most inferior slice.
    InferiorFirst,
    /// File names are not numbers, or numbers do not follow position.
    Unordered,
}

/// Geometry and series facts of one conversion, with no patient identifiers; serialisable
/// as the per-study JSON next to the NIfTI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesReport {
    pub study_uid: Option<String>,
    pub series_uid: String,
    /// Files of the chosen series (including dropped duplicates).
    pub files: usize,
    /// Slices in the volume.
    pub slices: usize,
    pub rows: u32,
    pub columns: u32,
    pub transfer_syntaxes: Vec<String>,
    pub photometric: String,
    pub bits_stored: u16,
    pub pixel_representation: u16,
    /// `[between rows, between columns]` mm, as in PixelSpacing.
    pub pixel_spacing: [f64; 2],
    pub slice_thickness: Option<f64>,
    pub orientation: [f64; 6],
    /// ImagePositionPatient (LPS) of the first and last slice in physical order.
    pub first_position_lps: [f64; 3],
    pub last_position_lps: [f64; 3],
    pub spacing: SpacingReport,
    pub file_numbering: FileNumbering,
    pub rescale_slopes: Vec<f64>,
    pub rescale_intercepts: Vec<f64>,
    /// Voxels whose HU did not fit int16 and were saturated.
    pub clamped_voxels: usize,
    /// Some slope or intercept was fractional, so HU were rounded to integers.
    pub rounded: bool,
    /// Voxel-to-RAS affine of the written volume (row-major 4x4).
    pub affine_ras: [[f64; 4]; 4],
    pub other_series: Vec<OtherSeries>,
    /// Human-readable notes on anything unusual (gaps, duplicates, tilt, ...).
    pub warnings: Vec<String>,
}

/// The files of a folder that are read (regular files, not hidden), sorted by name.
fn list_files(dir: &Path) -> Result<Vec<PathBuf>, DicomReadError> {
    let io = |source| DicomReadError::Io {
        path: dir.to_path_buf(),
        cause: source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map_err(io)?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn file_number(p: &Path) -> Option<i64> {
    p.file_stem()?.to_str()?.parse().ok()
}

/// Read the headers of every file in `dir` and group them by SeriesInstanceUID.
pub fn scan_series(dir: &Path) -> Result<BTreeMap<String, Vec<SliceHeader>>, DicomReadError> {
    let files = list_files(dir)?;
    if files.is_empty() {
        return Err(DicomReadError::NoFiles {
            dir: dir.to_path_buf(),
        });
    }
    let headers: Vec<SliceHeader> = files
        .par_iter()
        .map(|f| read_slice_header(f))
        .collect::<Result<_, _>>()?;
    let mut groups: BTreeMap<String, Vec<SliceHeader>> = BTreeMap::new();
    for h in headers {
        groups.entry(h.series_uid.clone()).or_default().push(h);
    }
    Ok(groups)
}

/// Read one series of `dir` into an int16 HU volume (RAS geometry) and its report.
pub fn read_series(
    dir: &Path,
    options: ReadOptions,
) -> Result<(Volume<i16>, SeriesReport), DicomReadError> {
    let mut groups = scan_series(dir)?;
    let chosen_uid = match options.series_uid {
        Some(uid) => {
            if !groups.contains_key(uid) {
                let present = groups.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(DicomReadError::SeriesNotFound {
                    dir: dir.to_path_buf(),
                    series_uid: uid.to_string(),
                    present,
                });
            }
            uid.to_string()
        }
        // Most files wins; ties go to the smallest UID (BTreeMap order) for determinism.
        None => groups
            .iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)))
            .map(|(k, _)| k.clone())
            .ok_or(DicomReadError::NoFiles {
                dir: dir.to_path_buf(),
            })?,
    };
    let files_in_series = groups.get(&chosen_uid).map_or(0, |g| g.len());
    let series = groups.remove(&chosen_uid).unwrap_or_default();
    let other_series = groups
        .iter()
        .map(|(uid, g)| OtherSeries {
            series_uid: uid.clone(),
            files: g.len(),
        })
        .collect();

    let stack = stack::order_stack(dir, series)?;
    let first = &stack.slices[0];
    let dims = [
        first.columns as u64,
        first.rows as u64,
        stack.slices.len() as u64,
    ];
    let dims = check_dims(dims).map_err(|e| DicomReadError::AbsurdDims {
        path: first.path.clone(),
        detail: e.to_string(),
    })?;

    let frame = DicomFrame {
        row_cosine: [
            first.orientation[0],
            first.orientation[1],
            first.orientation[2],
        ],
        column_cosine: [
            first.orientation[3],
            first.orientation[4],
            first.orientation[5],
        ],
        pixel_spacing: first.pixel_spacing,
        first_position: first.position,
        slice_step: stack.normal.map(|v| v * stack.spacing.slice_spacing),
    };
    let geometry = frame.to_geometry();
    let extent = [
        dims[0] as f64 * first.pixel_spacing[1],
        dims[1] as f64 * first.pixel_spacing[0],
        dims[2] as f64 * stack.spacing.slice_spacing,
    ];
    if let Some(a) = (0..3).find(|&a| extent[a].is_nan() || extent[a] > MAX_EXTENT_MM) {
        let what = if a == 2 {
            format!(
                "{} slices {} mm apart (ImagePositionPatient (0020,0032))",
                dims[2], stack.spacing.slice_spacing
            )
        } else {
            format!(
                "{} pixels of {} mm (PixelSpacing (0028,0030))",
                dims[a],
                first.pixel_spacing[1 - a]
            )
        };
        return Err(DicomReadError::AbsurdDims {
            path: first.path.clone(),
            detail: format!(
                "{what} span {} mm, more than MAX_EXTENT_MM ({MAX_EXTENT_MM} mm)",
                extent[a]
            ),
        });
    }

    let plane = dims[0] * dims[1];
    let mut data = vec![0i16; plane * dims[2]];
    let done = AtomicUsize::new(0);
    let total = stack.slices.len();
    let outcomes: Vec<(usize, bool)> = data
        .par_chunks_mut(plane)
        .zip(stack.slices.par_iter())
        .map(|(out, h)| {
            let expected = out.len();
            let (_, clamped, rounded) = decode::decode_into(&h.path, |n| {
                (n == expected).then_some(out)
            })
            .map_err(|e| match e {
                DicomReadError::MixedSeries {
                    path, tag, found, ..
                } => DicomReadError::MixedSeries {
                    path,
                    tag,
                    found,
                    expected: format!("{}x{}", first.rows, first.columns),
                    first: first.path.clone(),
                },
                other => other,
            })?;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(progress) = options.progress {
                progress(n, total);
            }
            Ok((clamped, rounded))
        })
        .collect::<Result<_, DicomReadError>>()?;
    let volume =
        Volume::from_vec(dims, data, geometry).map_err(|e| DicomReadError::AbsurdDims {
            path: first.path.clone(),
            detail: e.to_string(),
        })?;

    let report = build_report(&stack, files_in_series, other_series, &outcomes, &volume);
    // The folder's own name only (the StudyInstanceUID in the competition layout): the path
    // above it may name a patient.
    tracing::info!(
        series = %dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        slices = report.slices,
        spacing = %format_args!("{:.3}", report.spacing.slice_spacing),
        warnings = report.warnings.len(),
        "read DICOM series"
    );
    Ok((volume, report))
}

/// Longest side a series may span. No scanner images 5 m; beyond it a position or spacing is
/// corrupt, and resampling such a volume to a working grid would allocate without bound.
pub const MAX_EXTENT_MM: f64 = 5_000.0;

fn distinct(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn build_report(
    stack: &stack::OrderedStack,
    files: usize,
    other_series: Vec<OtherSeries>,
    outcomes: &[(usize, bool)],
    volume: &Volume<i16>,
) -> SeriesReport {
    let s = &stack.slices;
    let (first, last) = (&s[0], &s[s.len() - 1]);
    let mut syntaxes: Vec<String> = s.iter().map(|h| h.transfer_syntax.clone()).collect();
    syntaxes.sort();
    syntaxes.dedup();
    // Which way do file numbers run? Compare with the superior (LPS +z) direction.
    let numbers: Option<Vec<i64>> = s.iter().map(|h| file_number(&h.path)).collect();
    let superior_up = dot(stack.normal, [0.0, 0.0, 1.0]);
    let file_numbering = match numbers {
        Some(n) if n.windows(2).all(|w| w[1] > w[0]) && superior_up > 0.0 => {
            FileNumbering::InferiorFirst
        }
        Some(n) if n.windows(2).all(|w| w[1] > w[0]) && superior_up < 0.0 => {
            FileNumbering::SuperiorFirst
        }
        Some(n) if n.windows(2).all(|w| w[1] < w[0]) && superior_up > 0.0 => {
            FileNumbering::SuperiorFirst
        }
        Some(n) if n.windows(2).all(|w| w[1] < w[0]) && superior_up < 0.0 => {
            FileNumbering::InferiorFirst
        }
        _ => FileNumbering::Unordered,
    };
    let sp = &stack.spacing;
    let mut warnings = Vec::new();
    if !sp.gaps.is_empty() {
        warnings.push(format!(
            "{} gap(s) in slice positions, largest step {:.3} mm vs spacing {:.3} mm",
            sp.gaps.len(),
            sp.max_step,
            sp.slice_spacing
        ));
    }
    if sp.non_uniform {
        warnings.push(format!(
            "non-uniform slice spacing: steps {:.4}..{:.4} mm, volume uses the median {:.4} mm",
            sp.min_step, sp.max_step, sp.slice_spacing
        ));
    }
    if !sp.duplicates.is_empty() {
        warnings.push(format!(
            "{} file(s) duplicate another slice's position and were dropped",
            sp.duplicates.len()
        ));
    }
    if sp.max_in_plane_drift > 0.01 {
        warnings.push(format!("slice positions drift {:.3} mm in-plane (gantry tilt?); geometry assumes an orthogonal stack", sp.max_in_plane_drift));
    }
    if !other_series.is_empty() {
        warnings.push(format!(
            "{} other series in the folder were not converted",
            other_series.len()
        ));
    }
    let clamped_voxels = outcomes.iter().map(|o| o.0).sum();
    let rounded = outcomes.iter().any(|o| o.1);
    if clamped_voxels > 0 {
        warnings.push(format!(
            "{clamped_voxels} voxel(s) outside int16 were saturated"
        ));
    }
    if rounded {
        warnings.push("fractional rescale slope/intercept: HU were rounded to integers".into());
    }
    if first.photometric == "MONOCHROME1" {
        warnings.push("MONOCHROME1: values are HU from the rescale, not inverted".into());
    }
    SeriesReport {
        study_uid: first.study_uid.clone(),
        series_uid: first.series_uid.clone(),
        files,
        slices: s.len(),
        rows: first.rows,
        columns: first.columns,
        transfer_syntaxes: syntaxes,
        photometric: first.photometric.clone(),
        bits_stored: first.bits_stored,
        pixel_representation: first.pixel_representation,
        pixel_spacing: first.pixel_spacing,
        slice_thickness: first.slice_thickness,
        orientation: first.orientation,
        first_position_lps: first.position,
        last_position_lps: last.position,
        spacing: sp.clone(),
        file_numbering,
        rescale_slopes: distinct(s.iter().map(|h| h.rescale_slope)),
        rescale_intercepts: distinct(s.iter().map(|h| h.rescale_intercept)),
        clamped_voxels,
        rounded,
        affine_ras: volume.geometry.affine(),
        other_series,
        warnings,
    }
}
