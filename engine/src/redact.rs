//! Paths of a user's data in what flow writes: a node's external inputs (the data root, a
//! folder that may be named after a patient) are shown as `${inputs.NAME}` in its log lines,
//! failure messages and the summaries its stage writes, so only the part below the root (study
//! UIDs, file numbers) is ever recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Rewrites the paths of a node's inputs to `${inputs.NAME}`.
#[derive(Debug, Clone, Default)]
pub struct PathRedactor {
    /// (path as text, replacement), longest path first so a nested input wins.
    rules: Vec<(String, String)>,
}

impl PathRedactor {
    /// From input name -> the paths the stage sees for it.
    pub fn new(inputs: &BTreeMap<String, Vec<PathBuf>>) -> PathRedactor {
        let mut rules = Vec::new();
        for (name, paths) in inputs {
            for (i, p) in paths.iter().enumerate() {
                let to = if paths.len() == 1 {
                    format!("${{inputs.{name}}}")
                } else {
                    format!("${{inputs.{name}[{i}]}}")
                };
                rules.push((p.display().to_string(), to.clone()));
                if let Ok(c) = std::fs::canonicalize(p) {
                    rules.push((c.display().to_string(), to));
                }
            }
        }
        rules.retain(|(from, _)| from.len() > 1);
        rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        rules.dedup_by(|a, b| a.0 == b.0);
        PathRedactor { rules }
    }

    /// `text` with every input path replaced.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (from, to) in &self.rules {
            if out.contains(from.as_str()) {
                out = out.replace(from.as_str(), to);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_paths_become_their_names_longest_first() {
        let inputs: BTreeMap<String, Vec<PathBuf>> = [
            (
                "root".to_string(),
                vec![PathBuf::from("/data/Jane Doe/rsna")],
            ),
            (
                "extra".to_string(),
                vec![PathBuf::from("/data/Jane Doe/rsna/extra")],
            ),
            (
                "models".to_string(),
                vec![PathBuf::from("/m/a"), PathBuf::from("/m/b")],
            ),
        ]
        .into_iter()
        .collect();
        let r = PathRedactor::new(&inputs);
        assert_eq!(
            r.apply("/data/Jane Doe/rsna/train_images/1.2.3/7.dcm: truncated"),
            "${inputs.root}/train_images/1.2.3/7.dcm: truncated"
        );
        assert_eq!(
            r.apply("see /data/Jane Doe/rsna/extra/x"),
            "see ${inputs.extra}/x"
        );
        assert_eq!(r.apply("/m/b/model.json"), "${inputs.models[1]}/model.json");
        assert_eq!(r.apply("nothing here"), "nothing here");
    }
}
