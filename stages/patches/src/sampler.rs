//! Patch placement with foreground oversampling, as nnU-Net's data loader does: with
//! probability `p_foreground` the patch is centred on a random voxel of a random foreground
//! class present in the case, otherwise it is placed uniformly; volumes smaller than the patch
//! are padded symmetrically (the region may start at a negative index).

use rand::seq::SliceRandom;
use rand::Rng;
use thiserror::Error;

use crate::grid::{checked_len, Grid3, GridError};

/// Errors from configuring the sampler.
#[derive(Debug, Error, PartialEq)]
pub enum SamplerError {
    #[error("invalid patch size: {0}")]
    PatchSize(GridError),
    #[error("foreground probability {0} is outside [0, 1]")]
    Probability(f64),
}

/// Where foreground voxels of each class sit in one label volume, for oversampling.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForegroundIndex {
    /// `(class, linear voxel indices)` for each class present, ascending by class.
    classes: Vec<(u8, Vec<u64>)>,
}

impl ForegroundIndex {
    /// Indexes every non-zero voxel of `label`. With `max_per_class`, keeps an evenly spaced
    /// subset of at most that many voxels per class (nnU-Net keeps 10,000), which bounds memory
    /// on large volumes while spreading over the whole structure. Two passes (count, then
    /// collect), so no per-class list larger than the kept subset is ever built.
    pub fn build(label: &Grid3<u8>, max_per_class: Option<usize>) -> Self {
        let mut counts = [0usize; 256];
        for &c in label.as_slice() {
            counts[c as usize] += 1;
        }
        // For class c with n voxels keeping k: keep occurrences floor(j * n / k), j = 0..k.
        let keep: Vec<usize> = counts
            .iter()
            .map(|&n| max_per_class.filter(|&k| k > 0).map_or(n, |k| n.min(k)))
            .collect();
        let mut lists: Vec<Vec<u64>> = keep.iter().map(|&k| Vec::with_capacity(k)).collect();
        let mut seen = [0usize; 256];
        for (i, &c) in label.as_slice().iter().enumerate() {
            let c = c as usize;
            if c == 0 {
                continue;
            }
            let (n, k) = (counts[c], keep[c]);
            let j = lists[c].len();
            if j < k && seen[c] == j * n / k {
                lists[c].push(i as u64);
            }
            seen[c] += 1;
        }
        let classes = lists
            .into_iter()
            .enumerate()
            .skip(1)
            .filter(|(_, v)| !v.is_empty())
            .map(|(c, v)| (c as u8, v))
            .collect();
        Self { classes }
    }

    /// The classes present, ascending.
    pub fn classes(&self) -> impl Iterator<Item = u8> + '_ {
        self.classes.iter().map(|(c, _)| *c)
    }

    /// Whether no foreground voxel was found.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// A random class (uniform over present classes), then a random voxel of it.
    pub fn pick(&self, rng: &mut impl Rng) -> Option<(u8, usize)> {
        let (c, voxels) = self.classes.choose(rng)?;
        voxels.choose(rng).map(|&i| (*c, i as usize))
    }
}

/// A patch-sized box in volume voxel coordinates; may extend past the volume (padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchRegion {
    /// First voxel `[z, y, x]`, possibly negative.
    pub origin: [i64; 3],
    pub size: [usize; 3],
}

impl PatchRegion {
    /// Geometric centre in voxel coordinates (`origin + (size − 1)/2`).
    pub fn centre(&self) -> [f64; 3] {
        [0, 1, 2].map(|a| self.origin[a] as f64 + (self.size[a] as f64 - 1.0) / 2.0)
    }

    /// Whether voxel `[z, y, x]` lies inside the box.
    pub fn contains(&self, p: [usize; 3]) -> bool {
        (0..3).all(|a| {
            (p[a] as i64) >= self.origin[a] && (p[a] as i64) < self.origin[a] + self.size[a] as i64
        })
    }
}

/// Draws patch regions of a fixed size.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchSampler {
    patch: [usize; 3],
    p_foreground: f64,
    pad_to: [usize; 3],
}

/// How a region was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Centred on a voxel of this class.
    Foreground(u8),
    /// Uniformly placed (also the fallback when a forced-foreground draw finds no foreground).
    Random,
}

impl PatchSampler {
    /// A sampler of `patch`-sized regions (`[z, y, x]`) that forces foreground with
    /// probability `p_foreground`.
    pub fn new(patch: [usize; 3], p_foreground: f64) -> Result<Self, SamplerError> {
        checked_len(patch).map_err(SamplerError::PatchSize)?;
        if !(0.0..=1.0).contains(&p_foreground) {
            return Err(SamplerError::Probability(p_foreground));
        }
        Ok(Self {
            patch,
            p_foreground,
            pad_to: [0; 3],
        })
    }

    /// Treats every volume as first padded symmetrically to at least `extent` (stage 3: pad to
    /// 128^3, then random-crop 96^3), so the patch can also start inside that padding.
    pub fn with_pad_to(mut self, extent: [usize; 3]) -> Self {
        self.pad_to = extent;
        self
    }

    pub fn patch(&self) -> [usize; 3] {
        self.patch
    }

    pub fn p_foreground(&self) -> f64 {
        self.p_foreground
    }

    /// Draws a region for a volume of `shape` with foreground `index`. Same rule as nnU-Net: the
    /// admissible origins span `[−pad/2, shape + pad/2 + pad%2 − patch]` where `pad` is how much
    /// the patch exceeds the volume; a foreground voxel is put at the patch centre, then the
    /// origin is clamped into that span.
    pub fn sample(
        &self,
        shape: [usize; 3],
        index: &ForegroundIndex,
        rng: &mut impl Rng,
    ) -> (PatchRegion, Placement) {
        let force = rng.gen::<f64>() < self.p_foreground;
        let uniform: [f64; 3] = [rng.gen(), rng.gen(), rng.gen()];
        let picked = index.pick(rng);
        let mut origin = [0i64; 3];
        let mut lo = [0i64; 3];
        let mut hi = [0i64; 3];
        for a in 0..3 {
            // Virtual extent after the optional pad_to padding, starting at `start`.
            let extent = shape[a].max(self.pad_to[a]) as i64;
            let start = -((extent - shape[a] as i64) / 2);
            let need = (self.patch[a] as i64 - extent).max(0);
            lo[a] = start - need / 2;
            hi[a] = start + extent + need / 2 + need % 2 - self.patch[a] as i64;
            let span = (hi[a] - lo[a] + 1) as f64;
            origin[a] = lo[a] + ((uniform[a] * span) as i64).min(hi[a] - lo[a]);
        }
        let mut placement = Placement::Random;
        if force {
            if let Some((class, linear)) = picked {
                let x = linear % shape[2];
                let y = (linear / shape[2]) % shape[1];
                let z = linear / (shape[1] * shape[2]);
                let voxel = [z, y, x];
                for a in 0..3 {
                    origin[a] = (voxel[a] as i64 - (self.patch[a] / 2) as i64).clamp(lo[a], hi[a]);
                }
                placement = Placement::Foreground(class);
            }
        }
        (
            PatchRegion {
                origin,
                size: self.patch,
            },
            placement,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeding::stream_rng;

    #[test]
    fn index_lists_classes_and_subsamples() {
        let label = Grid3::from_fn([4, 10, 10], |z, _, x| {
            if z == 1 {
                2
            } else if x == 0 {
                5
            } else {
                0
            }
        })
        .unwrap();
        let idx = ForegroundIndex::build(&label, Some(7));
        assert_eq!(idx.classes().collect::<Vec<_>>(), vec![2, 5]);
        let mut rng = stream_rng(0, 0);
        for _ in 0..50 {
            let (c, i) = idx.pick(&mut rng).unwrap();
            assert_eq!(label.as_slice()[i], c);
        }
    }

    #[test]
    fn subsampling_spreads_evenly() {
        let label = Grid3::from_fn([1, 1, 100], |_, _, x| u8::from(x >= 10)).unwrap();
        let idx = ForegroundIndex::build(&label, Some(9));
        assert_eq!(
            idx.classes,
            vec![(1, (0..9).map(|j| 10 + j * 10).collect())]
        );
        let all = ForegroundIndex::build(&label, None);
        assert_eq!(all.classes[0].1.len(), 90);
    }

    #[test]
    fn uniform_regions_stay_inside_or_pad_symmetrically() {
        let s = PatchSampler::new([4, 8, 8], 0.0).unwrap();
        let mut rng = stream_rng(1, 0);
        let empty = ForegroundIndex::default();
        let mut seen_lo = false;
        let mut seen_hi = false;
        for _ in 0..2000 {
            let (r, p) = s.sample([10, 5, 8], &empty, &mut rng);
            assert_eq!(p, Placement::Random);
            assert!(r.origin[0] >= 0 && r.origin[0] <= 6);
            // y: volume 5 < patch 8 -> need 3, origin in [-1, 0].
            assert!(r.origin[1] == -1 || r.origin[1] == 0);
            assert_eq!(r.origin[2], 0);
            seen_lo |= r.origin[0] == 0;
            seen_hi |= r.origin[0] == 6;
        }
        assert!(seen_lo && seen_hi, "both extreme origins reachable");
    }

    #[test]
    fn pad_to_widens_the_crop_range() {
        let s = PatchSampler::new([96, 96, 96], 0.0)
            .unwrap()
            .with_pad_to([128, 128, 128]);
        let mut rng = stream_rng(2, 0);
        let origins: Vec<i64> = (0..3000)
            .map(|_| {
                s.sample([96, 96, 96], &ForegroundIndex::default(), &mut rng)
                    .0
                    .origin[1]
            })
            .collect();
        assert_eq!(origins.iter().min(), Some(&-16));
        assert_eq!(origins.iter().max(), Some(&16));
        // Larger volumes are unaffected.
        let (r, _) = PatchSampler::new([4, 4, 4], 0.0)
            .unwrap()
            .with_pad_to([2, 2, 2])
            .sample([4, 4, 4], &ForegroundIndex::default(), &mut rng);
        assert_eq!(r.origin, [0, 0, 0]);
    }

    #[test]
    fn rejects_bad_config() {
        assert!(PatchSampler::new([0, 4, 4], 0.5).is_err());
        assert!(PatchSampler::new([4, 4, 4], 1.5).is_err());
    }
}
