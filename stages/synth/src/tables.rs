//! The cohort's CSV files: the public competition tables (`train.csv`,
//! `train_bounding_boxes.csv`, `test.csv`, `sample_submission.csv`) and the hidden truth tables
//! (`truth/test_labels.csv`, `truth/studies.csv`, `truth/fractures.csv`).

use crate::boxes::FractureBox;
use crate::config::VERTEBRA_NAMES;
use crate::fracture::Crack;
use crate::geometry::{ScanGeometry, SliceOrder};
use crate::plan::StudyPlan;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Writing a table failed.
#[derive(Debug, Error)]
pub enum TableError {
    #[error("cannot write {path}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Prediction types of a study, in the order rows are written.
pub const PREDICTION_TYPES: [&str; 8] =
    ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "patient_overall"];

fn write_rows(
    path: &Path,
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<(), TableError> {
    let err = |source| TableError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_path(path)
        .map_err(err)?;
    w.write_record(header).map_err(err)?;
    for row in rows {
        w.write_record(&row).map_err(err)?;
    }
    w.flush().map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn label_row(s: &StudyPlan) -> Vec<String> {
    let mut row = vec![s.study_uid.clone(), u8::from(s.positive()).to_string()];
    row.extend(s.fractured.iter().map(|&f| u8::from(f).to_string()));
    row
}

fn label_header() -> Vec<&'static str> {
    let mut h = vec!["StudyInstanceUID", "patient_overall"];
    h.extend(VERTEBRA_NAMES);
    h
}

/// `train.csv` (or `truth/test_labels.csv`): `StudyInstanceUID,patient_overall,C1..C7`.
pub fn write_labels<'a>(
    path: &Path,
    studies: impl IntoIterator<Item = &'a StudyPlan>,
) -> Result<(), TableError> {
    write_rows(path, &label_header(), studies.into_iter().map(label_row))
}

/// `train_bounding_boxes.csv`: `StudyInstanceUID,x,y,width,height,slice_number`.
pub fn write_boxes<'a>(
    path: &Path,
    boxes: impl IntoIterator<Item = (&'a str, &'a FractureBox)>,
) -> Result<(), TableError> {
    let rows = boxes.into_iter().map(|(uid, b)| {
        vec![
            uid.to_string(),
            format!("{:.1}", b.x),
            format!("{:.1}", b.y),
            format!("{:.1}", b.width),
            format!("{:.1}", b.height),
            b.slice_number.to_string(),
        ]
    });
    write_rows(
        path,
        &[
            "StudyInstanceUID",
            "x",
            "y",
            "width",
            "height",
            "slice_number",
        ],
        rows,
    )
}

/// `test.csv`: `row_id,StudyInstanceUID,prediction_type`, eight rows per study.
pub fn write_test_rows<'a>(
    path: &Path,
    studies: impl IntoIterator<Item = &'a StudyPlan>,
) -> Result<(), TableError> {
    let rows = studies.into_iter().flat_map(|s| {
        PREDICTION_TYPES.iter().map(move |t| {
            vec![
                format!("{}_{t}", s.study_uid),
                s.study_uid.clone(),
                t.to_string(),
            ]
        })
    });
    write_rows(
        path,
        &["row_id", "StudyInstanceUID", "prediction_type"],
        rows,
    )
}

/// `sample_submission.csv`: `row_id,fractured` with 0.5 everywhere.
pub fn write_sample_submission<'a>(
    path: &Path,
    studies: impl IntoIterator<Item = &'a StudyPlan>,
) -> Result<(), TableError> {
    let rows = studies.into_iter().flat_map(|s| {
        PREDICTION_TYPES
            .iter()
            .map(move |t| vec![format!("{}_{t}", s.study_uid), "0.5".to_string()])
    });
    write_rows(path, &["row_id", "fractured"], rows)
}

/// One study's facts for `truth/studies.csv`.
pub struct StudyFacts<'a> {
    pub plan: &'a StudyPlan,
    pub geometry: &'a ScanGeometry,
}

/// `truth/studies.csv`: split, subsets and scan geometry of every study.
pub fn write_study_facts<'a>(
    path: &Path,
    facts: impl IntoIterator<Item = StudyFacts<'a>>,
) -> Result<(), TableError> {
    let header = [
        "StudyInstanceUID",
        "split",
        "boxed",
        "segmented",
        "rows",
        "cols",
        "slices",
        "pixel_spacing",
        "slice_spacing",
        "slice_thickness",
        "order",
        "signed",
        "rescale_intercept",
    ];
    let rows = facts.into_iter().map(|f| {
        let g = f.geometry;
        vec![
            f.plan.study_uid.clone(),
            format!("{:?}", f.plan.split).to_lowercase(),
            u8::from(f.plan.boxed).to_string(),
            u8::from(f.plan.segmented).to_string(),
            g.rows.to_string(),
            g.cols.to_string(),
            g.slices.to_string(),
            format!("{}", g.pixel_spacing),
            format!("{}", g.slice_spacing),
            format!("{}", g.slice_thickness),
            match g.order {
                SliceOrder::SuperiorToInferior => "superior_to_inferior",
                SliceOrder::InferiorToSuperior => "inferior_to_superior",
            }
            .to_string(),
            u8::from(g.storage.signed()).to_string(),
            g.storage.intercept().to_string(),
        ]
    });
    write_rows(path, &header, rows)
}

/// `truth/fractures.csv`: every crack with its place (LPS mm), plane, size and voxel count.
pub fn write_fractures<'a>(
    path: &Path,
    cracks: impl IntoIterator<Item = (&'a str, usize, &'a Crack, usize)>,
) -> Result<(), TableError> {
    let header = [
        "StudyInstanceUID",
        "crack",
        "vertebra",
        "part",
        "centre_x",
        "centre_y",
        "centre_z",
        "normal_x",
        "normal_y",
        "normal_z",
        "width_mm",
        "radius_mm",
        "displacement_mm",
        "mask_voxels",
    ];
    let rows = cracks.into_iter().map(|(uid, i, c, voxels)| {
        vec![
            uid.to_string(),
            i.to_string(),
            c.level.name().to_string(),
            format!("{:?}", c.part),
            format!("{:.3}", c.centre.x),
            format!("{:.3}", c.centre.y),
            format!("{:.3}", c.centre.z),
            format!("{:.4}", c.normal.x),
            format!("{:.4}", c.normal.y),
            format!("{:.4}", c.normal.z),
            format!("{:.3}", 2.0 * c.half_width),
            format!("{:.3}", c.radius),
            format!("{:.3}", c.displacement.length()),
            voxels.to_string(),
        ]
    });
    write_rows(path, &header, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Split;

    fn study(uid: &str, fractured: [bool; 7]) -> StudyPlan {
        StudyPlan {
            index: 0,
            study_uid: uid.into(),
            series_uid: "2.25.2".into(),
            frame_of_reference_uid: "2.25.3".into(),
            split: Split::Test,
            fractured,
            boxed: false,
            segmented: false,
        }
    }

    #[test]
    fn tables_have_competition_headers() {
        let dir = tempfile::tempdir().unwrap();
        let a = study("2.25.10", [false, true, false, false, false, false, true]);
        let b = study("2.25.11", [false; 7]);
        let p = dir.path().join("train.csv");
        write_labels(&p, [&a, &b]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\n2.25.10,1,0,1,0,0,0,0,1\n2.25.11,0,0,0,0,0,0,0,0\n"
        );
        let p = dir.path().join("test.csv");
        write_test_rows(&p, [&a]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("row_id,StudyInstanceUID,prediction_type\n2.25.10_C1,2.25.10,C1\n")
        );
        assert!(text.ends_with("2.25.10_patient_overall,2.25.10,patient_overall\n"));
        let p = dir.path().join("sample_submission.csv");
        write_sample_submission(&p, [&a]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 9);
        let b = FractureBox {
            x: 3.0,
            y: 4.0,
            width: 5.0,
            height: 6.0,
            slice_number: 7,
            crack: 0,
        };
        let p = dir.path().join("boxes.csv");
        write_boxes(&p, [("2.25.10", &b)]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "StudyInstanceUID,x,y,width,height,slice_number\n2.25.10,3.0,4.0,5.0,6.0,7\n"
        );
    }
}
