//! The Stage trait: what a node kind declares (params, inputs, outputs) and how it runs.
//!
//! A stage is a thin adapter: it reads typed params and input paths from the
//! [`StageContext`], writes its declared outputs into the paths the context hands out, and
//! reports progress through the context. The engine computes keys, caches and schedules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flow_cache::ArtifactKind;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::params::ParamsSchema;

/// Params after validation: every declared param present (defaults filled), types checked.
pub type Params = serde_json::Map<String, Value>;

/// A declared input of a stage kind.
#[derive(Debug, Clone)]
pub struct InputDecl {
    pub name: &'static str,
    /// Accepts a list of references.
    pub many: bool,
    pub required: bool,
    pub doc: &'static str,
}

/// A declared output: its name, whether it is a file or a directory, and the name it is
/// materialised under (file extensions matter to tools, e.g. `.nii.gz`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecl {
    pub name: String,
    pub kind: ArtifactKind,
    pub filename: String,
}

impl OutputDecl {
    pub fn file(name: &str, filename: &str) -> OutputDecl {
        OutputDecl {
            name: name.into(),
            kind: ArtifactKind::File,
            filename: filename.into(),
        }
    }
    pub fn dir(name: &str) -> OutputDecl {
        OutputDecl {
            name: name.into(),
            kind: ArtifactKind::Dir,
            filename: name.into(),
        }
    }
}

/// Where a stage's compute runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A stage failure. `transient` failures may be retried when the node declares `retry`.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{message}")]
    Failed {
        message: String,
        transient: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("cancelled")]
    Cancelled,
}

impl StageError {
    /// A permanent failure with a message.
    pub fn msg(message: impl Into<String>) -> StageError {
        StageError::Failed {
            message: message.into(),
            transient: false,
            source: None,
        }
    }
    /// A failure that retrying may fix (network blip, busy device).
    pub fn transient(message: impl Into<String>) -> StageError {
        StageError::Failed {
            message: message.into(),
            transient: true,
            source: None,
        }
    }
    /// Wraps a library error with what the stage was doing.
    pub fn wrap(
        context: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> StageError {
        StageError::Failed {
            message: context.into(),
            transient: false,
            source: Some(Box::new(e)),
        }
    }
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StageError::Failed {
                transient: true,
                ..
            }
        )
    }
    /// The message with its whole source chain, `a: b: c`.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

/// A node kind. Implementations are registered in a [`crate::Registry`].
pub trait Stage: Send + Sync + 'static {
    /// The `stage:` name in YAML, e.g. `dicom.to_nifti`.
    fn kind(&self) -> &'static str;
    /// Bump when results would change for the same params and inputs (part of the node key).
    fn version(&self) -> u32;
    /// One paragraph for `flow stages`.
    fn doc(&self) -> &'static str;
    fn params(&self) -> ParamsSchema;
    /// Declared inputs; `None` accepts any input names (the `command` stage).
    fn inputs(&self) -> Option<Vec<InputDecl>>;
    /// Declared outputs for the given (validated) params.
    fn outputs(&self, params: &Params) -> Result<Vec<OutputDecl>, String>;
    /// Extra checks of params and inputs before anything runs (messages name the param).
    fn check(&self, _params: &Params, _input_names: &[&str]) -> Result<(), String> {
        Ok(())
    }
    /// What the run resolves from its params beyond the params themselves (e.g. a profile's
    /// hyperparameters kept in code), as JSON. It is part of the node key, so changing a
    /// setting re-runs exactly the nodes that use it, and `flow explain` names the setting.
    fn settings(&self, _params: &Params) -> Option<serde_json::Value> {
        None
    }
    /// Does the work. Blocking; runs on a worker thread.
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError>;
}

/// Where a running stage reports progress and log lines (the engine's event bus).
pub trait NodeReporter: Send + Sync {
    fn progress(&self, node: &str, done: u64, total: u64, message: &str);
    fn log(&self, node: &str, line: &str);
}

/// Produces and caches per-item results inside a node (e.g. one NIfTI per study), so a
/// re-run with one more study only converts that study.
pub trait ItemCache: Send + Sync {
    /// Returns the path of the cached item for `key` (named `name`), calling `make` to
    /// produce it into the given path when it is not cached yet.
    fn get_or_make(
        &self,
        key: &Value,
        name: &str,
        make: &mut dyn FnMut(&Path) -> Result<(), StageError>,
    ) -> Result<PathBuf, StageError>;
}

/// Everything a running stage may use.
pub struct StageContext {
    pub node: String,
    pub params: Params,
    /// Input name -> materialised, read-only paths (one for a single input).
    pub inputs: BTreeMap<String, Vec<PathBuf>>,
    pub outputs: BTreeMap<String, PathBuf>,
    /// Persistent across attempts and killed runs of the same node key; removed on success.
    pub checkpoint_dir: PathBuf,
    /// A fresh scratch directory for this attempt.
    pub scratch_dir: PathBuf,
    pub device: Device,
    pub threads: usize,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) reporter: Arc<dyn NodeReporter>,
    pub(crate) items: Arc<dyn ItemCache>,
    pub(crate) env: BTreeMap<String, String>,
    /// Exit codes a `command` node declared transient in its `retry`.
    pub(crate) transient_exit_codes: Vec<i32>,
    /// What the node uses: a stage that builds a worker pool gives it the meter's
    /// `pool_start_handler` and `pool_exit_handler`, so its workers' CPU time is counted.
    pub usage: Arc<crate::usage::UsageMeter>,
}

impl StageContext {
    /// The single path of input `name`.
    pub fn input(&self, name: &str) -> Result<&Path, StageError> {
        match self.inputs.get(name).map(|v| v.as_slice()) {
            Some([p]) => Ok(p),
            Some(_) => Err(StageError::msg(format!(
                "input `{name}` is a list; use inputs_of"
            ))),
            None => Err(StageError::msg(format!("missing input `{name}`"))),
        }
    }
    /// An optional single input.
    pub fn input_opt(&self, name: &str) -> Option<&Path> {
        self.inputs
            .get(name)
            .and_then(|v| v.first())
            .map(|p| p.as_path())
    }
    /// All paths of input `name` (empty when not given).
    pub fn inputs_of(&self, name: &str) -> &[PathBuf] {
        self.inputs.get(name).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// The path where output `name` must be written.
    pub fn output(&self, name: &str) -> Result<&Path, StageError> {
        self.outputs
            .get(name)
            .map(|p| p.as_path())
            .ok_or_else(|| StageError::msg(format!("no declared output `{name}`")))
    }
    /// All params deserialised into a typed struct (use `#[serde(deny_unknown_fields)]`).
    pub fn params_as<T: DeserializeOwned>(&self) -> Result<T, StageError> {
        serde_json::from_value(Value::Object(self.params.clone()))
            .map_err(|e| StageError::msg(format!("invalid params: {e}")))
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    /// Errors with `Cancelled` when the run is being cancelled (call between work items).
    pub fn check_cancel(&self) -> Result<(), StageError> {
        if self.is_cancelled() {
            Err(StageError::Cancelled)
        } else {
            Ok(())
        }
    }
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        self.reporter.progress(&self.node, done, total, message);
    }
    /// A line for the node's log file (and the debug trace).
    pub fn log(&self, line: &str) {
        self.reporter.log(&self.node, line);
    }
    /// `text` with the paths of this node's inputs shown as `${inputs.NAME}`: for what a stage
    /// writes itself (a summary's errors), so a user's folder names (which may name a patient)
    /// stay out of results; its log lines get this already.
    pub fn relative_paths(&self, text: &str) -> String {
        crate::redact::PathRedactor::new(&self.inputs).apply(text)
    }
    /// A `start_handler` for a worker pool the stage builds for this node (rayon's
    /// `ThreadPoolBuilder::start_handler`): each worker's CPU time and I/O are charged to the
    /// node and its log lines go to the node's log. Pair it with [`Self::pool_exit_handler`].
    pub fn pool_start_handler(&self) -> impl Fn(usize) + Send + Sync + 'static {
        let usage = self.usage.pool_start_handler();
        let (node, sink) = (self.node.clone(), self.reporter.clone());
        move |i| {
            usage(i);
            crate::progress::set_thread_node(&node, sink.clone());
        }
    }
    /// The matching `exit_handler`.
    pub fn pool_exit_handler(&self) -> impl Fn(usize) + Send + Sync + 'static {
        self.usage.pool_exit_handler()
    }
    /// Environment for child processes (CUDA_VISIBLE_DEVICES, thread counts, FLOW_*).
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }
    /// See [`ItemCache`].
    pub fn cached_item(
        &self,
        key: &Value,
        name: &str,
        make: &mut dyn FnMut(&Path) -> Result<(), StageError>,
    ) -> Result<PathBuf, StageError> {
        self.items.get_or_make(key, name, make)
    }
}
