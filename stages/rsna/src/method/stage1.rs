//! `rsna.stage1_train` and `rsna.stage1_predict`: the vertebra U-Net cascade (C1-C7 + T1).

use flow_engine::{
    InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError,
};
use flow_imaging::write_nifti;
use flow_rsna7::stage1::{Resolution, LEVEL_MARKERS};
use flow_rsna7::{segment_vertebrae, SegModel};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::runtime::{
    candle_device, fail, inference_plan, pool, read_ct, read_labels, studies_in, TrainReporter,
};
use crate::study_set::{file_digest, link_all, StudySummary};

pub struct Stage1Train;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainP {
    resolution: String,
    seed: u64,
    attempts: usize,
}

impl Stage for Stage1Train {
    fn kind(&self) -> &'static str {
        "rsna.stage1_train"
    }
    fn version(&self) -> u32 {
        5
    }
    fn doc(&self) -> &'static str {
        "Trains one model of the stage-1 cascade on every study with a label map. \
         resolution=lowres: background, C1..C7, T1 on a coarse grid, the whole air-cropped neck in \
         one window; resolution=fullres: inside the labelled spine box (grown by 20 mm) on a fine \
         grid, the spine as one class in the small profiles (9 classes in full). nnU-Net CT \
         normalisation fitted on the labelled voxels, Dice + CE. Resumes from its last epoch \
         checkpoint. Then segments its training studies: while some level C1-C7 has a Dice under \
         0.3 there, it trains again from the next seed (at most `attempts` trainings) and keeps \
         the best. Net, grid and schedule come from the `plan` input (rsna.plan's \
         stage1_lowres or stage1_fullres section). Output: model/ (model.json with the recipe, normaliser and loss history; \
         weights.safetensors; training_check.json with every attempt's Dice per class)."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .required(
                "resolution",
                ParamType::String,
                "lowres (levels, whole neck) or fullres (boundaries, spine box)",
            )
            .optional(
                "seed",
                ParamType::Int,
                json!(2022),
                "initialisation and patch-sampling seed",
            )
            .optional(
                "attempts",
                ParamType::Int,
                json!(1),
                "trainings at most (seed, seed+1, ...) while a level is not learned",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl { name: "volumes", many: false, required: true, doc: "converted CT volumes (<UID>.nii.gz)" },
            InputDecl { name: "labels", many: true, required: true, doc: "label maps on the CT grids (<UID>.nii.gz, 1..7 = C1..C7, 8 = T1), e.g. rsna.segmentations" },
            super::runtime::plan_input("the model's plan section, e.g. plans.stage1_lowres (rsna.plan)"),
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::dir("model")])
    }
    fn check(&self, params: &Params, _: &[&str]) -> Result<(), String> {
        Resolution::parse(
            params
                .get("resolution")
                .and_then(|v| v.as_str())
                .unwrap_or_default(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: TrainP = ctx.params_as()?;
        let resolution = Resolution::parse(&p.resolution).map_err(fail("resolution"))?;
        let recipe = super::runtime::seg_plan(ctx, p.seed)?;
        let volumes = studies_in(ctx.input("volumes")?, "")?;
        let mut pairs = Vec::new();
        for dir in ctx.inputs_of("labels") {
            for (uid, label) in studies_in(dir, "")? {
                match volumes.get(&uid) {
                    Some(ct) => pairs.push((uid, ct.clone(), label)),
                    None => ctx.log(&format!(
                        "warning: study {uid} has a label map but no converted CT; skipped"
                    )),
                }
            }
        }
        if pairs.is_empty() {
            return Err(StageError::msg(
                "no study has both a converted CT and a label map: nothing to train stage 1 on",
            ));
        }
        ctx.log(&format!(
            "stage 1 ({}): {} labelled studies, spacing {:?} mm, patch {:?}",
            p.resolution,
            pairs.len(),
            recipe.spacing_xyz,
            recipe.patch_zyx
        ));
        let pool = pool(ctx)?;
        let device = candle_device(ctx)?;
        let studies = pool.install(|| {
            pairs
                .par_iter()
                .map(|(uid, ct, label)| {
                    let ct = read_ct(ct)?;
                    let labels = read_labels(label)?;
                    flow_rsna7::stage1::prepare_study(uid, &ct, &labels, &recipe, resolution)
                        .map_err(fail(format!("study {uid}")))
                })
                .collect::<Result<Vec<_>, StageError>>()
        })?;
        let out = ctx.output("model")?.to_path_buf();
        let what = format!("stage 1 {}", p.resolution);
        let mut reporter = TrainReporter::new(ctx, what.clone());
        let checkpoints = ctx.checkpoint_dir.clone();
        let training = pool
            .install(|| {
                flow_rsna7::train_stage1(
                    resolution,
                    &recipe,
                    &studies,
                    p.attempts,
                    &device,
                    &checkpoints,
                    &out,
                    &mut reporter,
                )
            })
            .map_err(fail("stage-1 training failed"))?;
        reporter.finish()?;
        let final_loss = training
            .meta
            .as_ref()
            .and_then(|m| m.history.last())
            .map_or(f64::NAN, |r| r.train_loss);
        let dice = |a: &flow_rsna7::Stage1Attempt| {
            a.class_dice
                .iter()
                .map(|d| d.map_or("-".to_string(), |d| format!("{d:.2}")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for (i, a) in training.attempts.iter().enumerate() {
            ctx.log(&format!(
                "{what} attempt {i} (seed {}): training-study Dice per class {}",
                a.seed,
                dice(a)
            ));
        }
        let kept = training.kept_attempt();
        if !kept.learned_every_level() {
            ctx.log(&format!(
                "warning: {what}: after {} training(s) a level still has a training-study Dice of {:.2} (< {}); the levels of its predictions will be wrong there (raise `attempts` or the iterations)",
                training.attempts.len(),
                kept.lowest_level_dice(),
                flow_rsna7::LEVEL_DICE_FLOOR
            ));
        }
        ctx.log(&format!(
            "{what} trained: kept attempt {} (seed {}), final loss {final_loss:.4}",
            training.kept, kept.seed
        ));
        Ok(())
    }
}

/// Loads the models of one input and checks that they are stage-1 models of `resolution`.
fn load_models(
    ctx: &StageContext,
    input: &str,
    resolution: Resolution,
    device: &candle_core::Device,
) -> Result<(Vec<SegModel>, Vec<String>), StageError> {
    let mut models = Vec::new();
    let mut digests = Vec::new();
    for d in ctx.inputs_of(input) {
        let m = SegModel::load(d, device).map_err(fail(format!(
            "cannot load the stage-1 model {}",
            d.display()
        )))?;
        if m.meta.task != resolution.task() {
            return Err(StageError::msg(format!("input `{input}`: {} holds a `{}` model, expected `{}` (rsna.stage1_train with resolution: {})", d.display(), m.meta.task, resolution.task(), resolution.name())));
        }
        models.push(m);
        digests.push(file_digest(&d.join("weights.safetensors"))?);
        digests.push(file_digest(&d.join("model.json"))?);
    }
    Ok((models, digests))
}

pub struct Stage1Predict;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictP {
    cleanup_mm: f64,
    level_markers: f64,
}

impl Stage for Stage1Predict {
    fn kind(&self) -> &'static str {
        "rsna.stage1_predict"
    }
    fn version(&self) -> u32 {
        4
    }
    fn doc(&self) -> &'static str {
        "Segments C1..C7 and T1 in every converted study with the stage-1 cascade (each input's \
         models averaged): the low-resolution model on the air-cropped neck gives the levels and \
         the spine box; the full-resolution model(s), when given, segment inside that box with \
         overlapping Gaussian-weighted windows; probabilities are resampled to the CT grid, \
         spine voxels take their most likely level, the level boundaries move onto the spine \
         mask's joints (a marker-controlled watershed, level_markers), and the largest cervical component (dilated \
         by cleanup_mm) is kept. Cached per study. Output: labels/<UID>.nii.gz on the CT grid, \
         summary.json."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new()
            .optional(
                "cleanup_mm",
                ParamType::Float,
                json!(2.0),
                "dilation (mm) joining C1-C7 before keeping their largest component (0: no clean-up)",
            )
            .optional(
                "level_markers",
                ParamType::Float,
                json!(LEVEL_MARKERS),
                "level watershed: spine voxels whose level holds this share of the level probability keep it and flood the rest of the spine mask, deepest voxels first (0: plain argmax)",
            )
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl { name: "model", many: true, required: true, doc: "rsna.stage1_train lowres model(s); several are averaged" },
            InputDecl { name: "fullres", many: true, required: false, doc: "rsna.stage1_train fullres model(s); without them the low-resolution argmax is used" },
            InputDecl { name: "volumes", many: false, required: true, doc: "converted CT volumes" },
            InputDecl { name: "inference", many: false, required: false, doc: "rsna.plan's inference_stage1_lowres.json: window step and mirroring of the low-resolution models (default: half-patch steps, no mirroring)" },
            InputDecl { name: "fullres_inference", many: false, required: false, doc: "rsna.plan's inference_stage1_fullres.json, the same for the full-resolution models" },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![
            OutputDecl::dir("labels"),
            OutputDecl::file("summary", "summary.json"),
        ])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: PredictP = ctx.params_as()?;
        let device = candle_device(ctx)?;
        let (low, mut model_key) = load_models(ctx, "model", Resolution::Lowres, &device)?;
        let (fine, fine_key) = load_models(ctx, "fullres", Resolution::Fullres, &device)?;
        model_key.extend(fine_key);
        let low: Vec<&SegModel> = low.iter().collect();
        let fine: Vec<&SegModel> = fine.iter().collect();
        let inference = [
            inference_plan(ctx, "inference")?,
            inference_plan(ctx, "fullres_inference")?,
        ];
        let volumes = studies_in(ctx.input("volumes")?, "")?;
        let out = ctx.output("labels")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create labels/", e))?;
        let pool = pool(ctx)?;
        let mut summary = StudySummary::default();
        for (i, (uid, ct_path)) in volumes.iter().enumerate() {
            ctx.check_cancel()?;
            ctx.progress(i as u64, volumes.len() as u64, uid);
            let key = json!({"study": uid, "ct": file_digest(ct_path)?, "models": model_key, "inference": inference, "cleanup_mm": p.cleanup_mm, "level_markers": p.level_markers, "v": self.version()});
            let result = ctx
                .cached_item(&key, uid, &mut |target| {
                    std::fs::create_dir_all(target)
                        .map_err(|e| StageError::wrap("cannot create item dir", e))?;
                    let ct = read_ct(ct_path)?;
                    let labels = pool
                        .install(|| {
                            segment_vertebrae(
                                &low,
                                &fine,
                                [&inference[0], &inference[1]],
                                &ct,
                                &device,
                                p.cleanup_mm,
                                p.level_markers as f32,
                            )
                        })
                        .map_err(fail(format!("study {uid}")))?;
                    write_nifti(&labels, &target.join(format!("{uid}.nii.gz")))
                        .map_err(|e| StageError::wrap("cannot write labels", e))
                })
                .and_then(|item| link_all(&item, &out));
            summary.record(ctx, uid, result)?;
        }
        ctx.progress(volumes.len() as u64, volumes.len() as u64, "done");
        summary.write(ctx, "summary")?;
        if summary.done.is_empty() {
            return Err(StageError::msg(
                "stage 1 failed on every study (see summary.json)",
            ));
        }
        Ok(())
    }
}
