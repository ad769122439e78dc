//! `rsna.synthetic_cohort`: the built-in data set, generated in the competition layout.

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_synth::{generate_cohort, CohortConfig, Profile};
use serde::Deserialize;
use serde_json::json;

/// See [`Stage::doc`].
pub struct SyntheticCohort;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    profile: String,
    seed: u64,
    studies: Option<usize>,
    fracture_prevalence: Option<f64>,
}

/// The cohort configuration for the params (also used by `flow synth`).
/// `studies` is the total (train + test; one in eight becomes a test study).
pub fn cohort_config(
    profile: &str,
    seed: u64,
    studies: Option<usize>,
    prevalence: Option<f64>,
) -> Result<CohortConfig, String> {
    let profile = Profile::parse(profile).map_err(|e| e.to_string())?;
    let mut cfg = CohortConfig::for_profile(profile);
    if let Some(n) = studies {
        cfg = cfg.with_total_studies(n);
    }
    cfg.seed = seed;
    if let Some(p) = prevalence {
        cfg.fracture_prevalence = p;
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

impl Stage for SyntheticCohort {
    fn kind(&self) -> &'static str {
        "rsna.synthetic_cohort"
    }
    fn version(&self) -> u32 {
        // The generator's own version: same config, different files => new key.
        flow_synth::GENERATOR_VERSION
    }
    fn doc(&self) -> &'static str {
        "Generates a synthetic cervical-spine CT cohort in the RSNA 2022 competition layout \
         (train.csv, train_bounding_boxes.csv, train_images/, segmentations/, test.csv, \
         test_images/, sample_submission.csv) plus truth/ for evaluation only. Deterministic."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional(
                "profile",
                ParamType::String,
                json!("demo"),
                "tiny | demo | full",
            )
            .optional("seed", ParamType::Int, json!(2022), "master seed")
            .optional(
                "studies",
                ParamType::Any,
                json!(null),
                "total number of studies, one in eight for test (null: the profile's)",
            )
            .optional(
                "fracture_prevalence",
                ParamType::Any,
                json!(null),
                "probability a study is positive (null: competition's 961/2019)",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::dir("root")])
    }
    fn check(&self, params: &Params, _: &[&str]) -> Result<(), String> {
        let p: P = serde_json::from_value(serde_json::Value::Object(params.clone()))
            .map_err(|e| e.to_string())?;
        cohort_config(&p.profile, p.seed, p.studies, p.fracture_prevalence).map(|_| ())
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let cfg = cohort_config(&p.profile, p.seed, p.studies, p.fracture_prevalence)
            .map_err(StageError::msg)?;
        let out = ctx.output("root")?.to_path_buf();
        let pool = crate::study_set::pool(ctx)?;
        let summary = pool
            .install(|| {
                generate_cohort(&cfg, &out, &|done, total| {
                    ctx.progress(done as u64, total as u64, "studies")
                })
            })
            .map_err(|e| StageError::wrap("cannot generate the cohort", e))?;
        ctx.log(&format!("{summary:?}"));
        Ok(())
    }
}
