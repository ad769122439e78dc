//! Foreground oversampling rates, class balance, padding and seeded determinism.

use flow_patches::{
    stream_rng, AugmentConfig, ForegroundIndex, Grid3, PatchPipeline, PatchSampler, Placement,
    TrainingCase,
};

const N: usize = 20_000;

fn small_blob_label() -> Grid3<u8> {
    // 40^3 volume, one 2^3 foreground cube near a corner.
    Grid3::from_fn([40, 40, 40], |z, y, x| {
        u8::from((3..5).contains(&z) && (30..32).contains(&y) && (5..7).contains(&x))
    })
    .unwrap()
}

fn within(rate: f64, p: f64, n: usize) -> bool {
    (rate - p).abs() <= 4.5 * (p * (1.0 - p) / n as f64).sqrt().max(1e-3)
}

#[test]
fn foreground_rate_matches_oversampling_probability() {
    let label = small_blob_label();
    let index = ForegroundIndex::build(&label, None);
    let fg: Vec<[usize; 3]> = (0..label.len())
        .filter(|&i| label.as_slice()[i] != 0)
        .map(|i| label.coords(i))
        .collect();
    let hit_rate = |p: f64, seed: u64| {
        let s = PatchSampler::new([8, 8, 8], p).unwrap();
        let mut rng = stream_rng(seed, 0);
        let mut forced = 0;
        let mut hits = 0;
        for _ in 0..N {
            let (region, placement) = s.sample(label.shape(), &index, &mut rng);
            if let Placement::Foreground(c) = placement {
                assert_eq!(c, 1);
                forced += 1;
                // The chosen voxel sits at (or, near a border, close to) the patch centre.
                assert!(fg.iter().any(|v| region.contains(*v)));
            }
            hits += usize::from(fg.iter().any(|v| region.contains(*v)));
        }
        (forced as f64 / N as f64, hits as f64 / N as f64)
    };
    let (forced0, q) = hit_rate(0.0, 1);
    assert_eq!(forced0, 0.0);
    assert!(q < 0.05, "random patches rarely see the blob: {q}");
    for p in [0.33, 0.5] {
        let (forced, hits) = hit_rate(p, 2);
        assert!(within(forced, p, N), "forced rate {forced} vs {p}");
        let expect = p + (1.0 - p) * q;
        assert!(
            within(hits, expect, N),
            "foreground patch rate {hits} vs {expect}"
        );
    }
}

#[test]
fn foreground_classes_are_drawn_uniformly() {
    // Class 1 fills half the volume, class 2 a single voxel: each still gets half the draws.
    let label = Grid3::from_fn([10, 10, 10], |z, y, x| {
        if (z, y, x) == (9, 9, 9) {
            2
        } else {
            u8::from(z < 5)
        }
    })
    .unwrap();
    let index = ForegroundIndex::build(&label, None);
    let s = PatchSampler::new([4, 4, 4], 1.0).unwrap();
    let mut rng = stream_rng(3, 0);
    let twos = (0..N)
        .filter(|_| s.sample(label.shape(), &index, &mut rng).1 == Placement::Foreground(2))
        .count();
    assert!(within(twos as f64 / N as f64, 0.5, N));
}

#[test]
fn forced_foreground_centres_the_voxel() {
    let label =
        Grid3::from_fn([30, 30, 30], |z, y, x| u8::from((z, y, x) == (15, 12, 17))).unwrap();
    let index = ForegroundIndex::build(&label, None);
    let s = PatchSampler::new([7, 8, 9], 1.0).unwrap();
    let (region, _) = s.sample(label.shape(), &index, &mut stream_rng(0, 0));
    // Voxel at origin + patch/2 (integer division), as nnU-Net.
    assert_eq!(region.origin, [15 - 3, 12 - 4, 17 - 4]);
}

#[test]
fn small_volumes_are_padded() {
    let label = Grid3::from_fn([3, 4, 5], |z, y, x| ((z + y + x) % 3) as u8).unwrap();
    let image = Grid3::from_fn([3, 4, 5], |z, y, x| (z * 20 + y * 5 + x) as f32).unwrap();
    let case = TrainingCase::new("small", image.clone(), label.clone(), None, [1.0; 3]).unwrap();
    let pipe = PatchPipeline::new(
        PatchSampler::new([6, 6, 6], 0.5).unwrap(),
        AugmentConfig::none(),
        -5.0,
    );
    for seed in 0..20 {
        let patch = pipe.sample(&case, None, &mut stream_rng(seed, 0)).unwrap();
        assert_eq!(patch.image.shape(), [6, 6, 6]);
        // z needs 3 (pad 1 before, 2 after), y needs 2 (1, 1), x needs 1 (0, 1).
        assert_eq!(patch.region.origin, [-1, -1, 0]);
        for z in 0..6 {
            for y in 0..6 {
                for x in 0..6 {
                    let src = label.get_checked(z as i64 - 1, y as i64 - 1, x as i64);
                    assert_eq!(patch.label.get(z, y, x), src.unwrap_or(0));
                    let img = image.get_checked(z as i64 - 1, y as i64 - 1, x as i64);
                    assert_eq!(patch.image.get(z, y, x), img.unwrap_or(-5.0));
                }
            }
        }
    }
}

#[test]
fn sampling_is_deterministic_given_the_seed() {
    let label = small_blob_label();
    let image = label.map(|c| c as f32 * 3.0 - 1.0);
    let case = TrainingCase::new("det", image, label, None, [1.0; 3]).unwrap();
    let pipe = PatchPipeline::new(
        PatchSampler::new([8, 12, 10], 0.5).unwrap(),
        AugmentConfig::default(),
        0.0,
    );
    for seed in 0..10 {
        let a = pipe.sample(&case, None, &mut stream_rng(seed, 4)).unwrap();
        let b = pipe.sample(&case, None, &mut stream_rng(seed, 4)).unwrap();
        assert_eq!(
            (a.image, a.label, a.region, a.plan),
            (b.image, b.label, b.region, b.plan)
        );
    }
}

#[test]
fn case_construction_rejects_mismatches() {
    let img = Grid3::filled([4, 4, 4], 0.0f32).unwrap();
    let bad = Grid3::filled([4, 4, 5], 0u8).unwrap();
    let err = TrainingCase::new("1.2.3", img.clone(), bad, None, [1.0; 3]).unwrap_err();
    assert!(
        err.to_string().contains("1.2.3") && err.to_string().contains("label"),
        "{err}"
    );
    let lab = Grid3::filled([4, 4, 4], 0u8).unwrap();
    assert!(TrainingCase::new("x", img, lab, None, [1.0, f64::NAN, 1.0]).is_err());
}

#[test]
fn a_case_without_foreground_centres_forced_patches_on_its_vertebrae() {
    // A fracture-free study: empty label, one vertebra (label 3) in a corner of a 40^3 volume.
    let empty = Grid3::from_fn([40, 40, 40], |_, _, _| 0u8).unwrap();
    let vertebra = Grid3::from_fn([40, 40, 40], |z, y, x| {
        if (30..34).contains(&z) && (2..6).contains(&y) && (30..34).contains(&x) {
            3u8
        } else {
            0
        }
    })
    .unwrap();
    let image = empty.map(|_| 0f32);
    let case = TrainingCase::new("neg", image, empty.clone(), Some(vertebra), [1.0; 3]).unwrap();
    let s = PatchSampler::new([8, 8, 8], 1.0).unwrap();
    for seed in 0..50 {
        let (region, placement) =
            s.sample(case.shape(), &case.foreground, &mut stream_rng(seed, 0));
        assert_eq!(placement, Placement::Foreground(3));
        assert!(
            region.contains([31, 3, 31]) || region.contains([32, 4, 32]),
            "{region:?}"
        );
    }
    // Without a vertebra map the patches stay uniform.
    let plain = TrainingCase::new("neg", empty.map(|_| 0f32), empty, None, [1.0; 3]).unwrap();
    assert!(plain.foreground.is_empty());
}
