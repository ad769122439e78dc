//! Spatial augmentation: one combined rotation + scaling resampling about a patch centre,
//! reading straight from the whole volume (equivalent to nnU-Net's "cut a larger region,
//! transform, crop", without the intermediate copy), plus mirroring.
//!
//! Coordinates are voxel indices `[z, y, x]`. Output voxel `o` of a patch of shape `n` reads
//! the source at `centre + R · (scale · (o − (n − 1)/2))`, so `scale > 1` samples a larger
//! region (anatomy looks smaller), as batchgenerators' `scale_coords` does.

use rayon::prelude::*;

use crate::grid::Grid3;
use crate::interpolate::{sample_linear, sample_nearest};

/// Rotation angles (radians) about the z, y and x axes, and an isotropic coordinate scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpatialParams {
    /// `[about z (rotates y→x), about y (rotates z→x), about x (rotates z→y)]`, radians.
    pub angles: [f64; 3],
    /// Coordinate scale: source offset = scale × output offset (before rotation).
    pub scale: f64,
}

impl SpatialParams {
    /// No rotation, scale 1.
    pub const IDENTITY: SpatialParams = SpatialParams {
        angles: [0.0; 3],
        scale: 1.0,
    };

    /// Whether this maps every output voxel onto a source voxel unchanged.
    pub fn is_identity(&self) -> bool {
        self.angles == [0.0; 3] && self.scale == 1.0
    }

    /// The 3x3 matrix `R · scale` with `R = Rz · Ry · Rx` acting on `[z, y, x]` offsets.
    pub fn matrix(&self) -> [[f64; 3]; 3] {
        let [az, ay, ax] = self.angles;
        // About the z axis: mixes (y, x).
        let rz = [
            [1.0, 0.0, 0.0],
            [0.0, az.cos(), -az.sin()],
            [0.0, az.sin(), az.cos()],
        ];
        // About the y axis: mixes (z, x).
        let ry = [
            [ay.cos(), 0.0, ay.sin()],
            [0.0, 1.0, 0.0],
            [-ay.sin(), 0.0, ay.cos()],
        ];
        // About the x axis: mixes (z, y).
        let rx = [
            [ax.cos(), -ax.sin(), 0.0],
            [ax.sin(), ax.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ];
        let m = matmul(&matmul(&rz, &ry), &rx);
        m.map(|row| row.map(|v| v * self.scale))
    }

    /// Source coordinate read by output voxel `o` of a patch of `shape` centred on `centre`.
    pub fn source_of(&self, centre: [f64; 3], shape: [usize; 3], o: [usize; 3]) -> [f64; 3] {
        let m = self.matrix();
        let d = [0, 1, 2].map(|a| o[a] as f64 - (shape[a] as f64 - 1.0) / 2.0);
        [0, 1, 2].map(|r| centre[r] + m[r][0] * d[0] + m[r][1] * d[1] + m[r][2] * d[2])
    }
}

fn matmul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// Resamples `src` into a patch of `shape` centred on `centre` (source voxel coordinates),
/// with `sample(src, point)` reading one value. Rows are processed in parallel (rayon); the
/// result does not depend on scheduling.
fn resample_with<T, F>(
    src: &Grid3<T>,
    centre: [f64; 3],
    shape: [usize; 3],
    params: &SpatialParams,
    pad: T,
    sample: F,
) -> Grid3<T>
where
    T: Copy + Send + Sync,
    F: Fn(&Grid3<T>, [f64; 3]) -> T + Sync,
{
    let mut out = Grid3::filled(shape, pad).expect("patch shape validated by the caller");
    let [_, ny, nx] = shape;
    let half = shape.map(|n| (n as f64 - 1.0) / 2.0);
    if params.is_identity()
        && centre
            .iter()
            .zip(&half)
            .all(|(c, h)| (c - h).fract() == 0.0)
    {
        // Pure crop with padding: integer offset, no interpolation.
        let off = [0, 1, 2].map(|a| (centre[a] - half[a]) as i64);
        out.as_mut_slice()
            .par_chunks_mut(nx)
            .enumerate()
            .for_each(|(row, dst)| {
                let (z, y) = ((row / ny) as i64 + off[0], (row % ny) as i64 + off[1]);
                for (x, v) in dst.iter_mut().enumerate() {
                    if let Some(s) = src.get_checked(z, y, x as i64 + off[2]) {
                        *v = s;
                    }
                }
            });
        return out;
    }
    let m = params.matrix();
    out.as_mut_slice()
        .par_chunks_mut(nx)
        .enumerate()
        .for_each(|(row, dst)| {
            let dz = (row / ny) as f64 - half[0];
            let dy = (row % ny) as f64 - half[1];
            let base = [0, 1, 2].map(|r| centre[r] + m[r][0] * dz + m[r][1] * dy);
            for (x, v) in dst.iter_mut().enumerate() {
                let dx = x as f64 - half[2];
                *v = sample(
                    src,
                    [
                        base[0] + m[0][2] * dx,
                        base[1] + m[1][2] * dx,
                        base[2] + m[2][2] * dx,
                    ],
                );
            }
        });
    out
}

/// Image patch by trilinear interpolation; outside the volume reads `pad`.
pub fn resample_image(
    src: &Grid3<f32>,
    centre: [f64; 3],
    shape: [usize; 3],
    params: &SpatialParams,
    pad: f32,
) -> Grid3<f32> {
    resample_with(src, centre, shape, params, pad, |g, p| {
        sample_linear(g, p, pad)
    })
}

/// Label patch by nearest neighbour; outside the volume reads 0.
pub fn resample_labels(
    src: &Grid3<u8>,
    centre: [f64; 3],
    shape: [usize; 3],
    params: &SpatialParams,
) -> Grid3<u8> {
    resample_with(src, centre, shape, params, 0, |g, p| {
        sample_nearest(g, p, 0)
    })
}

/// Image (trilinear, outside = `pad`) and labels (nearest, outside = 0) of the same volume in
/// one pass: each source coordinate is computed once and both reads hit the same cache lines.
/// Same result as [`resample_image`] + [`resample_labels`]; falls back to them when the two
/// grids differ in shape.
pub fn resample_image_and_labels(
    image: &Grid3<f32>,
    label: &Grid3<u8>,
    centre: [f64; 3],
    shape: [usize; 3],
    params: &SpatialParams,
    pad: f32,
) -> (Grid3<f32>, Grid3<u8>) {
    if params.is_identity() || image.shape() != label.shape() {
        return (
            resample_image(image, centre, shape, params, pad),
            resample_labels(label, centre, shape, params),
        );
    }
    let mut img = Grid3::filled(shape, pad).expect("patch shape validated by the caller");
    let mut lab = Grid3::filled(shape, 0u8).expect("patch shape validated by the caller");
    let [_, ny, nx] = shape;
    let half = shape.map(|n| (n as f64 - 1.0) / 2.0);
    let m = params.matrix();
    img.as_mut_slice()
        .par_chunks_mut(nx)
        .zip(lab.as_mut_slice().par_chunks_mut(nx))
        .enumerate()
        .for_each(|(row, (dst_img, dst_lab))| {
            let dz = (row / ny) as f64 - half[0];
            let dy = (row % ny) as f64 - half[1];
            let base = [0, 1, 2].map(|r| centre[r] + m[r][0] * dz + m[r][1] * dy);
            for (x, (vi, vl)) in dst_img.iter_mut().zip(dst_lab.iter_mut()).enumerate() {
                let dx = x as f64 - half[2];
                let p = [
                    base[0] + m[0][2] * dx,
                    base[1] + m[1][2] * dx,
                    base[2] + m[2][2] * dx,
                ];
                *vi = sample_linear(image, p, pad);
                *vl = sample_nearest(label, p, 0);
            }
        });
    (img, lab)
}

/// Reverses `grid` along each axis whose flag is set (`[z, y, x]`).
pub fn mirror<T: Copy>(grid: &mut Grid3<T>, axes: [bool; 3]) {
    let [nz, ny, nx] = grid.shape();
    let data = grid.as_mut_slice();
    if axes[2] {
        data.chunks_mut(nx).for_each(|row| row.reverse());
    }
    if axes[1] {
        for plane in data.chunks_mut(ny * nx) {
            for y in 0..ny / 2 {
                let (a, b) = plane.split_at_mut((ny - 1 - y) * nx);
                a[y * nx..(y + 1) * nx].swap_with_slice(&mut b[..nx]);
            }
        }
    }
    if axes[0] {
        let n = ny * nx;
        for z in 0..nz / 2 {
            let (a, b) = data.split_at_mut((nz - 1 - z) * n);
            a[z * n..(z + 1) * n].swap_with_slice(&mut b[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_matches_index_formula() {
        let g = Grid3::from_fn([3, 4, 5], |z, y, x| (z * 100 + y * 10 + x) as i32).unwrap();
        for mask in 0..8u8 {
            let axes = [mask & 4 != 0, mask & 2 != 0, mask & 1 != 0];
            let mut m = g.clone();
            mirror(&mut m, axes);
            for z in 0..3 {
                for y in 0..4 {
                    for x in 0..5 {
                        let sz = if axes[0] { 2 - z } else { z };
                        let sy = if axes[1] { 3 - y } else { y };
                        let sx = if axes[2] { 4 - x } else { x };
                        assert_eq!(m.get(z, y, x), g.get(sz, sy, sx));
                    }
                }
            }
        }
    }

    #[test]
    fn joint_resampling_equals_separate_calls() {
        let image =
            Grid3::from_fn([9, 10, 11], |z, y, x| (z * 7 + y * 3 + x) as f32 * 0.1).unwrap();
        let label = Grid3::from_fn([9, 10, 11], |z, y, x| ((z + 2 * y + 3 * x) % 4) as u8).unwrap();
        for params in [
            SpatialParams::IDENTITY,
            SpatialParams {
                angles: [0.3, 0.1, -0.2],
                scale: 0.8,
            },
        ] {
            let (i, l) = resample_image_and_labels(
                &image,
                &label,
                [4.0, 5.5, 6.0],
                [6, 7, 8],
                &params,
                -1.0,
            );
            assert_eq!(
                i,
                resample_image(&image, [4.0, 5.5, 6.0], [6, 7, 8], &params, -1.0)
            );
            assert_eq!(
                l,
                resample_labels(&label, [4.0, 5.5, 6.0], [6, 7, 8], &params)
            );
        }
    }

    #[test]
    fn matrix_is_scaled_rotation() {
        let p = SpatialParams {
            angles: [0.3, -0.2, 0.5],
            scale: 1.3,
        };
        let m = p.matrix();
        // M Mᵀ = scale² I.
        for i in 0..3 {
            for j in 0..3 {
                let dot: f64 = (0..3).map(|k| m[i][k] * m[j][k]).sum();
                let expect = if i == j { 1.69 } else { 0.0 };
                assert!((dot - expect).abs() < 1e-12);
            }
        }
    }
}
