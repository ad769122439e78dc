//! tracing setup: text or JSON lines on stderr, printed above the progress bars. The stages'
//! own INFO and DEBUG lines (epoch losses, studies rendered) go to their node's log instead,
//! unless `-v`: the terminal shows the run, `.flow/runs/<id>/logs/<node>.log` the details.

use std::io::Write;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The target of the engine's echo of node log lines (never routed back into a node log).
pub const NODE_LOG_TARGET: &str = "flow_node_log";

pub fn init(quiet: bool, verbose: u8, format: LogFormat) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        // The JPEG 2000 decoder logs progress ("Start to read j2k main header") at INFO for
        // every slice: shown from -v on.
        (false, 0) => "info,openjp2=warn,jpeg2k=warn",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("FLOW_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogRouter {
            stages_to_node_logs: verbose == 0,
        })
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.without_time().try_init(),
    };
}

/// Chooses, per event, where its line goes.
#[derive(Clone, Copy)]
struct LogRouter {
    stages_to_node_logs: bool,
}

impl<'a> MakeWriter<'a> for LogRouter {
    type Writer = RoutedLine;
    fn make_writer(&'a self) -> RoutedLine {
        RoutedLine::default()
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> RoutedLine {
        RoutedLine {
            // INFO and more verbose (DEBUG, TRACE) from a thread that works for a node.
            to_node: self.stages_to_node_logs
                && *meta.level() >= Level::INFO
                && meta.target() != NODE_LOG_TARGET,
            buf: Vec::new(),
        }
    }
}

/// One formatted event, written when dropped: to the node's log when routed there and the
/// thread works for a node, else to stderr above the bars.
#[derive(Default)]
struct RoutedLine {
    to_node: bool,
    buf: Vec<u8>,
}

impl Write for RoutedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RoutedLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.to_node {
            let text = strip_ansi(&String::from_utf8_lossy(&self.buf));
            if flow_engine::progress::log_to_node(text.trim_end()) {
                return;
            }
        }
        let _ = flow_engine::progress::SuspendingStderr.write_all(&self.buf);
    }
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_codes_are_stripped() {
        assert_eq!(
            super::strip_ansi("\x1b[32m INFO\x1b[0m epoch done \x1b[3mloss\x1b[0m=0.5"),
            " INFO epoch done loss=0.5"
        );
    }
}
