//! The competition's segmentation files and their orientation quirk.
//!
//! A `segmentations/<UID>.nii` holds labels whose header geometry cannot be trusted: its voxel
//! `(i, j, k)` is DICOM column `i`, row `Rows - 1 - j`, and the `k`-th slice in ascending
//! physical z (patient superior). We rebuild the array in the converted CT's voxel order and
//! give it the CT's geometry. Reading does not clean the labels: callers run
//! [`crate::ops::clean_label_map_with_report`] once, with their own settings.

use crate::nifti_io::{read_nifti, write_nifti, NiftiIoError};
use crate::volume::Volume;
use crate::Geometry;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Problems with a competition segmentation.
#[derive(Debug, Error)]
pub enum SegmentationError {
    #[error(transparent)]
    Nifti(#[from] NiftiIoError),
    #[error("{path}: voxel value {value} is not a label (integer 0..=255)")]
    NotLabels { path: PathBuf, value: f64 },
    #[error("{path}: segmentation is {seg:?} voxels but the CT is {ct:?} (columns, rows, slices)")]
    DimsMismatch {
        path: PathBuf,
        seg: [usize; 3],
        ct: [usize; 3],
    },
    #[error("CT slice axis has no superior-inferior component; the competition quirk assumes axial slices")]
    NotAxial,
}

/// Whether our slice index `k` runs towards patient superior (RAS +z).
fn slices_ascend(ct_geometry: &Geometry) -> Result<bool, SegmentationError> {
    let z = ct_geometry.direction[2][2];
    if z.abs() < 1e-6 {
        return Err(SegmentationError::NotAxial);
    }
    Ok(z > 0.0)
}

/// Map a competition-layout label array onto the CT grid (`ct_dims` = columns, rows, slices)
/// and attach the CT geometry.
pub fn from_competition_layout(
    seg: &Volume<u8>,
    ct_geometry: &Geometry,
    ct_dims: [usize; 3],
) -> Result<Volume<u8>, SegmentationError> {
    if seg.dims() != ct_dims {
        return Err(SegmentationError::DimsMismatch {
            path: PathBuf::new(),
            seg: seg.dims(),
            ct: ct_dims,
        });
    }
    let ascend = slices_ascend(ct_geometry)?;
    let [nx, ny, nz] = ct_dims;
    let mut out = Volume::filled(ct_dims, 0u8, *ct_geometry).expect("dims already checked");
    for k in 0..nz {
        let kz = if ascend { k } else { nz - 1 - k };
        for j in 0..ny {
            let src = seg.index(0, ny - 1 - j, kz);
            let dst = out.index(0, j, k);
            out.data_mut()[dst..dst + nx].copy_from_slice(&seg.data()[src..src + nx]);
        }
    }
    Ok(out)
}

/// The inverse of [`from_competition_layout`]: write a label map (on the CT grid) the way the
/// competition files are laid out. The geometry given is the untrustworthy kind the originals
/// carry: the CT spacing with an identity direction and zero origin.
pub fn to_competition_layout(labels: &Volume<u8>) -> Result<Volume<u8>, SegmentationError> {
    let ascend = slices_ascend(&labels.geometry)?;
    let [nx, ny, nz] = labels.dims();
    let g = Geometry {
        spacing: labels.geometry.spacing,
        ..Geometry::identity()
    };
    let mut out = Volume::filled(labels.dims(), 0u8, g).expect("same dims");
    for kz in 0..nz {
        let k = if ascend { kz } else { nz - 1 - kz };
        for j in 0..ny {
            let src = labels.index(0, j, k);
            let dst = out.index(0, ny - 1 - j, kz);
            out.data_mut()[dst..dst + nx].copy_from_slice(&labels.data()[src..src + nx]);
        }
    }
    Ok(out)
}

/// Read `segmentations/<UID>.nii` and fix the quirk onto the CT grid. The labels come back as
/// stored (no clean-up), so the caller cleans once and can report what the clean-up removed.
pub fn read_competition_segmentation(
    path: &Path,
    ct_geometry: &Geometry,
    ct_dims: [usize; 3],
) -> Result<Volume<u8>, SegmentationError> {
    let raw = read_nifti(path)?;
    let labels = raw
        .to_labels()
        .map_err(|value| SegmentationError::NotLabels {
            path: path.to_path_buf(),
            value,
        })?;
    from_competition_layout(&labels, ct_geometry, ct_dims).map_err(|e| match e {
        SegmentationError::DimsMismatch { seg, ct, .. } => SegmentationError::DimsMismatch {
            path: path.to_path_buf(),
            seg,
            ct,
        },
        other => other,
    })
}

/// Write a label map in the competition's layout (for synthetic cohorts and tests).
pub fn write_competition_segmentation(
    labels: &Volume<u8>,
    path: &Path,
) -> Result<(), SegmentationError> {
    write_nifti(&to_competition_layout(labels)?, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct_geometry(ascend: bool) -> Geometry {
        Geometry {
            spacing: [0.5, 0.5, 1.0],
            origin: [100.0, 100.0, if ascend { -200.0 } else { 50.0 }],
            direction: [
                [-1.0, 0.0, 0.0],
                [0.0, -1.0, 0.0],
                [0.0, 0.0, if ascend { 1.0 } else { -1.0 }],
            ],
        }
    }

    #[test]
    fn quirk_maps_row_flip_and_ascending_z() {
        for ascend in [true, false] {
            let g = ct_geometry(ascend);
            let mut labels = Volume::filled([4, 3, 5], 0u8, g).unwrap();
            // DICOM column 1, row 0, on the most superior slice.
            let top = if ascend { 4 } else { 0 };
            labels.set(1, 0, top, 7);
            let comp = to_competition_layout(&labels).unwrap();
            // Competition: j = Rows-1-row = 2, k = ascending-z index of the top slice = 4.
            assert_eq!(comp.get(1, 2, 4), 7);
            assert_eq!(comp.data().iter().filter(|&&x| x != 0).count(), 1);
            let back = from_competition_layout(&comp, &g, [4, 3, 5]).unwrap();
            assert_eq!(back, labels);
        }
    }

    #[test]
    fn dims_mismatch_is_reported() {
        let seg = Volume::filled([4, 3, 5], 0u8, Geometry::identity()).unwrap();
        let e = from_competition_layout(&seg, &ct_geometry(true), [4, 3, 6]).unwrap_err();
        assert!(
            e.to_string()
                .contains("[4, 3, 5] voxels but the CT is [4, 3, 6]"),
            "{e}"
        );
    }
}
