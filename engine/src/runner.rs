//! The scheduler: walks the DAG, serves cached nodes, runs the rest on blocking worker
//! threads within the cpu/gpu/memory budget, and stops (or keeps going) on failure.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flow_cache::{Digest, OutputRecord};

use crate::error::EngineError;
use crate::events::{Event, EventBus, NodeReport, NodeState, RunReport};
use crate::execute::{run_job, Failure, Job};
use crate::executor::slurm::{self, Slurm};
use crate::publish::{publish_node, PublishMode};
use crate::resolve::{key_node, ExternalDigests};
use crate::spec::ExecutorKind;
use crate::state::StateDir;
use crate::usage::NodeUsage;
use crate::validate::Dag;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cpu slots (threads) shared by running nodes.
    pub jobs: usize,
    pub keep_going: bool,
    /// Run only these nodes and what they need (empty: everything).
    pub targets: Vec<String>,
    /// Force these nodes and everything downstream of them to run.
    pub rerun: Vec<String>,
    /// GPU ids available to gpu nodes.
    pub gpus: Vec<usize>,
    /// Memory budget in MiB for nodes that declare `memory`.
    pub memory_mb: Option<u64>,
    /// Where relative external paths are resolved (the working directory).
    pub base_dir: PathBuf,
    /// `results/` root for published outputs (None: don't publish).
    pub results_dir: Option<PathBuf>,
    /// Names this run's directory under `runs/` (see [`new_run_id`]).
    pub run_id: String,
    /// `--executor`: overrides the pipeline's default executor (a node's own still wins).
    pub executor: Option<ExecutorKind>,
}

/// A fresh, sortable run id: UTC time plus the process id.
pub fn new_run_id() -> String {
    format!("{}-{}", utc_stamp(), std::process::id())
}

#[derive(Debug, Clone, PartialEq)]
enum St {
    Waiting,
    Ready,
    Running,
    Done(NodeState),
    Failed,
    Blocked(String),
}

/// Which nodes a run covers and which it forces.
pub fn selection(
    dag: &Dag,
    targets: &[String],
    rerun: &[String],
) -> Result<(Vec<bool>, Vec<bool>), EngineError> {
    let find = |id: &String| {
        dag.index_of(id).ok_or_else(|| {
            EngineError::Usage(format!(
                "no node `{id}` in {} (`flow graph` lists them)",
                dag.file.display()
            ))
        })
    };
    // No `--target`: the pipeline's own `targets:`, else every node.
    let targets = if targets.is_empty() {
        &dag.targets
    } else {
        targets
    };
    let mut selected = vec![targets.is_empty(); dag.nodes.len()];
    for t in targets {
        for a in dag.ancestors(find(t)?) {
            selected[a] = true;
        }
    }
    let mut forced = vec![false; dag.nodes.len()];
    for r in rerun {
        for d in dag.descendants(find(r)?) {
            forced[d] = true;
        }
    }
    Ok((selected, forced))
}

/// Runs `dag`. Returns the report; node failures are in it, not errors.
pub async fn run(
    dag: Arc<Dag>,
    state: Arc<StateDir>,
    opts: RunOptions,
    bus: Arc<EventBus>,
    cancel: Arc<AtomicBool>,
) -> Result<RunReport, EngineError> {
    let t0 = Instant::now();
    let run_id = opts.run_id.clone();
    let run_dir = state.run_dir(&run_id);
    std::fs::create_dir_all(run_dir.join("logs")).map_err(|e| EngineError::Io {
        what: format!("create {}", run_dir.display()),
        cause: e,
    })?;
    // Jobs a dead coordinator left running are cancelled (and gone) before scratch dirs are
    // wiped and anything starts: a node never runs twice at once.
    {
        let root = state.root.clone();
        tokio::task::spawn_blocking(move || slurm::recover(&root))
            .await
            .expect("recovery task")?;
    }
    state.clean_scratch()?;
    let (selected, forced) = selection(&dag, &opts.targets, &opts.rerun)?;
    let on_slurm: Vec<bool> = dag
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            selected[i]
                && crate::executor::choose(node.spec.executor, opts.executor, dag.executor.default)
                    == ExecutorKind::Slurm
        })
        .collect();
    let slurm: Option<Arc<Slurm>> = if on_slurm.iter().any(|&s| s) {
        Some(Arc::new(Slurm::new(
            dag.executor.slurm.clone(),
            &state.root,
            cancel.clone(),
        )?))
    } else {
        None
    };
    let max_queued = slurm.as_ref().map_or(0, |s| s.max_queued());
    let mut queued = 0usize;
    let ext = {
        let (dag, state, sel, base) = (
            dag.clone(),
            state.clone(),
            selected.clone(),
            opts.base_dir.clone(),
        );
        tokio::task::spawn_blocking(move || ExternalDigests::compute(&dag, &sel, &state, &base))
            .await
            .expect("hashing task")?
    };
    let n = dag.nodes.len();
    bus.emit(Event::RunStarted {
        run_id: run_id.clone(),
        pipeline: dag.name.clone(),
        nodes: selected.iter().filter(|s| **s).count(),
        deps: (0..dag.nodes.len())
            .filter(|&i| selected[i])
            .map(|i| {
                let deps = dag.nodes[i]
                    .deps
                    .iter()
                    .map(|&d| dag.nodes[d].id().to_string());
                (dag.nodes[i].id().to_string(), deps.collect())
            })
            .collect(),
    });

    let mut st = vec![St::Waiting; n];
    let mut outputs: Vec<Option<BTreeMap<String, OutputRecord>>> = vec![None; n];
    let mut keys: Vec<Option<Digest>> = vec![None; n];
    let mut seconds = vec![0.0f64; n];
    let mut errors: Vec<Option<String>> = vec![None; n];
    let mut usage: Vec<Option<NodeUsage>> = vec![None; n];
    let mut jobs_ready: VecDeque<(usize, Job)> = VecDeque::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(
        usize,
        Vec<usize>,
        Result<flow_cache::ActionResult, Failure>,
    )>();
    let jobs = opts.jobs.max(1);
    let mut free_cpu = jobs;
    let mut free_gpus = opts.gpus.clone();
    let mut free_mem = opts.memory_mb;
    let mut running = 0usize;
    let mut stop_reason: Option<String> = None;

    loop {
        // Advance in topological order: key ready nodes, serve cached ones, block dependents of failures.
        for &i in &dag.order {
            if !selected[i] || st[i] != St::Waiting {
                continue;
            }
            let deps = &dag.nodes[i].deps;
            if let Some(&bad) = deps
                .iter()
                .find(|&&d| matches!(st[d], St::Failed | St::Blocked(_)))
            {
                let by = match &st[bad] {
                    St::Blocked(b) => b.clone(),
                    _ => dag.nodes[bad].id().to_string(),
                };
                bus.emit(Event::NodeBlocked {
                    node: dag.nodes[i].id().into(),
                    by: by.clone(),
                });
                st[i] = St::Blocked(by);
                continue;
            }
            if !deps.iter().all(|&d| matches!(st[d], St::Done(_))) {
                continue;
            }
            let Some(keyed) = key_node(&dag, i, &outputs, &ext, &opts.base_dir) else {
                continue;
            };
            keys[i] = Some(keyed.key);
            if !forced[i] {
                if let Some(hit) = state.index.lookup(&keyed.key)? {
                    // Every referenced blob, not just the top ones: a directory output that
                    // lost an inner file re-runs its producer instead of failing consumers.
                    if state.store.contains_all(&hit.blobs) {
                        outputs[i] = Some(hit.outputs);
                        st[i] = St::Done(NodeState::Cached);
                        bus.emit(Event::NodeCached {
                            node: dag.nodes[i].id().into(),
                            key: keyed.key.to_hex(),
                        });
                        continue;
                    }
                }
            }
            let node = &dag.nodes[i];
            let job = Job {
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
                // A Slurm job gets the CPUs it asks for; a local node shares `--jobs`.
                threads: if on_slurm[i] {
                    node.spec.resources.cpu
                } else {
                    node.spec.resources.cpu.min(jobs)
                },
                state: state.clone(),
                bus: bus.clone(),
                cancel: cancel.clone(),
                log_path: run_dir.join("logs").join(format!("{}.log", node.id())),
                slurm: if on_slurm[i] { slurm.clone() } else { None },
            };
            st[i] = St::Ready;
            bus.emit(Event::NodeQueued {
                node: job.node.clone(),
            });
            jobs_ready.push_back((i, job));
        }

        // Start what fits.
        let interrupted = cancel.load(Ordering::Relaxed);
        if stop_reason.is_none() && !interrupted {
            let mut k = 0;
            while k < jobs_ready.len() {
                let (i, job) = &jobs_ready[k];
                let i = *i;
                if on_slurm[i] {
                    // The cluster schedules cpus, GPUs and memory; flow caps what it queues.
                    if queued < max_queued {
                        let (i, job) = jobs_ready.remove(k).expect("index in range");
                        st[i] = St::Running;
                        running += 1;
                        queued += 1;
                        let tx = tx.clone();
                        tokio::task::spawn_blocking(move || {
                            let r = run_job(job);
                            let _ = tx.send((i, Vec::new(), r));
                        });
                    } else {
                        k += 1;
                    }
                    continue;
                }
                let r = job.resources.clone();
                let threads = job.threads;
                let mem_ok = match (r.memory_mb, free_mem) {
                    (Some(need), Some(free)) => need <= free || running == 0,
                    _ => true,
                };
                if r.gpu > opts.gpus.len() {
                    let (_, job) = jobs_ready.remove(k).expect("index in range");
                    let msg = format!("needs {} GPU(s) but {} are available (pass --gpus, or set CUDA_VISIBLE_DEVICES)", r.gpu, opts.gpus.len());
                    let _ = state.index.record_failure(&job.node, &msg);
                    bus.emit(Event::NodeFailed {
                        node: job.node.clone(),
                        key: job.key.to_hex(),
                        seconds: 0.0,
                        error: msg.clone(),
                        log_tail: vec![],
                    });
                    st[i] = St::Failed;
                    errors[i] = Some(msg);
                    if !opts.keep_going {
                        stop_reason = Some(dag.nodes[i].id().to_string());
                    }
                    continue;
                }
                if threads <= free_cpu && r.gpu <= free_gpus.len() && mem_ok {
                    let (i, mut job) = jobs_ready.remove(k).expect("index in range");
                    free_cpu -= job.threads;
                    let gpus: Vec<usize> = free_gpus.drain(..job.resources.gpu).collect();
                    job.gpus = gpus.clone();
                    if let (Some(need), Some(free)) = (job.resources.memory_mb, free_mem.as_mut()) {
                        *free = free.saturating_sub(need);
                    }
                    st[i] = St::Running;
                    running += 1;
                    let tx = tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let r = run_job(job);
                        let _ = tx.send((i, gpus, r));
                    });
                } else {
                    k += 1;
                }
            }
        }
        if running == 0 {
            break;
        }
        let Some((i, gpus, result)) = rx.recv().await else {
            break;
        };
        running -= 1;
        let node = &dag.nodes[i];
        if on_slurm[i] {
            queued -= 1;
        } else {
            free_cpu += node.spec.resources.cpu.min(jobs);
            free_gpus.extend(gpus);
            if let (Some(need), Some(free)) = (node.spec.resources.memory_mb, free_mem.as_mut()) {
                *free += need;
            }
        }
        match result {
            Ok(res) => {
                seconds[i] = res.seconds;
                let used = usage_of(&res);
                usage[i] = used;
                bus.emit(Event::NodeFinished {
                    node: node.id().into(),
                    key: res.key.to_hex(),
                    seconds: res.seconds,
                    usage: used,
                });
                outputs[i] = Some(res.outputs);
                st[i] = St::Done(NodeState::Ran);
            }
            Err(f) => {
                seconds[i] = f.seconds;
                if f.cancelled {
                    st[i] = St::Blocked("interrupted".into());
                    errors[i] = Some("interrupted".into());
                    bus.emit(Event::NodeBlocked {
                        node: node.id().into(),
                        by: "interrupted".into(),
                    });
                } else {
                    bus.emit(Event::NodeFailed {
                        node: node.id().into(),
                        key: keys[i].map(|k| k.to_hex()).unwrap_or_default(),
                        seconds: f.seconds,
                        error: f.message.clone(),
                        log_tail: f.log_tail,
                    });
                    errors[i] = Some(f.message);
                    st[i] = St::Failed;
                    if !opts.keep_going {
                        stop_reason = Some(node.id().to_string());
                    }
                }
            }
        }
    }

    let interrupted = cancel.load(Ordering::Relaxed);
    // Whatever never started: blocked by the stop, the interruption, or a failure upstream.
    for &i in &dag.order {
        if selected[i] && matches!(st[i], St::Waiting | St::Ready) {
            let by = if interrupted {
                "interrupted".to_string()
            } else {
                stop_reason
                    .clone()
                    .map(|s| format!("run stopped after `{s}` failed"))
                    .unwrap_or_else(|| "not reached".into())
            };
            bus.emit(Event::NodeBlocked {
                node: dag.nodes[i].id().into(),
                by: by.clone(),
            });
            st[i] = St::Blocked(by);
        }
    }
    if let Some(root) = &opts.results_dir {
        publish(&dag, &state, &outputs, &selected, root);
    }
    let skipped = crate::inspect::not_needed(&dag, &opts.targets);
    let nodes: Vec<NodeReport> = dag
        .order
        .iter()
        .map(|&i| NodeReport {
            id: dag.nodes[i].id().to_string(),
            state: match &st[i] {
                _ if !selected[i] => NodeState::Skipped,
                St::Done(s) => *s,
                St::Failed => NodeState::Failed,
                _ => NodeState::Blocked,
            },
            seconds: seconds[i],
            key: keys[i].map(|k| k.to_hex()).unwrap_or_default(),
            error: errors[i].clone().or_else(|| match &st[i] {
                St::Blocked(b) if selected[i] => Some(format!("blocked: {b}")),
                _ => None,
            }),
            reason: (!selected[i]).then(|| skipped.clone()),
            job_id: slurm.as_ref().and_then(|s| s.job_id(dag.nodes[i].id())),
            usage: usage[i],
        })
        .collect();
    let ok = nodes.iter().all(|n| {
        matches!(
            n.state,
            NodeState::Ran | NodeState::Cached | NodeState::Skipped
        )
    });
    let secs = t0.elapsed().as_secs_f64();
    bus.emit(Event::RunFinished {
        ok,
        seconds: secs,
        interrupted,
    });
    state.index.flush()?;
    Ok(RunReport {
        pipeline: dag.name.clone(),
        run_id,
        ok,
        interrupted,
        seconds: secs,
        nodes,
    })
}

/// Publishes the outputs of sink nodes and `publish:` nodes under
/// `results/<pipeline>/<node>/` (see [`crate::publish`]).
fn publish(
    dag: &Dag,
    state: &StateDir,
    outputs: &[Option<BTreeMap<String, OutputRecord>>],
    selected: &[bool],
    root: &Path,
) {
    let sinks = dag.sinks();
    for (i, node) in dag.nodes.iter().enumerate() {
        let mode = match node.spec.publish {
            Some(mode) => mode,
            None if sinks.contains(&i) => PublishMode::default(),
            None => continue,
        };
        if !selected[i] {
            continue;
        }
        let Some(outs) = &outputs[i] else { continue };
        let dir = root.join(&dag.name).join(node.id());
        if let Err(e) = publish_node(&state.store, outs, &dir, mode) {
            tracing::warn!(
                "cannot publish the outputs of {} to {}: {e}",
                node.id(),
                dir.display()
            );
        }
    }
}

/// `YYYYMMDDTHHMMSS` in UTC, without a date crate.
pub(crate) fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The usage a finished node's record holds (none for a Slurm job: its CPU and memory were
/// spent on the cluster, not measured here).
fn usage_of(r: &flow_cache::ActionResult) -> Option<NodeUsage> {
    Some(NodeUsage {
        cpu_seconds: r.cpu_seconds?,
        peak_rss_kb: r.peak_rss_kb?,
        read_bytes: r.read_bytes.unwrap_or(0),
        written_bytes: r.written_bytes.unwrap_or(0),
        gpu_peak_mb: r.gpu_peak_mb,
    })
}
