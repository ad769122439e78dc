//! Gray-value augmentations on an image patch, following batchgenerators (the library nnU-Net v1
//! used): gaussian noise, gaussian blur, multiplicative brightness, contrast, low-resolution
//! simulation and gamma. Each function applies one already-drawn parameter set; drawing the
//! parameters (and the probabilities) lives in `augment`.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::grid::Grid3;
use crate::interpolate::{resize_linear, resize_nearest};

/// Adds zero-mean gaussian noise with standard deviation `std` to every voxel.
pub fn add_gaussian_noise(data: &mut [f32], std: f32, rng: &mut impl Rng) {
    for v in data {
        let n: f32 = rng.sample(StandardNormal);
        *v += n * std;
    }
}

/// 1D gaussian kernel truncated at 4 sigma (scipy's default), normalised to sum 1.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let radius = (4.0 * sigma + 0.5).floor().max(0.0) as i64;
    let w: Vec<f64> = (-radius..=radius)
        .map(|i| (-0.5 * (i * i) as f64 / (sigma * sigma)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| (v / s) as f32).collect()
}

/// Reflect an index into `0..n` the way `scipy.ndimage` mode "reflect" does (`d c b a | a b c d`).
#[inline]
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// Separable gaussian blur with per-axis `sigmas` (voxels, `[z, y, x]`), reflecting borders
/// as `scipy.ndimage.gaussian_filter(mode="reflect", truncate=4)`. A sigma of 0 skips the axis.
pub fn gaussian_blur(grid: &mut Grid3<f32>, sigmas: [f64; 3]) {
    let shape = grid.shape();
    for (axis, &sigma) in sigmas.iter().enumerate() {
        if sigma > 0.0 {
            blur_axis(grid.as_mut_slice(), shape, axis, &gaussian_kernel(sigma));
        }
    }
}

/// Convolves along one axis. The volume is viewed as `[outer, n, inner]` with `n` the axis
/// length; each output line is a weighted sum of whole `inner`-long input lines, which keeps
/// the inner loop contiguous (and vectorisable) for the z and y axes.
fn blur_axis(data: &mut [f32], shape: [usize; 3], axis: usize, kernel: &[f32]) {
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let r = (kernel.len() / 2) as i64;
    let mut block = vec![0.0f32; n * inner];
    if inner == 1 {
        // x axis: one padded copy of the row, then a dot product per output voxel.
        let mut padded = vec![0.0f32; n + 2 * r as usize];
        for row in data.chunks_mut(n) {
            for (k, v) in padded.iter_mut().enumerate() {
                *v = row[reflect(k as i64 - r, n)];
            }
            for (j, out) in row.iter_mut().enumerate() {
                *out = padded[j..j + kernel.len()]
                    .iter()
                    .zip(kernel)
                    .map(|(a, w)| a * w)
                    .sum();
            }
        }
        return;
    }
    for chunk in data.chunks_mut(n * inner) {
        block.copy_from_slice(chunk);
        for j in 0..n {
            let out = &mut chunk[j * inner..(j + 1) * inner];
            out.iter_mut().for_each(|v| *v = 0.0);
            for (t, &w) in kernel.iter().enumerate() {
                let src = reflect(j as i64 + t as i64 - r, n);
                let line = &block[src * inner..(src + 1) * inner];
                out.iter_mut().zip(line).for_each(|(o, &v)| *o += w * v);
            }
        }
    }
}

/// Multiplies every voxel by `multiplier`.
pub fn multiply_brightness(data: &mut [f32], multiplier: f32) {
    data.iter_mut().for_each(|v| *v *= multiplier);
}

/// Scales the deviation from the mean by `factor`, then clips to the original range
/// (batchgenerators `augment_contrast(preserve_range=True)`).
pub fn adjust_contrast(data: &mut [f32], factor: f32) {
    if data.is_empty() {
        return;
    }
    let mean = (data.iter().map(|&v| v as f64).sum::<f64>() / data.len() as f64) as f32;
    let (lo, hi) = min_max(data);
    for v in data {
        *v = ((*v - mean) * factor + mean).clamp(lo, hi);
    }
}

/// Downsamples by `zoom` (< 1) with nearest neighbour and upsamples back trilinearly,
/// simulating a coarser acquisition (batchgenerators `augment_linear_downsampling_scipy`).
pub fn simulate_low_resolution(grid: &mut Grid3<f32>, zoom: f64) {
    let shape = grid.shape();
    let small = shape.map(|n| ((n as f64 * zoom).round() as usize).max(1));
    if small == shape {
        return;
    }
    let down = resize_nearest(grid, small);
    *grid = resize_linear(&down, shape);
}

/// Gamma transform on the value range: `x' = ((x − min)/range)^gamma · range + min`; with
/// `invert` it acts on `−x`; with `retain_stats` the original mean and standard deviation are
/// restored afterwards (batchgenerators `augment_gamma`).
pub fn apply_gamma(data: &mut [f32], gamma: f32, invert: bool, retain_stats: bool) {
    if data.is_empty() {
        return;
    }
    if invert {
        data.iter_mut().for_each(|v| *v = -*v);
    }
    let (mean, std) = if retain_stats {
        mean_std(data)
    } else {
        (0.0, 0.0)
    };
    let (lo, hi) = min_max(data);
    let range = hi - lo;
    let eps = 1e-7f32;
    for v in data.iter_mut() {
        *v = ((*v - lo) / (range + eps)).max(0.0).powf(gamma) * range + lo;
    }
    if retain_stats {
        let (m2, s2) = mean_std(data);
        for v in data.iter_mut() {
            *v = (*v - m2) / (s2 + 1e-8) * std + mean;
        }
    }
    if invert {
        data.iter_mut().for_each(|v| *v = -*v);
    }
}

/// Minimum and maximum of a non-empty slice.
pub fn min_max(data: &[f32]) -> (f32, f32) {
    data.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Mean and (population) standard deviation, accumulated in f64.
pub fn mean_std(data: &[f32]) -> (f32, f32) {
    let n = data.len() as f64;
    let mean = data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, var.sqrt() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeding::stream_rng;

    fn noise_grid() -> Grid3<f32> {
        let mut rng = stream_rng(1, 0);
        Grid3::from_fn([6, 7, 9], |_, _, _| rng.gen_range(-2.0f32..3.0)).unwrap()
    }

    #[test]
    fn blur_matches_naive_3d_convolution() {
        let g = noise_grid();
        let sig = [0.5, 0.8, 1.0];
        let mut fast = g.clone();
        gaussian_blur(&mut fast, sig);
        let k = sig.map(gaussian_kernel);
        let r = k.clone().map(|k| (k.len() / 2) as i64);
        let s = g.shape();
        for z in 0..s[0] {
            for y in 0..s[1] {
                for x in 0..s[2] {
                    let mut acc = 0.0f64;
                    for (a, &wa) in k[0].iter().enumerate() {
                        for (b, &wb) in k[1].iter().enumerate() {
                            for (c, &wc) in k[2].iter().enumerate() {
                                let zz = reflect(z as i64 + a as i64 - r[0], s[0]);
                                let yy = reflect(y as i64 + b as i64 - r[1], s[1]);
                                let xx = reflect(x as i64 + c as i64 - r[2], s[2]);
                                acc += (wa * wb * wc) as f64 * g.get(zz, yy, xx) as f64;
                            }
                        }
                    }
                    assert!((fast.get(z, y, x) as f64 - acc).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn reflect_matches_scipy_convention() {
        let got: Vec<usize> = (-4..8).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]);
    }

    #[test]
    fn contrast_keeps_range_and_mean_direction() {
        let g = noise_grid();
        let (lo, hi) = min_max(g.as_slice());
        let mut d = g.as_slice().to_vec();
        adjust_contrast(&mut d, 1.25);
        let (lo2, hi2) = min_max(&d);
        assert!(lo2 >= lo && hi2 <= hi);
        let mut d = g.as_slice().to_vec();
        adjust_contrast(&mut d, 0.75);
        let (_, s0) = mean_std(g.as_slice());
        let (_, s1) = mean_std(&d);
        assert!((s1 / s0 - 0.75).abs() < 1e-4);
    }

    #[test]
    fn gamma_retains_stats_and_identity_at_one() {
        let g = noise_grid();
        let mut d = g.as_slice().to_vec();
        apply_gamma(&mut d, 1.0, false, false);
        for (a, b) in d.iter().zip(g.as_slice()) {
            assert!((a - b).abs() < 1e-5);
        }
        for invert in [false, true] {
            let mut d = g.as_slice().to_vec();
            apply_gamma(&mut d, 1.4, invert, true);
            let (m0, s0) = mean_std(g.as_slice());
            let (m1, s1) = mean_std(&d);
            assert!((m0 - m1).abs() < 1e-4 && (s0 - s1).abs() < 1e-4);
            assert!(d
                .iter()
                .zip(g.as_slice())
                .any(|(a, b)| (a - b).abs() > 1e-3));
        }
    }

    #[test]
    fn low_resolution_keeps_shape_and_constant() {
        let mut c = Grid3::filled([8, 8, 8], 3.5f32).unwrap();
        simulate_low_resolution(&mut c, 0.5);
        assert_eq!(c.shape(), [8, 8, 8]);
        assert!(c.as_slice().iter().all(|&v| (v - 3.5).abs() < 1e-6));
        let mut g = noise_grid();
        let before = g.clone();
        simulate_low_resolution(&mut g, 0.5);
        assert_ne!(g, before);
    }

    #[test]
    fn noise_has_requested_std() {
        let mut d = vec![0.0f32; 20000];
        add_gaussian_noise(&mut d, 0.3, &mut stream_rng(2, 0));
        let (m, s) = mean_std(&d);
        assert!(m.abs() < 0.01 && (s - 0.3).abs() < 0.01);
    }
}
