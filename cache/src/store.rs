use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::{hash_bytes, hash_reader, Digest};
use crate::manifest::{Manifest, ManifestEntry};
use crate::{CacheError, Result};

/// Whether an artifact is a single file or a directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    File,
    Dir,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    /// Blobs whose bytes no longer match their name; they have been deleted.
    pub bad: Vec<Digest>,
}

/// The blob store: `<root>/cas/ab/<hex>` files plus materialised views under `<root>/view`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn tmp_name() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl BlobStore {
    /// Opens (creating) a store rooted at `root` (the state dir).
    pub fn open(root: &Path) -> Result<BlobStore> {
        for sub in ["cas/tmp", "view"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(CacheError::io("create", &p))?;
        }
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    /// Removes leftovers of interrupted writes (call while holding the state lock).
    pub fn clean_tmp(&self) -> Result<()> {
        let tmp = self.root.join("cas/tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(CacheError::io("create", &tmp))
    }

    /// Where blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.root.join("cas").join(&hex[..2]).join(&hex)
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Stores an in-memory byte string.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = hash_bytes(bytes);
        if self.contains(&d) {
            return Ok(d);
        }
        let tmp = self.root.join("cas/tmp").join(tmp_name());
        let mut f = File::create(&tmp).map_err(CacheError::io("create", &tmp))?;
        f.write_all(bytes).map_err(CacheError::io("write", &tmp))?;
        self.seal(f, &tmp, &d)?;
        Ok(d)
    }

    /// Makes `tmp` (already holding the bytes of `d`) durable, read-only and named by its digest.
    fn seal(&self, f: File, tmp: &Path, d: &Digest) -> Result<()> {
        f.sync_all().map_err(CacheError::io("fsync", tmp))?;
        drop(f);
        let mode = fs::metadata(tmp)
            .map_err(CacheError::io("stat", tmp))?
            .permissions()
            .mode();
        let ro = if mode & 0o111 != 0 { 0o555 } else { 0o444 };
        fs::set_permissions(tmp, fs::Permissions::from_mode(ro))
            .map_err(CacheError::io("chmod", tmp))?;
        let dest = self.blob_path(d);
        if dest.is_file() {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        let dir = dest.parent().expect("blob has a parent");
        fs::create_dir_all(dir).map_err(CacheError::io("create", dir))?;
        fs::rename(tmp, &dest).map_err(CacheError::io("rename into the store", &dest))?;
        Ok(())
    }

    /// Stores one file. With `take` the file is moved into the store (it must be ours: a
    /// stage's scratch output); otherwise it is copied.
    pub fn put_file(&self, path: &Path, take: bool) -> Result<(Digest, u64)> {
        let src = File::open(path).map_err(CacheError::io("open", path))?;
        let (d, size) = hash_reader(&src).map_err(CacheError::io("read", path))?;
        if self.contains(&d) {
            if take {
                let _ = fs::remove_file(path);
            }
            return Ok((d, size));
        }
        if take {
            self.seal(src, path, &d)?;
        } else {
            drop(src);
            let tmp = self.root.join("cas/tmp").join(tmp_name());
            fs::copy(path, &tmp).map_err(CacheError::io("copy", path))?;
            let f = File::open(&tmp).map_err(CacheError::io("open", &tmp))?;
            self.seal(f, &tmp, &d)?;
        }
        Ok((d, size))
    }

    /// Stores a file or a directory tree. Returns the kind, the artifact digest, its total
    /// size and every blob it references (for directories: the files and the manifest).
    pub fn put_path(
        &self,
        path: &Path,
        take: bool,
    ) -> Result<(ArtifactKind, Digest, u64, Vec<Digest>)> {
        let meta = fs::metadata(path).map_err(CacheError::io("stat", path))?;
        if meta.is_file() {
            let (d, size) = self.put_file(path, take)?;
            return Ok((ArtifactKind::File, d, size, vec![d]));
        }
        if !meta.is_dir() {
            return Err(CacheError::Unsupported {
                path: path.to_path_buf(),
            });
        }
        let mut entries = Vec::new();
        for (rel, file) in walk_files(path)? {
            let executable = fs::metadata(&file)
                .map_err(CacheError::io("stat", &file))?
                .permissions()
                .mode()
                & 0o111
                != 0;
            let (digest, size) = self.put_file(&file, take)?;
            entries.push(ManifestEntry {
                path: rel,
                executable,
                digest,
                size,
            });
        }
        let manifest = Manifest::new(entries);
        let d = self.put_bytes(&manifest.to_bytes())?;
        let mut blobs: Vec<Digest> = manifest.entries.iter().map(|e| e.digest).collect();
        blobs.push(d);
        Ok((ArtifactKind::Dir, d, manifest.size(), blobs))
    }

    /// Reads a directory manifest blob.
    pub fn read_manifest(&self, d: &Digest) -> Result<Manifest> {
        let p = self.blob_path(d);
        let bytes = fs::read(&p).map_err(|_| CacheError::MissingBlob(d.to_hex()))?;
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Corrupt {
            what: format!("manifest {}", d.short()),
            detail: e.to_string(),
        })
    }

    /// Every blob an artifact references (file: itself; dir: files + manifest).
    pub fn blobs_of(&self, kind: ArtifactKind, d: &Digest) -> Result<Vec<Digest>> {
        match kind {
            ArtifactKind::File => Ok(vec![*d]),
            ArtifactKind::Dir => {
                let mut v: Vec<Digest> = self
                    .read_manifest(d)?
                    .entries
                    .iter()
                    .map(|e| e.digest)
                    .collect();
                v.push(*d);
                Ok(v)
            }
        }
    }

    /// A read-only path holding the artifact under the given file or directory name,
    /// built once from hard links into the store (`view/<hex>/<name>`).
    pub fn materialize(&self, kind: ArtifactKind, d: &Digest, name: &str) -> Result<PathBuf> {
        let dest = self.root.join("view").join(d.to_hex()).join(name);
        if dest.exists() {
            return Ok(dest);
        }
        let parent = dest.parent().expect("view has a parent");
        fs::create_dir_all(parent).map_err(CacheError::io("create", parent))?;
        let tmp = parent.join(format!(".tmp-{}", tmp_name()));
        match kind {
            ArtifactKind::File => self.link_blob(d, &tmp)?,
            ArtifactKind::Dir => {
                fs::create_dir_all(&tmp).map_err(CacheError::io("create", &tmp))?;
                for e in self.read_manifest(d)?.entries {
                    let target = tmp.join(&e.path);
                    if let Some(p) = target.parent() {
                        fs::create_dir_all(p).map_err(CacheError::io("create", p))?;
                    }
                    self.link_blob(&e.digest, &target)?;
                }
            }
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = remove_any(&tmp);
            if !dest.exists() {
                return Err(CacheError::io("rename", &dest)(e));
            }
        }
        Ok(dest)
    }

    fn link_blob(&self, d: &Digest, target: &Path) -> Result<()> {
        let src = self.blob_path(d);
        if !src.is_file() {
            return Err(CacheError::MissingBlob(d.to_hex()));
        }
        if fs::hard_link(&src, target).is_err() {
            fs::copy(&src, target).map_err(CacheError::io("copy", &src))?;
        }
        Ok(())
    }

    /// All blobs in the store.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let cas = self.root.join("cas");
        let mut out = Vec::new();
        for shard in fs::read_dir(&cas).map_err(CacheError::io("list", &cas))? {
            let shard = shard.map_err(CacheError::io("list", &cas))?;
            let name = shard.file_name().to_string_lossy().to_string();
            if name.len() != 2 {
                continue;
            }
            for f in fs::read_dir(shard.path()).map_err(CacheError::io("list", shard.path()))? {
                let f = f.map_err(CacheError::io("list", shard.path()))?;
                if let Ok(d) = f.file_name().to_string_lossy().parse::<Digest>() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes every blob; deletes the ones whose bytes no longer match their digest,
    /// and drops every materialised view (views are rebuilt on demand).
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for d in self.list()? {
            report.checked += 1;
            let p = self.blob_path(&d);
            let ok = File::open(&p)
                .and_then(hash_reader)
                .map(|(got, _)| got == d)
                .unwrap_or(false);
            if !ok {
                let _ = fs::remove_file(&p);
                report.bad.push(d);
            }
        }
        if !report.bad.is_empty() {
            self.drop_views()?;
        }
        Ok(report)
    }

    /// Deletes blobs not in `keep`; returns (count, bytes) removed.
    pub fn gc(&self, keep: &HashSet<Digest>) -> Result<(usize, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for d in self.list()? {
            if !keep.contains(&d) {
                let p = self.blob_path(&d);
                bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&p).map_err(CacheError::io("remove", &p))?;
                n += 1;
            }
        }
        self.drop_views()?;
        Ok((n, bytes))
    }

    fn drop_views(&self) -> Result<()> {
        let view = self.root.join("view");
        let _ = remove_any(&view);
        fs::create_dir_all(&view).map_err(CacheError::io("create", &view))
    }
}

/// Removes a file or a directory tree, making read-only entries writable first.
pub(crate) fn remove_any(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) => Err(e),
    }
}

/// Regular files under `root`, as (relative `/`-path, absolute path), sorted. Symlinks are
/// followed; other special files are an error.
pub(crate) fn walk_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(CacheError::io("list", &dir))? {
            let e = e.map_err(CacheError::io("list", &dir))?;
            let name = e.file_name().to_string_lossy().to_string();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let p = e.path();
            let m = fs::metadata(&p).map_err(CacheError::io("stat", &p))?;
            if m.is_dir() {
                stack.push((r, p));
            } else if m.is_file() {
                out.push((r, p));
            } else {
                return Err(CacheError::Unsupported { path: p });
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_dedup() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::open(&t.path().join("state")).unwrap();
        let f = t.path().join("a.txt");
        fs::write(&f, b"hello").unwrap();
        let (d, n) = s.put_file(&f, false).unwrap();
        assert_eq!(n, 5);
        assert_eq!(d, hash_bytes(b"hello"));
        assert!(f.exists(), "copy mode keeps the source");
        let (d2, _) = s.put_file(&f, true).unwrap();
        assert_eq!(d, d2);
        assert!(!f.exists(), "take mode consumes the source");
        let blob = s.blob_path(&d);
        assert_eq!(fs::read(&blob).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&blob).unwrap().permissions().mode() & 0o222,
            0,
            "blobs are read-only"
        );
    }

    #[test]
    fn dir_manifest_and_view() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::open(&t.path().join("state")).unwrap();
        let d = t.path().join("tree");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("x"), b"1").unwrap();
        fs::write(d.join("sub/y"), b"2").unwrap();
        let (kind, digest, size, blobs) = s.put_path(&d, false).unwrap();
        assert_eq!(kind, ArtifactKind::Dir);
        assert_eq!(size, 2);
        assert_eq!(blobs.len(), 3);
        let v = s.materialize(kind, &digest, "out").unwrap();
        assert_eq!(fs::read(v.join("sub/y")).unwrap(), b"2");
        // same tree elsewhere -> same digest
        let e = t.path().join("tree2");
        fs::create_dir_all(e.join("sub")).unwrap();
        fs::write(e.join("x"), b"1").unwrap();
        fs::write(e.join("sub/y"), b"2").unwrap();
        assert_eq!(s.put_path(&e, true).unwrap().1, digest);
    }

    #[test]
    fn verify_finds_corruption() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::open(&t.path().join("state")).unwrap();
        let a = s.put_bytes(b"good").unwrap();
        let b = s.put_bytes(b"bad").unwrap();
        let p = s.blob_path(&b);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"tampered").unwrap();
        let r = s.verify().unwrap();
        assert_eq!(r.checked, 2);
        assert_eq!(r.bad, vec![b]);
        assert!(s.contains(&a) && !s.contains(&b));
    }
}
