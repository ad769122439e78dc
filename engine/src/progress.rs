//! The live terminal view: a bar for the DAG and a line per running node (indicatif), drawn
//! on stderr and cooperating with tracing output (log lines are printed above the bars).

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Reporter};

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
            Event::NodeCached { .. } => self.total.inc(1),
            Event::NodeFinished { node, .. } | Event::NodeFailed { node, .. } => {
                self.finish_node(node)
            }
            Event::NodeBlocked { .. } => self.total.inc(1),
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
