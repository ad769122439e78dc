//! The scheduler: one [`NodeSlot`] per node, walked in topological order. A node whose
//! inputs are all done gets its key; a cached one is served, the rest queue and start on
//! worker threads when the [`ResourcePool`] has room (a Slurm node when the cluster queue
//! has room); a failure blocks everything downstream and, without `--keep-going`, stops the
//! run from starting anything new.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flow_cache::{ActionResult, Digest, OutputRecord};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::EngineError;
use crate::events::{Event, EventBus, NodeReport, NodeState};
use crate::execute::{run_job, Failure, Job};
use crate::executor::slurm::Slurm;
use crate::pool::{Fit, Grant, Request, ResourcePool};
use crate::resolve::{key_node, ExternalDigests, KeyedNode};
use crate::state::StateDir;
use crate::usage::NodeUsage;
use crate::validate::Dag;

/// Where a node is in this run.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Some input is not done yet.
    Waiting,
    /// Keyed, not cached, waiting for resources.
    Queued,
    Running,
    Done(NodeState),
    Failed,
    /// Will not run: the reason names the failed node, the stop or the interruption.
    Blocked(String),
}

/// One node's part in the run.
#[derive(Debug)]
pub(crate) struct NodeSlot {
    phase: Phase,
    /// In the run's selection (targets and what they need).
    selected: bool,
    /// `--rerun`: ignore the cache.
    forced: bool,
    /// Runs as a Slurm job.
    on_slurm: bool,
    key: Option<Digest>,
    outputs: Option<BTreeMap<String, OutputRecord>>,
    seconds: f64,
    error: Option<String>,
    usage: Option<NodeUsage>,
}

impl NodeSlot {
    pub(crate) fn new(selected: bool, forced: bool, on_slurm: bool) -> Self {
        NodeSlot {
            phase: Phase::Waiting,
            selected,
            forced,
            on_slurm,
            key: None,
            outputs: None,
            seconds: 0.0,
            error: None,
            usage: None,
        }
    }
}

/// A finished attempt, sent back from its worker thread.
struct Finished {
    node: usize,
    /// What it held from the pool (None for a Slurm job).
    grant: Option<Grant>,
    result: Result<ActionResult, Failure>,
}

/// What the scheduler needs from the run besides the DAG.
pub(crate) struct RunContext {
    pub dag: Arc<Dag>,
    pub state: Arc<StateDir>,
    pub bus: Arc<EventBus>,
    pub cancel: Arc<AtomicBool>,
    pub ext: ExternalDigests,
    pub base_dir: std::path::PathBuf,
    pub run_dir: std::path::PathBuf,
    pub keep_going: bool,
    pub slurm: Option<Arc<Slurm>>,
}

pub(crate) struct Scheduler {
    cx: RunContext,
    nodes: Vec<NodeSlot>,
    queue: VecDeque<(usize, Job)>,
    pool: ResourcePool,
    /// Slurm jobs submitted and not finished, and the cap on them.
    slurm_queued: usize,
    slurm_max_queued: usize,
    /// Attempts started and not yet finished (local and Slurm).
    running: usize,
    /// The node whose failure stopped the run (without `--keep-going`).
    stop_reason: Option<String>,
    tx: UnboundedSender<Finished>,
    rx: UnboundedReceiver<Finished>,
}

impl Scheduler {
    pub(crate) fn new(cx: RunContext, nodes: Vec<NodeSlot>, pool: ResourcePool) -> Self {
        let slurm_max_queued = cx.slurm.as_ref().map_or(0, |s| s.max_queued());
        let (tx, rx) = unbounded_channel();
        Scheduler {
            cx,
            nodes,
            queue: VecDeque::new(),
            pool,
            slurm_queued: 0,
            slurm_max_queued,
            running: 0,
            stop_reason: None,
            tx,
            rx,
        }
    }

    /// Runs until nothing more can start and nothing is running.
    pub(crate) async fn drive(&mut self) -> Result<(), EngineError> {
        loop {
            self.advance()?;
            self.start_queued();
            if self.running == 0 {
                return Ok(());
            }
            let Some(done) = self.rx.recv().await else {
                return Ok(());
            };
            self.finish(done);
        }
    }

    /// One pass in topological order: blocks dependents of failures, keys nodes whose inputs
    /// are done, serves cached ones and queues the rest.
    fn advance(&mut self) -> Result<(), EngineError> {
        let dag = self.cx.dag.clone();
        for &i in &dag.order {
            if !self.nodes[i].selected || self.nodes[i].phase != Phase::Waiting {
                continue;
            }
            let deps = &dag.nodes[i].deps;
            if let Some(&bad) = deps
                .iter()
                .find(|&&d| matches!(self.nodes[d].phase, Phase::Failed | Phase::Blocked(_)))
            {
                let by = match &self.nodes[bad].phase {
                    Phase::Blocked(b) => b.clone(),
                    _ => dag.nodes[bad].id().to_string(),
                };
                self.block(i, by);
                continue;
            }
            if !deps
                .iter()
                .all(|&d| matches!(self.nodes[d].phase, Phase::Done(_)))
            {
                continue;
            }
            let nodes = &self.nodes;
            let upstream = |j: usize| nodes[j].outputs.as_ref();
            let Some(keyed) = key_node(&dag, i, &upstream, &self.cx.ext, &self.cx.base_dir) else {
                continue;
            };
            self.nodes[i].key = Some(keyed.key);
            if !self.nodes[i].forced && self.serve_cached(i, &keyed)? {
                continue;
            }
            let job = self.job_for(i, keyed);
            self.nodes[i].phase = Phase::Queued;
            self.cx.bus.emit(Event::NodeQueued {
                node: job.node.clone(),
            });
            self.queue.push_back((i, job));
        }
        Ok(())
    }

    /// Serves node `i` from the cache when its key has a record whose blobs are all present.
    fn serve_cached(&mut self, i: usize, keyed: &KeyedNode) -> Result<bool, EngineError> {
        let Some(hit) = self.cx.state.index.lookup_outputs(&keyed.key)? else {
            return Ok(false);
        };
        // Every referenced blob, not just the top ones: a directory output that lost an inner
        // file re-runs its producer instead of failing consumers.
        if !self.cx.state.store.contains_all(&hit.blobs) {
            return Ok(false);
        }
        self.nodes[i].outputs = Some(hit.outputs);
        self.nodes[i].phase = Phase::Done(NodeState::Cached);
        self.cx.bus.emit(Event::NodeCached {
            node: self.cx.dag.nodes[i].id().into(),
            key: keyed.key.to_hex(),
        });
        Ok(true)
    }

    fn job_for(&self, i: usize, keyed: KeyedNode) -> Job {
        let node = &self.cx.dag.nodes[i];
        let on_slurm = self.nodes[i].on_slurm;
        Job {
            node: node.id().to_string(),
            stage: node.stage.clone(),
            params: node.params.clone(),
            key: keyed.key,
            manifest: keyed.manifest,
            inputs: keyed.inputs,
            outputs: node.outputs.clone(),
            resources: node.spec.resources.clone(),
            retry: node.spec.retry.clone(),
            gpus: Vec::new(),
            // A Slurm job gets the CPUs it asks for; a local node's are set from its pool
            // grant when it starts.
            threads: node.spec.resources.cpu,
            state: self.cx.state.clone(),
            bus: self.cx.bus.clone(),
            cancel: self.cx.cancel.clone(),
            log_path: self
                .cx
                .run_dir
                .join("logs")
                .join(format!("{}.log", node.id())),
            slurm: if on_slurm {
                self.cx.slurm.clone()
            } else {
                None
            },
        }
    }

    /// Starts queued nodes that fit, in queue order; a node that fits later stays queued
    /// without holding back smaller ones behind it.
    fn start_queued(&mut self) {
        if self.stop_reason.is_some() || self.cx.cancel.load(Ordering::Relaxed) {
            return;
        }
        let mut k = 0;
        while k < self.queue.len() {
            let i = self.queue[k].0;
            if self.nodes[i].on_slurm {
                // The cluster schedules cpus, GPUs and memory; flow caps what it queues.
                if self.slurm_queued < self.slurm_max_queued {
                    let (i, job) = self.queue.remove(k).expect("index in range");
                    self.slurm_queued += 1;
                    self.spawn(i, job, None);
                } else {
                    k += 1;
                }
                continue;
            }
            let r = &self.queue[k].1.resources;
            let req = Request {
                cpu: r.cpu,
                gpu: r.gpu,
                memory_mb: r.memory_mb,
            };
            match self.pool.fit(&req) {
                Fit::Now => {
                    let grant = self.pool.acquire(&req).expect("fit now");
                    let (i, mut job) = self.queue.remove(k).expect("index in range");
                    job.threads = grant.cpu;
                    job.gpus = grant.gpus.clone();
                    self.spawn(i, job, Some(grant));
                }
                Fit::Later => k += 1,
                Fit::Never(msg) => {
                    let (i, job) = self.queue.remove(k).expect("index in range");
                    let _ = self.cx.state.index.record_failure(&job.node, &msg);
                    self.fail(i, job.key.to_hex(), 0.0, msg, vec![]);
                }
            }
        }
    }

    fn spawn(&mut self, i: usize, job: Job, grant: Option<Grant>) {
        self.nodes[i].phase = Phase::Running;
        self.running += 1;
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = run_job(job);
            let _ = tx.send(Finished {
                node: i,
                grant,
                result,
            });
        });
    }

    /// Records a finished attempt and gives back what it held.
    fn finish(&mut self, done: Finished) {
        let i = done.node;
        self.running -= 1;
        match done.grant {
            Some(grant) => self.pool.release(grant),
            None => self.slurm_queued -= 1,
        }
        let id = self.cx.dag.nodes[i].id().to_string();
        match done.result {
            Ok(res) => {
                let used = usage_of(&res);
                let slot = &mut self.nodes[i];
                slot.seconds = res.seconds;
                slot.usage = used;
                self.cx.bus.emit(Event::NodeFinished {
                    node: id,
                    key: res.key.to_hex(),
                    seconds: res.seconds,
                    usage: used,
                });
                slot.outputs = Some(res.outputs);
                slot.phase = Phase::Done(NodeState::Ran);
            }
            Err(f) if f.cancelled => {
                self.nodes[i].seconds = f.seconds;
                self.nodes[i].error = Some("interrupted".into());
                self.block(i, "interrupted".into());
            }
            Err(f) => {
                let key = self.nodes[i].key.map(|k| k.to_hex()).unwrap_or_default();
                self.fail(i, key, f.seconds, f.message, f.log_tail);
            }
        }
    }

    fn fail(&mut self, i: usize, key: String, seconds: f64, error: String, log_tail: Vec<String>) {
        let id = self.cx.dag.nodes[i].id().to_string();
        self.cx.bus.emit(Event::NodeFailed {
            node: id.clone(),
            key,
            seconds,
            error: error.clone(),
            log_tail,
        });
        let slot = &mut self.nodes[i];
        slot.seconds = seconds;
        slot.error = Some(error);
        slot.phase = Phase::Failed;
        if !self.cx.keep_going {
            self.stop_reason = Some(id);
        }
    }

    fn block(&mut self, i: usize, by: String) {
        self.cx.bus.emit(Event::NodeBlocked {
            node: self.cx.dag.nodes[i].id().into(),
            by: by.clone(),
        });
        self.nodes[i].phase = Phase::Blocked(by);
    }

    /// Marks what never started: blocked by the stop, the interruption, or not reached.
    pub(crate) fn block_unstarted(&mut self) {
        let interrupted = self.cx.cancel.load(Ordering::Relaxed);
        let dag = self.cx.dag.clone();
        for &i in &dag.order {
            let slot = &self.nodes[i];
            if slot.selected && matches!(slot.phase, Phase::Waiting | Phase::Queued) {
                let by = if interrupted {
                    "interrupted".to_string()
                } else {
                    self.stop_reason
                        .as_ref()
                        .map(|s| format!("run stopped after `{s}` failed"))
                        .unwrap_or_else(|| "not reached".into())
                };
                self.block(i, by);
            }
        }
    }

    /// Each node's outputs, by index (None: not done).
    pub(crate) fn outputs(&self) -> Vec<Option<&BTreeMap<String, OutputRecord>>> {
        self.nodes.iter().map(|s| s.outputs.as_ref()).collect()
    }

    /// The report rows, in topological order; `skipped` is the reason shown for nodes
    /// outside the selection.
    pub(crate) fn node_reports(&self, skipped: &str) -> Vec<NodeReport> {
        let dag = &self.cx.dag;
        dag.order
            .iter()
            .map(|&i| {
                let slot = &self.nodes[i];
                NodeReport {
                    id: dag.nodes[i].id().to_string(),
                    state: match &slot.phase {
                        _ if !slot.selected => NodeState::Skipped,
                        Phase::Done(s) => *s,
                        Phase::Failed => NodeState::Failed,
                        _ => NodeState::Blocked,
                    },
                    seconds: slot.seconds,
                    key: slot.key.map(|k| k.to_hex()).unwrap_or_default(),
                    error: slot.error.clone().or_else(|| match &slot.phase {
                        Phase::Blocked(b) if slot.selected => Some(format!("blocked: {b}")),
                        _ => None,
                    }),
                    reason: (!slot.selected).then(|| skipped.to_string()),
                    job_id: self
                        .cx
                        .slurm
                        .as_ref()
                        .and_then(|s| s.job_id(dag.nodes[i].id())),
                    usage: slot.usage,
                }
            })
            .collect()
    }
}

/// The usage a finished node's record holds (none for a Slurm job: its CPU and memory were
/// spent on the cluster, not measured here).
fn usage_of(r: &ActionResult) -> Option<NodeUsage> {
    Some(NodeUsage {
        cpu_seconds: r.cpu_seconds?,
        peak_rss_kb: r.peak_rss_kb?,
        read_bytes: r.read_bytes.unwrap_or(0),
        written_bytes: r.written_bytes.unwrap_or(0),
        gpu_peak_mb: r.gpu_peak_mb,
    })
}
