//! The Slurm executor: one node attempt as one batch job.
//!
//! The coordinator prepares the attempt as for a local run (scratch dir, materialised
//! inputs), writes the resolved node to `<scratch>/node.json` and a batch script running
//! `flow exec-node` on it, submits it with `sbatch --parsable`, records the job id in the
//! [`Ledger`], follows the job's output file into the node's log while the [`Tracker`] polls,
//! and turns the final Slurm state and the job's `result.json` into the node's result:
//! outputs are then ingested by the coordinator, the only writer of the store and index.
//! The state dir and the flow binary must be on a filesystem the compute nodes share.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::EngineError;
use crate::events::{Event, EventBus};
use crate::executor::arrays::{single_args, ArrayBatcher, Submission, Submitted, ARRAY_WINDOW};
use crate::executor::commands::{on_path, RealCli, SlurmCli};
use crate::executor::job::{write_json, NodeFile, NodeOutcome, NODE_FILE};
use crate::executor::ledger::{self, Ledger};
use crate::executor::status::{JobState, Seen};
use crate::executor::tracker::Tracker;
use crate::spec::{GpuFlag, MemoryFlag, Resources, SlurmSettings};
use crate::stage::{StageContext, StageError};

/// See the module docs.
pub struct Slurm {
    settings: SlurmSettings,
    /// The flow binary the jobs run (this one, on a shared filesystem).
    exe: PathBuf,
    tracker: Arc<Tracker>,
    ledger: Ledger,
    /// Node id -> its last job's id (for the run report).
    job_ids: Mutex<BTreeMap<String, String>>,
    /// Gathers bursts of submissions into job arrays.
    arrays: ArrayBatcher,
}

impl Slurm {
    /// The executor for a run on state dir `root`. Fails (a usage error) when `sbatch` is not
    /// on `PATH`.
    pub fn new(
        settings: SlurmSettings,
        root: &Path,
        cancel: Arc<AtomicBool>,
    ) -> Result<Slurm, EngineError> {
        if !on_path("sbatch") || !on_path("squeue") {
            return Err(EngineError::Usage(
                "the slurm executor needs sbatch and squeue on PATH (for a local test cluster: scripts/slurm-local.sh up), or run with --executor local".into(),
            ));
        }
        let exe = std::env::var_os("FLOW_SLURM_EXE")
            .map(PathBuf::from)
            .map(Ok)
            .unwrap_or_else(std::env::current_exe)
            .map_err(|e| EngineError::Io {
                what: "find the flow binary for Slurm jobs".into(),
                cause: e,
            })?;
        let cli: Arc<dyn SlurmCli> = Arc::new(RealCli);
        Ok(Slurm {
            settings,
            exe,
            tracker: Tracker::new(cli.clone(), cancel),
            arrays: ArrayBatcher::new(cli, ARRAY_WINDOW),
            ledger: Ledger::new(root),
            job_ids: Mutex::new(BTreeMap::new()),
        })
    }

    /// Jobs submitted and not finished at once, at most.
    pub fn max_queued(&self) -> usize {
        self.settings.max_queued
    }

    /// The last Slurm job id of `node` in this run.
    pub fn job_id(&self, node: &str) -> Option<String> {
        self.job_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .cloned()
    }

    /// Runs one attempt of the node whose context `ctx` the engine prepared, as a job.
    pub fn run_node(
        &self,
        ctx: &StageContext,
        stage: &str,
        resources: &Resources,
        attempt: u32,
        bus: &EventBus,
    ) -> Result<(), StageError> {
        let scratch = &ctx.scratch_dir;
        let spec = NodeFile {
            node: ctx.node.clone(),
            stage: stage.to_string(),
            params: ctx.params.clone(),
            inputs: ctx.inputs.clone(),
            outputs: ctx.outputs.clone(),
            checkpoint_dir: ctx.checkpoint_dir.clone(),
            scratch_dir: scratch.clone(),
            threads: ctx.threads,
            gpu: resources.gpu,
            env: ctx.env.clone(),
            transient_exit_codes: ctx.transient_exit_codes.clone(),
        };
        let io = |what: String| move |e: std::io::Error| StageError::wrap(what, e);
        let node_file = scratch.join(NODE_FILE);
        write_json(&node_file, &spec)
            .map_err(io(format!("cannot write {}", node_file.display())))?;
        let script = scratch.join("job.sh");
        std::fs::write(
            &script,
            batch_script(&self.exe, &node_file, &ctx.node, attempt),
        )
        .map_err(io(format!("cannot write {}", script.display())))?;
        let Submitted { id, out, args } = self
            .arrays
            .submit(Submission {
                node: ctx.node.clone(),
                shared: shared_args(&self.settings, resources),
                script,
                workdir: scratch.clone(),
                out: scratch.join("job.out"),
            })
            .map_err(|e| StageError::wrap("cannot submit the Slurm job", e))?;
        if let Err(e) = self.ledger.add(&id, &ctx.node) {
            tracing::warn!("cannot record Slurm job {id}: {e}");
        }
        self.job_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ctx.node.clone(), id.clone());
        bus.emit(Event::NodeSubmitted {
            node: ctx.node.clone(),
            job_id: id.clone(),
            attempt,
        });
        ctx.log(&format!("[flow] Slurm job {id}: sbatch {}", args.join(" ")));
        self.tracker.watch(&id, &today());
        let mut tail = Tail::new(out);
        let mut memory_killed = false;
        let mut follow = |tail: &mut Tail| {
            tail.pump(|line| {
                memory_killed |= line.contains("Exceeded job memory limit")
                    || line.contains("exceeded memory limit");
                ctx.log(line)
            })
        };
        let seen = loop {
            if let Some(seen) = self.tracker.wait(&id, Duration::from_millis(500)) {
                break seen;
            }
            follow(&mut tail);
        };
        follow(&mut tail);
        tail.finish(|line| ctx.log(line));
        self.ledger.remove(&id);
        let outcome = NodeOutcome::read(scratch);
        judge(
            &id,
            &seen,
            outcome.as_ref(),
            self.tracker.was_cancelled(&id),
            memory_killed,
            resources,
            self.settings.time.as_deref(),
        )
    }
}

/// Cancels the jobs an earlier coordinator of `root` left running (see [`ledger::recover`]).
pub fn recover(root: &Path) -> Result<Vec<String>, EngineError> {
    ledger::recover(root, &RealCli)
}

/// Cancels the jobs listed in the ledger of `root` at once (see [`ledger::cancel_listed`]).
pub fn cancel_listed(root: &Path) {
    ledger::cancel_listed(root, &RealCli)
}

/// Today as `YYYY-MM-DD` (UTC), for sacct's `--starttime`.
fn today() -> String {
    let t = crate::runner::utc_stamp();
    format!("{}-{}-{}", &t[0..4], &t[4..6], &t[6..8])
}

/// Single-quotes `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script: runs `flow exec-node` on the node file (exec: signals reach flow).
pub fn batch_script(exe: &Path, node_file: &Path, node: &str, attempt: u32) -> String {
    format!(
        "#!/bin/sh\n# flow node `{node}`, attempt {attempt}\nexec {} --quiet exec-node {}\n",
        sh_quote(&exe.display().to_string()),
        sh_quote(&node_file.display().to_string())
    )
}

/// The sbatch arguments for one node as a job of its own (see [`shared_args`]).
pub fn sbatch_args(
    s: &SlurmSettings,
    r: &Resources,
    node: &str,
    out: &Path,
    workdir: &Path,
    script: &Path,
) -> Vec<String> {
    single_args(&Submission {
        node: node.to_string(),
        shared: shared_args(s, r),
        script: script.to_path_buf(),
        workdir: workdir.to_path_buf(),
        out: out.to_path_buf(),
    })
}

/// The flags nodes must share to go in one array: resources (`--cpus-per-task`, `--mem` or
/// `--mem-per-cpu`, `--gres=gpu:N` or `--gpus`, `--time`), the pipeline's Slurm settings, and
/// its extra flags last (so they can override).
pub fn shared_args(s: &SlurmSettings, r: &Resources) -> Vec<String> {
    let mut a = vec![
        "--ntasks=1".to_string(),
        format!("--cpus-per-task={}", r.cpu),
        // flow retries (`retry`) instead of Slurm requeueing: one node, one job at a time.
        "--no-requeue".into(),
    ];
    if let Some(mb) = r.memory_mb {
        a.push(match s.memory {
            MemoryFlag::Mem => format!("--mem={mb}M"),
            MemoryFlag::MemPerCpu => format!("--mem-per-cpu={}M", mb.div_ceil(r.cpu as u64)),
        });
    }
    if r.gpu > 0 {
        a.push(match s.gpus {
            GpuFlag::Gres => format!("--gres=gpu:{}", r.gpu),
            GpuFlag::Gpus => format!("--gpus={}", r.gpu),
        });
    }
    if let Some(t) = r.time.as_ref().or(s.time.as_ref()) {
        a.push(format!("--time={t}"));
    }
    for (flag, v) in [
        ("--partition", &s.partition),
        ("--account", &s.account),
        ("--qos", &s.qos),
    ] {
        if let Some(v) = v {
            a.push(format!("{flag}={v}"));
        }
    }
    a.extend(s.sbatch.iter().cloned());
    a
}

/// The node's result from how its job ended: `seen` (Slurm), `outcome` (what `flow
/// exec-node` wrote, if it got that far), whether this run cancelled it, and whether
/// slurmstepd said it killed the job for its memory.
pub fn judge(
    id: &str,
    seen: &Seen,
    outcome: Option<&NodeOutcome>,
    we_cancelled: bool,
    memory_killed: bool,
    r: &Resources,
    default_time: Option<&str>,
) -> Result<(), StageError> {
    let f = match seen {
        Seen::Finished(f) => f,
        _ if we_cancelled => return Err(StageError::Cancelled),
        Seen::Active(st) => {
            return Err(StageError::msg(format!(
                "Slurm job {id} is still {} but flow stopped waiting for it",
                st.name()
            )))
        }
        Seen::Unknown(why) => {
            return Err(StageError::msg(format!(
                "Slurm job {id}: its outcome is unknown ({why}); the node counts as failed, not done"
            )));
        }
    };
    if f.state == JobState::Completed && outcome.is_some_and(|o| o.ok) {
        return Ok(());
    }
    if we_cancelled {
        return Err(StageError::Cancelled);
    }
    // The stage itself failed (and said why) while Slurm let it run to its end. When Slurm
    // ended the job (time limit, scancel, memory, a lost node) it signalled every process of
    // the job, so the stage's own error ("killed by a signal") is a symptom: the state wins.
    let slurm_ended_it = match f.state {
        JobState::Failed => memory_killed,
        JobState::Completed => false,
        _ => true,
    };
    if let Some(o) = outcome.filter(|o| !o.ok && !o.cancelled && !slurm_ended_it) {
        let msg = format!(
            "Slurm job {id}: {}",
            o.error.as_deref().unwrap_or("the stage failed")
        );
        return Err(if o.transient {
            StageError::transient(msg)
        } else {
            StageError::msg(msg)
        });
    }
    let reason = if f.reason.is_empty() {
        String::new()
    } else {
        format!(", reason {}", f.reason)
    };
    let mem = r
        .memory_mb
        .map(|m| format!(" of {m} MiB"))
        .unwrap_or_default();
    let st = f.state.name();
    let msg = match &f.state {
        JobState::OutOfMemory => format!(
            "Slurm job {id} ran out of memory (OUT_OF_MEMORY): it used more than its limit{mem}; raise the node's `resources.memory`"
        ),
        JobState::Failed if memory_killed => format!(
            "Slurm job {id} exceeded its memory limit{mem} and was killed (OUT_OF_MEMORY; Slurm's state is FAILED{reason}, as without task/cgroup); raise the node's `resources.memory`"
        ),
        JobState::Timeout => {
            let limit = r
                .time
                .as_deref()
                .or(default_time)
                .map(|t| format!(" of {t}"))
                .unwrap_or_default();
            format!(
                "Slurm job {id} reached its time limit{limit} (TIMEOUT); raise the node's `resources.time` or `executor.slurm.time`"
            )
        }
        JobState::Cancelled => format!(
            "Slurm job {id} was cancelled outside flow (CANCELLED{reason}); run again to redo this node"
        ),
        s if s.is_transient() => {
            return Err(StageError::transient(format!(
                "Slurm job {id} ended with {st}{reason} (a failure of the cluster, not of the node; `retry: {{attempts: N}}` retries it)"
            )))
        }
        JobState::Completed => format!(
            "Slurm job {id} COMPLETED but left no result of `flow exec-node`: is the state dir on a filesystem the compute nodes share?"
        ),
        _ => {
            let code = match (f.exit_code, f.signal) {
                (_, Some(sig)) if sig != 0 => format!(", killed by signal {sig}"),
                (Some(c), _) => format!(", exit code {c}"),
                _ => String::new(),
            };
            format!(
                "Slurm job {id} ended with {st}{reason}{code} before the stage reported (see the job output in the node's log: is flow at the same path on the compute node?)"
            )
        }
    };
    Err(StageError::msg(msg))
}

/// Follows a growing output file line by line.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Calls `line` for each complete new line.
    fn pump(&mut self, mut line: impl FnMut(&str)) {
        let Ok(mut f) = File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if let Ok(n) = f.take(64 << 20).read_to_end(&mut buf) {
            self.offset += n as u64;
        }
        self.partial.extend_from_slice(&buf);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let rest = self.partial.split_off(i + 1);
            let mut l = std::mem::replace(&mut self.partial, rest);
            l.pop();
            l.truncate(crate::child::MAX_LOG_LINE_BYTES);
            line(String::from_utf8_lossy(&l).trim_end_matches('\r'));
        }
    }

    /// The last line when the file did not end with a newline.
    fn finish(&mut self, mut line: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let l = std::mem::take(&mut self.partial);
            line(&String::from_utf8_lossy(&l));
        }
    }
}

#[cfg(test)]
mod tests;
