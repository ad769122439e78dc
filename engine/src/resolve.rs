//! Turning a node's input references into digests (for its key) and paths (for its run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flow_cache::{ArtifactKind, Digest, OutputRecord};
use serde_json::Value;

use crate::error::EngineError;
use crate::key::{self, InputDigest};
use crate::spec::{InputRef, InputSpec};
use crate::state::StateDir;
use crate::validate::Dag;

/// One input as the stage will see it.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A stored artifact, materialised under `name`.
    Stored {
        kind: ArtifactKind,
        digest: Digest,
        name: String,
    },
    /// An external path (absolute), read in place.
    External {
        path: PathBuf,
        kind: ArtifactKind,
        digest: Digest,
    },
}

impl Resolved {
    fn digest(&self) -> InputDigest {
        match self {
            Resolved::Stored { kind, digest, .. } | Resolved::External { kind, digest, .. } => {
                InputDigest {
                    kind: *kind,
                    digest: *digest,
                }
            }
        }
    }
    /// A path the stage can read.
    pub fn materialize(&self, state: &StateDir) -> Result<PathBuf, EngineError> {
        match self {
            Resolved::Stored { kind, digest, name } => {
                Ok(state.store.materialize(*kind, digest, name)?)
            }
            Resolved::External { path, .. } => Ok(path.clone()),
        }
    }
}

/// A node's inputs and key, once every upstream node has outputs.
pub struct KeyedNode {
    pub key: Digest,
    pub manifest: Value,
    pub inputs: BTreeMap<String, Vec<Resolved>>,
}

/// Digests of external paths, computed once per run (through the stat memo).
pub struct ExternalDigests {
    map: BTreeMap<PathBuf, (ArtifactKind, Digest)>,
}

impl ExternalDigests {
    /// Hashes every external input of the selected nodes.
    pub fn compute(
        dag: &Dag,
        selected: &[bool],
        state: &StateDir,
        base: &Path,
    ) -> Result<ExternalDigests, EngineError> {
        let mut map = BTreeMap::new();
        for (i, n) in dag.nodes.iter().enumerate() {
            if !selected[i] {
                continue;
            }
            for spec in n.spec.inputs.values() {
                for r in spec.refs() {
                    if let InputRef::Path(p) = r {
                        let abs = absolute(base, p);
                        if let std::collections::btree_map::Entry::Vacant(e) = map.entry(abs) {
                            let d = state.index.digest_external(e.key())?;
                            e.insert(d);
                        }
                    }
                }
            }
        }
        Ok(ExternalDigests { map })
    }
}

pub fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Computes node `i`'s inputs and key from its upstream outputs (`outputs(j)`: node `j`'s,
/// if done); `None` when some upstream node has no outputs yet.
pub fn key_node<'a>(
    dag: &Dag,
    i: usize,
    outputs: &dyn Fn(usize) -> Option<&'a BTreeMap<String, OutputRecord>>,
    ext: &ExternalDigests,
    base: &Path,
) -> Option<KeyedNode> {
    let node = &dag.nodes[i];
    let mut inputs = BTreeMap::new();
    let mut digests = BTreeMap::new();
    let mut many = BTreeMap::new();
    for (name, spec) in &node.spec.inputs {
        let mut list = Vec::new();
        for r in spec.refs() {
            let resolved = match r {
                InputRef::Node { node: up, output } => {
                    let j = dag.index_of(up)?;
                    let rec = outputs(j)?.get(output)?;
                    Resolved::Stored {
                        kind: rec.kind,
                        digest: rec.digest,
                        name: rec.name.clone(),
                    }
                }
                InputRef::Path(p) => {
                    let abs = absolute(base, p);
                    let (kind, digest) = *ext.map.get(&abs)?;
                    Resolved::External {
                        path: abs,
                        kind,
                        digest,
                    }
                }
            };
            list.push(resolved);
        }
        digests.insert(
            name.clone(),
            list.iter().map(Resolved::digest).collect::<Vec<_>>(),
        );
        many.insert(name.clone(), matches!(spec, InputSpec::Many(_)));
        inputs.insert(name.clone(), list);
    }
    let params = node.schema.key_params(&node.params);
    let settings = node.stage.settings(&node.params);
    let manifest = key::manifest(
        node.stage.kind(),
        node.stage.version(),
        &params,
        settings.as_ref(),
        &digests,
        &many,
    );
    Some(KeyedNode {
        key: key::key_of(&manifest),
        manifest,
        inputs,
    })
}
