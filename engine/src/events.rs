//! Run events and the reporters that consume them (JSONL journal, progress UI, summary).
//!
//! The scheduler and running stages only emit [`Event`]s; each [`Reporter`] turns them into
//! something a person or a program reads. This keeps drawing and logging out of the runner.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::usage::NodeUsage;

/// The final state of a node in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Ran,
    Cached,
    Failed,
    Blocked,
    /// Outside the run's targets: nothing the run is for reads it.
    Skipped,
}

/// Something that happened during a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        pipeline: String,
        nodes: usize,
        /// Every selected node with the nodes it depends on (the run report's critical path).
        deps: BTreeMap<String, Vec<String>>,
    },
    /// A node's inputs are ready; it waits for cpu/gpu/memory slots until `NodeStarted`.
    NodeQueued {
        node: String,
    },
    NodeCached {
        node: String,
        key: String,
    },
    NodeStarted {
        node: String,
        key: String,
        attempt: u32,
    },
    /// A node's attempt was submitted as a Slurm job.
    NodeSubmitted {
        node: String,
        job_id: String,
        attempt: u32,
    },
    NodeProgress {
        node: String,
        done: u64,
        total: u64,
        message: String,
    },
    NodeLog {
        node: String,
        line: String,
    },
    NodeRetry {
        node: String,
        attempt: u32,
        error: String,
    },
    NodeFinished {
        node: String,
        key: String,
        seconds: f64,
        /// CPU time, peak memory and I/O (absent for Slurm jobs, measured on the cluster).
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<NodeUsage>,
    },
    NodeFailed {
        node: String,
        key: String,
        seconds: f64,
        error: String,
        log_tail: Vec<String>,
    },
    NodeBlocked {
        node: String,
        by: String,
    },
    RunFinished {
        ok: bool,
        seconds: f64,
        interrupted: bool,
    },
}

/// Consumes events.
pub trait Reporter: Send {
    fn on(&mut self, event: &Event);
}

/// Fans events out to every reporter.
#[derive(Default)]
pub struct EventBus {
    reporters: Mutex<Vec<Box<dyn Reporter>>>,
}

impl EventBus {
    pub fn new(reporters: Vec<Box<dyn Reporter>>) -> EventBus {
        EventBus {
            reporters: Mutex::new(reporters),
        }
    }
    pub fn emit(&self, e: Event) {
        let mut rs = self.reporters.lock().unwrap_or_else(|p| p.into_inner());
        for r in rs.iter_mut() {
            r.on(&e);
        }
    }
}

/// Writes every event except log lines as one JSON object per line (`runs/<id>/events.jsonl`).
pub struct JsonlJournal {
    out: BufWriter<File>,
}

impl JsonlJournal {
    pub fn create(path: &Path) -> std::io::Result<JsonlJournal> {
        Ok(JsonlJournal {
            out: BufWriter::new(File::create(path)?),
        })
    }
}

impl Reporter for JsonlJournal {
    fn on(&mut self, e: &Event) {
        if matches!(e, Event::NodeLog { .. }) {
            return;
        }
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        if let Ok(mut v) = serde_json::to_value(e) {
            v["ts_ms"] = serde_json::json!(ts as u64);
            let _ = writeln!(self.out, "{v}");
        }
        // Transitions are flushed at once: `flow status` reads the journal during a run.
        if !matches!(e, Event::NodeProgress { .. }) {
            let _ = self.out.flush();
        }
    }
}

/// Emits tracing records for node transitions (what a non-interactive log shows).
pub struct TraceReporter;

impl Reporter for TraceReporter {
    fn on(&mut self, e: &Event) {
        match e {
            Event::NodeStarted { node, attempt, .. } if *attempt > 1 => {
                tracing::info!(node = %node, attempt, "retrying")
            }
            Event::NodeStarted { node, .. } => tracing::info!(node = %node, "started"),
            Event::NodeSubmitted { node, job_id, .. } => {
                tracing::info!(node = %node, job = %job_id, "submitted to Slurm")
            }
            Event::NodeFinished { node, seconds, .. } => {
                tracing::info!(node = %node, seconds = format!("{seconds:.2}"), "finished")
            }
            Event::NodeCached { node, .. } => tracing::debug!(node = %node, "cached"),
            Event::NodeRetry { node, error, .. } => {
                tracing::warn!(node = %node, "transient failure: {error}")
            }
            Event::NodeFailed { node, error, .. } => {
                tracing::error!(node = %node, "failed: {error}")
            }
            Event::NodeBlocked { node, by } => {
                tracing::warn!(node = %node, "not run: depends on failed node {by}")
            }
            // A fixed target: the binary never routes these back into the node's log.
            Event::NodeLog { node, line } => {
                tracing::debug!(target: "flow_node_log", node = %node, "{line}")
            }
            _ => {}
        }
    }
}

/// One node's line in the run report.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub id: String,
    pub state: NodeState,
    pub seconds: f64,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a skipped node did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The Slurm job id of the node's last attempt (nodes the Slurm executor ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// What the node used, for nodes that ran here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<NodeUsage>,
}

/// The `--report` JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub run_id: String,
    pub ok: bool,
    pub interrupted: bool,
    pub seconds: f64,
    pub nodes: Vec<NodeReport>,
}
