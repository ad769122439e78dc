//! Executors: where a node's attempt runs. `local` (the default) runs it on a worker thread
//! of `flow run` ([`crate::execute`]); [`slurm`] runs it as a Slurm batch job through the
//! hidden `flow exec-node` subcommand ([`job`]), with one poller for all of a run's jobs
//! ([`tracker`]) and a ledger of job ids in the state dir ([`ledger`]).
//!
//! Which executor runs a node: the node's own `executor:`, else `flow run --executor`, else
//! the pipeline's `executor:` default, else local.

pub mod commands;
pub mod job;
pub mod ledger;
pub mod slurm;
pub mod status;
pub mod tracker;

use crate::spec::ExecutorKind;
use crate::validate::Node;

/// The executor of `node`: its own, else the command line's, else the pipeline's, else local.
pub fn choose(
    node: &Node,
    cli: Option<ExecutorKind>,
    pipeline: Option<ExecutorKind>,
) -> ExecutorKind {
    node.spec
        .executor
        .or(cli)
        .or(pipeline)
        .unwrap_or(ExecutorKind::Local)
}
