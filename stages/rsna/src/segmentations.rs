//! `rsna.segmentations`: the competition's vertebra segmentations in the CT's voxel grid.
//!
//! Fixes the orientation quirk (voxel (i, j, k) = DICOM column i, row Rows-1-j, k-th slice in
//! ascending z), re-attaches the converted CT's geometry, keeps the largest 3D foreground
//! component, then each label's largest component.

use std::path::Path;

use flow_engine::{InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError};
use flow_imaging::competition::read_competition_segmentation;
use flow_imaging::ops::{clean_label_map, Connectivity};
use flow_imaging::{read_nifti, write_nifti};
use serde::Deserialize;
use serde_json::json;

use crate::study_set::{nifti_stem, StudyFailure, StudySummary};

/// See [`Stage::doc`].
pub struct Segmentations;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    connectivity: u8,
}

fn one(seg: &Path, ct: &Path, out: &Path, conn: Connectivity) -> Result<(), StageError> {
    let ct = read_nifti(ct).map_err(|e| StageError::wrap("cannot read the converted CT", e))?;
    let labels = read_competition_segmentation(seg, ct.geometry(), ct.dims()).map_err(|e| StageError::wrap("cannot read the segmentation", e))?;
    let clean = clean_label_map(&labels, conn);
    write_nifti(&clean, out).map_err(|e| StageError::wrap("cannot write labels", e))
}

impl Stage for Segmentations {
    fn kind(&self) -> &'static str {
        "rsna.segmentations"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Competition segmentations/<UID>.nii -> labels/<UID>.nii.gz (1..7 = C1..C7, 8.. = T1..) in \
         the converted CT's grid: orientation quirk fixed, largest foreground component, then \
         each label's largest component. Studies whose CT did not convert are listed in summary.json."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new().optional("connectivity", ParamType::Int, json!(26), "6 or 26 (connected components)")
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl { name: "root", many: false, required: true, doc: "competition root (segmentations/)" },
            InputDecl { name: "volumes", many: false, required: true, doc: "dicom.to_nifti volumes" },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::dir("labels"), OutputDecl::file("summary", "summary.json")])
    }
    fn check(&self, params: &Params, _: &[&str]) -> Result<(), String> {
        match params.get("connectivity").and_then(|v| v.as_u64()) {
            Some(6 | 26) => Ok(()),
            _ => Err("param `connectivity` must be 6 or 26".into()),
        }
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let conn = if p.connectivity == 6 { Connectivity::Six } else { Connectivity::TwentySix };
        let seg_dir = ctx.input("root")?.join("segmentations");
        let volumes = ctx.input("volumes")?.to_path_buf();
        let out = ctx.output("labels")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create labels/", e))?;
        let mut segs: Vec<_> = std::fs::read_dir(&seg_dir)
            .map_err(|e| StageError::wrap(format!("cannot list {}", seg_dir.display()), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| nifti_stem(&p).map(|uid| (uid, p)))
            .collect();
        segs.sort();
        let pool = crate::study_set::pool(ctx.threads)?;
        let mut summary = StudySummary::default();
        for (i, (uid, seg)) in segs.iter().enumerate() {
            ctx.check_cancel()?;
            ctx.progress(i as u64, segs.len() as u64, uid);
            let ct = volumes.join(format!("{uid}.nii.gz"));
            let r = if ct.is_file() {
                pool.install(|| one(seg, &ct, &out.join(format!("{uid}.nii.gz")), conn))
            } else {
                Err(StageError::msg("no converted CT for this study (see the conversion summary)"))
            };
            match r {
                Ok(()) => summary.done.push(uid.clone()),
                Err(e) => {
                    ctx.log(&format!("study {uid}: {}", e.chain()));
                    summary.failed.push(StudyFailure { study: uid.clone(), error: e.chain() });
                }
            }
        }
        summary.write(ctx.output("summary")?)
    }
}
