//! The state directory (`.flow/`): its layout and the lock that keeps two runs apart.
//!
//! ```text
//! .flow/lock              flock held by the running flow process; holds its pid
//! .flow/index/            sled: action cache, last keys, failures, stat memo
//! .flow/cas/ab/<digest>   blobs;  .flow/view/<digest>/<name>: read-only materialised outputs
//! .flow/checkpoints/<key> persistent per-node-key checkpoint dirs (removed on success)
//! .flow/tmp/              per-attempt scratch dirs (wiped at the start of every run)
//! .flow/runs/<run-id>/    events.jsonl and logs/<node>.log of each run
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flow_cache::{BlobStore, Index};

use crate::error::EngineError;

/// An open, locked state directory.
pub struct StateDir {
    pub root: PathBuf,
    pub store: BlobStore,
    pub index: Index,
    _lock: File,
}

/// What to do when another flow process holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    FailFast,
    Wait,
}

impl StateDir {
    /// Opens (creating) `root` and takes its lock.
    pub fn open(root: &Path, mode: LockMode) -> Result<StateDir, EngineError> {
        let io = |what: &str, p: &Path| {
            let what = what.to_string();
            let p = p.to_path_buf();
            move |e: std::io::Error| EngineError::Io {
                what: format!("{what} {}", p.display()),
                cause: e,
            }
        };
        fs::create_dir_all(root).map_err(io("create state dir", root))?;
        let lock_path = root.join("lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if mode == LockMode::Wait {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let mut pid = String::new();
                    let _ = lock.read_to_string(&mut pid);
                    return Err(EngineError::Locked {
                        dir: root.to_path_buf(),
                        pid: pid.trim().to_string(),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io("lock", &lock_path)(e)),
            }
        }
        lock.set_len(0).map_err(io("write", &lock_path))?;
        lock.rewind().map_err(io("write", &lock_path))?;
        write!(lock, "{}", std::process::id()).map_err(io("write", &lock_path))?;
        let store = BlobStore::open(root)?;
        let index = Index::open(&root.join("index"))?;
        for sub in ["checkpoints", "runs", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(io("create", &root.join(sub)))?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
            store,
            index,
            _lock: lock,
        })
    }

    /// Wipes leftovers of interrupted attempts (safe: we hold the lock).
    pub fn clean_scratch(&self) -> Result<(), EngineError> {
        let tmp = self.root.join("tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| EngineError::Io {
            what: format!("create {}", tmp.display()),
            cause: e,
        })?;
        self.store.clean_tmp()?;
        Ok(())
    }

    pub fn checkpoint_dir(&self, key: &flow_cache::Digest) -> PathBuf {
        self.root.join("checkpoints").join(key.to_hex())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    /// The housekeeping of `flow cache gc` besides blobs: drops cached results that reference
    /// a missing blob (they can never be served), keeps the newest [`KEEP_RUNS`] run folders
    /// (journals and logs), and removes checkpoints of keys that have a result (left by a
    /// crash between recording and cleaning up). Call before the blob gc, under the lock.
    pub fn prune(&self) -> Result<PruneReport, EngineError> {
        let io = |what: &str, p: &Path| {
            let what = format!("{what} {}", p.display());
            move |e: std::io::Error| EngineError::Io { what, cause: e }
        };
        let mut report = PruneReport::default();
        for a in self.index.actions()? {
            if !self.store.contains_all(&a.blobs) {
                self.index.remove(&a.key)?;
                report.records += 1;
            }
        }
        let runs = self.root.join("runs");
        let mut ids: Vec<PathBuf> = fs::read_dir(&runs)
            .map_err(io("list", &runs))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        ids.sort();
        let excess = ids.len().saturating_sub(KEEP_RUNS);
        for p in &ids[..excess] {
            fs::remove_dir_all(p).map_err(io("remove", p))?;
            report.runs += 1;
        }
        let ckpts = self.root.join("checkpoints");
        for e in fs::read_dir(&ckpts).map_err(io("list", &ckpts))?.flatten() {
            let finished = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<flow_cache::Digest>().ok())
                .map(|k| self.index.lookup(&k))
                .transpose()?
                .flatten()
                .is_some();
            if finished {
                fs::remove_dir_all(e.path()).map_err(io("remove", &e.path()))?;
                report.checkpoints += 1;
            }
        }
        Ok(report)
    }
}

/// Run folders `flow cache gc` keeps (the newest, by run id).
pub const KEEP_RUNS: usize = 20;

/// What [`StateDir::prune`] removed.
#[derive(Debug, Default, PartialEq)]
pub struct PruneReport {
    pub records: usize,
    pub runs: usize,
    pub checkpoints: usize,
}
