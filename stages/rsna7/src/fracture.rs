//! Stage-2 fracture labels: round 1's "box and bone" labels from the competition boxes, and the
//! pseudo labels of rounds 2 and 3 from the previous round's probabilities, with the
//! fractured-vertebra filter and the consistency check.

use flow_imaging::ops::{binary_dilate, grey_close_box, Element};
use flow_imaging::Volume;
use serde::Serialize;

use crate::error::{Result, Rsna7Error};

/// Round-1 label: the box mask intersected with the C1-C7 mask dilated by one voxel, so the
/// label covers bone inside the box, not the soft tissue around it.
pub fn box_and_bone(boxes: &Volume<u8>, vertebrae: &Volume<u8>) -> Result<Volume<u8>> {
    same_grid(boxes, vertebrae, "box mask", "vertebra map")?;
    let bone = binary_dilate(
        &vertebrae.map(|l| u8::from((1..=7).contains(&l))),
        Element::Cross,
        1,
    );
    let mut out = boxes.map(|b| u8::from(b != 0));
    for (o, &b) in out.data_mut().iter_mut().zip(bone.data()) {
        *o &= b;
    }
    Ok(out)
}

/// Voxels at least `min_hu` darker than their grey closing over the 3x3x3 cube: the lucent gap
/// of a fracture line between brighter bone (and any other dark seam one or two voxels wide).
/// Pseudo labels keep only such voxels where a vertebra has any, which on the demo cohort and
/// a cohort of another seed doubles their precision against the true crack masks
/// (docs/benchmarks.md, eighth session).
pub fn lucent_voxels(ct: &Volume<i16>, min_hu: f32) -> Volume<u8> {
    let closed = grey_close_box(ct, 1);
    let mut out = ct.map(|_| 0u8);
    for ((o, &c), &x) in out.data_mut().iter_mut().zip(closed.data()).zip(ct.data()) {
        *o = u8::from(f32::from(c) - f32::from(x) >= min_hu);
    }
    out
}

/// What happened to one study's pseudo label.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum PseudoOutcome {
    /// Labelled: voxels per fractured vertebra (C1..C7; 0 for unfractured ones), the
    /// vertebrae (1..7) whose candidate voxels were cut down to the cap, and those labelled
    /// from the study's boxes because no voxel inside them reached the threshold.
    Labelled {
        voxels: [u64; 7],
        capped: Vec<u8>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        from_boxes: Vec<u8>,
        /// Vertebrae with probable voxels of which none was lucent: labelled without the
        /// lucency filter.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        not_lucent: Vec<u8>,
    },
    /// train.csv marks no fractured vertebra (a negative study: a fracture-free label).
    Negative,
    /// Consistency check failed: these fractured vertebrae (1..7) got no voxel.
    Dropped { missing: Vec<u8> },
}

/// How pseudo labels are drawn from a probability map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PseudoConfig {
    /// Probability threshold (0.2 in the method).
    pub threshold: f32,
    /// At most this fraction of a fractured vertebra's voxels is labelled (the most probable
    /// ones), so an over-predicting round cannot label a whole vertebral body: a crack is a
    /// thin sheet, a few percent of the bone.
    pub max_fraction: f64,
}

/// Pseudo label = (probability >= threshold) within the one-voxel-dilated masks of the
/// vertebrae that `fractured` marks (`fractured[v - 1]` for C`v`), at most
/// `max_fraction` of each vertebra's voxels (the most probable). The label is returned only
/// when every fractured vertebra receives at least one voxel.
///
/// With `boxes` (a study with competition boxes: its round-1 box-and-bone label), a
/// vertebra that the boxes touch takes its candidates only inside them: the boxes are the
/// truth, the map only says where in them the crack is. When no voxel in its boxes reaches
/// the threshold it keeps the box-and-bone voxels (listed in `from_boxes`).
///
/// With `lucent` (from [`lucent_voxels`]), a vertebra's probable voxels are cut down to the
/// lucent ones before the cap; a vertebra with no lucent probable voxel keeps them all (listed
/// in `not_lucent`), so the filter never drops a study.
pub fn pseudo_label(
    prob: &Volume<f32>,
    vertebrae: &Volume<u8>,
    fractured: [bool; 7],
    boxes: Option<&Volume<u8>>,
    lucent: Option<&Volume<u8>>,
    cfg: PseudoConfig,
) -> Result<(Option<Volume<u8>>, PseudoOutcome)> {
    same_grid(prob, vertebrae, "probability map", "vertebra map")?;
    if let Some(b) = boxes {
        same_grid(b, vertebrae, "box label", "vertebra map")?;
    }
    if let Some(l) = lucent {
        same_grid(l, vertebrae, "lucency mask", "vertebra map")?;
    }
    if !fractured.iter().any(|&f| f) {
        return Ok((None, PseudoOutcome::Negative));
    }
    let mut label = prob.map(|_| 0u8);
    let mut voxels = [0u64; 7];
    let mut capped = Vec::new();
    let mut from_boxes = Vec::new();
    let mut not_lucent = Vec::new();
    for v in 1..=7u8 {
        if !fractured[v as usize - 1] {
            continue;
        }
        let size = vertebrae.data().iter().filter(|&&l| l == v).count();
        let cap = (cfg.max_fraction * size as f64).ceil() as usize;
        let region = binary_dilate(&vertebrae.map(|l| u8::from(l == v)), Element::Cross, 1);
        let in_box: Vec<usize> = match boxes {
            Some(b) => region
                .data()
                .iter()
                .zip(b.data())
                .enumerate()
                .filter(|(i, (&r, &b))| r != 0 && b != 0 && label.data()[*i] == 0)
                .map(|(i, _)| i)
                .collect(),
            None => Vec::new(),
        };
        let allowed = |i: usize| in_box.is_empty() || in_box.binary_search(&i).is_ok();
        let mut candidates: Vec<(f32, usize)> = region
            .data()
            .iter()
            .zip(prob.data())
            .enumerate()
            .filter(|(i, (&r, &p))| {
                r != 0 && p >= cfg.threshold && label.data()[*i] == 0 && allowed(*i)
            })
            .map(|(i, (_, &p))| (p, i))
            .collect();
        if let Some(l) = lucent {
            let kept: Vec<(f32, usize)> = candidates
                .iter()
                .copied()
                .filter(|&(_, i)| l.data()[i] != 0)
                .collect();
            if kept.is_empty() && !candidates.is_empty() {
                not_lucent.push(v);
            } else {
                candidates = kept;
            }
        }
        if candidates.is_empty() && !in_box.is_empty() {
            candidates = in_box.iter().map(|&i| (prob.data()[i], i)).collect();
            from_boxes.push(v);
        } else if candidates.len() > cap {
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            candidates.truncate(cap);
            capped.push(v);
        }
        for &(_, i) in &candidates {
            label.data_mut()[i] = 1;
        }
        voxels[v as usize - 1] = candidates.len() as u64;
    }
    let missing: Vec<u8> = (1..=7u8)
        .filter(|&v| fractured[v as usize - 1] && voxels[v as usize - 1] == 0)
        .collect();
    if !missing.is_empty() {
        return Ok((None, PseudoOutcome::Dropped { missing }));
    }
    Ok((
        Some(label),
        PseudoOutcome::Labelled {
            voxels,
            capped,
            from_boxes,
            not_lucent,
        },
    ))
}

fn same_grid<A: flow_imaging::Voxel, B: flow_imaging::Voxel>(
    a: &Volume<A>,
    b: &Volume<B>,
    an: &str,
    bn: &str,
) -> Result<()> {
    if a.dims() != b.dims() || a.geometry.max_affine_difference(&b.geometry) > 1e-3 {
        return Err(Rsna7Error::Invalid(format!(
            "the {an} ({:?}) and the {bn} ({:?}) are not on the same grid",
            a.dims(),
            b.dims()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_imaging::Geometry;

    fn line(values: &[u8]) -> Volume<u8> {
        Volume::from_vec([values.len(), 1, 1], values.to_vec(), Geometry::identity()).unwrap()
    }

    #[test]
    fn box_and_bone_keeps_box_voxels_near_bone() {
        let boxes = line(&[1, 1, 1, 1, 0, 0]);
        let vert = line(&[0, 0, 0, 2, 2, 0]);
        assert_eq!(
            box_and_bone(&boxes, &vert).unwrap().data(),
            &[0, 0, 1, 1, 0, 0]
        );
    }

    #[test]
    fn pseudo_labels_filter_vertebrae_and_check_consistency() {
        let vert = line(&[1, 1, 0, 0, 3, 3, 0, 5]);
        let prob = Volume::from_vec(
            [8, 1, 1],
            vec![0.9, 0.1, 0.0, 0.0, 0.5, 0.1, 0.0, 0.9],
            Geometry::identity(),
        )
        .unwrap();
        let mut frac = [false; 7];
        frac[0] = true;
        frac[2] = true;
        let cfg = PseudoConfig {
            threshold: 0.2,
            max_fraction: 1.0,
        };
        let (label, outcome) = pseudo_label(&prob, &vert, frac, None, None, cfg).unwrap();
        assert_eq!(
            label.unwrap().data(),
            &[1, 0, 0, 0, 1, 0, 0, 0],
            "C5's voxel is not fractured per train.csv"
        );
        assert_eq!(
            outcome,
            PseudoOutcome::Labelled {
                voxels: [1, 0, 1, 0, 0, 0, 0],
                capped: vec![],
                from_boxes: vec![],
                not_lucent: vec![]
            }
        );
        frac[1] = true; // C2: no voxel at all -> dropped
        let (label, outcome) = pseudo_label(&prob, &vert, frac, None, None, cfg).unwrap();
        assert!(label.is_none());
        assert_eq!(outcome, PseudoOutcome::Dropped { missing: vec![2] });
        assert_eq!(
            pseudo_label(&prob, &vert, [false; 7], None, None, cfg)
                .unwrap()
                .1,
            PseudoOutcome::Negative
        );
    }

    #[test]
    fn the_cap_keeps_the_most_probable_voxels_of_an_over_predicted_vertebra() {
        // C2 covers 10 voxels and every one of them is above the threshold.
        let vert = line(&[0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0]);
        let p: Vec<f32> = (0..12)
            .map(|i| {
                if (1..11).contains(&i) {
                    0.3 + 0.05 * i as f32
                } else {
                    0.0
                }
            })
            .collect();
        let prob = Volume::from_vec([12, 1, 1], p, Geometry::identity()).unwrap();
        let mut frac = [false; 7];
        frac[1] = true;
        let (label, outcome) = pseudo_label(
            &prob,
            &vert,
            frac,
            None,
            None,
            PseudoConfig {
                threshold: 0.2,
                max_fraction: 0.2,
            },
        )
        .unwrap();
        assert_eq!(
            label.unwrap().data(),
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0],
            "the two most probable of ten"
        );
        assert_eq!(
            outcome,
            PseudoOutcome::Labelled {
                voxels: [0, 2, 0, 0, 0, 0, 0],
                capped: vec![2],
                from_boxes: vec![],
                not_lucent: vec![]
            }
        );
    }

    #[test]
    fn boxes_confine_the_pseudo_label_and_stand_in_when_nothing_in_them_is_probable() {
        // C2 over ten voxels; the box covers voxels 6-8; the map peaks outside the box at 2-3.
        let vert = line(&[0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 4, 4, 4, 0]);
        let boxes = line(&[0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        let p = [
            0.0, 0.1, 0.9, 0.9, 0.1, 0.1, 0.3, 0.6, 0.1, 0.1, 0.1, 0.0, 0.1, 0.1, 0.1, 0.0,
        ];
        let prob = Volume::from_vec([16, 1, 1], p.to_vec(), Geometry::identity()).unwrap();
        let mut frac = [false; 7];
        frac[1] = true;
        let cfg = PseudoConfig {
            threshold: 0.2,
            max_fraction: 1.0,
        };
        let (label, outcome) = pseudo_label(&prob, &vert, frac, Some(&boxes), None, cfg).unwrap();
        assert_eq!(
            label.unwrap().data(),
            &[0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            "only the probable voxels inside the box"
        );
        assert!(
            matches!(outcome, PseudoOutcome::Labelled { from_boxes, .. } if from_boxes.is_empty())
        );
        // Nothing probable in the box: the box-and-bone voxels stand in.
        let flat = Volume::from_vec([16, 1, 1], vec![0.05; 16], Geometry::identity()).unwrap();
        let (label, outcome) = pseudo_label(&flat, &vert, frac, Some(&boxes), None, cfg).unwrap();
        assert_eq!(
            label.unwrap().data(),
            &[0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(
            matches!(outcome, PseudoOutcome::Labelled { from_boxes, .. } if from_boxes == vec![2])
        );
        // A fractured vertebra the boxes miss (C4) is labelled from the map alone.
        frac[3] = true;
        let mut p4 = p;
        p4[13] = 0.7;
        let prob = Volume::from_vec([16, 1, 1], p4.to_vec(), Geometry::identity()).unwrap();
        let (label, _) = pseudo_label(&prob, &vert, frac, Some(&boxes), None, cfg).unwrap();
        assert_eq!(label.unwrap().data()[13], 1);
    }

    #[test]
    fn lucent_voxels_mark_a_dark_seam_in_bright_bone() {
        let ct = Volume::from_vec(
            [8, 1, 1],
            vec![-1000i16, -1000, 1000, 1000, 60, 1000, 1000, 980],
            Geometry::identity(),
        )
        .unwrap();
        // The seam at 4 lies 940 HU under its closing; the air next to the bone (a step, not
        // a gap) and the slightly darker bone at the end do not.
        assert_eq!(lucent_voxels(&ct, 50.0).data(), &[0, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn the_lucency_filter_keeps_lucent_voxels_and_never_empties_a_vertebra() {
        // C2 over voxels 0-4, C3 over 5-9; all probable, only voxel 2 lucent.
        let vert = line(&[2, 2, 2, 2, 2, 3, 3, 3, 3, 3]);
        let prob = Volume::from_vec([10, 1, 1], vec![0.6; 10], Geometry::identity()).unwrap();
        let lucent = line(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let mut frac = [false; 7];
        frac[1] = true;
        frac[2] = true;
        let cfg = PseudoConfig {
            threshold: 0.2,
            max_fraction: 1.0,
        };
        let (label, outcome) = pseudo_label(&prob, &vert, frac, None, Some(&lucent), cfg).unwrap();
        // C3's region (dilated by one voxel) takes voxel 4 too; the cap (its 5 voxels) keeps
        // the first five of six equally probable ones.
        assert_eq!(label.unwrap().data(), &[0, 0, 1, 0, 1, 1, 1, 1, 1, 0]);
        assert_eq!(
            outcome,
            PseudoOutcome::Labelled {
                voxels: [0, 1, 5, 0, 0, 0, 0],
                capped: vec![3],
                from_boxes: vec![],
                not_lucent: vec![3]
            }
        );
        let wrong = line(&[0; 9]);
        assert!(pseudo_label(&prob, &vert, frac, None, Some(&wrong), cfg).is_err());
    }
}
