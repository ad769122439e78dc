//! The method's augmentation recipe (rsna7-method.md section 3, nnU-Net v1 `nnUNetTrainerV2`
//! defaults): which transforms fire with which probability and parameter ranges. Drawing is
//! split from applying: [`AugmentConfig::draw`] returns an inspectable [`AugmentPlan`] and
//! [`AugmentPlan::apply_intensity`] / [`AugmentPlan::apply_mirror`] carry it out, so tests can
//! count frequencies and callers can log what happened.

use std::f64::consts::PI;

use rand::Rng;

use crate::grid::Grid3;
use crate::intensity;
use crate::spatial::{mirror, SpatialParams};

/// A closed range `[lo, hi]` to draw a parameter from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
}

impl Range {
    pub const fn new(lo: f64, hi: f64) -> Self {
        Self { lo, hi }
    }

    /// Uniform draw in `[lo, hi]` (returns `lo` for an empty range).
    pub fn uniform(&self, rng: &mut impl Rng) -> f64 {
        if self.hi > self.lo {
            rng.gen_range(self.lo..=self.hi)
        } else {
            self.lo
        }
    }

    /// batchgenerators' draw for multiplicative factors straddling 1: with probability 0.5 (when
    /// `lo < 1`) uniform in `[lo, 1]`, otherwise uniform in `[max(lo, 1), hi]`, so shrinking and
    /// growing are equally likely.
    pub fn around_one(&self, rng: &mut impl Rng) -> f64 {
        if self.lo < 1.0 && rng.gen_bool(0.5) {
            Range::new(self.lo, 1.0).uniform(rng)
        } else {
            Range::new(self.lo.max(1.0), self.hi).uniform(rng)
        }
    }
}

/// Probabilities and ranges of every augmentation. Probabilities are per sample.
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Probability of rotating; when it fires each enabled axis gets its own angle.
    pub p_rotation: f64,
    /// Angle range, radians (±30° by default).
    pub rotation: Range,
    /// Which rotation axes are enabled, `[about z, about y, about x]`.
    pub rotation_axes: [bool; 3],
    /// Probability of scaling, and the coordinate scale range (see `spatial`).
    pub p_scale: f64,
    pub scale: Range,
    /// Gaussian noise: probability and range of its standard deviation.
    pub p_noise: f64,
    pub noise_std: Range,
    /// Gaussian blur: probability and sigma range (voxels), drawn per axis.
    pub p_blur: f64,
    pub blur_sigma: Range,
    /// Multiplicative brightness: probability and multiplier range.
    pub p_brightness: f64,
    pub brightness: Range,
    /// Contrast: probability and factor range (drawn around 1).
    pub p_contrast: f64,
    pub contrast: Range,
    /// Low-resolution simulation: probability and zoom range.
    pub p_low_res: f64,
    pub low_res_zoom: Range,
    /// Gamma on the inverted image: probability; then gamma on the image: probability.
    pub p_gamma_inverted: f64,
    pub p_gamma: f64,
    /// Gamma range (drawn around 1).
    pub gamma: Range,
    /// Probability of mirroring each axis `[z, y, x]`.
    pub p_mirror: [f64; 3],
}

impl Default for AugmentConfig {
    /// The method's stage-1/stage-2 recipe.
    fn default() -> Self {
        let deg30 = 30.0 * PI / 180.0;
        Self {
            p_rotation: 0.2,
            rotation: Range::new(-deg30, deg30),
            rotation_axes: [true; 3],
            p_scale: 0.2,
            scale: Range::new(0.7, 1.4),
            p_noise: 0.1,
            noise_std: Range::new(0.0, 0.1),
            p_blur: 0.2,
            blur_sigma: Range::new(0.5, 1.0),
            p_brightness: 0.15,
            brightness: Range::new(0.75, 1.25),
            p_contrast: 0.15,
            contrast: Range::new(0.75, 1.25),
            p_low_res: 0.25,
            low_res_zoom: Range::new(0.5, 1.0),
            p_gamma_inverted: 0.1,
            p_gamma: 0.3,
            gamma: Range::new(0.7, 1.5),
            p_mirror: [0.5; 3],
        }
    }
}

impl AugmentConfig {
    /// A config that never changes anything (all probabilities 0).
    pub fn none() -> Self {
        Self {
            p_rotation: 0.0,
            p_scale: 0.0,
            p_noise: 0.0,
            p_blur: 0.0,
            p_brightness: 0.0,
            p_contrast: 0.0,
            p_low_res: 0.0,
            p_gamma_inverted: 0.0,
            p_gamma: 0.0,
            p_mirror: [0.0; 3],
            ..Self::default()
        }
    }

    /// Draws which augmentations fire for one sample and their parameters. Every draw is made
    /// in a fixed order whatever fires, so one sample's plan does not shift the next's.
    pub fn draw(&self, rng: &mut impl Rng) -> AugmentPlan {
        fn fire(p: f64, rng: &mut impl Rng) -> bool {
            // Always consume one draw so later parameters do not depend on `p`.
            let u: f64 = rng.gen();
            u < p
        }
        let rotate = fire(self.p_rotation, rng);
        let angles = [0, 1, 2]
            .map(|a| self.rotation.uniform(rng) * f64::from(u8::from(self.rotation_axes[a])));
        let scale_on = fire(self.p_scale, rng);
        let scale = self.scale.uniform(rng);
        let spatial = SpatialParams {
            angles: if rotate { angles } else { [0.0; 3] },
            scale: if scale_on { scale } else { 1.0 },
        };

        let noise = fire(self.p_noise, rng);
        let noise_std = self.noise_std.uniform(rng) as f32;
        let blur = fire(self.p_blur, rng);
        let blur_sigmas = [0, 1, 2].map(|_| self.blur_sigma.uniform(rng));
        let bright = fire(self.p_brightness, rng);
        let brightness = self.brightness.uniform(rng) as f32;
        let contrast_on = fire(self.p_contrast, rng);
        let contrast = self.contrast.around_one(rng) as f32;
        let low_res_on = fire(self.p_low_res, rng);
        let zoom = self.low_res_zoom.uniform(rng);
        let gamma_inv_on = fire(self.p_gamma_inverted, rng);
        let gamma_inv = self.gamma.around_one(rng) as f32;
        let gamma_on = fire(self.p_gamma, rng);
        let gamma = self.gamma.around_one(rng) as f32;
        let mirror_axes = [0, 1, 2].map(|a| fire(self.p_mirror[a], rng));
        AugmentPlan {
            spatial,
            noise_std: noise.then_some(noise_std),
            blur_sigmas: blur.then_some(blur_sigmas),
            brightness: bright.then_some(brightness),
            contrast: contrast_on.then_some(contrast),
            low_res_zoom: low_res_on.then_some(zoom),
            gamma_inverted: gamma_inv_on.then_some(gamma_inv),
            gamma: gamma_on.then_some(gamma),
            mirror: mirror_axes,
        }
    }
}

/// The drawn augmentation of one sample; `None` means "does not fire".
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentPlan {
    /// Rotation + scale (identity when neither fired).
    pub spatial: SpatialParams,
    pub noise_std: Option<f32>,
    pub blur_sigmas: Option<[f64; 3]>,
    pub brightness: Option<f32>,
    pub contrast: Option<f32>,
    pub low_res_zoom: Option<f64>,
    pub gamma_inverted: Option<f32>,
    pub gamma: Option<f32>,
    /// Axes `[z, y, x]` to mirror (image and labels alike).
    pub mirror: [bool; 3],
}

impl AugmentPlan {
    /// A plan that changes nothing.
    pub fn identity() -> Self {
        Self {
            spatial: SpatialParams::IDENTITY,
            noise_std: None,
            blur_sigmas: None,
            brightness: None,
            contrast: None,
            low_res_zoom: None,
            gamma_inverted: None,
            gamma: None,
            mirror: [false; 3],
        }
    }

    /// Gray-value augmentations in nnU-Net's order: noise, blur, brightness, contrast, low
    /// resolution, inverted gamma, gamma. `rng` feeds the noise only.
    pub fn apply_intensity(&self, image: &mut Grid3<f32>, rng: &mut impl Rng) {
        if let Some(std) = self.noise_std {
            intensity::add_gaussian_noise(image.as_mut_slice(), std, rng);
        }
        if let Some(sigmas) = self.blur_sigmas {
            intensity::gaussian_blur(image, sigmas);
        }
        if let Some(m) = self.brightness {
            intensity::multiply_brightness(image.as_mut_slice(), m);
        }
        if let Some(f) = self.contrast {
            intensity::adjust_contrast(image.as_mut_slice(), f);
        }
        if let Some(z) = self.low_res_zoom {
            intensity::simulate_low_resolution(image, z);
        }
        if let Some(g) = self.gamma_inverted {
            intensity::apply_gamma(image.as_mut_slice(), g, true, true);
        }
        if let Some(g) = self.gamma {
            intensity::apply_gamma(image.as_mut_slice(), g, false, true);
        }
    }

    /// Mirrors a grid (image or any label map) along the drawn axes.
    pub fn apply_mirror<T: Copy>(&self, grid: &mut Grid3<T>) {
        mirror(grid, self.mirror);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeding::stream_rng;

    #[test]
    fn around_one_splits_evenly() {
        let r = Range::new(0.7, 1.5);
        let mut rng = stream_rng(3, 0);
        let n = 20000;
        let below = (0..n).filter(|_| r.around_one(&mut rng) < 1.0).count();
        assert!((below as f64 / n as f64 - 0.5).abs() < 0.02);
    }

    #[test]
    fn none_config_draws_identity() {
        let mut rng = stream_rng(4, 0);
        for _ in 0..100 {
            assert_eq!(
                AugmentConfig::none().draw(&mut rng),
                AugmentPlan::identity()
            );
        }
    }
}
