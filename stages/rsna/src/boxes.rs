//! `rsna.boxes_to_masks`: fracture bounding boxes -> a binary mask per study in the CT's grid.
//!
//! The method's rule: mask[z, y0..=y1, x0..=x1] = 1 with x0 = round(x), x1 = round(x + width)
//! (same for y), z found by matching the slice's ImagePositionPatient. A box whose slice
//! cannot be matched is reported per study in summary.json, never silently dropped.

use std::collections::BTreeMap;

use flow_engine::{InputDecl, OutputDecl, Params, ParamsSchema, Stage, StageContext, StageError};
use flow_imaging::competition::{boxes_to_mask, read_fracture_boxes, slice_positions, FractureBox};
use flow_imaging::{read_nifti, write_nifti};

use crate::study_set::{StudyFailure, StudySummary};

/// See [`Stage::doc`].
pub struct BoxesToMasks;

impl Stage for BoxesToMasks {
    fn kind(&self) -> &'static str {
        "rsna.boxes_to_masks"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "train_bounding_boxes.csv -> masks/<UID>.nii.gz (uint8) in the converted CT's grid. \
         Unmatched slices and clipped boxes are reported per study in summary.json."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "root",
                many: false,
                required: true,
                doc: "competition root (train_bounding_boxes.csv, train_images/)",
            },
            InputDecl {
                name: "volumes",
                many: false,
                required: true,
                doc: "dicom.to_nifti volumes",
            },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![
            OutputDecl::dir("masks"),
            OutputDecl::file("summary", "summary.json"),
        ])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let root = ctx.input("root")?.to_path_buf();
        let volumes = ctx.input("volumes")?.to_path_buf();
        let csv = root.join("train_bounding_boxes.csv");
        let boxes =
            read_fracture_boxes(&csv).map_err(|e| StageError::wrap("cannot read the boxes", e))?;
        let mut by_study: BTreeMap<String, Vec<FractureBox>> = BTreeMap::new();
        for b in boxes {
            by_study.entry(b.study_uid.clone()).or_default().push(b);
        }
        let out = ctx.output("masks")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create masks/", e))?;
        let mut summary = StudySummary::default();
        let n = by_study.len();
        for (i, (uid, boxes)) in by_study.iter().enumerate() {
            ctx.check_cancel()?;
            ctx.progress(i as u64, n as u64, uid);
            let r = (|| -> Result<Vec<String>, StageError> {
                let ct_path = volumes.join(format!("{uid}.nii.gz"));
                if !ct_path.is_file() {
                    return Err(StageError::msg(
                        "no converted CT for this study (see the conversion summary)",
                    ));
                }
                let ct = read_nifti(&ct_path)
                    .map_err(|e| StageError::wrap("cannot read the converted CT", e))?;
                let positions = slice_positions(&root.join("train_images").join(uid))
                    .map_err(|e| StageError::wrap("cannot read slice positions", e))?;
                let bm = boxes_to_mask(boxes, &positions, ct.geometry(), ct.dims());
                write_nifti(&bm.mask, &out.join(format!("{uid}.nii.gz")))
                    .map_err(|e| StageError::wrap("cannot write the mask", e))?;
                let mut notes: Vec<String> = bm
                    .unmatched
                    .iter()
                    .map(|u| {
                        format!(
                            "study {uid}: box on {csv_name} line {} (slice {}) not drawn: {}",
                            u.line,
                            u.slice_number,
                            u.reason,
                            csv_name = "train_bounding_boxes.csv"
                        )
                    })
                    .collect();
                if bm.clipped > 0 {
                    notes.push(format!(
                        "study {uid}: {} box(es) clipped to the image",
                        bm.clipped
                    ));
                }
                Ok(notes)
            })();
            match r {
                Ok(notes) => {
                    for n in &notes {
                        ctx.log(n);
                    }
                    summary.notes.extend(notes);
                    summary.done.push(uid.clone());
                }
                Err(e) => {
                    ctx.log(&format!("study {uid}: {}", e.chain()));
                    summary.failed.push(StudyFailure {
                        study: uid.clone(),
                        error: e.chain(),
                    });
                }
            }
        }
        summary.write(ctx, "summary")
    }
}
