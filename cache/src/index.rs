use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::digest::{hash_bytes, hash_reader, Digest};
use crate::manifest::{Manifest, ManifestEntry};
use crate::store::{walk_files, ArtifactKind, BlobStore};
use crate::{CacheError, Result};

/// One named output of a finished node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub kind: ArtifactKind,
    pub digest: Digest,
    pub size: u64,
    /// File or directory name the output is materialised under.
    pub name: String,
}

/// The action cache entry: what a node with a given key produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResult {
    pub key: Digest,
    pub node: String,
    pub outputs: BTreeMap<String, OutputRecord>,
    /// Every blob the outputs and logs reference (used by verify and gc).
    pub blobs: Vec<Digest>,
    pub log: Option<Digest>,
    pub started_unix_ms: u64,
    pub seconds: f64,
    pub peak_rss_kb: Option<u64>,
    /// User + system CPU seconds of the run that produced it (absent in older records).
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// Bytes read and written through system calls by that run.
    #[serde(default)]
    pub read_bytes: Option<u64>,
    #[serde(default)]
    pub written_bytes: Option<u64>,
    /// Peak GPU memory (MiB) of a run that held GPUs, when it could be measured (absent in
    /// older records).
    #[serde(default)]
    pub gpu_peak_mb: Option<u64>,
    /// The canonical key manifest (what was hashed), kept so `flow explain` can diff it.
    pub manifest: serde_json::Value,
}

/// The outputs and blobs of a recorded [`ActionResult`] ([`Index::lookup_outputs`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CachedOutputs {
    pub outputs: BTreeMap<String, OutputRecord>,
    pub blobs: Vec<Digest>,
}

/// A stat-memo entry: the digest of an external path as of a given (size, mtime, inode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatMemo {
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
    /// Status-change time: unlike mtime, no tool can set it back, so a file rewritten with
    /// the same size and a restored mtime (`cp -p`, tar, rsync, `touch -d`) is re-hashed.
    /// Memos written before this field existed read as 0 and are re-hashed once.
    #[serde(default)]
    pub ctime_ns: i128,
    pub digest: Digest,
}

/// The sled index: action cache, last key per node, last failure per node, stat memo.
pub struct Index {
    db: sled::Db,
    actions: sled::Tree,
    last: sled::Tree,
    failures: sled::Tree,
    stat: sled::Tree,
}

fn corrupt(what: &str, e: impl ToString) -> CacheError {
    CacheError::Corrupt {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

impl Index {
    /// Opens (creating) the index at `path`.
    pub fn open(path: &Path) -> Result<Index> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Ok(Index {
            actions: db.open_tree("actions")?,
            last: db.open_tree("last")?,
            failures: db.open_tree("failures")?,
            stat: db.open_tree("stat")?,
            db,
        })
    }

    /// The cached result for a node key, if any.
    pub fn lookup(&self, key: &Digest) -> Result<Option<ActionResult>> {
        self.action_as(key)
    }

    /// What serving `key` from the cache needs (its outputs and blobs), if it has a result.
    /// Cheaper than [`Index::lookup`]: the manifest and the usage figures are skipped while
    /// parsing, which a no-op rerun of a thousand nodes notices.
    pub fn lookup_outputs(&self, key: &Digest) -> Result<Option<CachedOutputs>> {
        self.action_as(key)
    }

    /// The record of `key` parsed as `T` (an [`ActionResult`] or a part of one).
    fn action_as<T: serde::de::DeserializeOwned>(&self, key: &Digest) -> Result<Option<T>> {
        match self.actions.get(key.0)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| corrupt("action", e)),
        }
    }

    /// Records a finished node atomically (result + "last key" of the node) and clears its
    /// failure record. Call only once every blob is durable in the store.
    pub fn record(&self, result: &ActionResult) -> Result<()> {
        let bytes = serde_json::to_vec(result).map_err(|e| corrupt("action", e))?;
        let node = result.node.as_bytes().to_vec();
        (&self.actions, &self.last, &self.failures)
            .transaction(|(a, l, f)| {
                a.insert(&result.key.0, bytes.as_slice())?;
                l.insert(node.as_slice(), &result.key.0)?;
                f.remove(node.as_slice())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| corrupt("transaction", format!("{e:?}")))?;
        Ok(())
    }

    /// Makes everything recorded so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// The key the node had when it last finished.
    pub fn last_key(&self, node: &str) -> Result<Option<Digest>> {
        Ok(self
            .last
            .get(node.as_bytes())?
            .and_then(|v| v.as_ref().try_into().ok().map(Digest)))
    }

    /// Remembers that a node failed (message shown by `flow status`).
    pub fn record_failure(&self, node: &str, message: &str) -> Result<()> {
        self.failures.insert(node.as_bytes(), message.as_bytes())?;
        Ok(())
    }

    pub fn failure(&self, node: &str) -> Result<Option<String>> {
        Ok(self
            .failures
            .get(node.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).to_string()))
    }

    /// Every cached result.
    pub fn actions(&self) -> Result<Vec<ActionResult>> {
        let mut out = Vec::new();
        for kv in self.actions.iter() {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(|e| corrupt("action", e))?);
        }
        Ok(out)
    }

    /// Drops the results that reference any of `bad`; returns the affected node names.
    pub fn drop_using(&self, bad: &[Digest]) -> Result<Vec<String>> {
        let bad: HashSet<&Digest> = bad.iter().collect();
        let mut dropped = Vec::new();
        for a in self.actions()? {
            if a.blobs.iter().any(|b| bad.contains(b)) {
                self.actions.remove(a.key.0)?;
                dropped.push(a.node);
            }
        }
        self.flush()?;
        Ok(dropped)
    }

    /// Drops one cached result.
    pub fn remove(&self, key: &Digest) -> Result<()> {
        self.actions.remove(key.0)?;
        Ok(())
    }

    /// Digest of an external file or directory, re-hashing only files whose
    /// (size, mtime, inode) changed since they were last seen.
    pub fn digest_external(&self, path: &Path) -> Result<(ArtifactKind, Digest)> {
        let meta = fs::metadata(path).map_err(CacheError::io("stat", path))?;
        if meta.is_file() {
            return Ok((ArtifactKind::File, self.digest_file(path, &meta)?.0));
        }
        if !meta.is_dir() {
            return Err(CacheError::Unsupported {
                path: path.to_path_buf(),
            });
        }
        let mut entries = Vec::new();
        for crate::store::WalkedFile {
            rel, path: file, ..
        } in walk_files(path)?
        {
            let m = fs::metadata(&file).map_err(CacheError::io("stat", &file))?;
            let (digest, size) = self.digest_file(&file, &m)?;
            entries.push(ManifestEntry {
                path: rel,
                executable: m.mode() & 0o111 != 0,
                digest,
                size,
            });
        }
        Ok((ArtifactKind::Dir, Manifest::new(entries).digest()))
    }

    fn digest_file(&self, path: &Path, meta: &fs::Metadata) -> Result<(Digest, u64)> {
        let abs = fs::canonicalize(path).map_err(CacheError::io("resolve", path))?;
        // Keyed by a digest of the path, not the path: folder names can hold a patient's name,
        // and cache metadata must not.
        let key = hash_bytes(abs.as_os_str().as_encoded_bytes())
            .to_hex()
            .into_bytes();
        let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        let ctime_ns = meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128;
        if let Some(v) = self.stat.get(&key)? {
            if let Ok(m) = serde_json::from_slice::<StatMemo>(&v) {
                if m.size == meta.len()
                    && m.mtime_ns == mtime_ns
                    && m.ctime_ns == ctime_ns
                    && m.inode == meta.ino()
                {
                    return Ok((m.digest, m.size));
                }
            }
        }
        let f = fs::File::open(path).map_err(CacheError::io("open", path))?;
        let (digest, size) = hash_reader(f).map_err(CacheError::io("read", path))?;
        let memo = StatMemo {
            size,
            mtime_ns,
            inode: meta.ino(),
            ctime_ns,
            digest,
        };
        self.stat.insert(
            key,
            serde_json::to_vec(&memo).map_err(|e| corrupt("stat memo", e))?,
        )?;
        Ok((digest, size))
    }

    /// Every blob referenced by some cached result (the gc root set).
    pub fn live_blobs(&self, store: &BlobStore) -> Result<HashSet<Digest>> {
        let mut keep = HashSet::new();
        for a in self.actions()? {
            keep.extend(a.blobs.iter().copied());
            for o in a.outputs.values() {
                if let Ok(b) = store.blobs_of(o.kind, &o.digest) {
                    keep.extend(b);
                }
            }
        }
        Ok(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn result(key: u8, node: &str, blobs: Vec<Digest>) -> ActionResult {
        ActionResult {
            key: Digest([key; 32]),
            node: node.into(),
            outputs: BTreeMap::new(),
            blobs,
            log: None,
            started_unix_ms: 0,
            seconds: 0.0,
            peak_rss_kb: None,
            cpu_seconds: None,
            read_bytes: None,
            written_bytes: None,
            gpu_peak_mb: None,
            manifest: serde_json::json!({}),
        }
    }

    #[test]
    fn a_record_from_before_gpu_memory_still_loads() {
        let mut v = serde_json::to_value(result(1, "a", vec![])).unwrap();
        v.as_object_mut().unwrap().remove("gpu_peak_mb");
        let old: ActionResult = serde_json::from_value(v).unwrap();
        assert_eq!(old.gpu_peak_mb, None);
        let mut r = result(2, "b", vec![]);
        r.gpu_peak_mb = Some(40_000);
        let back: ActionResult = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back.gpu_peak_mb, Some(40_000));
    }

    #[test]
    fn record_lookup_last_and_drop() {
        let t = tempfile::tempdir().unwrap();
        let ix = Index::open(&t.path().join("index")).unwrap();
        ix.record_failure("a", "boom").unwrap();
        ix.record(&result(1, "a", vec![Digest([9; 32])])).unwrap();
        assert!(
            ix.failure("a").unwrap().is_none(),
            "success clears the failure"
        );
        assert_eq!(ix.last_key("a").unwrap(), Some(Digest([1; 32])));
        assert!(ix.lookup(&Digest([1; 32])).unwrap().is_some());
        let mut full = result(3, "c", vec![Digest([7; 32]), Digest([8; 32])]);
        full.outputs.insert(
            "o".into(),
            OutputRecord {
                kind: crate::ArtifactKind::File,
                digest: Digest([7; 32]),
                size: 5,
                name: "o.txt".into(),
            },
        );
        full.manifest = serde_json::json!({"params": {"a": [1, {"b": "c"}]}});
        ix.record(&full).unwrap();
        assert_eq!(
            ix.lookup_outputs(&full.key).unwrap(),
            Some(CachedOutputs {
                outputs: full.outputs.clone(),
                blobs: full.blobs.clone()
            }),
            "the light lookup reads the same outputs and blobs"
        );
        assert_eq!(ix.lookup_outputs(&Digest([4; 32])).unwrap(), None);
        assert_eq!(
            ix.drop_using(&[Digest([9; 32])]).unwrap(),
            vec!["a".to_string()]
        );
        assert!(ix.lookup(&Digest([1; 32])).unwrap().is_none());
    }

    #[test]
    fn stat_memo_tracks_changes() {
        let t = tempfile::tempdir().unwrap();
        let ix = Index::open(&t.path().join("index")).unwrap();
        let f = t.path().join("in.txt");
        fs::write(&f, b"one").unwrap();
        let (_, d1) = ix.digest_external(&f).unwrap();
        assert_eq!(ix.digest_external(&f).unwrap().1, d1);
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        assert_ne!(ix.digest_external(&f).unwrap().1, d1);

        // Same size, mtime set back (as cp -p, tar and rsync do): still re-hashed.
        let (_, d2) = ix.digest_external(&f).unwrap();
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        fs::write(&f, b"two!").unwrap();
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(fs::metadata(&f).unwrap().modified().unwrap(), mtime);
        let (_, d3) = ix.digest_external(&f).unwrap();
        assert_ne!(
            d3, d2,
            "a rewrite with the old size and mtime must not serve the old digest"
        );
    }

    #[test]
    fn external_dir_digest_matches_store() {
        let t = tempfile::tempdir().unwrap();
        let ix = Index::open(&t.path().join("index")).unwrap();
        let s = BlobStore::open(&t.path().join("state")).unwrap();
        let d = t.path().join("tree");
        fs::create_dir_all(d.join("s")).unwrap();
        fs::write(d.join("s/a"), b"a").unwrap();
        let (_, ext) = ix.digest_external(&d).unwrap();
        let (_, stored, _, _) = s.put_path(&d, false).unwrap();
        assert_eq!(ext, stored, "hashing in place and storing agree");
    }
}
