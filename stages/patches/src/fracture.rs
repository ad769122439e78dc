//! The synthetic-fracture augmentation of stage 2 round 1 (rsna7-method.md section 4), drawn
//! the way cracks look in CT: a thin slab through the bone of one vertebra, starting at a
//! random point of its surface, in any orientation. The slab is `width` thick and spans an
//! ellipse of `length` by `depth` within its plane; its gap narrows towards the rim. A voxel
//! takes the gap value (drawn from a range, e.g. fluid to soft tissue) in proportion to the
//! part of it the gap covers (partial volume), so a 1 mm crack on a 2 mm grid is a dip, not a
//! hole. The label is the slab widened by a margin, inside the vertebra. Sizes are in
//! millimetres, converted with the patch's voxel spacing.

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
    ShapeMismatch {
        what: &'static str,
        expected: [usize; 3],
        actual: [usize; 3],
    },
}

/// Parameters of the synthetic fracture.
#[derive(Clone, Debug, PartialEq)]
pub struct FractureConfig {
    /// Probability that a batch gets synthetic fractures (one per sample that shows bone).
    pub p_batch: f64,
    /// Thickness of the gap at its centre (mm).
    pub width_mm: Range,
    /// First in-plane diameter of the crack (mm).
    pub length_mm: Range,
    /// Second in-plane diameter of the crack (mm).
    pub depth_mm: Range,
    /// Image value of the gap (in the image's units, e.g. normalised CT), drawn per crack.
    pub gap_value: Range,
    /// Margin added on each side of the slab for the label (mm).
    pub label_margin_mm: f64,
    /// Label value written (the fracture class).
    pub label_value: u8,
}

impl FractureConfig {
    /// The method's sizes: p 0.5, a gap 1-2 mm thick spanning 4-12 mm by 2-15 mm, label
    /// margin 0.5 mm; `gap_value` is the range of the gap's image value.
    pub fn method_default(gap_value: Range) -> Self {
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
    /// Surface voxel of the vertebra the crack is centred on, `[z, y, x]`.
    pub centre: [usize; 3],
    /// Unit normal of the crack plane, `[z, y, x]` in millimetre space.
    pub normal: [f64; 3],
    pub width_mm: f64,
    pub length_mm: f64,
    pub depth_mm: f64,
    pub gap_value: f32,
    /// Image voxels moved towards the gap value.
    pub image_voxels: usize,
    /// Label voxels set to the fracture class.
    pub label_voxels: usize,
}

fn check_shape(
    what: &'static str,
    expected: [usize; 3],
    actual: [usize; 3],
) -> Result<(), FractureError> {
    if expected == actual {
        Ok(())
    } else {
        Err(FractureError::ShapeMismatch {
            what,
            expected,
            actual,
        })
    }
}

fn unit_vector(rng: &mut impl Rng) -> [f64; 3] {
    loop {
        let v: [f64; 3] = std::array::from_fn(|_| rng.gen_range(-1.0..1.0));
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        if (0.1..=1.0).contains(&n) {
            return v.map(|c| c / n);
        }
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn normalised(v: [f64; 3]) -> [f64; 3] {
    let n = dot(v, v).sqrt();
    v.map(|c| c / n)
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

    // Surface voxels per vertebra: voxels with a face neighbour (inside the patch) outside it.
    let v_at = |z: i64, y: i64, x: i64| -> Option<u8> {
        (z >= 0 && y >= 0 && x >= 0 && z < nz as i64 && y < ny as i64 && x < nx as i64)
            .then(|| vertebrae.get(z as usize, y as usize, x as usize))
    };
    let mut surface: Vec<Vec<[usize; 3]>> = vec![Vec::new(); 256];
    for (i, &v) in vertebrae.as_slice().iter().enumerate() {
        if v == 0 {
            continue;
        }
        let [z, y, x] = vertebrae.coords(i);
        let (z, y, x) = (z as i64, y as i64, x as i64);
        let nbs = [
            (z - 1, y, x),
            (z + 1, y, x),
            (z, y - 1, x),
            (z, y + 1, x),
            (z, y, x - 1),
            (z, y, x + 1),
        ];
        if nbs
            .iter()
            .any(|&(a, b, c)| v_at(a, b, c).is_some_and(|n| n != v))
        {
            surface[v as usize].push([z as usize, y as usize, x as usize]);
        }
    }
    let present: Vec<u8> = (1..256)
        .filter(|&v| !surface[v].is_empty())
        .map(|v| v as u8)
        .collect();
    let Some(&vertebra) = present.choose(rng) else {
        // A vertebra filling the whole patch has no surface in view: cut at any of its voxels.
        let inside: Vec<usize> = vertebrae
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(i, _)| i)
            .collect();
        let Some(&i) = inside.choose(rng) else {
            return Ok(None);
        };
        return Ok(Some(cut(
            image,
            label,
            vertebrae,
            spacing_mm,
            cfg,
            vertebrae.as_slice()[i],
            vertebrae.coords(i),
            rng,
        )));
    };
    let centre = *surface[vertebra as usize]
        .choose(rng)
        .expect("present vertebrae have surface voxels");
    Ok(Some(cut(
        image, label, vertebrae, spacing_mm, cfg, vertebra, centre, rng,
    )))
}

#[allow(clippy::too_many_arguments)]
fn cut(
    image: &mut Grid3<f32>,
    label: &mut Grid3<u8>,
    vertebrae: &Grid3<u8>,
    spacing_mm: [f64; 3],
    cfg: &FractureConfig,
    vertebra: u8,
    centre: [usize; 3],
    rng: &mut impl Rng,
) -> FractureCut {
    let shape = image.shape();
    let normal = unit_vector(rng);
    // Two in-plane axes: any vector not parallel to the normal, made orthogonal.
    let helper = if normal[0].abs() < 0.9 {
        [1.0, 0.0, 0.0]
    } else {
        [0.0, 1.0, 0.0]
    };
    let u = normalised(cross(normal, helper));
    let v = cross(normal, u);
    let width_mm = cfg.width_mm.uniform(rng);
    let length_mm = cfg.length_mm.uniform(rng);
    let depth_mm = cfg.depth_mm.uniform(rng);
    let gap_value = cfg.gap_value.uniform(rng) as f32;
    let (ra, rb, half_w) = (length_mm / 2.0, depth_mm / 2.0, width_mm / 2.0);
    let margin = cfg.label_margin_mm.max(0.0);
    // Extent of one voxel along the normal: how much of the slab's profile it averages.
    let voxel_extent: f64 = (0..3)
        .map(|a| (normal[a] * spacing_mm[a]).abs())
        .sum::<f64>()
        .max(1e-6);
    let reach = ra.max(rb) + half_w + margin + voxel_extent;
    let lo_hi = |a: usize| {
        let r = (reach / spacing_mm[a]).ceil() as i64;
        (
            (centre[a] as i64 - r).max(0) as usize,
            ((centre[a] as i64 + r) as usize).min(shape[a] - 1),
        )
    };
    let ((z0, z1), (y0, y1), (x0, x1)) = (lo_hi(0), lo_hi(1), lo_hi(2));
    let (mut image_voxels, mut label_voxels) = (0, 0);
    for z in z0..=z1 {
        for y in y0..=y1 {
            for x in x0..=x1 {
                if vertebrae.get(z, y, x) != vertebra {
                    continue;
                }
                let d = [0, 1, 2].map(|a| ([z, y, x][a] as f64 - centre[a] as f64) * spacing_mm[a]);
                let (s, a, b) = (dot(d, normal), dot(d, u), dot(d, v));
                let rim = (a / ra).powi(2) + (b / rb).powi(2);
                if rim > 1.0 {
                    continue;
                }
                // The gap narrows to nothing at the rim.
                let hw = half_w * (1.0 - rim).sqrt();
                if s.abs() <= hw + margin {
                    label.set(z, y, x, cfg.label_value);
                    label_voxels += 1;
                }
                let covered = (0.5 + (hw - s.abs()) / voxel_extent).clamp(0.0, 1.0) as f32;
                if covered > 0.0 {
                    let old = image.get(z, y, x);
                    image.set(z, y, x, old + covered * (gap_value - old));
                    image_voxels += 1;
                }
            }
        }
    }
    tracing::trace!(
        vertebra,
        ?centre,
        ?normal,
        width_mm,
        length_mm,
        depth_mm,
        image_voxels,
        label_voxels,
        "synthetic fracture"
    );
    FractureCut {
        vertebra,
        centre,
        normal,
        width_mm,
        length_mm,
        depth_mm,
        gap_value,
        image_voxels,
        label_voxels,
    }
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
        let cfg = FractureConfig::method_default(Range::new(-1.0, -1.0));
        let r = add_synthetic_fracture(
            &mut img,
            &mut lab,
            &vert,
            [1.0; 3],
            &cfg,
            &mut stream_rng(0, 0),
        )
        .unwrap();
        assert_eq!(r, None);
        assert!(img.as_slice().iter().all(|&v| v == 1.0));
    }

    #[test]
    fn rejects_bad_spacing_and_shapes() {
        let mut img = Grid3::filled([4, 8, 8], 1.0f32).unwrap();
        let mut lab = Grid3::filled([4, 8, 8], 0u8).unwrap();
        let vert = Grid3::filled([4, 8, 9], 1u8).unwrap();
        let cfg = FractureConfig::method_default(Range::new(-1.0, -1.0));
        let mut rng = stream_rng(0, 0);
        assert!(matches!(
            add_synthetic_fracture(&mut img, &mut lab, &vert, [1.0, 0.0, 1.0], &cfg, &mut rng),
            Err(FractureError::Spacing(_))
        ));
        assert!(matches!(
            add_synthetic_fracture(&mut img, &mut lab, &vert, [1.0; 3], &cfg, &mut rng),
            Err(FractureError::ShapeMismatch {
                what: "vertebra map",
                ..
            })
        ));
    }

    #[test]
    fn a_vertebra_filling_the_patch_is_still_cut() {
        let mut img = Grid3::filled([12, 12, 12], 2.0f32).unwrap();
        let mut lab = Grid3::filled([12, 12, 12], 0u8).unwrap();
        let vert = Grid3::filled([12, 12, 12], 4u8).unwrap();
        let cfg = FractureConfig::method_default(Range::new(0.0, 0.0));
        let cut = add_synthetic_fracture(
            &mut img,
            &mut lab,
            &vert,
            [1.0; 3],
            &cfg,
            &mut stream_rng(1, 0),
        )
        .unwrap()
        .unwrap();
        assert_eq!(cut.vertebra, 4);
        assert!(cut.label_voxels > 0 && cut.image_voxels > 0);
    }

    #[test]
    fn the_gap_volume_matches_the_crack_and_partial_volume_keeps_thin_cracks_visible() {
        // A 2 mm crack spanning 10 x 8 mm inside a large vertebra on a 0.5 mm grid: the image
        // "mass" moved to the gap value is the crack's volume, 2/3 pi * 5 * 4 * 2 mm^3.
        let shape = [60, 60, 60];
        let vert = Grid3::filled(shape, 1u8).unwrap();
        let fixed = |lo: f64| Range::new(lo, lo);
        let cfg = FractureConfig {
            width_mm: fixed(2.0),
            length_mm: fixed(10.0),
            depth_mm: fixed(8.0),
            gap_value: fixed(0.0),
            label_margin_mm: 0.0,
            ..FractureConfig::method_default(fixed(0.0))
        };
        for seed in 0..4 {
            let mut img = Grid3::filled(shape, 1.0f32).unwrap();
            let mut lab = Grid3::filled(shape, 0u8).unwrap();
            let c = cut(
                &mut img,
                &mut lab,
                &vert,
                [0.5; 3],
                &cfg,
                1,
                [30, 30, 30],
                &mut stream_rng(seed, 0),
            );
            let moved: f64 = img
                .as_slice()
                .iter()
                .map(|&v| f64::from(1.0 - v) * 0.125)
                .sum();
            let expected = 2.0 / 3.0 * std::f64::consts::PI * 5.0 * 4.0 * 2.0;
            assert!(
                (moved / expected - 1.0).abs() < 0.2,
                "seed {seed}: {moved} mm^3 moved, crack {expected} mm^3 ({c:?})"
            );
            let labelled = f64::from(c.label_voxels as u32) * 0.125;
            assert!(
                (labelled / expected - 1.0).abs() < 0.35,
                "label {labelled} mm^3 vs {expected}"
            );
        }
        // A 1 mm crack on a 2 mm grid: no voxel becomes pure gap, but some dip clearly.
        let vert = Grid3::filled([20, 20, 20], 1u8).unwrap();
        let thin = FractureConfig {
            width_mm: fixed(1.0),
            ..cfg
        };
        let mut img = Grid3::filled([20, 20, 20], 1.0f32).unwrap();
        let mut lab = Grid3::filled([20, 20, 20], 0u8).unwrap();
        cut(
            &mut img,
            &mut lab,
            &vert,
            [2.0; 3],
            &thin,
            1,
            [10, 10, 10],
            &mut stream_rng(7, 0),
        );
        let min = img.as_slice().iter().copied().fold(f32::INFINITY, f32::min);
        assert!(min > 0.0 && min < 0.8, "deepest dip {min}");
    }
}
