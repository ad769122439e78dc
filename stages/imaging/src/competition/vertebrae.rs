//! Public vertebra segmentations (TotalSegmentator, VerSe) mapped to the method's labels
//! 1..8 = C1..C7, T1, cleaned with the gap-bridging clean-up (whose report comes back so the
//! caller can warn). Cases without both C1 and T1 are rejected with a reason.

use crate::nifti_io::{read_nifti, NiftiIoError};
use crate::ops::{clean_label_map_with_report, CleanupConfig, CleanupReport};
use crate::volume::Volume;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Label numbering of a combined vertebra map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VertebraScheme {
    /// TotalSegmentator v1 combined map: C1 = 41 .. C7 = 35, T1 = 34.
    TotalSegmentatorV1,
    /// TotalSegmentator v2 combined map: C1 = 50 .. C7 = 44, T1 = 43.
    TotalSegmentatorV2,
    /// VerSe: 1..7 = C1..C7, 8 = T1.
    Verse,
}

impl VertebraScheme {
    /// Source label of our label `ours` (1..=8).
    pub fn source_label(self, ours: u8) -> u8 {
        match self {
            VertebraScheme::TotalSegmentatorV1 => 42 - ours,
            VertebraScheme::TotalSegmentatorV2 => 51 - ours,
            VertebraScheme::Verse => ours,
        }
    }
}

/// Vertebra name of a label in the C1 = 1 numbering used here and by the competition
/// (1..7 = C1..C7, 8..19 = T1..T12); `None` for other labels.
pub fn vertebra_name(label: u8) -> Option<String> {
    match label {
        1..=7 => Some(format!("C{label}")),
        8..=19 => Some(format!("T{}", label - 7)),
        _ => None,
    }
}

/// Structure file stems of a TotalSegmentator case folder, in our label order 1..8.
pub const STRUCTURE_FILES: [&str; 8] = [
    "vertebrae_C1",
    "vertebrae_C2",
    "vertebrae_C3",
    "vertebrae_C4",
    "vertebrae_C5",
    "vertebrae_C6",
    "vertebrae_C7",
    "vertebrae_T1",
];

/// Why a public case could not be used.
#[derive(Debug, Error)]
pub enum VertebraeError {
    #[error(transparent)]
    Nifti(#[from] NiftiIoError),
    #[error("{path}: voxel value {value} is not a label (integer 0..=255)")]
    NotLabels { path: PathBuf, value: f64 },
    #[error("{path}: grid {dims:?} / geometry differs from {first} ({first_dims:?})")]
    GridMismatch {
        path: PathBuf,
        dims: [usize; 3],
        first: PathBuf,
        first_dims: [usize; 3],
    },
    #[error("{source_name}: no {vertebra} voxels; cases need both C1 and T1")]
    MissingVertebra {
        source_name: String,
        vertebra: &'static str,
    },
    #[error("{dir}: none of the vertebrae_C1..C7/T1 files exist")]
    NoStructureFiles { dir: PathBuf },
}

fn require_c1_t1(labels: &Volume<u8>, source_name: &str) -> Result<(), VertebraeError> {
    for (label, name) in [(1u8, "C1"), (8u8, "T1")] {
        if !labels.data().contains(&label) {
            return Err(VertebraeError::MissingVertebra {
                source_name: source_name.to_string(),
                vertebra: name,
            });
        }
    }
    Ok(())
}

/// Clean with the default bridging clean-up; fail when C1 or T1 did not survive it.
fn clean_checked(
    labels: &Volume<u8>,
    source_name: &str,
) -> Result<(Volume<u8>, CleanupReport), VertebraeError> {
    let (cleaned, report) = clean_label_map_with_report(labels, &CleanupConfig::default());
    require_c1_t1(&cleaned, source_name)?;
    Ok((cleaned, report))
}

/// Map a combined label volume to labels 1..8 (other labels become 0), then clean it (main
/// body with disc gaps bridged, then per label); returns the labels and the clean-up report.
/// Fails when C1 or T1 is absent.
pub fn map_combined(
    map: &Volume<u8>,
    scheme: VertebraScheme,
    source_name: &str,
) -> Result<(Volume<u8>, CleanupReport), VertebraeError> {
    let mut lut = [0u8; 256];
    for ours in 1..=8u8 {
        lut[scheme.source_label(ours) as usize] = ours;
    }
    let mapped = map.map(|x| lut[x as usize]);
    clean_checked(&mapped, source_name)
}

/// Read a combined map file (any integer-valued NIfTI) and map it (see [`map_combined`]).
pub fn read_combined(
    path: &Path,
    scheme: VertebraScheme,
) -> Result<(Volume<u8>, CleanupReport), VertebraeError> {
    let labels = read_nifti(path)?
        .to_labels()
        .map_err(|value| VertebraeError::NotLabels {
            path: path.to_path_buf(),
            value,
        })?;
    map_combined(&labels, scheme, &path.display().to_string())
}

/// Read a TotalSegmentator per-structure folder (`vertebrae_C1.nii.gz` .. `vertebrae_T1`,
/// `.nii.gz` or `.nii`); missing files are treated as empty structures, overlaps go to the
/// lower label. All files must share one grid. Cleaned as in [`map_combined`].
pub fn read_structure_folder(dir: &Path) -> Result<(Volume<u8>, CleanupReport), VertebraeError> {
    let mut combined: Option<(Volume<u8>, PathBuf)> = None;
    for (n, stem) in STRUCTURE_FILES.iter().enumerate() {
        let ours = n as u8 + 1;
        let path = [".nii.gz", ".nii"]
            .iter()
            .map(|ext| dir.join(format!("{stem}{ext}")))
            .find(|p| p.is_file());
        let Some(path) = path else { continue };
        let mask = read_nifti(&path)?
            .to_labels()
            .map_err(|value| VertebraeError::NotLabels {
                path: path.clone(),
                value,
            })?;
        match &mut combined {
            None => {
                let out = mask.map(|x| if x != 0 { ours } else { 0 });
                combined = Some((out, path));
            }
            Some((out, first)) => {
                if out.dims() != mask.dims()
                    || out.geometry.max_affine_difference(&mask.geometry) > 1e-3
                {
                    return Err(VertebraeError::GridMismatch {
                        path,
                        dims: mask.dims(),
                        first: first.clone(),
                        first_dims: out.dims(),
                    });
                }
                for (o, &m) in out.data_mut().iter_mut().zip(mask.data()) {
                    if m != 0 && *o == 0 {
                        *o = ours;
                    }
                }
            }
        }
    }
    let (labels, _) = combined.ok_or_else(|| VertebraeError::NoStructureFiles {
        dir: dir.to_path_buf(),
    })?;
    clean_checked(&labels, &dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    #[test]
    fn schemes_map_to_c1_t1_numbering() {
        assert_eq!(
            (1..=8)
                .map(|l| VertebraScheme::TotalSegmentatorV1.source_label(l))
                .collect::<Vec<_>>(),
            [41, 40, 39, 38, 37, 36, 35, 34]
        );
        assert_eq!(VertebraScheme::TotalSegmentatorV2.source_label(1), 50);
        assert_eq!(VertebraScheme::TotalSegmentatorV2.source_label(7), 44);
        assert_eq!(VertebraScheme::TotalSegmentatorV2.source_label(8), 43);
        assert_eq!(VertebraScheme::Verse.source_label(8), 8);
    }

    #[test]
    fn combined_map_is_mapped_and_needs_c1_and_t1() {
        // A column of vertebrae stacked along z, v1 numbering, plus a lumbar label (18).
        let mut v = Volume::filled([2, 2, 10], 0u8, Geometry::identity()).unwrap();
        for (k, l) in [41u8, 40, 39, 38, 37, 36, 35, 34, 18].iter().enumerate() {
            v.set(0, 0, k, *l);
        }
        let (m, report) = map_combined(&v, VertebraScheme::TotalSegmentatorV1, "case").unwrap();
        assert_eq!(report.labels.len(), 8);
        assert_eq!(
            (0..9).map(|k| m.get(0, 0, k)).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 8, 0]
        );
        v.set(0, 0, 7, 0);
        let e = map_combined(&v, VertebraScheme::TotalSegmentatorV1, "case").unwrap_err();
        assert_eq!(
            e.to_string(),
            "case: no T1 voxels; cases need both C1 and T1"
        );
    }

    #[test]
    fn verse_vertebrae_separated_by_discs_are_all_kept() {
        // VerSe numbering, 3x3x2 vertebrae with 2-voxel (2 mm) gaps along z, plus a far
        // label-3 speck that the clean-up drops and reports.
        let mut v = Volume::filled([12, 3, 32], 0u8, Geometry::identity()).unwrap();
        for l in 1..=8u8 {
            for k in 0..2 {
                for j in 0..3 {
                    for i in 0..3 {
                        v.set(i, j, 4 * (l as usize - 1) + k, l);
                    }
                }
            }
        }
        v.set(11, 2, 9, 3);
        let (m, report) = map_combined(&v, VertebraScheme::Verse, "verse").unwrap();
        for l in 1..=8u8 {
            assert_eq!(
                m.data().iter().filter(|&&x| x == l).count(),
                18,
                "label {l}"
            );
        }
        assert_eq!(
            report.warnings(0.01),
            ["label 3 lost 5.3% of its voxels (1 of 19) in the clean-up"]
        );
    }

    #[test]
    fn vertebra_names() {
        let names: Vec<_> = [1, 7, 8, 19, 20, 0]
            .map(vertebra_name)
            .into_iter()
            .collect();
        assert_eq!(
            names,
            [
                Some("C1".to_string()),
                Some("C7".into()),
                Some("T1".into()),
                Some("T12".into()),
                None,
                None
            ]
        );
    }

    #[test]
    fn structure_folder_is_combined() {
        let d = tempfile::tempdir().unwrap();
        for (n, stem) in STRUCTURE_FILES.iter().enumerate() {
            let mut m = Volume::filled([2, 2, 8], 0u8, Geometry::identity()).unwrap();
            m.set(1, 1, n, 1);
            crate::write_nifti(&m, &d.path().join(format!("{stem}.nii.gz"))).unwrap();
        }
        let (v, _) = read_structure_folder(d.path()).unwrap();
        assert_eq!(
            (0..8).map(|k| v.get(1, 1, k)).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        std::fs::remove_file(d.path().join("vertebrae_C1.nii.gz")).unwrap();
        assert!(read_structure_folder(d.path())
            .unwrap_err()
            .to_string()
            .contains("no C1 voxels"));
    }
}
