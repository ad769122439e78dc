//! Stage 1: C1-C7 (+T1) segmentation. Training cases are CT + label maps resampled to the
//! recipe's spacing and normalised; inference crops away air, runs the sliding window,
//! resamples the class probabilities back to the CT grid, takes the argmax and keeps the
//! largest "cervical" component (C1-C7 dilated by 2 mm), zeroing every label outside it.

use candle_core::Device;
use flow_imaging::ops::{bbox_where, binary_dilate, crop, grow_bbox_mm, label_components, resample_to_grid, resample_to_spacing, BoundingBox, Connectivity, Element, Interpolation};
use flow_imaging::Volume;
use flow_patches::TrainingCase;

use crate::error::{Result, Rsna7Error};
use crate::normalize::{sample_where, CtNormalizer};
use crate::segnet::{predict_probabilities, to_grid, training_case, SegModel, SegRecipe};

/// Number of stage-1 classes: background, C1..C7, T1.
pub const STAGE1_CLASSES: usize = 9;
/// Voxels darker than this (HU) are air, cropped away before inference.
const AIR_HU: f32 = -200.0;

/// One study resampled to the recipe's grid: HU (not yet normalised) and labels 0..=8
/// (labels beyond T1 are background for stage 1).
pub struct Stage1Study {
    pub uid: String,
    pub hu: Volume<f32>,
    pub labels: Volume<u8>,
}

pub fn resample_study(uid: &str, ct: &Volume<i16>, labels: &Volume<u8>, recipe: &SegRecipe) -> Result<Stage1Study> {
    if ct.dims() != labels.dims() {
        return Err(Rsna7Error::study(uid, format!("CT {:?} and label map {:?} differ in size", ct.dims(), labels.dims())));
    }
    let hu = resample_to_spacing(&ct.map(f32::from), recipe.spacing_xyz, Interpolation::Linear);
    let labels = resample_to_spacing(&labels.map(|l| if l <= 8 { l } else { 0 }), recipe.spacing_xyz, Interpolation::Nearest);
    Ok(Stage1Study { uid: uid.into(), hu, labels })
}

/// The normaliser fitted on the labelled voxels of `studies`, and the training cases.
pub fn training_cases(studies: &[Stage1Study]) -> Result<(CtNormalizer, Vec<TrainingCase>)> {
    let mut samples = Vec::new();
    for s in studies {
        let labels = s.labels.data();
        samples.extend(sample_where(s.hu.data(), |i| labels[i] != 0, 7));
    }
    let norm = CtNormalizer::fit(&mut samples)?;
    let cases = studies
        .iter()
        .map(|s| training_case(&s.uid, &s.hu.map(|x| norm.apply(x)), &s.labels, None))
        .collect::<Result<Vec<_>>>()?;
    Ok((norm, cases))
}

/// Vertebra labels (0 = none, 1..7 = C1..C7, 8 = T1) on the CT's own grid; `cleanup_mm` <= 0
/// skips the cervical-component clean-up.
pub fn segment_vertebrae(models: &[&SegModel], ct: &Volume<i16>, device: &Device, cleanup_mm: f64) -> Result<Volume<u8>> {
    let first = models.first().ok_or_else(|| Rsna7Error::Invalid("no stage-1 model".into()))?;
    let norm = first.meta.normalizer;
    let hu = resample_to_spacing(&ct.map(f32::from), first.meta.recipe.spacing_xyz, Interpolation::Linear);
    let body = bbox_where(&hu, |x| x > AIR_HU).ok_or_else(|| Rsna7Error::Invalid("the CT has no voxel above -200 HU".into()))?;
    let roi = crop(&hu, &grow_bbox_mm(&hu, &body, [6.0; 3]));
    let image = to_grid(&roi.map(|x| norm.apply(x)))?;
    let classes = first.classes();
    let probs = predict_probabilities(models, &image, device)?;
    let n = roi.len();
    // Back to the CT grid class by class, only inside the box around the low-resolution
    // foreground (grown by two voxels): elsewhere every class but background is ~0.
    let dims = ct.dims();
    let mut labels = Volume::filled(dims, 0u8, ct.geometry).map_err(|e| Rsna7Error::Invalid(e.to_string()))?;
    let Some(region) = native_box_of_foreground(&probs, classes, &roi, ct) else {
        return Ok(labels);
    };
    let sub_dims = region.size();
    let sub_geom = ct.geometry.shifted([region.min[0] as isize, region.min[1] as isize, region.min[2] as isize]);
    let m = sub_dims.iter().product::<usize>();
    let mut best = vec![0u8; m];
    let mut best_p = vec![f32::MIN; m];
    for c in 0..classes {
        let pc = Volume::from_vec(roi.dims(), probs[c * n..(c + 1) * n].to_vec(), roi.geometry).map_err(|e| Rsna7Error::Invalid(e.to_string()))?;
        let fill = if c == 0 { 1.0 } else { 0.0 };
        let back = resample_to_grid(&pc, sub_dims, sub_geom, Interpolation::Linear, fill);
        for ((b, bp), &p) in best.iter_mut().zip(best_p.iter_mut()).zip(back.data()) {
            if p > *bp {
                *bp = p;
                *b = c as u8;
            }
        }
    }
    for k in 0..sub_dims[2] {
        for j in 0..sub_dims[1] {
            let src = (k * sub_dims[1] + j) * sub_dims[0];
            let dst = labels.index(region.min[0], region.min[1] + j, region.min[2] + k);
            labels.data_mut()[dst..dst + sub_dims[0]].copy_from_slice(&best[src..src + sub_dims[0]]);
        }
    }
    Ok(if cleanup_mm > 0.0 { keep_cervical_component(&labels, cleanup_mm) } else { labels })
}

/// The box on `ct`'s grid covering the voxels of `grid` (the prediction grid) whose argmax is
/// not background, grown by two prediction voxels; `None` when everything is background.
fn native_box_of_foreground(probs: &[f32], classes: usize, grid: &Volume<f32>, ct: &Volume<i16>) -> Option<BoundingBox> {
    let n = grid.len();
    let fg = Volume::from_vec(grid.dims(), (0..n).map(|i| u8::from((1..classes).any(|c| probs[c * n + i] > probs[i]))).collect(), grid.geometry).ok()?;
    let b = bbox_where(&fg, |v| v != 0)?;
    let d = ct.dims();
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for corner in 0..8 {
        let p = [0, 1, 2].map(|a| if corner & (1 << a) == 0 { b.min[a] as f64 - 2.0 } else { b.max[a] as f64 + 2.0 });
        let q = ct.geometry.world_to_index(grid.geometry.index_to_world(p));
        for a in 0..3 {
            lo[a] = lo[a].min(q[a]);
            hi[a] = hi[a].max(q[a]);
        }
    }
    let min = [0, 1, 2].map(|a| lo[a].floor().clamp(0.0, (d[a] - 1) as f64) as usize);
    let max = [0, 1, 2].map(|a| hi[a].ceil().clamp(0.0, (d[a] - 1) as f64) as usize);
    Some(BoundingBox { min, max })
}

/// Keeps the largest connected component of C1-C7 dilated by `dilation_mm` and zeroes every
/// label outside it (stray blobs, a second "spine" in the arm or table).
pub fn keep_cervical_component(labels: &Volume<u8>, dilation_mm: f64) -> Volume<u8> {
    let cervical = labels.map(|l| u8::from((1..=7).contains(&l)));
    let min_spacing = labels.geometry.spacing.iter().copied().fold(f64::INFINITY, f64::min);
    let radius = (dilation_mm / min_spacing).round().max(1.0) as usize;
    let grown = binary_dilate(&cervical, Element::Box, radius);
    let comps = label_components(&grown, Connectivity::TwentySix, |x| x != 0);
    let Some(keep) = comps.largest() else { return labels.clone() };
    let mut out = labels.clone();
    for (l, &c) in out.data_mut().iter_mut().zip(&comps.labels) {
        if c != keep {
            *l = 0;
        }
    }
    out
}

/// Dice per label `1..=labels` of `pred` against `truth` (None where both are empty).
pub fn dice_per_label(pred: &Volume<u8>, truth: &Volume<u8>, labels: u8) -> Result<Vec<Option<f64>>> {
    if pred.dims() != truth.dims() {
        return Err(Rsna7Error::Invalid(format!("Dice of volumes of sizes {:?} and {:?}", pred.dims(), truth.dims())));
    }
    let mut tp = vec![0u64; labels as usize + 1];
    let mut np = vec![0u64; labels as usize + 1];
    let mut nt = vec![0u64; labels as usize + 1];
    for (&p, &t) in pred.data().iter().zip(truth.data()) {
        if (1..=labels).contains(&p) {
            np[p as usize] += 1;
        }
        if (1..=labels).contains(&t) {
            nt[t as usize] += 1;
            if p == t {
                tp[t as usize] += 1;
            }
        }
    }
    Ok((1..=labels as usize).map(|l| (np[l] + nt[l] > 0).then(|| 2.0 * tp[l] as f64 / (np[l] + nt[l]) as f64)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_imaging::Geometry;

    #[test]
    fn cleanup_drops_far_blobs_and_keeps_touching_t1() {
        let mut v = Volume::filled([20, 20, 20], 0u8, Geometry::identity()).unwrap();
        for k in 2..10 {
            v.set(5, 5, k, 1 + (k as u8 - 2) % 7);
        }
        v.set(5, 5, 11, 8); // T1 within 2 mm of C7's component: kept
        v.set(15, 15, 15, 3); // far blob: dropped
        let out = keep_cervical_component(&v, 2.0);
        assert_eq!(out.get(5, 5, 11), 8);
        assert_eq!(out.get(15, 15, 15), 0);
        assert_eq!(out.get(5, 5, 4), v.get(5, 5, 4));
    }

    #[test]
    fn dice_counts_per_label() {
        let g = Geometry::identity();
        let t = Volume::from_vec([4, 1, 1], vec![1, 1, 2, 0], g).unwrap();
        let p = Volume::from_vec([4, 1, 1], vec![1, 0, 2, 2], g).unwrap();
        let d = dice_per_label(&p, &t, 3).unwrap();
        assert!((d[0].unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((d[1].unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(d[2], None);
    }
}
