//! CSV input and output: malformed rows give errors naming the file and line; submissions are
//! validated as a whole; `submission.csv` follows the sample order.

use std::fs;
use std::path::{Path, PathBuf};

use flow_scoring::{
    score_files, validate_submission, LabelTable, Predictions, SampleOrder, ScoringError,
    SubmissionProblem,
};

const HEADER: &str = "StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn submission_rows(uid: &str, p: f64) -> String {
    flow_scoring::LABEL_NAMES
        .iter()
        .map(|l| format!("{uid}_{l},{p}\n"))
        .collect()
}

#[test]
fn labels_read_with_extra_columns_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "train.csv",
        "fold,C7,C6,C5,C4,C3,C2,C1,patient_overall,StudyInstanceUID\n\
         0,1,0,0,0,0,0,0,1,1.2.3\n\
         1,0,0,0,0,0,0,0,0,1.2.4\n",
    );
    let table = LabelTable::read(&path).unwrap();
    assert_eq!(table.uids(), ["1.2.3", "1.2.4"]);
    assert_eq!(table.get("1.2.3"), Some(&[1, 0, 0, 0, 0, 0, 0, 1]));
    assert_eq!(table.prevalence()[0], 0.5);
}

#[test]
fn malformed_label_rows_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, u64, &str); 5] = [
        (
            "bad_value",
            "1.2.3,0,0,0,0,0,0,0,0\n1.2.4,1,0,2,0,0,0,0,1\n",
            3,
            "C2",
        ),
        ("not_a_number", "1.2.3,0,0,0,0,0,0,0,yes\n", 2, "C7"),
        (
            "empty_uid",
            "1.2.3,0,0,0,0,0,0,0,0\n1.2.4,0,0,0,0,0,0,0,0\n,0,0,0,0,0,0,0,0\n",
            4,
            "StudyInstanceUID",
        ),
        ("short_row", "1.2.3,0,0,0,0,0,0,0,0\n1.2.4,0,0,0\n", 3, ""),
        (
            "duplicate",
            "1.2.3,0,0,0,0,0,0,0,0\n1.2.3,0,0,0,0,0,0,0,0\n",
            3,
            "1.2.3",
        ),
    ];
    for (name, body, line, what) in cases {
        let path = write(
            dir.path(),
            &format!("{name}.csv"),
            &format!("{HEADER}{body}"),
        );
        let err = LabelTable::read(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("line {line}")),
            "{name}: {message}"
        );
        assert!(
            message.contains(&format!("{name}.csv")),
            "{name}: {message}"
        );
        assert!(message.contains(what), "{name}: {message}");
        match (name, &err) {
            ("duplicate", ScoringError::DuplicateStudy { first_line: 2, .. }) => {}
            ("short_row", ScoringError::Csv { .. }) => {}
            ("duplicate" | "short_row", other) => panic!("{name}: unexpected {other:?}"),
            (_, ScoringError::BadValue { .. }) => {}
            (_, other) => panic!("{name}: unexpected {other:?}"),
        }
    }
    let missing = write(
        dir.path(),
        "missing.csv",
        "StudyInstanceUID,patient_overall,C1\n1.2.3,0,0\n",
    );
    assert!(matches!(
        LabelTable::read(&missing),
        Err(ScoringError::MissingColumn { column: "C2", .. })
    ));
    let empty = write(dir.path(), "empty.csv", HEADER);
    assert!(matches!(
        LabelTable::read(&empty),
        Err(ScoringError::Empty { .. })
    ));
    let absent = dir.path().join("absent.csv");
    assert!(matches!(
        LabelTable::read(&absent),
        Err(ScoringError::Io { .. })
    ));
}

#[test]
fn submission_problems_are_all_reported_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("row_id,fractured\n");
    text.push_str(&submission_rows("1.2.3", 0.25)); // lines 2..=9, fine
    text.push_str("1.2.4_C8,0.5\n"); // line 10: bad id
    text.push_str("1.2.4_C1,nan\n"); // line 11: NaN
    text.push_str("1.2.4_C2,1.5\n"); // line 12: out of range
    text.push_str("1.2.3_C3,0.5\n"); // line 13: duplicate of line 5
    text.push_str("1.2.4_patient_overall,0.1\n"); // line 14: study 1.2.4 stays incomplete
    text.push_str("1.2.9_C1,0.1,extra\n"); // line 15: wrong field count
    let path = write(dir.path(), "sub.csv", &text);
    let err = Predictions::read(&path).unwrap_err();
    let ScoringError::InvalidSubmission { problems, .. } = &err else {
        panic!("unexpected {err:?}")
    };
    let message = err.to_string();
    for needle in [
        "line 10",
        "line 11",
        "line 12",
        "line 13",
        "line 5",
        "line 15",
        "1.2.4",
        "C3, C4, C5, C6, C7",
    ] {
        assert!(
            message.contains(needle),
            "missing `{needle}` in:\n{message}"
        );
    }
    assert!(problems.iter().any(|p| matches!(
        p,
        SubmissionProblem::DuplicateRow {
            line: 13,
            first_line: 5,
            ..
        }
    )));
    assert!(problems
        .iter()
        .any(|p| matches!(p, SubmissionProblem::IncompleteStudy { uid, .. } if uid == "1.2.4")));
    assert_eq!(problems.len(), 6, "{message}");
}

#[test]
fn submission_must_cover_exactly_the_expected_studies() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "row_id,fractured\n{}{}",
        submission_rows("1.2.3", 0.1),
        submission_rows("9.9.9", 0.2)
    );
    let path = write(dir.path(), "sub.csv", &text);
    let expected = vec!["1.2.3".to_string(), "1.2.4".to_string()];
    let err = validate_submission(&path, Some(&expected)).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("line 10: study `9.9.9` is not an expected study"),
        "{message}"
    );
    assert!(
        message.contains("expected study `1.2.4` has no rows"),
        "{message}"
    );
    assert!(validate_submission(&path, None).is_ok());

    let labels = write(
        dir.path(),
        "labels.csv",
        &format!("{HEADER}1.2.3,0,0,0,0,0,0,0,0\n1.2.4,0,0,0,0,0,0,0,0\n"),
    );
    assert!(matches!(
        score_files(&labels, &path),
        Err(ScoringError::InvalidSubmission { .. })
    ));
    // A submission for a subset of the labelled studies is scored on that subset.
    let subset = write(
        dir.path(),
        "subset.csv",
        &format!("row_id,fractured\n{}", submission_rows("1.2.4", 0.5)),
    );
    let report = score_files(&labels, &subset).unwrap();
    assert_eq!((report.n_studies, report.labelled_not_predicted), (1, 1));
    assert!(flow_scoring::render_table(&report).contains("not scored: 1"));
    let err = flow_scoring::Predictions::read_expecting(&subset, &expected).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected study `1.2.3` has no rows"),
        "{err}"
    );

    let header_only = write(dir.path(), "header_only.csv", "row_id,fractured\n");
    assert!(matches!(
        Predictions::read(&header_only),
        Err(ScoringError::Empty { .. })
    ));
    let wrong_header = write(dir.path(), "wrong_header.csv", "id,prob\n1.2.3_C1,0.5\n");
    assert!(matches!(
        Predictions::read(&wrong_header),
        Err(ScoringError::MissingColumn {
            column: "row_id",
            ..
        })
    ));
}

#[test]
fn submission_round_trips_and_follows_sample_order() {
    let dir = tempfile::tempdir().unwrap();
    let uids = vec!["1.2.3".to_string(), "1.2.4".to_string()];
    let probs = vec![
        [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
        [0.0, 1.0, 1e-9, 0.123456789012345, 0.5, 0.5, 0.5, 1.0 / 3.0],
    ];
    let preds = Predictions::new(uids.clone(), probs.clone()).unwrap();

    let plain = dir.path().join("plain.csv");
    preds.write(&plain, None).unwrap();
    let text = fs::read_to_string(&plain).unwrap();
    assert_eq!(text.lines().count(), 1 + 16);
    assert!(
        text.starts_with("row_id,fractured\n1.2.3_patient_overall,0.9\n1.2.3_C1,0.1\n"),
        "{text}"
    );
    assert_eq!(
        Predictions::read(&plain).unwrap(),
        preds,
        "values must round-trip exactly"
    );

    // Sample order: studies reversed, labels interleaved.
    let mut sample_text = String::from("row_id,fractured\n");
    for label in flow_scoring::LABEL_NAMES.iter().rev() {
        for uid in uids.iter().rev() {
            sample_text.push_str(&format!("{uid}_{label},0.5\n"));
        }
    }
    let sample_path = write(dir.path(), "sample_submission.csv", &sample_text);
    let sample = SampleOrder::read(&sample_path).unwrap();
    assert_eq!(sample.studies(), ["1.2.4", "1.2.3"]);
    let ordered = dir.path().join("submission.csv");
    preds.write(&ordered, Some(&sample)).unwrap();
    let text = fs::read_to_string(&ordered).unwrap();
    let ids: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let sample_ids: Vec<&str> = sample_text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ids, sample_ids);
    assert!(text.contains("1.2.4_C7,0.3333333333333333\n"), "{text}");
    assert_eq!(
        Predictions::read(&ordered).unwrap().get("1.2.4"),
        Some(&probs[1])
    );

    // A sample that lacks a predicted study, or lists an unpredicted one, is refused.
    let short = write(
        dir.path(),
        "short.csv",
        &format!("row_id,fractured\n{}", submission_rows("1.2.3", 0.5)),
    );
    let err = preds
        .write(
            &dir.path().join("x.csv"),
            Some(&SampleOrder::read(&short).unwrap()),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("`1.2.4` is not in the sample"),
        "{err}"
    );
    let bad_sample = write(
        dir.path(),
        "bad_sample.csv",
        "row_id,fractured\n1.2.3_C1,0.5\n1.2.3_C9,0.5\n",
    );
    let err = SampleOrder::read(&bad_sample).unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn predictions_new_rejects_bad_values() {
    let uids = vec!["1.2.3".to_string()];
    assert!(Predictions::new(uids.clone(), vec![[f64::INFINITY; 8]]).is_err());
    assert!(Predictions::new(uids.clone(), vec![[-0.1; 8]]).is_err());
    assert!(Predictions::new(vec!["has space".into()], vec![[0.5; 8]]).is_err());
    assert!(Predictions::new(vec![uids[0].clone(), uids[0].clone()], vec![[0.5; 8]; 2]).is_err());
}
