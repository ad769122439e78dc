//! `flow run`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use flow_engine::events::{EventBus, JsonlJournal, NodeState, Reporter, TraceReporter};
use flow_engine::progress::ProgressUi;
use flow_engine::runner::{self, RunOptions};
use flow_engine::state::{LockMode, StateDir};

use crate::cli::{ExecNodeArgs, ExecutorArg, Global, RunArgs};
use crate::cmd_inspect::load;
use flow_engine::spec::ExecutorKind;

/// The state directory, absolute: nodes run in their own working directories, so a relative
/// `--state-dir st` (or FLOW_STATE_DIR) must not be resolved against theirs.
pub fn state_root(g: &Global) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    Ok(match &g.state_dir {
        Some(d) => cwd.join(d),
        None => cwd.join(".flow"),
    })
}

/// The run's watcher process (`flow __reap`, see `flow_engine::child`), once the first
/// command group has started it.
static WATCHER_PROCESS: std::sync::Mutex<Option<std::process::Child>> = std::sync::Mutex::new(None);

/// Arranges for the run's watcher (`flow __reap`, see `flow_engine::child`) to start with the
/// first command a node runs: if this process dies, even by `kill -9`, it stops the command
/// groups still running. A run that starts no program (a cached rerun) starts no watcher.
/// Without it only that guarantee is lost, so a failure to start it is a warning.
fn watch_command_groups() {
    flow_engine::child::watch_groups_with(Box::new(|| {
        use std::os::unix::process::CommandExt;
        let spawned = std::env::current_exe().and_then(|exe| {
            std::process::Command::new(exe)
                .args(["--quiet", "__reap"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                // Its own group: the terminal's Ctrl-C reaches flow, which stops the nodes itself.
                .process_group(0)
                .spawn()
        });
        match spawned {
            Ok(mut child) => {
                let stdin = child.stdin.take()?;
                *WATCHER_PROCESS.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
                Some(Box::new(stdin) as Box<dyn std::io::Write + Send>)
            }
            Err(e) => {
                tracing::warn!("cannot start the process watcher ({e}): if flow is killed, command nodes it started may keep running");
                None
            }
        }
    }));
}

fn parse_memory(s: &str) -> Result<u64, flow_engine::EngineError> {
    flow_engine::spec::parse_memory(&serde_json::Value::String(s.to_string()))
        .map_err(|e| flow_engine::EngineError::Usage(format!("--memory {s}: {e}")))
}

fn default_gpus() -> Vec<usize> {
    std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default()
}

pub fn run(g: &Global, a: &RunArgs) -> Result<u8> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let dag = Arc::new(load(&a.pipeline, &cwd)?);
    let state = Arc::new(StateDir::open(
        &state_root(g)?,
        if a.wait {
            LockMode::Wait
        } else {
            LockMode::FailFast
        },
    )?);
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if jobs == 0 {
        return Err(flow_engine::EngineError::Usage("--jobs must be at least 1".into()).into());
    }
    let memory_mb = a.memory.as_deref().map(parse_memory).transpose()?;
    let run_id = runner::new_run_id();
    let run_dir = state.run_dir(&run_id);
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    // On a terminal the live view draws the running nodes and prints a line per finished
    // one; elsewhere (CI, a pipe, a file) the transitions are plain log lines.
    let live = !g.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    if !live {
        reporters.push(Box::new(TraceReporter));
    }
    reporters.push(Box::new(
        JsonlJournal::create(&run_dir.join("events.jsonl"))
            .with_context(|| format!("cannot write {}", run_dir.display()))?,
    ));
    if live {
        reporters.push(Box::new(ProgressUi::new(dag.nodes.len())));
    }
    let bus = Arc::new(EventBus::new(reporters));
    let opts = RunOptions {
        jobs,
        keep_going: a.keep_going,
        targets: a.selection.target.clone(),
        rerun: a.selection.rerun.clone(),
        gpus: a.gpus.clone().unwrap_or_else(default_gpus),
        memory_mb,
        base_dir: cwd.clone(),
        results_dir: if a.no_publish {
            None
        } else {
            Some(cwd.join("results"))
        },
        run_id,
        executor: a.executor.map(|e| match e {
            ExecutorArg::Local => ExecutorKind::Local,
            ExecutorArg::Slurm => ExecutorKind::Slurm,
        }),
    };
    // A node waiting for its Slurm job holds a blocking thread: room for every queued job.
    let slurm_waiters = if a.executor == Some(ExecutorArg::Slurm)
        || dag.executor.default == Some(ExecutorKind::Slurm)
        || dag
            .nodes
            .iter()
            .any(|n| n.spec.executor == Some(ExecutorKind::Slurm))
    {
        dag.executor.slurm.max_queued
    } else {
        0
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(jobs.max(2) * 2 + 4 + slurm_waiters)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    watch_command_groups();
    let root = state.root.clone();
    let report = rt.block_on(async {
        let c = cancel.clone();
        // Ctrl-C and SIGTERM (`timeout`, `docker stop`, a batch system) both stop the running
        // nodes, their process groups included; a second one quits at once.
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let mut stop = async || match term.as_mut() {
                Some(t) => tokio::select! {
                    r = tokio::signal::ctrl_c() => r.is_ok(),
                    r = t.recv() => r.is_some(),
                },
                None => tokio::signal::ctrl_c().await.is_ok(),
            };
            if stop().await {
                tracing::warn!(
                    "interrupt: stopping running nodes (interrupt again to quit at once)"
                );
                c.store(true, Ordering::SeqCst);
                if stop().await {
                    // Quitting at once: the Slurm jobs still listed are cancelled (one
                    // scancel, no wait); the next run checks that they have ended.
                    flow_engine::executor::slurm::cancel_listed(&root);
                    std::process::exit(1);
                }
            }
        });
        runner::run(dag.clone(), state.clone(), opts, bus, cancel.clone()).await
    });
    flow_engine::child::stop_watching();
    if let Some(mut w) = WATCHER_PROCESS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        let _ = w.wait();
    }
    let report = report?;
    if let Some(path) = &a.html_report {
        let trace = flow_engine::run_report::RunTrace::read(&run_dir.join("events.jsonl"))?;
        std::fs::write(path, trace.to_html())
            .with_context(|| format!("cannot write the run report {}", path.display()))?;
    }
    if let Some(path) = &a.report {
        let text = serde_json::to_string_pretty(&report).expect("report serialises");
        std::fs::write(path, text)
            .with_context(|| format!("cannot write report {}", path.display()))?;
    }
    let count = |s: NodeState| report.nodes.iter().filter(|n| n.state == s).count();
    if !g.quiet || !report.ok {
        eprintln!(
            "{}: {} ran, {} cached, {} failed, {} blocked{} in {:.2}s (logs: {})",
            dag.name,
            count(NodeState::Ran),
            count(NodeState::Cached),
            count(NodeState::Failed),
            count(NodeState::Blocked),
            match count(NodeState::Skipped) {
                0 => String::new(),
                n => format!(", {n} not needed"),
            },
            report.seconds,
            run_dir.join("logs").display()
        );
    }
    if report.ok && !a.no_publish && !g.quiet {
        for page in published_pages(&cwd.join("results").join(&dag.name)) {
            eprintln!("report: {}", page.display());
        }
    }
    for n in report.nodes.iter().filter(|n| n.state == NodeState::Failed) {
        let spec = dag.index_of(&n.id).map(|i| &dag.nodes[i].spec);
        let at = spec
            .map(|s| format!(" ({}, {})", s.stage, s.span))
            .unwrap_or_default();
        eprintln!(
            "node {}{at} failed: {}",
            n.id,
            n.error.clone().unwrap_or_default()
        );
        let log = run_dir.join("logs").join(format!("{}.log", n.id));
        let tail = flow_engine::execute::log_tail(&log, 15);
        if !tail.is_empty() {
            eprintln!("  last lines of {}:", log.display());
            for l in tail {
                eprintln!("  | {l}");
            }
        }
    }
    if report.interrupted {
        eprintln!("interrupted: rerun the same command to continue where it stopped");
    }
    Ok(if report.ok { 0 } else { 1 })
}

/// HTML pages among the published results (`results/<pipeline>/<node>/...`, three levels deep),
/// so the run summary links the report.
fn published_pages(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, depth: usize, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() && depth > 0 {
                walk(&p, depth - 1, out);
            } else if p.extension().is_some_and(|e| e == "html") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, 3, &mut out);
    out
}

/// `flow exec-node FILE` (hidden): the inside of a Slurm job. SIGTERM (scancel, the time
/// limit) and SIGINT set the cancel flag, which stops a command node's process group.
pub fn exec_node(a: &ExecNodeArgs) -> Result<u8> {
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            c.store(true, Ordering::SeqCst);
        })
    });
    let code = flow_engine::executor::job::exec_node(&a.node_file, &flow_rsna::registry(), cancel)?;
    Ok(code as u8)
}
