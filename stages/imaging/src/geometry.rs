//! Voxel-to-world geometry of a volume in NIfTI's RAS+ world frame (millimetres).
//!
//! World position of voxel index `(i, j, k)` is `origin + direction · diag(spacing) · (i, j, k)`.
//! The direction matrix's columns are unit vectors of the three voxel axes. Everything in this
//! crate keeps geometry in RAS; the one place that converts from DICOM's LPS frame is
//! [`crate::dicom_frame`].

use serde::{Deserialize, Serialize};

/// Spacing, origin and axis directions of a 3D voxel grid, in RAS+ millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Distance between voxel centres along each voxel axis (mm, > 0).
    pub spacing: [f64; 3],
    /// World (RAS) position of the centre of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// `direction[r][c]`: component `r` (R, A, S) of the unit vector of voxel axis `c`.
    pub direction: [[f64; 3]; 3],
}

impl Default for Geometry {
    fn default() -> Self {
        Self::identity()
    }
}

impl Geometry {
    /// Unit spacing, zero origin, axes aligned with R, A, S.
    pub fn identity() -> Self {
        Geometry {
            spacing: [1.0; 3],
            origin: [0.0; 3],
            direction: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        }
    }

    /// Build from a 4x4 (row-major) voxel-to-RAS affine; spacing is the norm of each column.
    /// Returns `None` when a column has zero length or a value is not finite.
    pub fn from_affine(a: &[[f64; 4]; 4]) -> Option<Self> {
        let mut spacing = [0.0; 3];
        let mut direction = [[0.0; 3]; 3];
        for c in 0..3 {
            let norm = (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                return None;
            }
            spacing[c] = norm;
            for r in 0..3 {
                direction[r][c] = a[r][c] / norm;
            }
        }
        let origin = [a[0][3], a[1][3], a[2][3]];
        if origin.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(Geometry {
            spacing,
            origin,
            direction,
        })
    }

    /// The 4x4 row-major voxel-to-RAS affine.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..3 {
                a[r][c] = self.direction[r][c] * self.spacing[c];
            }
            a[r][3] = self.origin[r];
        }
        a[3][3] = 1.0;
        a
    }

    /// Unit vector of voxel axis `axis` (0, 1 or 2) in RAS.
    pub fn axis(&self, axis: usize) -> [f64; 3] {
        [
            self.direction[0][axis],
            self.direction[1][axis],
            self.direction[2][axis],
        ]
    }

    /// World position of a (possibly fractional) voxel index.
    pub fn index_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        let mut p = self.origin;
        for (r, pr) in p.iter_mut().enumerate() {
            for c in 0..3 {
                *pr += self.direction[r][c] * self.spacing[c] * ijk[c];
            }
        }
        p
    }

    /// Continuous voxel index of a world position (inverse of [`Self::index_to_world`]).
    pub fn world_to_index(&self, p: [f64; 3]) -> [f64; 3] {
        let d = [
            p[0] - self.origin[0],
            p[1] - self.origin[1],
            p[2] - self.origin[2],
        ];
        let inv = invert3(&self.direction).unwrap_or(self.direction);
        let mut ijk = [0.0; 3];
        for c in 0..3 {
            let v: f64 = (0..3).map(|r| inv[c][r] * d[r]).sum();
            ijk[c] = v / self.spacing[c];
        }
        ijk
    }

    /// Geometry of the sub-grid starting at voxel `start` (same spacing and directions).
    pub fn shifted(&self, start: [isize; 3]) -> Self {
        let o = self.index_to_world([start[0] as f64, start[1] as f64, start[2] as f64]);
        Geometry { origin: o, ..*self }
    }

    /// Largest absolute difference between two affines' entries (mm for the translation column).
    pub fn max_affine_difference(&self, other: &Geometry) -> f64 {
        let (a, b) = (self.affine(), other.affine());
        let mut m: f64 = 0.0;
        for r in 0..3 {
            for c in 0..4 {
                m = m.max((a[r][c] - b[r][c]).abs());
            }
        }
        m
    }
}

/// Inverse of a 3x3 matrix, `None` when (nearly) singular.
pub(crate) fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let inv_det = 1.0 / det;
    let mut r = [[0.0; 3]; 3];
    r[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) * inv_det;
    r[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * inv_det;
    r[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * inv_det;
    r[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) * inv_det;
    r[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * inv_det;
    r[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * inv_det;
    r[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) * inv_det;
    r[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * inv_det;
    r[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * inv_det;
    Some(r)
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(crate) fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oblique() -> Geometry {
        let (s, c) = (0.3f64.sin(), 0.3f64.cos());
        Geometry {
            spacing: [0.7, 0.8, 1.25],
            origin: [-120.0, 30.5, 77.0],
            direction: [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]],
        }
    }

    #[test]
    fn affine_round_trip() {
        let g = oblique();
        let back = Geometry::from_affine(&g.affine()).unwrap();
        assert!(g.max_affine_difference(&back) < 1e-12);
    }

    #[test]
    fn world_index_round_trip() {
        let g = oblique();
        let ijk = [3.5, -2.0, 10.25];
        let back = g.world_to_index(g.index_to_world(ijk));
        for a in 0..3 {
            assert!((back[a] - ijk[a]).abs() < 1e-9, "{back:?}");
        }
    }

    #[test]
    fn degenerate_affine_rejected() {
        let mut a = Geometry::identity().affine();
        a[0][0] = 0.0;
        assert!(Geometry::from_affine(&a).is_none());
    }
}
