//! The whole rsna7 pipeline on the tiny profile: every node runs, the submission has the
//! Kaggle format, the report and metrics exist; a failure injected into round-2 training is
//! resumed from its checkpoint without re-running anything before round 2; the custom example
//! is the same pipeline plus one user node.

mod common;

use common::{with_state, Work};

fn rsna7_yaml() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/rsna7.yaml")).unwrap()
}

const TINY: [&str; 6] = ["--set", "profile=tiny", "--set", "folds=3", "--jobs", "2"];

fn check_submission(w: &Work) {
    let sub = w.read("results/rsna7/stage3/submission.csv");
    let mut lines = sub.lines();
    assert_eq!(lines.next(), Some("row_id,fractured"));
    let rows: Vec<(String, f64)> = lines
        .map(|l| {
            let (id, p) = l.split_once(',').unwrap();
            (id.to_string(), p.parse().unwrap())
        })
        .collect();
    let test_csv = w.read(".flow-tiny-root/sample_submission.csv");
    let expected: Vec<&str> = test_csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        expected,
        "rows in sample_submission order"
    );
    assert_eq!(rows.len() % 8, 0);
    let study_of = |id: &str| -> String {
        let cut = if id.ends_with("_patient_overall") {
            "_patient_overall".len()
        } else {
            3
        };
        id[..id.len() - cut].to_string()
    };
    let studies: std::collections::BTreeSet<String> = rows.iter().map(|r| study_of(&r.0)).collect();
    assert_eq!(studies.len() * 8, rows.len(), "8 rows per study");
    for uid in &studies {
        for t in ["patient_overall", "C1", "C2", "C3", "C4", "C5", "C6", "C7"] {
            assert!(
                rows.iter().any(|r| r.0 == format!("{uid}_{t}")),
                "{uid}_{t} missing"
            );
        }
    }
    assert!(
        rows.iter().all(|r| (0.0..=1.0).contains(&r.1)),
        "probabilities in [0, 1]"
    );
}

#[test]
fn tiny_rsna7_runs_end_to_end_and_resumes_round_two() {
    let w = Work::new();
    w.write("pipelines/rsna7.yaml", &rsna7_yaml());
    // The cohort once, as a plain folder, so the test can read its sample submission.
    let out = w
        .flow(&[
            "synth",
            "--out",
            ".flow-tiny-root",
            "--profile",
            "tiny",
            "--seed",
            "2022",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = TINY.to_vec();
    args.extend(["--set", "data=./.flow-tiny-root"]);

    // A failure injected into round-2 training: everything before it completes.
    let (code, states) = {
        let report = w.path().join("report.json");
        let mut a = vec![
            "run",
            "pipelines/rsna7.yaml",
            "--report",
            report.to_str().unwrap(),
        ];
        a.extend(&args);
        let out = w
            .flow(&a)
            .env("FLOW_INJECT_FAILURE", "train_round2@1")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&w.read("report.json")).unwrap();
        let states: Vec<(String, String)> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap().to_string(),
                    n["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (out.status.code().unwrap(), states)
    };
    assert_eq!(code, 1, "{states:?}");
    assert_eq!(with_state(&states, "failed"), vec!["train_round2"]);
    let ran_first = with_state(&states, "ran");
    for n in [
        "stage1_lowres",
        "stage1_fullres",
        "train_round0",
        "train_round1",
        "predict_round1_train",
        "labels_round2",
    ] {
        assert!(
            ran_first.contains(&n.to_string()),
            "{n} ran before the failure: {states:?}"
        );
    }

    // Rerun: nothing before round 2 re-runs, round 2 continues from its epoch-1 checkpoint.
    let (code, states) = w.run("pipelines/rsna7.yaml", &args);
    let runs = w.path().join(".flow/runs");
    let mut run_dirs: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    run_dirs.sort();
    let log =
        std::fs::read_to_string(run_dirs.last().unwrap().join("logs/train_round2.log")).unwrap();
    assert!(
        log.contains("resuming from the checkpoint after epoch 1"),
        "{log}"
    );
    // Stage 1 segments its own training studies and says which attempt it kept.
    let stage1_log = std::fs::read_to_string(run_dirs[0].join("logs/stage1_lowres.log")).unwrap();
    assert!(
        stage1_log.contains("attempt 0 (seed ")
            && stage1_log.contains("training-study Dice per class")
            && stage1_log.contains("kept attempt"),
        "{stage1_log}"
    );
    assert_eq!(code, 0, "{states:?}");
    let ran = with_state(&states, "ran");
    for n in [
        "stage1_lowres",
        "stage1_fullres",
        "stage1_predict_train",
        "roi_train",
        "train_round0",
        "train_round1",
        "predict_round1_train",
        "labels_round2",
    ] {
        assert!(
            !ran.contains(&n.to_string()),
            "{n} re-ran after the failure: {ran:?}"
        );
    }
    for n in [
        "train_round2",
        "train_round3_fold0",
        "train_round3_fold2",
        "stage3",
        "report",
    ] {
        assert!(
            ran.contains(&n.to_string()),
            "{n} should run on resume: {ran:?}"
        );
    }
    check_submission(&w);
    let metrics: serde_json::Value =
        serde_json::from_str(&w.read("results/rsna7/report/metrics.json")).unwrap();
    assert!(metrics["stage1_mean_dice"].as_f64().is_some(), "{metrics}");
    assert!(
        metrics["test"]["metric"]
            .as_f64()
            .is_some_and(|m| m.is_finite() && m > 0.0),
        "{metrics}"
    );
    assert!(w.read("results/rsna7/report/report.html").contains("<img"));

    // A third run is a no-op.
    let (code, states) = w.run("pipelines/rsna7.yaml", &args);
    assert_eq!(code, 0);
    assert!(with_state(&states, "ran").is_empty(), "{states:?}");

    an_inference_entry_reruns_predictions_and_no_training(&w, &args);
    a_changed_stage1_param_makes_new_per_study_results(&w, &args);
    one_plan_entry_reruns_exactly_the_nodes_that_use_it(&w, &args);
    a_fold_model_never_starts_from_weights_that_saw_its_fold(&w, &args);
}

/// Inference entries (window step, mirroring) are their own plan section: turning on
/// round 3's mirroring re-runs round 3's predictions and what reads them, and retrains nothing.
fn an_inference_entry_reruns_predictions_and_no_training(w: &Work, args: &[&str]) {
    let mut a = args.to_vec();
    a.extend(["--set", "plan.inference.fracture_round3.tta_axes=[2]"]);
    let (code, states) = w.run("pipelines/rsna7.yaml", &a);
    assert_eq!(code, 0, "{states:?}");
    let ran = with_state(&states, "ran");
    for n in [
        "plans",
        "predict_round3_train",
        "predict_round3_test",
        "stage3",
    ] {
        assert!(ran.contains(&n.to_string()), "{n} should re-run: {ran:?}");
    }
    assert!(
        !ran.iter().any(|n| n.starts_with("train_")
            || n.starts_with("stage1_")
            || n.starts_with("predict_round1")
            || n.starts_with("predict_round2")),
        "a model was retrained or another round re-predicted: {ran:?}"
    );
    let plans: serde_json::Value =
        serde_json::from_str(&w.read("results/rsna7/plans/plans.json")).unwrap();
    assert_eq!(
        plans["sections"]["inference"]["fracture_round3"]["tta_axes"],
        serde_json::json!([2])
    );
    assert!(
        plans["sections"]["fracture_round3"]
            .get("tta_axes")
            .is_none(),
        "{plans}"
    );
}

/// `rsna.stage1_predict` caches its result per study: a param that changes the labels must be
/// in that per-study key, or the re-run node serves the old studies' labels (it did for
/// `level_markers`). Counted in `flow cache ls`, which lists the per-study items.
fn a_changed_stage1_param_makes_new_per_study_results(w: &Work, args: &[&str]) {
    let items = || {
        let out = w.flow(&["cache", "ls"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("stage1_predict_test#item"))
            .count()
    };
    let before = items();
    assert!(before > 0, "no per-study items of stage1_predict_test");
    let yaml = rsna7_yaml().replace(
        "    stage: rsna.stage1_predict\n",
        "    stage: rsna.stage1_predict\n    params: {level_markers: 0.0}\n",
    );
    assert_ne!(
        yaml,
        rsna7_yaml(),
        "the stage1_predict node moved: update this test"
    );
    w.write("pipelines/markers.yaml", &yaml);
    let mut a = args.to_vec();
    a.extend(["--target", "stage1_predict_test"]);
    let (code, states) = w.run("pipelines/markers.yaml", &a);
    assert_eq!(code, 0, "{states:?}");
    assert!(with_state(&states, "ran").contains(&"stage1_predict_test".to_string()));
    assert_eq!(
        items(),
        2 * before,
        "every test study needs a new result: {before} before"
    );
}

/// Round 2 may start from round 1's weights and a round-3 fold from round 0's (label-free:
/// the pipeline itself does so, above); a round-3 fold may not start from round 1: round 1
/// trained on studies of the folds, so the fold's out-of-fold predictions would come from
/// weights that saw them. The stage refuses before training.
fn a_fold_model_never_starts_from_weights_that_saw_its_fold(w: &Work, args: &[&str]) {
    let leaky = rsna7_yaml().replace(
        "inputs: {rois: roi_train.rois, labels: labels_round3.labels, split: split.split, plan: plans.fracture_round3, init: train_round0.model}",
        "inputs: {rois: roi_train.rois, labels: labels_round3.labels, split: split.split, plan: plans.fracture_round3, init: train_round1.model}",
    );
    assert_ne!(
        leaky,
        rsna7_yaml(),
        "the round-3 node line moved: update this test"
    );
    w.write("pipelines/leaky.yaml", &leaky);
    let mut a = vec!["run", "pipelines/leaky.yaml"];
    a.extend_from_slice(args);
    a.extend([
        "--target",
        "train_round3_fold0",
        "--target",
        "train_round3_fold1",
        "--target",
        "train_round3_fold2",
    ]);
    let out = w.flow(&a).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("would come from weights that saw it"),
        "{stderr}"
    );
}

/// Plans as data: `--set plan.overall.lr=...` re-plans, re-trains the patient_overall CNNs and
/// what reads them, and nothing else; `flow explain` names the entry before and after the
/// plans node ran.
fn one_plan_entry_reruns_exactly_the_nodes_that_use_it(w: &Work, args: &[&str]) {
    let explain = |node: &str, extra: &[&str]| -> String {
        let mut a = vec!["explain", "pipelines/rsna7.yaml", node];
        // The run's `--set`s (explain takes no --jobs).
        for pair in args.windows(2).filter(|p| p[0] == "--set") {
            a.extend(pair);
        }
        a.extend(extra);
        let out = w.flow(&a).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let lr = ["--set", "plan.overall.lr=0.0005"];
    let text = explain("overall_fold0", &lr);
    assert!(
        text.contains("upstream plans runs")
            && text.contains("param `overrides.overall.lr` added (0.0005)"),
        "{text}"
    );
    let mut a = args.to_vec();
    a.extend(lr);
    let (code, states) = w.run("pipelines/rsna7.yaml", &a);
    assert_eq!(code, 0, "{states:?}");
    let mut ran = with_state(&states, "ran");
    ran.sort();
    assert_eq!(
        ran,
        [
            "overall_fold0",
            "overall_fold1",
            "overall_fold2",
            "plans",
            "report",
            "stage3"
        ],
        "{states:?}"
    );
    let plans: serde_json::Value =
        serde_json::from_str(&w.read("results/rsna7/plans/plans.json")).unwrap();
    assert_eq!(
        plans["sections"]["overall"]["lr"],
        serde_json::json!(0.0005)
    );
    assert_eq!(
        plans["fingerprint"]["studies"].as_u64().map(|n| n > 0),
        Some(true),
        "{plans}"
    );

    // Once the plans node has run with a new value, the model node names the entry of its
    // `plan` input that moved.
    let mut a = args.to_vec();
    a.extend(["--set", "plan.overall.lr=0.0002", "--target", "plans"]);
    let (code, states) = w.run("pipelines/rsna7.yaml", &a);
    assert_eq!(code, 0, "{states:?}");
    let text = explain("overall_fold1", &["--set", "plan.overall.lr=0.0002"]);
    assert!(
        text.contains("input `plan`: `lr` changed: 0.0005 -> 0.0002"),
        "{text}"
    );
    let text = explain("train_round1", &["--set", "plan.overall.lr=0.0002"]);
    assert!(text.contains("cached"), "{text}");
}

/// pipelines/examples/rsna7-custom.yaml must stay rsna7.yaml plus its marked additions.
#[test]
fn custom_example_is_rsna7_plus_the_marked_user_node() {
    let custom = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/examples/rsna7-custom.yaml"
    ))
    .unwrap();
    let base = rsna7_yaml();
    let strip = |text: &str, name: &str| -> String {
        let body = &text[text.find(&format!("name: {name}\n")).expect("name line")..];
        let mut out = Vec::new();
        let mut skipping = false;
        for line in body.lines() {
            if line.trim() == "# --- custom node ---" {
                skipping = true;
            }
            if !skipping && !line.ends_with("# custom") {
                out.push(line.replace(&format!("name: {name}"), "name: X"));
            }
            if line.trim() == "# --- end custom ---" {
                skipping = false;
            }
        }
        out.join("\n")
    };
    assert_eq!(
        strip(&custom, "rsna7-custom"),
        strip(&base, "rsna7"),
        "rsna7-custom.yaml drifted from rsna7.yaml"
    );
    let w = Work::new();
    w.write("pipelines/examples/rsna7-custom.yaml", &custom);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/examples/scripts/vertebra_burden.py"
    );
    w.write(
        "pipelines/examples/scripts/vertebra_burden.py",
        &std::fs::read_to_string(script).unwrap(),
    );
    let out = w
        .flow(&["plan", "pipelines/examples/rsna7-custom.yaml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("burden"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The model stages check their params before anything runs: exit 2, file:line, node, fix.
#[test]
fn bad_method_params_are_rejected_before_running() {
    let w = Work::new();
    w.write(
        "bad.yaml",
        r#"
name: bad
nodes:
  plans:
    stage: rsna.plan
    params: {profile: huge}
  typo:
    stage: rsna.plan
    params: {profile: tiny, overrides: {overall: {learning_rate: 0.1}}}
  train:
    stage: rsna.stage1_train
    params: {resolution: midres}
    inputs: {volumes: ./v, labels: [./l], plan: plans.stage1_lowres}
  labels:
    stage: rsna.fracture_labels
    params: {source: pseudo}
    inputs: {rois: ./r}
  fold:
    stage: rsna.fracture_train
    params: {round: 3, fold: 1}
    inputs: {rois: ./r, labels: ./l, plan: plans.fracture_round3}
  start:
    stage: rsna.fracture_train
    params: {round: 0}
    inputs: {rois: ./r, labels: ./l, plan: plans.fracture_round0}
  lucent:
    stage: rsna.fracture_labels
    params: {source: boxes, lucent_hu: -5}
    inputs: {rois: ./r, root: ./r}
  scorer:
    stage: rsna.stage3
    params: {use_cnn: false, vertebra_scorer: logistic}
    inputs: {root: ./r, split: ./l, train_rois: ./r, train_probs: ./r, test_rois: ./r, test_probs: ./r}
"#,
    );
    for d in ["v", "l", "r"] {
        std::fs::create_dir_all(w.path().join(d)).unwrap();
    }
    let out = w.flow(&["plan", "bad.yaml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown profile `huge`") && err.contains("tiny, demo, full"),
        "{err}"
    );
    assert!(
        err.contains("plan.overall.learning_rate") && err.contains("no such plan entry"),
        "{err}"
    );
    assert!(err.contains("midres"), "{err}");
    assert!(
        err.contains("source: pseudo needs the inputs `probs`"),
        "{err}"
    );
    assert!(
        err.contains("fold: a fold needs the input `split`"),
        "{err}"
    );
    assert!(
        err.contains("vertebra_scorer: expected `pooled` or `quantile`, got `logistic`"),
        "{err}"
    );
    assert!(
        err.contains("round 0 learns from synthetic cracks only: remove the input `labels`"),
        "{err}"
    );
    assert!(
        err.contains("lucent_hu: expected a number of HU >= 0"),
        "{err}"
    );
    assert!(err.contains("bad.yaml:"), "{err}");
}
