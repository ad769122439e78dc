//! nnU-Net's CT normalisation: clip to the 0.5 / 99.5 percentiles of foreground voxels, then
//! z-score with the foreground mean and standard deviation. The statistics come from the
//! training set and are stored with the model, so inference normalises the same way.

use serde::{Deserialize, Serialize};

use crate::error::{Result, Rsna7Error};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CtNormalizer {
    pub clip_low: f32,
    pub clip_high: f32,
    pub mean: f32,
    pub std: f32,
}

impl CtNormalizer {
    /// Fits on foreground HU samples (any number; the caller subsamples large sets).
    pub fn fit(samples: &mut [f32]) -> Result<Self> {
        let mut v: Vec<f32> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.len() < 10 {
            return Err(Rsna7Error::Invalid(format!(
                "CT normalisation needs foreground voxels, got {}",
                v.len()
            )));
        }
        v.sort_by(f32::total_cmp);
        let pct = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        let (lo, hi) = (pct(0.005), pct(0.995));
        let clipped = v.iter().map(|x| f64::from(x.clamp(lo, hi)));
        let n = v.len() as f64;
        let mean = clipped.clone().sum::<f64>() / n;
        let var = clipped.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        Ok(Self {
            clip_low: lo,
            clip_high: hi,
            mean: mean as f32,
            std: (var.sqrt() as f32).max(1e-3),
        })
    }

    pub fn apply(&self, hu: f32) -> f32 {
        (hu.clamp(self.clip_low, self.clip_high) - self.mean) / self.std
    }

    /// The normalised value of `hu` without clipping (e.g. the fracture-gap value).
    pub fn value_of(&self, hu: f32) -> f32 {
        (hu - self.mean) / self.std
    }
}

/// Every `step`-th value of `data` where `mask` holds, for fitting a normaliser cheaply.
pub fn sample_where<T: Copy + Into<f32>>(
    data: &[T],
    mask: impl Fn(usize) -> bool,
    step: usize,
) -> Vec<f32> {
    data.iter()
        .enumerate()
        .filter(|(i, _)| mask(*i))
        .step_by(step.max(1))
        .map(|(_, v)| (*v).into())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_clips_outliers_and_standardises() {
        let mut s: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        s.push(1e6);
        let n = CtNormalizer::fit(&mut s).unwrap();
        assert!(n.clip_high < 1000.0 && n.clip_low < 10.0);
        assert!((n.mean - 500.0).abs() < 5.0, "{n:?}");
        assert!((n.std - 288.0).abs() < 5.0, "{n:?}");
        assert_eq!(n.apply(1e6), n.apply(n.clip_high));
        assert!(CtNormalizer::fit(&mut [1.0, 2.0]).is_err());
    }
}
