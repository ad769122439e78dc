//! `rsna.fracture_train` and `rsna.fracture_predict`: the stage-2 fracture U-Net of one round
//! (or one fold of round 3), and its probabilities on the ROI grid. With `oof: true` each
//! study of a fold is predicted by the model that did not train on it; every other study by
//! the ensemble of all models.

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::write_nifti;
use flow_rsna7::normalize::sample_where;
use flow_rsna7::{
    predict_probabilities, segnet::to_grid, training_case, CtNormalizer, SegModel, Split,
};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::runtime::{
    candle_device, fail, inference_plan, pool, read_ct, read_labels, studies_in, TrainReporter,
};
use crate::study_set::{file_digest, link_all, StudySummary};

pub struct FractureTrain;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainP {
    round: u8,
    fold: i64,
    seed: u64,
}

impl TrainP {
    /// The training seed: each round and fold gets its own, so the five round-3 models
    /// differ beyond their data.
    fn training_seed(&self) -> u64 {
        self.seed
            .wrapping_add(1000 * u64::from(self.round))
            .wrapping_add(self.fold.max(0) as u64)
    }
}

impl Stage for FractureTrain {
    fn kind(&self) -> &'static str {
        "rsna.fracture_train"
    }
    fn version(&self) -> u32 {
        5
    }
    fn doc(&self) -> &'static str {
        "Trains one fracture-segmentation U-Net (2 classes) on the ROI grid from a round's labels: \
         round 1 with the synthetic-fracture augmentation, later rounds with deep supervision \
         (full profile). Round 0 takes no labels: it learns from synthetic cracks drawn on every \
         study's vertebrae (the plan's synthetic_fracture_p), uses no study's labels or boxes, \
         and so may start any fold's model. Patches of fracture-free studies are centred on their vertebrae with \
         the plan's p_foreground. With fold >= 0 the studies of that fold (split input) are left \
         out. With init, training starts from that model's weights and normalisation (refused \
         for a fold whose studies it trained on). \
         Net, grid, schedule and augmentation come from the `plan` input (rsna.plan's \
         fracture_round<N> section). A model whose loss ends near 0 (collapsed onto no crack \
         anywhere) trains again from another seed, at most the plan's collapse_attempts times; \
         model/training_check.json lists the attempts. Resumes from its last epoch checkpoint. \
         Output: model/."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .required(
                "round",
                ParamType::Int,
                "0 (label-free start: no labels input), 1, 2 or 3",
            )
            .optional(
                "fold",
                ParamType::Int,
                json!(-1),
                "fold left out (round 3), -1 for none",
            )
            .optional(
                "seed",
                ParamType::Int,
                json!(2022),
                "initialisation and patch-sampling seed",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "rois",
                many: false,
                required: true,
                doc: "rsna.roi output",
            },
            InputDecl {
                name: "labels",
                many: false,
                required: false,
                doc: "rsna.fracture_labels output (rounds 1-3; round 0 takes none)",
            },
            InputDecl {
                name: "split",
                many: false,
                required: false,
                doc: "split.json (needed with fold >= 0)",
            },
            InputDecl {
                name: "init",
                many: false,
                required: false,
                doc: "a model to start from (rsna.fracture_train of an earlier round; same net): \
                      a warm start. Refused for a fold whose studies that model trained on",
            },
            super::runtime::plan_input(
                "the round's plan section, e.g. plans.fracture_round1 (rsna.plan)",
            ),
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::dir("model")])
    }
    fn check(&self, params: &Params, inputs: &[&str]) -> Result<(), String> {
        let round = params.get("round").and_then(|v| v.as_u64()).unwrap_or(0);
        if round > 3 {
            return Err(format!(
                "round {round}: the method has rounds 1, 2 and 3 (and 0, the label-free start)"
            ));
        }
        match (round, inputs.contains(&"labels")) {
            (0, true) => {
                return Err(
                    "round 0 learns from synthetic cracks only: remove the input \
                            `labels` (or use round 1-3)"
                        .into(),
                )
            }
            (1..=3, false) => return Err(format!("round {round}: needs the input `labels`")),
            _ => {}
        }
        if params.get("fold").and_then(|v| v.as_i64()).unwrap_or(-1) >= 0
            && !inputs.contains(&"split")
        {
            return Err("fold: a fold needs the input `split`".into());
        }
        Ok(())
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: TrainP = ctx.params_as()?;
        let recipe = super::runtime::seg_plan(ctx, p.training_seed())?;
        let fold = (p.fold >= 0).then_some(p.fold as usize);
        let left_out: Vec<String> = match fold {
            Some(k) => {
                let split =
                    Split::read(ctx.input("split")?).map_err(fail("cannot read the split"))?;
                split.folds.get(k).cloned().ok_or_else(|| {
                    StageError::msg(format!(
                        "fold {k}: the split has only {} folds",
                        split.folds.len()
                    ))
                })?
            }
            None => Vec::new(),
        };
        let rois = ctx.input("rois")?.to_path_buf();
        let cts = studies_in(&rois, ".ct")?;
        let verts = studies_in(&rois, ".vertebrae")?;
        // Round 0 trains on every study with an empty label (synthetic cracks only).
        let label_free = p.round == 0;
        let mut labels: Vec<(String, Option<std::path::PathBuf>)> = if label_free {
            verts.keys().map(|u| (u.clone(), None)).collect()
        } else {
            studies_in(ctx.input("labels")?, "")?
                .into_iter()
                .map(|(u, path)| (u, Some(path)))
                .collect()
        };
        labels.retain(|(u, _)| !left_out.contains(u));
        if labels.is_empty() {
            return Err(StageError::msg("no labelled study left to train on"));
        }
        let init = ctx.input_opt("init").map(std::path::Path::to_path_buf);
        let init_meta = match &init {
            Some(dir) => Some(
                flow_rsna7::SegModelMeta::read(dir)
                    .map_err(fail("cannot read the model to start from (input `init`)"))?,
            ),
            None => None,
        };
        if let (Some(k), Some(m)) = (fold, &init_meta) {
            if let Some(s) = m.training_studies.iter().find(|s| left_out.contains(s)) {
                return Err(StageError::msg(format!(
                    "input `init`: the model to start from trained on study {s} of fold {k}, so \
                     this fold's out-of-fold predictions would come from weights that saw it; \
                     start a fold model from weights that never saw its fold"
                )));
            }
        }
        let pool = pool(ctx)?;
        let loaded = pool.install(|| {
            labels
                .par_iter()
                .map(|(uid, label)| {
                    let missing =
                        || StageError::msg(format!("study {uid}: labelled but missing from rois/"));
                    let ct = read_ct(cts.get(uid).ok_or_else(missing)?)?.map(f32::from);
                    let vert = read_labels(verts.get(uid).ok_or_else(missing)?)?;
                    let label = match label {
                        Some(path) => read_labels(path)?,
                        None => vert.map(|_| 0u8),
                    };
                    Ok((uid.clone(), ct, label, vert))
                })
                .collect::<Result<Vec<_>, StageError>>()
        })?;
        // A warm start keeps the normalisation its weights were trained with.
        let norm = match &init_meta {
            Some(m) => m.normalizer,
            None => {
                let mut samples = Vec::new();
                for (_, ct, _, vert) in &loaded {
                    let v = vert.data();
                    samples.extend(sample_where(ct.data(), |i| (1..=7).contains(&v[i]), 5));
                }
                CtNormalizer::fit(&mut samples).map_err(fail("cannot fit the CT normalisation"))?
            }
        };
        let cases = loaded
            .iter()
            .map(|(uid, ct, label, vert)| {
                training_case(uid, &ct.map(|x| norm.apply(x)), label, Some(vert))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail("cannot build training cases"))?;
        drop(loaded);
        let what = match fold {
            Some(k) => format!("round {} fold {k}", p.round),
            None if label_free => "round 0 (synthetic cracks only)".to_string(),
            None => format!("round {}", p.round),
        };
        ctx.log(&format!(
            "{what}: {} training studies, patch {:?}",
            cases.len(),
            recipe.patch_zyx
        ));
        let device = candle_device(ctx)?;
        let out = ctx.output("model")?.to_path_buf();
        let mut reporter = TrainReporter::new(ctx, what.clone());
        let checkpoints = ctx.checkpoint_dir.clone();
        let training = pool
            .install(|| {
                flow_rsna7::train_fracture(
                    &recipe,
                    norm,
                    fold,
                    init.as_deref(),
                    cases,
                    label_free,
                    &device,
                    &checkpoints,
                    &out,
                    &mut reporter,
                )
            })
            .map_err(fail(format!("{what} training failed")))?;
        reporter.finish()?;
        let kept = training.kept_attempt();
        if recipe.collapse_attempts > 1 {
            for (i, a) in training.attempts.iter().enumerate() {
                ctx.log(&format!(
                    "{what} attempt {i} (seed {}): mean loss of the last epochs {:.4}",
                    a.seed, a.tail_loss
                ));
            }
            if !kept.learned() {
                ctx.log(&format!(
                    "warning: {what}: after {} trainings the loss still ends at {:.4} (>= {}): \
                     the model predicts no crack anywhere (raise the plan's collapse_attempts \
                     or iterations)",
                    training.attempts.len(),
                    kept.tail_loss,
                    flow_rsna7::COLLAPSE_LOSS
                ));
            }
        }
        let final_loss = training
            .meta
            .as_ref()
            .and_then(|m| m.history.last())
            .map_or(f64::NAN, |r| r.train_loss);
        ctx.log(&format!(
            "{what} trained: kept attempt {} (seed {}), final loss {final_loss:.4}",
            training.kept, kept.seed
        ));
        Ok(())
    }
}

pub struct FracturePredict;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictP {
    oof: bool,
}

impl Stage for FracturePredict {
    fn kind(&self) -> &'static str {
        "rsna.fracture_predict"
    }
    fn version(&self) -> u32 {
        3
    }
    fn doc(&self) -> &'static str {
        "Fracture probability of every ROI (probs/<UID>.nii.gz, float32 on the ROI grid) from the \
         model(s), averaged. With oof: true, a study in fold k of the split is predicted only by \
         the model that left fold k out (out-of-fold); all others by the ensemble. Cached per study."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new().optional(
            "oof",
            ParamType::Bool,
            json!(false),
            "out-of-fold predictions for studies in the split's folds",
        )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl {
                name: "model",
                many: true,
                required: true,
                doc: "rsna.fracture_train model(s)",
            },
            InputDecl {
                name: "rois",
                many: false,
                required: true,
                doc: "rsna.roi output",
            },
            InputDecl {
                name: "split",
                many: false,
                required: false,
                doc: "split.json (with oof)",
            },
            InputDecl {
                name: "inference",
                many: false,
                required: false,
                doc: "rsna.plan's inference_fracture_round<N>.json: window step and mirroring (default: half-patch steps, no mirroring)",
            },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![
            OutputDecl::dir("probs"),
            OutputDecl::file("summary", "summary.json"),
        ])
    }
    fn check(&self, params: &Params, inputs: &[&str]) -> Result<(), String> {
        if params.get("oof").and_then(|v| v.as_bool()) == Some(true) && !inputs.contains(&"split") {
            return Err("oof: out-of-fold prediction needs the input `split`".into());
        }
        Ok(())
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: PredictP = ctx.params_as()?;
        let device = candle_device(ctx)?;
        let dirs = ctx.inputs_of("model").to_vec();
        let models = dirs
            .iter()
            .map(|d| SegModel::load(d, &device))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail("cannot load a fracture model"))?;
        let digests = dirs
            .iter()
            .map(|d| file_digest(&d.join("weights.safetensors")))
            .collect::<Result<Vec<_>, _>>()?;
        let split = match (p.oof, ctx.input_opt("split")) {
            (true, Some(s)) => Some(Split::read(s).map_err(fail("cannot read the split"))?),
            _ => None,
        };
        if let Some(s) = &split {
            for k in 0..s.folds.len() {
                if !models.iter().any(|m| m.meta.fold == Some(k)) {
                    return Err(StageError::msg(format!(
                        "oof: no model left fold {k} out; give one rsna.fracture_train per fold"
                    )));
                }
            }
        }
        let metas: Vec<&flow_rsna7::SegModelMeta> = models.iter().map(|m| &m.meta).collect();
        let inference = inference_plan(ctx, "inference")?;
        let rois = ctx.input("rois")?.to_path_buf();
        let cts = studies_in(&rois, ".ct")?;
        let out = ctx.output("probs")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create probs/", e))?;
        let pool = pool(ctx)?;
        let mut summary = StudySummary::default();
        let (mut n_oof, mut n_ens) = (0, 0);
        for (i, (uid, ct_path)) in cts.iter().enumerate() {
            ctx.check_cancel()?;
            ctx.progress(i as u64, cts.len() as u64, uid);
            let fold = split.as_ref().and_then(|s| s.fold_of(uid));
            let chosen = flow_rsna7::models_for_study(uid, fold, &metas)
                .map_err(fail("out-of-fold prediction"))?;
            if fold.is_some() {
                n_oof += 1
            } else {
                n_ens += 1
            }
            let refs: Vec<&SegModel> = chosen.iter().map(|&j| &models[j]).collect();
            let key = json!({"study": uid, "ct": file_digest(ct_path)?, "models": chosen.iter().map(|&j| &digests[j]).collect::<Vec<_>>(), "inference": inference, "v": self.version()});
            let result = ctx
                .cached_item(&key, uid, &mut |target| {
                    std::fs::create_dir_all(target)
                        .map_err(|e| StageError::wrap("cannot create item dir", e))?;
                    let ct = read_ct(ct_path)?;
                    let norm = refs[0].meta.normalizer;
                    let image =
                        to_grid(&ct.map(|x| norm.apply(f32::from(x)))).map_err(fail("grid"))?;
                    let probs = pool
                        .install(|| predict_probabilities(&refs, &image, &inference, &device))
                        .map_err(fail(format!("study {uid}")))?;
                    let n = ct.len();
                    let fracture = flow_imaging::Volume::from_vec(
                        ct.dims(),
                        probs[n..2 * n].to_vec(),
                        ct.geometry,
                    )
                    .map_err(|e| StageError::wrap("probability map", e))?;
                    write_nifti(&fracture, &target.join(format!("{uid}.nii.gz")))
                        .map_err(|e| StageError::wrap("cannot write probabilities", e))
                })
                .and_then(|item| link_all(&item, &out));
            summary.record(ctx, uid, result)?;
        }
        if split.is_some() {
            summary.notes.push(format!("{n_oof} studies predicted out-of-fold (each by the model that left its fold out and, checked, never trained on it), {n_ens} by the {}-model ensemble", models.len()));
        }
        summary.write(ctx, "summary")?;
        if summary.done.is_empty() {
            return Err(StageError::msg(
                "no study could be predicted (see summary.json)",
            ));
        }
        Ok(())
    }
}
