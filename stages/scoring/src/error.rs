//! The crate's one error type: every variant names the file (and the CSV line where there is one)
//! so a user can go straight to the bad input.

use std::path::PathBuf;

use crate::submission::SubmissionProblem;

/// Everything that can go wrong while reading, validating, scoring or fitting.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    #[error("{path}: cannot {action}: {cause}")]
    Io {
        path: PathBuf,
        action: &'static str,
        cause: std::io::Error,
    },
    #[error("{path}: line {line}: malformed CSV: {cause}")]
    Csv {
        path: PathBuf,
        line: u64,
        cause: csv::Error,
    },
    #[error("{path}: header lacks column `{column}` (found: {found})")]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        found: String,
    },
    #[error("{path}: header names column `{column}` twice")]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("{path}: line {line}: column `{column}`: {reason} (value `{value}`)")]
    BadValue {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
        reason: &'static str,
    },
    #[error("{path}: line {line}: `{uid}` already appeared on line {first_line}")]
    DuplicateStudy {
        path: PathBuf,
        line: u64,
        first_line: u64,
        uid: String,
    },
    #[error("{path}: no data rows")]
    Empty { path: PathBuf },
    #[error("{path}: invalid submission, {} problem(s):\n{}", problems.len(), format_problems(problems))]
    InvalidSubmission {
        path: PathBuf,
        problems: Vec<SubmissionProblem>,
    },
    #[error(
        "{pred}: {count} labelled stud(ies) from {labels} have no predictions, first: `{first}`"
    )]
    MissingPredictions {
        labels: PathBuf,
        pred: PathBuf,
        count: usize,
        first: String,
    },
    #[error("sample submission {sample} and the predictions disagree: {reason}")]
    SampleMismatch { sample: PathBuf, reason: String },
    #[error("{what}: lengths differ ({left} vs {right})")]
    LengthMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
    #[error("{what}: no studies")]
    NoStudies { what: &'static str },
    #[error("{what}: probability {value} at index {index} is not a finite number in [0, 1]")]
    BadProbability {
        what: &'static str,
        index: usize,
        value: f64,
    },
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("{path}: JSON: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

fn format_problems(problems: &[SubmissionProblem]) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<String> = problems
        .iter()
        .take(SHOWN)
        .map(|p| format!("  - {p}"))
        .collect();
    if problems.len() > SHOWN {
        out.push(format!("  ... and {} more", problems.len() - SHOWN));
    }
    out.join("\n")
}
