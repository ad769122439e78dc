//! Shared CSV plumbing: opening files with path-naming errors, locating columns by header name,
//! and the line number of a record for error messages.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use crate::ScoringError;

/// Opens a headed, comma-separated file; field counts must match the header on every row.
pub(crate) fn open_reader(path: &Path) -> Result<csv::Reader<File>, ScoringError> {
    let file = File::open(path).map_err(|source| ScoringError::Io {
        path: path.to_path_buf(),
        action: "open",
        cause: source,
    })?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(file))
}

/// Creates (truncates) a CSV file for writing.
pub(crate) fn create_writer(path: &Path) -> Result<csv::Writer<File>, ScoringError> {
    let file = File::create(path).map_err(|source| ScoringError::Io {
        path: path.to_path_buf(),
        action: "create",
        cause: source,
    })?;
    Ok(csv::WriterBuilder::new().from_writer(file))
}

/// Maps a csv write error to the crate error, naming the file.
pub(crate) fn write_error(path: &Path, e: csv::Error) -> ScoringError {
    match e.into_kind() {
        csv::ErrorKind::Io(source) => ScoringError::Io {
            path: path.to_path_buf(),
            action: "write",
            cause: source,
        },
        other => ScoringError::Io {
            path: path.to_path_buf(),
            action: "write",
            cause: std::io::Error::other(format!("{other:?}")),
        },
    }
}

/// 1-based line number of a record in its file (the header is line 1).
pub(crate) fn record_line(record: &csv::StringRecord) -> u64 {
    record.position().map_or(0, |p| p.line())
}

/// Column positions by (trimmed) header name.
pub(crate) struct HeaderIndex {
    path: std::path::PathBuf,
    columns: HashMap<String, usize>,
    names: Vec<String>,
}

impl HeaderIndex {
    /// Reads the header row; a repeated column name is an error.
    pub(crate) fn new(path: &Path, reader: &mut csv::Reader<File>) -> Result<Self, ScoringError> {
        let header = reader.headers().map_err(|source| ScoringError::Csv {
            path: path.to_path_buf(),
            line: 1,
            cause: source,
        })?;
        let names: Vec<String> = header
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        let mut columns = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if columns.insert(name.clone(), i).is_some() {
                return Err(ScoringError::DuplicateColumn {
                    path: path.to_path_buf(),
                    column: name.clone(),
                });
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            columns,
            names,
        })
    }

    /// Position of a column that must exist.
    pub(crate) fn require(&self, column: &'static str) -> Result<usize, ScoringError> {
        self.columns
            .get(column)
            .copied()
            .ok_or_else(|| ScoringError::MissingColumn {
                path: self.path.clone(),
                column,
                found: self.names.join(","),
            })
    }
}
