//! Cropping and padding that keep every voxel at its world position.

use super::bbox::BoundingBox;
use crate::volume::{Volume, Voxel};

/// The sub-volume `bbox` (inclusive, clipped to the volume), geometry shifted accordingly.
pub fn crop<T: Voxel>(v: &Volume<T>, bbox: &BoundingBox) -> Volume<T> {
    let d = v.dims();
    let min = [0, 1, 2].map(|a| bbox.min[a].min(d[a] - 1));
    let max = [0, 1, 2].map(|a| bbox.max[a].clamp(min[a], d[a] - 1));
    let size = [0, 1, 2].map(|a| max[a] - min[a] + 1);
    let mut data = Vec::with_capacity(size[0] * size[1] * size[2]);
    for k in min[2]..=max[2] {
        for j in min[1]..=max[1] {
            let start = v.index(min[0], j, k);
            data.extend_from_slice(&v.data()[start..start + size[0]]);
        }
    }
    let geometry = v
        .geometry
        .shifted([min[0] as isize, min[1] as isize, min[2] as isize]);
    Volume::from_vec(size, data, geometry).expect("crop of a valid volume is valid")
}

/// `bbox` grown by `margin_mm` on each side (converted with the volume's spacing, rounded
/// up to whole voxels) and clipped to the volume.
pub fn grow_bbox_mm<T: Voxel>(
    v: &Volume<T>,
    bbox: &BoundingBox,
    margin_mm: [f64; 3],
) -> BoundingBox {
    let d = v.dims();
    let mut out = *bbox;
    for a in 0..3 {
        let m = (margin_mm[a].max(0.0) / v.geometry.spacing[a]).ceil() as usize;
        out.min[a] = bbox.min[a].saturating_sub(m);
        out.max[a] = (bbox.max[a] + m).min(d[a] - 1);
    }
    out
}

/// Crop to `bbox` plus a margin in millimetres.
pub fn crop_with_margin_mm<T: Voxel>(
    v: &Volume<T>,
    bbox: &BoundingBox,
    margin_mm: [f64; 3],
) -> Volume<T> {
    crop(v, &grow_bbox_mm(v, bbox, margin_mm))
}

/// Add `before` / `after` voxels of `value` on each axis; the original voxels keep their
/// world positions.
pub fn pad<T: Voxel>(v: &Volume<T>, before: [usize; 3], after: [usize; 3], value: T) -> Volume<T> {
    let d = v.dims();
    let size = [0, 1, 2].map(|a| d[a] + before[a] + after[a]);
    let geometry = v.geometry.shifted([
        -(before[0] as isize),
        -(before[1] as isize),
        -(before[2] as isize),
    ]);
    let mut out = Volume::filled(size, value, geometry).expect("padded size is valid");
    for k in 0..d[2] {
        for j in 0..d[1] {
            let src = v.index(0, j, k);
            let dst = out.index(before[0], j + before[1], k + before[2]);
            out.data_mut()[dst..dst + d[0]].copy_from_slice(&v.data()[src..src + d[0]]);
        }
    }
    out
}

/// Pad symmetrically (extra voxel after) so each axis is at least `min_size`.
pub fn pad_to_at_least<T: Voxel>(v: &Volume<T>, min_size: [usize; 3], value: T) -> Volume<T> {
    let d = v.dims();
    let extra = [0, 1, 2].map(|a| min_size[a].saturating_sub(d[a]));
    pad(v, extra.map(|e| e / 2), extra.map(|e| e - e / 2), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    fn ramp() -> Volume<i16> {
        let g = Geometry {
            spacing: [0.5, 1.0, 2.0],
            origin: [10.0, 20.0, 30.0],
            ..Geometry::identity()
        };
        Volume::from_vec([4, 5, 6], (0..120).collect(), g).unwrap()
    }

    #[test]
    fn crop_keeps_world_positions() {
        let v = ramp();
        let c = crop(
            &v,
            &BoundingBox {
                min: [1, 2, 3],
                max: [2, 4, 5],
            },
        );
        assert_eq!(c.dims(), [2, 3, 3]);
        assert_eq!(c.get(0, 0, 0), v.get(1, 2, 3));
        assert_eq!(c.get(1, 2, 2), v.get(2, 4, 5));
        assert_eq!(
            c.geometry.index_to_world([0.0; 3]),
            v.geometry.index_to_world([1.0, 2.0, 3.0])
        );
    }

    #[test]
    fn margin_in_mm_uses_spacing_and_clips() {
        let v = ramp();
        let b = grow_bbox_mm(&v, &BoundingBox::point([2, 2, 2]), [1.0, 1.0, 3.0]);
        assert_eq!(
            b,
            BoundingBox {
                min: [0, 1, 0],
                max: [3, 3, 4]
            }
        );
    }

    #[test]
    fn pad_then_crop_is_identity() {
        let v = ramp();
        let p = pad(&v, [1, 2, 3], [3, 2, 1], -1000);
        assert_eq!(p.dims(), [8, 9, 10]);
        assert_eq!(p.get(0, 0, 0), -1000);
        assert_eq!(p.get(1, 2, 3), v.get(0, 0, 0));
        let back = crop(
            &p,
            &BoundingBox {
                min: [1, 2, 3],
                max: [4, 6, 8],
            },
        );
        assert_eq!(back.data(), v.data());
        assert!(back.geometry.max_affine_difference(&v.geometry) < 1e-12);
        assert_eq!(pad_to_at_least(&v, [5, 5, 9], 0).dims(), [5, 5, 9]);
    }
}
