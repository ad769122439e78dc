//! Rasterises a study's anatomy and cracks into a CT volume (HU), a vertebra label map and
//! per-crack truth masks.
//!
//! Each slice is computed independently (rayon over slices, so results do not depend on
//! thread scheduling): tissues and bone are evaluated with anti-aliased occupancies (partial
//! volume), the slice profile is integrated by sampling 1 or 3 planes across the slice
//! thickness, then white noise is added and an in-plane Gaussian point spread function gives
//! it the spatial correlation of CT noise. Cortical shell = the outer `cortical_thickness` mm
//! of each bone; cancellous bone carries a smooth trabecular texture.

use crate::anatomy::{Anatomy, Bounds, ExtraBone, PlacedVertebra};
use crate::fracture::Crack;
use crate::geometry::ScanGeometry;
use crate::seeds;
use glam::DVec3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Scanner image-quality parameters of a study.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageQuality {
    /// Noise standard deviation after the PSF, HU.
    pub noise_hu: f64,
    /// In-plane PSF full width at half maximum, mm.
    pub psf_fwhm_mm: f64,
}

/// The rendered volumes, all `[k][row][col]` with `k` ascending in z.
#[derive(Debug, Clone, PartialEq)]
pub struct Phantom {
    /// CT numbers (HU), rounded and clamped to [-1024, 3071].
    pub hu: Vec<i16>,
    /// 0 = background, 1..7 = C1..C7, 8 = T1, 9 = T2.
    pub labels: Vec<u8>,
    /// 0 = none, i + 1 = crack `i`.
    pub crack_ids: Vec<u8>,
}

/// Anatomy and cracks of one study, ready to evaluate point by point.
pub struct Scene<'a> {
    pub anatomy: &'a Anatomy,
    pub cracks: &'a [Crack],
}

/// What one point of space holds.
struct Sample {
    hu: f64,
    label: u8,
    crack: u8,
}

impl Scene<'_> {
    fn cracks_of(&self, v: &PlacedVertebra) -> impl Iterator<Item = (usize, &Crack)> {
        let level = v.shape.level;
        self.cracks
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.level == level)
    }

    /// Evaluates world point `x`; `voxel` is the anti-aliasing width, `mask_half` the truth
    /// slab half thickness per crack.
    fn sample(
        &self,
        x: DVec3,
        axis: DVec3,
        voxel: f64,
        mask_halves: &[f64],
        near: &Nearby,
    ) -> Sample {
        let a = self.anatomy;
        let mut hu = a.soft_tissue_hu(x, axis);
        for &i in &near.discs {
            let d = &a.discs[i];
            if !d.bounds.contains(x) {
                continue;
            }
            let s = d.sdf(x);
            if s < voxel {
                hu += (a.tissue.disc_hu - hu) * cover(s, voxel);
            }
        }
        let mut best = f64::INFINITY;
        let mut label = 0u8;
        let mut gap = 0.0;
        let mut gap_hu = 0.0;
        let mut crack_id = 0u8;
        for &i in &near.vertebrae {
            let v = &a.vertebrae[i];
            if !v.contains_box(x) {
                continue;
            }
            let mut q = x;
            let mut g: f64 = 0.0;
            let mut g_hu = 0.0;
            for (_, c) in self.cracks_of(v) {
                q = c.undisplaced(q);
            }
            let s = v.sdf(q);
            for (ci, c) in self.cracks_of(v) {
                let f = c.gap_fraction(x, voxel);
                if f > g {
                    g = f;
                    g_hu = c.gap_hu;
                }
                if s <= 1.0 && c.in_mask(x, mask_halves[ci]) {
                    crack_id = ci as u8 + 1;
                }
            }
            if s < best {
                best = s;
                label = if s < 0.0 { v.shape.level.label() } else { 0 };
                gap = g;
                gap_hu = g_hu;
            }
        }
        for &i in &near.extras {
            let e = &a.extras[i];
            if !near.extra_bounds[i].contains(x) {
                continue;
            }
            let s = e.sdf(x);
            if s < best {
                best = s;
                label = 0;
                gap = 0.0;
            }
        }
        if best < voxel {
            let b = &a.bone;
            let outer = cover(best, voxel);
            let inner = cover(best + b.cortical_thickness, voxel);
            let cancellous = b.cancellous_hu + b.trabecular_hu * texture(x, a.texture_seed);
            let bone = if outer > 0.0 {
                (b.cortical_hu * (outer - inner) + cancellous * inner) / outer
            } else {
                0.0
            };
            let material = bone * (1.0 - gap) + gap_hu * gap;
            hu += (material - hu) * outer;
        }
        Sample {
            hu,
            label,
            crack: crack_id,
        }
    }
}

/// Shapes whose bounds reach one sampling plane (indices into the anatomy's lists).
struct Nearby {
    vertebrae: Vec<usize>,
    discs: Vec<usize>,
    extras: Vec<usize>,
    extra_bounds: Vec<Bounds>,
}

impl Nearby {
    fn at(a: &Anatomy, extra_bounds: &[Bounds], z: f64) -> Self {
        Nearby {
            vertebrae: (0..a.vertebrae.len())
                .filter(|&i| z >= a.vertebrae[i].world_min.z && z <= a.vertebrae[i].world_max.z)
                .collect(),
            discs: (0..a.discs.len())
                .filter(|&i| a.discs[i].bounds.spans_z(z))
                .collect(),
            extras: (0..a.extras.len())
                .filter(|&i| extra_bounds[i].spans_z(z))
                .collect(),
            extra_bounds: extra_bounds.to_vec(),
        }
    }
}

/// Fraction of a voxel of width `voxel` inside a surface at signed distance `d`.
fn cover(d: f64, voxel: f64) -> f64 {
    (0.5 - d / voxel).clamp(0.0, 1.0)
}

/// Smooth value noise in [-1, 1] with a 1.2 mm lattice (trabecular texture).
fn texture(x: DVec3, seed: u64) -> f64 {
    let p = x / 1.2;
    let f = p.floor();
    let t = p - f;
    let s = t * t * (DVec3::splat(3.0) - 2.0 * t);
    let (ix, iy, iz) = (f.x as i64, f.y as i64, f.z as i64);
    let mut acc = 0.0;
    for c in 0..8 {
        let (dx, dy, dz) = ((c & 1) as i64, ((c >> 1) & 1) as i64, ((c >> 2) & 1) as i64);
        let h = seeds::mix(
            seed ^ seeds::mix(
                (ix + dx) as u64 ^ seeds::mix((iy + dy) as u64 ^ seeds::mix((iz + dz) as u64)),
            ),
        );
        let v = (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let w = (if dx == 1 { s.x } else { 1.0 - s.x })
            * (if dy == 1 { s.y } else { 1.0 - s.y })
            * (if dz == 1 { s.z } else { 1.0 - s.z });
        acc += v * w;
    }
    acc
}

/// Normalised 1D Gaussian kernel of standard deviation `sigma` (in voxels).
fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil().max(1.0) as i64;
    let mut k: Vec<f64> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

/// Separable in-plane convolution with edge clamping.
fn blur_slice(img: &mut [f64], rows: usize, cols: usize, kernel: &[f64]) {
    let r = (kernel.len() / 2) as i64;
    let mut tmp = vec![0.0; img.len()];
    for y in 0..rows {
        for x in 0..cols {
            let mut acc = 0.0;
            for (i, w) in kernel.iter().enumerate() {
                let xx = (x as i64 + i as i64 - r).clamp(0, cols as i64 - 1) as usize;
                acc += w * img[y * cols + xx];
            }
            tmp[y * cols + x] = acc;
        }
    }
    for y in 0..rows {
        for x in 0..cols {
            let mut acc = 0.0;
            for (i, w) in kernel.iter().enumerate() {
                let yy = (y as i64 + i as i64 - r).clamp(0, rows as i64 - 1) as usize;
                acc += w * tmp[yy * cols + x];
            }
            img[y * cols + x] = acc;
        }
    }
}

/// Renders the study. `noise_seed` seeds the per-slice noise streams.
pub fn render(
    scene: &Scene,
    geom: &ScanGeometry,
    quality: ImageQuality,
    noise_seed: u64,
) -> Phantom {
    let plane = geom.rows * geom.cols;
    let mut hu = vec![0i16; geom.voxel_count()];
    let mut labels = vec![0u8; geom.voxel_count()];
    let mut crack_ids = vec![0u8; geom.voxel_count()];
    let voxel = geom.pixel_spacing;
    let extra_bounds: Vec<Bounds> = scene.anatomy.extras.iter().map(ExtraBone::bounds).collect();
    let mask_halves: Vec<f64> = scene
        .cracks
        .iter()
        .map(|c| c.mask_half_thickness(geom.max_spacing()))
        .collect();
    // Slice profile: 1 plane, or 3 across the thickness when it is much larger than a pixel.
    let offsets: Vec<f64> = if geom.slice_thickness > 1.5 * geom.pixel_spacing {
        vec![0.0, -geom.slice_thickness / 3.0, geom.slice_thickness / 3.0]
    } else {
        vec![0.0]
    };
    let sigma = (quality.psf_fwhm_mm / 2.355 / geom.pixel_spacing).max(0.45);
    let kernel = gaussian_kernel(sigma);
    let kernel_energy: f64 = kernel.iter().map(|w| w * w).sum::<f64>().powi(2);
    let white_sigma = quality.noise_hu / kernel_energy.sqrt();

    hu.par_chunks_mut(plane)
        .zip(labels.par_chunks_mut(plane))
        .zip(crack_ids.par_chunks_mut(plane))
        .enumerate()
        .for_each(|(k, ((hu_s, lab_s), crack_s))| {
            let z = geom.slice_z(k);
            let mut acc = vec![0.0f64; plane];
            for (oi, &dz) in offsets.iter().enumerate() {
                let zz = z + dz;
                let axis = scene.anatomy.axis_at(zz);
                let near = Nearby::at(scene.anatomy, &extra_bounds, zz);
                for row in 0..geom.rows {
                    for col in 0..geom.cols {
                        let x = geom.world(col, row, k) + DVec3::new(0.0, 0.0, dz);
                        let s = scene.sample(x, axis, voxel, &mask_halves, &near);
                        let i = row * geom.cols + col;
                        acc[i] += s.hu;
                        if oi == 0 {
                            lab_s[i] = s.label;
                            crack_s[i] = s.crack;
                        }
                    }
                }
            }
            let n = offsets.len() as f64;
            let mut rng = ChaCha8Rng::seed_from_u64(seeds::mix(noise_seed ^ seeds::mix(k as u64)));
            for v in acc.iter_mut() {
                let e: f64 = StandardNormal.sample(&mut rng);
                *v = *v / n + white_sigma * e;
            }
            blur_slice(&mut acc, geom.rows, geom.cols, &kernel);
            for (o, v) in hu_s.iter_mut().zip(&acc) {
                *o = v.round().clamp(-1024.0, 3071.0) as i16;
            }
        });

    // Every crack owns at least the voxel at its centre (which lies inside bone).
    for (ci, c) in scene.cracks.iter().enumerate() {
        let id = ci as u8 + 1;
        if !crack_ids.contains(&id) {
            if let Some((col, row, k)) = geom.voxel_of(c.centre) {
                crack_ids[(k * geom.rows + row) * geom.cols + col] = id;
            }
        }
    }
    Phantom {
        hu,
        labels,
        crack_ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_is_normalised_and_symmetric() {
        let k = gaussian_kernel(1.3);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..k.len() / 2 {
            assert!((k[i] - k[k.len() - 1 - i]).abs() < 1e-15);
        }
    }

    #[test]
    fn blur_preserves_constants() {
        let mut img = vec![5.0; 12];
        blur_slice(&mut img, 3, 4, &gaussian_kernel(0.8));
        assert!(img.iter().all(|v| (v - 5.0).abs() < 1e-12));
    }

    #[test]
    fn texture_is_bounded_and_deterministic() {
        for i in 0..100 {
            let x = DVec3::new(i as f64 * 0.37, -(i as f64) * 0.11, 3.0);
            let t = texture(x, 42);
            assert!((-1.0..=1.0).contains(&t));
            assert_eq!(t, texture(x, 42));
        }
    }

    #[test]
    fn cover_is_half_at_surface() {
        assert_eq!(cover(0.0, 1.0), 0.5);
        assert_eq!(cover(-2.0, 1.0), 1.0);
        assert_eq!(cover(2.0, 1.0), 0.0);
    }
}
