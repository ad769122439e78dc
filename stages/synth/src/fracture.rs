//! Fractures: a thin low-density crack through the cortex of one vertebra, with a small
//! displacement of the bone on one side of it.
//!
//! A crack is a disc of radius `radius` on a plane through `centre` (a point just under the
//! bone surface of the chosen part). Inside the bone, voxels within `half_width` of the plane
//! are replaced by a fluid-like density; the gap narrows to zero at the crack's rim. Bone on
//! the positive side of the plane is shifted by `displacement` (tangent to the plane), tapering
//! to zero at the rim, so the fragments step against each other like a real fracture line.

use crate::anatomy::PlacedVertebra;
use crate::vertebra::{Level, Part};
use glam::DVec3;
use rand::Rng;
use rand_distr::{Distribution, UnitSphere};
use serde::{Deserialize, Serialize};

/// One crack in one vertebra (world coordinates, mm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crack {
    pub level: Level,
    pub part: Part,
    pub centre: DVec3,
    /// Unit normal of the crack plane.
    pub normal: DVec3,
    pub half_width: f64,
    pub radius: f64,
    /// Shift of the bone on the positive side, tangent to the plane.
    pub displacement: DVec3,
    /// Density of the gap (hematoma, fluid), HU.
    pub gap_hu: f64,
}

impl Crack {
    /// Signed distance to the plane and distance from the centre within the plane.
    pub fn plane_coords(&self, x: DVec3) -> (f64, f64) {
        let d = x - self.centre;
        let sd = d.dot(self.normal);
        (sd, (d - self.normal * sd).length())
    }

    /// Fraction of displacement and gap width at in-plane distance `r` (1 at the centre, 0 at the rim).
    fn taper(&self, r: f64) -> f64 {
        (1.0 - (r / self.radius).powi(2)).max(0.0)
    }

    /// Where to sample the intact bone for world point `x` (the fragment shift).
    pub fn undisplaced(&self, x: DVec3) -> DVec3 {
        let (sd, r) = self.plane_coords(x);
        if sd > 0.0 {
            x - self.displacement * self.taper(r)
        } else {
            x
        }
    }

    /// Fraction of a voxel of size `voxel` mm around `x` that lies in the gap.
    pub fn gap_fraction(&self, x: DVec3, voxel: f64) -> f64 {
        let (sd, r) = self.plane_coords(x);
        if r >= self.radius {
            return 0.0;
        }
        let hw = self.half_width * self.taper(r).sqrt();
        (0.5 + (hw - sd.abs()) / voxel).clamp(0.0, 1.0)
    }

    /// Whether `x` belongs to the truth mask (a slab of half thickness `mask_half` mm).
    pub fn in_mask(&self, x: DVec3, mask_half: f64) -> bool {
        let (sd, r) = self.plane_coords(x);
        sd.abs() <= mask_half && r <= self.radius
    }

    /// Half thickness of the truth mask on a grid whose largest voxel edge is `max_spacing`:
    /// the crack plus 0.5 mm, and at least half a voxel so that every crossed slice is hit.
    pub fn mask_half_thickness(&self, max_spacing: f64) -> f64 {
        (self.half_width + 0.5).max(0.55 * max_spacing)
    }

    /// Samples a crack in `vertebra`.
    pub fn sample<R: Rng>(rng: &mut R, vertebra: &PlacedVertebra) -> Crack {
        let shape = &vertebra.shape;
        let frame = vertebra.frame;
        let parts = shape.fracture_parts();
        let total: f64 = parts.iter().map(|(_, w)| w).sum();
        let mut u = rng.gen::<f64>() * total;
        let mut part = parts[0].0;
        for &(p, w) in parts {
            if u < w {
                part = p;
                break;
            }
            u -= w;
        }
        let side = if rng.gen::<bool>() { 1.0 } else { -1.0 };
        let depth = rng.gen_range(1.0..2.5);
        let mut centre_local = shape.part_anchor(part, side);
        for attempt in 0..16 {
            let jitter = if attempt < 15 { 2.0 } else { 0.0 };
            let start = shape.part_anchor(part, side)
                + DVec3::new(
                    rng.gen_range(-1.0..1.0),
                    rng.gen_range(-1.0..1.0),
                    rng.gen_range(-1.0..1.0),
                ) * jitter;
            let p = settle_at_depth(|q| shape.sdf(q), start, depth);
            if shape.sdf(p) < -0.3 {
                centre_local = p;
                break;
            }
        }
        // The plane must cross the cortex: keep its normal tangent to the bone surface (the
        // typical direction of the part, projected), so the crack runs from the surface inward.
        let surface = gradient(|q| shape.sdf(q), centre_local).normalize_or_zero();
        let tilt: [f64; 3] = UnitSphere.sample(rng);
        let wanted = cut_direction(shape, part, centre_local, rng) + DVec3::from(tilt) * 0.3;
        let mut normal_local = wanted - surface * wanted.dot(surface);
        if normal_local.length() < 0.3 {
            let any: [f64; 3] = UnitSphere.sample(rng);
            normal_local = DVec3::from(any) - surface * DVec3::from(any).dot(surface);
        }
        let normal_local = normal_local.normalize_or(DVec3::X);
        let normal = (frame.axes * normal_local).normalize();
        let radius = match part {
            Part::Body | Part::LateralMass => rng.gen_range(6.0..12.0),
            _ => rng.gen_range(5.0..9.0),
        } * frame.scale;
        let any: [f64; 3] = UnitSphere.sample(rng);
        let tangent =
            (DVec3::from(any) - normal * DVec3::from(any).dot(normal)).normalize_or_zero();
        let displacement = tangent * rng.gen_range(0.5..2.5);
        Crack {
            level: shape.level,
            part,
            centre: frame.to_world(centre_local),
            normal,
            half_width: rng.gen_range(0.5..1.25),
            radius,
            displacement,
            gap_hu: rng.gen_range(0.0..80.0),
        }
    }
}

/// Central-difference gradient of `sdf` at `p`.
fn gradient(sdf: impl Fn(DVec3) -> f64, p: DVec3) -> DVec3 {
    let h = 0.05;
    DVec3::new(
        sdf(p + DVec3::X * h) - sdf(p - DVec3::X * h),
        sdf(p + DVec3::Y * h) - sdf(p - DVec3::Y * h),
        sdf(p + DVec3::Z * h) - sdf(p - DVec3::Z * h),
    ) / (2.0 * h)
}

/// Newton steps along the numerical gradient to the iso-surface `sdf = -depth`.
fn settle_at_depth(sdf: impl Fn(DVec3) -> f64, start: DVec3, depth: f64) -> DVec3 {
    let mut p = start;
    for _ in 0..12 {
        let d = sdf(p) + depth;
        let g = gradient(&sdf, p);
        let n2 = g.length_squared();
        if n2 < 1e-8 {
            break;
        }
        let step = g * (d / n2);
        p -= step.clamp_length_max(2.0);
        if d.abs() < 0.05 {
            break;
        }
    }
    p
}

/// Typical plane normal (local frame) of a fracture of `part` at `p`: across the structure.
fn cut_direction<R: Rng>(
    shape: &crate::vertebra::VertebraShape,
    part: Part,
    p: DVec3,
    rng: &mut R,
) -> DVec3 {
    match part {
        Part::Body => match rng.gen_range(0..10) {
            0..=3 => DVec3::Z,
            4..=6 => DVec3::Y,
            _ => DVec3::X,
        },
        Part::Dens => DVec3::Z,
        Part::SpinousProcess => DVec3::new(0.0, 1.0, -shape.spinous_slope).normalize(),
        Part::TransverseProcess => DVec3::X,
        Part::LateralMass => {
            if rng.gen::<bool>() {
                DVec3::Z
            } else {
                DVec3::X
            }
        }
        // Ring parts (arches, laminae, pedicles): cut across the ring around the canal.
        _ => {
            let radial = DVec3::new(p.x, p.y - shape.canal_y, 0.0);
            DVec3::new(-radial.y, radial.x, 0.0).normalize_or(DVec3::X)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anatomy::Anatomy;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn cracks_start_inside_bone_of_their_vertebra() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..10 {
            let anatomy = Anatomy::sample(&mut rng, 0.0);
            for v in &anatomy.vertebrae[..7] {
                for _ in 0..5 {
                    let c = Crack::sample(&mut rng, v);
                    assert!(
                        v.sdf(c.centre) < 0.0,
                        "{:?} {:?} sdf {}",
                        c.level,
                        c.part,
                        v.sdf(c.centre)
                    );
                    assert!((c.normal.length() - 1.0).abs() < 1e-9);
                    assert!(c.displacement.dot(c.normal).abs() < 1e-9);
                    assert!(c.in_mask(c.centre, 0.1));
                }
            }
        }
    }

    #[test]
    fn displacement_is_one_sided_and_tapers() {
        let c = Crack {
            level: Level::C5,
            part: Part::Body,
            centre: DVec3::ZERO,
            normal: DVec3::Z,
            half_width: 0.5,
            radius: 10.0,
            displacement: DVec3::new(1.0, 0.0, 0.0),
            gap_hu: 30.0,
        };
        assert_eq!(
            c.undisplaced(DVec3::new(0.0, 0.0, -1.0)),
            DVec3::new(0.0, 0.0, -1.0)
        );
        assert!((c.undisplaced(DVec3::new(0.0, 0.0, 1.0)).x + 1.0).abs() < 1e-12);
        assert_eq!(c.undisplaced(DVec3::new(10.0, 0.0, 1.0)).x, 10.0);
        assert!(c.gap_fraction(DVec3::ZERO, 1.0) > 0.99);
        assert_eq!(c.gap_fraction(DVec3::new(11.0, 0.0, 0.0), 1.0), 0.0);
        assert_eq!(c.gap_fraction(DVec3::new(0.0, 0.0, 3.0), 1.0), 0.0);
    }
}
