//! Resampling onto another grid: trilinear for images and probabilities, nearest for labels.
//!
//! Every output voxel takes the value at its own world position in the input, so geometry
//! stays consistent. Resizing keeps the physical extent (voxel edges) of the input: output
//! voxel centre `i'` samples input index `(i' + 0.5) * n / n' - 0.5` (the "align corners =
//! false" convention); samples within half a voxel outside the input use the edge voxel.

use crate::geometry::Geometry;
use crate::volume::{Volume, Voxel};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How values between voxel centres are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Value of the nearest voxel (label maps).
    Nearest,
    /// Trilinear interpolation (images, probabilities); integer types are rounded.
    Linear,
}

/// Resample `v` onto the grid `(dims, geometry)`. Output voxels whose world position is more
/// than half a voxel outside the input get `fill`.
pub fn resample_to_grid<T: Voxel>(
    v: &Volume<T>,
    dims: [usize; 3],
    geometry: Geometry,
    interp: Interpolation,
    fill: T,
) -> Volume<T> {
    // Source index = base + i * di + j * dj + k * dk (the map is affine).
    let src = |p: [f64; 3]| v.geometry.world_to_index(geometry.index_to_world(p));
    let base = src([0.0; 3]);
    let step = |axis: usize| {
        let mut p = [0.0; 3];
        p[axis] = 1.0;
        let s = src(p);
        [s[0] - base[0], s[1] - base[1], s[2] - base[2]]
    };
    let (di, dj, dk) = (step(0), step(1), step(2));
    let n = v.dims();
    let mut out = Volume::filled(dims, fill, geometry).expect("target dims were valid");
    let plane = dims[0] * dims[1];
    out.data_mut()
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(k, slice)| {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let (fi, fj, fk) = (i as f64, j as f64, k as f64);
                    let p = [0, 1, 2].map(|a| base[a] + fi * di[a] + fj * dj[a] + fk * dk[a]);
                    if (0..3).any(|a| p[a] < -0.5 - 1e-9 || p[a] > n[a] as f64 - 0.5 + 1e-9) {
                        continue;
                    }
                    let p = [0, 1, 2].map(|a| p[a].clamp(0.0, (n[a] - 1) as f64));
                    slice[i + dims[0] * j] = match interp {
                        Interpolation::Nearest => {
                            let q =
                                [0, 1, 2].map(|a| ((p[a] + 0.5).floor() as usize).min(n[a] - 1));
                            v.get(q[0], q[1], q[2])
                        }
                        Interpolation::Linear => T::from_f64(trilinear(v, p)),
                    };
                }
            }
        });
    out
}

fn trilinear<T: Voxel>(v: &Volume<T>, p: [f64; 3]) -> f64 {
    let n = v.dims();
    let lo = [0, 1, 2].map(|a| (p[a].floor() as usize).min(n[a] - 1));
    let hi = [0, 1, 2].map(|a| (lo[a] + 1).min(n[a] - 1));
    let t = [0, 1, 2].map(|a| p[a] - lo[a] as f64);
    let mut acc = 0.0;
    for (ck, wk) in [(lo[2], 1.0 - t[2]), (hi[2], t[2])] {
        for (cj, wj) in [(lo[1], 1.0 - t[1]), (hi[1], t[1])] {
            for (ci, wi) in [(lo[0], 1.0 - t[0]), (hi[0], t[0])] {
                let w = wi * wj * wk;
                if w != 0.0 {
                    acc += w * v.get(ci, cj, ck).to_f64();
                }
            }
        }
    }
    acc
}

/// Resample to `size` voxels covering the same physical extent.
pub fn resample_to_size<T: Voxel>(
    v: &Volume<T>,
    size: [usize; 3],
    interp: Interpolation,
) -> Volume<T> {
    let size = size.map(|s| s.max(1));
    resample_to_grid(v, size, grid_of_size(v, size), interp, T::default())
}

/// The geometry of `size` voxels (each >= 1) spanning `v`'s physical extent.
fn grid_of_size<T: Voxel>(v: &Volume<T>, size: [usize; 3]) -> Geometry {
    let n = v.dims();
    let g = v.geometry;
    let ratio = [0, 1, 2].map(|a| n[a] as f64 / size[a] as f64);
    Geometry {
        spacing: [0, 1, 2].map(|a| g.spacing[a] * ratio[a]),
        origin: g.index_to_world([0, 1, 2].map(|a| 0.5 * ratio[a] - 0.5)),
        direction: g.direction,
    }
}

/// `v` shrunk to `size` voxels over the same physical extent (the grid of
/// [`resample_to_size`]), each output voxel the maximum of the input voxels its cell overlaps
/// (cell `i` of `n` input voxels shrunk to `s` spans input indices `floor(i n / s)` up to
/// `ceil((i + 1) n / s) - 1`). Unlike point sampling, a structure one voxel thin is never lost
/// between samples: the stage-3 CNN sees every crack of a fracture map this way.
pub fn max_pool_to_size<T: Voxel>(v: &Volume<T>, size: [usize; 3]) -> Volume<T> {
    let n = v.dims();
    let size = size.map(|s| s.max(1));
    let cells = |a: usize| -> Vec<(usize, usize)> {
        (0..size[a])
            .map(|i| {
                let lo = i * n[a] / size[a];
                let hi = ((i + 1) * n[a]).div_ceil(size[a]).max(lo + 1).min(n[a]);
                (lo.min(n[a] - 1), hi)
            })
            .collect()
    };
    let (cx, cy, cz) = (cells(0), cells(1), cells(2));
    let grid = grid_of_size(v, size);
    let mut data = Vec::with_capacity(size[0] * size[1] * size[2]);
    for &(z0, z1) in &cz {
        for &(y0, y1) in &cy {
            for &(x0, x1) in &cx {
                let mut best = v.get(x0, y0, z0);
                for k in z0..z1 {
                    for j in y0..y1 {
                        for i in x0..x1 {
                            let x = v.get(i, j, k);
                            if x.to_f64() > best.to_f64() {
                                best = x;
                            }
                        }
                    }
                }
                data.push(best);
            }
        }
    }
    Volume::from_vec(size, data, grid).expect("a pooled volume of a valid volume is valid")
}

/// Resample to (about) `spacing` mm: size is `round(n * old / new)` per axis and the extent is
/// kept, so the exact output spacing is `extent / size` (as nnU-Net does).
pub fn resample_to_spacing<T: Voxel>(
    v: &Volume<T>,
    spacing: [f64; 3],
    interp: Interpolation,
) -> Volume<T> {
    let n = v.dims();
    let size = [0, 1, 2]
        .map(|a| ((n[a] as f64 * v.geometry.spacing[a] / spacing[a]).round() as usize).max(1));
    resample_to_size(v, size, interp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_pooling_keeps_a_one_voxel_sheet_that_point_sampling_misses() {
        use super::*;
        // A 12^3 volume with one bright plane at x = 5, shrunk to 4^3 (cells of 3 voxels).
        let mut v = Volume::filled([12, 12, 12], 0.0f32, Geometry::identity()).unwrap();
        for k in 0..12 {
            for j in 0..12 {
                v.set(5, j, k, 1.0);
            }
        }
        let pooled = max_pool_to_size(&v, [4, 4, 4]);
        let sampled = resample_to_size(&v, [4, 4, 4], Interpolation::Linear);
        assert_eq!(
            pooled.geometry, sampled.geometry,
            "the same grid as resample_to_size"
        );
        for k in 0..4 {
            for j in 0..4 {
                let row: Vec<f32> = (0..4).map(|i| pooled.get(i, j, k)).collect();
                assert_eq!(row, vec![0.0, 1.0, 0.0, 0.0], "cell 1 spans x = 3..5");
                assert!(
                    sampled.get(1, j, k) < 0.5,
                    "point sampling at x = 4 misses it"
                );
            }
        }
        // Against the definition on an uneven shrink (7 -> 3, 5 -> 2, 4 -> 4).
        let w = Volume::from_vec(
            [7, 5, 4],
            (0..140).map(|i| ((i * 37) % 23) as f32).collect(),
            Geometry::identity(),
        )
        .unwrap();
        let p = max_pool_to_size(&w, [3, 2, 4]);
        for (k, j, i) in
            (0..4).flat_map(|k| (0..2).flat_map(move |j| (0..3).map(move |i| (k, j, i))))
        {
            let span = |o: usize, n: usize, s: usize| (o * n / s)..((o + 1) * n).div_ceil(s);
            let mut best = f32::MIN;
            for kk in span(k, 4, 4) {
                for jj in span(j, 5, 2) {
                    for ii in span(i, 7, 3) {
                        best = best.max(w.get(ii, jj, kk));
                    }
                }
            }
            assert_eq!(p.get(i, j, k), best, "cell ({i}, {j}, {k})");
        }
    }

    use super::*;

    fn ramp_volume() -> Volume<f32> {
        let g = Geometry {
            spacing: [0.8, 0.7, 2.5],
            origin: [-50.0, 20.0, 100.0],
            direction: [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        };
        let mut v = Volume::filled([20, 18, 9], 0f32, g).unwrap();
        for k in 0..9 {
            for j in 0..18 {
                for i in 0..20 {
                    let w = g.index_to_world([i as f64, j as f64, k as f64]);
                    v.set(i, j, k, ramp(w) as f32);
                }
            }
        }
        v
    }

    fn ramp(w: [f64; 3]) -> f64 {
        0.5 * w[0] - 0.25 * w[1] + 2.0 * w[2]
    }

    #[test]
    fn linear_resampling_reproduces_a_linear_field_at_world_positions() {
        let v = ramp_volume();
        for size in [[31, 9, 22], [10, 40, 5]] {
            let r = resample_to_size(&v, size, Interpolation::Linear);
            let n = v.dims();
            for k in 0..size[2] {
                for j in 0..size[1] {
                    for i in 0..size[0] {
                        let w = r.geometry.index_to_world([i as f64, j as f64, k as f64]);
                        let src = v.geometry.world_to_index(w);
                        if (0..3).all(|a| src[a] >= 0.0 && src[a] <= (n[a] - 1) as f64) {
                            assert!(
                                (r.get(i, j, k) as f64 - ramp(w)).abs() < 1e-3,
                                "{i} {j} {k}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn size_change_keeps_physical_extent() {
        let v = ramp_volume();
        let r = resample_to_spacing(&v, [1.6, 0.35, 1.0], Interpolation::Linear);
        assert_eq!(r.dims(), [10, 36, 23]);
        for a in 0..3 {
            let extent_in = v.dims()[a] as f64 * v.geometry.spacing[a];
            let extent_out = r.dims()[a] as f64 * r.geometry.spacing[a];
            assert!((extent_in - extent_out).abs() < 1e-9);
        }
        // Corner of the first voxel (half a voxel before its centre) is the same point.
        let c_in = v.geometry.index_to_world([-0.5; 3]);
        let c_out = r.geometry.index_to_world([-0.5; 3]);
        for a in 0..3 {
            assert!((c_in[a] - c_out[a]).abs() < 1e-9);
        }
    }

    #[test]
    fn nearest_keeps_label_values_and_round_trips_exact_multiples() {
        let labels: Vec<u8> = (0..4 * 3 * 2).map(|n| (n % 5) as u8).collect();
        let v = Volume::from_vec([4, 3, 2], labels, Geometry::identity()).unwrap();
        let up = resample_to_size(&v, [8, 6, 4], Interpolation::Nearest);
        assert!(up.data().iter().all(|&x| x < 5));
        assert_eq!(up.get(7, 5, 3), v.get(3, 2, 1));
        let down = resample_to_size(&up, [4, 3, 2], Interpolation::Nearest);
        assert_eq!(down.data(), v.data());
    }

    #[test]
    fn outside_samples_get_fill() {
        let v = Volume::filled([4, 4, 4], 5i16, Geometry::identity()).unwrap();
        let g = Geometry {
            origin: [10.0, 0.0, 0.0],
            ..Geometry::identity()
        };
        let r = resample_to_grid(&v, [2, 2, 2], g, Interpolation::Linear, -1);
        assert!(r.data().iter().all(|&x| x == -1));
    }
}
