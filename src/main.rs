//! `flow`: run declarative DAG pipelines with content-addressed caching.
//!
//! Exit codes: 0 success; 1 a node failed (or the run was interrupted); 2 invalid pipeline,
//! arguments or input.

mod allocator;
mod cli;
mod cmd_cache;
mod cmd_inspect;
mod cmd_run;
mod cmd_tools;
mod logging;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.only_prints() {
        restore_default_sigpipe();
    }
    logging::init(cli.global.quiet, cli.global.verbose, cli.global.log_format);
    let result = match &cli.command {
        Command::Run(a) => cmd_run::run(&cli.global, a),
        Command::Plan(a) => cmd_inspect::plan(&cli.global, a),
        Command::Graph(a) => cmd_inspect::graph(&cli.global, a),
        Command::Status(a) => cmd_inspect::status(&cli.global, a),
        Command::Explain(a) => cmd_inspect::explain(&cli.global, a),
        Command::Stages(a) => cmd_inspect::stages(a),
        Command::Cache(a) => cmd_cache::cache(&cli.global, a),
        Command::Convert(a) => cmd_tools::convert(a),
        Command::Synth(a) => cmd_tools::synth(&cli.global, a),
        Command::Score(a) => cmd_tools::score(a),
        Command::Report(a) => cmd_inspect::run_report(&cli.global, a),
        Command::Completions(a) => {
            use clap::CommandFactory;
            clap_complete::generate(a.shell, &mut Cli::command(), "flow", &mut std::io::stdout());
            Ok(0)
        }
        Command::ExecNode(a) => cmd_run::exec_node(a),
        Command::Reap => {
            flow_engine::child::reap_on_eof(std::io::stdin().lock());
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e
                .downcast_ref::<flow_engine::EngineError>()
                .map(|e| e.exit_code())
                .unwrap_or(1);
            eprintln!("error: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` to a closed pipe (`flow stages | head`) panics. The
/// commands that only print get the default back and end quietly as `cat` does; `run` and
/// the others keep ignoring it (a closed pipe to a child is an error they report).
fn restore_default_sigpipe() {
    // SAFETY: called once at start-up, before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
