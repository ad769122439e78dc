use super::*;
use crate::executor::status::Finished;

fn finished(state: &str, exit: i32, signal: i32, reason: &str) -> Seen {
    Seen::Finished(Finished {
        state: JobState::parse(state),
        exit_code: Some(exit),
        signal: Some(signal),
        reason: reason.into(),
    })
}

fn ok() -> NodeOutcome {
    NodeOutcome {
        ok: true,
        error: None,
        transient: false,
        cancelled: false,
    }
}

fn failed(msg: &str, transient: bool) -> NodeOutcome {
    NodeOutcome {
        ok: false,
        error: Some(msg.into()),
        transient,
        cancelled: false,
    }
}

fn res(mem: Option<u64>, time: Option<&str>) -> Resources {
    Resources {
        cpu: 2,
        gpu: 0,
        memory_mb: mem,
        time: time.map(String::from),
    }
}

fn err_of(r: Result<(), StageError>) -> (String, bool) {
    let e = r.unwrap_err();
    (e.chain(), e.is_transient())
}

#[test]
fn completed_with_a_result_is_success_and_nothing_else_is() {
    let r = res(None, None);
    let done = finished("COMPLETED", 0, 0, "");
    assert!(judge("1", &done, Some(&ok()), false, false, &r, None).is_ok());
    let (m, _) = err_of(judge("1", &done, None, false, false, &r, None));
    assert!(m.contains("left no result"), "{m}");
    let (m, t) = err_of(judge(
        "1",
        &Seen::Unknown("gone".into()),
        Some(&ok()),
        false,
        false,
        &r,
        None,
    ));
    assert!(m.contains("unknown") && m.contains("not done") && !t, "{m}");
}

#[test]
fn slurm_states_become_clear_node_errors() {
    let r = res(Some(512), Some("10"));
    let cases = [
        (
            "OUT_OF_MEMORY",
            false,
            "ran out of memory (OUT_OF_MEMORY)",
            false,
        ),
        (
            "FAILED",
            true,
            "exceeded its memory limit of 512 MiB",
            false,
        ),
        ("TIMEOUT", false, "time limit of 10 (TIMEOUT)", false),
        (
            "CANCELLED",
            false,
            "cancelled outside flow (CANCELLED",
            false,
        ),
        ("NODE_FAIL", false, "NODE_FAIL", true),
        ("PREEMPTED", false, "PREEMPTED", true),
        ("BOOT_FAIL", false, "BOOT_FAIL", true),
        (
            "FAILED",
            false,
            "FAILED, reason JobLaunchFailure, killed by signal 9",
            false,
        ),
        ("DEADLINE", false, "DEADLINE", false),
    ];
    // Slurm signals every process of a job it ends: the command's own error says only
    // "killed by a signal", which must not hide the state.
    let symptom = failed("`sh` was killed by a signal", false);
    for (state, mem_killed, want, transient) in cases {
        let seen = finished(state, 0, 9, "JobLaunchFailure");
        for outcome in [None, Some(&symptom)] {
            if state == "FAILED" && !mem_killed && outcome.is_some() {
                continue; // a plain FAILED job: the stage's error is the news
            }
            let (m, t) = err_of(judge("12", &seen, outcome, false, mem_killed, &r, None));
            assert!(
                m.contains(want) && m.contains("Slurm job 12"),
                "{state}: {m}"
            );
            assert_eq!(t, transient, "{state}: {m}");
        }
    }
}

#[test]
fn the_stage_error_wins_over_the_state_and_cancel_is_cancel() {
    let r = res(None, None);
    let seen = finished("FAILED", 1, 0, "NonZeroExitCode");
    let (m, t) = err_of(judge(
        "3",
        &seen,
        Some(&failed("`sh` exited with code 4", false)),
        false,
        false,
        &r,
        None,
    ));
    assert_eq!(m, "Slurm job 3: `sh` exited with code 4");
    assert!(!t);
    let (_, t) = err_of(judge(
        "3",
        &seen,
        Some(&failed("busy", true)),
        false,
        false,
        &r,
        None,
    ));
    assert!(t, "a transient stage error stays transient");
    let cancelled = finished("CANCELLED", 0, 15, "");
    assert!(matches!(
        judge("3", &cancelled, None, true, false, &r, None),
        Err(StageError::Cancelled)
    ));
    assert!(matches!(
        judge("3", &Seen::Unknown("x".into()), None, true, false, &r, None),
        Err(StageError::Cancelled)
    ));
}

#[test]
fn sbatch_arguments_follow_resources_and_settings() {
    let mut s = SlurmSettings::default();
    let r = Resources {
        cpu: 4,
        gpu: 2,
        memory_mb: Some(1000),
        time: None,
    };
    let p = |x: &str| PathBuf::from(x);
    let a = sbatch_args(&s, &r, "train", &p("/s/job.out"), &p("/s"), &p("/s/job.sh"));
    assert_eq!(
        a,
        [
            "--parsable",
            "--job-name=flow-train",
            "--output=/s/job.out",
            "--chdir=/s",
            "--ntasks=1",
            "--cpus-per-task=4",
            "--no-requeue",
            "--mem=1000M",
            "--gres=gpu:2",
            "/s/job.sh"
        ]
    );
    s.memory = MemoryFlag::MemPerCpu;
    s.gpus = GpuFlag::Gpus;
    s.time = Some("1:00:00".into());
    s.partition = Some("gpu".into());
    s.account = Some("lab".into());
    s.qos = Some("high".into());
    s.sbatch = vec!["--constraint=a100".into()];
    let a = sbatch_args(&s, &r, "train", &p("/s/job.out"), &p("/s"), &p("/s/job.sh"));
    let tail: Vec<&str> = a[7..].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "--mem-per-cpu=250M",
            "--gpus=2",
            "--time=1:00:00",
            "--partition=gpu",
            "--account=lab",
            "--qos=high",
            "--constraint=a100",
            "/s/job.sh"
        ]
    );
    let with_time = Resources {
        time: Some("5".into()),
        ..r
    };
    let a = sbatch_args(&s, &with_time, "n", &p("/o"), &p("/"), &p("/j"));
    assert!(
        a.contains(&"--time=5".to_string()),
        "the node's time wins: {a:?}"
    );
}

#[test]
fn the_batch_script_quotes_paths() {
    let s = batch_script(
        &PathBuf::from("/opt/it's/flow"),
        &PathBuf::from("/st/node.json"),
        "n",
        2,
    );
    assert!(s.starts_with("#!/bin/sh\n"));
    assert!(
        s.contains(r"exec '/opt/it'\''s/flow' --quiet exec-node '/st/node.json'"),
        "{s}"
    );
}

#[test]
fn tail_follows_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let mut t = Tail::new(path.clone());
    let mut got = Vec::new();
    t.pump(|l| got.push(l.to_string())); // no file yet
    std::fs::write(&path, "a\nb").unwrap();
    t.pump(|l| got.push(l.to_string()));
    assert_eq!(got, ["a"]);
    std::fs::write(&path, "a\nbc\nd").unwrap();
    t.pump(|l| got.push(l.to_string()));
    t.finish(|l| got.push(l.to_string()));
    assert_eq!(got, ["a", "bc", "d"]);
}
