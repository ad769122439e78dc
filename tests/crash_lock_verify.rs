//! Robustness: kill -9 mid-run then resume, the state-dir lock, corrupted blobs.

mod common;

use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use common::{with_state, Work};

fn wait_for(path: &std::path::Path, secs: u64) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `first` writes a file, `slow` blocks (sleeps) the first time it runs, `last` reads it.
fn slow_pipeline(w: &Work) {
    let d = w.path().display();
    let text = format!(
        r#"
name: slow
nodes:
  first:
    stage: command
    params: {{cmd: ["sh", "-c", "echo first >> {d}/trace; echo 1 > ${{outputs.o}}"], outputs: {{o: o.txt}}}}
  slow:
    stage: command
    inputs: {{x: first.o}}
    params:
      cmd: ["sh", "-c", "echo slow >> {d}/trace; touch {d}/slow.started; if [ ! -f {d}/second ]; then sleep 30; fi; cat ${{inputs.x}} > ${{outputs.o}}; echo 2 >> ${{outputs.o}}"]
      outputs: {{o: o.txt}}
  last:
    stage: command
    inputs: {{x: slow.o}}
    params: {{cmd: ["sh", "-c", "echo last >> {d}/trace; cat ${{inputs.x}} > ${{outputs.o}}"], outputs: {{o: o.txt}}}}
"#
    );
    w.write("slow.yaml", &text);
}

fn spawn_run(w: &Work, file: &str) -> std::process::Child {
    Std::new(assert_cmd::cargo::cargo_bin("flow"))
        .current_dir(w.path())
        .args(["--quiet", "run", file])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_dash_nine_then_rerun_completes() {
    let w = Work::new();
    slow_pipeline(&w);
    let mut child = spawn_run(&w, "slow.yaml");
    wait_for(&w.path().join("slow.started"), 30);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::fs::write(w.path().join("second"), "").unwrap();
    let (code, states) = w.run("slow.yaml", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        with_state(&states, "cached"),
        ["first"],
        "finished work survives the kill"
    );
    assert_eq!(with_state(&states, "ran"), ["last", "slow"]);
    assert_eq!(w.read("results/slow/last/o.txt"), "1\n2\n");
    assert!(
        std::fs::read_dir(w.path().join(".flow/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "scratch cleaned"
    );
}

#[test]
fn second_run_on_a_locked_state_dir_fails_fast() {
    let w = Work::new();
    slow_pipeline(&w);
    let mut child = spawn_run(&w, "slow.yaml");
    wait_for(&w.path().join("slow.started"), 30);
    let out = w.flow(&["run", "slow.yaml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("locked by pid {}", child.id())),
        "{err}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // another state dir is independent
    let other = w.path().join("other-state");
    let out = w
        .flow(&["--state-dir", other.to_str().unwrap(), "plan", "slow.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn cache_verify_finds_a_corrupted_blob_and_the_node_reruns() {
    use std::os::unix::fs::PermissionsExt;
    let w = Work::new();
    std::fs::write(w.path().join("second"), "").unwrap();
    slow_pipeline(&w);
    assert_eq!(w.run("slow.yaml", &[]).0, 0);
    let out = w.flow(&["cache", "verify"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Corrupt the blob holding slow's output ("1\n2\n").
    let digest = blake3::hash(b"1\n2\n").to_hex().to_string();
    let blob = w.path().join(".flow/cas").join(&digest[..2]).join(&digest);
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&blob, b"garbage").unwrap();
    let out = w.flow(&["cache", "verify"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains(&format!("corrupt blob {digest}")), "{text}");
    assert!(text.contains("dropped cached result of `slow`"), "{text}");
    let (code, states) = w.run("slow.yaml", &[]);
    assert_eq!(code, 0);
    // `last` wrote the same bytes (same blob), so its result went too; `first` stays cached.
    assert_eq!(with_state(&states, "ran"), ["last", "slow"], "{states:?}");
    assert_eq!(with_state(&states, "cached"), ["first"]);
    assert_eq!(w.read("results/slow/last/o.txt"), "1\n2\n");
    // gc keeps what is referenced
    let out = w.flow(&["cache", "gc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        w.read("results/slow/last/o.txt"),
        "1\n2\n",
        "results/ links still work after gc"
    );
    assert_eq!(
        w.run("slow.yaml", &[])
            .1
            .iter()
            .filter(|(_, s)| s == "cached")
            .count(),
        3
    );
}

#[test]
fn status_graph_stages_work() {
    let w = Work::new();
    std::fs::write(w.path().join("second"), "").unwrap();
    slow_pipeline(&w);
    let out = w
        .flow(&["graph", "slow.yaml", "--format", "mermaid"])
        .output()
        .unwrap();
    let g = String::from_utf8_lossy(&out.stdout);
    assert!(g.contains("first -->|o→x| slow"), "{g}");
    let out = w.flow(&["graph", "slow.yaml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"slow\" -> \"last\""));
    let out = w.flow(&["status", "slow.yaml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending"));
    assert_eq!(w.run("slow.yaml", &[]).0, 0);
    let out = w.flow(&["status", "slow.yaml"]).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.lines().filter(|l| l.contains("done")).count(), 3, "{s}");
    let out = w.flow(&["stages", "command"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("cmd: any (required)"));
    assert_eq!(
        w.flow(&["stages", "nope"]).output().unwrap().status.code(),
        Some(2)
    );
}

/// A node whose command leaves a grandchild (`sleep`) running in the background and records
/// its pid; `flow` is then stopped by `signal`.
fn orphan_probe(signal: &str) {
    let w = Work::new();
    let d = w.path().display();
    w.write(
        "tree.yaml",
        &format!(
            r#"
name: tree
nodes:
  busy:
    stage: command
    params:
      cmd: ["sh", "-c", "sleep 60 & echo $! > {d}/grandchild.pid; sleep 60; echo done > ${{outputs.o}}"]
      outputs: {{o: o.txt}}
"#
        ),
    );
    let mut child = spawn_run(&w, "tree.yaml");
    let pidfile = w.path().join("grandchild.pid");
    wait_for(&pidfile, 30);
    std::thread::sleep(Duration::from_millis(200));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = Std::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "flow did not stop after {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    if signal == "-TERM" {
        assert_eq!(
            code.code(),
            Some(1),
            "a stopped run is a failed node: {code:?}"
        );
    }
    // The watcher (kill -9) or flow itself (SIGTERM) stops the node's whole process group.
    let t = Instant::now();
    while common::is_running(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the background sleep (pid {pid}) outlived flow after {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_dash_nine_leaves_no_orphan_processes() {
    orphan_probe("-KILL");
}

#[test]
fn sigterm_stops_the_run_and_its_process_trees() {
    orphan_probe("-TERM");
}

#[test]
fn a_relative_state_dir_works_for_command_nodes() {
    let w = Work::new();
    slow_pipeline(&w);
    std::fs::write(w.path().join("second"), "").unwrap();
    let out = w
        .flow(&["--state-dir", "st", "run", "slow.yaml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.path().join("st/cas").is_dir());
    assert_eq!(w.read("results/slow/last/o.txt"), "1\n2\n");
}

#[test]
fn status_during_a_run_reads_its_journal() {
    let w = Work::new();
    slow_pipeline(&w);
    let mut child = spawn_run(&w, "slow.yaml");
    wait_for(&w.path().join("slow.started"), 30);
    let out = w.flow(&["status", "slow.yaml"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("a run (pid {}) holds the state dir", child.id())),
        "{text}"
    );
    let state_of = |node: &str| {
        text.lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("no line for {node}: {text}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(state_of("first"), "done", "{text}");
    assert_eq!(state_of("slow"), "running", "{text}");
    assert_eq!(state_of("last"), "pending", "{text}");
}

/// A state dir on a small tmpfs fills up: the node that runs out of space fails cleanly (exit
/// 1, the error in its record), and once there is room again the rerun completes, with what
/// finished before served from the cache. Needs `mount` (root); skipped, saying so, without.
#[test]
fn a_full_disk_fails_the_node_cleanly_and_the_run_resumes_with_room() {
    let w = Work::new();
    let st = w.path().join("st");
    std::fs::create_dir_all(&st).unwrap();
    let mount = |opts: &str| {
        Std::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&st)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !mount("size=3m") {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Std::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(st.clone());
    w.write(
        "full.yaml",
        r#"
name: full
nodes:
  small:
    stage: command
    params: {cmd: ["sh", "-c", "echo small > ${outputs.o}"], outputs: {o: o.txt}}
  big:
    stage: command
    inputs: {x: small.o}
    params: {cmd: ["sh", "-c", "head -c 8000000 /dev/zero > ${outputs.o}"], outputs: {o: o.bin}}
"#,
    );
    let out = w
        .flow(&["--state-dir", "st", "run", "full.yaml", "--no-publish"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("big"), "the failing node is named: {err}");

    // Room again: remount larger (tmpfs keeps its content on remount).
    assert!(Std::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&st)
        .status()
        .unwrap()
        .success());
    let report = w.path().join("report.json");
    let out = w
        .flow(&[
            "--state-dir",
            "st",
            "run",
            "full.yaml",
            "--no-publish",
            "--report",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&w.read("report.json")).unwrap();
    let state = |id: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state("small"), "cached");
    assert_eq!(state("big"), "ran");
}
