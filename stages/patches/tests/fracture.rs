//! The synthetic fracture stays inside one vertebra, changes CT only under its label, and
//! respects the millimetre sizes; batches draw it with probability `p_batch`.

use std::sync::Arc;

use flow_patches::{
    add_synthetic_fracture, stream_rng, AugmentConfig, BatchSource, FractureConfig, Grid3, PatchBatchSource, PatchPipeline,
    PatchSampler, PipelineError, TrainingCase,
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
fn cut_stays_in_one_vertebra_and_changes_ct_only_under_the_label() {
    let shape = [36, 48, 44];
    let vert = spine(shape);
    let image0 = ct(&vert);
    let cfg = FractureConfig::method_default(-3.0);
    let mut seen_vertebrae = [false; 4];
    for seed in 0..60 {
        let mut image = image0.clone();
        let mut label = Grid3::filled(shape, 0u8).unwrap();
        let cut = add_synthetic_fracture(&mut image, &mut label, &vert, SPACING, &cfg, &mut stream_rng(seed, 0)).unwrap().unwrap();
        seen_vertebrae[cut.vertebra as usize] = true;
        assert!((1.0..=2.0).contains(&cut.width_mm) && (4.0..=12.0).contains(&cut.length_mm));
        // 2-15 mm over 0.8 mm slices: 3 to 19 slices (2.5 rounds up).
        assert!((3..=19).contains(&cut.slices.len()), "{:?}", cut.slices);
        assert!(cut.slices.contains(&cut.centre[0]));

        // The centre is a contour voxel of the cut vertebra.
        let [cz, cy, cx] = cut.centre;
        assert_eq!(vert.get(cz, cy, cx), cut.vertebra);
        let nb = [(cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)];
        assert!(nb.iter().any(|&(y, x)| vert.get(cz, y, x) != cut.vertebra));

        let half_diag = ((cut.length_mm / 2.0).powi(2) + (cut.width_mm / 2.0).powi(2)).sqrt();
        let (mut img_changed, mut lab_set) = (0, 0);
        for i in 0..label.len() {
            let [z, y, x] = label.coords(i);
            let labelled = label.as_slice()[i] == 1;
            let changed = image.as_slice()[i] != image0.as_slice()[i];
            if labelled {
                lab_set += 1;
                assert_eq!(vert.as_slice()[i], cut.vertebra, "label outside the vertebra at {:?}", [z, y, x]);
                assert!(cut.slices.contains(&z));
            }
            if changed {
                img_changed += 1;
                assert!(labelled, "CT changed where the label is not set at {:?}", [z, y, x]);
                assert_eq!(image.as_slice()[i], -3.0);
                let d = (((y as f64 - cy as f64) * SPACING[1]).powi(2) + ((x as f64 - cx as f64) * SPACING[2]).powi(2)).sqrt();
                assert!(d <= half_diag + 1e-9, "cut voxel {d} mm from the centre, rectangle half-diagonal {half_diag}");
            }
        }
        assert_eq!((img_changed, lab_set), (cut.image_voxels, cut.label_voxels));
        assert!(img_changed > 0 && lab_set > img_changed, "label is a dilation of the cut: {lab_set} vs {img_changed}");
    }
    assert_eq!(seen_vertebrae, [false, true, true, true], "every vertebra gets cut sometimes");
}

#[test]
fn cut_extent_follows_the_millimetre_sizes() {
    // Fixed sizes: 2 mm x 8 mm over 4 mm, on a big slab so the rectangle is not clipped.
    let shape = [20, 80, 80];
    let vert = Grid3::from_fn(shape, |_, y, x| u8::from((10..70).contains(&y) && (10..70).contains(&x))).unwrap();
    let cfg = FractureConfig {
        width_mm: flow_patches::Range::new(2.0, 2.0),
        length_mm: flow_patches::Range::new(8.0, 8.0),
        depth_mm: flow_patches::Range::new(4.0, 4.0),
        label_margin_mm: 0.0,
        ..FractureConfig::method_default(0.0)
    };
    let mut image = Grid3::filled(shape, 1.0f32).unwrap();
    let mut label = Grid3::filled(shape, 0u8).unwrap();
    let cut = add_synthetic_fracture(&mut image, &mut label, &vert, SPACING, &cfg, &mut stream_rng(5, 0)).unwrap().unwrap();
    assert_eq!(cut.slices.len(), 5); // 4 mm / 0.8 mm
    // Area per slice ~ 2 x 8 mm / (0.4 x 0.4 mm) = 100 voxels, of which the part inside the
    // slab: the centre is on the slab edge, so roughly half of it (not less than a third).
    let per_slice = cut.image_voxels as f64 / cut.slices.len() as f64;
    assert!((25.0..=110.0).contains(&per_slice), "{per_slice} voxels per slice");
    assert_eq!(cut.label_voxels, cut.image_voxels, "no margin: label == cut");
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
    let pipe = PatchPipeline::new(PatchSampler::new([6, 10, 10], 0.0).unwrap(), AugmentConfig::none(), -1.0);
    let source = PatchBatchSource::new(Arc::new(vec![case]), pipe, 2, Some(FractureConfig::method_default(-3.0))).unwrap();
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
                        (0..10).any(|y| (0..10).any(|x| vert.get_checked(o[0] + z, o[1] + y, o[2] + x).is_some_and(|v| v > 0)))
                    });
                    assert!(!shows_bone);
                }
            }
        }
    }
    let rate = drawn as f64 / n as f64;
    assert!((rate - 0.5).abs() < 4.5 * (0.25 / n as f64).sqrt(), "fracture batch rate {rate}");
}

#[test]
fn fracture_without_vertebra_map_is_an_error() {
    let mut case = fracture_case();
    case.vertebrae = None;
    let pipe = PatchPipeline::new(PatchSampler::new([6, 10, 10], 0.0).unwrap(), AugmentConfig::none(), -1.0);
    let err = pipe.sample(&case, Some(&FractureConfig::method_default(0.0)), &mut stream_rng(0, 0)).unwrap_err();
    assert_eq!(err, PipelineError::NoVertebrae { case: "spine".into() });
}
