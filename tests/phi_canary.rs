//! PHI canary: a tiny cohort whose series carry a patient's name, ID, birth date and
//! institution, under a folder named after a patient, goes through the whole rsna7 pipeline
//! (debug logging on); no marker may appear in what flow writes or prints.

mod common;

use std::path::Path;

use common::Work;

const MARKER: &str = "QXCANARYQX";
const FOLDER: &str = "DOE_JOHN_1923";
const BIRTH_DATE: &str = "19230405";

/// Files under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8], skip: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(skip) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn no_patient_identifier_reaches_logs_reports_or_the_cache() {
    let w = Work::new();
    w.write(
        "pipelines/rsna7.yaml",
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/rsna7.yaml"))
            .unwrap(),
    );
    let root = format!("{FOLDER}/root");
    let out = w
        .flow(&[
            "synth",
            "--out",
            &root,
            "--profile",
            "tiny",
            "--phi-canary",
            MARKER,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = w.path().join(FOLDER);
    // The canary is in the data: the test has teeth.
    assert!(!files_containing(&data, MARKER.as_bytes(), Path::new("/nonexistent")).is_empty());
    assert!(!files_containing(&data, BIRTH_DATE.as_bytes(), Path::new("/nonexistent")).is_empty());

    let mut run = assert_cmd::Command::cargo_bin("flow").unwrap();
    run.current_dir(w.path())
        .env_remove("FLOW_STATE_DIR")
        .args([
            "-v",
            "run",
            "pipelines/rsna7.yaml",
            "--set",
            "profile=tiny",
            "--set",
            "folds=3",
        ])
        .args(["--jobs", "2", "--set", &format!("data=./{root}")]);
    let out = run.output().unwrap();
    let printed = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = |printed: &[u8]| {
        for needle in [MARKER, FOLDER, BIRTH_DATE] {
            let hits = files_containing(w.path(), needle.as_bytes(), &data);
            assert!(hits.is_empty(), "`{needle}` written to {hits:?}");
            assert!(
                !printed
                    .windows(needle.len())
                    .any(|x| x == needle.as_bytes()),
                "`{needle}` printed by flow"
            );
        }
    };
    check(&printed);

    // A corrupt slice in one test study: its error (which names the file) reaches the node
    // log, summary.json and the report with the data root shown as `${inputs.root}`.
    let test_images = data.join("root/test_images");
    let study = std::fs::read_dir(&test_images)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let slice = std::fs::read_dir(&study)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&slice).unwrap();
    std::fs::write(&slice, &bytes[..200]).unwrap();
    let out = run.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary =
        std::fs::read_to_string(w.path().join("results/rsna7/convert_test/summary.json")).unwrap();
    assert!(
        summary.contains("${inputs.root}/test_images/"),
        "the failure is reported, relative to the data root: {summary}"
    );
    check(&[out.stdout.as_slice(), out.stderr.as_slice()].concat());
}
