//! `rsna.roi`: each study's stage-2 region (C1-C7 bounding box grown by a margin) resampled
//! to the fracture grid: CT, stage-1 vertebrae and, where the study has one, its box mask.

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::ops::Interpolation;
use flow_imaging::write_nifti;
use flow_rsna7::Roi;
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::runtime::{fail, pool, read_ct, read_labels, studies_in};
use crate::study_set::{StudyFailure, StudySummary};

pub struct RoiExtract;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    margin_mm: f64,
}

impl Stage for RoiExtract {
    fn kind(&self) -> &'static str {
        "rsna.roi"
    }
    fn version(&self) -> u32 {
        2
    }
    fn doc(&self) -> &'static str {
        "Cuts every study to its stage-2 region (bounding box of the predicted C1-C7 grown by \
         margin_mm) and resamples it to the fracture grid of the `plan` input (rsna.plan's roi section): rois/<UID>.ct.nii.gz (HU), \
         <UID>.vertebrae.nii.gz (stage-1 labels) and, with a masks input, <UID>.boxes.nii.gz. \
         A study without any predicted cervical vertebra gets the body's bounding box instead (noted in summary.json), so it still gets probabilities."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new().optional(
            "margin_mm",
            ParamType::Float,
            json!(5.0),
            "margin around the C1-C7 bounding box",
        )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "volumes",
                many: false,
                required: true,
                doc: "converted CT volumes",
            },
            InputDecl {
                name: "vertebrae",
                many: false,
                required: true,
                doc: "rsna.stage1_predict labels",
            },
            InputDecl {
                name: "masks",
                many: false,
                required: false,
                doc: "fracture box masks on the CT grid (rsna.boxes_to_masks)",
            },
            super::runtime::plan_input("the grid: plans.roi (rsna.plan)"),
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![
            OutputDecl::dir("rois"),
            OutputDecl::file("summary", "summary.json"),
        ])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let spacing = flow_rsna7::plans::read_roi_section(ctx.input("plan")?)
            .map_err(fail("the plan input"))?
            .spacing_xyz;
        let volumes = studies_in(ctx.input("volumes")?, "")?;
        let vertebrae = studies_in(ctx.input("vertebrae")?, "")?;
        let masks = match ctx.input_opt("masks") {
            Some(d) => studies_in(d, "")?,
            None => Default::default(),
        };
        let out = ctx.output("rois")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create rois/", e))?;
        let work: Vec<(&String, &std::path::PathBuf)> = vertebrae.iter().collect();
        let results: Vec<(String, Result<Option<String>, StageError>)> = pool(ctx)?.install(|| {
            work.par_iter()
                .map(|(uid, vert_path)| {
                    let r = (|| {
                        let ct_path = volumes.get(*uid).ok_or_else(|| StageError::msg("no converted CT"))?;
                        let vert = read_labels(vert_path)?;
                        let ct = read_ct(ct_path)?;
                        let mut note = None;
                        let roi = match Roi::around_cervical(uid, &vert, p.margin_mm, spacing) {
                            Ok(r) => r,
                            Err(_) => {
                                note = Some(format!("{uid}: stage 1 found no cervical vertebra; the region is the whole body"));
                                Roi::around_body(uid, &ct, spacing).map_err(fail("no ROI"))?
                            }
                        };
                        let write = |name: &str, r: Result<(), flow_imaging::NiftiIoError>| r.map_err(|e| StageError::wrap(format!("cannot write {name}"), e));
                        write("ct", write_nifti(&roi.extract(&ct, Interpolation::Linear), &out.join(format!("{uid}.ct.nii.gz"))))?;
                        write("vertebrae", write_nifti(&roi.extract(&vert, Interpolation::Nearest), &out.join(format!("{uid}.vertebrae.nii.gz"))))?;
                        if let Some(m) = masks.get(*uid) {
                            let mask = read_labels(m)?;
                            if mask.dims() != ct.dims() {
                                return Err(StageError::msg(format!("box mask {:?} and CT {:?} differ in size", mask.dims(), ct.dims())));
                            }
                            write("boxes", write_nifti(&roi.extract(&mask, Interpolation::Nearest), &out.join(format!("{uid}.boxes.nii.gz"))))?;
                        }
                        Ok(note)
                    })();
                    ((*uid).clone(), r)
                })
                .collect()
        });
        let mut summary = StudySummary::default();
        for (uid, r) in results {
            match r {
                Ok(note) => {
                    if let Some(n) = note {
                        ctx.log(&format!("warning: {n}"));
                        summary.notes.push(n);
                    }
                    summary.done.push(uid)
                }
                Err(e) => {
                    ctx.log(&format!("study {uid}: {}", e.chain()));
                    summary.failed.push(StudyFailure {
                        study: uid,
                        error: e.chain(),
                    });
                }
            }
        }
        summary.write(ctx, "summary")?;
        if summary.done.is_empty() {
            return Err(StageError::msg(
                "no study has a region of interest (see summary.json)",
            ));
        }
        Ok(())
    }
}
