//! Executors: where a node's attempt runs. `local` (the default) runs it on a worker thread
//! of `flow run` ([`crate::execute`]); [`slurm`] runs it as a Slurm batch job through the
//! hidden `flow exec-node` subcommand ([`job`]), with one poller for all of a run's jobs
//! ([`tracker`]), a ledger of job ids in the state dir ([`ledger`]) and job arrays for
//! bursts of ready nodes ([`arrays`]).
//!
//! Which executor runs a node: the node's own `executor:`, else `flow run --executor`, else
//! the pipeline's `executor:` default, else local.

pub mod arrays;
pub mod commands;
pub mod job;
pub mod ledger;
pub mod slurm;
pub mod status;
pub mod tracker;

use crate::spec::ExecutorKind;

/// A node's executor: its own, else the command line's, else the pipeline's, else local.
pub fn choose(
    node: Option<ExecutorKind>,
    cli: Option<ExecutorKind>,
    pipeline: Option<ExecutorKind>,
) -> ExecutorKind {
    node.or(cli).or(pipeline).unwrap_or(ExecutorKind::Local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutorKind::{Local, Slurm};

    #[test]
    fn the_node_wins_then_the_command_line_then_the_pipeline() {
        assert_eq!(choose(None, None, None), Local);
        assert_eq!(choose(None, None, Some(Slurm)), Slurm);
        assert_eq!(choose(None, Some(Local), Some(Slurm)), Local);
        assert_eq!(choose(Some(Slurm), Some(Local), None), Slurm);
        assert_eq!(choose(Some(Local), Some(Slurm), Some(Slurm)), Local);
    }
}
