//! The scheduler: walks the DAG, serves cached nodes, runs the rest on blocking worker
//! threads within the cpu/gpu/memory budget, and stops (or keeps going) on failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flow_cache::OutputRecord;

use crate::error::EngineError;
use crate::events::{Event, EventBus, NodeState, RunReport};
use crate::executor::slurm::{self, Slurm};
use crate::pool::ResourcePool;
use crate::publish::{publish_node, PublishMode};
use crate::resolve::ExternalDigests;
use crate::scheduler::{NodeSlot, RunContext, Scheduler};
use crate::spec::ExecutorKind;
use crate::state::StateDir;
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

    let slots = (0..dag.nodes.len())
        .map(|i| NodeSlot::new(selected[i], forced[i], on_slurm[i]))
        .collect();
    let pool = ResourcePool::new(opts.jobs, opts.gpus.clone(), opts.memory_mb);
    let cx = RunContext {
        dag: dag.clone(),
        state: state.clone(),
        bus: bus.clone(),
        cancel: cancel.clone(),
        ext,
        base_dir: opts.base_dir.clone(),
        run_dir,
        keep_going: opts.keep_going,
        slurm,
    };
    let mut scheduler = Scheduler::new(cx, slots, pool);
    scheduler.drive().await?;
    scheduler.block_unstarted();

    let interrupted = cancel.load(Ordering::Relaxed);
    if let Some(root) = &opts.results_dir {
        publish(&dag, &state, &scheduler.outputs(), &selected, root);
    }
    let nodes = scheduler.node_reports(&crate::inspect::not_needed(&dag, &opts.targets));
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
    outputs: &[Option<&BTreeMap<String, OutputRecord>>],
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
        let Some(outs) = outputs[i] else { continue };
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
