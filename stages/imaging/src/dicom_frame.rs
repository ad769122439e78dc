//! The one place where DICOM's patient frame (LPS+) meets NIfTI's world frame (RAS+).
//!
//! DICOM: ImagePositionPatient is the LPS centre of the first transmitted pixel (row 0,
//! column 0); ImageOrientationPatient holds the row cosine (direction of increasing column
//! index) then the column cosine (direction of increasing row index); PixelSpacing is
//! `[between rows, between columns]`. Our voxel `(i, j, k)` is column `i`, row `j`, slice `k`
//! in the order the caller sorted the slices. RAS = diag(-1, -1, 1) · LPS.

use crate::geometry::{cross, norm, Geometry};

/// Flip an LPS point or vector to RAS (and back: the map is its own inverse).
#[inline]
pub fn lps_to_ras(p: [f64; 3]) -> [f64; 3] {
    [-p[0], -p[1], p[2]]
}

/// Flip a RAS point or vector to LPS.
#[inline]
pub fn ras_to_lps(p: [f64; 3]) -> [f64; 3] {
    lps_to_ras(p)
}

/// Geometry of a stack of DICOM slices as DICOM states it (all vectors in LPS).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DicomFrame {
    /// ImageOrientationPatient[0..3]: direction of increasing column index.
    pub row_cosine: [f64; 3],
    /// ImageOrientationPatient[3..6]: direction of increasing row index.
    pub column_cosine: [f64; 3],
    /// PixelSpacing as stored: `[row spacing (between rows), column spacing]` in mm.
    pub pixel_spacing: [f64; 2],
    /// ImagePositionPatient of the first slice of the stack (k = 0).
    pub first_position: [f64; 3],
    /// Vector from one slice's position to the next one's (LPS mm).
    pub slice_step: [f64; 3],
}

impl DicomFrame {
    /// The slice normal `row × column` (unit length when the cosines are orthonormal).
    pub fn normal(&self) -> [f64; 3] {
        cross(self.row_cosine, self.column_cosine)
    }

    /// NIfTI (RAS) geometry of the grid: voxel (column, row, slice).
    pub fn to_geometry(&self) -> Geometry {
        let step_len = norm(self.slice_step);
        let slice_dir = if step_len > 0.0 {
            self.slice_step.map(|v| v / step_len)
        } else {
            self.normal()
        };
        let axes = [
            lps_to_ras(self.row_cosine),
            lps_to_ras(self.column_cosine),
            lps_to_ras(slice_dir),
        ];
        let mut direction = [[0.0; 3]; 3];
        for (c, axis) in axes.iter().enumerate() {
            for r in 0..3 {
                direction[r][c] = axis[r];
            }
        }
        Geometry {
            spacing: [
                self.pixel_spacing[1],
                self.pixel_spacing[0],
                if step_len > 0.0 { step_len } else { 1.0 },
            ],
            origin: lps_to_ras(self.first_position),
            direction,
        }
    }

    /// DICOM description of a RAS geometry (inverse of [`Self::to_geometry`]).
    pub fn from_geometry(g: &Geometry) -> Self {
        let slice_dir = ras_to_lps(g.axis(2));
        DicomFrame {
            row_cosine: ras_to_lps(g.axis(0)),
            column_cosine: ras_to_lps(g.axis(1)),
            pixel_spacing: [g.spacing[1], g.spacing[0]],
            first_position: ras_to_lps(g.origin),
            slice_step: slice_dir.map(|v| v * g.spacing[2]),
        }
    }

    /// ImagePositionPatient (LPS) of slice `k`.
    pub fn position(&self, k: usize) -> [f64; 3] {
        let k = k as f64;
        [
            self.first_position[0] + k * self.slice_step[0],
            self.first_position[1] + k * self.slice_step[1],
            self.first_position[2] + k * self.slice_step[2],
        ]
    }

    /// ImageOrientationPatient as the six stored numbers.
    pub fn orientation(&self) -> [f64; 6] {
        let (r, c) = (self.row_cosine, self.column_cosine);
        [r[0], r[1], r[2], c[0], c[1], c[2]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standard axial CT: rows run posterior, columns run left, slices climb superior.
    fn axial() -> DicomFrame {
        DicomFrame {
            row_cosine: [1.0, 0.0, 0.0],
            column_cosine: [0.0, 1.0, 0.0],
            pixel_spacing: [0.5, 0.6],
            first_position: [-100.0, -120.0, -300.0],
            slice_step: [0.0, 0.0, 0.8],
        }
    }

    #[test]
    fn axial_ct_maps_to_expected_ras_affine() {
        let g = axial().to_geometry();
        // Column index grows toward patient left = RAS -x; spacing is the column spacing.
        let a = g.affine();
        assert_eq!(a[0], [-0.6, 0.0, 0.0, 100.0]);
        assert_eq!(a[1], [0.0, -0.5, 0.0, 120.0]);
        assert_eq!(a[2], [0.0, 0.0, 0.8, -300.0]);
    }

    #[test]
    fn world_position_matches_dicom_formula() {
        // DICOM PS3.3 C.7.6.2.1.1: P = S + i*dc*X + j*dr*Y (i column, j row), then slice step.
        let f = DicomFrame {
            row_cosine: [0.8, 0.6, 0.0],
            column_cosine: [0.0, 0.0, -1.0],
            pixel_spacing: [0.7, 0.9],
            first_position: [10.0, 20.0, 30.0],
            slice_step: [0.6 * 2.0, -0.8 * 2.0, 0.0],
        };
        let g = f.to_geometry();
        let (i, j, k) = (5.0, 7.0, 3.0);
        let mut expected = [0.0; 3];
        for a in 0..3 {
            expected[a] = f.first_position[a]
                + i * 0.9 * f.row_cosine[a]
                + j * 0.7 * f.column_cosine[a]
                + k * f.slice_step[a];
        }
        let got = ras_to_lps(g.index_to_world([i, j, k]));
        for a in 0..3 {
            assert!(
                (got[a] - expected[a]).abs() < 1e-9,
                "{got:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn geometry_round_trip() {
        let f = axial();
        let back = DicomFrame::from_geometry(&f.to_geometry());
        assert_eq!(back.orientation(), f.orientation());
        assert_eq!(back.pixel_spacing, f.pixel_spacing);
        for k in 0..5 {
            let (a, b) = (back.position(k), f.position(k));
            for x in 0..3 {
                assert!((a[x] - b[x]).abs() < 1e-12);
            }
        }
    }
}
