//! The eight competition targets and the `train.csv` label table
//! (`StudyInstanceUID,patient_overall,C1..C7`).

use std::collections::HashMap;
use std::path::Path;

use crate::csv_io::{open_reader, record_line, HeaderIndex};
use crate::ScoringError;

/// Number of targets per study: `patient_overall` then `C1`..`C7`.
pub const N_LABELS: usize = 8;
/// Index of `patient_overall` in every `[_; N_LABELS]` array of this crate.
pub const OVERALL: usize = 0;
/// Target names in the order used by every `[_; N_LABELS]` array of this crate.
pub const LABEL_NAMES: [&str; N_LABELS] =
    ["patient_overall", "C1", "C2", "C3", "C4", "C5", "C6", "C7"];

/// Index of a target name (`patient_overall`, `C1`..`C7`), if it is one.
pub fn label_index(name: &str) -> Option<usize> {
    LABEL_NAMES.iter().position(|n| *n == name)
}

/// Ground truth for a cohort: one row of 0/1 targets per study, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTable {
    uids: Vec<String>,
    targets: Vec<[u8; N_LABELS]>,
    index: HashMap<String, usize>,
}

impl LabelTable {
    /// Builds a table from parallel vectors; rejects duplicates, empty ids and values other than 0/1.
    pub fn new(uids: Vec<String>, targets: Vec<[u8; N_LABELS]>) -> Result<Self, ScoringError> {
        if uids.len() != targets.len() {
            return Err(ScoringError::LengthMismatch {
                what: "label table uids vs targets",
                left: uids.len(),
                right: targets.len(),
            });
        }
        let mut index = HashMap::with_capacity(uids.len());
        for (i, uid) in uids.iter().enumerate() {
            if !valid_uid(uid) {
                return Err(ScoringError::InvalidParameter(format!(
                    "label table: study id `{uid}` at index {i} is empty or contains whitespace, ',' or '\"'"
                )));
            }
            if targets[i].iter().any(|&y| y > 1) {
                return Err(ScoringError::InvalidParameter(format!(
                    "label table: study `{uid}` has a target other than 0/1: {:?}",
                    targets[i]
                )));
            }
            if index.insert(uid.clone(), i).is_some() {
                return Err(ScoringError::InvalidParameter(format!(
                    "label table: study `{uid}` appears twice"
                )));
            }
        }
        Ok(Self {
            uids,
            targets,
            index,
        })
    }

    /// Reads a `train.csv`-layout file. Columns are found by name (extra columns such as a fold
    /// number are allowed); every target must be exactly `0` or `1`.
    pub fn read(path: &Path) -> Result<Self, ScoringError> {
        let mut reader = open_reader(path)?;
        let header = HeaderIndex::new(path, &mut reader)?;
        let uid_col = header.require("StudyInstanceUID")?;
        let mut label_cols = [0usize; N_LABELS];
        for (j, name) in LABEL_NAMES.iter().enumerate() {
            label_cols[j] = header.require(name)?;
        }
        let mut uids = Vec::new();
        let mut targets = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut lines: Vec<u64> = Vec::new();
        for result in reader.records() {
            let record = result.map_err(|source| ScoringError::Csv {
                path: path.to_path_buf(),
                line: source.position().map_or(0, |p| p.line()),
                cause: source,
            })?;
            let line = record_line(&record);
            let field = |col: usize| record.get(col).unwrap_or("");
            let uid = field(uid_col).trim();
            if !valid_uid(uid) {
                return Err(ScoringError::BadValue {
                    path: path.to_path_buf(),
                    line,
                    column: "StudyInstanceUID".into(),
                    value: uid.into(),
                    reason: "study id is empty or contains whitespace or quotes",
                });
            }
            let mut row = [0u8; N_LABELS];
            for (j, &col) in label_cols.iter().enumerate() {
                let raw = field(col).trim();
                row[j] = match raw {
                    "0" => 0,
                    "1" => 1,
                    _ => {
                        return Err(ScoringError::BadValue {
                            path: path.to_path_buf(),
                            line,
                            column: LABEL_NAMES[j].into(),
                            value: raw.into(),
                            reason: "target must be 0 or 1",
                        })
                    }
                };
            }
            if let Some(&first) = index.get(uid) {
                return Err(ScoringError::DuplicateStudy {
                    path: path.to_path_buf(),
                    line,
                    first_line: lines[first],
                    uid: uid.into(),
                });
            }
            let overall_implied = row[1..].contains(&1) as u8;
            if row[OVERALL] != overall_implied {
                tracing::warn!(
                    path = %path.display(),
                    line,
                    "patient_overall is {} but the vertebra targets imply {}",
                    row[OVERALL],
                    overall_implied
                );
            }
            index.insert(uid.to_string(), uids.len());
            lines.push(line);
            uids.push(uid.to_string());
            targets.push(row);
        }
        if uids.is_empty() {
            return Err(ScoringError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            uids,
            targets,
            index,
        })
    }

    /// Study ids in file order.
    pub fn uids(&self) -> &[String] {
        &self.uids
    }

    /// Targets in file order, `[patient_overall, C1..C7]` per study.
    pub fn targets(&self) -> &[[u8; N_LABELS]] {
        &self.targets
    }

    /// Targets of one study.
    pub fn get(&self, uid: &str) -> Option<&[u8; N_LABELS]> {
        self.index.get(uid).map(|&i| &self.targets[i])
    }

    /// Position of a study in file order.
    pub fn position(&self, uid: &str) -> Option<usize> {
        self.index.get(uid).copied()
    }

    /// Number of studies.
    pub fn len(&self) -> usize {
        self.uids.len()
    }

    /// True when the table has no studies (never the case for a table read from a file).
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }

    /// Fraction of positives per target (the prior-only baseline's predictions).
    pub fn prevalence(&self) -> [f64; N_LABELS] {
        prevalence(&self.targets)
    }

    /// Writes the table in `train.csv` layout.
    pub fn write(&self, path: &Path) -> Result<(), ScoringError> {
        let mut writer = crate::csv_io::create_writer(path)?;
        let io = |e: csv::Error| crate::csv_io::write_error(path, e);
        let mut header = vec!["StudyInstanceUID"];
        header.extend(LABEL_NAMES);
        writer.write_record(&header).map_err(io)?;
        for (uid, row) in self.uids.iter().zip(&self.targets) {
            let mut fields = vec![uid.clone()];
            fields.extend(row.iter().map(|y| y.to_string()));
            writer.write_record(&fields).map_err(io)?;
        }
        writer.flush().map_err(|source| ScoringError::Io {
            path: path.to_path_buf(),
            action: "write",
            cause: source,
        })
    }
}

/// Fraction of positives per target over a set of studies (0 for an empty set).
pub fn prevalence(targets: &[[u8; N_LABELS]]) -> [f64; N_LABELS] {
    let mut out = [0.0; N_LABELS];
    if targets.is_empty() {
        return out;
    }
    for row in targets {
        for (o, &y) in out.iter_mut().zip(row) {
            *o += f64::from(y);
        }
    }
    out.map(|s| s / targets.len() as f64)
}

/// A study id usable as a CSV field and as the prefix of a submission `row_id`.
pub(crate) fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && !uid
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '"')
}
