//! Readers for the competition's `train.csv` and `train_bounding_boxes.csv`, with errors that
//! name the file and line.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A CSV problem at a given line of a given file (line 1 is the header).
#[derive(Debug, Error)]
pub enum CsvError {
    #[error("{path}: cannot read: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: header {found:?} does not start with the expected columns {expected:?}")]
    Header {
        path: PathBuf,
        found: Vec<String>,
        expected: Vec<&'static str>,
    },
    #[error("{path}:{line}: {message}")]
    Row {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// Fracture labels of one study (a row of train.csv).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyLabels {
    pub study_uid: String,
    pub patient_overall: bool,
    /// C1..C7.
    pub vertebrae: [bool; 7],
}

/// One axial fracture box (a row of train_bounding_boxes.csv).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FractureBox {
    pub study_uid: String,
    /// Column of the top-left corner (pixels).
    pub x: f64,
    /// Row of the top-left corner (pixels).
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// The `<n>` of `train_images/<UID>/<n>.dcm`.
    pub slice_number: i64,
    /// Line in the CSV file, for messages.
    pub line: u64,
}

const TRAIN_COLUMNS: [&str; 9] = [
    "StudyInstanceUID",
    "patient_overall",
    "C1",
    "C2",
    "C3",
    "C4",
    "C5",
    "C6",
    "C7",
];
const BOX_COLUMNS: [&str; 6] = [
    "StudyInstanceUID",
    "x",
    "y",
    "width",
    "height",
    "slice_number",
];

fn open(path: &Path, expected: &[&'static str]) -> Result<csv::Reader<std::fs::File>, CsvError> {
    let file = std::fs::File::open(path).map_err(|source| CsvError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(file);
    let header = reader.headers().map_err(|e| CsvError::Row {
        path: path.to_path_buf(),
        line: 1,
        message: e.to_string(),
    })?;
    let found: Vec<String> = header.iter().map(|s| s.trim().to_string()).collect();
    if found.len() < expected.len() || found.iter().zip(expected).any(|(f, e)| f != e) {
        return Err(CsvError::Header {
            path: path.to_path_buf(),
            found,
            expected: expected.to_vec(),
        });
    }
    Ok(reader)
}

fn rows(
    path: &Path,
    expected: &[&'static str],
) -> Result<impl Iterator<Item = Result<(u64, csv::StringRecord), CsvError>>, CsvError> {
    let reader = open(path, expected)?;
    let p = path.to_path_buf();
    let n = expected.len();
    Ok(reader.into_records().map(move |r| {
        let r = r.map_err(|e| CsvError::Row {
            path: p.clone(),
            line: e.position().map_or(0, |pos| pos.line()),
            message: e.to_string(),
        })?;
        let line = r.position().map_or(0, |pos| pos.line());
        if r.len() != n {
            return Err(CsvError::Row {
                path: p.clone(),
                line,
                message: format!("expected {n} fields, found {}", r.len()),
            });
        }
        Ok((line, r))
    }))
}

fn row_err(path: &Path, line: u64, message: String) -> CsvError {
    CsvError::Row {
        path: path.to_path_buf(),
        line,
        message,
    }
}

fn uid(path: &Path, line: u64, s: &str) -> Result<String, CsvError> {
    let s = s.trim();
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(row_err(
            path,
            line,
            format!("StudyInstanceUID {s:?} is not a DICOM UID"),
        ))
    }
}

/// Read train.csv. Checks every flag is 0/1 and that `patient_overall` is 1 exactly when some
/// vertebra is; duplicate studies are errors.
pub fn read_train_labels(path: &Path) -> Result<Vec<StudyLabels>, CsvError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for row in rows(path, &TRAIN_COLUMNS)? {
        let (line, r) = row?;
        let study_uid = uid(path, line, &r[0])?;
        let mut flags = [false; 8];
        for (c, flag) in flags.iter_mut().enumerate() {
            *flag = match r[c + 1].trim() {
                "0" => false,
                "1" => true,
                other => {
                    return Err(row_err(
                        path,
                        line,
                        format!(
                            "column {} is {other:?}, expected 0 or 1",
                            TRAIN_COLUMNS[c + 1]
                        ),
                    ))
                }
            };
        }
        let vertebrae = [
            flags[1], flags[2], flags[3], flags[4], flags[5], flags[6], flags[7],
        ];
        if flags[0] != vertebrae.iter().any(|&v| v) {
            return Err(row_err(
                path,
                line,
                format!(
                    "patient_overall is {} but C1..C7 are {vertebrae:?}",
                    flags[0] as u8
                ),
            ));
        }
        if let Some(prev) = seen.insert(study_uid.clone(), line) {
            return Err(row_err(
                path,
                line,
                format!("study {study_uid} already listed at line {prev}"),
            ));
        }
        out.push(StudyLabels {
            study_uid,
            patient_overall: flags[0],
            vertebrae,
        });
    }
    Ok(out)
}

/// Read train_bounding_boxes.csv (boxes of all studies, in file order).
pub fn read_fracture_boxes(path: &Path) -> Result<Vec<FractureBox>, CsvError> {
    let mut out = Vec::new();
    for row in rows(path, &BOX_COLUMNS)? {
        let (line, r) = row?;
        let num = |c: usize| -> Result<f64, CsvError> {
            let s = r[c].trim();
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(row_err(
                    path,
                    line,
                    format!("column {} is {s:?}, expected a number", BOX_COLUMNS[c]),
                )),
            }
        };
        let (x, y, width, height) = (num(1)?, num(2)?, num(3)?, num(4)?);
        if width < 0.0 || height < 0.0 {
            return Err(row_err(
                path,
                line,
                format!("negative box size {width} x {height}"),
            ));
        }
        let s = r[5].trim();
        let slice_number = s.parse::<i64>().map_err(|_| {
            row_err(
                path,
                line,
                format!("column slice_number is {s:?}, expected an integer"),
            )
        })?;
        out.push(FractureBox {
            study_uid: uid(path, line, &r[0])?,
            x,
            y,
            width,
            height,
            slice_number,
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.csv");
        std::fs::write(&p, content).unwrap();
        (d, p)
    }

    #[test]
    fn reads_train_labels_and_names_bad_rows() {
        let (_d, p) = write("StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\n1.2.3,1,0,1,0,0,0,0,0\n1.2.4,0,0,0,0,0,0,0,0\n");
        let l = read_train_labels(&p).unwrap();
        assert_eq!(l.len(), 2);
        assert!(l[0].patient_overall && l[0].vertebrae[1]);

        let (_d, p) = write("StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\n1.2.3,1,0,1,0,0,0,0,0\n1.2.4,0,0,0,2,0,0,0,0\n");
        let e = read_train_labels(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("t.csv:3: column C3 is \"2\", expected 0 or 1"),
            "{e}"
        );

        let (_d, p) =
            write("StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\n1.2.3,0,0,1,0,0,0,0,0\n");
        let e = read_train_labels(&p).unwrap_err().to_string();
        assert!(e.contains("t.csv:2: patient_overall is 0"), "{e}");

        let (_d, p) = write("StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\n1.2.3,0,0,0\n");
        let e = read_train_labels(&p).unwrap_err().to_string();
        assert!(e.contains("t.csv:2: expected 9 fields, found 4"), "{e}");

        let (_d, p) = write("uid,overall\n");
        assert!(matches!(
            read_train_labels(&p),
            Err(CsvError::Header { .. })
        ));
    }

    #[test]
    fn reads_boxes_and_names_bad_rows() {
        let (_d, p) = write(
            "StudyInstanceUID,x,y,width,height,slice_number\n1.2.3,133.5,150.0,20.25,30,112\n",
        );
        let b = read_fracture_boxes(&p).unwrap();
        assert_eq!(b[0].slice_number, 112);
        assert_eq!(b[0].line, 2);
        let (_d, p) = write(
            "StudyInstanceUID,x,y,width,height,slice_number\n1.2.3,1,2,3,4,5\n1.2.3,abc,2,3,4,5\n",
        );
        let e = read_fracture_boxes(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("t.csv:3: column x is \"abc\", expected a number"),
            "{e}"
        );
    }
}
