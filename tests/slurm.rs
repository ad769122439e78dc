//! The Slurm executor against a real Slurm (`scripts/slurm-local.sh up`): outputs equal to a
//! local run, one job per node, a job cancelled from outside, memory over the limit,
//! Ctrl-C of the coordinator, and a restart after the coordinator was killed.
//!
//! Without `sbatch` on PATH these tests print "skipped" and pass, unless FLOW_REQUIRE_SLURM=1
//! (CI), when they fail. They run one at a time (the local cluster has few CPUs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{with_state, Work};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether Slurm is here; panics when it is required (FLOW_REQUIRE_SLURM=1) but missing.
fn slurm_here() -> bool {
    let found = Command::new("sbatch")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("FLOW_REQUIRE_SLURM").as_deref() == Ok("1") {
            panic!(
                "FLOW_REQUIRE_SLURM=1 but sbatch is not available: run scripts/slurm-local.sh up"
            );
        }
        eprintln!("skipped: no Slurm (run scripts/slurm-local.sh up)");
    }
    found
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn report(work: &Work) -> Value {
    serde_json::from_str(&work.read("report.json")).expect("report JSON")
}

fn node<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id} in {report}"))
}

/// `scontrol show job -o ID`, or "" once slurmctld forgot it.
fn scontrol(id: &str) -> String {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Jobs among `ids` that squeue lists as not finished.
fn active(ids: &[String]) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-j", &ids.join(","), "-o", "%i %T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// The job ids the running coordinator has recorded in the state dir.
fn ledger(work: &Work) -> Vec<(String, String)> {
    std::fs::read_to_string(work.path().join(".flow/slurm-jobs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `flow run` in the background, killed if the test fails.
struct Coordinator(Child);

impl Coordinator {
    fn start(work: &Work, file: &str, extra: &[&str]) -> Coordinator {
        let exe = assert_cmd::cargo::cargo_bin("flow");
        let child = Command::new(exe)
            .current_dir(work.path())
            .args([
                "--quiet",
                "run",
                file,
                "--report",
                "report.json",
                "--executor",
                "slurm",
            ])
            .args(extra)
            .env_remove("FLOW_STATE_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Coordinator(child)
    }
    /// `kill -s SIG PID` (e.g. "INT", "KILL"), the shell's builtin (no procps needed).
    fn signal(&self, sig: &str) {
        let ok = Command::new("sh")
            .args(["-c", &format!("kill -s {sig} {}", self.0.id())])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    fn wait(&mut self, limit: Duration) -> (i32, String) {
        let t = Instant::now();
        let status = wait_for("flow to exit", limit, || self.0.try_wait().unwrap());
        let mut err = String::new();
        use std::io::Read;
        let _ = self.0.stderr.take().unwrap().read_to_string(&mut err);
        eprintln!("flow exited after {:.1}s: {err}", t.elapsed().as_secs_f64());
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn diamond_on_slurm_equals_the_local_run_and_each_node_is_a_job() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let file = repo("pipelines/examples/diamond.yaml");
    let file = file.to_str().unwrap();
    let local = Work::new();
    let (code, _) = local.run(file, &[]);
    assert_eq!(code, 0);
    let on_slurm = Work::new();
    let t = Instant::now();
    let (code, states) = on_slurm.run(file, &["--executor", "slurm"]);
    eprintln!("diamond on slurm: {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(code, 0, "{states:?}");
    assert_eq!(
        with_state(&states, "ran"),
        ["join", "left", "right", "source"]
    );
    let joined = "results/diamond/join/joined.txt";
    assert_eq!(
        std::fs::read(local.path().join(joined)).unwrap(),
        std::fs::read(on_slurm.path().join(joined)).unwrap()
    );
    let (lr, sr) = (report(&local), report(&on_slurm));
    let mut ids = Vec::new();
    for n in ["source", "left", "right", "join"] {
        assert_eq!(node(&lr, n)["key"], node(&sr, n)["key"], "{n}: same key");
        assert!(
            node(&lr, n).get("job_id").is_none(),
            "a local node has no job"
        );
        let id = node(&sr, n)["job_id"].as_str().expect("job id").to_string();
        let job = scontrol(&id);
        // left and right are ready together: one array of two tasks, named after the first.
        let named = job.contains(&format!("JobName=flow-{n} "))
            || (id.contains('_')
                && (job.contains("JobName=flow-left+1 ") || job.contains("JobName=flow-right+1 ")));
        assert!(
            named && job.contains("JobState=COMPLETED"),
            "{n} ({id}): {job}"
        );
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 4, "one job per node: {ids:?}");
    assert!(
        ledger(&on_slurm).is_empty(),
        "finished jobs leave the ledger"
    );
    // The job's output is the node's log.
    let log = on_slurm.newest_node_log("left");
    assert!(
        log.contains("[flow] Slurm job") && log.contains("$ sh -c tr a-z A-Z"),
        "{log}"
    );
    // Cached now, whichever executor asks.
    let (code, states) = on_slurm.run(file, &["--executor", "slurm"]);
    assert_eq!((code, with_state(&states, "cached").len()), (0, 4));
}

/// A pipeline whose `slow` node sleeps until the file `fast` exists in the work dir (at most
/// `secs`), with a dependant `after` and an independent `other`.
fn slow_pipeline(work: &Work, secs: u32) -> String {
    let fast = work.path().join("fast");
    work.write(
        "slow.yaml",
        &format!(
            r#"
name: slow
nodes:
  first:
    stage: command
    params: {{cmd: ["sh", "-c", "echo 1 > o"], outputs: {{o: o}}}}
  slow:
    stage: command
    inputs: {{i: first.o}}
    params:
      cmd: ["sh", "-c", "for i in $(seq {secs}); do [ -f {fast} ] && break; sleep 1; done; cat ${{inputs.i}} > o"]
      outputs: {{o: o}}
  after:
    stage: command
    inputs: {{i: slow.o}}
    params: {{cmd: ["sh", "-c", "cat ${{inputs.i}} > o"], outputs: {{o: o}}}}
  other:
    stage: command
    params: {{cmd: ["sh", "-c", "echo other > o"], outputs: {{o: o}}}}
"#,
            fast = fast.display()
        ),
    );
    "slow.yaml".into()
}

fn job_of(work: &Work, node: &str) -> String {
    wait_for(
        &format!("a job for {node}"),
        Duration::from_secs(60),
        || {
            ledger(work)
                .into_iter()
                .find(|(_, n)| n == node)
                .map(|(id, _)| id)
        },
    )
}

#[test]
fn a_job_cancelled_from_outside_fails_its_node_and_only_it_reruns() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let w = Work::new();
    let file = slow_pipeline(&w, 120);
    let mut flow = Coordinator::start(&w, &file, &["--keep-going"]);
    let id = job_of(&w, "slow");
    let out = Command::new("scancel").arg(&id).output().unwrap();
    assert!(out.status.success());
    let (code, err) = flow.wait(Duration::from_secs(60));
    assert_eq!(code, 1, "{err}");
    let r = report(&w);
    let slow = node(&r, "slow");
    assert_eq!(slow["state"], "failed");
    let msg = slow["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("Slurm job {id}")) && msg.contains("CANCELLED"),
        "{msg}"
    );
    assert_eq!(node(&r, "after")["state"], "blocked");
    assert_eq!(node(&r, "other")["state"], "ran");

    w.write("fast", "");
    let (code, states) = w.run(&file, &["--executor", "slurm"]);
    assert_eq!(code, 0, "{states:?}");
    assert_eq!(with_state(&states, "ran"), ["after", "slow"]);
    assert_eq!(with_state(&states, "cached"), ["first", "other"]);
}

#[test]
fn ctrl_c_cancels_every_job_within_ten_seconds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let w = Work::new();
    w.write(
        "sleepers.yaml",
        r#"
name: sleepers
nodes:
  s${i}:
    stage: command
    foreach: {i: [1, 2, 3]}
    params: {cmd: ["sh", "-c", "sleep 300 && echo ${args.i} > o"], args: {i: "${i}"}, outputs: {o: o}}
"#,
    );
    let mut flow = Coordinator::start(&w, "sleepers.yaml", &[]);
    let ids = wait_for("three jobs", Duration::from_secs(60), || {
        let l = ledger(&w);
        (l.len() == 3).then(|| l.into_iter().map(|(id, _)| id).collect::<Vec<_>>())
    });
    wait_for("a running job", Duration::from_secs(30), || {
        (!active(&ids).is_empty()).then_some(())
    });
    let t = Instant::now();
    flow.signal("INT");
    wait_for("squeue to empty", Duration::from_secs(10), || {
        active(&ids).is_empty().then_some(())
    });
    eprintln!(
        "squeue empty {:.2}s after SIGINT",
        t.elapsed().as_secs_f64()
    );
    let (code, err) = flow.wait(Duration::from_secs(15));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let r = report(&w);
    assert_eq!(r["interrupted"], true);
    for id in &ids {
        // A task cancelled while still pending lives on only in its array's record.
        let array = id.split('_').next().unwrap();
        assert!(
            scontrol(id).contains("JobState=CANCELLED")
                || scontrol(array).contains("JobState=CANCELLED"),
            "{id}: {}",
            scontrol(id)
        );
    }
}

#[test]
fn a_restarted_coordinator_cancels_the_jobs_of_a_killed_one() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let w = Work::new();
    // The slow node waits 20 s: the old job cannot end by itself before the restarted
    // coordinator cancels it (writing the `fast` marker here raced with the old job on a
    // loaded machine: it could see the marker and complete first).
    let file = slow_pipeline(&w, 20);
    let mut flow = Coordinator::start(&w, &file, &[]);
    let old = job_of(&w, "slow");
    flow.signal("KILL");
    flow.wait(Duration::from_secs(10));
    let still = active(std::slice::from_ref(&old));
    assert_eq!(still.len(), 1, "the job outlives kill -9");
    let (code, states) = w.run(&file, &["--executor", "slurm"]);
    assert_eq!(code, 0, "{states:?}");
    assert!(
        scontrol(&old).contains("JobState=CANCELLED"),
        "{}",
        scontrol(&old)
    );
    let new = node(&report(&w), "slow")["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old, "the node ran again in a new job");
}

#[test]
fn a_job_over_its_memory_is_reported_as_out_of_memory() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let w = Work::new();
    w.write(
        "mem.yaml",
        r#"
name: mem
nodes:
  hog:
    stage: command
    resources: {memory: 64M}
    params:
      cmd: ["python3", "-c", "import time; a = bytearray(400 << 20); a[::4096] = b'x' * len(a[::4096]); time.sleep(10); open('o', 'w').write('survived')"]
      outputs: {o: o}
"#,
    );
    let (code, states) = w.run("mem.yaml", &["--executor", "slurm"]);
    assert_eq!(code, 1, "{states:?}");
    let r = report(&w);
    let msg = node(&r, "hog")["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("OUT_OF_MEMORY") && msg.contains("limit of 64 MiB"),
        "{msg}"
    );
}

/// A digest of a published file or folder: every file's relative path and bytes.
fn published_digest(work: &Work, rel: &str) -> String {
    fn walk(root: &std::path::Path, p: &std::path::Path, out: &mut Vec<u8>) {
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            for e in entries {
                walk(root, &e, out);
            }
        } else {
            let bytes = std::fs::read(p).unwrap();
            out.extend(p.strip_prefix(root).unwrap().to_string_lossy().as_bytes());
            out.extend(format!("\0{}\0", bytes.len()).as_bytes());
            out.extend(bytes);
        }
    }
    let root = work.path().join(rel);
    let mut all = Vec::new();
    walk(&root, &root, &mut all);
    flow_cache::hash_bytes(&all).to_hex()
}

/// In-process Rust stages (the synthetic cohort, DICOM -> NIfTI) run inside the job through
/// `flow exec-node` and give the outputs of a local run.
#[test]
fn rust_stages_run_inside_jobs_with_the_outputs_of_a_local_run() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let yaml = r#"
name: rust-stages
nodes:
  cohort:
    stage: rsna.synthetic_cohort
    params: {profile: tiny, seed: 7}
    resources: {cpu: 2}
  convert:
    stage: dicom.to_nifti
    params: {images: train_images}
    inputs: {root: cohort.root}
    resources: {cpu: 2}
"#;
    let (local, on_slurm) = (Work::new(), Work::new());
    local.write("r.yaml", yaml);
    on_slurm.write("r.yaml", yaml);
    assert_eq!(local.run("r.yaml", &[]).0, 0);
    let (code, states) = on_slurm.run("r.yaml", &["--executor", "slurm"]);
    assert_eq!(code, 0, "{states:?}");
    let r = report(&on_slurm);
    for n in ["cohort", "convert"] {
        assert!(node(&r, n)["job_id"].is_string(), "{n} ran as a job");
    }
    let volumes = "results/rust-stages/convert/volumes";
    assert_eq!(
        published_digest(&local, volumes),
        published_digest(&on_slurm, volumes)
    );
    // Per-study items cross the job boundary: the first job made and handed back every
    // study, a forced rerun's job is offered them all and converts nothing.
    let first = on_slurm.newest_node_log("convert");
    let made: usize = count_in(&first, "item(s) made by the job stored");
    assert!(made > 0, "the first job made its items: {first}");
    let (code, states) = on_slurm.run("r.yaml", &["--executor", "slurm", "--rerun", "convert"]);
    assert_eq!(code, 0, "{states:?}");
    let again = on_slurm.newest_node_log("convert");
    assert_eq!(
        count_in(&again, "cached item(s) of `dicom.to_nifti` offered"),
        made,
        "{again}"
    );
    assert_eq!(
        count_in(&again, "item(s) made by the job stored"),
        0,
        "{again}"
    );
    assert_eq!(
        published_digest(&local, volumes),
        published_digest(&on_slurm, volumes)
    );
}

/// The number in the `[flow] N ...` log line that ends with `what`.
fn count_in(log: &str, what: &str) -> usize {
    let line = log
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no `{what}` line in {log}"));
    line.split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"))
}

/// The whole rsna7 pipeline (tiny profile, 31 nodes, Rust stages that train models) as
/// Slurm jobs: every published output is the local run's, byte for byte (same digests).
#[test]
fn tiny_rsna7_on_slurm_publishes_the_outputs_of_a_local_run() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let yaml = std::fs::read_to_string(repo("pipelines/rsna7.yaml")).unwrap();
    let args = [
        "--set",
        "profile=tiny",
        "--set",
        "folds=3",
        "--jobs",
        "2",
        "--set",
        "data=./.flow-tiny-root",
    ];
    let mut published = Vec::new();
    for executor in ["local", "slurm"] {
        let w = Work::new();
        w.write("pipelines/rsna7.yaml", &yaml);
        let synth = ["synth", "--out", ".flow-tiny-root", "--profile", "tiny"];
        assert!(w.flow(&synth).output().unwrap().status.success());
        let mut a = args.to_vec();
        a.extend(["--executor", executor]);
        let t = Instant::now();
        let (code, states) = w.run("pipelines/rsna7.yaml", &a);
        eprintln!("tiny rsna7, {executor}: {:.1}s", t.elapsed().as_secs_f64());
        assert_eq!(code, 0, "{executor}: {states:?}");
        let r = report(&w);
        let nodes = r["nodes"].as_array().unwrap();
        assert!(nodes.len() > 20);
        for n in nodes {
            // The synthetic cohort is not needed with `data=` given: skipped, no job.
            let ran = n["state"] != "skipped";
            assert_eq!(n["id"] == "cohort", !ran, "{n}");
            assert_eq!(n["job_id"].is_string(), executor == "slurm" && ran, "{n}");
        }
        let mut links = Vec::new();
        let root = w.path().join("results/rsna7");
        for node in std::fs::read_dir(&root).unwrap().flatten() {
            for out in std::fs::read_dir(node.path()).unwrap().flatten() {
                let rel = out.path().strip_prefix(w.path()).unwrap().to_owned();
                let rel = rel.to_str().unwrap().to_string();
                links.push((rel.clone(), published_digest(&w, &rel)));
            }
        }
        links.sort();
        published.push(links);
    }
    assert!(published[0].len() > 10, "{:?}", published[0]);
    assert_eq!(published[0], published[1]);
}

/// A job past its `resources.time` ends as TIMEOUT (Slurm's smallest limit is a minute), and
/// that, not the command's "killed by a signal", is the node's error.
#[test]
fn a_job_past_its_time_limit_is_reported_as_timeout() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let w = Work::new();
    w.write(
        "time.yaml",
        r#"
name: time
nodes:
  slow:
    stage: command
    resources: {time: 1}
    params: {cmd: ["sh", "-c", "sleep 600; echo > o"], outputs: {o: o}}
"#,
    );
    let (code, states) = w.run("time.yaml", &["--executor", "slurm"]);
    assert_eq!(code, 1, "{states:?}");
    let msg = node(&report(&w), "slow")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("TIMEOUT") && msg.contains("time limit of 1"),
        "{msg}"
    );
}

/// A 200-node `foreach` fan-out goes to Slurm as job arrays (a few sbatch calls, one task per
/// node), and every node's result is its own task's.
#[test]
fn a_200_node_fan_out_goes_as_job_arrays() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !slurm_here() {
        return;
    }
    let w = Work::new();
    w.write(
        "fan.yaml",
        r#"
name: fan
executor:
  slurm: {max_queued: 250}
nodes:
  n${i}:
    foreach: {i: "0..200"}
    stage: command
    params: {cmd: ["sh", "-c", "echo ${args.i} > o"], args: {i: "${i}"}, outputs: {o: o}}
"#,
    );
    let t = Instant::now();
    let (code, states) = w.run("fan.yaml", &["--executor", "slurm", "--jobs", "8"]);
    eprintln!("200 nodes as arrays: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(code, 0, "{states:?}");
    let r = report(&w);
    let ids: Vec<String> = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 200);
    let arrays: std::collections::BTreeSet<&str> = ids
        .iter()
        .filter_map(|id| id.split_once('_').map(|(a, _)| a))
        .collect();
    let tasks = ids.iter().filter(|id| id.contains('_')).count();
    assert!(
        tasks >= 190,
        "{tasks} of 200 nodes ran as array tasks: {ids:?}"
    );
    assert!(arrays.len() <= 10, "{} arrays: {arrays:?}", arrays.len());
    for i in [0, 57, 199] {
        assert_eq!(w.read(&format!("results/fan/n{i}/o")), format!("{i}\n"));
    }
}
