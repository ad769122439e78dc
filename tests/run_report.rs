//! The engine's run report: `flow run --html-report` and `flow report` on the tiny rsna7
//! pipeline list every node with what it used (CPU time and peak memory for those that ran),
//! the JSON report carries the same usage, a command node is charged its own process, and the
//! page opens in headless Chromium without a problem.

mod common;

#[path = "../stages/report/tests/browser_check/mod.rs"]
mod browser_check;

use common::Work;

#[test]
fn tiny_rsna7_run_report_lists_every_node_with_its_usage_and_opens_in_a_browser() {
    let w = Work::new();
    w.write(
        "pipelines/rsna7.yaml",
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/rsna7.yaml"))
            .unwrap(),
    );
    let page = w.path().join("run.html");
    let args = [
        "--set",
        "profile=tiny",
        "--set",
        "folds=3",
        "--jobs",
        "2",
        "--html-report",
        page.to_str().unwrap(),
    ];
    let (code, states) = w.run("pipelines/rsna7.yaml", &args);
    assert_eq!(code, 0, "{states:?}");
    let report: serde_json::Value = serde_json::from_str(&w.read("report.json")).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    for n in report["nodes"].as_array().unwrap() {
        let id = n["id"].as_str().unwrap();
        assert!(
            html.contains(&format!("<td>{id}</td>")),
            "{id} missing from the page"
        );
        if n["state"] == "ran" {
            let cpu = n["usage"]["cpu_seconds"].as_f64().unwrap_or(0.0);
            let rss = n["usage"]["peak_rss_kb"].as_u64().unwrap_or(0);
            assert!(cpu > 0.0 && rss > 0, "{id}: {n}");
        }
    }
    // The model nodes do their work on pool threads: they are charged for it.
    let lowres = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "stage1_lowres")
        .unwrap();
    assert!(
        lowres["usage"]["cpu_seconds"].as_f64().unwrap()
            > 0.2 * lowres["seconds"].as_f64().unwrap(),
        "{lowres}"
    );
    assert!(
        html.contains("critical path") && html.contains("<svg"),
        "{html}"
    );

    // `flow report` rebuilds the same page from the journal, for the latest run by default.
    let out = w.flow(&["report"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(written.ends_with("report.html"), "{written}");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), html);
    let out = w.flow(&["report", "no-such-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run `no-such-run`"));

    if let Some(browser) = browser_check::browser_or_skip() {
        let seen = browser_check::check_page(&browser, &page);
        assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    }
}

#[test]
fn a_command_node_is_charged_its_own_process() {
    let w = Work::new();
    w.write(
        "p.yaml",
        r#"
name: p
nodes:
  busy:
    stage: command
    params:
      cmd: "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; head -c 2000000 /dev/zero > out.bin"
      shell: true
      outputs: {o: out.bin}
"#,
    );
    let (code, states) = w.run("p.yaml", &[]);
    assert_eq!(code, 0, "{states:?}");
    let report: serde_json::Value = serde_json::from_str(&w.read("report.json")).unwrap();
    let u = &report["nodes"][0]["usage"];
    assert!(u["cpu_seconds"].as_f64().unwrap() > 0.05, "{u}");
    assert!(u["written_bytes"].as_u64().unwrap() >= 2_000_000, "{u}");
    // The shell's own peak, not flow's (which is tens of MiB at least).
    assert!(u["peak_rss_kb"].as_u64().unwrap() < 20_000, "{u}");
}

/// The stages' own INFO lines (here the cohort's "rendered study", logged from its pool's
/// workers) go to the node's log, not stderr; `-v` shows them on stderr as well.
#[test]
fn stage_log_lines_go_to_the_node_log_unless_verbose() {
    let w = Work::new();
    w.write(
        "p.yaml",
        "name: p\nnodes:\n  cohort:\n    stage: rsna.synthetic_cohort\n    params: {profile: tiny, seed: 3}\n",
    );
    // Not `w.flow`: that one is --quiet.
    let flow = |args: &[&str]| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("flow"))
            .current_dir(w.path())
            .args(args)
            .env_remove("FLOW_LOG")
            .output()
            .unwrap()
    };
    let out = flow(&["run", "p.yaml"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("rendered study"), "{stderr}");
    assert!(
        stderr.contains("finished") && stderr.contains("cohort"),
        "{stderr}"
    );
    let log = w.newest_node_log("cohort");
    assert!(log.contains("rendered study"), "{log}");
    assert!(!log.contains('\x1b'), "no colour codes in the log");

    let out = flow(&["-v", "run", "p.yaml", "--rerun", "cohort"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rendered study"));
}
