//! Spatial consistency: image and labels move together, identity is exact, rotations agree
//! with a naive per-axis formula.

use std::f64::consts::FRAC_PI_2;

use flow_patches::spatial::{resample_image, resample_labels};
use flow_patches::{
    AugmentConfig, Grid3, PatchPipeline, PatchSampler, SpatialParams, TrainingCase,
};
use proptest::prelude::*;

/// Blocky label volume: 4-voxel cubes with classes 0..4.
fn blocky_labels(shape: [usize; 3]) -> Grid3<u8> {
    Grid3::from_fn(shape, |z, y, x| {
        ((z / 4 + 2 * (y / 4) + 3 * (x / 4)) % 5) as u8
    })
    .unwrap()
}

#[test]
fn image_and_label_transform_identically() {
    check_consistency([0.4, -0.3, 0.25], 1.2, [11.5, 13.0, 15.5]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn image_and_label_stay_consistent_for_any_transform(
        angles in prop::array::uniform3(-0.53f64..0.53), scale in 0.7f64..1.4,
        centre in prop::array::uniform3(4.0f64..24.0),
    ) {
        check_consistency(angles, scale, centre);
    }
}

/// image = 100 x label, resampled linear / nearest with the same transform: wherever the
/// 8 source neighbours agree, both give that class; everywhere the nearest label is one of
/// the neighbours and the image lies within the neighbours' range.
fn check_consistency(angles: [f64; 3], scale: f64, centre: [f64; 3]) {
    let label = blocky_labels([24, 28, 32]);
    let image = label.map(|c| c as f32 * 100.0);
    let shape = [12, 14, 16];
    let params = SpatialParams { angles, scale };
    let img = resample_image(&image, centre, shape, &params, 0.0);
    let lab = resample_labels(&label, centre, shape, &params);
    let mut checked = 0;
    let mut agree = 0;
    for z in 0..shape[0] {
        for y in 0..shape[1] {
            for x in 0..shape[2] {
                let p = params.source_of(centre, shape, [z, y, x]);
                let f = p.map(|v| v.floor() as i64);
                let mut neighbours = Vec::new();
                for d in 0..8 {
                    neighbours.push(label.get_checked(
                        f[0] + (d >> 2 & 1),
                        f[1] + (d >> 1 & 1),
                        f[2] + (d & 1),
                    ));
                }
                let (i, l) = (img.get(z, y, x), lab.get(z, y, x));
                // Nearest label is one of the 8 neighbours; the linear image lies in their hull.
                let vals: Vec<f32> = neighbours
                    .iter()
                    .map(|n| n.map_or(0.0, |c| c as f32 * 100.0))
                    .collect();
                assert!(neighbours.contains(&Some(l)) || neighbours.contains(&None));
                let (lo, hi) = vals
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                assert!(i >= lo - 1e-3 && i <= hi + 1e-3);
                if neighbours.iter().all(|n| *n == neighbours[0]) && neighbours[0].is_some() {
                    checked += 1;
                    assert_eq!(l, neighbours[0].unwrap());
                    assert!((i - l as f32 * 100.0).abs() < 1e-3);
                }
                agree += usize::from((i - l as f32 * 100.0).abs() < 1e-3);
            }
        }
    }
    let total = shape.iter().product::<usize>();
    assert!(
        checked > total / 10,
        "enough homogeneous voxels checked: {checked}"
    );
    assert!(
        agree * 5 > total,
        "image = 100 x label on many voxels: {agree}/{total}"
    );
}

#[test]
fn identity_transform_is_a_crop() {
    let label = blocky_labels([10, 12, 14]);
    let image =
        Grid3::from_fn([10, 12, 14], |z, y, x| (z * 1000 + y * 10 + x) as f32 * 0.5).unwrap();
    let shape = [6, 5, 8];
    let centre = [4.5, 6.0, 3.5]; // region origin [2, 4, 0]
    let ident = resample_image(&image, centre, shape, &SpatialParams::IDENTITY, -7.0);
    let lab = resample_labels(&label, centre, shape, &SpatialParams::IDENTITY);
    // A full turn about z goes through the interpolating path yet must reproduce the crop.
    let turn = SpatialParams {
        angles: [2.0 * std::f64::consts::PI, 0.0, 0.0],
        scale: 1.0,
    };
    let turned = resample_image(&image, centre, shape, &turn, -7.0);
    let turned_lab = resample_labels(&label, centre, shape, &turn);
    for z in 0..6 {
        for y in 0..5 {
            for x in 0..8 {
                assert_eq!(ident.get(z, y, x), image.get(z + 2, y + 4, x));
                assert_eq!(lab.get(z, y, x), label.get(z + 2, y + 4, x));
                assert!((turned.get(z, y, x) - ident.get(z, y, x)).abs() < 1e-2);
                assert_eq!(turned_lab.get(z, y, x), lab.get(z, y, x));
            }
        }
    }
    // Past the border: image pad and label 0.
    let out = resample_image(
        &image,
        [4.5, 6.0, 12.5],
        shape,
        &SpatialParams::IDENTITY,
        -7.0,
    );
    assert_eq!(out.get(0, 0, 7), -7.0);
    assert_eq!(out.get(0, 0, 0), image.get(2, 4, 9));
}

#[test]
fn quarter_turns_move_a_marked_voxel_where_the_formula_says() {
    let shape = [9, 9, 9];
    let c = 4.0;
    let marked = [4usize, 2, 7]; // offset from centre (0, -2, 3)
    let label = Grid3::from_fn(shape, |z, y, x| u8::from([z, y, x] == marked)).unwrap();
    // Output o reads source c + R (o - c): o = c + Rᵀ (s - c).
    let cases: [([f64; 3], [i64; 3]); 3] = [
        // About z by +90°: R maps (dy, dx) -> (-dx, dy); Rᵀ (s - c) = (0, dx_s, -dy_s) = (0, 3, 2).
        ([FRAC_PI_2, 0.0, 0.0], [0, 3, 2]),
        // About y by +90°: R maps (dz, dx) -> (dx, -dz); Rᵀ: (dz, dx) -> (-dx, dz) = (-3, -2, 0).
        ([0.0, FRAC_PI_2, 0.0], [-3, -2, 0]),
        // About x by +90°: R maps (dz, dy) -> (-dy, dz); Rᵀ: (dz, dy) -> (dy, -dz) = (-2, 0, 3).
        ([0.0, 0.0, FRAC_PI_2], [-2, 0, 3]),
    ];
    for (angles, expect) in cases {
        let params = SpatialParams { angles, scale: 1.0 };
        let out = resample_labels(&label, [c; 3], shape, &params);
        let hits: Vec<[usize; 3]> = (0..out.len())
            .filter(|&i| out.as_slice()[i] == 1)
            .map(|i| out.coords(i))
            .collect();
        let want = expect.map(|d| (c as i64 + d) as usize);
        assert_eq!(hits, vec![want], "angles {angles:?}");
    }
}

/// Naive composition: rotate about x, then y, then z, each as an explicit 2D rotation.
fn naive_source(angles: [f64; 3], scale: f64, d: [f64; 3]) -> [f64; 3] {
    let [az, ay, ax] = angles;
    let [mut z, mut y, mut x] = d.map(|v| v * scale);
    (z, y) = (ax.cos() * z - ax.sin() * y, ax.sin() * z + ax.cos() * y);
    (z, x) = (ay.cos() * z + ay.sin() * x, -ay.sin() * z + ay.cos() * x);
    (y, x) = (az.cos() * y - az.sin() * x, az.sin() * y + az.cos() * x);
    [z, y, x]
}

proptest! {
    #[test]
    fn source_coordinates_match_naive_rotation(
        az in -0.6f64..0.6, ay in -0.6f64..0.6, ax in -0.6f64..0.6, scale in 0.7f64..1.4,
        o in prop::array::uniform3(0usize..16), centre in prop::array::uniform3(-5.0f64..40.0),
    ) {
        let shape = [16, 12, 10];
        let o = [o[0], o[1] % 12, o[2] % 10];
        let params = SpatialParams { angles: [az, ay, ax], scale };
        let got = params.source_of(centre, shape, o);
        let d = [0, 1, 2].map(|a| o[a] as f64 - (shape[a] as f64 - 1.0) / 2.0);
        let n = naive_source([az, ay, ax], scale, d);
        for a in 0..3 {
            prop_assert!((got[a] - (centre[a] + n[a])).abs() < 1e-9);
        }
    }
}

#[test]
fn pipeline_mirrors_image_and_label_together() {
    let label = blocky_labels([8, 8, 8]);
    let image = label.map(|c| c as f32 * 100.0 + 1.0);
    let case = TrainingCase::new("mirror", image, label.clone(), None, [1.0; 3]).unwrap();
    let augment = AugmentConfig {
        p_mirror: [1.0, 0.0, 1.0],
        ..AugmentConfig::none()
    };
    let pipe = PatchPipeline::new(PatchSampler::new([8, 8, 8], 0.0).unwrap(), augment, 0.0);
    let patch = pipe
        .sample(&case, None, &mut flow_patches::stream_rng(0, 0))
        .unwrap();
    assert_eq!(patch.plan.mirror, [true, false, true]);
    for z in 0..8 {
        for y in 0..8 {
            for x in 0..8 {
                assert_eq!(patch.label.get(z, y, x), label.get(7 - z, y, 7 - x));
                assert_eq!(
                    patch.image.get(z, y, x),
                    patch.label.get(z, y, x) as f32 * 100.0 + 1.0
                );
            }
        }
    }
}
