//! `rsna.segmentations`: the competition's vertebra segmentations in the CT's voxel grid.
//!
//! Fixes the orientation quirk (voxel (i, j, k) = DICOM column i, row Rows-1-j, k-th slice in
//! ascending z), re-attaches the converted CT's geometry, then cleans once: the main body of
//! the foreground with disc gaps bridged (dilation by `bridge_mm`), then each label's largest
//! component. Labels that lose much in the clean-up are noted in summary.json.

use std::path::Path;

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::competition::{read_competition_segmentation, vertebra_name};
use flow_imaging::ops::{clean_label_map_with_report, CleanupConfig, CleanupReport, Connectivity};
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
    bridge_mm: f64,
}

/// A label losing more than this fraction of its voxels in the clean-up gets a note.
pub const WARN_REMOVED_FRACTION: f64 = 0.05;

fn one(
    seg: &Path,
    ct: &Path,
    out: &Path,
    cfg: &CleanupConfig,
) -> Result<CleanupReport, StageError> {
    let ct = read_nifti(ct).map_err(|e| StageError::wrap("cannot read the converted CT", e))?;
    let labels = read_competition_segmentation(seg, ct.geometry(), ct.dims())
        .map_err(|e| StageError::wrap("cannot read the segmentation", e))?;
    let (clean, report) = clean_label_map_with_report(&labels, cfg);
    write_nifti(&clean, out).map_err(|e| StageError::wrap("cannot write labels", e))?;
    Ok(report)
}

/// The clean-up warnings of one study (or public case), each prefixed with `who` (e.g.
/// "study 1.2.3") and naming vertebrae: "study 1.2.3: label 4 (C4) lost 12.0% of ...".
pub(crate) fn cleanup_notes(who: &str, report: &CleanupReport) -> Vec<String> {
    let name = |l: u8| match vertebra_name(l) {
        Some(v) => format!("label {l} ({v})"),
        None => format!("label {l}"),
    };
    report
        .warnings_named(WARN_REMOVED_FRACTION, name)
        .into_iter()
        .map(|w| format!("{who}: {w}"))
        .collect()
}

impl Stage for Segmentations {
    fn kind(&self) -> &'static str {
        "rsna.segmentations"
    }
    fn version(&self) -> u32 {
        2
    }
    fn doc(&self) -> &'static str {
        "Competition segmentations/<UID>.nii -> labels/<UID>.nii.gz (1..7 = C1..C7, 8.. = T1..) in \
         the converted CT's grid: orientation quirk fixed, then the main body of the foreground with \
         gaps up to 2 x `bridge_mm` (disc gaps) bridged, then each label's largest component. Labels \
         that lose over 5% of their voxels in the clean-up are noted in summary.json; studies whose \
         CT did not convert or whose segmentation cannot be read are listed there as failed."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional("connectivity", ParamType::Int, json!(26), "6 or 26 (connected components)")
            .optional("bridge_mm", ParamType::Float, json!(3.0), "dilation radius (mm, >= 0) joining the vertebrae before the main body is kept; 0: largest foreground component")
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "root",
                many: false,
                required: true,
                doc: "competition root (segmentations/)",
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
            OutputDecl::dir("labels"),
            OutputDecl::file("summary", "summary.json"),
        ])
    }
    fn check(&self, params: &Params, _: &[&str]) -> Result<(), String> {
        match params.get("connectivity").and_then(|v| v.as_u64()) {
            Some(6 | 26) => {}
            _ => return Err("param `connectivity` must be 6 or 26".into()),
        }
        match params.get("bridge_mm").and_then(|v| v.as_f64()) {
            Some(mm) if mm.is_finite() && mm >= 0.0 => Ok(()),
            _ => Err("param `bridge_mm` must be a number >= 0 (mm)".into()),
        }
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let connectivity = if p.connectivity == 6 {
            Connectivity::Six
        } else {
            Connectivity::TwentySix
        };
        let cfg = CleanupConfig {
            bridge_mm: p.bridge_mm,
            connectivity,
        };
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
        let pool = crate::study_set::pool(ctx)?;
        let mut summary = StudySummary::default();
        for (i, (uid, seg)) in segs.iter().enumerate() {
            ctx.check_cancel()?;
            ctx.progress(i as u64, segs.len() as u64, uid);
            let ct = volumes.join(format!("{uid}.nii.gz"));
            let r = if ct.is_file() {
                pool.install(|| one(seg, &ct, &out.join(format!("{uid}.nii.gz")), &cfg))
            } else {
                Err(StageError::msg(
                    "no converted CT for this study (see the conversion summary)",
                ))
            };
            match r {
                Ok(report) => {
                    for note in cleanup_notes(&format!("study {uid}"), &report) {
                        ctx.log(&note);
                        summary.notes.push(note);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use flow_imaging::ops::LabelCleanup;

    fn checked(given: serde_json::Value) -> Result<(), String> {
        let given = given.as_object().unwrap().clone();
        let params = Segmentations
            .params()
            .validate(&given)
            .map_err(|e| format!("{e:?}"))?;
        Segmentations.check(&params, &["root", "volumes"])
    }

    #[test]
    fn bridge_mm_defaults_to_3_and_must_be_non_negative() {
        let params = Segmentations
            .params()
            .validate(&serde_json::Map::new())
            .unwrap();
        assert_eq!(params["bridge_mm"], json!(3.0));
        assert!(checked(json!({})).is_ok());
        assert!(checked(json!({"bridge_mm": 0})).is_ok());
        assert!(checked(json!({"bridge_mm": 1.5, "connectivity": 6})).is_ok());
        assert_eq!(
            checked(json!({"bridge_mm": -1.0})).unwrap_err(),
            "param `bridge_mm` must be a number >= 0 (mm)"
        );
        assert!(checked(json!({"connectivity": 8}))
            .unwrap_err()
            .contains("connectivity"));
    }

    #[test]
    fn notes_name_the_study_and_the_vertebra() {
        let report = CleanupReport {
            labels: vec![
                LabelCleanup {
                    label: 1,
                    before: 1000,
                    after: 990,
                },
                LabelCleanup {
                    label: 4,
                    before: 2500,
                    after: 2200,
                },
                LabelCleanup {
                    label: 9,
                    before: 40,
                    after: 0,
                },
                LabelCleanup {
                    label: 30,
                    before: 100,
                    after: 50,
                },
            ],
        };
        assert_eq!(
            cleanup_notes("study 1.2.3", &report),
            [
                "study 1.2.3: label 4 (C4) lost 12.0% of its voxels (300 of 2500) in the clean-up",
                "study 1.2.3: label 9 (T2) was removed entirely in the clean-up (all 40 of its voxels)",
                "study 1.2.3: label 30 lost 50.0% of its voxels (50 of 100) in the clean-up",
            ]
        );
    }
}
