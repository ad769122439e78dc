//! Stage 1: C1-C7 (+T1) segmentation as a two-model cascade, after nnU-Net's 3d_cascade.
//!
//! The low-resolution model sees the whole air-cropped neck in one window and tells the
//! levels apart (a window that shows both ends of the neck can count vertebrae). The
//! full-resolution model works inside the low-resolution spine box, where the boundaries of
//! bone are drawn: in the small profiles it segments the spine as one class and each of its
//! voxels takes the most likely level of the upsampled low-resolution probabilities; with 9
//! classes (the method's `full` nets) its own argmax is the answer. Without a full-resolution
//! model the low-resolution argmax is used. The result is resampled to the CT grid and the
//! largest "cervical" component (C1-C7 dilated by 2 mm) is kept.

use candle_core::Device;
use flow_imaging::ops::{
    bbox_where, binary_dilate, crop, grow_bbox_mm, label_components, resample_to_grid,
    resample_to_spacing, BoundingBox, Connectivity, Element, Interpolation,
};
use flow_imaging::Volume;
use flow_patches::TrainingCase;
use serde::{Deserialize, Serialize};

use crate::error::{Result, Rsna7Error};
use crate::level_watershed::relabel_levels;
use crate::normalize::{sample_where, CtNormalizer};
use crate::segnet::{
    predict_probabilities, to_grid, training_case, InferencePlan, SegModel, SegRecipe,
};

/// Number of stage-1 classes: background, C1..C7, T1.
pub const STAGE1_CLASSES: usize = 9;
/// Voxels darker than this (HU) are air, cropped away around the body.
const AIR_HU: f32 = -200.0;
/// Margin around the body when air is cropped away.
const BODY_MARGIN_MM: f64 = 6.0;
/// Margin around the spine box the full-resolution model works in, on top of the two
/// low-resolution voxels the box is already grown by; training crops use the same margin
/// around the true spine.
pub const SPINE_MARGIN_MM: f64 = 6.0;
/// Margin around the true spine of a full-resolution training crop: as much context as the
/// spine box at inference holds (the low-resolution box grown by two of its voxels and
/// [`SPINE_MARGIN_MM`]), so the model sees the skull base, mandible, hyoid and first ribs
/// there as background. With the 6 mm of inference alone it never did, and labelled them
/// spine (C1 and C5 then took up to a fifth of their voxels from those bones).
pub const FULLRES_CONTEXT_MM: f64 = 20.0;
/// Default marker confidence of the level watershed ([`segment_vertebrae`]).
pub const LEVEL_MARKERS: f64 = 0.9;

/// Which model of the cascade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Whole neck in one window, 9 classes.
    Lowres,
    /// Inside the spine box: spine vs background (2 classes) or all 9 classes.
    Fullres,
}

impl Resolution {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "lowres" => Ok(Self::Lowres),
            "fullres" => Ok(Self::Fullres),
            other => Err(Rsna7Error::Invalid(format!(
                "resolution `{other}`: use lowres or fullres"
            ))),
        }
    }

    /// The name `parse` reads (the `resolution` param).
    pub fn name(self) -> &'static str {
        match self {
            Self::Lowres => "lowres",
            Self::Fullres => "fullres",
        }
    }

    /// The `task` a model of this resolution records in model.json.
    pub fn task(self) -> &'static str {
        match self {
            Self::Lowres => "vertebrae-lowres",
            Self::Fullres => "vertebrae-fullres",
        }
    }
}

/// One training study on a model's grid: HU (not yet normalised) and its label map.
pub struct Stage1Study {
    pub uid: String,
    pub hu: Volume<f32>,
    pub labels: Volume<u8>,
}

/// The body's box (voxels above -200 HU) grown by 6 mm: what inference and training crop to.
fn body_box(hu: &Volume<f32>) -> Option<BoundingBox> {
    bbox_where(hu, |x| x > AIR_HU).map(|b| grow_bbox_mm(hu, &b, [BODY_MARGIN_MM; 3]))
}

/// A training study for `resolution`: the low-resolution model's is the whole air-cropped
/// neck; the full-resolution model's is the box around the labelled spine grown by
/// [`FULLRES_CONTEXT_MM`], with labels 1..8 merged into one class when its net has 2 classes.
pub fn prepare_study(
    uid: &str,
    ct: &Volume<i16>,
    labels: &Volume<u8>,
    recipe: &SegRecipe,
    resolution: Resolution,
) -> Result<Stage1Study> {
    if ct.dims() != labels.dims() {
        return Err(Rsna7Error::study(
            uid,
            format!(
                "CT {:?} and label map {:?} differ in size",
                ct.dims(),
                labels.dims()
            ),
        ));
    }
    let binary = recipe.net.num_classes == 2;
    let relabel = |l: u8| match l {
        1..=8 if binary => 1,
        0..=8 => l,
        _ => 0,
    };
    match resolution {
        Resolution::Lowres => {
            let hu = resample_to_spacing(
                &ct.map(f32::from),
                recipe.spacing_xyz,
                Interpolation::Linear,
            );
            let labels = resample_to_spacing(
                &labels.map(relabel),
                recipe.spacing_xyz,
                Interpolation::Nearest,
            );
            let body = body_box(&hu)
                .ok_or_else(|| Rsna7Error::study(uid, "the CT has no voxel above -200 HU"))?;
            Ok(Stage1Study {
                uid: uid.into(),
                hu: crop(&hu, &body),
                labels: crop(&labels, &body),
            })
        }
        Resolution::Fullres => {
            let spine = bbox_where(labels, |l| (1..=8).contains(&l))
                .ok_or_else(|| Rsna7Error::study(uid, "the label map has no C1-T1 voxel"))?;
            let region = grow_bbox_mm(labels, &spine, [FULLRES_CONTEXT_MM; 3]);
            let hu = resample_to_spacing(
                &crop(ct, &region).map(f32::from),
                recipe.spacing_xyz,
                Interpolation::Linear,
            );
            let labels = resample_to_spacing(
                &crop(labels, &region).map(relabel),
                recipe.spacing_xyz,
                Interpolation::Nearest,
            );
            Ok(Stage1Study {
                uid: uid.into(),
                hu,
                labels,
            })
        }
    }
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

/// Class probabilities of `hu` (already on the models' grid) as one volume per class.
pub(crate) fn class_probabilities(
    models: &[&SegModel],
    hu: &Volume<f32>,
    inference: &InferencePlan,
    device: &Device,
) -> Result<Vec<Volume<f32>>> {
    let norm = models
        .first()
        .ok_or_else(|| Rsna7Error::Invalid("no model to predict with".into()))?
        .meta
        .normalizer;
    let probs = predict_probabilities(
        models,
        &to_grid(&hu.map(|x| norm.apply(x)))?,
        inference,
        device,
    )?;
    let n = hu.len();
    probs
        .chunks(n)
        .map(|c| {
            Volume::from_vec(hu.dims(), c.to_vec(), hu.geometry)
                .map_err(|e| Rsna7Error::Invalid(e.to_string()))
        })
        .collect()
}

/// Vertebra labels (0 = none, 1..7 = C1..C7, 8 = T1) on the CT's own grid from the cascade
/// (`fullres` may be empty: then the low-resolution argmax), each resolution predicting as
/// its entry of `inference` (low, full) says; `cleanup_mm` <= 0 skips the
/// cervical-component clean-up. With a 2-class full-resolution model and `level_markers` > 0,
/// the level boundaries move onto the spine mask's joints ([`relabel_levels`]): voxels whose
/// level holds at least that share of the level probability are the markers.
pub fn segment_vertebrae(
    lowres: &[&SegModel],
    fullres: &[&SegModel],
    inference: [&InferencePlan; 2],
    ct: &Volume<i16>,
    device: &Device,
    cleanup_mm: f64,
    level_markers: f32,
) -> Result<Volume<u8>> {
    let low = lowres
        .first()
        .ok_or_else(|| Rsna7Error::Invalid("no low-resolution stage-1 model".into()))?;
    if low.classes() != STAGE1_CLASSES {
        return Err(Rsna7Error::Invalid(format!(
            "the low-resolution stage-1 model has {} classes, expected {STAGE1_CLASSES}",
            low.classes()
        )));
    }
    let hu_low = resample_to_spacing(
        &ct.map(f32::from),
        low.meta.recipe.spacing_xyz,
        Interpolation::Linear,
    );
    let body = body_box(&hu_low)
        .ok_or_else(|| Rsna7Error::Invalid("the CT has no voxel above -200 HU".into()))?;
    let hu_low = crop(&hu_low, &body);
    let low_probs = class_probabilities(lowres, &hu_low, inference[0], device)?;
    let mut labels = Volume::filled(ct.dims(), 0u8, ct.geometry)
        .map_err(|e| Rsna7Error::Invalid(e.to_string()))?;
    let Some(spine) = native_box_of_foreground(&low_probs, ct) else {
        return Ok(labels);
    };
    let region = grow_bbox_mm(ct, &spine, [SPINE_MARGIN_MM; 3]);
    let sub_dims = region.size();
    let sub_geom = ct.geometry.shifted([
        region.min[0] as isize,
        region.min[1] as isize,
        region.min[2] as isize,
    ]);
    let back = |v: &Volume<f32>, fill: f32| {
        resample_to_grid(v, sub_dims, sub_geom, Interpolation::Linear, fill)
    };
    let best = match fullres.first() {
        None => argmax(
            &low_probs
                .iter()
                .enumerate()
                .map(|(c, p)| back(p, if c == 0 { 1.0 } else { 0.0 }))
                .collect::<Vec<_>>(),
            0,
        ),
        Some(fine) => {
            let hu_fine = resample_to_spacing(
                &crop(ct, &region).map(f32::from),
                fine.meta.recipe.spacing_xyz,
                Interpolation::Linear,
            );
            let fine_probs = class_probabilities(fullres, &hu_fine, inference[1], device)?;
            match fine.classes() {
                STAGE1_CLASSES => argmax(&fine_probs.iter().enumerate().map(|(c, p)| back(p, if c == 0 { 1.0 } else { 0.0 })).collect::<Vec<_>>(), 0),
                2 => {
                    // Spine voxels of the fine model take the most likely level of the coarse one.
                    // (Outside the low-resolution crop every level is 0: no level, no label.)
                    let spine_p = back(&fine_probs[1], 0.0);
                    let levels: Vec<Volume<f32>> = low_probs[1..].iter().map(|p| back(p, 0.0)).collect();
                    let seen: Vec<bool> = (0..spine_p.len()).map(|i| levels.iter().any(|q| q.data()[i] > 0.0)).collect();
                    let best = argmax(&levels, 1);
                    let spine: Vec<u8> = spine_p.data().iter().zip(&best).zip(seen).map(|((&p, &l), seen)| if p >= 0.5 && seen { l } else { 0 }).collect();
                    if level_markers > 0.0 {
                        relabel_levels(&spine, &level_confidence(&levels, &best), sub_dims, level_markers)
                    } else {
                        spine
                    }
                }
                n => return Err(Rsna7Error::Invalid(format!("the full-resolution stage-1 model has {n} classes, expected 2 or {STAGE1_CLASSES}"))),
            }
        }
    };
    for k in 0..sub_dims[2] {
        for j in 0..sub_dims[1] {
            let src = (k * sub_dims[1] + j) * sub_dims[0];
            let dst = labels.index(region.min[0], region.min[1] + j, region.min[2] + k);
            labels.data_mut()[dst..dst + sub_dims[0]]
                .copy_from_slice(&best[src..src + sub_dims[0]]);
        }
    }
    Ok(if cleanup_mm > 0.0 {
        keep_cervical_component(&labels, cleanup_mm)
    } else {
        labels
    })
}

/// Per voxel, the share of the level probability that the chosen level (`best`, 1-based, as
/// [`argmax`] with `first` 1 gives) holds.
fn level_confidence(levels: &[Volume<f32>], best: &[u8]) -> Vec<f32> {
    (0..best.len())
        .map(|i| {
            let total: f32 = levels.iter().map(|q| q.data()[i]).sum();
            if total > 0.0 {
                levels[usize::from(best[i]) - 1].data()[i] / total
            } else {
                0.0
            }
        })
        .collect()
}

/// Per voxel, `first + ` the index of the largest of `probs` (all on one grid).
pub(crate) fn argmax(probs: &[Volume<f32>], first: u8) -> Vec<u8> {
    let n = probs.first().map_or(0, |p| p.len());
    let mut best = vec![first; n];
    let mut best_p = vec![f32::MIN; n];
    for (c, p) in probs.iter().enumerate() {
        for ((b, bp), &v) in best.iter_mut().zip(best_p.iter_mut()).zip(p.data()) {
            if v > *bp {
                *bp = v;
                *b = first + c as u8;
            }
        }
    }
    best
}

/// The box on `ct`'s grid covering the prediction-grid voxels whose argmax is a vertebra
/// (C1..T1), grown by two prediction voxels; `None` when everything is background.
fn native_box_of_foreground(probs: &[Volume<f32>], ct: &Volume<i16>) -> Option<BoundingBox> {
    let grid = probs.first()?;
    let fg = Volume::from_vec(
        grid.dims(),
        (0..grid.len())
            .map(|i| u8::from(probs[1..].iter().any(|p| p.data()[i] > grid.data()[i])))
            .collect(),
        grid.geometry,
    )
    .ok()?;
    let b = bbox_where(&fg, |v| v != 0)?;
    let d = ct.dims();
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for corner in 0..8 {
        let p = [0, 1, 2].map(|a| {
            if corner & (1 << a) == 0 {
                b.min[a] as f64 - 2.0
            } else {
                b.max[a] as f64 + 2.0
            }
        });
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
    let min_spacing = labels
        .geometry
        .spacing
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let radius = (dilation_mm / min_spacing).round().max(1.0) as usize;
    let grown = binary_dilate(&cervical, Element::Box, radius);
    let comps = label_components(&grown, Connectivity::TwentySix, |x| x != 0);
    let Some(keep) = comps.largest() else {
        return labels.clone();
    };
    let mut out = labels.clone();
    for (l, &c) in out.data_mut().iter_mut().zip(&comps.labels) {
        if c != keep {
            *l = 0;
        }
    }
    out
}

/// Dice per label `1..=labels` of `pred` against `truth` (None where both are empty).
pub fn dice_per_label(
    pred: &Volume<u8>,
    truth: &Volume<u8>,
    labels: u8,
) -> Result<Vec<Option<f64>>> {
    if pred.dims() != truth.dims() {
        return Err(Rsna7Error::Invalid(format!(
            "Dice of volumes of sizes {:?} and {:?}",
            pred.dims(),
            truth.dims()
        )));
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
    Ok((1..=labels as usize)
        .map(|l| (np[l] + nt[l] > 0).then(|| 2.0 * tp[l] as f64 / (np[l] + nt[l]) as f64))
        .collect())
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

    #[test]
    fn argmax_picks_the_largest_class_offset_by_first() {
        let g = Geometry::identity();
        let a = Volume::from_vec([3, 1, 1], vec![0.2, 0.7, 0.1], g).unwrap();
        let b = Volume::from_vec([3, 1, 1], vec![0.5, 0.1, 0.1], g).unwrap();
        assert_eq!(argmax(&[a.clone(), b.clone()], 0), vec![1, 0, 0]);
        assert_eq!(argmax(&[a, b], 1), vec![2, 1, 1]);
    }

    #[test]
    fn studies_are_cropped_to_the_body_or_the_spine() {
        // A 64 mm cube of air with a 10 mm "neck" of soft tissue holding a 4 mm spine of C3.
        let g = Geometry::identity();
        let mut ct = Volume::filled([64, 64, 64], -1000i16, g).unwrap();
        let mut labels = Volume::filled([64, 64, 64], 0u8, g).unwrap();
        for k in 5..59 {
            for j in 27..37 {
                for i in 27..37 {
                    ct.set(i, j, k, 40);
                    if (30..34).contains(&i) && (30..34).contains(&j) && (20..40).contains(&k) {
                        labels.set(i, j, k, 3);
                    }
                }
            }
        }
        let plans = crate::plans::Plans::builtin("tiny").unwrap();
        let mut recipe = plans.stage1_lowres.clone();
        recipe.spacing_xyz = [1.0; 3];
        let low = prepare_study("s", &ct, &labels, &recipe, Resolution::Lowres).unwrap();
        // body 27..=36 grown by 6 mm: 21..=42 in-plane, 5..=58 grown to 0..=63 along z.
        assert_eq!(low.hu.dims(), [22, 22, 64]);
        assert_eq!(
            low.labels.data().iter().filter(|&&l| l == 3).count(),
            4 * 4 * 20
        );
        let mut fine = plans.stage1_fullres;
        fine.spacing_xyz = [1.0; 3];
        let high = prepare_study("s", &ct, &labels, &fine, Resolution::Fullres).unwrap();
        // spine 30..=33 / 20..=39 grown by FULLRES_CONTEXT_MM (20 mm): 10..=53 / 0..=59.
        assert_eq!(high.hu.dims(), [44, 44, 60]);
        assert!(
            high.labels.data().iter().all(|&l| l <= 1),
            "the 2-class full-resolution net sees one spine class"
        );
        assert!(prepare_study("s", &ct, &labels.map(|_| 0), &fine, Resolution::Fullres).is_err());
    }
}
