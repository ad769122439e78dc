//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `flow --version`: the package version and the commit it was built from (build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FLOW_COMMIT"), ")");

#[derive(Parser)]
#[command(
    name = "flow",
    version = VERSION,
    about = "Declarative DAG workflows with content-addressed caching and resume"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// State directory (cache, index, logs). Default: .flow in the working directory.
    #[arg(long, global = true, env = "FLOW_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// No progress bars; only warnings and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More log detail (-v: debug, -vv: trace).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a pipeline: only what is not cached yet.
    Run(RunArgs),
    /// Dry run: for each node, whether it would run or is cached, and why.
    Plan(PlanArgs),
    /// Print the DAG as Graphviz DOT or Mermaid.
    Graph(GraphArgs),
    /// Show each node's state: done, failed, in progress (checkpoint), pending.
    Status(PipelineArgs),
    /// Explain which part of a node's key changed since its cached result.
    Explain(ExplainArgs),
    /// List stage kinds with their params, inputs and docs.
    Stages(StagesArgs),
    /// Inspect and maintain the cache.
    Cache(CacheArgs),
    /// Convert one DICOM series folder to NIfTI (like dcm2niix, with flow's reader).
    Convert(ConvertArgs),
    /// Generate the synthetic cervical-spine cohort in the competition layout.
    Synth(SynthArgs),
    /// Score a submission against labels: competition metric and per-label AUC.
    Score(ScoreArgs),
    /// Print a shell completion script: `flow completions bash > ~/.local/share/bash-completion/completions/flow`.
    Completions(CompletionsArgs),
    /// Write the HTML run report of a past run (default: the latest): timeline, queue wait, run
    /// and CPU time, peak memory and I/O per node, the critical path.
    Report(ReportArgs),
    /// Internal: the watcher `flow run` starts to stop its command groups if it dies.
    #[command(name = "__reap", hide = true)]
    Reap,
    /// Internal: runs one node inside a Slurm job from the node file `flow run` wrote.
    #[command(name = "exec-node", hide = true)]
    ExecNode(ExecNodeArgs),
}

impl Command {
    /// Commands that only read and print (no state written, no children): a closed stdout
    /// may end them.
    pub fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Plan(_)
                | Command::Graph(_)
                | Command::Status(_)
                | Command::Explain(_)
                | Command::Stages(_)
                | Command::Score(_)
                | Command::Completions(_)
        )
    }
}

#[derive(Args)]
pub struct ExecNodeArgs {
    /// The node file (`<state dir>/tmp/<attempt>/node.json`).
    pub node_file: PathBuf,
}

/// Where nodes run (`--executor`).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExecutorArg {
    /// Worker threads and child processes of this `flow run`.
    Local,
    /// Slurm batch jobs (sbatch); see docs/slurm.md.
    Slurm,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// Folder holding the DICOM files of the series.
    pub dicom_dir: PathBuf,
    /// Output NIfTI file (.nii or .nii.gz).
    #[arg(short, long)]
    pub out: PathBuf,
    /// SeriesInstanceUID to convert (default: the series with the most slices).
    #[arg(long)]
    pub series: Option<String>,
    /// Also write the series report (geometry facts, no patient identifiers) as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder (must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
    /// tiny | demo | full
    #[arg(long, default_value = "demo")]
    pub profile: String,
    #[arg(long, default_value_t = 2022)]
    pub seed: u64,
    /// Total number of studies; one in eight becomes a test study (default: the profile's).
    #[arg(long)]
    pub studies: Option<usize>,
    /// Write patient identifiers made from this marker into every series (PatientName,
    /// PatientID, InstitutionName, PatientBirthDate 1923-04-05): a PHI canary for checking
    /// that no identifier reaches logs, reports or the cache.
    #[arg(long, value_name = "MARKER")]
    pub phi_canary: Option<String>,
}

#[derive(Args)]
pub struct ScoreArgs {
    /// Labels in train.csv layout (StudyInstanceUID,patient_overall,C1..C7).
    #[arg(long)]
    pub labels: PathBuf,
    /// Submission (row_id,fractured).
    #[arg(long)]
    pub pred: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone)]
pub struct PipelineArgs {
    /// Pipeline YAML file.
    pub file: PathBuf,
    /// Override a pipeline param (repeatable): --set key=value.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Which nodes a run (or a plan) covers; shared by `run` and `plan`.
#[derive(Args, Clone)]
pub struct Selection {
    /// Run only this node and what it needs (repeatable).
    #[arg(long)]
    pub target: Vec<String>,
    /// Force this node and everything downstream to run again (repeatable).
    #[arg(long)]
    pub rerun: Vec<String>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub selection: Selection,
    /// Keep running independent branches after a node fails.
    #[arg(long)]
    pub keep_going: bool,
    /// CPU slots shared by running nodes (default: number of CPUs).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// GPU ids nodes may use, e.g. 0,1 (default: from CUDA_VISIBLE_DEVICES, else none).
    #[arg(long, value_delimiter = ',')]
    pub gpus: Option<Vec<usize>>,
    /// Memory budget for nodes that declare `memory`, e.g. 16G.
    #[arg(long)]
    pub memory: Option<String>,
    /// Write a JSON report of the run to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the run report as one HTML page to this file: timeline, queue wait, run and CPU
    /// time, peak memory and I/O per node, the critical path (also later: `flow report`).
    #[arg(long, value_name = "FILE")]
    pub html_report: Option<PathBuf>,
    /// Wait for another run holding the state dir instead of failing.
    #[arg(long)]
    pub wait: bool,
    /// Don't link outputs under results/<pipeline>/.
    #[arg(long)]
    pub no_publish: bool,
    /// Where nodes run: local (default) or slurm. Overrides the pipeline's `executor:`
    /// default; a node's own `executor:` still wins.
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorArg>,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub selection: Selection,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[arg(long, value_enum, default_value_t = GraphFormatArg::Dot)]
    pub format: GraphFormatArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum GraphFormatArg {
    Dot,
    Mermaid,
}

#[derive(Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// The node to explain.
    pub node: String,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The run (a folder name under <state dir>/runs, as `flow run` prints it); default: the
    /// latest.
    pub run_id: Option<String>,
    /// Where to write the page (default: <state dir>/runs/<RUN_ID>/report.html).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct StagesArgs {
    /// Show only this stage kind.
    pub kind: Option<String>,
}

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Subcommand)]
pub enum CacheAction {
    /// List cached node results.
    Ls,
    /// Delete blobs no cached result references.
    Gc,
    /// Re-hash every blob; drop results whose blobs are corrupt so the next run redoes them.
    Verify,
}
