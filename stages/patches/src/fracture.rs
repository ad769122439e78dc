//! The synthetic-fracture augmentation of stage 2 round 1 (rsna7-method.md section 4): on a
//! random axial slice inside a vertebra, pick a random point on the bone contour and cut a
//! randomly rotated thin rectangle (about 1-2 mm by 4-12 mm) through the bone over 2-15 mm of
//! slices; the CT inside the cut (and inside the vertebra) becomes a low fracture-gap value and
//! the fracture label becomes 1 on a slightly dilated copy of the rectangle, again only inside
//! the vertebra. Sizes are in millimetres, converted with the patch's voxel spacing.

use std::f64::consts::PI;

use rand::seq::SliceRandom;
use rand::Rng;
use thiserror::Error;

use crate::augment::Range;
use crate::grid::Grid3;

/// Errors from a synthetic-fracture call.
#[derive(Debug, Error, PartialEq)]
pub enum FractureError {
    #[error("voxel spacing {0:?} mm must be finite and positive on every axis")]
    Spacing([f64; 3]),
    #[error("{what} has shape {actual:?} but the image has shape {expected:?}")]
    ShapeMismatch { what: &'static str, expected: [usize; 3], actual: [usize; 3] },
}

/// Parameters of the synthetic fracture.
#[derive(Clone, Debug, PartialEq)]
pub struct FractureConfig {
    /// Probability that a batch gets synthetic fractures (one per sample that shows bone).
    pub p_batch: f64,
    /// Short side of the cut (mm).
    pub width_mm: Range,
    /// Long side of the cut (mm).
    pub length_mm: Range,
    /// Extent across axial slices (mm).
    pub depth_mm: Range,
    /// Image value written into the cut (in the image's units, e.g. normalised CT).
    pub gap_value: f32,
    /// In-plane margin added to each side of the rectangle for the label (mm).
    pub label_margin_mm: f64,
    /// Label value written (the fracture class).
    pub label_value: u8,
}

impl FractureConfig {
    /// The method's sizes with the given gap value: p 0.5, 1-2 mm by 4-12 mm over 2-15 mm,
    /// label margin 0.5 mm (about one in-plane voxel at 0.4 mm).
    pub fn method_default(gap_value: f32) -> Self {
        Self {
            p_batch: 0.5,
            width_mm: Range::new(1.0, 2.0),
            length_mm: Range::new(4.0, 12.0),
            depth_mm: Range::new(2.0, 15.0),
            gap_value,
            label_margin_mm: 0.5,
            label_value: 1,
        }
    }
}

/// What one synthetic fracture did, for logging and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct FractureCut {
    /// The vertebra label that was cut.
    pub vertebra: u8,
    /// Contour voxel the rectangle is centred on, `[z, y, x]`.
    pub centre: [usize; 3],
    /// Axial slices touched, `start..end`.
    pub slices: std::ops::Range<usize>,
    /// In-plane direction of the long side, radians from the +x axis towards +y.
    pub angle: f64,
    pub width_mm: f64,
    pub length_mm: f64,
    /// Image voxels set to the gap value.
    pub image_voxels: usize,
    /// Label voxels set to the fracture class.
    pub label_voxels: usize,
}

fn check_shape(what: &'static str, expected: [usize; 3], actual: [usize; 3]) -> Result<(), FractureError> {
    if expected == actual {
        Ok(())
    } else {
        Err(FractureError::ShapeMismatch { what, expected, actual })
    }
}

/// Cuts one synthetic fracture into `image` and `label` using the vertebra map `vertebrae`
/// (0 = background, any other value = one vertebra). Returns `Ok(None)` when the patch shows
/// no vertebra. All random draws come from `rng`.
pub fn add_synthetic_fracture(
    image: &mut Grid3<f32>,
    label: &mut Grid3<u8>,
    vertebrae: &Grid3<u8>,
    spacing_mm: [f64; 3],
    cfg: &FractureConfig,
    rng: &mut impl Rng,
) -> Result<Option<FractureCut>, FractureError> {
    if spacing_mm.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(FractureError::Spacing(spacing_mm));
    }
    let shape = image.shape();
    check_shape("fracture label", shape, label.shape())?;
    check_shape("vertebra map", shape, vertebrae.shape())?;
    let [nz, ny, nx] = shape;

    // Slices where each vertebra appears.
    let mut slices_of: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for z in 0..nz {
        let mut seen = [false; 256];
        for &v in vertebrae.slice_z(z) {
            seen[v as usize] = true;
        }
        for v in 1..256 {
            if seen[v] {
                slices_of[v].push(z);
            }
        }
    }
    let present: Vec<u8> = (1..256).filter(|&v| !slices_of[v].is_empty()).map(|v| v as u8).collect();
    let Some(&vertebra) = present.choose(rng) else {
        return Ok(None);
    };
    let z0 = *slices_of[vertebra as usize].choose(rng).expect("present vertebrae have slices");

    // Contour: voxels of this vertebra with a 4-neighbour in the slice that is not.
    let plane = vertebrae.slice_z(z0);
    let is_v = |y: i64, x: i64| y >= 0 && x >= 0 && y < ny as i64 && x < nx as i64 && plane[y as usize * nx + x as usize] == vertebra;
    let contour: Vec<(usize, usize)> = (0..ny)
        .flat_map(|y| (0..nx).map(move |x| (y, x)))
        .filter(|&(y, x)| {
            let (yi, xi) = (y as i64, x as i64);
            is_v(yi, xi) && !(is_v(yi - 1, xi) && is_v(yi + 1, xi) && is_v(yi, xi - 1) && is_v(yi, xi + 1))
        })
        .collect();
    let &(cy, cx) = contour.choose(rng).expect("a non-empty region of a finite slice has a contour");

    let angle = rng.gen_range(0.0..PI);
    let width_mm = cfg.width_mm.uniform(rng);
    let length_mm = cfg.length_mm.uniform(rng);
    let depth_mm = cfg.depth_mm.uniform(rng);
    let n_slices = ((depth_mm / spacing_mm[0]).round() as usize).clamp(1, nz);
    let start = (z0 as i64 - (n_slices / 2) as i64).clamp(0, (nz - n_slices) as i64) as usize;
    let slices = start..start + n_slices;

    let (dir_y, dir_x) = (angle.sin(), angle.cos());
    let (half_len, half_wid) = (length_mm / 2.0, width_mm / 2.0);
    let margin = cfg.label_margin_mm.max(0.0);
    // In-plane bounding box of the dilated rectangle, in voxels.
    let reach = (half_len + half_wid + margin) * 1.0001;
    let ry = (reach / spacing_mm[1]).ceil() as i64;
    let rx = (reach / spacing_mm[2]).ceil() as i64;
    let (y_lo, y_hi) = ((cy as i64 - ry).max(0) as usize, ((cy as i64 + ry) as usize).min(ny - 1));
    let (x_lo, x_hi) = ((cx as i64 - rx).max(0) as usize, ((cx as i64 + rx) as usize).min(nx - 1));

    let mut image_voxels = 0;
    let mut label_voxels = 0;
    for z in slices.clone() {
        for y in y_lo..=y_hi {
            for x in x_lo..=x_hi {
                if vertebrae.get(z, y, x) != vertebra {
                    continue;
                }
                let dy = (y as f64 - cy as f64) * spacing_mm[1];
                let dx = (x as f64 - cx as f64) * spacing_mm[2];
                let along = (dy * dir_y + dx * dir_x).abs();
                let across = (-dy * dir_x + dx * dir_y).abs();
                if along <= half_len + margin && across <= half_wid + margin {
                    label.set(z, y, x, cfg.label_value);
                    label_voxels += 1;
                    if along <= half_len && across <= half_wid {
                        image.set(z, y, x, cfg.gap_value);
                        image_voxels += 1;
                    }
                }
            }
        }
    }
    tracing::trace!(vertebra, z0, cy, cx, angle, width_mm, length_mm, n_slices, image_voxels, "synthetic fracture");
    Ok(Some(FractureCut { vertebra, centre: [z0, cy, cx], slices, angle, width_mm, length_mm, image_voxels, label_voxels }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeding::stream_rng;

    #[test]
    fn empty_vertebra_map_does_nothing() {
        let mut img = Grid3::filled([4, 8, 8], 1.0f32).unwrap();
        let mut lab = Grid3::filled([4, 8, 8], 0u8).unwrap();
        let vert = Grid3::filled([4, 8, 8], 0u8).unwrap();
        let cfg = FractureConfig::method_default(-1.0);
        let r = add_synthetic_fracture(&mut img, &mut lab, &vert, [1.0; 3], &cfg, &mut stream_rng(0, 0)).unwrap();
        assert_eq!(r, None);
        assert!(img.as_slice().iter().all(|&v| v == 1.0));
    }

    #[test]
    fn rejects_bad_spacing_and_shapes() {
        let mut img = Grid3::filled([4, 8, 8], 1.0f32).unwrap();
        let mut lab = Grid3::filled([4, 8, 8], 0u8).unwrap();
        let vert = Grid3::filled([4, 8, 9], 1u8).unwrap();
        let cfg = FractureConfig::method_default(-1.0);
        let mut rng = stream_rng(0, 0);
        assert!(matches!(
            add_synthetic_fracture(&mut img, &mut lab, &vert, [1.0, 0.0, 1.0], &cfg, &mut rng),
            Err(FractureError::Spacing(_))
        ));
        assert!(matches!(
            add_synthetic_fracture(&mut img, &mut lab, &vert, [1.0; 3], &cfg, &mut rng),
            Err(FractureError::ShapeMismatch { what: "vertebra map", .. })
        ));
    }
}
