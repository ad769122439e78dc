//! Every validation error names file:line:column and the node, and exits with code 2.

mod common;

use common::Work;

fn check(yaml: &str, line: usize, node: Option<&str>, needle: &str) {
    let w = Work::new();
    w.write("p.yaml", yaml);
    let out = w.flow(&["run", "p.yaml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let loc = format!("p.yaml:{line}:");
    let hit = err
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no `{needle}` in:\n{err}"));
    assert!(hit.contains(&loc), "expected {loc} in `{hit}`");
    if let Some(n) = node {
        assert!(
            hit.contains(&format!("node `{n}`")),
            "expected node {n} in `{hit}`"
        );
    }
    // plan validates the same way
    assert_eq!(
        w.flow(&["plan", "p.yaml"]).output().unwrap().status.code(),
        Some(2)
    );
}

const OK_NODE: &str =
    "  a:\n    stage: command\n    params: {cmd: [\"true\"], outputs: {o: o.txt}}\n";

#[test]
fn unknown_stage() {
    check(
        "name: t\nnodes:\n  a:\n    stage: comand\n",
        4,
        Some("a"),
        "unknown stage `comand`",
    );
}

#[test]
fn unknown_param_with_suggestion() {
    check("name: t\nnodes:\n  a:\n    stage: command\n    params:\n      cmd: [\"true\"]\n      outptus: {}\n", 7, Some("a"), "did you mean `outputs`");
}

#[test]
fn mistyped_param() {
    check("name: t\nnodes:\n  a:\n    stage: command\n    params:\n      cmd: [\"true\"]\n      shell: \"yes\"\n", 7, Some("a"), "param `shell` must be bool");
}

#[test]
fn missing_required_param() {
    check(
        "name: t\nnodes:\n  a:\n    stage: command\n    params: {}\n",
        5,
        Some("a"),
        "missing required param `cmd`",
    );
}

#[test]
fn missing_node_reference() {
    let y = format!("name: t\nnodes:\n{OK_NODE}  b:\n    stage: command\n    inputs:\n      x: nope.o\n    params: {{cmd: [\"true\"]}}\n");
    check(&y, 9, Some("b"), "unknown node `nope`");
}

#[test]
fn missing_output_reference() {
    let y = format!("name: t\nnodes:\n{OK_NODE}  b:\n    stage: command\n    inputs:\n      x: a.nope\n    params: {{cmd: [\"true\"]}}\n");
    check(&y, 9, Some("b"), "node `a` has no output `nope`");
}

#[test]
fn missing_external_path() {
    let y = "name: t\nnodes:\n  b:\n    stage: command\n    inputs:\n      x: ./does/not/exist.csv\n    params: {cmd: [\"true\"]}\n";
    check(y, 6, Some("b"), "does not exist");
}

#[test]
fn duplicate_id() {
    check("name: t\nnodes:\n  a_${i}:\n    foreach: {i: [1, 2, 1]}\n    stage: command\n    params: {cmd: [\"true\"]}\n", 3, Some("a_1"), "duplicate node id `a_1`");
}

#[test]
fn duplicate_yaml_key() {
    check(
        &format!("name: t\nnodes:\n{OK_NODE}{OK_NODE}"),
        6,
        Some("a"),
        "duplicate node id `a`",
    );
}

#[test]
fn cycle_prints_its_path() {
    let y = "name: t\nnodes:\n  a:\n    stage: command\n    inputs: {x: c.o}\n    params: {cmd: [\"true\"], outputs: {o: o}}\n  b:\n    stage: command\n    inputs: {x: a.o}\n    params: {cmd: [\"true\"], outputs: {o: o}}\n  c:\n    stage: command\n    inputs: {x: b.o}\n    params: {cmd: [\"true\"], outputs: {o: o}}\n";
    let w = Work::new();
    w.write("p.yaml", y);
    let out = w.flow(&["run", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dependency cycle: a -> b -> c -> a")
            || err.contains("dependency cycle: b -> c -> a -> b")
            || err.contains("dependency cycle: c -> a -> b -> c"),
        "{err}"
    );
    assert!(err.contains("p.yaml:"), "{err}");
}

#[test]
fn unresolved_template() {
    check("name: t\nnodes:\n  a:\n    stage: command\n    params:\n      cmd: [\"echo\", \"${params.nope}\"]\n", 6, Some("a"), "unresolved `${params.nope}`");
}

#[test]
fn command_template_reference_checked() {
    check("name: t\nnodes:\n  a:\n    stage: command\n    params:\n      cmd: [\"cat\", \"${inputs.x}\"]\n", 5, Some("a"), "${inputs.x}");
}

#[test]
fn output_escaping_rejected() {
    check("name: t\nnodes:\n  a:\n    stage: command\n    params:\n      cmd: [\"true\"]\n      outputs: {o: ../../etc/x}\n", 5, Some("a"), "contains `..`");
}

#[test]
fn invalid_yaml_syntax() {
    check(
        "name: t\nnodes:\n  a: {stage: command\n",
        4,
        None,
        "invalid YAML",
    );
}

#[test]
fn bad_set_override() {
    let w = Work::new();
    w.write(
        "p.yaml",
        &format!("name: t\nparams: {{x: 1}}\nnodes:\n{OK_NODE}"),
    );
    let out = w.flow(&["run", "p.yaml", "--set", "y=2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no param `y`"));
    let out = w
        .flow(&["run", "p.yaml", "--set", "novalue"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_cli_args_exit_2() {
    let w = Work::new();
    assert_eq!(w.flow(&["run"]).output().unwrap().status.code(), Some(2));
    assert_eq!(
        w.flow(&["frobnicate"]).output().unwrap().status.code(),
        Some(2)
    );
    assert_eq!(
        w.flow(&["run", "missing.yaml"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn unknown_executor_names_the_node() {
    check(
        "name: t\nnodes:\n  a:\n    stage: command\n    executor: pbs\n    params: {cmd: [\"true\"]}\n",
        5,
        Some("a"),
        "unknown executor `pbs`",
    );
}

#[test]
fn bad_slurm_setting_names_its_line() {
    check(
        &format!("name: t\nexecutor:\n  slurm:\n    partition: debug\n    time: 2 hours\nnodes:\n{OK_NODE}"),
        5,
        None,
        "time limit `2 hours`",
    );
    check(
        &format!("name: t\nexecutor:\n  slurm: {{qos: normal, acount: lab}}\nnodes:\n{OK_NODE}"),
        3,
        None,
        "unknown Slurm setting `acount`",
    );
}

#[test]
fn slurm_executor_without_sbatch_is_a_usage_error() {
    let w = Work::new();
    w.write("p.yaml", &format!("name: t\nnodes:\n{OK_NODE}"));
    let out = w
        .flow(&["run", "p.yaml", "--executor", "slurm"])
        .env("PATH", w.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs sbatch and squeue on PATH"), "{err}");
    let out = w
        .flow(&["run", "p.yaml", "--executor", "pbs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
