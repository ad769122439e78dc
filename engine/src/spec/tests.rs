use super::*;
use serde_json::json;

fn parse_ok(text: &str) -> Pipeline {
    parse(Path::new("p.yaml"), text, &[]).unwrap_or_else(|e| panic!("{}", e[0]))
}

fn parse_err(text: &str) -> Vec<SpecError> {
    parse(Path::new("p.yaml"), text, &[]).expect_err("should fail")
}

#[test]
fn foreach_expands_ids_params_and_inputs() {
    let p = parse_ok(
        r#"
name: t
params:
  folds: 3
  lr: 0.1
nodes:
  split:
    stage: command
  train_f${fold}:
    foreach: {fold: "0..3"}
    stage: command
    params: {fold: "${fold}", lr: "${params.lr}", tag: "f${fold}"}
    inputs: {split: split.out}
  ensemble:
    stage: command
    inputs:
      models: {foreach: {fold: "0..3"}, each: "train_f${fold}.model"}
"#,
    );
    let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        ["split", "train_f0", "train_f1", "train_f2", "ensemble"]
    );
    let f1 = p.node("train_f1").unwrap();
    assert_eq!(f1.params["fold"], json!(1));
    assert_eq!(f1.params["lr"], json!(0.1));
    assert_eq!(f1.params["tag"], json!("f1"));
    assert_eq!(f1.span.line, 9);
    match &p.node("ensemble").unwrap().inputs["models"] {
        InputSpec::Many(v) => assert_eq!(
            v[2],
            InputRef::Node {
                node: "train_f2".into(),
                output: "model".into()
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn overrides_apply_and_unknown_override_fails() {
    let text =
        "name: t\nparams: {n: 1}\nnodes:\n  a: {stage: command, params: {n: \"${params.n}\"}}\n";
    let p = parse(Path::new("p.yaml"), text, &[parse_override("n=5").unwrap()]).unwrap();
    assert_eq!(p.nodes[0].params["n"], json!(5));
    let e = parse(Path::new("p.yaml"), text, &[parse_override("m=5").unwrap()]).unwrap_err();
    assert!(e[0].message.contains("no param `m`"), "{}", e[0]);
}

#[test]
fn dotted_override_sets_one_entry_of_a_map_param() {
    let text = "name: t\nparams: {n: 1, plan: {}}\nnodes:\n  a: {stage: command, params: {p: \"${params.plan}\"}}\n";
    let sets = [
        parse_override("plan.overall.lr=0.001").unwrap(),
        parse_override("plan.overall.epochs=3").unwrap(),
    ];
    let p = parse(Path::new("p.yaml"), text, &sets).unwrap();
    assert_eq!(
        p.nodes[0].params["p"],
        json!({"overall": {"lr": 0.001, "epochs": 3}})
    );
    let e = parse(
        Path::new("p.yaml"),
        text,
        &[parse_override("n.x=5").unwrap()],
    )
    .unwrap_err();
    assert!(e[0].message.contains("param `n` is not a map"), "{}", e[0]);
    let e = parse(
        Path::new("p.yaml"),
        text,
        &[parse_override("q.x=5").unwrap()],
    )
    .unwrap_err();
    assert!(e[0].message.contains("no param `q`"), "{}", e[0]);
}

#[test]
fn errors_name_line_and_node() {
    let e = parse_err(
        "name: t\nnodes:\n  a:\n    stage: command\n    params: {x: \"${params.missing}\"}\n",
    );
    assert_eq!(e[0].span.line, 5);
    assert_eq!(e[0].node.as_deref(), Some("a"));
    assert!(e[0].message.contains("unresolved"));

    let e = parse_err("name: t\nnodes:\n  a:\n    stagee: command\n");
    assert!(e
        .iter()
        .any(|e| e.message.contains("unknown node key `stagee`") && e.span.line == 4));

    let e = parse_err("name: t\nnodes:\n  a_${i}:\n    foreach: {i: [1, 1]}\n    stage: command\n");
    assert!(e
        .iter()
        .any(|e| e.message.contains("duplicate node id `a_1`") && e.span.line == 3));
}

#[test]
fn yaml_syntax_error_has_position() {
    let e = parse_err("name: t\nnodes:\n  a: [unclosed\n");
    assert!(e[0].message.contains("invalid YAML"));
    assert!(e[0].span.line >= 3);
}

#[test]
fn refs_and_resources() {
    assert_eq!(
        parse_ref("a.out").unwrap(),
        InputRef::Node {
            node: "a".into(),
            output: "out".into()
        }
    );
    assert_eq!(
        parse_ref("./data.csv").unwrap(),
        InputRef::Path("./data.csv".into())
    );
    assert!(parse_ref("data").is_err());
    let p = parse_ok("name: t\nnodes:\n  a: {stage: command, resources: {cpu: 2, gpu: 1, memory: 1.5G}, retry: {attempts: 2, exit_codes: [75]}}\n");
    assert_eq!(
        p.nodes[0].resources,
        Resources {
            cpu: 2,
            gpu: 1,
            memory_mb: Some(1536),
            time: None,
        }
    );
    assert_eq!(p.nodes[0].retry.exit_codes, vec![75]);
}

#[test]
fn override_values_are_typed_only_when_unambiguous() {
    assert_eq!(parse_override("a=3").unwrap().1, json!(3));
    assert_eq!(parse_override("a=0.5").unwrap().1, json!(0.5));
    assert_eq!(parse_override("a=true").unwrap().1, json!(true));
    assert_eq!(parse_override("a=[1, 2]").unwrap().1, json!([1, 2]));
    assert_eq!(parse_override("a=?").unwrap().1, json!("?"));
    assert_eq!(parse_override("a=#x").unwrap().1, json!("#x"));
    assert_eq!(parse_override("a=k: v").unwrap().1, json!("k: v"));
    assert_eq!(
        parse_override("data=/some/path").unwrap().1,
        json!("/some/path")
    );
    assert_eq!(parse_override("params.a=x").unwrap().0, "a");
}

#[test]
fn nesting_beyond_the_limit_is_an_error_naming_it() {
    // Block mappings nested 100 deep under `x` (line 3 on).
    let mut deep = String::from("name: t\nnodes: {}\n");
    for level in 0..100 {
        deep.push_str(&format!("{}k:\n", "  ".repeat(level)));
    }
    deep.push_str(&format!("{}leaf: 1\n", "  ".repeat(100)));
    let e = parse_err(&deep);
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("MAX_YAML_DEPTH (64)"), "{}", e[0]);
    assert_eq!(e[0].span.line, 67, "{}", e[0]);
    // Nested within the limit it parses (and fails only on what the pipeline means).
    let ok = format!(
        "name: t\nnodes: {{}}\nx: {}{}\n",
        "[".repeat(20),
        "]".repeat(20)
    );
    assert!(parse(Path::new("p.yaml"), &ok, &[])
        .err()
        .is_none_or(|e| !e[0].message.contains("MAX_YAML_DEPTH")));
}

#[test]
fn a_huge_foreach_range_is_an_error() {
    let e = parse_err(
        r#"
name: t
params: {shards: 300000000}
nodes:
  s${i}:
    foreach: {i: "0..${params.shards}"}
    stage: command
"#,
    );
    assert!(
        e[0].message.contains("MAX_FOREACH_COMBINATIONS"),
        "{}",
        e[0]
    );
}
