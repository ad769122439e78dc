//! Grey and binary dilation with cross (6-neighbour, repeated) or box structuring elements,
//! and grey closing with a box.
//!
//! Grey dilation is a maximum filter; binary dilation is grey dilation of a 0/1 mask; grey
//! closing is a box maximum followed by a box minimum (fills dark gaps narrower than the box). A box of
//! radius r is the (2r+1)^3 cube, done as three separable 1D maxima. A cross of radius r is r
//! repeated dilations by the 6-neighbour cross: the L1 ball of radius r (scipy's
//! `binary_dilation(structure=generate_binary_structure(3, 1), iterations=r)`).
//! [`binary_dilate_box`] takes one radius per axis (anisotropic spacing) and runs in linear
//! time whatever the radii.

use crate::volume::{Volume, Voxel};
use serde::{Deserialize, Serialize};

/// Shape of the structuring element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    /// 6-neighbour cross, applied `radius` times (L1 ball).
    Cross,
    /// Cube of side `2 * radius + 1`.
    Box,
}

/// Maximum over the structuring element of radius `radius` (voxels outside are ignored).
pub fn grey_dilate<T: Voxel>(v: &Volume<T>, element: Element, radius: usize) -> Volume<T> {
    let mut out = v.clone();
    if radius == 0 {
        return out;
    }
    match element {
        Element::Box => {
            for axis in 0..3 {
                out = extreme_along_axis(&out, axis, radius, |a, b| a > b);
            }
        }
        Element::Cross => {
            for _ in 0..radius {
                out = cross_step(&out);
            }
        }
    }
    out
}

/// Minimum over the cube of side `2 * radius + 1` (voxels outside are ignored).
pub fn grey_erode_box<T: Voxel>(v: &Volume<T>, radius: usize) -> Volume<T> {
    let mut out = v.clone();
    for axis in 0..3 {
        if radius > 0 {
            out = extreme_along_axis(&out, axis, radius, |a, b| a < b);
        }
    }
    out
}

/// Grey closing by the cube of side `2 * radius + 1`: [`grey_dilate`] then [`grey_erode_box`]
/// (scipy's `grey_closing(size=2r+1)` away from the border). Never below the input; dark
/// structures thinner than the cube rise to the level of what surrounds them.
pub fn grey_close_box<T: Voxel>(v: &Volume<T>, radius: usize) -> Volume<T> {
    grey_erode_box(&grey_dilate(v, Element::Box, radius), radius)
}

/// Binary dilation: output is 1 where any voxel of the element around it is non-zero.
pub fn binary_dilate<T: Voxel>(v: &Volume<T>, element: Element, radius: usize) -> Volume<u8> {
    let mask = v.map(|x| (x != T::default()) as u8);
    grey_dilate(&mask, element, radius)
}

/// Binary dilation by the box of half-widths `radii` (voxels, per axis x, y, z): output is 1
/// where any non-zero voxel lies within `radii[a]` along every axis `a`. Linear in the volume
/// size, so large radii (a few mm on fine grids) stay cheap.
pub fn binary_dilate_box<T: Voxel>(v: &Volume<T>, radii: [usize; 3]) -> Volume<u8> {
    let mut out = v.map(|x| (x != T::default()) as u8);
    for (axis, &r) in radii.iter().enumerate() {
        if r > 0 {
            any_along_axis(&mut out, axis, r);
        }
    }
    out
}

/// In place: `m[t] = 1` where any of `m[t - r ..= t + r]` along `axis` is non-zero.
fn any_along_axis(v: &mut Volume<u8>, axis: usize, r: usize) {
    let d = v.dims();
    let stride = [1, d[0], d[0] * d[1]][axis];
    let n = d[axis];
    let data = v.data_mut();
    let mut line = vec![0u8; n];
    let starts = (0..data.len() / (stride * n))
        .flat_map(|block| (0..stride).map(move |o| block * stride * n + o));
    for start in starts {
        for (t, x) in line.iter_mut().enumerate() {
            *x = data[start + t * stride];
        }
        // Distance to the nearest set voxel before (forward pass) or after (backward pass).
        let mut last: Option<usize> = None;
        for t in 0..n {
            if line[t] != 0 {
                last = Some(t);
            }
            if last.is_some_and(|l| t - l <= r) {
                data[start + t * stride] = 1;
            }
        }
        let mut next: Option<usize> = None;
        for t in (0..n).rev() {
            if line[t] != 0 {
                next = Some(t);
            }
            if next.is_some_and(|l| l - t <= r) {
                data[start + t * stride] = 1;
            }
        }
    }
}

/// The extreme of `line[t - r ..= t + r]` along `axis`: `better(a, b)` says `a` beats `b`
/// (`>` for a maximum, `<` for a minimum).
fn extreme_along_axis<T: Voxel>(
    v: &Volume<T>,
    axis: usize,
    r: usize,
    better: impl Fn(T, T) -> bool,
) -> Volume<T> {
    let d = v.dims();
    let stride = [1, d[0], d[0] * d[1]][axis];
    let n = d[axis];
    let mut out = v.clone();
    let src = v.data();
    let dst = out.data_mut();
    let mut line = Vec::with_capacity(n);
    // Every line along `axis` starts at `block * stride * n + offset` with offset < stride.
    let starts = (0..src.len() / (stride * n))
        .flat_map(|block| (0..stride).map(move |o| block * stride * n + o));
    for start in starts {
        line.clear();
        line.extend((0..n).map(|t| src[start + t * stride]));
        for t in 0..n {
            let lo = t.saturating_sub(r);
            let hi = (t + r).min(n - 1);
            let mut m = line[lo];
            for &x in &line[lo + 1..=hi] {
                if better(x, m) {
                    m = x;
                }
            }
            dst[start + t * stride] = m;
        }
    }
    out
}

fn cross_step<T: Voxel>(v: &Volume<T>) -> Volume<T> {
    let [nx, ny, nz] = v.dims();
    let mut out = v.clone();
    let src = v.data();
    let dst = out.data_mut();
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let idx = i + nx * (j + ny * k);
                let mut m = src[idx];
                let mut take = |x: T| {
                    if x > m {
                        m = x
                    }
                };
                if i > 0 {
                    take(src[idx - 1]);
                }
                if i + 1 < nx {
                    take(src[idx + 1]);
                }
                if j > 0 {
                    take(src[idx - nx]);
                }
                if j + 1 < ny {
                    take(src[idx + nx]);
                }
                if k > 0 {
                    take(src[idx - nx * ny]);
                }
                if k + 1 < nz {
                    take(src[idx + nx * ny]);
                }
                dst[idx] = m;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;
    use proptest::prelude::*;

    /// Naive reference for [`binary_dilate_box`]: any non-zero voxel within `r[a]` per axis.
    fn naive_box(v: &Volume<u8>, r: [usize; 3]) -> Volume<u8> {
        let d = v.dims();
        let mut out = v.like(0u8);
        for k in 0..d[2] {
            for j in 0..d[1] {
                for i in 0..d[0] {
                    let hit = (k.saturating_sub(r[2])..=(k + r[2]).min(d[2] - 1)).any(|c| {
                        (j.saturating_sub(r[1])..=(j + r[1]).min(d[1] - 1)).any(|b| {
                            (i.saturating_sub(r[0])..=(i + r[0]).min(d[0] - 1))
                                .any(|a| v.get(a, b, c) != 0)
                        })
                    });
                    out.set(i, j, k, hit as u8);
                }
            }
        }
        out
    }

    /// Naive reference: maximum over all offsets inside the element.
    fn naive<T: Voxel>(v: &Volume<T>, element: Element, r: usize) -> Volume<T> {
        let d = v.dims();
        let r = r as isize;
        let mut out = v.clone();
        for k in 0..d[2] {
            for j in 0..d[1] {
                for i in 0..d[0] {
                    let mut m = v.get(i, j, k);
                    for dk in -r..=r {
                        for dj in -r..=r {
                            for di in -r..=r {
                                let inside = match element {
                                    Element::Box => true,
                                    Element::Cross => di.abs() + dj.abs() + dk.abs() <= r,
                                };
                                if let (true, Some(x)) = (
                                    inside,
                                    v.get_checked(
                                        i as isize + di,
                                        j as isize + dj,
                                        k as isize + dk,
                                    ),
                                ) {
                                    if x > m {
                                        m = x;
                                    }
                                }
                            }
                        }
                    }
                    out.set(i, j, k, m);
                }
            }
        }
        out
    }

    #[test]
    fn closing_fills_a_one_voxel_gap_between_brighter_voxels() {
        // A dark plane (x = 3) through a bright block: closing by radius 1 lifts it to the
        // block's level; the block's outer edge stays as it was.
        let mut v = Volume::from_vec([7, 5, 5], vec![1000i16; 175], Geometry::identity()).unwrap();
        for k in 0..5 {
            for j in 0..5 {
                v.set(3, j, k, 50);
            }
        }
        let closed = grey_close_box(&v, 1);
        assert!(closed.data().iter().all(|&x| x == 1000));
        assert_eq!(grey_close_box(&v, 0), v);
    }

    proptest! {
        #[test]
        fn dilation_matches_naive(
            dims in (1usize..7, 1usize..7, 1usize..7),
            seed in proptest::collection::vec(-50i16..50, 343),
            r in 0usize..3,
            boxed in any::<bool>(),
        ) {
            let n = dims.0 * dims.1 * dims.2;
            let v = Volume::from_vec([dims.0, dims.1, dims.2], seed[..n].to_vec(), Geometry::identity()).unwrap();
            let e = if boxed { Element::Box } else { Element::Cross };
            prop_assert_eq!(grey_dilate(&v, e, r), naive(&v, e, r));
            let bin = binary_dilate(&v.map(|x| (x > 40) as u8), e, r);
            prop_assert_eq!(bin, naive(&v.map(|x| (x > 40) as u8), e, r));
            // A box minimum is the negated box maximum of the negated volume.
            let negated_max = naive(&v.map(|x| -x), Element::Box, r).map(|x| -x);
            prop_assert_eq!(grey_erode_box(&v, r), negated_max);
            let closed = grey_close_box(&v, r);
            prop_assert!(closed.data().iter().zip(v.data()).all(|(c, x)| c >= x));
        }

        #[test]
        fn box_dilation_per_axis_matches_naive(
            dims in (1usize..8, 1usize..8, 1usize..8),
            seed in proptest::collection::vec(0u8..20, 512),
            radii in (0usize..4, 0usize..4, 0usize..4),
        ) {
            let n = dims.0 * dims.1 * dims.2;
            let v = Volume::from_vec([dims.0, dims.1, dims.2], seed[..n].to_vec(), Geometry::identity()).unwrap();
            let mask = v.map(|x| (x > 17) as u8);
            let r = [radii.0, radii.1, radii.2];
            prop_assert_eq!(binary_dilate_box(&v.map(|x| if x > 17 { x } else { 0 }), r), naive_box(&mask, r));
            if r[0] == r[1] && r[1] == r[2] {
                prop_assert_eq!(binary_dilate_box(&mask, r), binary_dilate(&mask, Element::Box, r[0]));
            }
        }
    }
}
