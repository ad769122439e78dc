//! Point sampling (trilinear for images, nearest for labels) and whole-grid resizing, the
//! building blocks of the spatial and low-resolution augmentations.

use crate::grid::Grid3;

/// `floor(v)` as an integer without a libm call (the baseline x86-64 target has no SSE4.1
/// `roundsd`, so `f64::floor` is a function call); exact for |v| < 2^63.
#[inline(always)]
fn floor_i64(v: f64) -> i64 {
    let i = v as i64;
    i - i64::from((i as f64) > v)
}

/// Round half away from zero, like `f64::round`, without a libm call.
#[inline(always)]
fn round_i64(v: f64) -> i64 {
    if v >= 0.0 {
        floor_i64(v + 0.5)
    } else {
        -floor_i64(-v + 0.5)
    }
}

/// Trilinear value of `grid` at fractional `[z, y, x]`; neighbours outside the grid count as
/// `pad` (constant border, like `scipy.ndimage.map_coordinates(order=1, mode="constant")`
/// with the grid conceptually surrounded by `pad`).
#[inline]
pub fn sample_linear(grid: &Grid3<f32>, p: [f64; 3], pad: f32) -> f32 {
    let [nz, ny, nx] = grid.shape();
    let (z0, y0, x0) = (floor_i64(p[0]), floor_i64(p[1]), floor_i64(p[2]));
    let (fz, fy, fx) = (z0 as f64, y0 as f64, x0 as f64);
    // Entirely outside (including one voxel of margin): constant.
    if z0 < -1 || y0 < -1 || x0 < -1 || z0 >= nz as i64 || y0 >= ny as i64 || x0 >= nx as i64 {
        return pad;
    }
    let tz = (p[0] - fz) as f32;
    let ty = (p[1] - fy) as f32;
    let tx = (p[2] - fx) as f32;
    let data = grid.as_slice();
    let inside = z0 >= 0
        && y0 >= 0
        && x0 >= 0
        && z0 + 1 < nz as i64
        && y0 + 1 < ny as i64
        && x0 + 1 < nx as i64;
    if inside {
        // Hot path: all eight neighbours exist.
        let i = (z0 as usize * ny + y0 as usize) * nx + x0 as usize;
        let (sy, sz) = (nx, ny * nx);
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let c0 = lerp(
            lerp(data[i], data[i + 1], tx),
            lerp(data[i + sy], data[i + sy + 1], tx),
            ty,
        );
        let c1 = lerp(
            lerp(data[i + sz], data[i + sz + 1], tx),
            lerp(data[i + sz + sy], data[i + sz + sy + 1], tx),
            ty,
        );
        return lerp(c0, c1, tz);
    }
    let v = |dz: i64, dy: i64, dx: i64| -> f32 {
        let (z, y, x) = (z0 + dz, y0 + dy, x0 + dx);
        if grid.contains(z, y, x) {
            data[((z as usize) * ny + y as usize) * nx + x as usize]
        } else {
            pad
        }
    };
    // Border: skipping zero-weight neighbours keeps integer positions exact, so a pad of e.g.
    // NaN or a far-away value cannot leak in through `0 * x`.
    let lerp = |a: f32, b: &dyn Fn() -> f32, t: f32| if t == 0.0 { a } else { a + (b() - a) * t };
    let row = |dz: i64, dy: i64| lerp(v(dz, dy, 0), &|| v(dz, dy, 1), tx);
    let plane = |dz: i64| lerp(row(dz, 0), &|| row(dz, 1), ty);
    lerp(plane(0), &|| plane(1), tz)
}

/// Nearest-neighbour value of `grid` at fractional `[z, y, x]` (ties round half away from
/// zero), or `pad` outside.
#[inline]
pub fn sample_nearest<T: Copy>(grid: &Grid3<T>, p: [f64; 3], pad: T) -> T {
    grid.get_checked(round_i64(p[0]), round_i64(p[1]), round_i64(p[2]))
        .unwrap_or(pad)
}

/// Source coordinate of output index `i` when resizing an axis from `n_in` to `n_out`
/// (voxel-centre alignment, as `torch.nn.functional.interpolate(align_corners=False)`).
#[inline]
fn source_coord(i: usize, n_in: usize, n_out: usize) -> f64 {
    ((i as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0)
}

/// Nearest-neighbour resize to `shape` (PyTorch `mode="nearest"`: source index
/// `floor(i * n_in / n_out)`).
pub fn resize_nearest<T: Copy>(grid: &Grid3<T>, shape: [usize; 3]) -> Grid3<T> {
    let s = grid.shape();
    let idx = |i: usize, a: usize| ((i * s[a]) / shape[a]).min(s[a] - 1);
    let zi: Vec<usize> = (0..shape[0]).map(|i| idx(i, 0)).collect();
    let yi: Vec<usize> = (0..shape[1]).map(|i| idx(i, 1)).collect();
    let xi: Vec<usize> = (0..shape[2]).map(|i| idx(i, 2)).collect();
    let mut data = Vec::with_capacity(shape.iter().product());
    for &z in &zi {
        for &y in &yi {
            let row = &grid.as_slice()[grid.index(z, y, 0)..][..s[2]];
            data.extend(xi.iter().map(|&x| row[x]));
        }
    }
    Grid3::from_vec(shape, data).expect("resize target shape comes from a valid grid")
}

/// Trilinear resize to `shape` (PyTorch `mode="trilinear", align_corners=False`).
pub fn resize_linear(grid: &Grid3<f32>, shape: [usize; 3]) -> Grid3<f32> {
    let s = grid.shape();
    // Per-axis (lower index, upper index, weight of upper).
    let axis = |a: usize| -> Vec<(usize, usize, f32)> {
        (0..shape[a])
            .map(|i| {
                let c = source_coord(i, s[a], shape[a]);
                let lo = (c.floor() as usize).min(s[a] - 1);
                let hi = (lo + 1).min(s[a] - 1);
                (lo, hi, (c - lo as f64) as f32)
            })
            .collect()
    };
    let (az, ay, ax) = (axis(0), axis(1), axis(2));
    let d = grid.as_slice();
    let at = |z: usize, y: usize, x: usize| d[(z * s[1] + y) * s[2] + x];
    let mut data = Vec::with_capacity(shape.iter().product());
    for &(z0, z1, wz) in &az {
        for &(y0, y1, wy) in &ay {
            for &(x0, x1, wx) in &ax {
                let lerp = |a: f32, b: f32, w: f32| a + (b - a) * w;
                let c0 = lerp(
                    lerp(at(z0, y0, x0), at(z0, y0, x1), wx),
                    lerp(at(z0, y1, x0), at(z0, y1, x1), wx),
                    wy,
                );
                let c1 = lerp(
                    lerp(at(z1, y0, x0), at(z1, y0, x1), wx),
                    lerp(at(z1, y1, x0), at(z1, y1, x1), wx),
                    wy,
                );
                data.push(lerp(c0, c1, wz));
            }
        }
    }
    Grid3::from_vec(shape, data).expect("resize target shape comes from a valid grid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Grid3<f32> {
        Grid3::from_fn([4, 5, 6], |z, y, x| (z * 3 + y * 2 + x) as f32).unwrap()
    }

    #[test]
    fn linear_is_exact_on_affine_functions() {
        let g = ramp();
        for p in [
            [0.0, 0.0, 0.0],
            [1.5, 2.25, 3.75],
            [2.9, 3.1, 4.0],
            [3.0, 4.0, 5.0],
        ] {
            let expect = (p[0] * 3.0 + p[1] * 2.0 + p[2]) as f32;
            assert!((sample_linear(&g, p, -1.0) - expect).abs() < 1e-5, "{p:?}");
        }
    }

    #[test]
    fn linear_blends_with_pad_outside() {
        let g = Grid3::filled([2, 2, 2], 10.0f32).unwrap();
        assert_eq!(sample_linear(&g, [0.0, 0.0, -0.5], 0.0), 5.0);
        assert_eq!(sample_linear(&g, [0.0, 0.0, -3.0], 7.0), 7.0);
        assert_eq!(sample_linear(&g, [1.0, 1.0, 1.0], f32::NAN), 10.0);
    }

    #[test]
    fn fast_floor_and_round_match_std() {
        for v in [
            -3.5,
            -2.5000001,
            -1.0,
            -0.5,
            -0.49,
            -0.0,
            0.0,
            0.49,
            0.5,
            1.0,
            1.5,
            2.4999,
            7.0,
            1e12 + 0.5,
            -1e12 - 0.25,
        ] {
            assert_eq!(floor_i64(v), v.floor() as i64, "floor {v}");
            assert_eq!(round_i64(v), v.round() as i64, "round {v}");
        }
    }

    #[test]
    fn nearest_rounds_and_pads() {
        let g = ramp();
        assert_eq!(sample_nearest(&g, [0.4, 1.6, 2.5], -1.0), g.get(0, 2, 3));
        assert_eq!(sample_nearest(&g, [0.0, -0.6, 0.0], -1.0), -1.0);
    }

    #[test]
    fn resize_round_trip_identity_and_values() {
        let g = ramp();
        assert_eq!(resize_linear(&g, g.shape()), g);
        assert_eq!(resize_nearest(&g, g.shape()), g);
        let down = resize_nearest(&g, [2, 3, 3]);
        assert_eq!(down.get(1, 2, 2), g.get(2, 3, 4));
        // Upsampling a 1D ramp 2 -> 4 with align_corners=False: 0, .25, .75, 1 (scaled).
        let r = Grid3::from_vec([1, 1, 2], vec![0.0f32, 4.0]).unwrap();
        assert_eq!(
            resize_linear(&r, [1, 1, 4]).as_slice(),
            &[0.0, 1.0, 3.0, 4.0]
        );
    }
}
