//! The Slurm jobs of the running coordinator, on disk (`.flow/slurm-jobs`, one
//! `JOBID<TAB>NODE` line per job submitted and not yet seen to end), so that a coordinator
//! that died (kill -9, a lost login node) is followed by one that cancels what is still
//! running before it starts anything: a node never runs twice at once, and no stray job
//! writes into the scratch dirs the next run wipes and reuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::EngineError;
use crate::executor::commands::{on_path, SlurmCli};

/// The ledger's file name in the state dir.
pub const LEDGER_FILE: &str = "slurm-jobs";

/// How long a new run waits for the jobs of a dead run to end after cancelling them.
pub const RECOVER_WAIT: Duration = Duration::from_secs(60);

/// See the module docs.
pub struct Ledger {
    path: PathBuf,
    jobs: Mutex<BTreeMap<String, String>>,
}

fn read(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, node)| (id.trim().to_string(), node.trim().to_string()))
        .filter(|(id, _)| !id.is_empty())
        .collect()
}

impl Ledger {
    /// The ledger of state dir `root` (empty: [`recover`] ran first).
    pub fn new(root: &Path) -> Ledger {
        Ledger {
            path: root.join(LEDGER_FILE),
            jobs: Mutex::new(BTreeMap::new()),
        }
    }

    fn save(&self, jobs: &BTreeMap<String, String>) -> std::io::Result<()> {
        if jobs.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let text: String = jobs.iter().map(|(id, n)| format!("{id}\t{n}\n")).collect();
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    /// Records a submitted job (before it is waited for).
    pub fn add(&self, id: &str, node: &str) -> std::io::Result<()> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.insert(id.to_string(), node.to_string());
        self.save(&jobs)
    }

    /// Forgets a job that has ended.
    pub fn remove(&self, id: &str) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.remove(id).is_some() {
            if let Err(e) = self.save(&jobs) {
                tracing::warn!("cannot update {}: {e}", self.path.display());
            }
        }
    }
}

/// Cancels every job the ledger of `root` lists, with one scancel and without waiting: for
/// a coordinator quitting at once (a second Ctrl-C). The ledger stays, so the next run still
/// checks that they have ended.
pub fn cancel_listed(root: &Path, cli: &dyn SlurmCli) {
    let ids: Vec<String> = read(&root.join(LEDGER_FILE)).into_keys().collect();
    if !ids.is_empty() {
        if let Err(e) = cli.scancel(&ids) {
            tracing::warn!("{e}");
        }
    }
}

/// Run at the start of every run, under the state lock: cancels the jobs a previous
/// coordinator left (one scancel) and waits until Slurm says they have ended. Returns the
/// ids it cancelled. Fails when jobs are listed but Slurm cannot be asked, or they outlive
/// [`RECOVER_WAIT`].
pub fn recover(root: &Path, cli: &dyn SlurmCli) -> Result<Vec<String>, EngineError> {
    let path = root.join(LEDGER_FILE);
    let listed = read(&path);
    if listed.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(Vec::new());
    }
    let ids: Vec<String> = listed.keys().cloned().collect();
    let described = listed
        .iter()
        .map(|(id, node)| format!("{id} ({node})"))
        .collect::<Vec<_>>()
        .join(", ");
    if !on_path("squeue") {
        return Err(EngineError::Usage(format!(
            "Slurm jobs of an earlier run may still be running ({described}) but squeue is not on PATH: \
             run flow where Slurm is reachable, or cancel them yourself and delete {}",
            path.display()
        )));
    }
    let until = Instant::now() + RECOVER_WAIT;
    let mut cancelled = Vec::new();
    loop {
        let states = cli.squeue(&ids).map_err(|e| {
            EngineError::Usage(format!(
                "cannot ask Slurm about jobs of an earlier run ({described}): {e}"
            ))
        })?;
        let active: Vec<String> = ids
            .iter()
            .filter(|id| states.get(*id).is_some_and(|s| s.is_active()))
            .cloned()
            .collect();
        if active.is_empty() {
            break;
        }
        if cancelled.is_empty() {
            tracing::warn!(
                "cancelling Slurm jobs left running by an earlier run: {}",
                active.join(" ")
            );
            cli.scancel(&active)
                .map_err(|e| EngineError::Usage(e.to_string()))?;
            cancelled = active;
        } else if Instant::now() > until {
            return Err(EngineError::Usage(format!(
                "Slurm jobs of an earlier run are still running after scancel: {} (wait, or check `squeue`)",
                active.join(" ")
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::fs::remove_file(&path).map_err(|e| EngineError::Io {
        what: format!("remove {}", path.display()),
        cause: e,
    })?;
    Ok(cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_lists_jobs_until_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::new(dir.path());
        l.add("5", "left").unwrap();
        l.add("6", "right").unwrap();
        l.remove("5");
        let listed = read(&dir.path().join(LEDGER_FILE));
        assert_eq!(listed, [("6".to_string(), "right".to_string())].into());
        l.remove("6");
        assert!(!dir.path().join(LEDGER_FILE).exists(), "no jobs, no file");
    }
}
