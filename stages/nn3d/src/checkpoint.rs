//! Per-epoch checkpoints: weights (`VarMap` safetensors), optimiser state (safetensors) and a
//! small JSON record (epoch, optimiser step count, history). The JSON is written last via
//! rename, so a checkpoint is complete exactly when its JSON exists.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{Nn3dError, Result};
use crate::optim::{Optimizer, OptimizerConfig};

/// Metrics of one finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub lr: f64,
    pub val_dice: Option<f64>,
    pub val_class_dice: Vec<f64>,
    pub seconds: f64,
}

/// The JSON part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    /// Number of completed epochs (training resumes at this epoch index).
    pub epochs_done: usize,
    pub optimizer_steps: u64,
    pub optimizer: OptimizerConfig,
    pub history: Vec<EpochRecord>,
}

const FORMAT: u32 = 1;

fn stem(dir: &Path, epochs_done: usize) -> PathBuf {
    dir.join(format!("epoch-{epochs_done:04}"))
}

fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Paths of the three files of the checkpoint after `epochs_done` epochs.
pub fn checkpoint_paths(dir: &Path, epochs_done: usize) -> [PathBuf; 3] {
    let s = stem(dir, epochs_done);
    [
        with_suffix(&s, ".weights.safetensors"),
        with_suffix(&s, ".optimizer.safetensors"),
        with_suffix(&s, ".json"),
    ]
}

/// Writes a checkpoint and removes older ones beyond `keep` (0 keeps all).
pub fn save_checkpoint(
    dir: &Path,
    varmap: &VarMap,
    opt: &Optimizer,
    meta: &CheckpointMeta,
    keep: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Nn3dError::io(dir, e))?;
    let [wp, op, jp] = checkpoint_paths(dir, meta.epochs_done);
    varmap.save(&wp)?;
    candle_core::safetensors::save(&opt.state_tensors(), &op)?;
    // The JSON marks the checkpoint complete: the tensors must be on disk before it is.
    sync_path(&wp)?;
    sync_path(&op)?;
    let tmp = with_suffix(&jp, ".tmp");
    let text = serde_json::to_string_pretty(meta).map_err(|e| Nn3dError::Json {
        path: jp.clone(),
        cause: e,
    })?;
    std::fs::write(&tmp, text).map_err(|e| Nn3dError::io(&tmp, e))?;
    sync_path(&tmp)?;
    std::fs::rename(&tmp, &jp).map_err(|e| Nn3dError::io(&jp, e))?;
    sync_path(dir)?;
    tracing::debug!(path = %jp.display(), "checkpoint written");
    if keep > 0 {
        let mut done = list_checkpoints(dir)?;
        done.sort_unstable();
        let excess = done.len().saturating_sub(keep);
        for &e in &done[..excess] {
            for p in checkpoint_paths(dir, e) {
                if let Err(err) = std::fs::remove_file(&p) {
                    if err.kind() != std::io::ErrorKind::NotFound {
                        return Err(Nn3dError::io(p, err));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `epochs_done` of every complete checkpoint (JSON present) in `dir`.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<usize>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Nn3dError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Nn3dError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(num) = name
            .strip_prefix("epoch-")
            .and_then(|r| r.strip_suffix(".json"))
        {
            if let Ok(k) = num.parse::<usize>() {
                out.push(k);
            }
        }
    }
    Ok(out)
}

/// Reads a checkpoint's JSON.
pub fn read_meta(dir: &Path, epochs_done: usize) -> Result<CheckpointMeta> {
    let [_, _, jp] = checkpoint_paths(dir, epochs_done);
    let text = std::fs::read_to_string(&jp).map_err(|e| Nn3dError::io(&jp, e))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| Nn3dError::Json {
        path: jp.clone(),
        cause: e,
    })?;
    if meta.format != FORMAT || meta.epochs_done != epochs_done {
        return Err(Nn3dError::Checkpoint {
            path: jp,
            reason: format!("format {} / epoch {} does not match expected format {FORMAT} / epoch {epochs_done}", meta.format, meta.epochs_done),
        });
    }
    Ok(meta)
}

/// Loads weights and optimiser state of the newest checkpoint that reads back whole, if any.
/// A checkpoint that cannot be read (truncated by a crash, damaged on disk) is skipped with a
/// warning and the one before it is tried, so one bad file never fails every later run;
/// nothing is assigned to the model before a checkpoint has been read and checked in full.
pub fn load_latest(
    dir: &Path,
    varmap: &VarMap,
    opt: &mut Optimizer,
    device: &Device,
) -> Result<Option<CheckpointMeta>> {
    let mut done = list_checkpoints(dir)?;
    done.sort_unstable_by(|a, b| b.cmp(a));
    for epochs in done {
        match read_checkpoint(dir, epochs, varmap, opt, device) {
            Ok((meta, weights, state)) => {
                assign_weights(varmap, weights)?;
                let [_, op, _] = checkpoint_paths(dir, epochs);
                opt.load_state(&state, meta.optimizer_steps)
                    .map_err(|reason| Nn3dError::Checkpoint { path: op, reason })?;
                return Ok(Some(meta));
            }
            Err(e) => tracing::warn!(
                "checkpoint after epoch {epochs} cannot be used ({e}); trying an older one"
            ),
        }
    }
    Ok(None)
}

type Tensors = HashMap<String, Tensor>;

/// Reads and checks one checkpoint (meta, weights against `varmap`, optimiser state) without
/// changing anything.
fn read_checkpoint(
    dir: &Path,
    epochs: usize,
    varmap: &VarMap,
    opt: &Optimizer,
    device: &Device,
) -> Result<(CheckpointMeta, Tensors, Tensors)> {
    let meta = read_meta(dir, epochs)?;
    let [wp, op, jp] = checkpoint_paths(dir, epochs);
    if &meta.optimizer != opt.config() {
        return Err(Nn3dError::Checkpoint {
            path: jp,
            reason: format!(
                "optimiser {:?} differs from the configured {:?}",
                meta.optimizer,
                opt.config()
            ),
        });
    }
    let weights = read_weights(varmap, &wp)?;
    let state = candle_core::safetensors::load(&op, device).map_err(|e| Nn3dError::Checkpoint {
        path: op.clone(),
        reason: e.to_string(),
    })?;
    Ok((meta, weights, state))
}

/// Flushes `path` (a file or a directory) to disk.
fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Nn3dError::io(path, e))
}

/// Saves only the weights (for inference) to `path`.
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    varmap.save(path).map_err(Nn3dError::from)
}

/// Loads weights saved by [`save_weights`] or a checkpoint into the variables of an existing
/// `VarMap` (in place, so modules built from it see the new values). Every variable must be
/// present with its shape.
pub fn load_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let tensors = read_weights(varmap, path)?;
    assign_weights(varmap, tensors)
}

/// Loads the variables of `varmap` that a weights file holds (a warm start from a related
/// model, e.g. one without deep-supervision heads); returns the names of those it does not
/// hold, which keep their values. A held variable with another shape is an error.
pub fn load_weights_where_present(varmap: &VarMap, path: &Path) -> Result<Vec<String>> {
    let tensors = read_tensors(varmap, path)?;
    let data = varmap.data().lock().map_err(|_| poisoned(path))?;
    let mut missing = Vec::new();
    for (name, var) in data.iter() {
        match tensors.get(name) {
            None => missing.push(name.clone()),
            Some(t) => {
                check_shape(path, name, t, var)?;
                var.set(&t.to_dtype(var.dtype())?)?;
            }
        }
    }
    missing.sort();
    Ok(missing)
}

/// Reads a weights file and checks that it holds every variable of `varmap` with its shape.
fn read_weights(varmap: &VarMap, path: &Path) -> Result<Tensors> {
    let tensors = read_tensors(varmap, path)?;
    let data = varmap.data().lock().map_err(|_| poisoned(path))?;
    for (name, var) in data.iter() {
        let t = tensors.get(name).ok_or_else(|| Nn3dError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("missing tensor {name}"),
        })?;
        check_shape(path, name, t, var)?;
    }
    Ok(tensors)
}

/// The tensors of a weights file, on the device of `varmap`'s variables.
fn read_tensors(varmap: &VarMap, path: &Path) -> Result<Tensors> {
    let bad = |reason: String| Nn3dError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    if !path.exists() {
        return Err(bad("file not found".into()));
    }
    let device = varmap
        .data()
        .lock()
        .map_err(|_| poisoned(path))?
        .values()
        .next()
        .map(|v| v.device().clone())
        .unwrap_or(Device::Cpu);
    candle_core::safetensors::load(path, &device).map_err(|e| bad(e.to_string()))
}

fn poisoned(path: &Path) -> Nn3dError {
    Nn3dError::Checkpoint {
        path: path.to_path_buf(),
        reason: "VarMap mutex poisoned".into(),
    }
}

fn check_shape(path: &Path, name: &str, t: &Tensor, var: &candle_core::Var) -> Result<()> {
    if t.dims() == var.dims() {
        return Ok(());
    }
    Err(Nn3dError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!(
            "tensor {name} has shape {:?}, the model expects {:?}",
            t.dims(),
            var.dims()
        ),
    })
}

/// Sets every variable of `varmap` from `tensors` (checked by [`read_weights`]).
fn assign_weights(varmap: &VarMap, tensors: Tensors) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| Nn3dError::Checkpoint {
        path: std::path::PathBuf::new(),
        reason: "VarMap mutex poisoned".into(),
    })?;
    for (name, var) in data.iter() {
        let t = &tensors[name];
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}
