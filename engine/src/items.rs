//! Per-item results inside a node (`StageContext::cached_item`), cached in the run's store
//! and index under a key of the stage kind, its version, the item's own key and its name.
//!
//! A node run by the coordinator uses [`StoreItems`]: look up, else make and record at once,
//! so a node that fails half way keeps the items it finished. A Slurm job cannot open the
//! index (the coordinator is its only writer), so the cache crosses the job boundary in two
//! files in the node's scratch directory: before submitting, the coordinator lists the items
//! it already has for the stage ([`export_for_job`], `items.json`: key -> read-only view);
//! the job serves those and lists what it made ([`JobItems`], `items-made.json`); after the
//! job ends, failed or not, the coordinator records what it made ([`ingest_from_job`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flow_cache::{ActionResult, CacheError, Digest, OutputRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::executor::job::write_json;
use crate::key;
use crate::stage::{ItemCache, StageError};
use crate::state::StateDir;

/// The items the coordinator already has, written for a job.
pub const EXPORT_FILE: &str = "items.json";
/// The items a job made, read back by the coordinator.
pub const MADE_FILE: &str = "items-made.json";

/// The key manifest of one item and its key.
pub fn item_key(stage: &str, version: u32, item: &Value, name: &str) -> (Value, Digest) {
    let manifest = json!({"format": key::FORMAT, "item_of": stage, "version": version, "item": item, "name": name});
    let k = key::key_of(&manifest);
    (manifest, k)
}

/// Stores the item at `path` and records it under `key`; returns its record.
fn record_item(
    state: &StateDir,
    node: &str,
    key: Digest,
    manifest: Value,
    path: &Path,
    name: &str,
) -> Result<OutputRecord, CacheError> {
    let (kind, digest, size, blobs) = state.store.put_path(path, true)?;
    let rec = OutputRecord {
        kind,
        digest,
        size,
        name: name.to_string(),
    };
    let result = ActionResult {
        key,
        node: format!("{node}#item"),
        outputs: [("item".to_string(), rec.clone())].into_iter().collect(),
        blobs,
        log: None,
        started_unix_ms: crate::execute::now_ms(),
        seconds: 0.0,
        peak_rss_kb: None,
        cpu_seconds: None,
        read_bytes: None,
        written_bytes: None,
        gpu_peak_mb: None,
        manifest,
    };
    state.index.record(&result)?;
    Ok(rec)
}

/// Makes one item in the fresh directory `dir` (created here) as `dir/name` and checks that
/// `make` produced it.
pub(crate) fn make_item(
    dir: &Path,
    name: &str,
    make: &mut dyn FnMut(&Path) -> Result<(), StageError>,
) -> Result<PathBuf, StageError> {
    fs::create_dir_all(dir)
        .map_err(|e| StageError::wrap(format!("cannot create {}", dir.display()), e))?;
    let target = dir.join(name);
    make(&target)?;
    if !target.exists() {
        return Err(StageError::msg(format!(
            "item `{name}` was not produced at {}",
            target.display()
        )));
    }
    Ok(target)
}

/// The item cache of a node run by the coordinator: the store and index themselves.
pub(crate) struct StoreItems {
    pub state: Arc<StateDir>,
    pub node: String,
    pub stage: &'static str,
    pub version: u32,
    pub scratch: PathBuf,
    pub counter: Mutex<u64>,
}

impl ItemCache for StoreItems {
    fn get_or_make(
        &self,
        item: &Value,
        name: &str,
        make: &mut dyn FnMut(&Path) -> Result<(), StageError>,
    ) -> Result<PathBuf, StageError> {
        let (manifest, k) = item_key(self.stage, self.version, item, name);
        let store_err = |e: CacheError| StageError::wrap("item cache", e);
        if let Some(hit) = self.state.index.lookup(&k).map_err(store_err)? {
            if let Some(rec) = hit.outputs.get("item") {
                if let Ok(p) = self
                    .state
                    .store
                    .materialize(rec.kind, &rec.digest, &rec.name)
                {
                    return Ok(p);
                }
            }
        }
        let n = {
            let mut c = self.counter.lock().unwrap_or_else(|p| p.into_inner());
            *c += 1;
            *c
        };
        let target = make_item(&self.scratch.join("items").join(n.to_string()), name, make)?;
        let rec =
            record_item(&self.state, &self.node, k, manifest, &target, name).map_err(store_err)?;
        self.state
            .store
            .materialize(rec.kind, &rec.digest, name)
            .map_err(store_err)
    }
}

/// Writes `<scratch>/items.json`: every item recorded for `stage` at `version`, as a
/// read-only view a job can use. Returns how many.
pub fn export_for_job(
    state: &StateDir,
    stage: &str,
    version: u32,
    scratch: &Path,
) -> Result<usize, StageError> {
    let store_err = |e: CacheError| StageError::wrap("item cache", e);
    let mut known: BTreeMap<String, PathBuf> = BTreeMap::new();
    for rec in state.index.actions().map_err(store_err)? {
        let m = &rec.manifest;
        if m.get("item_of").and_then(Value::as_str) != Some(stage)
            || m.get("version").and_then(Value::as_u64) != Some(u64::from(version))
        {
            continue;
        }
        let Some(out) = rec.outputs.get("item") else {
            continue;
        };
        // An item whose blobs are gone is simply not offered: the job makes it again.
        if let Ok(view) = state.store.materialize(out.kind, &out.digest, &out.name) {
            known.insert(rec.key.to_hex(), view);
        }
    }
    let path = scratch.join(EXPORT_FILE);
    write_json(&path, &known)
        .map_err(|e| StageError::wrap(format!("cannot write {}", path.display()), e))?;
    Ok(known.len())
}

/// One item a job made, as listed in `items-made.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MadeItem {
    pub key: String,
    pub manifest: Value,
    /// Relative to the scratch directory.
    pub path: PathBuf,
    pub name: String,
}

/// Records the items a job listed in `<scratch>/items-made.json`. Returns how many; an item
/// that cannot be stored is skipped with a warning (it is made again next time).
pub fn ingest_from_job(state: &StateDir, node: &str, scratch: &Path) -> usize {
    let Ok(text) = fs::read_to_string(scratch.join(MADE_FILE)) else {
        return 0;
    };
    let made: Vec<MadeItem> = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("{node}: cannot read the job's {MADE_FILE}: {e}");
            return 0;
        }
    };
    let mut n = 0;
    for item in made {
        let path = scratch.join(&item.path);
        let Ok(key) = item.key.parse::<Digest>() else {
            tracing::warn!("{node}: job item with a malformed key {}", item.key);
            continue;
        };
        // The key is recomputed from the manifest: a job cannot file an item under another key.
        let inside = item
            .path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if key::key_of(&item.manifest) != key || !inside {
            tracing::warn!("{node}: job item {} does not match its manifest", item.key);
            continue;
        }
        match record_item(state, node, key, item.manifest, &path, &item.name) {
            Ok(_) => n += 1,
            Err(e) => tracing::warn!("{node}: cannot store job item {}: {e}", item.key),
        }
    }
    n
}

/// The item cache inside a Slurm job: serves the coordinator's items, makes the rest in the
/// scratch directory and lists them for [`ingest_from_job`].
pub(crate) struct JobItems {
    stage: &'static str,
    version: u32,
    scratch: PathBuf,
    known: BTreeMap<String, PathBuf>,
    made: Mutex<Vec<MadeItem>>,
    counter: AtomicU64,
}

impl JobItems {
    /// Reads `<scratch>/items.json` (none: nothing is cached yet).
    pub(crate) fn open(stage: &'static str, version: u32, scratch: &Path) -> Self {
        let known = fs::read_to_string(scratch.join(EXPORT_FILE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        JobItems {
            stage,
            version,
            scratch: scratch.to_path_buf(),
            known,
            made: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
        }
    }
}

impl ItemCache for JobItems {
    fn get_or_make(
        &self,
        item: &Value,
        name: &str,
        make: &mut dyn FnMut(&Path) -> Result<(), StageError>,
    ) -> Result<PathBuf, StageError> {
        let (manifest, k) = item_key(self.stage, self.version, item, name);
        let hex = k.to_hex();
        if let Some(view) = self.known.get(&hex) {
            if view.exists() {
                return Ok(view.clone());
            }
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let rel = PathBuf::from("items").join(n.to_string());
        let target = make_item(&self.scratch.join(&rel), name, make)?;
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        made.push(MadeItem {
            key: hex,
            manifest,
            path: rel.join(name),
            name: name.to_string(),
        });
        // Rewritten after every item: a job killed later still hands over what it finished.
        let list = self.scratch.join(MADE_FILE);
        write_json(&list, &*made)
            .map_err(|e| StageError::wrap(format!("cannot write {}", list.display()), e))?;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LockMode;

    fn write_text(text: &'static str) -> impl FnMut(&Path) -> Result<(), StageError> {
        move |p: &Path| fs::write(p, text).map_err(|e| StageError::wrap("write", e))
    }

    fn store_items(state: &Arc<StateDir>, scratch: &Path) -> StoreItems {
        StoreItems {
            state: state.clone(),
            node: "n".into(),
            stage: "demo.stage",
            version: 3,
            scratch: scratch.to_path_buf(),
            counter: Mutex::new(0),
        }
    }

    /// Coordinator -> job -> coordinator: the job serves what the coordinator had, makes only
    /// the rest, and what it made is cached afterwards.
    #[test]
    fn items_cross_the_job_boundary_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let state =
            Arc::new(StateDir::open(&dir.path().join("state"), LockMode::FailFast).unwrap());
        let scratch = dir.path().join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        let local = store_items(&state, &dir.path().join("local"));
        let a = local
            .get_or_make(&json!({"study": "a"}), "a.txt", &mut write_text("A"))
            .unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "A");
        // Another stage's (or version's) items are not offered.
        let mut other = store_items(&state, &dir.path().join("other"));
        other.version = 4;
        other
            .get_or_make(&json!({"study": "a"}), "a.txt", &mut write_text("v4"))
            .unwrap();

        assert_eq!(
            export_for_job(&state, "demo.stage", 3, &scratch).unwrap(),
            1
        );
        let job = JobItems::open("demo.stage", 3, &scratch);
        let mut called = false;
        let hit = job
            .get_or_make(&json!({"study": "a"}), "a.txt", &mut |_| {
                called = true;
                Ok(())
            })
            .unwrap();
        assert!(!called, "a cached item is not made again in the job");
        assert_eq!(fs::read_to_string(hit).unwrap(), "A");
        let b = job
            .get_or_make(&json!({"study": "b"}), "b.txt", &mut write_text("B"))
            .unwrap();
        assert!(b.starts_with(&scratch));

        assert_eq!(ingest_from_job(&state, "n", &scratch), 1);
        let mut called = false;
        let b2 = local
            .get_or_make(&json!({"study": "b"}), "b.txt", &mut |_| {
                called = true;
                Ok(())
            })
            .unwrap();
        assert!(!called, "the job's item is cached for the next run");
        assert_eq!(fs::read_to_string(b2).unwrap(), "B");
    }

    /// A job cannot file an item under a key its manifest does not give, nor point outside
    /// its scratch directory; an unreadable list is no items, not an error.
    #[test]
    fn ingest_refuses_forged_items() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state"), LockMode::FailFast).unwrap();
        let scratch = dir.path().join("scratch");
        fs::create_dir_all(scratch.join("items/0")).unwrap();
        fs::write(scratch.join("items/0/x"), "X").unwrap();
        fs::write(dir.path().join("outside"), "O").unwrap();
        let (manifest, k) = item_key("demo.stage", 1, &json!(1), "x");
        let (_, other) = item_key("demo.stage", 1, &json!(2), "x");
        let made = vec![
            MadeItem {
                key: other.to_hex(),
                manifest: manifest.clone(),
                path: "items/0/x".into(),
                name: "x".into(),
            },
            MadeItem {
                key: k.to_hex(),
                manifest: manifest.clone(),
                path: "../outside".into(),
                name: "x".into(),
            },
            MadeItem {
                key: "not hex".into(),
                manifest,
                path: "items/0/x".into(),
                name: "x".into(),
            },
        ];
        write_json(&scratch.join(MADE_FILE), &made).unwrap();
        assert_eq!(ingest_from_job(&state, "n", &scratch), 0);
        assert!(state.index.lookup(&k).unwrap().is_none());
        assert!(state.index.lookup(&other).unwrap().is_none());
        fs::write(scratch.join(MADE_FILE), "{not json").unwrap();
        assert_eq!(ingest_from_job(&state, "n", &scratch), 0);
        fs::remove_file(scratch.join(MADE_FILE)).unwrap();
        assert_eq!(ingest_from_job(&state, "n", &scratch), 0);
    }
}
