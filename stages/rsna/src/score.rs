//! `rsna.score`: the competition metric and per-label AUC of a submission against labels.

use flow_engine::{InputDecl, OutputDecl, Params, ParamsSchema, Stage, StageContext, StageError};
use flow_scoring::score_files;

/// See [`Stage::doc`].
pub struct ScoreSubmission;

impl Stage for ScoreSubmission {
    fn kind(&self) -> &'static str {
        "rsna.score"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Scores a Kaggle-format submission against train.csv-style labels: the competition's \
         weighted log loss (per-study normalised), the prior-only baseline and per-label AUC -> metrics.json."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "labels",
                many: false,
                required: true,
                doc: "StudyInstanceUID,patient_overall,C1..C7 CSV",
            },
            InputDecl {
                name: "predictions",
                many: false,
                required: true,
                doc: "row_id,fractured submission CSV",
            },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::file("metrics", "metrics.json")])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let report = score_files(ctx.input("labels")?, ctx.input("predictions")?)
            .map_err(|e| StageError::wrap("cannot score the submission", e))?;
        ctx.log(&flow_scoring::render_table(&report));
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| StageError::wrap("cannot serialise the report", e))?;
        std::fs::write(ctx.output("metrics")?, text + "\n")
            .map_err(|e| StageError::wrap("cannot write metrics.json", e))
    }
}
