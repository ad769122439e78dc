//! `rsna.stage3`: the vertebra rows from a logistic model pooled over C1-C7 (or the method's
//! per-vertebra quantile scores), fitted on the out-of-fold fracture probabilities, the
//! `patient_overall` CNN's out-of-fold logits, a combiner fitted on them, and the test
//! predictions as submission.csv.

use std::collections::BTreeMap;
use std::path::Path;

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::ops::grow_labels_mm;
use flow_imaging::Volume;
use flow_rsna7::{overall_input, OverallModel, Split};
use flow_scoring::quantile::{DEFAULT_FLOOR, DEFAULT_MAX_POINTS};
use flow_scoring::{
    fit_overall_combiner, fit_quantile_params, fit_vertebra_scorer, summarise_study,
    CombinerConfig, CombinerInput, LabelTable, Predictions, QuantileFit, QuantileFitConfig,
    SampleOrder, VertebraFeatures, VertebraFit, VoxelSummary, N_LABELS,
};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::runtime::{candle_device, fail, pool, read_labels, read_probs, studies_in};

pub struct Stage3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct P {
    use_cnn: bool,
    l2: f64,
    vertebra_scorer: VertebraScorerKind,
    vertebra_margin_mm: f64,
    vertebra_top_k: u64,
    level_terms: bool,
}

/// How the vertebra rows are scored.
#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum VertebraScorerKind {
    /// One logistic model pooled over C1-C7 with level terms (flow_scoring::vertebra_model).
    Pooled,
    /// The method's per-target quantile scores (alpha, beta, min, max).
    Quantile,
}

/// The fitted vertebra scorer of either kind.
enum FittedVertebra {
    Pooled(VertebraFit),
    Quantile(QuantileFit),
}

impl FittedVertebra {
    /// C1..C7 scores of one study.
    fn score(&self, s: &StudyScores) -> Result<[f64; 7], StageError> {
        match self {
            FittedVertebra::Pooled(f) => Ok(f.scorer.score_study(&s.summaries)),
            FittedVertebra::Quantile(f) => f
                .params
                .score_study(&s.summaries)
                .map(|q| std::array::from_fn(|j| q[j + 1]))
                .map_err(|e| StageError::wrap(format!("study {}", s.uid), e)),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            FittedVertebra::Pooled(f) => json!({"pooled": f}),
            FittedVertebra::Quantile(f) => json!({"quantile": f}),
        }
    }
}

/// One study's stage-3 inputs.
struct StudyScores {
    uid: String,
    summaries: [VoxelSummary; N_LABELS],
    cnn_logit: Option<f64>,
}

fn scores_of(
    ctx: &StageContext,
    rois: &Path,
    probs: &Path,
    models: &[OverallModel],
    split: Option<&Split>,
    use_cnn: bool,
    margin_mm: f64,
) -> Result<Vec<StudyScores>, StageError> {
    let verts = studies_in(rois, ".vertebrae")?;
    let probs = studies_in(probs, "")?;
    let device = candle_device(ctx)?;
    let work: Vec<(&String, &std::path::PathBuf)> = probs
        .iter()
        .filter(|(u, _)| verts.contains_key(*u))
        .collect();
    pool(ctx)?.install(|| {
        work.par_iter()
            .map(|(uid, prob_path)| {
                let prob = read_probs(prob_path)?;
                let vert = read_labels(&verts[*uid])?;
                let summaries = vertebra_summaries(&prob, &vert, margin_mm)
                    .map_err(|e| StageError::wrap(format!("study {uid}"), e))?;
                let cnn_logit = if use_cnn {
                    // Out-of-fold: the model that left this study's fold out; otherwise all.
                    let fold = split.and_then(|s| s.fold_of(uid));
                    let chosen: Vec<&OverallModel> = models
                        .iter()
                        .filter(|m| fold.is_none() || m.meta.fold == fold)
                        .collect();
                    if chosen.is_empty() {
                        return Err(StageError::msg(format!(
                            "study {uid}: no patient_overall model left fold {fold:?} out"
                        )));
                    }
                    let x = overall_input(&prob, &vert, chosen[0].meta.recipe.size)
                        .map_err(fail(format!("study {uid}")))?;
                    let mut sum = 0.0;
                    for m in &chosen {
                        sum += m.logit(&x, &device).map_err(fail(format!("study {uid}")))?;
                    }
                    Some(sum / chosen.len() as f64)
                } else {
                    None
                };
                Ok(StudyScores {
                    uid: (*uid).clone(),
                    summaries,
                    cnn_logit,
                })
            })
            .collect()
    })
}

/// The voxel summaries (`[overall, C1..C7]`) of one study's fracture map. A crack's voxels often
/// fall just outside the stage-1 labels (the gap of a displaced crack is not bone; a thin lamina
/// or spinous process loses its edges on stage 1's grid), so each vertebra reads the map within
/// `margin_mm` of its label, the nearest label taking a voxel between two.
fn vertebra_summaries(
    prob: &Volume<f32>,
    vert: &Volume<u8>,
    margin_mm: f64,
) -> Result<[VoxelSummary; N_LABELS], flow_scoring::ScoringError> {
    let grown = grow_labels_mm(vert, margin_mm);
    summarise_study(prob.data(), grown.data(), DEFAULT_FLOOR, DEFAULT_MAX_POINTS)
}

/// Feature names and, per study, their values.
type Features = (Vec<String>, BTreeMap<String, Vec<f64>>);

/// Extra per-study features from a CSV `StudyInstanceUID,<name>,...` (a user node's output).
fn read_features(path: &Path) -> Result<Features, StageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StageError::wrap(format!("cannot read {}", path.display()), e))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| StageError::msg(format!("{}: empty feature file", path.display())))?;
    let cols: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
    if cols.first().map(String::as_str) != Some("StudyInstanceUID") || cols.len() < 2 {
        return Err(StageError::msg(format!(
            "{}:1: the header must be `StudyInstanceUID,<feature>,...`, got `{header}`",
            path.display()
        )));
    }
    let mut rows = BTreeMap::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != cols.len() {
            return Err(StageError::msg(format!(
                "{}:{}: {} cells, the header has {}",
                path.display(),
                i + 1,
                cells.len(),
                cols.len()
            )));
        }
        let values = cells[1..]
            .iter()
            .zip(&cols[1..])
            .map(|(c, name)| {
                c.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        StageError::msg(format!(
                            "{}:{}: `{name}` = `{c}` is not a finite number",
                            path.display(),
                            i + 1
                        ))
                    })
            })
            .collect::<Result<Vec<f64>, _>>()?;
        rows.insert(cells[0].to_string(), values);
    }
    Ok((cols[1..].to_vec(), rows))
}

impl Stage for Stage3 {
    fn kind(&self) -> &'static str {
        "rsna.stage3"
    }
    fn version(&self) -> u32 {
        6
    }
    fn doc(&self) -> &'static str {
        "Stage 3: fits the vertebra scorer on the training studies' out-of-fold probabilities \
         (vertebra_scorer=pooled: one logistic model over C1-C7 of the log-odds of the map's \
         vertebra_top_k-th highest value in the vertebra and within vertebra_margin_mm of it, with \
         level terms unless level_terms=false, and the metric's weights; \
         quantile: the method's per-target alpha, beta, min, max minimising the metric), adds \
         the patient_overall CNN's out-of-fold logits (and any extra feature CSV), fits the overall \
         combiner on them, and predicts the test studies (with test_probs_per_model: each fold \
         model's own map scored, the scores averaged): submission.csv (Kaggle format, in \
         sample_submission.csv order when the root has one), oof.csv (training studies, out of \
         fold) and fit.json (parameters and in-sample diagnostics)."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional(
                "use_cnn",
                ParamType::Bool,
                json!(true),
                "use the CNN logit in the overall combiner",
            )
            .optional(
                "l2",
                ParamType::Float,
                json!(1e-2),
                "ridge strength of the combiner and of the pooled vertebra model",
            )
            .optional(
                "vertebra_scorer",
                ParamType::String,
                json!("pooled"),
                "pooled (one logistic model over C1-C7) or quantile (the method's per-target quantile scores)",
            )
            .optional(
                "vertebra_top_k",
                ParamType::Int,
                json!(10),
                "pooled scorer: the log-odds of the vertebra's k-th highest probability is its map feature",
            )
            .optional(
                "level_terms",
                ParamType::Bool,
                json!(true),
                "pooled scorer: one intercept per level C2-C7",
            )
            .optional(
                "vertebra_margin_mm",
                ParamType::Float,
                json!(2.5),
                "a vertebra's summary reads the map within this distance of its stage-1 label (the nearest label wins): cracks lie partly outside the labels; 0 reads the labels as they are",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "root",
                many: false,
                required: true,
                doc: "competition root (train.csv, sample_submission.csv)",
            },
            InputDecl {
                name: "split",
                many: false,
                required: true,
                doc: "split.json",
            },
            InputDecl {
                name: "train_rois",
                many: false,
                required: true,
                doc: "rsna.roi of the training studies",
            },
            InputDecl {
                name: "train_probs",
                many: false,
                required: true,
                doc: "out-of-fold round-3 probabilities of the training studies",
            },
            InputDecl {
                name: "test_rois",
                many: false,
                required: true,
                doc: "rsna.roi of the test studies",
            },
            InputDecl {
                name: "test_probs",
                many: false,
                required: true,
                doc: "round-3 ensemble probabilities of the test studies",
            },
            InputDecl {
                name: "test_probs_per_model",
                many: true,
                required: false,
                doc: "round-3 probabilities of the test studies from each fold model alone (rsna.fracture_predict with one model each): each map is scored as the out-of-fold maps the scorer was fitted on are, and the test rows are the mean of those scores; without it the ensemble map (test_probs) is scored",
            },
            InputDecl {
                name: "overall",
                many: true,
                required: false,
                doc: "rsna.overall_train models, one per fold",
            },
            InputDecl {
                name: "features",
                many: true,
                required: false,
                doc: "extra per-study feature CSVs (StudyInstanceUID,<name>,...) for the combiner",
            },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![
            OutputDecl::file("submission", "submission.csv"),
            OutputDecl::file("oof", "oof.csv"),
            OutputDecl::file("fit", "fit.json"),
        ])
    }
    fn check(&self, params: &Params, inputs: &[&str]) -> Result<(), String> {
        if params.get("use_cnn").and_then(|v| v.as_bool()) != Some(false)
            && !inputs.contains(&"overall")
        {
            return Err("use_cnn: needs the input `overall` (rsna.overall_train models), or set use_cnn: false".into());
        }
        if params.get("vertebra_top_k").and_then(|v| v.as_u64()) == Some(0) {
            return Err("vertebra_top_k: expected 1 or more (1 is the maximum)".into());
        }
        if let Some(m) = params.get("vertebra_margin_mm").and_then(|v| v.as_f64()) {
            if !(0.0..=20.0).contains(&m) {
                return Err(format!(
                    "vertebra_margin_mm: expected 0 to 20 (millimetres), got {m}"
                ));
            }
        }
        match params.get("vertebra_scorer").and_then(|v| v.as_str()) {
            None | Some("pooled" | "quantile") => Ok(()),
            Some(other) => Err(format!(
                "vertebra_scorer: expected `pooled` or `quantile`, got `{other}`"
            )),
        }
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: P = ctx.params_as()?;
        let root = ctx.input("root")?.to_path_buf();
        let table = LabelTable::read(&root.join("train.csv"))
            .map_err(|e| StageError::wrap("cannot read train.csv", e))?;
        let split = Split::read(ctx.input("split")?).map_err(fail("cannot read the split"))?;
        let device = candle_device(ctx)?;
        let models = ctx
            .inputs_of("overall")
            .iter()
            .map(|d| OverallModel::load(d, &device))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail("cannot load a patient_overall model"))?;
        let mut extra_names = Vec::new();
        let mut extra: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for f in ctx.inputs_of("features") {
            let (names, rows) = read_features(f)?;
            for (uid, values) in rows {
                extra.entry(uid).or_default().extend(values);
            }
            extra_names.extend(names);
        }
        ctx.progress(0, 3, "scoring training studies");
        let train = scores_of(
            ctx,
            ctx.input("train_rois")?,
            ctx.input("train_probs")?,
            &models,
            Some(&split),
            p.use_cnn,
            p.vertebra_margin_mm,
        )?;
        let train: Vec<StudyScores> = train
            .into_iter()
            .filter(|s| table.get(&s.uid).is_some())
            .collect();
        if train.is_empty() {
            return Err(StageError::msg(
                "no training study has both out-of-fold probabilities and a train.csv row",
            ));
        }
        ctx.progress(1, 3, "scoring test studies");
        let test = scores_of(
            ctx,
            ctx.input("test_rois")?,
            ctx.input("test_probs")?,
            &models,
            None,
            p.use_cnn,
            p.vertebra_margin_mm,
        )?;
        let targets: Vec<[u8; N_LABELS]> = train
            .iter()
            .map(|s| *table.get(&s.uid).expect("filtered above"))
            .collect();
        let summaries: Vec<[VoxelSummary; N_LABELS]> =
            train.iter().map(|s| s.summaries.clone()).collect();
        ctx.progress(2, 3, "fitting");
        let vfit = match p.vertebra_scorer {
            VertebraScorerKind::Pooled => FittedVertebra::Pooled(
                fit_vertebra_scorer(
                    &summaries,
                    &targets,
                    VertebraFeatures {
                        top_k: p.vertebra_top_k,
                        level_terms: p.level_terms,
                    },
                    p.l2,
                )
                .map_err(|e| StageError::wrap("vertebra model fit failed", e))?,
            ),
            VertebraScorerKind::Quantile => FittedVertebra::Quantile(
                fit_quantile_params(&summaries, &targets, &QuantileFitConfig::default())
                    .map_err(|e| StageError::wrap("quantile fit failed", e))?,
            ),
        };
        let combiner_input = |s: &StudyScores| -> Result<CombinerInput, StageError> {
            let vertebra_scores = vfit.score(s)?;
            let features = if extra_names.is_empty() {
                Vec::new()
            } else {
                extra.get(&s.uid).cloned().ok_or_else(|| {
                    StageError::msg(format!("study {}: missing from the feature CSV(s)", s.uid))
                })?
            };
            if features.len() != extra_names.len() {
                return Err(StageError::msg(format!(
                    "study {}: {} feature values, expected {}",
                    s.uid,
                    features.len(),
                    extra_names.len()
                )));
            }
            Ok(CombinerInput {
                cnn_logit: s.cnn_logit,
                vertebra_scores,
                extra: features,
            })
        };
        let train_inputs = train
            .iter()
            .map(combiner_input)
            .collect::<Result<Vec<_>, _>>()?;
        let cfg = CombinerConfig {
            use_cnn: p.use_cnn,
            extra_names: extra_names.clone(),
            l2: p.l2,
        };
        let cfit = fit_overall_combiner(&train_inputs, &targets, &cfg)
            .map_err(|e| StageError::wrap("combiner fit failed", e))?;
        let predict = |studies: &[StudyScores],
                       inputs: &[CombinerInput]|
         -> Result<Predictions, StageError> {
            let mut probs = Vec::new();
            for (s, input) in studies.iter().zip(inputs) {
                let overall = cfit
                    .combiner
                    .predict(input)
                    .map_err(|e| StageError::wrap(format!("study {}", s.uid), e))?;
                let row: [f64; N_LABELS] = std::array::from_fn(|j| {
                    if j == 0 {
                        overall
                    } else {
                        input.vertebra_scores[j - 1]
                    }
                });
                probs.push(row);
            }
            Predictions::new(studies.iter().map(|s| s.uid.clone()).collect(), probs)
                .map_err(|e| StageError::wrap("predictions", e))
        };
        let oof = predict(&train, &train_inputs)?;
        oof.write(ctx.output("oof")?, None)
            .map_err(|e| StageError::wrap("cannot write oof.csv", e))?;
        let test_inputs = test
            .iter()
            .map(combiner_input)
            .collect::<Result<Vec<_>, _>>()?;
        let mut sub = predict(&test, &test_inputs)?;
        let per_model = ctx.inputs_of("test_probs_per_model").to_vec();
        if !per_model.is_empty() {
            // Each fold model's own map looks like the single-model out-of-fold maps the scorer
            // was fitted on; the five-model mean map has lower peaks where the models disagree.
            let mut runs = Vec::with_capacity(per_model.len());
            for dir in &per_model {
                let scores = scores_of(
                    ctx,
                    ctx.input("test_rois")?,
                    dir,
                    &models,
                    None,
                    p.use_cnn,
                    p.vertebra_margin_mm,
                )?;
                let inputs = scores
                    .iter()
                    .map(combiner_input)
                    .collect::<Result<Vec<_>, _>>()?;
                runs.push(predict(&scores, &inputs)?);
            }
            sub = mean_of(&sub, &runs)?;
        }
        let sample_path = root.join("sample_submission.csv");
        let sample = if sample_path.is_file() {
            Some(
                SampleOrder::read(&sample_path)
                    .map_err(|e| StageError::wrap("cannot read sample_submission.csv", e))?,
            )
        } else {
            None
        };
        // A test study without a region or probabilities (stage 1 found no cervical spine) still
        // gets a row: the training prevalence, said in the log and in fit.json.
        let mut fallback = Vec::new();
        if let Some(sample) = &sample {
            let missing: Vec<String> = sample
                .studies()
                .into_iter()
                .filter(|u| sub.get(u).is_none())
                .collect();
            if !missing.is_empty() {
                let prior = flow_scoring::labels::prevalence(&targets);
                let mut uids = sub.uids().to_vec();
                let mut probs = sub.probs().to_vec();
                for uid in &missing {
                    ctx.log(&format!("warning: test study {uid} has no fracture probabilities (see the roi and predict summaries); it gets the training prevalence"));
                    uids.push(uid.clone());
                    probs.push(prior);
                }
                sub = Predictions::new(uids, probs)
                    .map_err(|e| StageError::wrap("predictions", e))?;
                fallback = missing;
            }
        }
        sub.write(ctx.output("submission")?, sample.as_ref())
            .map_err(|e| StageError::wrap("cannot write submission.csv", e))?;
        let fit = json!({"vertebra": vfit.to_json(), "combiner": cfit, "train_studies": train.len(), "test_studies": test.len(), "extra_features": extra_names, "prior_filled_test_studies": fallback});
        std::fs::write(
            ctx.output("fit")?,
            serde_json::to_string_pretty(&fit).expect("fit serialises") + "\n",
        )
        .map_err(|e| StageError::wrap("cannot write fit.json", e))?;
        ctx.log(&format!(
            "fitted on {} out-of-fold studies: overall share {:.4} (max-vertebra {:.4}, prior {:.4}); {} test studies written",
            train.len(),
            cfit.fitted_contribution,
            cfit.max_vertebra_contribution,
            cfit.prior_contribution,
            test.len()
        ));
        Ok(())
    }
}

/// Each study of `base` with its rows averaged over `runs` (the per-model predictions); a
/// study missing from a run is an error, not a silently smaller mean.
fn mean_of(base: &Predictions, runs: &[Predictions]) -> Result<Predictions, StageError> {
    let mut probs = Vec::with_capacity(base.uids().len());
    for uid in base.uids() {
        let mut sum = [0.0; N_LABELS];
        for (k, run) in runs.iter().enumerate() {
            let row = run.get(uid).ok_or_else(|| {
                StageError::msg(format!(
                    "test study {uid}: no probabilities from per-model map {k} (test_probs_per_model)"
                ))
            })?;
            for (s, v) in sum.iter_mut().zip(row) {
                *s += v;
            }
        }
        probs.push(sum.map(|v| v / runs.len() as f64));
    }
    Predictions::new(base.uids().to_vec(), probs).map_err(|e| StageError::wrap("predictions", e))
}

#[cfg(test)]
mod tests {
    use super::{read_features, vertebra_summaries};
    use flow_imaging::{Geometry, Volume};

    #[test]
    fn per_model_rows_are_averaged_and_a_missing_study_is_an_error() {
        use flow_scoring::Predictions;
        let rows = |uids: &[&str], v: f64| {
            Predictions::new(
                uids.iter().map(|u| u.to_string()).collect(),
                vec![[v; flow_scoring::N_LABELS]; uids.len()],
            )
            .unwrap()
        };
        let base = rows(&["a", "b"], 0.9);
        let mean =
            super::mean_of(&base, &[rows(&["b", "a"], 0.2), rows(&["a", "b"], 0.4)]).unwrap();
        assert_eq!(mean.uids(), base.uids());
        assert!((mean.get("a").unwrap()[3] - 0.3).abs() < 1e-12);
        assert!((mean.get("b").unwrap()[0] - 0.3).abs() < 1e-12);
        let e = super::mean_of(&base, &[rows(&["a"], 0.2)]).unwrap_err();
        assert!(format!("{e}").contains("test study b"), "{e}");
    }

    #[test]
    fn scorer_params_out_of_range_are_refused_by_name() {
        use flow_engine::Stage;
        let check = |given: serde_json::Value| {
            let params = super::Stage3
                .params()
                .validate(given.as_object().unwrap())
                .map_err(|e| format!("{e:?}"))?;
            super::Stage3.check(&params, &["overall"])
        };
        assert!(check(serde_json::json!({})).is_ok(), "the defaults pass");
        let e = check(serde_json::json!({"vertebra_margin_mm": 50.0})).unwrap_err();
        assert!(e.contains("vertebra_margin_mm") && e.contains("50"), "{e}");
        let e = check(serde_json::json!({"vertebra_margin_mm": -1.0})).unwrap_err();
        assert!(e.contains("vertebra_margin_mm"), "{e}");
        let e = check(serde_json::json!({"vertebra_top_k": 0})).unwrap_err();
        assert!(e.contains("vertebra_top_k"), "{e}");
    }

    #[test]
    fn a_crack_just_outside_its_vertebra_label_still_counts_for_it() {
        // 1.25 mm voxels along x: C4 labelled at x = 0..4, C5 at x = 12..16; the map is hot at
        // x = 6 (2.5 mm past C4's edge, a crack's gap) and nowhere else.
        let mut g = Geometry::identity();
        g.spacing = [1.25; 3];
        let mut vert = Volume::filled([17, 1, 1], 0u8, g).unwrap();
        let mut prob = Volume::filled([17, 1, 1], 0.01f32, g).unwrap();
        for x in 0..=4 {
            vert.set(x, 0, 0, 4);
        }
        for x in 12..=16 {
            vert.set(x, 0, 0, 5);
        }
        prob.set(6, 0, 0, 0.95);
        let as_is = vertebra_summaries(&prob, &vert, 0.0).unwrap();
        let max = |s: &flow_scoring::VoxelSummary| s.top_value(1).unwrap_or(0.0);
        assert!(max(&as_is[4]) < 0.5, "the crack lies outside C4's label");
        let grown = vertebra_summaries(&prob, &vert, 2.5).unwrap();
        assert!((max(&grown[4]) - 0.95).abs() < 1e-6, "{}", max(&grown[4]));
        assert!(max(&grown[5]) < 0.5, "C5 is 7.5 mm away");
    }

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.csv");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn feature_csv_reads_columns_by_study() {
        let (_d, p) = write("StudyInstanceUID,a,b\n1.2.3,0.5,2\n1.2.4,1e-3,-1\n");
        let (names, rows) = read_features(&p).unwrap();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(rows["1.2.4"], vec![1e-3, -1.0]);
    }

    #[test]
    fn feature_csv_errors_name_the_line_and_column() {
        let (_d, p) = write("StudyInstanceUID,a\n1.2.3,0.5\n1.2.4,oops\n");
        let e = read_features(&p).unwrap_err().chain();
        assert!(e.contains("f.csv:3") && e.contains("`a` = `oops`"), "{e}");
        let (_d, p) = write("uid,a\n1,2\n");
        assert!(read_features(&p)
            .unwrap_err()
            .chain()
            .contains("f.csv:1: the header"));
        let (_d, p) = write("StudyInstanceUID,a\n1.2.3,0.5,7\n");
        assert!(read_features(&p)
            .unwrap_err()
            .chain()
            .contains("f.csv:2: 3 cells"));
    }
}
