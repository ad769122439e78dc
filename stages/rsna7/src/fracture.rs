//! Stage-2 fracture labels: round 1's "box and bone" labels from the competition boxes, and the
//! pseudo labels of rounds 2 and 3 from the previous round's probabilities, with the
//! fractured-vertebra filter and the consistency check.

use flow_imaging::ops::{binary_dilate, Element};
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

/// What happened to one study's pseudo label.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum PseudoOutcome {
    /// Labelled: voxels per fractured vertebra (C1..C7; 0 for unfractured ones), and the
    /// vertebrae (1..7) whose candidate voxels were cut down to the cap.
    Labelled { voxels: [u64; 7], capped: Vec<u8> },
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
pub fn pseudo_label(
    prob: &Volume<f32>,
    vertebrae: &Volume<u8>,
    fractured: [bool; 7],
    cfg: PseudoConfig,
) -> Result<(Option<Volume<u8>>, PseudoOutcome)> {
    same_grid(prob, vertebrae, "probability map", "vertebra map")?;
    if !fractured.iter().any(|&f| f) {
        return Ok((None, PseudoOutcome::Negative));
    }
    let mut label = prob.map(|_| 0u8);
    let mut voxels = [0u64; 7];
    let mut capped = Vec::new();
    for v in 1..=7u8 {
        if !fractured[v as usize - 1] {
            continue;
        }
        let size = vertebrae.data().iter().filter(|&&l| l == v).count();
        let cap = (cfg.max_fraction * size as f64).ceil() as usize;
        let region = binary_dilate(&vertebrae.map(|l| u8::from(l == v)), Element::Cross, 1);
        let mut candidates: Vec<(f32, usize)> = region
            .data()
            .iter()
            .zip(prob.data())
            .enumerate()
            .filter(|(i, (&r, &p))| r != 0 && p >= cfg.threshold && label.data()[*i] == 0)
            .map(|(i, (_, &p))| (p, i))
            .collect();
        if candidates.len() > cap {
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
    Ok((Some(label), PseudoOutcome::Labelled { voxels, capped }))
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
        let (label, outcome) = pseudo_label(&prob, &vert, frac, cfg).unwrap();
        assert_eq!(
            label.unwrap().data(),
            &[1, 0, 0, 0, 1, 0, 0, 0],
            "C5's voxel is not fractured per train.csv"
        );
        assert_eq!(
            outcome,
            PseudoOutcome::Labelled {
                voxels: [1, 0, 1, 0, 0, 0, 0],
                capped: vec![]
            }
        );
        frac[1] = true; // C2: no voxel at all -> dropped
        let (label, outcome) = pseudo_label(&prob, &vert, frac, cfg).unwrap();
        assert!(label.is_none());
        assert_eq!(outcome, PseudoOutcome::Dropped { missing: vec![2] });
        assert_eq!(
            pseudo_label(&prob, &vert, [false; 7], cfg).unwrap().1,
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
                capped: vec![2]
            }
        );
    }
}
