//! The live terminal view, like cargo's or nextest's: a bar for the DAG, a live line per
//! running node with its own progress and ETA (indicatif), and one line per finished node
//! printed above them. Log lines of the stages themselves (their `tracing` INFO and DEBUG
//! events) go to the node's log instead of the terminal unless `-v` (see [`log_to_node`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Reporter};
use crate::stage::NodeReporter;

thread_local! {
    /// The node the current thread works for (its engine thread or a worker of its pool).
    static NODE: RefCell<Option<(String, Arc<dyn NodeReporter>)>> = const { RefCell::new(None) };
}

/// Marks the calling thread as working for `node` until the guard drops.
pub(crate) fn enter_node(node: &str, sink: Arc<dyn NodeReporter>) -> NodeGuard {
    set_thread_node(node, sink);
    NodeGuard
}

/// Marks the calling thread (a pool worker that lives only for the node) as working for it.
pub(crate) fn set_thread_node(node: &str, sink: Arc<dyn NodeReporter>) {
    NODE.with(|n| *n.borrow_mut() = Some((node.to_string(), sink)));
}

/// Clears the thread's node on drop.
pub(crate) struct NodeGuard;

impl Drop for NodeGuard {
    fn drop(&mut self) {
        NODE.with(|n| *n.borrow_mut() = None);
    }
}

/// Writes `line` to the log of the node the calling thread works for; false when it works
/// for none (the caller then prints it). The binary's log writer routes the stages' own
/// INFO and DEBUG lines through this, so the terminal keeps the run's view.
pub fn log_to_node(line: &str) -> bool {
    NODE.with(|n| match &*n.borrow() {
        Some((node, sink)) => {
            sink.log(node, line);
            true
        }
        None => false,
    })
}

static MULTI: OnceLock<MultiProgress> = OnceLock::new();

/// The process-wide multi-progress (hidden when stderr is not a terminal).
pub fn multi() -> &'static MultiProgress {
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)))
}

/// A `tracing_subscriber` writer that prints above the progress bars.
#[derive(Clone, Copy, Default)]
pub struct SuspendingStderr;

impl Write for SuspendingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Draws the run: total bar plus one line per running node with its own progress.
pub struct ProgressUi {
    total: ProgressBar,
    running: HashMap<String, ProgressBar>,
}

impl ProgressUi {
    pub fn new(nodes: usize) -> ProgressUi {
        let total = multi().add(ProgressBar::new(nodes as u64));
        total.set_style(
            ProgressStyle::with_template(
                "{spinner:.green} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} nodes {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        total.enable_steady_tick(Duration::from_millis(120));
        ProgressUi {
            total,
            running: HashMap::new(),
        }
    }

    fn node_bar(&mut self, node: &str) -> &ProgressBar {
        self.running.entry(node.to_string()).or_insert_with(|| {
            let b = multi().add(ProgressBar::new(0));
            b.set_style(
                ProgressStyle::with_template("  {spinner} {prefix:.bold} {wide_msg}")
                    .expect("valid template"),
            );
            b.set_prefix(node.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        })
    }

    fn finish_node(&mut self, node: &str) {
        if let Some(b) = self.running.remove(node) {
            b.finish_and_clear();
            multi().remove(&b);
        }
        self.total.inc(1);
    }

    /// One line above the bars, cargo style: a right-aligned coloured verb, then the node.
    fn line(&self, verb: &str, colour: u8, seconds: Option<f64>, node: &str, rest: &str) {
        let time = seconds.map(seconds_text).unwrap_or_default();
        multi().suspend(|| {
            eprintln!("\x1b[1;{colour}m{verb:>8}\x1b[0m {time:>8} {node}{rest}");
        });
    }
}

/// Seconds at a readable precision: `0.42 s`, `12.3 s`, `4 min 05 s`.
pub fn seconds_text(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 600.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

impl Reporter for ProgressUi {
    fn on(&mut self, e: &Event) {
        match e {
            Event::NodeStarted { node, .. } => {
                self.node_bar(node).set_message("running");
            }
            Event::NodeProgress {
                node,
                done,
                total,
                message,
            } => {
                let b = self.node_bar(node).clone();
                if *total > 0 {
                    b.set_style(
                        ProgressStyle::with_template(
                            "  {spinner} {prefix:.bold} {bar:20} {pos}/{len} eta {eta} {wide_msg}",
                        )
                        .expect("valid template"),
                    );
                    b.set_length(*total);
                    b.set_position(*done);
                }
                b.set_message(message.clone());
            }
            Event::NodeCached { node, .. } => {
                self.line("cached", 36, None, node, "");
                self.total.inc(1)
            }
            Event::NodeFinished { node, seconds, .. } => {
                self.line("ran", 32, Some(*seconds), node, "");
                self.finish_node(node)
            }
            Event::NodeFailed {
                node,
                seconds,
                error,
                ..
            } => {
                let first = error.lines().next().unwrap_or_default();
                self.line("FAILED", 31, Some(*seconds), node, &format!(": {first}"));
                self.finish_node(node)
            }
            Event::NodeRetry { node, error, .. } => {
                let first = error.lines().next().unwrap_or_default();
                self.line("retry", 33, None, node, &format!(": {first}"));
            }
            Event::NodeBlocked { node, by } => {
                self.line("blocked", 33, None, node, &format!(" (by {by})"));
                self.total.inc(1)
            }
            Event::RunFinished { .. } => {
                for (_, b) in self.running.drain() {
                    b.finish_and_clear();
                }
                self.total.finish_and_clear();
            }
            _ => {}
        }
    }
}
