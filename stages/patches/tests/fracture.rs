//! The synthetic fracture stays inside one vertebra near its surface, moves CT only towards the
//! gap value, takes any orientation; batches draw it with probability `p_batch`.

use std::sync::Arc;

use flow_patches::{
    add_synthetic_fracture, stream_rng, AugmentConfig, BatchSource, FractureConfig, Grid3,
    PatchBatchSource, PatchPipeline, PatchSampler, PipelineError, Range, TrainingCase,
};

const SPACING: [f64; 3] = [0.8, 0.4, 0.4];

/// Three stacked elliptic "vertebrae" (labels 1..3) separated by disc gaps.
fn spine(shape: [usize; 3]) -> Grid3<u8> {
    Grid3::from_fn(shape, |z, y, x| {
        let level = z / 12;
        let in_body = z % 12 >= 2 && level < 3;
        let (dy, dx) = (y as f64 - 24.0, x as f64 - 22.0);
        let inside = (dy / 14.0).powi(2) + (dx / 11.0).powi(2) <= 1.0;
        if in_body && inside {
            level as u8 + 1
        } else {
            0
        }
    })
    .unwrap()
}

fn ct(vert: &Grid3<u8>) -> Grid3<f32> {
    let mut rng = stream_rng(99, 0);
    use rand::Rng;
    vert.map(|v| if v > 0 { 2.0 } else { -1.0 } + rng.gen_range(-0.1..0.1))
}

#[test]
fn cut_stays_in_one_vertebra_and_changes_ct_only_there_towards_the_gap() {
    let shape = [36, 48, 44];
    let vert = spine(shape);
    let image0 = ct(&vert);
    let cfg = FractureConfig::method_default(Range::new(-3.0, -2.0));
    let mut seen_vertebrae = [false; 4];
    let (mut steep, mut flat) = (0, 0);
    for seed in 0..60 {
        let mut image = image0.clone();
        let mut label = Grid3::filled(shape, 0u8).unwrap();
        let cut = add_synthetic_fracture(
            &mut image,
            &mut label,
            &vert,
            SPACING,
            &cfg,
            &mut stream_rng(seed, 0),
        )
        .unwrap()
        .unwrap();
        seen_vertebrae[cut.vertebra as usize] = true;
        assert!(
            (1.0..=2.0).contains(&cut.width_mm)
                && (4.0..=12.0).contains(&cut.length_mm)
                && (2.0..=15.0).contains(&cut.depth_mm)
        );
        assert!((-3.0..=-2.0).contains(&cut.gap_value));
        let n = cut.normal;
        assert!(((n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt() - 1.0).abs() < 1e-9);
        if n[0].abs() > 0.7 {
            steep += 1;
        }
        if n[0].abs() < 0.3 {
            flat += 1;
        }
        // The centre is a surface voxel of the cut vertebra.
        let [cz, cy, cx] = cut.centre;
        assert_eq!(vert.get(cz, cy, cx), cut.vertebra);
        let (z, y, x) = (cz as i64, cy as i64, cx as i64);
        let nb = [
            (z - 1, y, x),
            (z + 1, y, x),
            (z, y - 1, x),
            (z, y + 1, x),
            (z, y, x - 1),
            (z, y, x + 1),
        ];
        assert!(nb
            .iter()
            .any(|&(z, y, x)| vert.get_checked(z, y, x).is_some_and(|v| v != cut.vertebra)));

        let reach = cut.length_mm.max(cut.depth_mm) / 2.0 + cut.width_mm / 2.0 + 0.5 + 0.8 + 1e-9;
        let (mut img_changed, mut lab_set) = (0, 0);
        for i in 0..label.len() {
            let [z, y, x] = label.coords(i);
            let (old, new) = (image0.as_slice()[i], image.as_slice()[i]);
            let d = (((z as f64 - cz as f64) * SPACING[0]).powi(2)
                + ((y as f64 - cy as f64) * SPACING[1]).powi(2)
                + ((x as f64 - cx as f64) * SPACING[2]).powi(2))
            .sqrt();
            if label.as_slice()[i] == 1 {
                lab_set += 1;
                assert_eq!(
                    vert.as_slice()[i],
                    cut.vertebra,
                    "label outside the vertebra at {:?}",
                    [z, y, x]
                );
                assert!(d <= reach, "label {d} mm from the centre");
            }
            if new != old {
                img_changed += 1;
                assert_eq!(
                    vert.as_slice()[i],
                    cut.vertebra,
                    "CT changed outside the vertebra at {:?}",
                    [z, y, x]
                );
                assert!(d <= reach, "CT changed {d} mm from the centre");
                // Partial volume: between the bone value and the gap value.
                assert!(
                    new < old && new >= cut.gap_value - 1e-5,
                    "{old} -> {new}, gap {}",
                    cut.gap_value
                );
            }
        }
        assert_eq!((img_changed, lab_set), (cut.image_voxels, cut.label_voxels));
        assert!(img_changed > 0 && lab_set > 0);
    }
    assert_eq!(
        seen_vertebrae,
        [false, true, true, true],
        "every vertebra gets cut sometimes"
    );
    assert!(
        steep > 0 && flat > 0,
        "cracks in any orientation: {steep} steep, {flat} flat of 60"
    );
}

fn fracture_case() -> TrainingCase {
    let vert = spine([36, 48, 44]);
    let image = ct(&vert);
    let label = Grid3::filled([36, 48, 44], 0u8).unwrap();
    TrainingCase::new("spine", image, label, Some(vert), SPACING).unwrap()
}

#[test]
fn batches_draw_the_fracture_with_p_batch() {
    let case = fracture_case();
    let pipe = PatchPipeline::new(
        PatchSampler::new([6, 10, 10], 0.0).unwrap(),
        AugmentConfig::none(),
        -1.0,
    );
    let source = PatchBatchSource::new(
        Arc::new(vec![case]),
        pipe,
        2,
        Some(FractureConfig::method_default(Range::new(-3.0, -3.0))),
    )
    .unwrap();
    let n = 1500;
    let vert = source.cases()[0].vertebrae.clone().unwrap();
    let mut drawn = 0;
    for i in 0..n {
        let b = source.make_batch(i, &mut stream_rng(8, i)).unwrap();
        drawn += usize::from(b.fracture_drawn);
        for p in &b.patches {
            if p.fracture.is_some() {
                assert!(b.fracture_drawn);
                assert!(p.label.as_slice().contains(&1));
            } else {
                assert!(!p.label.as_slice().contains(&1));
                if b.fracture_drawn {
                    // Drawn but not cut: only when the patch shows no vertebra.
                    let o = p.region.origin;
                    let shows_bone = (0..6).any(|z| {
                        (0..10).any(|y| {
                            (0..10).any(|x| {
                                vert.get_checked(o[0] + z, o[1] + y, o[2] + x)
                                    .is_some_and(|v| v > 0)
                            })
                        })
                    });
                    assert!(!shows_bone);
                }
            }
        }
    }
    let rate = drawn as f64 / n as f64;
    assert!(
        (rate - 0.5).abs() < 4.5 * (0.25 / n as f64).sqrt(),
        "fracture batch rate {rate}"
    );
}

#[test]
fn fracture_without_vertebra_map_is_an_error() {
    let mut case = fracture_case();
    case.vertebrae = None;
    let pipe = PatchPipeline::new(
        PatchSampler::new([6, 10, 10], 0.0).unwrap(),
        AugmentConfig::none(),
        -1.0,
    );
    let err = pipe
        .sample(
            &case,
            Some(&FractureConfig::method_default(Range::new(0.0, 0.0))),
            &mut stream_rng(0, 0),
        )
        .unwrap_err();
    assert_eq!(
        err,
        PipelineError::NoVertebrae {
            case: "spine".into()
        }
    );
}
