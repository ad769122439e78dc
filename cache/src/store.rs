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

    /// Whether every blob in `blobs` is present: a cached result whose directory manifest
    /// lost an inner file is a miss (its producer re-runs), not a failure of every consumer.
    pub fn contains_all(&self, blobs: &[Digest]) -> bool {
        blobs.iter().all(|d| self.contains(d))
    }

    /// Whether blob `d` is present and its bytes still hash to `d`. Used before trusting an
    /// existing blob in place of bytes just produced, so a blob damaged on disk is replaced
    /// by the next producer instead of being served again.
    fn intact(&self, d: &Digest) -> bool {
        File::open(self.blob_path(d))
            .and_then(hash_reader)
            .is_ok_and(|(got, _)| got == *d)
    }

    /// Stores an in-memory byte string.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = hash_bytes(bytes);
        if self.intact(&d) {
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
        if self.intact(d) {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        // A damaged blob under this name is replaced by the good bytes (rename is atomic),
        // and views holding the damaged inode are rebuilt on their next use.
        let dir = dest.parent().expect("blob has a parent");
        fs::create_dir_all(dir).map_err(CacheError::io("create", dir))?;
        fs::rename(tmp, &dest).map_err(CacheError::io("rename into the store", &dest))?;
        Ok(())
    }

    /// Stores one file. With `take` the file is moved into the store when it is ours (a
    /// stage's scratch output: a regular file, not a symbolic link, with no other hard link);
    /// anything else is copied and left alone, so a link a command left in its output never
    /// moves, empties or write-protects the user's file behind it.
    pub fn put_file(&self, path: &Path, take: bool) -> Result<(Digest, u64)> {
        let take = take && is_own_file(path);
        let src = File::open(path).map_err(CacheError::io("open", path))?;
        let (d, size) = hash_reader(&src).map_err(CacheError::io("read", path))?;
        if self.intact(&d) {
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
        // An output that is itself a link to a user's directory is copied, never taken.
        let take = take
            && !fs::symlink_metadata(path)
                .map_err(CacheError::io("stat", path))?
                .file_type()
                .is_symlink();
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
        for WalkedFile {
            rel,
            path: file,
            via_link,
        } in walk_files(path)?
        {
            let executable = fs::metadata(&file)
                .map_err(CacheError::io("stat", &file))?
                .permissions()
                .mode()
                & 0o111
                != 0;
            let (digest, size) = self.put_file(&file, take && !via_link)?;
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

    /// A read-only path holding the artifact under the given file or directory name, built
    /// from hard links into the store (`view/<hex>/<name>`) and reused while every file in it
    /// is still the store's blob (a view left pointing at a replaced or damaged blob is rebuilt).
    pub fn materialize(&self, kind: ArtifactKind, d: &Digest, name: &str) -> Result<PathBuf> {
        let dest = self.root.join("view").join(d.to_hex()).join(name);
        if fs::symlink_metadata(&dest).is_ok() {
            if self.view_is_current(kind, d, &dest)? {
                return Ok(dest);
            }
            // Renamed within its own parent: moving a read-only directory to another parent
            // needs write permission on it (for `..`), which views do not have.
            let stale = dest
                .parent()
                .expect("view has a parent")
                .join(format!(".stale-{}", tmp_name()));
            fs::rename(&dest, &stale).map_err(CacheError::io("rename", &dest))?;
            remove_any(&stale).map_err(CacheError::io("remove", &stale))?;
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
                // Consumers share the view: nobody may add, rename or delete in it.
                set_dirs_mode(&tmp, 0o555).map_err(CacheError::io("chmod", &tmp))?;
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

    /// Whether every file of the view at `dest` is a hard link to its blob.
    fn view_is_current(&self, kind: ArtifactKind, d: &Digest, dest: &Path) -> Result<bool> {
        let same = |view: &Path, blob: &Digest| -> bool {
            use std::os::unix::fs::MetadataExt;
            match (fs::metadata(view), fs::metadata(self.blob_path(blob))) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            }
        };
        Ok(match kind {
            ArtifactKind::File => same(dest, d),
            ArtifactKind::Dir => match self.read_manifest(d) {
                Ok(m) => m
                    .entries
                    .iter()
                    .all(|e| same(&dest.join(&e.path), &e.digest)),
                Err(_) => false,
            },
        })
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
            self.prune_views(None)?;
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
        self.prune_views(Some(keep))?;
        Ok((n, bytes))
    }

    /// Removes the views that no longer show their artifact (a blob deleted or replaced) and,
    /// with `keep`, those whose artifact is not kept; the others stay, so the `results/` links
    /// into them keep working after `gc` and `verify`.
    fn prune_views(&self, keep: Option<&HashSet<Digest>>) -> Result<()> {
        let view = self.root.join("view");
        for e in fs::read_dir(&view).map_err(CacheError::io("list", &view))? {
            let dir = e.map_err(CacheError::io("list", &view))?.path();
            let keep_it = (|| -> Result<bool> {
                let Some(d) = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<Digest>().ok())
                else {
                    return Ok(false); // leftovers of interrupted builds
                };
                if keep.is_some_and(|k| !k.contains(&d)) {
                    return Ok(false);
                }
                for named in fs::read_dir(&dir).map_err(CacheError::io("list", &dir))? {
                    let p = named.map_err(CacheError::io("list", &dir))?.path();
                    if p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with(".tmp-") || n.starts_with(".stale-")
                    }) {
                        return Ok(false);
                    }
                    let kind = if p.is_dir() {
                        ArtifactKind::Dir
                    } else {
                        ArtifactKind::File
                    };
                    if !self.view_is_current(kind, &d, &p)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            })()?;
            if !keep_it {
                remove_any(&dir).map_err(CacheError::io("remove", &dir))?;
            }
        }
        Ok(())
    }
}

/// Sets the mode of `root` and every directory under it (not following symbolic links).
fn set_dirs_mode(root: &Path, mode: u32) -> std::io::Result<()> {
    let m = fs::symlink_metadata(root)?;
    if !m.is_dir() {
        return Ok(());
    }
    // Writable first, so the entries below can be changed; the wanted mode last.
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    for e in fs::read_dir(root)? {
        set_dirs_mode(&e?.path(), mode)?;
    }
    fs::set_permissions(root, fs::Permissions::from_mode(mode))
}

/// Removes a file or a directory tree, making read-only directories writable first.
pub(crate) fn remove_any(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            set_dirs_mode(p, 0o755)?;
            fs::remove_dir_all(p)
        }
        Ok(_) => fs::remove_file(p),
        Err(e) => Err(e),
    }
}

/// Whether `path` is a regular file (not a symbolic link) with a single hard link: a file the
/// store may move and write-protect without touching anybody else's data.
fn is_own_file(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file() && m.nlink() == 1)
}

/// A regular file found under a directory output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WalkedFile {
    /// Path relative to the walked root, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    /// Reached through a symbolic link (the file or a directory above it): not ours to move.
    pub via_link: bool,
}

/// Regular files under `root`, sorted by relative path. Symlinks are followed (their content
/// is the output) and marked; other special files are an error.
pub(crate) fn walk_files(root: &Path) -> Result<Vec<WalkedFile>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf(), false)];
    while let Some((rel, dir, dir_via_link)) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(CacheError::io("list", &dir))? {
            let e = e.map_err(CacheError::io("list", &dir))?;
            let name = e.file_name().to_string_lossy().to_string();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let p = e.path();
            let via_link = dir_via_link
                || fs::symlink_metadata(&p)
                    .map_err(CacheError::io("stat", &p))?
                    .file_type()
                    .is_symlink();
            let m = fs::metadata(&p).map_err(CacheError::io("stat", &p))?;
            if m.is_dir() {
                stack.push((r, p, via_link));
            } else if m.is_file() {
                out.push(WalkedFile {
                    rel: r,
                    path: p,
                    via_link,
                });
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
    /// A user's directory behind a link in an output must come out of `put_path(take)` as it
    /// went in: files present, writable, not moved into the store.
    #[test]
    fn links_in_a_taken_output_leave_the_users_files_alone() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::open(&t.path().join("state")).unwrap();
        let raw = t.path().join("raw");
        fs::create_dir_all(raw.join("deep")).unwrap();
        fs::write(raw.join("a.dcm"), b"patient data").unwrap();
        fs::write(raw.join("deep/b.dcm"), b"more").unwrap();
        fs::write(t.path().join("single.txt"), b"one file").unwrap();
        fs::write(t.path().join("hard.txt"), b"hard linked").unwrap();
        let out = t.path().join("scratch/d");
        fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink(&raw, out.join("raw")).unwrap();
        std::os::unix::fs::symlink(t.path().join("single.txt"), out.join("single.txt")).unwrap();
        fs::hard_link(t.path().join("hard.txt"), out.join("hard.txt")).unwrap();
        fs::write(out.join("own.txt"), b"produced").unwrap();

        let (kind, digest, _, _) = s.put_path(&out, true).unwrap();
        assert_eq!(kind, ArtifactKind::Dir);
        for (p, bytes) in [
            (raw.join("a.dcm"), &b"patient data"[..]),
            (raw.join("deep/b.dcm"), b"more"),
            (t.path().join("single.txt"), b"one file"),
            (t.path().join("hard.txt"), b"hard linked"),
        ] {
            assert_eq!(fs::read(&p).unwrap(), bytes, "{}", p.display());
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_ne!(mode & 0o200, 0, "{} was write-protected", p.display());
        }
        assert!(
            !out.join("own.txt").exists(),
            "the output's own file is taken"
        );
        let view = s.materialize(kind, &digest, "d").unwrap();
        assert_eq!(fs::read(view.join("raw/deep/b.dcm")).unwrap(), b"more");
        assert_eq!(fs::read(view.join("own.txt")).unwrap(), b"produced");

        // An output that is itself a link to a user's file or directory is copied too.
        let link = t.path().join("scratch/f");
        std::os::unix::fs::symlink(t.path().join("single.txt"), &link).unwrap();
        s.put_path(&link, true).unwrap();
        let dlink = t.path().join("scratch/dl");
        std::os::unix::fs::symlink(&raw, &dlink).unwrap();
        s.put_path(&dlink, true).unwrap();
        assert_eq!(fs::read(raw.join("a.dcm")).unwrap(), b"patient data");
        let mode = fs::metadata(t.path().join("single.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(mode & 0o200, 0);
    }

    /// A blob damaged on disk is replaced by the next producer of the same bytes, and a view
    /// still holding the damaged file is rebuilt on its next use.
    #[test]
    fn a_damaged_blob_is_healed_by_its_producer_and_views_follow() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::open(&t.path().join("state")).unwrap();
        let d = t.path().join("out");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("x"), b"right bytes").unwrap();
        let (kind, digest, _, _) = s.put_path(&d, false).unwrap();
        let view = s.materialize(kind, &digest, "out").unwrap();
        let blob = s.blob_path(&hash_bytes(b"right bytes"));
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&blob, b"junk bytes!").unwrap();
        assert_eq!(fs::read(view.join("x")).unwrap(), b"junk bytes!");

        // The producer runs again (--rerun): its bytes replace the junk.
        s.put_path(&d, true).unwrap();
        assert_eq!(fs::read(&blob).unwrap(), b"right bytes");
        let view = s.materialize(kind, &digest, "out").unwrap();
        assert_eq!(fs::read(view.join("x")).unwrap(), b"right bytes");

        // The view is shared: its directories are read-only, and `gc` can still drop it.
        let mode = fs::metadata(&view).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "view directories are read-only");
        // gc and verify keep the views that still show a kept, intact artifact.
        let kept: HashSet<Digest> = s.blobs_of(kind, &digest).unwrap().into_iter().collect();
        s.gc(&kept).unwrap();
        assert_eq!(fs::read(view.join("x")).unwrap(), b"right bytes");
        let other = s.put_bytes(b"other").unwrap();
        let other_view = s.materialize(ArtifactKind::File, &other, "o.txt").unwrap();
        let p = s.blob_path(&other);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"othe!").unwrap();
        assert_eq!(s.verify().unwrap().bad, vec![other]);
        assert!(!other_view.exists(), "the view of the damaged blob went");
        assert!(view.join("x").exists(), "the intact view stayed");
        s.gc(&HashSet::new()).unwrap();
        assert!(!view.exists());

        // A missing inner blob makes the artifact incomplete.
        let (_, _, _, blobs) = s.put_path(&d, false).unwrap();
        assert!(s.contains_all(&blobs));
        fs::remove_file(s.blob_path(&blobs[0])).unwrap();
        assert!(!s.contains_all(&blobs));
    }
}
