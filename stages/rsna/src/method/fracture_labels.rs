//! `rsna.fracture_labels`: the training labels of a fracture round, on the ROI grid. Round 1
//! uses the boxes ("box and bone"); rounds 2 and 3 use the previous round's probabilities
//! (pseudo labels: threshold, a cap per vertebra, fractured-vertebra filter from train.csv,
//! consistency check). Negative studies get a fracture-free label in every round, and a round
//! whose pseudo labels come out empty falls back to the previous round's labels.

use std::collections::BTreeMap;

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::write_nifti;
use flow_rsna7::{box_and_bone, lucent_voxels, pseudo_label, PseudoConfig, PseudoOutcome, Split};
use flow_scoring::LabelTable;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::runtime::{fail, read_ct, read_labels, read_probs, studies_in};

pub struct FractureLabels;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    source: String,
    threshold: f64,
    max_fraction: f64,
    negatives: bool,
    exclude_holdout: bool,
    lucent_hu: f64,
}

/// `summary.json`: what happened to each study.
#[derive(Default, Serialize)]
struct LabelSummary {
    /// Studies with a fracture label (positive studies).
    labelled: usize,
    /// Negative studies given a fracture-free label.
    negatives: usize,
    /// Set when this round labelled no positive study and took the previous round's labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<String>,
    outcomes: BTreeMap<String, Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Value {
    Pseudo(PseudoOutcome),
    Note(String),
}

/// A study whose inputs cannot be read or used: noted in the summary and the log, skipped; one
/// bad study never fails the round.
fn not_used(ctx: &StageContext, summary: &mut LabelSummary, uid: &str, e: StageError) {
    let why = format!("not used: {}", e.chain());
    ctx.log(&format!("warning: study {uid} {why}"));
    summary.outcomes.insert(uid.to_string(), Value::Note(why));
}

impl Stage for FractureLabels {
    fn kind(&self) -> &'static str {
        "rsna.fracture_labels"
    }
    fn version(&self) -> u32 {
        4
    }
    fn doc(&self) -> &'static str {
        "Training labels of a fracture round on the ROI grid (labels/<UID>.nii.gz). source=boxes: \
         box mask AND C1-C7 dilated by one voxel, for studies with boxes (round 1). \
         source=pseudo: previous round's probability >= threshold within the dilated vertebrae \
         train.csv marks fractured, at most max_fraction of each vertebra (the most probable \
         voxels); in a study with boxes, only inside its boxes (the box-and-bone voxels when \
         none there reaches the threshold); a study where a fractured vertebra gets no voxel \
         is dropped (rounds 2, 3). With lucent_hu > 0, a vertebra's probable voxels are cut \
         down to those at least lucent_hu HU darker than their 3x3x3 grey closing of the ROI CT \
         (the lucent gap of a fracture line), unless none of them is. \
         With negatives: true, studies train.csv marks fracture-free get an empty label (fracture-free \
         patches). When no positive study is labelled and `previous` is given, the previous \
         round's labels are used and summary.json says so. summary.json lists every study's outcome."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .required(
                "source",
                ParamType::String,
                "boxes (round 1) or pseudo (rounds 2 and 3)",
            )
            .optional(
                "threshold",
                ParamType::Float,
                json!(0.2),
                "pseudo labels: probability threshold",
            )
            .optional(
                "max_fraction",
                ParamType::Float,
                json!(0.1),
                "pseudo labels: at most this fraction of a fractured vertebra is labelled",
            )
            .optional(
                "lucent_hu",
                ParamType::Float,
                json!(0.0),
                "pseudo labels: keep only voxels this many HU darker than their 3x3x3 closing (0: off)",
            )
            .optional(
                "negatives",
                ParamType::Bool,
                json!(true),
                "give negative studies (train.csv) a fracture-free label",
            )
            .optional(
                "exclude_holdout",
                ParamType::Bool,
                json!(false),
                "leave the split's hold-out studies unlabelled (round 2)",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "rois",
                many: false,
                required: true,
                doc: "rsna.roi output (ROI CT, vertebrae, boxes)",
            },
            InputDecl {
                name: "probs",
                many: false,
                required: false,
                doc: "pseudo: previous round's rsna.fracture_predict probabilities",
            },
            InputDecl {
                name: "root",
                many: false,
                required: false,
                doc: "competition root (train.csv): pseudo labels and negatives",
            },
            InputDecl {
                name: "split",
                many: false,
                required: false,
                doc: "split.json (for exclude_holdout)",
            },
            InputDecl {
                name: "previous",
                many: false,
                required: false,
                doc: "the previous round's labels, used when this round labels no positive study",
            },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![
            OutputDecl::dir("labels"),
            OutputDecl::file("summary", "summary.json"),
        ])
    }
    fn check(&self, params: &Params, inputs: &[&str]) -> Result<(), String> {
        match params.get("source").and_then(|v| v.as_str()) {
            Some("boxes") => Ok(()),
            Some("pseudo") if inputs.contains(&"probs") && inputs.contains(&"root") => Ok(()),
            Some("pseudo") => Err(
                "source: pseudo needs the inputs `probs` (previous round) and `root` (train.csv)"
                    .into(),
            ),
            other => Err(format!(
                "source: expected `boxes` or `pseudo`, got {other:?}"
            )),
        }?;
        if params.get("exclude_holdout").and_then(|v| v.as_bool()) == Some(true)
            && !inputs.contains(&"split")
        {
            return Err("exclude_holdout: needs the input `split`".into());
        }
        if params.get("negatives").and_then(|v| v.as_bool()) != Some(false)
            && !inputs.contains(&"root")
        {
            return Err(
                "negatives: needs the input `root` (train.csv), or set negatives: false".into(),
            );
        }
        match params.get("lucent_hu").and_then(|v| v.as_f64()) {
            Some(h) if h.is_finite() && h >= 0.0 => {}
            other => {
                return Err(format!(
                "lucent_hu: expected a number of HU >= 0 (0 turns the filter off), got {other:?}"
            ))
            }
        }
        match params.get("max_fraction").and_then(|v| v.as_f64()) {
            Some(f) if f > 0.0 && f <= 1.0 => Ok(()),
            other => Err(format!(
                "max_fraction: expected a fraction in (0, 1], got {other:?}"
            )),
        }
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let rois = ctx.input("rois")?.to_path_buf();
        let vertebrae = studies_in(&rois, ".vertebrae")?;
        let holdout: Vec<String> = match (p.exclude_holdout, ctx.input_opt("split")) {
            (true, Some(s)) => {
                Split::read(s)
                    .map_err(fail("cannot read the split"))?
                    .holdout
            }
            _ => Vec::new(),
        };
        let out = ctx.output("labels")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create labels/", e))?;
        let mut summary = LabelSummary::default();
        let write = |uid: &str, v: &flow_imaging::Volume<u8>| {
            write_nifti(v, &out.join(format!("{uid}.nii.gz")))
                .map_err(|e| StageError::wrap(format!("study {uid}: cannot write the label"), e))
        };
        let table =
            match ctx.input_opt("root") {
                Some(root) => {
                    let csv = root.join("train.csv");
                    Some(LabelTable::read(&csv).map_err(|e| {
                        StageError::wrap(format!("cannot read {}", csv.display()), e)
                    })?)
                }
                None => None,
            };
        if p.source == "boxes" {
            for (uid, boxes) in studies_in(&rois, ".boxes")? {
                let made = (|| -> Result<(flow_imaging::Volume<u8>, usize, &str), StageError> {
                    let vert =
                        read_labels(vertebrae.get(&uid).ok_or_else(|| {
                            StageError::msg("boxes but no vertebra map in rois/")
                        })?)?;
                    let boxes = read_labels(&boxes)?;
                    let label = box_and_bone(&boxes, &vert).map_err(fail("box and bone"))?;
                    let n = label.data().iter().filter(|&&v| v != 0).count();
                    if n > 0 {
                        return Ok((label, n, "box and bone"));
                    }
                    // Stage 1 missed the vertebra under the box: the box alone is the label.
                    let label = boxes.map(|b| u8::from(b != 0));
                    let n = label.data().iter().filter(|&&v| v != 0).count();
                    Ok((
                        label,
                        n,
                        "box only: no box voxel touches the predicted vertebrae",
                    ))
                })();
                match made {
                    Ok((_, 0, _)) => {
                        summary.outcomes.insert(
                            uid,
                            Value::Note("the box mask is empty in the region: not used".into()),
                        );
                    }
                    Ok((label, n, how)) => {
                        write(&uid, &label)?;
                        summary.labelled += 1;
                        summary
                            .outcomes
                            .insert(uid, Value::Note(format!("{n} voxels ({how})")));
                    }
                    Err(e) => not_used(ctx, &mut summary, &uid, e),
                }
            }
        } else {
            let table = table.as_ref().ok_or_else(|| {
                StageError::msg("source: pseudo needs the input `root` (train.csv)")
            })?;
            let boxed = studies_in(&rois, ".boxes")?;
            let cfg = PseudoConfig {
                threshold: p.threshold as f32,
                max_fraction: p.max_fraction,
            };
            for (uid, prob_path) in &studies_in(ctx.input("probs")?, "")? {
                let Some(targets) = table.get(uid) else {
                    summary.outcomes.insert(
                        uid.clone(),
                        Value::Note("no row in train.csv: not labelled".into()),
                    );
                    continue;
                };
                if holdout.contains(uid) {
                    summary.outcomes.insert(
                        uid.clone(),
                        Value::Note("hold-out study: not labelled".into()),
                    );
                    continue;
                }
                let fractured: [bool; 7] = std::array::from_fn(|i| targets[i + 1] == 1);
                if !fractured.contains(&true) {
                    continue; // a negative study: handled below
                }
                let made = (|| {
                    let vert = read_labels(
                        vertebrae
                            .get(uid)
                            .ok_or_else(|| StageError::msg("no vertebra map in rois/"))?,
                    )?;
                    let boxes = match boxed.get(uid) {
                        Some(path) => Some(read_labels(path)?),
                        None => None,
                    };
                    let lucent = if p.lucent_hu > 0.0 {
                        let ct = read_ct(&rois.join(format!("{uid}.ct.nii.gz")))?;
                        Some(lucent_voxels(&ct, p.lucent_hu as f32))
                    } else {
                        None
                    };
                    pseudo_label(
                        &read_probs(prob_path)?,
                        &vert,
                        fractured,
                        boxes.as_ref(),
                        lucent.as_ref(),
                        cfg,
                    )
                    .map_err(fail("pseudo label"))
                })();
                match made {
                    Ok((label, outcome)) => {
                        if let Some(label) = label {
                            write(uid, &label)?;
                            summary.labelled += 1;
                        }
                        summary.outcomes.insert(uid.clone(), Value::Pseudo(outcome));
                    }
                    Err(e) => not_used(ctx, &mut summary, uid, e),
                }
            }
        }
        if summary.labelled == 0 {
            if let Some(previous) = ctx.input_opt("previous") {
                let mut taken = 0;
                for (uid, path) in studies_in(previous, "")? {
                    let negative = table
                        .as_ref()
                        .and_then(|t| t.get(&uid))
                        .is_some_and(|t| t[1..].iter().all(|&v| v == 0));
                    if negative || holdout.contains(&uid) {
                        continue;
                    }
                    std::fs::copy(&path, out.join(format!("{uid}.nii.gz"))).map_err(|e| {
                        StageError::wrap(
                            format!("study {uid}: cannot copy the previous round's label"),
                            e,
                        )
                    })?;
                    summary
                        .outcomes
                        .insert(uid, Value::Note("previous round's label (fallback)".into()));
                    taken += 1;
                }
                let warning = format!("warning: this round labelled no positive study; it trains on the previous round's labels of {taken} studies instead");
                ctx.log(&warning);
                summary.fallback = Some(warning);
                summary.labelled = taken;
            }
        }
        if p.negatives {
            let table = table
                .as_ref()
                .ok_or_else(|| StageError::msg("negatives: needs the input `root` (train.csv)"))?;
            for (uid, vert_path) in &vertebrae {
                let negative = table.get(uid).is_some_and(|t| t.iter().all(|&v| v == 0));
                if !negative || holdout.contains(uid) {
                    continue;
                }
                match read_labels(vert_path) {
                    Ok(vert) => {
                        write(uid, &vert.map(|_| 0u8))?;
                        summary.negatives += 1;
                        summary
                            .outcomes
                            .insert(uid.clone(), Value::Pseudo(PseudoOutcome::Negative));
                    }
                    Err(e) => not_used(ctx, &mut summary, uid, e),
                }
            }
        }
        ctx.log(&format!(
            "{} studies labelled, {} negative studies fracture-free ({} considered)",
            summary.labelled,
            summary.negatives,
            summary.outcomes.len()
        ));
        let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
        std::fs::write(ctx.output("summary")?, text + "\n")
            .map_err(|e| StageError::wrap("cannot write summary.json", e))?;
        if summary.labelled == 0 {
            return Err(StageError::msg("no study got a fracture label, so the round has nothing to train on (see summary.json)"));
        }
        Ok(())
    }
}
