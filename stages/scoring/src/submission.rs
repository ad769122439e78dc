//! Kaggle submission files (`row_id,fractured`, with `row_id` = `<UID>_C1`..`<UID>_C7` and
//! `<UID>_patient_overall`): reading with full validation, writing in `sample_submission` order.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::csv_io::{create_writer, open_reader, record_line, write_error, HeaderIndex};
use crate::labels::{valid_uid, LabelTable, LABEL_NAMES, N_LABELS};
use crate::ScoringError;

/// One submission row key: a study and one of its eight targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowId {
    /// StudyInstanceUID.
    pub uid: String,
    /// Target index into [`LABEL_NAMES`].
    pub label: usize,
}

impl RowId {
    /// Parses `<UID>_<label>`; `None` when the suffix is not a target name or the UID is unusable.
    pub fn parse(row_id: &str) -> Option<Self> {
        LABEL_NAMES.iter().enumerate().find_map(|(label, name)| {
            let uid = row_id.strip_suffix(name)?.strip_suffix('_')?;
            valid_uid(uid).then(|| Self {
                uid: uid.to_string(),
                label,
            })
        })
    }
}

impl fmt::Display for RowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.uid, LABEL_NAMES[self.label])
    }
}

/// One thing wrong with a submission file; lines are 1-based with the header on line 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SubmissionProblem {
    /// The CSV itself is broken on this line (wrong field count, bad UTF-8, ...).
    Malformed { line: u64, message: String },
    /// `row_id` is not `<UID>_patient_overall` or `<UID>_C1`..`<UID>_C7`.
    BadRowId { line: u64, row_id: String },
    /// `fractured` is not a finite number in [0, 1].
    BadProbability {
        line: u64,
        row_id: String,
        value: String,
    },
    /// The same `row_id` twice.
    DuplicateRow {
        line: u64,
        first_line: u64,
        row_id: String,
    },
    /// A study without all eight rows.
    IncompleteStudy { uid: String, missing: Vec<String> },
    /// A study that is not among the expected ones (labels or sample submission); `line` is
    /// its first row when known.
    UnknownStudy { line: Option<u64>, uid: String },
    /// An expected study with no rows at all.
    MissingStudy { uid: String },
}

impl fmt::Display for SubmissionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { line, message } => write!(f, "line {line}: malformed CSV: {message}"),
            Self::BadRowId { line, row_id } => write!(
                f,
                "line {line}: row_id `{row_id}` is not <StudyInstanceUID>_<patient_overall|C1..C7>"
            ),
            Self::BadProbability {
                line,
                row_id,
                value,
            } => write!(
                f,
                "line {line}: row `{row_id}`: fractured `{value}` is not a finite number in [0, 1]"
            ),
            Self::DuplicateRow {
                line,
                first_line,
                row_id,
            } => {
                write!(
                    f,
                    "line {line}: row `{row_id}` already appeared on line {first_line}"
                )
            }
            Self::IncompleteStudy { uid, missing } => {
                write!(f, "study `{uid}` lacks rows for {}", missing.join(", "))
            }
            Self::UnknownStudy {
                line: Some(line),
                uid,
            } => {
                write!(f, "line {line}: study `{uid}` is not an expected study")
            }
            Self::UnknownStudy { line: None, uid } => {
                write!(f, "study `{uid}` is not an expected study")
            }
            Self::MissingStudy { uid } => write!(f, "expected study `{uid}` has no rows"),
        }
    }
}

/// Eight probabilities per study, `[patient_overall, C1..C7]`, in first-appearance order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    uids: Vec<String>,
    probs: Vec<[f64; N_LABELS]>,
    index: HashMap<String, usize>,
}

impl Predictions {
    /// Builds predictions from parallel vectors; every probability must be finite in [0, 1].
    pub fn new(uids: Vec<String>, probs: Vec<[f64; N_LABELS]>) -> Result<Self, ScoringError> {
        if uids.len() != probs.len() {
            return Err(ScoringError::LengthMismatch {
                what: "predictions uids vs probabilities",
                left: uids.len(),
                right: probs.len(),
            });
        }
        let mut index = HashMap::with_capacity(uids.len());
        for (i, (uid, row)) in uids.iter().zip(&probs).enumerate() {
            if !valid_uid(uid) {
                return Err(ScoringError::InvalidParameter(format!(
                    "predictions: study id `{uid}` is empty or contains whitespace, ',' or '\"'"
                )));
            }
            for (j, &p) in row.iter().enumerate() {
                if !is_probability(p) {
                    return Err(ScoringError::BadProbability {
                        what: "predictions",
                        index: i * N_LABELS + j,
                        value: p,
                    });
                }
            }
            if index.insert(uid.clone(), i).is_some() {
                return Err(ScoringError::InvalidParameter(format!(
                    "predictions: study `{uid}` appears twice"
                )));
            }
        }
        Ok(Self { uids, probs, index })
    }

    /// Reads and validates a submission: header `row_id,fractured`, well-formed ids, finite
    /// probabilities in [0, 1], no duplicate rows, eight rows for every study. All problems are
    /// collected into one [`ScoringError::InvalidSubmission`].
    pub fn read(path: &Path) -> Result<Self, ScoringError> {
        read_submission(path, None, false)
    }

    /// Like [`Predictions::read`], and additionally requires every study to be among `known`
    /// (e.g. the labelled studies); studies of `known` may be absent.
    pub fn read_known(path: &Path, known: &[String]) -> Result<Self, ScoringError> {
        read_submission(path, Some(known), false)
    }

    /// Like [`Predictions::read`], and additionally requires the studies to be exactly
    /// `expected` (no unknown study, none missing).
    pub fn read_expecting(path: &Path, expected: &[String]) -> Result<Self, ScoringError> {
        read_submission(path, Some(expected), true)
    }

    /// Study ids in order.
    pub fn uids(&self) -> &[String] {
        &self.uids
    }

    /// Probabilities in study order.
    pub fn probs(&self) -> &[[f64; N_LABELS]] {
        &self.probs
    }

    /// Probabilities of one study.
    pub fn get(&self, uid: &str) -> Option<&[f64; N_LABELS]> {
        self.index.get(uid).map(|&i| &self.probs[i])
    }

    /// Number of studies.
    pub fn len(&self) -> usize {
        self.uids.len()
    }

    /// True when there are no studies.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }

    /// Predictions in the label table's study order. Studies of the labels without predictions
    /// are an error ([`ScoringError::MissingPredictions`]); so are predicted studies that are not
    /// labelled (`pred_path` and `labels_path` only name the files in errors).
    pub fn aligned_to(
        &self,
        labels: &LabelTable,
        labels_path: &Path,
        pred_path: &Path,
    ) -> Result<Vec<[f64; N_LABELS]>, ScoringError> {
        let missing: Vec<&String> = labels
            .uids()
            .iter()
            .filter(|u| self.get(u).is_none())
            .collect();
        if let Some(first) = missing.first() {
            return Err(ScoringError::MissingPredictions {
                labels: labels_path.to_path_buf(),
                pred: pred_path.to_path_buf(),
                count: missing.len(),
                first: (*first).clone(),
            });
        }
        let unknown: Vec<SubmissionProblem> = self
            .uids
            .iter()
            .filter(|u| labels.get(u).is_none())
            .map(|uid| SubmissionProblem::UnknownStudy {
                line: None,
                uid: uid.clone(),
            })
            .collect();
        if !unknown.is_empty() {
            return Err(ScoringError::InvalidSubmission {
                path: pred_path.to_path_buf(),
                problems: unknown,
            });
        }
        Ok(labels
            .uids()
            .iter()
            .filter_map(|u| self.get(u).copied())
            .collect())
    }

    /// Writes `submission.csv`: `row_id,fractured`, eight rows per study. With a sample
    /// submission the rows follow its order and must match it exactly (every sample row
    /// predicted, every predicted row in the sample); without one, studies keep their order and
    /// rows go `patient_overall, C1..C7`.
    pub fn write(&self, path: &Path, sample: Option<&SampleOrder>) -> Result<(), ScoringError> {
        let rows: Vec<(String, f64)> = match sample {
            Some(sample) => self.rows_in_sample_order(sample)?,
            None => self
                .uids
                .iter()
                .zip(&self.probs)
                .flat_map(|(uid, row)| {
                    row.iter().enumerate().map(move |(label, &p)| {
                        (
                            RowId {
                                uid: uid.clone(),
                                label,
                            }
                            .to_string(),
                            p,
                        )
                    })
                })
                .collect(),
        };
        let mut writer = create_writer(path)?;
        writer
            .write_record(["row_id", "fractured"])
            .map_err(|e| write_error(path, e))?;
        for (row_id, p) in rows {
            writer
                .write_record([row_id, format!("{p}")])
                .map_err(|e| write_error(path, e))?;
        }
        writer.flush().map_err(|source| ScoringError::Io {
            path: path.to_path_buf(),
            action: "write",
            cause: source,
        })
    }

    fn rows_in_sample_order(
        &self,
        sample: &SampleOrder,
    ) -> Result<Vec<(String, f64)>, ScoringError> {
        let mismatch = |reason: String| ScoringError::SampleMismatch {
            sample: sample.path.clone(),
            reason,
        };
        let sample_studies: HashSet<&str> = sample.rows.iter().map(|r| r.uid.as_str()).collect();
        if let Some(uid) = self
            .uids
            .iter()
            .find(|u| !sample_studies.contains(u.as_str()))
        {
            return Err(mismatch(format!(
                "predicted study `{uid}` is not in the sample"
            )));
        }
        let mut rows = Vec::with_capacity(sample.rows.len());
        for row in &sample.rows {
            let probs = self.get(&row.uid).ok_or_else(|| {
                mismatch(format!("sample study `{}` has no predictions", row.uid))
            })?;
            rows.push((row.to_string(), probs[row.label]));
        }
        if rows.len() != self.len() * N_LABELS {
            return Err(mismatch(format!(
                "the sample has {} rows for the predicted studies, expected {} (8 per study)",
                rows.len(),
                self.len() * N_LABELS
            )));
        }
        Ok(rows)
    }
}

/// Row order of a `sample_submission.csv` (or `test.csv`): any file with a `row_id` column.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOrder {
    path: PathBuf,
    rows: Vec<RowId>,
}

impl SampleOrder {
    /// Reads the `row_id` column; malformed ids and duplicates are errors naming the line.
    pub fn read(path: &Path) -> Result<Self, ScoringError> {
        let mut reader = open_reader(path)?;
        let header = HeaderIndex::new(path, &mut reader)?;
        let col = header.require("row_id")?;
        let mut rows = Vec::new();
        let mut seen: HashMap<RowId, u64> = HashMap::new();
        for result in reader.records() {
            let record = result.map_err(|source| ScoringError::Csv {
                path: path.to_path_buf(),
                line: source.position().map_or(0, |p| p.line()),
                cause: source,
            })?;
            let line = record_line(&record);
            let raw = record.get(col).unwrap_or("").trim();
            let row = RowId::parse(raw).ok_or_else(|| ScoringError::BadValue {
                path: path.to_path_buf(),
                line,
                column: "row_id".into(),
                value: raw.into(),
                reason: "not <StudyInstanceUID>_<patient_overall|C1..C7>",
            })?;
            if let Some(&first_line) = seen.get(&row) {
                return Err(ScoringError::DuplicateStudy {
                    path: path.to_path_buf(),
                    line,
                    first_line,
                    uid: row.to_string(),
                });
            }
            seen.insert(row.clone(), line);
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(ScoringError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            rows,
        })
    }

    /// Rows in file order.
    pub fn rows(&self) -> &[RowId] {
        &self.rows
    }

    /// Distinct study ids in first-appearance order.
    pub fn studies(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.rows
            .iter()
            .filter(|r| seen.insert(r.uid.as_str()))
            .map(|r| r.uid.clone())
            .collect()
    }
}

/// Validates a submission file (see [`Predictions::read`]); with `expected`, the studies must
/// be exactly those. Returns the parsed predictions when valid.
pub fn validate_submission(
    path: &Path,
    expected: Option<&[String]>,
) -> Result<Predictions, ScoringError> {
    read_submission(path, expected, true)
}

fn is_probability(p: f64) -> bool {
    p.is_finite() && (0.0..=1.0).contains(&p)
}

/// Reads and validates; with `expected`, studies outside it are errors, and with `require_all`
/// so are studies of it without rows.
fn read_submission(
    path: &Path,
    expected: Option<&[String]>,
    require_all: bool,
) -> Result<Predictions, ScoringError> {
    let mut reader = open_reader(path)?;
    let header = HeaderIndex::new(path, &mut reader)?;
    let id_col = header.require("row_id")?;
    let p_col = header.require("fractured")?;
    let expected_set: Option<HashSet<&str>> =
        expected.map(|e| e.iter().map(String::as_str).collect());

    let mut problems = Vec::new();
    let mut uids: Vec<String> = Vec::new();
    let mut probs: Vec<[Option<f64>; N_LABELS]> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut row_lines: HashMap<RowId, u64> = HashMap::new();
    let mut unknown_reported: HashSet<String> = HashSet::new();
    let mut n_rows = 0usize;
    for result in reader.records() {
        n_rows += 1;
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                problems.push(SubmissionProblem::Malformed {
                    line: e.position().map_or(0, |p| p.line()),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = record_line(&record);
        let raw_id = record.get(id_col).unwrap_or("").trim();
        let Some(row) = RowId::parse(raw_id) else {
            problems.push(SubmissionProblem::BadRowId {
                line,
                row_id: raw_id.into(),
            });
            continue;
        };
        let raw_p = record.get(p_col).unwrap_or("").trim();
        let p = match raw_p.parse::<f64>() {
            Ok(p) if is_probability(p) => p,
            _ => {
                problems.push(SubmissionProblem::BadProbability {
                    line,
                    row_id: raw_id.into(),
                    value: raw_p.into(),
                });
                continue;
            }
        };
        if let Some(&first_line) = row_lines.get(&row) {
            problems.push(SubmissionProblem::DuplicateRow {
                line,
                first_line,
                row_id: raw_id.into(),
            });
            continue;
        }
        if let Some(set) = &expected_set {
            if !set.contains(row.uid.as_str()) {
                if unknown_reported.insert(row.uid.clone()) {
                    problems.push(SubmissionProblem::UnknownStudy {
                        line: Some(line),
                        uid: row.uid.clone(),
                    });
                }
                continue;
            }
        }
        row_lines.insert(row.clone(), line);
        let slot = *index.entry(row.uid.clone()).or_insert_with(|| {
            uids.push(row.uid.clone());
            probs.push([None; N_LABELS]);
            uids.len() - 1
        });
        probs[slot][row.label] = Some(p);
    }
    if n_rows == 0 {
        return Err(ScoringError::Empty {
            path: path.to_path_buf(),
        });
    }
    for (uid, row) in uids.iter().zip(&probs) {
        let missing: Vec<String> = row
            .iter()
            .zip(LABEL_NAMES)
            .filter(|(p, _)| p.is_none())
            .map(|(_, name)| name.to_string())
            .collect();
        if !missing.is_empty() {
            problems.push(SubmissionProblem::IncompleteStudy {
                uid: uid.clone(),
                missing,
            });
        }
    }
    if let (Some(expected), true) = (expected, require_all) {
        for uid in expected {
            if !index.contains_key(uid) {
                problems.push(SubmissionProblem::MissingStudy { uid: uid.clone() });
            }
        }
    }
    if !problems.is_empty() {
        return Err(ScoringError::InvalidSubmission {
            path: path.to_path_buf(),
            problems,
        });
    }
    let probs = probs
        .into_iter()
        .map(|row| row.map(|p| p.unwrap_or(f64::NAN)))
        .collect();
    Predictions::new(uids, probs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn row_ids_parse() {
        assert_eq!(
            RowId::parse("1.2.3_patient_overall"),
            Some(RowId {
                uid: "1.2.3".into(),
                label: 0
            })
        );
        assert_eq!(RowId::parse("1.2.3_C7").map(|r| r.label), Some(7));
        for bad in [
            "1.2.3_C8",
            "1.2.3C1",
            "_C1",
            "1.2.3_c1",
            "1.2 3_C1",
            "",
            "C1",
            "1.2.3_overall",
        ] {
            assert_eq!(RowId::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn row_id_round_trips(uid in "[0-9][0-9._A-Za-z]{0,40}", label in 0usize..N_LABELS) {
            let row = RowId { uid, label };
            prop_assert_eq!(RowId::parse(&row.to_string()), Some(row));
        }
    }
}
