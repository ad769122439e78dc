//! An error either shows its cause in its own message or returns it from `source()`, never
//! both: the binary renders errors with their chain (`{:#}`) and node failures with
//! `StageError::chain`, and each must name the cause once.

use std::path::Path;

/// The rendering of `flow`'s `main` (anyhow's alternate format walks `source()`).
fn chained(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

fn assert_once(text: &str, needle: &str) {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "{needle:?} once in: {text}"
    );
}

const MISSING: &str = "No such file or directory";

#[test]
fn file_errors_of_every_crate_name_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");

    let e = flow_imaging::read_nifti(&missing.with_extension("nii")).unwrap_err();
    assert_once(&chained(e), MISSING);

    let e = flow_scoring::LabelTable::read(&missing.with_extension("csv")).unwrap_err();
    assert_once(&chained(e), MISSING);

    let e = flow_imaging::read_series(&missing, Default::default()).unwrap_err();
    assert_once(&chained(e), MISSING);

    // A file where the store wants a directory.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = flow_cache::BlobStore::open(&file).unwrap_err();
    let text = chained(e);
    assert!(text.contains("file"), "{text}");
    assert_eq!(
        text.matches("os error").count(),
        1,
        "one OS error in: {text}"
    );
}

#[test]
fn a_wrapped_stage_error_names_its_cause_once() {
    let e = flow_imaging::read_nifti(Path::new("/nonexistent/x.nii.gz")).unwrap_err();
    let wrapped = flow_engine::StageError::wrap("cannot read the probability map", e);
    let text = wrapped.chain();
    assert!(
        text.starts_with("cannot read the probability map: /nonexistent/x.nii.gz"),
        "{text}"
    );
    assert_once(&text, MISSING);
}
