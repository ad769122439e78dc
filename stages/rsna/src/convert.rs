//! `dicom.to_nifti`: every study folder of a competition root to one NIfTI (HU, int16) plus a
//! geometry report. Each study is cached on its own, keyed by its files' content, so adding a
//! study converts only that study. A study that fails is listed in `summary.json`; the
//! others still convert.

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::{convert_series, write_report_json};
use serde::Deserialize;
use serde_json::json;

use crate::study_set::{folder_digest, link_all, study_dirs, StudySummary};

/// See [`Stage::doc`].
pub struct DicomToNifti;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    images: String,
    fail_on_any: bool,
}

impl Stage for DicomToNifti {
    fn kind(&self) -> &'static str {
        "dicom.to_nifti"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Converts <root>/<images>/<UID>/*.dcm to volumes/<UID>.nii.gz (HU as int16, exact \
         geometry) and volumes/<UID>.json (series facts, no patient identifiers). Cached per \
         study. Failed studies are listed in summary.json (or fail the node with fail_on_any)."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional(
                "images",
                ParamType::String,
                json!("train_images"),
                "sub-folder of the root holding one folder per study",
            )
            .optional(
                "fail_on_any",
                ParamType::Bool,
                json!(false),
                "fail the node if any study fails to convert",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![InputDecl {
            name: "root",
            many: false,
            required: true,
            doc: "competition root (or any folder with <images>/<study>/)",
        }])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![
            OutputDecl::dir("volumes"),
            OutputDecl::file("summary", "summary.json"),
        ])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let images = ctx.input("root")?.join(&p.images);
        let studies = study_dirs(&images)?;
        if studies.is_empty() {
            return Err(StageError::msg(format!(
                "no study folders in {}",
                images.display()
            )));
        }
        let out = ctx.output("volumes")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create volumes/", e))?;
        let pool = crate::study_set::pool(ctx)?;
        let mut summary = StudySummary::default();
        for (i, (uid, dir)) in studies.iter().enumerate() {
            ctx.check_cancel()?;
            ctx.progress(i as u64, studies.len() as u64, uid);
            let result = pool.install(|| -> Result<(), StageError> {
                let key = json!({"study": uid, "files": folder_digest(dir)?});
                let mut converted = false;
                let item = ctx.cached_item(&key, uid, &mut |target| {
                    converted = true;
                    std::fs::create_dir_all(target)
                        .map_err(|e| StageError::wrap("cannot create item dir", e))?;
                    let report = convert_series(dir, &target.join(format!("{uid}.nii.gz")), None)
                        .map_err(|e| StageError::wrap(format!("study {uid}"), e))?;
                    write_report_json(&report, &target.join(format!("{uid}.json")))
                        .map_err(|e| StageError::wrap(format!("study {uid}"), e))
                })?;
                ctx.log(&format!(
                    "study {uid}: {}",
                    if converted {
                        "converted"
                    } else {
                        "reused from the per-study cache"
                    }
                ));
                link_all(&item, &out)
            });
            summary.record(ctx, uid, result)?;
        }
        ctx.progress(studies.len() as u64, studies.len() as u64, "done");
        summary.write(ctx, "summary")?;
        if !summary.failed.is_empty() {
            let list: Vec<String> = summary
                .failed
                .iter()
                .map(|f| format!("{}: {}", f.study, f.error))
                .collect();
            if p.fail_on_any || summary.done.is_empty() {
                return Err(StageError::msg(format!(
                    "{} of {} studies failed to convert:\n{}",
                    summary.failed.len(),
                    studies.len(),
                    list.join("\n")
                )));
            }
            ctx.log(&format!(
                "warning: {} of {} studies failed to convert (see summary.json)",
                summary.failed.len(),
                studies.len()
            ));
        }
        Ok(())
    }
}
