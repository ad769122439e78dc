//! Scan geometry of a synthetic study: the voxel grid, its place in patient space (DICOM LPS,
//! mm), the order of the files, and the pixel storage.
//!
//! Internal arrays are indexed `[k][row][col]` with `k` ascending in physical z (inferior to
//! superior); columns run along +x (patient left), rows along +y (posterior), as in an axial
//! DICOM slice with ImageOrientationPatient `1\0\0\0\1\0`. File numbers follow acquisition
//! order, which is superior-to-inferior for most studies.

use glam::DVec3;
use serde::{Deserialize, Serialize};

/// Direction in which file numbers `1..=n` walk through the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceOrder {
    /// File 1 is the most superior slice (the common case).
    SuperiorToInferior,
    /// File 1 is the most inferior slice.
    InferiorToSuperior,
}

/// How the stored integers map to HU (slope is always 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelStorage {
    /// PixelRepresentation 1, stored = HU - intercept.
    Int16 { intercept: i32 },
    /// PixelRepresentation 0, stored = HU - intercept (intercept -1024 keeps air >= 0).
    Uint16 { intercept: i32 },
}

impl PixelStorage {
    /// RescaleIntercept of the files.
    pub fn intercept(self) -> i32 {
        match self {
            Self::Int16 { intercept } | Self::Uint16 { intercept } => intercept,
        }
    }

    /// Whether PixelRepresentation is 1 (signed).
    pub fn signed(self) -> bool {
        matches!(self, Self::Int16 { .. })
    }

    /// The stored value of `hu` (clamped into the type's range), as the 16 raw bits.
    pub fn store(self, hu: i16) -> u16 {
        let v = hu as i32 - self.intercept();
        match self {
            Self::Int16 { .. } => v.clamp(i16::MIN as i32, i16::MAX as i32) as i16 as u16,
            Self::Uint16 { .. } => v.clamp(0, u16::MAX as i32) as u16,
        }
    }
}

/// The voxel grid of one study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanGeometry {
    pub rows: usize,
    pub cols: usize,
    pub slices: usize,
    /// In-plane spacing (same for rows and columns), mm.
    pub pixel_spacing: f64,
    /// Distance between consecutive slice centres, mm.
    pub slice_spacing: f64,
    /// Nominal reconstructed slice thickness, mm (>= slice spacing).
    pub slice_thickness: f64,
    /// Patient-space position of voxel `[k=0][row=0][col=0]` (the most inferior slice).
    pub origin: DVec3,
    pub order: SliceOrder,
    pub storage: PixelStorage,
}

impl ScanGeometry {
    /// Voxels in the volume.
    pub fn voxel_count(&self) -> usize {
        self.rows * self.cols * self.slices
    }

    /// Patient-space position (mm) of voxel (col, row, k).
    pub fn world(&self, col: usize, row: usize, k: usize) -> DVec3 {
        self.origin
            + DVec3::new(
                col as f64 * self.pixel_spacing,
                row as f64 * self.pixel_spacing,
                k as f64 * self.slice_spacing,
            )
    }

    /// Physical z of slice `k`.
    pub fn slice_z(&self, k: usize) -> f64 {
        self.origin.z + k as f64 * self.slice_spacing
    }

    /// File number (`<n>.dcm`, 1-based) of ascending-z slice index `k`.
    pub fn file_number(&self, k: usize) -> usize {
        match self.order {
            SliceOrder::SuperiorToInferior => self.slices - k,
            SliceOrder::InferiorToSuperior => k + 1,
        }
    }

    /// Ascending-z slice index of file number `n`, if it exists.
    pub fn slice_of_file(&self, n: usize) -> Option<usize> {
        if n == 0 || n > self.slices {
            return None;
        }
        Some(match self.order {
            SliceOrder::SuperiorToInferior => self.slices - n,
            SliceOrder::InferiorToSuperior => n - 1,
        })
    }

    /// Voxel (col, row, k) containing patient-space point `p`, if inside the grid.
    pub fn voxel_of(&self, p: DVec3) -> Option<(usize, usize, usize)> {
        let q = p - self.origin;
        let c = (q.x / self.pixel_spacing).round();
        let r = (q.y / self.pixel_spacing).round();
        let k = (q.z / self.slice_spacing).round();
        let inside = |v: f64, n: usize| v >= 0.0 && v < n as f64;
        (inside(c, self.cols) && inside(r, self.rows) && inside(k, self.slices))
            .then_some((c as usize, r as usize, k as usize))
    }

    /// Largest voxel edge, mm.
    pub fn max_spacing(&self) -> f64 {
        self.pixel_spacing.max(self.slice_spacing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(order: SliceOrder) -> ScanGeometry {
        ScanGeometry {
            rows: 4,
            cols: 5,
            slices: 3,
            pixel_spacing: 0.5,
            slice_spacing: 2.0,
            slice_thickness: 2.0,
            origin: DVec3::new(-1.0, -2.0, 10.0),
            order,
            storage: PixelStorage::Int16 { intercept: 0 },
        }
    }

    #[test]
    fn file_numbers_round_trip() {
        for order in [
            SliceOrder::SuperiorToInferior,
            SliceOrder::InferiorToSuperior,
        ] {
            let g = geometry(order);
            let mut seen: Vec<usize> = (0..3).map(|k| g.file_number(k)).collect();
            for k in 0..3 {
                assert_eq!(g.slice_of_file(g.file_number(k)), Some(k));
            }
            seen.sort();
            assert_eq!(seen, vec![1, 2, 3]);
            assert_eq!(g.slice_of_file(0), None);
            assert_eq!(g.slice_of_file(4), None);
        }
        assert_eq!(geometry(SliceOrder::SuperiorToInferior).file_number(2), 1);
    }

    #[test]
    fn world_and_voxel_agree() {
        let g = geometry(SliceOrder::SuperiorToInferior);
        assert_eq!(g.voxel_of(g.world(3, 2, 1)), Some((3, 2, 1)));
        assert_eq!(g.voxel_of(DVec3::new(-5.0, 0.0, 10.0)), None);
    }

    #[test]
    fn storage_matches_intercept() {
        let s = PixelStorage::Uint16 { intercept: -1024 };
        assert_eq!(s.store(-1024), 0);
        assert_eq!(s.store(-2000), 0);
        assert_eq!(s.store(1000), 2024);
        let s = PixelStorage::Int16 { intercept: -1024 };
        assert_eq!(s.store(-1000) as i16, 24);
    }
}
