//! `flow run`: order, parallelism, caching, partial re-runs, failures, resume.

mod common;

use common::{with_state, Work};

/// Each node appends its id to trace.log in the work dir, then writes its output.
fn diamond(work: &Work) -> String {
    let log = work.path().join("trace.log");
    let text = format!(
        r#"
name: diamond
params: {{greeting: hello, suffix: "!"}}
nodes:
  source:
    stage: command
    params:
      cmd: ["sh", "-c", "echo source >> {log} && echo ${{args.g}} > ${{outputs.text}}"]
      args: {{g: "${{params.greeting}}"}}
      outputs: {{text: source.txt}}
  left:
    stage: command
    inputs: {{text: source.text}}
    params:
      cmd: ["sh", "-c", "echo left >> {log} && tr a-z A-Z < ${{inputs.text}} > ${{outputs.upper}}"]
      outputs: {{upper: upper.txt}}
  right:
    stage: command
    inputs: {{text: source.text}}
    params:
      cmd: ["sh", "-c", "echo right >> {log} && cat ${{inputs.text}} > ${{outputs.out}} && echo '${{args.s}}' >> ${{outputs.out}}"]
      args: {{s: "${{params.suffix}}"}}
      outputs: {{out: right.txt}}
  join:
    stage: command
    inputs: {{a: left.upper, b: right.out}}
    params:
      cmd: ["sh", "-c", "echo join >> {log} && cat ${{inputs.a}} ${{inputs.b}} > ${{outputs.joined}}"]
      outputs: {{joined: joined.txt}}
"#,
        log = log.display()
    );
    work.write("diamond.yaml", &text);
    "diamond.yaml".into()
}

#[test]
fn diamond_runs_in_order_then_is_cached() {
    let w = Work::new();
    let p = diamond(&w);
    let (code, states) = w.run(&p, &["--jobs", "2"]);
    assert_eq!(code, 0);
    assert_eq!(
        with_state(&states, "ran"),
        ["join", "left", "right", "source"]
    );
    let trace = w.read("trace.log");
    let order: Vec<&str> = trace.lines().collect();
    assert_eq!(order.first(), Some(&"source"));
    assert_eq!(order.last(), Some(&"join"));
    assert_eq!(
        w.read("results/diamond/join/joined.txt"),
        "HELLO\nhello\n!\n"
    );

    let (code, states) = w.run(&p, &[]);
    assert_eq!(code, 0);
    assert_eq!(with_state(&states, "cached").len(), 4, "{states:?}");
    assert_eq!(
        w.read("trace.log").lines().count(),
        4,
        "nothing ran the second time"
    );
}

#[test]
fn changed_param_reruns_exactly_the_affected_nodes() {
    let w = Work::new();
    let p = diamond(&w);
    assert_eq!(w.run(&p, &[]).0, 0);
    let (code, states) = w.run(&p, &["--set", "suffix=?"]);
    assert_eq!(code, 0);
    assert_eq!(with_state(&states, "ran"), ["join", "right"]);
    assert_eq!(with_state(&states, "cached"), ["left", "source"]);
    // plan agrees with what happened: everything is cached now
    let out = w.flow(&["plan", &p, "--set", "suffix=?"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 node(s): 4 cached"));
    // explain names the param
    let out = w
        .flow(&["explain", &p, "right", "--set", "suffix=#"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("param `args.s` changed: \"?\" -> \"#\""),
        "{text}"
    );
}

#[test]
fn early_cutoff_keeps_dependents_cached() {
    let w = Work::new();
    let p = diamond(&w);
    let text = w
        .read(&p)
        .replace(
            "params: {greeting: hello, suffix: \"!\"}",
            "params: {greeting: hello, suffix: \"!\", v: 1}",
        )
        .replace(
            "      outputs: {text: source.txt}",
            "      outputs: {text: source.txt}\n      version: \"${params.v}\"",
        );
    w.write(&p, &text);
    assert_eq!(w.run(&p, &[]).0, 0);
    // source's key changes but it writes the same bytes: everything downstream stays cached
    let (code, states) = w.run(&p, &["--set", "v=2"]);
    assert_eq!(code, 0);
    assert_eq!(with_state(&states, "ran"), ["source"]);
    assert_eq!(with_state(&states, "cached"), ["join", "left", "right"]);
    // --rerun forces the node and everything downstream
    let (_, states) = w.run(&p, &["--rerun", "left"]);
    assert_eq!(with_state(&states, "ran"), ["join", "left"]);
}

#[test]
fn parallelism_is_honoured() {
    let w = Work::new();
    // a and b each wait (up to 3 s) for the other to have started: only succeeds when run at once.
    let wait = |me: &str, other: &str| {
        format!(
            "touch {d}/{me}.started; i=0; while [ ! -f {d}/{other}.started ] && [ $i -lt 60 ]; do sleep 0.05; i=$((i+1)); done; if [ -f {d}/{other}.started ]; then echo parallel; else echo serial; fi > ${{outputs.o}}",
            d = w.path().display()
        )
    };
    let text = format!(
        "name: par\nnodes:\n  a:\n    stage: command\n    params: {{cmd: {:?}, shell: true, outputs: {{o: o.txt}}}}\n  b:\n    stage: command\n    params: {{cmd: {:?}, shell: true, outputs: {{o: o.txt}}}}\n",
        wait("a", "b"),
        wait("b", "a")
    );
    w.write("par.yaml", &text);
    assert_eq!(w.run("par.yaml", &["--jobs", "2"]).0, 0);
    assert_eq!(w.read("results/par/a/o.txt").trim(), "parallel");
    // with one slot they run one after the other
    let text1 = text
        .replace("name: par", "name: ser")
        .replace(".started", ".s2");
    w.write("ser.yaml", &text1);
    assert_eq!(w.run("ser.yaml", &["--jobs", "1"]).0, 0);
    assert_eq!(w.read("results/ser/a/o.txt").trim(), "serial");
}

#[test]
fn failure_then_fix_reruns_only_failed_and_downstream() {
    let w = Work::new();
    let flag = w.path().join("fixed");
    let text = format!(
        r#"
name: fail
nodes:
  a:
    stage: command
    params: {{cmd: ["sh", "-c", "echo a > ${{outputs.o}}"], outputs: {{o: a.txt}}}}
  b:
    stage: command
    inputs: {{x: a.o}}
    params: {{cmd: ["sh", "-c", "test -f {flag} || {{ echo 'b: flag missing' >&2; exit 3; }}; cat ${{inputs.x}} > ${{outputs.o}}"], outputs: {{o: b.txt}}}}
  c:
    stage: command
    inputs: {{x: b.o}}
    params: {{cmd: ["sh", "-c", "cat ${{inputs.x}} > ${{outputs.o}}"], outputs: {{o: c.txt}}}}
  side:
    stage: command
    params: {{cmd: ["sh", "-c", "sleep 0.3; echo s > ${{outputs.o}}"], outputs: {{o: s.txt}}}}
"#,
        flag = flag.display()
    );
    w.write("fail.yaml", &text);
    let out = w
        .flow(&["run", "fail.yaml", "--keep-going"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node b (command, fail.yaml:7:3) failed"),
        "{err}"
    );
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("b: flag missing"), "log tail shown: {err}");
    let out = w.flow(&["status", "fail.yaml"]).output().unwrap();
    let st = String::from_utf8_lossy(&out.stdout);
    assert!(
        st.lines()
            .any(|l| l.starts_with("b ") && l.contains("failed")),
        "{st}"
    );
    std::fs::write(&flag, "").unwrap();
    let (code, states) = w.run("fail.yaml", &[]);
    assert_eq!(code, 0);
    assert_eq!(with_state(&states, "ran"), ["b", "c"]);
    assert_eq!(with_state(&states, "cached"), ["a", "side"]);
}

#[test]
fn missing_declared_output_fails_the_node() {
    let w = Work::new();
    w.write("m.yaml", "name: m\nnodes:\n  a:\n    stage: command\n    params: {cmd: [\"true\"], outputs: {o: never.txt}}\n");
    let out = w.flow(&["run", "m.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("declared output `o` was not produced"),
        "{err}"
    );
}

#[test]
fn transient_exit_codes_are_retried() {
    let w = Work::new();
    let count = w.path().join("count");
    let text = format!(
        "name: r\nnodes:\n  a:\n    stage: command\n    retry: {{attempts: 2, exit_codes: [75]}}\n    params:\n      cmd: [\"sh\", \"-c\", \"echo x >> {c}; [ $(wc -l < {c}) -ge 3 ] || exit 75; echo ok > ${{outputs.o}}\"]\n      outputs: {{o: o.txt}}\n",
        c = count.display()
    );
    w.write("r.yaml", &text);
    assert_eq!(w.run("r.yaml", &[]).0, 0);
    assert_eq!(w.read("count").lines().count(), 3);
    // a non-declared exit code is not retried
    let text2 = text
        .replace("exit_codes: [75]", "exit_codes: [76]")
        .replace("name: r", "name: r2")
        .replace("echo ok", "echo ok2");
    std::fs::remove_file(&count).unwrap();
    w.write("r2.yaml", &text2);
    assert_eq!(w.run("r2.yaml", &[]).0, 1);
    assert_eq!(w.read("count").lines().count(), 1);
}

/// A pipeline's `targets:` runs only what they read: an unused source is skipped as not
/// needed (report and `flow plan` say so), and `--target` still narrows further.
#[test]
fn declared_targets_skip_nodes_nothing_needs() {
    let work = Work::new();
    let log = work.path().join("trace.log").display().to_string();
    work.write(
        "t.yaml",
        &format!(
            r#"
name: targets
params: {{data: cohort.out}}
targets: [use]
nodes:
  cohort:
    stage: command
    params:
      cmd: ["sh", "-c", "echo cohort >> {log} && echo synthetic > ${{outputs.out}}"]
      outputs: {{out: data.txt}}
  user_data:
    stage: command
    params:
      cmd: ["sh", "-c", "echo user_data >> {log} && echo real > ${{outputs.out}}"]
      outputs: {{out: data.txt}}
  use:
    stage: command
    inputs: {{data: "${{params.data}}"}}
    params:
      cmd: ["sh", "-c", "echo use >> {log} && cat ${{inputs.data}} > ${{outputs.out}}"]
      outputs: {{out: used.txt}}
"#
        ),
    );
    // Default data: the cohort is needed, the user's node is not.
    let (code, states) = work.run("t.yaml", &[]);
    assert_eq!(code, 0, "{states:?}");
    assert_eq!(with_state(&states, "ran"), ["cohort", "use"]);
    assert_eq!(with_state(&states, "skipped"), ["user_data"]);
    let report: serde_json::Value =
        serde_json::from_str(&work.read("report.json")).expect("report JSON");
    let skipped = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "user_data")
        .unwrap();
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .starts_with("not needed"),
        "{skipped}"
    );
    // Data from elsewhere: now the cohort is the node nothing needs.
    let (code, states) = work.run("t.yaml", &["--set", "data=user_data.out"]);
    assert_eq!(code, 0, "{states:?}");
    assert_eq!(with_state(&states, "skipped"), ["cohort"]);
    assert_eq!(with_state(&states, "ran"), ["use", "user_data"]);
    let out = work
        .flow(&["plan", "t.yaml", "--set", "data=user_data.out"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("cohort")).unwrap();
    assert!(
        line.contains("skipped") && line.contains("not needed"),
        "{text}"
    );
    assert_eq!(
        work.read("trace.log").lines().collect::<Vec<_>>(),
        ["cohort", "use", "user_data", "use"]
    );
}

/// A `targets:` entry that names no node is an invalid pipeline (exit 2) naming the line.
#[test]
fn unknown_target_is_an_invalid_pipeline() {
    let work = Work::new();
    work.write(
        "t.yaml",
        "name: t\ntargets: [nope]\nnodes:\n  a:\n    stage: command\n    params: {cmd: [\"true\"]}\n",
    );
    let out = work.flow(&["run", "t.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target `nope`") && err.contains("t.yaml:2"),
        "{err}"
    );
}

/// `publish: link` (the default) survives `flow cache gc` as read-only files, `copy` gives
/// writable files of one's own, `symlink` points into `.flow/view`; a lone directory output is
/// published as the node's folder (no doubled level).
#[test]
fn publish_modes_link_copy_and_symlink() {
    use std::os::unix::fs::MetadataExt;
    let w = Work::new();
    w.write(
        "p.yaml",
        r#"
name: p
nodes:
  linked:
    stage: command
    params: {cmd: ["sh", "-c", "mkdir -p d/sub && echo one > d/sub/a.txt"], outputs: {d: d/}}
  copied:
    stage: command
    params: {cmd: ["sh", "-c", "echo two > b.txt"], outputs: {b: b.txt}}
    publish: copy
  symlinked:
    stage: command
    params: {cmd: ["sh", "-c", "echo three > c.txt"], outputs: {c: c.txt}}
    publish: symlink
  after:
    stage: command
    inputs: {x: copied.b, y: symlinked.c}
    params: {cmd: ["sh", "-c", "cat ${inputs.x} ${inputs.y} > o.txt"], outputs: {o: o.txt}}
"#,
    );
    let (code, states) = w.run("p.yaml", &[]);
    assert_eq!(code, 0, "{states:?}");
    let linked = w.path().join("results/p/linked/sub/a.txt");
    let meta = std::fs::symlink_metadata(&linked).unwrap();
    assert!(meta.file_type().is_file() && meta.permissions().readonly() && meta.nlink() >= 2);
    let copied = w.path().join("results/p/copied/b.txt");
    assert!(!std::fs::metadata(&copied).unwrap().permissions().readonly());
    std::fs::write(&copied, "mine").unwrap();
    let sym = w.path().join("results/p/symlinked/c.txt");
    assert!(std::fs::read_link(&sym)
        .unwrap()
        .to_string_lossy()
        .contains(".flow/view"));
    assert_eq!(w.read("results/p/after/o.txt"), "two\nthree\n");

    let out = w.flow(&["cache", "gc"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&linked).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(&copied).unwrap(), "mine");

    let w2 = Work::new();
    w2.write(
        "bad.yaml",
        "name: b\nnodes:\n  a:\n    stage: command\n    params: {cmd: [\"true\"]}\n    publish: hard\n",
    );
    let out = w2.flow(&["plan", "bad.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:6") && err.contains("link, copy or symlink"),
        "{err}"
    );
}

/// An external input rewritten while its node runs: the result (computed from either
/// version) is not recorded under the key of the old content; the node fails saying so, and
/// a rerun uses the new content.
#[test]
fn an_input_changed_during_the_node_is_not_cached_under_its_old_key() {
    let w = Work::new();
    w.write("data.txt", "old\n");
    let marker = w.path().join("changed-once");
    w.write(
        "p.yaml",
        &format!(
            r#"
name: p
nodes:
  read:
    stage: command
    inputs: {{x: ./data.txt}}
    params:
      cmd: ["sh", "-c", "cat ${{inputs.x}} > o.txt; [ -e {m} ] || {{ touch {m}; echo new >> ${{inputs.x}}; }}"]
      outputs: {{o: o.txt}}
"#,
            m = marker.display()
        ),
    );
    let (code, states) = w.run("p.yaml", &[]);
    assert_eq!(code, 1, "{states:?}");
    let report: serde_json::Value = serde_json::from_str(&w.read("report.json")).unwrap();
    let err = report["nodes"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("input `x`") && err.contains("changed while the node ran"),
        "{err}"
    );
    let (code, states) = w.run("p.yaml", &[]);
    assert_eq!(code, 0, "{states:?}");
    assert_eq!(w.read("results/p/read/o.txt"), "old\nnew\n");
}

/// `$${` writes a literal `${` through both template passes: the pipeline's (params, loop
/// variables) and the command's (inputs, outputs, args). It used to be undone at load time
/// and then read again as an unknown template by the command.
#[test]
fn escaped_templates_reach_the_command_literally() {
    let w = Work::new();
    w.write(
        "esc.yaml",
        r#"name: esc
params: {v: 7}
nodes:
  a:
    stage: command
    params:
      shell: true
      env: {MARK: from-env}
      cmd: "printf '%s|%s|%s|%s' \"$${MARK}\" '$${inputs.none}' ${args.v} '${params.v}' > ${outputs.o}"
      args: {v: "${params.v}"}
      outputs: {o: o.txt}
"#,
    );
    let out = w.flow(&["run", "esc.yaml"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.read("results/esc/a/o.txt"), "from-env|${inputs.none}|7|7");
}
