//! Fracture boxes to a voxel mask on the CT grid (method section 2.3).
//!
//! For each box: `x0 = round(x)`, `x1 = round(x + width)`, same for y, and the mask is set on
//! `[z, y0..=y1, x0..=x1]`, where z is the CT slice whose position matches the
//! ImagePositionPatient of file `<slice_number>.dcm`. `round` is Python's (ties to even), as
//! in the original code. A box whose slice cannot be matched is reported, not skipped.

use super::csv_tables::FractureBox;
use crate::dicom_frame::lps_to_ras;
use crate::dicom_series::{read_slice_header, DicomReadError};
use crate::volume::Volume;
use crate::Geometry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A box that could not be drawn, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmatchedBox {
    pub line: u64,
    pub slice_number: i64,
    pub reason: String,
}

/// The mask and what happened to each box.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxMask {
    pub mask: Volume<u8>,
    /// Boxes drawn.
    pub drawn: usize,
    /// Boxes drawn after clipping to the image.
    pub clipped: usize,
    pub unmatched: Vec<UnmatchedBox>,
}

/// ImagePositionPatient (LPS) of each `<n>.dcm` in a study folder, keyed by `n`. Files whose
/// stem is not a number are ignored (they cannot be a box's slice_number).
pub fn slice_positions(dir: &Path) -> Result<BTreeMap<i64, [f64; 3]>, DicomReadError> {
    let io = |source| DicomReadError::Io {
        path: dir.to_path_buf(),
        cause: source,
    };
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let n = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<i64>().ok());
        if let (Some(n), true) = (n, path.is_file()) {
            out.insert(n, read_slice_header(&path)?.position);
        }
    }
    Ok(out)
}

/// Python's `round` (half to even) as an integer.
fn py_round(v: f64) -> i64 {
    v.round_ties_even() as i64
}

/// CT slice index whose position is `ipp_lps`, if one matches within 10% of the spacing and
/// the position is the slice's first pixel.
fn match_slice(geometry: &Geometry, dims: [usize; 3], ipp_lps: [f64; 3]) -> Result<usize, String> {
    let idx = geometry.world_to_index(lps_to_ras(ipp_lps));
    let k = idx[2].round();
    if (idx[2] - k).abs() > 0.1 || k < 0.0 || k >= dims[2] as f64 {
        return Err(format!(
            "ImagePositionPatient {ipp_lps:?} is at slice index {:.3}, not on a CT slice",
            idx[2]
        ));
    }
    if idx[0].abs() > 0.1 || idx[1].abs() > 0.1 {
        return Err(format!(
            "ImagePositionPatient {ipp_lps:?} is off the CT's first pixel by ({:.2}, {:.2}) voxels",
            idx[0], idx[1]
        ));
    }
    Ok(k as usize)
}

/// Draw `boxes` (all of one study) on the CT grid `(geometry, dims)` using the study's
/// `positions` (from [`slice_positions`]).
pub fn boxes_to_mask(
    boxes: &[FractureBox],
    positions: &BTreeMap<i64, [f64; 3]>,
    geometry: &Geometry,
    dims: [usize; 3],
) -> BoxMask {
    let mut mask = Volume::filled(dims, 0u8, *geometry).expect("CT dims are valid");
    let (mut drawn, mut clipped, mut unmatched) = (0, 0, Vec::new());
    let [nx, ny, _] = dims;
    for b in boxes {
        let miss = |reason: String| UnmatchedBox {
            line: b.line,
            slice_number: b.slice_number,
            reason,
        };
        let Some(&ipp) = positions.get(&b.slice_number) else {
            unmatched.push(miss(format!("no file {}.dcm in the study", b.slice_number)));
            continue;
        };
        let k = match match_slice(geometry, dims, ipp) {
            Ok(k) => k,
            Err(reason) => {
                unmatched.push(miss(reason));
                continue;
            }
        };
        let (x0, x1) = (py_round(b.x), py_round(b.x + b.width));
        let (y0, y1) = (py_round(b.y), py_round(b.y + b.height));
        if x1 < 0 || y1 < 0 || x0 >= nx as i64 || y0 >= ny as i64 {
            unmatched.push(miss(format!(
                "box columns {x0}..={x1}, rows {y0}..={y1} lie outside the {nx}x{ny} image"
            )));
            continue;
        }
        let cx = (x0.max(0) as usize, (x1 as usize).min(nx - 1));
        let cy = (y0.max(0) as usize, (y1 as usize).min(ny - 1));
        if (cx.0 as i64, cx.1 as i64, cy.0 as i64, cy.1 as i64) != (x0, x1, y0, y1) {
            clipped += 1;
        }
        for j in cy.0..=cy.1 {
            let start = mask.index(cx.0, j, k);
            mask.data_mut()[start..=start + (cx.1 - cx.0)].fill(1);
        }
        drawn += 1;
    }
    BoxMask {
        mask,
        drawn,
        clipped,
        unmatched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fbox(x: f64, y: f64, w: f64, h: f64, n: i64) -> FractureBox {
        FractureBox {
            study_uid: "1.2".into(),
            x,
            y,
            width: w,
            height: h,
            slice_number: n,
            line: 2,
        }
    }

    #[test]
    fn box_rule_rounds_half_to_even_and_matches_slices_by_position() {
        // CT: 10x8 pixels, 4 slices, k ascending superior from z = -10 in 2 mm steps.
        let g = crate::dicom_frame::DicomFrame {
            row_cosine: [1.0, 0.0, 0.0],
            column_cosine: [0.0, 1.0, 0.0],
            pixel_spacing: [1.0, 1.0],
            first_position: [-5.0, -4.0, -10.0],
            slice_step: [0.0, 0.0, 2.0],
        }
        .to_geometry();
        // File numbers run superior to inferior: file 1 is z = -4 (k = 3).
        let positions: BTreeMap<i64, [f64; 3]> = (1..=4)
            .map(|n| (n, [-5.0, -4.0, -4.0 - 2.0 * (n - 1) as f64]))
            .collect();
        let boxes = [fbox(2.5, 1.0, 2.0, 1.5, 1), fbox(0.0, 0.0, 1.0, 1.0, 9)];
        let out = boxes_to_mask(&boxes, &positions, &g, [10, 8, 4]);
        // x0 = round(2.5) = 2, x1 = round(4.5) = 4; y0 = 1, y1 = round(2.5) = 2.
        let on: Vec<[usize; 3]> = (0..out.mask.len())
            .filter(|&i| out.mask.data()[i] == 1)
            .map(|i| [i % 10, (i / 10) % 8, i / 80])
            .collect();
        assert_eq!(
            on,
            vec![
                [2, 1, 3],
                [3, 1, 3],
                [4, 1, 3],
                [2, 2, 3],
                [3, 2, 3],
                [4, 2, 3]
            ]
        );
        assert_eq!(out.drawn, 1);
        assert_eq!(out.unmatched.len(), 1);
        assert_eq!(out.unmatched[0].reason, "no file 9.dcm in the study");
    }

    #[test]
    fn off_grid_slice_is_reported() {
        let g = Geometry::identity();
        let positions = BTreeMap::from([(1, [0.0, 0.0, 1.5])]);
        let out = boxes_to_mask(&[fbox(0.0, 0.0, 1.0, 1.0, 1)], &positions, &g, [4, 4, 4]);
        assert_eq!(out.drawn, 0);
        assert!(
            out.unmatched[0].reason.contains("not on a CT slice"),
            "{:?}",
            out.unmatched
        );
    }
}
