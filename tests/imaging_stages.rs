//! The imaging stages inside a pipeline, on a tiny synthetic cohort: conversion (cached per
//! study), segmentations, boxes; `flow convert` and `flow synth` as user commands.

mod common;

use common::{with_state, Work};

const PIPE: &str = r#"
name: imaging
params: {data: ./cohort}
nodes:
  convert:
    stage: dicom.to_nifti
    inputs: {root: "${params.data}"}
    publish: true
  segmentations:
    stage: rsna.segmentations
    inputs: {root: "${params.data}", volumes: convert.volumes}
    publish: true
  boxes:
    stage: rsna.boxes_to_masks
    inputs: {root: "${params.data}", volumes: convert.volumes}
    publish: true
"#;

fn synth(w: &Work, dir: &str) {
    let out = w
        .flow(&["synth", "--out", dir, "--profile", "tiny", "--seed", "7"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn summary(w: &Work, node: &str) -> serde_json::Value {
    serde_json::from_str(&w.read(&format!("results/imaging/{node}/summary.json"))).unwrap()
}

#[test]
fn imaging_pipeline_converts_and_caches_per_study() {
    let w = Work::new();
    synth(&w, "cohort");
    w.write("p.yaml", PIPE);
    let (code, states) = w.run("p.yaml", &["--jobs", "2"]);
    assert_eq!(code, 0);
    assert_eq!(with_state(&states, "ran").len(), 3);
    let conv = summary(&w, "convert");
    let n = conv["done"].as_array().unwrap().len();
    assert!(n >= 6, "{conv}");
    assert!(conv["failed"].as_array().unwrap().is_empty(), "{conv}");
    assert!(summary(&w, "segmentations")["failed"]
        .as_array()
        .unwrap()
        .is_empty());
    let boxes = summary(&w, "boxes");
    assert!(boxes["failed"].as_array().unwrap().is_empty(), "{boxes}");
    assert!(
        !boxes["done"].as_array().unwrap().is_empty(),
        "the tiny cohort has boxed studies: {boxes}"
    );

    // Add one study (a copy under a new UID): only that study is converted again.
    let images = w.path().join("cohort/train_images");
    let first = std::fs::read_dir(&images)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let copy = images.join("1.2.826.0.1.3680043.8.498.99999999");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(&first).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    let (code, states) = w.run("p.yaml", &[]);
    assert_eq!(code, 0);
    assert!(with_state(&states, "ran").contains(&"convert".to_string()));
    let log = w.newest_node_log("convert");
    assert_eq!(log.matches(": converted").count(), 1, "{log}");
    assert_eq!(
        log.matches("reused from the per-study cache").count(),
        n,
        "{log}"
    );
}

#[test]
fn a_broken_study_is_reported_and_the_rest_convert() {
    let w = Work::new();
    synth(&w, "cohort");
    let images = w.path().join("cohort/train_images");
    let bad = images.join("1.2.3.broken");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("1.dcm"), b"DICM but not really").unwrap();
    w.write("p.yaml", PIPE);
    let (code, _) = w.run("p.yaml", &["--target", "convert"]);
    assert_eq!(code, 0);
    let conv = summary(&w, "convert");
    let failed = conv["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{conv}");
    assert_eq!(failed[0]["study"], "1.2.3.broken");
}

#[test]
fn flow_convert_one_series_and_bad_input_exit_2() {
    let w = Work::new();
    synth(&w, "cohort");
    let images = w.path().join("cohort/train_images");
    let study = std::fs::read_dir(&images)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = w
        .flow(&[
            "convert",
            study.to_str().unwrap(),
            "-o",
            "ct.nii.gz",
            "--report",
            "ct.json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.path().join("ct.nii.gz").is_file());
    let report = w.read("ct.json");
    assert!(
        !report.to_lowercase().contains("patientname"),
        "no patient identifiers: {report}"
    );
    let empty = w.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = w
        .flow(&["convert", empty.to_str().unwrap(), "-o", "x.nii.gz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot convert"));
}
