//! `rsna.stage1_train` and `rsna.stage1_predict`: the vertebra U-Net (C1-C7 + T1).

use flow_engine::{InputDecl, OutputDecl, ParamType, Params, ParamsSchema, Stage, StageContext, StageError};
use flow_imaging::write_nifti;
use flow_rsna7::{recipes, segment_vertebrae, SegModel};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::runtime::{candle_device, fail, pool, read_ct, read_labels, studies_in, TrainReporter};
use crate::study_set::{file_digest, link_all, StudySummary};

pub struct Stage1Train;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainP {
    profile: String,
    seed: u64,
    epochs: usize,
    iterations: usize,
    lr: f64,
}

impl Stage for Stage1Train {
    fn kind(&self) -> &'static str {
        "rsna.stage1_train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Trains the stage-1 U-Net (background, C1..C7, T1) on every study with a label map: CT \
         and labels resampled to the profile's spacing, nnU-Net CT normalisation fitted on the \
         labelled voxels, Dice + CE, SGD Nesterov with the poly schedule. Resumes from its last \
         epoch checkpoint. Output: model/ (model.json with the recipe, normaliser and loss \
         history; weights.safetensors)."
    }
    fn params(&self) -> ParamsSchema {
        super::runtime::training_params(ParamsSchema::new()
            .optional("profile", ParamType::String, json!("demo"), "tiny, demo or full (net, grid and schedule sizes)")
            .optional("seed", ParamType::Int, json!(2022), "initialisation and patch-sampling seed"))
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl { name: "volumes", many: false, required: true, doc: "converted CT volumes (<UID>.nii.gz)" },
            InputDecl { name: "labels", many: true, required: true, doc: "label maps on the CT grids (<UID>.nii.gz, 1..7 = C1..C7, 8 = T1), e.g. rsna.segmentations" },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::dir("model")])
    }
    fn check(&self, params: &Params, _: &[&str]) -> Result<(), String> {
        let profile = params.get("profile").and_then(|v| v.as_str()).unwrap_or("demo");
        recipes::stage1(profile, 0).map(|_| ()).map_err(|e| format!("profile: {e}"))
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: TrainP = ctx.params_as()?;
        let recipe = super::runtime::with_overrides(recipes::stage1(&p.profile, p.seed).map_err(fail("profile"))?, p.epochs, p.iterations, p.lr);
        let volumes = studies_in(ctx.input("volumes")?, "")?;
        let mut pairs = Vec::new();
        for dir in ctx.inputs_of("labels") {
            for (uid, label) in studies_in(dir, "")? {
                match volumes.get(&uid) {
                    Some(ct) => pairs.push((uid, ct.clone(), label)),
                    None => ctx.log(&format!("warning: study {uid} has a label map but no converted CT; skipped")),
                }
            }
        }
        if pairs.is_empty() {
            return Err(StageError::msg("no study has both a converted CT and a label map: nothing to train stage 1 on"));
        }
        ctx.log(&format!("stage 1: {} labelled studies, spacing {:?} mm, patch {:?}", pairs.len(), recipe.spacing_xyz, recipe.patch_zyx));
        let pool = pool(ctx)?;
        let device = candle_device(ctx)?;
        let studies = pool.install(|| {
            pairs
                .par_iter()
                .map(|(uid, ct, label)| {
                    let ct = read_ct(ct)?;
                    let labels = read_labels(label)?;
                    flow_rsna7::stage1::resample_study(uid, &ct, &labels, &recipe).map_err(fail(format!("study {uid}")))
                })
                .collect::<Result<Vec<_>, StageError>>()
        })?;
        let (norm, cases) = flow_rsna7::stage1::training_cases(&studies).map_err(fail("cannot build training cases"))?;
        drop(studies);
        let out = ctx.output("model")?.to_path_buf();
        let mut reporter = TrainReporter::new(ctx, "stage 1");
        let meta = pool.install(|| flow_rsna7::train_segmentation("vertebrae", &recipe, norm, None, cases, &device, &ctx.checkpoint_dir, &out, &mut reporter)).map_err(fail("stage-1 training failed"))?;
        reporter.finish()?;
        ctx.log(&format!("stage 1 trained: final loss {:.4}", meta.history.last().map_or(f64::NAN, |r| r.train_loss)));
        Ok(())
    }
}

pub struct Stage1Predict;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictP {
    cleanup_mm: f64,
}

impl Stage for Stage1Predict {
    fn kind(&self) -> &'static str {
        "rsna.stage1_predict"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Segments C1..C7 and T1 in every converted study with the stage-1 model(s) (averaged): \
         air crop, sliding window with Gaussian weighting, probabilities resampled to the CT grid, \
         argmax, largest cervical component (dilated by cleanup_mm) kept. Cached per study. \
         Output: labels/<UID>.nii.gz on the CT grid, summary.json."
    }
    fn params(&self) -> ParamsSchema {
        ParamsSchema::new().optional("cleanup_mm", ParamType::Float, json!(2.0), "dilation (mm) joining C1-C7 before keeping their largest component (0: no clean-up)")
    }
    fn inputs(&self) -> Option<Vec<InputDecl>> {
        Some(vec![
            InputDecl { name: "model", many: true, required: true, doc: "rsna.stage1_train model(s); several are averaged" },
            InputDecl { name: "volumes", many: false, required: true, doc: "converted CT volumes" },
        ])
    }
    fn outputs(&self, _: &Params) -> Result<Vec<OutputDecl>, String> {
        Ok(vec![OutputDecl::dir("labels"), OutputDecl::file("summary", "summary.json")])
    }
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: PredictP = ctx.params_as()?;
        let device = candle_device(ctx)?;
        let model_dirs = ctx.inputs_of("model").to_vec();
        let models = model_dirs.iter().map(|d| SegModel::load(d, &device)).collect::<Result<Vec<_>, _>>().map_err(fail("cannot load the stage-1 model"))?;
        let refs: Vec<&SegModel> = models.iter().collect();
        let mut model_key = Vec::new();
        for d in &model_dirs {
            model_key.push(file_digest(&d.join("weights.safetensors"))?);
            model_key.push(file_digest(&d.join("model.json"))?);
        }
        let volumes = studies_in(ctx.input("volumes")?, "")?;
        let out = ctx.output("labels")?.to_path_buf();
        std::fs::create_dir_all(&out).map_err(|e| StageError::wrap("cannot create labels/", e))?;
        let pool = pool(ctx)?;
        let mut summary = StudySummary::default();
        for (i, (uid, ct_path)) in volumes.iter().enumerate() {
            ctx.check_cancel()?;
            ctx.progress(i as u64, volumes.len() as u64, uid);
            let key = json!({"study": uid, "ct": file_digest(ct_path)?, "models": model_key, "cleanup_mm": p.cleanup_mm, "v": self.version()});
            let result = ctx
                .cached_item(&key, uid, &mut |target| {
                    std::fs::create_dir_all(target).map_err(|e| StageError::wrap("cannot create item dir", e))?;
                    let ct = read_ct(ct_path)?;
                    let labels = pool.install(|| segment_vertebrae(&refs, &ct, &device, p.cleanup_mm)).map_err(fail(format!("study {uid}")))?;
                    write_nifti(&labels, &target.join(format!("{uid}.nii.gz"))).map_err(|e| StageError::wrap("cannot write labels", e))
                })
                .and_then(|item| link_all(&item, &out));
            summary.record(ctx, uid, result)?;
        }
        ctx.progress(volumes.len() as u64, volumes.len() as u64, "done");
        summary.write(ctx.output("summary")?)?;
        if summary.done.is_empty() {
            return Err(StageError::msg("stage 1 failed on every study (see summary.json)"));
        }
        Ok(())
    }
}
