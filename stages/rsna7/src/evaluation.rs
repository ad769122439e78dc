//! Measures for the report: pooled Dice over many studies, and 2D slices (CT windowed to
//! 8 bits, label overlays) cut from ROI volumes for figures.

use flow_imaging::Volume;
use serde::Serialize;

/// Dice pooled over studies: true positives, predicted and true voxel counts summed first,
/// so studies without any fracture still count their false positives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PooledDice {
    pub tp: u64,
    pub predicted: u64,
    pub truth: u64,
}

impl PooledDice {
    pub fn add(&mut self, pred: &[bool], truth: &[bool]) {
        for (&p, &t) in pred.iter().zip(truth) {
            self.tp += u64::from(p && t);
            self.predicted += u64::from(p);
            self.truth += u64::from(t);
        }
    }

    pub fn dice(&self) -> Option<f64> {
        (self.predicted + self.truth > 0)
            .then(|| 2.0 * self.tp as f64 / (self.predicted + self.truth) as f64)
    }
}

/// A 2D cut of ROI volumes: rows top to bottom, `width * height` values each.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceCut {
    pub width: usize,
    pub height: usize,
    pub ct: Vec<u8>,
    pub vertebrae: Vec<u8>,
    pub predicted: Vec<u8>,
    pub truth: Option<Vec<u8>>,
}

/// Which plane to cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// Constant `k` (z): image rows follow `j` (y), columns `i` (x).
    Axial,
    /// Constant `i` (x): rows follow `k` with the top slice (largest `k`) first, columns `j`.
    Sagittal,
}

/// Bone window (HU) used for figures.
const WINDOW: (f32, f32) = (-400.0, 1400.0);

fn window(hu: f32) -> u8 {
    (((hu - WINDOW.0) / (WINDOW.1 - WINDOW.0)).clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Cuts `plane` at `index` from volumes on one grid (`ct` in HU, `prob` thresholded at 0.5).
pub fn cut(
    plane: Plane,
    index: usize,
    ct: &Volume<f32>,
    vertebrae: &Volume<u8>,
    prob: &Volume<f32>,
    truth: Option<&Volume<u8>>,
) -> SliceCut {
    let [nx, ny, nz] = ct.dims();
    let (width, height) = match plane {
        Plane::Axial => (nx, ny),
        Plane::Sagittal => (ny, nz),
    };
    let at = |r: usize, c: usize| match plane {
        Plane::Axial => (c, r, index.min(nz - 1)),
        Plane::Sagittal => (index.min(nx - 1), c, nz - 1 - r),
    };
    let mut s = SliceCut {
        width,
        height,
        ct: Vec::new(),
        vertebrae: Vec::new(),
        predicted: Vec::new(),
        truth: truth.map(|_| Vec::new()),
    };
    for r in 0..height {
        for c in 0..width {
            let (i, j, k) = at(r, c);
            s.ct.push(window(ct.get(i, j, k)));
            s.vertebrae.push(vertebrae.get(i, j, k).min(8));
            s.predicted.push(u8::from(prob.get(i, j, k) >= 0.5));
            if let (Some(t), Some(out)) = (truth, s.truth.as_mut()) {
                out.push(u8::from(t.get(i, j, k) != 0));
            }
        }
    }
    s
}

/// The voxel index `(i, j, k)` of the centre of mass of the non-zero voxels, if any.
pub fn centre_of(mask: &Volume<u8>) -> Option<[usize; 3]> {
    let [nx, ny, _] = mask.dims();
    let (mut sum, mut n) = ([0f64; 3], 0f64);
    for (idx, &v) in mask.data().iter().enumerate() {
        if v != 0 {
            let (i, j, k) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
            sum[0] += i as f64;
            sum[1] += j as f64;
            sum[2] += k as f64;
            n += 1.0;
        }
    }
    (n > 0.0).then(|| sum.map(|s| (s / n).round() as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_imaging::Geometry;

    #[test]
    fn pooled_dice_counts_false_positives_of_negative_studies() {
        let mut d = PooledDice::default();
        d.add(&[true, true], &[true, false]);
        d.add(&[true, false], &[false, false]);
        assert_eq!(d.dice(), Some(2.0 / 4.0));
        assert_eq!(PooledDice::default().dice(), None);
    }

    #[test]
    fn sagittal_cut_puts_the_top_slice_first() {
        let g = Geometry::identity();
        let mut ct = Volume::filled([2, 3, 4], -1000.0f32, g).unwrap();
        ct.set(1, 2, 3, 1400.0);
        let zeros = ct.map(|_| 0u8);
        let s = cut(Plane::Sagittal, 1, &ct, &zeros, &ct.map(|_| 0.0), None);
        assert_eq!((s.width, s.height), (3, 4));
        assert_eq!(s.ct[2], 255, "voxel (j=2, k=3) is row 0, column 2");
        assert_eq!(s.ct.iter().filter(|&&v| v == 255).count(), 1);
        let mut m = zeros.clone();
        m.set(1, 1, 1, 1);
        m.set(1, 1, 3, 1);
        assert_eq!(centre_of(&m), Some([1, 1, 2]));
    }
}
