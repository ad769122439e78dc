//! tracing setup: text or JSON lines on stderr, printed above the progress bars.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

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
        .with_writer(|| flow_engine::progress::SuspendingStderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.without_time().try_init(),
    };
}
