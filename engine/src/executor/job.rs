//! The inside of a Slurm job: `flow exec-node <scratch>/node.json` runs one node's stage
//! (a `command` node or an in-process Rust stage alike) from the resolved spec the
//! coordinator wrote there, and leaves its outcome in `<scratch>/result.json`.
//!
//! The job only writes inside its scratch directory (outputs, items) and the node's
//! checkpoint directory; the coordinating `flow run` stays the only writer of the index and
//! the store: it ingests the outputs after the job ends. Per-item caching
//! (`StageContext::cached_item`) crosses over in two files in the scratch directory
//! ([`crate::items`]): the items the coordinator has, and the items the job made.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::registry::Registry;
use crate::stage::{Device, NodeReporter, Params, StageContext, StageError};

/// The spec file's name in the node's scratch directory.
pub const NODE_FILE: &str = "node.json";
/// The outcome file's name in the node's scratch directory.
pub const RESULT_FILE: &str = "result.json";

/// One node, resolved: what `flow exec-node` needs to run its stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    pub node: String,
    pub stage: String,
    pub params: Params,
    /// Input name -> materialised paths (in the store's views, or external paths).
    pub inputs: BTreeMap<String, Vec<PathBuf>>,
    pub outputs: BTreeMap<String, PathBuf>,
    pub checkpoint_dir: PathBuf,
    pub scratch_dir: PathBuf,
    pub threads: usize,
    pub gpu: usize,
    pub env: BTreeMap<String, String>,
    pub transient_exit_codes: Vec<i32>,
}

/// How the stage ended inside the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeOutcome {
    pub ok: bool,
    /// The error with its source chain.
    pub error: Option<String>,
    pub transient: bool,
    pub cancelled: bool,
}

impl NodeOutcome {
    pub fn of(r: &Result<(), StageError>) -> NodeOutcome {
        NodeOutcome {
            ok: r.is_ok(),
            error: r.as_ref().err().map(|e| e.chain()),
            transient: r.as_ref().err().is_some_and(|e| e.is_transient()),
            cancelled: matches!(r, Err(StageError::Cancelled)),
        }
    }

    /// Reads `<scratch>/result.json`; `None` when the job never wrote it (killed first).
    pub fn read(scratch: &Path) -> Option<NodeOutcome> {
        let text = fs::read_to_string(scratch.join(RESULT_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Writes `value` as JSON to `path` atomically (temp file, fsync, rename).
pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Log lines to stdout (the job's output file, which the coordinator copies into the node's
/// log); progress as `progress: done/total message` lines.
struct StdoutReporter {
    logged: AtomicU64,
}

impl NodeReporter for StdoutReporter {
    fn progress(&self, _node: &str, done: u64, total: u64, message: &str) {
        self.log("", &format!("progress: {done}/{total} {message}"));
    }
    fn log(&self, _node: &str, line: &str) {
        let before = self
            .logged
            .fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
        if before < crate::execute::MAX_NODE_LOG_BYTES {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|_| out.flush());
        }
    }
}

/// `flow exec-node FILE`: runs the node described by `file` and writes its outcome next to
/// it. Returns the process exit code (0: the stage succeeded, 1: it failed). `cancel` is set
/// by the caller on SIGTERM (scancel), which stops a command node's process group.
pub fn exec_node(
    file: &Path,
    registry: &Registry,
    cancel: Arc<AtomicBool>,
) -> Result<i32, EngineError> {
    let text = fs::read_to_string(file).map_err(|e| EngineError::Io {
        what: format!("read {}", file.display()),
        cause: e,
    })?;
    let spec: NodeFile = serde_json::from_str(&text).map_err(|e| {
        EngineError::Usage(format!(
            "{}: not a node file written by `flow run --executor slurm` ({e})",
            file.display()
        ))
    })?;
    let stage = registry.get(&spec.stage).ok_or_else(|| {
        EngineError::Usage(format!(
            "{}: this flow binary has no stage `{}` (is the job running the same flow as the coordinator?)",
            file.display(),
            spec.stage
        ))
    })?;
    let mut env = spec.env.clone();
    // Slurm's allocation, not the coordinator's: the GPUs Slurm gave, the CPUs it granted.
    let gpus = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    env.insert(
        "CUDA_VISIBLE_DEVICES".into(),
        if spec.gpu > 0 { gpus } else { String::new() },
    );
    let threads = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(spec.threads)
        .max(1);
    for k in ["FLOW_THREADS", "OMP_NUM_THREADS", "RAYON_NUM_THREADS"] {
        env.insert(k.into(), threads.to_string());
    }
    let reporter = Arc::new(StdoutReporter {
        logged: AtomicU64::new(0),
    });
    let mut ctx = StageContext {
        node: spec.node.clone(),
        params: spec.params.clone(),
        inputs: spec.inputs.clone(),
        outputs: spec.outputs.clone(),
        checkpoint_dir: spec.checkpoint_dir.clone(),
        scratch_dir: spec.scratch_dir.clone(),
        device: if spec.gpu > 0 {
            Device::Cuda(0)
        } else {
            Device::Cpu
        },
        threads,
        cancel,
        reporter: reporter.clone(),
        items: Arc::new(crate::items::JobItems::open(
            stage.kind(),
            stage.version(),
            &spec.scratch_dir,
        )),
        env,
        transient_exit_codes: spec.transient_exit_codes.clone(),
        usage: Arc::new(Default::default()),
    };
    let r = crate::execute::run_stage_caught(&*stage, &mut ctx);
    if let Err(e) = &r {
        reporter.log("", &format!("error: {}", e.chain()));
    }
    let outcome = NodeOutcome::of(&r);
    let result = spec.scratch_dir.join(RESULT_FILE);
    write_json(&result, &outcome).map_err(|e| EngineError::Io {
        what: format!("write {}", result.display()),
        cause: e,
    })?;
    Ok(if outcome.ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command node run the way a Slurm job runs it: outputs in scratch, outcome on disk.
    #[test]
    fn exec_node_runs_a_command_node_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        fs::create_dir_all(scratch.join("out")).unwrap();
        let mut params = Params::new();
        params.insert(
            "cmd".into(),
            serde_json::json!(["sh", "-c", "echo hi > o.txt"]),
        );
        for (k, v) in [
            ("shell", false.into()),
            ("env", serde_json::json!({})),
            ("args", serde_json::json!({})),
        ] {
            params.insert(k.into(), v);
        }
        params.insert("outputs".into(), serde_json::json!({"o": "o.txt"}));
        let spec = NodeFile {
            node: "n".into(),
            stage: "command".into(),
            params,
            inputs: BTreeMap::new(),
            outputs: [("o".to_string(), scratch.join("out/o.txt"))].into(),
            checkpoint_dir: dir.path().join("ckpt"),
            scratch_dir: scratch.clone(),
            threads: 1,
            gpu: 0,
            env: BTreeMap::new(),
            transient_exit_codes: vec![],
        };
        let file = scratch.join(NODE_FILE);
        write_json(&file, &spec).unwrap();
        let reg = Registry::with_builtins();
        let code = exec_node(&file, &reg, Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(code, 0);
        assert_eq!(
            fs::read_to_string(scratch.join("out/o.txt")).unwrap(),
            "hi\n"
        );
        assert!(NodeOutcome::read(&scratch).unwrap().ok);

        let mut bad = spec.clone();
        bad.params
            .insert("cmd".into(), serde_json::json!(["sh", "-c", "exit 4"]));
        write_json(&file, &bad).unwrap();
        assert_eq!(
            exec_node(&file, &reg, Arc::new(AtomicBool::new(false))).unwrap(),
            1
        );
        let out = NodeOutcome::read(&scratch).unwrap();
        assert!(!out.ok && out.error.unwrap().contains("exited with code 4"));
    }
}
