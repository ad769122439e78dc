//! Property tests over varying inputs: cohort plans and fracture boxes.

use flow_synth::boxes::fracture_boxes;
use flow_synth::geometry::{PixelStorage, ScanGeometry, SliceOrder};
use flow_synth::{plan_cohort, CohortConfig, Split};
use glam::DVec3;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plans_respect_subsets(seed in any::<u64>(), train in 1usize..60, test in 0usize..10,
                             boxed in 0.0f64..=1.0, segmented in 0.0f64..=1.0, prevalence in 0.0f64..=1.0) {
        let mut cfg = CohortConfig::tiny();
        cfg.seed = seed;
        cfg.train_studies = train;
        cfg.test_studies = test;
        cfg.boxed_fraction = boxed;
        cfg.segmented_fraction = segmented;
        cfg.fracture_prevalence = prevalence;
        let plan = plan_cohort(&cfg).unwrap();
        prop_assert_eq!(plan.studies.len(), train + test);
        let positives = plan.studies.iter().filter(|s| s.split == Split::Train && s.positive()).count();
        let n_boxed = plan.studies.iter().filter(|s| s.boxed).count();
        let n_seg = plan.studies.iter().filter(|s| s.segmented).count();
        for s in &plan.studies {
            let k = s.fractured.iter().filter(|&&f| f).count();
            prop_assert!(k <= 3);
            prop_assert!(!s.boxed || (s.positive() && s.split == Split::Train));
            prop_assert!(!s.segmented || s.split == Split::Train);
            prop_assert_eq!(s.split == Split::Train, s.index < train);
        }
        prop_assert!(n_boxed <= positives && n_seg <= train);
        prop_assert!(boxed == 0.0 || positives == 0 || n_boxed >= 1);
        prop_assert!(segmented == 0.0 || n_seg >= 1);
    }

    #[test]
    fn boxes_contain_their_crack_voxels(ids in proptest::collection::vec(0u8..3, 5 * 7 * 4), superior_first in any::<bool>()) {
        let geom = ScanGeometry {
            rows: 5,
            cols: 7,
            slices: 4,
            pixel_spacing: 1.5,
            slice_spacing: 2.0,
            slice_thickness: 2.0,
            origin: DVec3::ZERO,
            order: if superior_first { SliceOrder::SuperiorToInferior } else { SliceOrder::InferiorToSuperior },
            storage: PixelStorage::Int16 { intercept: 0 },
        };
        let boxes = fracture_boxes(&ids, &geom, 2);
        for (i, &id) in ids.iter().enumerate() {
            if id == 0 { continue; }
            let (k, row, col) = (i / 35, (i / 7) % 5, i % 7);
            let n = geom.file_number(k);
            let b = boxes.iter().find(|b| b.slice_number == n && b.crack + 1 == id as usize);
            prop_assert!(b.is_some());
            let b = b.unwrap();
            prop_assert!(b.x <= col as f64 && col as f64 <= b.x + b.width);
            prop_assert!(b.y <= row as f64 && row as f64 <= b.y + b.height);
        }
        for b in &boxes {
            prop_assert!(b.x + b.width <= 6.0 && b.y + b.height <= 4.0);
            let k = geom.slice_of_file(b.slice_number).unwrap();
            let present = ids[k * 35..(k + 1) * 35].iter().any(|&v| v as usize == b.crack + 1);
            prop_assert!(present);
        }
    }
}
