//! Peak GPU memory of a running node that holds GPUs, from polling `nvidia-smi`.
//!
//! `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits` lists the
//! GPU memory (MiB) of every process using a GPU. A node is charged the sum over its
//! processes: for a `command` node, its program and everything that descends from it or
//! shares its process group (the group the engine started it in); for a stage run inside
//! flow, flow's own process (so in-process nodes running at the same time share it, as they
//! share the resident set). The sum is taken about once a second ([`GPU_POLL_INTERVAL`]) and
//! the largest is kept. Only nodes granted GPUs are polled: a CPU-only node never starts
//! `nvidia-smi`.
//!
//! The program is `nvidia-smi` on `PATH` unless [`NVIDIA_SMI_ENV`] names another. When it is
//! missing, fails or hangs, the node records no GPU memory (never an error of the node), and
//! the engine logs one warning per process (one `flow run`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::usage::UsageMeter;

/// Environment variable naming the `nvidia-smi` program to call (default: `nvidia-smi` on
/// `PATH`). Tests point it at a fake script.
pub const NVIDIA_SMI_ENV: &str = "FLOW_NVIDIA_SMI";

/// How often a GPU node's memory is sampled.
pub const GPU_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long one `nvidia-smi` call may take before it is killed (a wedged driver can hang it).
pub const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of `nvidia-smi` output read (one short line per GPU process).
const MAX_OUTPUT_BYTES: u64 = 4 << 20;

/// The query's arguments.
const QUERY_ARGS: [&str; 2] = [
    "--query-compute-apps=pid,used_memory",
    "--format=csv,noheader,nounits",
];

/// Why `nvidia-smi` gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum GpuQueryError {
    #[error("cannot start `{program}`: {cause}")]
    Start {
        program: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("cannot wait for `{program}`: {cause}")]
    Wait {
        program: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("`{program}` did not answer within {} s and was killed", .timeout.as_secs())]
    Timeout { program: String, timeout: Duration },
    #[error("`{program}` failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// One line of the query: a process and the GPU memory it holds on one GPU, MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_mib: u64,
}

/// The lines of the query's output that name a pid and a number of MiB. Anything else (blank
/// lines, `[N/A]` where the driver cannot tell, "No running processes found", a header) is
/// skipped. A process on two GPUs has two lines.
pub fn parse_compute_apps(text: &str) -> Vec<GpuProcess> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            let pid = fields.next()?.parse().ok()?;
            let used_mib = fields.next()?.parse().ok()?;
            fields
                .next()
                .is_none()
                .then_some(GpuProcess { pid, used_mib })
        })
        .collect()
}

/// The MiB that `apps` lists for the processes in `pids`.
pub fn attributed_mib(apps: &[GpuProcess], pids: &BTreeSet<u32>) -> u64 {
    apps.iter()
        .filter(|a| pids.contains(&a.pid))
        .map(|a| a.used_mib)
        .sum()
}

/// A process as `/proc/<pid>/stat` describes it: its parent and its process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
}

/// Parses a `/proc/<pid>/stat` line. The command name sits in parentheses and may itself hold
/// spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcEntry> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    // After the name: state, ppid, pgrp, ...
    let mut fields = tail.split_whitespace().skip(1);
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcEntry { pid, ppid, pgrp })
}

/// Every process now running (those that end while `/proc` is read are left out).
pub fn process_table() -> Vec<ProcEntry> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_pid))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .collect()
}

fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// `root`, its descendants, and the members of the process group it leads (a grandchild that
/// was orphaned keeps its group): the processes of a command node started as `root`.
pub fn process_tree(root: u32, table: &[ProcEntry]) -> BTreeSet<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in table {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut tree = BTreeSet::from([root]);
    let mut todo = vec![root];
    todo.extend(table.iter().filter(|p| p.pgrp == root).map(|p| p.pid));
    while let Some(pid) = todo.pop() {
        tree.insert(pid);
        for &c in children.get(&pid).into_iter().flatten() {
            if !tree.contains(&c) {
                todo.push(c);
            }
        }
    }
    tree
}

/// The largest GPU memory seen for one node, MiB; none until a sample succeeded.
#[derive(Debug, Default)]
pub struct GpuPeak {
    peak_mib: AtomicU64,
    sampled: AtomicBool,
}

impl GpuPeak {
    /// Records one sample.
    pub fn record(&self, mib: u64) {
        self.peak_mib.fetch_max(mib, Ordering::Relaxed);
        self.sampled.store(true, Ordering::Release);
    }

    /// The largest sample, or `None` when none was taken (no GPU, `nvidia-smi` failing, a node
    /// shorter than its first sample).
    pub fn peak(&self) -> Option<u64> {
        self.sampled
            .load(Ordering::Acquire)
            .then(|| self.peak_mib.load(Ordering::Relaxed))
    }
}

/// Runs the query once: the GPU processes `program` lists.
pub fn query(program: &OsStr, timeout: Duration) -> Result<Vec<GpuProcess>, GpuQueryError> {
    let name = || program.to_string_lossy().into_owned();
    let mut child = Command::new(program)
        .args(QUERY_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so a timeout kills whatever it started (and frees the pipes).
        .process_group(0)
        .spawn()
        .map_err(|cause| GpuQueryError::Start {
            program: name(),
            cause,
        })?;
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(MAX_OUTPUT_BYTES).read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = read_all(child.stdout.take().map(|p| Box::new(p) as _));
    let err = read_all(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let waited = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                break Err(GpuQueryError::Timeout {
                    program: name(),
                    timeout,
                })
            }
            Err(cause) => {
                break Err(GpuQueryError::Wait {
                    program: name(),
                    cause,
                })
            }
        }
    };
    if waited.is_err() {
        // SAFETY: killpg has no memory-safety preconditions; ESRCH (group gone) is fine.
        unsafe { libc::killpg(child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = child.wait();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = waited?;
    if !status.success() {
        return Err(GpuQueryError::Failed {
            program: name(),
            status,
            stderr: stderr.trim().chars().take(300).collect(),
        });
    }
    Ok(parse_compute_apps(&stdout))
}

/// Whether the "GPU memory is not measured" warning was logged (once per process).
static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once(e: &GpuQueryError) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "GPU memory of GPU nodes is not measured ({e}); set {NVIDIA_SMI_ENV} to the nvidia-smi to use"
        );
    }
}

/// Samples the GPU memory of one node while it runs.
#[derive(Debug, Clone)]
pub struct GpuPoller {
    program: OsString,
    interval: Duration,
    timeout: Duration,
}

impl GpuPoller {
    /// `program` polled every `interval`.
    pub fn new(program: impl Into<OsString>, interval: Duration) -> GpuPoller {
        GpuPoller {
            program: program.into(),
            interval,
            timeout: NVIDIA_SMI_TIMEOUT,
        }
    }

    /// The program [`NVIDIA_SMI_ENV`] names (`nvidia-smi` when unset or empty), polled every
    /// [`GPU_POLL_INTERVAL`].
    pub fn from_env() -> GpuPoller {
        let program = std::env::var_os(NVIDIA_SMI_ENV)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "nvidia-smi".into());
        GpuPoller::new(program, GPU_POLL_INTERVAL)
    }

    /// The same, with another limit on one call.
    pub fn with_timeout(mut self, timeout: Duration) -> GpuPoller {
        self.timeout = timeout;
        self
    }

    /// Takes one sample for the node `meter` measures and records it there. The node's
    /// processes are the tree of the process it registered ([`UsageMeter::set_process`]);
    /// without one, flow's own process when the stage runs `in_process`, else nothing yet (a
    /// command not started: `Ok(None)`, and `nvidia-smi` is not called).
    pub fn sample(
        &self,
        meter: &UsageMeter,
        in_process: bool,
    ) -> Result<Option<u64>, GpuQueryError> {
        let pids = match meter.process() {
            Some(root) => process_tree(root, &process_table()),
            None if in_process => BTreeSet::from([std::process::id()]),
            None => return Ok(None),
        };
        let apps = query(&self.program, self.timeout)?;
        let mib = attributed_mib(&apps, &pids);
        meter.observe_gpu_mib(mib);
        Ok(Some(mib))
    }

    /// Starts sampling on a thread of its own: at once, then every interval until the returned
    /// watch is finished. The first failure ends the sampling (and logs the warning).
    pub fn start(&self, meter: Arc<UsageMeter>, in_process: bool) -> GpuWatch {
        let done = Arc::new(AtomicBool::new(false));
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let poller = self.clone();
        let stop = done.clone();
        let thread = std::thread::Builder::new()
            .name("flow-gpu-usage".into())
            .spawn(move || {
                // Dropped when sampling ends: tells `finish` not to wait any longer.
                let _ended = ended_tx;
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = poller.sample(&meter, in_process) {
                        warn_once(&e);
                        return;
                    }
                    std::thread::park_timeout(poller.interval);
                }
            });
        if let Err(e) = &thread {
            tracing::debug!("cannot start the GPU usage thread: {e}");
        }
        GpuWatch {
            done,
            thread: thread.ok(),
            ended,
        }
    }
}

/// A running [`GpuPoller::start`]; [`GpuWatch::finish`] stops it.
pub struct GpuWatch {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    ended: std::sync::mpsc::Receiver<()>,
}

impl GpuWatch {
    /// Stops sampling, waiting up to `grace` for a sample under way (a short node still gets
    /// its first one); a hung `nvidia-smi` is left to its own timeout, never waited for longer.
    pub fn finish(self, grace: Duration) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.thread().unpark();
            let _ = self.ended.recv_timeout(grace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A fake `nvidia-smi` `dir/name` that logs its arguments to `dir/calls`, then runs `body`.
    fn fake_smi(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        let d = dir.display();
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"$*\" >> '{d}/calls'\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn printing_apps(dir: &Path) -> PathBuf {
        fake_smi(dir, "nvidia-smi", &format!("cat '{}/apps'", dir.display()))
    }

    #[test]
    fn only_pid_and_mib_lines_count() {
        let text = "1234, 500\n\n5678, [N/A]\nNo running processes found\n  42 ,7 \nabc, 5\n\
                    1, 2, 3\n-1, 5\n99, -3\n[N/A], 4\n1234, 100\r\n";
        assert_eq!(
            parse_compute_apps(text),
            [
                GpuProcess {
                    pid: 1234,
                    used_mib: 500
                },
                GpuProcess {
                    pid: 42,
                    used_mib: 7
                },
                GpuProcess {
                    pid: 1234,
                    used_mib: 100
                },
            ]
        );
        assert!(parse_compute_apps("").is_empty());
        let apps = parse_compute_apps("1234, 500\n42, 7\n1234, 100\n");
        assert_eq!(attributed_mib(&apps, &BTreeSet::from([1234, 9])), 600);
        assert_eq!(attributed_mib(&apps, &BTreeSet::new()), 0);
    }

    #[test]
    fn stat_lines_are_read_from_the_last_parenthesis() {
        assert_eq!(
            parse_stat("123 (my (odd) prog) S 45 120 120 0 -1 4194304 97 0"),
            Some(ProcEntry {
                pid: 123,
                ppid: 45,
                pgrp: 120
            })
        );
        assert_eq!(parse_stat("123 (x) S"), None);
        assert_eq!(parse_stat("garbage"), None);
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(parse_stat(&me).unwrap().pid, std::process::id());
    }

    #[test]
    fn a_tree_is_the_descendants_and_the_group() {
        let p = |pid, ppid, pgrp| ProcEntry { pid, ppid, pgrp };
        let table = [
            p(10, 1, 10),
            p(11, 10, 10),
            p(12, 11, 12), // a descendant in a group of its own
            p(13, 1, 10),  // orphaned, still in the group
            p(14, 13, 14), // the orphan's child
            p(20, 1, 20),  // unrelated
            p(21, 20, 20),
            p(1, 0, 1),
        ];
        assert_eq!(
            process_tree(10, &table),
            BTreeSet::from([10, 11, 12, 13, 14])
        );
        assert_eq!(process_tree(20, &table), BTreeSet::from([20, 21]));
        assert_eq!(process_tree(99, &table), BTreeSet::from([99]));
    }

    #[test]
    fn a_live_grandchild_belongs_to_its_command() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 5 & echo $!; wait"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        let tree = process_tree(child.id(), &process_table());
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(grandchild as libc::pid_t, libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            tree.contains(&child.id()) && tree.contains(&grandchild),
            "{tree:?}"
        );
        assert!(!tree.contains(&std::process::id()), "{tree:?}");
    }

    #[test]
    fn the_peak_is_the_largest_sample_and_none_without_one() {
        let peak = GpuPeak::default();
        assert_eq!(peak.peak(), None);
        peak.record(0);
        assert_eq!(peak.peak(), Some(0), "measured, nothing on the GPU");
        for mib in [500, 300, 900, 10] {
            peak.record(mib);
        }
        assert_eq!(peak.peak(), Some(900));
        let meter = UsageMeter::default();
        assert_eq!(meter.snapshot().gpu_peak_mb, None);
    }

    #[test]
    fn a_command_is_charged_its_tree_not_flow() {
        let dir = tempfile::tempdir().unwrap();
        let smi = printing_apps(dir.path());
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let (me, kid) = (std::process::id(), child.id());
        let meter = UsageMeter::default();
        let poller = GpuPoller::new(&smi, GPU_POLL_INTERVAL);
        // Not started yet: nothing to charge and nvidia-smi is not called.
        assert_eq!(poller.sample(&meter, false).unwrap(), None);
        assert!(!dir.path().join("calls").exists());
        meter.set_process(Some(kid));
        let apps = dir.path().join("apps");
        let mut seen = Vec::new();
        for mib in [300, 700, 200] {
            std::fs::write(
                &apps,
                format!("{kid}, {mib}\n{me}, 999\n1, 50\n{kid}, [N/A]\n"),
            )
            .unwrap();
            seen.push(poller.sample(&meter, false).unwrap());
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(seen, [Some(300), Some(700), Some(200)]);
        assert_eq!(meter.snapshot().gpu_peak_mb, Some(700));
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            ["--query-compute-apps=pid,used_memory --format=csv,noheader,nounits"; 3]
        );
    }

    #[test]
    fn an_in_process_stage_is_charged_flow_on_every_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let smi = printing_apps(dir.path());
        let me = std::process::id();
        std::fs::write(
            dir.path().join("apps"),
            format!("{me}, 1000\n{me}, 24\n4000000, 5\n"),
        )
        .unwrap();
        let meter = Arc::new(UsageMeter::default());
        let poller = GpuPoller::new(&smi, Duration::from_millis(20));
        assert_eq!(poller.sample(&meter, true).unwrap(), Some(1024));
        // Sampling on its own thread until finished.
        let meter = Arc::new(UsageMeter::default());
        let watch = poller.start(meter.clone(), true);
        std::thread::sleep(Duration::from_millis(150));
        watch.finish(Duration::from_secs(2));
        assert_eq!(meter.snapshot().gpu_peak_mb, Some(1024));
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert!(calls.lines().count() >= 3, "polled repeatedly: {calls}");
    }

    #[test]
    fn a_missing_failing_or_hung_nvidia_smi_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let meter = Arc::new(UsageMeter::default());
        let missing = GpuPoller::new(dir.path().join("absent"), GPU_POLL_INTERVAL);
        assert!(matches!(
            missing.sample(&meter, true),
            Err(GpuQueryError::Start { .. })
        ));
        let failing = fake_smi(
            dir.path(),
            "failing",
            "echo 'NVIDIA-SMI has failed' >&2; exit 9",
        );
        let e = GpuPoller::new(&failing, GPU_POLL_INTERVAL)
            .sample(&meter, true)
            .unwrap_err();
        assert!(
            matches!(e, GpuQueryError::Failed { .. }) && e.to_string().contains("has failed"),
            "{e}"
        );
        // Not `exec`: the sleep is a child of the script, killed with its group.
        let hung = fake_smi(dir.path(), "hung", "sleep 30; echo 1, 1");
        let t = Instant::now();
        let e = GpuPoller::new(&hung, GPU_POLL_INTERVAL)
            .with_timeout(Duration::from_millis(200))
            .sample(&meter, true)
            .unwrap_err();
        assert!(matches!(e, GpuQueryError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // On its thread, the first failure ends sampling; the node just has no GPU memory.
        let watch = GpuPoller::new(&failing, Duration::from_millis(10)).start(meter.clone(), true);
        std::thread::sleep(Duration::from_millis(100));
        watch.finish(Duration::from_secs(2));
        assert_eq!(meter.snapshot().gpu_peak_mb, None);
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(
            calls.lines().count(),
            3,
            "one call each, then no more: {calls}"
        );
    }
}
