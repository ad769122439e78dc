//! Helpers for CLI tests: a temp working dir with pipeline files, and `flow` runs in it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
    /// `flow ARGS` in the work dir, quiet.
    pub fn flow(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("flow").unwrap();
        c.current_dir(self.path())
            .arg("--quiet")
            .args(args)
            .env_remove("FLOW_STATE_DIR")
            .env_remove("CUDA_VISIBLE_DEVICES");
        c
    }
    /// Runs a pipeline with a report; returns (exit code, node id -> state).
    pub fn run(&self, file: &str, extra: &[&str]) -> (i32, Vec<(String, String)>) {
        let report = self.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let mut args = vec!["run", file, "--report", report.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.flow(&args).output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let text = std::fs::read_to_string(&report).unwrap_or_else(|_| {
            panic!(
                "no report; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let v: Value = serde_json::from_str(&text).unwrap();
        let states = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap().to_string(),
                    n["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (code, states)
    }
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }
    /// The log of `node` in the newest run (`.flow/runs/<run id>/logs/<node>.log`).
    pub fn newest_node_log(&self, node: &str) -> String {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(self.path().join(".flow/runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        runs.sort();
        let log = runs.last().expect("a run").join(format!("logs/{node}.log"));
        std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("read {}: {e}", log.display()))
    }
}

/// The ids whose state is `state`.
pub fn with_state(states: &[(String, String)], state: &str) -> Vec<String> {
    let mut v: Vec<String> = states
        .iter()
        .filter(|(_, s)| s == state)
        .map(|(i, _)| i.clone())
        .collect();
    v.sort();
    v
}

/// Whether process `pid` exists and is not a zombie waiting for its reaper (from /proc).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}
