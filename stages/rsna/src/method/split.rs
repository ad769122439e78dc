//! `rsna.split`: the seeded k-fold split of the training studies plus the round-2 hold-out.

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_rsna7::Split;
use flow_scoring::LabelTable;
use serde::Deserialize;
use serde_json::json;

use super::runtime::{fail, studies_in};

pub struct SplitStudies;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    folds: usize,
    holdout: f64,
    seed: u64,
}

impl Stage for SplitStudies {
    fn kind(&self) -> &'static str {
        "rsna.split"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Deals the converted training studies that train.csv labels into `folds` folds (stratified \
         by patient_overall, order from a hash of seed and UID) and picks a stratified hold-out \
         for round 2. Writes split.json."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional(
                "folds",
                ParamType::Int,
                json!(5),
                "number of folds (round 3 trains one model per fold)",
            )
            .optional(
                "holdout",
                ParamType::Float,
                json!(0.2),
                "fraction of studies kept out of round-2 training",
            )
            .optional("seed", ParamType::Int, json!(2022), "split seed")
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "root",
                many: false,
                required: true,
                doc: "competition root (train.csv)",
            },
            InputDecl {
                name: "volumes",
                many: false,
                required: true,
                doc: "converted training volumes",
            },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::file("split", "split.json")])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let csv = ctx.input("root")?.join("train.csv");
        let labels = LabelTable::read(&csv)
            .map_err(|e| StageError::wrap(format!("cannot read {}", csv.display()), e))?;
        let converted = studies_in(ctx.input("volumes")?, "")?;
        let uids: Vec<String> = converted
            .keys()
            .filter(|u| labels.get(u).is_some())
            .cloned()
            .collect();
        let unlabelled = converted.len() - uids.len();
        if unlabelled > 0 {
            ctx.log(&format!("warning: {unlabelled} converted studies have no row in train.csv and are left out of the split"));
        }
        let positive = |u: &str| labels.get(u).is_some_and(|t| t[0] == 1);
        let split = Split::make(&uids, &positive, p.folds, p.holdout, p.seed)
            .map_err(fail("cannot split the studies"))?;
        ctx.log(&format!(
            "{} studies in {} folds of {:?}, hold-out {}",
            uids.len(),
            p.folds,
            split.folds.iter().map(Vec::len).collect::<Vec<_>>(),
            split.holdout.len()
        ));
        split
            .write(ctx.output("split")?)
            .map_err(fail("cannot write split.json"))
    }
}
