//! Per-study bookkeeping shared by the imaging stages: study folders of a competition root,
//! their content digests (for per-study caching), and the failures summary.

use std::path::{Path, PathBuf};

use flow_engine::{StageContext, StageError};
use rayon::prelude::*;
use serde::Serialize;

/// One study that could not be processed, and why (no patient identifiers: the UID only).
#[derive(Debug, Clone, Serialize)]
pub struct StudyFailure {
    pub study: String,
    pub error: String,
}

/// What a per-study stage did, written as `summary.json`.
#[derive(Debug, Default, Serialize)]
pub struct StudySummary {
    pub done: Vec<String>,
    pub failed: Vec<StudyFailure>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl StudySummary {
    /// Records one study's outcome: done, or failed with its error (logged); a cancellation
    /// is passed on instead.
    pub fn record(
        &mut self,
        ctx: &flow_engine::StageContext,
        uid: &str,
        result: Result<(), StageError>,
    ) -> Result<(), StageError> {
        match result {
            Ok(()) => self.done.push(uid.to_string()),
            Err(StageError::Cancelled) => return Err(StageError::Cancelled),
            Err(e) => {
                ctx.log(&format!("study {uid} failed: {}", e.chain()));
                self.failed.push(StudyFailure {
                    study: uid.to_string(),
                    error: e.chain(),
                });
            }
        }
        Ok(())
    }

    /// Writes `summary.json` to the node's output `name`, with the paths of the node's inputs
    /// in the errors and notes shown as `${inputs.NAME}` (no user folder names in results).
    pub fn write(&self, ctx: &StageContext, name: &str) -> Result<(), StageError> {
        let path = ctx.output(name)?;
        let relative = StudySummary {
            done: self.done.clone(),
            failed: self
                .failed
                .iter()
                .map(|f| StudyFailure {
                    study: f.study.clone(),
                    error: ctx.relative_paths(&f.error),
                })
                .collect(),
            notes: self.notes.iter().map(|n| ctx.relative_paths(n)).collect(),
        };
        let text = serde_json::to_string_pretty(&relative).expect("summary serialises");
        std::fs::write(path, text + "\n")
            .map_err(|e| StageError::wrap(format!("cannot write {}", path.display()), e))
    }
}

/// The sub-folders of `dir` (one per study), sorted by name.
pub fn study_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, StageError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| StageError::wrap(format!("cannot list {}", dir.display()), e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| StageError::wrap(format!("cannot list {}", dir.display()), e))?;
        if e.path().is_dir() {
            out.push((e.file_name().to_string_lossy().to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// BLAKE3 over a folder's sorted (file name, content digest) pairs: the identity of a study.
pub fn folder_digest(dir: &Path) -> Result<String, StageError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| StageError::wrap(format!("cannot list {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let digests: Vec<Result<(String, blake3::Hash), StageError>> = files
        .par_iter()
        .map(|p| {
            let bytes = std::fs::read(p)
                .map_err(|e| StageError::wrap(format!("cannot read {}", p.display()), e))?;
            Ok((
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string(),
                blake3::hash(&bytes),
            ))
        })
        .collect();
    let mut h = blake3::Hasher::new();
    for d in digests {
        let (name, digest) = d?;
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(digest.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Links (or copies) every file of `from` into `to`.
pub fn link_all(from: &Path, to: &Path) -> Result<(), StageError> {
    std::fs::create_dir_all(to)
        .map_err(|e| StageError::wrap(format!("cannot create {}", to.display()), e))?;
    let rd = std::fs::read_dir(from)
        .map_err(|e| StageError::wrap(format!("cannot list {}", from.display()), e))?;
    for e in rd.flatten() {
        let dest = to.join(e.file_name());
        if std::fs::hard_link(e.path(), &dest).is_err() {
            std::fs::copy(e.path(), &dest).map_err(|err| {
                StageError::wrap(format!("cannot copy {}", e.path().display()), err)
            })?;
        }
    }
    Ok(())
}

/// A rayon pool sized to the node's cpu slots, its workers counted in the node's usage and
/// logging to its log.
pub fn pool(ctx: &StageContext) -> Result<rayon::ThreadPool, StageError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(ctx.threads.max(1))
        .start_handler(ctx.pool_start_handler())
        .exit_handler(ctx.pool_exit_handler())
        .build()
        .map_err(|e| StageError::wrap("cannot start worker threads", e))
}

/// The UID of a `<UID>.nii` / `<UID>.nii.gz` file.
pub fn nifti_stem(p: &Path) -> Option<String> {
    let name = p.file_name()?.to_str()?;
    name.strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .map(String::from)
}

/// BLAKE3 of a file's bytes (hex), for per-item cache keys.
pub fn file_digest(path: &Path) -> Result<String, StageError> {
    let bytes = std::fs::read(path)
        .map_err(|e| StageError::wrap(format!("cannot read {}", path.display()), e))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}
