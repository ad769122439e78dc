use serde::{Deserialize, Serialize};

use crate::digest::{hash_bytes, Digest};

/// One file of a directory artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the directory root, `/`-separated.
    pub path: String,
    /// Whether the file has an executable bit (the only mode bit we keep).
    pub executable: bool,
    pub digest: Digest,
    pub size: u64,
}

/// A directory artifact: its files sorted by path. Its canonical JSON is what gets hashed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Sorts the entries so the same tree always gives the same bytes.
    pub fn new(mut entries: Vec<ManifestEntry>) -> Manifest {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest { entries }
    }

    /// Canonical bytes (compact JSON of sorted entries).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialises")
    }

    /// The directory's digest.
    pub fn digest(&self) -> Digest {
        hash_bytes(&self.to_bytes())
    }

    /// Total size of the files.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, b: u8) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            executable: false,
            digest: Digest([b; 32]),
            size: 1,
        }
    }

    #[test]
    fn order_does_not_matter() {
        let a = Manifest::new(vec![entry("b", 1), entry("a", 2)]);
        let b = Manifest::new(vec![entry("a", 2), entry("b", 1)]);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn content_matters() {
        let a = Manifest::new(vec![entry("a", 1)]);
        let b = Manifest::new(vec![entry("a", 2)]);
        assert_ne!(a.digest(), b.digest());
        let c = Manifest::new(vec![entry("b", 1)]);
        assert_ne!(a.digest(), c.digest());
    }
}
