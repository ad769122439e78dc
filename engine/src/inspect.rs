//! Read-only views of a pipeline against the cache: `flow plan`, `flow status`, `flow explain`.

use std::collections::BTreeMap;
use std::path::Path;

use flow_cache::OutputRecord;
use serde::Serialize;

use crate::error::EngineError;
use crate::key;
use crate::resolve::{key_node, ExternalDigests};
use crate::runner::selection;
use crate::state::StateDir;
use crate::validate::Dag;

/// What a run would do with one node, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    pub id: String,
    /// `cached`, `run`, or `pending` (waits for an upstream node that runs; may then be cached).
    pub action: &'static str,
    pub reason: String,
    pub key: Option<String>,
}

fn why_run(
    state: &StateDir,
    node: &str,
    manifest: &serde_json::Value,
) -> Result<String, EngineError> {
    let Some(last) = state.index.last_key(node)? else {
        return Ok(match state.index.failure(node)? {
            Some(f) => format!("failed last time: {}", first_line(&f)),
            None => "never ran".into(),
        });
    };
    let Some(prev) = state.index.lookup(&last)? else {
        return Ok("its cached result was dropped (cache verify/gc)".into());
    };
    let mut d = key::diff(&prev.manifest, manifest);
    d.extend(changed_documents(state, &prev.manifest, manifest));
    if let Some(f) = state.index.failure(node)? {
        return Ok(format!("failed last time: {}", first_line(&f)));
    }
    Ok(if d.is_empty() {
        "its cached outputs are missing from the store".into()
    } else {
        d.join("; ")
    })
}

/// For each single-file input whose digest changed and whose old and new versions are small
/// JSON documents still in the store (a plan section, a config), the entries that differ:
/// `flow explain` then names `lr`, not just two digests.
fn changed_documents(
    state: &StateDir,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Vec<String> {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = |v: &serde_json::Value| -> Option<serde_json::Value> {
        if v["kind"] != "file" {
            return None;
        }
        let digest: flow_cache::Digest = v["digest"].as_str()?.parse().ok()?;
        let path = state.store.blob_path(&digest);
        if std::fs::metadata(&path).ok()?.len() > MAX_BYTES {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    let mut out = Vec::new();
    let Some(inputs) = new["inputs"].as_object() else {
        return out;
    };
    for (name, n) in inputs {
        let o = &old["inputs"][name];
        if o == n {
            continue;
        }
        if let (Some(a), Some(b)) = (read(o), read(n)) {
            out.extend(key::diff_documents(&format!("input `{name}`:"), &a, &b));
        }
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Computes the plan without running anything.
pub fn plan(
    dag: &Dag,
    state: &StateDir,
    base: &Path,
    targets: &[String],
    rerun: &[String],
) -> Result<Vec<PlanEntry>, EngineError> {
    let (selected, forced) = selection(dag, targets, rerun)?;
    let ext = ExternalDigests::compute(dag, &selected, state, base)?;
    let n = dag.nodes.len();
    let mut outputs: Vec<Option<BTreeMap<String, OutputRecord>>> = vec![None; n];
    let mut entries: Vec<Option<PlanEntry>> = vec![None; n];
    for &i in &dag.order {
        let id = dag.nodes[i].id().to_string();
        if !selected[i] {
            entries[i] = Some(PlanEntry {
                id,
                action: "skipped",
                reason: not_needed(dag, targets),
                key: None,
            });
            continue;
        }
        let entry = match key_node(dag, i, &|j| outputs[j].as_ref(), &ext, base) {
            None => {
                let ups: Vec<&str> = dag.nodes[i]
                    .deps
                    .iter()
                    .filter(|&&d| outputs[d].is_none())
                    .map(|&d| dag.nodes[d].id())
                    .collect();
                PlanEntry {
                    id,
                    action: "pending",
                    reason: format!("runs if {} change(s) its outputs", ups.join(", ")),
                    key: None,
                }
            }
            Some(k) => {
                let hit = state
                    .index
                    .lookup(&k.key)?
                    .filter(|h| state.store.contains_all(&h.blobs));
                match hit {
                    Some(h) if !forced[i] => {
                        outputs[i] = Some(h.outputs);
                        PlanEntry {
                            id,
                            action: "cached",
                            reason: format!("cached from {:.1}s run", h.seconds),
                            key: Some(k.key.to_hex()),
                        }
                    }
                    _ => {
                        let reason = if forced[i] {
                            "forced by --rerun".to_string()
                        } else {
                            why_run(state, &id, &k.manifest)?
                        };
                        PlanEntry {
                            id,
                            action: "run",
                            reason,
                            key: Some(k.key.to_hex()),
                        }
                    }
                }
            }
        };
        entries[i] = Some(entry);
    }
    Ok(dag
        .order
        .iter()
        .filter_map(|&i| entries[i].clone())
        .collect())
}

/// Why a node outside the selection does not run: no target reads it.
pub fn not_needed(dag: &Dag, targets: &[String]) -> String {
    let (from, list) = if targets.is_empty() {
        ("the pipeline's targets", dag.targets.as_slice())
    } else {
        ("--target", targets)
    };
    format!("not needed: none of {from} ({}) reads it", list.join(", "))
}

/// A node's state as `flow status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    pub id: String,
    /// `done`, `failed`, `in-progress` (a checkpoint exists), or `pending`.
    pub state: &'static str,
    pub detail: String,
}

/// The state of every node as the newest run journal under `state_root/runs` tells it: what
/// `flow status` shows while a run holds the state dir's lock (the index cannot be opened
/// then). Returns the run id and one entry per node of `dag`.
pub fn journal_status(
    dag: &Dag,
    state_root: &Path,
) -> Result<Option<(String, Vec<StatusEntry>)>, EngineError> {
    let runs = state_root.join("runs");
    let newest = std::fs::read_dir(&runs)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("events.jsonl").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max();
    let Some(run_id) = newest else {
        return Ok(None);
    };
    let path = runs.join(&run_id).join("events.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::Io {
        what: format!("read {}", path.display()),
        cause: e,
    })?;
    let mut seen: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
    // A journal being written may end in a partial line: it is skipped.
    for ev in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let node = ev["node"].as_str().unwrap_or_default().to_string();
        let entry = match ev["event"].as_str().unwrap_or_default() {
            "node_cached" => ("done", "cached".to_string()),
            "node_started" => ("running", format!("attempt {}", ev["attempt"])),
            "node_submitted" => (
                "running",
                format!(
                    "Slurm job {}, attempt {}",
                    ev["job_id"].as_str().unwrap_or("?"),
                    ev["attempt"]
                ),
            ),
            "node_progress" => (
                "running",
                format!(
                    "{}/{} {}",
                    ev["done"],
                    ev["total"],
                    ev["message"].as_str().unwrap_or("")
                ),
            ),
            "node_finished" => (
                "done",
                format!("finished in {:.1}s", ev["seconds"].as_f64().unwrap_or(0.0)),
            ),
            "node_failed" => (
                "failed",
                first_line(ev["error"].as_str().unwrap_or("")).to_string(),
            ),
            "node_blocked" => ("blocked", format!("by {}", ev["by"].as_str().unwrap_or(""))),
            _ => continue,
        };
        seen.insert(node, entry);
    }
    let out = dag
        .nodes
        .iter()
        .map(|n| {
            let (state, detail) = seen
                .remove(n.id())
                .unwrap_or(("pending", "not started in this run".into()));
            StatusEntry {
                id: n.id().to_string(),
                state,
                detail,
            }
        })
        .collect();
    Ok(Some((run_id, out)))
}

/// Done / failed / in progress / pending for every node.
pub fn status(dag: &Dag, state: &StateDir, base: &Path) -> Result<Vec<StatusEntry>, EngineError> {
    let entries = plan(dag, state, base, &[], &[])?;
    let mut out = Vec::new();
    for e in entries {
        let (st, detail) = match e.action {
            "cached" => (
                "done",
                e.reason
                    .replace("cached from", "finished in")
                    .replace(" run", ""),
            ),
            _ => {
                let ckpt = e
                    .key
                    .as_ref()
                    .and_then(|k| k.parse().ok())
                    .map(|k| state.checkpoint_dir(&k));
                let has_ckpt = ckpt
                    .as_ref()
                    .map(|p| {
                        p.is_dir()
                            && std::fs::read_dir(p)
                                .map(|mut d| d.next().is_some())
                                .unwrap_or(false)
                    })
                    .unwrap_or(false);
                if has_ckpt {
                    (
                        "in-progress",
                        format!("checkpoint at {}", ckpt.expect("checked").display()),
                    )
                } else if let Some(f) = state.index.failure(&e.id)? {
                    ("failed", first_line(&f).to_string())
                } else {
                    ("pending", e.reason)
                }
            }
        };
        out.push(StatusEntry {
            id: e.id,
            state: st,
            detail,
        });
    }
    Ok(out)
}

/// Why a node's key differs from the one it had when it last finished.
pub fn explain(
    dag: &Dag,
    state: &StateDir,
    base: &Path,
    node: &str,
) -> Result<Vec<String>, EngineError> {
    let i = dag
        .index_of(node)
        .ok_or_else(|| EngineError::Usage(format!("no node `{node}` in {}", dag.file.display())))?;
    let entries = plan(dag, state, base, &[node.to_string()], &[])?;
    let mut lines = Vec::new();
    let me = entries
        .iter()
        .find(|e| e.id == node)
        .expect("target is planned");
    lines.push(format!(
        "{node} ({}, version {}): {}",
        dag.nodes[i].stage.kind(),
        dag.nodes[i].stage.version(),
        me.action
    ));
    match me.action {
        "cached" => lines.push(format!(
            "key {} is cached: nothing changed",
            me.key.clone().unwrap_or_default()
        )),
        "pending" => {
            lines.push(format!("its key is not known yet: {}", me.reason));
            for e in entries.iter().filter(|e| e.action == "run") {
                lines.push(format!("  upstream {} runs: {}", e.id, e.reason));
            }
        }
        _ => lines.push(format!("runs because: {}", me.reason)),
    }
    Ok(lines)
}
