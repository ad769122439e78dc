//! `flow plan | graph | status | explain | stages`.

use std::path::Path;

use anyhow::{Context, Result};
use flow_engine::graph::{render, GraphFormat};
use flow_engine::inspect;
use flow_engine::spec::parse_override;
use flow_engine::state::{LockMode, StateDir};
use flow_engine::{Dag, EngineError};

use crate::cli::{
    ExplainArgs, Global, GraphArgs, GraphFormatArg, PipelineArgs, PlanArgs, ReportArgs, StagesArgs,
};
use crate::cmd_run::state_root;

/// Parses `--set` values and loads + validates the pipeline.
pub fn load(p: &PipelineArgs, cwd: &Path) -> Result<Dag> {
    let overrides = p
        .set
        .iter()
        .map(|s| parse_override(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(EngineError::Usage)?;
    Ok(flow_engine::load_pipeline(
        &p.file,
        &overrides,
        &flow_rsna::registry(),
        cwd,
    )?)
}

fn open(g: &Global) -> Result<StateDir> {
    Ok(StateDir::open(&state_root(g)?, LockMode::FailFast)?)
}

fn cwd() -> Result<std::path::PathBuf> {
    std::env::current_dir().context("cannot read the working directory")
}

pub fn plan(g: &Global, a: &PlanArgs) -> Result<u8> {
    let cwd = cwd()?;
    let dag = load(&a.pipeline, &cwd)?;
    let state = open(g)?;
    let entries = inspect::plan(&dag, &state, &cwd, &a.selection.target, &a.selection.rerun)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(0);
    }
    let w = entries.iter().map(|e| e.id.len()).max().unwrap_or(4);
    for e in &entries {
        println!("{:<w$}  {:<7}  {}", e.id, e.action, e.reason);
    }
    let count = |a: &str| entries.iter().filter(|e| e.action == a).count();
    let (cached, skipped) = (count("cached"), count("skipped"));
    println!(
        "{} node(s): {} cached, {} to run or pending, {} skipped",
        entries.len(),
        cached,
        entries.len() - cached - skipped,
        skipped
    );
    Ok(0)
}

pub fn graph(_g: &Global, a: &GraphArgs) -> Result<u8> {
    let dag = load(&a.pipeline, &cwd()?)?;
    let f = match a.format {
        GraphFormatArg::Dot => GraphFormat::Dot,
        GraphFormatArg::Mermaid => GraphFormat::Mermaid,
    };
    print!("{}", render(&dag, f));
    Ok(0)
}

pub fn status(g: &Global, a: &PipelineArgs) -> Result<u8> {
    let cwd = cwd()?;
    let dag = load(a, &cwd)?;
    let root = state_root(g)?;
    let entries = match StateDir::open(&root, LockMode::FailFast) {
        Ok(state) => inspect::status(&dag, &state, &cwd)?,
        // A run holds the state: show what its journal says instead of failing.
        Err(flow_engine::EngineError::Locked { pid, .. }) => {
            match inspect::journal_status(&dag, &root)? {
                Some((run, entries)) => {
                    println!(
                        "a run (pid {pid}) holds the state dir; from its journal (run {run}):"
                    );
                    entries
                }
                None => {
                    println!("a run (pid {pid}) holds the state dir and has no journal yet");
                    return Ok(0);
                }
            }
        }
        Err(e) => return Err(e.into()),
    };
    let w = entries.iter().map(|e| e.id.len()).max().unwrap_or(4);
    for e in &entries {
        println!("{:<w$}  {:<11}  {}", e.id, e.state, e.detail);
    }
    Ok(0)
}

pub fn explain(g: &Global, a: &ExplainArgs) -> Result<u8> {
    let cwd = cwd()?;
    let dag = load(&a.pipeline, &cwd)?;
    let state = open(g)?;
    for line in inspect::explain(&dag, &state, &cwd, &a.node)? {
        println!("{line}");
    }
    Ok(0)
}

pub fn stages(a: &StagesArgs) -> Result<u8> {
    let reg = flow_rsna::registry();
    let mut found = false;
    for s in reg.kinds() {
        if a.kind.as_deref().is_some_and(|k| k != s.kind()) {
            continue;
        }
        found = true;
        println!("{} (version {})", s.kind(), s.version());
        println!("  {}", s.doc());
        println!("  params:");
        for p in s.params().params {
            let default = p
                .default
                .map(|d| format!(" = {d}"))
                .unwrap_or_else(|| " (required)".into());
            let key = if p.in_key { "" } else { " [not in key]" };
            println!("    {}: {}{default}{key} — {}", p.name, p.ty.name(), p.doc);
        }
        match s.inputs() {
            None => println!("  inputs: any names"),
            Some(ins) => {
                println!("  inputs:");
                for i in ins {
                    let req = if i.required { "required" } else { "optional" };
                    let many = if i.many { ", list" } else { "" };
                    println!("    {} ({req}{many}) — {}", i.name, i.doc);
                }
            }
        }
        println!();
    }
    if !found {
        return Err(EngineError::Usage(format!(
            "no stage kind `{}`; known: {}",
            a.kind.clone().unwrap_or_default(),
            reg.names().join(", ")
        ))
        .into());
    }
    Ok(0)
}

/// `flow report [RUN_ID]`: the HTML run report of a past run, from its event journal (no lock:
/// it works while another run holds the state).
pub fn run_report(g: &Global, a: &ReportArgs) -> Result<u8> {
    let runs = state_root(g)?.join("runs");
    let run_id = match &a.run_id {
        Some(id) => id.clone(),
        None => {
            let mut ids: Vec<String> = std::fs::read_dir(&runs)
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.path().join("events.jsonl").is_file())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            ids.sort();
            ids.pop().ok_or_else(|| {
                EngineError::Usage(format!(
                    "no run in {} yet: `flow run` one first",
                    runs.display()
                ))
            })?
        }
    };
    let journal = runs.join(&run_id).join("events.jsonl");
    if !journal.is_file() {
        return Err(EngineError::Usage(format!(
            "no run `{run_id}` in {} (its events.jsonl is missing)",
            runs.display()
        ))
        .into());
    }
    let trace = flow_engine::run_report::RunTrace::read(&journal)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| runs.join(&run_id).join("report.html"));
    std::fs::write(&out, trace.to_html())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", out.display());
    Ok(0)
}
