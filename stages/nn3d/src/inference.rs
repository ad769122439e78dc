//! Sliding-window inference (nnU-Net style): windows at evenly spread positions with a given
//! step fraction, Gaussian importance weighting (sigma = patch * 1/8), mirror test-time
//! augmentation over chosen axes, and averaging over several models. Accumulators are CPU f32
//! buffers of the output size; only `batch_size` windows are on the device at a time.

use candle_core::{bail, DType, Device, Module, Result, Tensor};
use candle_nn::ops::softmax;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlidingWindowConfig {
    pub patch: [usize; 3],
    /// Window step as a fraction of the patch (0.5 = half-patch stride).
    pub step_fraction: f64,
    /// Gaussian sigma as a fraction of the patch size.
    pub sigma_scale: f64,
    /// Spatial axes (0 = D, 1 = H, 2 = W) to mirror; every subset is evaluated and averaged.
    pub mirror_axes: Vec<usize>,
    pub batch_size: usize,
    /// Value of the padding around a volume smaller than the patch, in the network's input
    /// units: training pads with air, so inference must too (0 is about bone after z-scoring).
    #[serde(default)]
    pub pad_value: f32,
}

impl SlidingWindowConfig {
    /// Half-patch stride, sigma = patch/8, x-flip TTA (the method's stage-1 inference).
    pub fn new(patch: [usize; 3]) -> Self {
        Self {
            patch,
            step_fraction: 0.5,
            sigma_scale: 1.0 / 8.0,
            mirror_axes: vec![2],
            batch_size: 1,
            pad_value: 0.0,
        }
    }
}

/// Window start positions along one axis, as nnU-Net's `compute_steps_for_sliding_window`.
pub fn window_starts(size: usize, patch: usize, step_fraction: f64) -> Vec<usize> {
    if size <= patch {
        return vec![0];
    }
    let target = patch as f64 * step_fraction;
    let n = ((size - patch) as f64 / target).ceil() as usize + 1;
    let actual = (size - patch) as f64 / (n - 1) as f64;
    (0..n)
        .map(|i| (actual * i as f64).round() as usize)
        .collect()
}

/// Gaussian importance map of the patch, maximum 1 (row-major D, H, W).
pub fn gaussian_importance(patch: [usize; 3], sigma_scale: f64) -> Vec<f32> {
    let axis = |p: usize| -> Vec<f64> {
        let c = (p / 2) as f64;
        let s = (p as f64 * sigma_scale).max(1e-6);
        (0..p)
            .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * s * s)).exp())
            .collect()
    };
    let (gd, gh, gw) = (axis(patch[0]), axis(patch[1]), axis(patch[2]));
    let mut out = Vec::with_capacity(patch.iter().product());
    for a in &gd {
        for b in &gh {
            for c in &gw {
                out.push(a * b * c);
            }
        }
    }
    let max = out.iter().cloned().fold(0.0, f64::max);
    let min_pos = out
        .iter()
        .cloned()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    out.iter()
        .map(|v| {
            if *v > 0.0 {
                (v / max) as f32
            } else {
                (min_pos / max) as f32
            }
        })
        .collect()
}

fn mirror_sets(axes: &[usize]) -> Vec<Vec<usize>> {
    let mut sets = Vec::with_capacity(1 << axes.len());
    for mask in 0..(1usize << axes.len()) {
        sets.push(
            axes.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, a)| a + 2)
                .collect(),
        );
    }
    sets
}

/// Per-class probabilities `(classes, D, H, W)` (f32, CPU) for `image (C, D, H, W)`.
/// `progress(done, total)` is called after each batch of windows.
pub fn predict_sliding_window(
    models: &[&dyn Module],
    image: &Tensor,
    num_classes: usize,
    cfg: &SlidingWindowConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    if models.is_empty() {
        bail!("sliding window: no models")
    }
    if cfg.mirror_axes.iter().any(|&a| a > 2)
        || cfg.patch.contains(&0)
        || cfg.batch_size == 0
        || !(cfg.step_fraction > 0.0 && cfg.step_fraction <= 1.0)
    {
        bail!("sliding window: invalid config {cfg:?}")
    }
    let (_, d, h, w) = image.dims4()?;
    let size = [d, h, w];
    let patch = cfg.patch;
    // Pad symmetrically to at least one patch, with `pad_value` (shift, zero-pad, shift back).
    let mut lo = [0; 3];
    let mut x = image.unsqueeze(0)?;
    let needs_pad = (0..3).any(|i| size[i] < patch[i]);
    if needs_pad && cfg.pad_value != 0.0 {
        x = x.affine(1.0, -f64::from(cfg.pad_value))?;
    }
    let mut padded = size;
    for i in 0..3 {
        if size[i] < patch[i] {
            let total = patch[i] - size[i];
            lo[i] = total / 2;
            x = x.pad_with_zeros(i + 2, lo[i], total - lo[i])?;
            padded[i] = patch[i];
        }
    }
    if needs_pad && cfg.pad_value != 0.0 {
        x = x.affine(1.0, f64::from(cfg.pad_value))?;
    }
    let starts: Vec<Vec<usize>> = (0..3)
        .map(|i| window_starts(padded[i], patch[i], cfg.step_fraction))
        .collect();
    let mut windows = Vec::new();
    for &a in &starts[0] {
        for &b in &starts[1] {
            for &e in &starts[2] {
                windows.push([a, b, e]);
            }
        }
    }
    let gauss = gaussian_importance(patch, cfg.sigma_scale);
    let pvol: usize = patch.iter().product();
    let vol: usize = padded.iter().product();
    let mut acc = vec![0f32; num_classes * vol];
    let mut weight = vec![0f32; vol];
    let flips = mirror_sets(&cfg.mirror_axes);
    let n_pred = (models.len() * flips.len()) as f64;
    let total = windows.len();
    for (bi, chunk) in windows.chunks(cfg.batch_size).enumerate() {
        let crops: Vec<Tensor> = chunk
            .iter()
            .map(|s| {
                x.narrow(2, s[0], patch[0])?
                    .narrow(3, s[1], patch[1])?
                    .narrow(4, s[2], patch[2])
            })
            .collect::<Result<_>>()?;
        let xb = Tensor::cat(&crops, 0)?.contiguous()?;
        let mut sum: Option<Tensor> = None;
        for model in models {
            for f in &flips {
                let xin = if f.is_empty() {
                    xb.clone()
                } else {
                    xb.flip(f)?
                };
                // Inference needs no gradient: detaching drops the forward graph (every
                // intermediate activation) now instead of when the ensemble sum is dropped.
                let logits = model.forward(&xin)?.detach();
                if logits.dims() != [chunk.len(), num_classes, patch[0], patch[1], patch[2]] {
                    bail!(
                        "sliding window: model output {:?}, expected {:?}",
                        logits.dims(),
                        [chunk.len(), num_classes, patch[0], patch[1], patch[2]]
                    )
                }
                let mut p = softmax(&logits.to_dtype(DType::F32)?, 1)?;
                if !f.is_empty() {
                    p = p.flip(f)?;
                }
                sum = Some(match sum {
                    None => p,
                    Some(s) => (s + p)?,
                });
            }
        }
        let Some(sum) = sum else {
            bail!("sliding window: nothing predicted")
        };
        let probs = (sum / n_pred)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (k, s) in chunk.iter().enumerate() {
            for cls in 0..num_classes {
                let src = &probs[(k * num_classes + cls) * pvol..][..pvol];
                let dst = &mut acc[cls * vol..(cls + 1) * vol];
                accumulate(dst, src, &gauss, padded, patch, *s);
            }
            let wsrc = vec![1f32; pvol];
            accumulate(&mut weight, &wsrc, &gauss, padded, patch, *s);
        }
        progress(((bi + 1) * cfg.batch_size).min(total), total);
    }
    for cls in 0..num_classes {
        for (v, wt) in acc[cls * vol..(cls + 1) * vol].iter_mut().zip(&weight) {
            *v /= *wt;
        }
    }
    let out = Tensor::from_vec(
        acc,
        (num_classes, padded[0], padded[1], padded[2]),
        &Device::Cpu,
    )?;
    out.narrow(1, lo[0], d)?
        .narrow(2, lo[1], h)?
        .narrow(3, lo[2], w)?
        .contiguous()
}

/// `dst[window] += src * gauss` for a window starting at `s` in a volume of `size`.
fn accumulate(
    dst: &mut [f32],
    src: &[f32],
    gauss: &[f32],
    size: [usize; 3],
    patch: [usize; 3],
    s: [usize; 3],
) {
    for a in 0..patch[0] {
        for b in 0..patch[1] {
            let drow = ((s[0] + a) * size[1] + s[1] + b) * size[2] + s[2];
            let prow = (a * patch[1] + b) * patch[2];
            let d = &mut dst[drow..drow + patch[2]];
            for ((dv, sv), gv) in d
                .iter_mut()
                .zip(&src[prow..prow + patch[2]])
                .zip(&gauss[prow..prow + patch[2]])
            {
                *dv += sv * gv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_cover_the_volume() {
        assert_eq!(window_starts(64, 64, 0.5), vec![0]);
        assert_eq!(window_starts(40, 64, 0.5), vec![0]);
        assert_eq!(window_starts(128, 64, 0.5), vec![0, 32, 64]);
        let s = window_starts(100, 64, 0.5);
        assert_eq!(s.first(), Some(&0));
        assert_eq!(s.last(), Some(&36));
        assert!(s.windows(2).all(|w| w[1] - w[0] <= 32));
    }

    #[test]
    fn gaussian_peaks_at_centre() {
        let g = gaussian_importance([5, 4, 6], 0.125);
        let max_idx = g
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(max_idx, Some((2 * 4 + 2) * 6 + 3));
        assert!((g[(2 * 4 + 2) * 6 + 3] - 1.0).abs() < 1e-7);
        assert!(g.iter().all(|v| *v > 0.0));
    }
}
