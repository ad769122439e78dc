//! The store never takes what is not the run's: links in outputs, damaged and missing blobs.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{with_state, Work};

/// A command whose directory output holds a link to the user's data folder.
fn linking_pipeline(w: &Work) {
    let raw = w.path().join("raw");
    std::fs::create_dir_all(raw.join("series")).unwrap();
    std::fs::write(raw.join("series/1.dcm"), "slice one").unwrap();
    std::fs::write(w.path().join("notes.txt"), "keep me writable").unwrap();
    w.write(
        "link.yaml",
        &format!(
            r#"
name: link
nodes:
  gather:
    stage: command
    params:
      cmd: ["sh", "-c", "mkdir -p ${{outputs.t}} && ln -s {raw} ${{outputs.t}}/raw && echo own > ${{outputs.t}}/own.txt && ln -s {notes} ${{outputs.n}}"]
      outputs: {{t: d/, n: notes.txt}}
  count:
    stage: command
    inputs: {{t: gather.t}}
    params:
      cmd: ["sh", "-c", "cat ${{inputs.t}}/raw/series/1.dcm ${{inputs.t}}/own.txt > ${{outputs.o}}"]
      outputs: {{o: o.txt}}
"#,
            raw = raw.display(),
            notes = w.path().join("notes.txt").display()
        ),
    );
}

#[test]
fn a_link_in_an_output_never_moves_or_write_protects_the_users_files() {
    let w = Work::new();
    linking_pipeline(&w);
    let (code, _) = w.run("link.yaml", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        w.read("raw/series/1.dcm"),
        "slice one",
        "the user's file is still there"
    );
    let mode = std::fs::metadata(w.path().join("notes.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o200, 0, "the user's file was write-protected");
    assert_eq!(w.read("results/link/count/o.txt"), "slice oneown\n");
}

/// `first` writes a directory; `last` reads it.
fn dir_pipeline(w: &Work) {
    w.write(
        "dir.yaml",
        r#"
name: dir
nodes:
  first:
    stage: command
    params:
      cmd: ["sh", "-c", "mkdir -p ${outputs.d} && echo right > ${outputs.d}/a.txt && echo b > ${outputs.d}/b.txt"]
      outputs: {d: d/}
  last:
    stage: command
    inputs: {d: first.d}
    params:
      cmd: ["sh", "-c", "cat ${inputs.d}/a.txt > ${outputs.o}"]
      outputs: {o: o.txt}
"#,
    );
}

fn blob(w: &Work, bytes: &[u8]) -> std::path::PathBuf {
    let digest = blake3::hash(bytes).to_hex().to_string();
    w.path().join(".flow/cas").join(&digest[..2]).join(&digest)
}

#[test]
fn a_damaged_blob_is_replaced_when_its_producer_reruns() {
    let w = Work::new();
    dir_pipeline(&w);
    assert_eq!(w.run("dir.yaml", &[]).0, 0);
    let b = blob(&w, b"right\n");
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&b, "junk!\n").unwrap();
    let (code, states) = w.run("dir.yaml", &["--rerun", "first"]);
    assert_eq!(code, 0);
    assert_eq!(with_state(&states, "ran"), ["first", "last"], "{states:?}");
    assert_eq!(
        std::fs::read(&b).unwrap(),
        b"right\n",
        "the blob was healed"
    );
    assert_eq!(
        w.read("results/dir/last/o.txt"),
        "right\n",
        "downstream read the good bytes"
    );
}

#[test]
fn a_missing_inner_blob_reruns_the_producer_instead_of_failing_consumers() {
    let w = Work::new();
    dir_pipeline(&w);
    assert_eq!(w.run("dir.yaml", &[]).0, 0);
    std::fs::remove_file(blob(&w, b"right\n")).unwrap();
    let (code, states) = w.run("dir.yaml", &["--rerun", "last"]);
    assert_eq!(code, 0, "{states:?}");
    assert_eq!(with_state(&states, "ran"), ["first", "last"], "{states:?}");
    assert_eq!(w.read("results/dir/last/o.txt"), "right\n");
}

/// Binary output, one huge line without a newline and more output than a log keeps: the
/// command still succeeds and the node's log stays bounded.
#[test]
fn command_output_is_read_safely_and_its_log_is_bounded() {
    let w = Work::new();
    w.write(
        "loud.yaml",
        r#"
name: loud
nodes:
  loud:
    stage: command
    params:
      cmd: ["sh", "-c", "printf 'bin \\377\\376 ary\\n'; head -c 100000 /dev/zero | tr '\\0' x; echo; yes 0123456789012345678901234567890123456789 | head -c 40000000; echo done > ${outputs.o}"]
      outputs: {o: o.txt}
"#,
    );
    let (code, states) = w.run("loud.yaml", &[]);
    assert_eq!(code, 0, "{states:?}");
    assert_eq!(w.read("results/loud/loud/o.txt"), "done\n");
    let runs = w.path().join(".flow/runs");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read(run.join("logs/loud.log")).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("bin \u{fffd}\u{fffd} ary"),
        "binary bytes are decoded lossily"
    );
    assert!(
        text.contains("more bytes of this line not logged"),
        "the long line is cut"
    );
    assert!(text.contains("the rest is not logged"), "the cap is noted");
    assert!(
        (log.len() as u64) < flow_engine::execute::MAX_NODE_LOG_BYTES + 64 * 1024,
        "log of {} bytes",
        log.len()
    );
}

#[test]
fn gc_prunes_dangling_results_and_old_run_folders() {
    let w = Work::new();
    dir_pipeline(&w);
    for _ in 0..23 {
        assert_eq!(w.run("dir.yaml", &["--rerun", "last"]).0, 0);
    }
    let runs = || {
        std::fs::read_dir(w.path().join(".flow/runs"))
            .unwrap()
            .count()
    };
    assert!(runs() > flow_engine::state::KEEP_RUNS, "{}", runs());
    std::fs::remove_file(blob(&w, b"b\n")).unwrap();
    let out = w.flow(&["cache", "gc"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("1 cached result(s) with a missing blob"),
        "{text}"
    );
    assert_eq!(runs(), flow_engine::state::KEEP_RUNS);
    let (code, states) = w.run("dir.yaml", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        with_state(&states, "ran"),
        ["first"],
        "only the dropped result re-runs: {states:?}"
    );
}
