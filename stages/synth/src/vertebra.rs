//! Shapes of C1..C7, T1 and T2 as signed distance functions in a vertebra's local frame.
//!
//! Local frame (mm, before the per-study scale): `x` = patient left, `y` = posterior,
//! `z` = superior, origin at the centre of the vertebral body (for C1, where the body would
//! be: on the axis through the dens). Each level has its own proportions: C1 is a ring with
//! lateral masses and no body, C2 carries the dens, C3..C6 have bifid spinous processes and
//! uncinate lips, C7 has the long spinous process, T1/T2 are larger with posterolateral
//! transverse processes.

use crate::sdf;
use glam::{DVec2, DVec3};
use serde::{Deserialize, Serialize};

/// A vertebral level; `label()` is the value in label maps (1..7 = C1..C7, 8 = T1, 9 = T2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    C1,
    C2,
    C3,
    C4,
    C5,
    C6,
    C7,
    T1,
    T2,
}

impl Level {
    /// All levels from superior to inferior.
    pub const ALL: [Level; 9] = [
        Level::C1,
        Level::C2,
        Level::C3,
        Level::C4,
        Level::C5,
        Level::C6,
        Level::C7,
        Level::T1,
        Level::T2,
    ];

    /// Label value in vertebra label maps.
    pub fn label(self) -> u8 {
        self as u8 + 1
    }

    /// Cervical index 0..7 for C1..C7, `None` for thoracic levels.
    pub fn cervical_index(self) -> Option<usize> {
        let i = self as usize;
        (i < 7).then_some(i)
    }

    /// The level with the given cervical index (0 = C1).
    pub fn cervical(index: usize) -> Option<Level> {
        Self::ALL
            .get(index)
            .copied()
            .filter(|l| l.cervical_index().is_some())
    }

    /// `C1`..`T2`.
    pub fn name(self) -> &'static str {
        ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2"][self as usize]
    }
}

/// Anatomical part of a vertebra where a crack can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    Body,
    Dens,
    AnteriorArch,
    PosteriorArch,
    LateralMass,
    Lamina,
    Pedicle,
    SpinousProcess,
    TransverseProcess,
}

/// Proportions of one vertebra (mm, local frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VertebraShape {
    pub level: Level,
    /// Body half width (x), half depth (y), half height (z); zero-sized for C1.
    pub body: DVec3,
    /// Canal semi-axes (x, y) and the y of its centre.
    pub canal: DVec2,
    pub canal_y: f64,
    /// Thickness of the neural arch around the canal and its half height.
    pub arch_thickness: f64,
    pub arch_half_height: f64,
    /// Spinous process length (from the arch), downward slope (dz per dy), bifid tip.
    pub spinous_length: f64,
    pub spinous_slope: f64,
    pub bifid: bool,
    /// Lateral reach of the transverse processes beyond the body and their backward sweep.
    pub transverse_reach: f64,
    pub transverse_sweep: f64,
    /// Radius of the foramen transversarium (0 = none).
    pub foramen_radius: f64,
    /// Reach of the articular pillars above and below the centre (facets touch the neighbours').
    pub pillar_up: f64,
    pub pillar_down: f64,
}

impl VertebraShape {
    /// Adult proportions of `level`, before per-study scaling and jitter.
    pub fn standard(level: Level) -> Self {
        let (body, canal, arch_t, arch_h, sp_len, sp_slope, bifid, tp_reach, tp_sweep, foramen) =
            match level {
                Level::C1 => (
                    DVec3::ZERO,
                    DVec2::new(13.5, 14.5),
                    4.0,
                    4.5,
                    3.0,
                    0.0,
                    false,
                    22.0,
                    2.0,
                    2.6,
                ),
                Level::C2 => (
                    DVec3::new(8.0, 7.5, 8.0),
                    DVec2::new(11.5, 8.0),
                    4.5,
                    6.0,
                    16.0,
                    0.25,
                    true,
                    9.0,
                    1.0,
                    2.4,
                ),
                Level::C3 => (
                    DVec3::new(7.8, 7.3, 6.4),
                    DVec2::new(12.0, 7.0),
                    3.5,
                    4.5,
                    10.0,
                    0.3,
                    true,
                    10.0,
                    1.0,
                    2.4,
                ),
                Level::C4 => (
                    DVec3::new(8.0, 7.4, 6.5),
                    DVec2::new(12.0, 7.0),
                    3.5,
                    4.5,
                    11.0,
                    0.35,
                    true,
                    10.5,
                    1.0,
                    2.4,
                ),
                Level::C5 => (
                    DVec3::new(8.5, 7.6, 6.6),
                    DVec2::new(12.2, 7.0),
                    3.5,
                    4.5,
                    12.0,
                    0.35,
                    true,
                    11.0,
                    1.0,
                    2.4,
                ),
                Level::C6 => (
                    DVec3::new(9.0, 7.8, 6.8),
                    DVec2::new(12.0, 7.0),
                    3.6,
                    4.6,
                    15.0,
                    0.4,
                    false,
                    11.5,
                    1.5,
                    2.3,
                ),
                Level::C7 => (
                    DVec3::new(9.5, 8.0, 7.0),
                    DVec2::new(11.5, 7.2),
                    3.8,
                    4.8,
                    22.0,
                    0.45,
                    false,
                    14.0,
                    2.5,
                    1.4,
                ),
                Level::T1 => (
                    DVec3::new(11.0, 8.5, 8.0),
                    DVec2::new(10.0, 7.5),
                    4.0,
                    5.0,
                    26.0,
                    0.55,
                    false,
                    17.0,
                    7.0,
                    0.0,
                ),
                Level::T2 => (
                    DVec3::new(12.0, 9.5, 8.5),
                    DVec2::new(8.5, 7.5),
                    4.0,
                    5.2,
                    27.0,
                    0.7,
                    false,
                    17.5,
                    9.0,
                    0.0,
                ),
            };
        let canal_y = if level == Level::C1 {
            8.0
        } else {
            body.y + canal.y - 0.5
        };
        Self {
            level,
            body,
            canal,
            canal_y,
            arch_thickness: arch_t,
            arch_half_height: arch_h,
            spinous_length: sp_len,
            spinous_slope: sp_slope,
            bifid,
            transverse_reach: tp_reach,
            transverse_sweep: tp_sweep,
            foramen_radius: foramen,
            pillar_up: if level == Level::C2 {
                0.5
            } else {
                body.z + 2.5
            },
            pillar_down: body.z + 2.5,
        }
    }

    /// Half height along the axis used to stack levels (body, or C1's lateral masses).
    pub fn half_height(&self) -> f64 {
        if self.level == Level::C1 {
            8.0
        } else {
            self.body.z
        }
    }

    /// Conservative local bounding box (min, max) of the bone.
    pub fn bounds(&self) -> (DVec3, DVec3) {
        let back = self.canal_y + self.canal.y + self.arch_thickness + self.spinous_length + 6.0;
        let side = (self.body.x + self.transverse_reach + 6.0)
            .max(self.canal.x + self.arch_thickness + 8.0);
        let side = if self.level == Level::C1 {
            42.0
        } else if self.level >= Level::T1 {
            side + 20.0
        } else {
            side
        };
        let drop = self.spinous_length * self.spinous_slope + self.half_height() + 6.0;
        let top = match self.level {
            Level::C2 => 32.0,
            _ => self.half_height() + 6.0,
        };
        let front = if self.level == Level::C1 {
            -12.0
        } else {
            -self.body.y - 4.0
        };
        (DVec3::new(-side, front, -drop), DVec3::new(side, back, top))
    }

    /// Signed distance (mm) from local point `p` to the bone surface.
    pub fn sdf(&self, p: DVec3) -> f64 {
        match self.level {
            Level::C1 => self.atlas(p),
            _ => self.subaxial(p),
        }
    }

    fn neural_arch(&self, p: DVec3) -> f64 {
        let q = DVec2::new(p.x, p.y - self.canal_y);
        let outer = sdf::ellipse(q, self.canal + DVec2::splat(self.arch_thickness));
        let inner = sdf::ellipse(q, self.canal);
        let ring = sdf::subtract(outer, inner);
        // Keep the arch behind the body's front half; the anterior part merges with the body.
        sdf::extrude(ring.max(-p.y), p.z, self.arch_half_height)
    }

    fn spinous(&self, p: DVec3) -> f64 {
        let start_y = self.canal_y + self.canal.y + self.arch_thickness * 0.5;
        let a = DVec3::new(0.0, start_y, 0.0);
        let b = DVec3::new(
            0.0,
            start_y + self.spinous_length,
            -self.spinous_length * self.spinous_slope,
        );
        let r = (self.arch_thickness * 0.7).max(2.2);
        let shaft = sdf::capsule(p, a, b, r);
        if self.bifid {
            let tip = b + DVec3::new(0.0, 1.5, -0.5);
            let l = sdf::sphere(p - tip - DVec3::new(3.0, 0.0, 0.0), r * 0.9);
            let rr = sdf::sphere(p - tip + DVec3::new(3.0, 0.0, 0.0), r * 0.9);
            sdf::union(shaft, sdf::union(l, rr))
        } else {
            sdf::union(shaft, sdf::sphere(p - b, r * 1.2))
        }
    }

    fn transverse(&self, p: DVec3) -> f64 {
        let m = DVec3::new(p.x.abs(), p.y, p.z);
        let root = DVec3::new(self.body.x.max(self.canal.x * 0.6), 1.0, 0.0);
        let tip = DVec3::new(
            self.body.x + self.transverse_reach,
            1.0 + self.transverse_sweep,
            -0.5,
        );
        let r = if self.level >= Level::T1 { 3.5 } else { 2.8 };
        let bar = sdf::capsule(m, root, tip, r);
        if self.foramen_radius <= 0.0 {
            return bar;
        }
        // A ring of bone around the foramen transversarium.
        let fc = DVec3::new(self.body.x + self.foramen_radius + 1.2, 1.0, 0.0);
        let q = m - fc;
        let collar = sdf::elliptic_cylinder(q, DVec2::splat(self.foramen_radius + 2.0), r);
        let hole = sdf::elliptic_cylinder(q, DVec2::splat(self.foramen_radius), r + 2.0);
        sdf::subtract(sdf::union(bar, collar), hole)
    }

    fn articular_pillars(&self, p: DVec3) -> f64 {
        let m = DVec3::new(p.x.abs(), p.y, p.z);
        let c = DVec3::new(
            self.canal.x + self.arch_thickness * 0.5,
            self.canal_y - 1.0,
            0.0,
        );
        let (top, bottom) = (self.pillar_up, -self.pillar_down);
        let mid = 0.5 * (top + bottom);
        let q = m - c - DVec3::new(0.0, 0.0, mid);
        sdf::elliptic_cylinder(q, DVec2::new(4.5, 5.5), 0.5 * (top - bottom))
    }

    fn body_with_endplates(&self, p: DVec3) -> f64 {
        let r = DVec2::new(self.body.x, self.body.y);
        let radial = (DVec2::new(p.x, p.y) / r).length_squared().min(1.0);
        // Concave endplates: the surface dips by up to 0.9 mm towards the centre.
        let dip = 0.9 * (1.0 - radial);
        let d = sdf::elliptic_cylinder(p, r, self.body.z - dip);
        if self.level >= Level::C3 && self.level <= Level::C7 {
            // Uncinate processes: lips on the lateral superior rim.
            let m = DVec3::new(p.x.abs(), p.y, p.z);
            let lip = sdf::ellipsoid(
                m - DVec3::new(self.body.x - 1.2, -0.5, self.body.z),
                DVec3::new(1.6, 4.5, 2.2),
            );
            sdf::union(d, lip)
        } else {
            d
        }
    }

    fn subaxial(&self, p: DVec3) -> f64 {
        let body = self.body_with_endplates(p);
        let posterior = sdf::union(
            self.neural_arch(p),
            sdf::union(self.spinous(p), self.articular_pillars(p)),
        );
        let mut d = sdf::smooth_union(body, posterior, 1.5);
        d = sdf::smooth_union(d, self.transverse(p), 1.0);
        if self.level == Level::C2 {
            // Dens: a waisted peg from the top of the body into the atlas ring.
            let base = DVec3::new(0.0, -0.8, self.body.z - 1.0);
            let tip = DVec3::new(0.0, -0.4, self.body.z + 14.0);
            // The radius narrows from 4.8 mm at the head to 3.9 mm at the waist above the body.
            let h = ((p.z - base.z) / (tip.z - base.z)).clamp(0.0, 1.0);
            let radius = 3.9 + 0.9 * (4.0 * (h - 0.2).abs()).min(1.0);
            let dens = sdf::capsule(p, base, tip, radius);
            // Superior articular facets ("shoulders") on which the atlas rests.
            let m = DVec3::new(p.x.abs(), p.y, p.z);
            let shoulder = sdf::ellipsoid(
                m - DVec3::new(11.5, 2.5, self.body.z + 1.0),
                DVec3::new(6.0, 7.5, 3.2),
            );
            d = sdf::smooth_union(d, sdf::union(dens, shoulder), 1.2);
        }
        d
    }

    fn atlas(&self, p: DVec3) -> f64 {
        let q = DVec2::new(p.x, p.y - self.canal_y);
        let outer = sdf::ellipse(q, self.canal + DVec2::splat(self.arch_thickness));
        let inner = sdf::ellipse(q, self.canal);
        let ring = sdf::extrude(sdf::subtract(outer, inner), p.z, self.arch_half_height);
        let m = DVec3::new(p.x.abs(), p.y, p.z);
        let lateral_mass =
            sdf::ellipsoid(m - DVec3::new(12.5, 4.0, 0.0), DVec3::new(6.0, 9.0, 8.0));
        let tubercle = sdf::sphere(
            p - DVec3::new(
                0.0,
                self.canal_y + self.canal.y + self.arch_thickness + 1.0,
                0.0,
            ),
            3.5,
        );
        let anterior_tubercle = sdf::sphere(
            p - DVec3::new(0.0, self.canal_y - self.canal.y - self.arch_thickness, 0.0),
            3.2,
        );
        let tp_bar = sdf::capsule(
            m,
            DVec3::new(15.0, 4.0, 0.0),
            DVec3::new(15.0 + self.transverse_reach, 6.0, -1.0),
            3.8,
        );
        let fc = m - DVec3::new(21.0, 4.0, 0.0);
        let tp = sdf::subtract(
            tp_bar,
            sdf::elliptic_cylinder(fc, DVec2::splat(self.foramen_radius), 8.0),
        );
        let mut d = sdf::smooth_union(ring, lateral_mass, 2.0);
        d = sdf::union(d, sdf::union(tubercle, anterior_tubercle));
        sdf::smooth_union(d, tp, 1.0)
    }

    /// Parts where a fracture of this level may start, with relative frequencies.
    pub fn fracture_parts(&self) -> &'static [(Part, f64)] {
        match self.level {
            Level::C1 => &[
                (Part::AnteriorArch, 0.35),
                (Part::PosteriorArch, 0.35),
                (Part::LateralMass, 0.3),
            ],
            Level::C2 => &[
                (Part::Dens, 0.45),
                (Part::Body, 0.25),
                (Part::Pedicle, 0.2),
                (Part::Lamina, 0.1),
            ],
            Level::C7 | Level::T1 | Level::T2 => &[
                (Part::Body, 0.4),
                (Part::SpinousProcess, 0.25),
                (Part::Lamina, 0.15),
                (Part::TransverseProcess, 0.1),
                (Part::Pedicle, 0.1),
            ],
            _ => &[
                (Part::Body, 0.5),
                (Part::Lamina, 0.15),
                (Part::Pedicle, 0.1),
                (Part::LateralMass, 0.1),
                (Part::SpinousProcess, 0.1),
                (Part::TransverseProcess, 0.05),
            ],
        }
    }

    /// A point inside `part` (local frame); `side` is -1 or 1 for paired parts.
    pub fn part_anchor(&self, part: Part, side: f64) -> DVec3 {
        let back = self.canal_y + self.canal.y + self.arch_thickness * 0.5;
        match part {
            Part::Body => DVec3::new(0.0, 0.0, 0.0),
            Part::Dens => DVec3::new(0.0, -0.8, self.body.z + 3.5),
            Part::AnteriorArch => DVec3::new(
                0.0,
                self.canal_y - self.canal.y - self.arch_thickness * 0.5,
                0.0,
            ),
            Part::PosteriorArch => DVec3::new(
                side * 7.0,
                self.canal_y + self.canal.y * 0.85 + self.arch_thickness * 0.5,
                0.0,
            ),
            Part::LateralMass => {
                if self.level == Level::C1 {
                    DVec3::new(side * 12.5, 4.0, 0.0)
                } else {
                    DVec3::new(
                        side * (self.canal.x + self.arch_thickness * 0.5),
                        self.canal_y - 1.0,
                        0.0,
                    )
                }
            }
            Part::Lamina => DVec3::new(side * self.canal.x * 0.6, back - 1.0, 0.0),
            Part::Pedicle => DVec3::new(
                side * (self.canal.x + self.arch_thickness * 0.4),
                self.canal_y - self.canal.y * 0.6,
                0.0,
            ),
            Part::SpinousProcess => {
                let t = 0.6 * self.spinous_length;
                DVec3::new(0.0, back + t, -t * self.spinous_slope)
            }
            Part::TransverseProcess => DVec3::new(
                side * (self.body.x + self.transverse_reach * 0.75),
                1.0 + self.transverse_sweep * 0.75,
                -0.4,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_anchor_is_inside_bone_or_close() {
        for level in Level::ALL {
            let s = VertebraShape::standard(level);
            for &(part, _) in s.fracture_parts() {
                for side in [-1.0, 1.0] {
                    let a = s.part_anchor(part, side);
                    assert!(
                        s.sdf(a) < 1.5,
                        "{level:?} {part:?} side {side}: sdf {}",
                        s.sdf(a)
                    );
                }
            }
        }
    }

    #[test]
    fn anatomy_landmarks() {
        let c1 = VertebraShape::standard(Level::C1);
        // No body at C1: the centre is inside the ring's hole (where the dens goes).
        assert!(c1.sdf(DVec3::ZERO) > 2.0);
        let c2 = VertebraShape::standard(Level::C2);
        assert!(c2.sdf(DVec3::new(0.0, -0.6, 16.0)) < 0.0, "dens");
        for level in Level::ALL {
            let s = VertebraShape::standard(level);
            // Canal is empty, and the bounds hold the bone.
            assert!(
                s.sdf(DVec3::new(0.0, s.canal_y, 0.0)) > 2.0,
                "{level:?} canal"
            );
            let (lo, hi) = s.bounds();
            for p in [
                DVec3::new(lo.x, 0.0, 0.0),
                DVec3::new(hi.x, 0.0, 0.0),
                DVec3::new(0.0, hi.y, 0.0),
            ] {
                assert!(s.sdf(p) > 0.0, "{level:?} bounds at {p}");
            }
            if level != Level::C1 {
                assert!(s.sdf(DVec3::ZERO) < -3.0, "{level:?} body");
            }
        }
    }

    #[test]
    fn labels_and_names() {
        assert_eq!(Level::C1.label(), 1);
        assert_eq!(Level::T1.label(), 8);
        assert_eq!(Level::cervical(6), Some(Level::C7));
        assert_eq!(Level::cervical(7), None);
        assert_eq!(Level::T2.name(), "T2");
    }
}
