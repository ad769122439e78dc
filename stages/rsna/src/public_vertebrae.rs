//! `public.vertebrae`: public vertebra data sets (TotalSegmentator, VerSe) as extra stage-1
//! training cases, with labels 1..8 = C1..C7, T1, cleaned once with disc gaps bridged; cases
//! without both C1 and T1 are dropped (and listed, with the reason, in summary.json), labels
//! that lose much in the clean-up are noted there.

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::competition::{read_combined, read_structure_folder, VertebraScheme};
use flow_imaging::ops::CleanupReport;
use flow_imaging::write_nifti;
use serde::Deserialize;
use serde_json::json;

use crate::segmentations::cleanup_notes;
use crate::study_set::{study_dirs, StudyFailure, StudySummary};

/// See [`Stage::doc`].
pub struct PublicVertebrae;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    scheme: String,
}

fn scheme(name: &str) -> Result<VertebraScheme, String> {
    match name {
        "totalsegmentator-v1" => Ok(VertebraScheme::TotalSegmentatorV1),
        "totalsegmentator-v2" => Ok(VertebraScheme::TotalSegmentatorV2),
        "verse" => Ok(VertebraScheme::Verse),
        other => Err(format!("param `scheme`: unknown `{other}` (expected totalsegmentator-v1, totalsegmentator-v2 or verse)")),
    }
}

impl Stage for PublicVertebrae {
    fn kind(&self) -> &'static str {
        "public.vertebrae"
    }
    fn version(&self) -> u32 {
        2
    }
    fn doc(&self) -> &'static str {
        "A public data set as stage-1 cases: each case folder holds ct.nii.gz and either \
         segmentations/ (TotalSegmentator per-structure files vertebrae_C1..C7, T1) or labels.nii.gz \
         (a combined map read with `scheme`). Writes cases/<case>_ct.nii.gz and \
         cases/<case>_labels.nii.gz (1..8 = C1..C7, T1, cleaned: main body of the foreground with gaps \
         up to 6 mm (disc gaps) bridged, then each label's largest component). Cases without C1 and \
         T1 are dropped and listed in summary.json; labels that lose over 5% of their voxels in the \
         clean-up are noted there."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new().optional(
            "scheme",
            ParamType::String,
            json!("totalsegmentator-v1"),
            "label scheme of labels.nii.gz: totalsegmentator-v1 | totalsegmentator-v2 | verse",
        )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![InputDecl {
            name: "dataset",
            many: false,
            required: true,
            doc: "folder with one sub-folder per case",
        }])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![
            OutputDecl::dir("cases"),
            OutputDecl::file("summary", "summary.json"),
        ])
    }
    fn check(&self, params: &Params, _: &[&str]) -> Result<(), String> {
        scheme(
            params
                .get("scheme")
                .and_then(|v| v.as_str())
                .unwrap_or_default(),
        )
        .map(|_| ())
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let scheme = scheme(&p.scheme).map_err(StageError::msg)?;
        let cases = study_dirs(ctx.input("dataset")?)?;
        let out = ctx.output("cases")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create cases/", e))?;
        let mut summary = StudySummary::default();
        for (i, (name, dir)) in cases.iter().enumerate() {
            ctx.check_cancel()?;
            ctx.progress(i as u64, cases.len() as u64, name);
            let r = (|| -> Result<CleanupReport, StageError> {
                let ct = dir.join("ct.nii.gz");
                if !ct.is_file() {
                    return Err(StageError::msg(format!("{} is missing", ct.display())));
                }
                let (labels, report) = if dir.join("segmentations").is_dir() {
                    read_structure_folder(&dir.join("segmentations"))
                } else {
                    read_combined(&dir.join("labels.nii.gz"), scheme)
                }
                .map_err(|e| StageError::wrap("labels", e))?;
                write_nifti(&labels, &out.join(format!("{name}_labels.nii.gz")))
                    .map_err(|e| StageError::wrap("cannot write labels", e))?;
                std::fs::copy(&ct, out.join(format!("{name}_ct.nii.gz")))
                    .map_err(|e| StageError::wrap("cannot copy the CT", e))?;
                Ok(report)
            })();
            match r {
                Ok(report) => {
                    for note in cleanup_notes(&format!("case {name}"), &report) {
                        ctx.log(&note);
                        summary.notes.push(note);
                    }
                    summary.done.push(name.clone());
                }
                Err(e) => {
                    ctx.log(&format!("case {name} dropped: {}", e.chain()));
                    summary.failed.push(StudyFailure {
                        study: name.clone(),
                        error: e.chain(),
                    });
                }
            }
        }
        summary.write(ctx, "summary")
    }
}
