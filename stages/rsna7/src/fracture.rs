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
    let bone = binary_dilate(&vertebrae.map(|l| u8::from((1..=7).contains(&l))), Element::Cross, 1);
    let mut out = boxes.map(|b| u8::from(b != 0));
    for (o, &b) in out.data_mut().iter_mut().zip(bone.data()) {
        *o &= b;
    }
    Ok(out)
}

/// Why a study got no pseudo label.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum PseudoOutcome {
    /// Labelled: voxels per fractured vertebra (C1..C7; 0 for unfractured ones).
    Labelled { voxels: [u64; 7] },
    /// train.csv marks no fractured vertebra (a negative study: nothing to label).
    Negative,
    /// Consistency check failed: these fractured vertebrae (1..7) got no voxel.
    Dropped { missing: Vec<u8> },
}

/// Pseudo label = (probability >= threshold) within the one-voxel-dilated masks of the
/// vertebrae that `fractured` marks (`fractured[v - 1]` for C`v`). The label is returned only
/// when every fractured vertebra receives at least one voxel.
pub fn pseudo_label(prob: &Volume<f32>, vertebrae: &Volume<u8>, fractured: [bool; 7], threshold: f32) -> Result<(Option<Volume<u8>>, PseudoOutcome)> {
    same_grid(prob, vertebrae, "probability map", "vertebra map")?;
    if !fractured.iter().any(|&f| f) {
        return Ok((None, PseudoOutcome::Negative));
    }
    let mut label = prob.map(|_| 0u8);
    let mut voxels = [0u64; 7];
    for v in 1..=7u8 {
        if !fractured[v as usize - 1] {
            continue;
        }
        let region = binary_dilate(&vertebrae.map(|l| u8::from(l == v)), Element::Cross, 1);
        for ((o, &r), &p) in label.data_mut().iter_mut().zip(region.data()).zip(prob.data()) {
            if r != 0 && p >= threshold {
                if *o == 0 {
                    voxels[v as usize - 1] += 1;
                }
                *o = 1;
            }
        }
    }
    let missing: Vec<u8> = (1..=7u8).filter(|&v| fractured[v as usize - 1] && voxels[v as usize - 1] == 0).collect();
    if !missing.is_empty() {
        return Ok((None, PseudoOutcome::Dropped { missing }));
    }
    Ok((Some(label), PseudoOutcome::Labelled { voxels }))
}

fn same_grid<A: flow_imaging::Voxel, B: flow_imaging::Voxel>(a: &Volume<A>, b: &Volume<B>, an: &str, bn: &str) -> Result<()> {
    if a.dims() != b.dims() || a.geometry.max_affine_difference(&b.geometry) > 1e-3 {
        return Err(Rsna7Error::Invalid(format!("the {an} ({:?}) and the {bn} ({:?}) are not on the same grid", a.dims(), b.dims())));
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
        assert_eq!(box_and_bone(&boxes, &vert).unwrap().data(), &[0, 0, 1, 1, 0, 0]);
    }

    #[test]
    fn pseudo_labels_filter_vertebrae_and_check_consistency() {
        let vert = line(&[1, 1, 0, 0, 3, 3, 0, 5]);
        let prob = Volume::from_vec([8, 1, 1], vec![0.9, 0.1, 0.0, 0.0, 0.5, 0.1, 0.0, 0.9], Geometry::identity()).unwrap();
        let mut frac = [false; 7];
        frac[0] = true;
        frac[2] = true;
        let (label, outcome) = pseudo_label(&prob, &vert, frac, 0.2).unwrap();
        assert_eq!(label.unwrap().data(), &[1, 0, 0, 0, 1, 0, 0, 0], "C5's voxel is not fractured per train.csv");
        assert_eq!(outcome, PseudoOutcome::Labelled { voxels: [1, 0, 1, 0, 0, 0, 0] });
        frac[1] = true; // C2: no voxel at all -> dropped
        let (label, outcome) = pseudo_label(&prob, &vert, frac, 0.2).unwrap();
        assert!(label.is_none());
        assert_eq!(outcome, PseudoOutcome::Dropped { missing: vec![2] });
        assert_eq!(pseudo_label(&prob, &vert, [false; 7], 0.2).unwrap().1, PseudoOutcome::Negative);
    }

}
