//! `rsna.overall_train`: one fold of the stage-3 `patient_overall` CNN, trained on the
//! out-of-fold fracture probabilities and stage-1 labels of the ROI.

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_rsna7::{overall_input, train_overall, Split};
use flow_scoring::LabelTable;
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::runtime::{
    candle_device, fail, pool, read_labels, read_probs, studies_in, TrainReporter,
};

pub struct OverallTrain;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    fold: i64,
    seed: u64,
}

impl Stage for OverallTrain {
    fn kind(&self) -> &'static str {
        "rsna.overall_train"
    }
    fn version(&self) -> u32 {
        3
    }
    fn doc(&self) -> &'static str {
        "Trains the stage-3 patient_overall classifier (2 channels: fracture probability and \
         stage-1 labels, the ROI resampled to a cube) with BCE on the labelled training studies, \
         leaving out the split's fold `fold` (-1: none). Input size, net and schedule come from the \
         `plan` input (rsna.plan's overall section). Output: model/ (overall.json, weights)."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional(
                "fold",
                ParamType::Int,
                json!(-1),
                "fold left out, -1 for none",
            )
            .optional(
                "seed",
                ParamType::Int,
                json!(2022),
                "initialisation and sampling seed",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "rois",
                many: false,
                required: true,
                doc: "rsna.roi output of the training studies",
            },
            InputDecl {
                name: "probs",
                many: false,
                required: true,
                doc: "out-of-fold fracture probabilities (round 3)",
            },
            InputDecl {
                name: "root",
                many: false,
                required: true,
                doc: "competition root (train.csv)",
            },
            InputDecl {
                name: "split",
                many: false,
                required: false,
                doc: "split.json (with fold >= 0)",
            },
            super::runtime::plan_input("the classifier's plan section: plans.overall (rsna.plan)"),
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::dir("model")])
    }
    fn check(&self, params: &Params, inputs: &[&str]) -> Result<(), String> {
        if params.get("fold").and_then(|v| v.as_i64()).unwrap_or(-1) >= 0
            && !inputs.contains(&"split")
        {
            return Err("fold: a fold needs the input `split`".into());
        }
        Ok(())
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let recipe = flow_rsna7::plans::read_overall_section(
            ctx.input("plan")?,
            p.seed.wrapping_add(7000 + p.fold.max(0) as u64),
        )
        .map_err(fail("the plan input"))?;
        let fold = (p.fold >= 0).then_some(p.fold as usize);
        let left_out = match fold {
            Some(k) => Split::read(ctx.input("split")?)
                .map_err(fail("cannot read the split"))?
                .folds
                .get(k)
                .cloned()
                .ok_or_else(|| StageError::msg(format!("fold {k} is not in the split")))?,
            None => Vec::new(),
        };
        let csv = ctx.input("root")?.join("train.csv");
        let table = LabelTable::read(&csv)
            .map_err(|e| StageError::wrap(format!("cannot read {}", csv.display()), e))?;
        let verts = studies_in(ctx.input("rois")?, ".vertebrae")?;
        let probs = studies_in(ctx.input("probs")?, "")?;
        let work: Vec<(String, f32)> = probs
            .keys()
            .filter(|u| !left_out.contains(u) && verts.contains_key(*u))
            .filter_map(|u| table.get(u).map(|t| (u.clone(), f32::from(t[0]))))
            .collect();
        let pool = pool(ctx)?;
        let studies = pool.install(|| {
            work.par_iter()
                .map(|(uid, y)| {
                    let x = overall_input(
                        &read_probs(&probs[uid])?,
                        &read_labels(&verts[uid])?,
                        recipe.size,
                    )
                    .map_err(fail(format!("study {uid}")))?;
                    Ok((uid.clone(), x, *y))
                })
                .collect::<Result<Vec<_>, StageError>>()
        })?;
        let positives = studies.iter().filter(|s| s.2 > 0.5).count();
        ctx.log(&format!(
            "patient_overall classifier: {} studies ({positives} positive)",
            studies.len()
        ));
        let device = candle_device(ctx)?;
        let out = ctx.output("model")?.to_path_buf();
        let what = fold.map_or("overall classifier".to_string(), |k| {
            format!("overall classifier fold {k}")
        });
        let mut reporter = TrainReporter::new(ctx, what);
        pool.install(|| {
            train_overall(
                &recipe,
                fold,
                &studies,
                &device,
                &ctx.checkpoint_dir,
                &out,
                &mut reporter,
            )
        })
        .map_err(fail("classifier training failed"))?;
        reporter.finish()?;
        Ok(())
    }
}
