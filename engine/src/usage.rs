//! What a node cost: the CPU time and the bytes read and written by the threads that ran it
//! (by its process, for a `command` node), and the peak memory while it ran.
//!
//! A Rust stage runs on the engine's thread plus the worker threads of the pools it builds;
//! the engine measures its own thread from start to end, a pool built with
//! [`UsageMeter::pool_start_handler`] and [`UsageMeter::pool_exit_handler`] adds each worker's
//! totals when it exits (the engine waits briefly for a dropped pool's workers). Peak memory of
//! an in-process stage is the process's resident set, sampled while the node runs (nodes
//! running at the same time share it); a command's is its own `ru_maxrss`, which replaces it.
//! A node granted GPUs also gets its peak GPU memory ([`crate::gpu_usage`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::gpu_usage::GpuPeak;

/// The resources one node used (one attempt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Peak resident memory, KiB.
    pub peak_rss_kb: u64,
    /// Bytes passed to read-like system calls (`rchar`, page cache included).
    pub read_bytes: u64,
    /// Bytes passed to write-like system calls (`wchar`).
    pub written_bytes: u64,
    /// Peak GPU memory, MiB (`nvidia-smi`'s unit); only for a node granted GPUs whose memory
    /// could be sampled. Absent from the JSON otherwise (and in journals written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_peak_mb: Option<u64>,
}

/// CPU time and I/O of one thread at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThreadSample {
    cpu_us: u64,
    read: u64,
    written: u64,
}

/// Counters that every thread of a running node adds to.
#[derive(Debug, Default)]
pub struct UsageMeter {
    cpu_us: AtomicU64,
    read: AtomicU64,
    written: AtomicU64,
    peak_rss_kb: AtomicU64,
    own_process_rss: AtomicU64,
    /// Worker threads started by the node's pools that have not exited yet (thread ids).
    live_workers: Mutex<BTreeSet<i64>>,
    /// The node's own process while it runs (a command's program; 0: none).
    process: AtomicU32,
    /// GPU memory samples (nodes granted GPUs).
    gpu: GpuPeak,
}

impl UsageMeter {
    /// Adds what the calling thread used since `since`.
    pub fn add_thread_since(&self, since: ThreadSample) {
        let now = thread_sample();
        self.cpu_us
            .fetch_add(now.cpu_us.saturating_sub(since.cpu_us), Ordering::Relaxed);
        self.read
            .fetch_add(now.read.saturating_sub(since.read), Ordering::Relaxed);
        self.written
            .fetch_add(now.written.saturating_sub(since.written), Ordering::Relaxed);
    }

    /// A start handler for a worker pool that lives only for the node (rayon's
    /// `ThreadPoolBuilder::start_handler`): the worker is known until it exits.
    pub fn pool_start_handler(self: &Arc<Self>) -> impl Fn(usize) + Send + Sync + 'static {
        let meter = self.clone();
        move |_| {
            meter
                .live_workers
                .lock()
                .expect("usage lock")
                .insert(thread_id());
        }
    }

    /// The matching exit handler (`ThreadPoolBuilder::exit_handler`): the worker adds
    /// everything it used.
    pub fn pool_exit_handler(self: &Arc<Self>) -> impl Fn(usize) + Send + Sync + 'static {
        let meter = self.clone();
        move |_| {
            let mut live = meter.live_workers.lock().expect("usage lock");
            meter.add_thread_since(ThreadSample::default());
            live.remove(&thread_id());
        }
    }

    /// Waits up to `timeout` for the workers of dropped pools to exit (and add their usage).
    pub fn wait_for_workers(&self, timeout: Duration) {
        let t = Instant::now();
        while !self.live_workers.lock().expect("usage lock").is_empty() && t.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Adds a finished child process (`command` nodes): its rusage and `/proc/<pid>/io`.
    pub fn add_process(&self, cpu_us: u64, maxrss_kb: u64, read: u64, written: u64) {
        self.cpu_us.fetch_add(cpu_us, Ordering::Relaxed);
        self.read.fetch_add(read, Ordering::Relaxed);
        self.written.fetch_add(written, Ordering::Relaxed);
        self.own_process_rss.fetch_max(maxrss_kb, Ordering::Relaxed);
    }

    /// Registers the process the node started (`Some(pid)`, a command's program) or its end
    /// (`None`): the GPU memory of a node is that process's tree while it is registered.
    pub fn set_process(&self, pid: Option<u32>) {
        self.process.store(pid.unwrap_or(0), Ordering::Relaxed);
    }

    /// The registered process ([`UsageMeter::set_process`]).
    pub fn process(&self) -> Option<u32> {
        Some(self.process.load(Ordering::Relaxed)).filter(|&p| p != 0)
    }

    /// Records a sample of the node's GPU memory, MiB.
    pub fn observe_gpu_mib(&self, mib: u64) {
        self.gpu.record(mib);
    }

    /// Records a sample of the engine process's resident set.
    pub fn observe_rss(&self, kb: u64) {
        self.peak_rss_kb.fetch_max(kb, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> NodeUsage {
        let own = self.own_process_rss.load(Ordering::Relaxed);
        NodeUsage {
            cpu_seconds: self.cpu_us.load(Ordering::Relaxed) as f64 / 1e6,
            peak_rss_kb: if own > 0 {
                own
            } else {
                self.peak_rss_kb.load(Ordering::Relaxed)
            },
            read_bytes: self.read.load(Ordering::Relaxed),
            written_bytes: self.written.load(Ordering::Relaxed),
            gpu_peak_mb: self.gpu.peak(),
        }
    }
}

/// The calling thread's kernel id (for the live-worker set).
fn thread_id() -> i64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() as i64 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// How often the resident set of a running Rust stage is sampled.
pub const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`: exact, not in scheduler ticks)
/// and I/O (`/proc/thread-self/io`); zeros where the platform has neither.
pub fn thread_sample() -> ThreadSample {
    let mut s = ThreadSample::default();
    #[cfg(target_os = "linux")]
    {
        // SAFETY: clock_gettime writes into the zeroed struct we own.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            s.cpu_us = ts.tv_sec.max(0) as u64 * 1_000_000 + ts.tv_nsec.max(0) as u64 / 1000;
        }
        if let Ok(text) = std::fs::read_to_string("/proc/thread-self/io") {
            (s.read, s.written) = io_chars(&text);
        }
    }
    s
}

/// `rchar` and `wchar` of a `/proc/<pid>/io` text.
pub fn io_chars(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("rchar:"), field("wchar:"))
}

#[cfg(target_os = "linux")]
pub(crate) fn timeval_us(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64
}

/// The high-water mark of the resident set of process `pid` (`VmHWM`), KiB; `None` once it has
/// exited (or where /proc has no such field).
pub fn process_peak_rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The engine process's resident set, KiB (`/proc/self/statm`); 0 where unknown.
pub fn process_rss_kb() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page / 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_is_charged_its_cpu_time_and_io() {
        let meter = UsageMeter::default();
        let start = thread_sample();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(150) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 100_000]).unwrap();
        let back = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(back.len(), 100_000);
        meter.add_thread_since(start);
        let u = meter.snapshot();
        assert!(u.cpu_seconds > 0.05 && u.cpu_seconds < 5.0, "{u:?}");
        assert!(u.written_bytes >= 100_000, "{u:?}");
        assert!(u.read_bytes >= 100_000, "{u:?}");
    }

    #[test]
    fn worker_threads_add_their_totals_at_exit() {
        let meter = Arc::new(UsageMeter::default());
        let start = meter.pool_start_handler();
        let exit = meter.pool_exit_handler();
        std::thread::spawn(move || {
            start(0);
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_millis(100) {
                std::hint::black_box(0);
            }
            exit(0);
        })
        .join()
        .unwrap();
        meter.wait_for_workers(Duration::from_secs(1));
        assert!(meter.live_workers.lock().unwrap().is_empty());
        assert!(
            meter.snapshot().cpu_seconds > 0.03,
            "{:?}",
            meter.snapshot()
        );
    }

    #[test]
    fn a_command_reports_its_own_peak_memory() {
        let meter = UsageMeter::default();
        meter.observe_rss(50_000);
        assert_eq!(meter.snapshot().peak_rss_kb, 50_000);
        meter.add_process(2_000_000, 12_345, 10, 20);
        let u = meter.snapshot();
        assert_eq!(
            (u.peak_rss_kb, u.read_bytes, u.written_bytes),
            (12_345, 10, 20)
        );
        assert!((u.cpu_seconds - 2.0).abs() < 1e-9);
        assert!(process_rss_kb() > 0);
        assert_eq!(io_chars("rchar: 12\nwchar: 34\nsyscr: 1\n"), (12, 34));
    }
}
