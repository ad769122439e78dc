//! `rsna.report`: metrics.json and an HTML report (SVG charts, PNG slices) of a finished run:
//! stage-1 Dice per vertebra and fracture Dice per round against the cohort's hidden truth (when
//! the root has one), the competition metric and AUC per label against the training-prevalence
//! baseline (test and out-of-fold), reliability plots of the same predictions, loss curves and
//! slices with overlays.

use std::collections::BTreeMap;
use std::path::Path;

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::ops::Interpolation;
use flow_report::{
    BarChart, Cell, CurveChart, ReliabilityChart, ReliabilitySeries, ReportInput, Series,
    SliceFigure, Table,
};
use flow_rsna7::error::read_json;
use flow_rsna7::evaluation::{centre_of, cut, Plane, PooledDice};
use flow_rsna7::{dice_per_label, onto_grid_of, OverallModelMeta, SegModelMeta};
use flow_scoring::{
    expected_calibration_error, reliability_of_labels, score_files_against_prior, LabelTable,
    Predictions, ScoreReport, OVERALL,
};
use serde::Serialize;
use serde_json::json;

use super::runtime::{read_ct, read_labels, read_probs, studies_in};

pub struct Report;

const ROUNDS: [&str; 3] = ["round1", "round2", "round3"];
const VERTEBRAE: [&str; 7] = ["C1", "C2", "C3", "C4", "C5", "C6", "C7"];
/// Equal-width probability bins of the reliability plots.
const RELIABILITY_BINS: usize = 10;

/// `metrics.json`.
#[derive(Default, Serialize)]
struct Metrics {
    profile: String,
    test_studies: usize,
    /// Mean Dice per vertebra over the test studies (stage 1 vs truth), and their mean.
    stage1_dice: Option<BTreeMap<String, Option<f64>>>,
    stage1_mean_dice: Option<f64>,
    /// Fracture Dice pooled over the test studies (probability >= 0.5 vs true masks).
    fracture_dice: Option<BTreeMap<String, Option<f64>>>,
    test: Option<ScoreReport>,
    out_of_fold: Option<ScoreReport>,
    final_losses: BTreeMap<String, Option<f64>>,
    /// Expected calibration error (10 bins) of the test submission and of the out-of-fold
    /// predictions: `patient_overall` and the seven vertebrae pooled.
    calibration_ece: BTreeMap<String, BTreeMap<String, Option<f64>>>,
    /// The plan overrides and the training data's fingerprint (rsna.plan), when given.
    plans: Option<serde_json::Value>,
    notes: Vec<String>,
}

fn err(what: &str) -> impl FnOnce(flow_rsna7::Rsna7Error) -> StageError + '_ {
    move |e| StageError::wrap(what.to_string(), e)
}

fn seg_meta(dir: &Path) -> Result<SegModelMeta, StageError> {
    read_json(&dir.join("model.json")).map_err(err("cannot read a model"))
}

fn curve(meta_history: &[flow_nn3d::checkpoint::EpochRecord]) -> Vec<(f64, f64)> {
    meta_history
        .iter()
        .map(|r| ((r.epoch + 1) as f64, r.train_loss))
        .collect()
}

/// `metric / baseline = ratio`, without a ratio when the baseline scores (nearly) 0.
fn ratio_text(r: &ScoreReport) -> String {
    if r.prior_baseline_metric > 1e-9 {
        format!(
            "{:.4} / {:.4} = {:.2}",
            r.metric, r.prior_baseline_metric, r.ratio_to_prior
        )
    } else {
        format!(
            "{:.4} / {:.4} (no ratio: the baseline is exact on these studies)",
            r.metric, r.prior_baseline_metric
        )
    }
}

fn score_table(caption: &str, r: &ScoreReport) -> Table {
    let mut rows: Vec<Vec<Cell>> = r
        .labels
        .iter()
        .map(|l| {
            vec![
                Cell::Text(l.label.clone()),
                Cell::Text(l.positives.to_string()),
                Cell::Number(l.auc),
                Cell::Number(Some(l.metric_contribution)),
                Cell::Number(Some(l.prior_contribution)),
            ]
        })
        .collect();
    rows.push(vec![
        Cell::Text("C1–C7 pooled".into()),
        Cell::Text(
            r.labels[1..]
                .iter()
                .map(|l| l.positives)
                .sum::<usize>()
                .to_string(),
        ),
        Cell::Number(r.pooled_vertebra_auc),
        Cell::Number(Some(
            r.labels[1..].iter().map(|l| l.metric_contribution).sum(),
        )),
        Cell::Number(Some(
            r.labels[1..].iter().map(|l| l.prior_contribution).sum(),
        )),
    ]);
    rows.push(vec![
        Cell::Text("competition metric".into()),
        Cell::Text(String::new()),
        Cell::Number(r.mean_vertebra_auc),
        Cell::Number(Some(r.metric)),
        Cell::Number(Some(r.prior_baseline_metric)),
    ]);
    Table {
        caption: format!("{caption}: {} studies, metric / training-prevalence baseline = {}; the C1–C7 pooled row's AUC ranks all vertebrae together; the AUC column's last row is the mean of the per-level AUCs", r.n_studies, ratio_text(r)),
        header: ["target", "positives", "AUC", "metric share (model)", "metric share (baseline)"].map(String::from).to_vec(),
        rows,
    }
}

/// The reliability plot of the predictions in `pred` (a submission-format CSV) against the
/// labels in `labels` (train.csv layout), over the labelled studies it predicts: one series for
/// patient_overall, one for the seven vertebrae pooled, each named with its expected
/// calibration error; and those errors by series (`patient_overall`, `vertebrae_pooled`).
fn reliability_chart(
    caption: String,
    labels: &Path,
    pred: &Path,
) -> Result<(ReliabilityChart, BTreeMap<String, Option<f64>>), StageError> {
    let wrap = |e| {
        StageError::wrap(
            format!("cannot bin {} for the reliability plot", pred.display()),
            e,
        )
    };
    let table = LabelTable::read(labels).map_err(wrap)?;
    let predictions = Predictions::read_known(pred, table.uids()).map_err(wrap)?;
    let (targets, probs): (Vec<_>, Vec<_>) = table
        .uids()
        .iter()
        .zip(table.targets())
        .filter_map(|(uid, y)| predictions.get(uid).map(|p| (*y, *p)))
        .unzip();
    let mut series = Vec::new();
    let mut errors = BTreeMap::new();
    for (key, name, labels) in [
        ("patient_overall", "patient_overall", vec![OVERALL]),
        ("vertebrae_pooled", "C1–C7 pooled", (1..=7).collect()),
    ] {
        let bins =
            reliability_of_labels(&targets, &probs, &labels, RELIABILITY_BINS).map_err(wrap)?;
        let ece = expected_calibration_error(&bins);
        errors.insert(key.to_string(), ece);
        let ece = ece.map_or("–".into(), |e| format!("{e:.3}"));
        series.push(ReliabilitySeries {
            name: format!("{name}, ECE {ece}"),
            bins: bins
                .into_iter()
                .map(|b| flow_report::ReliabilityBin {
                    lo: b.lo,
                    hi: b.hi,
                    count: b.count,
                    mean_predicted: b.mean_predicted,
                    observed: b.observed,
                })
                .collect(),
        });
    }
    Ok((ReliabilityChart { caption, series }, errors))
}

impl Stage for Report {
    fn kind(&self) -> &'static str {
        "rsna.report"
    }
    fn version(&self) -> u32 {
        5
    }
    fn doc(&self) -> &'static str {
        "Writes report/ (report.html with SVG charts and PNG slices, metrics.json): stage-1 Dice per vertebra and \
         fracture Dice per round on the test studies against <root>/truth (the synthetic cohort's \
         hidden truth; skipped with a note on real data), the competition metric and AUC per \
         label for the test submission (with <root>/truth/test_labels.csv) and the out-of-fold \
         training predictions against the training-prevalence baseline, reliability (calibration) plots \
         of both (patient_overall and the vertebrae pooled, 10 bins with counts; their expected calibration errors in metrics.json), loss curves, and \
         slices with the vertebra and fracture overlays."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional(
                "profile",
                ParamType::String,
                json!("demo"),
                "shown in the report",
            )
            .optional(
                "slices",
                ParamType::Int,
                json!(3),
                "test studies shown as slice figures",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        let i = |name, many, doc| InputDecl {
            name,
            many,
            required: true,
            doc,
        };
        Some(vec![
            i("root", false, "competition root (train.csv; truth/ when synthetic)"),
            i("stage1", true, "rsna.stage1_train models (low and full resolution)"),
            i("round1", false, "round-1 model"),
            i("round2", false, "round-2 model"),
            i("round3", true, "round-3 fold models"),
            i("overall", true, "patient_overall models"),
            i("test_vertebrae", false, "stage-1 labels of the test studies (CT grid)"),
            i("test_rois", false, "rsna.roi of the test studies"),
            i("round1_probs", false, "round-1 probabilities of the test studies"),
            i("round2_probs", false, "round-2 probabilities of the test studies"),
            i("round3_probs", false, "round-3 probabilities of the test studies"),
            i("submission", false, "stage-3 submission.csv"),
            i("oof", false, "stage-3 oof.csv"),
            InputDecl { name: "plans", many: false, required: false, doc: "plans.json of rsna.plan: the overrides and the training data's fingerprint are shown and copied into metrics.json" },
            InputDecl { name: "label_summaries", many: true, required: false, doc: "summary.json of the rsna.fracture_labels nodes, one per round in order: their warnings (a round that fell back to the previous round's labels) are shown" },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::dir("report")])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let profile = ctx
            .params
            .get("profile")
            .and_then(|v| v.as_str())
            .unwrap_or("demo")
            .to_string();
        let n_slices = ctx
            .params
            .get("slices")
            .and_then(|v| v.as_u64())
            .unwrap_or(3) as usize;
        let root = ctx.input("root")?.to_path_buf();
        let truth = root.join("truth");
        let has_truth = truth.join("vertebrae").is_dir() && truth.join("fractures").is_dir();
        let mut m = Metrics {
            profile: profile.clone(),
            ..Default::default()
        };
        let mut input = ReportInput {
            title: format!("rsna7 — {profile} profile"),
            ..Default::default()
        };
        let test_vert = studies_in(ctx.input("test_vertebrae")?, "")?;
        let rois = ctx.input("test_rois")?.to_path_buf();
        let roi_verts = studies_in(&rois, ".vertebrae")?;
        m.test_studies = roi_verts.len();

        // Stage-1 Dice per vertebra (mean over test studies).
        if has_truth {
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); 7];
            for (i, (uid, path)) in test_vert.iter().enumerate() {
                ctx.progress(i as u64, test_vert.len() as u64, "stage-1 Dice");
                let t = truth.join("vertebrae").join(format!("{uid}.nii.gz"));
                if !t.is_file() {
                    continue;
                }
                let d = dice_per_label(&read_labels(path)?, &read_labels(&t)?, 7)
                    .map_err(err("stage-1 Dice"))?;
                for (v, x) in d.iter().enumerate() {
                    if let Some(x) = x {
                        per[v].push(*x);
                    }
                }
            }
            let means: Vec<Option<f64>> = per
                .iter()
                .map(|v| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64))
                .collect();
            let valid: Vec<f64> = means.iter().flatten().copied().collect();
            m.stage1_mean_dice =
                (!valid.is_empty()).then(|| valid.iter().sum::<f64>() / valid.len() as f64);
            m.stage1_dice = Some(
                VERTEBRAE
                    .iter()
                    .map(|s| s.to_string())
                    .zip(means.iter().copied())
                    .collect(),
            );
            let mut rows: Vec<Vec<Cell>> = VERTEBRAE
                .iter()
                .zip(&means)
                .zip(&per)
                .map(|((v, d), p)| {
                    vec![
                        Cell::Text(v.to_string()),
                        Cell::Number(*d),
                        Cell::Text(p.len().to_string()),
                    ]
                })
                .collect();
            rows.push(vec![
                Cell::Text("mean".into()),
                Cell::Number(m.stage1_mean_dice),
                Cell::Text(String::new()),
            ]);
            input.tables.push(Table { caption: "Stage 1: Dice per vertebra on the test studies (CT grid, against the cohort's true labels)".into(), header: vec!["vertebra".into(), "Dice".into(), "studies".into()], rows });
        } else {
            m.notes.push("The data root has no truth/ folder (real data): segmentation and fracture Dice are not computed.".into());
        }

        // Fracture Dice per round, pooled over the test studies.
        let round_probs: Vec<_> = ["round1_probs", "round2_probs", "round3_probs"]
            .iter()
            .map(|n| ctx.input(n).map(Path::to_path_buf))
            .collect::<Result<_, _>>()?;
        let mut slices_src: Vec<(String, std::path::PathBuf)> = Vec::new();
        if has_truth {
            let mut pooled = [PooledDice::default(); 3];
            for (i, (uid, vpath)) in roi_verts.iter().enumerate() {
                ctx.progress(i as u64, roi_verts.len() as u64, "fracture Dice");
                let t = truth.join("fractures").join(format!("{uid}.nii.gz"));
                if !t.is_file() {
                    continue;
                }
                let vert = read_labels(vpath)?;
                let truth_roi = onto_grid_of(&read_labels(&t)?, &vert, Interpolation::Nearest);
                let tmask: Vec<bool> = truth_roi.data().iter().map(|&v| v != 0).collect();
                if tmask.iter().any(|&b| b) && slices_src.len() < n_slices {
                    slices_src.push((uid.clone(), t.clone()));
                }
                for (r, dir) in round_probs.iter().enumerate() {
                    let p = dir.join(format!("{uid}.nii.gz"));
                    if p.is_file() {
                        let prob = read_probs(&p)?;
                        let pmask: Vec<bool> = prob.data().iter().map(|&x| x >= 0.5).collect();
                        pooled[r].add(&pmask, &tmask);
                    }
                }
            }
            let dice: BTreeMap<String, Option<f64>> = ROUNDS
                .iter()
                .zip(&pooled)
                .map(|(r, d)| (r.to_string(), d.dice()))
                .collect();
            input.bar_charts.push(BarChart {
                caption: "Fracture Dice per round on the test studies (probability >= 0.5 against the true fracture masks, pooled over studies): pseudo-labelling should raise it round over round".into(),
                y_label: "Dice".into(),
                bars: dice.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                y_max: Some(1.0),
            });
            m.fracture_dice = Some(dice);
        }

        // Competition metric and AUC, against the baseline a submission can know: the
        // training studies' prevalence (the test set's own would be an oracle).
        let train_table = LabelTable::read(&root.join("train.csv"))
            .map_err(|e| StageError::wrap("cannot read train.csv", e))?;
        let train_prevalence = train_table.prevalence();
        let test_labels = truth.join("test_labels.csv");
        if test_labels.is_file() {
            let r = score_files_against_prior(
                &test_labels,
                ctx.input("submission")?,
                &train_prevalence,
            )
            .map_err(|e| StageError::wrap("cannot score the submission", e))?;
            input.tables.push(score_table("Test submission", &r));
            m.test = Some(r);
            let (chart, ece) = reliability_chart(
                "Reliability of the test submission: observed fracture frequency against the mean predicted probability in 10 equal-width bins (n = predictions per bin; on the diagonal a probability p comes true a fraction p of the time)".into(),
                &test_labels,
                ctx.input("submission")?,
            )?;
            input.reliability.push(chart);
            m.calibration_ece.insert("test".into(), ece);
        } else {
            m.notes.push(
                "No truth/test_labels.csv in the data root: the test submission is not scored."
                    .into(),
            );
        }
        let oof = score_files_against_prior(
            &root.join("train.csv"),
            ctx.input("oof")?,
            &train_prevalence,
        )
        .map_err(|e| StageError::wrap("cannot score the out-of-fold predictions", e))?;
        input.tables.push(score_table("Training studies, out of fold (vertebra scorer and combiner fitted on these same predictions: optimistic)", &oof));
        m.out_of_fold = Some(oof);
        let (chart, ece) = reliability_chart(
            "Reliability of the out-of-fold predictions on the training studies (vertebra scorer and combiner fitted on these same predictions: optimistic)".into(),
            &root.join("train.csv"),
            ctx.input("oof")?,
        )?;
        input.reliability.push(chart);
        m.calibration_ece.insert("out_of_fold".into(), ece);

        // Loss curves.
        let mut seg_curves = Vec::new();
        // metrics.json keys by the plain name; the legend also marks the models whose loss has
        // the extra foreground Dice term (bounded below by -2 instead of -1).
        let mut add = |name: String, meta: &SegModelMeta, m: &mut Metrics| {
            let history = &meta.history;
            m.final_losses
                .insert(name.clone(), history.last().map(|r| r.train_loss));
            let legend = if meta.recipe.foreground_dice {
                format!("{name} (− fg Dice)")
            } else {
                name
            };
            seg_curves.push(Series {
                name: legend,
                points: curve(history),
            });
        };
        for d in ctx.inputs_of("stage1") {
            let meta = seg_meta(d)?;
            let name = meta
                .task
                .strip_prefix("vertebrae-")
                .map_or_else(|| "stage 1".to_string(), |r| format!("stage 1 {r}"));
            add(name, &meta, &mut m);
        }
        add("round 1".into(), &seg_meta(ctx.input("round1")?)?, &mut m);
        add("round 2".into(), &seg_meta(ctx.input("round2")?)?, &mut m);
        for d in ctx.inputs_of("round3") {
            let meta = seg_meta(d)?;
            let fold = meta.fold.map_or("-".into(), |f| f.to_string());
            add(format!("round 3 fold {fold}"), &meta, &mut m);
        }
        input.curves.push(CurveChart {
            caption: "Training loss per epoch of the segmentation models: nnU-Net's Dice + CE, i.e. cross-entropy minus the mean soft Dice of the foreground classes, so it is at least −1 (perfect) and below 0 once the soft Dice exceeds the cross-entropy; models marked \"− fg Dice\" (the small profiles' low-resolution stage-1 net) also subtract the soft Dice of the whole foreground (bone vs background), so theirs reaches down to −2".into(),
            x_label: "epoch".into(),
            y_label: "loss = CE − soft Dice (< 0 once Dice > CE)".into(),
            series: seg_curves,
        });
        let mut overall_curves = Vec::new();
        for d in ctx.inputs_of("overall") {
            let meta: OverallModelMeta =
                read_json(&d.join("overall.json")).map_err(err("cannot read a classifier"))?;
            let name = format!("fold {}", meta.fold.map_or("-".into(), |f| f.to_string()));
            m.final_losses.insert(
                format!("overall {name}"),
                meta.history.last().map(|r| r.train_loss),
            );
            overall_curves.push(Series {
                name,
                points: curve(&meta.history),
            });
        }
        input.curves.push(CurveChart {
            caption: "Training loss per epoch (BCE) of the patient_overall classifiers".into(),
            x_label: "epoch".into(),
            y_label: "loss (binary cross-entropy)".into(),
            series: overall_curves,
        });

        // Slices: axial through the true fracture of a few positive test studies, one sagittal.
        if slices_src.is_empty() {
            slices_src = roi_verts
                .keys()
                .take(1)
                .map(|u| (u.clone(), std::path::PathBuf::new()))
                .collect();
        }
        for (n, (uid, truth_path)) in slices_src.iter().enumerate() {
            let ct = read_ct(&rois.join(format!("{uid}.ct.nii.gz")))?.map(f32::from);
            let vert = read_labels(&roi_verts[uid])?;
            let prob = read_probs(&round_probs[2].join(format!("{uid}.nii.gz")))?;
            let t = if truth_path.is_file() {
                Some(onto_grid_of(
                    &read_labels(truth_path)?,
                    &vert,
                    Interpolation::Nearest,
                ))
            } else {
                None
            };
            let centre = t
                .as_ref()
                .and_then(centre_of)
                .or_else(|| centre_of(&vert))
                .unwrap_or([0; 3]);
            let short = &uid[uid.len().saturating_sub(8)..];
            let mut planes = vec![(Plane::Axial, centre[2], "axial")];
            if n == 0 {
                planes.push((Plane::Sagittal, centre[0], "sagittal"));
            }
            for (plane, index, name) in planes {
                let s = cut(plane, index, &ct, &vert, &prob, t.as_ref());
                input.slices.push(SliceFigure {
                    caption: format!("…{short}, {name} slice {index}: stage-1 vertebrae (colours), round-3 fracture probability >= 0.5 (red){}", if s.truth.is_some() { ", true fracture (green)" } else { "" }),
                    width: s.width,
                    height: s.height,
                    ct: s.ct,
                    vertebrae: Some(s.vertebrae),
                    fracture: Some(s.predicted),
                    fracture_truth: s.truth,
                    scale: (384 / s.width.max(s.height).max(1)).clamp(1, 8),
                });
            }
        }

        input.summary = vec![
            ("profile".into(), profile),
            ("test studies".into(), m.test_studies.to_string()),
            (
                "stage-1 mean Dice (test)".into(),
                m.stage1_mean_dice.map_or("–".into(), |d| format!("{d:.3}")),
            ),
            (
                "metric / training prevalence (test)".into(),
                m.test.as_ref().map_or("–".into(), ratio_text),
            ),
            (
                "patient_overall AUC (test)".into(),
                m.test
                    .as_ref()
                    .and_then(|t| t.labels.first())
                    .and_then(|l| l.auc)
                    .map_or("–".into(), |a| format!("{a:.3}")),
            ),
            (
                "vertebra AUC, C1–C7 pooled (test)".into(),
                m.test
                    .as_ref()
                    .and_then(|t| t.pooled_vertebra_auc)
                    .map_or("–".into(), |a| format!("{a:.3}")),
            ),
        ];
        if let Some(path) = ctx.input_opt("plans") {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StageError::wrap(format!("cannot read {}", path.display()), e))?;
            let plans: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| StageError::wrap(format!("{}: not JSON", path.display()), e))?;
            let overrides = &plans["overrides"];
            input.summary.push((
                "plan overrides".into(),
                if overrides.as_object().is_some_and(|o| !o.is_empty()) {
                    overrides.to_string()
                } else {
                    "none".into()
                },
            ));
            let f = &plans["fingerprint"];
            if f.is_object() {
                input.summary.push((
                    "training data".into(),
                    format!(
                        "{} studies, median spacing {} mm, median size {}",
                        f["studies"], f["median_spacing_xyz"], f["median_shape_xyz"]
                    ),
                ));
            }
            for w in plans["warnings"].as_array().into_iter().flatten() {
                m.notes
                    .push(format!("Plans: {}", w.as_str().unwrap_or_default()));
            }
            m.plans = Some(serde_json::json!({
                "profile": plans["profile"],
                "overrides": overrides,
                "fingerprint": f,
            }));
        }
        for (k, path) in ctx.inputs_of("label_summaries").iter().enumerate() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StageError::wrap(format!("cannot read {}", path.display()), e))?;
            let summary: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| StageError::wrap(format!("{}: not JSON", path.display()), e))?;
            if let Some(w) = summary.get("fallback").and_then(|v| v.as_str()) {
                m.notes
                    .push(format!("Fracture labels of round {}: {w}", k + 1));
            }
        }
        input.notes = m.notes.clone();
        let out = ctx.output("report")?.to_path_buf();
        let files = flow_report::write_report(&input, &out)
            .map_err(|e| StageError::wrap("cannot write the report", e))?;
        let text = serde_json::to_string_pretty(&m).expect("metrics serialise");
        std::fs::write(out.join("metrics.json"), text + "\n")
            .map_err(|e| StageError::wrap("cannot write metrics.json", e))?;
        ctx.log(&format!(
            "report with {} figures written",
            files.figures.len()
        ));
        for (k, v) in &input.summary {
            ctx.log(&format!("{k}: {v}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_scoring::N_LABELS;

    #[test]
    fn reliability_chart_bins_overall_and_pooled_vertebrae_of_the_labelled_studies() {
        let dir = tempfile::tempdir().unwrap();
        let uids: Vec<String> = (1..=4).map(|i| format!("1.2.{i}")).collect();
        let mut targets = vec![[0u8; N_LABELS]; 4];
        targets[0][OVERALL] = 1;
        targets[0][2] = 1;
        LabelTable::new(uids.clone(), targets)
            .unwrap()
            .write(&dir.path().join("labels.csv"))
            .unwrap();
        // Three of the four studies predicted: 0.95 for the positive study, 0.05 elsewhere.
        let probs: Vec<[f64; N_LABELS]> = (0..3)
            .map(|i| [if i == 0 { 0.95 } else { 0.05 }; N_LABELS])
            .collect();
        Predictions::new(uids[..3].to_vec(), probs)
            .unwrap()
            .write(&dir.path().join("pred.csv"), None)
            .unwrap();
        let (chart, ece) = reliability_chart(
            "test".into(),
            &dir.path().join("labels.csv"),
            &dir.path().join("pred.csv"),
        )
        .unwrap();
        assert!(
            (ece["patient_overall"].unwrap() - 0.05).abs() < 1e-12,
            "{ece:?}"
        );
        assert!(ece["vertebrae_pooled"].is_some());
        assert_eq!(chart.series.len(), 2);
        let (overall, vertebrae) = (&chart.series[0], &chart.series[1]);
        assert_eq!(overall.bins.len(), RELIABILITY_BINS);
        assert_eq!(
            overall.bins.iter().map(|b| b.count).collect::<Vec<_>>(),
            [2, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(overall.bins[9].observed, Some(1.0));
        // Overall: 2 x |0 - 0.05| + 1 x |1 - 0.95| over 3 predictions.
        assert_eq!(overall.name, "patient_overall, ECE 0.050");
        assert_eq!(vertebrae.bins[0].count, 14);
        assert_eq!(vertebrae.bins[9].count, 7);
        assert_eq!(vertebrae.bins[9].observed, Some(1.0 / 7.0));
        assert!(
            vertebrae.name.starts_with("C1–C7 pooled, ECE 0."),
            "{}",
            vertebrae.name
        );
    }
}
