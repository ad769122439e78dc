//! `rsna.fracture_labels` on hand-made ROIs: negative studies get fracture-free labels, and a
//! pseudo-label round that labels no positive study falls back to the previous round's labels
//! and says so, instead of failing the run (and fails, naming why, without a previous round).

mod common;

use common::{with_state, Work};
use flow_imaging::{read_nifti, write_nifti, Geometry, Volume, Voxel};

const A: &str = "1.2.826.0.1.1";
const B: &str = "1.2.826.0.1.2";
const C: &str = "1.2.826.0.1.3";

/// A 6^3 volume with voxel `i` (x fastest) = `f(i)`.
fn grid<T: Voxel>(f: impl Fn(usize) -> T) -> Volume<T> {
    Volume::from_vec(
        [6, 6, 6],
        (0..6 * 6 * 6).map(f).collect(),
        Geometry::identity(),
    )
    .unwrap()
}

/// `rel` under the work dir, its folder created.
fn at(w: &Work, rel: &str) -> std::path::PathBuf {
    let path = w.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    path
}

/// Three studies: A (C3 fractured) and B (C3 fractured) whose probabilities are all zero, so
/// the pseudo labels come out empty; C negative. The previous round labelled A.
fn setup(w: &Work, with_previous: bool) {
    w.write("root/train.csv", &format!("StudyInstanceUID,patient_overall,C1,C2,C3,C4,C5,C6,C7\n{A},1,0,0,1,0,0,0,0\n{B},1,0,0,1,0,0,0,0\n{C},0,0,0,0,0,0,0,0\n"));
    for uid in [A, B, C] {
        write_nifti(
            &grid(|i| if i % 6 < 3 { 3u8 } else { 4u8 }),
            &at(w, &format!("rois/{uid}.vertebrae.nii.gz")),
        )
        .unwrap();
        write_nifti(&grid(|_| 300i16), &at(w, &format!("rois/{uid}.ct.nii.gz"))).unwrap();
        write_nifti(&grid(|_| 0f32), &at(w, &format!("probs/{uid}.nii.gz"))).unwrap();
    }
    write_nifti(
        &grid(|i| u8::from(i < 5)),
        &at(w, &format!("prev/{A}.nii.gz")),
    )
    .unwrap();
    write_nifti(&grid(|_| 0u8), &at(w, &format!("prev/{C}.nii.gz"))).unwrap();
    let previous = if with_previous {
        ", previous: ./prev"
    } else {
        ""
    };
    w.write("p.yaml", &format!("name: t\nnodes:\n  lab:\n    stage: rsna.fracture_labels\n    params: {{source: pseudo}}\n    inputs: {{rois: ./rois, probs: ./probs, root: ./root{previous}}}\n    publish: true\n"));
}

#[test]
fn an_empty_pseudo_round_falls_back_to_the_previous_labels_and_says_so() {
    let w = Work::new();
    setup(&w, true);
    let (code, states) = w.run("p.yaml", &[]);
    assert_eq!(code, 0, "{states:?}");
    assert_eq!(with_state(&states, "ran"), vec!["lab"]);
    let summary: serde_json::Value =
        serde_json::from_str(&w.read("results/t/lab/summary.json")).unwrap();
    let fallback = summary["fallback"]
        .as_str()
        .expect("the summary names the fallback");
    assert!(
        fallback.contains("previous round's labels of 1 studies"),
        "{fallback}"
    );
    assert_eq!(summary["labelled"], 1);
    assert_eq!(summary["negatives"], 1, "{summary}");
    assert!(summary["outcomes"][B]["Dropped"].is_object(), "{summary}");
    let labels = w.path().join("results/t/lab/labels");
    let a = read_nifti(&labels.join(format!("{A}.nii.gz")))
        .unwrap()
        .to_labels()
        .unwrap();
    assert_eq!(
        a.data().iter().filter(|&&v| v == 1).count(),
        5,
        "A's label is the previous round's"
    );
    let c = read_nifti(&labels.join(format!("{C}.nii.gz")))
        .unwrap()
        .to_labels()
        .unwrap();
    assert!(
        c.data().iter().all(|&v| v == 0),
        "the negative study is fracture-free"
    );
    assert!(
        !labels.join(format!("{B}.nii.gz")).exists(),
        "B was dropped in both rounds"
    );
}

#[test]
fn an_empty_pseudo_round_without_a_previous_round_fails_and_says_why() {
    let w = Work::new();
    setup(&w, false);
    let out = w.flow(&["run", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no study got a fracture label"), "{err}");
}

#[test]
fn a_study_that_cannot_be_read_is_noted_and_the_round_goes_on() {
    let w = Work::new();
    setup(&w, false);
    // A's C3 (the fractured vertebra) is predicted; B's probability map is not a NIfTI file.
    write_nifti(
        &grid(|i| if i % 6 < 3 { 0.9f32 } else { 0.0 }),
        &at(&w, &format!("probs/{A}.nii.gz")),
    )
    .unwrap();
    w.write(&format!("probs/{B}.nii.gz"), "not a volume");
    let (code, states) = w.run("p.yaml", &[]);
    assert_eq!(code, 0, "{states:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&w.read("results/t/lab/summary.json")).unwrap();
    assert_eq!(summary["labelled"], 1, "{summary}");
    assert!(summary["fallback"].is_null());
    let why = summary["outcomes"][B].as_str().unwrap_or_default();
    assert!(
        why.starts_with("not used:") && why.contains("cannot read the probability map"),
        "{summary}"
    );
}
