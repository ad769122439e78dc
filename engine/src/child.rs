//! A command node's process tree: started in a process group of its own and stopped as a
//! whole (the group, not just the first process) on cancel and when the program exits, so no
//! background grandchild outlives its node or holds the output pipes open. Output is read as bytes,
//! line by line with a length cap, so binary output or a newline-free stream can neither
//! end the reader (and SIGPIPE the program) nor grow without bound in memory.
//!
//! For the death of `flow` itself (`kill -9`, OOM) the binary gives [`watch_groups_with`] a way
//! to start one [`reap_on_eof`] watcher per run; it starts with the run's first group and is
//! told each group as it starts and ends: when `flow` dies, even by `kill -9`, the watcher's
//! input closes and it stops every group still listed, so an orphan can never write into the
//! next attempt's scratch.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest output line kept in the log; the rest of a longer line is dropped (and counted).
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// How long a cancelled program gets between SIGTERM and SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(3);

/// Makes `command` start in a new process group of its own. (No `pre_exec` hook: that would
/// force fork+exec instead of posix_spawn, about 2 ms more per command in a large process;
/// the run's watcher covers the death of `flow`.)
pub fn isolate(command: &mut Command) {
    command.process_group(0);
}

/// Starts the run's watcher and returns its input; called at most once per run.
pub type WatcherStart = Box<dyn FnOnce() -> Option<Box<dyn Write + Send>> + Send>;

/// Where running groups are announced (`+PGID` / `-PGID` lines): the run's watcher, started
/// when the first group is announced, so a run that starts no program (a cached rerun) pays
/// for no watcher process.
enum Watcher {
    Off,
    NotStarted(WatcherStart),
    Running(Box<dyn Write + Send>),
}

impl Watcher {
    fn announce(&mut self, line: &str) {
        if matches!(self, Watcher::NotStarted(_)) && line.starts_with('+') {
            if let Watcher::NotStarted(start) = std::mem::replace(self, Watcher::Off) {
                if let Some(input) = start() {
                    *self = Watcher::Running(input);
                }
            }
        }
        if let Watcher::Running(input) = self {
            let _ = writeln!(input, "{line}").and_then(|_| input.flush());
        }
    }
}

static WATCHER: Mutex<Watcher> = Mutex::new(Watcher::Off);

/// Announces every command group from now on to the run's watcher (a [`reap_on_eof`] loop
/// reading its input), which `start` starts when the first group is announced; `start`
/// returning `None` (it could not start) leaves groups unannounced.
pub fn watch_groups_with(start: WatcherStart) {
    *WATCHER.lock().unwrap_or_else(|p| p.into_inner()) = Watcher::NotStarted(start);
}

/// Stops announcing and closes the watcher's input (the end of a run: it then exits at once,
/// every group having ended).
pub fn stop_watching() {
    *WATCHER.lock().unwrap_or_else(|p| p.into_inner()) = Watcher::Off;
}

fn announce(line: String) {
    WATCHER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .announce(&line);
}

/// Tells the watcher that `child`'s group is running.
pub fn watch(child: &Child) {
    announce(format!("+{}", child.id()));
}

/// The watcher's loop: reads `+PGID`/`-PGID` lines until end of input, then stops every group
/// still running (SIGTERM, then SIGKILL after [`TERMINATE_GRACE`]). Returns how many it stopped.
pub fn reap_on_eof(input: impl Read) -> usize {
    let mut groups = BTreeSet::new();
    for_each_line(input, |line| {
        if let Some(pgid) = line
            .strip_prefix('+')
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        {
            groups.insert(pgid);
        } else if let Some(pgid) = line.strip_prefix('-').and_then(|p| p.parse().ok()) {
            groups.remove(&pgid);
        }
    });
    let left: Vec<libc::pid_t> = groups.into_iter().filter(|&g| g > 1).collect();
    for &g in &left {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe { libc::killpg(g, libc::SIGTERM) };
    }
    if !left.is_empty() {
        std::thread::sleep(TERMINATE_GRACE);
    }
    for &g in &left {
        // SAFETY: as above.
        unsafe { libc::killpg(g, libc::SIGKILL) };
    }
    left.len()
}

/// Sends `signal` to the process group led by `child` (started with [`isolate`]).
fn signal_group(child: &Child, signal: libc::c_int) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: killpg has no memory-safety preconditions; ESRCH (group gone) is fine.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Kills whatever is left of the group once its leader has exited (background grandchildren).
pub fn reap_group(child: &Child) {
    signal_group(child, libc::SIGKILL);
    announce(format!("-{}", child.id()));
}

/// SIGTERM to the whole group, SIGKILL after [`TERMINATE_GRACE`], then waits for the leader.
pub fn stop_group(child: &mut Child) {
    signal_group(child, libc::SIGTERM);
    let until = Instant::now() + TERMINATE_GRACE;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(child, libc::SIGKILL);
    let _ = child.wait();
    announce(format!("-{}", child.id()));
}

/// Splits a byte stream into lines as it arrives (lossy UTF-8, `\r\n` ends a line too, at
/// most [`MAX_LOG_LINE_BYTES`] kept per line with a note counting the rest), so a binary or
/// newline-free stream can neither stop the reader nor grow without bound.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    dropped: usize,
}

impl LineSplitter {
    /// Takes the next bytes of the stream, calling `line` for each line they complete.
    pub fn feed(&mut self, mut bytes: &[u8], line: &mut impl FnMut(&str)) {
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            self.keep(&bytes[..i]);
            self.emit(line);
            bytes = &bytes[i + 1..];
        }
        self.keep(bytes);
    }

    /// The end of the stream: the last line, when it had no newline.
    pub fn finish(mut self, line: &mut impl FnMut(&str)) {
        if !self.buf.is_empty() || self.dropped > 0 {
            self.emit(line);
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let take = bytes
            .len()
            .min(MAX_LOG_LINE_BYTES.saturating_sub(self.buf.len()));
        self.buf.extend_from_slice(&bytes[..take]);
        self.dropped += bytes.len() - take;
    }

    fn emit(&mut self, line: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        if self.dropped > 0 {
            line(&format!(
                "{text} [... {} more bytes of this line not logged]",
                self.dropped
            ));
        } else {
            line(text);
        }
        self.buf.clear();
        self.dropped = 0;
    }
}

/// Calls `line` for every line of `pipe` (see [`LineSplitter`]) until end of file or a read
/// error.
pub fn for_each_line(mut pipe: impl Read, mut line: impl FnMut(&str)) {
    let mut lines = LineSplitter::default();
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => lines.feed(&chunk[..n], &mut line),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    lines.finish(&mut line);
}

/// What a finished command used: CPU time (rusage), peak memory (the program's `VmHWM`,
/// sampled while it ran: `ru_maxrss` would count the pages it shared with flow before exec)
/// and `/proc/<pid>/io` (read just before it was reaped).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChildUsage {
    pub cpu_us: u64,
    pub maxrss_kb: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
}

/// Whether the child `pid` has exited, without reaping it (`waitid` with `WNOWAIT`).
fn has_exited(pid: u32) -> std::io::Result<bool> {
    // SAFETY: waitid fills the zeroed siginfo we own; WNOWAIT leaves the child unreaped.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: si_pid is valid after a successful waitid (0 when nothing changed state).
    Ok(unsafe { info.si_pid() } != 0)
}

/// Reaps the exited child `pid`: its exit status and what it used (`peak_kb`: the largest
/// `VmHWM` seen while it ran; `ru_maxrss` when it ended before the first look).
fn reap(pid: u32, peak_kb: Option<u64>) -> std::io::Result<(ExitStatus, ChildUsage)> {
    use std::os::unix::process::ExitStatusExt;
    let (read_bytes, written_bytes) = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .map(|t| crate::usage::io_chars(&t))
        .unwrap_or((0, 0));
    let mut status = 0;
    // SAFETY: wait4 writes the status and the zeroed rusage we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
        if r == pid as libc::pid_t {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let usage = ChildUsage {
        cpu_us: crate::usage::timeval_us(ru.ru_utime) + crate::usage::timeval_us(ru.ru_stime),
        maxrss_kb: peak_kb.unwrap_or(ru.ru_maxrss.max(0) as u64),
        read_bytes,
        written_bytes,
    };
    Ok((ExitStatus::from_raw(status), usage))
}

/// The longest wait between two looks at a running program (its peak memory, `cancelled`).
const LOOK_INTERVAL: Duration = Duration::from_millis(50);

/// Runs `child` (spawned with piped stdout and stderr, in its own group) to its end on the
/// calling thread: every output line goes to `line`, the group is stopped when `cancelled`
/// turns true, and whatever is left of the group is killed once the program exits.
/// `Ok(None)` means it was cancelled. The child is reaped here (with its usage), so
/// `child.wait()` must not be called afterwards.
///
/// One thread and `poll`: the program's exit wakes it at once through a pidfd (Linux 5.3+;
/// without one the exit is polled for), and no reader thread is started per command.
pub fn run_to_end(
    child: &mut Child,
    cancelled: impl Fn() -> bool,
    mut line: impl FnMut(&str),
) -> std::io::Result<Option<(ExitStatus, ChildUsage)>> {
    let mut outputs: Vec<Output> = Vec::new();
    if let Some(p) = child.stdout.take() {
        outputs.push(Output::new(p));
    }
    if let Some(p) = child.stderr.take() {
        outputs.push(Output::new(p));
    }
    let pidfd = open_pidfd(child.id());
    let mut chunk = vec![0u8; 64 * 1024];
    let mut wait = Duration::from_micros(200);
    let mut peak_kb: Option<u64> = None;
    let mut looked: Option<Instant> = None;
    loop {
        // Before the exit check: a zombie has no memory left to read. On a timer, not on
        // every wake: a chatty program must not cost a /proc read per line.
        if looked.is_none_or(|t| t.elapsed() >= wait) {
            if let Some(kb) = crate::usage::process_peak_rss_kb(child.id()) {
                peak_kb = Some(peak_kb.unwrap_or(0).max(kb));
            }
            looked = Some(Instant::now());
        }
        if has_exited(child.id())? {
            let done = reap(child.id(), peak_kb)?;
            reap_group(child);
            drain(outputs, &mut chunk, &mut line);
            return Ok(Some(done));
        }
        if cancelled() {
            stop_group(child);
            drain(outputs, &mut chunk, &mut line);
            return Ok(None);
        }
        let mut fds: Vec<libc::pollfd> = outputs
            .iter()
            .map(|o| o.fd)
            .chain(pidfd.as_ref().map(|p| p.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a live array of `fds.len()` pollfds; the timespec is ours.
        let ready = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &timeout,
                std::ptr::null(),
            )
        };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        if ready == 0 {
            wait = (wait * 2).min(LOOK_INTERVAL);
        }
        let mut open = Vec::with_capacity(outputs.len());
        for (mut o, fd) in outputs.into_iter().zip(&fds) {
            if fd.revents == 0 || o.read_some(&mut chunk, &mut line) {
                open.push(o);
            } else {
                o.lines.finish(&mut line);
            }
        }
        outputs = open;
    }
}

/// One output pipe of a program and the line it is in the middle of.
struct Output {
    pipe: Box<dyn Read + Send>,
    fd: RawFd,
    lines: LineSplitter,
}

impl Output {
    fn new(pipe: impl Read + AsRawFd + Send + 'static) -> Self {
        Output {
            fd: pipe.as_raw_fd(),
            pipe: Box::new(pipe),
            lines: LineSplitter::default(),
        }
    }

    /// One read (the pipe is ready, so it does not block); false at end of file or on error.
    fn read_some(&mut self, chunk: &mut [u8], line: &mut impl FnMut(&str)) -> bool {
        match self.pipe.read(chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.lines.feed(&chunk[..n], line);
                true
            }
            Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
        }
    }
}

/// Reads what is left in `outputs` to their end (the group is gone, so the ends come).
fn drain(outputs: Vec<Output>, chunk: &mut [u8], line: &mut impl FnMut(&str)) {
    for mut o in outputs {
        while o.read_some(chunk, line) {}
        o.lines.finish(line);
    }
}

/// A descriptor that turns readable when process `pid` exits (None where the kernel has no
/// `pidfd_open`: the caller then looks for the exit on a timer).
fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative result is a descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;
    use std::process::Stdio;

    fn lines_of(bytes: &[u8]) -> Vec<String> {
        let mut v = Vec::new();
        for_each_line(bytes, |l| v.push(l.to_string()));
        v
    }

    #[test]
    fn lines_survive_binary_output_and_are_capped() {
        assert_eq!(lines_of(b"a\nb\r\nc"), ["a", "b", "c"]);
        assert_eq!(
            lines_of(b"ok\n\xff\xfe bad\nafter\n"),
            ["ok", "\u{fffd}\u{fffd} bad", "after"]
        );
        let long = vec![b'x'; MAX_LOG_LINE_BYTES + 100];
        let got = lines_of(&[&long[..], b"\nnext\n"].concat());
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(&"x".repeat(MAX_LOG_LINE_BYTES)));
        assert!(
            got[0].ends_with("[... 100 more bytes of this line not logged]"),
            "{}",
            &got[0][MAX_LOG_LINE_BYTES..]
        );
        assert_eq!(got[1], "next");
        assert!(lines_of(b"").is_empty());
    }

    proptest::proptest! {
        /// The lines do not depend on how the stream arrives in pieces (a line split across
        /// reads, a cap reached across reads).
        #[test]
        fn lines_do_not_depend_on_read_sizes(
            parts in proptest::collection::vec(
                proptest::collection::vec(proptest::prop_oneof![
                    Just(b'\n'), Just(b'\r'), Just(b'x'), Just(0xffu8)
                ], 0..40), 0..12),
            long in 0usize..3,
        ) {
            let mut stream: Vec<u8> = parts.concat();
            // Now and then a line longer than the cap, to cross it within one piece or many.
            stream.extend(std::iter::repeat_n(b'y', long * (MAX_LOG_LINE_BYTES / 2 + 7)));
            let whole = lines_of(&stream);
            let mut pieces = Vec::new();
            let mut lines = LineSplitter::default();
            let mut rest = &stream[..];
            for p in &parts {
                let n = p.len().min(rest.len());
                lines.feed(&rest[..n], &mut |l: &str| pieces.push(l.to_string()));
                rest = &rest[n..];
            }
            for c in rest.chunks(4096) {
                lines.feed(c, &mut |l: &str| pieces.push(l.to_string()));
            }
            lines.finish(&mut |l: &str| pieces.push(l.to_string()));
            proptest::prop_assert_eq!(whole, pieces);
        }
    }

    /// Both pipes are read to the end on the one thread, whichever fills first.
    #[test]
    fn output_of_both_pipes_is_kept() {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; printf tail",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        isolate(&mut c);
        let mut child = c.spawn().unwrap();
        let mut got = Vec::new();
        let (status, _) = run_to_end(&mut child, || false, |l| got.push(l.to_string()))
            .unwrap()
            .unwrap();
        assert!(status.success());
        assert_eq!(got.len(), 4001, "{:?}", &got[got.len().saturating_sub(3)..]);
        assert!(got.contains(&"out1999".to_string()) && got.contains(&"err1999".to_string()));
        assert!(
            got.contains(&"tail".to_string()),
            "a last line without newline"
        );
    }

    /// Live (not zombie) processes of group `pgid`, from /proc.
    fn live_members(pgid: i32) -> Vec<i32> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // After "(comm)": state, ppid, pgrp, ...
            let rest: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            if rest.len() > 2 && rest[2].parse() == Ok(pgid) && rest[0] != "Z" {
                v.push(pid);
            }
        }
        v
    }

    /// The exit status and what the program used come back from the wait.
    #[test]
    fn a_finished_command_reports_its_status_and_usage() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; head -c 1000000 /dev/zero > f; exit 3",
        ])
        .current_dir(dir.path());
        isolate(&mut c);
        let mut child = c.spawn().unwrap();
        let (status, usage) = run_to_end(&mut child, || false, |_| {}).unwrap().unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(usage.cpu_us > 10_000, "{usage:?}");
        assert!(usage.maxrss_kb > 100, "{usage:?}");
        assert!(usage.written_bytes >= 1_000_000, "{usage:?}");
        assert!(usage.read_bytes >= 1_000_000, "{usage:?}");
    }

    /// A background grandchild is killed with its group once the program exits, and the
    /// output pipe it held is closed, so reading ends.
    #[test]
    fn the_group_dies_with_its_leader() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!("sleep 30 & echo $! > {}; echo started", pidfile.display()),
        ])
        .stdout(Stdio::piped());
        isolate(&mut c);
        let mut child = c.spawn().unwrap();
        let pgid = child.id() as i32;
        let mut got = Vec::new();
        let (status, _) = run_to_end(&mut child, || false, |l| got.push(l.to_string()))
            .unwrap()
            .unwrap();
        assert!(status.success());
        assert_eq!(got, ["started"]);
        assert!(pidfile.exists());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            live_members(pgid),
            Vec::<i32>::new(),
            "the background sleep survived"
        );
    }

    /// The watcher starts with the first running group, once, and hears every line after.
    #[test]
    fn the_watcher_starts_with_the_first_group() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (heard, starts) = (Shared::default(), Arc::new(AtomicUsize::new(0)));
        let (h, n) = (heard.clone(), starts.clone());
        let mut w = Watcher::NotStarted(Box::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
            Some(Box::new(h) as Box<dyn Write + Send>)
        }));
        w.announce("-7");
        assert_eq!(
            starts.load(Ordering::SeqCst),
            0,
            "an end alone starts nothing"
        );
        w.announce("+8");
        w.announce("+9");
        w.announce("-8");
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(
            String::from_utf8(heard.0.lock().unwrap().clone()).unwrap(),
            "+8\n+9\n-8\n"
        );
        let mut failed = Watcher::NotStarted(Box::new(|| None));
        failed.announce("+1");
        assert!(matches!(failed, Watcher::Off));
    }

    #[test]
    fn the_watcher_stops_groups_still_listed_at_end_of_input() {
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 30 & sleep 30"]);
        isolate(&mut c);
        let mut child = c.spawn().unwrap();
        let pgid = child.id() as i32;
        let mut done = Command::new("true");
        isolate(&mut done);
        let mut done = done.spawn().unwrap();
        done.wait().unwrap();
        let input = format!("+{pgid}\n+{}\n-{}\n", done.id(), done.id());
        assert_eq!(
            reap_on_eof(input.as_bytes()),
            1,
            "only the group still listed"
        );
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(live_members(pgid), Vec::<i32>::new());
    }

    #[test]
    fn cancel_stops_the_whole_group() {
        let mut c = Command::new("sh");
        c.args(["-c", "trap '' TERM; sleep 30 & sleep 30; wait"]);
        isolate(&mut c);
        let mut child = c.spawn().unwrap();
        let pgid = child.id() as i32;
        let t = Instant::now();
        let r = run_to_end(
            &mut child,
            || t.elapsed() > Duration::from_millis(200),
            |_| {},
        )
        .unwrap();
        assert!(r.is_none(), "cancelled");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            live_members(pgid),
            Vec::<i32>::new(),
            "processes of the group are left"
        );
    }
}
