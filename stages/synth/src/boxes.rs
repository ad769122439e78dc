//! Axial bounding boxes around fractures, in the competition's `train_bounding_boxes.csv`
//! convention: `x` = column and `y` = row of the top-left corner in pixels, `slice_number` =
//! the file number `<n>` of `<n>.dcm`.
//!
//! One box per crack per slice the crack's truth mask crosses: the 2D bounding box of that
//! crack's voxels on the slice, grown by a margin of about 1 mm and clipped to the image. The
//! method's rule `x0 = round(x), x1 = round(x + width)` (inclusive) gives back exactly the
//! grown box.

use crate::geometry::ScanGeometry;
use serde::{Deserialize, Serialize};

/// One row of `train_bounding_boxes.csv` (without the study UID).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FractureBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub slice_number: usize,
    /// Index of the crack (truth only; not written to the public CSV).
    pub crack: usize,
}

/// Boxes of every crack on every slice it crosses, ordered by file number, then crack.
pub fn fracture_boxes(crack_ids: &[u8], geom: &ScanGeometry, cracks: usize) -> Vec<FractureBox> {
    let plane = geom.rows * geom.cols;
    let margin = (1.0 / geom.pixel_spacing).ceil() as usize;
    let mut out = Vec::new();
    for k in 0..geom.slices {
        let slice = &crack_ids[k * plane..(k + 1) * plane];
        for crack in 0..cracks {
            let id = crack as u8 + 1;
            let mut bounds: Option<(usize, usize, usize, usize)> = None;
            for (i, _) in slice.iter().enumerate().filter(|(_, &v)| v == id) {
                let (r, c) = (i / geom.cols, i % geom.cols);
                bounds = Some(match bounds {
                    None => (c, r, c, r),
                    Some((c0, r0, c1, r1)) => (c0.min(c), r0.min(r), c1.max(c), r1.max(r)),
                });
            }
            if let Some((c0, r0, c1, r1)) = bounds {
                let c0 = c0.saturating_sub(margin);
                let r0 = r0.saturating_sub(margin);
                let c1 = (c1 + margin).min(geom.cols - 1);
                let r1 = (r1 + margin).min(geom.rows - 1);
                out.push(FractureBox {
                    x: c0 as f64,
                    y: r0 as f64,
                    width: (c1 - c0) as f64,
                    height: (r1 - r0) as f64,
                    slice_number: geom.file_number(k),
                    crack,
                });
            }
        }
    }
    out.sort_by_key(|b| (b.slice_number, b.crack));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{PixelStorage, SliceOrder};
    use glam::DVec3;

    #[test]
    fn boxes_cover_each_crack_per_slice() {
        let geom = ScanGeometry {
            rows: 6,
            cols: 8,
            slices: 3,
            pixel_spacing: 2.0,
            slice_spacing: 2.0,
            slice_thickness: 2.0,
            origin: DVec3::ZERO,
            order: SliceOrder::SuperiorToInferior,
            storage: PixelStorage::Int16 { intercept: 0 },
        };
        let mut ids = vec![0u8; 6 * 8 * 3];
        let at = |k: usize, row: usize, col: usize| (k * 6 + row) * 8 + col;
        ids[at(0, 2, 3)] = 1;
        ids[at(0, 3, 5)] = 1;
        ids[at(2, 5, 7)] = 2;
        let boxes = fracture_boxes(&ids, &geom, 2);
        assert_eq!(boxes.len(), 2);
        // Slice k = 2 is file 1 (superior first).
        assert_eq!(boxes[0].slice_number, 1);
        assert_eq!(
            (boxes[0].x, boxes[0].y, boxes[0].width, boxes[0].height),
            (6.0, 4.0, 1.0, 1.0)
        );
        assert_eq!(boxes[1].slice_number, 3);
        assert_eq!(
            (boxes[1].x, boxes[1].y, boxes[1].width, boxes[1].height),
            (2.0, 1.0, 4.0, 3.0)
        );
    }
}
