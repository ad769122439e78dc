//! One study's anatomy in patient space: the spine's curve (lordosis, flexion, lateral bend,
//! axial twist), the vertebrae placed along it, discs, unlabelled bones nearby (skull base,
//! mandible, first ribs), the neck's soft tissue, fat, airway and the scanner table.
//!
//! Everything is sampled once per study from its RNG; evaluation is pure (no RNG), so the
//! rasteriser can run slices in parallel.

use crate::sdf;
use crate::vertebra::{Level, VertebraShape};
use glam::{DMat3, DVec2, DVec3};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// A local frame: `world = origin + axes * (scale * local)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub origin: DVec3,
    /// Columns: local x (left), y (posterior), z (superior) in world coordinates.
    pub axes: DMat3,
    pub scale: f64,
}

impl Frame {
    pub fn to_local(&self, world: DVec3) -> DVec3 {
        self.axes.transpose() * (world - self.origin) / self.scale
    }

    pub fn to_world(&self, local: DVec3) -> DVec3 {
        self.origin + self.axes * (local * self.scale)
    }

    /// World-space axis-aligned box around a local box.
    pub fn world_bounds(&self, lo: DVec3, hi: DVec3) -> (DVec3, DVec3) {
        let mut min = DVec3::splat(f64::INFINITY);
        let mut max = DVec3::splat(f64::NEG_INFINITY);
        for i in 0..8 {
            let c = DVec3::new(
                if i & 1 == 0 { lo.x } else { hi.x },
                if i & 2 == 0 { lo.y } else { hi.y },
                if i & 4 == 0 { lo.z } else { hi.z },
            );
            let w = self.to_world(c);
            min = min.min(w);
            max = max.max(w);
        }
        (min, max)
    }
}

/// A vertebra placed in a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedVertebra {
    pub shape: VertebraShape,
    pub frame: Frame,
    /// World bounding box (grown by a few mm for fracture displacement and blur).
    pub world_min: DVec3,
    pub world_max: DVec3,
}

impl PlacedVertebra {
    /// Signed distance (mm) of world point `x` to this vertebra's (undisplaced) bone.
    pub fn sdf(&self, x: DVec3) -> f64 {
        self.shape.sdf(self.frame.to_local(x)) * self.frame.scale
    }

    pub fn contains_box(&self, x: DVec3) -> bool {
        x.cmpge(self.world_min).all() && x.cmple(self.world_max).all()
    }
}

/// World-space axis-aligned bounds, to skip shapes far from a voxel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    pub min: DVec3,
    pub max: DVec3,
}

impl Bounds {
    pub fn contains(&self, x: DVec3) -> bool {
        x.cmpge(self.min).all() && x.cmple(self.max).all()
    }

    pub fn spans_z(&self, z: f64) -> bool {
        z >= self.min.z && z <= self.max.z
    }
}

/// An intervertebral disc: an elliptic cylinder in a frame between two bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disc {
    pub frame: Frame,
    pub radii: DVec2,
    pub half_height: f64,
    pub bounds: Bounds,
}

impl Disc {
    fn new(frame: Frame, radii: DVec2, half_height: f64) -> Self {
        let e = DVec3::new(radii.x, radii.y, half_height) + 3.0;
        let (min, max) = frame.world_bounds(-e, e);
        Self {
            frame,
            radii,
            half_height,
            bounds: Bounds { min, max },
        }
    }

    pub fn sdf(&self, x: DVec3) -> f64 {
        sdf::elliptic_cylinder(self.frame.to_local(x), self.radii, self.half_height)
            * self.frame.scale
    }
}

/// Bone that is not part of any labelled vertebra.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ExtraBone {
    /// Occipital bone with foramen magnum and condyles, in C1's frame.
    SkullBase(Frame),
    /// Mandible (body, angles, rami), in a world-aligned frame at C2.
    Mandible(Frame),
    /// First ribs starting at T1's transverse processes, in T1's frame.
    FirstRibs(Frame),
}

impl ExtraBone {
    /// World bounds of the bone (with a 4 mm margin).
    pub fn bounds(&self) -> Bounds {
        let (f, lo, hi) = match *self {
            Self::SkullBase(f) => (
                f,
                DVec3::new(-50.0, -46.0, 8.0),
                DVec3::new(50.0, 58.0, 44.0),
            ),
            Self::Mandible(f) => (
                f,
                DVec3::new(-52.0, -62.0, -21.0),
                DVec3::new(52.0, 10.0, 46.0),
            ),
            Self::FirstRibs(f) => (
                f,
                DVec3::new(-58.0, -61.0, -56.0),
                DVec3::new(58.0, 15.0, 5.0),
            ),
        };
        let (min, max) = f.world_bounds(lo - 4.0, hi + 4.0);
        Bounds { min, max }
    }

    pub fn sdf(&self, x: DVec3) -> f64 {
        match *self {
            Self::SkullBase(f) => {
                let p = f.to_local(x);
                let q = p - DVec3::new(0.0, 6.0, 30.0);
                let plate = sdf::subtract(
                    sdf::ellipsoid(q, DVec3::new(48.0, 50.0, 13.0)),
                    sdf::ellipsoid(q - DVec3::new(0.0, 0.0, 4.0), DVec3::new(42.0, 44.0, 10.0)),
                );
                let foramen = sdf::elliptic_cylinder(
                    p - DVec3::new(0.0, 10.0, 0.0),
                    DVec2::new(15.0, 18.0),
                    60.0,
                );
                let m = DVec3::new(p.x.abs(), p.y, p.z);
                let condyle =
                    sdf::ellipsoid(m - DVec3::new(12.0, 4.0, 14.0), DVec3::new(5.5, 9.0, 4.5));
                sdf::union(sdf::subtract(plate, foramen), condyle) * f.scale
            }
            Self::Mandible(f) => {
                let p = f.to_local(x);
                let m = DVec3::new(p.x.abs(), p.y, p.z);
                let angle = DVec3::new(44.0, -2.0, 2.0);
                let mid = DVec3::new(30.0, -40.0, -10.0);
                let chin = DVec3::new(0.0, -55.0, -14.0);
                let body = sdf::union(
                    sdf::capsule(m, angle, mid, 5.0),
                    sdf::capsule(m, mid, chin, 5.5),
                );
                let ramus = sdf::capsule(m, angle, DVec3::new(46.0, 4.0, 40.0), 4.5);
                sdf::union(body, ramus) * f.scale
            }
            Self::FirstRibs(f) => {
                let p = f.to_local(x);
                let m = DVec3::new(p.x.abs(), p.y, p.z);
                let a = DVec3::new(26.0, 9.0, -1.0);
                let b = DVec3::new(50.0, 0.0, -14.0);
                let c = DVec3::new(52.0, -30.0, -34.0);
                let d = DVec3::new(36.0, -55.0, -50.0);
                let r = 4.0;
                let rib = sdf::union(
                    sdf::capsule(m, a, b, r),
                    sdf::union(sdf::capsule(m, b, c, r), sdf::capsule(m, c, d, r)),
                );
                rib * f.scale
            }
        }
    }
}

/// Soft tissue densities and shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftTissue {
    /// Neck ellipse centre offset from the spine axis (x, y) and semi-axes at mid neck.
    pub neck_offset: DVec2,
    pub neck_radii: DVec2,
    /// Subcutaneous fat as a fraction of the neck radius.
    pub fat_fraction: f64,
    pub muscle_hu: f64,
    pub fat_hu: f64,
    pub disc_hu: f64,
    /// Airway: offset anterior of the body's front surface and semi-axes.
    pub airway_gap: f64,
    pub airway_radii: DVec2,
    /// Table: y of its top surface (world) and thickness.
    pub table_y: f64,
    pub table_thickness: f64,
    pub table_hu: f64,
}

/// Bone densities of a study.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoneDensity {
    pub cortical_hu: f64,
    pub cancellous_hu: f64,
    /// Amplitude of the trabecular texture in HU.
    pub trabecular_hu: f64,
    pub cortical_thickness: f64,
}

/// The sampled anatomy of one study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anatomy {
    /// C1..T2, superior to inferior.
    pub vertebrae: Vec<PlacedVertebra>,
    pub discs: Vec<Disc>,
    pub extras: Vec<ExtraBone>,
    /// Spine axis samples (world), inferior to superior, for soft tissue placement.
    pub axis: Vec<DVec3>,
    pub tissue: SoftTissue,
    pub bone: BoneDensity,
    /// Seed of the deterministic trabecular texture.
    pub texture_seed: u64,
}

/// Disc heights (mm, before scale) below C2..T1, i.e. between each level and the next.
const DISC_HEIGHTS: [f64; 7] = [4.5, 5.0, 5.0, 5.2, 5.0, 4.6, 4.0];

fn uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

impl Anatomy {
    /// Samples a study's anatomy. The C1 centre is placed at `(0, 0, c1_z)` plus a small
    /// random offset; everything else follows the sampled curve.
    pub fn sample<R: Rng>(rng: &mut R, c1_z: f64) -> Self {
        let scale = uniform(rng, 0.88, 1.12);
        let lordosis = uniform(rng, -0.05, 0.35); // tangent tilt amplitude (rad), < 0 = kyphotic
        let flexion = uniform(rng, -0.12, 0.12);
        let bend = uniform(rng, -0.06, 0.06);
        let bend_change = uniform(rng, -0.08, 0.08);
        let twist_base = uniform(rng, -0.08, 0.08);
        let twist_change = uniform(rng, -0.15, 0.15);
        let jitter = Normal::<f64>::new(0.0, 0.03).expect("constant parameters");

        let shapes: Vec<VertebraShape> = Level::ALL
            .iter()
            .map(|&l| {
                let mut s = VertebraShape::standard(l);
                let j = 1.0 + jitter.sample(rng).clamp(-0.08, 0.08);
                s.body *= DVec3::new(j, 1.0 + jitter.sample(rng).clamp(-0.08, 0.08), j);
                s.spinous_length *= 1.0 + 2.0 * jitter.sample(rng).clamp(-0.08, 0.08);
                s
            })
            .collect();
        let discs: Vec<f64> = DISC_HEIGHTS
            .iter()
            .map(|&h| h * uniform(rng, 0.75, 1.15))
            .collect();
        // Articular pillars reach 0.6 mm past the middle of each disc: neighbours' facets touch,
        // so the labelled spine is one connected object like a real segmentation.
        let mut shapes = shapes;
        for i in 1..9 {
            let h = shapes[i].half_height();
            shapes[i].pillar_down = h + if i < 8 { 0.5 * discs[i - 1] + 0.6 } else { 2.0 };
            if i >= 2 {
                shapes[i].pillar_up = h + 0.5 * discs[i - 2] + 0.6;
            }
        }

        // Arc-length positions of the level centres, measured upwards from T2.
        let mut s_of = [0.0; 9];
        for i in (0..8).rev() {
            let lower = &shapes[i + 1];
            let gap = if i == 0 {
                shapes[1].body.z + 12.0
            } else {
                discs[i - 1]
            };
            let step = if i == 0 {
                gap
            } else {
                lower.half_height() + gap + shapes[i].half_height()
            };
            s_of[i] = s_of[i + 1] + step * scale;
        }
        let length = s_of[0];

        // Integrate the curve from T2 upwards (0.5 mm steps).
        let tilt = |s: f64| -> (f64, f64, f64) {
            let t = s / length;
            (
                flexion + lordosis * (1.0 - 2.0 * t),
                bend + bend_change * (t - 0.5),
                twist_base + twist_change * t,
            )
        };
        let steps = (length / 0.5).ceil() as usize;
        let ds = length / steps as f64;
        let mut pts = Vec::with_capacity(steps + 1);
        let mut p = DVec3::ZERO;
        pts.push(p);
        for i in 0..steps {
            let (th, ph, _) = tilt((i as f64 + 0.5) * ds);
            p += DVec3::new(ph.sin(), -th.sin(), th.cos() * ph.cos()) * ds;
            pts.push(p);
        }
        let shift = DVec3::new(uniform(rng, -6.0, 6.0), uniform(rng, -6.0, 6.0), c1_z) - pts[steps];
        let axis: Vec<DVec3> = pts.iter().map(|&q| q + shift).collect();
        let at = |s: f64| -> Frame {
            let i = ((s / ds).round() as usize).min(steps);
            let (th, ph, psi) = tilt(s);
            let w = DVec3::new(ph.sin(), -th.sin(), th.cos() * ph.cos()).normalize();
            let u0 = DVec3::new(psi.cos(), psi.sin(), 0.0);
            let u = (u0 - w * u0.dot(w)).normalize();
            let v = w.cross(u);
            Frame {
                origin: axis[i],
                axes: DMat3::from_cols(u, v, w),
                scale,
            }
        };

        let vertebrae: Vec<PlacedVertebra> = shapes
            .into_iter()
            .enumerate()
            .map(|(i, shape)| {
                let frame = at(s_of[i]);
                let (lo, hi) = shape.bounds();
                let (min, max) = frame.world_bounds(lo, hi);
                PlacedVertebra {
                    shape,
                    frame,
                    world_min: min - 4.0,
                    world_max: max + 4.0,
                }
            })
            .collect();

        let disc_list = (1..8)
            .map(|i| {
                let upper = &vertebrae[i];
                let lower = &vertebrae[i + 1];
                let mid_s = s_of[i + 1] + (lower.shape.half_height() + 0.5 * discs[i - 1]) * scale;
                let r = DVec2::new(
                    0.5 * (upper.shape.body.x + lower.shape.body.x) * 0.98,
                    0.5 * (upper.shape.body.y + lower.shape.body.y) * 0.98,
                );
                Disc::new(at(mid_s), r, 0.5 * discs[i - 1] + 0.9)
            })
            .collect();

        let c1 = vertebrae[0].frame;
        let c2 = vertebrae[1].frame;
        let t1 = vertebrae[7].frame;
        let mandible = Frame {
            origin: c2.origin + DVec3::new(0.0, uniform(rng, -4.0, 4.0), uniform(rng, -4.0, 8.0)),
            axes: DMat3::IDENTITY,
            scale,
        };
        let extras = vec![
            ExtraBone::SkullBase(c1),
            ExtraBone::Mandible(mandible),
            ExtraBone::FirstRibs(t1),
        ];

        let neck_radii = DVec2::new(uniform(rng, 50.0, 60.0), uniform(rng, 52.0, 60.0)) * scale;
        let tissue = SoftTissue {
            neck_offset: DVec2::new(uniform(rng, -3.0, 3.0), uniform(rng, 10.0, 14.0) * scale),
            neck_radii,
            fat_fraction: uniform(rng, 0.06, 0.14),
            muscle_hu: uniform(rng, 40.0, 60.0),
            fat_hu: uniform(rng, -110.0, -80.0),
            disc_hu: uniform(rng, 70.0, 110.0),
            airway_gap: uniform(rng, 9.0, 14.0) * scale,
            airway_radii: DVec2::new(uniform(rng, 7.0, 10.0), uniform(rng, 5.0, 8.0)) * scale,
            table_y: axis[steps / 2].y + 12.0 * scale + neck_radii.y + uniform(rng, 6.0, 16.0),
            table_thickness: uniform(rng, 4.0, 8.0),
            table_hu: uniform(rng, 80.0, 250.0),
        };
        let bone = BoneDensity {
            cortical_hu: uniform(rng, 1100.0, 1600.0),
            cancellous_hu: uniform(rng, 170.0, 380.0),
            trabecular_hu: uniform(rng, 40.0, 90.0),
            cortical_thickness: uniform(rng, 0.9, 1.4),
        };
        Self {
            vertebrae,
            discs: disc_list,
            extras,
            axis,
            tissue,
            bone,
            texture_seed: rng.gen(),
        }
    }

    /// The vertebra of `level`.
    pub fn vertebra(&self, level: Level) -> &PlacedVertebra {
        &self.vertebrae[level as usize]
    }

    /// Spine axis point (interpolated) at world height `z`, clamped to the axis' ends.
    pub fn axis_at(&self, z: f64) -> DVec3 {
        let first = self.axis[0];
        let last = self.axis[self.axis.len() - 1];
        if z <= first.z {
            return DVec3::new(first.x, first.y, z);
        }
        if z >= last.z {
            return DVec3::new(last.x, last.y, z);
        }
        let i = self.axis.partition_point(|p| p.z < z).max(1);
        let (a, b) = (self.axis[i - 1], self.axis[i]);
        let t = ((z - a.z) / (b.z - a.z).max(1e-9)).clamp(0.0, 1.0);
        a.lerp(b, t)
    }

    /// Soft-tissue HU (no bone) at world point `x`, and whether it is inside the body.
    pub fn soft_tissue_hu(&self, x: DVec3, axis: DVec3) -> f64 {
        let t = &self.tissue;
        let c7 = self.vertebra(Level::C7).frame.origin.z;
        let t1 = self.vertebra(Level::T1).frame.origin.z;
        let c3 = self.vertebra(Level::C3).frame.origin.z;
        let c1 = self.vertebra(Level::C1).frame.origin.z;
        let shoulders = smoothstep(c7, t1 - 20.0, x.z);
        let face = smoothstep(c3, c1, x.z);
        let radii = DVec2::new(
            t.neck_radii.x * (1.0 + 0.9 * shoulders),
            t.neck_radii.y + 18.0 * face,
        );
        let centre = DVec2::new(axis.x, axis.y) + t.neck_offset + DVec2::new(0.0, -12.0 * face);
        let q = DVec2::new(x.x, x.y) - centre;
        let r = (q / radii).length();
        let table = x.y >= t.table_y && x.y <= t.table_y + t.table_thickness;
        if r > 1.0 {
            return if table { t.table_hu } else { -1000.0 };
        }
        // Airway: anterior of the vertebral bodies, following the spine axis.
        let front = self.vertebrae[2].shape.body.y * self.vertebrae[2].frame.scale;
        let airway_c = DVec2::new(axis.x, axis.y - front - t.airway_gap - t.airway_radii.y);
        let a = (DVec2::new(x.x, x.y) - airway_c) / (t.airway_radii * (1.0 + 0.3 * face));
        if a.length() < 1.0 && x.z < c1 + 10.0 {
            return -1000.0;
        }
        if r > 1.0 - t.fat_fraction {
            t.fat_hu
        } else {
            t.muscle_hu
        }
    }
}

/// Hermite step from 0 at `a` to 1 at `b` (either order).
pub fn smoothstep(a: f64, b: f64, x: f64) -> f64 {
    let t = ((x - a) / (b - a)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn levels_are_stacked_without_overlapping_bodies() {
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let a = Anatomy::sample(&mut rng, 0.0);
            assert!((a.vertebra(Level::C1).frame.origin.z).abs() < 1e-6);
            for w in a.vertebrae.windows(2) {
                assert!(
                    w[0].frame.origin.z > w[1].frame.origin.z + 12.0,
                    "seed {seed}"
                );
            }
            // Adjacent bodies (C2..T2) do not touch: the disc centre is outside both.
            for (i, d) in a.discs.iter().enumerate() {
                let c = d.frame.origin;
                assert!(
                    a.vertebrae[i + 1].sdf(c) > 0.5,
                    "seed {seed} disc {i} upper {}",
                    a.vertebrae[i + 1].sdf(c)
                );
                assert!(
                    a.vertebrae[i + 2].sdf(c) > 0.5,
                    "seed {seed} disc {i} lower"
                );
            }
            // The dens sits inside the atlas ring without touching it.
            let c1 = a.vertebra(Level::C1);
            let c2 = a.vertebra(Level::C2);
            let dens_tip = c2
                .frame
                .to_world(DVec3::new(0.0, -0.5, c2.shape.body.z + 12.0));
            assert!(c2.sdf(dens_tip) < 0.0);
            assert!(c1.sdf(dens_tip) > 0.0, "seed {seed}");
        }
    }

    #[test]
    fn bounds_hold_every_shape() {
        // Rendering skips shapes outside their bounds; that must never change a voxel, so any
        // point outside a shape's bounds must be farther than the largest voxel (2.6 mm).
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..4 {
            let a = Anatomy::sample(&mut rng, 0.0);
            for _ in 0..40_000 {
                let x = DVec3::new(
                    rng.gen_range(-90.0..90.0),
                    rng.gen_range(-90.0..90.0),
                    rng.gen_range(-200.0..80.0),
                );
                for v in &a.vertebrae {
                    if !v.contains_box(x) {
                        assert!(v.sdf(x) > 2.7, "{:?} at {x}: {}", v.shape.level, v.sdf(x));
                    }
                }
                for d in &a.discs {
                    if !d.bounds.contains(x) {
                        assert!(d.sdf(x) > 2.7);
                    }
                }
                for e in &a.extras {
                    if !e.bounds().contains(x) {
                        assert!(e.sdf(x) > 2.7, "{e:?} at {x}: {}", e.sdf(x));
                    }
                }
            }
        }
    }

    #[test]
    fn frames_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let a = Anatomy::sample(&mut rng, 10.0);
        let f = a.vertebra(Level::C5).frame;
        let p = DVec3::new(1.0, -2.0, 3.0);
        assert!((f.to_local(f.to_world(p)) - p).length() < 1e-9);
    }
}
