//! Running one node attempt on a worker thread: scratch dir, inputs, the stage, ingesting
//! outputs, recording the result. A result is recorded only after every output is durable
//! in the store, so a crash at any point leaves either a finished node or no trace of it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use flow_cache::{ActionResult, Digest, OutputRecord};
use serde_json::Value;

use crate::events::{Event, EventBus};
use crate::gpu_usage::GpuPoller;
use crate::redact::PathRedactor;
use crate::resolve::Resolved;
use crate::spec::{Resources, Retry};
use crate::stage::{Device, NodeReporter, OutputDecl, Params, Stage, StageContext, StageError};
use crate::state::StateDir;
use crate::usage::{process_rss_kb, thread_sample, UsageMeter, RSS_SAMPLE_INTERVAL};

/// Everything needed to run one node, moved to a worker thread.
pub struct Job {
    pub node: String,
    pub stage: Arc<dyn Stage>,
    pub params: Params,
    pub key: Digest,
    pub manifest: Value,
    pub inputs: BTreeMap<String, Vec<Resolved>>,
    pub outputs: Vec<OutputDecl>,
    pub resources: Resources,
    pub retry: Retry,
    pub gpus: Vec<usize>,
    pub threads: usize,
    pub state: Arc<StateDir>,
    pub bus: Arc<EventBus>,
    pub cancel: Arc<AtomicBool>,
    pub log_path: PathBuf,
    /// Run the attempt as a Slurm job (None: on this worker thread).
    pub slurm: Option<Arc<crate::executor::slurm::Slurm>>,
}

/// Why a node did not finish.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub cancelled: bool,
    pub log_tail: Vec<String>,
    pub seconds: f64,
}

/// Most bytes of one node's output kept (log file and journal events): a command that prints
/// gigabytes cannot fill the state dir or the coordinator's memory.
pub const MAX_NODE_LOG_BYTES: u64 = 32 * 1024 * 1024;

/// Per-node log file plus event forwarding, up to [`MAX_NODE_LOG_BYTES`].
struct NodeSink {
    file: Mutex<BufWriter<File>>,
    bus: Arc<EventBus>,
    logged: std::sync::atomic::AtomicU64,
    /// The node's input paths, shown as `${inputs.NAME}` (no user folder names in logs).
    redact: PathRedactor,
}

impl NodeReporter for NodeSink {
    fn progress(&self, node: &str, done: u64, total: u64, message: &str) {
        self.bus.emit(Event::NodeProgress {
            node: node.into(),
            done,
            total,
            message: message.into(),
        });
    }
    fn log(&self, node: &str, line: &str) {
        let redacted = self.redact.apply(line);
        let line = redacted.as_str();
        let size = line.len() as u64 + 1;
        let before = self.logged.fetch_add(size, Ordering::Relaxed);
        if before >= MAX_NODE_LOG_BYTES {
            return;
        }
        let capped = before + size > MAX_NODE_LOG_BYTES;
        let note;
        let line = if capped {
            note = format!(
                "[flow: this node's output passed MAX_NODE_LOG_BYTES ({} MiB); the rest is not logged]",
                MAX_NODE_LOG_BYTES >> 20
            );
            &note
        } else {
            line
        };
        if let Ok(mut f) = self.file.lock() {
            // Flushed per line so `tail -f` on a node log follows a long stage.
            let _ = writeln!(f, "{line}").and_then(|_| f.flush());
        }
        self.bus.emit(Event::NodeLog {
            node: node.into(),
            line: line.into(),
        });
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Runs the job with its retry policy.
pub fn run_job(job: Job) -> Result<ActionResult, Failure> {
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        job.bus.emit(Event::NodeStarted {
            node: job.node.clone(),
            key: job.key.to_hex(),
            attempt,
        });
        match attempt_once(&job, attempt) {
            Ok(r) => return Ok(r),
            Err(e) => {
                let retryable = !matches!(e, StageError::Cancelled)
                    && e.is_transient()
                    && attempt <= job.retry.attempts;
                if retryable {
                    job.bus.emit(Event::NodeRetry {
                        node: job.node.clone(),
                        attempt,
                        error: external_paths(&job).apply(&e.chain()),
                    });
                    std::thread::sleep(std::time::Duration::from_millis(job.retry.delay_ms));
                    attempt += 1;
                    continue;
                }
                let cancelled = matches!(e, StageError::Cancelled);
                let message = external_paths(&job).apply(&e.chain());
                if !cancelled {
                    let _ = job.state.index.record_failure(&job.node, &message);
                }
                return Err(Failure {
                    message,
                    cancelled,
                    log_tail: log_tail(&job.log_path, 20),
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
    }
}

/// The redactor of a job's external inputs (stored inputs live under the state dir).
fn external_paths(job: &Job) -> PathRedactor {
    let inputs = job
        .inputs
        .iter()
        .map(|(name, list)| {
            let paths = list
                .iter()
                .filter_map(|r| match r {
                    Resolved::External { path, .. } => Some(path.clone()),
                    Resolved::Stored { .. } => None,
                })
                .collect();
            (name.clone(), paths)
        })
        .collect();
    PathRedactor::new(&inputs)
}

/// Runs `stage` in `ctx`, turning a panic into the node's error.
pub(crate) fn run_stage_caught(
    stage: &dyn Stage,
    ctx: &mut StageContext,
) -> Result<(), StageError> {
    let _node = crate::progress::enter_node(&ctx.node, ctx.reporter.clone());
    match std::panic::catch_unwind(AssertUnwindSafe(|| stage.run(ctx))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(StageError::msg(format!(
                "stage `{}` panicked (a bug in the stage): {msg}",
                stage.kind()
            )))
        }
    }
}

fn attempt_once(job: &Job, attempt: u32) -> Result<ActionResult, StageError> {
    let started_ms = now_ms();
    let t0 = Instant::now();
    let io = |what: String| move |e: std::io::Error| StageError::wrap(what, e);
    let scratch = job
        .state
        .tmp_dir()
        .join(format!("{}-{}-{attempt}", job.node, job.key.short()));
    let _ = fs::remove_dir_all(&scratch);
    let out_dir = scratch.join("out");
    fs::create_dir_all(&out_dir).map_err(io(format!("cannot create {}", out_dir.display())))?;
    let checkpoint_dir = job.state.checkpoint_dir(&job.key);
    fs::create_dir_all(&checkpoint_dir)
        .map_err(io(format!("cannot create {}", checkpoint_dir.display())))?;
    if let Some(p) = job.log_path.parent() {
        fs::create_dir_all(p).map_err(io(format!("cannot create {}", p.display())))?;
    }
    let log = File::options()
        .create(true)
        .append(true)
        .open(&job.log_path)
        .map_err(io(format!("cannot open {}", job.log_path.display())))?;
    let mut inputs = BTreeMap::new();
    for (name, list) in &job.inputs {
        let mut paths = Vec::new();
        for r in list {
            paths.push(
                r.materialize(&job.state)
                    .map_err(|e| StageError::wrap(format!("cannot provide input `{name}`"), e))?,
            );
        }
        inputs.insert(name.clone(), paths);
    }
    let sink = Arc::new(NodeSink {
        file: Mutex::new(BufWriter::new(log)),
        bus: job.bus.clone(),
        logged: Default::default(),
        redact: PathRedactor::new(&inputs),
    });
    let outputs: BTreeMap<String, PathBuf> = job
        .outputs
        .iter()
        .map(|o| (o.name.clone(), out_dir.join(&o.filename)))
        .collect();
    let mut env = BTreeMap::new();
    env.insert("FLOW_OUT_DIR".to_string(), out_dir.display().to_string());
    env.insert(
        "FLOW_CHECKPOINT_DIR".to_string(),
        checkpoint_dir.display().to_string(),
    );
    env.insert("FLOW_THREADS".to_string(), job.threads.to_string());
    env.insert("OMP_NUM_THREADS".to_string(), job.threads.to_string());
    env.insert("RAYON_NUM_THREADS".to_string(), job.threads.to_string());
    env.insert(
        "CUDA_VISIBLE_DEVICES".to_string(),
        job.gpus
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    let device = job
        .gpus
        .first()
        .map(|&g| Device::Cuda(g))
        .unwrap_or(Device::Cpu);
    let items = Arc::new(crate::items::StoreItems {
        state: job.state.clone(),
        node: job.node.clone(),
        stage: job.stage.kind(),
        version: job.stage.version(),
        scratch: scratch.clone(),
        counter: Mutex::new(0),
    });
    let mut ctx = StageContext {
        node: job.node.clone(),
        params: job.params.clone(),
        inputs,
        outputs: outputs.clone(),
        checkpoint_dir: checkpoint_dir.clone(),
        scratch_dir: scratch.clone(),
        device,
        threads: job.threads,
        cancel: job.cancel.clone(),
        reporter: sink.clone(),
        items,
        env,
        transient_exit_codes: job.retry.exit_codes.clone(),
        usage: Arc::new(UsageMeter::default()),
    };
    let meter = ctx.usage.clone();
    let local = job.slurm.is_none();
    // GPU memory only where it can be ours: a local node granted GPUs (never a CPU-only one).
    let gpu = (local && !job.gpus.is_empty()).then(|| {
        (
            GpuPoller::from_env(),
            job.stage.kind() != crate::command::KIND,
        )
    });
    // A command's memory is its program's (read from /proc by the command stage): sampling
    // flow's own resident set would only cost a thread per node.
    let sample_rss = local && job.stage.kind() != crate::command::KIND;
    let outcome = metered(&meter, gpu, sample_rss, || match &job.slurm {
        None => run_stage_caught(&*job.stage, &mut ctx),
        Some(slurm) => run_on_slurm(job, &ctx, slurm, attempt),
    });
    let usage = meter.snapshot();
    if let Ok(mut f) = sink.file.lock() {
        let _ = f.flush();
    }
    // An external input the node read must still be what its key says, or the result would
    // be recorded under the old content (stat-only when nothing changed: the stat memo).
    let outcome = outcome.and_then(|()| inputs_unchanged(job));
    if let Err(e) = outcome {
        sink.log(&job.node, &format!("error: {}", e.chain()));
        if let Ok(mut f) = sink.file.lock() {
            let _ = f.flush();
        }
        let _ = fs::remove_dir_all(&scratch);
        return Err(e);
    }

    // Ingest outputs, then record.
    let mut records = BTreeMap::new();
    let mut blobs = Vec::new();
    for o in &job.outputs {
        let p = &outputs[&o.name];
        let ok = match o.kind {
            flow_cache::ArtifactKind::File => p.is_file(),
            flow_cache::ArtifactKind::Dir => p.is_dir(),
        };
        if !ok {
            let _ = fs::remove_dir_all(&scratch);
            let what = if o.kind == flow_cache::ArtifactKind::Dir {
                "directory"
            } else {
                "file"
            };
            return Err(StageError::msg(format!(
                "declared output `{}` was not produced: expected a {what} at {} (relative path `{}`)",
                o.name,
                p.display(),
                o.filename
            )));
        }
        let (kind, digest, size, b) = job
            .state
            .store
            .put_path(p, true)
            .map_err(|e| StageError::wrap(format!("cannot store output `{}`", o.name), e))?;
        blobs.extend(b);
        records.insert(
            o.name.clone(),
            OutputRecord {
                kind,
                digest,
                size,
                name: o
                    .filename
                    .rsplit('/')
                    .next()
                    .unwrap_or(&o.filename)
                    .to_string(),
            },
        );
    }
    let log_digest = job
        .state
        .store
        .put_file(&job.log_path, false)
        .ok()
        .map(|(d, _)| d);
    blobs.extend(log_digest);
    let result = ActionResult {
        key: job.key,
        node: job.node.clone(),
        outputs: records,
        blobs,
        log: log_digest,
        started_unix_ms: started_ms,
        seconds: t0.elapsed().as_secs_f64(),
        // A Slurm job's usage is the cluster's, not this process's waiting thread.
        peak_rss_kb: local.then_some(usage.peak_rss_kb),
        cpu_seconds: local.then_some(usage.cpu_seconds),
        read_bytes: local.then_some(usage.read_bytes),
        written_bytes: local.then_some(usage.written_bytes),
        gpu_peak_mb: usage.gpu_peak_mb,
        manifest: job.manifest.clone(),
    };
    job.state
        .index
        .record(&result)
        .map_err(|e| StageError::wrap("cannot record the result", e))?;
    job.state
        .index
        .flush()
        .map_err(|e| StageError::wrap("cannot flush the index", e))?;
    let _ = fs::remove_dir_all(&checkpoint_dir);
    let _ = fs::remove_dir_all(&scratch);
    Ok(result)
}

/// Checks that every external input of `job` still has the digest its key was computed with.
fn inputs_unchanged(job: &Job) -> Result<(), StageError> {
    for (name, list) in &job.inputs {
        for r in list {
            let Resolved::External { path, digest, .. } = r else {
                continue;
            };
            let now = job.state.index.digest_external(path).map(|(_, d)| d);
            if now.as_ref().ok() != Some(digest) {
                return Err(StageError::msg(format!(
                    "input `{name}` ({}) changed while the node ran, so its result was not kept; run again to use the new content",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Runs the node as a Slurm job, carrying the item cache across (see [`crate::items`]):
/// the items already made for this stage go to the job, the ones it made come back, even
/// when it failed, so a rerun resumes from them.
fn run_on_slurm(
    job: &Job,
    ctx: &StageContext,
    slurm: &crate::executor::slurm::Slurm,
    attempt: u32,
) -> Result<(), StageError> {
    let (kind, version) = (job.stage.kind(), job.stage.version());
    // A command node's program cannot use the item cache: nothing to carry.
    if kind != crate::command::KIND {
        let n = crate::items::export_for_job(&job.state, kind, version, &ctx.scratch_dir)?;
        ctx.log(&format!(
            "[flow] {n} cached item(s) of `{kind}` offered to the job"
        ));
    }
    let r = slurm.run_node(ctx, kind, &job.resources, attempt, &job.bus);
    if kind != crate::command::KIND {
        let n = crate::items::ingest_from_job(&job.state, &job.node, &ctx.scratch_dir);
        ctx.log(&format!("[flow] {n} item(s) made by the job stored"));
    }
    r
}

/// How long the end of a GPU node waits for a GPU sample under way.
const GPU_SAMPLE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `body` (a node's stage) while measuring it: the calling thread's CPU time and I/O,
/// with `sample_rss` the process's resident set every [`RSS_SAMPLE_INTERVAL`], and the
/// workers of the pools the stage built with the meter's handlers (waited for briefly once
/// the stage returns). With `gpu` (a poller, and whether the stage runs in flow's process)
/// also its GPU memory.
fn metered<T>(
    meter: &Arc<UsageMeter>,
    gpu: Option<(GpuPoller, bool)>,
    sample_rss: bool,
    body: impl FnOnce() -> T,
) -> T {
    let gpu_watch = gpu.map(|(poller, in_process)| poller.start(meter.clone(), in_process));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = sample_rss.then(|| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    meter.observe_rss(process_rss_kb());
                    std::thread::park_timeout(RSS_SAMPLE_INTERVAL);
                }
            })
        });
        let start = thread_sample();
        meter.observe_rss(process_rss_kb());
        let out = body();
        meter.add_thread_since(start);
        meter.observe_rss(process_rss_kb());
        meter.wait_for_workers(std::time::Duration::from_secs(1));
        done.store(true, Ordering::Relaxed);
        if let Some(sampler) = sampler {
            sampler.thread().unpark();
        }
        if let Some(w) = gpu_watch {
            w.finish(GPU_SAMPLE_GRACE);
        }
        out
    })
}
