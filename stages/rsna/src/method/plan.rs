//! `rsna.plan`: a profile plus the pipeline's overrides and the dataset fingerprint ->
//! plans.json and one `<section>.json` per model step (flow-rsna7's `plans`).

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_rsna7::plans::{
    builtin_text, plans_document, DatasetFingerprint, Plans, PREDICTING, PROFILES, SECTIONS,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::runtime::fail;

pub struct PlanStage;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    profile: String,
    overrides: Map<String, Value>,
}

impl Stage for PlanStage {
    fn kind(&self) -> &'static str {
        "rsna.plan"
    }
    fn version(&self) -> u32 {
        2
    }
    fn doc(&self) -> &'static str {
        "Turns a profile (the built-in tiny, demo or full of pipelines/profiles/, or the YAML \
         file given as the `file` input) and `overrides` (a nested map of entries, e.g. \
         {overall: {lr: 0.001}}) into the plans: one <section>.json per model step \
         (stage1_lowres, stage1_fullres, roi, fracture_round0..3, overall), which the model \
         nodes take as their `plan` input, one inference_<model>.json per predicting model \
         (window step and mirroring, the predict nodes' `inference` input), and plans.json with every section, the training \
         data's fingerprint (median spacing, size, field of view) and warnings where the plans \
         and the data disagree. An override of an entry that does not exist is an error."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional(
                "profile",
                ParamType::String,
                json!("demo"),
                "built-in profile: tiny, demo or full (ignored with a `file` input)",
            )
            .optional(
                "overrides",
                ParamType::Map,
                json!({}),
                "plan entries to override, nested by section ({overall: {lr: 0.001}})",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "file",
                many: false,
                required: false,
                doc: "a profile YAML (pipelines/profiles/*.yaml as a template) instead of the built-in `profile`",
            },
            InputDecl {
                name: "volumes",
                many: false,
                required: false,
                doc: "converted training volumes (dicom.to_nifti): their JSON reports give the fingerprint",
            },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        let mut out = vec![OutputDecl::file("plans", "plans.json")];
        for s in SECTIONS {
            out.push(OutputDecl::file(s, &format!("{s}.json")));
        }
        for m in PREDICTING {
            let name = format!("inference_{m}");
            out.push(OutputDecl::file(&name, &format!("{name}.json")));
        }
        Ok(out)
    }
    fn check(&self, params: &Params, inputs: &[&str]) -> Result<(), String> {
        let profile = params
            .get("profile")
            .and_then(|v| v.as_str())
            .unwrap_or("demo");
        if inputs.contains(&"file") {
            return Ok(());
        }
        let overrides = params
            .get("overrides")
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default();
        let text = builtin_text(profile).map_err(|e| e.to_string())?;
        Plans::from_yaml(text, &format!("profile `{profile}`"), &overrides)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    /// The built-in profile's numbers, so that a binary with other defaults re-plans and
    /// `flow explain` names the entry that moved.
    fn settings(&self, params: &Params) -> Option<Value> {
        let profile = params.get("profile")?.as_str()?;
        PROFILES.contains(&profile).then_some(())?;
        let plans = Plans::builtin(profile).ok()?;
        Some(json!({ "builtin": serde_json::to_value(plans).ok()? }))
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let (text, origin) = match ctx.input_opt("file") {
            Some(f) => (
                std::fs::read_to_string(f)
                    .map_err(|e| StageError::wrap(format!("cannot read {}", f.display()), e))?,
                f.display().to_string(),
            ),
            None => (
                builtin_text(&p.profile)
                    .map_err(fail("profile"))?
                    .to_string(),
                format!("built-in profile `{}`", p.profile),
            ),
        };
        let plans = Plans::from_yaml(&text, &origin, &p.overrides).map_err(fail("plans"))?;
        let fingerprint = match ctx.input_opt("volumes") {
            Some(dir) => Some(DatasetFingerprint::from_volumes(dir).map_err(fail("fingerprint"))?),
            None => None,
        };
        let doc = plans_document(&p.profile, &plans, fingerprint.as_ref(), &p.overrides)
            .map_err(fail("plans"))?;
        for w in doc["warnings"].as_array().into_iter().flatten() {
            ctx.log(&format!("warning: {}", w.as_str().unwrap_or_default()));
        }
        let write = |name: &str, v: &Value| -> Result<(), StageError> {
            let path = ctx.output(name)?;
            std::fs::write(
                path,
                serde_json::to_string_pretty(v).expect("JSON serialises") + "\n",
            )
            .map_err(|e| StageError::wrap(format!("cannot write {}", path.display()), e))
        };
        write("plans", &doc)?;
        for s in SECTIONS {
            write(s, &doc["sections"][s])?;
        }
        for m in PREDICTING {
            write(&format!("inference_{m}"), &doc["sections"]["inference"][m])?;
        }
        if let Some(f) = &fingerprint {
            ctx.log(&format!(
                "{origin}: {} training studies, median spacing {:?} mm, median size {:?}",
                f.studies, f.median_spacing_xyz, f.median_shape_xyz
            ));
        }
        if !p.overrides.is_empty() {
            ctx.log(&format!(
                "overrides: {}",
                serde_json::to_string(&p.overrides).expect("JSON serialises")
            ));
        }
        Ok(())
    }
}
