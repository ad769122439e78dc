//! The stage-2 region of interest: the bounding box of the predicted C1-C7 grown by a margin
//! (5 mm in the method), resampled to the fracture model's spacing. Every per-study volume of
//! stage 2 and 3 (CT, vertebrae, box masks, pseudo labels, probabilities) lives on this grid,
//! and each file carries its geometry, so any of them can be mapped back to the CT.

use flow_imaging::ops::{
    bbox_where, crop, grow_bbox_mm, resample_to_grid, resample_to_spacing, BoundingBox,
    Interpolation,
};
use flow_imaging::{Volume, Voxel};

use crate::error::{Result, Rsna7Error};

/// Where the ROI of one study lies on its CT grid.
#[derive(Clone, Copy, Debug)]
pub struct Roi {
    pub bbox: BoundingBox,
    pub spacing_xyz: [f64; 3],
}

impl Roi {
    /// The ROI around the C1-C7 labels of `vertebrae` (on the CT grid).
    pub fn around_cervical(
        uid: &str,
        vertebrae: &Volume<u8>,
        margin_mm: f64,
        spacing_xyz: [f64; 3],
    ) -> Result<Self> {
        let bbox = bbox_where(vertebrae, |l| (1..=7).contains(&l))
            .ok_or_else(|| Rsna7Error::study(uid, "stage 1 found no cervical vertebra, so there is no region to look for fractures in"))?;
        Ok(Self {
            bbox: grow_bbox_mm(vertebrae, &bbox, [margin_mm; 3]),
            spacing_xyz,
        })
    }

    /// The body's bounding box (voxels above -200 HU): the fallback region of a study in which
    /// stage 1 found no cervical vertebra, so the study still gets fracture probabilities.
    pub fn around_body<T: Voxel>(uid: &str, ct: &Volume<T>, spacing_xyz: [f64; 3]) -> Result<Self> {
        let bbox = bbox_where(ct, |v| v.to_f64() > -200.0)
            .ok_or_else(|| Rsna7Error::study(uid, "the CT has no voxel above -200 HU"))?;
        Ok(Self { bbox, spacing_xyz })
    }

    /// `v` (on the CT grid) cut to the ROI and resampled to its spacing.
    pub fn extract<T: Voxel>(&self, v: &Volume<T>, interp: Interpolation) -> Volume<T> {
        resample_to_spacing(&crop(v, &self.bbox), self.spacing_xyz, interp)
    }
}

/// `v` (any grid) resampled onto the grid of `like` (e.g. a ground-truth mask onto the ROI).
pub fn onto_grid_of<T: Voxel, U: Voxel>(
    v: &Volume<T>,
    like: &Volume<U>,
    interp: Interpolation,
) -> Volume<T> {
    resample_to_grid(v, like.dims(), like.geometry, interp, T::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_imaging::Geometry;

    #[test]
    fn cervical_roi_grows_the_c1_c7_box_and_body_roi_is_the_fallback() {
        let mut vert = Volume::filled([20, 20, 20], 0u8, Geometry::identity()).unwrap();
        vert.set(10, 10, 10, 3);
        vert.set(12, 10, 11, 5);
        vert.set(0, 0, 0, 8); // T1 does not widen the region
        let roi = Roi::around_cervical("s", &vert, 2.0, [1.0; 3]).unwrap();
        assert_eq!(roi.bbox.min, [8, 8, 8]);
        assert_eq!(roi.bbox.max, [14, 12, 13]);
        let cut = roi.extract(&vert, Interpolation::Nearest);
        assert_eq!(cut.dims(), [7, 5, 6]);
        assert_eq!(cut.get(2, 2, 2), 3, "voxels keep their world position");

        let empty = vert.map(|l| u8::from(l == 8) * 8);
        assert!(Roi::around_cervical("s", &empty, 2.0, [1.0; 3]).is_err());
        let mut ct = Volume::filled([20, 20, 20], -1000i16, Geometry::identity()).unwrap();
        ct.set(3, 4, 5, 40);
        ct.set(6, 4, 9, 400);
        let body = Roi::around_body("s", &ct, [1.0; 3]).unwrap();
        assert_eq!((body.bbox.min, body.bbox.max), ([3, 4, 5], [6, 4, 9]));
    }
}
