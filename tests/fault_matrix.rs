//! Fault injection: a 200-node command pipeline and the tiny rsna7 pipeline (models trained,
//! checkpointed and resumed in-process) are stopped by `kill -9` or SIGTERM at 20 seeded
//! moments each; each time a rerun completes the run, and its outputs are byte-identical to an
//! uninterrupted run's, with no process of the stopped run left behind.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use common::Work;

/// 20 chains of 10 nodes: each node sleeps a little, then writes a checksum of its input and
/// its own index, so a node that ran on a stale or partial input shows in the final bytes.
fn pipeline(w: &Work) {
    w.write(
        "matrix.yaml",
        r#"
name: matrix
nodes:
  n_${c}_0:
    foreach: {c: "0..20"}
    stage: command
    params:
      cmd: ["sh", "-c", "sleep 0.02; echo start-${args.c} > ${outputs.o}"]
      args: {c: "${c}"}
      outputs: {o: o.txt}
  n_${c}_${k}:
    foreach: {c: "0..20", k: "1..10"}
    stage: command
    inputs: {x: "n_${c}_${k-1}.o"}
    params:
      cmd: ["sh", "-c", "sleep 0.02; cksum < ${inputs.x} > ${outputs.o}; echo ${args.c}.${args.k} >> ${outputs.o}"]
      args: {c: "${c}", k: "${k}"}
      outputs: {o: o.txt}
"#,
    );
}

fn spawn(w: &Work) -> std::process::Child {
    Std::new(assert_cmd::cargo::cargo_bin("flow"))
        .current_dir(w.path())
        .args(["--quiet", "run", "matrix.yaml", "--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every file under `results/`, with its bytes.
fn results(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.join("results")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Processes whose command line mentions `needle` (the work dir of one case).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && common::is_running(pid) {
            v.push(cmd);
        }
    }
    v
}

#[test]
fn kill_and_sigterm_at_twenty_moments_then_rerun_matches_an_uninterrupted_run() {
    let reference = Work::new();
    pipeline(&reference);
    let t = Instant::now();
    assert_eq!(reference.run("matrix.yaml", &["--jobs", "2"]).0, 0);
    let full = t.elapsed();
    let want = results(reference.path());
    assert_eq!(
        want.len(),
        20,
        "the 20 chain ends are published; each depends on its whole chain"
    );

    let mut seed = 0x9E3779B97F4A7C15u64;
    for case in 0..20 {
        // A moment inside the run (the state dir may be empty, half written or nearly done).
        let at = full.mul_f64((next(&mut seed) % 1000) as f64 / 1000.0);
        let signal = if case % 2 == 0 { "-KILL" } else { "-TERM" };
        let w = Work::new();
        pipeline(&w);
        let mut child = spawn(&w);
        std::thread::sleep(at);
        let _ = Std::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        wait_stopped(&mut child, &format!("case {case} ({signal})"));
        // The stopped run's commands are gone (the watcher or flow stopped their groups).
        let needle = w.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<String> = processes_mentioning(&needle)
                .into_iter()
                .filter(|c| c.contains("sleep") || c.contains("cksum"))
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "case {case} ({signal} after {at:?}): left running: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (code, states) = w.run("matrix.yaml", &["--jobs", "2"]);
        assert_eq!(code, 0, "case {case} ({signal} after {at:?}): {states:?}");
        assert_eq!(
            results(w.path()),
            want,
            "case {case} ({signal} after {at:?}): outputs differ from the uninterrupted run"
        );
    }
}

/// A xorshift step: the seeded moments of a matrix.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Waits for `child` to end after a signal; fails the case if it ignores the signal.
fn wait_stopped(child: &mut std::process::Child, case: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{case}: flow ignored the signal");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tiny_rsna7_killed_at_twenty_moments_then_resumed_matches_an_uninterrupted_run() {
    let rsna7 =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/rsna7.yaml"))
            .unwrap();
    // One cohort, read in place by every case (`--set data=`).
    let cohort = Work::new();
    let out = cohort
        .flow(&[
            "synth",
            "--out",
            "root",
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
    let data = format!("data={}", cohort.path().join("root").display());
    let args: Vec<&str> = vec![
        "--set",
        "profile=tiny",
        "--set",
        "folds=3",
        "--set",
        &data,
        "--jobs",
        "2",
    ];
    let case_dir = || {
        let w = Work::new();
        w.write("pipelines/rsna7.yaml", &rsna7);
        w
    };

    let reference = case_dir();
    let t = Instant::now();
    let (code, states) = reference.run("pipelines/rsna7.yaml", &args);
    assert_eq!(code, 0, "{states:?}");
    let full = t.elapsed();
    let want = results(reference.path());
    for f in [
        "stage3/submission.csv",
        "stage3/oof.csv",
        "report/metrics.json",
    ] {
        assert!(
            want.keys().any(|k| k.ends_with(f)),
            "{f} is published: {:?}",
            want.keys().collect::<Vec<_>>()
        );
    }

    let mut seed = 0x2545F4914F6CDD1Du64;
    for case in 0..20 {
        let at = full.mul_f64((next(&mut seed) % 1000) as f64 / 1000.0);
        let signal = if case % 2 == 0 { "-KILL" } else { "-TERM" };
        let name = format!("case {case} ({signal} after {at:?})");
        let w = case_dir();
        let mut run = vec!["--quiet", "run", "pipelines/rsna7.yaml"];
        run.extend(&args);
        let mut child = Std::new(assert_cmd::cargo::cargo_bin("flow"))
            .current_dir(w.path())
            .args(&run)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let _ = Std::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        wait_stopped(&mut child, &name);
        let (code, states) = w.run("pipelines/rsna7.yaml", &args);
        assert_eq!(code, 0, "{name}: {states:?}");
        assert_eq!(
            results(w.path()),
            want,
            "{name}: outputs differ from the uninterrupted run"
        );
    }
}
