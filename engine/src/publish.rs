//! Published results: the outputs of sink nodes and `publish:` nodes under
//! `results/<pipeline>/<node>/`, named once: a node whose only output is a directory
//! publishes that directory's contents there, other nodes one entry per output.
//!
//! The default mode is read-only hard links to the store's files (copies where the results
//! folder is on another filesystem), so results stay readable after `flow cache gc` and when
//! the folder is copied elsewhere; `publish: copy` makes independent writable copies and
//! `publish: symlink` links into `.flow/view` (no extra space; dangles once the view goes).
//! A node's folder is built beside it and swapped in, so a reader never sees half of it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flow_cache::{ArtifactKind, BlobStore, OutputRecord};

/// How a node's outputs appear under `results/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishMode {
    /// Read-only hard links to the store's files (copies across filesystems).
    #[default]
    Link,
    /// Independent, writable copies.
    Copy,
    /// Symbolic links into the store's views.
    Symlink,
}

impl FromStr for PublishMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "link" => Ok(PublishMode::Link),
            "copy" => Ok(PublishMode::Copy),
            "symlink" => Ok(PublishMode::Symlink),
            other => Err(format!(
                "unknown publish mode `{other}`: use true, false, link, copy or symlink"
            )),
        }
    }
}

/// Publishes one node's outputs as `dir` (`results/<pipeline>/<node>`), replacing what an
/// earlier run published there.
pub fn publish_node(
    store: &BlobStore,
    outputs: &BTreeMap<String, OutputRecord>,
    dir: &Path,
    mode: PublishMode,
) -> io::Result<()> {
    let parent = dir.parent().expect("a node folder has a parent");
    fs::create_dir_all(parent)?;
    let name = dir
        .file_name()
        .expect("a node folder has a name")
        .to_string_lossy();
    let staging = parent.join(format!(".{name}.publishing-{}", std::process::id()));
    remove_any(&staging)?;
    let views: Vec<(PathBuf, &OutputRecord)> = outputs
        .values()
        .map(|r| {
            store
                .materialize(r.kind, &r.digest, &r.name)
                .map(|v| (fs::canonicalize(&v).unwrap_or(v), r))
                .map_err(io::Error::other)
        })
        .collect::<io::Result<_>>()?;
    let result = (|| match views.as_slice() {
        // Named once: the directory is the node's folder.
        [(view, r)] if r.kind == ArtifactKind::Dir => place(view, &staging, mode),
        _ => {
            fs::create_dir_all(&staging)?;
            for (view, r) in &views {
                place(view, &staging.join(&r.name), mode)?;
            }
            Ok(())
        }
    })();
    if let Err(e) = result {
        let _ = remove_any(&staging);
        return Err(e);
    }
    remove_any(dir)?;
    fs::rename(&staging, dir)
}

/// Puts `src` (a view: file or directory) at `dest` the way `mode` says.
fn place(src: &Path, dest: &Path, mode: PublishMode) -> io::Result<()> {
    if mode == PublishMode::Symlink {
        return std::os::unix::fs::symlink(src, dest);
    }
    let meta = fs::metadata(src)?;
    if meta.is_dir() {
        fs::create_dir_all(dest)?;
        let mut entries: Vec<_> = fs::read_dir(src)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            place(&e.path(), &dest.join(e.file_name()), mode)?;
        }
        return Ok(());
    }
    if mode == PublishMode::Link && fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    fs::copy(src, dest)?;
    let mut perms = fs::metadata(dest)?.permissions();
    // A copy is the user's: writable in copy mode, read-only like the store in link mode.
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut perms,
        if mode == PublishMode::Copy {
            0o644
        } else {
            0o444
        },
    );
    fs::set_permissions(dest, perms)
}

/// Removes a file, symlink or directory tree at `p` (nothing there is fine).
fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A store holding a directory output (`report/` with a nested file) and a file output.
    fn outputs(store: &BlobStore, work: &Path) -> BTreeMap<String, OutputRecord> {
        let d = work.join("report");
        fs::create_dir_all(d.join("figures")).unwrap();
        fs::write(d.join("report.html"), "<html>").unwrap();
        fs::write(d.join("figures/a.svg"), "<svg/>").unwrap();
        fs::write(work.join("summary.json"), "{}").unwrap();
        let mut out = BTreeMap::new();
        for (name, path) in [("report", d), ("summary", work.join("summary.json"))] {
            let (kind, digest, size, _) = store.put_path(&path, true).unwrap();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(
                name.to_string(),
                OutputRecord {
                    kind,
                    digest,
                    size,
                    name: file,
                },
            );
        }
        out
    }

    #[test]
    fn a_lone_directory_is_named_once_and_links_are_read_only_hard_links() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&tmp.path().join("state")).unwrap();
        let outs = outputs(&store, tmp.path());
        let only: BTreeMap<_, _> = outs
            .iter()
            .filter(|(k, _)| *k == "report")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let dir = tmp.path().join("results/p/report");
        publish_node(&store, &only, &dir, PublishMode::Link).unwrap();
        let page = dir.join("report.html");
        assert_eq!(fs::read_to_string(&page).unwrap(), "<html>");
        assert_eq!(
            fs::read_to_string(dir.join("figures/a.svg")).unwrap(),
            "<svg/>"
        );
        let meta = fs::symlink_metadata(&page).unwrap();
        assert!(
            meta.file_type().is_file() && meta.nlink() >= 2,
            "a hard link"
        );
        assert!(meta.permissions().readonly());

        // Republishing both outputs replaces the folder: one entry per output now.
        publish_node(&store, &outs, &dir, PublishMode::Link).unwrap();
        assert!(dir.join("report/report.html").is_file() && dir.join("summary.json").is_file());
        assert!(
            !dir.join("report.html").exists(),
            "the earlier layout is gone"
        );
        let left: Vec<_> = fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["report"], "no staging folder left behind");
    }

    #[test]
    fn copies_are_writable_and_symlinks_point_into_the_views() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&tmp.path().join("state")).unwrap();
        let outs = outputs(&store, tmp.path());
        let copy = tmp.path().join("results/p/copy");
        publish_node(&store, &outs, &copy, PublishMode::Copy).unwrap();
        let f = copy.join("summary.json");
        assert!(!fs::metadata(&f).unwrap().permissions().readonly());
        assert_eq!(fs::metadata(&f).unwrap().nlink(), 1);
        fs::write(&f, "edited").unwrap();
        let sym = tmp.path().join("results/p/sym");
        publish_node(&store, &outs, &sym, PublishMode::Symlink).unwrap();
        let link = fs::read_link(sym.join("summary.json")).unwrap();
        assert!(link.starts_with(fs::canonicalize(tmp.path().join("state")).unwrap()));
        assert_eq!(fs::read_to_string(sym.join("summary.json")).unwrap(), "{}");
        assert_eq!("copy".parse(), Ok(PublishMode::Copy));
        assert!("hard"
            .parse::<PublishMode>()
            .unwrap_err()
            .contains("link, copy or symlink"));
    }
}
