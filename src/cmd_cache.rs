//! `flow cache ls | gc | verify`.

use anyhow::Result;
use flow_engine::state::{LockMode, StateDir};

use crate::cli::{CacheAction, CacheArgs, Global};
use crate::cmd_run::state_root;

pub fn cache(g: &Global, a: &CacheArgs) -> Result<u8> {
    let state = StateDir::open(&state_root(g)?, LockMode::FailFast)?;
    match a.action {
        CacheAction::Ls => {
            let mut actions = state.index.actions()?;
            actions.sort_by(|x, y| {
                x.node
                    .cmp(&y.node)
                    .then(x.started_unix_ms.cmp(&y.started_unix_ms))
            });
            for r in &actions {
                let size: u64 = r.outputs.values().map(|o| o.size).sum();
                let outs: Vec<&str> = r.outputs.keys().map(|s| s.as_str()).collect();
                println!(
                    "{}  {:<30} {:>10} B  {:>8.2}s  outputs: {}",
                    r.key.short(),
                    r.node,
                    size,
                    r.seconds,
                    outs.join(", ")
                );
            }
            println!(
                "{} cached result(s), {} blob(s)",
                actions.len(),
                state.store.list()?.len()
            );
        }
        CacheAction::Gc => {
            let pruned = state.prune()?;
            let keep = state.index.live_blobs(&state.store)?;
            let (n, bytes) = state.store.gc(&keep)?;
            println!(
                "removed {n} unreferenced blob(s), {bytes} bytes; {} cached result(s) with a missing blob, {} old run folder(s) (keeping {}), {} finished checkpoint(s)",
                pruned.records,
                pruned.runs,
                flow_engine::state::KEEP_RUNS,
                pruned.checkpoints
            );
        }
        CacheAction::Verify => {
            let report = state.store.verify()?;
            let dropped = state.index.drop_using(&report.bad)?;
            for d in &report.bad {
                println!("corrupt blob {d} (deleted)");
            }
            for node in &dropped {
                println!("dropped cached result of `{node}`: it will run again");
            }
            println!(
                "checked {} blob(s): {} corrupt, {} cached result(s) dropped",
                report.checked,
                report.bad.len(),
                dropped.len()
            );
            return Ok(if report.bad.is_empty() { 0 } else { 1 });
        }
    }
    Ok(0)
}
